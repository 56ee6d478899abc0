"""Direct loops compiled by Numba for depthwise 2-D convolutions (groups == C, any multiplier).

With one input channel per group a convolution has no channel contraction to hand to BLAS: every
GEMM-based formulation degenerates into elementwise passes over memory. A fused loop reads each
input sample once per tap from cache instead.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from .._budget import check_fits
from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from . import Op, Planner, Prepared, Refusal, _kernels, _threads
from ._common import plain
from ._machine import figures

# The cost model (figures in calibration.json): flops at the fused loop's rate (about one
# multiply-add per cycle per lane) plus a call's overhead, times the fitted factor per op.


class Depthwise:
    name = "depthwise"

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        fig = figures("depthwise")
        why_not = _refuse(geom, dtype)
        if why_not:
            return Refusal(self.name, why_not)
        padded = geom.batch * geom.in_channels * dtype.itemsize * math.prod(geom.tight_padded)
        check_fits(f"the padded input of {geom.x_shape('channels_last')}", padded, limit)
        gathers = op == "input_grad" and _gathers_input_grad(geom)
        kernel = _kernels.depthwise2d_forward if gathers else {
            "forward": _kernels.depthwise2d_forward, "input_grad": _kernels.depthwise2d_input_grad,
            "filter_grad": _kernels.depthwise2d_filter_grad}[op]
        load = planner.load_seconds(dtype, kernel)
        seconds = (geom.flops / fig.FLOPS_PER_S + fig.CALL_SECONDS + load) * fig.FITTED[op]
        run = {"forward": _forward, "input_grad": _gather_input_grad if gathers else _scatter_input_grad,
               "filter_grad": _filter_grad}[op]
        return Prepared(self.name, seconds, padded, partial(run, geom),
                        {"input_grad": "gather" if gathers else "scatter"} if op == "input_grad" else {})


def _refuse(geom: ConvGeometry, dtype: np.dtype) -> str | None:
    if geom.rank != 2:
        return "compiled for 2-D only"
    if dtype not in (np.float32, np.float64):
        return "compiled for float32 and float64"
    if geom.filter_in_channels != 1 or geom.feature_group_count != geom.in_channels:
        return "needs a depthwise conv (groups == in_channels)"
    return plain(geom)


def _forward(geom: ConvGeometry, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    _threads.for_numba()
    y = np.empty((geom.batch, *geom.out_spatial, geom.out_channels), dtype=x.dtype)
    if y.size and geom.in_channels:
        xc, pads = _reachable(x, geom)
        w2 = np.ascontiguousarray(w.reshape(*geom.kernel, geom.out_channels))
        _kernels.depthwise2d_forward(xc, w2, *pads, *geom.stride, *geom.rhs_dilation, y)
    else:
        y.fill(0)
    return y


def _gather_input_grad(geom: ConvGeometry, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """With stride 1 and one output per channel, dx is itself a depthwise conv of dy with the
    flipped kernel: gather with the forward kernel (parallel over rows, no scatter)."""
    _threads.for_numba()
    dx = np.empty((geom.batch, *geom.in_spatial, geom.in_channels), dtype=dy.dtype)
    if dx.size:
        w2 = np.ascontiguousarray(w.reshape(*geom.kernel, geom.out_channels)[::-1, ::-1])
        _kernels.depthwise2d_forward(np.ascontiguousarray(dy), w2, *_flip_pads(geom), 1, 1,
                                     *geom.rhs_dilation, dx)
    return dx


def _scatter_input_grad(geom: ConvGeometry, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    _threads.for_numba()
    dxp = np.zeros((geom.batch, *geom.tight_padded, geom.in_channels), dtype=dy.dtype)
    if dy.size and geom.in_channels:
        w2 = np.ascontiguousarray(w.reshape(*geom.kernel, geom.out_channels))
        _kernels.depthwise2d_input_grad(np.ascontiguousarray(dy), w2, *geom.stride, *geom.rhs_dilation, dxp)
    return pad_or_crop(dxp, tuple((-lo, -hi) for lo, hi in geom.tight_padding))


def _filter_grad(geom: ConvGeometry, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    _threads.for_numba()
    parts = np.zeros((max(1, min(geom.batch, 8)), *geom.kernel, geom.out_channels), dtype=x.dtype)
    if dy.size and geom.in_channels:
        xc, pads = _reachable(x, geom)
        _kernels.depthwise2d_filter_grad(xc, np.ascontiguousarray(dy), *pads, *geom.stride,
                                         *geom.rhs_dilation, parts)
    return parts.sum(axis=0).reshape(*geom.kernel, 1, geom.out_channels)


def _reachable(x: np.ndarray, geom: ConvGeometry) -> tuple[np.ndarray, list[int]]:
    """The samples of x the windows can reach (negative pads crop) and the leading pads: the
    kernels skip taps outside x, so padding is never materialised."""
    index = (slice(None), *(slice(start, stop) for start, stop, _ in geom.reach), slice(None))
    return np.ascontiguousarray(x[index]), [lead for *_, lead in geom.reach]


def _flip_pads(geom: ConvGeometry) -> list[int]:
    """Leading pads of dy for dx as a conv of dy with the flipped kernel: (k - 1) * d - before."""
    return [(k - 1) * d - lo for k, d, (lo, _) in zip(geom.kernel, geom.rhs_dilation, geom.tight_padding)]


def _gathers_input_grad(geom: ConvGeometry) -> bool:
    return (all(s == 1 for s in geom.stride) and geom.out_channels == geom.in_channels
            and min(_flip_pads(geom)) >= 0)
