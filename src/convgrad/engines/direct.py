"""Direct loops compiled by Numba for depthwise 2-D convolutions (groups == C, any multiplier).

With one input channel per group a convolution has no channel contraction to hand to BLAS: every
GEMM-based formulation degenerates into elementwise passes over memory. A fused loop reads each
input sample once per tap from cache instead.
"""

from __future__ import annotations

import numpy as np

from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from . import _kernels
from ._common import group_dims

# A fused loop does about one multiply-add per cycle per lane; this is its measured throughput.
FLOPS_PER_S = 25e9
CALL_SECONDS = 30e-6

# Measured time / the estimate above, per op: the median over benchmarks/calibrate.py's shapes
# (2-core AVX-512 machine, 2026-11-27). Rerun it and refit on another machine kind.
FITTED = {'forward': 3.47, 'input_grad': 3.51, 'filter_grad': 3.04}


class Direct:
    name = "direct"

    def unsupported(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> str | None:
        if geom.rank != 2:
            return "compiled for 2-D only"
        if np.dtype(dtype) not in (np.float32, np.float64):
            return "compiled for float32 and float64"
        if geom.filter_in_channels != 1 or geom.feature_group_count != geom.in_channels:
            return "needs a depthwise conv (groups == in_channels)"
        if geom.batch_group_count != 1 or any(v != 1 for v in geom.lhs_dilation):
            return "needs batch_group_count == 1 and no input dilation"
        return None

    def _kernel(self, op: str):  # type: ignore[no-untyped-def]
        return {"forward": _kernels.depthwise2d_forward, "input_grad": _kernels.depthwise2d_input_grad,
                "filter_grad": _kernels.depthwise2d_filter_grad}[op]

    def cost(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> float:
        return self._raw_cost(geom, op, dtype) * FITTED[op]

    def _raw_cost(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> float:
        return geom.flops / FLOPS_PER_S + CALL_SECONDS + _kernels.compile_penalty(dtype, self._kernel(op))

    def workspace(self, geom: ConvGeometry, op: str, dtype: np.dtype, limit: int) -> int:
        from .._budget import check_fits

        padded = geom.batch * geom.in_channels * np.dtype(dtype).itemsize
        for n, (lo, hi) in zip(geom.in_spatial, geom.tight_padding):
            padded *= n + lo + hi
        check_fits(f"the padded input of {geom.x_shape('channels_last')}", padded, limit)
        return padded

    def forward(self, geom: ConvGeometry, x: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray:
        self.workspace(geom, "forward", x.dtype, limit)
        y = np.empty((geom.batch, *geom.out_spatial, geom.out_channels), dtype=x.dtype)
        if y.size and geom.in_channels:
            # The kernel skips taps outside x, so padding is never materialised: only the samples
            # of x the windows can reach are passed (crops), with the leading pad as an offset.
            index = [slice(None)]
            for n, (lo, hi) in zip(geom.in_spatial, geom.tight_padding):
                start = max(-lo, 0)
                index.append(slice(start, max(start, n + min(hi, 0))))
            xc = np.ascontiguousarray(x[(*index, slice(None))])
            pads = [max(lo, 0) for lo, _ in geom.tight_padding]
            w2 = np.ascontiguousarray(w.reshape(*geom.kernel, geom.out_channels))
            _kernels.depthwise2d_forward(xc, w2, *pads, *geom.stride, *geom.rhs_dilation, y)
        else:
            y.fill(0)
        return y

    def input_grad(self, geom: ConvGeometry, dy: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray:
        self.workspace(geom, "input_grad", dy.dtype, limit)
        tight = geom.tight_padding
        padded = tuple(n + lo + hi for n, (lo, hi) in zip(geom.in_spatial, tight))
        dxp = np.zeros((geom.batch, *padded, geom.in_channels), dtype=dy.dtype)
        if dy.size and geom.in_channels:
            w2 = np.ascontiguousarray(w.reshape(*geom.kernel, geom.out_channels))
            _kernels.depthwise2d_input_grad(np.ascontiguousarray(dy), w2, *geom.stride,
                                            *geom.rhs_dilation, dxp)
        return pad_or_crop(dxp, tuple((-lo, -hi) for lo, hi in tight))

    def filter_grad(self, geom: ConvGeometry, x: np.ndarray, dy: np.ndarray, limit: int) -> np.ndarray:
        self.workspace(geom, "filter_grad", x.dtype, limit)
        _g, _, _, _ = group_dims(geom)
        parts = np.zeros((max(1, min(geom.batch, 8)), *geom.kernel, geom.out_channels), dtype=x.dtype)
        if dy.size and geom.in_channels:
            xp = pad_or_crop(x, geom.tight_padding)
            _kernels.depthwise2d_filter_grad(xp, np.ascontiguousarray(dy), *geom.stride,
                                             *geom.rhs_dilation, *geom.kernel, parts)
        return parts.sum(axis=0).reshape(*geom.kernel, 1, geom.out_channels)
