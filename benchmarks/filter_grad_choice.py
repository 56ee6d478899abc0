"""How often the planner's float32 filter-gradient estimates pick the faster of the tiled engine and
im2col, over random channels-last 2-D geometries (what RUNS_FLOPS_PER_S,
RUNS_PARTIAL_BYTES_PER_S and RUNS_STORE_BYTES_PER_S in calibration.json were chosen by).

Run: ``python benchmarks/filter_grad_choice.py [--geometries 60] [--seed 1] [--calls 7]
[--layout channels_first]`` (the channels-first caller's plan and call on NCHW arrays; the default
is channels-last).
Everything runs on one thread (convgrad under ``_threads.serial_under``, BLAS limited by
threadpoolctl) and is timed in CPU time of the calling thread, which a loaded machine inflates
least: per geometry, each engine makes one untimed call, then 3 rounds of ``--calls`` timed calls,
the engines' order alternating; each figure is the median over rounds of the per-round medians.
Prints a line per geometry (the kernel the tiled engine runs, the planner's pick, measured and
estimated tiled / im2col) and, at the end, how many picks were the faster engine and the
geometric mean of picked / fastest time.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geometries", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calls", type=int, default=7, help="timed calls per engine and round")
    parser.add_argument("--layout", choices=("channels_last", "channels_first"), default="channels_last")
    args = parser.parse_args()
    warm_up(("float32",))
    rng, right, ratios = random.Random(args.seed), 0, []
    with threadpool_limits(1), _threads.serial_under(0):
        for _ in range(args.geometries):
            n, c, h, o, k, s, p, d = _draw(rng)
            data = np.random.default_rng(0)
            x = data.standard_normal((n, h, h, c)).astype(np.float32)
            geom = convgrad.ConvGeometry.for_conv(x.shape, (k, k, c, o), stride=s, padding=p, dilation=d,
                                                  data_format="channels_last")
            dy = data.standard_normal(geom.y_shape("channels_last")).astype(np.float32)
            if args.layout == "channels_first":
                x, dy = (np.ascontiguousarray(np.moveaxis(a, -1, 1)) for a in (x, dy))
            plan = Planner().plan("filter_grad", geom, np.dtype(np.float32), layout=args.layout)
            verdicts = plan.verdicts()
            kw = {"stride": s, "padding": p, "dilation": d, "data_format": args.layout}
            calls = {e: partial(convgrad.conv_filter_grad, x, dy, (k, k), method=e, **kw) for e in ENGINES}
            rounds = {e: [] for e in ENGINES}
            for f in calls.values():
                f()
            for r in range(3):
                for e in ENGINES if r % 2 == 0 else ENGINES[::-1]:
                    rounds[e].append(_seconds(calls[e], args.calls))
            t = {e: statistics.median(v) for e, v in rounds.items()}
            est = {e: verdicts[e]["estimated_seconds"] for e in ENGINES}
            pick = min(ENGINES, key=est.get)  # of the two, the one the estimates prefer
            fastest = min(ENGINES, key=t.get)
            right += pick == fastest
            ratios.append(t[pick] / t[fastest])
            tile = verdicts["tiled"].get("choices", {}).get("tile")
            print(f"{(n, c, h, o, k, s, p, d)} {tile} plan {plan.chosen.engine} tiled/im2col measured "
                  f"{t['tiled'] / t['im2col']:.2f} estimated {est['tiled'] / est['im2col']:.2f}", flush=True)
    mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"faster engine picked on {right} of {len(ratios)}; picked / fastest geometric mean {mean:.3f}, "
          f"worst {max(ratios):.2f}")


if __name__ == "__main__":
    main()
