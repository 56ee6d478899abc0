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
from tally import checked_against

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


@budget(500)
@given(conv_cases(), seeds)
@checked_against("oracle")
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


# --- second order: the pullbacks of conv_input_grad and conv_filter_grad ------------------------
@budget(150)
@given(conv_cases(), seeds)
@checked_against("oracle")
def test_second_order_pullbacks_match_oracle_and_dot_test(case, seed):
    """dx(dy, w) and dw(x, dy) are bilinear: their pullbacks are the oracle's conv and adjoint
    loops of the cotangent, and <f(a, b), g> equals <a, d_a> and <b, d_b> (the dot test)."""
    fmt, geo = case.data_format, case.geometry
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    xf, wf = O.x_to_first(x, fmt), O.w_to_first(w, fmt)
    dyf = rng.standard_normal(O.conv(xf, wf, **geo).shape)
    dy = O.x_from_first(dyf, fmt)

    dx, vjp = convgrad.conv_input_grad_vjp(dy, w, x.shape, **case.kwargs)
    assert_close(dx, O.x_from_first(O.input_grad(dyf, wf, xf.shape, **geo), fmt), dtype=np.float64)
    gf = rng.standard_normal(xf.shape)
    d_dy, d_w = vjp(O.x_from_first(gf, fmt))
    assert_close(d_dy, O.x_from_first(O.conv(gf, wf, **geo), fmt))
    assert_close(d_w, O.w_from_first(O.filter_grad(gf, dyf, wf.shape, **geo), fmt))
    inner = np.vdot(dx, O.x_from_first(gf, fmt))
    np.testing.assert_allclose([np.vdot(dy, d_dy), np.vdot(w, d_w)], [inner, inner],
                               rtol=1e-10, atol=1e-10)

    dw, vjp = convgrad.conv_filter_grad_vjp(x, dy, w.shape, **case.kwargs)
    assert_close(dw, O.w_from_first(O.filter_grad(xf, dyf, wf.shape, **geo), fmt), dtype=np.float64)
    gf = rng.standard_normal(wf.shape)
    d_x, d_dy = vjp(O.w_from_first(gf, fmt))
    assert_close(d_x, O.x_from_first(O.input_grad(dyf, gf, xf.shape, **geo), fmt))
    assert_close(d_dy, O.x_from_first(O.conv(xf, gf, **geo), fmt))
    inner = np.vdot(dw, O.w_from_first(gf, fmt))
    np.testing.assert_allclose([np.vdot(x, d_x), np.vdot(dy, d_dy)], [inner, inner],
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank, groups, stride, padding, dilation", [
    (1, 1, 2, 1, 1), (2, 2, (2, 1), (1, 0), (1, 2)), (3, 1, 1, 1, 2), (2, 3, 3, 2, 1),
])
def test_second_order_pullbacks_match_torch_double_backward(rank, groups, stride, padding, dilation):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(rank * 10 + groups)
    c, o = 2 * groups, 3 * groups
    x = rng.standard_normal((2, c, *(7,) * rank))
    w = rng.standard_normal((o, 2, *(3,) * rank))
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    dy = rng.standard_normal(convgrad.conv(x, w, **kw).shape)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in (("x", x), ("w", w), ("dy", dy))}
    nn_grad = torch.nn.grad

    ref = getattr(nn_grad, f"conv{rank}d_input")(x.shape, t["w"], t["dy"], **kw)
    dx, vjp = convgrad.conv_input_grad_vjp(dy, w, x.shape, **kw)
    assert_close(dx, ref.detach().numpy())
    g = rng.standard_normal(x.shape)
    want = torch.autograd.grad(ref, [t["dy"], t["w"]], torch.tensor(g))
    for got, theirs in zip(vjp(g), want):
        assert_close(got, theirs.numpy())

    ref = getattr(nn_grad, f"conv{rank}d_weight")(t["x"], w.shape, t["dy"], **kw)
    dw, vjp = convgrad.conv_filter_grad_vjp(x, dy, w.shape, **kw)
    assert_close(dw, ref.detach().numpy())
    g = rng.standard_normal(w.shape)
    want = torch.autograd.grad(ref, [t["x"], t["dy"]], torch.tensor(g))
    for got, theirs in zip(vjp(g), want):
        assert_close(got, theirs.numpy())


@pytest.mark.parametrize(("dtype", "shape"), [(np.float32, (4, 3, 500, 500)), (np.float16, (1, 3, 100, 120))])
def test_bias_grad_of_a_million_positions_is_rounded_once(dtype, shape):
    """NumPy sums axis 0 row by row: a float32 running total over 10**6 positions was 2e-5 off
    (relative); accumulated in float64 it is the exact sum rounded to the dtype."""
    dy = np.random.default_rng(0).uniform(0, 1, shape).astype(dtype)
    exact = dy.astype(np.float64).sum(axis=(0, 2, 3))
    got = convgrad.conv_bias_grad(dy)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, exact.astype(dtype))
