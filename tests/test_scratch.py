"""Scratch memory kept between calls: reused per name and thread, capped, and never handed to the
caller (a result must survive the next call of the same op)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
from checks import assert_close
from convgrad.engines import _scratch, engine_names
from strategies import budget


def test_a_name_gets_the_same_memory_back():
    _scratch.release()
    a = _scratch.scratch("t.a", (3, 4), np.float32)
    b = _scratch.scratch("t.a", (2, 5), np.float32)  # smaller: the same buffer, reshaped
    c = _scratch.scratch("t.b", (3, 4), np.float32)
    assert a.shape == (3, 4) and b.shape == (2, 5) and a.flags.c_contiguous
    assert np.shares_memory(a, b) and not np.shares_memory(a, c)
    d = _scratch.scratch("t.a", (100,), np.float64)  # larger: a new buffer replaces it
    assert not np.shares_memory(a, d) and _scratch.held() == 800 + 48
    convgrad.engines.release_scratch()
    assert _scratch.held() == 0


def test_the_pool_is_capped_and_per_thread(monkeypatch):
    _scratch.release()
    monkeypatch.setattr(_scratch, "POOL_BYTES", 1000)
    kept = _scratch.scratch("t.a", (100,), np.float64)  # 800 bytes: pooled
    beyond = _scratch.scratch("t.b", (100,), np.float32)  # 400 more would pass the cap: fresh
    assert _scratch.held() == 800
    assert not np.shares_memory(beyond, _scratch.scratch("t.b", (100,), np.float32))
    other = []
    thread = threading.Thread(target=lambda: other.append(_scratch.scratch("t.a", (100,), np.float64)))
    thread.start()
    thread.join()
    assert not np.shares_memory(kept, other[0])
    _scratch.release()


# A geometry each engine runs, all three ops.
CASES = {
    "fft": ((2, 20, 20, 4), (31, 31, 4, 6), {"padding": 15, "data_format": "channels_last"}),
    "depthwise": ((2, 4, 9, 9), (4, 1, 3, 3), {"padding": 1, "groups": 4}),
    "subpixel": ((2, 4, 12, 12), (6, 4, 3, 3), {"padding": 1, "stride": 2}),
}
LEFT_TO_OTHERS = {"winograd": "filter_grad"}  # an op the engine does not run


@pytest.mark.parametrize("method", engine_names())
def test_results_survive_the_next_call(method):
    """Each op's result is the caller's: a second call with other inputs leaves it unchanged."""
    x_shape, w_shape, kw = CASES.get(method, ((2, 4, 12, 12), (6, 4, 3, 3), {"padding": 1}))
    rng = np.random.default_rng(0)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    calls = {
        "forward": lambda x, w, dy: convgrad.conv(x, w, method=method, **kw),
        "input_grad": lambda x, w, dy: convgrad.conv_input_grad(dy, w, x_shape, method=method, **kw),
        "filter_grad": lambda x, w, dy: convgrad.conv_filter_grad(x, dy, w_shape, method=method, **kw),
    }
    y_shape = geom.y_shape(kw.get("data_format", "channels_first"))
    calls.pop(LEFT_TO_OTHERS.get(method, ""), None)
    for op, call in calls.items():
        args = [rng.standard_normal(s).astype(np.float32) for s in (x_shape, w_shape, y_shape)]
        first = call(*args)
        kept = first.copy()
        call(*(-2 * a for a in args))
        np.testing.assert_array_equal(first, kept, err_msg=f"{method} {op}")


def test_fft_results_match_the_oracle_across_calls_of_other_sizes():
    """The pool's buffers are reshaped between geometries: results stay exact."""
    rng = np.random.default_rng(1)
    for x_shape, w_shape in [((2, 3, 12, 10), (4, 3, 7, 5)), ((1, 2, 30, 9), (3, 2, 11, 3)),
                             ((2, 3, 12, 10), (4, 3, 7, 5))]:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        assert_close(convgrad.conv(x, w, padding=2, method="fft"), oracle.conv(x, w, padding=2))


def test_the_benchmark_counts_scratch_memory():
    """Peak memory in BENCHMARKS.md includes the pool: a warm pool would otherwise hide it."""
    from convgrad.cli.bench import suite

    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 20, 20, 4)).astype(np.float32), rng.standard_normal((31, 31, 4, 6))
    call = lambda: convgrad.conv(x, w.astype(np.float32), padding=15, data_format="channels_last",  # noqa: E731
                                 method="fft")
    y = call()  # the pool is warm now
    peak = suite._peak_bytes(call)
    assert _scratch.held() > y.nbytes
    assert peak >= _scratch.held() + y.nbytes


@pytest.mark.parametrize(("env", "pooled"), [("0", False), ("4096", True), ("abc", None), ("-1", None)])
def test_the_pool_size_comes_from_the_environment(monkeypatch, env, pooled):
    _scratch.release()
    monkeypatch.setenv("CONVGRAD_SCRATCH_BYTES", env)
    if pooled is None:
        with pytest.raises(ValueError, match="CONVGRAD_SCRATCH_BYTES"):
            _scratch.scratch("t.env", (10,), np.float32)
        return
    a = _scratch.scratch("t.env", (10,), np.float32)
    assert np.shares_memory(a, _scratch.scratch("t.env", (10,), np.float32)) == pooled
    _scratch.release()


