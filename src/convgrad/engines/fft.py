"""FFT convolution: all three ops as products of spectra, summed over channels per frequency.

Per spatial axis, with the tight padded input length P, the forward is a correlation of x with
the kernel dilated by d (zeros inserted), evaluated at stride-1 lags and then sampled every s;
the input gradient is the full convolution of dy, spread s apart, with the dilated kernel; the
filter gradient correlates x with the spread dy at lags t * d. Every result lies within P samples,
so circular transforms of length next_fast_len(P) are exact (no wrap-around reaches them).
Channels mix per frequency as a batched complex GEMM: (F, N, C) @ (F, C, O).
Cost is nearly independent of the kernel size, which is what makes it win for large kernels.

A long first spatial axis is cut into blocks (overlap-save for the forward and the filter
gradient, overlap-add for the input gradient): the blocks become a larger batch of a shorter
convolution, so the kernel's spectrum is taken at the short length (with 32 x 32 filters the
kernel has more channels to transform than the signal) and the per-frequency GEMMs grow taller.
The block length is the one the cost model likes best, the whole axis included.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from .._budget import check_fits
from .._formulas import dilate_dim, stride_dim, transpose_size
from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from . import _kernels, _threads
from ._common import group_dims, tight_padded

FFT_FLOPS_PER_S = 20e9
# The channel mixing: Numba's register tiles on one thread (measured 28-67 GFLOP/s, 4 to 168
# spectra of 32 x 32 channels); without Numba, NumPy's batched complex matmul, which also spends
# about BATCH_ITEM_SECONDS per (frequency, group) pair (dominant for depthwise convs).
MIX_FLOPS_PER_S = 40e9
CGEMM_FLOPS_PER_S = 60e9
BATCH_ITEM_SECONDS = 40e-9
# Planning the transforms and the NumPy calls around them.
CALL_SECONDS = 200e-6

# Measured time / the estimate above, per op: the median over benchmarks/calibrate.py's shapes
# (2-core AVX-512 machine; all engines refit in one run, 2026-11-28). Rerun it and
# refit on another machine kind.
FITTED = {'forward': 3.38, 'input_grad': 2.98, 'filter_grad': 3.19}


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
        if _numba_mix(op):  # the mixing kernel's load time, until it is loaded
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
        transforms = n * geom.in_channels + n * geom.out_channels
        fft_flops = 2.5 * transforms * size * max(1.0, math.log2(size))
        kernel = _kernel_transform_seconds(geom.kernel, lengths, cg * og * g)
        return fft_flops / FFT_FLOPS_PER_S + _mix_seconds(freqs, n, cg, og, g, op) + kernel + CALL_SECONDS

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
        total = spectra + 2 * real * np.dtype(dtype).itemsize
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
        lengths, axes = self._lengths(geom), _axes(geom)
        xs = _rfft(pad_or_crop(x, _crops(geom)), lengths, axes)  # (N, *F, C)
        # Correlation with w is convolution with w flipped, tap t at -t * d; shifted by the
        # leading pad, output p sits at sample p * s of the circular convolution.
        ws = _kernel_spectrum(w, lengths, _tap_positions(geom, lengths, flipped=True))
        ys = _mix(xs, ws, g)
        reach = tuple((o - 1) * s + 1 for o, s in zip(geom.out_spatial, geom.stride))
        full = _irfft(ys, lengths, axes, reach)
        return np.ascontiguousarray(full[(slice(None), *(slice(None, None, s) for s in geom.stride))])

    def _input_grad(self, geom: ConvGeometry, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
        g, cg, og, _ = group_dims(geom)
        kept = _kept(geom)
        if dy.size == 0 or cg == 0:
            dx = np.zeros((geom.batch, *kept, geom.in_channels), dtype=dy.dtype)
        else:
            lengths, axes = self._lengths(geom), _axes(geom)
            dys = _rfft(_spread(dy, geom.stride), lengths, axes)  # (N, *F, O)
            # Tap t at t * d, shifted back by the leading pad: sample i is x's sample i.
            # The adjoint mixes with each frequency's matrix transposed: take the spectrum of w with
            # its channel axes swapped within each group, (*K, Og, G * Cg).
            wt = w.reshape(*geom.kernel, cg, g, og).swapaxes(-3, -1).reshape(*geom.kernel, og, g * cg)
            ws = _kernel_spectrum(wt, lengths, _tap_positions(geom, lengths))
            dxs = _mix(dys, ws, g)
            dx = _irfft(dxs, lengths, axes, kept)
        return pad_or_crop(dx, tuple((-lo, -hi) for lo, hi in _crops(geom)))  # zeros where x was cropped

    def _filter_grad(self, geom: ConvGeometry, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
        g, cg, og, _ = group_dims(geom)
        dw = np.zeros((*geom.kernel, cg, geom.out_channels), dtype=x.dtype)
        if dy.size == 0 or cg == 0:
            return dw
        lengths, axes = self._lengths(geom), _axes(geom)
        xs = _rfft(pad_or_crop(x, _crops(geom)), lengths, axes)  # (N, *F, C)
        dys = _rfft(_spread(dy, geom.stride), lengths, axes)  # (N, *F, O)
        # Correlation: multiply by the conjugate spectrum of the spread dy.
        f = math.prod(xs.shape[1:-1])
        xg = xs.reshape(geom.batch, f, g, cg).transpose(1, 2, 3, 0)  # (F, G, Cg, N)
        dg = np.conj(dys.reshape(geom.batch, f, g, og)).transpose(1, 2, 0, 3)  # (F, G, N, Og)
        spec = np.matmul(xg, dg)  # (F, G, Cg, Og): a batched GEMM, where einsum would loop
        # Lag t * d of the padded x is lag t * d - lo of x itself.
        lags = _kernel_lags(spec.reshape(*xs.shape[1:-1], g, cg, og), lengths, _tap_positions(geom, lengths),
                            x.dtype)
        dw[...] = np.moveaxis(lags, geom.rank, -2).reshape(*geom.kernel, cg, g * og)
        return dw


COPY_BYTES_PER_S = 5e9


def _numba_mix(op: str) -> bool:
    """The forward and the input gradient mix with the Numba kernel where Numba is installed; the
    filter gradient correlates with NumPy's batched matmul."""
    return _kernels.NUMBA and op != "filter_grad"


