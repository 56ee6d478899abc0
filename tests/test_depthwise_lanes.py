"""The depthwise engine's vector rows (engines/_kernels/depthwise_lanes.py) and channels-first
vector planes (depthwise_first.py) against the loop oracle.

They run the channels-last 3x3 forward (and through it the stride-1 input gradient) and filter
gradient with one output per channel, unit column stride and dilation and at least a vector of
channels (16 float32, 8 float64 with AVX-512): pairs of output rows where the row stride and dilation are 1,
single rows otherwise and for a lone last row, a row of zeros for the rows outside x, zeros for
the columns outside it, and a last channel block that overlaps the one before when C is not a
multiple of the vector. The draws reach each of these: channel counts around the multiples of 8
and 16, widths from 1 (every column a border) up, pads from -1 (cropping) to 3 (a column of
outputs reading only padding), odd and even heights, row strides and dilations of 1 and 2.

Channels-first, 3x3 with unit column stride and rows of at least a vector of outputs go in
vectors along the rows (the last one overlapping the one before; the filter gradient masks the
lanes it shares), two output rows at a time where the row stride and dilation are 1; with unit
column dilation too, from buffer rows a whole number of vectors apart, the column taps shifted in
registers.
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
from checks import assert_depthwise_three_ops, three_ops_in


@st.composite
def lane_cases(draw):
    """(x_shape, w_shape, kwargs) of a channels-first 3x3 depthwise conv the vector rows run."""
    c = draw(st.sampled_from((8, 9, 15, 16, 17, 23, 31, 32, 33, 40)))
    s0, d0 = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple((draw(st.integers(-1, 3)), draw(st.integers(-1, 3))) for _ in range(2))
    h = draw(st.integers(max(1, 2 * d0 + 1 - sum(pads[0]), 1 - min(pads[0])), 2 * d0 + 8))
    w = draw(st.integers(max(1, 3 - sum(pads[1]), 1 - min(pads[1])), 21))
    n = draw(st.integers(1, 2))
    return (n, c, h, w), (c, 1, 3, 3), {"stride": (s0, 1), "dilation": (d0, 1), "padding": pads,
                                         "groups": c}


@given(case=lane_cases(), dtype=st.sampled_from((np.float32, np.float64)), seed=st.integers(0, 2**31))
@strategies.budget(30)
@tally.checked_against("oracle")
def test_vector_rows_match_the_oracle(case, dtype, seed):
    assert_depthwise_three_ops(case, "channels_last", dtype, seed)


@st.composite
def first_cases(draw):
    """(x_shape, w_shape, kwargs) of a channels-first 3x3 depthwise conv whose rows hold at least
    a vector of outputs (the channels-first vector planes): any multiplier, row stride, both
    dilations, pads from -1 to 3, output widths on and off a multiple of the vector."""
    c, mult = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    s0, d0, d1 = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple((draw(st.integers(-1, 3)), draw(st.integers(-1, 3))) for _ in range(2))
    h = draw(st.integers(max(1, 2 * d0 + 1 - sum(pads[0]), 1 - min(pads[0])), 2 * d0 + 6))
    ow = draw(st.integers(8, 35))  # 8 lanes of float64, 16 of float32: both sides of each
    w = ow + 2 * d1 - sum(pads[1])
    n = draw(st.integers(1, 2))
    return (n, c, h, w), (c * mult, 1, 3, 3), {"stride": (s0, 1), "dilation": (d0, d1), "padding": pads,
                                                "groups": c}


@given(case=first_cases(), dtype=st.sampled_from((np.float32, np.float64)), seed=st.integers(0, 2**31))
@strategies.budget(20)
@tally.checked_against("oracle")
def test_channels_first_vector_planes_match_the_oracle(case, dtype, seed):
    assert_depthwise_three_ops(case, "channels_first", dtype, seed)


@st.composite
def many_plane_cases(draw):
    """first_cases with more than 128 (image, output channel) planes: the channels-first filter
    gradient's threads claim chunks of several planes, and each channel's sums over the images
    meet from different chunks."""
    c, mult = draw(st.integers(26, 40)), draw(st.integers(1, 2))
    n = draw(st.integers(-(-129 // (c * mult)), 5))
    s0, d0, d1 = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    h = draw(st.integers(max(1, 2 * d0 + 1 - sum(pads[0])), 2 * d0 + 3))
    ow = draw(st.integers(16, 21))
    w = ow + 2 * d1 - sum(pads[1])
    return (n, c, h, w), (c * mult, 1, 3, 3), {"stride": (s0, 1), "dilation": (d0, d1), "padding": pads,
                                                "groups": c}


@given(case=many_plane_cases(), dtype=st.sampled_from((np.float32, np.float64)), seed=st.integers(0, 2**31))
@strategies.budget(8)
@tally.checked_against("oracle")
def test_channels_first_planes_in_chunks_match_the_oracle(case, dtype, seed):
    assert_depthwise_three_ops(case, "channels_first", dtype, seed)


@st.composite
def aligned_cases(draw):
    """(x_shape, w_shape, kwargs) of a channels-first 3x3 depthwise conv with unit column stride and
    dilation (the planes' buffer rows a whole number of vectors apart, the taps shifted in
    registers): output widths just below, on and above one to three vectors of either dtype
    (with and without the last, overlapping vector), any row stride, row dilation, multiplier and
    pads from -1 to 3."""
    c, mult = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    s0, d0 = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = tuple((draw(st.integers(-1, 3)), draw(st.integers(-1, 3))) for _ in range(2))
    h = draw(st.integers(max(1, 2 * d0 + 1 - sum(pads[0]), 1 - min(pads[0])), 2 * d0 + 5))
    ow = draw(st.sampled_from((8, 9, 15, 16, 17, 23, 24, 31, 32, 33, 47, 48, 49)))
    w = ow + 2 - sum(pads[1])
    return (draw(st.integers(1, 2)), c, h, w), (c * mult, 1, 3, 3), {
        "stride": (s0, 1), "dilation": (d0, 1), "padding": pads, "groups": c}


@given(case=aligned_cases(), dtype=st.sampled_from((np.float32, np.float64)), seed=st.integers(0, 2**31))
@strategies.budget(12)
@tally.checked_against("oracle")
def test_channels_first_aligned_rows_match_the_oracle(case, dtype, seed):
    assert_depthwise_three_ops(case, "channels_first", dtype, seed)


@given(case=aligned_cases(), seed=st.integers(0, 2**31))
@strategies.budget(8)
@tally.checked_against("oracle", capability="nonfinite")
def test_channels_first_aligned_rows_put_inf_and_nan_where_the_direct_sum_does(case, seed):
    """The shifted windows multiply the buffer's zero border as the direct sum multiplies the
    padding, and the last vector's lanes over the one before add no product to the filter
    gradient."""
    _assert_nonfinite_where_the_oracle_puts_them(case, "channels_first", seed)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_gathered_input_grad_keeps_the_scattered_sums_inf_and_nan(data_format):
    """The stride-1 input gradient gathers dy over its zero padding with the flipped filter; the
    direct sum scatters each dy * w to the one sample it was read from and never multiplies the
    padding. With an inf in w, 0 * inf would make NaN at the borders: such a filter (9 x C
    values, checked per call) goes the scattering way."""
    rng = np.random.default_rng(5)
    kw = {"padding": 1, "groups": 16}
    x_shape, w_shape = (2, 16, 9, 18), (16, 1, 3, 3)
    w = rng.standard_normal(w_shape)
    w[3, 0, 0, 2], w[7, 0, 2, 1], w[11, 0, 1, 1] = np.inf, -np.inf, np.nan
    dy = rng.standard_normal(x_shape)
    want = oracle.input_grad(dy.astype(object), w.astype(object), x_shape, **kw)
    for dtype in (np.float32, np.float64):
        wa, dya = w.astype(dtype), dy.astype(dtype)
        if data_format == "channels_last":
            wa = np.ascontiguousarray(wa.transpose(2, 3, 1, 0))
            dya = np.ascontiguousarray(dya.transpose(0, 2, 3, 1))
        got = convgrad.conv_input_grad(dya, wa, (2, 9, 18, 16) if data_format == "channels_last" else x_shape,
                                       method="depthwise", data_format=data_format, **kw)
        plan = convgrad.make_plan("input_grad", convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw),
                                  np.dtype(dtype), "depthwise", 2**31, data_format)
        assert plan.choices == {"input_grad": "gather"}
        if data_format == "channels_last":
            got = got.transpose(0, 3, 1, 2)
        g, r = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        kinds = [np.select([np.isnan(a), np.isposinf(a), np.isneginf(a)], [1, 2, 3], 0) for a in (g, r)]
        assert (kinds[0] == kinds[1]).all(), (data_format, dtype, np.flatnonzero(kinds[0] != kinds[1])[:5])
        finite = kinds[1] == 0
        assert np.allclose(g[finite], r[finite], rtol=1e-5, atol=1e-5)


@st.composite
def nonfinite_cases(draw):
    """A depthwise conv of any kernel, multiplier, stride, dilation and pad (channels enough for
    the vector rows half the time, rows long enough for the channels-first vectors half the
    time), with inf, -inf and NaN placed in x, w and dy."""
    c = draw(st.sampled_from((1, 2, 16, 17)))
    mult = 1 if c > 2 else draw(st.integers(1, 2))
    kernel = draw(st.sampled_from(((3, 3), (3, 3), (2, 3), (1, 1))))
    stride = (draw(st.integers(1, 2)), draw(st.sampled_from((1, 1, 2))))
    dilation = (draw(st.integers(1, 2)), draw(st.sampled_from((1, 1, 2))))
    pads = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(2))
    tops = (5, draw(st.sampled_from((5, 20))))
    spatial = [draw(st.integers(max(1, (k - 1) * d + 1 - sum(p), 1 - min(p)), (k - 1) * d + top))
               for k, d, p, top in zip(kernel, dilation, pads, tops)]
    kw = {"stride": stride, "dilation": dilation, "padding": pads, "groups": c}
    return (draw(st.integers(1, 2)), c, *spatial), (c * mult, 1, *kernel), kw


@given(case=nonfinite_cases(), data_format=st.sampled_from(("channels_last", "channels_first")),
       seed=st.integers(0, 2**31))
@strategies.budget(25)
@tally.checked_against("oracle", capability="nonfinite")
def test_inf_and_nan_land_where_the_direct_sum_puts_them(case, data_format, seed):
    """The engine keeps no list of ops to check operands for (``nonfinite_skips`` is empty): every
    path multiplies the zero padding as the direct sum does, forward and filter gradient (0 * inf
    is NaN), and the input gradient multiplies none of it (it scatters)."""
    _assert_nonfinite_where_the_oracle_puts_them(case, data_format, seed)


def _assert_nonfinite_where_the_oracle_puts_them(case, data_format, seed):
    """Two inf, -inf or NaN placed in each of x, w and dy: every op's inf and NaN where the object
    oracle (exact zeros of the padding multiplied) puts them."""
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in (x_shape, w_shape, geom.y_shape())]
    for a in arrays:
        a.flat[rng.integers(a.size, size=2)] = rng.choice([np.inf, -np.inf, np.nan], size=2)
    x, w, dy = arrays
    with np.errstate(all="ignore"):
        want = oracle.three_ops(*(a.astype(object) for a in arrays), **kw)
        got = three_ops_in(data_format, x.astype(np.float32), w.astype(np.float32), dy.astype(np.float32),
                           "depthwise", kw)
    for name, g, ref in zip(("forward", "input_grad", "filter_grad"), got, want):
        g, r = np.asarray(g, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        kinds = [np.select([np.isnan(a), np.isposinf(a), np.isneginf(a)], [1, 2, 3], 0) for a in (g, r)]
        assert (kinds[0] == kinds[1]).all(), (name, np.flatnonzero(kinds[0] != kinds[1])[:5])


@pytest.mark.parametrize(("data_format", "x_shape", "kw", "at"), [
    # channels-first vectors: 21 outputs, the last vector overlaps 11 lanes of the one before
    ("channels_first", (1, 1, 5, 21), {"padding": 1, "groups": 1}, (0, 0, 0, 8)),
    # channels-last rows: one output row, a lone row (no second row's products)
    ("channels_last", (1, 16, 3, 6), {"padding": 0, "groups": 16}, (0, 5, 1, 2)),
    # channels-first, rows shorter than a vector: the unit-stride flat sums, x not finite
    ("channels_first", (2, 1, 5, 9), {"padding": 1, "groups": 1}, (1, 0, 2, 8)),
])
def test_an_inf_in_x_reaches_only_the_filter_taps_that_read_it(data_format, x_shape, kw, at):
    """Where a path computes more lanes or rows than it keeps (the overlapping last vector, a lone
    row, rows of dy padded with zeros), those products are dropped, not multiplied by zeros:
    0 * inf would put NaN in taps the direct sum leaves finite."""
    rng = np.random.default_rng(11)
    w_shape = (x_shape[1], 1, 3, 3)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    x, w, dy = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    x[at] = np.inf
    with np.errstate(all="ignore"):
        want = oracle.filter_grad(x.astype(object), dy.astype(object), w_shape, **kw)
        got = three_ops_in(data_format, x.astype(np.float32), w.astype(np.float32), dy.astype(np.float32),
                           "depthwise", kw)[2]
    g, r = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert 0 < np.isfinite(r).sum() < r.size  # the inf reaches some taps, not all
    kinds = [np.select([np.isnan(a), np.isposinf(a), np.isneginf(a)], [1, 2, 3], 0) for a in (g, r)]
    assert (kinds[0] == kinds[1]).all(), np.flatnonzero(kinds[0] != kinds[1])[:5]
