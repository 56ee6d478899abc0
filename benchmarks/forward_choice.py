"""How often the planner's float32 forward and input-gradient estimates pick the fastest of the
tiled engine, im2col and split_kernel, over random channels-last 2-D geometries (what the three
engines' cost constants in calibration.json were chosen by; benchmarks/filter_grad_choice.py does
the same for the filter gradient).

Run: ``python benchmarks/forward_choice.py [--geometries 40] [--seed 1] [--calls 7] [--save F]``,
or ``--score F`` to score the current calibration against the times saved in F without timing
anything. Everything runs on one thread (convgrad under ``_threads.serial_under``, BLAS limited by
threadpoolctl) and is timed in CPU time of the calling thread, which a loaded machine inflates
least: per geometry and op, each engine makes one untimed call, then 3 rounds of ``--calls`` timed
calls, the engines' order alternating; each figure is the median over rounds of the per-round
medians. Prints a line per geometry and op (measured and estimated times, the estimates' pick)
and, at the end, per op, how many picks were the fastest engine and the geometric mean and worst
of picked / fastest time.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from functools import partial

import numpy as np
from threadpoolctl import threadpool_limits

import convgrad
from convgrad._plan import Planner
from convgrad.engines import _threads, warm_up
from filter_grad_choice import timed  # run as a script: benchmarks/ is on the path

ENGINES = ("tiled", "im2col", "split_kernel")
OPS = ("forward", "input_grad")


def _draw(rng: random.Random) -> tuple[int, ...]:
    """(N, C, H = W, O, K, stride, padding, dilation) with 3e7 to 1.5e9 flops; a third 1x1."""
    while True:
        n, c = rng.choice([1, 2, 4, 8, 16]), rng.choice([3, 16, 32, 64, 128, 256, 512])
        o, h = rng.choice([16, 32, 64, 128, 256, 512]), rng.choice([7, 14, 28, 56, 112])
        k, s = rng.choice([1, 1, 1, 3, 3, 5, 7]), rng.choice([1, 1, 2])
        d = 2 if k > 1 and rng.random() >= 0.85 else 1
        p = k // 2 * d
        out = (h + 2 * p - d * (k - 1) - 1) // s + 1
        if 3e7 < 2 * n * out * out * o * c * k * k < 1.5e9:
            return n, c, h, o, k, s, p, d


def _geometry(item: tuple[int, ...]) -> convgrad.ConvGeometry:
    n, c, h, o, k, s, p, d = item
    return convgrad.ConvGeometry.for_conv((n, h, h, c), (k, k, c, o), stride=s, padding=p, dilation=d,
                                          data_format="channels_last")


def estimates(item: tuple[int, ...], op: str) -> dict[str, float]:
    """The planner's estimated seconds of each of ENGINES that takes ``op`` of ``item``."""
    verdicts = Planner().plan(op, _geometry(item), np.float32).verdicts()
    return {e: verdicts[e]["estimated_seconds"] for e in ENGINES
            if "estimated_seconds" in verdicts.get(e, {})}


def measure(item: tuple[int, ...], op: str, engines: list[str], calls: int) -> dict[str, float]:
    n, c, h, o, k, s, p, d = item
    geom = _geometry(item)
    data = np.random.default_rng(0)
    x = data.standard_normal((n, h, h, c)).astype(np.float32)
    w = data.standard_normal((k, k, c, o)).astype(np.float32)
    dy = data.standard_normal(geom.y_shape("channels_last")).astype(np.float32)
    kw = {"stride": s, "padding": p, "dilation": d, "data_format": "channels_last"}
    if op == "forward":
        run = {e: partial(convgrad.conv, x, w, method=e, **kw) for e in engines}
    else:
        run = {e: partial(convgrad.conv_input_grad, dy, w, x.shape, method=e, **kw) for e in engines}
    return timed(run, calls)


def score(records: list[dict]) -> dict[str, tuple[int, int, float, float]]:
    """Per op: (fastest picked, geometries, geometric mean and worst of picked / fastest) under the
    current calibration."""
    out = {}
    for op in OPS:
        right, ratios = 0, []
        for rec in (r for r in records if r["op"] == op):
            t = rec["measured"]
            est = {e: v for e, v in estimates(tuple(rec["geometry"]), op).items() if e in t}
            pick, fastest = min(est, key=est.get), min(t, key=t.get)
            right += pick == fastest
            ratios.append(t[pick] / t[fastest])
        if ratios:
            mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
            out[op] = (right, len(ratios), mean, max(ratios))
    return out


def _report(records: list[dict]) -> None:
    for op, (right, total, mean, worst) in score(records).items():
        print(f"{op}: fastest engine picked on {right} of {total}; picked / fastest geometric mean "
              f"{mean:.3f}, worst {worst:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometries", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calls", type=int, default=7, help="timed calls per engine and round")
    parser.add_argument("--save", help="write the measured times to this JSON file")
    parser.add_argument("--score", help="score the current calibration against this file's times")
    args = parser.parse_args()
    warm_up(("float32",))  # the estimates of loaded kernels, as in a process that runs them
    if args.score:
        with open(args.score) as f:
            _report(json.load(f))
        return
    rng, records = random.Random(args.seed), []
    with threadpool_limits(1), _threads.serial_under(0):
        for _ in range(args.geometries):
            item = _draw(rng)
            for op in OPS:
                est = estimates(item, op)
                t = measure(item, op, list(est), args.calls)
                records.append({"geometry": item, "op": op, "measured": t})
                line = " ".join(f"{e} {t[e] * 1e3:.2f}/{est[e] * 1e3:.2f}" for e in est)
                print(f"{item} {op}: measured/estimated ms {line}", flush=True)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(records, f)
    _report(records)


if __name__ == "__main__":
    main()
