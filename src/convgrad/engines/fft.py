"""FFT convolution: all three ops as products of spectra, summed over channels per frequency.

Per spatial axis, with the tight padded input length P, the forward is a correlation of x with
the kernel dilated by d (zeros inserted), evaluated at stride-1 lags and then sampled every s;
the input gradient is the full convolution of dy, spread s apart, with the dilated kernel; the
filter gradient correlates x with the spread dy at lags t * d. Every result lies within P samples,
so circular transforms of length next_fast_len(P) are exact (no wrap-around reaches them).
Channels mix per frequency as a batched complex GEMM: (F, N, C) @ (F, C, O).
Cost is nearly independent of the kernel size, which is what makes it win for large kernels.
"""

from __future__ import annotations

import math
import os

import numpy as np
import scipy.fft

from .._budget import check_fits
from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from ._common import group_dims, tight_padded

FFT_FLOPS_PER_S = 20e9
CGEMM_FLOPS_PER_S = 60e9
# Planning the transforms and the NumPy calls around them; NumPy's batched matmul spends about
# this long per (frequency, group) pair, which dominates for depthwise convs.
CALL_SECONDS = 200e-6
BATCH_ITEM_SECONDS = 40e-9

# Measured time / the estimate above, per op: the median over benchmarks/calibrate.py's shapes
# (2-core AVX-512 machine, 2026-11-27). Rerun it and refit on another machine kind.
FITTED = {'forward': 3.28, 'input_grad': 3.16, 'filter_grad': 5.03}


