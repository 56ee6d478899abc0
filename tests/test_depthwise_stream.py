"""The depthwise forward's streamed stores (``_simd.vstream``: non-temporal, past the caches) and
the 64-byte aligned results they need, against the loop oracle.

The engine streams y from ``depthwise.STREAM_BYTES`` on; the tests lower that to 0 so small draws
take the path. The channels-last vector rows stream where y starts on a 64-byte boundary and C is
a multiple of the vector (16 float32, 8 float64 with AVX-512), else they store as before (on
AVX2 the channels-last forward runs by columns, ``depthwise_lanes.forward_cols``, streaming the
first row of each pair of output rows where ``stream`` says, tests/test_avx2_dw_last.py): the
draws take both, with widths across several strips of ``depthwise_lanes.STRIP`` columns (the last
one partial), pads that put whole strips in the padding, and rows cut by strides and dilations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import strategies
import tally
from checks import assert_depthwise_three_ops
from convgrad.engines import depthwise
from convgrad.engines._kernels import depthwise_lanes


@st.composite
def streamed_cases(draw):
    """(x_shape, w_shape, kwargs) of a channels-first 3x3 depthwise conv the vector rows run,
    channel counts on and off the multiples of the vector, rows of up to four strips."""
    c = draw(st.sampled_from((8, 16, 24, 32, 33, 48)))
    s0, d0 = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple((draw(st.integers(-1, 3)), draw(st.integers(-1, 3))) for _ in range(2))
    h = draw(st.integers(max(1, 2 * d0 + 1 - sum(pads[0]), 1 - min(pads[0])), 2 * d0 + 6))
    w = draw(st.integers(max(1, 3 - sum(pads[1]), 1 - min(pads[1])), 4 * depthwise_lanes.STRIP + 3))
    n = draw(st.integers(1, 2))
    return (n, c, h, w), (c, 1, 3, 3), {"stride": (s0, 1), "dilation": (d0, 1), "padding": pads,
                                         "groups": c}


@given(case=streamed_cases(), dtype=st.sampled_from((np.float32, np.float64)), seed=st.integers(0, 2**31))
@strategies.budget(20)
@tally.checked_against("oracle")
def test_streamed_rows_match_the_oracle(case, dtype, seed):
    """Forward and the gathered input gradient (the forward's rows on dy) stream their results."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(depthwise, "STREAM_BYTES", 0)
        assert_depthwise_three_ops(case, "channels_last", dtype, seed)


@given(shape=st.lists(st.integers(0, 9), min_size=1, max_size=4),
       dtype=st.sampled_from((np.float32, np.float64)))
@strategies.budget(20)
def test_aligned_results_start_on_a_cache_line(shape, dtype):
    y = depthwise.aligned_empty(tuple(shape), np.dtype(dtype))
    assert y.shape == tuple(shape) and y.dtype == dtype and y.flags.c_contiguous
    assert y.ctypes.data % 64 == 0 or y.size == 0  # an empty array's address is no sample's
    y[...] = 1  # the whole view is writable memory of its own
    assert y.sum() == math.prod(shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_rows_stream_where_y_is_aligned(dtype):
    """The condition the streamed stores rely on (their addresses on 64-byte boundaries): an
    aligned y of whole vectors of channels streams, one a sample off the boundary or with a
    channel count off the vector does not."""
    lanes = depthwise_lanes.VECTOR_BYTES // np.dtype(dtype).itemsize
    y = depthwise.aligned_empty((2, 3, 5, 2 * lanes), np.dtype(dtype))
    assert depthwise_lanes.streams(y, 2 * lanes)
    assert not depthwise_lanes.streams(y, 2 * lanes + 1)
    shifted = depthwise.aligned_empty((2 * 3 * 5 * 2 * lanes + 1,), np.dtype(dtype))[1:]
    assert not depthwise_lanes.streams(shifted, 2 * lanes)
