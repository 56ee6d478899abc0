"""convgrad.dask on a real ``distributed.LocalCluster`` of 2 worker processes, started here: the
ops against whole-array results, a worker killed mid-compute (bitwise the same result, float32
and complex64), an oversized chunking refused before any task runs, a zarr volume written back
to zarr by the workers, and a volume several times a worker's memory.

A LocalCluster runs its scheduler in the client's process, and distributed keeps, for debugging,
the last ``distributed.admin.low-level-log-length`` (1000) batches of messages to each worker,
task specs included: with that default the client grew 153 MiB over the larger-than-a-worker
pattern (four graphs of 1728 blocks). The fixture sets it to 0, as docs/dask.md recommends.

The full "larger than a worker" run (a 2.78 GiB input, workers limited to 1 GiB) is behind
CONVGRAD_DASK_LARGE=1 or CONVGRAD_TEST_PROFILE=nightly (many minutes here); the default run does
the same checks on a small volume.
"""

# ruff: noqa: E402  (dask is imported only when the extra is installed)
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import convgrad
import convgrad.dask as cgd

LIMIT = 2**30  # each worker's memory_limit
LARGE = os.environ.get("CONVGRAD_DASK_LARGE") == "1" or os.environ.get("CONVGRAD_TEST_PROFILE") == "nightly"
# No debugging log of the messages to the workers (read when the scheduler starts and when a
# worker joins, so it stays set while the cluster lives: the kill test's new worker joins later).
QUIET = {"distributed.admin.low-level-log-length": 0}


