"""Tiny convolutions as one gather and one GEMM, their indices computed when the plan is made.

For a small problem the other engines' Python and NumPy calls (padding, blocking, one GEMM per
tap or block) cost tens of microseconds, many times the arithmetic. Here the plan computes, once,
the index of every element of the im2col matrix in x flattened per batch with one zero appended
(padding reads that zero). Then the forward is ``take`` then one GEMM, the filter gradient the
same ``take`` and one GEMM with dy, and the input gradient one GEMM and one ``bincount``
scattering the columns back: a handful of NumPy calls whatever the geometry. The indices cost
memory held by the plan, so the engine takes only problems of at most MAX_ELEMENTS of them.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from .._budget import check_fits
from .._engine import Op, Planner, Prepared, Refusal
from .._geometry import ConvGeometry
from . import _threads
from ._common import plain
from ._machine import figures

MAX_ELEMENTS = 1 << 15
# The cost model (figures in calibration.json): a few NumPy calls, the gathered bytes and the GEMM.


class Gather:
    name = "gather"
    nonfinite_skips = ()

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        fig = figures("gather")
        elements = geom.batch * math.prod(geom.out_spatial) * math.prod(geom.kernel) * geom.in_channels
        # _indices builds the (P, T) grid of one batch and one channel whatever N and C: an empty
        # batch or no channels do not make it small (2**31 pads and N = 0 allocated 16 GiB here)
        built = max(geom.batch, 1) * math.prod(geom.out_spatial) * math.prod(geom.kernel) * max(
            geom.in_channels, 1)
        why_not = plain(geom) or (
            "needs groups == 1" if geom.feature_group_count != 1 else
            "sums in float64 (bincount): integer results would not be exact" if dtype.kind not in "fc" else
            f"for at most {MAX_ELEMENTS} im2col elements, not {built}" if built > MAX_ELEMENTS else
            # the index arithmetic is int64: a dilation of 2**62 overflowed it (OverflowError)
            "for padded extents below 2**31" if max(geom.tight_padded, default=0) >= 2**31 or any(
                abs(p) >= 2**31 for pair in geom.tight_padding for p in pair) else None)
        if why_not:
            return Refusal(self.name, why_not)
        # the indices (kept by the plan), the columns and x with its zeros
        x_bytes = geom.batch * (math.prod(geom.in_spatial) * geom.in_channels + 1) * dtype.itemsize
        workspace = elements * (8 + 2 * dtype.itemsize) + x_bytes
        check_fits(f"the gathered columns of {geom.x_shape('channels_last')}", workspace, limit)
        seconds = (fig.CALL_SECONDS + elements * (8 + dtype.itemsize) / fig.GATHER_BYTES_PER_S
                   + geom.flops / fig.GEMM_FLOPS_PER_S)
        run = {"forward": _forward, "input_grad": _input_grad, "filter_grad": _filter_grad}[op]
        return Prepared(self.name, seconds, workspace, partial(run, geom, _indices(geom)),
                        {"elements": elements})


def _indices(geom: ConvGeometry) -> np.ndarray:
    """(N * P, T * C) indices into x ``(N, *S, C)`` flattened per batch with a zero appended
    (``prod(S) * C + 1`` values per batch): im2col's columns, where the padding reads the zero."""
    c, size = geom.in_channels, math.prod(geom.in_spatial) * geom.in_channels
    flat, inside = np.zeros((), np.intp), np.ones((), bool)
    for axis, (n, o, k, s, d, (lo, _)) in enumerate(zip(geom.in_spatial, geom.out_spatial, geom.kernel,
                                                        geom.stride, geom.rhs_dilation, geom.tight_padding)):
        i = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - lo  # (P, T) along this axis
        flat = flat[..., None, None] + i * (math.prod(geom.in_spatial[axis + 1:]) * c)
        inside = inside[..., None, None] & (i >= 0) & (i < n)
    order = (*range(0, 2 * geom.rank, 2), *range(1, 2 * geom.rank, 2))  # (*P, *T)
    flat, inside = flat.transpose(order)[..., None] + np.arange(c), inside.transpose(order)[..., None]
    cols = np.where(inside, flat, size).reshape(math.prod(geom.out_spatial), math.prod(geom.kernel) * c)
    return (cols + (np.arange(geom.batch) * (size + 1))[:, None, None]).reshape(geom.batch * len(cols),
                                                                                  cols.shape[1])


def _with_zero(geom: ConvGeometry, x: np.ndarray) -> np.ndarray:
    """x flattened per batch with one zero appended to each, as one vector."""
    size = math.prod(geom.in_spatial) * geom.in_channels
    xz = np.empty((geom.batch, size + 1), dtype=x.dtype)
    xz[:, :-1] = x.reshape(geom.batch, size)
    xz[:, -1] = 0
    return xz.reshape(-1)


def _forward(geom: ConvGeometry, idx: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    cols = _with_zero(geom, x).take(idx)
    return _threads.matmul(cols, w.reshape(idx.shape[1], geom.out_channels)).reshape(
        geom.batch, *geom.out_spatial, geom.out_channels)


def _filter_grad(geom: ConvGeometry, idx: np.ndarray, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    cols = _with_zero(geom, x).take(idx)
    return _threads.matmul(cols.T, dy.reshape(idx.shape[0], geom.out_channels)).reshape(
        *geom.kernel, geom.in_channels, geom.out_channels)


def _input_grad(geom: ConvGeometry, idx: np.ndarray, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    o = geom.out_channels
    dcols = _threads.matmul(dy.reshape(idx.shape[0], o), w.reshape(idx.shape[1], o).T)
    size = math.prod(geom.in_spatial) * geom.in_channels
    n, flat = geom.batch * (size + 1), idx.ravel()
    dx = np.bincount(flat, weights=dcols.real.ravel(), minlength=n)
    if dcols.dtype.kind == "c":  # bincount weighs by reals: sum the imaginary parts apart
        dx = dx + 1j * np.bincount(flat, weights=dcols.imag.ravel(), minlength=n)
    return dx.reshape(geom.batch, size + 1)[:, :-1].astype(dy.dtype).reshape(
        geom.batch, *geom.in_spatial, geom.in_channels)
