"""convgrad.identities: the gradients computed as one conv_general each (the transposition
identities), against the oracle and against conv_input_grad / conv_filter_grad."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import convgrad
import oracle as O
from checks import assert_close
from convgrad.identities import filter_grad_via_conv, input_grad_via_conv
from samples import sample_cases
from strategies import budget, conv_cases, seeds


def check_routes(case, x, w, dy):
    dx, dw = case.oracle_grads(x, w, dy)
    via_dx = input_grad_via_conv(dy, w, x.shape, **case.kwargs)
    via_dw = filter_grad_via_conv(x, dy, w.shape, **case.kwargs)
    assert_close(via_dx, dx, dtype=np.float64)
    assert_close(via_dw, dw, dtype=np.float64)
    assert_close(via_dx, convgrad.conv_input_grad(dy, w, x.shape, **case.kwargs))
    assert_close(via_dw, convgrad.conv_filter_grad(x, dy, w.shape, **case.kwargs))


@pytest.mark.parametrize("case", list(sample_cases()), ids=str)
def test_sample_cases(case):
    check_routes(case, *case.arrays(seed=6))


@budget(60)
@given(conv_cases(), seeds)
def test_random_geometries(case, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    y = O.conv(O.x_to_first(x, case.data_format), O.w_to_first(w, case.data_format), **case.geometry)
    check_routes(case, x, w, O.x_from_first(rng.standard_normal(y.shape), case.data_format))


def test_grouped_filter_swap_keeps_channels_in_their_group():
    """groups=2 with two output channels per group: dx[c] collects only its group's outputs."""
    dy = np.arange(4.0).reshape(1, 4, 1)
    w = (np.arange(4.0) + 1).reshape(4, 1, 1)
    want = [[[0 * 1 + 1 * 2], [2 * 3 + 3 * 4]]]
    assert_close(O.input_grad(dy, w, (1, 2, 1), groups=2), want)
    assert_close(input_grad_via_conv(dy, w, (1, 2, 1), groups=2), want)
    assert_close(convgrad.conv_input_grad(dy, w, (1, 2, 1), groups=2), want)


def test_geometry_of_the_input_gradient_conv():
    """The dx conv reads dy dilated by the stride, with pads k_eff - 1 - before (which may crop)."""
    geom = convgrad.ConvGeometry.for_conv((2, 3, 9), (4, 3, 3), stride=2, padding=[(1, 3)], dilation=2)
    assert geom.out_spatial == (5,)  # (9 + 4 - 5) // 2 + 1
    dx_geom = geom.input_grad_geometry()
    assert dx_geom.lhs_dilation == (2,)
    assert dx_geom.padding[0][0] == 5 - 1 - 1
    assert dx_geom.out_spatial == (9,)
    assert dx_geom.y_shape() == geom.x_shape()
    dw_geom = geom.filter_grad_geometry()
    assert dw_geom.stride == (2,) and dw_geom.rhs_dilation == (2,)  # stride and dilation swap
    assert dw_geom.out_spatial == (3,)


@pytest.mark.parametrize("n, s, padding", [(1, 5, 2), (1, 3, [(2, 0)]), (2, 2, [(2, -2)])])
def test_routes_when_windows_read_only_leading_padding(n, s, padding):
    """One output window, inside the leading padding: dx and dw are zero (the gradient convs'
    pads then crop more than dy or x holds, which they must handle)."""
    x, w, dy = np.ones((1, 1, n)), np.ones((1, 1, 1)), np.ones((1, 1, 1))
    assert_close(convgrad.conv_input_grad(dy, w, x.shape, stride=s, padding=padding), np.zeros((1, 1, n)))
    assert_close(input_grad_via_conv(dy, w, x.shape, stride=s, padding=padding), np.zeros((1, 1, n)))
    assert_close(filter_grad_via_conv(x, dy, w.shape, stride=s, padding=padding), np.zeros((1, 1, 1)))
