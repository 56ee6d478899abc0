"""The float32 filter gradient with and without the runs kernel (engines/_kernels/filter_runs.py)
or the thin one (engines/_kernels/thin_filter.py), against PyTorch's ``torch.nn.grad.conv*d_weight``
on NCHW and channels_last, both layouts.

Run: ``python benchmarks/bench_filter_grad.py [--calls 21] [--rounds 3] [--cases stem_7x7_s2,...]
[--switch RUNS|THIN] [--one-thread]``.
The cases are the bench suite's (``convgrad.cli.bench.suite``; a transposed case times the filter
gradient of the conv it transposes). convgrad runs ``method='auto'`` with ``tiled.RUNS`` (or
``tiled.THIN``) on ("runs", "thin") and off ("tiles": the plan without that kernel, tiled or
another engine), the planner's kept plans dropped at each switch. ``--one-thread`` runs every
contestant on one thread (convgrad under ``_threads.serial_under``, PyTorch with 1 thread): on a
loaded machine the CPU times of one thread compare kernels best. Per round, each contestant makes
one untimed call and ``--calls`` timed calls back to back; rounds alternate the order; each
figure is the median over rounds of the per-round medians, wall time (and, in brackets, process
CPU time, which a loaded machine inflates less). PyTorch runs with 2 threads (1 with
``--one-thread``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import convgrad
from convgrad._plan import default_planner
from convgrad.cli.bench import suite
from convgrad.engines import _threads, tiled, warm_up

CASES = "stem_7x7_s2,resnet_3x3_deep,resnet_3x3,resnet_1x1,transposed_k4_s2,strided_3x3_s2,dilated_3x3_d2"


def _with(switch, flag, f, one_thread):
    def call():
        if getattr(tiled, switch) != flag:
            setattr(tiled, switch, flag)
            default_planner().clear()
        with _threads.serial_under(0 if one_thread else SERIAL_FLOPS):
            return f()
    return call


SERIAL_FLOPS = 1 << 62  # serial_under's count for an op that keeps its threads


def _contestants(case, torch, switch="RUNS", one_thread=False):
    g = case.geometry()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(g.x_shape("channels_last")).astype(np.float32)
    dy = rng.standard_normal(g.y_shape("channels_last")).astype(np.float32)
    xf, dyf = (np.ascontiguousarray(np.moveaxis(a, -1, 1)) for a in (x, dy))
    kw = {"stride": case.stride, "padding": case.pad, "dilation": case.dilation}

    def last():
        return convgrad.conv_filter_grad(x, dy, g.kernel, data_format="channels_last", **kw)

    def first():
        return convgrad.conv_filter_grad(xf, dyf, g.kernel, **kw)

    on = switch.lower()
    fns = {}
    for layout, f in (("cl", last), ("cf", first)):
        fns[f"{on}_{layout}"] = _with(switch, True, f, one_thread)
        fns[f"tiles_{layout}"] = _with(switch, False, f, one_thread)
    if torch is not None:
        tx, tdy = torch.from_numpy(xf), torch.from_numpy(dyf)
        txl, tdyl = (t.to(memory_format=torch.channels_last if g.rank == 2 else torch.channels_last_3d)
                     for t in (tx, tdy))
        weight = torch.nn.grad.conv2d_weight if g.rank == 2 else torch.nn.grad.conv3d_weight
        shape = (g.out_channels, g.in_channels, *g.kernel)
        fns["torch_nchw"] = lambda: weight(tx, shape, tdy, **kw)
        fns["torch_cl"] = lambda: weight(txl, shape, tdyl, **kw)
    return fns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=21, help="timed calls per contestant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default=CASES)
    parser.add_argument("--switch", choices=("RUNS", "THIN"), default="RUNS",
                        help="the kernel turned on and off")
    parser.add_argument("--one-thread", action="store_true", help="every contestant on one thread")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1 if args.one_thread else 2)
    except ImportError:
        torch = None
    warm_up(("float32",))
    for case in suite.get_cases(args.cases.split(",")):
        fns = _contestants(case, torch, args.switch, args.one_thread)
        on = args.switch.lower()
        wall: dict[str, list[float]] = {k: [] for k in fns}
        cpu: dict[str, list[float]] = {k: [] for k in fns}
        loads = []
        for r in range(args.rounds):
            for k in list(fns)[:: 1 if r % 2 == 0 else -1]:
                fns[k]()
                ws, cs = [], []
                for _ in range(args.calls):
                    t, c = time.perf_counter(), time.process_time()
                    fns[k]()
                    ws.append(time.perf_counter() - t)
                    cs.append(time.process_time() - c)
                wall[k].append(statistics.median(ws))
                cpu[k].append(statistics.median(cs))
            loads.append(os.getloadavg()[0])
        w = {k: statistics.median(v) for k, v in wall.items()}
        c = {k: statistics.median(v) for k, v in cpu.items()}
        line = " ".join(f"{k} {1e3 * w[k]:.2f} ({1e3 * c[k]:.2f}) ms" for k in fns)
        ratios = f"{on}/tiles CL {w[on + '_cl'] / w['tiles_cl']:.2f} CF {w[on + '_cf'] / w['tiles_cf']:.2f}"
        if torch is not None:
            best = min(w["torch_nchw"], w["torch_cl"])
            ratios += (f"; {on}_cl/best torch {w[on + '_cl'] / best:.2f}, {on}_cf/torch NCHW "
                       f"{w[on + '_cf'] / w['torch_nchw']:.2f}, {on}_cf/torch channels_last "
                       f"{w[on + '_cf'] / w['torch_cl']:.2f}")
        print(f"{case.name} (load {min(loads):.1f}-{max(loads):.1f}): {line}\n    {ratios}", flush=True)


if __name__ == "__main__":
    main()