class FFT:
    name = "fft"

    def unsupported(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> str | None:
        if np.dtype(dtype).kind != "f":
            return "integer results would not be exact"
        if geom.batch_group_count != 1 or any(v != 1 for v in geom.lhs_dilation):
            return "needs batch_group_count == 1 and no input dilation"
        return None

    def _lengths(self, geom: ConvGeometry) -> tuple[int, ...]:
        return tuple(scipy.fft.next_fast_len(p, real=True) for p in tight_padded(geom))

    def cost(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> float:
        return self._raw_cost(geom, op, dtype) * FITTED[op]

    def _raw_cost(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> float:
        lengths = self._lengths(geom)
        size = math.prod(lengths)
        freqs = size // lengths[-1] * (lengths[-1] // 2 + 1)
        g, cg, og, _ = group_dims(geom)
        n = geom.batch
        transforms = n * geom.in_channels + n * geom.out_channels + cg * geom.out_channels
        fft_flops = 2.5 * transforms * size * max(1.0, math.log2(size))
        mix = 8 * freqs * n * cg * og * g
        return (fft_flops / FFT_FLOPS_PER_S + mix / CGEMM_FLOPS_PER_S + CALL_SECONDS
                + freqs * g * BATCH_ITEM_SECONDS)

    def workspace(self, geom: ConvGeometry, op: str, dtype: np.dtype, limit: int) -> int:
        lengths = self._lengths(geom)
        freqs = math.prod(lengths) // lengths[-1] * (lengths[-1] // 2 + 1)
        g, cg, og, _ = group_dims(geom)
        citem = 2 * np.dtype(dtype).itemsize
        spectra = freqs * (geom.batch * (geom.in_channels + geom.out_channels) + cg * og * g) * citem
        real = math.prod(lengths) * geom.batch * max(geom.in_channels, geom.out_channels)
        total = spectra + 2 * real * np.dtype(dtype).itemsize
        check_fits(f"the FFT spectra of {geom.x_shape('channels_last')}", total, limit)
        return total

    # --- the three ops --------------------------------------------------------------------------
    def forward(self, geom: ConvGeometry, x: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray:
        self.workspace(geom, "forward", x.dtype, limit)
        g, cg, og, _ = group_dims(geom)
        y = np.zeros((geom.batch, *geom.out_spatial, geom.out_channels), dtype=x.dtype)
        if y.size == 0 or cg == 0:
            return y
        lengths, axes = self._lengths(geom), _axes(geom)
        xs = _rfft(pad_or_crop(x, geom.tight_padding), lengths, axes)  # (N, *F, C)
        # Correlation with w is convolution with w flipped: flip the dilated kernel.
        flipped = _dilated_kernel(w, geom.rhs_dilation)[(slice(None, None, -1),) * geom.rank]
        ws = _rfft(flipped, lengths, tuple(range(geom.rank)))  # (*F, Cg, O)
        ys = _mix(xs, ws, g, cg, og)
        full = _irfft(ys, lengths, axes)
        # Lag q of the correlation sits at index q + k_eff - 1 of the convolution.
        index = (slice(None), *(slice(k - 1, k - 1 + (o - 1) * s + 1, s)
                                for k, o, s in zip(geom.kernel_eff, geom.out_spatial, geom.stride)))
        y[...] = full[index]
        return y

    def input_grad(self, geom: ConvGeometry, dy: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray:
        self.workspace(geom, "input_grad", dy.dtype, limit)
        g, cg, og, _ = group_dims(geom)
        padded = tight_padded(geom)
        dx = np.zeros((geom.batch, *padded, geom.in_channels), dtype=dy.dtype)
        if dy.size and cg:
            lengths, axes = self._lengths(geom), _axes(geom)
            dys = _rfft(_spread(dy, geom.stride), lengths, axes)  # (N, *F, O)
            ws = _rfft(_dilated_kernel(w, geom.rhs_dilation), lengths, tuple(range(geom.rank)))
            dxs = _mix(dys, ws, g, og, cg, adjoint=True)
            full = _irfft(dxs, lengths, axes)
            dx[...] = full[(slice(None), *(slice(0, p) for p in padded))]
        return pad_or_crop(dx, tuple((-lo, -hi) for lo, hi in geom.tight_padding))

    def filter_grad(self, geom: ConvGeometry, x: np.ndarray, dy: np.ndarray, limit: int) -> np.ndarray:
        self.workspace(geom, "filter_grad", x.dtype, limit)
        g, cg, og, _ = group_dims(geom)
        dw = np.zeros((*geom.kernel, cg, geom.out_channels), dtype=x.dtype)
        if dy.size == 0 or cg == 0:
            return dw
        lengths, axes = self._lengths(geom), _axes(geom)
        xs = _rfft(pad_or_crop(x, geom.tight_padding), lengths, axes)  # (N, *F, C)
        dys = _rfft(_spread(dy, geom.stride), lengths, axes)  # (N, *F, O)
        # Correlation: multiply by the conjugate spectrum of the spread dy.
        f = math.prod(xs.shape[1:-1])
        xg = xs.reshape(geom.batch, f, g, cg)
        dg = np.conj(dys.reshape(geom.batch, f, g, og))
        spec = np.einsum("nfgc,nfgo->fgco", xg, dg, optimize=True)
        full = scipy.fft.irfftn(spec.reshape(*xs.shape[1:-1], g, cg, og), s=lengths,
                                axes=tuple(range(geom.rank)), workers=_WORKERS)
        index = tuple(slice(0, (k - 1) * d + 1, d) for k, d in zip(geom.kernel, geom.rhs_dilation))
        lags = full[index]  # (*K, G, Cg, Og)
        dw[...] = np.moveaxis(lags, geom.rank, -2).reshape(*geom.kernel, cg, g * og)
        return dw


_WORKERS = os.cpu_count() or 1


def _axes(geom: ConvGeometry) -> tuple[int, ...]:
    return tuple(range(1, geom.rank + 1))


def _rfft(a: np.ndarray, lengths: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    return scipy.fft.rfftn(a, s=lengths, axes=axes, workers=_WORKERS)


def _irfft(a: np.ndarray, lengths: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    return scipy.fft.irfftn(a, s=lengths, axes=axes, workers=_WORKERS)


def _dilated_kernel(w: np.ndarray, d: tuple[int, ...]) -> np.ndarray:
    """w ``(*K, Cg, O)`` with d - 1 zeros between taps: ``(*K_eff, Cg, O)``."""
    if all(v == 1 for v in d):
        return w
    k = w.shape[:-2]
    out = np.zeros((*((ki - 1) * di + 1 for ki, di in zip(k, d)), *w.shape[-2:]), dtype=w.dtype)
    out[tuple(slice(None, None, di) for di in d)] = w
    return out


def _spread(dy: np.ndarray, s: tuple[int, ...]) -> np.ndarray:
    """dy ``(N, *O, O)`` with s - 1 zeros between samples."""
    if all(v == 1 for v in s):
        return dy
    shape = (dy.shape[0], *((o - 1) * si + 1 for o, si in zip(dy.shape[1:-1], s)), dy.shape[-1])
    out = np.zeros(shape, dtype=dy.dtype)
    out[(slice(None), *(slice(None, None, si) for si in s))] = dy
    return out


def _mix(a: np.ndarray, ws: np.ndarray, g: int, ca: int, cb: int, adjoint: bool = False) -> np.ndarray:
    """Per-frequency channel mixing within groups.

    a ``(N, *F, G * ca)``; ws ``(*F, Cg, O)``. Contract a's channels with the filter's input
    channels -> ``(N, *F, G * cb)``; with ``adjoint``, with its output channels instead.
    """
    n = a.shape[0]
    fshape = a.shape[1:-1]
    f = math.prod(fshape)
    af = a.reshape(n, f, g, ca).transpose(1, 2, 0, 3)  # (F, G, N, ca)
    cg, o = ws.shape[-2:]
    wf = ws.reshape(f, cg, g, o // g).transpose(0, 2, 1, 3)  # (F, G, Cg, Og)
    if adjoint:
        wf = wf.transpose(0, 1, 3, 2)  # (F, G, Og, Cg)
    out = np.matmul(af, wf)  # (F, G, N, cb)
    return out.transpose(2, 0, 1, 3).reshape(n, *fshape, g * cb)