def _mix_seconds(freqs: int, n: int, cg: int, og: int, g: int, op: str) -> float:
    """The per-frequency products: the mixing kernel, or (the filter gradient's correlation, and
    without Numba) NumPy's batched matmul."""
    flops = 8 * freqs * n * cg * og * g
    if _numba_mix(op):
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


# Kernel-side transforms (a few taps zero-padded to the FFT length, many channel pairs) are
# matrix products with the DFT matrix restricted to the taps where BLAS runs those faster than
# pocketfft runs the padded FFTs: they cost n * k instead of n log n. Measured here (2-core
# AVX-512, float32, 1024 channel pairs): the padded FFTs, batched along the trailing channel
# axes, ran at 5-9 GFLOP/s of the 2.5 n log2 n count; the DFT GEMMs at 35 (7x7 into 32x32),
# 84 (31x31 into 48x48) and 145 GFLOP/s (255 taps into 1024).
KERNEL_FFT_FLOPS_PER_S = 6e9
DFT_GEMM_FLOPS_PER_S = 100e9


def _kernel_transform_seconds(kernel: tuple[int, ...], lengths: tuple[int, ...], pairs: int) -> float:
    """The cheaper of padded FFTs and DFT GEMMs for ``pairs`` kernels (or lag sets), in seconds."""
    return min(_padded_fft_seconds(lengths, pairs), _dft_gemm_seconds(kernel, lengths, pairs))


def _padded_fft_seconds(lengths: tuple[int, ...], pairs: int) -> float:
    size = math.prod(lengths)
    return 2.5 * pairs * size * max(1.0, math.log2(size)) / KERNEL_FFT_FLOPS_PER_S


