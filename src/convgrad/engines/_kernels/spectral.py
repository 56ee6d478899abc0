"""The FFT engine's per-frequency channel mixing: a small complex matrix product per frequency,
with the filter spectrum kept as real and imaginary planes (the DFT GEMMs that take it produce
planes, and interleaving them cost more than the mix). The spectra it mixes and writes may be
interleaved complex numbers (pocketfft's) or planes (the DFT GEMMs'): each comes with its steps."""

from __future__ import annotations

import numpy as np

from ._numba import _registers, _wide_vectors, njit

ROWS = 4  # spectra (batch samples) per register tile
WIDTH = 16  # output channels per register tile
FREQUENCIES = 16  # per chunk of work


def steps(n: int, f: int, c: int, planes: bool) -> tuple[int, int, int, int]:
    """Where the reals of N spectra of F frequencies x C channels lie in a flat array: the steps
    between spectra, frequencies and channels, and the imaginary part's offset from the real.
    Interleaved complex ``(N, F, C)``, or planes ``(N, 2, F, C)``."""
    if planes:
        return 2 * f * c, c, 1, f * c
    return 2 * f * c, 2 * c, 2, 1


@njit(cache=True)
def spectral_mix(a, at, wr, wi, groups, out, ot, n_):  # pragma: no cover - compiled
    """out[n, f, g, o] = sum_c a[n, f, g, c] (wr + i wi)[f, c, g * O/G + o], per group g.

    a and out: the reals of n_ complex spectra, flat, laid out as the steps ``at`` and ``ot`` say
    (see ``steps``); wr, wi ``(F, Cg, O)``. Register tiles of 4 spectra x 16 output channels; the
    last rows overlap the tile before (recomputing the same sums), the channels past the last
    whole tile go one at a time.

    One thread: the FFT engine calls it right after BLAS (the kernel spectra), whose worker
    threads keep spinning for about 0.1 s after a call, and a parallel loop sharing a core with
    them measured 6 ms where it took 0.7 alone (1.2 ms on one thread, either way).
    """
    f_, cg, o = wr.shape[0], wr.shape[1], wr.shape[2]
    og = o // groups
    wrf, wif = wr.ravel(), wi.ravel()
    blocks = og // WIDTH
    # Frequencies in chunks whose filter planes stay in the second-level cache while every tile of
    # spectra passes over them; within a chunk a spectrum's rows are adjacent in memory. (One
    # frequency at a time, the rows of a tile lie F * C apart and each costs a memory latency:
    # 3x slower with 128 spectra.)
    chunks = -(-f_ // FREQUENCIES)
    for k in range(chunks):
        for g in range(groups):
            for n0 in range(0, n_, ROWS):
                n = min(n0, n_ - ROWS) if n_ >= ROWS else n0
                rows = min(ROWS, n_ - n)
                for f in range(k * FREQUENCIES, min(f_, (k + 1) * FREQUENCIES)):
                    ao = n * at[0] + f * at[1] + g * cg * at[2]
                    oo = n * ot[0] + f * ot[1] + g * og * ot[2]
                    wo = f * cg * o + g * og
                    for b in range(blocks):
                        if rows == ROWS:
                            _mix_tile(a, at, ao, wrf, wif, wo + b * WIDTH, o, out, ot, oo + b * WIDTH * ot[2],
                                      cg)
                        else:
                            for r in range(rows):
                                _mix_one(a, at, ao + r * at[0], wrf, wif, wo + b * WIDTH, o, out, ot,
                                         oo + r * ot[0] + b * WIDTH * ot[2], cg, WIDTH)
                    if blocks * WIDTH < og:
                        for r in range(rows):
                            _mix_one(a, at, ao + r * at[0], wrf, wif, wo + blocks * WIDTH, o, out, ot,
                                     oo + r * ot[0] + blocks * WIDTH * ot[2], cg, og - blocks * WIDTH)


@njit(cache=True)
def conjugate_planes(a, groups, wr, wi):  # pragma: no cover - compiled
    """wr[g, f, n, c] + i wi[g, f, n, c] = conj(a[n, f, g * Cg + c]) for complex spectra a
    ``(N, F, G * Cg)``: the correlation's other side as ``spectral_mix``'s filter planes per
    group, ``(G, F, N, Cg)`` each, the batch as their rows.

    In a's order, each (spectrum, frequency) row read once for both planes: NumPy's two
    transposing copies (the real part, the negated imaginary part through a temporary) took 7.6
    ms against 1.3, 168 spectra of 513 x 32, one thread."""
    n_, f_, c_ = a.shape
    cg = c_ // groups
    for n in range(n_):
        for f in range(f_):
            for g in range(groups):
                for c in range(cg):
                    v = a[n, f, g * cg + c]
                    wr[g, f, n, c] = v.real
                    wi[g, f, n, c] = -v.imag


@njit(cache=True, fastmath={"contract"})
def _mix_tile(af, at, ao, wrf, wif, wo, wstep, of, ot, oo, cg):  # pragma: no cover - compiled
    """Spectra r < 4 from ao + r * at[0] in a, oo + r * ot[0] in out; the filter's row c of 16
    outputs at wo + c * wstep."""
    _wide_vectors()
    r0 = _registers(WIDTH, of.dtype)
    r1 = _registers(WIDTH, of.dtype)
    r2 = _registers(WIDTH, of.dtype)
    r3 = _registers(WIDTH, of.dtype)
    i0 = _registers(WIDTH, of.dtype)
    i1 = _registers(WIDTH, of.dtype)
    i2 = _registers(WIDTH, of.dtype)
    i3 = _registers(WIDTH, of.dtype)
    for j in range(WIDTH):
        r0[j] = 0
        r1[j] = 0
        r2[j] = 0
        r3[j] = 0
        i0[j] = 0
        i1[j] = 0
        i2[j] = 0
        i3[j] = 0
    x = np.uint64(ao)
    s = np.uint64(at[0])
    cs = np.uint64(at[2])
    im = np.uint64(at[3])
    w = np.uint64(wo)
    for c in range(cg):
        p = x + np.uint64(c) * cs
        ar0, ai0 = af[p], af[p + im]
        ar1, ai1 = af[p + s], af[p + s + im]
        ar2, ai2 = af[p + 2 * s], af[p + 2 * s + im]
        ar3, ai3 = af[p + 3 * s], af[p + 3 * s + im]
        for j in range(np.uint64(WIDTH)):
            u = wrf[w + j]
            v = wif[w + j]
            r0[j] += ar0 * u
            r0[j] -= ai0 * v
            i0[j] += ar0 * v
            i0[j] += ai0 * u
            r1[j] += ar1 * u
            r1[j] -= ai1 * v
            i1[j] += ar1 * v
            i1[j] += ai1 * u
            r2[j] += ar2 * u
            r2[j] -= ai2 * v
            i2[j] += ar2 * v
            i2[j] += ai2 * u
            r3[j] += ar3 * u
            r3[j] -= ai3 * v
            i3[j] += ar3 * v
            i3[j] += ai3 * u
        w += np.uint64(wstep)
    _store(of, ot, oo, r0, i0)
    _store(of, ot, oo + ot[0], r1, i1)
    _store(of, ot, oo + 2 * ot[0], r2, i2)
    _store(of, ot, oo + 3 * ot[0], r3, i3)


@njit(cache=True)
def _store(of, ot, oo, re, im):  # pragma: no cover - compiled
    """One spectrum's 16 sums into out from ``oo``."""
    if ot[2] == 1:  # planes: two vector stores (strided scalar stores made tiles of few sums 3x slower)
        i = oo + ot[3]
        for j in range(WIDTH):
            of[oo + j] = re[j]
        for j in range(WIDTH):
            of[i + j] = im[j]
    else:
        for j in range(WIDTH):
            of[oo + j * ot[2]] = re[j]
            of[oo + j * ot[2] + ot[3]] = im[j]


@njit(cache=True, fastmath={"contract"})
def _mix_one(af, at, ao, wrf, wif, wo, wstep, of, ot, oo, cg, width):  # pragma: no cover - compiled
    """One spectrum, ``width`` outputs (the tiles' leftovers): summed in place in out."""
    cs, oc, im, oim = at[2], ot[2], at[3], ot[3]
    for j in range(width):
        of[oo + j * oc] = 0
        of[oo + j * oc + oim] = 0
    for c in range(cg):
        ar, ai = af[ao + c * cs], af[ao + c * cs + im]
        w = wo + c * wstep
        for j in range(width):
            u, v = wrf[w + j], wif[w + j]
            of[oo + j * oc] += ar * u - ai * v
            of[oo + j * oc + oim] += ar * v + ai * u
