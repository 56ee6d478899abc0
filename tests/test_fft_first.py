"""The FFT engine on channels-first operands: its transforms read the NCHW arrays as channels-last
views and its last inverse stage writes the NCHW result, so no array is transposed around it
(engines/fft.py, ``_FIRST``). Random geometries of every rank, stride, dilation, group count and
crop, with the transforms both as DFT GEMMs and as pocketfft's FFTs, against the loop oracle and
the adjoint identity."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import convgrad
import convgrad.testing as cgt
import oracle
import strategies
from checks import assert_close
from tally import checked_against

OPS = ("forward", "input_grad", "filter_grad")
F64 = np.dtype(np.float64)


@contextlib.contextmanager
def _dft_gemm_rate(rate):
    """The packaged calibration with the DFT GEMMs' rate replaced (1e3: every transform by
    pocketfft; 1e30: every one by DFT GEMMs), and a fresh default planner; both restored after."""
    from convgrad.engines import _machine, load_calibration

    doc = json.loads(_machine.DEFAULT_PATH.read_text())
    doc["engines"]["_spectra"]["DFT_GEMM_FLOPS_PER_S"] = rate
    saved = _machine.model(), convgrad._plan._DEFAULT
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "calibration.json"
        path.write_text(json.dumps(doc))
        convgrad._plan._DEFAULT = convgrad._plan.Planner()
        load_calibration(path)
        try:
            yield
        finally:
            _machine._MODEL, convgrad._plan._DEFAULT = saved


@pytest.fixture(scope="module", params=[1e3, 1e30], ids=["pocketfft", "dft_gemm"])
def transforms(request):
    with _dft_gemm_rate(request.param):
        yield request.param


def _transposed(*args, **kwargs):
    raise AssertionError("the caller's channels-first array was transposed to channels-last")


@given(case=strategies.conv_cases(data_formats=("channels_first",), min_batch=1))
@strategies.budget(20)
@checked_against("oracle")
def test_fft_runs_channels_first_operands_as_they_are(transforms, case):
    """All three ops on NCHW operands, with every transposition of _ops forbidden: the oracle's
    results, and the adjoint identity on the same path."""
    from convgrad.engines import _spectra

    kw = {k: v for k, v in case.kwargs.items() if k != "data_format"}
    geom = convgrad.ConvGeometry.for_conv(case.x_shape, case.w_shape, **kw)
    plans = [convgrad.make_plan(op, geom, F64, "fft", 2**31, "channels_first") for op in OPS]
    assume(all(p.choices["block"] is None for p in plans))  # blocks along a long axis: channels-last
    assert all(p.takes == "channels_first" for p in plans)
    lengths = plans[0].choices["lengths"]
    assert _spectra.use_dft_gemm(geom.kernel, lengths, 1) == (transforms > 1e9)
    rng = np.random.default_rng(0)
    x, w, dy = (rng.standard_normal(s) for s in (geom.x_shape(), geom.w_shape(), geom.y_shape()))
    before = [a.copy() for a in (x, w, dy)]
    with mock.patch.object(convgrad._ops, "x_to_last", _transposed), \
            mock.patch.object(convgrad._ops, "w_to_last", _transposed), \
            mock.patch.object(convgrad._ops.layout, "relaid", _transposed):
        assert_close(convgrad.conv(x, w, method="fft", **kw), oracle.conv(x, w, **kw))
        assert_close(convgrad.conv_input_grad(dy, w, x.shape, method="fft", **kw),
                     oracle.input_grad(dy, w, x.shape, **kw))
        assert_close(convgrad.conv_filter_grad(x, dy, w.shape, method="fft", **kw),
                     oracle.filter_grad(x, dy, w.shape, **kw))
        cgt.dot_test(case.x_shape, case.w_shape, dtype=F64, method="fft", **kw)
    for a, b in zip((x, w, dy), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("op", OPS)
def test_fft_channels_first_float32_within_rounding_of_the_channels_last_run(op):
    """The large-kernel row's shape scaled down (31 x 31 taps over 24 x 24, 8 -> 8 channels), float32:
    the channels-first result is within float32 rounding of the channels-last one and of the oracle."""
    from convgrad._layout import w_from_last, w_to_last, x_from_last, x_to_last

    x_shape, w_shape, kw = (2, 8, 24, 24), (8, 8, 31, 31), {"padding": 15}
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assert convgrad.make_plan(op, geom, np.dtype(np.float32), "fft", 2**31, "channels_first").takes == \
        "channels_first"
    rng = np.random.default_rng(1)
    x, w, dy = (rng.standard_normal(s).astype(np.float32) for s in (x_shape, w_shape, geom.y_shape()))
    xl, dyl = (np.ascontiguousarray(x_to_last(a, "channels_first")) for a in (x, dy))
    wl = np.ascontiguousarray(w_to_last(w, "channels_first"))
    last = {"method": "fft", "data_format": "channels_last", **kw}
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    if op == "forward":
        got = convgrad.conv(x, w, method="fft", **kw)
        ref = x_from_last(convgrad.conv(xl, wl, **last), "channels_first")
        want = oracle.conv(x64, w64, **kw)
    elif op == "input_grad":
        got = convgrad.conv_input_grad(dy, w, x_shape, method="fft", **kw)
        ref = x_from_last(convgrad.conv_input_grad(dyl, wl, xl.shape, **last), "channels_first")
        want = oracle.input_grad(dy64, w64, x_shape, **kw)
    else:
        got = convgrad.conv_filter_grad(x, dy, w_shape, method="fft", **kw)
        ref = w_from_last(convgrad.conv_filter_grad(xl, dyl, wl.shape, **last), "channels_first")
        want = oracle.filter_grad(x64, dy64, w_shape, **kw)
    scale = float(np.abs(want).max())
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.abs(got - ref).max() <= 1e-5 * scale
    assert_close(got, want, rtol=1e-4, atol=1e-4 * scale, dtype=np.float32)


@given(case=strategies.conv_cases(ranks=(1, 2), data_formats=("channels_first",), min_batch=1),
       data=st.data())
@strategies.budget(20)
@checked_against("oracle")
def test_fft_blocks_of_channels_first_operands_are_cut_from_them(case, data):
    """The forward and the filter gradient by blocks along the first axis (forced: 1 output per
    block up to the whole axis) on NCHW operands, every transposition of _ops forbidden: the
    segments and dy's blocks are cut from the NCHW arrays, y joined from its blocks (the last one
    cut short); the oracle's results, operands unchanged."""
    from convgrad._plan import default_planner
    from convgrad.engines import fft

    kw = {k: v for k, v in case.kwargs.items() if k != "data_format"}
    geom = convgrad.ConvGeometry.for_conv(case.x_shape, case.w_shape, **kw)
    assume(not any(lo or hi for lo, hi in geom.tight_padding[1:]))  # else the blocks run channels-last
    b = data.draw(st.integers(1, geom.out_spatial[0]), label="block")
    rng = np.random.default_rng(b)
    x, w, dy = (rng.standard_normal(s) for s in (geom.x_shape(), geom.w_shape(), geom.y_shape()))
    before = [a.copy() for a in (x, w, dy)]
    with mock.patch.object(fft.FFT, "_block", lambda self, g, op, dtype: b), \
            mock.patch.object(convgrad._ops, "x_to_last", _transposed), \
            mock.patch.object(convgrad._ops, "w_to_last", _transposed), \
            mock.patch.object(convgrad._ops.layout, "relaid", _transposed):
        default_planner().clear()  # plans made before the patch
        try:
            for op in ("forward", "filter_grad"):
                plan = convgrad.make_plan(op, geom, F64, "fft", 2**31, "channels_first")
                assert plan.choices["block"] == b and plan.takes == "channels_first"
            assert_close(convgrad.conv(x, w, method="fft", **kw), oracle.conv(x, w, **kw))
            assert_close(convgrad.conv_filter_grad(x, dy, w.shape, method="fft", **kw),
                         oracle.filter_grad(x, dy, w.shape, **kw))
        finally:
            default_planner().clear()
    for a, c in zip((x, w, dy), before):
        np.testing.assert_array_equal(a, c)


