"""The one-pass Winograd F(4x4, 3x3) engine (engines/winograd.py, _kernels/winograd_fused.py).

Every test first checks that the plan ran the one-pass kernels (its ``choices``), then compares
with the loop oracle (tests/oracle.py) in float64, on both layouts: channels-last and
channels-first (the kernel reads and writes either layout in place), undilated and dilated (the
phase grids). float32 is held to the engine's documented tolerance against the float64 oracle.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
from checks import assert_close
from convgrad.engines import winograd
from strategies import budget

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def _plan(op, geom, dtype, method="winograd"):
    return convgrad.make_plan(op, geom, dtype, method, 2**31)


def _both_ops(x, w, padding, data_format, dtype, dilation=1):
    """(y, dx, y_want, dx_want): the engine's forward and input gradient in ``data_format`` (read
    back channels-first), and the float64 oracle's, for channels-first x ``(N, C, H, W)``."""
    rng = np.random.default_rng(x.size)
    y_want = oracle.conv(x, w, padding=padding, dilation=dilation)
    dy = rng.standard_normal(y_want.shape)
    dx_want = oracle.input_grad(dy, w, x.shape, padding=padding, dilation=dilation)
    last = data_format == "channels_last"
    to = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if last else (lambda a: a)
    back = (lambda a: np.moveaxis(a, -1, 1)) if last else (lambda a: a)
    wf = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2))) if last else w
    kw = {"padding": padding, "dilation": dilation, "method": "winograd", "data_format": data_format}
    y = back(convgrad.conv(to(x).astype(dtype), wf.astype(dtype), **kw))
    dx = back(convgrad.conv_input_grad(to(dy).astype(dtype), wf.astype(dtype), to(x).shape, **kw))
    return y, dx, y_want, dx_want


def _relative(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-300))


@st.composite
def _cases(draw):
    """Channels-first (x, w, padding, dilation): 3x3 stride 1, at least ONE_PASS_CHANNELS
    channels, planes from one tile to rows of 8-10 tiles and rows cut into parts (over
    _BLOCK_TILES tiles), pads from cropping to beyond the kernel, asymmetric, dilations 1-3 per
    axis (phase grids of uneven sizes)."""
    n = draw(st.integers(1, 2))
    c = draw(st.integers(winograd.ONE_PASS_CHANNELS, 20))
    o = draw(st.integers(winograd.ONE_PASS_CHANNELS, 20))
    h, wd = draw(st.integers(4, 14)), draw(st.sampled_from([5, 9, 30, 37, 203]))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple((draw(st.integers(-1, 3)), draw(st.integers(-1, 3))) for _ in range(2))
    out = [s + lo + hi - 2 * d for s, (lo, hi), d in zip((h, wd), padding, dilation)]
    padding = padding if min(out) >= 4 else tuple((2 * d, 2 * d) for d in dilation)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c, h, wd)), rng.standard_normal((o, c, 3, 3)), padding, dilation


@budget(16)
@given(case=_cases(), data_format=st.sampled_from(["channels_first", "channels_last"]))
def test_one_pass_matches_the_oracle_in_float64(case, data_format):
    x, w, padding, dilation = case
    geom = convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding=padding, dilation=dilation)
    for op in ("forward", "input_grad"):
        plan = _plan(op, geom, F64)
        assert plan.choices.get("one_pass"), op
        assert plan.chosen.layouts == ("channels_last", "channels_first"), op
    y, dx, y_want, dx_want = _both_ops(x, w, padding, data_format, np.float64, dilation)
    assert_close(y, y_want)
    assert_close(dx, dx_want)


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize(("x_shape", "w_shape", "padding", "dilation"), [
    ((2, 16, 13, 33), (24, 16, 3, 3), 1, 1),  # rows of 9 tiles, last one cut
    ((1, 9, 14, 14), (8, 9, 3, 3), ((2, 0), (0, 3)), 1),  # rows of 4 tiles
    ((3, 8, 6, 64), (70, 8, 3, 3), 0, 1),  # 70 output channels: GEMM tiles of 64 and 16
    ((2, 12, 32, 32), (16, 12, 3, 3), 2, 2),  # dilation 2: four 16 x 16 phase grids
])
def test_one_pass_float32_within_the_documented_tolerance(x_shape, w_shape, padding, dilation, data_format):
    """float32 against the float64 oracle. Measured max |error| / max |result| over 64 random draws
    (32 shapes with 8-64 channels, the resnet_3x3 and resnet_3x3_deep shapes among them, both
    layouts), forward / input gradient: median 4.1e-6 / 4.6e-6, 90th percentile 6.3e-6 / 6.6e-6,
    largest 1.2e-5 / 1.3e-5, 8x inside FLOAT32_TOLERANCE."""
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y, dx, y_want, dx_want = _both_ops(x, w, padding, data_format, np.float32, dilation)
    assert y.dtype == dx.dtype == np.float32
    assert _relative(y, y_want) < winograd.FLOAT32_TOLERANCE
    assert _relative(dx, dx_want) < winograd.FLOAT32_TOLERANCE
    # and not the trivial pass of a zero result
    assert np.abs(y).max() > 0.1 * np.abs(y_want).max()


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dilation", [1, 2])
def test_input_grad_filter_flipped_back_before_its_transform(data_format, dilation):
    """The input gradient's filter, the caller's flipped with its channels swapped (a view), is
    copied back to contiguous by the compiled transposition and transformed with its taps read
    in reverse (48 x 40 channels: over layout.MIN_VALUES, where the copy runs); float64 against
    the oracle."""
    from convgrad import _layout
    from convgrad.engines import _kernels

    _kernels.warm_up(("float64",))
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((2, 40, 10, 13)), rng.standard_normal((48, 40, 3, 3))
    last = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2)))
    caller_w = w if data_format == "channels_first" else last
    seen = _layout.flip_swap_filter(_layout.w_to_last(caller_w, data_format), 1)
    assert winograd._flipped_copy(seen) is not None
    _, dx, _, dx_want = _both_ops(x, w, dilation, data_format, np.float64, dilation)
    assert_close(dx, dx_want)


