"""How well does the planner's cost model predict each engine's time on this machine?

Run: ``python benchmarks/calibrate.py``. For a spread of float32 geometries it times every
eligible engine on each op (median of a few runs after a warm-up) and prints the measured time,
the engine's own estimate and their ratio, then which engine the planner picked and which was
really fastest. The per-engine constants in ``src/convgrad/engines/*.py`` are set from this
output; a ratio far from 1 for one engine means its constants need refitting for this machine.
"""

from __future__ import annotations

import argparse

import numpy as np

import convgrad
from convgrad._budget import DEFAULT_WORKSPACE_BYTES
from convgrad._layout import x_to_last
from convgrad.bench import timeit
from convgrad.engines import engine_names, get_engine, im2col, warm_up

SHAPES = [  # (x channels-first, w channels-first, kwargs)
    ((8, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}),
    ((8, 256, 14, 14), (256, 256, 3, 3), {"padding": 1}),
    ((8, 256, 56, 56), (64, 256, 1, 1), {}),
    ((8, 128, 56, 56), (128, 128, 3, 3), {"padding": 1, "stride": 2}),
    ((8, 3, 224, 224), (64, 3, 7, 7), {"padding": 3, "stride": 2}),
    ((8, 128, 56, 56), (128, 1, 3, 3), {"padding": 1, "groups": 128}),
    ((8, 64, 32, 32), (64, 64, 3, 3), {"padding": 2, "dilation": 2}),
    ((4, 32, 32, 32), (32, 32, 31, 31), {"padding": 15}),
    ((8, 32, 4000), (32, 32, 255), {"padding": 127}),
    ((2, 16, 32, 32, 32), (16, 16, 3, 3, 3), {"padding": 1}),
]


def _runner(engine, op, geom, x, w, dy, limit):  # type: ignore[no-untyped-def]
    if op == "forward":
        return lambda: engine.forward(geom, x, w, limit)
    if op == "input_grad":
        return lambda: engine.input_grad(geom, dy, w, limit)
    return lambda: engine.filter_grad(geom, x, dy, limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ops", default="forward,input_grad,filter_grad",
                        help="comma-separated ops to time (default: all three)")
    parser.add_argument("--engines", default=",".join(engine_names()),
                        help="comma-separated engines to time (default: all)")
    args = parser.parse_args()
    warm_up(("float32",))  # estimates without compile time, as for a warmed-up process
    rng = np.random.default_rng(0)
    dt = np.dtype(np.float32)
    limit = DEFAULT_WORKSPACE_BYTES
    print(f"{'shape':<44} {'op':<12} {'engine':<9} {'measured ms':>11} {'estimate ms':>11} {'ratio':>6}")
    ratios: dict[tuple[str, str], list[float]] = {}
    for xs, ws, kw in SHAPES:
        geom = convgrad.ConvGeometry.for_conv(xs, ws, **kw)
        x = x_to_last(rng.standard_normal(xs, dtype=np.float32), "channels_first").copy()
        w = np.ascontiguousarray(np.moveaxis(rng.standard_normal(ws, dtype=np.float32), (0, 1), (-1, -2)))
        dy = x_to_last(rng.standard_normal(geom.y_shape(), dtype=np.float32), "channels_first").copy()
        label = f"{xs} * {ws} {kw}"[:44]
        for op in args.ops.split(","):
            timings = {}
            for name in args.engines.split(","):
                engine = get_engine(name)
                if engine.unsupported(geom, op, dt) is not None:
                    continue
                # A pause and an untimed call before each timed one, as in the benchmark suite.
                measured = timeit({name: _runner(engine, op, geom, x, w, dy, limit)}, args.repeats)[name]
                estimate = engine.cost(geom, op, dt)
                timings[name] = measured
                tag = _variant(name, geom, dt)
                ratios.setdefault((tag, op), []).append(measured / estimate)
                print(f"{label:<44} {op:<12} {tag:<9} {measured * 1e3:>11.2f} {estimate * 1e3:>11.2f} "
                      f"{measured / estimate:>6.2f}")
            chosen = convgrad.make_plan(op, geom, dt, "auto", limit).engine.name
            if chosen not in timings:  # --engines left the planner's choice out
                continue
            best = min(timings, key=timings.get)
            print(f"{'':<44} {op:<12} planner chose {chosen}, fastest was {best}"
                  f" ({timings[chosen] / timings[best]:.2f}x the fastest)")
    print("\nmedian measured / estimate per engine and op (multiply the engine's FITTED factor by it):")
    for (tag, op), rs in sorted(ratios.items()):
        print(f"  {tag:<14} {op:<12} {float(np.median(rs)):.2f} over {len(rs)} shapes")


def _variant(name: str, geom: convgrad.ConvGeometry, dt: np.dtype) -> str:
    """im2col's estimates have their own factors for the compiled packing (FITTED_FUSED) and none
    for a 1x1 conv (one GEMM): report those apart."""
    if name != "im2col":
        return name
    if im2col._pointwise(geom):
        return "im2col-1x1"
    return "im2col-fused" if im2col._use_kernels(geom, dt) else name


if __name__ == "__main__":
    main()
