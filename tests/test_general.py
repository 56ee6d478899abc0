"""conv_general (JAX's conv_general_dilated model) against the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import convgrad
import oracle as O
from checks import assert_close, check_each_method
from strategies import budget, general_cases, seeds
from tally import checked_against

CL = "channels_last"


@budget(300)
@given(general_cases(), seeds)
@checked_against("oracle")
def test_random_geometries_match_oracle(case, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    fmt = case.data_format
    want = O.conv_general(O.x_to_first(x, fmt), O.w_to_first(w, fmt), **case.geometry)
    check_each_method(convgrad.conv_general, O.x_from_first(want, fmt), x, w, **case.kwargs)


@budget(200)
@given(general_cases(), seeds)
@checked_against("oracle")
def test_conv_general_vjp_matches_oracle(case, seed):
    fmt, kw = case.data_format, case.geometry
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    xf, wf = O.x_to_first(x, fmt), O.w_to_first(w, fmt)
    want = O.conv_general(xf, wf, **kw)
    y, vjp = convgrad.conv_general_vjp(x, w, **case.kwargs)
    assert_close(O.x_to_first(y, fmt), want, dtype=np.float64)
    dyf = rng.standard_normal(want.shape)
    dx, dw = vjp(O.x_from_first(dyf, fmt))
    geo = {"stride": kw["stride"], "padding": kw["padding"], "dilation": kw["rhs_dilation"],
           "groups": kw["feature_group_count"], "lhs_dilation": kw["lhs_dilation"],
           "batch_group_count": kw["batch_group_count"]}
    assert_close(O.x_to_first(dx, fmt), O.input_grad(dyf, wf, xf.shape, **geo))
    assert_close(O.w_to_first(dw, fmt), O.filter_grad(xf, dyf, wf.shape, **geo))


def test_docstring_example():
    x = np.arange(5.0).reshape(1, 1, 5)
    got = convgrad.conv_general(x, np.ones((1, 1, 2)), lhs_dilation=2, padding=[(1, 1)])
    assert_close(got, [[[0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]]])


def test_lhs_dilation_is_zero_insertion():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 2, 3))
    xd = np.zeros((2, 3, 10, 9))
    xd[:, :, ::3, ::2] = x
    got = convgrad.conv_general(x, w, lhs_dilation=(3, 2), padding=[(1, -1), (0, 2)], stride=2)
    assert_close(got, convgrad.conv(xd, w, padding=[(1, -1), (0, 2)], stride=2))


def test_negative_pads_crop_the_input():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 9, 8)), rng.standard_normal((3, 2, 3, 2))
    got = convgrad.conv_general(x, w, padding=[(-2, -1), (-3, 0)], rhs_dilation=(1, 2))
    assert_close(got, convgrad.conv(x[:, :, 2:-1, 3:], w, dilation=(1, 2)))


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_batch_groups_meet_output_channel_blocks(data_format):
    """Batch block b (rows b * N/B ... ) is convolved with output-channel block b only; the
    filter has all C input channels; the output batch is N/B."""
    rng = np.random.default_rng(2)
    n, c, b, ob = 6, 2, 3, 2
    x, w = rng.standard_normal((n, c, 7)), rng.standard_normal((b * ob, c, 3))
    blocks = [convgrad.conv(x[i * (n // b):(i + 1) * (n // b)], w[i * ob:(i + 1) * ob], padding=1)
              for i in range(b)]
    want = np.concatenate(blocks, axis=1)
    assert want.shape == (n // b, b * ob, 7)
    got = convgrad.conv_general(O.x_from_first(x, data_format), O.w_from_first(w, data_format),
                                batch_group_count=b, padding=1, data_format=data_format)
    assert_close(O.x_to_first(got, data_format), want)


def test_grouped_filter_gradient_is_a_batch_grouped_conv():
    """JAX's transpose rule: dw of a conv with feature groups G is conv_general of x (batch and
    channels swapped) with dy (batch and channels swapped) as kernel, batch_group_count=G."""
    rng = np.random.default_rng(3)
    g = 2
    x, w = rng.standard_normal((3, 4, 6)), rng.standard_normal((6, 2, 3))
    dy = rng.standard_normal((3, 6, 4))
    dw = convgrad.conv_filter_grad(x, dy, w.shape, groups=g)
    via = convgrad.conv_general(x.swapaxes(0, 1), dy.swapaxes(0, 1), batch_group_count=g)
    assert via.shape == (2, 6, 3)  # (C/G, O, K)
    assert_close(via.swapaxes(0, 1), dw)


def test_feature_groups_equal_conv_groups():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 6, 5, 5)), rng.standard_normal((9, 2, 3, 3))
    check_each_method(convgrad.conv_general, convgrad.conv(x, w, groups=3, padding="same"),
                      x, w, feature_group_count=3, padding="same")


def test_empty_batch():
    y = convgrad.conv_general(np.zeros((0, 2, 5)), np.ones((4, 2, 3)), lhs_dilation=2)
    assert y.shape == (0, 4, 7)
    y = convgrad.conv_general(np.zeros((0, 2, 5)), np.ones((4, 2, 3)), batch_group_count=2)
    assert y.shape == (0, 4, 3)


# --- the transposition rules (convgrad._transpose), on their own and through the engines -------
def _oracle_runner(geom, x, w):
    """Run any channels-last geometry with the oracle's gather loop (no convgrad engine)."""
    y = O.conv_general(O.x_to_first(x, "channels_last"), O.w_to_first(w, "channels_last"),
                       geom.stride, geom.padding, geom.lhs_dilation, geom.rhs_dilation,
                       geom.feature_group_count, geom.batch_group_count)
    return O.x_from_first(y, "channels_last")


