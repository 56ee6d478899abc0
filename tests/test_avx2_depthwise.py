"""The channels-last 3x3 depthwise forward and filter gradient by columns
(``depthwise_lanes.forward_cols``, ``filter_grad_cols``), the paths the vector rows take with
32-byte vectors (AVX2), on every vector width.

``forward_cols`` computes two columns of outputs at a time for every block of channels (one or two
output rows), with the same ``_taps`` sums as the strips (``forward_pair``, ``forward_row``), so it
is checked against them bit for bit on any machine, and through the kernel (``depthwise2d_forward``,
which runs it where ``VECTOR_BYTES == 32``) against the loop oracle. The draws are sized by the
machine's vector (``_simd.lanes``: 8 float32 / 4 float64 with AVX2, 16 / 8 with AVX-512): channel
counts from one vector to three and a bit (the last block overlapping the one before), widths from
one column (every column a border) to past the prefetch distances, an odd last column, leading
pads 0 to 3 (columns reading only padding), row strides and dilations of 1 and 2 (single rows),
odd heights (a lone last row). y is NaN-filled first: every output is written. The filter
gradient adds into its parts (random values first: added to, not overwritten), inf and NaN where
the exact oracle puts them (the overlapping block's shared lanes and a lone row add no product).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle
import strategies
import tally
from checks import assert_depthwise_three_ops, at_thread_counts
from convgrad.engines._kernels import depthwise, depthwise_lanes
from convgrad.engines._kernels._simd import VECTOR_BYTES
from convgrad.engines._scratch import aligned_empty

pytest.importorskip("numba")

DTYPES = [np.float32, np.float64]


def _lanes(dtype) -> int:
    return VECTOR_BYTES // np.dtype(dtype).itemsize


@st.composite
def _channels(draw, dtype):
    """At least a vector of channels (the vector rows' condition), on and off its multiples."""
    lanes = _lanes(dtype)
    return draw(st.sampled_from((lanes, lanes + 1, 2 * lanes - 1, 2 * lanes, 3 * lanes + 3)))


@st.composite
def kernel_cases(draw, dtype):
    """(x (N, H, W, C), leading pads, trailing pads, row stride, row dilation) with at least one
    output; the kernel reads zeros outside x."""
    c = draw(_channels(dtype))
    s0, d0 = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    (p0, q0), (p1, q1) = ((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    h = draw(st.integers(max(1, 2 * d0 + 1 - p0 - q0), 2 * d0 + 6))
    reach = depthwise_lanes.AHEAD_Y + 6
    w = draw(st.integers(max(1, 3 - p1 - q1), reach))
    return (draw(st.integers(1, 2)), h, w, c), (p0, p1), (q0, q1), s0, d0


def _oracle_forward(x, w2, pads, ends, s0, d0):
    """The float64 loop oracle's y (N, OH, OW, C) of x (N, H, W, C) and w2 (3, 3, C)."""
    c = x.shape[3]
    xf = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float64)
    wf = np.ascontiguousarray(w2.transpose(2, 0, 1))[:, None].astype(np.float64)
    y = oracle.conv(xf, wf, stride=(s0, 1), padding=tuple(zip(pads, ends)), dilation=(d0, 1), groups=c)
    return y.transpose(0, 2, 3, 1)


@given(data=st.data(), dtype=st.sampled_from(DTYPES), stream=st.booleans(), seed=st.integers(0, 2**31))
@strategies.budget(30)
@tally.checked_against("oracle")
def test_the_forward_kernel_matches_the_oracle(data, dtype, stream, seed):
    """``depthwise2d_forward`` called directly (columns with 32-byte vectors, strips with 64-byte
    ones, streamed or not as drawn), y NaN-filled first: the oracle's y within float rounding."""
    check_forward_kernel(data.draw(kernel_cases(dtype)), dtype, seed, stream)


def check_forward_kernel(case, dtype, seed, stream, streamable=False):
    """``depthwise2d_forward`` on ``case`` (kernel_cases' draw) into a NaN-filled y (with
    ``streamable``, one the streamed stores may take): every output written, the oracle's y
    within float rounding."""
    shape, pads, ends, s0, d0 = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w2 = rng.standard_normal((3, 3, shape[3])).astype(dtype)
    want = _oracle_forward(x, w2, pads, ends, s0, d0)
    y = aligned_empty(want.shape, np.dtype(dtype))
    y.fill(np.nan)
    assert not streamable or depthwise_lanes.streams(y, shape[3])
    depthwise.depthwise2d_forward(x, w2, *pads, s0, 1, d0, 1, y, stream)
    eps = 1e-14 if dtype == np.float64 else 1e-5
    assert not np.isnan(y).any()
    assert np.allclose(y, want, rtol=0, atol=eps * 9 * max(1.0, float(np.abs(want).max())))


@st.composite
def row_cases(draw, dtype, channels=None):
    """Rows of x for one call of the row kernels: channels (from ``channels``, by default any),
    input width, leading column pad and output width (any: outputs whose columns lie past the row
    read zeros)."""
    c = draw(_channels(dtype) if channels is None else channels)
    w_in = draw(st.integers(1, depthwise_lanes.AHEAD_X + depthwise_lanes.AHEAD_Y + 5))
    p1 = draw(st.integers(0, 3))
    ow = draw(st.integers(1, w_in + 2 * p1))
    return c, w_in, p1, ow


@given(data=st.data(), dtype=st.sampled_from(DTYPES), two=st.booleans(), seed=st.integers(0, 2**31))
@strategies.budget(40)
def test_columns_equal_the_strips_bit_for_bit(data, dtype, two, seed):
    """``forward_cols`` against ``forward_pair`` (two rows) or ``forward_row`` (one): the same sums
    in the same order, so the same bits, on any vector width; the second row untouched by a
    single row's call."""
    c, w_in, p1, ow = data.draw(row_cases(dtype))
    rng = np.random.default_rng(seed)
    ra, rb, rc, rd = (rng.standard_normal(w_in * c).astype(dtype) for _ in range(4))
    wf = rng.standard_normal(9 * c).astype(dtype)
    got = [np.full(ow * c, np.nan, dtype) for _ in range(2)]
    want = [np.full(ow * c, np.nan, dtype) for _ in range(2)]
    depthwise_lanes.forward_cols(ra, rb, rc, rd, wf, got[0], got[1], two, w_in, p1, c)
    if two:
        depthwise_lanes.forward_pair(ra, rb, rc, rd, rc, rd, wf, want[0], want[1], w_in, p1, c, False)
    else:
        depthwise_lanes.forward_row(ra, rb, rc, wf, want[0], w_in, p1, c, False)
    assert np.array_equal(got[0], want[0]) and not np.isnan(got[0]).any()
    assert np.array_equal(got[1], want[1], equal_nan=True)  # a single row leaves the second NaN


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_bits_do_not_depend_on_the_thread_count(dtype):
    """The kernel's row pairs, claimed by 1 or 2 threads: the same bits."""
    lanes = _lanes(dtype)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 9, 2 * depthwise_lanes.AHEAD_Y + 3, 3 * lanes + 1)).astype(dtype)
    w2 = rng.standard_normal((3, 3, x.shape[3])).astype(dtype)

    def forward():
        y = aligned_empty(x.shape, np.dtype(dtype))
        depthwise.depthwise2d_forward(x, w2, 1, 1, 1, 1, 1, 1, y, False)
        return y

    results = at_thread_counts(forward)
    assert np.array_equal(results[0], results[1])
    want = _oracle_forward(x, w2, (1, 1), (1, 1), 1, 1)
    assert np.allclose(results[0], want, rtol=0, atol=(1e-5 if dtype == np.float32 else 1e-13) * 9)


