"""convgrad.scipy.signal against scipy.signal itself.

Forward values, shapes and dtypes on random shapes in every mode, method and boundary (even
kernels, in2 larger than in1, swapped 'valid'); gradients (``op.vjp``) by central differences,
exact up to rounding for any step since each op is linear (or, with a fill value, affine) in
each argument, and by the adjoint dot test. Inputs SciPy rejects are rejected.

Tolerances: float64 sums in another order (rtol 1e-10 of the largest value; SciPy's 'fft'
method rounds to ~1e-13 of it); integers exactly, wrapping as SciPy's do.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

from convgrad.scipy import signal
from strategies import budget
from tally import checked_against

MODES = ("full", "same", "valid")


def assert_matches(got, want):
    assert got.shape == want.shape, f"shape {got.shape} != SciPy's {want.shape}"
    assert got.dtype == want.dtype, f"dtype {got.dtype} != SciPy's {want.dtype}"
    if want.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want)
    else:
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * scale)


def random_array(rng, shape, dtype):
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -50), min(info.max, 50), shape, endpoint=True).astype(dtype)


def check_gradients(op, in1, in2, kwargs, rng, *, linear_in1=True):
    """Central differences along random directions for both inputs, and the dot test."""
    y, pullback = op.vjp(in1, in2, **kwargs)
    dy = rng.standard_normal(y.shape)
    d1, d2 = pullback(dy)
    assert d1.shape == in1.shape and d2.shape == in2.shape
    for i, (a, g) in enumerate(((in1, d1), (in2, d2))):
        v = rng.standard_normal(a.shape)
        args_plus = [in1 + v, in2] if i == 0 else [in1, in2 + v]
        args_minus = [in1 - v, in2] if i == 0 else [in1, in2 - v]
        directional = np.vdot(op(*args_plus, **kwargs) - op(*args_minus, **kwargs), dy) / 2
        np.testing.assert_allclose(np.vdot(g, v), directional, rtol=1e-9, atol=1e-9 * np.abs(dy).sum())
    forward = np.vdot(y, dy)
    atol = 1e-9 * (1 + np.abs(y).sum())
    np.testing.assert_allclose(np.vdot(d2, in2), forward, rtol=1e-9, atol=atol)
    if linear_in1:
        np.testing.assert_allclose(np.vdot(d1, in1), forward, rtol=1e-9, atol=atol)


def scipy_or_error(fn, *args, **kwargs):
    try:
        return quiet(fn, *args, **kwargs)
    except ValueError as e:
        return e


def quiet(fn, *args, **kwargs):
    """Call SciPy with its warnings silenced (it warns ComplexWarning on array fill values)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --- convolve / correlate (N-d) -----------------------------------------------------------------
@st.composite
def nd_cases(draw):
    rank = draw(st.sampled_from([1, 1, 2, 2, 3]))
    top = 6 if rank < 3 else 3
    s1 = tuple(draw(st.integers(1, top)) for _ in range(rank))
    if draw(st.booleans()):
        s2 = tuple(draw(st.integers(1, top)) for _ in range(rank))
    else:  # in2 larger than in1 in every axis: SciPy swaps for 'valid'
        s2 = tuple(n + draw(st.integers(0, 2)) for n in s1)
    return (draw(st.sampled_from(["convolve", "correlate"])), s1, s2, draw(st.sampled_from(MODES)),
            draw(st.sampled_from(["auto", "direct", "fft"])),
            draw(st.sampled_from([np.float64] * 6 + [np.float32, np.int64, np.int16, np.uint8])))


@budget(150)
@given(nd_cases(), st.integers(0, 2**32 - 1))
@checked_against("scipy")
def test_convolve_and_correlate_match_scipy(case, seed):
    name, s1, s2, mode, method, dtype = case
    rng = np.random.default_rng(seed)
    in1, in2 = random_array(rng, s1, dtype), random_array(rng, s2, dtype)
    if dtype == np.float32 and method == "fft":
        method = "direct"  # SciPy's float32 FFT rounds too coarsely to compare tightly
    want = scipy_or_error(getattr(scipy.signal, name), in1, in2, mode, method)
    op = getattr(signal, name)
    if isinstance(want, ValueError):
        with pytest.raises(ValueError):
            op(in1, in2, mode, method)
        return
    got = op(in1, in2, mode, method)
    if dtype == np.float32:
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1, np.abs(want).max()))
    else:
        assert_matches(got, want)
    check_gradients(op, in1.astype(np.float64), in2.astype(np.float64), {"mode": mode, "method": method}, rng)


