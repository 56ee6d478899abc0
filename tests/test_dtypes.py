"""dtypes: which dtype comes back, integer exactness, and float32 / float16 accuracy against
float64 with tolerances derived from where each comes from."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given

import convgrad
import oracle as O
from checks import run_each_method
from strategies import budget, conv_cases, seeds
from tally import checked_against

INTS = (np.int8, np.uint8, np.int16, np.int32, np.int64)
FLOATS = (np.float16, np.float32, np.float64)


def expected_dtype(*dtypes):
    """Integers give exact int64; otherwise NumPy's promotion."""
    if all(np.dtype(d).kind in "iu" for d in dtypes):
        return np.dtype(np.int64)
    return np.result_type(*dtypes)


@pytest.mark.parametrize("a, b", list(itertools.product(INTS + FLOATS, repeat=2)),
                         ids=lambda d: np.dtype(d).name)
def test_result_dtype_of_every_op(a, b):
    x = np.arange(2 * 2 * 5).reshape(2, 2, 5).astype(a) % 7
    w = np.arange(3 * 2 * 3).reshape(3, 2, 3).astype(b) % 5
    dy = (np.arange(2 * 3 * 3).reshape(2, 3, 3) % 3).astype(a)
    want = expected_dtype(a, b)
    assert convgrad.conv(x, w).dtype == want
    assert convgrad.conv_input_grad(dy, w, x.shape).dtype == want
    assert convgrad.conv_filter_grad(x, dy.astype(b), w.shape).dtype == want
    assert convgrad.conv_transpose(dy, w).dtype == want
    assert convgrad.conv_general(x, w, lhs_dilation=2).dtype == want
    y, vjp = convgrad.conv_vjp(x, w)
    assert y.dtype == want and all(g.dtype == want for g in vjp(y)[:2])
    bias_grad = convgrad.conv_bias_grad(dy)
    assert bias_grad.dtype == expected_dtype(a)


@pytest.mark.parametrize("bias_dtype", INTS + FLOATS, ids=lambda d: np.dtype(d).name)
def test_bias_joins_the_promotion(bias_dtype):
    x, w = np.ones((1, 2, 4), dtype=np.float32), np.ones((3, 2, 3), dtype=np.float32)
    y = convgrad.conv(x, w, np.arange(3).astype(bias_dtype))
    assert y.dtype == expected_dtype(np.float32, np.float32, bias_dtype)
    np.testing.assert_array_equal(y, [[[6, 6], [7, 7], [8, 8]]])


