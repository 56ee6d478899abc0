"""Integers: exact int64 results, or an OverflowError before any work where one could wrap.

The bound is max|a| * max|b| * terms, terms being the products one result sums (forward:
C/groups * prod(K); input gradient: O/groups * prod(K); filter gradient: N * prod(out)). Under it
every engine's int64 sums are exact, checked against the loop oracle in Python ints; past it
every method raises OverflowError naming the bound. The SciPy front wraps instead, as SciPy does.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
from checks import methods, run_op
from convgrad.scipy import signal as cg_signal
from strategies import budget, conv_cases
from tally import checked_against

INT64_MAX = 2**63 - 1


def terms(op, case):
    """The products one result of ``op`` sums at most, from the case's shapes (channels-first)."""
    fmt = case.data_format
    x_first = oracle.x_to_first(np.empty(case.x_shape), fmt).shape
    w_first = oracle.w_to_first(np.empty(case.w_shape), fmt).shape
    groups = case.kwargs["groups"]
    if op == "forward":
        return w_first[1] * math.prod(w_first[2:])
    if op == "input_grad":
        return w_first[0] // groups * math.prod(w_first[2:])
    y = oracle.conv(np.zeros(x_first), np.zeros(w_first), **case.geometry)
    return x_first[0] * math.prod(y.shape[2:])


def ints(rng, shape, peak):
    """Random int64 in [-peak, peak] with |a| reaching peak once (when not empty)."""
    a = rng.integers(-peak, peak, size=shape, endpoint=True, dtype=np.int64)
    if a.size:
        a.flat[rng.integers(a.size)] = peak * rng.choice([-1, 1])
    return a


def exact(case, op, x, w, dy):
    """The oracle's result in Python ints, in the case's layout."""
    fmt, geo = case.data_format, case.geometry
    xf, wf = oracle.as_exact(oracle.x_to_first(x, fmt)), oracle.as_exact(oracle.w_to_first(w, fmt))
    dyf = oracle.as_exact(oracle.x_to_first(dy, fmt))
    if op == "forward":
        return oracle.x_from_first(oracle.conv(xf, wf, **geo), fmt)
    if op == "input_grad":
        return oracle.x_from_first(oracle.input_grad(dyf, wf, xf.shape, **geo), fmt)
    return oracle.w_from_first(oracle.filter_grad(xf, dyf, wf.shape, **geo), fmt)


