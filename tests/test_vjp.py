"""conv_vjp and conv_transpose_vjp: the forward value and all three gradients, against the oracle."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle as O
from checks import assert_close
from strategies import budget, conv_cases, seeds, transpose_cases
from tally import checked_against


@budget(200)
@given(conv_cases(), seeds, st.booleans())
@checked_against("oracle")
def test_conv_vjp_matches_oracle(case, seed, with_bias):
    fmt, geo = case.data_format, case.geometry
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    o = w.shape[0] if fmt == "channels_first" else w.shape[-1]
    bias = rng.standard_normal(o) if with_bias else None
    xf, wf = O.x_to_first(x, fmt), O.w_to_first(w, fmt)
    want_y = O.conv(xf, wf, bias, **geo)

    y, vjp = convgrad.conv_vjp(x, w, bias, **case.kwargs)
    assert_close(y, O.x_from_first(want_y, fmt), dtype=np.float64)
    dyf = rng.standard_normal(want_y.shape)
    dx, dw, db = vjp(O.x_from_first(dyf, fmt))
    assert_close(dx, O.x_from_first(O.input_grad(dyf, wf, xf.shape, **geo), fmt))
    assert_close(dw, O.w_from_first(O.filter_grad(xf, dyf, wf.shape, **geo), fmt))
    if with_bias:
        assert_close(db, O.bias_grad(dyf))
    else:
        assert db is None


@budget(150)
@given(transpose_cases(), seeds, st.booleans())
@checked_against("oracle")
def test_conv_transpose_vjp_matches_oracle(case, seed, with_bias):
    """The transpose of a transpose is the forward: dx is the forward conv of dy (its first
    len(x) windows), dw the forward conv's filter gradient with dy as input and x as output
    gradient."""
    fmt, kw = case.data_format, case.kwargs
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    bias = rng.standard_normal(case.out_channels) if with_bias else None
    y, vjp = convgrad.conv_transpose_vjp(x, w, bias, **kw)
    assert_close(y, case.oracle(x, w, bias), dtype=np.float64)

    xf, wf = O.x_to_first(x, fmt), O.w_to_first(w, fmt)
    dyf = rng.standard_normal(O.x_to_first(y, fmt).shape)
    dx, dw, db = vjp(O.x_from_first(dyf, fmt))
    forward = O.conv_general(dyf, wf, kw["stride"], case.pairs, 1, kw["dilation"], kw["groups"])
    want_dx = forward[(slice(None), slice(None), *(slice(0, n) for n in xf.shape[2:]))]
    assert_close(dx, O.x_from_first(want_dx, fmt))
    want_dw = O.filter_grad(dyf, xf, wf.shape, kw["stride"], case.pairs, kw["dilation"], kw["groups"])
    assert_close(dw, O.w_from_first(want_dw, fmt))
    if with_bias:
        assert_close(db, O.bias_grad(dyf))
    else:
        assert db is None


def test_vjp_accepts_method_and_workspace():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 8)), rng.standard_normal((4, 3, 3))
    for method in ("auto", *convgrad.engine_names()):
        try:
            y, vjp = convgrad.conv_vjp(x, w, stride=2, method=method, workspace_bytes=10**6)
        except ValueError as e:
            assert f"method={method!r} cannot run" in str(e)
            continue
        assert_close(y, O.conv(x, w, stride=2))
        dy = np.ones_like(y)
        dx, dw, _ = vjp(dy)
        assert_close(dx, O.input_grad(dy, w, x.shape, stride=2))
        assert_close(dw, O.filter_grad(x, dy, w.shape, stride=2))


def test_vjp_can_be_called_twice_and_does_not_keep_dy():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 6, 5)), rng.standard_normal((3, 2, 2, 2))
    y, vjp = convgrad.conv_vjp(x, w, padding="same")
    dy1, dy2 = rng.standard_normal(y.shape), rng.standard_normal(y.shape)
    first = vjp(dy1)[0].copy()
    vjp(dy2)
    np.testing.assert_array_equal(vjp(dy1)[0], first)
