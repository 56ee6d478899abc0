"""The filter gradient as one GEMM over a split of the kernel axes.

im2col computes dw as X.T @ dy with X ``(rows, T * C)`` and dy ``(rows, O)``: when O is small
(a 3-D conv with 16 channels) the GEMM is a thin "inner product" that BLAS runs far below peak,
and X repeats every input sample T times. Here the kernel axes are split in two sets. Offsets
along the *x-side* axes are packed with x as in im2col; offsets along the *dy-side* axes
(stride 1 there) are packed with dy instead, shifted the opposite way, because

    dw[t] = sum_q xp[q + t] dy[q] = sum_p xp[p + t_x] dy[p - t_y]      (p = q + t_y).

So ``dw = A.T @ B`` with A ``(rows, T_x * C)`` and B ``(rows, T_y * O)`` on the grid of p, which
is the padded size along the dy-side axes: a squarer GEMM (e.g. 144 x 48 instead of 432 x 16)
with less to pack. Rows are packed a cache-sized block at a time into reused buffers.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._budget import check_fits
from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from ._common import blocks as _blocks
from ._common import gemm_for, tight_padded

# Bytes of A and B packed per block: they stay in the last-level cache for the GEMM that reads them.
BLOCK_BYTES = 4 * 1024**2
GEMM_FLOPS_PER_S = 150e9
COPY_BYTES_PER_S = 5e9
CALL_SECONDS = 40e-6
BLOCK_SECONDS = 20e-6
# BLAS runs thin GEMMs far below peak: below this many columns (or rows) of output, the rate is
# scaled by sqrt(columns / THIN) (fits 432 x 16 at ~0.3 and 144 x 48 at ~0.6 of peak here).
THIN = 128

# Measured time / the estimate above (benchmarks/calibrate.py, 2-core AVX-512, 2026-11-27).
FITTED = {"filter_grad": 0.66}


class Split:
    name = "split"

    def unsupported(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> str | None:
        if op != "filter_grad":
            return "computes the filter gradient only"
        if geom.feature_group_count != 1:
            return "needs groups == 1"
        if geom.batch_group_count != 1 or any(v != 1 for v in geom.lhs_dilation):
            return "needs batch_group_count == 1 and no input dilation"
        if not _candidates(geom):
            return "needs an axis with stride 1 and a kernel longer than 1"
        return None

    def cost(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> float:
        return min(_split_cost(geom, s, np.dtype(dtype)) for s in _candidates(geom)) * FITTED[op]

    def workspace(self, geom: ConvGeometry, op: str, dtype: np.dtype, limit: int) -> int:
        item = np.dtype(dtype).itemsize
        dy_side = _best_split(geom, np.dtype(dtype))
        padded = geom.batch * math.prod(tight_padded(geom)) * geom.in_channels * item
        dy_padded = geom.batch * math.prod(_dy_padded(geom, dy_side)) * geom.out_channels * item
        m, n = _gemm_dims(geom, dy_side)
        check_fits(f"the padded operands of {geom.x_shape('channels_last')}", padded + dy_padded, limit)
        total = padded + dy_padded + 2 * m * n * item + _block_rows(geom, dy_side, item) * (m + n) * item
        check_fits("the split-GEMM blocks", total, limit)
        return total

    def forward(self, geom: ConvGeometry, x: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray:
        raise NotImplementedError("the split engine computes the filter gradient only")

    def input_grad(self, geom: ConvGeometry, dy: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray:
        raise NotImplementedError("the split engine computes the filter gradient only")

    def filter_grad(self, geom: ConvGeometry, x: np.ndarray, dy: np.ndarray, limit: int) -> np.ndarray:
        self.workspace(geom, "filter_grad", x.dtype, limit)
        dy_side = _best_split(geom, x.dtype)
        r = geom.rank
        c, o = geom.in_channels, geom.out_channels
        x_side = [i for i in range(r) if i not in dy_side]
        kx = [geom.kernel[i] for i in x_side]
        ky = [geom.kernel[i] for i in dy_side]
        m, n = _gemm_dims(geom, dy_side)
        dw = np.zeros((m, n), dtype=x.dtype)
        if dy.size and c and o:
            grid = (geom.batch, *_grid(geom, dy_side))
            xp = pad_or_crop(x, geom.tight_padding)
            # A[n, p, t_x, c] = xp[n, p (dy-side) | p * s + t * d (x-side), c]
            st = xp.strides
            a_view = as_strided(
                xp, (*grid, *kx, c),
                (st[0], *(st[i + 1] * (1 if i in dy_side else geom.stride[i]) for i in range(r)),
                 *(st[i + 1] * geom.rhs_dilation[i] for i in x_side), st[-1]),
                writeable=False)
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
                    r_ = gemm(1.0, b2.T, a2.T, beta=1.0, c=dw.T, overwrite_c=1, trans_b=1)
                    if not np.may_share_memory(r_, dw):
                        dw[...] = r_.T
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


def _candidates(geom: ConvGeometry) -> list[tuple[int, ...]]:
    """Every non-empty set of dy-side axes: stride 1 and a kernel longer than 1 on each."""
    axes = [i for i in range(geom.rank) if geom.stride[i] == 1 and geom.kernel[i] > 1]
    return [s for k in range(1, len(axes) + 1) for s in itertools.combinations(axes, k)]


def _best_split(geom: ConvGeometry, dtype: np.dtype) -> tuple[int, ...]:
    return min(_candidates(geom), key=lambda s: _split_cost(geom, s, dtype))


def _gemm_dims(geom: ConvGeometry, dy_side: tuple[int, ...]) -> tuple[int, int]:
    ty = math.prod(geom.kernel[i] for i in dy_side)
    return geom.in_channels * math.prod(geom.kernel) // ty, geom.out_channels * ty


def _grid(geom: ConvGeometry, dy_side: tuple[int, ...]) -> tuple[int, ...]:
    """The positions p: the padded extent along dy-side axes, the output extent elsewhere."""
    padded = tight_padded(geom)
    return tuple(padded[i] if i in dy_side else geom.out_spatial[i] for i in range(geom.rank))


def _dy_padded(geom: ConvGeometry, dy_side: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(o + (2 * (k - 1) * d if i in dy_side else 0)
                 for i, (o, k, d) in enumerate(zip(geom.out_spatial, geom.kernel, geom.rhs_dilation)))


def _block_rows(geom: ConvGeometry, dy_side: tuple[int, ...], itemsize: int) -> int:
    m, n = _gemm_dims(geom, dy_side)
    return max(64, BLOCK_BYTES // max(1, (m + n) * itemsize))


def _split_cost(geom: ConvGeometry, dy_side: tuple[int, ...], dtype: np.dtype) -> float:
    m, n = _gemm_dims(geom, dy_side)
    rows = geom.batch * math.prod(_grid(geom, dy_side))
    thin = min(1.0, math.sqrt(max(1, min(m, n)) / THIN))
    rate = GEMM_FLOPS_PER_S * thin if gemm_for(dtype) is not None else GEMM_FLOPS_PER_S / 8
    packed = rows * (m + n) * dtype.itemsize
    blocks = max(1, -(-packed // BLOCK_BYTES))
    return 2 * rows * m * n / rate + 2 * packed / COPY_BYTES_PER_S + CALL_SECONDS + blocks * BLOCK_SECONDS
