"""Concurrency: 8 threads x 300 calls mixing ops, dtypes and engines, bitwise equal to one thread.

The calls are every op (conv, its two gradients, conv_transpose, conv_general and prepared convs
shared by all threads) on a few geometries chosen so that every engine runs on some of them, in
float64 and float32 (and float16 / int64 on one geometry), with ``method="auto"`` and with each
engine that accepts the call. The engines keep per-thread scratch memory, the planner keeps a
shared cache of plans (smaller than the number of calls, so threads evict each other's plans), and
Numba's parallel loops run from several Python threads at once: each result must be bitwise the
one the same call gave in a single thread, and no operand may be written to (they are read-only).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

import convgrad
import oracle
from checks import assert_close, assert_float32_filter_grad
from convgrad._plan import default_planner

THREADS, CALLS_PER_THREAD = 8, 300

# (x_shape, w_shape, kwargs), channels-first. Which engines accept them (checked below):
GEOMETRIES = [
    ((2, 4, 12, 12), (6, 4, 3, 3), {"padding": 1}),  # winograd, offset_gemm, split_kernel, tiled, gather
    ((2, 4, 13, 11), (8, 2, 3, 3), {"stride": 2, "padding": "same", "groups": 2}),  # subpixel
    ((1, 6, 10, 10), (6, 1, 3, 3), {"padding": 1, "groups": 6}),  # depthwise
    ((2, 3, 20), (4, 3, 9), {"padding": "full", "dilation": 2}),
    ((1, 2, 6, 5, 7), (3, 2, 2, 3, 2), {"stride": (2, 1, 2), "padding": [(1, 0), (1, 1), (0, 2)]}),
    ((1, 2, 24, 24), (3, 2, 11, 11), {"padding": 5}),  # fft's cost range
]
EXTRA_DTYPES = {0: (np.float16, np.int64)}  # geometry index -> dtypes beyond float64 and float32


@dataclass(frozen=True)
class Call:
    label: str
    fn: object
    args: tuple
    kwargs: dict

    def __call__(self):
        return self.fn(*self.args, **self.kwargs)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # an engine that writes into an operand raises instead
    return a


def _operands(rng, x_shape, w_shape, kw, dtype):
    y_shape = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw).y_shape()
    if np.dtype(dtype).kind == "i":
        draw = lambda s: rng.integers(-50, 50, size=s).astype(dtype)  # noqa: E731
    else:
        draw = lambda s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    return _frozen(draw(x_shape)), _frozen(draw(w_shape)), _frozen(draw(y_shape))


def _candidates():
    """Every call to try: ops x dtypes x ('auto' and each engine), and prepared convs."""
    rng = np.random.default_rng(0)
    methods = ("auto", *convgrad.engine_names())
    calls = []
    for i, (xs, ws, kw) in enumerate(GEOMETRIES):
        for dtype in (np.float64, np.float32, *EXTRA_DTYPES.get(i, ())):
            x, w, dy = _operands(rng, xs, ws, kw, dtype)
            name = f"g{i}-{np.dtype(dtype).name}"
            for m in methods:
                mkw = {**kw, "method": m}
                calls += [Call(f"{name}-conv-{m}", convgrad.conv, (x, w), mkw),
                          Call(f"{name}-input_grad-{m}", convgrad.conv_input_grad, (dy, w, xs), mkw),
                          Call(f"{name}-filter_grad-{m}", convgrad.conv_filter_grad, (x, dy, ws), mkw)]
            calls.append(Call(f"{name}-transpose", convgrad.conv_transpose, (dy, w),
                              {**kw, "output_shape": xs}))
            if "padding" in kw and not isinstance(kw["padding"], str):
                general = {"stride": kw.get("stride", 1), "rhs_dilation": kw.get("dilation", 1),
                           "feature_group_count": kw.get("groups", 1),
                           "padding": kw["padding"]}
                calls.append(Call(f"{name}-general", convgrad.conv_general, (x, w), general))
            for m in ("auto", "im2col"):  # one PreparedConv, shared by every thread
                p = convgrad.prepare(xs, ws, dtype, method=m, **kw)
                calls += [Call(f"{name}-prepared-{m}", p, (x, w), {}),
                          Call(f"{name}-prepared-input_grad-{m}", p.input_grad, (dy, w), {}),
                          Call(f"{name}-prepared-filter_grad-{m}", p.filter_grad, (x, dy), {})]
    return calls


def _runnable(calls):
    """The calls that run; an engine may decline a call, only with the planner's refusal."""
    kept = []
    for call in calls:
        try:
            call()
        except ValueError as e:
            if "cannot run this" not in str(e):
                raise
        else:
            kept.append(call)
    return kept


