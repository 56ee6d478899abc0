"""The BLAS products the engines make (``engines/_threads.matmul`` and ``gemm_into``): OpenBLAS on
one thread for the whole process while any runs, the count from before set back after (never a
limit left behind, whichever threads overlap), NumPy's and SciPy's values, parts fixed by the
shapes (bitwise the same on one free core as on all), and NumPy's own product where the BLAS
libraries are not OpenBLAS on its own threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.linalg import blas

import convgrad
from strategies import budget

threadpoolctl = pytest.importorskip("threadpoolctl")
from convgrad.engines import _threads  # noqa: E402

pytestmark = pytest.mark.skipif(_threads._openblas() is None, reason="BLAS is not OpenBLAS on pthreads")


def _blas_threads() -> list[int]:
    """Every loaded BLAS library's thread count, as threadpoolctl reads it (from any thread)."""
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]


@st.composite
def products(draw):
    """Operands of the shapes the engines multiply: two matrices, a matrix times a stack, two
    stacks of one length; float32 or float64; sizes around the part thresholds."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    kind = draw(st.sampled_from(["2d", "matrix-stack", "stacks"]))
    m, k, n = (draw(st.integers(1, 600)), draw(st.integers(1, 300)), draw(st.integers(1, 600)))
    stack = draw(st.integers(1, 12))
    shapes = {"2d": ((m, k), (k, n)), "matrix-stack": ((m, k), (stack, k, n)),
              "stacks": ((stack, m, k), (stack, k, n))}[kind]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    if draw(st.booleans()):  # a transposed view, as im2col's filter gradient passes
        a = np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    return a, b


@budget(40)
@given(products())
def test_products_are_numpys_on_one_blas_thread_whatever_the_free_cores(monkeypatch_session, ab):
    """Values of NumPy's product (float64 einsum as the reference), bitwise the same on one free
    core as on 1024, every part on one BLAS thread, the counts from before after."""
    a, b = ab
    before = _blas_threads()
    inside: list[list[int]] = []
    real = np.matmul

    def spy(*args, **kwargs):
        inside.append(_blas_threads())
        return real(*args, **kwargs)

    got = []
    for free in (1 << 10, 1):
        with monkeypatch_session.context() as patched:
            patched.setattr(_threads, "free_cores", lambda free=free: free)
            patched.setattr(_threads, "allowed", lambda: 2)
            patched.setattr(np, "matmul", spy)
            got.append(_threads.matmul(a, b))
    want = np.einsum("...ij,...jk->...ik", a.astype(np.float64), b.astype(np.float64))
    tol = 1e-4 if a.dtype == np.float32 else 1e-11
    np.testing.assert_allclose(got[0], want, rtol=tol, atol=tol * np.sqrt(a.shape[-1]))
    assert got[0].tobytes() == got[1].tobytes()
    assert inside and all(set(counts) == {1} for counts in inside)
    assert _blas_threads() == before


@pytest.fixture(scope="module")
def monkeypatch_session():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize(("m", "k", "n"), [(300, 2000, 64), (64, 2000, 300), (700, 40, 900), (5, 7, 3)])
def test_gemm_into_is_scipys_whatever_the_free_cores(monkeypatch, m, k, n, trans_b):
    """``gemm_into`` (offset_gemm's and split_kernel's in-place GEMMs): c + a @ op(b) on Fortran
    views, bitwise the same on one free core as on all."""
    rng = np.random.default_rng(m + k + n)
    a = np.asfortranarray(rng.standard_normal((m, k)).astype(np.float32))
    b = np.asfortranarray(rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32))
    c0 = np.asfortranarray(rng.standard_normal((m, n)).astype(np.float32))
    monkeypatch.setattr(_threads, "allowed", lambda: 2)
    got = []
    for free in (1 << 10, 1):
        monkeypatch.setattr(_threads, "free_cores", lambda free=free: free)
        c = c0.copy(order="F")
        _threads.gemm_into(blas.sgemm, a, b, c, beta=1.0, trans_b=trans_b)
        got.append(c)
    want = c0.astype(np.float64) + a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    assert got[0].tobytes() == got[1].tobytes()


def test_overlapping_products_from_many_threads_leave_no_limit_behind(monkeypatch):
    """Four threads' products overlapping: OpenBLAS at one thread inside each, and its counts
    from before after the last (a save and restore per call, with OpenBLAS's one process-wide
    count, left it at one: ``allowed()`` then kept every engine on one thread)."""
    monkeypatch.setattr(_threads, "free_cores", lambda: 2)
    before, allowed = _blas_threads(), _threads.allowed()
    rng = np.random.default_rng(1)
    m, s = rng.standard_normal((200, 200)), rng.standard_normal((16, 200, 200))
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(40):
                _threads.matmul(m, s)
        except BaseException as e:  # re-raised below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _blas_threads() == before and _threads.allowed() == allowed


def test_allowed_never_reads_a_hold_as_the_callers_limit():
    """While another thread takes and drops holds (OpenBLAS set to one thread and back),
    ``allowed()`` keeps reporting the limit from before: read between the set and the count (or
    the count and a read of OpenBLAS), it returned 1 in 21 % of 1.1 million reads, and a plan
    made then cut a filter gradient into other parts than a single-threaded call (other bits;
    a CI run of test_threads)."""
    base = _threads.allowed()
    if base < 2 or _threads._openblas() is None:
        pytest.skip("one thread allowed, or OpenBLAS is not held by convgrad here")
    stop = threading.Event()

    def hold():
        while not stop.is_set():
            with _threads.one_blas_thread():
                pass

    t = threading.Thread(target=hold)
    t.start()
    try:
        seen = {_threads.allowed() for _ in range(200_000)}
    finally:
        stop.set()
        t.join()
    assert seen == {base}


def test_a_hold_taken_on_another_thread_limits_blas():
    """threadpoolctl's limit does nothing on a thread other than its first caller's: the hold
    from a helper or a caller's thread must still set OpenBLAS to one thread."""
    seen: list[list[int]] = []

    def work():
        with _threads.one_blas_thread():
            seen.append(_blas_threads())
        seen.append(_blas_threads())

    before = _blas_threads()
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert set(seen[0]) == {1} and seen[1] == before