def test_the_pool_and_the_next_workspace_keep_to_the_budget():
    """A pool kept from a large call is freed before a call whose budget it would crowd out."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 20, 20, 4)).astype(np.float32), rng.standard_normal((31, 31, 4, 6))
    w = w.astype(np.float32)
    convgrad.conv(x, w, padding=15, data_format="channels_last", method="fft")
    held = _scratch.held()
    plan = convgrad.make_plan("forward", convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding=15,
                                                                        data_format="channels_last"),
                              np.float32, "fft", 2**31)
    assert held > 0 and _scratch.held() == held  # room enough: kept
    small = plan.workspace_bytes + held - 1
    convgrad.conv(x, w, padding=15, data_format="channels_last", method="fft", workspace_bytes=small)
    assert _scratch.held() <= plan.workspace_bytes  # freed first, then refilled by this call only


@pytest.mark.parametrize("method", engine_names())
def test_each_engine_keeps_its_scratch_within_its_workspace(method):
    """What an op leaves in the pool is part of the workspace its plan declared."""
    x_shape, w_shape, kw = CASES.get(method, ((2, 4, 12, 12), (6, 4, 3, 3), {"padding": 1}))
    rng = np.random.default_rng(4)
    fmt = kw.get("data_format", "channels_first")
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    x, w = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
    dy = rng.standard_normal(geom.y_shape(fmt)).astype(np.float32)
    calls = {
        "forward": lambda: convgrad.conv(x, w, method=method, **kw),
        "input_grad": lambda: convgrad.conv_input_grad(dy, w, x_shape, method=method, **kw),
        "filter_grad": lambda: convgrad.conv_filter_grad(x, dy, w_shape, method=method, **kw),
    }
    calls.pop(LEFT_TO_OTHERS.get(method, ""), None)
    for op, call in calls.items():
        _scratch.release()
        call()
        plan = convgrad.make_plan(op, geom, np.float32, method, 2**31)
        assert _scratch.held() <= plan.workspace_bytes, (method, op)
    _scratch.release()


@pytest.mark.parametrize("method", ["fft", "tiled", "im2col"])
def test_threads_calling_at_once_get_their_own_scratch(method):
    """Two threads running the same op on different inputs at the same time get the results they
    would get alone (each thread has its own pool)."""
    x_shape, w_shape, kw = CASES.get(method, ((2, 4, 12, 12), (6, 4, 3, 3), {"padding": 1}))
    rng = np.random.default_rng(5)
    inputs = [tuple(rng.standard_normal(s).astype(np.float32) for s in (x_shape, w_shape)) for _ in range(2)]
    alone = [convgrad.conv(x, w, method=method, **kw) for x, w in inputs]
    results: dict[int, list[np.ndarray]] = {0: [], 1: []}
    start = threading.Barrier(2)

    def work(i: int) -> None:
        start.wait()
        for _ in range(20):
            results[i].append(convgrad.conv(*inputs[i], method=method, **kw))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert len(results[i]) == 20
        for got in results[i]:
            np.testing.assert_array_equal(got, alone[i])


@budget(25)
@given(shape=st.lists(st.integers(0, 40), min_size=1, max_size=3),
       dtype=st.sampled_from([np.uint8, np.float16, np.float32, np.float64, np.complex128]),
       big=st.booleans())
def test_aligned_arrays_start_on_a_cache_line(shape, dtype, big):
    # Large arrays come from mmap, which NumPy's allocator hands out 16 bytes past a line.
    shape = (*shape, 70_000) if big else tuple(shape)
    a = _scratch.aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    s = _scratch.scratch("t.aligned", shape, dtype)
    assert s.shape == shape and s.dtype == dtype
    if a.size:  # an empty array has no data to align (NumPy reports its own address)
        assert a.ctypes.data % 64 == 0 and s.ctypes.data % 64 == 0
    _scratch.release()


@pytest.mark.parametrize("method", ["tiled", "winograd"])
@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_engine_results_start_on_a_cache_line(method, fmt):
    # y is 200 KB: past glibc's mmap threshold, where np.empty would start 16 bytes past a line.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 40, 40)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    last = fmt == "channels_last"
    xa, wa = (x.transpose(0, 2, 3, 1).copy(), w.transpose(2, 3, 1, 0).copy()) if last else (x, w)
    kept = []  # results and odd-sized arrays kept alive, so each call gets memory at a new address
    for size in range(8):
        y = convgrad.conv(xa, wa, padding=1, data_format=fmt, method=method)
        assert y.ctypes.data % 64 == 0
        kept += [y, np.empty(1000 * size + 4)]
    assert_close(y.transpose(0, 3, 1, 2) if last else y, oracle.conv(x, w, padding=1),
                 rtol=1e-4, atol=1e-4, dtype=np.float32)
