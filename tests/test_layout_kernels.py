"""The compiled copies between the layouts, on shapes wide enough for their vector blocks.

``pad_copy_first`` (NCHW in, padded NHWC out) moves blocks of 8 channels x 8 samples through an
8 x 8 transposition in registers (``_shuffle.transpose8``) and the rest one value at a time; the
engine-level tests draw small spatial sizes that rarely fill a block. Here rows of up to 40
samples and up to 20 channels take whole blocks and tails, against NumPy's slicing
(``_layout.pad_or_crop`` on the transposed view), bitwise; and the tiled engine's channels-first
ops on such rows against the loop oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
from checks import assert_close
from convgrad._layout import pad_or_crop, x_to_last

numba = pytest.importorskip("numba")
transpose8 = pytest.importorskip("convgrad.engines._kernels._shuffle").transpose8


@numba.njit(cache=False)
def _blocks(src, s0, s_step, dst, d0, d_step):
    transpose8(src, s0, s_step, dst, d0, d_step)


@given(dtype=st.sampled_from([np.float32, np.float64]), s_step=st.integers(8, 20),
       d_step=st.integers(8, 20), s0=st.integers(0, 9), d0=st.integers(0, 9))
@strategies.budget(20)
def test_transpose8_moves_an_8x8_block_and_nothing_else(dtype, s_step, d_step, s0, d0):
    rng = np.random.default_rng(s_step * 31 + d_step)
    src = rng.standard_normal(s0 + 8 * s_step).astype(dtype)
    dst = np.full(d0 + 8 * d_step, np.nan, dtype=dtype)
    _blocks(src, s0, s_step, dst, d0, d_step)
    want = np.full_like(dst, np.nan)
    block = src[s0:s0 + 8 * s_step].reshape(8, s_step)[:, :8]  # rows i, samples j
    want[d0:d0 + 8 * d_step].reshape(8, d_step)[:, :8] = block.T
    np.testing.assert_array_equal(dst, want)


@st.composite
def _padded_copies(draw):
    rank = draw(st.integers(1, 3))
    spatial = [draw(st.integers(1, 4)) for _ in range(rank - 1)] + [draw(st.integers(1, 40))]
    pads = tuple((draw(st.integers(-min(n - 1, 3), 4)), draw(st.integers(-min(n - 1, 3), 4)))
                 for n in spatial)
    pads = tuple(p if n + p[0] + p[1] > 0 else (0, 0) for n, p in zip(spatial, pads))
    c = draw(st.integers(1, 20))
    shape = (draw(st.integers(1, 3)), c, *spatial)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return shape, pads, c + draw(st.sampled_from([0, 0, 1, 5])), dtype


@given(_padded_copies())
@strategies.budget(40)
def test_pad_copy_first_matches_numpy_on_wide_rows(drawn):
    from convgrad.engines import _kernels

    shape, pads, channels, dtype = drawn
    rng = np.random.default_rng(len(shape) + shape[-1])
    x = rng.standard_normal(shape).astype(dtype)
    before = x.copy()
    want = pad_or_crop(x_to_last(x, "channels_first"), pads, channels)
    got = np.full(want.shape, np.nan, dtype=dtype)
    unit = (1,) * (5 - x.ndim)
    lows = (0,) * len(unit) + tuple(lo for lo, _ in pads)
    _kernels.pad_copy_first(x.reshape(*shape[:2], *unit, *shape[2:]), lows,
                            got.reshape(got.shape[0], *unit, *got.shape[1:]))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(x, before)


@given(n=st.integers(1, 2), c=st.integers(1, 17), o=st.integers(1, 17), h=st.integers(3, 5),
       width=st.integers(8, 27), pad=st.integers(0, 2), stride=st.integers(1, 2),
       op=st.sampled_from(["forward", "input_grad", "filter_grad"]))
@strategies.budget(25)
def test_tiled_channels_first_on_wide_rows_matches_the_oracle(n, c, o, h, width, pad, stride, op):
    """The tiled engine's channels-first run (its padding pass transposes blocks of 8 x 8) on
    rows of 8 to 27 samples, float32, against the loop oracle."""
    x_shape, w_shape = (n, c, h, width), (o, c, 3, 3)
    kw = {"stride": stride, "padding": pad}
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    plan = convgrad.make_plan(op, geom, np.dtype(np.float32), "tiled", 2**31, "channels_first")
    assert plan.takes == "channels_first"
    rng = np.random.default_rng(n * 1000 + c * 37 + width)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    dy = rng.standard_normal(geom.y_shape()).astype(np.float32)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    if op == "forward":
        got, want = convgrad.conv(x, w, method="tiled", **kw), oracle.conv(x64, w64, **kw)
    elif op == "input_grad":
        got = convgrad.conv_input_grad(dy, w, x_shape, method="tiled", **kw)
        want = oracle.input_grad(dy64, w64, x_shape, **kw)
    else:
        got = convgrad.conv_filter_grad(x, dy, w_shape, method="tiled", **kw)
        want = oracle.filter_grad(x64, dy64, w_shape, **kw)
    # float32 sums of at most 17 x 9 terms of size O(1): within 1e-5 of the scale each
    assert_close(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())), dtype=np.float32)
