"""The tiled engine's float32 filter gradient over runs of (kw, c) (engines/_kernels/filter_runs.py)
against the loop oracle in float64.

Each check first asserts that the plan took the runs kernel (so a change of the cost model cannot
silently stop covering it), then compares with the oracle within float32's rounding bound: the
error of a sum of products is at most a few units of float32 rounding times the sum of the
products' magnitudes, the oracle's filter gradient of |x| and |dy|.
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


def _forced(geom):
    """Whether the runs kernel can take ``geom`` (float32, groups 1, runs of 6 or more)."""
    from convgrad.engines import tiled

    return tiled._refuse(geom, F32) is None and tiled._run_length_fg(geom) >= tiled.RUN_ROWS


def _no_transposition(*args, **kwargs):
    raise AssertionError("the channels-first runs path transposed dy before the kernel")


def _check(x, dy, w_shape, fmt, **kw):
    """dw of the runs kernel (forced by pricing it at zero) against the float64 oracle; a
    channels-first call must reach the kernel with dy as it is (the generic channels-first wrapper,
    which hands the kernel transposed copies, raises)."""
    from convgrad.engines import tiled

    geom = convgrad.ConvGeometry.for_conv(x.shape, w_shape, data_format=fmt, **kw)
    with mock.patch.object(tiled, "_runs_seconds", lambda g: 0.0), \
            mock.patch.object(tiled, "_run_first", _no_transposition):
        default_planner().clear()  # plans made before the patch
        assert convgrad.make_plan("filter_grad", geom, F32, "tiled", 2**31).choices["tile"] == "6x64 runs"
        got = convgrad.conv_filter_grad(x.astype(np.float32), dy.astype(np.float32), w_shape, data_format=fmt,
                                        method="tiled", **kw)
        default_planner().clear()
    assert_float32_filter_grad(got, x, dy, w_shape, fmt, **kw)


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    # the stem's thin side: 3 channels, 7x7 stride 2: runs of 21 = 6 + 6 + 6 and an overlapping tile
    ((2, 3, 23, 21), (64, 3, 7, 7), {"stride": 2, "padding": 3}),
    # 64k + 6 output channels (a partial block of zeros), stride 3 > kernel 2 along the row
    ((1, 5, 9, 13), (70, 5, 3, 2), {"stride": (1, 3), "padding": ((1, 0), (2, 1))}),
    # dilation along the row: runs of the input channels alone (C = 7: one tile overlapping)
    ((2, 7, 8, 12), (64, 7, 2, 3), {"dilation": (1, 2), "padding": 1}),
    ((1, 6, 3, 4, 5), (128, 6, 3, 3, 3), {"padding": 1}),  # 3-D, two blocks of 64
    ((3, 8, 40), (65, 8, 3), {"stride": 2, "padding": 2}),  # 1-D
    ((1, 6, 5, 5), (64, 6, 1, 1), {}),  # 1x1: runs of the channels
    ((2, 2, 6, 7), (64, 2, 4, 4), {"padding": ((-1, 2), (1, -1))}),  # negative pads crop
])
@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_filter_runs_paths(x_shape, w_shape, kw, fmt):
    rng = np.random.default_rng(11)
    if fmt == "channels_last":
        x_shape = (x_shape[0], *x_shape[2:], x_shape[1])
        w_shape = (*w_shape[2:], w_shape[1], w_shape[0])
    x = rng.standard_normal(x_shape)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, data_format=fmt, **kw)
    assert _forced(geom)
    dy = rng.standard_normal(geom.y_shape(fmt))
    _check(x, dy, w_shape, fmt, **kw)


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
@pytest.mark.parametrize("c", range(6, 18))
def test_filter_runs_every_tail(c, fmt):
    """Runs of 6-17 rows (a 1-D kernel of 1 tap: the run is the channels): whole 6-row tiles, then
    a tail of 0-5 rows in its own tile, each length twice."""
    from convgrad.engines import tiled

    rng = np.random.default_rng(c)
    x_shape, w_shape = ((2, c, 9), (64, c, 1)) if fmt == "channels_first" else ((2, 9, c), (1, c, 64))
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, data_format=fmt, stride=2)
    assert _forced(geom) and tiled._run_length_fg(geom) == c
    _check(rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape(fmt)), w_shape, fmt, stride=2)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_filter_runs_split_rows_and_channels(monkeypatch, threads):
    """The threads split blocks of 64 output channels, then rows (one partial dw per share of
    rows): 1, 2 and 3 threads over 1 and 2 blocks all sum to the same dw."""
    from convgrad.engines import _threads, tiled

    monkeypatch.setattr(_threads, "allowed", lambda: threads)
    monkeypatch.setattr(_threads, "cores", lambda: threads)  # the partial results' count
    rng = np.random.default_rng(12)
    for x_shape, w_shape in [((3, 4, 7, 9), (64, 4, 3, 3)), ((2, 4, 6, 9), (128, 4, 3, 3))]:
        x = rng.standard_normal(x_shape)
        geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=1)
        assert tiled._runs_parts(geom) == max(1, -(-threads // (w_shape[0] // 64)))
        _check(x, rng.standard_normal(geom.y_shape()), w_shape, "channels_first", padding=1)


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
@pytest.mark.parametrize("o", [64, 130, 256])
def test_filter_runs_bits_do_not_depend_on_the_free_cores(monkeypatch, fmt, o):
    """The partial filter gradients are added in a fixed order (channels-first by one parallel
    pass that lays them out as (O, C, *K), ``finish_runs``); channels-last dy of more than 64
    channels is read from a packed panel. With three threads allowed: 3 shares of rows (64), a
    partial block (130), one share (256: channels-last, the kernel's result returned as it is).
    Bitwise the same on one free core as on all, and the oracle's values."""
    from convgrad.engines import _threads, tiled

    monkeypatch.setattr(_threads, "allowed", lambda: 3)
    monkeypatch.setattr(_threads, "cores", lambda: 3)  # the partial results' count
    monkeypatch.setattr(tiled, "_runs_seconds", lambda g: 0.0)
    rng = np.random.default_rng(o)
    first = fmt == "channels_first"
    x_shape, w_shape = ((2, 8, 9, 10), (o, 8, 3, 3)) if first else ((2, 9, 10, 8), (3, 3, 8, o))
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=1, data_format=fmt)
    x, dy = rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape(fmt))
    got = []
    default_planner().clear()
    for free in (1 << 10, 1):
        monkeypatch.setattr(_threads, "free_cores", lambda free=free: free)
        plan = convgrad.make_plan("filter_grad", geom, F32, "tiled", 2**31)
        assert plan.choices["tile"] == "6x64 runs" and plan.choices["parts"] == max(1, -(-3 // -(-o // 64)))
        got.append(convgrad.conv_filter_grad(x.astype(np.float32), dy.astype(np.float32), w_shape, padding=1,
                                             data_format=fmt, method="tiled"))
    default_planner().clear()
    assert got[0].tobytes() == got[1].tobytes()
    assert_float32_filter_grad(got[0], x, dy, w_shape, fmt, padding=1)


@st.composite
def runs_cases(draw):
    """(x_shape, w_shape, kwargs, data_format) of a groups-1 conv the runs kernel takes: random
    rank, kernel, stride (often longer than the kernel), dilation and explicit pads (negative
    ones crop), thin and wide channels, output channels up to 64k + a few (partial blocks)."""
    return draw(filter_grad_cases(st.sampled_from([1, 2, 3, 5, 6, 8, 13]),
                                  st.sampled_from([1, 7, 64, 65, 130])))


@budget(40)
@given(runs_cases(), seeds)
@checked_against("oracle")
def test_filter_runs_random_geometries(case, seed):
    x_shape, w_shape, kw, fmt = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, data_format=fmt, **kw)
    assume(not geom.empty and _forced(geom))
    rng = np.random.default_rng(seed)
    _check(rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape(fmt)), w_shape, fmt, **kw)


