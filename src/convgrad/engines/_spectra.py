"""Spectra for the FFT engine: how signals and kernels are transformed, mixed and transformed
back.

Transforms of few samples (a kernel's taps, a small signal in a longer transform) are products
with the DFT matrix restricted to the samples there are, forward, and to the samples kept, back:
real GEMMs on real and imaginary planes, ``(..., 2, *F, ...)`` with the last axis of F halved,
where BLAS runs them faster than pocketfft runs the zero-padded FFTs; larger ones are
pocketfft's, complex ``(..., *F, ...)``. The mixing kernel reads and writes either form. Large
intermediates live in the engines' scratch memory.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

from . import _kernels, _threads
from ._kernels.spectral import steps
from ._machine import figures
from ._scratch import scratch

# The transforms' cost: pocketfft on zero-padded signals at FFT_FLOPS_PER_S of the 2.5 n log2 n
# count, or DFT GEMMs (see below). The channel mixing: Numba's register tiles at MIX_FLOPS_PER_S;
# without Numba, NumPy's batched complex matmul at CGEMM_FLOPS_PER_S, which also spends
# BATCH_ITEM_SECONDS per (frequency, group) pair (dominant for depthwise convs). Figures in
# calibration.json.


def use_signal_dft(shape: tuple[int, ...], lengths: tuple[int, ...]) -> bool:
    """Whether signals ``(N, *S, C)`` are transformed by DFT GEMMs (small transforms: a 32 x 32
    batch of 4 x 32 channels into 48 x 48 took 0.5 ms, pocketfft's rfftn 2.2-3.4) or by pocketfft."""
    return use_dft_gemm(shape[1:-1], lengths, shape[0] * shape[-1])


def spectrum(a: np.ndarray, lengths: tuple[int, ...], stride: tuple[int, ...], name: str) -> np.ndarray:
    """The rfftn of ``a`` ``(N, *S, C)`` spread ``stride`` apart (s - 1 zeros between samples):
    planes ``(N, 2, *F, C)`` from DFT GEMMs (in scratch memory of that ``name``), or complex
    ``(N, *F, C)`` from pocketfft."""
    if use_signal_dft(a.shape, lengths):
        positions = [range(0, n * s, s) for n, s in zip(a.shape[1:-1], stride)]
        return dft(a, lengths, positions, lead=1, name=name)
    return _rfft(_spread(a, stride), lengths, tuple(range(1, len(lengths) + 1)))


def samples_first(a: np.ndarray, ws: np.ndarray, g: int, lengths: tuple[int, ...],
                  keep: tuple[int, ...]) -> np.ndarray:
    """``samples`` of pocketfft's spectra ``a`` ``(N, *F, C)`` at the first ``keep`` samples of
    each axis, channels-first: ``(N, O, *keep)``, a view of a fresh array. The inverse reads the
    mixed spectra as a channels-first view: pocketfft copies each line it transforms in and out
    anyway, so the transposition costs nothing there (mixing channels-first spectra took 1.7x
    the mixing kernel's channels-last time: its tiles' sums lie F apart)."""
    axes = tuple(range(2, 2 + len(lengths)))
    return irfft(np.moveaxis(_mix(a, ws, g, planes=False), -1, 1), lengths, axes, keep)


def _complex(spectra: np.ndarray) -> np.ndarray:
    """Spectra as ``spectrum`` returns them, as complex ``(N, *F, C)``."""
    if np.iscomplexobj(spectra):
        return spectra
    return spectra[:, 0] + 1j * spectra[:, 1]


def samples(a: np.ndarray, ws: np.ndarray, g: int, lengths: tuple[int, ...],
            positions: list[range], out: np.ndarray | None = None) -> np.ndarray:
    """The spectra ``a`` (as ``spectrum`` returns them) mixed with the kernel's planes ``ws``
    (see ``_mix``), transformed back at the given positions of each axis: ``(N, *K, O)``, a fresh
    array or written to ``out`` of that shape (any strides: a channels-first result seen
    channels-last)."""
    shape = (a.shape[0], *(len(p) for p in positions), ws.shape[-1])
    if use_signal_dft(shape, lengths):
        return idft(_mix(a, ws, g, planes=True), lengths, positions, lead=1, name="fft.y", out=out)
    axes = tuple(range(1, len(lengths) + 1))
    full = irfft(_mix(a, ws, g, planes=False), lengths, axes, tuple(p[-1] + 1 for p in positions))
    kept = full[(slice(None), *(slice(None, None, p.step) for p in positions))]
    if out is None:
        return np.ascontiguousarray(kept)
    np.copyto(out, kept)
    return out


def mix_seconds(freqs: int, n: int, cg: int, og: int, g: int) -> float:
    """The per-frequency products (the mix, or the filter gradient's correlation): the mixing
    kernel, or without Numba NumPy's batched matmul."""
    fig = figures("_spectra")
    flops = 8 * freqs * n * cg * og * g
    if _kernels.NUMBA:
        return flops / fig.MIX_FLOPS_PER_S
    return flops / fig.CGEMM_FLOPS_PER_S + freqs * g * fig.BATCH_ITEM_SECONDS


def _rfft(a: np.ndarray, lengths: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    # rfftn's own padded copy: transforming axis by axis, the halved axis along the signal's rows
    # only, took 1.4x its time on 32 x 32 signals in 48 x 48 transforms.
    return scipy.fft.rfftn(a, s=lengths, axes=axes, workers=_threads.shared())


def irfft(a: np.ndarray, lengths: tuple[int, ...], axes: tuple[int, ...],
          keep: tuple[int, ...]) -> np.ndarray:
    """irfftn of ``a`` to ``lengths``, only its first ``keep`` samples along each axis: each full
    axis's inverse is cut to them before the next stage, so the halved axis's inverse runs on the
    kept lines only (a 32 x 32 result of a 48 x 48 transform: 32 rows, not 48; 0.5 of irfftn's
    time there). ``a`` is overwritten."""
    workers = _threads.shared()
    for n, axis, k in zip(lengths[:-1], axes[:-1], keep[:-1]):
        a = scipy.fft.ifft(a, n=n, axis=axis, workers=workers, overwrite_x=True)
        a = a[(slice(None),) * axis + (slice(0, k),)]
    out = scipy.fft.irfft(a, n=lengths[-1], axis=axes[-1], workers=workers)
    return out[(slice(None),) * axes[-1] + (slice(0, keep[-1]),)]


def transform_seconds(shape: tuple[int, ...], lengths: tuple[int, ...], count: int) -> float:
    """The cheaper of padded FFTs and DFT GEMMs for ``count`` signals (kernels, lag sets) of
    ``shape`` samples each, forward or back, in seconds."""
    return min(_padded_fft_seconds(lengths, count), _dft_gemm_seconds(shape, lengths, count))


def use_dft_gemm(kernel: tuple[int, ...], lengths: tuple[int, ...], pairs: int) -> bool:
    return _dft_gemm_seconds(kernel, lengths, pairs) < _padded_fft_seconds(lengths, pairs)


def _padded_fft_seconds(lengths: tuple[int, ...], pairs: int) -> float:
    fig = figures("_spectra")
    size = math.prod(lengths)
    return 2.5 * pairs * size * max(1.0, math.log2(size)) / fig.FFT_FLOPS_PER_S


def _dft_gemm_seconds(kernel: tuple[int, ...], lengths: tuple[int, ...], pairs: int) -> float:
    """The GEMMs of ``dft`` (n * k per axis, not n log n): axis i maps (K_0 .. K_i, F_i+1 ..) to
    (K_0 .. K_i-1, F_i ..), at DFT_GEMM_FLOPS_PER_S."""
    f = freqs(lengths)
    flops = float(sum(8 * f[i] * math.prod(kernel[: i + 1]) * math.prod(f[i + 1 :]) * pairs
                      for i in range(len(kernel))))
    return flops / figures("_spectra").DFT_GEMM_FLOPS_PER_S


def freqs(lengths: tuple[int, ...]) -> tuple[int, ...]:
    """The frequencies an rfftn of ``lengths`` keeps per axis: the last axis halved."""
    return (*lengths[:-1], lengths[-1] // 2 + 1)


def _dft_matrix(n: int, positions: tuple[int, ...], half: bool, sign: float = -1.0) -> np.ndarray:
    """exp(sign 2 pi i f p / n) for the frequencies f (0..n//2 when ``half``) and positions p."""
    f = np.arange(n // 2 + 1 if half else n)
    return np.exp(sign * 2j * np.pi * np.outer(f, positions) / n)


def kernel_spectrum(w: np.ndarray, lengths: tuple[int, ...], positions: list[list[int]]) -> np.ndarray:
    """The rfftn of w ``(*K, Cg, O)`` with tap t of axis i placed at ``positions[i][t]`` of a
    zero signal of length ``lengths[i]``, as real and imaginary planes: ``(2, *F, Cg, O)`` with
    the last axis of F halved (from DFT GEMMs: in scratch memory)."""
    rank = len(lengths)
    pairs = w.shape[-2] * w.shape[-1]
    if use_dft_gemm(w.shape[:rank], lengths, pairs):
        return dft(w, lengths, positions, name="fft.w")
    full = np.zeros((*lengths, *w.shape[rank:]), dtype=w.dtype)
    full[np.ix_(*positions)] = w
    spectrum = _rfft(full, lengths, tuple(range(rank)))
    return np.stack((spectrum.real, spectrum.imag))


def dft(a: np.ndarray, lengths: tuple[int, ...], positions: list[list[int]], lead: int = 0,
        name: str = "") -> np.ndarray:
    """The rfftn of a ``(*L, *K, ...)`` (``lead`` axes L, then one axis per length) with sample t
    of axis i at ``positions[i][t]`` of a zero signal of length ``lengths[i]``, as DFT GEMMs:
    real and imaginary planes ``(*L, 2, *F, ...)``, the last axis of F halved. With a ``name``,
    the stages write to scratch memory of that name (the result included)."""
    rank = len(lengths)
    head, kernel, tail = a.shape[:lead], a.shape[lead : lead + rank], a.shape[lead + rank :]
    if a.size == 0:  # nothing to transform (x cropped away): the spectrum of zeros
        return np.zeros((*head, 2, *freqs(lengths), *tail), dtype=a.dtype)
    # Real GEMMs throughout, on planes: the halved axis first, (L, K_0 .. K_r-2, 2, F_r-1, ...);
    # then each full axis, which puts the planes in front of that axis's frequencies, next to the
    # taps of the axis before. (Interleaved complex arrays would need a copy per stage: 2-3x the
    # time of the GEMMs on 1,024 31 x 31 kernels.)
    # The first stage reads ``a`` as it is laid out: the tail merged into one axis is a view of a
    # channels-first array seen channels-last (x (N, *S, C), its rows C apart; a filter's taps
    # T apart), which BLAS reads as transposed matrices (8 % slower than contiguous ones, where a
    # transposing copy of a 32 x 32 x 31 x 31 filter took 0.47 ms of a 6.5 ms op); a tail that
    # does not merge is copied by the reshape.
    m = _forward_stage(lengths[-1], tuple(positions[-1]), True, a.dtype)
    rows = a.reshape(*a.shape[: lead + rank], -1)
    shape = (*rows.shape[:-2], m.shape[0], rows.shape[-1])
    a = _threads.matmul(m, rows, out=scratch(name + "0", shape, a.dtype) if name else None)
    a = a.reshape(math.prod(head) * math.prod(kernel[:-1]), m.shape[0], -1)
    for i in reversed(range(rank - 1)):  # stage rank - 1 - i: the buffers alternate
        a = _gemm(_forward_stage(lengths[i], tuple(positions[i]), False, a.dtype),
                  a.reshape(math.prod(head) * math.prod(kernel[:i]), 2 * kernel[i], -1),
                  name and name + str((rank - 1 - i) % 2))
    return a.reshape(*head, 2, *freqs(lengths), *tail)


def idft(a: np.ndarray, lengths: tuple[int, ...], positions: list[list[int]], lead: int = 0,
         name: str = "", out: np.ndarray | None = None) -> np.ndarray:
    """The irfftn of the planes ``a`` ``(*L, 2, *F, ...)`` (as ``dft`` makes them) to
    ``lengths``, at the given positions only, as DFT GEMMs: ``(*L, *K, ...)`` real, a fresh array,
    or written to ``out`` ``(*L, *K, T)`` (the trailing axes merged into one; any strides, such as
    a channels-first array seen channels-last) and returned. With a ``name``, the stages before
    the last write to scratch memory of that name."""
    rank = len(lengths)
    head, tail = a.shape[:lead], a.shape[lead + 1 + rank :]
    if a.size == 0 or any(len(p) == 0 for p in positions):
        if out is not None:
            out[...] = 0
            return out
        return np.zeros((*head, *(len(p) for p in positions), *tail), dtype=a.dtype)
    outer = math.prod(head)
    for i in range(rank - 1):  # full axes: (2, F_i) -> (K_i, 2)
        a = _gemm(_inverse_stage(lengths[i], tuple(positions[i]), False, a.dtype),
                  a.reshape(outer, 2 * lengths[i], -1), name and name + str(i % 2))
        outer *= len(positions[i])
    m = _inverse_stage(lengths[-1], tuple(positions[-1]), True, a.dtype)
    if out is not None:  # the last stage writes the caller's layout: no copy after
        assert out.shape[:-1] == (*head, *(len(p) for p in positions)), (out.shape, head, positions)
        return _threads.matmul(m, a.reshape(*out.shape[:-2], m.shape[1], out.shape[-1]), out=out)
    a = _threads.matmul(m, a.reshape(outer, 2 * freqs(lengths)[-1], -1))
    return a.reshape(*head, *(len(p) for p in positions), *tail)


def _gemm(m: np.ndarray, a: np.ndarray, name: str) -> np.ndarray:
    """m @ a (batched over a's first axis), into scratch memory of that name if one is given."""
    if not name:
        return _threads.matmul(m, a)
    return _threads.matmul(m, a, out=scratch(name, (a.shape[0], m.shape[0], a.shape[2]), a.dtype))


# The GEMMs' matrices, kept: building them took 0.5 ms of a 31 x 31 conv's 8 (complex exponentials
# in float64), and a training loop asks for the same ones at every step.
@functools.lru_cache(maxsize=256)
def _forward_stage(n: int, positions: tuple[int, ...], half: bool, dtype: np.dtype) -> np.ndarray:
    """The matrix of one axis of ``dft``. The halved axis: the real and imaginary DFT rows
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
    """The matrix of one axis of ``idft``. A full axis: the inverse DFT at the positions as a real
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
    out = _threads.matmul(af, wc).transpose(2, 0, 1, 3).reshape(n, *fshape, o)  # (F, G, N, cb) -> (N, *F, O)
    return np.stack((out.real, out.imag), axis=1) if planes else out


def lags(xs: np.ndarray, dys: np.ndarray, g: int, lengths: tuple[int, ...],
         positions: list[list[int]], out: np.ndarray | None = None) -> np.ndarray:
    """The filter gradient's sums: x's spectra correlated with dy's (see ``correlate``) and
    transformed back at the lags ``positions``: ``(*K, G, Cg, Og)``, a fresh array. DFT GEMMs on
    planes where those are cheaper, else pocketfft's irfftn of the whole correlation.

    With ``out`` ``(*K, G * Og * Cg)`` (any strides: a channels-first filter ``(O, Cg, *K)``
    seen with its taps first), the sums in the order of that filter's channels are written there:
    the correlation taken with the roles swapped, dy's channels as the rows, which is its
    conjugate, so transformed back at the negated lags (a real signal's conjugate spectrum is its
    reversal)."""
    kernel = tuple(len(p) for p in positions)
    swap = out is not None
    if swap:
        positions = [[-p % n for p in ps] for ps, n in zip(positions, lengths)]
    if use_dft_gemm(kernel, lengths, xs.shape[-1] * dys.shape[-1] // g):
        return idft(correlate(xs, dys, g, planes=True, swap=swap), lengths, positions, name="fft.lags",
                    out=out)
    spec = correlate(xs, dys, g, planes=False, swap=swap)
    full = scipy.fft.irfftn(spec, s=lengths, axes=tuple(range(len(lengths))), workers=_threads.shared())
    if out is None:
        return full[np.ix_(*positions)]
    np.copyto(out, full[np.ix_(*positions)].reshape(out.shape))
    return out


def correlate(xs: np.ndarray, dys: np.ndarray, g: int, planes: bool, swap: bool = False) -> np.ndarray:
    """Per frequency and group, x's spectra times the conjugate spectra of dy, summed over the
    batch: xs ``(N, *F, C)`` and dys ``(N, *F, O)`` as ``spectrum`` returns them -> ``(2, *F, G,
    Cg, Og)`` planes if ``planes`` else ``(*F, G, Cg, Og)`` complex. ``swap``: dy's spectra times
    the conjugate of x's, ``(..., G, Og, Cg)`` (the conjugate, transposed per group). On Numba,
    the mixing kernel with one side's channels as its rows and the batch as the sum (4 x 16 tiles
    per frequency); else a batched complex matmul."""
    n = xs.shape[0]
    fshape = dys.shape[1:-1] if np.iscomplexobj(dys) else dys.shape[2:-1]
    rows, cols = (dys, xs) if swap else (xs, dys)
    f, real = math.prod(fshape), xs.real.dtype
    rg, cg = rows.shape[-1] // g, cols.shape[-1] // g
    if _kernels.NUMBA:
        rows = np.ascontiguousarray(rows)
        # The other side's conjugate planes per group as the kernel's filter, (G, F, N, cg): the
        # batch is summed.
        if np.iscomplexobj(cols):
            wr, wi = scratch("fft.conj", (2, g, f, n, cg), real)
            _kernels.conjugate_planes(np.ascontiguousarray(cols).reshape(n, f, -1), g, wr, wi)
        else:
            wr = np.ascontiguousarray(cols[:, 0].reshape(n, f, g, cg).transpose(2, 1, 0, 3))
            wi = np.ascontiguousarray(-cols[:, 1].reshape(n, f, g, cg).transpose(2, 1, 0, 3))
        xn, xf, xc, xi = steps(n, f, rows.shape[-1], not np.iscomplexobj(rows))
        shape = (2, *fshape, g, rg, cg) if planes else (*fshape, g, rg, cg)
        out = scratch("fft.spec", shape, real if planes else np.result_type(real, np.complex64))
        # Rows: one group's channels of the rows' side; output rows of cg channels, F * G * rg * cg apart.
        on, of, oc, oi = (cg, g * rg * cg, 1, f * g * rg * cg) if planes else (2 * cg, 2 * g * rg * cg, 2, 1)
        flat_x, flat_out = rows.view(real).ravel(), out.view(real).ravel()
        for k in range(g):
            _kernels.spectral_mix(flat_x[k * rg * xc :], (xc, xf, xn, xi), wr[k], wi[k], 1,
                                  flat_out[k * rg * on :], (on, of, oc, oi), rg)
        return out
    rgp = _complex(rows).reshape(n, f, g, rg).transpose(1, 2, 3, 0)  # (F, G, rg, N)
    cgp = np.conj(_complex(cols).reshape(n, f, g, cg)).transpose(1, 2, 0, 3)  # (F, G, N, cg)
    spec = _threads.matmul(rgp, cgp).reshape(*fshape, g, rg, cg)  # a batched GEMM, where einsum would loop
    return np.stack((spec.real, spec.imag)) if planes else spec
