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


@given(float_arrays())
@strategies.budget(60)
def test_the_compiled_finite_check_is_isfinite_all(a):
    from convgrad._plan import _finite
    from convgrad.engines import warm_up
    from convgrad.engines._kernels import finite

    warm_up((a.dtype.name,))
    assert finite.loaded(a.dtype)
    want = bool(np.isfinite(a).all())
    assert finite.all_finite(a) is want
    assert _finite(a) is want


def test_the_compiled_finite_check_declines_what_it_does_not_read():
    """Strided views, other dtypes and a kernel not loaded fall back to NumPy (None), and the
    plan's check still gives the right answer."""
    from convgrad._plan import _finite
    from convgrad.engines import warm_up
    from convgrad.engines._kernels import finite

    warm_up(("float32",))
    a = np.ones((4, 6), np.float32)
    a[1, 1] = np.nan
    assert finite.all_finite(a[:, ::2]) is None and _finite(a[:, ::2]) is True
    assert finite.all_finite(a[:, 1::2]) is None and _finite(a[:, 1::2]) is False
    assert finite.all_finite(a[::2]) is None and _finite(a[::2]) is True
    for other in (np.float16, np.complex64, np.int32):
        assert finite.all_finite(np.ones(3, other)) is None and _finite(np.ones(3, other)) is True