@st.composite
def engine_cases(draw, dtype):
    """(x_shape, w_shape, kwargs), channels-first shapes, of 3x3 depthwise convs the vector rows
    run: channels around the vector, pads from -1 (cropping) to 3, row strides and dilations."""
    c = draw(_channels(dtype))
    s0, d0 = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple((draw(st.integers(-1, 3)), draw(st.integers(-1, 3))) for _ in range(2))
    h = draw(st.integers(max(1, 2 * d0 + 1 - sum(pads[0]), 1 - min(pads[0])), 2 * d0 + 6))
    w = draw(st.integers(max(1, 3 - sum(pads[1]), 1 - min(pads[1])), depthwise_lanes.AHEAD_Y + 6))
    return (draw(st.integers(1, 2)), c, h, w), (c, 1, 3, 3), {
        "stride": (s0, 1), "dilation": (d0, 1), "padding": pads, "groups": c}


@given(data=st.data(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@strategies.budget(15)
@tally.checked_against("oracle")
def test_channels_last_engine_matches_the_oracle(data, dtype, seed):
    """The engine's three ops channels-last (the forward and the gathered input gradient by the
    vector rows), against the oracle."""
    assert_depthwise_three_ops(data.draw(engine_cases(dtype)), "channels_last", dtype, seed)


def _oracle_filter_grad(x, dy, pads, ends, s0, d0):
    """The loop oracle's dw (3, 3, C) of x and dy (N, H, W, C), (N, OH, OW, C); object arrays stay
    exact (0 * inf is NaN there as in the direct sum)."""
    c = x.shape[3]
    xf, dyf = x.transpose(0, 3, 1, 2), dy.transpose(0, 3, 1, 2)
    dw = oracle.filter_grad(xf, dyf, (c, 1, 3, 3), stride=(s0, 1), padding=tuple(zip(pads, ends)),
                            dilation=(d0, 1), groups=c)
    return dw[:, 0].transpose(1, 2, 0)


@given(data=st.data(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31))
@strategies.budget(30)
@tally.checked_against("oracle")
def test_the_filter_grad_kernel_adds_the_oracle_s_gradient(data, dtype, seed):
    """``depthwise2d_filter_grad`` called directly (columns with 32-byte vectors, strips with
    64-byte ones) into parts holding random values: the parts' sum grows by the oracle's dw."""
    shape, pads, ends, s0, d0 = data.draw(kernel_cases(dtype))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    oh = (shape[1] + pads[0] + ends[0] - 2 * d0 - 1) // s0 + 1
    ow = shape[2] + pads[1] + ends[1] - 2
    dy = rng.standard_normal((shape[0], oh, ow, shape[3])).astype(dtype)
    want = _oracle_filter_grad(x.astype(np.float64), dy.astype(np.float64), pads, ends, s0, d0)
    base = rng.standard_normal((data.draw(st.integers(1, 4)), 3, 3, shape[3])).astype(dtype)
    parts = base.copy()
    depthwise.depthwise2d_filter_grad(x, dy, *pads, s0, 1, d0, 1, parts)
    got = parts.astype(np.float64).sum(axis=0) - base.astype(np.float64).sum(axis=0)
    terms = shape[0] * oh * ow
    eps = 1e-14 if dtype == np.float64 else 2e-6
    assert np.allclose(got, want, rtol=0, atol=eps * np.sqrt(terms) * max(1.0, float(np.abs(want).max())))


@given(data=st.data(), seed=st.integers(0, 2**31))
@strategies.budget(15)
@tally.checked_against("oracle", capability="nonfinite")
def test_the_filter_grad_kernel_puts_inf_and_nan_where_the_direct_sum_does(data, seed):
    """inf, -inf and NaN in x and dy, channel counts off the vector (the last block overlapping
    the one before: its shared lanes add no product, not even 0 * inf), lone last rows (no second
    row's products): the kernel's inf and NaN where the exact oracle has them."""
    shape, pads, ends, s0, d0 = data.draw(kernel_cases(np.float32))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    oh = (shape[1] + pads[0] + ends[0] - 2 * d0 - 1) // s0 + 1
    ow = shape[2] + pads[1] + ends[1] - 2
    dy = rng.standard_normal((shape[0], oh, ow, shape[3]))
    for a in (x, dy):
        a.flat[rng.integers(a.size, size=2)] = rng.choice([np.inf, -np.inf, np.nan], size=2)
    with np.errstate(all="ignore"):
        want = np.asarray(_oracle_filter_grad(x.astype(object), dy.astype(object), pads, ends, s0, d0),
                          dtype=np.float64)
        parts = np.zeros((2, 3, 3, shape[3]), np.float32)
        depthwise.depthwise2d_filter_grad(x.astype(np.float32), dy.astype(np.float32), *pads, s0, 1, d0, 1,
                                          parts)
        got = parts.astype(np.float64).sum(axis=0)
    kinds = [np.select([np.isnan(a), np.isposinf(a), np.isneginf(a)], [1, 2, 3], 0) for a in (got, want)]
    assert (kinds[0] == kinds[1]).all(), np.flatnonzero(kinds[0] != kinds[1])[:5]


@pytest.mark.parametrize("dtype", DTYPES)
def test_filter_grad_bits_do_not_depend_on_the_thread_count(dtype):
    """The kernel's chunks of row pairs, claimed by 1 or 2 threads, each summed into its own part:
    the same bits."""
    lanes = _lanes(dtype)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 9, 2 * depthwise_lanes.AHEAD_X + 3, 3 * lanes + 1)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)

    def filter_grad():
        parts = np.zeros((5, 3, 3, x.shape[3]), dtype)
        depthwise.depthwise2d_filter_grad(x, dy, 1, 1, 1, 1, 1, 1, parts)
        return parts

    results = at_thread_counts(filter_grad)
    assert np.array_equal(results[0], results[1])
    want = _oracle_filter_grad(x.astype(np.float64), dy.astype(np.float64), (1, 1), (1, 1), 1, 1)
    assert np.allclose(results[0].sum(axis=0), want, rtol=0, atol=(1e-4 if dtype == np.float32 else 1e-12))
