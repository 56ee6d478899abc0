"""The depthwise vector kernels on both sides of ``depthwise_first.SERIAL_MACS``: below it they run
on the calling thread (a small call's work costs less than waking the others), from it on their
chunks are claimed by the threads. The channels-last forward and filter gradient
(``depthwise_lanes``' rows, ``depthwise._forward_lanes``, ``_filter_grad_lanes``) and the
channels-first filter gradient (``depthwise_first._filter_grad_planes``), each on a problem just
below the threshold and one just past it, on 1 and 2 threads: the same bits, the loop oracle's
values. Sizes follow the machine's vector (``_simd.lanes``); channel counts a sample past a
vector (the last block overlapping the one before), row widths past the prefetch distances.
"""

from __future__ import annotations

import numpy as np
import pytest

import oracle
from checks import at_thread_counts
from convgrad.engines._kernels import depthwise, depthwise_first, depthwise_lanes
from convgrad.engines._kernels._simd import VECTOR_BYTES
from convgrad.engines._scratch import aligned_empty

pytest.importorskip("numba")

DTYPES = [np.float32, np.float64]
SIDES = ["below", "past"]


def _rows(side, per_row):
    """Output rows that put ``per_row`` multiply-adds a row just below SERIAL_MACS, or past it."""
    below = (depthwise_first.SERIAL_MACS - 1) // per_row
    return below if side == "below" else below + 2


def _atol(dtype, terms):
    return (1e-5 if dtype == np.float32 else 1e-13) * np.sqrt(terms)


def _channels_last_case(dtype, side):
    """x (N, H, W, C) with 3x3, pad 1, stride 1 (H = OH) on ``side`` of the threshold."""
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    n, c, w = 2, lanes + 1, 2 * depthwise_lanes.AHEAD_Y + 3
    h = _rows(side, 9 * n * w * c)
    rng = np.random.default_rng(3)
    return rng.standard_normal((n, h, w, c)).astype(dtype), rng


def _check_side(size, side):
    assert (size * 9 < depthwise_first.SERIAL_MACS) == (side == "below")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", SIDES)
def test_channels_last_forward_on_both_sides_of_the_serial_size(dtype, side):
    x, rng = _channels_last_case(dtype, side)
    w2 = rng.standard_normal((3, 3, x.shape[3])).astype(dtype)

    def forward():
        y = aligned_empty(x.shape, np.dtype(dtype))
        y.fill(np.nan)
        depthwise.depthwise2d_forward(x, w2, 1, 1, 1, 1, 1, 1, y, False)
        return y

    results = at_thread_counts(forward)
    _check_side(results[0].size, side)
    assert np.array_equal(results[0], results[1])
    c = x.shape[3]
    want = oracle.conv(x.transpose(0, 3, 1, 2).astype(np.float64),
                       w2.transpose(2, 0, 1)[:, None].astype(np.float64), padding=1, groups=c)
    assert np.allclose(results[0], want.transpose(0, 2, 3, 1), rtol=0, atol=_atol(dtype, 9) * 9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", SIDES)
def test_channels_last_filter_grad_on_both_sides_of_the_serial_size(dtype, side):
    """Each chunk of row pairs into its own part, on this thread or the pool's: the same parts."""
    x, rng = _channels_last_case(dtype, side)
    dy = rng.standard_normal(x.shape).astype(dtype)

    def filter_grad():
        parts = np.zeros((5, 3, 3, x.shape[3]), dtype)
        depthwise.depthwise2d_filter_grad(x, dy, 1, 1, 1, 1, 1, 1, parts)
        return parts

    results = at_thread_counts(filter_grad)
    _check_side(dy.size, side)
    assert np.array_equal(results[0], results[1])
    c = x.shape[3]
    first = [a.transpose(0, 3, 1, 2).astype(np.float64) for a in (x, dy)]
    want = oracle.filter_grad(*first, (c, 1, 3, 3), padding=1, groups=c)[:, 0].transpose(1, 2, 0)
    terms = dy.size // c
    scale = max(1.0, float(np.abs(want).max()))
    got = results[0].astype(np.float64).sum(axis=0)
    assert np.allclose(got, want, rtol=0, atol=_atol(dtype, terms) * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", SIDES)
def test_channels_first_filter_grad_on_both_sides_of_the_serial_size(dtype, side):
    """The (n, o) planes' sums, on this thread or the pool's, with a multiplier of 2 and rows a
    sample past two vectors: the same dw."""
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    n, c, mult, w = 2, 2, 2, 2 * lanes + 1
    h = _rows(side, 9 * n * c * mult * w)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    dy = rng.standard_normal((n, c * mult, h, w)).astype(dtype)

    def filter_grad():
        dw = np.full((c * mult, 3, 3), np.nan, dtype)
        depthwise_first.depthwise2d_filter_grad_first(x, dy, 1, 1, 1, 1, 1, 1, dw)
        return dw

    results = at_thread_counts(filter_grad)
    _check_side(dy.size, side)
    assert np.array_equal(results[0], results[1])
    want = oracle.filter_grad(x.astype(np.float64), dy.astype(np.float64), (c * mult, 1, 3, 3), padding=1,
                              groups=c)[:, 0]
    scale = max(1.0, float(np.abs(want).max()))
    assert np.allclose(results[0], want, rtol=0, atol=_atol(dtype, n * h * w) * scale)
