"""The tiled forward's tiles of 16 or 32 channels, the 3-tap row tiles and the dot-product tiles,
as they run on this machine: with 32-byte vectors (AVX2) as passes of explicit vectors
(_kernels/tiled: _forward_tile_6x16, 6 outputs x 2 vectors per pass of 2 vectors of channels, for
every block, and _dot_tile_3x3, two passes of 3 outputs x 3 channels), else the 64-byte tiles of 8
outputs. The forward and the stride-1 input gradient against the loop oracle, both layouts and
dtypes, partial blocks, y NaN-filled first (every output written) and, where asked, stored past
the caches."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from unittest import mock

import numpy as np
import pytest
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
from convgrad.engines._kernels import tile_stream
from convgrad.engines._kernels._simd import VECTOR_BYTES
from convgrad.engines._scratch import aligned_empty


@contextmanager
def nan_filled(stream: bool):
    """Every y the engine allocates NaN-filled (an output a tile skips stays NaN), streamed past the
    caches where the kernel may (``stream``: STREAM_BYTES lowered to 0) or never."""

    def empty(shape, dtype):
        a = aligned_empty(shape, dtype)
        a.fill(np.nan)
        return a

    with mock.patch.object(tile_stream, "STREAM_BYTES", 0 if stream else 1 << 62), \
            mock.patch.object(tiled, "aligned_empty", empty):
        yield


@st.composite
def tile_cases(draw):
    """(x_shape, w_shape, kwargs) channels-first: ranks 1-3, kernels 1-4 per axis (3 along the
    row with stride and dilation 1 there: the 3-tap tiles of 16), strides and dilations 1-2,
    (before, after) pads from -1 to 2, planes of 1-30 outputs (under a tile, whole tiles, a last
    one overlapping), output channels on and off the vectors' lanes (4 and 8 with 32-byte
    vectors, 8 and 16 with 64) and the blocks' 16 and 32, in one pass of 2 vectors or several."""
    rank = draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 4)) for _ in range(rank)]
    stride = [draw(st.integers(1, 2)) for _ in range(rank)]
    dilation = [draw(st.integers(1, 2)) for _ in range(rank)]
    if draw(st.booleans()):  # a 3-tap row (the 3-tap tiles where the block is 16)
        kernel[-1], stride[-1], dilation[-1] = 3, 1, 1
    pads = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(rank))
    spatial = []
    for axis, (k, d, (lo, hi)) in enumerate(zip(kernel, dilation, pads)):
        least = max(1, (k - 1) * d + 1 - lo - hi)
        spatial.append(least + draw(st.integers(0, 14 if axis == rank - 1 else 3)))
    n = draw(st.integers(1, 2))
    c = draw(st.sampled_from([1, 3, 8, 17]))
    o = draw(st.sampled_from([1, 3, 4, 8, 12, 16, 20, 24, 32, 37]))
    return (n, c, *spatial), (o, c, *kernel), {"stride": tuple(stride), "padding": pads,
                                                "dilation": tuple(dilation)}


def _operands(case, dtype, seed):
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(geom.y_shape())
    last = [np.ascontiguousarray(to_last(a, "channels_first")).astype(dtype)
            for a, to_last in ((x, x_to_last), (w, w_to_last), (dy, x_to_last))]
    return geom, x, w, dy, last


@given(case=tile_cases(), block=st.sampled_from([16, 32]), first=st.booleans(), stream=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]))
@strategies.budget(40)
@tally.checked_against("oracle")
def test_row_tiles_match_the_oracle(case, block, first, stream, dtype):
    """y, and dx of the stride-1 convs, by the tiles of ``block`` channels (forced: the cost model
    may pick another), channels-first (``first``) or last, within the dtype's rounding of the
    float64 oracle. Where ``stream`` the channels-last tiles of whole blocks store past the caches
    (O a multiple of the vector's lanes, VECTOR_BYTES of this machine)."""
    x_shape, w_shape, kw = case
    geom, x, w, dy, (xl, wl, dyl) = _operands(case, dtype, 7)
    eps = np.finfo(dtype).eps
    with nan_filled(stream):
        got = x_from_last(tiled._forward(block, geom, xl, wl, first=first), "channels_first")
    terms = x_shape[1] * np.prod(w_shape[2:])  # each sum: rounding grows with its length
    assert_close(got, oracle.conv(x, w, **kw), rtol=0, atol=64 * eps * terms, dtype=dtype)
    if any(s > 1 for s in geom.stride):  # the strided input gradient: tests/test_strided_phases.py
        return
    with nan_filled(stream):
        if first:  # channels-first dy and w in, dx out, as the engine's run_first gets them
            dx = _transpose.input_grad(geom, "channels_first")(
                dy.astype(dtype), w.astype(dtype), run=partial(tiled._forward, block, first=True))
        else:
            dx = x_from_last(_transpose.input_grad(geom)(dyl, wl, run=partial(tiled._forward, block)),
                             "channels_first")
    terms_dx = w_shape[0] * np.prod(w_shape[2:])
    assert_close(dx, oracle.input_grad(dy, w, x_shape, **kw), rtol=0, atol=64 * eps * terms_dx,
                 dtype=dtype)