# --- convolve2d / correlate2d ---------------------------------------------------------------------
@st.composite
def cases_2d(draw):
    s1 = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    s2 = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    boundary = draw(st.sampled_from(["fill", "fill", "wrap", "symm", "pad", "circular", "symmetric"]))
    fillvalue = draw(st.sampled_from([0, 0, 1.5, -2])) if boundary in ("fill", "pad") else 0
    dtype = draw(st.sampled_from([np.float64] * 5 + [np.int64, np.int32, np.uint8]))
    if np.dtype(dtype).kind == "u" and fillvalue < 0:
        fillvalue = 3
    return (draw(st.sampled_from(["convolve2d", "correlate2d"])), s1, s2, draw(st.sampled_from(MODES)),
            boundary, fillvalue, dtype)


@budget(120)
@given(cases_2d(), st.integers(0, 2**32 - 1))
@checked_against("scipy")
def test_convolve2d_and_correlate2d_match_scipy(case, seed):
    name, s1, s2, mode, boundary, fillvalue, dtype = case
    rng = np.random.default_rng(seed)
    in1, in2 = random_array(rng, s1, dtype), random_array(rng, s2, dtype)
    kwargs = {"mode": mode, "boundary": boundary, "fillvalue": fillvalue}
    want = scipy_or_error(getattr(scipy.signal, name), in1, in2, **kwargs)
    op = getattr(signal, name)
    if isinstance(want, ValueError):
        with pytest.raises(ValueError):
            op(in1, in2, **kwargs)
        return
    assert_matches(op(in1, in2, **kwargs), want)
    check_gradients(op, in1.astype(np.float64), in2.astype(np.float64), kwargs, rng,
                    linear_in1=fillvalue == 0 or boundary not in ("fill", "pad"))


# --- SciPy's particular rules -------------------------------------------------------------------
def test_same_alignment_for_even_kernels_differs_between_functions():
    """SciPy's 'same' is one sample apart between correlate and correlate2d for even kernels."""
    x, w = np.arange(1.0, 7.0).reshape(1, 6), np.array([[1.0, 10.0, 100.0, 1000.0]])
    for name in ("correlate", "correlate2d", "convolve", "convolve2d"):
        assert_matches(getattr(signal, name)(x, w, "same"), getattr(scipy.signal, name)(x, w, "same"))
    assert not np.array_equal(signal.correlate(x, w, "same"), signal.correlate2d(x, w, "same"))


@pytest.mark.parametrize("name", ["convolve", "correlate", "convolve2d", "correlate2d"])
def test_valid_swaps_when_in2_is_larger(name):
    rng = np.random.default_rng(0)
    small, large = rng.standard_normal((2, 3)), rng.standard_normal((4, 5))
    got, pullback = getattr(signal, name).vjp(small, large, "valid")
    assert_matches(got, getattr(scipy.signal, name)(small, large, "valid"))
    d1, d2 = pullback(np.ones(got.shape))
    assert d1.shape == small.shape and d2.shape == large.shape


@pytest.mark.parametrize(
    ("dtype1", "dtype2"),
    [(np.uint8, np.uint8), (np.int8, np.int16), (np.uint8, np.int8), (np.int32, np.float32),
     (np.float32, np.float64), (np.float16, np.float16), (np.int64, np.int64)],
)
@pytest.mark.parametrize("name", ["convolve", "correlate", "convolve2d", "correlate2d"])
def test_result_dtypes_and_integer_wrapping_match_scipy(name, dtype1, dtype2):
    a = (np.arange(12).reshape(3, 4) * 37 % 101).astype(dtype1)
    b = (np.arange(4).reshape(2, 2) * 29 % 53).astype(dtype2)
    kwargs = {}
    if name in ("convolve", "correlate") and np.dtype(dtype1) == np.float16:
        # SciPy's direct N-d path (what 'auto' picks here) refuses float16 while its 1-D direct
        # and FFT paths compute it; convgrad computes it on every path.
        kwargs["method"] = "fft"
    want = scipy_or_error(getattr(scipy.signal, name), a, b, **kwargs)
    if isinstance(want, ValueError):  # float16 in convolve2d / correlate2d
        with pytest.raises(ValueError, match="not available"):
            getattr(signal, name)(a, b)
        return
    got = getattr(signal, name)(a, b)
    if want.dtype == np.float16:
        assert got.dtype == want.dtype
        scale = float(np.abs(want).max())  # float16 FFT noise is relative to the largest value
        np.testing.assert_allclose(got.astype(float), want.astype(float), rtol=2e-3, atol=2e-3 * scale)
    else:
        assert_matches(got, want)


