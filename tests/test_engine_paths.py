"""Engine code paths that small random geometries rarely reach, each forced and checked.

The property suites run every engine on random geometries, but some paths only switch on for
larger problems: FFT blocking of a long axis, the depthwise kernels' 3x3 interior path, the
split_kernel engine's multi-axis prefixes and splits, the 1x1 single GEMM. Each test first asserts that
the geometry takes the path (so the test cannot silently stop covering it), then compares all
three ops with the oracle in float64.
"""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
from checks import assert_close, three_ops_in
from convgrad._layout import w_from_last, w_to_last, x_from_last, x_to_last

F64 = np.dtype(np.float64)
F32 = np.dtype(np.float32)


def _choices(op, geom, method, dtype=F64):
    """What the engine named ``method`` chose for ``op`` on ``geom``: its plan's recorded choices."""
    return convgrad.make_plan(op, geom, dtype, method, 2**31).choices


def _calibrated(monkeypatch, tmp_path, engine, **figures):
    """The packaged calibration with ``engine``'s ``figures`` replaced, loaded for this test."""
    import json

    from convgrad.engines import _machine, load_calibration

    doc = json.loads(_machine.DEFAULT_PATH.read_text())
    doc["engines"][engine].update(figures)
    (tmp_path / "calibration.json").write_text(json.dumps(doc))
    # Both restored after the test: the packaged model, and the default planner with its plans.
    monkeypatch.setattr(_machine, "_MODEL", _machine.model())
    monkeypatch.setattr(convgrad._plan, "_DEFAULT", convgrad._plan.Planner())
    load_calibration(tmp_path / "calibration.json")


def _run_plan(plan, a, b):
    """A plan run on channels-first operands, its result channels-first."""
    to_b = x_to_last if plan.op == "filter_grad" else w_to_last
    out = plan(np.ascontiguousarray(x_to_last(a, "channels_first")),
               np.ascontiguousarray(to_b(b, "channels_first")))
    return (w_from_last if plan.op == "filter_grad" else x_from_last)(out, "channels_first")


def _three_ops(method, x_shape, w_shape, seed=0, **kw):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    dy = rng.standard_normal(geom.y_shape())
    assert_close(convgrad.conv(x, w, method=method, **kw), oracle.conv(x, w, **kw))
    assert_close(convgrad.conv_input_grad(dy, w, x_shape, method=method, **kw),
                 oracle.input_grad(dy, w, x_shape, **kw))
    assert_close(convgrad.conv_filter_grad(x, dy, w_shape, method=method, **kw),
                 oracle.filter_grad(x, dy, w_shape, **kw))
    return geom


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    ((2, 8, 1500), (8, 8, 31), {"padding": ((9, 2),)}),
    ((2, 16, 3000), (16, 8, 31), {"stride": 2, "dilation": 2, "padding": ((-2, 11),), "groups": 2}),
    ((1, 8, 300, 6), (8, 8, 21, 3), {"padding": ((3, 3), (1, 1)), "stride": (1, 2)}),
])
def test_fft_blocks_a_long_first_axis(x_shape, w_shape, kw):
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assert all(_choices(op, geom, "fft")["block"] for op in ("forward", "input_grad", "filter_grad"))
    _three_ops("fft", x_shape, w_shape, **kw)


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    ((2, 5, 12, 11), (5, 1, 3, 3), {"padding": 1, "groups": 5}),
    ((2, 4, 13, 14), (4, 1, 3, 3), {"padding": ((2, 0), (3, 1)), "stride": (2, 1), "dilation": (1, 2),
                                     "groups": 4}),
    ((1, 3, 10, 12), (3, 1, 3, 3), {"padding": ((-1, 1), (0, -2)), "stride": 2, "groups": 3}),
    ((1, 2, 9, 9), (4, 1, 3, 3), {"padding": 1, "groups": 2}),  # channel multiplier 2: generic loops
])
def test_depthwise_kernels_interior_and_borders(x_shape, w_shape, kw):
    geom = _three_ops("depthwise", x_shape, w_shape, **kw)
    assert geom.feature_group_count == geom.in_channels and min(geom.out_spatial) >= 4


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    ((2, 37, 9, 10), (37, 1, 3, 3), {"padding": 1, "groups": 37}),  # two blocks of 16 + 5 channels
    ((1, 18, 12, 11), (18, 1, 3, 3), {"padding": ((2, 1), (1, 2)), "dilation": 2, "groups": 18}),
    ((2, 3, 11, 9), (3, 1, 5, 4), {"padding": ((2, 1), (0, 3)), "groups": 3}),  # tap by tap
])
def test_depthwise_streaming_paths_in_both_layouts(data_format, x_shape, w_shape, kw):
    """The unit-stride filter gradients that sum whole planes (channels-first: one dot product per
    tap over dy laid out in the padded rows) and the channels-last register blocks of 16 channels
    with their leftover channels, in float32 and float64, against the oracle."""
    rng = np.random.default_rng(7)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    for dtype in (np.float64, np.float32):
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        dy = rng.standard_normal(geom.y_shape())
        want = oracle.three_ops(x, w, dy, **kw)
        xa, wa, dya = (a.astype(dtype) for a in (x, w, dy))
        got = three_ops_in(data_format, xa, wa, dya, "depthwise", kw)
        for g, ref in zip(got, want):
            assert g.dtype == dtype
            scale = np.abs(ref).max()
            tol = 1e-12 if dtype == np.float64 else 2e-6
            assert np.abs(g - ref).max() <= tol * scale * math.sqrt(np.prod(w_shape[1:]) * geom.batch)


@pytest.mark.parametrize(("x_shape", "w_shape", "kw", "prefix"), [
    ((2, 3, 9, 8), (4, 3, 3, 3), {"padding": 1}, 1),
    ((1, 2, 6, 7, 5), (3, 2, 3, 2, 3), {"padding": ((1, 0), (2, 1), (1, 1)), "dilation": (2, 1, 1)}, None),
    ((2, 3, 40), (2, 3, 4), {"padding": ((3, 0),), "dilation": 2}, 1),
])
def test_split_engine_prefixes(x_shape, w_shape, kw, prefix):
    geom = _three_ops("split_kernel", x_shape, w_shape, **kw)
    chosen = {_choices(op, geom, "split_kernel")["prefix"] for op in ("forward", "input_grad")}
    assert chosen <= set(range(1, geom.rank + 1))
    if prefix is not None:
        assert chosen == {prefix}


def test_split_engine_filter_gradient_over_every_split():
    from convgrad.engines import split_kernel as split

    x_shape, w_shape, kw = (2, 3, 7, 6, 5), (2, 3, 3, 2, 3), {"padding": 1, "stride": (1, 1, 2)}
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    candidates = split._candidates(geom)
    assert candidates == [(0,), (1,), (0, 1)]  # stride 2 on the last axis keeps it on the x side
    assert _choices("filter_grad", geom, "split_kernel")["dy_side"] in candidates
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape())
    want = oracle.filter_grad(x, dy, w_shape, **kw)
    xl, dyl = (np.ascontiguousarray(x_to_last(a, "channels_first")) for a in (x, dy))
    for dy_side in candidates:
        assert_close(w_from_last(split._filter_grad(geom, dy_side, xl, dyl), "channels_first"), want)


