"""A reflect-padded conv against the zero-padded one: forward, input and filter gradient.

Run: ``python benchmarks/bench_padding_mode.py [--calls 21] [--mode reflect] [--case resnet_3x3]``.
The case is the bench suite's (``convgrad.cli.bench.suite``), float32, channels-first. Calls run
back to back, as a loop makes them, in interleaved rounds (``suite.steady``, the suite's
headline); the ratio is the median reflect time over the median zeros time, from the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import convgrad
from convgrad._budget import workspace_limit
from convgrad._geometry import ConvGeometry
from convgrad._padmode import PadMap
from convgrad.cli.bench import suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=21, help="timed calls per contestant")
    parser.add_argument("--mode", default="reflect")
    parser.add_argument("--case", default="resnet_3x3")
    args = parser.parse_args()
    convgrad.engines.warm_up()  # as the other benchmarks: plans chosen among loaded kernels
    case = suite.get_cases([args.case])[0]
    rng = np.random.default_rng(0)
    rank = len(case.spatial)
    x = rng.standard_normal((case.n, case.c, *case.spatial)).astype(np.float32)
    w = rng.standard_normal((case.o, case.c // case.groups, *(case.k,) * rank)).astype(np.float32)
    geo = case.kwargs
    dy = rng.standard_normal(convgrad.conv(x, w, **geo).shape).astype(np.float32)
    ops = {
        "forward": lambda m: convgrad.conv(x, w, padding_mode=m, **geo),
        "input_grad": lambda m: convgrad.conv_input_grad(dy, w, x.shape, padding_mode=m, **geo),
        "filter_grad": lambda m: convgrad.conv_filter_grad(x, dy, w.shape, padding_mode=m, **geo),
    }
    modes = ("zeros", args.mode)
    times = {(op, m): t for op, f in ops.items()
             for (m, t) in suite.steady({m: (lambda f=f, m=m: f(m)) for m in modes}, args.calls).items()}
    print(f"{case.name}: x {x.shape} float32, w {w.shape}, {geo}; median of {args.calls} "
          f"back-to-back calls")
    print(f"| op | zeros ms | {args.mode} ms | {args.mode} / zeros |\n|---|---:|---:|---:|")
    for op in ops:
        z, m = (statistics.median(times[op, mode]) * 1e3 for mode in modes)
        print(f"| {op} | {z:.2f} | {m:.2f} | {m / z:.2f} |")
    # The work the mode adds, alone: the padded copy of x, and the fold of the input gradient.
    pad_map = PadMap.build(args.mode, ConvGeometry.for_conv(x.shape, w.shape, **geo))
    padded = pad_map.pad(x, 2, workspace_limit())
    extra = {"pad x": lambda: pad_map.pad(x, 2, workspace_limit()),
             "fold dx (with a copy of it)": lambda: pad_map.fold(padded.copy(), 2)}
    for name, f in extra.items():
        ts = []
        for _ in range(args.calls):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        print(f"{name}: {statistics.median(ts) * 1e3:.2f} ms (median)")


if __name__ == "__main__":
    main()
