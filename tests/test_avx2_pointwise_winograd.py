"""The register tiles of the channels-first 1x1 kernels (_kernels/pointwise.py) and of the
one-pass Winograd GEMM (_kernels/winograd_fused.py) on every vector width.

With 32-byte vectors (AVX2) their 6 x 64 tiles run as passes of 6 x 2 vectors of sums
(``_tile_6x16``, ``_panel_tile_6x16``, ``_gemm_6x2``); with 64-byte ones (AVX-512) as they were.
The geometries are drawn around the machine's vector (``_simd.lanes``: 8 float32 / 4 float64 with
AVX2, 16 / 8 with AVX-512): whole tiles of 64, narrow last tiles with and without whole pairs of
vectors past them, output channels not a multiple of the tiles' 6, float32 and float64 (the
kernels take both; the planner sends only float32 to the 1x1 ones), both Winograd layouts; each
against the loop oracle, and the threads' split of the work not changing a bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close, at_thread_counts
from convgrad.engines import winograd
from convgrad.engines._kernels import pointwise, winograd_fused
from convgrad.engines._kernels._simd import VECTOR_BYTES

pytest.importorskip("numba")

DTYPES = [np.float32, np.float64]


def _pair(dtype) -> int:
    """The positions (or channels) of one pass of the AVX2 tiles: two vectors of ``dtype``."""
    return 2 * VECTOR_BYTES // np.dtype(dtype).itemsize


@st.composite
def _lengths(draw, dtype):
    """Positions per image: a few whole tiles of 64, then a narrow last one of whole vector
    pairs, a remainder under a pair, or both (or none)."""
    pair = _pair(dtype)
    tiles = draw(st.integers(0, 3))
    pairs = draw(st.integers(0, 64 // pair - 1))
    rest = draw(st.integers(0, pair - 1))
    return max(1, 64 * tiles + pair * pairs + rest)


@given(data=st.data(), dtype=st.sampled_from(DTYPES), n=st.integers(1, 2), c=st.integers(1, 13),
       o=st.integers(1, 14), stream=st.booleans())
@strategies.budget(20)
@tally.checked_against("oracle")
def test_pointwise_first_matches_the_oracle(data, dtype, n, c, o, stream):
    """``pointwise_first`` called directly, y NaN-filled first (every output written), streamed
    where ``streams``' conditions hold (y on a vector boundary, rows of whole vectors), else
    cached: y[n] = w @ x[n] of the oracle's 1x1 conv."""
    s = data.draw(_lengths(dtype))
    rng = np.random.default_rng(s * 31 + c * 7 + o)
    x, w = rng.standard_normal((n, c, s)), rng.standard_normal((o, c))
    y = np.full((n, o, s), np.nan, dtype)
    stream = stream and y.ctypes.data % VECTOR_BYTES == 0 and s * y.itemsize % VECTOR_BYTES == 0
    pointwise.pointwise_first(w.astype(dtype), x.astype(dtype), y, stream)
    want = oracle.conv(x, w[:, :, None])
    assert_close(y, want, rtol=0, atol=(1e-6 if dtype == np.float32 else 1e-14) * c, dtype=dtype)


@given(data=st.data(), dtype=st.sampled_from(DTYPES), n=st.integers(1, 2), c=st.integers(1, 14),
       o=st.integers(1, 140))
