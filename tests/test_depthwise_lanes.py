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
lanes it shares), two output rows at a time where the row stride and dilation are 1.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import three_ops_in


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
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(geom.y_shape())
    want = oracle.three_ops(x, w, dy, **kw)
    xa, wa, dya = (a.astype(dtype) for a in (x, w, dy))
    got = three_ops_in("channels_last", xa, wa, dya, "depthwise", kw)
    eps = 1e-15 if dtype == np.float64 else 2e-7
    terms = 9 * max(1, geom.batch * math.prod(geom.out_spatial))
    for name, g, ref in zip(("forward", "input_grad", "filter_grad"), got, want):
        assert g.dtype == dtype and g.shape == ref.shape, name
        scale = max(float(np.abs(ref).max()), 1.0)
        assert float(np.abs(g - ref).max()) <= 8 * eps * math.sqrt(terms) * scale, name


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
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(geom.y_shape())
    want = oracle.three_ops(x, w, dy, **kw)
    xa, wa, dya = (a.astype(dtype) for a in (x, w, dy))
    got = three_ops_in("channels_first", xa, wa, dya, "depthwise", kw)
    eps = 1e-15 if dtype == np.float64 else 2e-7
    terms = 9 * max(1, geom.batch * math.prod(geom.out_spatial))
    for name, g, ref in zip(("forward", "input_grad", "filter_grad"), got, want):
        assert g.dtype == dtype and g.shape == ref.shape, name
        scale = max(float(np.abs(ref).max()), 1.0)
        assert float(np.abs(g - ref).max()) <= 8 * eps * math.sqrt(terms) * scale, name
