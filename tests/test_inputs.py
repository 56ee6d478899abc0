"""Inputs are never written to, and any memory layout gives what a contiguous copy gives."""

from __future__ import annotations

import numpy as np
import pytest

import convgrad
from convgrad.identities import filter_grad_via_conv, input_grad_via_conv
from samples import sample_cases

CASES = list(sample_cases())


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def strided(a):
    """Every other element of a bigger array: non-contiguous, same values."""
    big = np.full(tuple(2 * n for n in a.shape), np.nan)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def negative(a):
    """A view with negative strides on every axis."""
    return np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])[
        tuple(slice(None, None, -1) for _ in a.shape)]


def transposed(a):
    """Same values held in a transposed (Fortran-order) buffer."""
    return np.asfortranarray(a)


LAYOUTS = {"read_only": read_only, "strided": strided, "negative": negative, "fortran": transposed}


def ops(case, x, w, dy):
    """Every public op of a case, as (name, callable(x, w, dy))."""
    kw = case.kwargs
    fmt = case.data_format
    o = w.shape[0] if fmt == "channels_first" else w.shape[-1]
    bias = np.linspace(-1, 1, o)
    return {
        "conv": lambda x, w, dy: convgrad.conv(x, w, bias, **kw),
        "conv_input_grad": lambda x, w, dy: convgrad.conv_input_grad(dy, w, x.shape, **kw),
        "conv_filter_grad": lambda x, w, dy: convgrad.conv_filter_grad(x, dy, w.shape, **kw),
        "conv_transpose": lambda x, w, dy: convgrad.conv_transpose(dy, w, output_shape=x.shape, **kw),
        "conv_vjp": lambda x, w, dy: convgrad.conv_vjp(x, w, bias, **kw)[1](dy)[:2],
        "input_grad_via_conv": lambda x, w, dy: input_grad_via_conv(dy, w, x.shape, **kw),
        "filter_grad_via_conv": lambda x, w, dy: filter_grad_via_conv(x, dy, w.shape, **kw),
    }


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", CASES, ids=str)
def test_layouts_give_identical_results_and_inputs_stay_unchanged(case, layout):
    x, w, dy = case.arrays(seed=7)
    make = LAYOUTS[layout]
    for name, op in ops(case, x, w, dy).items():
        want = op(x, w, dy)
        xs, ws, dys = make(x), make(w), make(dy)
        before = [a.copy() for a in (xs, ws, dys)]
        got = op(xs, ws, dys)
        for a, b in zip((xs, ws, dys), before):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} wrote to an input")
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        for g, e in zip(got, want):
            np.testing.assert_array_equal(g, e, err_msg=f"{name} on {layout} input")


def test_read_only_inputs_are_accepted_by_conv_general_and_transpose_vjp():
    rng = np.random.default_rng(0)
    x, w = read_only(rng.standard_normal((2, 2, 5))), read_only(rng.standard_normal((4, 2, 3)))
    y = convgrad.conv_general(x, w, lhs_dilation=2, padding=[(1, -1)])
    want = convgrad.conv_general(x.copy(), w.copy(), lhs_dilation=2, padding=[(1, -1)])
    np.testing.assert_array_equal(y, want)
    wt = read_only(rng.standard_normal((2, 3, 3)))
    y, vjp = convgrad.conv_transpose_vjp(x, wt, stride=2)
    dy = read_only(np.ones(y.shape))
    dx, dw, _ = vjp(dy)
    assert dx.shape == x.shape and dw.shape == wt.shape


def test_results_are_fresh_writeable_arrays():
    x, w = np.ones((1, 1, 4)), np.ones((1, 1, 1))
    y = convgrad.conv(x, w)
    assert y.flags.writeable and y.flags.c_contiguous
    assert not np.shares_memory(y, x) and not np.shares_memory(y, w)
    y[...] = 5
    np.testing.assert_array_equal(x, 1)


def test_array_likes_are_accepted():
    y = convgrad.conv([[[0.0, 1.0, 2.0, 3.0]]], [[[1.0, 1.0]]])
    np.testing.assert_array_equal(y, [[[1.0, 3.0, 5.0]]])


def test_bias_grad_does_not_depend_on_memory_layout():
    """db sums dy over batch and positions; the sum must not change with dy's strides."""
    differ = []
    for case in CASES:
        _, _, dy = case.arrays(seed=8)
        want = convgrad.conv_bias_grad(dy, data_format=case.data_format)
        for layout, make in LAYOUTS.items():
            if not np.array_equal(convgrad.conv_bias_grad(make(dy), data_format=case.data_format), want):
                differ.append(f"{case}/{layout}")
    assert not differ, f"conv_bias_grad differs from the contiguous result for: {differ}"
