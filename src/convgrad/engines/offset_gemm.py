"""Stride-1 convolutions as GEMMs over kernel offsets on the flattened padded input.

With stride 1, flatten the padded input ``(N, *P, C)`` to rows ``(N * prod(P), C)``. Output
position ``q`` (indexed on the same padded grid) under kernel offset ``t`` reads row
``q + off(t)``, so for every offset the input operand is a *contiguous* slice of rows: each
offset is one BLAS GEMM, accumulated in place (beta = 1), with no im2col packing at all. The
price is computing the outputs on the padded grid and discarding the rows past the valid ones,
a factor prod(P) / prod(out) of extra work that the cost model charges. The input gradient is
the same loop scattering into the padded dx; the filter gradient accumulates x_rows.T @ dy_rows
per offset. Rows are processed in blocks that stay in cache across the offsets.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from .._budget import check_fits
from .._engine import Op, Planner, Prepared, Refusal
from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from ._common import gemm_for, padded_zeros, plain, unpad
from ._machine import figures
from ._threads import gemm_into

# Rows per block: the forward and input gradient keep a block of outputs in cache across the
# offsets; the filter gradient's GEMMs contract over rows, so longer blocks amortise each call.
BLOCK_BYTES = {"forward": 1024**2, "input_grad": 1024**2, "filter_grad": 4 * 1024**2}
# The cost model (figures in calibration.json): the GEMMs at BLAS's rate (an eighth of it for
# grouped and integer problems, through NumPy's batched matmul), the padded copies, and Python's
# overhead per call and per GEMM (one per kernel offset and row block), times the fitted factor.

# Its gradients multiply operands by zeros that the direct sum never reads (inf * 0 = NaN).
_EXTRA_ZEROS = "multiplies by zeros outside the direct sum, which are NaN for an inf"


class OffsetGemm:
    name = "offset_gemm"
    nonfinite_skips = (("input_grad", _EXTRA_ZEROS), ("filter_grad", _EXTRA_ZEROS))

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        fig = figures("offset_gemm")
        why_not = "needs stride 1" if any(s != 1 for s in geom.stride) else plain(geom)
        if why_not:
            return Refusal(self.name, why_not)
        g, cg, og, t = geom.group_dims
        item = dtype.itemsize
        rows = geom.batch * math.prod(geom.tight_padded)
        workspace = rows * (geom.in_channels + geom.out_channels) * item
        if op == "input_grad":
            workspace += rows * geom.in_channels * item
        check_fits(f"the padded {op} operands of {geom.x_shape('channels_last')}", workspace, limit)
        flops = 2 * rows * t * cg * og * g
        # Grouped and integer problems go through NumPy's batched matmul, far from BLAS peak.
        rate = fig.GEMM_FLOPS_PER_S if (g == 1 and gemm_for(dtype)) else fig.GEMM_FLOPS_PER_S / 8
        moved = rows * (geom.in_channels + geom.out_channels) * item
        blocks = max(1, -(-moved // BLOCK_BYTES[op]))
        seconds = (flops / rate + 2 * moved / fig.COPY_BYTES_PER_S + fig.CALL_SECONDS
                   + blocks * t * fig.GEMM_CALL_SECONDS) * fig.FITTED[op]
        run = {"forward": _forward, "input_grad": _input_grad, "filter_grad": _filter_grad}[op]
        return Prepared(self.name, seconds, workspace, partial(run, geom), {"row_blocks": blocks})


def _forward(geom: ConvGeometry, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    g, cg, og, t = geom.group_dims
    o = geom.out_channels
    y = np.zeros((geom.batch, *geom.tight_padded, o), dtype=x.dtype)
    if y.size and cg:
        xf = pad_or_crop(x, geom.tight_padding).reshape(-1, geom.in_channels)
        yf = y.reshape(-1, o)
        offsets, blocks = _sweep(geom, "forward", x.itemsize)
        wf = np.ascontiguousarray(w.reshape(t, cg, o))
        gemm = gemm_for(x.dtype)
        for r0, r1 in blocks:
            if g == 1 and gemm is not None:
                c = yf[r0:r1].T  # (O, R) Fortran-ordered: BLAS writes the rows in place
                for i, off in enumerate(offsets):
                    gemm_into(gemm, wf[i].T, xf[r0 + off : r1 + off].T, c, beta=1.0)
            else:
                yb = yf[r0:r1].reshape(-1, g, og)
                for i, off in enumerate(offsets):
                    yb += _grouped(xf[r0 + off : r1 + off].reshape(-1, g, cg), wf[i], g)
    return np.ascontiguousarray(y[(slice(None), *(slice(0, n) for n in geom.out_spatial))])


def _input_grad(geom: ConvGeometry, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    g, cg, og, t = geom.group_dims
    c_in = geom.in_channels
    dx = padded_zeros(geom, dy.dtype)
    if dy.size and cg:
        dyf = _embed(dy, geom.tight_padded).reshape(-1, geom.out_channels)
        dxf = dx.reshape(-1, c_in)
        offsets, blocks = _sweep(geom, "input_grad", dy.itemsize)
        wf = np.ascontiguousarray(w.reshape(t, cg, geom.out_channels))
        gemm = gemm_for(dy.dtype)
        if g == 1 and gemm is not None:
            wcols = [np.asfortranarray(wf[i]) for i in range(t)]  # (C, O) per offset
        for r0, r1 in blocks:
            if g == 1 and gemm is not None:
                b = dyf[r0:r1].T
                for i, off in enumerate(offsets):
                    gemm_into(gemm, wcols[i], b, dxf[r0 + off : r1 + off].T, beta=1.0)
            else:
                dyb = dyf[r0:r1].reshape(-1, g, og)
                wt = wf.reshape(t, cg, g, og).transpose(0, 3, 2, 1)  # (T, Og, G, Cg)
                for i, off in enumerate(offsets):
                    dxb = dxf[r0 + off : r1 + off].reshape(-1, g, cg)
                    dxb += _grouped(dyb, wt[i].reshape(og, g * cg), g)
    return unpad(dx, geom)


def _filter_grad(geom: ConvGeometry, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    g, cg, og, t = geom.group_dims
    o = geom.out_channels
    dw = np.zeros((t, cg, o), dtype=x.dtype)
    if dy.size and cg:
        xf = pad_or_crop(x, geom.tight_padding).reshape(-1, geom.in_channels)
        dyf = _embed(dy, geom.tight_padded).reshape(-1, o)
        offsets, blocks = _sweep(geom, "filter_grad", x.itemsize)
        gemm = gemm_for(x.dtype)
        dwg = dw.reshape(t, cg, g, og)
        for r0, r1 in blocks:
            if g == 1 and gemm is not None:
                a = dyf[r0:r1].T  # (O, R)
                for i, off in enumerate(offsets):
                    gemm_into(gemm, a, xf[r0 + off : r1 + off].T, dw[i].T, beta=1.0, trans_b=1)
            else:
                dyb = dyf[r0:r1].reshape(-1, g, og)
                for i, off in enumerate(offsets):
                    xb = xf[r0 + off : r1 + off].reshape(-1, g, cg)
                    dwg[i] += np.einsum("rgc,rgo->cgo", xb, dyb)
    return dw.reshape(*geom.kernel, cg, o)


def _sweep(geom: ConvGeometry, op: Op, itemsize: int) -> tuple[list[int], list[tuple[int, int]]]:
    """The row offset of each kernel offset, and the blocks of output rows that cover every valid
    output (rows on the padded grid)."""
    padded = geom.tight_padded
    steps = [math.prod(padded[i + 1 :]) for i in range(len(padded))]
    offsets = [sum(ti * d * st for ti, d, st in zip(t, geom.rhs_dilation, steps))
               for t in np.ndindex(*geom.kernel)]
    count = geom.batch * math.prod(padded) - offsets[-1]
    rows = max(256, BLOCK_BYTES[op] // max(1, (geom.in_channels + geom.out_channels) * itemsize))
    return offsets, [(r, min(r + rows, count)) for r in range(0, count, rows)]


def _embed(dy: np.ndarray, padded: tuple[int, ...]) -> np.ndarray:
    """dy ``(N, *out, O)`` placed at the origin of a zero ``(N, *padded, O)`` grid."""
    out = np.zeros((dy.shape[0], *padded, dy.shape[-1]), dtype=dy.dtype)
    out[(slice(None), *(slice(0, n) for n in dy.shape[1:-1]))] = dy
    return out


def _grouped(a: np.ndarray, w: np.ndarray, g: int) -> np.ndarray:
    """Per-group product: a ``(R, G, Ci)`` with w ``(Ci, G * Co)`` -> ``(R, G, Co)``."""
    ci = a.shape[-1]
    wg = w.reshape(ci, g, -1)
    if ci == 1:  # depthwise: a broadcast multiply beats G tiny matmuls
        return a * wg[0]
    return np.einsum("rgc,cgo->rgo", a, wg)