@pytest.fixture(scope="module")
def reference():
    """(calls, single-threaded results), planned after every kernel they use has loaded: a lazy
    plan charges a kernel's load time until it is loaded, and so may choose another engine."""
    calls = _runnable(_candidates())
    default_planner().clear()
    results = [call() for call in calls]
    return calls, results


def test_reference_covers_every_engine(reference):
    calls, _ = reference
    assert len(calls) >= CALLS_PER_THREAD
    used = {c.label.rsplit("-", 1)[1] for c in calls}
    assert set(convgrad.engine_names()) <= used, set(convgrad.engine_names()) - used


def test_threads_give_bitwise_the_single_threaded_results(reference):
    calls, want = reference
    default_planner().clear()  # the threads plan concurrently, and evict each other's plans
    barrier = threading.Barrier(THREADS)
    mismatches: list[str] = []
    errors: list[BaseException] = []

    def work(seed):
        order = random.Random(seed).sample(range(len(calls)), k=min(CALLS_PER_THREAD, len(calls)))
        barrier.wait()
        try:
            for i in order:
                got = calls[i]()
                if got.dtype != want[i].dtype or got.shape != want[i].shape or not np.array_equal(
                        got, want[i], equal_nan=True) or got.tobytes() != want[i].tobytes():
                    mismatches.append(f"thread {seed}: {calls[i].label}")
        except BaseException as e:  # re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    assert not mismatches, f"{len(mismatches)} results differ from one thread's: {mismatches[:10]}"


FIRST_USE = """
import threading
import numpy as np
import convgrad

x, w = np.ones((1, 1, 6)), np.ones((1, 1, 3))
expected = np.full((1, 1, 4), 3.0)
barrier, errors = threading.Barrier(8), []

def first_call(method):
    barrier.wait()  # every thread makes the process's first call at once
    try:
        np.testing.assert_array_equal(convgrad.conv(x, w, method=method), expected)
    except Exception as e:
        errors.append(repr(e))

threads = [threading.Thread(target=first_call, args=(m,)) for m in ["im2col", "auto"] * 4]
[t.start() for t in threads]
[t.join() for t in threads]
assert not errors, errors
"""


def test_the_first_calls_of_a_process_from_eight_threads():
    """The engines load on first use; threads that came while one was loading them were sent on
    with an empty registry ("unknown method='im2col'; expected ... one of ()"), 7 of 8 threads here."""
    import subprocess
    import sys

    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", FIRST_USE], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]


def test_small_ops_run_on_the_calling_thread(monkeypatch):
    """An op of fewer than SERIAL_FLOPS runs its parallel loops on one thread (a
    second thread's wake-up and barrier cost more than it saves, and stall when another process
    holds a core); a larger one gets every allowed thread; the limit ends with the call."""
    numba = pytest.importorskip("numba")
    from convgrad.engines import _threads

    monkeypatch.setattr(_threads, "free_cores", lambda: 1 << 10)  # the size alone, whatever the load
    counts: list[int] = []
    real = numba.set_num_threads
    monkeypatch.setattr(numba, "set_num_threads", lambda n: counts.append(n) or real(n))
    rng = np.random.default_rng(0)
    full = min(_threads.allowed(), numba.config.NUMBA_NUM_THREADS)
    for x_shape, serial in (((1, 4, 8, 8), True), ((4, 64, 64, 64), False)):
        x, w = rng.standard_normal(x_shape), rng.standard_normal((x_shape[1], 1, 3, 3))
        kw = {"padding": 1, "groups": x_shape[1], "method": "depthwise"}
        geom = convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding=1, groups=x_shape[1])
        assert (geom.flops < _threads.SERIAL_FLOPS) == serial
        counts.clear()
        convgrad.conv(x, w, **kw)
        assert counts == [1 if serial else full]
        assert min(_threads.allowed(), numba.config.NUMBA_NUM_THREADS) == full


