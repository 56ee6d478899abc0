"""Small assertion helpers shared by the test modules (no convgrad internals)."""

from __future__ import annotations

import math
import re
import signal
from contextlib import contextmanager

import numpy as np

import convgrad

# float64 against the float64 oracle: the same sums in another order. Terms are O(1) and at most
# a few thousand per output, so rounding stays far below these.
RTOL, ATOL = 1e-10, 1e-12


def assert_close(got, want, *, rtol=RTOL, atol=ATOL, dtype=None):
    """Same shape, (optionally) the given dtype, and values within rtol / atol."""
    got = np.asarray(got)
    assert got.shape == np.shape(want), f"shape {got.shape} != expected {np.shape(want)}"
    if dtype is not None:
        assert got.dtype == np.dtype(dtype), f"dtype {got.dtype} != expected {np.dtype(dtype)}"
    np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=rtol, atol=atol)


def methods():
    """'auto' and every registered engine."""
    return ("auto", *convgrad.engine_names())


def run_each_method(fn, *args, **kwargs):
    """{method: result} for every method; an engine may decline a geometry, but only with the
    planner's ValueError naming it and the op, never by failing in another way."""
    results = {}
    for method in methods():
        try:
            results[method] = fn(*args, method=method, **kwargs)
        except ValueError as e:
            if method == "auto" or not re.search(rf"method='{method}' cannot run this", str(e)):
                raise
    assert "auto" in results
    return results


def check_each_method(fn, want, *args, dtype=np.float64, **kwargs):
    for method, got in run_each_method(fn, *args, **kwargs).items():
        try:
            assert_close(got, want, dtype=dtype)
        except AssertionError as e:
            raise AssertionError(f"method={method!r}: {e}") from None


@contextmanager
def finishes_within(seconds: int):
    """Fail instead of hanging when a call that should be immediate runs past ``seconds``.

    A liveness guard for geometries with astronomically large sizes (a loop over 2**40 of
    anything never ends), far above any real run time; not a performance assertion.
    """

    def expired(signum, frame):
        raise AssertionError(f"did not finish within {seconds} s (a loop over a huge size?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_op(op, x, w, dy, method, kwargs):
    """One of the three ops ('forward', 'input_grad', 'filter_grad') through the public API,
    with ``method`` and the geometry ``kwargs``."""
    if op == "forward":
        return convgrad.conv(x, w, method=method, **kwargs)
    if op == "input_grad":
        return convgrad.conv_input_grad(dy, w, x.shape, method=method, **kwargs)
    return convgrad.conv_filter_grad(x, dy, w.shape, method=method, **kwargs)


def three_ops_in(data_format, x, w, dy, method, kwargs):
    """(y, dx, dw) of the channels-first operands ``x``, ``w``, ``dy`` computed in
    ``data_format`` with ``method`` (the operands moved there and the results moved back), for a
    comparison with the channels-first oracle."""
    from convgrad._layout import w_from_last, w_to_last, x_from_last, x_to_last

    last = data_format == "channels_last"
    if last:
        x, dy = (np.ascontiguousarray(x_to_last(a, "channels_first")) for a in (x, dy))
        w = np.ascontiguousarray(w_to_last(w, "channels_first"))
    kd = {**kwargs, "data_format": data_format}
    y, dx, dw = (run_op(op, x, w, dy, method, kd) for op in ("forward", "input_grad", "filter_grad"))
    if last:
        y, dx = (x_from_last(a, "channels_first") for a in (y, dx))
        dw = w_from_last(dw, "channels_first")
    return y, dx, dw


def assert_depthwise_three_ops(case, data_format, dtype, seed):
    """The depthwise engine's three ops of ``case`` = (x_shape, w_shape, kwargs), channels-first
    shapes, run in ``data_format`` and ``dtype`` on random operands, against the float64 loop
    oracle: each value within 8 roundings of ``dtype`` times the square root of the terms summed
    (k_h * k_w products, times the batch and the outputs for dw), relative to max|result|."""
    import oracle

    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(geom.y_shape())
    want = oracle.three_ops(x, w, dy, **kw)
    xa, wa, dya = (a.astype(dtype) for a in (x, w, dy))
    got = three_ops_in(data_format, xa, wa, dya, "depthwise", kw)
    eps = 1e-15 if dtype == np.float64 else 2e-7
    terms = math.prod(w_shape[2:]) * max(1, geom.batch * math.prod(geom.out_spatial))
    for name, g, ref in zip(("forward", "input_grad", "filter_grad"), got, want):
        assert g.dtype == dtype and g.shape == ref.shape, name
        scale = max(float(np.abs(ref).max()), 1.0)
        assert float(np.abs(g - ref).max()) <= 8 * eps * math.sqrt(terms) * scale, name


def assert_float32_filter_grad(got, x, dy, w_shape, data_format, **kw):
    """``got``, a float32 dw of x and dy (float64, ``data_format``), against the float64 loop
    oracle: within 64 float32 epsilons of the sum of |products| per tap (inputs rounded to float32,
    2 eps per product, and sums of at most 1e4 terms in float32)."""
    import oracle

    xf, dyf = oracle.x_to_first(x, data_format), oracle.x_to_first(dy, data_format)
    wf_shape = oracle.w_to_first(np.empty(w_shape), data_format).shape
    want = oracle.w_from_first(oracle.filter_grad(xf, dyf, wf_shape, **kw), data_format)
    bound = oracle.w_from_first(oracle.filter_grad(np.abs(xf), np.abs(dyf), wf_shape, **kw), data_format)
    tol = 64 * float(np.finfo(np.float32).eps) * bound + 1e-30
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.all(np.abs(got - want) <= tol), np.max(np.abs(got - want) / tol)


def at_thread_counts(fn):
    """``[fn() on 1 thread, fn() on 2]`` (Numba's thread count; 1 twice on a 1-core machine), the
    caller's count restored after: for kernels whose bits must not depend on how many threads
    claim their work."""
    import numba

    before = numba.get_num_threads()
    try:
        results = []
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(fn())
        return results
    finally:
        numba.set_num_threads(before)
