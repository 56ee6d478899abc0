"""The forward tiles of 6 outputs (_kernels/tiled: _tile_6; with 32-byte vectors passes of 6 outputs
x 2 vectors, _forward_tile_6x16, compiled for each block of 16, 32 or 64 channels, the window's
runs walked as one loop over their offsets): one tile's sums against float64 sums over the flat
arrays, at arbitrary offsets (a tile may run on from one row to the next), odd and even runs, a
tap row of one run or of KW runs (dilation 2), partial blocks and channels-first strides; and
whole forwards by every block against the loop oracle, the same bits whichever block holds a
channel where the blocks run the same passes (32-byte vectors)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close
from convgrad._layout import w_to_last, x_from_last, x_to_last
from convgrad.engines import tiled
from convgrad.engines._kernels import tiled as kernels
from convgrad.engines._kernels._simd import VECTOR_BYTES
from test_avx2_forward_tiles import nan_filled


@st.composite
def tile_cases(draw):
    """A tile's geometry: kernel (KD, KH, KW) of 1-3, 1-3, 1-4 taps, C of 1-9 channels (runs KW * C
    or C odd and even), dilations 1-2 (d2 = 2: KW runs of C per row), the block B, its
    valid channels m (partial passes), channels-last or a channels-first stride yc, the dtype."""
    kd, kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    c = draw(st.integers(1, 9))
    d0, d1, d2 = (draw(st.integers(1, 2)) for _ in range(3))
    block = draw(st.sampled_from([16, 32, 64]))
    m = draw(st.integers(1, block))
    first = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (kd, kh, kw), c, (d0, d1, d2), block, m, first, dtype


@given(case=tile_cases(), seed=st.integers(0, 2**16))
@strategies.budget(60)
def test_a_tile_of_6_outputs_matches_its_sums(case, seed):
    """_tile_6 on flat x, w, y: each of the 6 outputs t (window at xo[t], any offsets) gets its
    m channels o at yo[t] + o * yc, the float64 sum over (a, b, e, c) of x[xo[t] + a d0 sd +
    b d1 sh + e d2 C + c] * w[wo + ((a KH + b) KW + e) C B + c B + o] within the dtype's rounding;
    y is NaN-filled first: the channels past m stay NaN (never written), the others are all
    written."""
    (kd, kh, kw), c, (d0, d1, d2), block, m, first, dtype = case
    rng = np.random.default_rng(seed)
    row = ((kw - 1) * d2 + 1) * c + 5 * c  # a row's reach for 6 outputs one C apart
    sh = row + int(rng.integers(0, 3))
    sd = ((kh - 1) * d1 + 1) * sh + int(rng.integers(0, 3))
    span = (kd - 1) * d0 * sd + (kh - 1) * d1 * sh + (kw - 1) * d2 * c + c  # one window
    xf = rng.standard_normal(span + 40).astype(dtype)
    xo = tuple(int(v) for v in rng.integers(0, 40, 6))
    wo = int(rng.integers(0, 3)) * block
    wf = rng.standard_normal(wo + kd * kh * kw * c * block).astype(dtype)
    yc = 7 if first else 1  # channels-first: channel o of output t at yo[t] + 7 o
    yo = tuple(range(6)) if first else tuple(t * block + 3 for t in range(6))
    yf = np.full(6 * block * 7 + 8, np.nan, dtype)
    kernels._tile_6(xf, wf, yf, wo, m, kd, kh, kw, c, sd, sh, d0, d1, d2, xo, yo, yc, False, block)
    w = wf[wo:].reshape(kd, kh, kw, c, block).astype(np.float64)
    a, b, e, ch = np.meshgrid(np.arange(kd), np.arange(kh), np.arange(kw), np.arange(c), indexing="ij")
    taps = a * d0 * sd + b * d1 * sh + e * d2 * c + ch
    eps = np.finfo(dtype).eps
    for t in range(6):
        want = np.einsum("abec,abeco->o", xf[xo[t] + taps].astype(np.float64), w)
        got = yf[yo[t] + np.arange(block) * yc]
        assert np.isnan(got[m:]).all(), "a channel past the block's valid ones was written"
        assert_close(got[:m], want[:m], rtol=0, atol=16 * eps * kd * kh * kw * c * 4, dtype=dtype)


@st.composite
def forward_cases(draw):
    """(x_shape, w_shape, kwargs) channels-first, 2-D or 3-D: odd and even channels and row widths,
    strides and dilations 1-2, pads 0-2, planes under a tile and of
    several tiles, output channels in one partial pass up to two blocks of 32."""
    rank = draw(st.integers(2, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    stride = [draw(st.integers(1, 2)) for _ in range(rank)]
    dilation = [draw(st.integers(1, 2)) for _ in range(rank)]
    pads = [draw(st.integers(0, 2)) for _ in range(rank)]
    spatial = [max(1, (k - 1) * d + 1 - 2 * p) + draw(st.integers(0, 9 if axis == rank - 1 else 2))
               for axis, (k, d, p) in enumerate(zip(kernel, dilation, pads))]
    c = draw(st.sampled_from([1, 2, 3, 5, 16]))
    o = draw(st.sampled_from([3, 16, 20, 40, 64]))
    return (draw(st.integers(1, 2)), c, *spatial), (o, c, *kernel), {
        "stride": tuple(stride), "padding": tuple(pads), "dilation": tuple(dilation)}


@given(case=forward_cases(), first=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
@strategies.budget(30)
@tally.checked_against("oracle")
def test_forward_by_every_block_matches_the_oracle(case, first, dtype):
    """y by the tiles of 16, 32 and 64 channels (forced), channels-first (``first``) or last,
    against the float64 oracle; with 32-byte vectors every block runs the same passes of 6 outputs
    x 2 vectors, each output's products in the same order: the same bits from every block."""
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    xl = np.ascontiguousarray(x_to_last(x, "channels_first")).astype(dtype)
    wl = np.ascontiguousarray(w_to_last(w, "channels_first")).astype(dtype)
    want = oracle.conv(x, w, **kw)
    terms = x_shape[1] * np.prod(w_shape[2:])
    got = {}
    for block in (16, 32, 64):
        y = x_from_last(tiled._forward(block, geom, xl, wl, first=first), "channels_first")
        assert_close(y, want, rtol=0, atol=64 * np.finfo(dtype).eps * terms, dtype=dtype)
        got[block] = np.asarray(y)
    if VECTOR_BYTES == 32:
        assert np.array_equal(got[16], got[32]) and np.array_equal(got[16], got[64])


