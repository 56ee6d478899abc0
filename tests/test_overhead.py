"""The per-call path around a kernel: what it checks on every call, done in fewer passes.

A plan whose engine does not keep the direct sum's inf and NaN checks both operands on every call
(``_plan.ConvPlan``): the compiled pass over the exponent bits (``_kernels/finite.py``) must say
exactly what ``np.isfinite(a).all()`` says, for every float32 and float64 bit pattern class.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies

pytest.importorskip("numba")

# Every class of value: zeros of both signs, subnormals, the largest finite, infinities, quiet and
# signalling NaNs with sign bits and payloads (all of an exponent's bits set, any mantissa).
SPECIAL = {
    np.float32: [0.0, -0.0, 1.5, -2.0, 1e-45, -1e-45, 3.4028235e38, -3.4028235e38, np.inf, -np.inf],
    np.float64: [0.0, -0.0, 1.5, -2.0, 5e-324, -5e-324, 1.7976931348623157e308, -1.7976931348623157e308,
                 np.inf, -np.inf],
}
NAN_BITS = {np.float32: (np.uint32, [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF]),
            np.float64: (np.uint64, [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001,
                                     0xFFFFFFFFFFFFFFFF])}


@st.composite
def float_arrays(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    size = draw(st.integers(1, 3000))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    a = (rng.standard_normal(size) * 10.0 ** rng.integers(-30, 30, size)).astype(dtype)
    uint, nans = NAN_BITS[dtype]
    for _ in range(draw(st.integers(0, 3))):  # a few special values anywhere, the last one too
        at = draw(st.integers(0, size - 1)) if draw(st.booleans()) else size - 1
        if draw(st.booleans()):
            a.view(uint)[at] = uint(draw(st.sampled_from(nans)))
        else:
            a[at] = draw(st.sampled_from(SPECIAL[dtype]))
    shape = draw(st.sampled_from([(size,), (1, size), (size, 1)]))
    return a.reshape(shape)


def _load(dtype: np.dtype) -> None:
    """The compiled check for ``dtype``, as ``warm_up`` loads it (without every other kernel)."""
    from convgrad.engines._kernels import finite

    finite.residue(np.zeros(1, dtype))


@given(float_arrays())
@strategies.budget(60)
def test_the_compiled_finite_check_is_isfinite_all(a):
    from convgrad._dtypes import all_finite as _finite
    from convgrad.engines._kernels import finite

    _load(a.dtype)
    assert finite.loaded(a.dtype)
    want = bool(np.isfinite(a).all())
    assert finite.all_finite(a) is want
    assert _finite(a) is want


def test_the_compiled_finite_check_declines_what_it_does_not_read():
    """Strided views, other dtypes and a kernel not loaded fall back to NumPy (None), and the
    plan's check still gives the right answer."""
    from convgrad._dtypes import all_finite as _finite
    from convgrad.engines._kernels import finite

    _load(np.dtype(np.float32))
    a = np.ones((4, 6), np.float32)
    a[1, 1] = np.nan
    assert finite.all_finite(a[:, ::2]) is None and _finite(a[:, ::2]) is True
    assert finite.all_finite(a[:, 1::2]) is None and _finite(a[:, 1::2]) is False
    assert finite.all_finite(a[::2]) is None and _finite(a[::2]) is True
    for other in (np.float16, np.complex64, np.int32):
        assert finite.all_finite(np.ones(3, other)) is None and _finite(np.ones(3, other)) is True


@given(n=st.integers(1, 2), c=st.integers(1, 8), o=st.integers(1, 8), length=st.integers(1, 150),
       seed=st.integers(0, 2**16), zeros=st.booleans())
@strategies.budget(25)
def test_channels_first_pointwise_input_grad_keeps_inf_and_nan_unchecked(n, c, o, length, seed, zeros):
    """The channels-first 1x1 kernels' input gradient has no non-finite plan, so no per-call check:
    with up to 3 infs or NaNs in dy and in w (and zero taps for an inf to meet), every output is
    finite, NaN, +inf or -inf exactly where the direct sum's (the loop oracle on Python floats) is."""
    x_shape, w_shape = (n, c, length), (o, c, 1)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape)
    plan = convgrad.make_plan("input_grad", geom, np.dtype(np.float32), "tiled", 2**31, "channels_first")
    assert plan.takes == "channels_first" and plan.nonfinite_plan() is plan
    rng = np.random.default_rng(seed)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    if zeros:
        w = np.where(np.abs(w) < 0.5, 0.0, w)
    for a, most in ((dy, 3), (w, 3)):
        for _ in range(rng.integers(0, most + 1)):
            a.flat[rng.integers(a.size)] = rng.choice([np.inf, -np.inf, np.nan])
    got = convgrad.conv_input_grad(dy.astype(np.float32), w.astype(np.float32), x_shape, method="tiled")
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 and inf - inf are the point
        want = oracle.input_grad(dy.astype(object), w.astype(object), x_shape).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
