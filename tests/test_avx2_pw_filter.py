"""The channels-first 1x1 filter gradient's large filters (``tiled._run_pointwise_first``): fewer
partial sums than PARTS where each is large (``pointwise.PARTS_BYTES``, never under two) and
their sum transposed to (O, C) by the compiled 8 x 8 blocks (``layout.transpose_batches``) from
``layout.MIN_VALUES`` values, through the public op against the loop oracle."""

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
from checks import assert_close
from convgrad.engines._kernels import layout, pointwise

pytest.importorskip("numba")


@given(n=st.integers(3, 4), c=st.integers(690, 760), o=st.integers(1000, 1024), s=st.integers(1, 9))
@strategies.budget(3)
@tally.checked_against("oracle")
def test_large_pointwise_filter_grad_matches_the_oracle(n, c, o, s):
    """dw of a filter whose partial sums are each past PARTS_BYTES / 3: two parts (not one per
    chunk), dw (O, C) of more than MIN_VALUES values, every channel pair checked."""
    x_shape, w_shape = (n, c, s), (o, c, 1)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape)
    part = c * -(-o // 64) * 64 * 4
    assert pointwise.PARTS_BYTES // part == 2 and o * c >= layout.MIN_VALUES
    plan = convgrad.make_plan("filter_grad", geom, np.dtype(np.float32), "tiled", 2**31, "channels_first")
    assert plan.chosen.first_workspace == 2 * part  # n chunks of one image each, in two parts
    rng = np.random.default_rng(n * 7 + c + o * s)
    x, dy = rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape())
    got = convgrad.conv_filter_grad(x.astype(np.float32), dy.astype(np.float32), w_shape, method="tiled")
    want = oracle.filter_grad(x, dy, w_shape)
    assert_close(got, want, rtol=0, atol=1e-6 * n * s * math.sqrt(n * s) + 1e-5, dtype=np.float32)