@strategies.budget(16)
@tally.checked_against("oracle")
def test_pointwise_filter_grad_first_matches_the_oracle(data, dtype, n, c, o):
    """``pointwise_filter_grad_first`` called directly: its parts summed are dw.T, zeros past O
    (the panel's padding), output channels over one to three panels of 64 (every pass of the
    panel tile), input channels off the tiles' 6, chunks with ragged ends."""
    s = data.draw(_lengths(dtype)) + data.draw(st.sampled_from([0, pointwise.CHUNK]))
    rng = np.random.default_rng(s * 17 + c * 5 + o)
    x, dy = rng.standard_normal((n, c, s)), rng.standard_normal((n, o, s))
    o64 = -(-o // 64) * 64
    parts = np.full((3, c, o64), np.nan, dtype)
    pointwise.pointwise_filter_grad_first(x.astype(dtype), dy.astype(dtype), parts)
    got = parts.sum(axis=0)
    assert not got[:, o:].any()
    want = oracle.filter_grad(x, dy, (o, c, 1))[:, :, 0].T
    atol = (1e-6 if dtype == np.float32 else 1e-14) * n * s
    assert_close(got[:, :o], want, rtol=0, atol=atol, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_bits_do_not_depend_on_the_thread_count(dtype):
    """The 1x1 kernels' work items and partial sums, claimed by 1 or 2 threads: the same bits."""
    rng = np.random.default_rng(3)
    n, c, o, s = 2, 11, 13, 3 * pointwise.SPAN + 64 + _pair(dtype) + 3
    x, w, dy = (rng.standard_normal(shape).astype(dtype) for shape in ((n, c, s), (o, c), (n, o, s)))

    def both():
        y = np.empty((n, o, s), dtype)
        pointwise.pointwise_first(w, x, y, False)
        parts = np.empty((pointwise.PARTS, c, 64), dtype)
        pointwise.pointwise_filter_grad_first(x, dy, parts)
        return y, parts

    (y1, p1), (y2, p2) = at_thread_counts(both)
    assert np.array_equal(y1, y2) and np.array_equal(p1, p2)
    assert_close(y1, oracle.conv(x.astype(np.float64), w[:, :, None].astype(np.float64)), rtol=0,
                 atol=1e-6 * c, dtype=dtype)


@given(data=st.data(), dtype=st.sampled_from(DTYPES), k=st.integers(1, 40), wide=st.booleans())
@strategies.budget(20)
@tally.checked_against("oracle")
def test_gemm_6_matches_the_oracle(data, dtype, k, wide):
    """``_gemm_6`` on a 6 x k block of A (rows ``ai`` apart, columns ``ak`` apart) and a k x B
    block of B (rows ``bs`` apart), B = 64 or 16, at offsets: C's 6 rows of B values written
    (``cs`` apart, nothing else touched), the loop oracle's product (a 1x1 conv of B's k rows
    by A's 6 rows) within rounding."""
    b = 64 if wide else 16
    ak = data.draw(st.integers(1, 3))
    ai = data.draw(st.integers(k * ak, k * ak + 5))
    bs = data.draw(st.integers(b, b + 9))
    cs = data.draw(st.integers(b, b + 9))
    ab, bb, cb = (data.draw(st.integers(0, 7)) for _ in range(3))
    rng = np.random.default_rng(k * 131 + ai + bs)
    af = rng.standard_normal(ab + 6 * ai).astype(dtype)
    bf = rng.standard_normal(bb + k * bs).astype(dtype)
    cf = np.full(cb + 6 * cs, np.nan, dtype)
    winograd_fused._gemm_6(af, ab, ai, ak, bf, bb, bs, cf, cb, cs, k, b)
    a = np.array([[af[ab + i * ai + j * ak] for j in range(k)] for i in range(6)], np.float64)
    bm = np.array([bf[bb + j * bs: bb + j * bs + b] for j in range(k)], np.float64)
    got = np.array([cf[cb + i * cs: cb + i * cs + b] for i in range(6)])
    atol = (1e-6 if dtype == np.float32 else 1e-14) * k
    assert_close(got, oracle.conv(bm[None], a[:, :, None])[0], rtol=0, atol=atol, dtype=dtype)
    written = np.zeros(cf.size, bool)
    for i in range(6):
        written[cb + i * cs: cb + i * cs + b] = True
    assert np.isnan(cf[~written]).all()


@given(dtype=st.sampled_from(DTYPES), data_format=st.sampled_from(["channels_first", "channels_last"]),
       c=st.integers(winograd.ONE_PASS_CHANNELS, 24), o=st.sampled_from([8, 16, 17, 63, 64, 65, 80, 130]),
       h=st.integers(4, 10), wd=st.integers(4, 13), dilation=st.integers(1, 2))
@strategies.budget(12)
@tally.checked_against("oracle")
def test_winograd_one_pass_matches_the_oracle(dtype, data_format, c, o, h, wd, dilation):
    """The one-pass F(4x4, 3x3) forward, its GEMM over output channels in tiles of 64 and of 16
    (P = O rounded up to 16: 16 -> one of 16, 65 -> one of 64 and one of 16, 130 -> two and a
    16), both layouts, float32 and float64: the oracle's, within the engine's documented
    float32 tolerance (relative to the largest output) or float64 rounding."""
    padding = dilation
    x_shape, w_shape = (1, c, h + 2, wd + 2), (o, c, 3, 3)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=padding, dilation=dilation)
    assert convgrad.make_plan("forward", geom, np.dtype(dtype), "winograd", 2**31).choices.get("one_pass")
    rng = np.random.default_rng(c * 1000 + o * 10 + h)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    want = oracle.conv(x, w, padding=padding, dilation=dilation)
    last = data_format == "channels_last"
    xd = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if last else x
    wd_ = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2))) if last else w
    got = convgrad.conv(xd.astype(dtype), wd_.astype(dtype), padding=padding, dilation=dilation,
                        method="winograd", data_format=data_format)
    got = np.moveaxis(got, -1, 1) if last else got
    assert got.dtype == dtype
    err = float(np.abs(got - want).max() / np.abs(want).max())
    assert err < (winograd.FLOAT32_TOLERANCE if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_one_pass_bits_do_not_depend_on_the_thread_count(monkeypatch, dtype):
    """The one-pass kernel's work items claimed by 1, 2 or 3 threads: the same bits."""
    from convgrad.engines import _threads

    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 16, 30, 37)).astype(dtype)
    w = rng.standard_normal((70, 16, 3, 3)).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(_threads, "allowed", lambda k=threads: k)
        monkeypatch.setattr(_threads, "free_cores", lambda k=threads: k)
        results.append(convgrad.conv(x, w, padding=1, method="winograd"))
    assert all(np.array_equal(results[0], r) for r in results[1:])
