"""The channels-first 3x3 depthwise planes with 32-byte vectors (AVX2:
``depthwise_first._plane3x3_lines``), on every vector width.

``_plane3x3_lines`` sums each output as ``_plane3x3_aligned`` does (``_taps``' order), loading a
row's three taps at their offsets instead of shifting them in registers, and may store y past the
caches: it is checked against ``_plane3x3_aligned`` bit for bit on any machine. Through the kernel
(``depthwise2d_forward_first``, which runs it where ``VECTOR_BYTES == 32``), with the streaming
threshold lowered to 0 so that small draws stream (the engine's calls stream from 1 MiB of y on,
which no other test's draw reaches), against the loop oracle and across thread counts. Sizes
follow the machine's vector (``_simd.lanes``: 8 float32 / 4 float64 with AVX2, 16 / 8 with
AVX-512): output widths from one vector to three and a bit (the last vector over the one before,
which does not stream), row strides and dilations of 1 and 2, odd heights (a lone last row),
multipliers 1 and 2, y on and a sample off a vector boundary (no streaming). y is NaN-filled
first: every output is written.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle
import strategies
import tally
from checks import at_thread_counts
from convgrad.engines._kernels import depthwise_first
from convgrad.engines._kernels._simd import VECTOR_BYTES
from convgrad.engines._scratch import aligned_empty

pytest.importorskip("numba")

DTYPES = [np.float32, np.float64]


def _lanes(dtype) -> int:
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def _nan_y(shape, dtype, off):
    """A NaN-filled y of ``shape``, on a vector boundary, or ``off`` samples past one."""
    size = int(np.prod(shape))
    y = aligned_empty((size + off,), np.dtype(dtype))[off:].reshape(shape)
    y.fill(np.nan)
    return y


@st.composite
def plane_cases(draw, dtype):
    """(output rows, output width, row stride, row dilation, stream): widths from one vector to
    three and a bit; streaming only where every vector of the plane lies on a vector boundary."""
    lanes = _lanes(dtype)
    ow = draw(st.sampled_from((lanes, lanes + 1, 2 * lanes - 1, 2 * lanes, 3 * lanes + 3)))
    oh, s0, d0 = draw(st.integers(1, 7)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    return oh, ow, s0, d0, ow % lanes == 0 and draw(st.booleans())


@given(data=st.data(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@strategies.budget(30)
def test_lines_equal_the_shifted_planes_bit_for_bit(data, dtype, seed):
    """``_plane3x3_lines`` against ``_plane3x3_aligned`` on the same zero-bordered buffer (rows a
    whole number of vectors apart, the first on a cache line): the same bits, streamed or not."""
    oh, ow, s0, d0, stream = data.draw(plane_cases(dtype))
    lanes = _lanes(dtype)
    hb, wb = (oh - 1) * s0 + 2 * d0 + 1, ow + 2
    rs = -(-(wb + lanes) // lanes) * lanes
    rng = np.random.default_rng(seed)
    buf = aligned_empty((hb * rs + lanes,), np.dtype(dtype))
    buf[:] = rng.standard_normal(buf.size)
    wf = rng.standard_normal(9 * 3).astype(dtype)
    wo = 9 * data.draw(st.integers(0, 2))  # the plane's kernel among the filter's
    got, want = (_nan_y((oh * ow,), dtype, 0) for _ in range(2))
    depthwise_first._plane3x3_lines(buf, rs, wf, wo, got, 0, oh, ow, s0, d0, stream, buf, 0, buf.size)
    depthwise_first._plane3x3_aligned(buf, rs, wf, wo, want, 0, oh, ow, s0, d0)
    assert not np.isnan(got).any()
    assert np.array_equal(got, want)


@st.composite
def kernel_cases(draw, dtype, whole):
    """(x (N, C, H, W), multiplier, leading pads, trailing pads, row stride, row dilation) whose
    output rows hold at least a vector: the AVX2 planes' condition (unit column stride and
    dilation); with ``whole`` a whole number of vectors (the rows that stream)."""
    lanes = _lanes(dtype)
    s0, d0 = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    (p0, q0), (p1, q1) = ((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    widths = (lanes, 2 * lanes, 3 * lanes) if whole else (lanes + 1, 2 * lanes - 1, 3 * lanes + 3)
    ow = draw(st.sampled_from(widths))
    h = draw(st.integers(max(1, 2 * d0 + 1 - p0 - q0), 2 * d0 + 6))
    w = ow + 2 - p1 - q1
    n, c, mult = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    return (n, c, h, w), mult, (p0, p1), (q0, q1), s0, d0


def _oracle_forward(x, w, mult, pads, ends, s0, d0):
    """The float64 loop oracle's y (N, C * M, OH, OW) of x (N, C, H, W) and w (C * M, 3, 3)."""
    return oracle.conv(x.astype(np.float64), w[:, None].astype(np.float64), stride=(s0, 1),
                       padding=tuple(zip(pads, ends)), dilation=(d0, 1), groups=x.shape[1])