def test_filter_runs_chosen_for_the_thin_and_deep_rows():
    """Within the tiled engine, the cost model prefers the runs kernel for the stem's 3-channel and
    the deep 256-channel filter gradients, and keeps float64 and 16 output channels on the tiles of
    input channels."""
    from convgrad.engines import tiled

    stem = convgrad.ConvGeometry.for_conv((8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    deep = convgrad.ConvGeometry.for_conv((8, 256, 14, 14), (256, 256, 3, 3), padding=1)
    narrow = convgrad.ConvGeometry.for_conv((2, 16, 32, 32), (16, 16, 3, 3), padding=1)
    assert tiled._runs_fit(stem, F32) and tiled._runs_fit(deep, F32)
    assert not tiled._runs_fit(stem, np.dtype(np.float64))
    assert not tiled._runs_fit(narrow, F32)


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_filter_runs_result_is_not_scratch(monkeypatch, fmt):
    """With one share of rows and whole blocks of 64 output channels the partial filter gradient
    is the whole result: the caller must get its own array, not the engine's scratch memory that
    the next call overwrites (it did, channels-last, before)."""
    from threadpoolctl import threadpool_limits

    from convgrad.engines import _threads

    monkeypatch.setattr(_threads, "cores", lambda: 1)  # one share of rows
    rng = np.random.default_rng(13)
    x_shape, w_shape = ((1, 8, 8, 8), (64, 8, 3, 3))
    if fmt == "channels_last":
        x_shape, w_shape = (1, 8, 8, 8), (3, 3, 8, 64)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=1, data_format=fmt)
    x, dy = rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape(fmt))
    with threadpool_limits(1):
        default_planner().clear()
        assert convgrad.make_plan("filter_grad", geom, F32, "tiled", 2**31).choices["parts"] == 1
        first = convgrad.conv_filter_grad(x.astype(np.float32), dy.astype(np.float32), w_shape, padding=1,
                                          data_format=fmt, method="tiled")
        kept = first.copy()
        convgrad.conv_filter_grad(2 * x.astype(np.float32), dy.astype(np.float32), w_shape, padding=1,
                                  data_format=fmt, method="tiled")
        default_planner().clear()
    np.testing.assert_array_equal(first, kept)
    assert_float32_filter_grad(first, x, dy, w_shape, fmt, padding=1)


