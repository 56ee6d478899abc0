"""The deep layers' kernels where vectors hold 8 float32 (AVX2).

The runs kernel's walk of a whole run (``filter_runs._run_2v``): the block's 64 output channels 2
vectors at a time, each over the whole run in passes of 6 filter rows, the run's last 1-5 rows
in one pass of that many (one row: all 64 channels at once). Called directly with vectors of the
machine's width (on an AVX-512 machine its 64 channels are 2 groups of 2 vectors, not 4), against
float64 sums; through the engine on deep layers (more than 64 output channels on short rows of
outputs, as resnet_3x3_deep's 14 x 14 planes), both layouts, against the loop oracle.

The one-pass Winograd kernel's GEMMs a strip of output channels at a time over a block's tiles
and its transformed filter's rows a skewed stride apart (``winograd._filter_stride``): through
the engine, against the loop oracle (on an AVX-512 machine the tiles in turn, the same rows).
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

import convgrad
import oracle
from checks import assert_float32_filter_grad
from convgrad._plan import default_planner
from convgrad.engines._kernels._simd import VECTOR_BYTES
from tally import checked_against


def _sums(xf, df, xo, do, shift, ob, sw, OW, dstep, rows):
    """[i, o] = sum over rows q and outputs k of xf[xo[q] + shift + i + k * sw] *
    df[do[q] + ob + o + k * dstep], i < rows, o < 64, in float64."""
    out = np.zeros((rows, 64))
    for q in range(len(xo)):
        for k in range(OW):
            p, d = xo[q] + shift + k * sw, do[q] + ob + k * dstep
            out += np.outer(xf[p:p + rows].astype(np.float64), df[d:d + 64].astype(np.float64))
    return out


@pytest.mark.parametrize("run", [6, 7, 8, 9, 10, 11, 12, 23])
def test_run_2v_direct(run):
    """Every run length modulo 6 (whole passes, then a last pass of 1-5 rows): sums added to what
    tf holds, rows O apart, dy's outputs ``dstep`` apart, nothing outside the run's rows x 64
    channels written."""
    from convgrad.engines._kernels.filter_runs import _run_2v

    rng = np.random.default_rng(run)
    OW, sw, dstep, O, count = 5, 3, 64 + 7, 64 + 9, 3
    xf = rng.standard_normal(200 + run).astype(np.float32)
    df = rng.standard_normal(count * OW * dstep + 80).astype(np.float32)
    xo, do = np.array([0, 50, 120]), np.array([0, OW * dstep, 2 * OW * dstep])
    tf = rng.standard_normal(run * O + 30).astype(np.float32)
    start, at, shift, ob = tf.copy(), 4, 2, 5
    _run_2v(xf, df, tf, xo, do, count, shift, ob, np.uint64(sw), OW, dstep, O, at, run)
    want = start.astype(np.float64)
    sums = _sums(xf, df, xo, do, shift, ob, sw, OW, dstep, run)
    for i in range(run):
        want[at + i * O:at + i * O + 64] += sums[i]
    eps = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(tf, want, rtol=0, atol=64 * eps * (np.abs(want).max() + count * OW))


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize(("c", "o"), [(11, 130), (16, 64), (7, 200)])
@checked_against("oracle")
def test_runs_deep_short_rows(fmt, c, o):
    """The runs kernel (forced) on deep layers' shapes, short rows of outputs: 3 x 3, padding 1 on
    7 x 7 planes (runs of 33, 48 and 21 filter rows: whole passes and a last pass of 3), output
    channels in 1-4 blocks of 64 (packed panels; channels past O zero), both layouts."""
    from convgrad.engines import tiled

    first = fmt == "channels_first"
    x_shape, w_shape = ((2, c, 7, 7), (o, c, 3, 3)) if first else ((2, 7, 7, c), (3, 3, c, o))
    kw = {"padding": 1}
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, data_format=fmt, **kw)
    rng = np.random.default_rng(c * o)
    x, dy = rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape(fmt))
    with mock.patch.object(tiled, "THIN", False), mock.patch.object(tiled, "_runs_seconds", lambda g: 0.0):
        default_planner().clear()
        try:
            plan = convgrad.make_plan("filter_grad", geom, np.dtype(np.float32), "tiled", 2**31)
            assert plan.choices["tile"] == "6x64 runs"
            xd, dyd = x.astype(np.float32), dy.astype(np.float32)
            keep = xd.copy(), dyd.copy()
            got = convgrad.conv_filter_grad(xd, dyd, w_shape, data_format=fmt, method="tiled", **kw)
        finally:
            default_planner().clear()
    assert np.array_equal(xd, keep[0]) and np.array_equal(dyd, keep[1])  # inputs not written
    assert_float32_filter_grad(got, x, dy, w_shape, fmt, **kw)


def test_winograd_filter_stride_skews_rows_of_whole_kilobytes():
    """The transformed filter's rows: O rounded up to 16 output channels, one cache line more
    where that is a multiple of 256 bytes (resnet_3x3_deep's 256 float32 channels: 1 KiB)."""
    from convgrad.engines import winograd

    for dtype in (np.float32, np.float64):
        item = np.dtype(dtype).itemsize
        for o in (1, 16, 17, 64, 65, 130, 256, 512):
            p, s = -(-o // 16) * 16, winograd._filter_stride(o, dtype)
            assert s >= p and s * item % 256 != 0
            assert s == p or s == p + 64 // item
    assert winograd._filter_stride(256, np.float32) == 272


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize(("dtype", "c", "o", "plane"), [
    (np.float32, 40, 128, (9, 14)), (np.float32, 56, 72, (9, 14)), (np.float64, 40, 64, (9, 14)),
    (np.float64, 9, 17, (9, 14)), (np.float32, 40, 128, (6, 6)), (np.float64, 40, 64, (4, 10)),
    (np.float32, 40, 128, (4, 18)), (np.float32, 56, 72, (4, 4))])
@checked_against("oracle")
def test_winograd_one_pass_strips_and_skewed_filter_rows(monkeypatch, dtype, c, o, plane, data_format):
    """The one-pass Winograd forward and input gradient where a tile element's transformed filter
    (C x P) is larger than half the first cache: on AVX2 its GEMMs run a strip of 2 vectors of
    output channels over all of a block's tiles at a time; filter rows a skewed stride apart
    (float32 128 and float64 64 output channels: rows of 512 bytes) and not (72 -> 80 channels);
    the input gradient's conv swaps C and O (its filter 128 x 48: strips, rows not skewed); a
    small filter (9 x 17) takes the tiles in turn. On 1 and 2 threads (blocks of 2 images'
    rows of tiles in 1 or 2 work items): 9 x 14 planes, blocks of whole 6-tile passes (4 tiles a
    row of tiles: 24 or 12 a block); 6 x 6, 4 x 10, 4 x 18 and 4 x 4 planes, blocks of 8 or 4,
    6 or 3, 10 or 5, 2 or 1 tiles, a last pass of each of 1-5 tiles. Against the loop oracle,
    both layouts."""
    from convgrad.engines import _threads, winograd

    rng = np.random.default_rng(c * o)
    x_shape, w_shape = (2, c, *plane), (o, c, 3, 3)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=1)
    for op in ("forward", "input_grad"):
        assert convgrad.make_plan(op, geom, np.dtype(dtype), "winograd", 2**31).choices.get("one_pass")
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y_want = oracle.conv(x, w, padding=1)
    dy = rng.standard_normal(y_want.shape)
    dx_want = oracle.input_grad(dy, w, x_shape, padding=1)
    last = data_format == "channels_last"
    to = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if last else (lambda a: a)
    back = (lambda a: np.moveaxis(a, -1, 1)) if last else (lambda a: a)
    wd = (np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2))) if last else w).astype(dtype)
    xd, dyd = to(x).astype(dtype), to(dy).astype(dtype)
    keep = xd.copy(), wd.copy(), dyd.copy()
    kw = {"padding": 1, "method": "winograd", "data_format": data_format}
    tol = winograd.FLOAT32_TOLERANCE if dtype == np.float32 else 1e-12
    for threads in (1, 2):
        monkeypatch.setattr(_threads, "allowed", lambda k=threads: k)
        monkeypatch.setattr(_threads, "free_cores", lambda k=threads: k)
        y = back(convgrad.conv(xd, wd, **kw))
        dx = back(convgrad.conv_input_grad(dyd, wd, xd.shape, **kw))
        assert all(np.array_equal(a, b) for a, b in zip((xd, wd, dyd), keep))  # inputs not written
        for got, want in ((y, y_want), (dx, dx_want)):
            assert got.dtype == dtype
            assert float(np.abs(got - want).max() / np.abs(want).max()) < tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5])
