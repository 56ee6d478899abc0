"""The tiled forward's tiles (8 x 16, 8 x 32, 6 x 64, the 3-tap rows) storing y past the caches
(_kernels/tile_stream.py, from ``STREAM_BYTES`` of y, lowered to 0 here so that small geometries
take the streamed stores): the forward and the stride-1 input gradient against the loop oracle,
every output written (the results are NaN-filled before the kernel runs)."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from unittest import mock

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
from convgrad.engines import _kernels, tiled
from convgrad.engines._kernels import tile_stream
from convgrad.engines._scratch import aligned_empty


@contextmanager
def streaming(on: bool = True):
    """Stream every y the kernels may stream (``on``; else none), fill every result with NaN
    before the kernels write it, and record the ``stream`` argument of each call of the kernel."""
    calls = []
    kernel = _kernels.tiled_forward

    def spy(*args):
        calls.append(args[-2])  # stream (first is the last)
        return kernel(*args)

    def nan_filled(shape, dtype):
        a = aligned_empty(shape, dtype)
        a.fill(np.nan)
        return a

    with mock.patch.object(tile_stream, "STREAM_BYTES", 0 if on else 1 << 62), \
            mock.patch.object(_kernels, "tiled_forward", spy), \
            mock.patch.object(tiled, "aligned_empty", nan_filled):
        yield calls


@st.composite
def stream_cases(draw):
    """(x_shape, w_shape, kwargs) channels-first: ranks 1-3, kernels 1-4 per axis, strides and
    dilations 1-2, (before, after) pads from -1 to 2, planes of 1-40 outputs (smaller than a tile
    of 6, whole tiles, a last one overlapping), output channels on and off the vector's 16 and
    the tiles' 16, 32 and 64 (only whole blocks stream)."""
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    pads = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(rank))
    spatial = []
    for axis, (k, d, (lo, hi)) in enumerate(zip(kernel, dilation, pads)):
        least = max(1, (k - 1) * d + 1 - lo - hi)
        spatial.append(least + draw(st.integers(0, 9 if axis >= rank - 2 else 2)))
    n = draw(st.integers(1, 2))
    c = draw(st.sampled_from([1, 3, 5, 16]))
    o = draw(st.sampled_from([16, 24, 48, 64, 72, 130]))
    return (n, c, *spatial), (o, c, *kernel), {"stride": stride, "padding": pads, "dilation": dilation}


@given(case=stream_cases(), block=st.sampled_from([16, 32, 64]),
       dtype=st.sampled_from([np.float32, np.float64]))
@strategies.budget(30)
@tally.checked_against("oracle")
def test_streamed_tiles_match_the_oracle(case, block, dtype):
    """y and (stride 1) dx by the tiles of ``block`` channels (forced: the cost model may pick
    another), channels-last, y streamed, within the dtype's rounding of the float64 oracle; the
    kernel was told to stream exactly when O is a multiple of the vector's lanes."""
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(geom.y_shape())
    xl = np.ascontiguousarray(x_to_last(x, "channels_first")).astype(dtype)
    wl = np.ascontiguousarray(w_to_last(w, "channels_first")).astype(dtype)
    dyl = np.ascontiguousarray(x_to_last(dy, "channels_first")).astype(dtype)
    eps = np.finfo(dtype).eps
    lanes = tile_stream.VECTOR_BYTES // np.dtype(dtype).itemsize
    with streaming() as calls:  # a strided forward that does not stream runs the regions kernel
        regions = ((tiled._in_regions(geom, block, xl, False) and not tiled._streams(geom, block, dtype))
                   or tiled._padded_in_launch(geom, block, xl, False))
        got = x_from_last(tiled._forward(block, geom, xl, wl), "channels_first")
    assert calls == ([] if regions else [w_shape[0] % lanes == 0])
    terms = x_shape[1] * np.prod(w_shape[2:])  # rounding grows with each sum's length
    assert_close(got, oracle.conv(x, w, **kw), rtol=0, atol=64 * eps * terms, dtype=dtype)
    if any(s > 1 for s in geom.stride):  # the strided input gradient runs the regions kernel
        return
    with streaming() as calls:
        dx = _transpose.input_grad(geom)(dyl, wl, run=partial(tiled._forward, block))
    assert calls == [x_shape[1] % lanes == 0]
    terms_dx = w_shape[0] * np.prod(w_shape[2:])
    assert_close(x_from_last(dx, "channels_first"), oracle.input_grad(dy, w, x_shape, **kw), rtol=0,
                 atol=64 * eps * terms_dx, dtype=dtype)


def test_small_and_unaligned_y_are_not_streamed():
    """tile_stream.streams: y under STREAM_BYTES, off a 64-byte boundary or with channels off the
    vector's lanes keeps the cached stores."""
    big = tile_stream.STREAM_BYTES // 4
    y = aligned_empty((big // 64, 64), np.float32)
    assert tile_stream.streams(y)
    assert not tile_stream.streams(y[:-1])
    assert not tile_stream.streams(aligned_empty((big // 60 + 1, 60), np.float32))  # 60: off 8 and 16
    raw = np.empty(big + 16, np.float32)
    off = raw[(-raw.ctypes.data % 64) // 4 + 1:][: big - 64].reshape(-1, 64)
    assert not tile_stream.streams(off)
