"""The channels-first 1x1 filter gradient's operand order (``tiled._pointwise_swapped``): where
x has fewer channels than dy (and its tiles' passes are not more), the kernel runs on (dy, x),
its parts summing dw itself, not dw.T; with 32-byte vectors its tiles run only the passes over
each block's output channels (``pointwise._panel_tile_6x64``'s ``mo``). Through the public op
against the loop oracle, both orders and output channels on either side of a block of 64."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close
from convgrad.engines import tiled
from convgrad.engines._kernels._simd import VECTOR_BYTES

pytest.importorskip("numba")


@given(c=st.integers(1, 80), o=st.integers(1, 80), n=st.integers(1, 2), side=st.integers(1, 20))
@strategies.budget(16)
@tally.checked_against("oracle")
def test_pointwise_first_filter_grad_matches_the_oracle_in_either_order(c, o, n, side):
    """dw (O, C, 1, 1) of channels-first x and dy by the tiled engine's 1x1 kernel, whichever
    operand it takes first; x and dy unchanged."""
    geom = convgrad.ConvGeometry.for_conv((n, c, side, side), (o, c, 1, 1))
    swapped = tiled._pointwise_swapped(geom)
    pair = 2 * VECTOR_BYTES // 4  # float32 channels of one pass of the tiles
    assert swapped == (VECTOR_BYTES == 32 and c < o
                       and -(-o // 6) * -(-c // pair) <= -(-c // 6) * -(-o // pair))
    rng = np.random.default_rng(n * 1000 + c * 31 + o * 7 + side)
    x = rng.standard_normal((n, c, side, side)).astype(np.float32)
    dy = rng.standard_normal((n, o, side, side)).astype(np.float32)
    x_before, dy_before = x.copy(), dy.copy()
    got = convgrad.conv_filter_grad(x, dy, (o, c, 1, 1), method="tiled")
    assert np.array_equal(x, x_before) and np.array_equal(dy, dy_before)
    want = oracle.filter_grad(x.astype(np.float64), dy.astype(np.float64), (o, c, 1, 1))
    p = n * side * side
    assert_close(got, want, rtol=0, atol=1e-6 * p * math.sqrt(p) + 1e-5, dtype=np.float32)


@pytest.mark.skipif(VECTOR_BYTES != 32, reason="the order is swapped with 32-byte vectors only")
def test_pointwise_first_swaps_where_x_has_fewer_channels():
    """64 -> 256 channels (ResNet's expanding 1x1) runs on (dy, x); 256 -> 64 and 3 -> 64 (a few
    input channels: 11 passes swapped against 4) keep (x, dy)."""
    def swapped(c, o):
        return tiled._pointwise_swapped(convgrad.ConvGeometry.for_conv((8, c, 56, 56), (o, c, 1, 1)))

    assert swapped(64, 256) and swapped(16, 64)
    assert not swapped(256, 64) and not swapped(3, 64)
