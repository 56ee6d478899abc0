"""The channels-first 1x1 forward (and input gradient) kernel's pass order on 32-byte vectors.

With AVX2 ``pointwise_first`` runs each work item pass by pass (``_span_passes``: two vectors of
positions through every group of 6 output channels), asking for x's lines ahead in each group's
first pass, or in every pass where the pass's rows fit the first cache (C * 2 vectors <= 8 KiB);
a last pass narrower than two vectors runs on a zero-padded copy of its columns (``_narrow_pass``).
The geometries are drawn around these: input channels on either side of that bound, output
channels over several groups and not a multiple of 6, images over several spans ending in whole
passes or a narrow one (``_simd.lanes``: 8 float32 / 4 float64 with AVX2, 16 / 8 with AVX-512,
where the 6 x 64 tiles run instead and these tests check them the same way).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle
import strategies
import tally
from checks import assert_close, at_thread_counts
from convgrad.engines._kernels import pointwise
from convgrad.engines._kernels._simd import VECTOR_BYTES
from convgrad.engines._scratch import aligned_empty

pytest.importorskip("numba")

DTYPES = [np.float32, np.float64]


def _pair(dtype) -> int:
    """Positions of one pass: two vectors of ``dtype``."""
    return 2 * VECTOR_BYTES // np.dtype(dtype).itemsize


def _every_bound(dtype) -> int:
    """The most input channels whose pass (one line of each row) the kernel keeps asking for in
    every group: C * 2 vectors <= 8 KiB."""
    return 8192 // (_pair(dtype) * np.dtype(dtype).itemsize)


@given(data=st.data(), dtype=st.sampled_from(DTYPES), n=st.integers(1, 2), o=st.integers(1, 20),
       wide=st.booleans(), stream=st.booleans())
@strategies.budget(16)
@tally.checked_against("oracle")
def test_span_passes_match_the_oracle(data, dtype, n, o, wide, stream):
    """``pointwise_first`` called directly, y NaN-filled (every output written), streamed where
    ``streams``' conditions hold: input channels below and above the bound of the every-group
    prefetch, images of one to three spans ending in whole passes or a narrow one."""
    bound = _every_bound(dtype)
    c = data.draw(st.integers(bound + 1, bound + 7) if wide else st.integers(1, 13))
    pair = _pair(dtype)
    spans = data.draw(st.integers(0, 2))
    passes, rest = data.draw(st.integers(0, 3)), data.draw(st.integers(0, pair - 1))
    s = max(1, spans * pointwise.SPAN + pair * passes + rest)
    rng = np.random.default_rng(s * 31 + c * 7 + o)
    x, w = rng.standard_normal((n, c, s)), rng.standard_normal((o, c))
    y = aligned_empty((n, o, s), dtype)
    y.fill(np.nan)
    stream = stream and s * y.itemsize % VECTOR_BYTES == 0
    xd, wd = x.astype(dtype), w.astype(dtype)
    x_before, w_before = xd.copy(), wd.copy()
    pointwise.pointwise_first(wd, xd, y, stream)
    assert np.array_equal(xd, x_before) and np.array_equal(wd, w_before)
    want = oracle.conv(x, w[:, :, None])
    assert_close(y, want, rtol=0, atol=(1e-6 if dtype == np.float32 else 1e-14) * c, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_span_passes_bits_do_not_depend_on_the_thread_count(dtype):
    """Wide input channels (each group's first pass prefetching only) over several spans, claimed
    by 1 or 2 threads: the same bits, and the oracle's values."""
    rng = np.random.default_rng(5)
    n, c, o = 2, _every_bound(dtype) + 3, 17
    s = 2 * pointwise.SPAN + 3 * _pair(dtype) + 1
    x, w = (rng.standard_normal(shape).astype(dtype) for shape in ((n, c, s), (o, c)))

    def forward():
        y = np.empty((n, o, s), dtype)
        pointwise.pointwise_first(w, x, y, False)
        return y

    results = at_thread_counts(forward)
    assert np.array_equal(results[0], results[1])
    want = oracle.conv(x.astype(np.float64), w[:, :, None].astype(np.float64))
    assert_close(results[0], want, rtol=0, atol=(1e-6 if dtype == np.float32 else 1e-14) * c, dtype=dtype)


def _blocked_channels(dtype) -> tuple[int, int]:
    """Input and output channels of a filter just past ``pointwise.W_BYTES`` (the blocked passes):
    input channels over several blocks of KC and a ragged last one, outputs over blocks of OB
    and a ragged last one."""
    c = 4 * pointwise.KC + 77
    o = -(-pointwise.W_BYTES // (c * np.dtype(dtype).itemsize))
    return c, -(-o // pointwise.OB) * pointwise.OB + 4


@given(data=st.data(), dtype=st.sampled_from(DTYPES), stream=st.booleans())
@strategies.budget(4)
@tally.checked_against("oracle")
def test_blocked_passes_match_the_oracle(data, dtype, stream):
    """A filter past W_BYTES (``_blocked_passes``: the sums taken up again block after block of
    input channels), y NaN-filled, one or two images of whole passes and a narrow last one."""
    c, o = _blocked_channels(dtype)
    assert o * c * np.dtype(dtype).itemsize > pointwise.W_BYTES
    pair = _pair(dtype)
    n = data.draw(st.integers(1, 2))
    s = pair * data.draw(st.integers(1, 3)) + data.draw(st.integers(0, pair - 1))
    rng = np.random.default_rng(s * 13 + n)
    x, w = rng.standard_normal((n, c, s)), rng.standard_normal((o, c))
    y = aligned_empty((n, o, s), dtype)
    y.fill(np.nan)
    stream = stream and s * y.itemsize % VECTOR_BYTES == 0
    pointwise.pointwise_first(w.astype(dtype), x.astype(dtype), y, stream)
    want = oracle.conv(x, w[:, :, None])
    assert_close(y, want, rtol=0, atol=(1e-6 if dtype == np.float32 else 1e-14) * c, dtype=dtype)
