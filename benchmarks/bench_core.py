"""Forward, input gradient and filter gradient: convgrad against PyTorch on the same machine.

Run: ``python benchmarks/bench_core.py [--repeats 7] [--write BENCHMARKS.md]``.
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where set on a machine, slow NumPy's BLAS; to measure
without them, unset both in the benchmark's own command (and say so in the report).

Every result is checked against PyTorch before it is timed. Timings are interleaved (one call of
each contestant per round), after a warm-up, and the median of the rounds is reported.
float32, convgrad in channels-last, PyTorch in NCHW and in channels_last memory format.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy
import torch

import convgrad


@dataclass(frozen=True)
class Case:
    name: str
    n: int
    c: int
    o: int
    spatial: tuple[int, ...]
    k: int
    stride: int
    pad: int
    dilation: int = 1
    groups: int = 1


CASES = [
    Case("resnet_3x3", 8, 64, 64, (56, 56), 3, 1, 1),
    Case("resnet_3x3_deep", 8, 256, 256, (14, 14), 3, 1, 1),
    Case("resnet_1x1", 8, 256, 64, (56, 56), 1, 1, 0),
    Case("strided_3x3_s2", 8, 128, 128, (56, 56), 3, 2, 1),
    Case("dilated_3x3_d2", 8, 64, 64, (32, 32), 3, 1, 2, 2),
    Case("conv3d_3x3x3", 2, 16, 16, (32, 32, 32), 3, 1, 1),
]


def _timeit(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def _torch_ops(case: Case, x: torch.Tensor, w: torch.Tensor, dy: torch.Tensor) -> dict[str, Callable]:
    r = len(case.spatial)
    fwd = getattr(torch.nn.functional, f"conv{r}d")
    gin = getattr(torch.nn.grad, f"conv{r}d_input")
    gw = getattr(torch.nn.grad, f"conv{r}d_weight")
    kw = {"stride": case.stride, "padding": case.pad, "dilation": case.dilation, "groups": case.groups}
    return {
        "forward": lambda: fwd(x, w, **kw),
        "input_grad": lambda: gin(x.shape, w, dy, **kw),
        "filter_grad": lambda: gw(x, w.shape, dy, **kw),
    }


def run_case(case: Case, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    r = len(case.spatial)
    x = rng.standard_normal((case.n, case.c, *case.spatial), dtype=np.float32)
    w = rng.standard_normal((case.o, case.c // case.groups, *(case.k,) * r), dtype=np.float32)
    geom = convgrad.ConvGeometry.for_conv(x.shape, w.shape, stride=case.stride, padding=case.pad,
                                          dilation=case.dilation, groups=case.groups)
    dy = rng.standard_normal(geom.y_shape(), dtype=np.float32)
    # convgrad in channels-last: x (N, *S, C), w (*K, C/G, O).
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    wl = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2)))
    dyl = np.ascontiguousarray(np.moveaxis(dy, 1, -1))
    kw = {"stride": case.stride, "padding": case.pad, "dilation": case.dilation,
          "groups": case.groups, "data_format": "channels_last"}
    ours = {
        "forward": lambda: convgrad.conv(xl, wl, **kw),
        "input_grad": lambda: convgrad.conv_input_grad(dyl, wl, xl.shape, **kw),
        "filter_grad": lambda: convgrad.conv_filter_grad(xl, dyl, wl.shape, **kw),
    }
    tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))
    fmt = torch.channels_last if r == 2 else torch.channels_last_3d
    cx, cw, cdy = (t.contiguous(memory_format=fmt) for t in (tx, tw, tdy))
    nchw, nhwc = _torch_ops(case, tx, tw, tdy), _torch_ops(case, cx, cw, cdy)
    rows = []
    for op in ("forward", "input_grad", "filter_grad"):
        mine = ours[op]()
        ref = nchw[op]().numpy()
        mine_cf = np.moveaxis(mine, (-1, -2), (0, 1)) if op == "filter_grad" else np.moveaxis(mine, -1, 1)
        scale = float(np.abs(ref).max()) or 1.0
        err = float(np.abs(mine_cf - ref).max()) / scale
        if err > 1e-4:
            raise AssertionError(f"{case.name} {op}: convgrad and PyTorch differ by {err:.2e} (relative)")
        t = _timeit({"convgrad": ours[op], "torch": nchw[op], "torch_cl": nhwc[op]}, repeats)
        plan = convgrad.make_plan(op, geom, np.dtype(np.float32), "auto", convgrad.DEFAULT_WORKSPACE_BYTES)
        best_torch = min(t["torch"], t["torch_cl"])
        rows.append({
            "case": case.name, "op": op, "engine": plan.engine.name,
            "convgrad_ms": t["convgrad"] * 1e3, "torch_ms": t["torch"] * 1e3,
            "torch_cl_ms": t["torch_cl"] * 1e3, "gflops": geom.flops / t["convgrad"] / 1e9,
            "ratio": t["convgrad"] / best_torch, "max_rel_err": err,
        })
    return rows


def gemm_peak(repeats: int) -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    t = _timeit({"gemm": lambda: a @ a}, repeats)["gemm"]
    return 2 * 2048**3 / t / 1e9


def table(rows: list[dict]) -> str:
    lines = [
        "| case | op | engine | convgrad ms | torch NCHW ms | torch channels_last ms "
        "| convgrad GFLOP/s | convgrad / best torch |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['op']} | {r['engine']} | {r['convgrad_ms']:.2f} | {r['torch_ms']:.2f} "
            f"| {r['torch_cl_ms']:.2f} | {r['gflops']:.0f} | {r['ratio']:.2f} |"
        )
    for op in ("forward", "input_grad", "filter_grad"):
        ratios = [r["ratio"] for r in rows if r["op"] == op]
        lines.append(f"| geometric mean | {op} | | | | | | {math.exp(np.mean(np.log(ratios))):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cases", nargs="*", default=[c.name for c in CASES])
    parser.add_argument("--write", metavar="FILE", help="write the report (markdown) to FILE")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for case in CASES:
        if case.name in args.cases:
            rows.extend(run_case(case, args.repeats))
            print(f"done {case.name}", flush=True)
    peak = gemm_peak(args.repeats)
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    header = (
        f"Measured {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores "
        f"({platform.processor() or 'unknown CPU'}); Python {platform.python_version()}, "
        f"NumPy {np.__version__}, SciPy {scipy.__version__}, PyTorch {torch.__version__} "
        f"({torch.get_num_threads()} threads), convgrad {convgrad.__version__}. "
        f"float32, median of {args.repeats} interleaved rounds after a warm-up. "
        f"OpenBLAS environment: {env}. NumPy SGEMM 2048^3 reference: {peak:.0f} GFLOP/s."
    )
    report = header + "\n\n" + table(rows) + "\n"
    print(report)
    if args.write:
        with open(args.write, "w") as f:
            f.write("# Benchmarks: convgrad against PyTorch (CPU)\n\n" + report)


if __name__ == "__main__":
    main()
