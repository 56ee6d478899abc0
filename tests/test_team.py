"""Team calls (engines/_team.py): a claim-based kernel run by the caller and helper threads, the
caller waiting only for chunks that were claimed, never for a helper that did not start.

Each converted kernel is run through the public ops on 1, 2 and 3 threads (its results bitwise
equal, within rounding of the loop oracle, operands read-only); the mechanism itself on a small
kernel written for it: a pool held busy (the caller does every chunk), a helper slow on its chunk
(the caller waits for it), a helper that raises (the caller raises, never hangs).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
from checks import assert_close

pytest.importorskip("numba")

from convgrad.engines import _team, _threads
from convgrad.engines._kernels._numba import _claim, _finished, njit

TIMEOUT = 30  # seconds a call may take before the test calls it hung


@njit(nogil=True)
def _double(team, x, y, slow):  # pragma: no cover - compiled
    """y = 2 x in chunks of 4; chunk 0 first spins ``slow`` rounds (a helper held up mid-chunk)."""
    count = -(-x.size // 4)
    k = _claim(team)
    while k < count:
        spin = 0.0
        for i in range(slow if k == 0 else 0):
            spin += np.sqrt(i)
        for i in range(4 * k, min(x.size, 4 * k + 4)):
            y[i] = 2 * x[i] + 0.0 * spin
        _finished(team)
        k = _claim(team)
    return count


@njit(nogil=True)
def _claim_and_fail(team, x, y, slow):  # pragma: no cover - compiled
    """Claims a chunk and raises before finishing it."""
    _claim(team)
    raise ValueError("helper failed")


def _in_thread(fn):
    """fn() on a thread of its own: (result, error), or an AssertionError after TIMEOUT."""
    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the test
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive(), "the team call hung"
    return out.get("value"), out.get("error")


def _helper_first(helper_kernel, wait=True):
    """A kernel for ``_team.run`` whose helpers run ``helper_kernel`` and whose caller (with
    ``wait``) starts its own chunks only once a helper has claimed one (so that the helper's path
    is the one tested)."""
    caller = threading.get_ident()

    def kernel(team, *args):
        if threading.get_ident() != caller:
            return helper_kernel(team, *args)
        deadline = time.monotonic() + TIMEOUT
        while wait and team[0] == 0 and time.monotonic() < deadline:
            time.sleep(1e-4)
        return _double(team, *args)

    return kernel


def test_a_busy_pool_leaves_every_chunk_to_the_caller():
    """Every helper thread blocked: the call finishes on the caller alone, with the right values,
    and the queued helper is cancelled, never run later on the arrays."""
    pool = _threads._helpers()
    release = threading.Event()
    blockers = [pool.submit(release.wait) for _ in range(pool._max_workers)]
    try:
        x = np.arange(37, dtype=np.float64)
        x.flags.writeable = False
        y = np.full(37, np.nan)
        count, error = _in_thread(lambda: _team.run(_double, x, y, 0, threads=3))
        assert error is None and count == 10
        np.testing.assert_array_equal(y, 2 * np.arange(37))
    finally:
        release.set()
        for b in blockers:
            b.result(TIMEOUT)
    y[:] = np.nan  # a helper that ran late would write here
    time.sleep(0.05)
    assert np.isnan(y).all()


def test_the_caller_waits_for_a_chunk_a_helper_claimed():
    """A helper that claimed chunk 0 and spins in it: the caller runs out of chunks first and must
    wait for that one before it returns (a caller that did not wait returned chunk 0 unwritten)."""
    if _threads._helpers()._max_workers < 1:
        pytest.skip("no helper thread")
    x = np.arange(1, 41, dtype=np.float64)
    y = np.zeros(40)
    _, error = _in_thread(lambda: _team.run(_helper_first(_double), x, y, 3_000_000, threads=2))
    assert error is None
    np.testing.assert_array_equal(y, 2 * x)


def test_a_helper_that_raises_makes_the_caller_raise():
    """A helper that raised after claiming a chunk (which then never finishes), or before any: the
    caller raises its error, without hanging."""
    if _threads._helpers()._max_workers < 1:
        pytest.skip("no helper thread")
    x = np.arange(1, 41, dtype=np.float64)
    for helper, wait, kind in ((_claim_and_fail, True, ValueError), (lambda team, *args: 1 // 0, False,
                                                                     ZeroDivisionError)):
        kernel = _helper_first(helper, wait)
        _, error = _in_thread(lambda k=kernel: _team.run(k, x, np.zeros(40), 0, threads=2))
        assert isinstance(error, kind), error


# (x_shape, w_shape, keywords, method, ops, the team kernel that must run), channels-first x, w
BOTH = ("forward", "input_grad")
CASES = [
    ((2, 5, 13, 11), (7, 5, 3, 3), {"stride": 2, "padding": 1}, "tiled", BOTH, "regions_forward"),
    ((2, 9, 14, 12), (10, 9, 3, 3), {"padding": 2, "dilation": 2}, "winograd", BOTH, "winograd43"),
    ((2, 9, 300), (11, 9, 1), {}, "tiled", (*BOTH, "filter_grad"), "pointwise_first"),
    ((2, 8, 12, 12), (8, 1, 3, 3), {"padding": 1, "groups": 8}, "depthwise", (*BOTH, "filter_grad"),
     "depthwise2d_forward_first"),
    ((2, 40, 9, 11), (40, 1, 3, 3), {"padding": 1, "groups": 40, "data_format": "channels_last"}, "depthwise",
     (*BOTH, "filter_grad"), "depthwise2d_filter_grad"),
]


def _ops(x, w, dy, kw):
    return {"forward": lambda: convgrad.conv(x, w, **kw),
            "input_grad": lambda: convgrad.conv_input_grad(dy, w, x.shape, **kw),
            "filter_grad": lambda: convgrad.conv_filter_grad(x, dy, w.shape, **kw)}


def _oracle(op, x, w, dy, kw):
    return {"forward": lambda: oracle.conv(x, w, **kw),
            "input_grad": lambda: oracle.input_grad(dy, w, x.shape, **kw),
            "filter_grad": lambda: oracle.filter_grad(x, dy, w.shape, **kw)}[op]()


def _on_threads(monkeypatch, run, count):
    """run() with ``count`` threads allowed and free at run time (the plan, which may fix a
    filter gradient's parts by the thread count, kept), and the team kernels it ran."""
    ran, real = [], _team.run

    def spy(kernel, *args, **kw):
        ran.append(kernel.py_func.__name__)
        return real(kernel, *args, **kw)

    monkeypatch.setattr(_threads, "allowed", lambda: count)
    monkeypatch.setattr(_threads, "free_cores", lambda: count)
    monkeypatch.setattr(_team, "run", spy)
    try:
        return run(), ran
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("case", CASES, ids=[c[-1] for c in CASES])
def test_team_kernels_bitwise_on_any_thread_count(monkeypatch, case):
    """Each converted kernel through the public ops, every op, float32: bitwise equal on 1, 2 and
    3 threads, within rounding of the loop oracle, no operand written to (read-only)."""
    from convgrad._layout import w_from_last, w_to_last, x_from_last, x_to_last

    x_shape, w_shape, kw, method, ops, kernel = case
    kw = dict(kw)
    last = kw.pop("data_format", None) == "channels_last"
    rng = np.random.default_rng(3)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    x, w, dy = (rng.standard_normal(s) for s in (x_shape, w_shape, geom.y_shape()))
    operands = [a.astype(np.float32) for a in (x, w, dy)]
    if last:
        operands = [x_to_last(operands[0], "channels_first"), w_to_last(operands[1], "channels_first"),
                    x_to_last(operands[2], "channels_first")]
    for a in operands:
        a.flags.writeable = False
    seen = set()
    layout = "channels_last" if last else "channels_first"
    runs = _ops(*operands, {**kw, "method": method, "data_format": layout})
    for op in ops:
        run, results = runs[op], []
        for count in (1, 2, 3):
            got, ran = _on_threads(monkeypatch, run, count)
            results.append(got)
            seen.update(ran)
        for got in results[1:]:
            np.testing.assert_array_equal(got, results[0])
        want = _oracle(op, x, w, dy, kw)
        if last:
            results[0] = (w_from_last if op == "filter_grad" else x_from_last)(results[0], "channels_first")
        assert_close(results[0], want, rtol=0, atol=2e-5 * max(1.0, np.abs(want).max()), dtype=np.float32)
    assert kernel in seen, seen


@given(n=st.integers(1, 2), c=st.integers(1, 12), o=st.integers(1, 20), h=st.integers(4, 14),
       w=st.integers(4, 14), k=st.integers(1, 4), s=st.integers(2, 3), layout=st.sampled_from(
           ["channels_first", "channels_last"]))
@strategies.budget(8)
def test_strided_regions_on_two_threads_match_the_oracle(n, c, o, h, w, k, s, layout):
    """The strided regions' team call (forward windows, input-gradient phases) over random
    geometries, on two threads, against the loop oracle."""
    from convgrad._layout import w_to_last, x_from_last, x_to_last

    kw = {"stride": s, "padding": k // 2}
    geom = convgrad.ConvGeometry.for_conv((n, c, h, w), (o, c, k, k), **kw)
    rng = np.random.default_rng(n * 1000 + c * 100 + h)
    x, wt, dy = (rng.standard_normal(sh) for sh in ((n, c, h, w), (o, c, k, k), geom.y_shape()))
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, wt, dy))
    if layout == "channels_last":
        x32, w32 = x_to_last(x32, "channels_first"), w_to_last(w32, "channels_first")
        dy32 = x_to_last(dy32, "channels_first")
    args = {**kw, "method": "tiled", "data_format": layout}
    runs = {"forward": lambda: convgrad.conv(x32, w32, **args),
            "input_grad": lambda: convgrad.conv_input_grad(dy32, w32, x32.shape, **args)}
    with pytest.MonkeyPatch.context() as mp:
        for op, run in runs.items():
            got, _ = _on_threads(mp, run, 2)
            if layout == "channels_last":
                got = x_from_last(got, "channels_first")
            want = _oracle(op, x, wt, dy, kw)
            assert_close(got, want, rtol=0, atol=2e-5 * max(1.0, np.abs(want).max()), dtype=np.float32)
