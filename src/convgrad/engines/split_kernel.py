"""Convolutions as one squarer GEMM over a split of the kernel axes.

im2col computes dw as X.T @ dy with X ``(rows, T * C)`` and dy ``(rows, O)``: when O is small
(a 3-D conv with 16 channels) the GEMM is a thin "inner product" that BLAS runs far below peak,
and X repeats every input sample T times. Here the kernel axes are split in two sets. Offsets
along the *x-side* axes are packed with x as in im2col; offsets along the *dy-side* axes
(stride 1 there) are packed with dy instead, shifted the opposite way, because

    dw[t] = sum_q xp[q + t] dy[q] = sum_p xp[p + t_x] dy[p - t_y]      (p = q + t_y).

So ``dw = A.T @ B`` with A ``(rows, T_x * C)`` and B ``(rows, T_y * O)`` on the grid of p, which
is the padded size along the dy-side axes: a squarer GEMM (e.g. 144 x 48 instead of 432 x 16)
with less to pack. Rows are packed a cache-sized block at a time into reused buffers.

The forward uses the same split the other way round, with the dy-side axes a leading prefix:
``Z = A @ W2`` with W2 ``(T_x * C, T_y * O)`` gives every output row's partial sums for each
dy-side offset, and ``y[q] = sum_t Z[q + t, t]`` adds T_y shifted slices of Z. Its GEMM has
T_y * O columns instead of O, and A packs T_x instead of T samples per input. The input gradient
is the transpose: dZ holds the shifted copies of dy, ``dA = dZ @ W2.T``, and dA is scattered
back through the x-side windows. With the leading axes flattened into rows, the shifts are row
offsets; rows computed across an image boundary land in the padded rows that are cropped.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._budget import check_fits
from .._engine import Op, Planner, Prepared, Refusal
from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from ._common import blocks as _blocks
from ._common import gemm_for, plain, thin_factor, unpad
from ._machine import figures
from ._threads import gemm_into, matmul

# Bytes of A and B packed per block: they stay in the last-level cache for the GEMM that reads them.
BLOCK_BYTES = 4 * 1024**2

# The cost model (figures in calibration.json): packing and one GEMM, slower when thin, and
# Python's overhead per call and per block, times the fitted factor per op.

# Its gradients multiply operands by zeros that the direct sum never reads (inf * 0 = NaN).
_EXTRA_ZEROS = "multiplies by zeros outside the direct sum, which are NaN for an inf"


class SplitKernel:
    name = "split_kernel"
    nonfinite_skips = (("input_grad", _EXTRA_ZEROS), ("filter_grad", _EXTRA_ZEROS))

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        fig = figures("split_kernel")
        why_not = "needs groups == 1" if geom.feature_group_count != 1 else plain(geom)
        if why_not:
            return Refusal(self.name, why_not)
        item = dtype.itemsize
        if op == "filter_grad":
            if not _candidates(geom):
                return Refusal(self.name, "needs an axis with stride 1 and a kernel longer than 1")
            costs = {s: _split_cost(geom, s, dtype) for s in _candidates(geom)}
            dy_side = min(costs, key=costs.__getitem__)
            padded = geom.batch * math.prod(geom.tight_padded) * geom.in_channels * item
            dy_sizes = [o + (2 * (k - 1) * d if i in dy_side else 0)
                        for i, (o, k, d) in enumerate(zip(geom.out_spatial, geom.kernel, geom.rhs_dilation))]
            dy_padded = geom.batch * math.prod(dy_sizes) * geom.out_channels * item
            m, n = _gemm_dims(geom, dy_side)
            check_fits(f"the padded operands of {geom.x_shape('channels_last')}", padded + dy_padded, limit)
            total = padded + dy_padded + 2 * m * n * item + _block_rows(geom, dy_side, item) * (m + n) * item
            check_fits("the split-GEMM blocks", total, limit)
            return Prepared(self.name, costs[dy_side] * fig.FITTED[op], total,
                            partial(_filter_grad, geom, dy_side), {"dy_side": dy_side})
        if not _prefixes(geom):
            return Refusal(self.name, "needs stride 1 and a kernel longer than 1 on the first spatial axis")
        costs = {m: _prefix_cost(geom, m, dtype) for m in _prefixes(geom)}
        m = min(costs, key=costs.__getitem__)
        outer, inner = _outer_rows(geom, m)
        k, n = _gemm_dims(geom, tuple(range(m)))
        # the padded x (or dx), y (or dy) on the same grid, the blocks of A and Z
        grids = outer * (math.prod(geom.tight_padded[m:]) * geom.in_channels + inner * geom.out_channels)
        check_fits(f"the padded operands of {geom.x_shape('channels_last')}", grids * item, limit)
        total = grids * item + _prefix_block_rows(geom, m, item) * inner * (k + n) * item
        check_fits("the split-GEMM blocks", total, limit)
        run = _forward if op == "forward" else _input_grad
        return Prepared(self.name, costs[m] * fig.FITTED[op], total, partial(run, geom, m), {"prefix": m})


def _forward(geom: ConvGeometry, m: int, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    c, o = geom.in_channels, geom.out_channels
    outer, inner = _outer_rows(geom, m)
    kx, grid_x = geom.kernel[m:], geom.out_spatial[m:]
    offsets = _row_offsets(geom, m)
    halo = offsets[-1]
    w2 = _split_filter(w, m)
    ty = math.prod(geom.kernel[:m])
    y_ext = np.empty((outer, *grid_x, o), dtype=x.dtype) if c else np.zeros((outer, *grid_x, o), x.dtype)
    if y_ext.size and c:
        # A[R, *q_x, *t_x, c], R: n and the first m axes flattened (xp is C-contiguous: a view)
        a_view = _x_windows(pad_or_crop(x, geom.tight_padding), geom, tuple(range(m))).reshape(
            outer, *grid_x, *kx, c)
        hb = _prefix_block_rows(geom, m, x.itemsize)
        a_buf = np.empty((hb + halo) * inner * w2.shape[0], dtype=x.dtype)
        z_buf = np.empty((hb + halo) * inner * w2.shape[1], dtype=x.dtype)
        for h0 in range(0, outer - halo, hb):
            h1 = min(outer - halo, h0 + hb)
            rows = (h1 - h0 + halo) * inner
            a = a_buf[: rows * w2.shape[0]].reshape(rows, -1)
            z = z_buf[: rows * w2.shape[1]].reshape(rows, -1)
            np.copyto(a.reshape(h1 - h0 + halo, *grid_x, *kx, c), a_view[h0 : h1 + halo])
            matmul(a, w2, out=z)
            z3 = z.reshape(h1 - h0 + halo, inner, ty, o)
            yb = y_ext[h0:h1].reshape(h1 - h0, inner, o)
            n_rows = h1 - h0
            np.add(z3[offsets[0] : offsets[0] + n_rows, :, 0], z3[offsets[1] : offsets[1] + n_rows, :, 1],
                   out=yb)
            for j in range(2, ty):
                yb += z3[offsets[j] : offsets[j] + n_rows, :, j]
    y = y_ext.reshape(geom.batch, *geom.tight_padded[:m], *grid_x, o)
    return np.ascontiguousarray(y[(slice(None), *(slice(0, n) for n in geom.out_spatial[:m]))])


def _input_grad(geom: ConvGeometry, m: int, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    r, c, o = geom.rank, geom.in_channels, geom.out_channels
    padded = geom.tight_padded
    outer, inner = _outer_rows(geom, m)
    kx, grid_x = geom.kernel[m:], geom.out_spatial[m:]
    offsets = _row_offsets(geom, m)
    dxp = np.zeros((outer, *padded[m:], c), dtype=dy.dtype)
    if dy.size and c:
        w2t = np.ascontiguousarray(_split_filter(w, m).T)  # (T_y * O, T_x * C)
        ty = math.prod(geom.kernel[:m])
        # dy on the grid of the rows: zeros past the outputs along the first m axes.
        dy_ext = pad_or_crop(dy, tuple((0, p - n) for p, n in zip(padded[:m], geom.out_spatial[:m]))
                             + ((0, 0),) * (r - m)).reshape(outer, inner, o)
        hb = _prefix_block_rows(geom, m, dy.itemsize)
        dz_buf = np.empty(hb * inner * w2t.shape[0], dtype=dy.dtype)
        da_buf = np.empty(hb * inner * w2t.shape[1], dtype=dy.dtype)
        axes = list(zip(geom.rhs_dilation[m:], grid_x, geom.stride[m:]))
        windows = [tuple(slice(t * d, t * d + (n - 1) * s + 1, s) for t, (d, n, s) in zip(tx, axes))
                   for tx in np.ndindex(*kx)]
        for h0 in range(0, outer, hb):
            h1 = min(outer, h0 + hb)
            dz = dz_buf[: (h1 - h0) * inner * w2t.shape[0]].reshape(h1 - h0, inner, ty, o)
            for j, off in enumerate(offsets):  # dZ[R, :, j] = dy[R - off(j)], zero before row 0
                lo = min(max(off - h0, 0), h1 - h0)
                dz[:lo, :, j] = 0
                dz[lo:, :, j] = dy_ext[h0 + lo - off : h1 - off]
            da = da_buf[: (h1 - h0) * inner * w2t.shape[1]].reshape((h1 - h0) * inner, -1)
            matmul(dz.reshape((h1 - h0) * inner, -1), w2t, out=da)
            da = da.reshape(h1 - h0, *grid_x, len(windows), c)
            block = dxp[h0:h1]
            for j, window in enumerate(windows):
                block[(slice(None), *window)] += da[..., j, :]
    dxp = dxp.reshape(geom.batch, *padded, c)
    return unpad(dxp, geom)


def _filter_grad(geom: ConvGeometry, dy_side: tuple[int, ...], x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    r = geom.rank
    c, o = geom.in_channels, geom.out_channels
    x_side = [i for i in range(r) if i not in dy_side]
    kx = [geom.kernel[i] for i in x_side]
    ky = [geom.kernel[i] for i in dy_side]
    m, n = _gemm_dims(geom, dy_side)
    dw = np.zeros((m, n), dtype=x.dtype)
    if dy.size and c and o:
        grid = (geom.batch, *_grid(geom, dy_side))
        a_view = _x_windows(pad_or_crop(x, geom.tight_padding), geom, dy_side)
        # B[n, p, t', o] = dyp[n, p + t' * d, o] = dy[n, p - (k - 1 - t') * d, o]: taps reversed.
        dyp = pad_or_crop(dy, tuple(((k - 1) * d, (k - 1) * d) if i in dy_side else (0, 0)
                                    for i, (k, d) in enumerate(zip(geom.kernel, geom.rhs_dilation))))
        sd = dyp.strides
        b_view = as_strided(
            dyp, (*grid, *ky, o),
            (sd[0], *(sd[i + 1] for i in range(r)), *(sd[i + 1] * geom.rhs_dilation[i] for i in dy_side),
             sd[-1]),
            writeable=False)
        rows = _block_rows(geom, dy_side, x.itemsize)
        a_buf = np.empty(rows * m, dtype=x.dtype)
        b_buf = np.empty(rows * n, dtype=x.dtype)
        gemm = gemm_for(x.dtype)
        for block, bshape in _blocks(grid, rows):
            count = math.prod(bshape)
            a = a_buf[: count * m].reshape(*bshape, *kx, c)
            b = b_buf[: count * n].reshape(*bshape, *ky, o)
            np.copyto(a, a_view[block])
            np.copyto(b, b_view[block])
            a2, b2 = a.reshape(count, m), b.reshape(count, n)
            if gemm is not None:  # dw += a2.T @ b2 in place (dw.T is Fortran-ordered)
                gemm_into(gemm, b2.T, a2.T, dw.T, beta=1.0, trans_b=1)
            else:
                dw += a2.T @ b2
    # (*kx, C, *ky reversed, O) -> (*K, C, O)
    out = dw.reshape(*kx, c, *ky, o)
    ny = len(ky)
    ky_axes = tuple(range(len(kx) + 1, len(kx) + 1 + ny))
    out = np.flip(out, axis=ky_axes)
    order = [0] * r
    for j, i in enumerate(x_side):
        order[i] = j
    for j, i in enumerate(dy_side):
        order[i] = ky_axes[j]
    return np.ascontiguousarray(out.transpose(*order, len(kx), out.ndim - 1))


def _x_windows(xp: np.ndarray, geom: ConvGeometry, dy_side: tuple[int, ...]) -> np.ndarray:
    """A[n, *p, *t_x, c] = xp[n, p (dy-side axes) | p * s + t * d (x-side axes), c], a read-only view
    of the padded x on the grid of p (see ``_grid``)."""
    st, x_side = xp.strides, [i for i in range(geom.rank) if i not in dy_side]
    return as_strided(
        xp, (geom.batch, *_grid(geom, dy_side), *(geom.kernel[i] for i in x_side), xp.shape[-1]),
        (st[0], *(st[i + 1] * (1 if i in dy_side else geom.stride[i]) for i in range(geom.rank)),
         *(st[i + 1] * geom.rhs_dilation[i] for i in x_side), st[-1]),
        writeable=False)


def _candidates(geom: ConvGeometry) -> list[tuple[int, ...]]:
    """Every non-empty set of dy-side axes: stride 1 and a kernel longer than 1 on each."""
    axes = [i for i in range(geom.rank) if geom.stride[i] == 1 and geom.kernel[i] > 1]
    return [s for k in range(1, len(axes) + 1) for s in itertools.combinations(axes, k)]


def _gemm_dims(geom: ConvGeometry, dy_side: tuple[int, ...]) -> tuple[int, int]:
    ty = math.prod(geom.kernel[i] for i in dy_side)
    return geom.in_channels * math.prod(geom.kernel) // ty, geom.out_channels * ty


def _grid(geom: ConvGeometry, dy_side: tuple[int, ...]) -> tuple[int, ...]:
    """The positions p: the padded extent along dy-side axes, the output extent elsewhere."""
    padded = geom.tight_padded
    return tuple(padded[i] if i in dy_side else geom.out_spatial[i] for i in range(geom.rank))


def _block_rows(geom: ConvGeometry, dy_side: tuple[int, ...], itemsize: int) -> int:
    m, n = _gemm_dims(geom, dy_side)
    return max(64, BLOCK_BYTES // max(1, (m + n) * itemsize))


def _split_cost(geom: ConvGeometry, dy_side: tuple[int, ...], dtype: np.dtype) -> float:
    m, n = _gemm_dims(geom, dy_side)
    rows = geom.batch * math.prod(_grid(geom, dy_side))
    return _gemm_seconds(rows, m, n, dtype, max(1, -(-rows * (m + n) * dtype.itemsize // BLOCK_BYTES)))


def _gemm_seconds(rows: int, k: int, n: int, dtype: np.dtype, blocks: int) -> float:
    """Packing ``rows`` rows of k + n values and one (rows x k) @ (k x n) product, in ``blocks``."""
    fig = figures("split_kernel")
    rate = fig.GEMM_FLOPS_PER_S * (thin_factor(min(k, n)) if gemm_for(dtype) is not None else 1 / 8)
    packed = rows * (k + n) * dtype.itemsize
    calls = fig.CALL_SECONDS + blocks * fig.BLOCK_SECONDS
    return 2 * rows * k * n / rate + 2 * packed / fig.COPY_BYTES_PER_S + calls


# --- forward and input gradient: the dy-side axes are the first m spatial axes -------------------
def _prefixes(geom: ConvGeometry) -> list[int]:
    """Each m such that the first m spatial axes have stride 1 and some kernel among them is longer than 1."""
    out = []
    for m in range(1, geom.rank + 1):
        if geom.stride[m - 1] != 1:
            break
        if math.prod(geom.kernel[:m]) > 1:
            out.append(m)
    return out


def _outer_rows(geom: ConvGeometry, m: int) -> tuple[int, int]:
    """(rows: N times the padded extents of the first m axes, positions per row: the rest of the output)."""
    return geom.batch * math.prod(geom.tight_padded[:m]), math.prod(geom.out_spatial[m:])


def _row_offsets(geom: ConvGeometry, m: int) -> list[int]:
    """Row offset of each offset of the first m kernel axes, in the order of W2's columns."""
    padded = geom.tight_padded[:m]
    steps = [math.prod(padded[i + 1 :]) for i in range(m)]
    return [sum(t * d * s for t, d, s in zip(ty, geom.rhs_dilation, steps))
            for ty in itertools.product(*(range(k) for k in geom.kernel[:m]))]