@pytest.mark.parametrize("o", [8, 20, 64])
@pytest.mark.parametrize("block", [16, 32, 64])
@pytest.mark.parametrize("stream", [False, True])
def test_staged_channels_first_planes_by_every_block(o, block, stream):
    """Channels-first y through the staging blocks of 8 tiles (_stream_plane_6x64: planes of 150
    outputs, three blocks of 48 and a last tile cut short): 8 whole channels at a time transposed
    straight into y's planes where not stored past the caches, a last group of fewer through the
    staging copy; y NaN-filled (every output written, none past o) and within rounding of the
    float64 oracle, in float32, for every block and o on and off the groups of 8."""
    rng = np.random.default_rng(13)
    x, w = rng.standard_normal((2, 5, 10, 15)), rng.standard_normal((o, 5, 3, 3))
    geom = convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding=1)
    xl = np.ascontiguousarray(x_to_last(x, "channels_first")).astype(np.float32)
    wl = np.ascontiguousarray(w_to_last(w, "channels_first")).astype(np.float32)

    with nan_filled(stream):
        got = x_from_last(tiled._forward(block, geom, xl, wl, first=True), "channels_first")
    assert_close(got, oracle.conv(x, w, padding=1), rtol=0, atol=64 * np.finfo(np.float32).eps * 45,
                 dtype=np.float32)
