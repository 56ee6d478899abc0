"""The channels-first stores of the tiled engine's 3-tap rows (16 channels, 3 taps along the row)
with 32-byte vectors (AVX2: the passes of 6 x 2 vectors of a block of 16, staged 8 tiles at a
time channels-last and stored as runs of 48 outputs by 8 x 8 transpositions, _stream_plane_6x64):
the forward and the stride-1 input gradient against the loop oracle, bitwise equal to the
channels-last tiles' sums (the same passes in the same order) and on 1 and 2 threads. On other
machines the same checks run the 64-byte 3-tap tiles."""

from __future__ import annotations

from functools import partial

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close, at_thread_counts
from convgrad import _transpose
from convgrad._layout import w_to_last, x_from_last, x_to_last
from convgrad.engines import tiled
from test_avx2_forward_tiles import nan_filled


@st.composite
def staged_cases(draw):
    """(x_shape, w_shape, kwargs) channels-first: ranks 1-3, 3 taps along the row with stride and
    dilation 1 there, strides and dilations 1-2 on the other axes, (before, after) pads from -1 to
    2, rows of 1-29 outputs (under a tile, whole tiles of 8, a last one overlapping the one
    before), output channels in whole blocks of 16 and with a partial last block (whose channels
    are stored one at a time)."""
    rank = draw(st.integers(1, 3))
    lead = rank - 1
    kernel = (*(draw(st.integers(1, 3)) for _ in range(lead)), 3)
    stride = (*(draw(st.integers(1, 2)) for _ in range(lead)), 1)
    dilation = (*(draw(st.integers(1, 2)) for _ in range(lead)), 1)
    pads = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(rank))
    spatial = []
    for axis, (k, d, (lo, hi)) in enumerate(zip(kernel, dilation, pads)):
        least = max(1, (k - 1) * d + 1 - lo - hi)
        spatial.append(least + draw(st.integers(0, 28 if axis == lead else 3)))
    n = draw(st.integers(1, 2))
    c = draw(st.sampled_from([1, 5, 16]))
    o = draw(st.sampled_from([16, 32, 37]))
    return (n, c, *spatial), (o, c, *kernel), {"stride": stride, "padding": pads, "dilation": dilation}


def _both_layouts(geom, x, w, dy, dtype, stream):
    """(y, dx) by the tiles of 16 channels, each as (channels-first run, channels-last run), both
    channels-first arrays; dx only for a stride-1 conv."""
    xl, wl, dyl = (np.ascontiguousarray(f(a, "channels_first")).astype(dtype)
                   for a, f in ((x, x_to_last), (w, w_to_last), (dy, x_to_last)))
    with nan_filled(stream):
        y = (x_from_last(tiled._forward(16, geom, xl, wl, first=True), "channels_first"),
             x_from_last(tiled._forward(16, geom, xl, wl), "channels_first"))
        if any(s > 1 for s in geom.stride):
            return y, None
        dx = (_transpose.input_grad(geom, "channels_first")(dy.astype(dtype), w.astype(dtype),
                                                          run=partial(tiled._forward, 16, first=True)),
              x_from_last(_transpose.input_grad(geom)(dyl, wl, run=partial(tiled._forward, 16)),
                          "channels_first"))
    return y, dx


@given(case=staged_cases(), dtype=st.sampled_from([np.float32, np.float64]), stream=st.booleans())
@strategies.budget(30)
@tally.checked_against("oracle")
def test_staged_channels_first_matches_the_oracle(case, dtype, stream):
    """y and dx channels-first within the dtype's rounding of the float64 oracle, every output
    written (y NaN-filled first), and bitwise the channels-last tiles' values."""
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(geom.y_shape())
    (y_first, y_last), dx = _both_layouts(geom, x, w, dy, dtype, stream)
    eps = np.finfo(dtype).eps
    terms = x_shape[1] * np.prod(w_shape[2:])
    assert_close(y_first, oracle.conv(x, w, **kw), rtol=0, atol=64 * eps * terms, dtype=dtype)
    np.testing.assert_array_equal(y_first, y_last)
    if dx is None:
        return
    terms_dx = w_shape[0] * np.prod(w_shape[2:])
    assert_close(dx[0], oracle.input_grad(dy, w, x_shape, **kw), rtol=0, atol=64 * eps * terms_dx,
                 dtype=dtype)
    np.testing.assert_array_equal(dx[0], dx[1])


def test_staged_channels_first_on_1_and_2_threads():
    """The 3-D conv of the benchmark's kind (16 -> 16 channels, 3x3x3, rows of 32 and of 13),
    channels-first through the public op: the same bits on 1 and 2 threads, and the oracle's
    values."""
    rng = np.random.default_rng(5)
    for spatial in ((6, 7, 32), (3, 5, 13)):
        x = rng.standard_normal((2, 16, *spatial)).astype(np.float32)
        w = rng.standard_normal((16, 16, 3, 3, 3)).astype(np.float32)
        one, two = at_thread_counts(partial(convgrad.conv, x, w, padding=1, method="tiled"))
        np.testing.assert_array_equal(one, two)
        assert_close(one, oracle.conv(x.astype(np.float64), w.astype(np.float64), padding=1), rtol=0,
                     atol=64 * np.finfo(np.float32).eps * 16 * 27, dtype=np.float32)