def test_pointwise_conv_is_one_gemm_without_packing():
    x_shape, w_shape = (2, 6, 5, 4), (3, 6, 1, 1)
    geom = _three_ops("im2col", x_shape, w_shape)
    plan = convgrad.make_plan("forward", geom, F64, "im2col", 2**31)
    assert plan.choices == {"pointwise": True}
    assert plan.workspace_bytes < np.prod(x_shape) * 8 * 2


@pytest.mark.parametrize("rate", [1e3, 1e30])  # kernel transforms as padded FFTs / as DFT GEMMs
def test_fft_kernel_transforms_both_ways(monkeypatch, tmp_path, rate):
    from convgrad.engines import _spectra

    _calibrated(monkeypatch, tmp_path, "_spectra", DFT_GEMM_FLOPS_PER_S=rate)
    kw = {"padding": ((2, 1), (0, 3)), "stride": (2, 1), "dilation": (1, 2)}
    geom = convgrad.ConvGeometry.for_conv((2, 4, 11, 9), (6, 4, 3, 4), **kw)
    lengths = _choices("forward", geom, "fft")["lengths"]
    assert _spectra.use_dft_gemm(geom.kernel, lengths, 24) == (rate > 1e9)
    _three_ops("fft", (2, 4, 11, 9), (6, 4, 3, 4), **kw)
    _three_ops("fft", (1, 2, 13), (2, 2, 5), padding=((4, 0),), dilation=3)
    _three_ops("fft", (2, 3, 5, 4, 6), (2, 3, 2, 3, 2), padding=((1, 0), (2, 1), (0, 1)), groups=1)


def test_engines_keep_to_the_callers_thread_limits(monkeypatch):
    """threadpoolctl limits reach scipy.fft's workers and Numba's parallel loops, not only BLAS."""
    import numba
    import scipy.fft
    from threadpoolctl import threadpool_limits

    from convgrad.engines import _threads

    monkeypatch.setattr(_threads, "free_cores", lambda: 1 << 10)  # the limits alone, whatever the load
    seen = []
    real_rfftn = scipy.fft.rfftn

    def rfftn(*args, **kwargs):
        seen.append(("fft", kwargs.get("workers")))
        return real_rfftn(*args, **kwargs)

    monkeypatch.setattr(scipy.fft, "rfftn", rfftn)
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 4, 12, 12)), rng.standard_normal((4, 1, 3, 3))
    # An op large enough to share (smaller ones stay on the calling thread, _threads.SERIAL_FLOPS,
    # and leave Numba's count as it was): the limit must reach its parallel loops, whatever count
    # an earlier test left.
    xb, wb = rng.standard_normal((4, 64, 64, 64)), rng.standard_normal((64, 1, 3, 3))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    with threadpool_limits(limits=1):
        assert _threads.allowed() == 1
        convgrad.conv(x, rng.standard_normal((3, 4, 5, 5)), method="fft")
        got = convgrad.conv(x, w, groups=4, padding=1, method="depthwise")
        convgrad.conv(xb, wb, groups=64, padding=1, method="depthwise")
        seen.append(("numba", numba.get_num_threads()))
    assert seen and all(n == 1 for _, n in seen), seen
    assert_close(got, oracle.conv(x, w, groups=4, padding=1))
    # outside the limit the engines use the machine again
    convgrad.conv(xb, wb, groups=64, padding=1, method="depthwise")
    assert numba.get_num_threads() == min(_threads.allowed(), numba.config.NUMBA_NUM_THREADS)


def test_a_conv_asked_for_again_and_again_keeps_its_plan(monkeypatch):
    """A one-off conv is charged the compiled kernels' load time, and the plan made for it is kept
    however often it is asked for: no kernel loads behind the caller's back, no engine switch."""
    from convgrad import _plan
    from convgrad.engines import _kernels

    loads = []
    monkeypatch.setattr(_kernels, "compile_penalty", lambda dtype, *k: 10.0)
    monkeypatch.setattr(_kernels, "warm_up", lambda dtypes: loads.append(dtypes))
    planner = _plan.Planner()
    depthwise = convgrad.ConvGeometry.for_conv((3, 24, 20, 20), (24, 1, 3, 3), padding=1, groups=24)
    first = planner.plan("forward", depthwise, F32)
    assert first.chosen.engine != "depthwise"
    assert all(planner.plan("forward", depthwise, F32) is first for _ in range(5)) and loads == []
    # under 'eager' the kernels load before the first plan, which weighs them by running time alone
    assert _plan.Planner("eager").plan("forward", depthwise, F32).chosen.engine == "depthwise"
    assert loads == [("float32",)]


def test_a_conv_worth_a_loop_gets_the_compiled_engine_from_its_first_plan(monkeypatch):
    """Under 'lazy' a kernel's load (here 0.4 s, two kernels from Numba's disk cache) is charged
    spread over LOAD_SPREAD_CALLS calls: a depthwise layer of a network (8x128x56x56) is planned
    on the compiled kernel at once, where charging the whole load kept it on a NumPy engine for
    every call of the process; a small one-off conv stays on NumPy. explain shows the load whole."""
    from convgrad import _explain, _plan
    from convgrad.engines import _kernels

    monkeypatch.setattr(_kernels, "compile_penalty", lambda dtype, *k: 0.4)
    planner = _plan.Planner()
    layer = convgrad.ConvGeometry.for_conv((8, 128, 56, 56), (128, 1, 3, 3), padding=1, groups=128)
    small = convgrad.ConvGeometry.for_conv((1, 8, 12, 12), (8, 1, 3, 3), padding=1, groups=8)
    assert planner.plan("forward", layer, F32).chosen.engine == "depthwise"
    assert planner.plan("forward", small, F32).chosen.engine != "depthwise"
    whole = planner.plan("forward", layer, F32).estimated_seconds
    monkeypatch.setattr(_plan, "LOAD_SPREAD_CALLS", 1)  # the load charged whole: another engine
    assert _plan.Planner().plan("forward", layer, F32).chosen.engine != "depthwise"
    monkeypatch.setattr(_plan, "LOAD_SPREAD_CALLS", 100)
    monkeypatch.setattr(_plan, "_DEFAULT", planner)
    depthwise = _explain.costs(layer, "channels_first", F32)["ops"]["forward"]["engines"]["depthwise"]
    assert depthwise["load_seconds"] == pytest.approx(0.4) and whole < 0.4


