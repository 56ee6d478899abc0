"""The runs kernel's walk of a whole run where vectors hold 8 float32 (AVX2,
``filter_runs._run_2v``): the block's 64 output channels 2 vectors at a time, each over the whole
run in passes of 6 filter rows, the run's last 1-5 rows in one pass of that many (one row: all 64
channels at once).

Called directly with vectors of the machine's width (on an AVX-512 machine its 64 channels are 2
groups of 2 vectors, not 4), against float64 sums; through the engine on deep layers (more than
64 output channels on short rows of outputs, as resnet_3x3_deep's 14 x 14 planes), both layouts,
against the loop oracle.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

import convgrad
from checks import assert_float32_filter_grad
from convgrad._plan import default_planner
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