@pytest.mark.parametrize("x_shape, w_shape, kw, dtype, tile", [
    ((2, 8, 12, 12), (8, 8, 3, 3), {"padding": 1}, np.float64, 8),  # partial sums per core
    ((2, 32, 14, 14), (64, 32, 4, 4), {"padding": 1, "stride": 2}, np.float32, "6x64 runs"),  # shares
    ((1, 16, 10, 10, 10), (16, 16, 3, 3, 3), {"padding": 1}, np.float32, "8x48 thin"),  # chunks
])
def test_a_plan_made_under_a_thread_limit_splits_for_every_core(monkeypatch, x_shape, w_shape, kw, dtype,
                                                                 tile):
    """The filter gradient's partial results (partial sums, shares of rows, chunks) are fixed by the
    cores, not by the threads the caller allows when the plan is made: a plan made inside
    ``threadpool_limits(1)`` kept one share and ran on one thread after the limit was lifted. The
    results do not depend on the limit either."""
    from convgrad._plan import Planner
    from convgrad.engines import _threads

    rng = np.random.default_rng(0)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    x = rng.standard_normal(x_shape).astype(dtype)
    dy = rng.standard_normal(geom.y_shape("channels_first")).astype(dtype)
    plans, results = [], []
    for limit in (1, 2):
        monkeypatch.setattr(_threads, "_limits", lambda n=limit: n)
        plans.append(Planner().plan("filter_grad", geom, dtype, "tiled").choices)
        default_planner().clear()
        results.append(convgrad.conv_filter_grad(x, dy, w_shape, method="tiled", **kw))
    assert plans[0] == plans[1] and plans[0]["tile"] == tile
    assert results[0].tobytes() == results[1].tobytes()
    if dtype == np.float32:  # the values too, against the float64 loop oracle
        assert_float32_filter_grad(results[0], x.astype(np.float64), dy.astype(np.float64), w_shape,
                                   "channels_first", **kw)
    else:
        assert_close(results[0], oracle.filter_grad(x, dy, w_shape, **kw), dtype=dtype)


def test_the_benchmarks_competitor_keeps_a_core_busy_and_ends():
    """The contention run's busy process runs (spends CPU time) for the block and is gone after;
    the degradation and worst call come from the samples' medians."""
    import os
    import time

    from convgrad.cli.bench import report, suite

    with suite.busy_process(settle=0.2) as proc:
        # 50 ms of CPU time; on a loaded machine it may take longer than the settle to get them
        # (2 ticks in 0.2 s at load 20), so wait up to 10 s.
        deadline = time.monotonic() + 10
        while True:
            with open(f"/proc/{proc.pid}/stat") as f:  # utime + stime, clock ticks
                ticks = sum(int(v) for v in f.read().rsplit(")", 1)[1].split()[11:13])
            if ticks >= 0.05 * os.sysconf("SC_CLK_TCK") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert proc.poll() is None and ticks >= 0.05 * os.sysconf("SC_CLK_TCK")
    assert proc.poll() is not None
    rng = np.random.default_rng(0)
    quiet = {k: list(rng.uniform(1, 2, 9)) for k in ("convgrad", "convgrad_cf", "torch", "torch_cl")}
    busy = {k: list(rng.uniform(1, 5, 9)) for k in quiet}
    got = suite.contention(quiet, busy)
    for k in quiet:
        assert got[k]["degradation"] == pytest.approx(np.median(busy[k]) / np.median(quiet[k]))
        assert got[k]["worst"] == pytest.approx(max(busy[k]) / np.median(busy[k]))
    row = {"case": "c", "op": "forward", "ratio": {"torch": 1.0}, "contention": got,
           "ms": {k: float(np.median(v)) * 1e3 for k, v in quiet.items()}}
    variants = ("torch", "torch_cl")
    best = min(got[k]["contended_ms"] for k in variants) / min(row["ms"][k] for k in variants)
    assert report.framework_degradation(row, "torch") == pytest.approx(best)
    assert "| c | forward |" in report.contention_table([row])


_POOL_PROBE = """
import os, numba
from convgrad.engines import _threads
seen = []
real = numba.get_num_threads
numba.get_num_threads = lambda: seen.append(os.environ.get("OMP_WAIT_POLICY")) or real()
_threads.for_numba()  # what every engine calls before its parallel kernels
_threads.for_numba()
print(seen[0], os.environ.get("OMP_WAIT_POLICY"), len(seen))
"""


