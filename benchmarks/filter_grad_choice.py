"""How often the planner's float32 filter-gradient estimates pick the faster of the tiled engine and
im2col, over random channels-last 2-D geometries (what RUNS_FLOPS_PER_S,
RUNS_PARTIAL_BYTES_PER_S and RUNS_STORE_BYTES_PER_S in calibration.json were chosen by).

Run: ``python benchmarks/filter_grad_choice.py [--geometries 60] [--seed 1] [--calls 7]
[--layout channels_first] [--save F]`` (the channels-first caller's plan and call on NCHW arrays;
the default is channels-last), or ``--score F [--calibration FILE]`` to score a calibration against
the times saved in F (files of both layouts may be joined into one list) without timing anything.
Everything runs on one thread (convgrad under ``_threads.serial_under``, BLAS limited by
threadpoolctl) and is timed in CPU time of the calling thread, which a loaded machine inflates
least: per geometry, each engine makes one untimed call, then 3 rounds of ``--calls`` timed calls,
the engines' order alternating; each figure is the median over rounds of the per-round medians.
Prints a line per geometry (the kernel the tiled engine runs, measured and estimated
tiled / im2col) and, at the end, how many picks were the faster engine and the
geometric mean of picked / fastest time.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from functools import partial

import numpy as np
from threadpoolctl import threadpool_limits

import convgrad
from convgrad._plan import Planner
from convgrad.engines import _threads, warm_up
from convgrad.engines._machine import load_calibration

ENGINES = ("tiled", "im2col")


def _draw(rng: random.Random) -> tuple[int, ...]:
    """(N, C, H = W, O, K, stride, padding, dilation) with 3e7 to 1.5e9 flops."""
    while True:
        n, c = rng.choice([1, 2, 4, 8, 16]), rng.choice([16, 32, 64, 128, 256, 512])
        o, h = rng.choice([32, 64, 128, 256, 512]), rng.choice([7, 14, 28, 56])
        k, s = rng.choice([1, 3, 3, 3, 5]), rng.choice([1, 1, 2])
        d = 2 if k > 1 and rng.random() >= 0.85 else 1
        p = k // 2 * d
        out = (h + 2 * p - d * (k - 1) - 1) // s + 1
        if 3e7 < 2 * n * out * out * o * c * k * k < 1.5e9:
            return n, c, h, o, k, s, p, d


def _seconds(f, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.thread_time()
        f()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def _geometry(item: tuple[int, ...]) -> convgrad.ConvGeometry:
    n, c, h, o, k, s, p, d = item
    return convgrad.ConvGeometry.for_conv((n, h, h, c), (k, k, c, o), stride=s, padding=p, dilation=d,
                                          data_format="channels_last")


def estimates(item: tuple[int, ...], layout: str) -> tuple[dict[str, float], str | None]:
    """The planner's estimated seconds of each of ENGINES for the filter gradient of ``item`` called
    in ``layout`` (on one thread, as measured), and the tile the tiled engine would run."""
    with threadpool_limits(1), _threads.serial_under(0):
        plan = Planner().plan("filter_grad", _geometry(item), np.dtype(np.float32), layout=layout)
        verdicts = plan.verdicts()
    tile = verdicts["tiled"].get("choices", {}).get("tile")
    return {e: verdicts[e]["estimated_seconds"] for e in ENGINES}, tile


def measure(item: tuple[int, ...], layout: str, calls: int) -> dict[str, float]:
    """Each engine's seconds per call of the filter gradient of ``item`` in ``layout``, on one
    thread (``timed``)."""
    n, c, h, _, k, s, p, d = item
    data = np.random.default_rng(0)
    x = data.standard_normal((n, h, h, c)).astype(np.float32)
    dy = data.standard_normal(_geometry(item).y_shape("channels_last")).astype(np.float32)
    if layout == "channels_first":
        x, dy = (np.ascontiguousarray(np.moveaxis(a, -1, 1)) for a in (x, dy))
    kw = {"stride": s, "padding": p, "dilation": d, "data_format": layout}
    run = {e: partial(convgrad.conv_filter_grad, x, dy, (k, k), method=e, **kw) for e in ENGINES}
    with threadpool_limits(1), _threads.serial_under(0):
        return timed(run, calls)


def timed(run: dict, calls: int) -> dict[str, float]:
    """Seconds per call of each of ``run``'s functions (CPU time of this thread): an untimed call
    each, then 3 rounds of ``calls``, the order alternating; the median over rounds of the
    rounds' medians."""
    names, rounds = list(run), {e: [] for e in run}
    for f in run.values():
        f()
    for r in range(3):
        for e in names if r % 2 == 0 else names[::-1]:
            rounds[e].append(_seconds(run[e], calls))
    return {e: statistics.median(v) for e, v in rounds.items()}


def score(records: list[dict]) -> dict[str, tuple[int, int, float, float]]:
    """Per layout: (faster engine picked, geometries, geometric mean and worst of picked / fastest)
    under the current calibration (``convgrad.engines._machine.load_calibration`` swaps it)."""
    out = {}
    for layout in sorted({r["layout"] for r in records}):
        right, ratios = 0, []
        for rec in (r for r in records if r["layout"] == layout):
            t, est = rec["measured"], estimates(tuple(rec["geometry"]), layout)[0]
            pick, fastest = min(ENGINES, key=est.get), min(ENGINES, key=t.get)
            right += pick == fastest
            ratios.append(t[pick] / t[fastest])
        mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
        out[layout] = (right, len(ratios), mean, max(ratios))
    return out


def _report(records: list[dict]) -> None:
    for layout, (right, total, mean, worst) in score(records).items():
        print(f"{layout}: faster engine picked on {right} of {total}; picked / fastest geometric mean "
              f"{mean:.3f}, worst {worst:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometries", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calls", type=int, default=7, help="timed calls per engine and round")
    parser.add_argument("--layout", choices=("channels_last", "channels_first"), default="channels_last")
    parser.add_argument("--save", help="write the measured times to this JSON file")
    parser.add_argument("--score", help="score the current calibration against this file's times")
    parser.add_argument("--calibration", help="score or plan with this calibration file")
    args = parser.parse_args()
    warm_up(("float32",))  # the estimates of loaded kernels, as in a process that runs them
    if args.calibration:
        load_calibration(args.calibration)
    if args.score:
        with open(args.score) as f:
            _report(json.load(f))
        return
    rng, records = random.Random(args.seed), []
    for _ in range(args.geometries):
        item = _draw(rng)
        est, tile = estimates(item, args.layout)
        t = measure(item, args.layout, args.calls)
        records.append({"geometry": item, "layout": args.layout, "measured": t})
        print(f"{item} {tile} tiled/im2col measured {t['tiled'] / t['im2col']:.2f} "
              f"estimated {est['tiled'] / est['im2col']:.2f}", flush=True)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(records, f)
    _report(records)


if __name__ == "__main__":
    main()
