"""The oracle checked on its own: hand-worked numbers, SciPy, and the dense matrix of each map.

Everything else is compared with the oracle, so it is held to sources outside convgrad first.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

import oracle as O
from samples import sample_cases


def test_hand_worked_examples():
    x = np.arange(5.0).reshape(1, 1, 5)
    # [0+0+1, 0+1+2, 1+2+3, 2+3+4, 3+4+0]
    np.testing.assert_array_equal(O.conv(x, np.ones((1, 1, 3)), padding=1), [[[1, 3, 6, 9, 7]]])
    # Each input sample spreads a copy of the kernel, 2 apart: 1 1 (1+1) 1 1.
    got = O.conv_transpose(np.ones((1, 1, 2)), np.ones((1, 1, 3)), 2, 0, 1, 1, (5,))
    np.testing.assert_array_equal(got, [[[1, 1, 2, 1, 1]]])
    # lhs dilation 2 with pads (1, 1) and a kernel of two ones: each sample twice.
    got = O.conv_general(x, np.ones((1, 1, 2)), lhs_dilation=2, padding=[(1, 1)])
    np.testing.assert_array_equal(got, [[[0, 0, 1, 1, 2, 2, 3, 3, 4, 4]]])
    # Negative pads crop: (-1, -2) keeps samples 1..2.
    got = O.conv_general(x, np.ones((1, 1, 1)), padding=[(-1, -2)])
    np.testing.assert_array_equal(got, [[[1, 2]]])


@pytest.mark.parametrize(
    "pads, want",
    [
        ((1, 2), [0, 0, 1, 2, 0, 0]),
        ((-1, -1), [1]),
        ((2, -3), [0, 0]),  # the crop at the end reaches past x into the leading pad
        ((-4, 2), [0]),  # and the other way round
        ((-3, 0), []),
    ],
)
def test_pad_or_crop_follows_lax_pad(pads, want):
    x = np.arange(3.0).reshape(1, 1, 3)
    np.testing.assert_array_equal(O.pad_or_crop(x, [pads])[0, 0], want)


def test_same_padding_splits():
    # TF SAME_UPPER: n=7, k=3, s=2 -> 4 outputs, total (4-1)*2+3-7 = 2; n=8 -> total 1, at the end.
    assert O.resolve_padding("same", (7,), (3,), 2, 1) == ((1, 1),)
    assert O.resolve_padding("same", (8,), (3,), 2, 1) == ((0, 1),)
    assert O.resolve_padding("same_lower", (8,), (3,), 2, 1) == ((1, 0),)
    assert O.resolve_padding("SAME", (5,), (4,), 1, 1) == ((1, 2),)
    assert O.resolve_padding("same", (5,), (2,), 1, 3) == ((1, 2),)  # k_eff 4
    assert O.resolve_padding("same", (9,), (1,), 3, 1) == ((0, 0),)
    assert O.resolve_padding("full", (4, 4), (3, 2), 1, (1, 2)) == ((2, 2), (2, 2))
    assert O.resolve_padding([1, (0, 2)], (4, 4), (3, 3), 1, 1) == ((1, 1), (0, 2))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", ["valid", "full", "same"])
def test_single_channel_2d_matches_scipy(mode, k):
    rng = np.random.default_rng(k)
    x, w = rng.standard_normal((7, 6)), rng.standard_normal((k, k - 1 or 1))
    want = signal.correlate2d(x, w, mode=mode)
    # correlate2d's 'same' is TF SAME (odd sample after) for even kernels too.
    got = O.conv(x[None, None], w[None, None], padding=mode)[0, 0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(9,), (5, 6), (4, 3, 5)])
def test_nd_matches_scipy_correlate(shape):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape)
    w = rng.standard_normal(tuple(min(3, n) for n in shape))
    want = signal.correlate(x, w, mode="valid", method="direct")
    np.testing.assert_allclose(O.conv(x[None, None], w[None, None])[0, 0], want, rtol=1e-12)
    # signal.correlate's 'same' is SAME_LOWER for even kernels (odd sample before).
    w2 = rng.standard_normal((2,) * len(shape))
    want = signal.correlate(x, w2, mode="same", method="direct")
    got = O.conv(x[None, None], w2[None, None], padding="same_lower")[0, 0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_stride_and_dilation_from_their_definitions():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 11, 9)), rng.standard_normal((4, 3, 3, 2))
    dense = O.conv(x, w, padding=1)
    np.testing.assert_allclose(O.conv(x, w, padding=1, stride=(3, 2)), dense[:, :, ::3, ::2], rtol=1e-12)
    w_dil = np.zeros((4, 3, 5, 3))
    w_dil[:, :, ::2, ::2] = w
    np.testing.assert_allclose(O.conv(x, w, dilation=2), O.conv(x, w_dil), rtol=1e-12)


def test_groups_and_batch_groups_from_their_definitions():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((4, 6, 7)), rng.standard_normal((4, 3, 2))
    y = O.conv_general(x, w, feature_group_count=2)
    np.testing.assert_allclose(y[:, :2], O.conv(x[:, :3], w[:2]), rtol=1e-12)
    np.testing.assert_allclose(y[:, 2:], O.conv(x[:, 3:], w[2:]), rtol=1e-12)
    wb = rng.standard_normal((4, 6, 2))
    yb = O.conv_general(x, wb, batch_group_count=2)
    assert yb.shape == (2, 4, 6)
    np.testing.assert_allclose(yb[:, :2], O.conv(x[:2], wb[:2]), rtol=1e-12)
    np.testing.assert_allclose(yb[:, 2:], O.conv(x[2:], wb[2:]), rtol=1e-12)


def _tiny(case):
    """Shrink a sample case to a handful of elements (batch 1 or 0) for dense Jacobians."""
    return case.x_shape[0] <= 2 and np.prod(case.x_shape) <= 200 and np.prod(case.w_shape) <= 60


TINY = [c for c in sample_cases() if _tiny(c)]


@pytest.mark.parametrize("case", TINY, ids=str)
def test_gradients_are_jacobian_transposes(case):
    fmt = case.data_format
    rng = np.random.default_rng(3)
    x = O.x_to_first(rng.standard_normal(case.x_shape), fmt)
    w = O.w_to_first(rng.standard_normal(case.w_shape), fmt)
    geo = case.geometry
    y = O.conv(x, w, **geo)
    dy = rng.standard_normal(y.shape)
    jx = O.jacobian(lambda v: O.conv(v, w, **geo), x.shape)
    jw = O.jacobian(lambda v: O.conv(x, v, **geo), w.shape)
    np.testing.assert_allclose(O.input_grad(dy, w, x.shape, **geo).ravel(), jx.T @ dy.ravel(),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(O.filter_grad(x, dy, w.shape, **geo).ravel(), jw.T @ dy.ravel(),
                               rtol=1e-12, atol=1e-12)
    pairs = O.resolve_padding(geo.get("padding", 0), x.shape[2:], w.shape[2:],
                              geo.get("stride", 1), geo.get("dilation", 1))
    scatter = O.conv_transpose(dy, w, geo.get("stride", 1), [lo for lo, _ in pairs],
                               geo.get("dilation", 1), geo.get("groups", 1), x.shape[2:])
    np.testing.assert_allclose(scatter.ravel(), jx.T @ dy.ravel(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lhs, pads", [(2, [(1, 0)]), (3, [(-2, 2)]), (2, [(0, -3)])])
def test_input_grad_with_lhs_dilation_is_jacobian_transpose(lhs, pads):
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((1, 2, 4)), rng.standard_normal((3, 2, 2))
    kw = {"stride": 2, "padding": pads, "lhs_dilation": lhs, "rhs_dilation": 2}
    y = O.conv_general(x, w, **kw)
    dy = rng.standard_normal(y.shape)
    jx = O.jacobian(lambda v: O.conv_general(v, w, **kw), x.shape)
    got = O.input_grad(dy, w, x.shape, stride=2, padding=pads, dilation=2, lhs_dilation=lhs)
    np.testing.assert_allclose(got.ravel(), jx.T @ dy.ravel(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "x_shape, w_shape, kw",
    [
        ((4, 2, 5), (6, 2, 2), {"batch_group_count": 2, "stride": 2, "padding": [(1, -1)]}),
        ((3, 2, 4), (3, 2, 2), {"batch_group_count": 3, "lhs_dilation": 2, "rhs_dilation": 2}),
        ((2, 4, 4), (4, 2, 3), {"feature_group_count": 2, "lhs_dilation": 3, "padding": [(2, -3)]}),
    ],
)
def test_general_gradients_are_jacobian_transposes(x_shape, w_shape, kw):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y = O.conv_general(x, w, **kw)
    dy = rng.standard_normal(y.shape)
    jx = O.jacobian(lambda v: O.conv_general(v, w, **kw), x.shape)
    jw = O.jacobian(lambda v: O.conv_general(x, v, **kw), w.shape)
    geo = {"stride": kw.get("stride", 1), "padding": kw.get("padding", 0),
           "dilation": kw.get("rhs_dilation", 1), "groups": kw.get("feature_group_count", 1),
           "lhs_dilation": kw.get("lhs_dilation", 1), "batch_group_count": kw.get("batch_group_count", 1)}
    np.testing.assert_allclose(O.input_grad(dy, w, x.shape, **geo).ravel(), jx.T @ dy.ravel(),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(O.filter_grad(x, dy, w.shape, **geo).ravel(), jw.T @ dy.ravel(),
                               rtol=1e-12, atol=1e-12)


def test_exact_arithmetic_on_python_ints():
    x = O.as_exact(np.full((1, 1, 3), 2**40))
    w = O.as_exact(np.full((1, 1, 2), 2**30))
    y = O.conv(x, w)
    assert y.dtype == object
    assert y[0, 0, 0] == 2**71  # beyond int64: the oracle never overflows