@st.composite
def near_the_bound(draw):
    """A case, an op, and operands whose bound max|a| * max|b| * terms is within 2x of 2**63."""
    case = draw(conv_cases(min_batch=1, max_batch=2))
    op = draw(st.sampled_from(["forward", "input_grad", "filter_grad"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n = terms(op, case)
    target = draw(st.floats(0.5, 2.0)) * 2**63 / n  # the product of the two peaks
    first = draw(st.integers(1, max(1, math.isqrt(int(target)) * 4)))
    second = min(max(1, int(target // first)), INT64_MAX)
    y_shape = oracle.x_from_first(oracle.conv(oracle.x_to_first(np.zeros(case.x_shape), case.data_format),
                                              oracle.w_to_first(np.zeros(case.w_shape), case.data_format),
                                              **case.geometry), case.data_format).shape
    a_name, b_name = {"forward": ("x", "w"), "input_grad": ("dy", "w"), "filter_grad": ("x", "dy")}[op]
    shapes = {"x": case.x_shape, "w": case.w_shape, "dy": y_shape}
    arrays = {name: np.zeros(shape, np.int64) for name, shape in shapes.items()}
    arrays[a_name] = ints(rng, shapes[a_name], first)
    arrays[b_name] = ints(rng, shapes[b_name], second)
    return case, op, arrays, first * second * n


@budget(60)
@given(near_the_bound())
@checked_against("oracle")
def test_exact_under_the_bound_and_overflow_error_past_it(drawn):
    case, op, arrays, bound = drawn
    x, w, dy = arrays["x"], arrays["w"], arrays["dy"]
    want = exact(case, op, x, w, dy) if bound <= INT64_MAX else None
    for method in methods():
        if want is None:
            with pytest.raises((OverflowError, ValueError)) as e:
                run_op(op, x, w, dy, method, case.kwargs)
            if e.type is ValueError:  # a named engine that cannot run the geometry says so first
                assert re.search(rf"method='{method}' cannot run this {op}", str(e.value)), e.value
            else:
                assert f"= {bound} > 2**63 - 1" in str(e.value), e.value
            continue
        try:
            got = run_op(op, x, w, dy, method, case.kwargs)
        except ValueError as e:
            assert method != "auto" and re.search(rf"method='{method}' cannot run this {op}", str(e)), e
            continue
        assert got.dtype == np.int64, (method, got.dtype)
        assert got.shape == want.shape
        assert (got.astype(object) == want).all(), f"method={method!r} {op}: not the exact sums"


def test_the_issue_case_raises_before_computing():
    big = np.full((1, 1, 3, 3), 2**31)
    with pytest.raises(OverflowError, match=rf"max\|x\|=2147483648 \* max\|w\|=2147483648 \* 9 "
                                            rf"\(C/groups \* prod\(K\)\) = {9 * 2**62} > 2\*\*63 - 1"):
        convgrad.conv(big, big)
    with pytest.raises(OverflowError, match=r"max\|dy\|=2147483648 \* max\|w\|=2147483648 \* 9 "):
        convgrad.conv_input_grad(np.full((1, 1, 1, 1), 2**31), big, (1, 1, 3, 3))
    with pytest.raises(OverflowError, match=r"max\|x\|=2147483648 \* max\|dy\|=2147483648 \* 9 "):
        convgrad.conv_filter_grad(big, np.full((1, 1, 3, 3), 2**31), (1, 1, 1, 1))
    y, vjp = convgrad.conv_vjp(big // 4, big // 4)  # 9 * 2**58: fits
    assert int(y.item()) == 9 * 2**58
    with pytest.raises(OverflowError, match=r"max\|dy\|=1099511627776 \* max\|w\|=536870912 \* 9 "):
        vjp(np.full((1, 1, 1, 1), 2**40))


def test_sums_past_2_to_the_53_are_exact():
    """float64 would round these; int64 keeps every unit."""
    x = np.full((1, 1, 3, 3), 2**30 + 1)
    w = np.full((1, 1, 3, 3), 2**29 + 3)
    want = 9 * (2**30 + 1) * (2**29 + 3)
    assert want > 2**53 and float(want) != want
    ran = 0
    for method in methods():
        try:
            got = convgrad.conv(x, w, method=method)
        except ValueError as e:
            assert re.search(f"method='{method}' cannot run this forward", str(e)), e
            continue
        assert got.dtype == np.int64 and int(got.item()) == want, method
        ran += 1
    assert ran >= 2  # auto and the engine it chose


def test_bias_and_bias_grad_check_the_bound():
    x, w = np.full((1, 1, 1), 2**62), np.ones((1, 1, 1), np.int64)
    assert int(convgrad.conv(x, w, np.array([2**62 - 1])).item()) == INT64_MAX
    with pytest.raises(OverflowError, match=rf"max\|y\|={2**62} \+ max\|bias\|={2**62}"):
        convgrad.conv(x, w, np.array([2**62]))
    with pytest.raises(OverflowError, match=r"max\|dy\|=4611686018427387904 \* 2 "):
        convgrad.conv_bias_grad(np.full((2, 1, 1), 2**62))
    assert convgrad.conv_bias_grad(np.full((2, 1, 1), 2**61)).tolist() == [2**62]


def test_uint64_past_int64_is_refused():
    with pytest.raises(OverflowError, match=r"x holds 18446744073709551615, past int64"):
        convgrad.conv(np.full((1, 1, 2), 2**64 - 1, np.uint64), np.zeros((1, 1, 1), np.int64))


def test_prepared_conv_checks_the_bound():
    p = convgrad.prepare((1, 1, 3, 3), (1, 1, 3, 3), np.int64)
    big = np.full((1, 1, 3, 3), 2**31)
    with pytest.raises(OverflowError, match=f"= {9 * 2**62} > 2"):
        p(big, big)
    assert int(p(big // 4, big // 4).item()) == 9 * 2**58


@budget(25)
@given(st.sampled_from(["convolve", "correlate", "convolve2d", "correlate2d"]),
       st.sampled_from(["full", "same", "valid"]),
       st.sampled_from([np.int64, np.int32, np.uint8, np.int16]),
       st.integers(0, 2**16), st.integers(1, 5), st.integers(1, 4))
def test_scipy_front_wraps_as_scipy_does(name, mode, dtype, seed, n1, n2):
    """SciPy's direct method sums in the result dtype and wraps; the SciPy front gives the same
    values (int64 sums, wrapping, then cast: the same residues)."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    shape1, shape2 = ((n1 + n2, n2 + 2), (n2, 2)) if name.endswith("2d") else ((n1 + n2,), (n2,))
    a = rng.integers(info.min, info.max, size=shape1, endpoint=True, dtype=dtype)
    b = rng.integers(info.min, info.max, size=shape2, endpoint=True, dtype=dtype)
    kwargs = {} if name.endswith("2d") else {"method": "direct"}
    want = getattr(scipy.signal, name)(a, b, mode=mode, **kwargs)
    got = getattr(cg_signal, name)(a, b, mode=mode)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_conv_general_with_input_dilation_checks_its_gradients():
    """Input dilation runs each gradient as a transposed conv outside the core's ops: the same bound."""
    rng = np.random.default_rng(2)
    x, w = ints(rng, (2, 2, 4), 2**20), ints(rng, (3, 2, 2), 2**20)
    y, vjp = convgrad.conv_general_vjp(x, w, lhs_dilation=2, padding=1)
    xo, wo = oracle.as_exact(x), oracle.as_exact(w)
    assert (y.astype(object) == oracle.conv_general(xo, wo, 1, 1, 2)).all()
    dy = ints(rng, y.shape, 2**20)
    dx, dw = vjp(dy)
    dyo = oracle.as_exact(dy)
    assert (dx.astype(object) == oracle.input_grad(dyo, wo, x.shape, 1, 1, 1, 1, 2)).all()
    assert (dw.astype(object) == oracle.filter_grad(xo, dyo, w.shape, 1, 1, 1, 1, 2)).all()
    with pytest.raises(OverflowError, match=r"max\|dy\|=4398046511104 \* max\|w\|=1048576 \* 6 "):
        vjp(np.full(y.shape, 2**42))


def test_conv_jvp_refuses_a_tangent_whose_two_terms_could_wrap():
    """Each of conv(x_dot, w) and conv(x, w_dot) is held under int64, but their sum wrapped:
    2**62 + 2**62 came back as -2**63."""
    x = np.full((1, 1, 1), 2**31, dtype=np.int64)
    with pytest.raises(OverflowError, match="integer tangent could pass int64"):
        convgrad.conv_jvp(x, x, x, x)
    small = np.full((1, 1, 1), 2**31 - 1, dtype=np.int64)  # 2 * (2**31 - 1)**2 fits: exact
    _, y_dot = convgrad.conv_jvp(small, small, small, small)
    assert int(y_dot[0, 0, 0]) == 2 * (2**31 - 1) ** 2
