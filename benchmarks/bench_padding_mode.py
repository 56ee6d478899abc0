"""A reflect-padded conv against the zero-padded one: forward, input and filter gradient.

Run: ``python benchmarks/bench_padding_mode.py [--repeats 9] [--mode reflect] [--case resnet_3x3]``.
The case is the bench suite's (``convgrad.cli.bench.suite``), float32, channels-first. Each
round times every contestant once, in a rotating order, each timed call after a pause and an
untimed call (as the suite does: a library's spinning threads slow whoever runs next); the
ratio is the median reflect time over the median zeros time, from the same run. ``--clock
process`` times CPU seconds of this process (all its threads) instead of wall seconds: on a
machine shared with other jobs, waiting for a core inflates wall time, not CPU time.
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
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--mode", default="reflect")
    parser.add_argument("--case", default="resnet_3x3")
    parser.add_argument("--clock", choices=("wall", "process"), default="wall")
    args = parser.parse_args()
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
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    contestants = [(op, mode) for op in ops for mode in ("zeros", args.mode)]
    times: dict[tuple[str, str], list[float]] = {c: [] for c in contestants}
    for c in contestants:  # warm-up: JIT compiles and plans
        ops[c[0]](c[1])
    for r in range(args.repeats):
        for op, mode in contestants[r % len(contestants):] + contestants[:r % len(contestants)]:
            time.sleep(0.2)
            ops[op](mode)
            t = clock()
            ops[op](mode)
            times[op, mode].append(clock() - t)
    print(f"{case.name}: x {x.shape} float32, w {w.shape}, {geo}; median of {args.repeats} rounds, "
          f"{args.clock} clock")
    print(f"| op | zeros ms | {args.mode} ms | {args.mode} / zeros |\n|---|---:|---:|---:|")
    for op in ops:
        z, m = (statistics.median(times[op, mode]) * 1e3 for mode in ("zeros", args.mode))
        print(f"| {op} | {z:.2f} | {m:.2f} | {m / z:.2f} |")
    # The work the mode adds, alone: the padded copy of x, and the fold of the input gradient.
    pad_map = PadMap.build(args.mode, ConvGeometry.for_conv(x.shape, w.shape, **geo))
    padded = pad_map.pad(x, 2, workspace_limit())
    extra = {"pad x": lambda: pad_map.pad(x, 2, workspace_limit()),
             "fold dx (with a copy of it)": lambda: pad_map.fold(padded.copy(), 2)}
    for name, f in extra.items():
        ts = []
        for _ in range(args.repeats):
            t = clock()
            f()
            ts.append(clock() - t)
        print(f"{name}: {statistics.median(ts) * 1e3:.2f} ms (median)")


if __name__ == "__main__":
    main()