@pytest.mark.parametrize("fillvalue", [1.7, [2], [2.5], np.array([-3.0]), np.array(-3), np.int64(4),
                                       np.float64(-2.5), np.float32(1.0), 300, np.array([[1]])])
@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.uint8])
def test_fillvalue_casting_matches_scipy(fillvalue, dtype):
    a, b = np.arange(9, dtype=dtype).reshape(3, 3), np.ones((2, 2), dtype=dtype)
    for name in ("convolve2d", "correlate2d"):
        want = scipy_or_error(getattr(scipy.signal, name), a, b, fillvalue=fillvalue)
        if isinstance(want, ValueError):
            with pytest.raises(ValueError, match="fillvalue"):
                getattr(signal, name)(a, b, fillvalue=fillvalue)
        else:
            assert_matches(getattr(signal, name)(a, b, fillvalue=fillvalue), want)


@pytest.mark.parametrize(("s1", "s2", "mode"), [((0, 3), (2, 2), "full"), ((3, 3), (0, 2), "valid"),
                                                ((0, 3), (2, 2), "same"), ((2, 3), (0, 0), "full")])
def test_empty_2d_inputs_give_scipy_zero_outputs(s1, s2, mode):
    got, pullback = signal.convolve2d.vjp(np.ones(s1), np.ones(s2), mode)
    assert_matches(got, scipy.signal.convolve2d(np.ones(s1), np.ones(s2), mode))
    d1, d2 = pullback(np.ones(got.shape))
    assert d1.shape == s1 and d2.shape == s2


def test_zero_dimensional_inputs_multiply():
    a, b = np.float64(2), np.float64(3)
    assert_matches(signal.convolve(a, b), scipy.signal.convolve(a, b))
    out, pullback = signal.correlate.vjp(np.array(2.0), np.array(3.0))
    assert out == 6.0 and pullback(np.array(1.0)) == (3.0, 2.0)


# --- rejected inputs ----------------------------------------------------------------------------
ERROR_CASES = [
    ("unknown mode", "convolve", (5,), (3,), {"mode": "foo"}),
    ("numeric mode", "convolve2d", (3, 3), (2, 2), {"mode": 1}),
    ("unknown method", "correlate", (5,), (3,), {"method": "foo"}),
    ("rank mismatch", "convolve", (5,), (1, 3), {}),
    ("valid with neither larger", "correlate", (3, 2), (2, 3), {"mode": "valid"}),
    ("valid 2-D with neither larger", "convolve2d", (3, 2), (2, 3), {"mode": "valid"}),
    ("empty N-d input", "convolve", (0,), (3,), {}),
    ("empty N-d correlate", "correlate", (0, 3), (2, 2), {}),
    ("unknown boundary", "convolve2d", (3, 3), (2, 2), {"boundary": "foo"}),
    ("reflect boundary", "correlate2d", (3, 3), (2, 2), {"boundary": "reflect"}),
    ("fillvalue with two values", "convolve2d", (3, 3), (2, 2), {"fillvalue": [1, 2]}),
    ("complex fillvalue", "convolve2d", (3, 3), (2, 2), {"fillvalue": 1j}),
    ("string fillvalue", "correlate2d", (3, 3), (2, 2), {"fillvalue": "a"}),
    ("1-D input to convolve2d", "convolve2d", (3,), (2,), {}),
    ("3-D input to correlate2d", "correlate2d", (3, 3, 3), (2, 2, 2), {}),
]


@pytest.mark.parametrize(("what", "name", "s1", "s2", "kwargs"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_inputs_scipy_rejects_are_rejected(what, name, s1, s2, kwargs):
    a, b = np.ones(s1), np.ones(s2)
    with pytest.raises(ValueError):
        quiet(getattr(scipy.signal, name), a, b, **kwargs)
    with pytest.raises((ValueError, TypeError)):
        getattr(signal, name)(a, b, **kwargs)
    with pytest.raises((ValueError, TypeError)):
        getattr(signal, name).vjp(a, b, **kwargs)


def test_negative_fillvalue_for_unsigned_output_is_rejected_as_in_scipy():
    a, b = np.ones((3, 3), np.uint8), np.ones((2, 2), np.uint8)
    with pytest.raises(ValueError):
        quiet(scipy.signal.convolve2d, a, b, fillvalue=-1)
    with pytest.raises(ValueError, match="fillvalue"):
        signal.convolve2d(a, b, fillvalue=-1)

