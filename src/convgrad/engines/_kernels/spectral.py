"""The FFT engine's per-frequency channel mixing: a small complex matrix product per frequency,
with the filter spectrum kept as real and imaginary planes (the DFT GEMMs that take it produce
planes, and interleaving them cost more than the mix)."""

from __future__ import annotations

import numpy as np

from ._numba import _registers, _wide_vectors, njit

ROWS = 4  # spectra (batch samples) per register tile
WIDTH = 16  # output channels per register tile
FREQUENCIES = 16  # per chunk of work


@njit(cache=True)
def spectral_mix(a, wr, wi, groups, out):  # pragma: no cover - compiled
    """out[n, f, g, o] = sum_c a[n, f, g, c] (wr + i wi)[f, c, g * O/G + o], per group g.

    a ``(N, F, 2 * G * Cg)`` and out ``(N, F, 2 * O)``: complex spectra as interleaved reals;
    wr, wi ``(F, Cg, O)``. Register tiles of 4 spectra x 16 output channels; the last rows
    overlap the tile before (recomputing the same sums), the channels past the last whole tile
    go one at a time.

    One thread: the FFT engine calls it right after BLAS (the kernel spectra), whose worker
    threads keep spinning for about 0.1 s after a call, and a parallel loop sharing a core with
    them measured 6 ms where it took 0.7 alone (1.2 ms on one thread, either way).
    """
    n_, f_, a2 = a.shape
    cg, o = wr.shape[1], wr.shape[2]
    og = o // groups
    af, wrf, wif, of = a.ravel(), wr.ravel(), wi.ravel(), out.ravel()
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
                    ao = (n * f_ + f) * a2 + 2 * g * cg
                    oo = (n * f_ + f) * 2 * o + 2 * g * og
                    wo = f * cg * o + g * og
                    for b in range(blocks):
                        if rows == ROWS:
                            _mix_tile(af, wrf, wif, of, ao, f_ * a2, wo + b * WIDTH, o, oo + 2 * b * WIDTH,
                                      f_ * 2 * o, cg)
                        else:
                            for r in range(rows):
                                _mix_one(af, wrf, wif, of, ao + r * f_ * a2, wo + b * WIDTH, o,
                                         oo + r * f_ * 2 * o + 2 * b * WIDTH, cg, WIDTH)
                    if blocks * WIDTH < og:
                        for r in range(rows):
                            _mix_one(af, wrf, wif, of, ao + r * f_ * a2, wo + blocks * WIDTH, o,
                                     oo + r * f_ * 2 * o + 2 * blocks * WIDTH, cg, og - blocks * WIDTH)


@njit(cache=True, fastmath={"contract"})
def _mix_tile(af, wrf, wif, of, ao, astep, wo, wstep, oo, ostep, cg):  # pragma: no cover - compiled
    """Rows r < 4: a's channels start at ao + r * astep (interleaved), out's at oo + r * ostep; the
    filter's row c of 16 outputs at wo + c * wstep."""
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
    s = np.uint64(astep)
    w = np.uint64(wo)
    for c in range(cg):
        p = x + np.uint64(2 * c)
        ar0, ai0 = af[p], af[p + 1]
        ar1, ai1 = af[p + s], af[p + s + 1]
        ar2, ai2 = af[p + 2 * s], af[p + 2 * s + 1]
        ar3, ai3 = af[p + 3 * s], af[p + 3 * s + 1]
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
    _store(of, oo, r0, i0)
    _store(of, oo + ostep, r1, i1)
    _store(of, oo + 2 * ostep, r2, i2)
    _store(of, oo + 3 * ostep, r3, i3)


@njit(cache=True)
def _store(of, oo, re, im):  # pragma: no cover - compiled
    """One spectrum's 16 sums, interleaved into out from ``oo``."""
    for j in range(WIDTH):
        of[oo + 2 * j] = re[j]
        of[oo + 2 * j + 1] = im[j]


@njit(cache=True, fastmath={"contract"})
def _mix_one(af, wrf, wif, of, ao, wo, wstep, oo, cg, width):  # pragma: no cover - compiled
    """One spectrum, ``width`` outputs (the tiles' leftovers): summed in place in out."""
    for j in range(width):
        of[oo + 2 * j] = 0
        of[oo + 2 * j + 1] = 0
    for c in range(cg):
        ar, ai = af[ao + 2 * c], af[ao + 2 * c + 1]
        w = wo + c * wstep
        for j in range(width):
            u, v = wrf[w + j], wif[w + j]
            of[oo + 2 * j] += ar * u - ai * v
            of[oo + 2 * j + 1] += ar * v + ai * u