def _dft_gemm_seconds(kernel: tuple[int, ...], lengths: tuple[int, ...], pairs: int) -> float:
    return _dft_gemm_flops(kernel, lengths, pairs) / DFT_GEMM_FLOPS_PER_S


def _dft_gemm_flops(kernel: tuple[int, ...], lengths: tuple[int, ...], pairs: int) -> float:
    flops, width = 0.0, pairs * math.prod(kernel)
    for i in reversed(range(len(kernel))):
        n = lengths[i] // 2 + 1 if i == len(kernel) - 1 else lengths[i]
        flops += 8 * n * width
        width = width // kernel[i] * n
    return flops


def _use_dft_gemm(kernel: tuple[int, ...], lengths: tuple[int, ...], pairs: int) -> bool:
    return _dft_gemm_seconds(kernel, lengths, pairs) < _padded_fft_seconds(lengths, pairs)


def _dft_matrix(n: int, positions: list[int], half: bool, dtype: np.dtype, sign: float = -1.0) -> np.ndarray:
    """exp(sign 2 pi i f p / n) for the frequencies f (0..n//2 when ``half``) and positions p."""
    f = np.arange(n // 2 + 1 if half else n)
    return np.exp(sign * 2j * np.pi * np.outer(f, positions) / n).astype(dtype)


def _kernel_spectrum(w: np.ndarray, lengths: tuple[int, ...], positions: list[list[int]]) -> np.ndarray:
    """The rfftn of w ``(*K, Cg, O)`` with tap t of axis i placed at ``positions[i][t]`` of a
    zero signal of length ``lengths[i]``, as real and imaginary planes: ``(2, *F, Cg, O)`` with
    the last axis of F halved."""
    rank = len(lengths)
    pairs = w.shape[-2] * w.shape[-1]
    if not _use_dft_gemm(w.shape[:rank], lengths, pairs):
        full = np.zeros((*lengths, *w.shape[rank:]), dtype=w.dtype)
        full[np.ix_(*positions)] = w
        spectrum = _rfft(full, lengths, tuple(range(rank)))
        return np.stack((spectrum.real, spectrum.imag))
    # Real GEMMs throughout, on planes: the halved axis first with the real and imaginary DFT
    # rows stacked, (K_0 .. K_r-2, 2, F_r-1, pairs); then each full axis with the DFT as a real
    # 2n x 2k block matrix over (tap, plane), which puts the planes in front of that axis's
    # frequencies, next to the taps of the axis before. (Interleaved complex arrays would need a
    # copy per stage: 2-3x the time of the GEMMs on 1,024 31 x 31 kernels.)
    kernel = w.shape[:rank]
    d = _dft_matrix(lengths[-1], positions[-1], True, np.complex128)
    rest: tuple[int, ...] = (d.shape[0], pairs)  # what follows the plane axis
    a = np.matmul(np.concatenate((d.real, d.imag)).astype(w.dtype), w.reshape(*kernel, pairs))
    for i in reversed(range(rank - 1)):
        d = _dft_matrix(lengths[i], positions[i], False, np.complex128)
        n, k = d.shape
        block = np.block([[d.real, -d.imag], [d.imag, d.real]])  # [[Re, -Im], [Im, Re]]
        # Columns in the order of a's (tap, plane) pairs: interleave the block's column halves.
        block = block.reshape(2 * n, 2, k).swapaxes(1, 2).reshape(2 * n, 2 * k).astype(w.dtype)
        a = np.matmul(block, a.reshape(math.prod(kernel[:i]), 2 * k, -1))
        rest = (n, *rest)
    return a.reshape(2, *rest[:-1], *w.shape[rank:])


def _along(d: np.ndarray, a: np.ndarray, axis: int) -> np.ndarray:
    """d applied to axis ``axis`` of the C-contiguous ``a``, as one batched matmul (no transposes)."""
    shape = a.shape
    out = np.matmul(d, a.reshape(math.prod(shape[:axis]), shape[axis], -1))
    return out.reshape(*shape[:axis], d.shape[0], *shape[axis + 1 :])


def _kernel_lags(spec: np.ndarray, lengths: tuple[int, ...], positions: list[list[int]],
                 dtype: np.dtype) -> np.ndarray:
    """The irfftn of ``spec`` ``(*F, ...)`` at the given positions only: ``(*K, ...)`` real."""
    rank = len(lengths)
    kernel = tuple(len(p) for p in positions)
    rest = spec.shape[rank:]
    if not _use_dft_gemm(kernel, lengths, math.prod(rest)):
        full = scipy.fft.irfftn(spec, s=lengths, axes=tuple(range(rank)), workers=_threads.allowed())
        return full[np.ix_(*positions)]
    a = spec.reshape(*spec.shape[:rank], -1)
    for i in range(rank - 1):  # full complex axes: inverse DFT restricted to the positions
        a = _along(_dft_matrix(lengths[i], positions[i], False, a.dtype, sign=1.0).T / lengths[i], a, i)
    # The halved axis: x[p] = (1 / n) sum_f c_f Re(X_f exp(2 pi i f p / n)), c_f = 2 except at
    # f = 0 and at the Nyquist frequency of an even n.
    n = lengths[-1]
    c = np.full(n // 2 + 1, 2.0)
    c[0] = 1.0
    if n % 2 == 0:
        c[-1] = 1.0
    d = (_dft_matrix(n, positions[-1], True, np.complex128, sign=1.0) * (c[:, None] / n)).T
    # One real GEMM on the planes stacked along the frequencies, [Re d | -Im d] @ [Re a; Im a],
    # instead of two on strided views of the complex array (6.4 against 7.3 ms for 31 x 31).
    planes = np.concatenate((a.real, a.imag), axis=-2)
    out = np.matmul(np.concatenate((d.real, -d.imag), axis=1).astype(dtype), planes)
    return out.reshape(*kernel, *rest)


def _spread(dy: np.ndarray, s: tuple[int, ...]) -> np.ndarray:
    """dy ``(N, *O, O)`` with s - 1 zeros between samples."""
    if all(v == 1 for v in s):
        return dy
    shape = (dy.shape[0], *((o - 1) * si + 1 for o, si in zip(dy.shape[1:-1], s)), dy.shape[-1])
    out = np.zeros(shape, dtype=dy.dtype)
    out[(slice(None), *(slice(None, None, si) for si in s))] = dy
    return out


def _mix(a: np.ndarray, ws: np.ndarray, g: int) -> np.ndarray:
    """Per-frequency channel mixing within groups: a ``(N, *F, G * ca)`` complex, ws ``(2, *F, ca,
    G * cb)`` real and imaginary planes -> ``(N, *F, G * cb)``, contracting a's channels with the
    filter's rows. Numba's register tiles where it is installed, else a batched complex matmul."""
    n, fshape = a.shape[0], a.shape[1:-1]
    f = math.prod(fshape)
    ca, o = ws.shape[-2:]
    if _kernels.NUMBA:
        a = np.ascontiguousarray(a)
        out = np.empty((n, *fshape, o), dtype=a.dtype)
        real = a.real.dtype
        planes = ws.reshape(2, f, ca, o)
        _kernels.spectral_mix(a.view(real).reshape(n, f, -1), planes[0], planes[1], g,
                              out.view(real).reshape(n, f, -1))
        return out
    af = a.reshape(n, f, g, ca).transpose(1, 2, 0, 3)  # (F, G, N, ca)
    wc = (ws[0] + 1j * ws[1]).astype(a.dtype).reshape(f, ca, g, o // g)
    wc = wc.transpose(0, 2, 1, 3)  # (F, G, ca, cb)
    out = np.matmul(af, wc)  # (F, G, N, cb)
    return out.transpose(2, 0, 1, 3).reshape(n, *fshape, o)
