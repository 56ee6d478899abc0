"""How well does the planner's cost model predict each engine's time on this machine?

Run: ``python benchmarks/calibrate.py``. For a spread of float32 geometries it times every
eligible engine on each op (median of a few runs after a warm-up) and prints the measured time,
the engine's own estimate and their ratio, then which engine the planner picked and which was
really fastest. The cost model's figures are data, a file per vector width in
``src/convgrad/engines/`` (``calibration.json`` for AVX-512, ``calibration_avx2.json`` for AVX2):
``--write [PATH]`` refits each engine's factors (its ``FITTED``, im2col's ``FITTED_FUSED`` for
the compiled packing) by the median ratio and writes the model, stamped with the date, the CPU
and the versions, to PATH (default: the packaged file of this machine's width, the one the
planner reads here). ``convgrad.engines.load_calibration(PATH)`` loads such a file on another
machine without editing the source.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import numpy as np
import scipy

import convgrad
from convgrad._budget import DEFAULT_WORKSPACE_BYTES
from convgrad._layout import x_to_last
from convgrad._plan import Planner
from convgrad.cli.bench.suite import timeit
from convgrad.engines import Prepared, _machine, _registry, engine_names

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ops", default="forward,input_grad,filter_grad",
                        help="comma-separated ops to time (default: all three)")
    parser.add_argument("--engines", default=",".join(engine_names()),
                        help="comma-separated engines to time (default: all)")
    parser.add_argument("--write", nargs="?", const=str(_machine.DEFAULT_PATH), metavar="PATH",
                        help="write the refitted calibration to PATH (default: the packaged file of "
                             f"this machine's vector width, {_machine.DEFAULT_PATH.name})")
    args = parser.parse_args()
    planner = Planner("eager")  # every kernel loaded first: estimates without compile time
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
        operands = {"forward": (x, w), "input_grad": (dy, w), "filter_grad": (x, dy)}
        label = f"{xs} * {ws} {kw}"[:44]
        for op in args.ops.split(","):
            timings = {}
            for name in args.engines.split(","):
                p = planner._prepare(_registry()[name], op, geom, dt, limit)
                if not isinstance(p, Prepared):
                    continue
                # A pause and an untimed call before each timed one, as in the benchmark suite.
                measured = timeit({name: lambda p=p, ab=operands[op]: p(*ab)}, args.repeats)[name]
                timings[name] = measured
                tag = _variant(name, p)
                ratios.setdefault((tag, op), []).append(measured / p.seconds)
                print(f"{label:<44} {op:<12} {tag:<9} {measured * 1e3:>11.2f} {p.seconds * 1e3:>11.2f} "
                      f"{measured / p.seconds:>6.2f}")
            chosen = planner.plan(op, geom, dt, "auto", limit).chosen.engine
            if chosen not in timings:  # --engines left the planner's choice out
                continue
            best = min(timings, key=timings.get)
            print(f"{'':<44} {op:<12} planner chose {chosen}, fastest was {best}"
                  f" ({timings[chosen] / timings[best]:.2f}x the fastest)")
    print("\nmedian measured / estimate per engine and op (the factor its FITTED figure is multiplied by):")
    for (tag, op), rs in sorted(ratios.items()):
        print(f"  {tag:<14} {op:<12} {float(np.median(rs)):.2f} over {len(rs)} shapes")
    if args.write:
        _write(Path(args.write), {k: float(np.median(v)) for k, v in ratios.items()})


def _variant(name: str, p: Prepared) -> str:
    """im2col's estimates have their own factors for the compiled packing (FITTED_FUSED) and none
    for a 1x1 conv (one GEMM): report those apart."""
    if name != "im2col":
        return name
    if p.choices.get("pointwise"):
        return "im2col-1x1"
    return "im2col-fused" if p.choices.get("fused") else name


def _write(path: Path, ratios: dict[tuple[str, str], float]) -> None:
    """The packaged model of this machine's vector width with each fitted factor multiplied by its
    median ratio, newly stamped."""
    doc = json.loads(_machine.DEFAULT_PATH.read_text())
    keys = {"im2col-fused": ("im2col", "FITTED_FUSED")}
    for (tag, op), ratio in ratios.items():
        engine, key = keys.get(tag, (tag, "FITTED"))
        fitted = doc["engines"].get(engine, {}).get(key)
        if fitted is not None and op in fitted:
            fitted[op] = round(fitted[op] * ratio, 2)
    import numba

    doc["provenance"] = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{_machine.cpu()}, {os.cpu_count()} cores",
        "how": "benchmarks/calibrate.py --write: FITTED = the previous factor x median measured / estimated "
               "time per engine and op over its shapes, float32, kernels loaded",
        "versions": {"convgrad": convgrad.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     "numba": numba.__version__, "python": platform.python_version()}}
    lines = ["{", f' "provenance": {json.dumps(doc["provenance"])},', ' "engines": {']
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in doc["engines"].items()]
    lines[-1] = lines[-1].rstrip(",")
    path.write_text("\n".join([*lines, " }", "}"]) + "\n")
    print(f"wrote {path}")



if __name__ == "__main__":
    main()
