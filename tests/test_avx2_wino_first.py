"""The one-pass Winograd kernel's channels-first path (_kernels/winograd_fused.winograd43 with
``first``): a unit's input rows moved channels-last, its output rows moved back into the planes,
on AVX2 straight into them even where planes are a multiple of 1 KiB apart (32 x 32 float32; the
stage with a skewed stride only on other vector widths). The forward and the input gradient
channels-first against the loop oracle, bitwise equal to the channels-last run (the same sums in
the same order), and on 1 and 2 threads. Runs on any vector width."""

from __future__ import annotations

from functools import partial

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close, at_thread_counts
from convgrad.engines import winograd


@st.composite
def first_cases(draw):
    """Channels-first (x_shape, w_shape, padding, dilation): 3x3 stride 1, ONE_PASS_CHANNELS to
    20 channels, dilations 1-3 per axis, (before, after) pads from cropping (-1) to past the
    kernel's reach (2 d + 1: whole rows and columns of a unit's stage outside x), 4 outputs or
    more per axis, rows cut into parts (over _BLOCK_TILES tiles) or not."""
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple((draw(st.integers(-1, 2 * d + 1)), draw(st.integers(-1, 2 * d + 1))) for d in dilation)
    spatial = []
    for d, (lo, hi), most in zip(dilation, padding, (14, 230)):
        least = max(1, 2 * d + 4 - lo - hi)  # 4 outputs at least: F(4x4, 3x3) (tile_size)
        spatial.append(draw(st.integers(least, max(least, most))))
    n = draw(st.integers(1, 3))
    c = draw(st.integers(winograd.ONE_PASS_CHANNELS, 20))
    o = draw(st.integers(winograd.ONE_PASS_CHANNELS, 20))
    return (n, c, *spatial), (o, c, 3, 3), padding, dilation


def _ops(x, w, dy, padding, dilation, data_format):
    """(y, dx) of the one-pass engine in ``data_format``, returned channels-first; x, dy
    channels-first, w (O, C, 3, 3)."""
    last = data_format == "channels_last"
    to = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if last else (lambda a: a)
    back = (lambda a: np.moveaxis(a, -1, 1)) if last else (lambda a: a)
    wf = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2))) if last else w
    kw = {"padding": padding, "dilation": dilation, "method": "winograd", "data_format": data_format}
    return (back(convgrad.conv(to(x), wf, **kw)),
            back(convgrad.conv_input_grad(to(dy), wf, to(x).shape, **kw)))


@given(case=first_cases(), dtype=st.sampled_from([np.float32, np.float64]))
@strategies.budget(24)
@tally.checked_against("oracle")
def test_channels_first_matches_the_oracle_and_the_channels_last_bits(case, dtype):
    """y and dx channels-first: within the engine's tolerance of the float64 oracle, and bitwise
    the channels-last run's values."""
    x_shape, w_shape, padding, dilation = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=padding, dilation=dilation)
    for op in ("forward", "input_grad"):
        assert convgrad.make_plan(op, geom, np.dtype(dtype), "winograd", 2**31).choices.get("one_pass")
    rng = np.random.default_rng(sum(x_shape))
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(geom.y_shape())
    y, dx = _ops(x.astype(dtype), w.astype(dtype), dy.astype(dtype), padding, dilation, "channels_first")
    y_last, dx_last = _ops(x.astype(dtype), w.astype(dtype), dy.astype(dtype), padding, dilation,
                           "channels_last")
    np.testing.assert_array_equal(y, y_last)
    np.testing.assert_array_equal(dx, dx_last)
    y_want = oracle.conv(x, w, padding=padding, dilation=dilation)
    dx_want = oracle.input_grad(dy, w, x_shape, padding=padding, dilation=dilation)
    if dtype == np.float64:
        assert_close(y, y_want)
        assert_close(dx, dx_want)
    else:
        for got, want in ((y, y_want), (dx, dx_want)):
            scale = max(np.abs(want).max(), 1e-300)
            assert np.abs(got - want).max() / scale < winograd.FLOAT32_TOLERANCE


def test_dilated_channels_first_on_1_and_2_threads():
    """The benchmark's dilated layer in small (16 -> 16 channels, 32 x 32 planes: 4 KiB apart,
    dilation 2, pad 2), channels-first: the same bits on 1 and 2 threads, the channels-last run's
    bits, and the oracle's values."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 16, 32, 32)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    kw = {"padding": 2, "dilation": 2, "method": "winograd"}
    one, two = at_thread_counts(partial(convgrad.conv, x, w, **kw))
    np.testing.assert_array_equal(one, two)
    last = convgrad.conv(np.ascontiguousarray(np.moveaxis(x, 1, -1)),
                         np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2))), data_format="channels_last",
                         **kw)
    np.testing.assert_array_equal(one, np.moveaxis(last, -1, 1))
    want = oracle.conv(x.astype(np.float64), w.astype(np.float64), padding=2, dilation=2)
    assert np.abs(one - want).max() / np.abs(want).max() < winograd.FLOAT32_TOLERANCE