def _engine_runner(geom, x, w):
    from convgrad._general import run_general

    return run_general(geom, x, w, "auto", 2**31)


@budget(150)
@given(general_cases(), seeds)
@checked_against("oracle")
def test_transposed_convs_are_the_oracle_gradients_and_pass_the_dot_test(case, seed):
    """For any geometry (input dilation, feature or batch groups, negative pads), the conv of
    _transpose.input_grad / filter_grad equals the oracle's adjoint loops, run by the oracle's
    gather loop or by the engines, and <conv(x, w), dy> == <x, dx> == <w, dw>."""
    from convgrad import _transpose

    kw = case.geometry
    geom = convgrad.ConvGeometry.for_general(case.x_shape, case.w_shape, **case.kwargs)
    rng = np.random.default_rng(seed)
    xf = rng.standard_normal(geom.x_shape())
    wf = rng.standard_normal(geom.w_shape())
    y = O.conv_general(xf, wf, **kw)
    dyf = rng.standard_normal(y.shape)
    geo = {"stride": kw["stride"], "padding": kw["padding"], "dilation": kw["rhs_dilation"],
           "groups": kw["feature_group_count"], "lhs_dilation": kw["lhs_dilation"],
           "batch_group_count": kw["batch_group_count"]}
    want_dx = O.input_grad(dyf, wf, xf.shape, **geo)
    want_dw = O.filter_grad(xf, dyf, wf.shape, **geo)
    x, w, dy = O.x_from_first(xf, CL), O.w_from_first(wf, CL), O.x_from_first(dyf, CL)
    t_in, t_w = _transpose.input_grad(geom), _transpose.filter_grad(geom)
    assert t_in.geometry.out_spatial == geom.in_spatial and t_w.geometry.out_spatial == geom.kernel
    for run in (_oracle_runner, _engine_runner):
        dx, dw = t_in(dy, w, run), t_w(x, dy, run)
        assert_close(O.x_to_first(dx, CL), want_dx)
        assert_close(O.w_to_first(dw, CL), want_dw)
    inner = np.vdot(y, dyf)
    np.testing.assert_allclose([np.vdot(xf, O.x_to_first(dx, CL)), np.vdot(wf, O.w_to_first(dw, CL))],
                               [inner, inner], rtol=1e-10, atol=1e-10)


