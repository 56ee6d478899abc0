"""The channels-last 3x3 depthwise forward by columns (``depthwise_lanes.forward_cols``) with
``stream``: the first row of a pair stored past the caches (``vstream``), the second through them,
a lone row through them. Checked where the stores really stream: rows and y on a vector boundary
(``aligned_empty``) and C a multiple of the vector (``_simd.lanes``: 8 float32 / 4 float64 with
AVX2, 16 / 8 with AVX-512), so ``streams`` holds; on any vector width.

``forward_cols`` streamed against ``forward_pair`` / ``forward_row`` (the strips, plain stores):
the same sums in the same order, the same bits, every output written (NaN-filled first), a lone
row's second row untouched. Through the kernel (``depthwise2d_forward`` with ``stream``, which
runs ``forward_cols`` where ``VECTOR_BYTES == 32``): the loop oracle's values, the same bits on 1
and 2 threads (the threads' streamed rows fenced before the call returns).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import strategies
import tally
from checks import at_thread_counts
from convgrad.engines._kernels import depthwise, depthwise_first, depthwise_lanes
from convgrad.engines._kernels._simd import VECTOR_BYTES
from convgrad.engines._scratch import aligned_empty
from test_avx2_depthwise import _oracle_forward, check_forward_kernel
from test_avx2_depthwise import row_cases as depthwise_rows

pytest.importorskip("numba")

DTYPES = [np.float32, np.float64]


def _lanes(dtype) -> int:
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def _nan_rows(n, size, dtype):
    """n NaN-filled rows of ``size`` samples, each on a vector boundary (streamable)."""
    rows = [aligned_empty((size,), np.dtype(dtype)) for _ in range(n)]
    for row in rows:
        row.fill(np.nan)
    return rows


def row_cases(dtype):
    """test_avx2_depthwise's rows with whole vectors of channels (one to three): the streamed
    path's condition."""
    return depthwise_rows(dtype, st.integers(1, 3).map(lambda k: _lanes(dtype) * k))


@given(data=st.data(), dtype=st.sampled_from(DTYPES), two=st.booleans(), seed=st.integers(0, 2**31))
@strategies.budget(40)
def test_streamed_columns_equal_the_strips_bit_for_bit(data, dtype, two, seed):
    """``forward_cols`` with ``stream`` against the strips with plain stores: the same bits in
    every output of both rows (or of the lone row, the second left NaN)."""
    c, w_in, p1, ow = data.draw(row_cases(dtype))
    rng = np.random.default_rng(seed)
    ra, rb, rc, rd = (rng.standard_normal(w_in * c).astype(dtype) for _ in range(4))
    wf = rng.standard_normal(9 * c).astype(dtype)
    got = _nan_rows(2, ow * c, dtype)
    want = _nan_rows(2, ow * c, dtype)
    assert depthwise_lanes.streams(got[0], c) and depthwise_lanes.streams(got[1], c)
    depthwise_lanes.forward_cols(ra, rb, rc, rd, wf, got[0], got[1], two, w_in, p1, c, True)
    if two:
        depthwise_lanes.forward_pair(ra, rb, rc, rd, rc, rd, wf, want[0], want[1], w_in, p1, c, False)
    else:
        depthwise_lanes.forward_row(ra, rb, rc, wf, want[0], w_in, p1, c, False)
    assert np.array_equal(got[0], want[0]) and not np.isnan(got[0]).any()
    assert np.array_equal(got[1], want[1], equal_nan=True)
    assert np.isnan(got[1]).all() != two


@st.composite
def kernel_cases(draw, dtype):
    """(x (N, H, W, C), leading pads, trailing pads, row stride, row dilation), C whole vectors,
    odd and even heights (a lone last row), strides and dilations of 2 (lone rows only)."""
    c = _lanes(dtype) * draw(st.integers(1, 3))
    s0, d0 = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    (p0, q0), (p1, q1) = ((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    h = draw(st.integers(max(1, 2 * d0 + 1 - p0 - q0), 2 * d0 + 7))
    w = draw(st.integers(max(1, 3 - p1 - q1), depthwise_lanes.AHEAD_Y + 6))
    return (draw(st.integers(1, 2)), h, w, c), (p0, p1), (q0, q1), s0, d0


@given(data=st.data(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@strategies.budget(30)
@tally.checked_against("oracle")
def test_the_streamed_forward_kernel_matches_the_oracle(data, dtype, seed):
    """``depthwise2d_forward`` with ``stream`` on a streamable y (NaN-filled first): the oracle's
    y within float rounding, every output written."""
    check_forward_kernel(data.draw(kernel_cases(dtype)), dtype, seed, True, streamable=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_streamed_forward_bits_do_not_depend_on_the_thread_count(dtype):
    """Row pairs past the serial size, claimed by 1 or 2 threads, streamed: the same bits, the
    oracle's values."""
    lanes = _lanes(dtype)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 24, 2 * depthwise_lanes.AHEAD_Y + 3, 4 * lanes)).astype(dtype)
    w2 = rng.standard_normal((3, 3, x.shape[3])).astype(dtype)
    assert x.size * 9 >= depthwise_first.SERIAL_MACS  # the threads' chunks, not the serial call

    def forward():
        y = aligned_empty(x.shape, np.dtype(dtype))
        y.fill(np.nan)
        depthwise.depthwise2d_forward(x, w2, 1, 1, 1, 1, 1, 1, y, True)
        return y

    results = at_thread_counts(forward)
    assert np.array_equal(results[0], results[1], equal_nan=True)
    want = _oracle_forward(x, w2, (1, 1), (1, 1), 1, 1)
    assert np.allclose(results[0], want, rtol=0, atol=(1e-5 if dtype == np.float32 else 1e-13) * 9)
