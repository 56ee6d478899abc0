"""The tiled forward's work items claimed in chunks by the threads that run (_kernels/tiled.py
``tiled_forward``: ``_claim``, ``chunk_size``), not split into equal static shares: more items than
chunks (several items per chunk, the last chunk ragged), the tiles that run on across a plane's
rows (blocks of 16, 32 and 64, filter-major or not) and the dot-product tiles that stay within a
row, both layouts of y. Every output written once (y NaN-filled first), the loop oracle's values,
and the same bits on 1 and 2 threads (two threads forced, whatever the machine's load)."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close, at_thread_counts
from convgrad._layout import w_to_last, x_from_last, x_to_last
from convgrad.engines import _threads, tiled
from convgrad.engines._kernels._numba import CHUNKS
from test_avx2_forward_tiles import nan_filled


@st.composite
def claimed_cases(draw):
    """(x_shape, w_shape, padding, block, filter_major) channels-first, 3-D: long leading axes (up
    to a few times CHUNKS work items: several to a chunk, the last chunk ragged), planes from under
    a tile to a few tiles, a block of 16, 32, 64 or the dot-product tiles."""
    block = draw(st.sampled_from([16, 32, 64, tiled.DOT]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(3))
    pad = draw(st.integers(0, 1))
    spatial = (draw(st.integers(1, 30)), draw(st.integers(1, 5)), draw(st.integers(1, 13)))
    spatial = tuple(max(s, k - 2 * pad) for s, k in zip(spatial, kernel))
    n = draw(st.integers(1, 2))
    c = draw(st.sampled_from([1, 3, 16]))
    o = draw(st.sampled_from([3, 5] if block == tiled.DOT else [5, 16, 37]))
    return (n, c, *spatial), (o, c, *kernel), pad, block, draw(st.booleans())


@given(case=claimed_cases(), first=st.booleans())
@strategies.budget(25)
@tally.checked_against("oracle")
def test_claimed_items_match_the_oracle_on_1_and_2_threads(case, first):
    """y within float32's rounding of the float64 oracle, every output written, the same bits on 1
    and 2 threads."""
    x_shape, w_shape, pad, block, filter_major = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=pad)
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    xl = np.ascontiguousarray(x_to_last(x, "channels_first")).astype(np.float32)
    wl = np.ascontiguousarray(w_to_last(w, "channels_first")).astype(np.float32)

    def run():
        with nan_filled(stream=False):
            return np.array(x_from_last(tiled._forward(block, geom, xl, wl, first=first), "channels_first"))

    major = mock.patch.object(tiled, "FILTER_MAJOR_BYTES", 0 if filter_major else 1 << 62)
    with major, mock.patch.object(_threads, "free_cores", lambda: 2):
        one, two = at_thread_counts(run)
    terms = x_shape[1] * np.prod(w_shape[2:])
    assert_close(one, oracle.conv(x, w, padding=pad), rtol=0, atol=64 * np.finfo(np.float32).eps * terms,
                 dtype=np.float32)
    np.testing.assert_array_equal(one, two)


def test_the_benchmark_conv3d_claims_ragged_chunks():
    """The suite's conv3d (16 -> 16 channels, 3x3x3, padding 1) at a third of its depth: more work
    items than CHUNKS, not a multiple of the chunk, each written once with the oracle's value, on
    1 and 2 threads alike."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 16, 11, 32, 32))
    w = rng.standard_normal((16, 16, 3, 3, 3))
    geom = convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding=1)
    plane_tiles = -(-32 * 32 // 6)
    items = 2 * 11 * -(-plane_tiles // -(-32 // 6))  # tiled_forward's items, channels-last
    size = -(-items // CHUNKS)
    assert items > CHUNKS and items % size  # several items to a chunk, the last one ragged
    xl = np.ascontiguousarray(x_to_last(x, "channels_first")).astype(np.float32)
    wl = np.ascontiguousarray(w_to_last(w, "channels_first")).astype(np.float32)

    def run():
        with nan_filled(stream=True):
            return np.array(x_from_last(tiled._forward(16, geom, xl, wl), "channels_first"))

    with mock.patch.object(_threads, "free_cores", lambda: 2):
        one, two = at_thread_counts(run)
    np.testing.assert_array_equal(one, two)
    assert_close(one, oracle.conv(x, w, padding=1), rtol=0, atol=64 * np.finfo(np.float32).eps * 16 * 27,
                 dtype=np.float32)
