"""The tiled engine's float32 filter gradient for few output channels, vectors along the runs of
filter rows (engines/_kernels/thin_filter.py), against the loop oracle in float64.

Each check first asserts that the plan took the thin kernel (so a change of the cost model cannot
silently stop covering it), then compares with the oracle within float32's rounding bound: a few
units of float32 rounding times the oracle's filter gradient of |x| and |dy|.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import convgrad
from checks import assert_float32_filter_grad
from convgrad._plan import default_planner
from strategies import budget, filter_grad_cases, seeds
from tally import checked_against

F32 = np.dtype(np.float32)


def _check(x, dy, w_shape, fmt, **kw):
    """dw of the thin kernel (forced by pricing it at zero) against the float64 oracle."""
    from convgrad.engines import tiled

    geom = convgrad.ConvGeometry.for_conv(x.shape, w_shape, data_format=fmt, **kw)
    with mock.patch.object(tiled, "_thin_seconds", lambda g: 0.0):
        default_planner().clear()  # plans made before the patch
        assert convgrad.make_plan("filter_grad", geom, F32, "tiled", 2**31).choices["tile"] == "8x48 thin"
        x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
        keep = x32.copy(), dy32.copy()
        got = convgrad.conv_filter_grad(x32, dy32, w_shape, data_format=fmt, method="tiled", **kw)
        default_planner().clear()
    assert np.array_equal(x32, keep[0]) and np.array_equal(dy32, keep[1])  # inputs not written
    assert_float32_filter_grad(got, x, dy, w_shape, fmt, **kw)


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    # the 3-D row's shape: 16 -> 16 channels, 3x3x3, runs of 48 = one tile of 3 vectors, two
    # blocks of 8 output channels
    ((2, 16, 5, 6, 7), (16, 16, 3, 3, 3), {"padding": 1}),
    # runs of 21 (the stem's 3 channels, 7 taps): 2 vectors, the second past the run; stride 2
    ((2, 3, 17, 15), (5, 3, 7, 7), {"stride": 2, "padding": 3}),
    # nothing to pad: x itself is copied in front of the margin the last vector reads into
    ((1, 5, 9, 11), (9, 5, 3, 3), {}),
    # dilation along the row: runs of the input channels alone, one per tap (C = 20: 2 vectors)
    ((2, 20, 8, 12), (13, 20, 2, 3), {"dilation": (1, 2), "padding": 1}),
    ((3, 64, 20), (17, 64, 3), {"stride": 3, "padding": 2}),  # 1-D, runs of 192: 4 tiles of 3 vectors
    ((1, 36, 6, 7), (24, 36, 1, 1), {}),  # 1x1: runs of 36 = 2 + 1 vectors
    ((2, 2, 6, 7), (3, 2, 4, 4), {"padding": ((-1, 2), (1, -1))}),  # negative pads crop
    # 3-D, one output channel
    ((1, 4, 3, 4, 5), (1, 4, 2, 3, 3), {"stride": (1, 2, 1), "dilation": (2, 1, 1), "padding": 1}),
])
@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_thin_filter_grad_paths(x_shape, w_shape, kw, fmt):
    rng = np.random.default_rng(21)
    if fmt == "channels_last":
        x_shape = (x_shape[0], *x_shape[2:], x_shape[1])
        w_shape = (*w_shape[2:], w_shape[1], w_shape[0])
    x = rng.standard_normal(x_shape)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, data_format=fmt, **kw)
    _check(x, rng.standard_normal(geom.y_shape(fmt)), w_shape, fmt, **kw)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thin_filter_grad_chunks_sum_alike(monkeypatch, threads):
    """The rows go in chunks, each into its own partial gradient, claimed by 1, 2 or 3 threads:
    the same dw within rounding, and bitwise the same whichever thread took which chunk."""
    from convgrad.engines import _threads, tiled

    monkeypatch.setattr(_threads, "allowed", lambda: threads)
    monkeypatch.setattr(_threads, "cores", lambda: threads)  # the partial results' count
    rng = np.random.default_rng(22)
    x_shape, w_shape = (2, 8, 5, 6, 9), (16, 8, 3, 3, 3)
    x = rng.standard_normal(x_shape)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=1)
    assert tiled._thin_parts(geom) == 4 * threads
    dy = rng.standard_normal(geom.y_shape())
    _check(x, dy, w_shape, "channels_first", padding=1)
    xl, dyl = (np.ascontiguousarray(np.moveaxis(a, 1, -1)).astype(np.float32) for a in (x, dy))
    first = tiled._filter_grad_thin(geom, 4 * threads, xl, dyl)
    assert all(np.array_equal(first, tiled._filter_grad_thin(geom, 4 * threads, xl, dyl)) for _ in range(3))


@st.composite
def thin_cases(draw):
    """(x_shape, w_shape, kwargs, data_format) of a groups-1 conv: random rank, kernel, stride
    (often longer than the kernel), dilation and explicit pads (negative ones crop), input
    channels 1-5 or 16-64, output channels 1-20 (partial blocks of 8)."""
    return draw(filter_grad_cases(st.one_of(st.integers(1, 5), st.integers(16, 64)), st.integers(1, 20)))


@budget(30)
@given(thin_cases(), seeds)
@checked_against("oracle")
def test_thin_filter_grad_random_geometries(case, seed):
    x_shape, w_shape, kw, fmt = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, data_format=fmt, **kw)
    assume(not geom.empty)
    rng = np.random.default_rng(seed)
    _check(rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape(fmt)), w_shape, fmt, **kw)


def test_thin_filter_grad_chosen_for_few_output_channels():
    """The cost model runs the thin kernel for the 3-D row's 16 output channels, and keeps the 64
    output channels of the stem and the resnet layer on the runs kernel, float64 on the tiles."""
    from convgrad.engines import tiled

    conv3d = convgrad.ConvGeometry.for_conv((2, 16, 32, 32, 32), (16, 16, 3, 3, 3), padding=1)
    stem = convgrad.ConvGeometry.for_conv((8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    resnet = convgrad.ConvGeometry.for_conv((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    assert tiled._thin_fit(conv3d, F32)
    assert not tiled._thin_fit(conv3d, np.dtype(np.float64))
    assert not tiled._thin_fit(stem, F32) and not tiled._thin_fit(resnet, F32)