@given(data=st.data(), dtype=st.sampled_from(DTYPES), stream=st.sampled_from((True, True, False)),
       seed=st.integers(0, 2**31))
@strategies.budget(30)
@tally.checked_against("oracle")
def test_the_forward_kernel_matches_the_oracle(data, dtype, stream, seed):
    """``depthwise2d_forward_first`` called directly, streaming from 0 bytes on: two draws in three
    where y and its rows lie on vector boundaries (streamed on AVX2), the others with rows off a
    whole number of vectors or y a sample off a boundary (stored as before); y NaN-filled first:
    the oracle's y within float rounding."""
    # not streamed: rows off a whole number of vectors (y on a boundary or not), or y off one
    whole = stream or data.draw(st.booleans())
    aligned = stream or (not whole and data.draw(st.booleans()))
    shape, mult, pads, ends, s0, d0 = data.draw(kernel_cases(dtype, whole))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((shape[1] * mult, 3, 3)).astype(dtype)
    want = _oracle_forward(x, w, mult, pads, ends, s0, d0)
    y = _nan_y(want.shape, dtype, 0 if aligned else 1)
    depthwise_first.depthwise2d_forward_first(x, w, *pads, s0, 1, d0, 1, y, 0)
    eps = 1e-14 if dtype == np.float64 else 1e-5
    assert not np.isnan(y).any()
    assert np.allclose(y, want, rtol=0, atol=eps * 9 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("dtype", DTYPES)
def test_streamed_bits_do_not_depend_on_the_thread_count(dtype):
    """The streamed planes, claimed by 1 or 2 threads, and stored through the caches: the same
    bits, the oracle's values."""
    lanes = _lanes(dtype)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 5, 9, 2 * lanes)).astype(dtype)
    w = rng.standard_normal((5, 3, 3)).astype(dtype)

    def forward(stream_bytes):
        y = _nan_y(x.shape, dtype, 0)
        depthwise_first.depthwise2d_forward_first(x, w, 1, 1, 1, 1, 1, 1, y, stream_bytes)
        return y

    results = at_thread_counts(lambda: forward(0))
    assert np.array_equal(results[0], results[1])
    assert np.array_equal(results[0], forward(2**62))
    want = _oracle_forward(x, w, 1, (1, 1), (1, 1), 1, 1)
    assert np.allclose(results[0], want, rtol=0, atol=(1e-5 if dtype == np.float32 else 1e-13) * 9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stream_bytes", [0, 2**62])
def test_planes_past_the_serial_size_match_the_oracle(dtype, stream_bytes):
    """A forward of ``SERIAL_MACS`` multiply-adds or more (its planes shared by the threads; the
    draws above run on the calling thread), with a multiplier of 2 and rows off a whole number of
    vectors: the same bits on 1 and 2 threads, the oracle's values."""
    lanes = _lanes(dtype)
    n, c, mult, ow = 2, 2, 2, 3 * lanes + 3
    oh = -(-depthwise_first.SERIAL_MACS // (9 * n * c * mult * ow)) + 1
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c, oh, ow)).astype(dtype)
    w = rng.standard_normal((c * mult, 3, 3)).astype(dtype)

    def forward():
        y = _nan_y((n, c * mult, oh, ow), dtype, 0)
        depthwise_first.depthwise2d_forward_first(x, w, 1, 1, 1, 1, 1, 1, y, stream_bytes)
        return y

    results = at_thread_counts(forward)
    assert results[0].size * 9 >= depthwise_first.SERIAL_MACS
    assert np.array_equal(results[0], results[1])
    want = _oracle_forward(x, w, mult, (1, 1), (1, 1), 1, 1)
    assert np.allclose(results[0], want, rtol=0, atol=(1e-5 if dtype == np.float32 else 1e-13) * 9)