def _halo(geom: ConvGeometry, m: int) -> int:
    """``_row_offsets(geom, m)[-1]`` without listing every offset: the planner asks for it before
    the budget check, and a kernel of 65536 x 6 taps took seconds to list."""
    padded = geom.tight_padded[:m]
    return sum((k - 1) * d * math.prod(padded[i + 1:])
               for i, (k, d) in enumerate(zip(geom.kernel[:m], geom.rhs_dilation)))


def _split_filter(w: np.ndarray, m: int) -> np.ndarray:
    """(*K, C, O) -> W2 ``(T_x * C, T_y * O)``: x-side offsets and C as rows, the first m as columns."""
    r = w.ndim - 2
    order = (*range(m, r), r, *range(m), r + 1)
    t_y = math.prod(w.shape[:m])
    return np.ascontiguousarray(w.transpose(order)).reshape(math.prod(w.shape[m:-1]), t_y * w.shape[-1])


def _prefix_block_rows(geom: ConvGeometry, m: int, itemsize: int) -> int:
    """Rows per block: A and Z of a block in about BLOCK_BYTES, and at least 4x the halo."""
    k, n = _gemm_dims(geom, tuple(range(m)))
    _, inner = _outer_rows(geom, m)
    halo = _halo(geom, m)  # how many rows past a block its Z rows reach
    return max(1, 4 * halo, BLOCK_BYTES // max(1, inner * (k + n) * itemsize))


def _prefix_cost(geom: ConvGeometry, m: int, dtype: np.dtype) -> float:
    k, n = _gemm_dims(geom, tuple(range(m)))
    outer, inner = _outer_rows(geom, m)
    halo = _halo(geom, m)
    hb = _prefix_block_rows(geom, m, dtype.itemsize)
    blocks = max(1, -(-outer // hb))
    return _gemm_seconds((outer + halo * blocks) * inner, k, n, dtype, blocks)