def test_a_plan_the_load_swayed_switches_once_its_calls_have_paid_for_the_load(monkeypatch):
    """A plan whose engine the load charges chose (depthwise's kernels charged 10 s of compiling:
    another engine) is planned again as if the kernels were loaded once its calls have lost, by the
    estimates, as much as the load costs; a process that never called warm_up kept the first
    choice for good. A plan no load swayed never switches."""
    from convgrad import _plan
    from convgrad.engines import Prepared, _kernels

    monkeypatch.setattr(_kernels, "compile_penalty", lambda dtype, *k: 10.0)
    planner = _plan.Planner()
    layer = convgrad.ConvGeometry.for_conv((8, 128, 56, 56), (128, 1, 3, 3), padding=1, groups=128)
    first = planner.plan("forward", layer, F32)
    loaded = _plan._Loaded().plan("forward", layer, F32)
    assert loaded.chosen.engine == "depthwise" != first.chosen.engine and loaded.switch is None
    calls, then_plan = first.switch
    assert then_plan.chosen.engine == "depthwise" and f"depthwise from call {calls} on" in first.reason
    now = {c.engine: c.seconds for c in first.candidates if isinstance(c, Prepared)}
    then = {c.engine: c.seconds for c in loaded.candidates if isinstance(c, Prepared)}
    a = first.chosen.engine
    loss = then[a] - then["depthwise"]  # per call, every kernel loaded
    load = (now["depthwise"] - then["depthwise"] - (now[a] - then[a])) * _plan.LOAD_SPREAD_CALLS
    assert loss > 0 and load >= 10.0  # depthwise's kernels charged whole
    assert calls == max(1, math.ceil(load / loss))  # the calls whose loss reaches the load
    for _ in range(calls - 1):  # until then the first plan is kept
        assert planner.plan("forward", layer, F32) is first
    switched = planner.plan("forward", layer, F32)
    assert switched is then_plan and switched.chosen.engine == "depthwise" and switched.switch is None
    assert planner.plan("forward", layer, F32) is switched
    # warmed (nothing charged): no switch
    monkeypatch.setattr(_kernels, "compile_penalty", lambda dtype, *k: 0.0)
    assert _plan.Planner().plan("forward", layer, F32).switch is None


@pytest.mark.parametrize(("x_shape", "w_shape", "kw", "tiles"), [
    # 1-D, 21 channels (a partial block of 16), the last tile overlapping the one before
    ((2, 5, 23), (21, 5, 4), {"padding": ((3, 1),), "dilation": 2}, True),
    ((2, 3, 6, 19), (17, 3, 3, 2), {"padding": ((1, 2), (0, 1)), "stride": (2, 1)}, True),
    ((1, 2, 12, 13), (3, 2, 3, 3), {"padding": ((-1, 2), (1, -1))}, True),  # negative pads crop
    ((1, 4, 5, 4, 12), (16, 4, 2, 3, 3), {"padding": 1, "dilation": (1, 2, 1)}, True),  # 3-D
    ((2, 3, 5, 6), (5, 3, 3, 3), {"padding": 1}, False),  # rows narrower than a tile
    ((2, 11, 6, 10), (17, 11, 3, 3), {"padding": 1}, True),  # a tile of 8 input channels and 3 more
    # 3 taps along rows of 13 (stride 1 there): x shared by the taps; 20 = 16 + 4 channels
    ((2, 5, 7, 13), (20, 5, 3, 3), {"padding": 1, "stride": (2, 1)}, True),
])
def test_tiled_three_ops(x_shape, w_shape, kw, tiles):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assert (geom.out_spatial[-1] >= 8) == tiles
    assert_close(convgrad.conv(x, w, method="tiled", **kw), oracle.conv(x, w, **kw))
    dy = rng.standard_normal(geom.y_shape())
    assert_close(convgrad.conv_filter_grad(x, dy, w_shape, method="tiled", **kw),
                 oracle.filter_grad(x, dy, w_shape, **kw))
    want_dx = oracle.input_grad(dy, w, x_shape, **kw)
    if all(s == 1 for s in geom.stride):
        assert (x_shape[-1] >= 8) == tiles
    # strided: one sub-pixel phase at a time, written in place into dx
    assert_close(convgrad.conv_input_grad(dy, w, x_shape, method="tiled", **kw), want_dx)


# The forward blocks the cost model picks, (float32, float64) by output channels, per vector width.
# With AVX-512 (64 bytes) the tiles compute whole blocks: 16 and 32 channels take the block that
# fits them, float64 the 8 x 16 tiles (wider ones would not fit the registers). With AVX2 (32)
# every block runs as the same passes of 6 outputs x 2 vectors, skipping the passes past the last
# channel: the block that fits the channels (float64: 16, or 64 past it, whose passes of 6 x 8
# sums fit the 16 registers).
_PICKS = {64: {16: (16, 16), 32: (32, 16), 120: (64, 16), 64: (64, 16)},
          32: {16: (16, 16), 32: (32, 64), 120: (64, 64), 64: (64, 64)}}


