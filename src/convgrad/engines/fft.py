"""FFT convolution: all three ops as products of spectra, summed over channels per frequency.

Per spatial axis, with the tight padded input length P, the forward is a correlation of x with
the kernel dilated by d (zeros inserted), evaluated at stride-1 lags and then sampled every s;
the input gradient is the full convolution of dy, spread s apart, with the dilated kernel; the
filter gradient correlates x with the spread dy at lags t * d. Every result lies within P samples,
so circular transforms of length next_fast_len(P) are exact (no wrap-around reaches them).
Channels mix per frequency, a small complex matrix product each: (N, C) @ (C, O).
Cost is nearly independent of the kernel size, which is what makes it win for large kernels.

Transforms of few samples (a kernel's taps, a small signal in a longer transform) are products
with the DFT matrix restricted to the samples there are, forward, and to the samples kept, back:
real GEMMs on real and imaginary planes, where BLAS runs them faster than pocketfft runs the
zero-padded FFTs. Large intermediates live in the engines' scratch memory (see _scratch).

A long first spatial axis is cut into blocks (overlap-save for the forward and the filter
gradient, overlap-add for the input gradient): the blocks become a larger batch of a shorter
convolution, so the kernel's spectrum is taken at the short length (with 32 x 32 filters the
kernel has more channels to transform than the signal) and the per-frequency GEMMs grow taller.
The block length is the one the cost model likes best, the whole axis included.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

from .._budget import check_fits
from .._formulas import dilate_dim, stride_dim, transpose_size
from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from . import _kernels, _threads
from ._common import group_dims, tight_padded
from ._kernels.spectral import steps
from ._scratch import copied, scratch

# pocketfft on zero-padded signals, batched along the trailing channel axes: measured here 6-7
# GFLOP/s of the 2.5 n log2 n count (1-D blocks of 1,024 to 16,384 samples, 48 x 48 and 64 x 64
# planes), 5-9 on kernels. Small transforms are DFT GEMMs instead (see DFT_GEMM_FLOPS_PER_S).
FFT_FLOPS_PER_S = 6e9
# The channel mixing: Numba's register tiles on one thread (measured 28-67 GFLOP/s, 4 to 168
# spectra of 32 x 32 channels); without Numba, NumPy's batched complex matmul, which also spends
# about BATCH_ITEM_SECONDS per (frequency, group) pair (dominant for depthwise convs).
MIX_FLOPS_PER_S = 40e9
CGEMM_FLOPS_PER_S = 60e9
BATCH_ITEM_SECONDS = 40e-9
# Planning the transforms and the NumPy calls around them.
CALL_SECONDS = 200e-6

# Measured time / the estimate above, per op: the median over benchmarks/calibrate.py's shapes
# (2-core AVX-512 machine; refit alone after the signal transforms became DFT GEMMs where those are
# cheaper, 2026-11-28). Rerun it and refit on another machine kind.
FITTED = {'forward': 1.72, 'input_grad': 1.70, 'filter_grad': 2.97}


class FFT:
    name = "fft"

    def unsupported(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> str | None:
        if np.dtype(dtype).kind != "f":
            return "integer results would not be exact"
        if geom.batch_group_count != 1 or any(v != 1 for v in geom.lhs_dilation):
            return "needs batch_group_count == 1 and no input dilation"
        return None

    def _lengths(self, geom: ConvGeometry) -> tuple[int, ...]:
        out = []
        for n_c, lo_c, p, ke, o, s in zip(_kept(geom), _leads(geom), tight_padded(geom),
                                         geom.kernel_eff, geom.out_spatial, geom.stride):
            # ke: the taps land on distinct samples; dilate_dim(o, s): the spread dy fits.
            need = max(n_c + lo_c, p - lo_c, ke, dilate_dim(o, s), 1)
            out.append(scipy.fft.next_fast_len(need, real=True))
        return tuple(out)

    def cost(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> float:
        running = self._blocked_cost(geom, op, dtype, self._block(geom, op, dtype)) * FITTED[op]
        if _kernels.NUMBA:  # the mixing kernel's load time, until it is loaded
            running += _kernels.compile_penalty(dtype, _kernels.spectral_mix)
        return running

    def _block(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> int | None:
        """Outputs per block along the first spatial axis, or None to transform it whole.

        When blocking is cheaper than the whole axis, the shortest block length whose estimate is
        within BLOCK_TIE of the cheapest wins: it needs the least memory, and the estimates cannot
        tell such lengths apart.
        """
        if geom.rank == 0 or math.prod(geom.out_spatial) == 0:
            return None
        options: list[tuple[int | None, float]] = []
        ke, s, out = geom.kernel_eff[0], geom.stride[0], geom.out_spatial[0]
        whole = self._lengths(geom)[0]
        n = 1 << max(4, (2 * ke - 1).bit_length())  # at least twice the kernel: overlap <= 1/2
        while n < whole:
            b = stride_dim(n, ke, s)  # outputs whose windows fit in n samples
            if 1 <= b < out:
                options.append((b, self._blocked_cost(geom, op, dtype, b)))
            n *= 2
        whole_cost = self._raw_cost(geom, op, dtype)
        best = min((c for _, c in options), default=whole_cost)
        if best >= whole_cost:
            return None
        return next(b for b, c in options if c <= best * BLOCK_TIE)

    def _blocked_cost(self, geom: ConvGeometry, op: str, dtype: np.dtype, b: int | None) -> float:
        if b is None:
            return self._raw_cost(geom, op, dtype)
        bg = _block_geometry(geom, b)
        moved = bg.batch * math.prod(tight_padded(bg)) * max(geom.in_channels, geom.out_channels)
        return self._raw_cost(bg, op, dtype) + 2 * moved * np.dtype(dtype).itemsize / COPY_BYTES_PER_S

    def _raw_cost(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> float:
        lengths = self._lengths(geom)
        size = math.prod(lengths)
        freqs = size // lengths[-1] * (lengths[-1] // 2 + 1)
        g, cg, og, _ = group_dims(geom)
        n = geom.batch
        # Every op transforms x's side, y's side (dy or the output) and the kernel's (its taps, or
        # the filter gradient's lags), and mixes or correlates the spectra.
        transforms = (_transform_seconds(_kept(geom), lengths, n * geom.in_channels)
                      + _transform_seconds(geom.out_spatial, lengths, n * geom.out_channels)
                      + _transform_seconds(geom.kernel, lengths, cg * og * g))
        return transforms + _mix_seconds(freqs, n, cg, og, g) + CALL_SECONDS

    def workspace(self, geom: ConvGeometry, op: str, dtype: np.dtype, limit: int) -> int:
        b = self._block(geom, op, dtype)
        if b is not None:
            bg = _block_geometry(geom, b)
            segments = bg.batch * math.prod(tight_padded(bg)) * max(geom.in_channels, geom.out_channels)
            total = self._workspace(bg, dtype, limit) + 2 * segments * np.dtype(dtype).itemsize
            check_fits(f"the FFT blocks of {geom.x_shape('channels_last')}", total, limit)
            return total
        return self._workspace(geom, dtype, limit)

    def _workspace(self, geom: ConvGeometry, dtype: np.dtype, limit: int) -> int:
        lengths = self._lengths(geom)
        freqs = math.prod(lengths) // lengths[-1] * (lengths[-1] // 2 + 1)
        g, cg, og, _ = group_dims(geom)
        citem = 2 * np.dtype(dtype).itemsize
        spectra = freqs * (geom.batch * (geom.in_channels + geom.out_channels) + cg * og * g) * citem
        real = math.prod(lengths) * geom.batch * max(geom.in_channels, geom.out_channels)
        # The DFT GEMMs' first stages (the taps of the other axes, the halved axis's frequencies)
        # and the input gradient's transposed filter.
        half = lengths[-1] // 2 + 1 if lengths else 1
        firsts = (math.prod(geom.kernel[:-1]) * cg * og * g + geom.batch * math.prod(_kept(geom)[:-1])
                  * geom.in_channels + geom.batch * math.prod(geom.out_spatial[:-1]) * geom.out_channels)
        stages = (firsts * half * citem + math.prod(geom.kernel) * cg * og * g * np.dtype(dtype).itemsize)
        total = spectra + 2 * real * np.dtype(dtype).itemsize + stages
        check_fits(f"the FFT spectra of {geom.x_shape('channels_last')}", total, limit)
        return total

    # --- the three ops, blocked along the first axis when that is cheaper --------------------------
    def forward(self, geom: ConvGeometry, x: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray:
        self.workspace(geom, "forward", x.dtype, limit)
        b = self._block(geom, "forward", x.dtype)
        if b is None:
            return self._forward(geom, x, w)
        bg, nb = _block_geometry(geom, b), _block_count(geom, b)
        y = self._forward(bg, _segments(x, geom, b), w)  # (N * nb, b, ...)
        y = y.reshape(geom.batch, nb * b, *y.shape[2:])
        return np.ascontiguousarray(y[:, : geom.out_spatial[0]])

    def input_grad(self, geom: ConvGeometry, dy: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray:
        self.workspace(geom, "input_grad", dy.dtype, limit)
        b = self._block(geom, "input_grad", dy.dtype)
        if b is None:
            return self._input_grad(geom, dy, w)
        bg, nb = _block_geometry(geom, b), _block_count(geom, b)
        dxs = self._input_grad(bg, _dy_blocks(dy, b, nb), w)  # (N * nb, seg, ...): overlap-add them
        seg, step = dxs.shape[1], b * geom.stride[0]
        dxs = dxs.reshape(geom.batch, nb, *dxs.shape[1:])
        padded = tight_padded(geom)
        dxe = np.zeros((geom.batch, (nb - 1) * step + seg, *padded[1:], geom.in_channels), dtype=dy.dtype)
        for j in range(nb):
            dxe[:, j * step : j * step + seg] += dxs[:, j]
        return pad_or_crop(dxe[:, : padded[0]], tuple((-lo, -hi) for lo, hi in geom.tight_padding))

    def filter_grad(self, geom: ConvGeometry, x: np.ndarray, dy: np.ndarray, limit: int) -> np.ndarray:
        self.workspace(geom, "filter_grad", x.dtype, limit)
        b = self._block(geom, "filter_grad", x.dtype)
        if b is None:
            return self._filter_grad(geom, x, dy)
        bg, nb = _block_geometry(geom, b), _block_count(geom, b)
        return self._filter_grad(bg, _segments(x, geom, b), _dy_blocks(dy, b, nb))

    # --- the three ops on whole axes -------------------------------------------------------------
    def _forward(self, geom: ConvGeometry, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        g, cg, _, _ = group_dims(geom)
        shape = (geom.batch, *geom.out_spatial, geom.out_channels)
        if math.prod(shape) == 0 or cg == 0:
            return np.zeros(shape, dtype=x.dtype)
        lengths = self._lengths(geom)
        xs = _spectrum(pad_or_crop(x, _crops(geom)), lengths, (1,) * geom.rank, "fft.x")
        # Correlation with w is convolution with w flipped, tap t at -t * d; shifted by the
        # leading pad, output p sits at sample p * s of the circular convolution.
        ws = _kernel_spectrum(w, lengths, _tap_positions(geom, lengths, flipped=True))
        outputs = [range(0, o * s, s) for o, s in zip(geom.out_spatial, geom.stride)]
        return _samples(xs, ws, g, lengths, outputs)

    def _input_grad(self, geom: ConvGeometry, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
        g, cg, og, _ = group_dims(geom)
        kept = _kept(geom)
        if dy.size == 0 or cg == 0:
            dx = np.zeros((geom.batch, *kept, geom.in_channels), dtype=dy.dtype)
        else:
            lengths = self._lengths(geom)
            dys = _spectrum(dy, lengths, geom.stride, "fft.dy")  # dy spread s apart
            # Tap t at t * d, shifted back by the leading pad: sample i is x's sample i.
            # The adjoint mixes with each frequency's matrix transposed: take the spectrum of w with
            # its channel axes swapped within each group, (*K, Og, G * Cg).
            wt = w.reshape(*geom.kernel, cg, g, og).swapaxes(-3, -1).reshape(*geom.kernel, og, g * cg)
            # With one group the reshape is a view, which the GEMMs read 2.6x slower.
            wt = copied("fft.wt", wt)
            ws = _kernel_spectrum(wt, lengths, _tap_positions(geom, lengths))
            dx = _samples(dys, ws, g, lengths, [range(k) for k in kept])
        return pad_or_crop(dx, tuple((-lo, -hi) for lo, hi in _crops(geom)))  # zeros where x was cropped

    def _filter_grad(self, geom: ConvGeometry, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
        g, cg, og, _ = group_dims(geom)
        if dy.size == 0 or cg == 0:
            return np.zeros((*geom.kernel, cg, geom.out_channels), dtype=x.dtype)
        lengths = self._lengths(geom)
        xs = _spectrum(pad_or_crop(x, _crops(geom)), lengths, (1,) * geom.rank, "fft.x")
        dys = _spectrum(dy, lengths, geom.stride, "fft.dy")
        # Lag t * d of the padded x is lag t * d - lo of x itself.
        positions = _tap_positions(geom, lengths)
        if _use_dft_gemm(geom.kernel, lengths, cg * geom.out_channels):
            spec = _correlate(xs, dys, g, planes=True)
            if g == 1:  # the lags (*K, 1, Cg, O) are dw as it lies
                dw = np.empty((*geom.kernel, cg, geom.out_channels), dtype=x.dtype)
                _idft(spec, lengths, positions, name="fft.lags", out=dw)
                return dw
            lags = _idft(spec, lengths, positions, name="fft.lags")
        else:
            spec = _correlate(xs, dys, g, planes=False)
            full = scipy.fft.irfftn(spec, s=lengths, axes=tuple(range(geom.rank)), workers=_threads.allowed())
            lags = full[np.ix_(*positions)]
        return np.moveaxis(lags, geom.rank, -2).reshape(*geom.kernel, cg, g * og)  # (*K, G, Cg, Og)


def _signal_dft(shape: tuple[int, ...], lengths: tuple[int, ...]) -> bool:
    """Whether signals ``(N, *S, C)`` are transformed by DFT GEMMs (small transforms: a 32 x 32
    batch of 4 x 32 channels into 48 x 48 took 0.5 ms, pocketfft's rfftn 2.2-3.4) or by pocketfft."""
    return _use_dft_gemm(shape[1:-1], lengths, shape[0] * shape[-1])


def _spectrum(a: np.ndarray, lengths: tuple[int, ...], stride: tuple[int, ...], name: str) -> np.ndarray:
    """The rfftn of ``a`` ``(N, *S, C)`` spread ``stride`` apart (s - 1 zeros between samples):
    planes ``(N, 2, *F, C)`` from DFT GEMMs (in scratch memory of that ``name``), or complex
    ``(N, *F, C)`` from pocketfft."""
    if _signal_dft(a.shape, lengths):
        positions = [range(0, n * s, s) for n, s in zip(a.shape[1:-1], stride)]
        return _dft(a, lengths, positions, lead=1, name=name)
    return _rfft(_spread(a, stride), lengths, tuple(range(1, len(lengths) + 1)))


def _complex(spectra: np.ndarray) -> np.ndarray:
    """Spectra as ``_spectrum`` returns them, as complex ``(N, *F, C)``."""
    if np.iscomplexobj(spectra):
        return spectra
    return spectra[:, 0] + 1j * spectra[:, 1]


def _samples(a: np.ndarray, ws: np.ndarray, g: int, lengths: tuple[int, ...],
             positions: list[range]) -> np.ndarray:
    """The spectra ``a`` (as ``_spectrum`` returns them) mixed with the kernel's planes ``ws``
    (see ``_mix``), transformed back at the given positions of each axis: ``(N, *K, O)``."""
    shape = (a.shape[0], *(len(p) for p in positions), ws.shape[-1])
    if _signal_dft(shape, lengths):
        return _idft(_mix(a, ws, g, planes=True), lengths, positions, lead=1, name="fft.y")
    axes = tuple(range(1, len(lengths) + 1))
    full = _irfft(_mix(a, ws, g, planes=False), lengths, axes, tuple(p[-1] + 1 for p in positions))
    return np.ascontiguousarray(full[(slice(None), *(slice(None, None, p.step) for p in positions))])


COPY_BYTES_PER_S = 5e9


def _mix_seconds(freqs: int, n: int, cg: int, og: int, g: int) -> float:
    """The per-frequency products (the mix, or the filter gradient's correlation): the mixing
    kernel, or without Numba NumPy's batched matmul."""
    flops = 8 * freqs * n * cg * og * g
    if _kernels.NUMBA:
        return flops / MIX_FLOPS_PER_S
    return flops / CGEMM_FLOPS_PER_S + freqs * g * BATCH_ITEM_SECONDS


# Block lengths whose estimates are this close count as a tie (measured: k=255 at 1024 and 2048
# estimated 36 and 34 ms, ran 79-85 and 91-94 ms).
BLOCK_TIE = 1.1


def _block_count(geom: ConvGeometry, b: int) -> int:
    return -(-geom.out_spatial[0] // b)


def _segment(geom: ConvGeometry, b: int) -> int:
    """Input samples the windows of ``b`` consecutive outputs read along the first axis."""
    return transpose_size(b, geom.kernel_eff[0], geom.stride[0], 0, 0, 0)


def _block_geometry(geom: ConvGeometry, b: int) -> ConvGeometry:
    """One block of ``b`` outputs along the first axis, as a batch of unpadded segments."""
    seg = _segment(geom, b)
    rest = tight_padded(geom)[1:]
    return ConvGeometry(
        batch=geom.batch * _block_count(geom, b), in_channels=geom.in_channels,
        out_channels=geom.out_channels, in_spatial=(seg, *rest), kernel=geom.kernel,
        stride=geom.stride, padding=((0, 0),) * geom.rank, lhs_dilation=(1,) * geom.rank,
        rhs_dilation=geom.rhs_dilation, feature_group_count=geom.feature_group_count)


def _segments(x: np.ndarray, geom: ConvGeometry, b: int) -> np.ndarray:
    """The overlapping input segments of the blocks: ``(N * nb, seg, *rest, C)``, zero where a
    segment reaches into the padding (filled block by block, without a padded copy of x)."""
    nb, s, seg = _block_count(geom, b), geom.stride[0], _segment(geom, b)
    (lo, _), *others = geom.tight_padding
    xo = pad_or_crop(x, ((0, 0), *others))
    n0 = xo.shape[1]
    out = np.zeros((xo.shape[0], nb, seg, *xo.shape[2:]), dtype=x.dtype)
    for j in range(nb):
        start = j * b * s - lo
        a0, a1 = max(start, 0), min(start + seg, n0)
        if a1 > a0:
            out[:, j, a0 - start : a1 - start] = xo[:, a0:a1]
    return out.reshape(-1, seg, *xo.shape[2:])


def _dy_blocks(dy: np.ndarray, b: int, nb: int) -> np.ndarray:
    """dy zero-extended to nb * b outputs along the first axis: ``(N * nb, b, *rest, O)``."""
    pad = nb * b - dy.shape[1]
    dye = pad_or_crop(dy, ((0, pad),) + ((0, 0),) * (dy.ndim - 3))
    return dye.reshape(dy.shape[0] * nb, b, *dy.shape[2:])


def _axes(geom: ConvGeometry) -> tuple[int, ...]:
    return tuple(range(1, geom.rank + 1))


def _rfft(a: np.ndarray, lengths: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    # rfftn's own padded copy: transforming axis by axis, the halved axis along the signal's rows
    # only, took 1.4x its time on 32 x 32 signals in 48 x 48 transforms.
    return scipy.fft.rfftn(a, s=lengths, axes=axes, workers=_threads.allowed())


def _irfft(a: np.ndarray, lengths: tuple[int, ...], axes: tuple[int, ...],
           keep: tuple[int, ...]) -> np.ndarray:
    """irfftn of ``a`` to ``lengths``, only its first ``keep`` samples along each axis: each full
    axis's inverse is cut to them before the next stage, so the halved axis's inverse runs on the
    kept lines only (a 32 x 32 result of a 48 x 48 transform: 32 rows, not 48; 0.5 of irfftn's
    time there). ``a`` is overwritten."""
    workers = _threads.allowed()
    for n, axis, k in zip(lengths[:-1], axes[:-1], keep[:-1]):
        a = scipy.fft.ifft(a, n=n, axis=axis, workers=workers, overwrite_x=True)
        a = a[(slice(None),) * axis + (slice(0, k),)]
    out = scipy.fft.irfft(a, n=lengths[-1], axis=axes[-1], workers=workers)
    return out[(slice(None),) * axes[-1] + (slice(0, keep[-1]),)]


def _crops(geom: ConvGeometry) -> tuple[tuple[int, int], ...]:
    """The negative parts of the tight pads: x is cropped by these, never padded (to nothing
    where the crops overlap: the windows then read only padding)."""
    out = []
    for n, (lo, hi) in zip(geom.in_spatial, geom.tight_padding):
        lo, hi = min(lo, 0), min(hi, 0)
        out.append((lo, max(hi, -n - lo)) if n + lo >= 0 else (-n, 0))
    return tuple(out)


def _kept(geom: ConvGeometry) -> tuple[int, ...]:
    """The length of x after the crops, per axis."""
    return tuple(n + lo + hi for n, (lo, hi) in zip(geom.in_spatial, _crops(geom)))


def _leads(geom: ConvGeometry) -> list[int]:
    """The positive leading pads, by which taps and lags are shifted instead of padding x."""
    return [max(lo, 0) for lo, _ in geom.tight_padding]


def _tap_positions(geom: ConvGeometry, lengths: tuple[int, ...], flipped: bool = False) -> list[list[int]]:
    """Where tap t of each axis sits in the circular signal of that axis's length: at t * d, less
    the leading pad (x starts at sample 0 instead of being padded); ``flipped`` (the forward's
    correlation as a convolution): at -(t * d - lead)."""
    sign = -1 if flipped else 1
    return [[sign * (t * d - lo) % n for t in range(k)] for k, d, lo, n in
            zip(geom.kernel, geom.rhs_dilation, _leads(geom), lengths)]


# Transforms of few samples (a kernel's taps, a small signal zero-padded to the FFT length) are
# matrix products with the DFT matrix restricted to the samples, where BLAS runs those faster
# than pocketfft runs the padded FFTs: they cost n * k instead of n log n. Measured here (2-core
# AVX-512, float32): the DFT GEMMs at 35 (1,024 7x7 kernels into 32x32), 84 (1,024 31x31 into
# 48x48), 100 (128 32x32 signals into 48x48) and 145 GFLOP/s (1,024 kernels of 255 taps into 1024).
DFT_GEMM_FLOPS_PER_S = 100e9


def _transform_seconds(samples: tuple[int, ...], lengths: tuple[int, ...], count: int) -> float:
    """The cheaper of padded FFTs and DFT GEMMs for ``count`` signals (kernels, lag sets) of
    ``samples`` samples each, forward or back, in seconds."""
    return min(_padded_fft_seconds(lengths, count), _dft_gemm_seconds(samples, lengths, count))


def _padded_fft_seconds(lengths: tuple[int, ...], pairs: int) -> float:
    size = math.prod(lengths)
    return 2.5 * pairs * size * max(1.0, math.log2(size)) / FFT_FLOPS_PER_S


def _dft_gemm_seconds(kernel: tuple[int, ...], lengths: tuple[int, ...], pairs: int) -> float:
    return _dft_gemm_flops(kernel, lengths, pairs) / DFT_GEMM_FLOPS_PER_S


def _dft_gemm_flops(kernel: tuple[int, ...], lengths: tuple[int, ...], pairs: int) -> float:
    """The DFT GEMMs of ``_dft``: axis i maps (K_0 .. K_i, F_i+1 ..) to (K_0 .. K_i-1, F_i ..)."""
    freqs = (*lengths[:-1], lengths[-1] // 2 + 1)
    return float(sum(8 * freqs[i] * math.prod(kernel[: i + 1]) * math.prod(freqs[i + 1 :]) * pairs
                     for i in range(len(kernel))))


def _use_dft_gemm(kernel: tuple[int, ...], lengths: tuple[int, ...], pairs: int) -> bool:
    return _dft_gemm_seconds(kernel, lengths, pairs) < _padded_fft_seconds(lengths, pairs)


def _dft_matrix(n: int, positions: tuple[int, ...], half: bool, sign: float = -1.0) -> np.ndarray:
    """exp(sign 2 pi i f p / n) for the frequencies f (0..n//2 when ``half``) and positions p."""
    f = np.arange(n // 2 + 1 if half else n)
    return np.exp(sign * 2j * np.pi * np.outer(f, positions) / n)


def _kernel_spectrum(w: np.ndarray, lengths: tuple[int, ...], positions: list[list[int]]) -> np.ndarray:
    """The rfftn of w ``(*K, Cg, O)`` with tap t of axis i placed at ``positions[i][t]`` of a
    zero signal of length ``lengths[i]``, as real and imaginary planes: ``(2, *F, Cg, O)`` with
    the last axis of F halved (from DFT GEMMs: in scratch memory)."""
    rank = len(lengths)
    pairs = w.shape[-2] * w.shape[-1]
    if _use_dft_gemm(w.shape[:rank], lengths, pairs):
        return _dft(w, lengths, positions, name="fft.w")
    full = np.zeros((*lengths, *w.shape[rank:]), dtype=w.dtype)
    full[np.ix_(*positions)] = w
    spectrum = _rfft(full, lengths, tuple(range(rank)))
    return np.stack((spectrum.real, spectrum.imag))


def _dft(a: np.ndarray, lengths: tuple[int, ...], positions: list[list[int]], lead: int = 0,
         name: str = "") -> np.ndarray:
    """The rfftn of a ``(*L, *K, ...)`` (``lead`` axes L, then one axis per length) with sample t
    of axis i at ``positions[i][t]`` of a zero signal of length ``lengths[i]``, as DFT GEMMs:
    real and imaginary planes ``(*L, 2, *F, ...)``, the last axis of F halved. With a ``name``,
    the stages write to scratch memory of that name (the result included)."""
    rank = len(lengths)
    head, kernel, tail = a.shape[:lead], a.shape[lead : lead + rank], a.shape[lead + rank :]
    if a.size == 0:  # nothing to transform (x cropped away): the spectrum of zeros
        return np.zeros((*head, 2, *lengths[:-1], lengths[-1] // 2 + 1, *tail), dtype=a.dtype)
    # Real GEMMs throughout, on planes: the halved axis first, (L, K_0 .. K_r-2, 2, F_r-1, ...);
    # then each full axis, which puts the planes in front of that axis's frequencies, next to the
    # taps of the axis before. (Interleaved complex arrays would need a copy per stage: 2-3x the
    # time of the GEMMs on 1,024 31 x 31 kernels.)
    a = _gemm(_forward_stage(lengths[-1], tuple(positions[-1]), True, a.dtype),
              a.reshape(math.prod(head) * math.prod(kernel[:-1]), kernel[-1], -1), name and name + "0")
    for i in reversed(range(rank - 1)):  # stage rank - 1 - i: the buffers alternate
        a = _gemm(_forward_stage(lengths[i], tuple(positions[i]), False, a.dtype),
                  a.reshape(math.prod(head) * math.prod(kernel[:i]), 2 * kernel[i], -1),
                  name and name + str((rank - 1 - i) % 2))
    return a.reshape(*head, 2, *lengths[:-1], lengths[-1] // 2 + 1, *tail)


def _idft(a: np.ndarray, lengths: tuple[int, ...], positions: list[list[int]], lead: int = 0,
          name: str = "", out: np.ndarray | None = None) -> np.ndarray:
    """The irfftn of the planes ``a`` ``(*L, 2, *F, ...)`` (as ``_dft`` makes them) to
    ``lengths``, at the given positions only, as DFT GEMMs: ``(*L, *K, ...)`` real, in ``out``
    (C-contiguous) or a fresh array. With a ``name``, the stages before the last write to scratch
    memory of that name."""
    rank = len(lengths)
    head, tail = a.shape[:lead], a.shape[lead + 1 + rank :]
    if a.size == 0 or any(len(p) == 0 for p in positions):
        return np.zeros((*head, *(len(p) for p in positions), *tail), dtype=a.dtype)
    outer = math.prod(head)
    for i in range(rank - 1):  # full axes: (2, F_i) -> (K_i, 2)
        a = _gemm(_inverse_stage(lengths[i], tuple(positions[i]), False, a.dtype),
                  a.reshape(outer, 2 * lengths[i], -1), name and name + str(i % 2))
        outer *= len(positions[i])
    last = _inverse_stage(lengths[-1], tuple(positions[-1]), True, a.dtype)
    a = a.reshape(outer, 2 * (lengths[-1] // 2 + 1), -1)
    a = np.matmul(last, a, out=None if out is None else out.reshape(outer, last.shape[0], a.shape[2]))
    return a.reshape(*head, *(len(p) for p in positions), *tail)


def _gemm(m: np.ndarray, a: np.ndarray, name: str) -> np.ndarray:
    """m @ a (batched over a's first axis), into scratch memory of that name if one is given."""
    if not name:
        return np.matmul(m, a)
    return np.matmul(m, a, out=scratch(name, (a.shape[0], m.shape[0], a.shape[2]), a.dtype))


# The GEMMs' matrices, kept: building them took 0.5 ms of a 31 x 31 conv's 8 (complex exponentials
# in float64), and a training loop asks for the same ones at every step.
@functools.lru_cache(maxsize=256)
def _forward_stage(n: int, positions: tuple[int, ...], half: bool, dtype: np.dtype) -> np.ndarray:
    """The matrix of one axis of ``_dft``. The halved axis: the real and imaginary DFT rows
    stacked, (2F, K). A full axis: the DFT as a real block matrix [[Re, -Im], [Im, Re]], rows
    (plane, frequency), columns in the order of the (tap, plane) pairs it multiplies: (2n, 2K)."""
    d = _dft_matrix(n, positions, half)
    if half:
        m = np.concatenate((d.real, d.imag))
    else:
        k = d.shape[1]
        m = np.block([[d.real, -d.imag], [d.imag, d.real]])
        m = m.reshape(2 * n, 2, k).swapaxes(1, 2).reshape(2 * n, 2 * k)
    return _frozen(m, dtype)


@functools.lru_cache(maxsize=256)
def _inverse_stage(n: int, positions: tuple[int, ...], half: bool, dtype: np.dtype) -> np.ndarray:
    """The matrix of one axis of ``_idft``. A full axis: the inverse DFT at the positions as a real
    block matrix, rows (position, plane), columns (plane, frequency): (2K, 2n). The halved axis:
    x[p] = (1 / n) sum_f c_f Re(X_f exp(2 pi i f p / n)), c_f = 2 except at f = 0 and at the
    Nyquist frequency of an even n, as [Re | -Im] over the two planes: (K, 2F)."""
    d = _dft_matrix(n, positions, half, sign=1.0).T / n
    if half:
        c = np.full(n // 2 + 1, 2.0)
        c[0] = 1.0
        if n % 2 == 0:
            c[-1] = 1.0
        d = d * c
        m = np.concatenate((d.real, -d.imag), axis=1)
    else:
        k = d.shape[0]
        m = np.block([[d.real, -d.imag], [d.imag, d.real]])
        m = m.reshape(2, k, 2 * n).swapaxes(0, 1).reshape(2 * k, 2 * n)
    return _frozen(m, dtype)


def _frozen(m: np.ndarray, dtype: np.dtype) -> np.ndarray:
    out = np.ascontiguousarray(m, dtype=dtype)
    out.flags.writeable = False
    return out


def _spread(dy: np.ndarray, s: tuple[int, ...]) -> np.ndarray:
    """dy ``(N, *O, O)`` with s - 1 zeros between samples."""
    if all(v == 1 for v in s):
        return dy
    shape = (dy.shape[0], *((o - 1) * si + 1 for o, si in zip(dy.shape[1:-1], s)), dy.shape[-1])
    out = np.zeros(shape, dtype=dy.dtype)
    out[(slice(None), *(slice(None, None, si) for si in s))] = dy
    return out


def _mix(a: np.ndarray, ws: np.ndarray, g: int, planes: bool) -> np.ndarray:
    """Per-frequency channel mixing within groups: a ``(N, *F, G * ca)`` complex or ``(N, 2, *F,
    G * ca)`` planes, ws ``(2, *F, ca, G * cb)`` planes -> ``(N, 2, *F, G * cb)`` planes if
    ``planes`` else ``(N, *F, G * cb)`` complex, contracting a's channels with the filter's rows.
    Numba's register tiles where it is installed (into scratch memory), else a batched complex matmul."""
    n, fshape = a.shape[0], ws.shape[1:-2]
    f = math.prod(fshape)
    ca, o = ws.shape[-2:]
    real = ws.dtype
    if _kernels.NUMBA:
        a = np.ascontiguousarray(a)
        shape = (n, 2, *fshape, o) if planes else (n, *fshape, o)
        out = scratch("fft.mix", shape, real if planes else np.result_type(real, np.complex64))
        w = ws.reshape(2, f, ca, o)
        at = steps(n, f, g * ca, not np.iscomplexobj(a))
        _kernels.spectral_mix(a.view(real).ravel(), at, w[0], w[1], g, out.view(real).ravel(),
                              steps(n, f, o, planes), n)
        return out
    af = _complex(a).reshape(n, f, g, ca).transpose(1, 2, 0, 3)  # (F, G, N, ca)
    wc = (ws[0] + 1j * ws[1]).astype(af.dtype).reshape(f, ca, g, o // g)
    wc = wc.transpose(0, 2, 1, 3)  # (F, G, ca, cb)
    out = np.matmul(af, wc).transpose(2, 0, 1, 3).reshape(n, *fshape, o)  # (F, G, N, cb) -> (N, *F, O)
    return np.stack((out.real, out.imag), axis=1) if planes else out


def _correlate(xs: np.ndarray, dys: np.ndarray, g: int, planes: bool) -> np.ndarray:
    """Per frequency and group, x's spectra times the conjugate spectra of dy, summed over the
    batch: xs ``(N, *F, C)`` and dys ``(N, *F, O)`` as ``_spectrum`` returns them -> ``(2, *F, G,
    Cg, Og)`` planes if ``planes`` else ``(*F, G, Cg, Og)`` complex. On Numba, the mixing kernel
    with x's channels as its rows and the batch as the sum (4 x 16 tiles of (Cg, Og) per
    frequency); else a batched complex matmul."""
    n, c, o = xs.shape[0], xs.shape[-1], dys.shape[-1]
    fshape = dys.shape[1:-1] if np.iscomplexobj(dys) else dys.shape[2:-1]
    f, cg, og, real = math.prod(fshape), c // g, o // g, xs.real.dtype
    if _kernels.NUMBA:
        xs = np.ascontiguousarray(xs)
        dr, di = (dys.real, dys.imag) if np.iscomplexobj(dys) else (dys[:, 0], dys[:, 1])
        wr = np.ascontiguousarray(dr.reshape(n, f, o).swapaxes(0, 1))  # (F, N, O): the batch is summed
        wi = np.ascontiguousarray(-di.reshape(n, f, o).swapaxes(0, 1))  # conjugate
        xn, xf, xc, xi = steps(n, f, c, not np.iscomplexobj(xs))
        shape = (2, *fshape, g, cg, og) if planes else (*fshape, g, cg, og)
        out = scratch("fft.spec", shape, real if planes else np.result_type(real, np.complex64))
        # Rows: x's channels of one group; output rows (Cg) of Og channels, F * G * Cg * Og apart.
        on, of, oc, oi = (og, g * cg * og, 1, f * g * cg * og) if planes else (2 * og, 2 * g * cg * og, 2, 1)
        flat_x, flat_out = xs.view(real).ravel(), out.view(real).ravel()
        for k in range(g):
            group = slice(k * og, (k + 1) * og)
            _kernels.spectral_mix(flat_x[k * cg * xc :], (xc, xf, xn, xi), wr[..., group].copy(),
                                  wi[..., group].copy(), 1, flat_out[k * cg * on :], (on, of, oc, oi), cg)
        return out
    xg = _complex(xs).reshape(n, f, g, cg).transpose(1, 2, 3, 0)  # (F, G, Cg, N)
    dg = np.conj(_complex(dys).reshape(n, f, g, og)).transpose(1, 2, 0, 3)  # (F, G, N, Og)
    spec = np.matmul(xg, dg).reshape(*fshape, g, cg, og)  # a batched GEMM, where einsum would loop
    return np.stack((spec.real, spec.imag)) if planes else spec