def test_gemm_rx2_direct(dtype, rows):
    """winograd_fused._gemm_rx2 (a block's last 1-5 tiles) on any machine: cf[cb + i * cs + j] =
    sum_k af[ab + i * ai + k * ak] * bf[bb + k * bs + j], i < R, j < 2 vectors of the machine's
    width, written over what cf held, nothing else written."""
    from convgrad.engines._kernels.winograd_fused import _gemm_rx2

    rng = np.random.default_rng(rows)
    cols = 2 * (VECTOR_BYTES // np.dtype(dtype).itemsize)
    K, ab, ai, ak, bb, bs, cb, cs = 13, 3, 17, 1, 5, cols + 9, 2, cols + 4
    af = rng.standard_normal(ab + rows * ai + K).astype(dtype)
    bf = rng.standard_normal(bb + K * bs + cols).astype(dtype)
    cf = np.full(cb + rows * cs + cols, np.nan, dtype)
    _gemm_rx2(af, ab, ai, ak, bf, bb, bs, cf, cb, cs, K, rows)
    a = np.array([[af[ab + i * ai + k * ak] for k in range(K)] for i in range(rows)], np.float64)
    b = np.array([[bf[bb + k * bs + j] for j in range(cols)] for k in range(K)], np.float64)
    want, bound = a @ b, np.abs(a) @ np.abs(b)  # bound: the sums of |products|
    written = np.zeros(cf.size, bool)
    eps = float(np.finfo(dtype).eps)
    for i in range(rows):
        got = cf[cb + i * cs:cb + i * cs + cols]
        assert np.all(np.abs(got - want[i]) <= 2 * K * eps * bound[i])
        written[cb + i * cs:cb + i * cs + cols] = True
    assert np.isnan(cf[~written]).all()
