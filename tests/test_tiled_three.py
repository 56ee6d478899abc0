"""The tiled engine's 3-tap row tiles (_kernels/tiled._forward_tile_8x16_three: 8 outputs x 16
channels, the middle tap summed apart and added at the end), forward and stride-1 input gradient,
in both layouts and dtypes, against the loop oracle. With 32-byte vectors (AVX2) the same
geometries run the 6 x 2 vector tiles (tile_width) and are checked the same way."""

from __future__ import annotations

from functools import partial

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close
from convgrad import _transpose
from convgrad._layout import w_to_last, x_from_last, x_to_last
from convgrad.engines import tiled
from convgrad.engines._kernels._simd import VECTOR_BYTES

THREE = VECTOR_BYTES != 32  # the 3-tap tiles run (not with AVX2)


@st.composite
def three_tap_cases(draw):
    """(x_shape, w_shape, kwargs) channels-first: ranks 1-3, 3 taps along the row with stride and
    dilation 1 there (the 3-tap tiles' condition), strides 1-2 and dilations 1-2 on the other
    axes, (before, after) pads from -1 to 2, rows of 1-21 outputs (whole tiles of 8, a last one
    overlapping, and rows narrower than a tile), input and output channels off the tiles' 16."""
    rank = draw(st.integers(1, 3))
    lead = rank - 1
    kernel = (*(draw(st.integers(1, 3)) for _ in range(lead)), 3)
    stride = (*(draw(st.integers(1, 2)) for _ in range(lead)), 1)
    dilation = (*(draw(st.integers(1, 2)) for _ in range(lead)), 1)
    pads = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(rank))
    spatial = []
    for axis, (k, d, (lo, hi)) in enumerate(zip(kernel, dilation, pads)):
        least = max(1, (k - 1) * d + 1 - lo - hi)
        spatial.append(least + draw(st.integers(0, 20 if axis == lead else 3)))
    n = draw(st.integers(1, 2))
    c = draw(st.sampled_from([1, 3, 16, 21]))
    o = draw(st.sampled_from([1, 5, 16, 17, 33]))
    return (n, c, *spatial), (o, c, *kernel), {"stride": stride, "padding": pads, "dilation": dilation}


@given(case=three_tap_cases(), first=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
@strategies.budget(30)
@tally.checked_against("oracle")
def test_three_tap_tiles_match_the_oracle(case, first, dtype):
    """y, and dx of the stride-1 convs, by the tiles of 16 channels (forced: the cost model may
    pick another block), channels-first (``first``: the tiles store that layout) or last, within
    the dtype's rounding of the float64 oracle; the geometry runs the 3-tap tiles (but on AVX2)."""
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assert tiled._three_taps(geom, 16) == THREE
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(geom.y_shape())
    xl = np.ascontiguousarray(x_to_last(x, "channels_first")).astype(dtype)
    wl = np.ascontiguousarray(w_to_last(w, "channels_first")).astype(dtype)
    dyl = np.ascontiguousarray(x_to_last(dy, "channels_first")).astype(dtype)
    eps = np.finfo(dtype).eps
    want = oracle.conv(x, w, **kw)
    got = x_from_last(tiled._forward(16, geom, xl, wl, first=first), "channels_first")
    # each sum: C * taps products of |x| * |w| <= ~4 * 4; rounding grows with its length
    terms = x_shape[1] * np.prod(w_shape[2:])
    assert_close(got, want, rtol=0, atol=64 * eps * terms, dtype=dtype)
    if all(s == 1 for s in geom.stride):
        want_dx = oracle.input_grad(dy, w, x_shape, **kw)
        assert tiled._three_taps(_transpose.input_grad(geom).geometry, 16) == THREE
        if first:  # channels-first dy and w in, dx out, as the engine's run_first gets them
            dx = _transpose.input_grad(geom, "channels_first")(
                dy.astype(dtype), w.astype(dtype), run=partial(tiled._forward, 16, first=True))
            got_dx = dx
        else:
            got_dx = x_from_last(_transpose.input_grad(geom)(dyl, wl, run=partial(tiled._forward, 16)),
                                 "channels_first")
        terms_dx = w_shape[0] * np.prod(w_shape[2:])
        assert_close(got_dx, want_dx, rtol=0, atol=64 * eps * terms_dx, dtype=dtype)
