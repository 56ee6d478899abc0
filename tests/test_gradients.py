"""conv_input_grad, conv_filter_grad and conv_bias_grad against the oracle's adjoint loops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import convgrad
import oracle as O
from checks import assert_close, check_each_method
from samples import sample_cases
from strategies import budget, conv_cases, seeds

CASES = list(sample_cases())


def spatial(shape, fmt):
    return shape[2:] if fmt == "channels_first" else shape[1:-1]


def kernel(w_shape, fmt):
    return w_shape[2:] if fmt == "channels_first" else w_shape[:-2]


def check_grads_all_engines(case, x, w, dy):
    dx, dw = case.oracle_grads(x, w, dy)
    fmt = case.data_format
    check_each_method(convgrad.conv_input_grad, dx, dy, w, x.shape, **case.kwargs)
    check_each_method(convgrad.conv_filter_grad, dw, x, dy, w.shape, **case.kwargs)
    # Spatial-only input_shape and kernel-only filter_shape mean the same.
    assert_close(convgrad.conv_input_grad(dy, w, spatial(x.shape, fmt), **case.kwargs), dx)
    assert_close(convgrad.conv_filter_grad(x, dy, kernel(w.shape, fmt), **case.kwargs), dw)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sample_cases_match_oracle(case):
    check_grads_all_engines(case, *case.arrays(seed=3))


@budget(150)
@given(conv_cases(), seeds)
def test_random_geometries_match_oracle(case, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    y = O.conv(O.x_to_first(x, case.data_format), O.w_to_first(w, case.data_format), **case.geometry)
    dy = O.x_from_first(rng.standard_normal(y.shape), case.data_format)
    check_grads_all_engines(case, x, w, dy)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bias_grad_sums_all_but_channels(case):
    _, _, dy = case.arrays(seed=4)
    want = O.bias_grad(O.x_to_first(dy, case.data_format))
    assert_close(convgrad.conv_bias_grad(dy, data_format=case.data_format), want, dtype=np.float64)


def test_trailing_input_no_window_reads_gets_zero_gradient():
    # n = 10, k = 3, s = 4: windows start at 0 and 4 and end at 6; samples 7..9 are never read.
    rng = np.random.default_rng(0)
    dy, w = rng.standard_normal((1, 1, 2)), rng.standard_normal((1, 1, 3))
    dx = convgrad.conv_input_grad(dy, w, (1, 1, 10), stride=4)
    np.testing.assert_array_equal(dx[..., 7:], 0.0)
    assert_close(dx, O.input_grad(dy, w, (1, 1, 10), stride=4))


def test_input_shape_disambiguates_a_strided_conv():
    # With stride 2, inputs of 7 and 8 both give 3 outputs; each size has its own gradient.
    rng = np.random.default_rng(1)
    dy, w = rng.standard_normal((1, 2, 3)), rng.standard_normal((2, 2, 3))
    for n in (7, 8):
        got = convgrad.conv_input_grad(dy, w, (n,), stride=2)
        assert got.shape == (1, 2, n)
        assert_close(got, O.input_grad(dy, w, (1, 2, n), stride=2))


def test_empty_batch_gives_zero_filter_gradient():
    x, dy = np.zeros((0, 2, 5, 5)), np.zeros((0, 3, 5, 5))
    dw = convgrad.conv_filter_grad(x, dy, (3, 2, 3, 3), padding=1)
    assert dw.shape == (3, 2, 3, 3)
    np.testing.assert_array_equal(dw, 0.0)
    dx = convgrad.conv_input_grad(dy, np.ones((3, 2, 3, 3)), (0, 2, 5, 5), padding=1)
    assert dx.shape == (0, 2, 5, 5)
    db = convgrad.conv_bias_grad(dy)
    assert db.shape == (3,)
    np.testing.assert_array_equal(db, 0.0)


def test_zero_output_channels_give_zero_input_gradient():
    dx = convgrad.conv_input_grad(np.ones((2, 0, 3)), np.ones((0, 2, 3)), (2, 2, 5))
    assert dx.shape == (2, 2, 5)
    np.testing.assert_array_equal(dx, 0.0)
    dw = convgrad.conv_filter_grad(np.ones((2, 2, 5)), np.ones((2, 0, 3)), (0, 2, 3))
    assert dw.shape == (0, 2, 3)


@pytest.mark.parametrize("n, pads, s", [(2, (2, -2), 2), (3, (2, -3), 2), (3, (3, -2), 3), (3, (2, 2), 7)])
def test_windows_that_read_only_leading_padding(n, pads, s):
    """Windows that all lie in the leading padding (pads (2, -2) on n = 2; or (2, 2) with
    stride 7): dx and dw are zero."""
    x, w = np.arange(1.0, n + 1).reshape(1, 1, n), np.ones((1, 1, 1))
    y = O.conv(x, w, stride=s, padding=[pads])
    dy = np.ones_like(y)
    assert_close(convgrad.conv_input_grad(dy, w, x.shape, stride=s, padding=[pads]),
                 O.input_grad(dy, w, x.shape, stride=s, padding=[pads]))
    assert_close(convgrad.conv_filter_grad(x, dy, w.shape, stride=s, padding=[pads]),
                 O.filter_grad(x, dy, w.shape, stride=s, padding=[pads]))