@pytest.mark.parametrize("kernel", [(2, 5), (3, 3)])
@pytest.mark.parametrize("block", [16, 32])
@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_tiles_of_whole_and_partial_blocks(kernel, block, first, stream, dtype):
    """y by the tiles of ``block`` channels on a 9 x 13 plane (whole tiles and an overlapping
    last one; 3 taps: the 3-tap tiles of 16) into 40 channels: whole blocks, whole vectors of
    either width, and a partial pass, in every layout, dtype and store, against the oracle."""
    case = ((2, 5, 9, 13), (40, 5, *kernel), {"padding": ((1, 1), (1, 1))})
    geom, x, w, _, (xl, wl, _) = _operands(case, dtype, 9)
    with nan_filled(stream):
        got = x_from_last(tiled._forward(block, geom, xl, wl, first=first), "channels_first")
    terms = 5 * np.prod(kernel)
    assert_close(got, oracle.conv(x, w, **case[2]), rtol=0, atol=64 * np.finfo(dtype).eps * terms,
                 dtype=dtype)


@st.composite
def dot_cases(draw):
    """(x_shape, w_shape, kwargs) channels-first for the dot-product tiles (few output channels):
    1-5 outputs (one group of 3, a partial one, two), 1-40 input channels (padded to 16 by the
    engine: whole vectors of either width), rows of 1-20 outputs (under a tile of 6, whole ones,
    a last one overlapping), strides and dilations 1-2."""
    rank = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
    spatial = []
    for axis, (k, d, (lo, hi)) in enumerate(zip(kernel, dilation, pads)):
        least = max(1, (k - 1) * d + 1 - lo - hi)
        spatial.append(least + draw(st.integers(0, 19 if axis == rank - 1 else 3)))
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 40))
    o = draw(st.integers(1, 5))
    return (n, c, *spatial), (o, c, *kernel), {"stride": stride, "padding": pads, "dilation": dilation}


@given(case=dot_cases(), first=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
@strategies.budget(30)
@tally.checked_against("oracle")
def test_dot_tiles_match_the_oracle(case, first, dtype):
    """y by the dot-product tiles (forced: tiled.DOT), channels-first (``first``) or last, within
    the dtype's rounding of the float64 oracle."""
    x_shape, w_shape, kw = case
    geom, x, w, _, (xl, wl, _) = _operands(case, dtype, 8)
    eps = np.finfo(dtype).eps
    with nan_filled(False):
        got = x_from_last(tiled._forward(tiled.DOT, geom, xl, wl, first=first), "channels_first")
    terms = x_shape[1] * np.prod(w_shape[2:])
    assert_close(got, oracle.conv(x, w, **kw), rtol=0, atol=64 * eps * terms, dtype=dtype)


@given(o=st.integers(1, 200), block=st.sampled_from([16, 32, 64]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_the_cost_model_counts_the_channels_the_tiles_compute(o, block, dtype):
    """With 32-byte vectors the tiles skip a block's passes of 2 vectors past its last channel: the
    model charges the channels up to the next pass, never past the block, never fewer than o;
    with 64-byte vectors whole blocks."""
    got = tiled._computed_channels(o, block, dtype)
    per = min(block, 2 * VECTOR_BYTES // np.dtype(dtype).itemsize if VECTOR_BYTES == 32 else block)
    assert o <= got < o + per
    assert got % per == 0


@pytest.mark.parametrize("o", [1, 5, 16, 20, 33, 48, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_staged_channels_first_6x64_tiles_of_a_partial_block(o, dtype):
    """Channels-first y by the 6 x 64 tiles (forced) through their staging blocks of 8 tiles
    (_stream_plane_6x64: a plane of 150 outputs, three blocks of 48 and a last tile cut short),
    for blocks of ``o`` < 64 channels: with 32-byte vectors the tiles sum only the passes of 2
    vectors up to the last valid channel into the block; every output written (y NaN-filled) and
    within rounding of the float64 oracle."""
    case = ((2, 5, 10, 15), (o, 5, 3, 3), {"padding": 1})
    geom, x, w, _, (xl, wl, _) = _operands(case, dtype, 11)
    with nan_filled(stream=False):
        got = x_from_last(tiled._forward(64, geom, xl, wl, first=True), "channels_first")
    assert_close(got, oracle.conv(x, w, padding=1), rtol=0, atol=64 * np.finfo(dtype).eps * 45, dtype=dtype)