@pytest.fixture(scope="module")
def client():
    with dask.config.set(QUIET), distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, memory_limit=LIMIT,
            dashboard_address=":0") as cluster, distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=120)
        settings = cgd.setup(c)
        assert len(settings) == 2
        assert all(int(s["workspace_bytes"]) == LIMIT // 8 for s in settings.values())
        yield c


def _pids(client) -> dict:
    return client.run(os.getpid)


def _worker_state() -> tuple:
    """What convgrad.dask.setup leaves on a worker: its workspace and scratch budgets and the
    thread count an engine may use inside a task."""
    from convgrad.engines import _scratch, _threads

    return os.environ.get("CONVGRAD_WORKSPACE_BYTES"), _scratch.POOL_BYTES, _threads.allowed()


def test_setup_budgets_each_worker_and_pins_one_thread_per_task(client):
    want = (str(LIMIT // 8), LIMIT // 32, 1)  # 128 MiB workspace, 32 MiB scratch, one thread
    assert set(client.run(_worker_state).values()) == {want}
    assert client.submit(_worker_state, pure=False).result() == want  # inside a task's thread


def test_the_ops_on_a_cluster_equal_the_whole_arrays(client):
    rng = np.random.default_rng(3)
    for kw, chunks in [({"padding": "same"}, (1, 3, 7, 9)),
                       ({"stride": 2, "padding": ((2, -1), 1)}, (2, 3, 11, 6)),
                       ({"dilation": 2, "groups": 3, "padding": "full"}, (1, 3, 16, 5))]:
        x, w = rng.standard_normal((2, 3, 25, 19)), rng.standard_normal((6, 3 // kw.get("groups", 1), 3, 3))
        y = convgrad.conv(x, w, **kw)
        dy = rng.standard_normal(y.shape)
        xd, dyd = da.from_array(x, chunks=chunks), da.from_array(dy, chunks=(1, 6, 5, 4))
        got = client.compute([cgd.conv(xd, w, **kw), cgd.conv_input_grad(dyd, w, x.shape, **kw),
                              cgd.conv_filter_grad(xd, dyd, w.shape, **kw),
                              cgd.conv_transpose(dyd, w, output_shape=x.shape, **kw)], sync=True)
        want = [y, convgrad.conv_input_grad(dy, w, x.shape, **kw),
                convgrad.conv_filter_grad(x, dy, w.shape, **kw),
                convgrad.conv_transpose(dy, w, output_shape=x.shape, **kw)]
        for g, v in zip(got, want):
            assert g.shape == v.shape
            assert np.max(np.abs(g - v)) <= 1e-12 * max(1.0, np.max(np.abs(v)))


def test_an_oversized_chunking_is_refused_from_the_workers_memory_before_any_task_runs(client):
    x = da.zeros((1, 8, 256, 256, 256), dtype=np.float32, chunks=(1, 8, 256, 256, 256))
    with pytest.raises(ValueError, match=r"per-block budget block_bytes=536,870,912; rechunk x to chunks="):
        cgd.conv(x, np.ones((8, 8, 3, 3, 3), np.float32), padding="same")
    # nothing reached the scheduler: a submitted graph would hold x's chunk tasks (earlier tests'
    # tasks may still be being released, so the scheduler need not be empty)
    assert client.run_on_scheduler(lambda dask_scheduler: sum(
        1 for k in dask_scheduler.tasks if isinstance(k, tuple) and k[0] == x.name)) == 0


def test_a_conv_of_a_zarr_volume_written_to_zarr_by_the_workers(client, tmp_path):
    # x stored as zarr (chunks of 20 x 12), read by the workers; y written by them: the client
    # receives the store tasks' empty results, no block of y. Stride 1 'same' keeps y's chunks
    # x's, regular as zarr wants them.
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 40, 36)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    da.from_array(x, chunks=(1, 3, 20, 12)).to_zarr(str(tmp_path / "x.zarr"))
    xz = da.from_zarr(str(tmp_path / "x.zarr"))
    assert xz.chunks == ((1, 1), (3,), (20, 20), (12, 12, 12))
    y = cgd.conv(xz, w, padding="same")
    received = client.compute(y.to_zarr(str(tmp_path / "y.zarr"), compute=False), sync=True)
    assert received.nbytes == 0
    stored = zarr.open_array(str(tmp_path / "y.zarr"), mode="r")
    assert stored.chunks == (1, 5, 20, 12)
    want = convgrad.conv(x, w, padding="same")
    assert stored.dtype == want.dtype
    assert np.max(np.abs(stored[...] - want)) <= 2e-5 * np.max(np.abs(want))


def _tasks(dask_scheduler: object = None) -> int:
    """How many tasks the scheduler holds."""
    return len(dask_scheduler.tasks)


def _blocks_done(dask_scheduler: object = None) -> int:
    """How many of convgrad's block tasks the scheduler holds results of."""
    return sum(1 for k, ts in dask_scheduler.tasks.items()
               if isinstance(k, tuple) and str(k[0]).startswith("convgrad-") and ts.state == "memory")


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_a_worker_killed_mid_compute_changes_no_bit(client, dtype):
    # complex64: the client's planner (its compiled kernels loaded) splits blocks into three real
    # convs, the blocks run that split whatever the restarted worker would choose; a block it
    # runs natively is pinned by its engine (method=). Which blocks split depends on the
    # process's loaded and cached kernels (a fresh CI machine: some of them), not on the worker.
    from convgrad.dask._blocks import Block
    from convgrad.engines import warm_up

    warm_up(("float32",))
    rng = np.random.default_rng(4)

    def draw(shape):
        a = rng.standard_normal(shape)
        return (a + 1j * rng.standard_normal(shape) if dtype == "complex64" else a).astype(dtype)

    side = 48 if dtype == "float32" else 32
    x = da.from_array(draw((2, 4, side, side, side)), chunks=(1, 4, side // 3, side // 2, side // 2))
    dy = da.from_array(draw((2, 6, side, side, side)), chunks=(1, 6, side // 3, side // 2, side // 2))
    w = draw((6, 4, 3, 3, 3))

    def ops():
        return [cgd.conv(x, w, padding="same"), cgd.conv_filter_grad(x, dy, w.shape, padding="same"),
                cgd.conv_input_grad(dy, w, x.shape, padding="same")]

    splits = {t[1].split is not None for op in ops() for t in dict(op.__dask_graph__()).values()
              if isinstance(t, tuple) and len(t) > 1 and isinstance(t[1], Block)}
    assert splits == {False} if dtype == "float32" else True in splits, splits

    start = time.perf_counter()
    calm = client.compute(ops(), sync=True)
    took = time.perf_counter() - start
    client.cancel(client.futures)
    deadline = time.monotonic() + 60
    while client.run_on_scheduler(_tasks) and time.monotonic() < deadline:  # else the rerun finds them
        time.sleep(0.05)
    pids = _pids(client)
    futures = client.compute(ops())
    deadline = time.monotonic() + took
    while not client.run_on_scheduler(_blocks_done) and time.monotonic() < deadline:  # the first block
        time.sleep(0.01)
    victim = sorted(pids.values())[0]
    assert not all(f.done() for f in futures)  # killed mid-compute
    os.kill(victim, signal.SIGKILL)
    stormy = client.gather(futures)
    client.wait_for_workers(2, timeout=60)
    assert victim not in _pids(client).values()  # it did die, and the nanny started another
    assert set(client.run(_worker_state).values()) == {(str(LIMIT // 8), LIMIT // 32, 1)}  # the plugin
    for a, b in zip(calm, stormy):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def _worker_peaks(client) -> dict:
    """Each worker's peak resident memory (VmHWM) in bytes."""
    def hwm() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    return client.run(hwm)


def _rss() -> int:
    """This process's resident memory."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def test_a_volume_larger_than_a_worker(client):
    # x generated lazily on the workers, never whole anywhere; checked by identities that do not
    # use the op under test: box sums at sampled outputs (forward), the dot test (filter
    # gradient: <dw, v> = <dy, conv(x, v)>; input gradient: <dx, x> = <dy, conv(x, w)>).
    # LARGE: x 2.78 GiB in 1728 blocks. With 90^3 chunks (512 blocks) a worker peaked at 82 %:
    # it holds the x chunks its neighbours' halos still need, about two planes of the volume.
    side, c, o, chunk = (720, 2, 2, 60) if LARGE else (96, 2, 4, 48)
    rng = da.random.default_rng(0)
    x = rng.standard_normal((1, c, side, side, side), dtype=np.float32, chunks=(1, c, chunk, chunk, chunk))
    dy = rng.standard_normal((1, o, side, side, side), dtype=np.float32, chunks=(1, o, chunk, chunk, chunk))
    box = np.ones((o, c, 3, 3, 3), np.float32)
    # The client's baseline after its first plans: importing the engines (Numba, SciPy's FFT) on
    # the first graph is not growth with the data.
    cgd.conv(x[:, :, :chunk, :chunk, :chunk], box, padding="same")
    pids, rss, start = _pids(client), _rss(), time.perf_counter()

    y = cgd.conv(x, box, padding="same")
    points = [(0, 0, 0), (side // 2, chunk - 1, chunk), (side - 1, 5, side - 2)]
    got = client.compute([y[0, o - 1, i, j, k] for i, j, k in points], sync=True)
    for (i, j, k), g in zip(points, got):
        window = x[0, :, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, max(k - 1, 0):k + 2]
        want = client.compute(window.astype(np.float64).sum(), sync=True)
        assert abs(g - want) <= 1e-5 * max(1.0, abs(want))
    total = client.compute(y.astype(np.float64).sum(), sync=True)  # every block runs
    assert np.isfinite(total)

    v = np.random.default_rng(1).standard_normal(box.shape).astype(np.float32)
    dw = client.compute(cgd.conv_filter_grad(x, dy, box.shape, padding="same"), sync=True)
    rhs = client.compute((dy.astype(np.float64) * cgd.conv(x, v, padding="same")).sum(), sync=True)
    assert abs(np.sum(dw.astype(np.float64) * v) - rhs) <= 1e-5 * abs(rhs) + 1e-3

    dx = cgd.conv_input_grad(dy, v, x.shape, padding="same")
    lhs = client.compute((dx.astype(np.float64) * x).sum(), sync=True)
    assert abs(lhs - rhs) <= 1e-5 * abs(rhs) + 1e-3

    peaks = _worker_peaks(client)
    assert _pids(client) == pids  # no worker was killed or restarted
    assert max(peaks.values()) < 0.8 * LIMIT, peaks
    grown = _rss() - rss  # the LocalCluster's scheduler included: it runs in this process
    print(f"\nside {side}: x {x.nbytes / 2**30:.2f} GiB, y {y.nbytes / 2**30:.2f} GiB; worker peaks (MiB) "
          f"{[p // 2**20 for p in peaks.values()]}; client growth {grown / 2**20:.1f} MiB; "
          f"{time.perf_counter() - start:.0f} s")
    assert grown < 100 * 2**20


def test_the_volume_example_of_the_docs_runs_on_the_cluster(client, tmp_path):
    # docs/dask.md's example, at side 48 in 24^3 chunks: it runs as printed (its y.zarr written
    # in a temporary folder: the workers' own, relative to their working folder, would be
    # another), and its y and filter gradient are the whole arrays' (float32 partials summed in
    # float64: 2e-5).
    zarr = pytest.importorskip("zarr")
    store = str(tmp_path / "y.zarr")
    text = (Path(__file__).parents[2] / "docs" / "dask.md").read_text()
    code = text.split("<!-- dask-volume-example -->\n```python\n", 1)[1].split("```", 1)[0]
    assert "side, chunk = 720, 60" in code
    scope: dict = {}
    assert code.count('"y.zarr"') == 1
    small = code.replace("side, chunk = 720, 60", "side, chunk = 48, 24").replace('"y.zarr"', repr(store))
    exec(compile(small, "docs/dask.md", "exec"), scope)
    x, dy = client.compute([scope["x"], scope["dy"]], sync=True)
    y = convgrad.conv(x, scope["w"], padding="same")
    assert np.max(np.abs(zarr.open_array(store, mode="r")[...] - y)) <= 2e-5 * np.max(np.abs(y))
    want = convgrad.conv_filter_grad(x, dy, scope["w"].shape, padding="same")
    assert scope["dw"].dtype == want.dtype
    assert np.max(np.abs(scope["dw"] - want)) <= 2e-5 * np.max(np.abs(want))
