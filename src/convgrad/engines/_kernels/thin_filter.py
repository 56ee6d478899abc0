"""The dense filter gradient for few output channels (a 3-D conv's 16): a GEMM over an implicit
im2col of x with the vectors along the filter rows, in register tiles of 8 output channels x 48
filter rows (float32).

dw[(a, b, e, c), o] = sum over outputs (n, i, j, k) of xp[n, i*s0 + a*d0, j*s1 + b*d1,
k*s2 + e*d2, c] * dy[n, i, j, k, o]. Without dilation along the row, a tap row's (e, c) are one
run of KW * C values, contiguous in x: 16 of them are one vector load. Each tile holds 8 output
channels x 3 vectors of the run (24 registers) and loads, per output, 8 broadcast dy values and 3
vectors of x for 24 multiply-adds (11 loads; the tiles of 16 input x 16 output channels of
tiled.py load 17 per 16, filter_runs.py's 6 x 64 tiles would compute 48 zero channels of 64).
Measured in the first cache, one thread: 270 GFLOP/s against 242 for the 16 x 16 tiles. Its inner
loop compiles (``_tile_8x48.inspect_asm()``) to 8 broadcasts, 3 vector loads and 24 zmm
multiply-adds per output, no spill.

The runs are cut into vectors of 16 rows; the last vector of a run may reach past it (into the
next values of x, which the caller's margin of 16 floats keeps inside the array): those rows
land in the padding of the partial filter gradients and are dropped. The partial gradients are
laid out (part, O, KD, KH, taps, run padded to 16), so that a tile stores whole vectors.

The rows of dy are cut into chunks that the threads claim (``_claim``); each chunk sums into its
own part, so the result does not depend on which thread took which chunk. Within a chunk the rows
go in groups of about ``group_bytes`` of dy, which stay in the first cache while the taps walk
over them.
"""

from __future__ import annotations

import numpy as np

from ._numba import _claim, _registers, _wide_vectors, literally, njit, prange
from ._simd import VECTOR_BYTES, add2, add3, lanes, vfma, vload, vsplat, vzero

VECTOR = 16  # filter rows per run block (a 512-bit register of float32; 2 vectors with AVX2)
OUTS = 8  # output channels per tile
_U16 = np.uint64(16)
_U32 = np.uint64(32)


