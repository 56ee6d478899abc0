"""The channels-first 1x1 kernels on images long enough for several work items.

``pointwise_first`` cuts each image into spans of ``SPAN`` positions and each span into tiles of
64 (the last one narrower); ``pointwise_filter_grad_first`` into chunks of ``CHUNK``. The engine
tests draw at most 12 positions per axis; here up to three spans per image, with ragged ends,
through the public ops (``method="tiled"``, channels-first), against the loop oracle.
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

pytest.importorskip("numba")


@given(n=st.integers(1, 2), c=st.integers(1, 9), o=st.integers(1, 14), length=st.integers(1, 1600),
       op=st.sampled_from(["forward", "input_grad", "filter_grad"]))
@strategies.budget(20)
def test_pointwise_first_on_long_images_matches_the_oracle(n, c, o, length, op):
    from convgrad.engines._kernels import pointwise

    assert 2 * pointwise.SPAN < 1600 < 4 * pointwise.SPAN  # the draw reaches three spans
    x_shape, w_shape = (n, c, length), (o, c, 1)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape)
    plan = convgrad.make_plan(op, geom, np.dtype(np.float32), "tiled", 2**31, "channels_first")
    assert plan.takes == "channels_first"
    rng = np.random.default_rng(length * 7 + c)
    x, w, dy = (rng.standard_normal(s) for s in (x_shape, w_shape, geom.y_shape()))
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    if op == "forward":
        got, want, terms = convgrad.conv(x32, w32, method="tiled"), oracle.conv(x, w), c
    elif op == "input_grad":
        got = convgrad.conv_input_grad(dy32, w32, x_shape, method="tiled")
        want, terms = oracle.input_grad(dy, w, x_shape), o
    else:
        got = convgrad.conv_filter_grad(x32, dy32, w_shape, method="tiled")
        want, terms = oracle.filter_grad(x, dy, w_shape), n * length
    # sums of ``terms`` products of standard normals, rounded in float32
    assert_close(got, want, rtol=0, atol=1e-6 * max(1, terms), dtype=np.float32)