def test_filter_runs_partials_decide_against_im2col(monkeypatch):
    """Against the other engines the runs kernel is charged its partial filter gradients too
    (zeroed and added into past the second-level cache, summed or laid out after the kernel): with
    the kernels loaded and two threads, resnet_3x3_deep's channels-last filter gradient runs on the
    runs kernel (quiet, 2 threads: 3.90-4.24 ms against im2col's 4.80-5.03), and 1x512x7x7 -> 256,
    5x5, whose filter entries each sum 49 outputs, on another engine (one thread, loaded: 3.1-5.8
    ms against im2col's 2.7-3.1). Within the tiled engine the choice of kernel keeps to the rates
    alone. Planned with the AVX-512 calibration, where these were measured (on AVX2 the filter
    gradient's fitted factor sends resnet_3x3_deep to im2col, as measured there)."""
    from convgrad import _plan
    from convgrad.engines import _kernels, _machine, _threads, tiled

    monkeypatch.setattr(_machine, "_MODEL", _machine._read(_machine.PACKAGED[64]))
    monkeypatch.setattr(_kernels, "compile_penalty", lambda dtype, *k: 0.0)
    monkeypatch.setattr(_threads, "allowed", lambda: 2)
    monkeypatch.setattr(_threads, "cores", lambda: 2)  # the partial results' count
    deep = convgrad.ConvGeometry.for_conv((8, 14, 14, 256), (3, 3, 256, 256), padding=1,
                                          data_format="channels_last")
    few = convgrad.ConvGeometry.for_conv((1, 7, 7, 512), (5, 5, 512, 256), padding=2,
                                         data_format="channels_last")
    chosen = _plan.Planner().plan("filter_grad", deep, F32)
    assert (chosen.chosen.engine, chosen.choices.get("tile")) == ("tiled", "6x64 runs"), chosen.reason
    assert _plan.Planner().plan("filter_grad", few, F32).chosen.engine != "tiled"
    assert tiled._runs_fit(few, F32)  # the tiled engine itself still runs its runs kernel there
    monkeypatch.setattr(tiled, "_runs_partials_seconds", lambda g, first: 0.0)  # the term decides it
    assert _plan.Planner().plan("filter_grad", few, F32).chosen.engine == "tiled"