@njit(parallel=True, cache=True)
def thin_filter_grad(xf, xshape, df, dshape, first, s0, s1, s2, d0, d1, d2, group_bytes,
                     parts):  # pragma: no cover - compiled
    """parts[p] (O8, KD, KH, T, R16) = the filter gradient summed over chunk p of dy's rows, of
    the padded x (N, D', H', W', C) given flat as ``xf`` (``xshape`` its 5 extents; at least 16
    values past them) and dy given flat as ``df``: (N, D, H, W, O) = ``dshape``, or with
    ``first`` laid out (N, O, D, H, W), as it is (no copy: the last block of 8 output channels
    reads channel O - 1 again where O is not a multiple of 8). T = 1 and R16 the run KW * C
    padded to 16 without dilation along the row (d2 == 1), else T = KW taps of runs of C. The
    caller adds the parts and drops the output channels past O and the rows past the run. 1-D
    and 2-D convs come with unit leading axes."""
    N, OD, OH, OW, O = dshape
    XD, XH, XW, C = xshape[1], xshape[2], xshape[3], xshape[4]
    P, O8, KD, KH, T, RP = parts.shape
    sd, sh, sw = XH * XW * C, XW * C, np.uint64(s2 * C)
    rows = N * OD * OH
    # dy's strides: a sample, a channel, an output row, an output along it
    dn = OD * OH * OW * O
    dc, dr, dp = (OD * OH * OW, OW, 1) if first else (1, OW * O, O)
    group = max(1, group_bytes // max(1, OW * O * 4))
    vectors = RP // VECTOR
    ostride = KD * KH * T * RP  # from one output channel of a part to the next
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(P):
        k = _claim(counter)
        xo = np.empty(group, np.int64)  # where each row of the group starts in x (tap a, b) and dy
        do = np.empty(group, np.int64)
        while k < P:
            tf = parts[k].ravel()
            tf[:] = 0
            start, stop = k * rows // P, (k + 1) * rows // P
            for r0 in range(start, stop, group):
                count = min(group, stop - r0)
                for i in range(count):
                    do[i] = (r0 + i) // (OD * OH) * dn + (r0 + i) % (OD * OH) * dr
                for a in range(KD):
                    for b in range(KH):
                        for i in range(count):  # divisions are slow: once per row and tap row
                            r = r0 + i
                            xo[i] = (r // (OD * OH) * XD + r // OH % OD * s0 + a * d0) * sd + (
                                r % OH * s1 + b * d1) * sh
                        for e in range(T):
                            row = ((a * KH + b) * T + e) * RP
                            for ob in range(0, O8, OUTS):
                                m = min(OUTS, O - ob)
                                _run(xf, df, tf, xo, do, count, e * d2 * C, ob * dc, m, dc, sw, dp, OW,
                                     ob * ostride + row, ostride, vectors)
            k = _claim(counter)


@njit(cache=True)
def _run(xf, df, tf, xo, do, count, shift, ob, m, dc, sw, dp, OW, at, ostride, vectors):  # pragma: no cover
    """The tiles of one run of ``vectors`` vectors of filter rows (x at shift, dw at ``at``) x one
    block of 8 output channels: 3 vectors at a time, then 2 or 1."""
    for v in range(0, vectors - 2, 3):
        r = v * VECTOR
        _tile_8x48(xf, df, tf, xo, do, count, shift + r, ob, m, dc, sw, dp, OW, at + r, ostride)
    r = (vectors - vectors % 3) * VECTOR
    if vectors % 3 == 2:
        _tile(xf, df, tf, xo, do, count, shift + r, ob, m, dc, sw, dp, OW, at + r, ostride, 32)
    elif vectors % 3 == 1:
        _tile(xf, df, tf, xo, do, count, shift + r, ob, m, dc, sw, dp, OW, at + r, ostride, 16)


@njit(cache=True, fastmath={"contract"})
def _tile_8x48(xf, df, tf, xo, do, count, shift, ob, m, dc, sw, dp, OW, at, ostride):  # pragma: no cover
    """_tile for 3 vectors, written out: 24 sums, each dy value broadcast once for its 3
    multiply-adds (8 x 48 arrays with all 8 broadcasts live took 33 registers and spilled)."""
    if VECTOR_BYTES == 32:  # AVX2: 8 x 48 float32 sums would take 48 of its 16 vector registers
        _passes(xf, df, tf, xo, do, count, shift, ob, m, dc, sw, dp, OW, at, ostride, 48)
        return
    _wide_vectors()
    a00 = _registers(16, df.dtype)
    a01 = _registers(16, df.dtype)
    a02 = _registers(16, df.dtype)
    a10 = _registers(16, df.dtype)
    a11 = _registers(16, df.dtype)
    a12 = _registers(16, df.dtype)
    a20 = _registers(16, df.dtype)
    a21 = _registers(16, df.dtype)
    a22 = _registers(16, df.dtype)
    a30 = _registers(16, df.dtype)
    a31 = _registers(16, df.dtype)
    a32 = _registers(16, df.dtype)
    a40 = _registers(16, df.dtype)
    a41 = _registers(16, df.dtype)
    a42 = _registers(16, df.dtype)
    a50 = _registers(16, df.dtype)
    a51 = _registers(16, df.dtype)
    a52 = _registers(16, df.dtype)
    a60 = _registers(16, df.dtype)
    a61 = _registers(16, df.dtype)
    a62 = _registers(16, df.dtype)
    a70 = _registers(16, df.dtype)
    a71 = _registers(16, df.dtype)
    a72 = _registers(16, df.dtype)
    for v in range(16):
        a00[v] = 0
        a01[v] = 0
        a02[v] = 0
        a10[v] = 0
        a11[v] = 0
        a12[v] = 0
        a20[v] = 0
        a21[v] = 0
        a22[v] = 0
        a30[v] = 0
        a31[v] = 0
        a32[v] = 0
        a40[v] = 0
        a41[v] = 0
        a42[v] = 0
        a50[v] = 0
        a51[v] = 0
        a52[v] = 0
        a60[v] = 0
        a61[v] = 0
        a62[v] = 0
        a70[v] = 0
        a71[v] = 0
        a72[v] = 0
    step = np.uint64(dp)
    c1, c2, c3, c4, c5, c6, c7 = _channels(m, dc)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            g0 = df[d]
            g1 = df[d + c1]
            g2 = df[d + c2]
            g3 = df[d + c3]
            g4 = df[d + c4]
            g5 = df[d + c5]
            g6 = df[d + c6]
            g7 = df[d + c7]
            for v in range(_U16):
                x0 = xf[p + v]
                x1 = xf[p + _U16 + v]
                x2 = xf[p + _U32 + v]
                a00[v] += x0 * g0
                a01[v] += x1 * g0
                a02[v] += x2 * g0
                a10[v] += x0 * g1
                a11[v] += x1 * g1
                a12[v] += x2 * g1
                a20[v] += x0 * g2
                a21[v] += x1 * g2
                a22[v] += x2 * g2
                a30[v] += x0 * g3
                a31[v] += x1 * g3
                a32[v] += x2 * g3
                a40[v] += x0 * g4
                a41[v] += x1 * g4
                a42[v] += x2 * g4
                a50[v] += x0 * g5
                a51[v] += x1 * g5
                a52[v] += x2 * g5
                a60[v] += x0 * g6
                a61[v] += x1 * g6
                a62[v] += x2 * g6
                a70[v] += x0 * g7
                a71[v] += x1 * g7
                a72[v] += x2 * g7
            p += sw
            d += step
    t = np.uint64(at)
    us = np.uint64(ostride)
    _store3(tf, t, a00, a01, a02)
    _store3(tf, t + us, a10, a11, a12)
    _store3(tf, t + np.uint64(2) * us, a20, a21, a22)
    _store3(tf, t + np.uint64(3) * us, a30, a31, a32)
    _store3(tf, t + np.uint64(4) * us, a40, a41, a42)
    _store3(tf, t + np.uint64(5) * us, a50, a51, a52)
    _store3(tf, t + np.uint64(6) * us, a60, a61, a62)
    _store3(tf, t + np.uint64(7) * us, a70, a71, a72)


@njit(cache=True)
def _channels(m, dc):  # pragma: no cover - compiled
    """dy's offsets of output channels 1-7 of a block of m: channel m - 1 again past it (its sums
    are dropped), so that dy is read as it is, never past its last channel."""
    u = np.uint64(dc)
    return (np.uint64(min(1, m - 1)) * u, np.uint64(min(2, m - 1)) * u, np.uint64(min(3, m - 1)) * u,
            np.uint64(min(4, m - 1)) * u, np.uint64(min(5, m - 1)) * u, np.uint64(min(6, m - 1)) * u,
            np.uint64(min(7, m - 1)) * u)


@njit(cache=True)
def _store3(tf, t, a0, a1, a2):  # pragma: no cover - compiled
    """tf[t + v] += the 48 sums of one output channel: a0, a1, a2 (16 each)."""
    for v in range(_U16):
        tf[t + v] += a0[v]
        tf[t + _U16 + v] += a1[v]
        tf[t + _U32 + v] += a2[v]


@njit(cache=True, fastmath={"contract"})
def _tile(xf, df, tf, xo, do, count, shift, ob, m, dc, sw, dp, OW, at, ostride, L):  # pragma: no cover
    """tf[at + o * ostride + v] += sum over the group's outputs of x[v] * dy[o], o < 8,
    v < L: x at xo[q] + shift + v + k * sw and dy at do[q] + ob + min(o, m - 1) * dc + k * dp for
    row q < count and output k < OW. L (16 or 32: 1 or 2 vectors; 48 is _tile_8x48) is a
    compile-time constant: the sums are 8 arrays of L / 16 registers."""
    literally(L)
    if VECTOR_BYTES == 32:  # AVX2: 8 x L float32 sums would take 16 or 32 of its 16 vector registers
        _passes(xf, df, tf, xo, do, count, shift, ob, m, dc, sw, dp, OW, at, ostride, L)
        return
    _wide_vectors()
    a0 = _registers(L, df.dtype)
    a1 = _registers(L, df.dtype)
    a2 = _registers(L, df.dtype)
    a3 = _registers(L, df.dtype)
    a4 = _registers(L, df.dtype)
    a5 = _registers(L, df.dtype)
    a6 = _registers(L, df.dtype)
    a7 = _registers(L, df.dtype)
    for v in range(L):
        a0[v] = 0
        a1[v] = 0
        a2[v] = 0
        a3[v] = 0
        a4[v] = 0
        a5[v] = 0
        a6[v] = 0
        a7[v] = 0
    ul = np.uint64(L)
    step = np.uint64(dp)
    c1, c2, c3, c4, c5, c6, c7 = _channels(m, dc)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            g0 = df[d]
            g1 = df[d + c1]
            g2 = df[d + c2]
            g3 = df[d + c3]
            g4 = df[d + c4]
            g5 = df[d + c5]
            g6 = df[d + c6]
            g7 = df[d + c7]
            for v in range(ul):
                xv = xf[p + v]
                # One sum per statement: LLVM fuses each into a multiply-add.
                a0[v] += xv * g0
                a1[v] += xv * g1
                a2[v] += xv * g2
                a3[v] += xv * g3
                a4[v] += xv * g4
                a5[v] += xv * g5
                a6[v] += xv * g6
                a7[v] += xv * g7
            p += sw
            d += step
    t = np.uint64(at)
    us = np.uint64(ostride)
    for v in range(ul):
        tf[t + v] += a0[v]
        tf[t + us + v] += a1[v]
        tf[t + np.uint64(2) * us + v] += a2[v]
        tf[t + np.uint64(3) * us + v] += a3[v]
        tf[t + np.uint64(4) * us + v] += a4[v]
        tf[t + np.uint64(5) * us + v] += a5[v]
        tf[t + np.uint64(6) * us + v] += a6[v]
        tf[t + np.uint64(7) * us + v] += a7[v]


@njit(cache=True)
def _passes(xf, df, tf, xo, do, count, shift, ob, m, dc, sw, dp, OW, at, ostride, L):  # pragma: no cover
    """_tile's sums (8 output channels x L = 16, 32 or 48 filter rows) where vectors hold 8 float32
    (AVX2): the 8 x 48 tile's 48 vectors of sums (16 or 32 for the others) spilled to the stack at
    every multiply-add. Here passes of 4 output channels x 3 vectors of rows (12 sums in the 16
    registers beside the 3 vectors of x and the broadcast dy; 2 + 2 vectors for 32 rows, 2 for
    16). Each sum adds its products in the same order: the same bits."""
    c1, c2, c3, c4, c5, c6, c7 = _channels(m, dc)
    u = np.uint64(ostride)
    n = L // lanes(tf)  # vectors of rows
    for half in range(2):
        d = np.uint64(ob) + (c4 if half else np.uint64(0))
        ca, cb, cc = (c5 - c4, c6 - c4, c7 - c4) if half else (c1, c2, c3)
        t = np.uint64(at) + np.uint64(4 * half) * u
        v = 0
        while n - v > 4 or n - v == 3:
            r = v * lanes(tf)
            _pass_4xv(xf, df, tf, xo, do, count, shift + r, d, ca, cb, cc, sw, dp, OW, t + np.uint64(r), u, 3)
            v += 3
        while v < n:
            r = v * lanes(tf)
            _pass_4xv(xf, df, tf, xo, do, count, shift + r, d, ca, cb, cc, sw, dp, OW, t + np.uint64(r), u, 2)
            v += 2


@njit(cache=True, fastmath={"contract"})
def _pass_4xv(xf, df, tf, xo, do, count, shift, d0, c1, c2, c3, sw, dp, OW, at, u, V):  # pragma: no cover
    """tf[at + j * u + r] += sum over the group's outputs of x[r] * dy[j], j < 4, r < V * lanes(tf):
    x at xo[q] + shift + r + k * sw and dy's channel j at do[q] + d0 + (0, c1, c2, c3)[j] + k * dp,
    for row q < count and output k < OW. V (2 or 3 vectors) is a compile-time constant: the sums of
    the third vector are dropped for 2. Sums as explicit vectors, registers by construction."""
    literally(V)
    s00, s01, s02 = vzero(tf), vzero(tf), vzero(tf)
    s10, s11, s12 = vzero(tf), vzero(tf), vzero(tf)
    s20, s21, s22 = vzero(tf), vzero(tf), vzero(tf)
    s30, s31, s32 = vzero(tf), vzero(tf), vzero(tf)
    h = np.uint64(lanes(tf))
    h2 = h + h
    step = np.uint64(dp)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q]) + d0
        for _k in range(OW):
            x0 = vload(xf, p)
            x1 = vload(xf, p + h)
            x2 = vload(xf, p + h2) if V > 2 else x1
            g = vsplat(df, d)
            s00 = vfma(x0, g, s00)
            s01 = vfma(x1, g, s01)
            if V > 2:
                s02 = vfma(x2, g, s02)
            g = vsplat(df, d + c1)
            s10 = vfma(x0, g, s10)
            s11 = vfma(x1, g, s11)
            if V > 2:
                s12 = vfma(x2, g, s12)
            g = vsplat(df, d + c2)
            s20 = vfma(x0, g, s20)
            s21 = vfma(x1, g, s21)
            if V > 2:
                s22 = vfma(x2, g, s22)
            g = vsplat(df, d + c3)
            s30 = vfma(x0, g, s30)
            s31 = vfma(x1, g, s31)
            if V > 2:
                s32 = vfma(x2, g, s32)
            p += sw
            d += step
    t = np.uint64(at)
    _add_v(tf, t, s00, s01, s02, V)
    _add_v(tf, t + u, s10, s11, s12, V)
    _add_v(tf, t + np.uint64(2) * u, s20, s21, s22, V)
    _add_v(tf, t + np.uint64(3) * u, s30, s31, s32, V)


@njit(cache=True)
def _add_v(tf, t, a0, a1, a2, V):  # pragma: no cover - compiled
    """tf[t : t + V lanes] += the V vectors a0, a1(, a2) (V 2 or 3) of one output channel's sums."""
    if V > 2:
        add3(tf, t, a0, a1, a2)
    else:
        add2(tf, t, a0, a1)
