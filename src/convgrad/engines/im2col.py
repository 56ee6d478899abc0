"""im2col + GEMM in bounded blocks; col2im for the input gradient.

The rows of the implicit matrix X[m, (t, c)] (m: batch and output positions, t: kernel offsets)
are packed a block at a time, so the workspace stays within the budget whatever the problem
size, and each block is one BLAS GEMM per group. The input gradient multiplies dy by the
transposed filter matrix and scatter-adds the columns back through the same strided windows
(col2im), which handles stride and dilation without zero insertion. The filter gradient is
X.T @ dy accumulated over blocks.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from .._budget import check_fits
from .._engine import Op, Planner, Prepared, Refusal
from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from . import _kernels, _threads
from ._common import as_3d, padded_zeros, plain, thin_factor, unpad
from ._common import blocks as _blocks
from ._machine import figures
from ._scratch import empty_for, scratch

# Rows are packed in blocks of about this many bytes: large enough for BLAS to run near peak,
# small enough to stay in the last-level cache of a small machine.
BLOCK_BYTES = 8 * 1024**2
# The cost model (figures in calibration.json): the GEMMs, slower when thin, the packing copies,
# and Python's overhead per call and per packed tap, times the fitted factor per op (another set
# for problems packed by the compiled loops).
# col2im adds runs of C channels: below SCATTER_RUN of them the input gradient runs slower than
# its estimate by about SCATTER_RUN / C (measured with 64 -> C channels, 4x4 kernels, 112x112:
# 2.5x for C = 3, 1.1x for 8, 1.0x for 16).
SCATTER_RUN = 8


class Im2col:
    name = "im2col"
    nonfinite_skips = ()

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        fig = figures("im2col")
        why_not = plain(geom)
        if why_not:
            return Refusal(self.name, why_not)
        fixed, row, rows = _sizes(geom, op, dtype, limit)
        run = {"forward": _forward, "input_grad": _input_grad, "filter_grad": _filter_grad}[op]
        if _pointwise(geom):  # one GEMM on x itself, thin when there are few output channels
            thin = thin_factor(min(geom.in_channels, geom.out_channels))
            seconds = geom.flops / (fig.GEMM_FLOPS_PER_S * thin) + fig.CALL_SECONDS
            # Channels-first, unpadded: one GEMM on the images side by side, (O, C) @ (C, N * S),
            # where the two block copies that line them up (runs of S samples) fit the budget.
            item, n, s = dtype.itemsize, geom.batch, math.prod(geom.out_spatial)
            lined_up = (geom.in_channels + geom.out_channels) * n * s * item if n > 1 else 0
            first = None
            if not any(lo or hi for lo, hi in geom.tight_padding) and fixed + lined_up <= limit:
                first = partial(_POINTWISE_FIRST[op], geom)
            return Prepared(self.name, seconds, fixed, partial(run, geom, rows, False), {"pointwise": True},
                            run_first=first, first_seconds=seconds + 2 * lined_up / fig.COPY_BYTES_PER_S,
                            first_workspace=lined_up)
        fused = _use_kernels(geom, dtype, planner)
        narrow = max(1.0, SCATTER_RUN / geom.in_channels) if op == "input_grad" and geom.in_channels else 1.0
        seconds = _raw_cost(geom, dtype) * (fig.FITTED_FUSED if fused else fig.FITTED)[op] * narrow
        return Prepared(self.name, seconds, fixed + row * rows, partial(run, geom, rows, fused),
                        {"rows": rows, "fused": fused})


def _raw_cost(geom: ConvGeometry, dtype: np.dtype) -> float:
    fig = figures("im2col")
    packed = geom.out_batch * math.prod(geom.out_spatial) * math.prod(geom.kernel)
    packed *= geom.in_channels * dtype.itemsize
    calls = math.prod(geom.kernel) * max(1, -(-packed // BLOCK_BYTES))
    # Each group's GEMM has the filter's output channels and its taps x input channels as its
    # short sides (the forward's output, the input gradient's contraction, the filter
    # gradient's output). Without this the forward's measured / estimated time was 0.91 with 256
    # output channels and 1.31-1.40 with 64 (benchmarks/calibrate.py).
    _, cg, og, t = geom.group_dims
    gemm = geom.flops / (fig.GEMM_FLOPS_PER_S * thin_factor(min(og, cg * t)))
    return gemm + 2 * packed / fig.COPY_BYTES_PER_S + fig.CALL_SECONDS + calls * fig.TAP_SECONDS


def _sizes(geom: ConvGeometry, op: Op, dtype: np.dtype, limit: int) -> tuple[int, int, int]:
    """(fixed bytes, bytes per packed row, rows per block) within ``limit``."""
    item = dtype.itemsize
    t = math.prod(geom.kernel)
    c = geom.in_channels
    padded = geom.batch * math.prod(geom.tight_padded) * c * item
    weights = t * geom.filter_in_channels * geom.out_channels * item
    fixed = padded + 2 * weights
    row = t * c * item * (2 if op == "input_grad" else 1) + geom.out_channels * item
    rows_total = geom.out_batch * math.prod(geom.out_spatial)
    check_fits(f"the padded input of {geom.x_shape('channels_last')}", padded, limit)
    room = (limit - fixed) // max(row, 1)
    if room < 1 and rows_total > 0:
        raise ValueError(
            f"one im2col row ({row:,} bytes) plus the padded input and filters "
            f"({fixed:,} bytes) exceed the workspace budget of {limit:,} bytes"
        )
    rows = max(1, min(rows_total, room, BLOCK_BYTES // max(row, 1)))
    return fixed, row, rows


def _forward(geom: ConvGeometry, rows: int, fused: bool, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    g, cg, og, t = geom.group_dims
    y = np.empty((geom.batch, *geom.out_spatial, geom.out_channels), dtype=x.dtype)
    if y.size == 0:
        return y
    if cg == 0:
        y.fill(0)
        return y
    xp = pad_or_crop(x, geom.tight_padding, empty=empty_for("im2col.x"))
    wg = _grouped_filter(w, g, t, cg, og)
    if _pointwise(geom):
        _threads.matmul(xp.reshape(-1, cg), wg[0], out=y.reshape(-1, og))
        return y
    for block, bshape in _blocks((geom.batch, *geom.out_spatial), rows):
        cols = _pack(xp, block, bshape, geom, g, cg, t, fused)
        yb = y[block].reshape(-1, g, og)
        if g == 1:
            _threads.matmul(cols[0], wg[0], out=yb[:, 0, :])
        else:
            yb[...] = _threads.matmul(cols, wg).transpose(1, 0, 2)
    return y


def _input_grad(geom: ConvGeometry, rows: int, fused: bool, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    g, cg, og, t = geom.group_dims
    if dy.size and cg and _pointwise(geom) and not any(lo or hi for lo, hi in geom.tight_padding):
        # Every sample of dx is written: no zeros first (zeroing 26 MB took a third of the call).
        dx = np.empty(geom.x_shape("channels_last"), dy.dtype)
        _threads.matmul(dy.reshape(-1, og), w.reshape(cg, og).T, out=dx.reshape(-1, cg))
        return dx
    dxp = padded_zeros(geom, dy.dtype)
    if dy.size and cg and _pointwise(geom):
        _threads.matmul(dy.reshape(-1, og), w.reshape(cg, og).T, out=dxp.reshape(-1, cg))
    elif dy.size and cg:
        wt = np.ascontiguousarray(_grouped_filter(w, g, t, cg, og).transpose(0, 2, 1))
        for block, bshape in _blocks((geom.batch, *geom.out_spatial), rows):
            dyb = dy[block].reshape(-1, g, og).transpose(1, 0, 2)
            dcols = _threads.matmul(dyb, wt).reshape(g, -1, t, cg)
            if fused:
                _kernels.col2im3d(dcols, _first_row(block, geom), *_as_3d(geom), as_3d(dxp))
                continue
            for ti, offset in enumerate(np.ndindex(*geom.kernel)):
                view = _window(dxp, block, offset, geom)
                dst = np.moveaxis(view.reshape(*view.shape[:-1], g, cg), -2, 0)
                dst += dcols[:, :, ti, :].reshape(g, *bshape, cg)
    return unpad(dxp, geom)


def _filter_grad(geom: ConvGeometry, rows: int, fused: bool, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    g, cg, og, t = geom.group_dims
    dwg = np.zeros((g, t * cg, og), dtype=x.dtype)
    if dy.size and cg and _pointwise(geom):
        xp = pad_or_crop(x, geom.tight_padding, empty=empty_for("im2col.x"))
        _threads.matmul(xp.reshape(-1, cg).T, dy.reshape(-1, og), out=dwg[0])
    elif dy.size and cg:
        xp = pad_or_crop(x, geom.tight_padding, empty=empty_for("im2col.x"))
        for block, bshape in _blocks((geom.batch, *geom.out_spatial), rows):
            cols = _pack(xp, block, bshape, geom, g, cg, t, fused)
            dyb = dy[block].reshape(-1, g, og).transpose(1, 0, 2)
            dwg += _threads.matmul(cols.transpose(0, 2, 1), dyb)
    # (G, T, Cg, Og) -> (*K, Cg, G * Og): output channel g * Og + j belongs to group g.
    dw = dwg.reshape(g, t, cg, og).transpose(1, 2, 0, 3)
    return np.ascontiguousarray(dw).reshape(*geom.kernel, cg, g * og)


# The channels-first pointwise ops line the images up side by side, (N, C, S) -> (C, N * S), a
# copy of runs of S contiguous samples, and run one GEMM: one GEMM per image took 2.5 ms at best
# but 255-304 ms in the median of back-to-back calls beside other CPU-bound work (8 x 256 -> 64
# channels, 56 x 56, two BLAS threads that each call waits for), against 29-32 ms channels-last.
def _side_by_side(a: np.ndarray) -> np.ndarray:
    """(N, C, S) -> (C, N * S), C-contiguous (a itself reshaped when N == 1)."""
    n, c, s = a.shape
    return a.reshape(c, s) if n == 1 else np.ascontiguousarray(a.transpose(1, 0, 2)).reshape(c, n * s)


def _one_by_one(a: np.ndarray, n: int, s: int) -> np.ndarray:
    """(C, N * S) -> (N, C, S), C-contiguous."""
    return np.ascontiguousarray(a.reshape(a.shape[0], n, s).transpose(1, 0, 2))


def _forward_first(geom: ConvGeometry, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pointwise y[n] (O, S) = w (O, C) @ x[n] (C, S), channels-first."""
    n, c, o, s = geom.batch, geom.in_channels, geom.out_channels, math.prod(geom.out_spatial)
    y = _threads.matmul(w.reshape(o, c), _side_by_side(x.reshape(n, c, s)))
    return _one_by_one(y, n, s).reshape(geom.y_shape())


