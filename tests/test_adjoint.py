"""The adjoint (dot) test and finite differences, through convgrad.testing and by hand; and
proof that both checks fail when the gradient is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import convgrad
import convgrad.testing as cgt
from samples import sample_cases
from strategies import budget, conv_cases, seeds


@budget(80)
@given(conv_cases())
def test_dot_test_on_random_geometries(case):
    result = cgt.dot_test(case.x_shape, case.w_shape, **case.kwargs)
    assert result.passed, str(result)


@budget(60)
@given(conv_cases(min_batch=1), seeds)
def test_inner_products_by_hand(case, seed):
    """<conv(x, w), dy> == <x, conv_input_grad(dy)> == <w, conv_filter_grad(x, dy)>."""
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    y = convgrad.conv(x, w, **case.kwargs)
    dy = rng.standard_normal(y.shape)
    forward = np.vdot(y, dy)
    input_side = np.vdot(x, convgrad.conv_input_grad(dy, w, x.shape, **case.kwargs))
    filter_side = np.vdot(w, convgrad.conv_filter_grad(x, dy, w.shape, **case.kwargs))
    scale = np.abs(y).sum() * np.abs(dy).max() + 1.0
    assert abs(forward - input_side) <= 1e-12 * scale
    assert abs(forward - filter_side) <= 1e-12 * scale


@budget(40)
@given(conv_cases(min_batch=1), seeds)
def test_finite_differences_on_random_geometries(case, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    result = cgt.check_grads(x, w, seed=seed, **case.kwargs)
    assert result.passed, str(result)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-4), (np.float16, 1e-2)])
def test_dot_test_in_lower_precision(dtype, rtol):
    for case in sample_cases():
        result = cgt.dot_test(case.x_shape, case.w_shape, dtype=dtype, **case.kwargs)
        assert result.passed and result.rtol == rtol, f"{case}: {result}"


def _off_by_one_input_grad(dy, w, input_shape, **kw):
    """An adjoint with the kernel flipped: the classic mistake (correlation vs convolution)."""
    r = np.asarray(w).ndim - 2
    flipped = np.asarray(w)[(slice(None), slice(None), *(slice(None, None, -1),) * r)]
    return convgrad.conv_input_grad(dy, flipped, input_shape, **kw)


def _swapped_filter_grad(x, dy, filter_shape, **kw):
    """A filter gradient with stride and dilation swapped (the classic role-swap bug)."""
    kw = {**kw, "stride": kw.get("dilation", 1), "dilation": kw.get("stride", 1)}
    return convgrad.conv_filter_grad(x, dy, filter_shape, **kw)


def test_dot_test_fails_for_a_wrong_input_adjoint(monkeypatch):
    monkeypatch.setattr(cgt, "conv_input_grad", _off_by_one_input_grad)
    geometry = {"stride": 2, "padding": 1}
    result = cgt.dot_test((2, 3, 9), (4, 3, 3), raise_on_failure=False, **geometry)
    assert not result.passed
    assert result.input_error > 1e-3 and result.filter_error < 1e-10
    with pytest.raises(AssertionError, match=r"dot test failed: <conv\(x, w\), dy> = .*\(error "):
        cgt.dot_test((2, 3, 9), (4, 3, 3), **geometry)


def test_dot_test_fails_for_a_wrong_filter_adjoint(monkeypatch):
    monkeypatch.setattr(cgt, "conv_filter_grad", _swapped_filter_grad)
    # n = 7, k = 2: stride 2 / dilation 3 and stride 3 / dilation 2 both give 2 outputs.
    result = cgt.dot_test((1, 2, 7), (3, 2, 2), stride=2, dilation=3, raise_on_failure=False)
    assert not result.passed
    assert result.filter_error > 1e-3 and result.input_error < 1e-10


def test_check_grads_fails_for_a_wrong_gradient(monkeypatch):
    monkeypatch.setattr(cgt, "conv_input_grad", _off_by_one_input_grad)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 9)), rng.standard_normal((4, 3, 3))
    result = cgt.check_grads(x, w, stride=2, raise_on_failure=False)
    assert not result.passed
    with pytest.raises(AssertionError, match=r"gradient check failed: input: analytic"):
        cgt.check_grads(x, w, stride=2)


def test_check_grads_is_exact_for_any_step():
    """conv is linear in each argument: the central difference is exact up to rounding."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 2))
    for eps in (1e-3, 1.0, 1e3):
        result = cgt.check_grads(x, w, eps=eps, padding="same", stride=2)
        assert result.passed, str(result)


def test_checks_pass_when_the_exact_values_are_zero():
    """Both taps of this kernel (dilation 2, SAME pads (1, 1) around one sample) read padding:
    y, dx and dw are exactly zero, and so is every inner product of the dot test. A check of
    the adjoint must not fail on the rounding noise an engine (FFT) may leave there."""
    failed = []
    for method in ("auto", *convgrad.engine_names()):
        kw = {"padding": "same", "dilation": 2, "method": method}
        try:
            dot = cgt.dot_test((1, 1, 1), (1, 1, 2), raise_on_failure=False, **kw)
            fd = cgt.check_grads(np.ones((1, 1, 1)), np.ones((1, 1, 2)), raise_on_failure=False, **kw)
        except ValueError as e:
            assert f"method={method!r} cannot run" in str(e)
            continue
        failed += [f"{method}: {r}" for r in (dot, fd) if not r.passed]
    assert not failed, failed