@given(case=strategies.conv_cases(ranks=(1, 2), data_formats=("channels_first",), min_batch=1),
       data=st.data())
@strategies.budget(20)
@checked_against("oracle")
def test_fft_blocked_input_grad_overlap_adds_channels_first_blocks(transforms, case, data):
    """The input gradient by blocks along the first axis (forced: 1 output per block up to the
    whole axis), with the transforms by pocketfft (the inverse writing the blocks channels-first)
    and by DFT GEMMs (writing through channels-last views): on NCHW operands with every
    transposition of _ops forbidden, dx overlap-added from the blocks in runs, and on the
    channels-last operands of the same problem; the oracle's results both times, operands
    unchanged."""
    from convgrad._layout import w_to_last, x_from_last, x_to_last
    from convgrad._plan import default_planner
    from convgrad.engines import fft

    kw = {k: v for k, v in case.kwargs.items() if k != "data_format"}
    geom = convgrad.ConvGeometry.for_conv(case.x_shape, case.w_shape, **kw)
    assume(not any(lo or hi for lo, hi in geom.tight_padding[1:]))  # else the blocks run channels-last
    b = data.draw(st.integers(1, geom.out_spatial[0]), label="block")
    rng = np.random.default_rng(b)
    w, dy = (rng.standard_normal(s) for s in (geom.w_shape(), geom.y_shape()))
    dyl = np.ascontiguousarray(x_to_last(dy, "channels_first"))
    wl = np.ascontiguousarray(w_to_last(w, "channels_first"))
    before = [a.copy() for a in (w, dy)]
    want = oracle.input_grad(dy, w, geom.x_shape(), **kw)
    with mock.patch.object(fft.FFT, "_block", lambda self, g, op, dtype: b):
        default_planner().clear()  # plans made before the patch
        try:
            plan = convgrad.make_plan("input_grad", geom, F64, "fft", 2**31, "channels_first")
            assert plan.choices["block"] == b and plan.takes == "channels_first"
            with mock.patch.object(convgrad._ops, "x_to_last", _transposed), \
                    mock.patch.object(convgrad._ops, "w_to_last", _transposed), \
                    mock.patch.object(convgrad._ops.layout, "relaid", _transposed):
                first = convgrad.conv_input_grad(dy, w, geom.x_shape(), method="fft", **kw)
            last = convgrad.conv_input_grad(dyl, wl, geom.x_shape()[2:], method="fft",
                                            data_format="channels_last", **kw)
            start, stop, _ = geom.reach[0]
            for got in (first, x_from_last(last, "channels_first")):
                assert_close(got, want)
                # no window reaches the samples the tight pads crop: exact zeros there
                np.testing.assert_array_equal(got[:, :, :start], 0)
                np.testing.assert_array_equal(got[:, :, stop:], 0)
        finally:
            default_planner().clear()
    for a, c in zip((w, dy), before):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(("x_shape", "w_shape", "kw", "b"), [
    ((2, 3, 60), (4, 3, 7), {"stride": 2}, 4),  # the last sample past every window
    ((2, 3, 61), (4, 3, 7), {"stride": 3, "padding": [(0, -4)]}, 3),
    ((2, 3, 61), (4, 3, 7), {"padding": [(-3, -4)]}, 7),  # cropped at both ends
    ((1, 2, 9, 5), (2, 2, 3, 2), {"stride": (2, 1), "padding": [(1, -2), (0, 0)]}, 2),
])
def test_fft_blocked_input_grad_channels_first_is_zero_where_no_window_reaches(x_shape, w_shape, kw, b):
    """dx by forced blocks on NCHW operands: the oracle's values, and exact zeros on the samples
    that the crops and the tight pads leave outside every window (the last block's segment
    reaches past them; its transforms' rounding must not land there)."""
    from convgrad._plan import default_planner
    from convgrad.engines import fft

    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(0)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    with mock.patch.object(fft.FFT, "_block", lambda self, g, op, dtype: b):
        default_planner().clear()
        try:
            assert convgrad.make_plan("input_grad", geom, F64, "fft", 2**31, "channels_first").takes == \
                "channels_first"
            got = convgrad.conv_input_grad(dy, w, x_shape, method="fft", **kw)
        finally:
            default_planner().clear()
    assert_close(got, oracle.input_grad(dy, w, x_shape, **kw))
    start, stop, _ = geom.reach[0]
    np.testing.assert_array_equal(got[:, :, :start], 0)
    np.testing.assert_array_equal(got[:, :, stop:], 0)