def test_filter_runs_partials_charge_what_runs(monkeypatch):
    """The partials' charge follows what the kernel does: nothing where one part, written by the
    kernel in the L2-sized blocks of 64 output channels, is the channels-last result; the pass
    after it for a channels-first caller or several parts; the stores past the second-level cache
    where a block of sums is larger than it (grows with the chunks of rows that add into it)."""
    from convgrad.engines import _threads, tiled

    monkeypatch.setattr(_threads, "allowed", lambda: 2)
    monkeypatch.setattr(_threads, "cores", lambda: 2)  # the partial results' count

    def geom(n, h, c, o, k):
        return convgrad.ConvGeometry.for_conv((n, h, h, c), (k, k, c, o), padding=k // 2,
                                              data_format="channels_last")

    deep, narrow, wide = geom(8, 14, 256, 256, 3), geom(8, 32, 64, 64, 3), geom(1, 7, 512, 256, 5)
    assert tiled._runs_parts(deep) == 1 and tiled._runs_partials_seconds(deep, first=False) == 0.0
    assert tiled._runs_partials_seconds(deep, first=True) > 0.0
    assert tiled._runs_parts(narrow) == 2 and tiled._runs_partials_seconds(narrow, first=False) > 0.0
    # 5 x 5 x 512 x 64 floats per block: 3.3 MB, past the second-level cache
    assert tiled._runs_partials_seconds(wide, first=False) > 0.0
    taller = geom(1, 56, 512, 256, 5)  # more chunks of rows add into the same blocks
    assert tiled._runs_partials_seconds(taller, first=False) > tiled._runs_partials_seconds(wide, first=False)


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    ((2, 5, 9, 10), (65, 5, 3, 3), {"padding": 1}),  # 9 taps: one 8 x 8 transpose and one left over
    ((1, 3, 8, 9), (139, 3, 4, 4), {"stride": 2, "padding": 1}),  # 16 taps, a last block of 11
    ((2, 7, 11), (146, 7, 1), {"stride": 2}),  # 1 tap: no transposes (stride 2: not the 1x1 GEMMs)
    ((1, 6, 3, 4, 5), (200, 6, 3, 3, 3), {"padding": 1}),  # 3-D, 27 taps
])
def test_filter_runs_first_blocks_laid_out_in_the_kernel(monkeypatch, x_shape, w_shape, kw):
    """A channels-first caller's filter gradient of one share of rows is laid out (O, C, *K) by
    the kernel's threads, block by block (``_block_first``), with no pass after it: every entry
    written (the result prefilled with NaN), the oracle's values, bitwise the same as the pass
    after the kernel (``finish_runs``) gives for the same parts."""
    from convgrad.engines import _kernels, _scratch, _threads, tiled

    monkeypatch.setattr(_threads, "allowed", lambda: 1)
    monkeypatch.setattr(_threads, "cores", lambda: 1)  # the partial results' count
    monkeypatch.setattr(tiled, "_runs_seconds", lambda g: 0.0)

    def nan_filled(shape, dtype):
        a = _scratch.aligned_empty(shape, dtype)
        a.fill(np.nan)
        return a

    def no_pass(*args):
        raise AssertionError("finish_runs ran after the kernel")

    monkeypatch.setattr(tiled, "aligned_empty", nan_filled)
    monkeypatch.setattr(_kernels, "finish_runs", no_pass)
    rng = np.random.default_rng(len(x_shape) + w_shape[0])
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    x, dy = rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape())
    default_planner().clear()
    plan = convgrad.make_plan("filter_grad", geom, F32, "tiled", 2**31)
    assert plan.choices["tile"] == "6x64 runs" and plan.choices["parts"] == 1
    got = convgrad.conv_filter_grad(x.astype(np.float32), dy.astype(np.float32), w_shape, method="tiled",
                                    **kw)
    default_planner().clear()
    assert_float32_filter_grad(got, x, dy, w_shape, "channels_first", **kw)
    # the same kernel's parts laid out by the pass after it
    unit = (1,) * (3 - geom.rank)
    xp = tiled._padded(np.ascontiguousarray(np.moveaxis(x.astype(np.float32), 1, -1)), geom.tight_padding,
                       None, "test.x")
    dy5 = np.ascontiguousarray(dy.astype(np.float32)).reshape(*dy.shape[:2], *unit, *dy.shape[2:])
    parts = np.zeros((1, *unit, *geom.kernel, geom.in_channels, -(-geom.out_channels // 64) * 64), np.float32)
    _kernels.filter_grad_runs(tiled.as_3d(xp), dy5, *(unit + geom.stride), *(unit + geom.rhs_dilation), 1,
                              tiled.RUNS_CHUNK_BYTES, True, parts, np.empty((0,) * 5, np.float32))
    after = np.empty((geom.out_channels, geom.in_channels, *unit, *geom.kernel), np.float32)
    monkeypatch.undo()
    _kernels.finish_runs(parts, after)
    assert got.tobytes() == after.reshape(got.shape).tobytes()