@pytest.mark.parametrize(("given", "want"), [(None, "PASSIVE None 1"), ("ACTIVE", "ACTIVE ACTIVE 1")])
def test_numbas_pool_starts_with_passive_waiting_and_restores_the_environment(given, want):
    """The first engine call of a process starts Numba's OpenMP pool with OMP_WAIT_POLICY=PASSIVE
    (read by OpenMP when it loads), once, and takes it out of the environment again; a caller's
    own policy is kept."""
    pytest.importorskip("numba")
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if given:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", _POOL_PROBE], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split("\n")[-2]
    assert out == want


def test_threads_that_claim_chunks_take_over_from_a_held_up_one(monkeypatch):
    """The depthwise kernels' threads claim chunks (_numba._claim) instead of Numba's equal static
    parts: every chunk is taken once, and while the thread with the first chunk is held up the
    other takes the rest (with Numba's static split it keeps half, 32 of 64, in every run)."""
    numba = pytest.importorskip("numba")
    from convgrad.engines import _threads
    from convgrad.engines._kernels._numba import _claim

    monkeypatch.setattr(_threads, "free_cores", lambda: 1 << 10)  # two threads, whatever the load
    if _threads.for_numba() < 2:
        pytest.skip("one thread")

    @numba.njit(parallel=True)
    def claim_all(owner, spin, sink):
        """owner[k] = the thread that claimed chunk k; the one with chunk 0 spins ``spin`` steps."""
        counter = np.zeros(1, dtype=np.int64)
        for _ in numba.prange(owner.size):
            k = _claim(counter)
            while k < owner.size:
                owner[k] = numba.get_thread_id()
                if k == 0:  # held up, as by another process on its core
                    s = 0.0
                    for q in range(spin):
                        s += np.sqrt(q)
                    sink[0] = s  # kept, so the loop is not optimised away
                k = _claim(counter)

    owner, sink = np.full(64, -1), np.zeros(1)
    claim_all(owner, 10, sink)
    runs = []
    for _ in range(5):  # on a loaded machine the other thread may not get a core during one spin
        owner[:] = -1
        claim_all(owner, 20_000_000, sink)
        assert (owner >= 0).all()
        runs.append(int((owner == owner[0]).sum()))
        if runs[-1] < 16:
            break
    assert min(runs) < 16, runs


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_depthwise_results_do_not_depend_on_the_thread_count(data_format):
    """With chunks claimed by whichever thread is free, each output (and each partial filter
    gradient, summed in chunk order) is still computed the same way: one and two threads give
    bitwise the same results, above the serial threshold."""
    numba = pytest.importorskip("numba")
    from convgrad.engines import _threads

    rng = np.random.default_rng(3)
    x_shape = (3, 40, 30, 29) if data_format == "channels_first" else (3, 30, 29, 40)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w_shape = (40, 1, 3, 3) if data_format == "channels_first" else (3, 3, 1, 40)
    w = rng.standard_normal(w_shape).astype(np.float32)
    kw = {"padding": 1, "groups": 40, "method": "depthwise", "data_format": data_format}
    y = convgrad.conv(x, w, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    results = []
    for n in (1, 2):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(_threads, "SERIAL_FLOPS", 0)
            m.setattr(_threads, "allowed", lambda n=n: n)
            results.append((convgrad.conv(x, w, **kw), convgrad.conv_input_grad(dy, w, x.shape, **kw),
                            convgrad.conv_filter_grad(x, dy, w.shape, **kw)))
    assert numba.config.NUMBA_NUM_THREADS < 2 or all(
        a.tobytes() == b.tobytes() for a, b in zip(*results))


@pytest.fixture
def loadavg(monkeypatch, tmp_path):
    """A fake /proc/loadavg for _threads.free_cores on a 4-core machine whose 4 cores the process
    may use: write(running) sets the runnable count it reads, of which this process runs one
    thread (the caller); the count is read again at once."""
    from convgrad.engines import _threads

    path = tmp_path / "loadavg"
    monkeypatch.setattr(_threads, "LOADAVG", str(path))
    monkeypatch.setattr(_threads, "_own_running", lambda: 1)
    monkeypatch.setattr(_threads, "_CORES", 4)
    monkeypatch.setattr(_threads, "_USABLE", 4)
    monkeypatch.setattr(_threads, "_free", [-1.0, 4])

    def write(running):
        path.write_text(f"0.52 0.58 0.59 {running}/312 4242\n")
        _threads._free[0] = -1.0

    return write


@pytest.mark.parametrize(("running", "free"), [(1, 4), (2, 3), (4, 1), (9, 1)])
def test_free_cores_leaves_out_the_other_runnable_threads(loadavg, running, free):
    """The caller is one of the runnable threads the kernel counts; every other one takes a core,
    but for this process's own (that stop by themselves: another library's spinning pool)."""
    from convgrad.engines import _threads

    loadavg(running)
    assert _threads.free_cores() == free
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_threads, "_own_running", lambda: running)
        _threads._free[0] = -1.0
        assert _threads.free_cores() == 4


