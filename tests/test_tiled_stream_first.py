"""The tiled forward's 6 x 64 tiles storing a channels-first y past the caches through staging
blocks of 8 tiles (_kernels/tiled.py ``_stream_plane_6x64``, from ``tile_stream.STREAM_BYTES``
of y, lowered to 0 here so that small geometries take it): the forward and the stride-1 input
gradient, channels-first, against the loop oracle, every output written (y is NaN-filled before
the kernel runs), bitwise the cached stores' results, streamed exactly where every plane of the
last two axes is whole vectors."""

from __future__ import annotations

import math
from functools import partial

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
from convgrad._layout import x_to_last
from convgrad.engines import tiled
from convgrad.engines._kernels import tile_stream
from convgrad.engines._scratch import aligned_empty
from test_tiled_stream import streaming

pytest.importorskip("numba")


@st.composite
def first_cases(draw):
    """(x_shape, w_shape, kwargs) channels-first: ranks 1-3, kernels 1-3 per axis, strides and
    dilations 1-2, (before, after) pads 0-2; planes (the last two axes) of 1 to ~260 outputs,
    half of them a multiple of the 16 floats of a vector (so several staging blocks of 48, a
    last block cut short and the overlapping last tile); output channels on and off 64."""
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
    out = [draw(st.integers(1, 3)) for _ in range(rank)]
    out[-1] = draw(st.integers(1, 40)) if rank > 1 else draw(st.integers(1, 200))
    if rank > 1:
        out[-2] = draw(st.integers(1, 7))
    if draw(st.booleans()):  # a plane of whole vectors of float32 (and of float64 for 8 | plane)
        plane = math.prod(out[-2:])
        out[-1] *= 16 // math.gcd(plane, 16)
    spatial = tuple((o - 1) * s + (k - 1) * d + 1 - lo - hi
                    for o, s, k, d, (lo, hi) in zip(out, stride, kernel, dilation, pads))
    if min(spatial) < 1:
        pads = ((0, 0),) * rank
        spatial = tuple((o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(out, stride, kernel, dilation))
    n, c = draw(st.integers(1, 2)), draw(st.sampled_from([1, 3, 5]))
    o = draw(st.sampled_from([5, 64, 70]))
    return (n, c, *spatial), (o, c, *kernel), {"stride": stride, "padding": pads, "dilation": dilation}


@given(case=first_cases(), dtype=st.sampled_from([np.float32, np.float64]))
@strategies.budget(25)
@tally.checked_against("oracle")
def test_staged_channels_first_tiles_match_the_oracle(case, dtype):
    """y and (stride 1) dx by the 6 x 64 tiles (forced), channels-first, streamed through the
    staging blocks: within the dtype's rounding of the float64 oracle, bitwise the cached stores'
    y, the kernel told to stream exactly when a plane's bytes are whole vectors."""
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(geom.y_shape())
    forward = partial(tiled._run_first, partial(tiled._forward, 64, geom, first=True), "forward")
    item = np.dtype(dtype).itemsize
    planes = math.prod(geom.out_spatial[-2:]) * item % tile_stream.VECTOR_BYTES == 0
    xl = x_to_last(x.astype(dtype), "channels_first")
    with streaming() as calls:  # a strided forward that does not stream pads x in the regions' launch
        regions = tiled._padded_in_launch(geom, 64, xl, True)
        got = forward(x.astype(dtype), w.astype(dtype))
    assert calls == ([] if regions else [planes]) and regions == (not planes and max(geom.stride) > 1)
    with streaming(on=False) as calls:
        regions = tiled._padded_in_launch(geom, 64, xl, True)
        cached = forward(x.astype(dtype), w.astype(dtype))
    assert calls == ([] if regions else [False])
    assert got.tobytes() == cached.tobytes()
    eps = np.finfo(dtype).eps
    terms = x_shape[1] * math.prod(w_shape[2:])  # rounding grows with each sum's length
    assert_close(got, oracle.conv(x, w, **kw), rtol=0, atol=64 * eps * terms, dtype=dtype)
    if any(s > 1 for s in geom.stride):  # the strided input gradient runs the phase kernels
        return
    with streaming() as calls:
        dx = _transpose.input_grad(geom, "channels_first")(
            dy.astype(dtype), w.astype(dtype), run=partial(tiled._forward, 64, first=True))
    assert calls == [math.prod(x_shape[2:][-2:]) * item % tile_stream.VECTOR_BYTES == 0]
    terms_dx = w_shape[0] * math.prod(w_shape[2:])
    assert_close(dx, oracle.input_grad(dy, w, x_shape, **kw), rtol=0, atol=64 * eps * terms_dx, dtype=dtype)


def test_only_whole_aligned_planes_of_64_channel_tiles_stream():
    """``streams_first``: the 6 x 64 tiles only, y at least STREAM_BYTES, on a 64-byte boundary,
    planes of whole vectors; the others keep the cached stores."""
    planes = tile_stream.STREAM_BYTES // 4 // 256
    y = aligned_empty((1, planes, 16, 16), np.float32)
    assert tile_stream.streams_first(y, 64)
    assert not tile_stream.streams_first(y, 32)
    assert not tile_stream.streams_first(aligned_empty((1, planes, 16, 8), np.float32), 64)
    assert not tile_stream.streams_first(aligned_empty((1, planes + 1, 15, 15), np.float32), 64)
    raw = np.empty(planes * 256 + 32, np.float32)
    off = raw[(-raw.ctypes.data % 64) // 4 + 1:][: planes * 256].reshape(1, planes, 16, 16)
    assert not tile_stream.streams_first(off, 64)