def test_batch_grouped_input_gradient_is_a_feature_grouped_conv():
    """JAX's rule: dx of a conv with B batch groups is a conv of dy with B feature groups, the
    filter's output blocks moved into its input channels, and dx's channel blocks moved back
    into its batch; before, ConvGeometry.input_grad_geometry refused batch groups."""
    geom = convgrad.ConvGeometry.for_general((6, 2, 7), (9, 2, 3), batch_group_count=3, padding=1)
    t = geom.input_grad_geometry()
    assert (t.batch, t.in_channels, t.out_channels) == (2, 9, 6)
    assert (t.feature_group_count, t.batch_group_count) == (3, 1)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((6, 2, 7)), rng.standard_normal((9, 2, 3))
    y, vjp = convgrad.conv_general_vjp(x, w, batch_group_count=3, padding=1)
    dy = rng.standard_normal(y.shape)
    dx, dw = vjp(dy)
    geo = {"padding": 1, "batch_group_count": 3}
    assert_close(dx, O.input_grad(dy, w, x.shape, **geo))
    assert_close(dw, O.filter_grad(x, dy, w.shape, **geo))


def test_conv_general_vjp_refuses_unknown_keywords():
    with pytest.raises(TypeError, match="groups"):
        convgrad.conv_general_vjp(np.ones((1, 1, 4)), np.ones((1, 1, 2)), groups=1)


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((2, 3, 4), (5, 3, 6), {}),  # kernel longer than x
    ((1, 2, 5, 5), (4, 2, 3, 3), {"padding": [(-2, -1), (0, 0)]}),  # crops below the kernel
    ((4, 2, 3), (6, 2, 2), {"rhs_dilation": 3, "batch_group_count": 2}),
    ((1, 2, 3), (2, 1, 3), {"lhs_dilation": 1, "stride": 2, "padding": [(-1, -1)],
                            "feature_group_count": 2}),
])
def test_empty_outputs_are_empty_results_with_zero_gradients(x_shape, w_shape, kw):
    """A kernel larger than the padded input: JAX's stride_dim = max(0, ...) gives 0 outputs
    along that axis, and nothing reaches x or w; conv itself still refuses it."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    ref = jax.lax.conv_general_dilated(
        x, w, O.per_dim(kw.get("stride", 1), x.ndim - 2), kw.get("padding", [(0, 0)] * (x.ndim - 2)),
        rhs_dilation=O.per_dim(kw.get("rhs_dilation", 1), x.ndim - 2),
        feature_group_count=kw.get("feature_group_count", 1),
        batch_group_count=kw.get("batch_group_count", 1))
    assert ref.size == 0
    y = convgrad.conv_general(x, w, **kw)
    assert y.shape == ref.shape and y.dtype == np.float64
    y, vjp = convgrad.conv_general_vjp(x, w.astype(np.float32), **kw)
    assert y.shape == ref.shape
    dx, dw = vjp(np.zeros(y.shape, np.float32))
    # dtypes as for any output: dx from (dy, w) float32, dw from (x, dy) float64.
    assert (dx.shape, dx.dtype, dw.shape, dw.dtype) == (x.shape, np.float32, w.shape, np.float64)
    np.testing.assert_array_equal(dx, 0.0)
    np.testing.assert_array_equal(dw, 0.0)
    with pytest.raises(ValueError, match="does not match the output shape"):
        vjp(np.zeros((1, 1, 1)))
    if kw.get("batch_group_count", 1) == 1 and kw.get("feature_group_count", 1) == 1:
        conv_kw = {k: v for k, v in kw.items() if k in ("stride", "padding")}
        with pytest.raises(ValueError, match="kernel larger than the padded input"):
            convgrad.conv(x, w, dilation=kw.get("rhs_dilation", 1), **conv_kw)


@pytest.mark.parametrize(("x_shape", "w_shape", "fg", "bg", "message"), [
    ((4, 4, 5), (4, 2, 3), 2, 2, "at most one of feature_group_count=2 and batch_group_count=2"),
    ((4, 4, 5), (4, 2, 3), 1, 2, "batch_group_count=2 the filter needs all 4 input channels"),
    ((4, 4, 5), (4, 3, 3), 2, 1, r"feature_group_count=2 the filter needs 4/2 input channels.*has 3"),
    ((4, 3, 5), (4, 1, 3), 2, 1, "feature_group_count=2 must divide x's 3 channels"),
])
def test_conv_general_group_errors_name_the_cause(x_shape, w_shape, fg, bg, message):
    """Each wrong grouping is refused with the count at fault (both > 1 used to be reported as a
    channel mismatch whose numbers agreed: '4/2 input channels, but ... has 2')."""
    with pytest.raises(ValueError, match=message):
        convgrad.conv_general(np.ones(x_shape), np.ones(w_shape), feature_group_count=fg,
                              batch_group_count=bg)