def test_this_process_runs_the_thread_that_counts():
    """The real count of this process's runnable threads includes the caller (it runs)."""
    from convgrad.engines import _threads

    if not os.path.isdir(_threads.TASKS):
        pytest.skip("no /proc")
    assert _threads._own_running() >= 1


def test_free_cores_is_kept_briefly_and_never_fails(loadavg, monkeypatch):
    """A count is kept FREE_SECONDS (reading it costs more than a small call gains), then read
    again; a machine without the file (or with another format) counts every usable core, which
    the caller's thread limits still bound."""
    from convgrad.engines import _threads

    loadavg(1)
    assert _threads.free_cores() == 4
    loadavg(3)
    _threads._free[0] = time.monotonic()  # just counted: 4 free
    assert _threads.free_cores() == 4
    _threads._free[0] -= 2 * _threads.FREE_SECONDS
    assert _threads.free_cores() == 2
    for broken in ("", "0.1 0.2 0.3\n", "0.1 0.2 0.3 x/12 4\n"):
        with open(_threads.LOADAVG, "w") as f:
            f.write(broken)
        _threads._free[0] = -1.0
        assert _threads.free_cores() == 4
    monkeypatch.setattr(_threads, "LOADAVG", "/nonexistent/loadavg")
    _threads._free[0] = -1.0
    assert _threads.free_cores() == 4


def test_an_op_runs_on_the_free_cores_only(loadavg, monkeypatch):
    """Above the serial threshold a depthwise conv runs its loops on min(the caller's limit, the
    free cores) threads: all the pool's where nothing else runs, one where every other core is
    taken; results are bitwise the same."""
    numba = pytest.importorskip("numba")
    from convgrad.engines import _threads

    pool = numba.config.NUMBA_NUM_THREADS
    monkeypatch.setattr(_threads, "allowed", lambda: pool)
    counts: list[int] = []
    real = numba.set_num_threads
    monkeypatch.setattr(numba, "set_num_threads", lambda n: counts.append(n) or real(n))
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((4, 64, 64, 64)), rng.standard_normal((64, 1, 3, 3))
    kw = {"padding": 1, "groups": 64, "method": "depthwise"}
    got = []
    for running, want in ((1, min(pool, 4)), (4, 1)):
        loadavg(running)
        counts.clear()
        got.append(convgrad.conv(x, w, **kw))
        assert counts == [want]
    assert got[0].tobytes() == got[1].tobytes()


