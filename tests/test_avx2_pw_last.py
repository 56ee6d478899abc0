"""The channels-last 1x1 filter gradient kernel (``pointwise.pointwise_filter_grad_last``) and its
plan (``tiled._pointwise_last``).

The kernel sums x (P, C) times dy (P, O), both channels-last as they are, into partial filter
gradients (C, O rounded up to two vectors): chunks of LAST_CHUNK positions, each group of 6 input
channels copied into a sliver (one vector per position where it fits in x's row, the last group's
channels one at a time, repeating the last channel), tiles of 6 x 2 vectors along dy's rows, the
last O % 2L output channels from a zero-padded copy. The geometries are drawn around these: input
channels below and above one vector and not a multiple of 6, output channels below, at and past
two vectors (``_simd.lanes``: 8 float32 lanes with AVX2, 16 with AVX-512), positions of one to
several chunks ending in a short one, as many parts as chunks or more.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close, at_thread_counts
from convgrad.engines import tiled
from convgrad.engines._kernels import pointwise
from convgrad.engines._kernels._simd import VECTOR_BYTES

pytest.importorskip("numba")

PAIR = 2 * VECTOR_BYTES // 4  # float32 values in one tile's two vectors


def _columns(o: int) -> int:
    return -(-o // PAIR) * PAIR


def _want(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dw (C, O) of channels-last x (P, C) and dy (P, O) by the loop oracle (one image of P
    positions, channels-first)."""
    c, o = x.shape[1], dy.shape[1]
    dw = oracle.filter_grad(x.T[None].astype(np.float64), dy.T[None].astype(np.float64), (o, c, 1))
    return dw[:, :, 0].T


@given(data=st.data(), c=st.integers(1, 3 * PAIR + 5), o=st.integers(1, 2 * PAIR + 3),
       parts=st.integers(1, 5))
@strategies.budget(20)
@tally.checked_against("oracle")
def test_pointwise_last_matches_the_oracle(data, c, o, parts):
    """The kernel called directly, its parts NaN-filled (every value written): their sum is dw,
    zeros past O; x and dy unchanged."""
    chunks, rest = data.draw(st.integers(0, 3)), data.draw(st.integers(0, pointwise.LAST_CHUNK - 1))
    p = max(1, chunks * pointwise.LAST_CHUNK + rest)
    rng = np.random.default_rng(p * 31 + c * 7 + o)
    x = rng.standard_normal((p, c)).astype(np.float32)
    dy = rng.standard_normal((p, o)).astype(np.float32)
    x_before, dy_before = x.copy(), dy.copy()
    acc = np.full((parts, c, _columns(o)), np.nan, np.float32)
    pointwise.pointwise_filter_grad_last(x, dy, acc)
    assert np.array_equal(x, x_before) and np.array_equal(dy, dy_before)
    summed = acc.sum(axis=0)
    assert np.array_equal(summed[:, o:], np.zeros((c, _columns(o) - o), np.float32))
    assert_close(summed[:, :o], _want(x, dy), rtol=0, atol=1e-6 * p * math.sqrt(p) + 1e-5, dtype=np.float32)


def test_pointwise_last_bits_do_not_depend_on_the_thread_count():
    """Ragged channels both ways over many chunks in 16 parts, claimed by 1 or 2 threads: the same
    bits, and the oracle's values."""
    rng = np.random.default_rng(3)
    p, c, o = 9 * pointwise.LAST_CHUNK + 5, PAIR + 7, PAIR + 5
    x = rng.standard_normal((p, c)).astype(np.float32)
    dy = rng.standard_normal((p, o)).astype(np.float32)

    def filter_grad():
        acc = np.empty((pointwise.PARTS, c, _columns(o)), np.float32)
        pointwise.pointwise_filter_grad_last(x, dy, acc)
        return acc.sum(axis=0)

    results = at_thread_counts(filter_grad)
    assert np.array_equal(results[0], results[1])
    assert_close(results[0][:, :o], _want(x, dy), rtol=0, atol=1e-6 * p * math.sqrt(p), dtype=np.float32)


@pytest.mark.skipif(VECTOR_BYTES != 32, reason="the channels-last 1x1 kernel is planned with 32-byte vectors")
@pytest.mark.parametrize("c, o", [(37, 21), (21, 37)])
def test_channels_last_pointwise_filter_grad_plans_and_runs_the_kernel(c, o):
    """A 1x1 channels-last filter gradient within the kernel's bounds, through the public op with
    the tiled engine (the kernel's plan, 16 parts; its vectors along the fewer channels, dy's or,
    swapped, x's) against the loop oracle; one past the bounds keeps the engine's other kernels."""
    n, side = 2, 91  # 16,562 positions: past LAST_POSITIONS
    geom = convgrad.ConvGeometry.for_conv((n, c, side, side), (o, c, 1, 1))
    assert n * side * side >= pointwise.LAST_POSITIONS
    plan = convgrad.make_plan("filter_grad", geom, np.dtype(np.float32), "tiled", 2**31, "channels_last")
    assert plan.chosen.choices["tile"] == "6x2L pointwise"
    assert plan.chosen.workspace == pointwise.PARTS * max(c, o) * _columns(min(c, o)) * 4
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, side, side, c)).astype(np.float32)
    dy = rng.standard_normal((n, side, side, o)).astype(np.float32)
    got = convgrad.conv_filter_grad(x, dy, (1, 1, c, o), data_format="channels_last", method="tiled")
    assert got.shape == (1, 1, c, o)
    want = _want(x.reshape(-1, c), dy.reshape(-1, o))
    p = n * side * side
    assert_close(got[0, 0], want, rtol=0, atol=1e-6 * math.sqrt(p) * 8, dtype=np.float32)
    wide_c = pointwise.LAST_PART_BYTES // (_columns(min(c, o)) * 4) + 1  # dw past LAST_PART_BYTES
    wide = convgrad.ConvGeometry.for_conv((n, wide_c, side, side), (min(c, o), wide_c, 1, 1))
    assert not tiled._pointwise_last_fits(wide, np.dtype(np.float32))
    plan = convgrad.make_plan("filter_grad", wide, np.dtype(np.float32), "tiled", 2**31, "channels_last")
    assert plan.chosen.choices["tile"] != "6x2L pointwise"