def test_a_callers_limit_is_kept_and_restored():
    """Under the caller's ``threadpool_limits(1)`` the products stay on one thread and that limit
    is the one in force after them; outside it, the counts from before."""
    before = _blas_threads()
    a, b = np.ones((300, 300)), np.ones((300, 300))
    with threadpoolctl.threadpool_limits(1):
        assert _threads.allowed() == 1
        np.testing.assert_array_equal(_threads.matmul(a, b), np.full((300, 300), 300.0))
        assert set(_blas_threads()) == {1} and _threads.allowed() == 1
    assert _blas_threads() == before


@pytest.mark.parametrize("mode", ["ignore", "raise"])
def test_every_part_follows_the_callers_errstate(monkeypatch, mode):
    """The parts run on helper threads as in the caller's ``np.errstate``: an inf times a zero in
    every part is ignored where the caller ignores it (no warning, turned into an error here) and
    raises where the caller asks it to (a pool thread's own errstate would warn instead)."""
    import warnings

    monkeypatch.setattr(_threads, "allowed", lambda: 2)
    monkeypatch.setattr(_threads, "free_cores", lambda: 2)
    ran: list[str] = []
    real = _threads._run_parts
    both = threading.Barrier(2, timeout=30)  # the first two parts wait for each other: two threads

    def spy(count, part):
        def watched(i):
            ran.append(threading.current_thread().name)
            if i < 2:
                both.wait()
            part(i)
        real(count, watched)

    monkeypatch.setattr(_threads, "_run_parts", spy)
    a = np.ones((1024, 256), np.float32)
    a[:, 0] = np.inf  # every row, so every part meets inf * 0
    b = np.zeros((256, 512), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(invalid=mode):
            if mode == "raise":
                with pytest.raises(FloatingPointError):
                    _threads.matmul(a, b)
            else:
                c = _threads.matmul(a, b)
                assert np.isnan(c).all()
    assert len(set(ran)) == 2  # the caller and a helper both ran parts


def test_without_openblas_on_its_own_threads_the_products_are_numpys(monkeypatch):
    """Where a BLAS library's thread count cannot be set (MKL, BLIS, Accelerate, OpenBLAS on
    OpenMP, an older or unknown build: the lookup finds nothing), the products are NumPy's and
    SciPy's calls as they were, on the library's own threads, its counts untouched."""
    monkeypatch.setattr(_threads, "_held_libraries", None)
    monkeypatch.setattr(_threads, "_count_functions", lambda lib: None)
    assert _threads._openblas() is None
    started: list[int] = []
    monkeypatch.setattr(_threads, "_run_parts", lambda count, part: started.append(count))
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((300, 400)), rng.standard_normal((400, 500))
    before = _blas_threads()
    assert _threads.matmul(a, b).tobytes() == np.matmul(a, b).tobytes()
    c = np.asfortranarray(rng.standard_normal((300, 500)))
    c0 = c.copy(order="F")
    _threads.gemm_into(blas.dgemm, np.asfortranarray(a), np.asfortranarray(b), c, beta=1.0)
    want = blas.dgemm(1.0, np.asfortranarray(a), np.asfortranarray(b), beta=1.0, c=c0)
    assert c.tobytes() == want.tobytes()
    with _threads.one_blas_thread():
        assert _blas_threads() == before
    assert not started


def _on_two_free_cores_then_one(monkeypatch, calls):
    """``calls()`` (a list of results) with two free cores, then one: asserts some BLAS product ran
    in parts and that every result is bitwise the same both times; returns the first."""
    monkeypatch.setattr(_threads, "allowed", lambda: 2)
    counts: list[int] = []
    real = _threads._run_parts
    monkeypatch.setattr(_threads, "_run_parts", lambda count, part: counts.append(count) or real(count, part))
    got = []
    for free in (2, 1):
        monkeypatch.setattr(_threads, "free_cores", lambda free=free: free)
        got.append(calls())
    assert max(counts) > 1  # some product ran in parts
    for every, one in zip(*got):
        assert every.tobytes() == one.tobytes()
    return got[0]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("method", ["im2col", "offset_gemm", "split_kernel"])
def test_the_gemm_engines_split_their_products_and_keep_their_bits(monkeypatch, method, data_format):
    """im2col, offset_gemm and split_kernel run their GEMMs in parts on two threads where two
    cores are free, with the three ops bitwise the same on one free core, and the loop
    oracle's values."""
    import oracle

    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 64, 24, 24)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    xo, wo = x, w
    if data_format == "channels_last":
        x, w = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    kw = {"padding": 1, "data_format": data_format, "method": method}
    dy = rng.standard_normal(convgrad.conv(x, w, **kw).shape).astype(np.float32)
    dyo = dy if data_format == "channels_first" else np.ascontiguousarray(np.moveaxis(dy, -1, 1))
    y, dx, dw = _on_two_free_cores_then_one(monkeypatch, lambda: [
        convgrad.conv(x, w, **kw), convgrad.conv_input_grad(dy, w, x.shape, **kw),
        convgrad.conv_filter_grad(x, dy, w.shape, **kw)])
    if data_format == "channels_last":
        y, dx = np.moveaxis(y, -1, 1), np.moveaxis(dx, -1, 1)
        dw = dw.transpose(3, 2, 0, 1)
    x64, w64, dy64 = xo.astype(np.float64), wo.astype(np.float64), dyo.astype(np.float64)
    np.testing.assert_allclose(y, oracle.conv(x64, w64, padding=1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dx, oracle.input_grad(dy64, w64, xo.shape, padding=1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dw, oracle.filter_grad(x64, dy64, wo.shape, padding=1), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("x_shape", "w_shape", "groups"), [
    ((2, 64, 24, 24), (64, 32, 3, 3), 2),  # the 2-D fused transforms around a grouped batched GEMM
    ((2, 32, 16, 16, 16), (32, 32, 3, 3, 3), 1),  # 3-D: the NumPy transforms around one
])
def test_winograds_gemms_split_and_keep_their_bits(monkeypatch, x_shape, w_shape, groups):
    """The Winograd engine's per-tile-element GEMMs (where it is not the one-pass kernel) run in
    parts on two free cores, bitwise the same on one, with the loop oracle's values."""
    import oracle

    rng = np.random.default_rng(23)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    kw = {"padding": 1, "groups": groups, "method": "winograd"}
    dy = rng.standard_normal(convgrad.conv(x, w, **kw).shape).astype(np.float32)
    y, dx = _on_two_free_cores_then_one(monkeypatch, lambda: [
        convgrad.conv(x, w, **kw), convgrad.conv_input_grad(dy, w, x.shape, **kw)])
    x64, w64, dy64 = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    np.testing.assert_allclose(y, oracle.conv(x64, w64, padding=1, groups=groups), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dx, oracle.input_grad(dy64, w64, x.shape, padding=1, groups=groups),
                               rtol=1e-4, atol=1e-3)