# --- integers: exact ---------------------------------------------------------------------------
def _ints(rng, shape, terms):
    """Ints as large as int64 allows for sums of ``terms`` products: far past float64's 2**53."""
    m = math.isqrt(2**62 // max(terms, 1))
    return rng.integers(-m, m + 1, size=shape, dtype=np.int64)


@budget(40)
@given(conv_cases(ranks=(1, 2)), seeds)
@checked_against("oracle")
def test_integer_results_are_exact(case, seed):
    fmt, geo = case.data_format, case.geometry
    rng = np.random.default_rng(seed)
    g = geo["groups"]
    first_x = O.x_to_first(np.empty(case.x_shape), fmt).shape
    first_w = O.w_to_first(np.empty(case.w_shape), fmt).shape
    y_shape = O.conv(np.zeros(first_x), np.zeros(first_w), **geo).shape

    terms = first_w[1] * math.prod(first_w[2:])
    x, w = _ints(rng, case.x_shape, terms), _ints(rng, case.w_shape, terms)
    want = O.conv(O.as_exact(O.x_to_first(x, fmt)), O.as_exact(O.w_to_first(w, fmt)), **geo)
    for method, got in run_each_method(convgrad.conv, x, w, **case.kwargs).items():
        assert got.dtype == np.int64, method
        np.testing.assert_array_equal(O.x_to_first(got, fmt), want, err_msg=method)

    terms = first_w[0] // g * math.prod(first_w[2:])
    dy, w = _ints(rng, O.x_from_first(np.empty(y_shape), fmt).shape, terms), _ints(rng, case.w_shape, terms)
    want = O.input_grad(O.as_exact(O.x_to_first(dy, fmt)), O.as_exact(O.w_to_first(w, fmt)), first_x, **geo)
    for method, got in run_each_method(convgrad.conv_input_grad, dy, w, x.shape, **case.kwargs).items():
        assert got.dtype == np.int64, method
        np.testing.assert_array_equal(O.x_to_first(got, fmt), want, err_msg=method)

    terms = y_shape[0] * math.prod(y_shape[2:])
    x, dy = _ints(rng, case.x_shape, terms), _ints(rng, dy.shape, terms)
    want = O.filter_grad(O.as_exact(O.x_to_first(x, fmt)), O.as_exact(O.x_to_first(dy, fmt)), first_w, **geo)
    for method, got in run_each_method(convgrad.conv_filter_grad, x, dy, w.shape, **case.kwargs).items():
        assert got.dtype == np.int64, method
        np.testing.assert_array_equal(O.w_to_first(got, fmt), want, err_msg=method)


def test_integer_check_can_tell_float64_apart():
    """The values used above are past float64's exact range: a float64 conv would be caught."""
    rng = np.random.default_rng(0)
    x, w = _ints(rng, (2, 3, 9), 9), _ints(rng, (2, 3, 3), 9)
    exact = O.conv(O.as_exact(x), O.as_exact(w))
    assert not np.array_equal(O.conv(x.astype(np.float64), w.astype(np.float64)).astype(np.int64), exact)
    got = convgrad.conv(x, w)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, exact)


def test_small_integer_dtypes_do_not_wrap():
    x = np.full((1, 1, 4), 200, dtype=np.uint8)
    w = np.full((1, 1, 2), -100, dtype=np.int8)
    y = convgrad.conv(x, w)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, np.full((1, 1, 3), -40000))
    np.testing.assert_array_equal(convgrad.conv_bias_grad(np.full((2, 1, 200), 200, dtype=np.uint8)),
                                  [80000])


# --- float32 and float16 against float64 ----------------------------------------------------------
# Tolerances, with S = (|a| * |b|), the same op on absolute values (it bounds the sum of |terms| of
# each output), and n the number of products per output:
# * Higham, Accuracy and Stability of Numerical Algorithms (2nd ed.), eq. (3.5): a dot product of
#   n terms in any order, FMA or not, is within gamma_n * S of the exact value, gamma_n =
#   n u / (1 - n u), u = 2**-24 in float32. That holds elementwise for the direct engine
#   (im2col: packed rows, one GEMM), checked with a factor 2 to spare.
# * float16 is computed in float32 and rounded once at the end: add u16 = 2**-11 relative to the
#   result (|result| <= S). Inputs in float16 are exact in float32, so no input rounding.
# * Every engine, including the transform-based ones (FFT, Winograd), is held normwise:
#   max|error| <= tol * |a|_2 |b|_2 (FFT convolution is normwise, not elementwise, accurate:
#   Higham ch. 24; by Cauchy-Schwarz |a|_2 |b|_2 >= max S, so this never undercuts the direct
#   bound's scale). tol = 1e-4 for float32: convgrad's documented float32 tolerance for its
#   least accurate engine (engines/winograd.py, FLOAT32_TOLERANCE); float16 adds its final
#   rounding, 2**-11, to that: 1e-3.
U32, U16 = 2.0**-24, 2.0**-11
NORMWISE = {np.float32: 1e-4, np.float16: 1e-3}


def gamma(n, u=U32):
    return n * u / (1 - n * u)


