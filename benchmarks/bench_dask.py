"""convgrad.dask on a LocalCluster of 2 worker processes against whole-array convgrad in one
process: wall time and peak resident memory per op, for a 3-D volume and a 2-D batch.

Run: ``python benchmarks/bench_dask.py [--repeats 3] [--memory-limit 1GiB]``. Each worker runs
one thread (``convgrad.dask.setup``); the whole-array calls run with this process's threads.
Peaks are VmHWM, reset before each op (``/proc/self/clear_refs``), so each includes the
process's baseline (~150-250 MiB for a dask worker). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import convgrad


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def _held(name: str, dask_scheduler=None) -> int:
    """How many of the scheduler's tasks belong to the array ``name``."""
    return sum(1 for k in dask_scheduler.tasks if isinstance(k, tuple) and k[0] == name)


CASES = {
    # name: (x shape, w shape, padding, x chunks)
    "3-D 192^3, 4->8 ch, 3x3x3 same": ((1, 4, 192, 192, 192), (8, 4, 3, 3, 3), "same", (1, 4, 96, 96, 96)),
    "2-D batch 64x16x128^2, 3x3 same": ((64, 16, 128, 128), (16, 16, 3, 3), "same", (8, 16, 128, 128)),
}


def _ops(lib, x, w, dy, padding):
    return {
        "forward": lambda: lib.conv(x, w, padding=padding),
        "input_grad": lambda: lib.conv_input_grad(dy, w, x.shape, padding=padding),
        "filter_grad": lambda: lib.conv_filter_grad(x, dy, w.shape, padding=padding),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-limit", default="1GiB")
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster, wait

    import convgrad.dask as cgd

    convgrad.engines.warm_up()
    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=args.memory_limit,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        cgd.setup(client)
        for name, (xs, ws, padding, chunks) in CASES.items():
            rng = np.random.default_rng(0)
            x = rng.standard_normal(xs, dtype=np.float32)
            w = rng.standard_normal(ws, dtype=np.float32)
            dy = rng.standard_normal(convgrad.conv(x, w, padding=padding).shape, dtype=np.float32)
            # inputs spread over the workers once (persisted), as they would be read from storage
            xd = client.persist(da.from_array(x, chunks=chunks))
            dyd = client.persist(da.from_array(dy, chunks=(chunks[0], dy.shape[1], *chunks[2:])))
            wait([xd, dyd])
            whole, blocked = _ops(convgrad, x, w, dy, padding), _ops(cgd, xd, w, dyd, padding)
            for op in whole:
                times, peaks = [], []
                for _ in range(args.repeats):
                    _reset_peak()
                    t = time.perf_counter()
                    want = whole[op]()
                    times.append(time.perf_counter() - t)
                    peaks.append(_peak())
                dtimes, dpeaks = [], []
                for _ in range(args.repeats):
                    client.run(_reset_peak)
                    lazy = blocked[op]()
                    t = time.perf_counter()
                    fut = client.persist(lazy)  # results stay on the workers
                    wait(fut)
                    dtimes.append(time.perf_counter() - t)
                    dpeaks.append(max(client.run(_peak).values()))
                    got = fut.compute()
                    # forget the results, or the next repeat finds its (identical) keys done
                    client.cancel(fut)
                    del fut
                    while client.run_on_scheduler(_held, lazy.name):
                        time.sleep(0.1)
                err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
                rows.append((name, op, min(times), max(peaks), min(dtimes), max(dpeaks), err))
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} ({os.cpu_count()} cores)")
    print("| case | op | whole s | whole peak MiB | dask (2 workers) s | worker peak MiB | rel. err |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, op, t, p, dt, dp, err in rows:
        print(f"| {name} | {op} | {t:.2f} | {p / 2**20:.0f} | {dt:.2f} | {dp / 2**20:.0f} | {err:.1e} |")


if __name__ == "__main__":
    main()