def test_beside_a_busy_process_a_call_leaves_it_its_core():
    """The real count: while the benchmark's busy process runs, at least one core is not free."""
    from convgrad.cli.bench import suite
    from convgrad.engines import _threads

    if _threads._CORES < 2 or not os.path.exists(_threads.LOADAVG):
        pytest.skip("one core, or no /proc/loadavg")
    with suite.busy_process(settle=0.2):
        _threads._free[0] = -1.0
        assert _threads.free_cores() <= _threads._CORES - 1
    _threads._free[0] = -1.0


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    ((4, 41, 39, 32), (3, 3, 32, 32), {"padding": 1, "stride": 2}),  # 31 MFLOP: above SERIAL_FLOPS
    ((8, 64, 64, 64), (3, 3, 1, 64), {"padding": 1, "groups": 64}),  # 38 MFLOP
])
def test_results_do_not_depend_on_how_many_cores_are_free(monkeypatch, x_shape, w_shape, kw):
    """The free cores decide each call's thread count, never its bits: every engine that takes
    these ops gives bitwise the same three results on one free core as on all of them."""
    from convgrad.engines import _threads, engine_names

    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
    kw = {**kw, "data_format": "channels_last"}
    dy = rng.standard_normal(convgrad.conv(x, w, **kw).shape).astype(np.float32)
    ops = {"conv": lambda m: convgrad.conv(x, w, method=m, **kw),
           "input_grad": lambda m: convgrad.conv_input_grad(dy, w, x.shape, method=m, **kw),
           "filter_grad": lambda m: convgrad.conv_filter_grad(x, dy, w.shape, method=m, **kw)}
    ran = 0
    for method in engine_names():
        for op, call in ops.items():
            got = []
            for free in (1 << 10, 1):
                monkeypatch.setattr(_threads, "free_cores", lambda free=free: free)
                try:
                    got.append(call(method))
                except (ValueError, TypeError):  # this engine does not take this op
                    break
            if len(got) == 2:
                ran += 1
                assert got[0].tobytes() == got[1].tobytes(), (method, op)
    assert ran >= 6


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_fft_engine_results_do_not_depend_on_the_free_cores(monkeypatch, data_format):
    """A large-kernel conv on the FFT engine (its DFT GEMMs through ``_threads.matmul``, on two
    threads where two cores are free): the three ops bitwise the same on one free core."""
    from convgrad.engines import _threads

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 8, 24, 24)).astype(np.float32)
    w = rng.standard_normal((8, 8, 15, 15)).astype(np.float32)
    if data_format == "channels_last":
        x, w = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    kw = {"padding": 7, "data_format": data_format, "method": "fft"}
    dy = rng.standard_normal(convgrad.conv(x, w, **kw).shape).astype(np.float32)
    monkeypatch.setattr(_threads, "allowed", lambda: 2)
    threads: list[int] = []
    real = _threads.shared
    monkeypatch.setattr(_threads, "shared", lambda: threads.append(real()) or threads[-1])
    got = []
    for free in (2, 1):
        monkeypatch.setattr(_threads, "free_cores", lambda free=free: free)
        threads.clear()
        got.append([convgrad.conv(x, w, **kw), convgrad.conv_input_grad(dy, w, x.shape, **kw),
                    convgrad.conv_filter_grad(x, dy, w.shape, **kw)])
        assert threads and set(threads) == {free}  # the products ran on that many threads
    for every, one in zip(*got):
        assert every.tobytes() == one.tobytes()


def test_a_call_counts_its_threads_once_for_all_its_parallel_loops(monkeypatch):
    """A 3-D tiled forward runs two parallel loops (the padding pass, the tiles): the thread pools'
    limits are read, and Numba's count set, once per call (each took 16 us), and again at the next
    call, which sees a thread limit set in between; results against the loop oracle."""
    numba = pytest.importorskip("numba")
    from threadpoolctl import threadpool_limits

    from convgrad.engines import _kernels, _threads

    reads, sets, launches = [], [], []
    real_limits, real_set = _threads._limits, numba.set_num_threads
    monkeypatch.setattr(_threads, "_limits", lambda: reads.append(1) or real_limits())
    monkeypatch.setattr(numba, "set_num_threads", lambda n: sets.append(n) or real_set(n))
    for name in ("pad_copy", "tiled_forward"):
        kernel = getattr(_kernels, name)
        spy = (lambda k: lambda *a: launches.append(k.__name__) or k(*a))(kernel)
        spy.signatures, spy.py_func, spy._cache = kernel.signatures, kernel.py_func, kernel._cache
        monkeypatch.setattr(_kernels, name, spy)
    monkeypatch.setattr(_threads, "free_cores", lambda: 2)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 24, 24, 24, 16)).astype(np.float32)  # 1.8 MB: the parallel pad
    w = rng.standard_normal((3, 3, 3, 16, 16)).astype(np.float32)
    want = oracle.x_from_first(oracle.conv(oracle.x_to_first(x.astype(np.float64), "channels_last"),
                                           oracle.w_to_first(w.astype(np.float64), "channels_last"),
                                           padding=1), "channels_last")
    kw = {"padding": 1, "data_format": "channels_last", "method": "tiled"}
    convgrad.conv(x, w, **kw)  # planned
    for limit, threads in ((None, min(2, numba.config.NUMBA_NUM_THREADS)), (1, 1)):
        reads.clear(), sets.clear(), launches.clear()
        with threadpool_limits(limit):
            got = convgrad.conv(x, w, **kw)
        assert launches == ["pad_copy", "tiled_forward"] and len(reads) == 1 and sets == [threads]
        assert_close(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