def test_one_pass_refusals():
    """Fewer channels than ONE_PASS_CHANNELS and groups go to the NumPy transforms, which refuse
    a dilated kernel; so does the one-pass kernel an input dilation."""
    few = convgrad.ConvGeometry.for_conv((1, 3, 16, 16), (16, 3, 3, 3), padding=1)
    grouped = convgrad.ConvGeometry.for_conv((1, 16, 16, 16), (16, 8, 3, 3), padding=1, groups=2)
    for geom in (few, grouped):
        assert not _plan("forward", geom, F32).choices.get("one_pass")
    for geom in (convgrad.ConvGeometry.for_conv((1, 3, 16, 16), (16, 3, 3, 3), padding=2, dilation=2),
                 convgrad.ConvGeometry.for_general((1, 16, 9, 9), (16, 16, 3, 3), padding=1,
                                                   lhs_dilation=2)):
        with pytest.raises(ValueError, match="dilation"):
            _plan("forward", geom, F32)


def test_auto_takes_one_pass_for_many_channels_and_keeps_tiled_for_few():
    """The cost model (calibration.json's ONE_PASS_*): resnet's 3x3 layers, plain and dilated, go
    to Winograd in both layouts (channels-first run as it is), thin ones (16 channels, 56x56; 3
    input channels) stay on the tiled kernels, measured faster there."""
    from convgrad.engines import _kernels

    _kernels.warm_up(("float32",))  # weigh the kernels by their running time alone
    for x_shape, w_shape, dilation in [((8, 64, 56, 56), (64, 64, 3, 3), 1),
                                       ((8, 256, 14, 14), (256, 256, 3, 3), 1),
                                       ((8, 64, 32, 32), (64, 64, 3, 3), 2)]:
        geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=dilation, dilation=dilation)
        for op in ("forward", "input_grad"):
            for layout in ("channels_last", "channels_first"):
                plan = convgrad.make_plan(op, geom, F32, "auto", 2**31, layout)
                assert (plan.chosen.engine, plan.takes) == ("winograd", layout), (x_shape, op, layout)
    for x_shape, w_shape in [((8, 16, 56, 56), (16, 16, 3, 3)), ((8, 3, 56, 56), (64, 3, 3, 3))]:
        geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=1)
        assert _plan("forward", geom, F32, "auto").chosen.engine == "tiled", x_shape


def test_warm_up_compiles_the_signatures_the_engine_calls():
    """After ``warm_up``, the one-pass forward and input gradient in both layouts, with the filter
    given contiguous or as a view, compile nothing more: a fresh machine would otherwise pay
    seconds of compiling at a first call the planner costed as loaded (warm_up used to pass a
    3-D u where the channels-first kernel takes a 4-D one, and only a contiguous filter). In a
    process of its own: in this one, earlier tests may have compiled those signatures already."""
    code = """
import json, numpy as np, convgrad
from convgrad.engines import _kernels, warm_up
kernels = (_kernels.winograd43_filter, _kernels.winograd43)
warm_up(("float64",))
before = [len(k.signatures) for k in kernels]
rng = np.random.default_rng(5)
for fmt, x_shape, w_shape in (("channels_first", (1, 8, 36, 36), (8, 8, 3, 3)),
                              ("channels_last", (1, 36, 36, 8), (3, 3, 8, 8))):
    x = rng.standard_normal(x_shape)
    w_view = rng.standard_normal(w_shape[::-1]).T  # the same shape, not C-contiguous
    for w in (w_view, np.ascontiguousarray(w_view)):
        for dilation in (1, 2):
            kw = {"padding": dilation, "dilation": dilation, "method": "winograd", "data_format": fmt}
            y = convgrad.conv(x, w, **kw)
            convgrad.conv_input_grad(y, w, x.shape, **kw)
print(json.dumps([before, [len(k.signatures) for k in kernels]]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, after = json.loads(out)
    assert after == before
