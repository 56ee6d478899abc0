"""The tiled forward's 6 x 64 tiles storing a channels-first y that stays in the caches through
staging blocks of 8 tiles (_kernels/tiled.py ``_plane_tiles``, ``_stream_plane_6x64`` with
``past`` false): the strided forwards that pad x in the regions' launch (a transposed conv's
input gradient among them) and the stride-1 forwards of tiled_forward, channels-first, against
the loop oracle, every output written (y is NaN-filled before the kernels run); channels-last,
whose regions now split planes in whole staging blocks, the same."""

from __future__ import annotations

import math
from functools import partial
from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close
from convgrad._layout import x_from_last, x_to_last
from convgrad.engines import _regions, tiled


@st.composite
def staged_cases(draw):
    """(x_shape, w_shape, kwargs) channels-first, ranks 2-3: kernels 1-4, strides 1-3, dilations
    1-2, (before, after) pads 0-2; planes of 6 to ~400 outputs (a plane's last tile cut short,
    several staging blocks of 48, a last block cut short); output channels on and off 64."""
    rank = draw(st.integers(2, 3))
    kernel = tuple(draw(st.integers(1, 4 if rank == 2 else 2)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    pads = [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank)]
    out = [draw(st.integers(1, 2)) for _ in range(rank)]
    out[-2], out[-1] = draw(st.integers(1, 14)), draw(st.integers(6, 30))
    spatial = []
    for axis, (o, s, k, d) in enumerate(zip(out, stride, kernel, dilation)):
        n = (o - 1) * s + (k - 1) * d + 1 - sum(pads[axis])
        if n < 1:
            pads[axis], n = (0, 0), (o - 1) * s + (k - 1) * d + 1
        spatial.append(n)
    n, c = draw(st.integers(1, 2)), draw(st.sampled_from([1, 3, 8, 17]))
    o = draw(st.sampled_from([64, 70, 130]))
    return (n, c, *spatial), (o, c, *kernel), {"stride": stride, "padding": tuple(pads), "dilation": dilation}


def _nan_empty(shape, dtype):
    """An array of NaN where the engine asks for an uninitialised one."""
    return np.full(shape, np.nan, dtype)


@given(case=staged_cases(), dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.sampled_from(["channels_first", "channels_last"]))
@strategies.budget(30)
@tally.checked_against("oracle")
def test_staged_cached_tiles_write_every_output(case, dtype, layout):
    """y by the 6 x 64 tiles (forced), y NaN-filled first, small enough to stay in the caches:
    within the dtype's rounding of the float64 oracle, in either layout."""
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    first = layout == "channels_first"
    xd, wd = x.astype(dtype), w.astype(dtype)
    if first:
        forward = partial(tiled._run_first, partial(tiled._forward, 64, geom, first=True), "forward")
    else:
        forward = partial(tiled._forward, 64, geom)
        xd = np.ascontiguousarray(x_to_last(xd, "channels_first"))
        wd = np.ascontiguousarray(np.moveaxis(wd, (0, 1), (-1, -2)))
    with mock.patch.object(tiled, "aligned_empty", _nan_empty), \
            mock.patch.object(_regions, "aligned_empty", _nan_empty):
        got = forward(xd, wd)
    if not first:
        got = x_from_last(got, "channels_first")
    eps = np.finfo(dtype).eps
    terms = x_shape[1] * math.prod(w_shape[2:])  # rounding grows with each sum's length
    assert_close(got, oracle.conv(x, w, **kw), rtol=0, atol=64 * eps * terms, dtype=dtype)


def test_a_transposed_conv_input_gradient_channels_first_writes_every_output():
    """The benchmark's transposed_k4_s2 input gradient, scaled down (a 4x4 stride-2 forward from
    32 into 64 channels, 28 x 28 outputs: whole staging blocks and a last one cut short),
    channels-first, y NaN-filled first, against the float64 oracle."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 32, 56, 56)), rng.standard_normal((64, 32, 4, 4))
    with mock.patch.object(tiled, "aligned_empty", _nan_empty), \
            mock.patch.object(_regions, "aligned_empty", _nan_empty):
        got = convgrad.conv(x.astype(np.float32), w.astype(np.float32), stride=2, padding=1, method="tiled")
    want = oracle.conv(x, w, stride=2, padding=1)
    assert_close(got, want, rtol=0, atol=1e-5 * np.abs(want).max(), dtype=np.float32)