def _input_grad_first(geom: ConvGeometry, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pointwise dx[n] (C, S) = w.T (C, O) @ dy[n] (O, S), channels-first."""
    n, c, o, s = geom.batch, geom.in_channels, geom.out_channels, math.prod(geom.out_spatial)
    dx = _threads.matmul(w.reshape(o, c).T, _side_by_side(dy.reshape(n, o, s)))
    return _one_by_one(dx, n, s).reshape(geom.x_shape())


def _filter_grad_first(geom: ConvGeometry, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Pointwise dw (O, C) = sum_n dy[n] (O, S) @ x[n].T (S, C), channels-first: one GEMM."""
    n, c, o, s = geom.batch, geom.in_channels, geom.out_channels, math.prod(geom.out_spatial)
    dw = _threads.matmul(_side_by_side(dy.reshape(n, o, s)), _side_by_side(x.reshape(n, c, s)).T)
    return np.ascontiguousarray(dw).reshape(geom.w_shape())


_POINTWISE_FIRST = {"forward": _forward_first, "input_grad": _input_grad_first,
                    "filter_grad": _filter_grad_first}


def _pointwise(geom: ConvGeometry) -> bool:
    """A 1x1 stride-1 ungrouped conv: the padded input *is* the im2col matrix, so it is one GEMM."""
    return (math.prod(geom.kernel) == 1 and all(s == 1 for s in geom.stride)
            and geom.feature_group_count == 1)


def _grouped_filter(w: np.ndarray, g: int, t: int, cg: int, og: int) -> np.ndarray:
    """(*K, Cg, G * Og) -> (G, T * Cg, Og), the per-group GEMM operand."""
    return np.ascontiguousarray(w.reshape(t, cg, g, og).transpose(2, 0, 1, 3)).reshape(g, t * cg, og)


def _window(xp: np.ndarray, block: tuple, offset: tuple[int, ...], geom: ConvGeometry) -> np.ndarray:
    """The samples of the padded input under kernel offset ``offset`` for the output ``block``."""
    index: list = [block[0]]
    for i, (t, s, d) in enumerate(zip(offset, geom.stride, geom.rhs_dilation)):
        part = block[i + 1] if i + 1 < len(block) else slice(None)
        if isinstance(part, int):
            index.append(part * s + t * d)
        else:
            a, b, _ = part.indices(geom.out_spatial[i])
            index.append(slice(a * s + t * d, (b - 1) * s + t * d + 1, s))
    return xp[tuple(index)]


def _as_3d(geom: ConvGeometry) -> tuple[int, ...]:
    """Output sizes, strides, dilations and kernel for the 3-D packing kernels: 2-D convs get a
    unit leading axis."""
    unit = (1,) * (3 - geom.rank)
    return (*unit, *geom.out_spatial, *unit, *geom.stride, *unit, *geom.rhs_dilation, *unit, *geom.kernel)


def _use_kernels(geom: ConvGeometry, dtype: np.dtype, planner: Planner) -> bool:
    """Pack with the compiled loops (2-D and 3-D) once they are loaded, or when the packing they
    speed up would take longer than loading them."""
    fig = figures("im2col")
    if geom.rank not in (2, 3) or dtype not in (np.float32, np.float64):
        return False
    packed = geom.out_batch * math.prod(geom.out_spatial) * math.prod(geom.kernel) * geom.in_channels
    penalty = planner.load_seconds(dtype, _kernels.im2col3d, _kernels.col2im3d)
    return penalty == 0 or penalty < packed * dtype.itemsize / fig.COPY_BYTES_PER_S


def _first_row(block: tuple, geom: ConvGeometry) -> int:
    """Flat index, in the (N, *out) output grid, of the first row of ``block``."""
    index = 0
    for i, size in enumerate((geom.batch, *geom.out_spatial)):
        part = block[i] if i < len(block) else slice(None)
        start = part if isinstance(part, int) else (part.start or 0)
        index = index * size + start
    return index


def _pack(
    xp: np.ndarray, block: tuple, bshape: tuple[int, ...], geom: ConvGeometry, g: int, cg: int, t: int,
    fused: bool = False,
) -> np.ndarray:
    """The im2col rows of ``block``: (G, rows, T * Cg), channels of group g contiguous."""
    rows = math.prod(bshape)
    cols = scratch("im2col.cols", (g, rows, t, cg), xp.dtype)
    if fused:
        _kernels.im2col3d(as_3d(xp), _first_row(block, geom), *_as_3d(geom), cols)
        return cols.reshape(g, rows, t * cg)
    for ti, offset in enumerate(np.ndindex(*geom.kernel)):
        view = _window(xp, block, offset, geom)
        src = np.moveaxis(view.reshape(*view.shape[:-1], g, cg), -2, 0)
        np.copyto(cols[:, :, ti, :].reshape(g, *bshape, cg), src)
    return cols.reshape(g, rows, t * cg)
