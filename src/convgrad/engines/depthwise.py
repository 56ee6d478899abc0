"""Direct loops compiled by Numba for depthwise 2-D convolutions (groups == C, any multiplier),
channels-last and channels-first (per plane, no transposition).

With one input channel per group a convolution has no channel contraction to hand to BLAS: every
GEMM-based formulation degenerates into elementwise passes over memory. A fused loop reads each
input sample once per tap from cache instead.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import numpy as np

from .. import _transpose
from .._budget import check_fits
from .._engine import Op, Planner, Prepared, Refusal
from .._geometry import ConvGeometry
from . import _kernels, _threads
from ._common import no_complex, padded_zeros, plain, unpad
from ._machine import figures
from ._scratch import aligned_empty

# The cost model (figures in calibration.json): flops at the fused loop's rate (about one
# multiply-add per cycle per lane) plus a call's overhead, times the fitted factor per op.


class Depthwise:
    name = "depthwise"
    # Every product of the direct sum is made, those with the zero padding too (w * 0, dy * 0:
    # NaN for an inf), and no other: the planner need not check the operands for inf and NaN
    # (a pass over x that took 0.36 ms of a 1.4 ms forward of 8 x 128 x 56 x 56 float32). The
    # gathered input gradient scatters instead for a filter with an inf or NaN.
    nonfinite_skips = ()

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        fig = figures("depthwise")
        why_not = _refuse(geom, dtype)
        if why_not:
            return Refusal(self.name, why_not)
        padded = geom.batch * geom.in_channels * dtype.itemsize * math.prod(geom.tight_padded)
        check_fits(f"the padded input of {geom.x_shape('channels_last')}", padded, limit)
        # With stride 1 and one output per channel, dx is itself a depthwise conv of dy with the
        # flipped kernel: gathered by the forward kernel (parallel over rows, no scatter) where none
        # of that conv's pads is negative (the kernel skips taps).
        gathers = (op == "input_grad" and all(s == 1 for s in geom.stride)
                   and geom.out_channels == geom.in_channels
                   and min(lo for lo, _ in _transpose.input_grad(geom).geometry.padding) >= 0)
        kernel = _kernels.depthwise2d_forward if gathers else {
            "forward": _kernels.depthwise2d_forward, "input_grad": _kernels.depthwise2d_input_grad,
            "filter_grad": _kernels.depthwise2d_filter_grad}[op]
        load = planner.load_seconds(dtype, kernel)
        # the fitted factor scales the compute; a kernel's load is its own figure
        seconds = (geom.flops / fig.FLOPS_PER_S + fig.CALL_SECONDS) * fig.FITTED[op] + load
        run = {"forward": _forward, "input_grad": _scatter_input_grad, "filter_grad": _filter_grad}[op]
        # the gathering conv's geometry built once per plan, not per call (34 us, loaded machine)
        run = partial(_gather_input_grad, geom, _transpose.input_grad(geom)) if gathers \
            else partial(run, geom)
        # Channels-first: one plane at a time, no padded copy (depthwise_first's kernels).
        first = _FIRST[op]
        first_seconds = ((geom.flops / fig.FLOPS_PER_S + fig.CALL_SECONDS) * fig.FITTED[op]
                         + planner.load_seconds(dtype, first))
        return Prepared(self.name, seconds, padded, run,
                        {"input_grad": "gather" if gathers else "scatter"} if op == "input_grad" else {},
                        run_first=partial(_run_first, first, geom, _first(first, geom)),
                        first_seconds=first_seconds,
                        first_workspace=0)


def _refuse(geom: ConvGeometry, dtype: np.dtype) -> str | None:
    if geom.rank != 2:
        return "compiled for 2-D only"
    if dtype not in (np.float32, np.float64):
        return no_complex(dtype) or "compiled for float32 and float64"
    if geom.filter_in_channels != 1 or geom.feature_group_count != geom.in_channels:
        return "needs a depthwise conv (groups == in_channels)"
    return plain(geom)


# y from this size on is stored past the caches (non-temporal stores, by the vector rows): it
# would not stay in the second-level cache for the next op anyway, and a store that skips the
# caches neither reads the line first nor evicts x (8 x 128 x 56 x 56 float32, one thread,
# loaded machine: 0.48 against 0.80 ms; 1 x 128 x 56 x 56: 0.062 against 0.072 ms).
STREAM_BYTES = 2**20


def _forward(geom: ConvGeometry, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    _threads.for_numba()
    y = aligned_empty((geom.batch, *geom.out_spatial, geom.out_channels), x.dtype)
    if y.size and geom.in_channels:
        xc, pads = _reachable(x, geom)
        w2 = np.ascontiguousarray(w.reshape(*geom.kernel, geom.out_channels))
        _kernels.depthwise2d_forward(xc, w2, *pads, *geom.stride, *geom.rhs_dilation, y,
                                     y.nbytes >= STREAM_BYTES)
    else:
        y.fill(0)
    return y


def _gather_input_grad(geom: ConvGeometry, gather: _transpose.Transposed, dy: np.ndarray,
                       w: np.ndarray) -> np.ndarray:
    """dx as the forward kernel's depthwise conv of dy with the flipped filter (``gather``: the
    transposition of ``geom``'s input gradient). That conv reads dy's zero padding, which the
    direct sum (each dy * w scattered to its sample) never multiplies: with an inf or NaN in w
    (9 x C values, checked per call) 0 * inf would be NaN there, so such a filter is scattered
    instead."""
    if not np.isfinite(w).all():
        return _scatter_input_grad(geom, dy, w)
    return gather(dy, w, run=_forward)


def _scatter_input_grad(geom: ConvGeometry, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    _threads.for_numba()
    dxp = padded_zeros(geom, dy.dtype)
    if dy.size and geom.in_channels:
        w2 = np.ascontiguousarray(w.reshape(*geom.kernel, geom.out_channels))
        _kernels.depthwise2d_input_grad(np.ascontiguousarray(dy), w2, *geom.stride, *geom.rhs_dilation, dxp)
    return unpad(dxp, geom)


def _filter_grad(geom: ConvGeometry, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    _threads.for_numba()
    # One partial dw per chunk of dy's rows (the kernel's threads claim the chunks): summed in
    # a fixed order, the same whichever thread took which chunk.
    chunks = max(1, min(geom.batch * geom.out_spatial[0], _FILTER_CHUNKS))
    parts = np.zeros((chunks, *geom.kernel, geom.out_channels), dtype=x.dtype)
    if dy.size and geom.in_channels:
        xc, pads = _reachable(x, geom)
        _kernels.depthwise2d_filter_grad(xc, np.ascontiguousarray(dy), *pads, *geom.stride,
                                         *geom.rhs_dilation, parts)
    return parts.sum(axis=0).reshape(*geom.kernel, 1, geom.out_channels)


# Partial filter gradients of the channels-last kernel: enough chunks for a thread that runs to
# take over from one that waits for its core, few enough that the parts stay small (32 x 9 x C).
_FILTER_CHUNKS = 32

_FIRST = {"forward": _kernels.depthwise2d_forward_first, "input_grad": _kernels.depthwise2d_input_grad_first,
          "filter_grad": _kernels.depthwise2d_filter_grad_first}


class _First(NamedTuple):
    """What a channels-first call of one plan needs, worked out once per plan (the shapes and pads
    took 10-12 us of a 2 x 16 x 16 x 16 call's 35 us in ``_run_first``, one thread, loaded)."""

    out_shape: tuple[int, ...]
    flat: tuple[int, ...]  # w (O, 1, KH, KW) as (O, KH, KW)
    pads: tuple[int, int]  # the leading pads
    flipped_pads: tuple[int, int]  # the gathering input gradient's
    gathers: bool  # unit strides, one output per channel: dx by the forward's gather


def _first(kernel, geom: ConvGeometry) -> _First:
    """``_run_first``'s fixed arguments for ``kernel`` (one of ``_FIRST``'s) on ``geom``."""
    out_shape = {_kernels.depthwise2d_forward_first: geom.y_shape(), _kernels.depthwise2d_input_grad_first:
                 geom.x_shape(), _kernels.depthwise2d_filter_grad_first: geom.w_shape()}[kernel]
    (p0, _), (p1, _) = geom.padding
    (kh, kw), (d0, d1) = geom.kernel, geom.rhs_dilation
    gathers = (kernel is _kernels.depthwise2d_input_grad_first and geom.stride == (1, 1)
               and geom.out_channels == geom.in_channels)
    return _First(out_shape, (geom.out_channels, kh, kw), (p0, p1), ((kh - 1) * d0 - p0, (kw - 1) * d1 - p1),
                  gathers)


def _run_first(kernel, geom: ConvGeometry, fixed: _First, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The op on channels-first operands (forward: x, w; input_grad: dy, w; filter_grad: x, dy),
    its result channels-first: y ``(N, O, *out)``, dx ``(N, C, *S)`` or dw ``(O, 1, *K)``."""
    if 0 in a.shape or 0 in b.shape:  # no sample reaches the result
        return np.zeros(fixed.out_shape, dtype=a.dtype)
    out = aligned_empty(fixed.out_shape, a.dtype)
    # also where the kernel runs on this thread (depthwise_first.SERIAL_MACS): the pool's count
    # follows the caller's limits whichever call ran last
    _threads.for_numba()
    (d0, d1), flat = geom.rhs_dilation, fixed.flat
    if kernel is _kernels.depthwise2d_filter_grad_first:
        kernel(a, b, *fixed.pads, *geom.stride, d0, d1, out.reshape(flat))
    elif fixed.gathers and np.isfinite(b).all():
        # Each plane of dx is dy's plane correlated with the flipped kernel: the forward's gather
        # (over dy's zero padding, which the direct sum never multiplies: for a filter with an
        # inf or NaN, the scatter below; see _gather_input_grad).
        flipped = np.ascontiguousarray(b.reshape(flat)[:, ::-1, ::-1])
        _kernels.depthwise2d_forward_first(a, flipped, *fixed.flipped_pads, 1, 1, d0, d1, out)
    else:
        kernel(a, b.reshape(flat), *fixed.pads, *geom.stride, d0, d1, out)
    return out


def _reachable(x: np.ndarray, geom: ConvGeometry) -> tuple[np.ndarray, list[int]]:
    """The samples of x the windows can reach (negative pads crop) and the leading pads: the
    kernels skip taps outside x, so padding is never materialised."""
    index = (slice(None), *(slice(start, stop) for start, stop, _ in geom.reach), slice(None))
    return np.ascontiguousarray(x[index]), [lead for *_, lead in geom.reach]