@pytest.mark.parametrize(("out_channels", "filter_block"), [(16, 16), (32, 16), (120, 64), (64, 64)])
def test_tiled_float32_all_tiles_match_float64_within_rounding(monkeypatch, out_channels, filter_block):
    from convgrad._plan import default_planner
    from convgrad.engines import tiled
    from convgrad.engines._kernels._simd import VECTOR_BYTES

    monkeypatch.setattr(tiled, "THIN", False)  # the tiles of input channels (the thin kernel: its own file)
    default_planner().clear()

    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 16, 5, 20)), rng.standard_normal((out_channels, 16, 3, 3))
    geom = convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding=1)
    single, double = _PICKS[VECTOR_BYTES][out_channels]
    assert _choices("forward", geom, "tiled", F32)["block"] == single
    assert _choices("forward", geom, "tiled")["block"] == double
    for kw in ({"padding": 1}, {"padding": ((0, 2), (2, 1)), "stride": (1, 3), "dilation": (2, 1)}):
        want = oracle.conv(x, w, **kw)
        got = convgrad.conv(x.astype(np.float32), w.astype(np.float32), method="tiled", **kw)
        assert got.dtype == np.float32
        # 144 products of O(1) terms per output: float32 rounding stays below 1e-5 of the scale.
        assert_close(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    dy = rng.standard_normal(geom.y_shape())
    got = convgrad.conv_input_grad(dy.astype(np.float32), w.astype(np.float32), x.shape, padding=1,
                                   method="tiled")
    want = oracle.input_grad(dy, w, x.shape, padding=1)
    assert_close(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    # the filter gradient: 16 input channels in one tile of 16 (or 4 of 4), none left over
    assert _choices("filter_grad", geom, "tiled", F32)["block"] == filter_block
    got = convgrad.conv_filter_grad(x.astype(np.float32), dy.astype(np.float32), w.shape, padding=1,
                                    method="tiled")
    want = oracle.filter_grad(x, dy, w.shape, padding=1)
    assert_close(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(("x_shape", "w_shape", "kw", "op", "block"), [
    ((2, 8, 4, 5), (64, 8, 3, 3), {"padding": 1}, "forward", 64),  # rows of 5: every tile spans rows
    ((2, 5, 7, 9), (70, 5, 3, 2), {"padding": ((1, 0), (2, 1)), "stride": (2, 1), "dilation": (1, 2)},
     "forward", 64),  # a partial block of 6 channels; a 4 x 10 plane, its last tile overlapping
    ((1, 8, 3, 4, 5), (64, 8, 3, 3, 3), {"padding": 1}, "forward", 64),  # 3-D: 3 planes of 4 x 5
    ((2, 8, 2, 2), (64, 8, 3, 3), {"padding": 1}, "forward", 64),  # a plane of 4 outputs: one at a time
    ((1, 64, 9, 11), (8, 64, 4, 3), {"padding": 1, "stride": 2}, "input_grad", 64),  # phases of dx
    ((1, 64, 5, 7), (8, 64, 3, 3), {"padding": 1}, "input_grad", 64),
    # tiles of 8 outputs (AVX2: 6): 16 and 32 channels
    ((2, 8, 5, 7), (16, 8, 3, 2), {"padding": 1, "dilation": (1, 2)}, "forward", 16),
    ((1, 6, 3, 5, 6), (30, 6, 2, 3, 2), {"padding": 1, "stride": (1, 1, 2)}, "forward", 32),  # 3-D
    ((2, 8, 2, 2), (16, 8, 3, 3), {"padding": (1, 2), "dilation": (1, 2)}, "forward", 16),  # 4 outputs
    ((1, 32, 9, 11), (8, 32, 4, 4), {"padding": 1, "stride": 2}, "input_grad", 32),  # phases of dx
])
@pytest.mark.parametrize("filter_major", [False, True])
def test_tiled_tiles_run_across_rows(monkeypatch, x_shape, w_shape, kw, op, block, filter_major):
    """The tiles of 6 x 64 and 8 x 16 or 32 take consecutive outputs of a plane in row order,
    wherever its rows end: against the oracle in float64, with the filter walked row by row and
    block by block."""
    from convgrad import _plan
    from convgrad.engines import tiled

    monkeypatch.setattr(tiled, "FILTER_MAJOR_BYTES", 0 if filter_major else 1 << 40)
    # The block forced: the cost model's pick depends on the vector width (with AVX2, 16 channels
    # take the 8 x 32 tiles, which skip the pass past the last channel), and each tile is to run
    # on every machine. A planner of its own, so that no plan of the forced block outlives the test.
    monkeypatch.setattr(tiled, "_block", lambda geom, op, dtype: block)
    monkeypatch.setattr(_plan, "_DEFAULT", _plan.Planner())
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assert _choices(op, geom, "tiled", F32) == {"block": block, "spreads": True}
    dy = rng.standard_normal(geom.y_shape())
    if op == "forward":
        want = oracle.conv(x, w, **kw)
        got = convgrad.conv(x.astype(np.float32), w.astype(np.float32), method="tiled", **kw)
    else:
        want = oracle.input_grad(dy, w, x_shape, **kw)
        got = convgrad.conv_input_grad(dy.astype(np.float32), w.astype(np.float32), x_shape, method="tiled",
                                       **kw)
    assert_close(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_tiled_filter_grad_pads_three_channels_to_a_tile_of_four(monkeypatch):
    from convgrad._plan import default_planner
    from convgrad.engines import tiled

    monkeypatch.setattr(tiled, "RUNS", False)  # the tiles of input channels, not the runs kernel
    monkeypatch.setattr(tiled, "THIN", False)  # nor the thin one
    default_planner().clear()  # plans made with the runs kernel
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 3, 15, 14)), rng.standard_normal((64, 3, 5, 5))
    kw = {"padding": 2, "stride": 2}
    geom = convgrad.ConvGeometry.for_conv(x.shape, w.shape, **kw)
    choices = _choices("filter_grad", geom, "tiled", F32)
    assert choices["block"] == 64 and choices["channels"] == 4
    dy = rng.standard_normal(geom.y_shape())
    got = convgrad.conv_filter_grad(x.astype(np.float32), dy.astype(np.float32), w.shape,
                                    method="tiled", **kw)
    want = oracle.filter_grad(x, dy, w.shape, **kw)
    assert got.shape == w.shape
    assert_close(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    ((2, 3, 32, 32), (4, 3, 31, 31), {"padding": 15}),  # "same": 48-point transforms, not 64
    ((2, 2, 40), (3, 2, 9), {"padding": ((20, 3),), "stride": 2, "dilation": 3}),
    ((1, 2, 30, 9), (2, 2, 11, 3), {"padding": ((12, 6), (-2, 5)), "dilation": (2, 1)}),
])
def test_fft_transforms_leave_the_padding_out(x_shape, w_shape, kw):
    import scipy.fft

    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assert all(_choices(op, geom, "fft")["block"] is None for op in ("forward", "input_grad", "filter_grad"))
    padded = [n + lo + hi for n, (lo, hi) in zip(geom.in_spatial, geom.tight_padding)]
    lengths = _choices("forward", geom, "fft")["lengths"]
    assert lengths[0] < scipy.fft.next_fast_len(padded[0], real=True)
    assert all(n <= scipy.fft.next_fast_len(p, real=True) for n, p in zip(lengths, padded))
    _three_ops("fft", x_shape, w_shape, **kw)


@pytest.mark.parametrize("which", ["numpy", "tiled"])  # pad_or_crop, and the tiled engine's Numba pass
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_pad_or_crop_matches_numpy_pad_and_slicing(which, data):
    from convgrad._layout import pad_or_crop
    from convgrad.engines import tiled

    rank = data.draw(st.integers(1, 3))
    spatial = data.draw(st.lists(st.integers(0, 5), min_size=rank, max_size=rank))
    pair = st.tuples(st.integers(-3, 3), st.integers(-3, 3))
    pads = data.draw(st.lists(pair, min_size=rank, max_size=rank))
    assume(all(n + lo + hi >= 0 for n, (lo, hi) in zip(spatial, pads)))
    c = data.draw(st.integers(1, 3))
    extra = data.draw(st.integers(0, 2))
    a = np.arange(2 * math.prod(spatial) * c, dtype=np.float64).reshape(2, *spatial, c) + 1
    # Reference: pad the positive parts with np.pad, then slice off the negative parts.
    want = np.pad(a, [(0, 0), *((max(lo, 0), max(hi, 0)) for lo, hi in pads), (0, extra)])
    want = want[(slice(None), *(slice(-min(lo, 0), want.shape[i + 1] + min(hi, 0))
                                for i, (lo, hi) in enumerate(pads)), slice(None))]
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    a = a.astype(dtype)
    with mock.patch.object(tiled, "PARALLEL_PAD_BYTES", 0):  # the Numba pass even for tiny arrays
        if which == "numpy":
            got = pad_or_crop(a, tuple(pads), channels=c + extra)
        else:  # the Numba pass, into scratch memory
            got = tiled._padded(a, tuple(pads), c + extra, "test.pad")
    assert got.flags.c_contiguous and got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(a, np.arange(a.size, dtype=dtype).reshape(a.shape) + 1)


# The last column: the block the cost model picks with 32-byte vectors (AVX2), where it differs
# from the dot-product tiles that AVX-512 picks for each. With AVX2 the tiles of 16 and more
# channels skip the passes past the last channel: 2 or 6 channels cost one pass of 16 at nearly twice the dot
# tiles' rate, fewer tiles and no input channels padded to 16.
@pytest.mark.parametrize(("op", "x_shape", "w_shape", "kw", "avx2"), [
    ("forward", (2, 64, 9, 14), (6, 64, 4, 4), {"padding": ((1, 2), (2, 1))}, 16),  # 2 groups of 3
    # 20 input channels padded to 32, stride and dilation
    ("forward", (2, 20, 7, 13), (2, 20, 3, 3), {"padding": 1, "stride": (1, 2), "dilation": (2, 1)}, 16),
    ("forward", (1, 16, 5, 4), (2, 16, 3, 3), {"padding": 1}, 16),  # rows narrower than a tile
    ("forward", (1, 33, 4, 5, 9), (1, 33, 2, 3, 3), {"padding": (0, 1, 2), "dilation": (1, 1, 2)}, 3),  # 3-D
    # the phases of a 3-channel stem's input gradient: dx sums over dy's 64 channels
    ("input_grad", (2, 3, 9, 14), (64, 3, 4, 4), {"padding": ((3, 0), (2, 3))}, 3),
    ("input_grad", (2, 3, 11, 6), (48, 3, 3, 3), {"padding": 1, "dilation": 2}, 3),
])
def test_tiled_dot_product_tiles_for_few_output_channels(monkeypatch, op, x_shape, w_shape, kw, avx2):
    from convgrad import _plan
    from convgrad.engines import tiled
    from convgrad.engines._kernels._simd import VECTOR_BYTES

    rng = np.random.default_rng(8)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assert _choices(op, geom, "tiled", F32)["block"] == (avx2 if VECTOR_BYTES == 32 else tiled.DOT)
    # The dot-product tiles on every machine: forced, in a planner of the test's own.
    monkeypatch.setattr(tiled, "_block", lambda geom, op, dtype: tiled.DOT)
    monkeypatch.setattr(_plan, "_DEFAULT", _plan.Planner())
    assert _choices(op, geom, "tiled", F32)["block"] == tiled.DOT
    if op == "forward":
        want = oracle.conv(x, w, **kw)
        got = convgrad.conv(x.astype(np.float32), w.astype(np.float32), method="tiled", **kw)
    else:
        dy = rng.standard_normal(geom.y_shape())
        want = oracle.input_grad(dy, w, x_shape, **kw)
        got = convgrad.conv_input_grad(dy.astype(np.float32), w.astype(np.float32), x_shape, method="tiled",
                                       **kw)
    assert got.dtype == np.float32
    assert_close(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@given(n=st.integers(1, 9), f=st.integers(1, 40), groups=st.integers(1, 3), cg=st.integers(1, 5),
       og=st.sampled_from([1, 3, 16, 19, 35]), dtype=st.sampled_from([np.float32, np.float64]),
       planes_in=st.booleans(), planes_out=st.booleans(), seed=st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_spectral_mix_tiles_and_leftovers(n, f, groups, cg, og, dtype, planes_in, planes_out, seed):
    """The FFT engine's mixing kernel (4 x 16 register tiles, overlapping last rows, leftover
    channels one at a time) against a complex einsum, groups included, reading and writing
    spectra as interleaved complex numbers or as real and imaginary planes."""
    from convgrad.engines import _kernels
    from convgrad.engines._kernels.spectral import steps

    rng = np.random.default_rng(seed)
    ctype = np.result_type(dtype, np.complex64)
    a = (rng.standard_normal((n, f, groups, cg)) + 1j * rng.standard_normal((n, f, groups, cg))).astype(ctype)
    wr, wi = (rng.standard_normal((f, cg, groups * og)).astype(dtype) for _ in range(2))
    a_flat = np.stack((a.real, a.imag), axis=1) if planes_in else a.view(dtype)
    out = np.full((n, 2, f, groups * og) if planes_out else (n, f, 2 * groups * og), np.nan, dtype=dtype)
    _kernels.spectral_mix(a_flat.ravel(), steps(n, f, groups * cg, planes_in), wr, wi, groups, out.ravel(),
                          steps(n, f, groups * og, planes_out), n)
    got = out[:, 0] + 1j * out[:, 1] if planes_out else out.view(ctype)
    w = (wr + 1j * wi).reshape(f, cg, groups, og)
    expected = np.einsum("nfgc,fcgo->nfgo", a.astype(np.complex128), w.astype(np.complex128))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got.reshape(n, f, groups, og), expected, rtol=tol, atol=tol * max(1, cg))


@pytest.mark.parametrize("rate", [1e3, 1e30])  # spectra from pocketfft (complex) / DFT GEMMs (planes)
@pytest.mark.parametrize("numba_mix", [True, False])
def test_fft_mix_with_and_without_numba(monkeypatch, tmp_path, numba_mix, rate):
    """The Numba mixing kernel and the NumPy batched matmul that stands in without Numba, on both
    forms of the spectra; groups included (the filter gradient correlates group by group)."""
    from convgrad.engines import _kernels

    monkeypatch.setattr(_kernels, "NUMBA", numba_mix)
    _calibrated(monkeypatch, tmp_path, "_spectra", DFT_GEMM_FLOPS_PER_S=rate)
    _three_ops("fft", (3, 4, 9, 7), (6, 2, 4, 3), padding=((2, 1), (0, 3)), groups=2, stride=(2, 1))
    _three_ops("fft", (5, 18, 11), (20, 18, 6), padding=2, dilation=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_filter_major_walk(monkeypatch, dtype):
    """Filters above FILTER_MAJOR_BYTES are walked block by block (each work item one block of one
    output row): forced here on small filters with several blocks, a partial last block, the
    dot-product tiles and the strided input gradient's phases, against the oracle."""
    from convgrad.engines import tiled

    monkeypatch.setattr(tiled, "FILTER_MAJOR_BYTES", 0)
    rng = np.random.default_rng(3)
    for x_shape, w_shape, kw in [((2, 5, 6, 9), (40, 5, 3, 3), {"padding": 1}),
                                 ((1, 7, 5, 4, 6), (70, 7, 2, 3, 2), {"padding": 1, "stride": (1, 2, 1)}),
                                 ((2, 16, 9, 20), (3, 16, 3, 2), {"stride": 2, "padding": (1, 0)})]:
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
        dy = rng.standard_normal(geom.y_shape()).astype(dtype)
        if w_shape[0] == 3 and dtype == np.float32:
            assert _choices("forward", geom, "tiled", F32)["block"] == tiled.DOT
        tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {}
        assert_close(convgrad.conv(x, w, method="tiled", **kw), oracle.conv(x, w, **kw), **tol)
        assert_close(convgrad.conv_input_grad(dy, w, x_shape, method="tiled", **kw),
                     oracle.input_grad(dy, w, x_shape, **kw), **tol)


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((2, 5, 12, 10), (6, 5, 4, 4), {"stride": 2, "padding": 1}),  # every phase has taps
    ((1, 3, 11, 9), (4, 3, 3, 2), {"stride": (3, 2), "padding": (1, 0)}),
    ((1, 4, 9, 8), (3, 4, 1, 1), {"stride": 2}),  # stride > kernel: phases without taps
    ((1, 2, 7, 6, 5), (3, 2, 2, 3, 2), {"stride": (2, 1, 2), "padding": 1, "dilation": (1, 2, 1)}),
])
def test_tiled_strided_input_grad_writes_every_sample(monkeypatch, x_shape, w_shape, kw):
    """dx is left uninitialised when the sub-pixel phases cover it: filled with NaN here instead,
    every sample must still be written (or zeroed first, where some phase has no taps)."""
    from convgrad.engines import tiled

    def poisoned(shape, dtype, zeroed):
        return np.zeros(shape, dtype) if zeroed else np.full(shape, np.nan, dtype)

    monkeypatch.setattr(tiled, "_new_output", poisoned)
    rng = np.random.default_rng(5)
    w = rng.standard_normal(w_shape)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    dy = rng.standard_normal(geom.y_shape())
    assert_close(convgrad.conv_input_grad(dy, w, x_shape, method="tiled", **kw),
                 oracle.input_grad(dy, w, x_shape, **kw))


@pytest.mark.parametrize("x_shape, w_shape, kw", [
    ((2, 4, 9, 8), (6, 4, 3, 2), {"padding": 1, "stride": (2, 1)}),  # one group, contiguous taps
    ((1, 6, 9, 10), (4, 3, 2, 3), {"groups": 2, "dilation": (1, 2), "padding": (0, 2)}),
    ((2, 3, 5, 6, 7), (4, 3, 2, 3, 2), {"padding": 1, "stride": (1, 2, 1)}),  # 3-D, contiguous taps
    ((1, 4, 5, 4, 6), (2, 2, 2, 1, 3), {"groups": 2, "dilation": (2, 1, 2)}),
])
def test_im2col_compiled_packing(x_shape, w_shape, kw):
    """The compiled im2col / col2im (3-D; 2-D with a unit leading axis), which small problems get
    once the kernels are loaded (jit='eager') instead of NumPy slicing, against the oracle."""
    from convgrad._plan import Planner

    planner = Planner("eager")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    dy = rng.standard_normal(geom.y_shape())
    plans = {op: planner.plan(op, geom, F64, "im2col") for op in ("forward", "input_grad", "filter_grad")}
    assert all(p.choices["fused"] for p in plans.values())
    assert_close(_run_plan(plans["forward"], x, w), oracle.conv(x, w, **kw))
    assert_close(_run_plan(plans["input_grad"], dy, w), oracle.input_grad(dy, w, x_shape, **kw))
    assert_close(_run_plan(plans["filter_grad"], x, dy), oracle.filter_grad(x, dy, w_shape, **kw))


@given(data=st.data())
@settings(max_examples=40, deadline=None)
def test_fft_inverse_keeps_only_the_samples_asked_for(data):
    """The FFT engine's inverse transform, cut axis by axis to the samples kept, against SciPy's
    irfftn of the whole transform, cropped."""
    import scipy.fft

    from convgrad.engines import _spectra

    rank = data.draw(st.integers(1, 3))
    lengths = tuple(data.draw(st.lists(st.integers(1, 12), min_size=rank, max_size=rank)))
    keep = tuple(data.draw(st.integers(1, n)) for n in lengths)
    shape = (2, *lengths[:-1], lengths[-1] // 2 + 1, 3)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    a = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    axes = tuple(range(1, rank + 1))
    want = scipy.fft.irfftn(a, s=lengths, axes=axes)[(slice(None), *(slice(0, k) for k in keep))]
    got = _spectra.irfft(a.copy(), lengths, axes, keep)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@given(data=st.data())
@settings(max_examples=40, deadline=None)
def test_fft_dft_gemms_match_scipy(data):
    """The FFT engine's DFT GEMMs, on samples placed anywhere in the signal (taps, spread dy) with
    leading batch axes, against SciPy's rfftn of the zero-filled signal; and back, at any
    positions, against SciPy's irfftn there."""
    import scipy.fft

    from convgrad.engines import _spectra

    rank, lead = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 2))
    lengths = tuple(data.draw(st.lists(st.integers(1, 10), min_size=rank, max_size=rank)))
    picks = [sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=0, max_size=n))) for n in lengths]
    head = tuple(data.draw(st.lists(st.integers(1, 3), min_size=lead, max_size=lead)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    samples = rng.standard_normal((*head, *(len(p) for p in picks), 2))
    full = np.zeros((*head, *lengths, 2))
    full[np.ix_(*(range(h) for h in head), *picks)] = samples
    axes = tuple(range(lead, lead + rank))
    spectrum = scipy.fft.rfftn(full, axes=axes)
    planes = _spectra.dft(samples, lengths, picks, lead)
    np.testing.assert_allclose(np.take(planes, 0, lead) + 1j * np.take(planes, 1, lead), spectrum,
                               rtol=1e-12, atol=1e-12)
    signal = rng.standard_normal((*head, *lengths, 2))
    spectrum = scipy.fft.rfftn(signal, axes=axes)
    got = _spectra.idft(np.stack((spectrum.real, spectrum.imag), axis=lead), lengths, picks, lead)
    want = signal[np.ix_(*(range(h) for h in head), *picks)]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# --- channels-first without transposition: engines that run the caller's NCHW arrays ---
def _no_transposition(*args, **kwargs):
    raise AssertionError("the caller's channels-first array was transposed to channels-last")


def _first_case_ops(method, case, dtype=F64):
    """All three ops of ``case`` (channels-first) by ``method``, against the oracle, with the
    transpositions of _ops forbidden; then the adjoint identity on the same path."""
    import convgrad.testing as cgt

    kw = {k: v for k, v in case.kwargs.items() if k != "data_format"}
    geom = convgrad.ConvGeometry.for_conv(case.x_shape, case.w_shape, **kw)
    for op in ("forward", "input_grad", "filter_grad"):
        assert convgrad.make_plan(op, geom, dtype, method, 2**31, "channels_first").takes == "channels_first"
    with mock.patch.object(convgrad._ops, "x_to_last", _no_transposition), \
            mock.patch.object(convgrad._ops, "w_to_last", _no_transposition):
        _three_ops(method, case.x_shape, case.w_shape, **kw)
        cgt.dot_test(case.x_shape, case.w_shape, dtype=dtype, method=method, **kw)


@given(case=strategies.conv_cases(ranks=(2,), data_formats=("channels_first",), min_batch=1))
@strategies.budget(30)
def test_depthwise_runs_channels_first_planes(case):
    """Any stride, dilation, multiplier and pad (negative: cropped) of a 2-D depthwise conv runs
    on the NCHW planes as they are: no transposition, no padded copy."""
    c = case.x_shape[1]
    assume(case.kwargs["groups"] == c and case.w_shape[1] == 1)
    _first_case_ops("depthwise", case)


@given(n=st.integers(0, 3), c=st.integers(1, 9), o=st.integers(1, 9),
       spatial=st.lists(st.integers(1, 6), min_size=1, max_size=3))
@strategies.budget(20)
def test_pointwise_im2col_runs_channels_first_as_one_gemm(n, c, o, spatial):
    """A 1x1 stride-1 unpadded conv in NCHW, the images side by side (C, N * S): Y = W @ X,
    dX = W.T @ dY, dW = dY @ X.T, one GEMM each."""
    case = strategies.Case("pointwise", (n, c, *spatial), (o, c, *(1,) * len(spatial)), {})
    _first_case_ops("im2col", case)


def test_a_padded_pointwise_conv_takes_channels_last():
    geom = convgrad.ConvGeometry.for_conv((1, 2, 4, 4), (3, 2, 1, 1), padding=1)
    plan = convgrad.make_plan("forward", geom, F64, "im2col", 2**31, "channels_first")
    assert plan.takes == "channels_last"
    _three_ops("im2col", (1, 2, 4, 4), (3, 2, 1, 1), padding=1)


@pytest.mark.parametrize(("op", "x_shape", "w_shape", "kw"), [
    ("forward", (2, 16, 20, 20), (16, 1, 3, 3), {"padding": 1, "groups": 16}),
    ("filter_grad", (2, 32, 12, 12), (8, 32, 1, 1), {}),
    ("input_grad", (2, 16, 20, 20), (16, 16, 3, 3), {"padding": 1}),
])
def test_the_plan_charges_channels_first_transpositions_to_channels_last_engines(op, x_shape, w_shape, kw):
    """For a channels-first caller every engine's estimate is its own where it runs that layout
    natively, else its channels-last estimate plus the transpositions of both operands and the
    result (_plan.transpose_seconds)."""
    from convgrad._plan import transpose_seconds
    from convgrad.engines import Prepared, _machine
    from convgrad.engines._kernels import layout

    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    last = convgrad.make_plan(op, geom, F32, "auto", 2**31)
    first = convgrad.make_plan(op, geom, F32, "auto", 2**31, "channels_first")
    by_name = {c.engine: c for c in last.candidates if isinstance(c, Prepared)}
    extra = transpose_seconds(op, geom, F32)
    elements = sum(math.prod(s) for s in (geom.x_shape(), geom.w_shape(), geom.y_shape()))
    fig = _machine.figures("_layout")
    rate = fig.COMPILED_TRANSPOSE_BYTES_PER_S if layout.loaded(F32) else fig.TRANSPOSE_BYTES_PER_S
    assert extra == pytest.approx(2 * elements * 4 / rate)
    ready = [c for c in first.candidates if isinstance(c, Prepared)]
    assert {c.engine for c in ready} == set(by_name)
    for c in ready:
        base = by_name[c.engine]
        if base.run_first is None:
            want = base.seconds + extra
        else:
            want = base.seconds if base.first_seconds is None else base.first_seconds
        assert c.seconds == pytest.approx(want), c.engine
    assert first.chosen.seconds == min(c.seconds for c in ready)


def test_prepared_conv_runs_a_native_engine_without_transposing():
    """PreparedConv on channels-first arrays with a depthwise plan: the NCHW arrays go to the
    engine as they are, and the three results match the oracle."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 6, 9, 7)), rng.standard_normal((6, 1, 3, 3))
    kw = {"padding": 1, "groups": 6, "stride": (2, 1)}
    p = convgrad.prepare(x.shape, w.shape, method="depthwise", **kw)
    dy = rng.standard_normal(p.geometry.y_shape())
    assert all(p.plan(op).takes == "channels_first" for op in ("forward", "input_grad", "filter_grad"))
    last, axes = p._last, []
    p._last = lambda name, a, ax: axes.append(ax) or last(name, a, ax)  # records each transposition
    assert_close(p(x, w), oracle.conv(x, w, **kw))
    assert_close(p.input_grad(dy, w), oracle.input_grad(dy, w, x.shape, **kw))
    assert_close(p.filter_grad(x, dy), oracle.filter_grad(x, dy, w.shape, **kw))
    assert len(axes) == 6 and all(ax is None for ax in axes)


@given(case=strategies.conv_cases(data_formats=("channels_first",), min_batch=1))
@strategies.budget(25)
def test_tiled_transposes_channels_first_operands_in_its_padding_pass(case):
    """The tiled engine's channels-first run pads channels-last views of the NCHW operands with
    pad_copy_first (the transposition fused into the copy it makes anyway, forced even for tiny
    arrays): all three ops match the oracle, bitwise equal to the channels-last run."""
    from convgrad.engines import _kernels, tiled

    assume(case.kwargs["groups"] == 1)
    kw = {k: v for k, v in case.kwargs.items() if k != "data_format"}
    geom = convgrad.ConvGeometry.for_conv(case.x_shape, case.w_shape, **kw)
    for op in ("forward", "input_grad", "filter_grad"):  # planned (and kept) before the kernel is wrapped
        convgrad.make_plan(op, geom, F64, "tiled", 2**31, "channels_first")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    want = x_from_last(convgrad.conv(np.ascontiguousarray(x_to_last(x, "channels_first")),
                                     np.ascontiguousarray(w_to_last(w, "channels_first")),
                                     method="tiled", data_format="channels_last", **kw), "channels_first")
    calls, fused = [], _kernels.pad_copy_first

    def counted(*args):
        calls.append(args[0].shape)
        return fused(*args)

    with mock.patch.object(tiled, "PARALLEL_PAD_BYTES", 0), \
            mock.patch.object(tiled._kernels, "pad_copy_first", counted):
        _first_case_ops("tiled", case)
        np.testing.assert_array_equal(convgrad.conv(x, w, method="tiled", **kw), want)
    # The fused pass ran, unless x's channels-last view is contiguous already (one channel or one sample).
    assert calls or x_to_last(x, "channels_first").flags.c_contiguous


@pytest.mark.parametrize(("shape", "pads", "channels"), [
    ((2, 19, 5, 7), ((1, 2), (-1, 3)), 19),  # two blocks of 8 channels and a tail of 3
    ((1, 8, 4), ((2, -1),), 12),  # one block, zero channels after it
    ((2, 9, 2, 3, 4), ((0, 1), (1, 0), (-2, 2)), 9),
])
def test_channels_first_padding_and_transposition_kernels_match_numpy(shape, pads, channels):
    """pad_copy_first (NCHW in, padded NHWC out) and last_to_first (NHWC -> NCHW) against NumPy,
    with channel counts that take their 8-channel blocks and tails."""
    from convgrad._layout import pad_or_crop
    from convgrad.engines import _kernels

    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    want = pad_or_crop(x_to_last(x, "channels_first"), pads, channels)
    got = np.full(want.shape, np.nan, dtype=np.float32)
    unit = (1,) * (5 - x.ndim)
    lows = (0,) * len(unit) + tuple(lo for lo, _ in pads)
    _kernels.pad_copy_first(x.reshape(*shape[:2], *unit, *shape[2:]), lows, got.reshape(got.shape[0], *unit,
                                                                                          *got.shape[1:]))
    np.testing.assert_array_equal(got, want)
    back = np.full((want.shape[0], want.shape[-1], *want.shape[1:-1]), np.nan, dtype=np.float32)
    _kernels.last_to_first(want.reshape(want.shape[0], -1, want.shape[-1]), back.reshape(*back.shape[:2], -1))
    np.testing.assert_array_equal(back, x_from_last(want, "channels_first"))


@given(case=strategies.conv_cases(data_formats=("channels_first",), min_batch=1))
@strategies.budget(15)
def test_tiled_writes_channels_first_results_in_place(case):
    """Channels-first, the tiled kernels store y and dx in that layout themselves (float32: every
    tile kind the cost model picks): the array the kernel wrote is the result, no transposing
    pass after it, and it matches the oracle within float32 rounding."""
    from convgrad.engines import _kernels, tiled

    assume(case.kwargs["groups"] == 1)
    kw = {k: v for k, v in case.kwargs.items() if k != "data_format"}
    geom = convgrad.ConvGeometry.for_conv(case.x_shape, case.w_shape, **kw)
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    dy = rng.standard_normal(geom.y_shape())
    written, kernel, regions = [], _kernels.tiled_forward, _kernels.regions_forward

    def recorded(*args):
        written.append((args[9], args[-1]))  # y and the channels-first flag
        return kernel(*args)

    def recorded_regions(*args):  # a strided conv's regions (an input gradient's phases) in one launch
        written.append((args[7], args[-1]))
        return regions(*args)

    f32 = [a.astype(np.float32) for a in (x, w, dy)]
    for op in ("forward", "input_grad"):  # planned (and kept) before the kernel is wrapped
        assert convgrad.make_plan(op, geom, F32, "tiled", 2**31, "channels_first").takes == "channels_first"
    with mock.patch.object(tiled._kernels, "tiled_forward", recorded), \
            mock.patch.object(tiled._kernels, "regions_forward", recorded_regions):
        for got, want in (
                (lambda: convgrad.conv(f32[0], f32[1], method="tiled", **kw), oracle.conv(x, w, **kw)),
                (lambda: convgrad.conv_input_grad(f32[2], f32[1], x.shape, method="tiled", **kw),
                 oracle.input_grad(dy, w, x.shape, **kw))):
            written.clear()
            out = got()
            assert_close(out, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()), dtype=np.float32)
            assert all(first for _, first in written)
            assert all(np.shares_memory(out, y) for y, _ in written)


@given(n=st.integers(0, 3), c=st.integers(0, 13), o=st.integers(1, 14),
       spatial=st.lists(st.integers(1, 12), min_size=1, max_size=3))
@strategies.budget(15)
def test_tiled_runs_channels_first_pointwise_convs_on_nchw_as_it_is(n, c, o, spatial):
    """A 1x1 stride-1 unpadded conv in NCHW, float32: the pointwise kernels run y[n] = W @ x[n],
    dx[n] = W.T @ dy[n] (tiles of 64 positions and the narrower last ones) and dW = sum over n
    of dy[n] @ x[n].T (chunks of positions, partial sums per thread) on the caller's arrays, with
    no transposition; each against the oracle within float32 rounding."""
    from convgrad.engines import _kernels, tiled

    x_shape, w_shape = (n, c, *spatial), (o, c, *(1,) * len(spatial))
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape)
    for op in ("forward", "input_grad", "filter_grad"):  # planned (and kept) before the kernels are wrapped
        assert convgrad.make_plan(op, geom, F32, "tiled", 2**31, "channels_first").takes == "channels_first"
    rng = np.random.default_rng(6)
    x, w, dy = (rng.standard_normal(s) for s in (x_shape, w_shape, geom.y_shape()))
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    ran = []

    def counted(name):
        kernel = getattr(_kernels, name)
        return lambda *args: ran.append(name) or kernel(*args)

    names = ("pointwise_first", "pointwise_filter_grad_first")
    with mock.patch.object(tiled._kernels, names[0], counted(names[0])), \
            mock.patch.object(tiled._kernels, names[1], counted(names[1])), \
            mock.patch.object(convgrad._ops, "x_to_last", _no_transposition), \
            mock.patch.object(convgrad._ops, "w_to_last", _no_transposition):
        for got, want, terms in ((convgrad.conv(x32, w32, method="tiled"), oracle.conv(x, w), c),
                                 (convgrad.conv_input_grad(dy32, w32, x_shape, method="tiled"),
                                  oracle.input_grad(dy, w, x_shape), o),
                                 (convgrad.conv_filter_grad(x32, dy32, w_shape, method="tiled"),
                                  oracle.filter_grad(x, dy, w_shape), n * math.prod(spatial))):
            # sums of ``terms`` products of standard normals, rounded in float32
            assert_close(got, want, rtol=0, atol=1e-6 * max(1, terms), dtype=np.float32)
    if n and c:
        assert ran.count("pointwise_first") == 2 and ran.count("pointwise_filter_grad_first") == 1


@pytest.mark.parametrize("op", ["forward", "input_grad", "filter_grad"])
def test_a_channels_first_plan_shows_the_choices_of_its_own_kernel(op):
    """A channels-first 1x1 conv runs the pointwise GEMMs on NCHW as it is: its plan (and so
    explain) names them, not the channels-last tiles the same engine runs for NHWC."""
    geom = convgrad.ConvGeometry.for_conv((2, 64, 8, 8), (32, 64, 1, 1))
    first = convgrad.make_plan(op, geom, F32, "tiled", 2**31, "channels_first")
    last = convgrad.make_plan(op, geom, F32, "tiled", 2**31)
    assert first.takes == "channels_first"
    assert first.choices["tile"] == "channels-first 1x1 GEMM" != last.choices.get("tile")
    assert first.verdicts()["tiled"]["choices"] == first.choices


def test_a_helper_kernel_loads_once_its_fallbacks_have_lost_its_load(monkeypatch):
    """The finite check and the layout transposition have NumPy fallbacks and no plan runs their
    kernels, so under 'lazy' nothing loaded them: a process that never called warm_up checked
    every FFT operand by NumPy's min and max. They load once the savings their
    fallbacks missed add up to the load (ski rental); 'eager' loads at once, 'never' never."""
    from convgrad import _plan
    from convgrad.engines import _kernels

    monkeypatch.setattr(_kernels, "loaded", lambda kernel, name: False)
    monkeypatch.setattr(_kernels, "compile_penalty", lambda dtype, *k: 1.0)
    planner = _plan.Planner()
    assert [planner.pays_to_load(_kernels.residue, F32, 0.3) for _ in range(4)] == [False] * 3 + [True]
    # kept per kernel and dtype
    assert not planner.pays_to_load(_kernels.residue, np.dtype(np.float64), 0.3)
    assert not planner.pays_to_load(_kernels.transpose_batches, F32, 0.3)
    assert _plan.Planner("eager").pays_to_load(_kernels.residue, F32, 0.0)
    assert not _plan.Planner("never").pays_to_load(_kernels.residue, F32, 1e9)


@pytest.mark.parametrize("path", ["finite", "layout"])
def test_the_default_op_loads_its_helper_kernels_under_lazy(monkeypatch, path):
    """Through the public ops, default policy, the kernels reported as not loaded: the fallback runs
    (NumPy) until its losses reach the load, then the kernel, with the same results (a check's
    answer; a transposition's bits)."""
    from convgrad import _plan
    from convgrad.engines import _kernels, _machine
    from convgrad.engines._kernels import finite, layout

    monkeypatch.setattr(_plan, "_DEFAULT", _plan.Planner())
    module, kernel = (finite, "residue") if path == "finite" else (layout, "transpose_batches")
    ran = []
    real = getattr(module, kernel)

    def counted(*args):
        ran.append(1)
        return real(*args)

    monkeypatch.setattr(module, kernel, counted)
    monkeypatch.setattr(module, "loaded", lambda dtype: False)
    monkeypatch.setattr(_kernels, "loaded", lambda k, name: False)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8, 40, 40)).astype(np.float32)  # 100 KiB: 2 transpositions a call
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    if path == "finite":  # FFT's plans check their operands on every call; x's saving dominates
        fig = _machine.figures("_dtypes")
        saving = x.nbytes * (1 / fig.FINITE_BYTES_PER_S - 1 / fig.COMPILED_FINITE_BYTES_PER_S)
        call = lambda: convgrad.conv(x, w, padding=1, method="fft")  # noqa: E731
    else:
        fig = _machine.figures("_layout")
        saving = 2 * x.nbytes * (1 / fig.TRANSPOSE_BYTES_PER_S - 1 / fig.COMPILED_TRANSPOSE_BYTES_PER_S)
        call = lambda: convgrad.conv(x, w, padding=1, method="im2col")  # noqa: E731
    monkeypatch.setattr(_kernels, "compile_penalty", lambda dtype, *k: 20.5 * saving)
    expected = oracle.conv(x.astype(np.float64), w.astype(np.float64), padding=1)
    for i in range(30):
        y = call()
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
        if not ran:
            last_fallback = i
    assert ran, "the kernel never ran"
    # x's saving alone reaches the load at its 21st call; w (and y) add theirs, so sooner
    assert 5 <= last_fallback < 20