def _check_low_precision(dtype, got_by_method, exact, scale, terms, norms):
    final = U16 if dtype == np.float16 else 0.0
    for method, got in got_by_method.items():
        assert got.dtype == dtype, method
        err = np.abs(got.astype(np.float64) - exact)
        assert err.max(initial=0.0) <= NORMWISE[dtype] * norms, method
        if method == "im2col":
            bound = (final + 2 * gamma(terms)) * scale
            assert np.all(err <= bound), f"{method}: max excess {(err - bound).max()}"


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@budget(20)
@given(case=conv_cases(ranks=(1, 2)), seed=seeds)
@checked_against("oracle")
def test_low_precision_forward_and_gradients(dtype, case, seed):
    fmt, geo = case.data_format, case.geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    xf, wf = O.x_to_first(x, fmt).astype(np.float64), O.w_to_first(w, fmt).astype(np.float64)
    want = O.conv(xf, wf, **geo)
    dyf = rng.standard_normal(want.shape).astype(dtype).astype(np.float64)
    dy = O.x_from_first(dyf, fmt).astype(dtype)
    g = geo["groups"]

    got = {m: O.x_to_first(v, fmt) for m, v in run_each_method(convgrad.conv, x, w, **case.kwargs).items()}
    scale = O.conv(np.abs(xf), np.abs(wf), **geo)
    norms = np.linalg.norm(xf) * np.linalg.norm(wf)
    _check_low_precision(dtype, got, want, scale, wf.shape[1] * math.prod(wf.shape[2:]), norms)

    got = {m: O.x_to_first(v, fmt)
           for m, v in run_each_method(convgrad.conv_input_grad, dy, w, x.shape, **case.kwargs).items()}
    want = O.input_grad(dyf, wf, xf.shape, **geo)
    scale = O.input_grad(np.abs(dyf), np.abs(wf), xf.shape, **geo)
    norms = np.linalg.norm(dyf) * np.linalg.norm(wf)
    _check_low_precision(dtype, got, want, scale, wf.shape[0] // g * math.prod(wf.shape[2:]), norms)

    got = {m: O.w_to_first(v, fmt)
           for m, v in run_each_method(convgrad.conv_filter_grad, x, dy, w.shape, **case.kwargs).items()}
    want = O.filter_grad(xf, dyf, wf.shape, **geo)
    scale = O.filter_grad(np.abs(xf), np.abs(dyf), wf.shape, **geo)
    norms = np.linalg.norm(xf) * np.linalg.norm(dyf)
    _check_low_precision(dtype, got, want, scale, dyf.shape[0] * math.prod(dyf.shape[2:]), norms)


def test_float16_is_computed_in_float32():
    """Summing 4096 ones in float16 would stop at 2048 (the spacing there is 2); float32 sums
    exactly and 4096 is a float16."""
    x = np.ones((1, 1, 4096), dtype=np.float16)
    w = np.ones((1, 1, 4096), dtype=np.float16)
    y = convgrad.conv(x, w)
    assert y.dtype == np.float16
    assert y[0, 0, 0] == 4096
    dw = convgrad.conv_filter_grad(x, np.ones((1, 1, 4096), dtype=np.float16), (1,))
    assert dw.dtype == np.float16 and dw[0, 0, 0] == 4096
    dx = convgrad.conv_input_grad(np.ones((1, 4096, 1), dtype=np.float16),
                                  np.ones((4096, 1, 1), dtype=np.float16), (1, 1, 1))
    assert dx.dtype == np.float16 and dx[0, 0, 0] == 4096
    db = convgrad.conv_bias_grad(np.ones((1, 1, 4096), dtype=np.float16))
    assert db.dtype == np.float16 and db[0] == 4096


def test_mixed_int_and_float_promote_like_numpy():
    rng = np.random.default_rng(0)
    x = rng.integers(-5, 5, (2, 3, 7)).astype(np.int32)
    w = rng.standard_normal((2, 3, 3)).astype(np.float32)
    y = convgrad.conv(x, w)
    assert y.dtype == np.result_type(np.int32, np.float32) == np.float64
    np.testing.assert_allclose(y, O.conv(x.astype(np.float64), w.astype(np.float64)), rtol=1e-6, atol=1e-5)
