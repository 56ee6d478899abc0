"""The seed note's routes to the gradients, as named acceptance tests.

The seed gets dx four ways (autodiff; a "full" conv of dy with the 180-degree-rotated filter;
conv2d_backprop_input; conv2d_transpose) and dw three ways (autodiff; a conv of x with dy with
batch and channel axes swapped; conv2d_backprop_filter), checked against
scipy.signal.convolve2d. Here the same routes are built from convgrad.conv and NumPy, for stride
1 without padding, and the rotated-filter route is extended to stride > 1 by dilating dy first.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

import convgrad
import oracle as O
from checks import assert_close


def rot_swap(w):
    """(O, C, *K) -> (C, O, *K), rotated 180 degrees in every spatial axis."""
    r = w.ndim - 2
    return np.swapaxes(w[(slice(None), slice(None), *(slice(None, None, -1),) * r)], 0, 1)


def dilate(dy, s):
    """Insert s - 1 zeros between the samples of every spatial axis."""
    out = np.zeros((*dy.shape[:2], *((n - 1) * s + 1 for n in dy.shape[2:])))
    out[(slice(None), slice(None), *(slice(None, None, s),) * (dy.ndim - 2))] = dy
    return out


def arrays(x_shape, w_shape, stride=1, seed=0):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(convgrad.conv(x, w, stride=stride).shape)
    return x, w, dy


SHAPES = [
    ((1, 1, 4, 4), (1, 1, 3, 3)),  # the seed's 1x4x4x1 input, 3x3 filter, VALID
    ((2, 3, 6, 5), (4, 3, 3, 2)),  # channels, batch, an even kernel
    ((2, 2, 7), (3, 2, 4)),
    ((1, 2, 4, 5, 3), (2, 2, 2, 3, 2)),
]


@pytest.mark.parametrize("x_shape, w_shape", SHAPES)
def test_input_grad_is_full_conv_with_rotated_filter(x_shape, w_shape):
    x, w, dy = arrays(x_shape, w_shape)
    dx = convgrad.conv_input_grad(dy, w, x.shape)
    assert_close(convgrad.conv(dy, rot_swap(w), padding="full"), dx)
    assert_close(dx, O.input_grad(dy, w, x.shape))
    # conv2d_transpose with output_shape: the same tensor w, no flip.
    np.testing.assert_array_equal(convgrad.conv_transpose(dy, w, output_shape=x.shape), dx)


@pytest.mark.parametrize("x_shape, w_shape", SHAPES)
def test_filter_grad_is_conv_with_batch_and_channels_swapped(x_shape, w_shape):
    x, w, dy = arrays(x_shape, w_shape)
    dw = convgrad.conv_filter_grad(x, dy, w.shape)
    # x^T (C, N, *S) with "filter" dy^T (O, N, *out) gives (C, O, *K).
    swapped = convgrad.conv(np.swapaxes(x, 0, 1), np.swapaxes(dy, 0, 1))
    assert_close(np.swapaxes(swapped, 0, 1), dw)
    assert_close(dw, O.filter_grad(x, dy, w.shape))


def test_one_channel_matches_scipy():
    """On one channel: y = correlate2d(x, w, 'valid'), dx = convolve2d(dy, w, 'full')
    (= correlate2d(dy, rot180(w), 'full')), dw = correlate2d(x, dy, 'valid')."""
    x, w, dy = arrays((1, 1, 6, 5), (1, 1, 3, 2), seed=1)
    x2, w2, dy2 = x[0, 0], w[0, 0], dy[0, 0]
    assert_close(convgrad.conv(x, w)[0, 0], signal.correlate2d(x2, w2, mode="valid"))
    dx = convgrad.conv_input_grad(dy, w, x.shape)[0, 0]
    assert_close(dx, signal.convolve2d(dy2, w2, mode="full"))
    assert_close(dx, signal.correlate2d(dy2, w2[::-1, ::-1], mode="full"))
    assert_close(convgrad.conv_filter_grad(x, dy, w.shape)[0, 0],
                 signal.correlate2d(x2, dy2, mode="valid"))


@pytest.mark.parametrize(
    "x_shape, w_shape, s",
    [
        ((1, 1, 7, 7), (1, 1, 3, 3), 2),  # windows end on the last sample
        ((1, 1, 8, 6), (1, 1, 3, 3), 2),  # one trailing row no window reads
        ((2, 3, 9, 8), (2, 3, 2, 3), 3),
        ((1, 2, 10), (3, 2, 4), 3),
    ],
)
def test_strided_input_grad_needs_dilated_dy(x_shape, w_shape, s):
    """With stride s, dx is the full conv of dy *dilated by s* with the rotated filter, plus one
    zero row after for each trailing input sample that no window reads."""
    x, w, dy = arrays(x_shape, w_shape, stride=s, seed=2)
    dx = convgrad.conv_input_grad(dy, w, x.shape, stride=s)
    assert_close(dx, O.input_grad(dy, w, x.shape, stride=s))
    k = w.shape[2:]
    dyd = dilate(dy, s)
    trailing = [n - m for n, m in zip(x.shape[2:], dyd.shape[2:])]  # = k - 1 + unread samples
    pads = [(ki - 1, t) for ki, t in zip(k, trailing)]
    assert_close(convgrad.conv(dyd, rot_swap(w), padding=pads), dx)
    # Without the dilation the "full" conv has the wrong size and the wrong values.
    undilated = convgrad.conv(dy, rot_swap(w), padding="full")
    assert undilated.shape != dx.shape
    common = tuple(slice(0, min(a, b)) for a, b in zip(undilated.shape, dx.shape))
    assert not np.allclose(undilated[common], dx[common])
