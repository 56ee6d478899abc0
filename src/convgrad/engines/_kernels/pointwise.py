"""1x1 convolutions on channels-first arrays as register-tiled GEMMs: no transposition, no copy.

A 1x1 stride-1 unpadded conv in NCHW is, per image, y[n] (O, S) = w (O, C) @ x[n] (C, S); its
input gradient is the same product with w.T; its filter gradient dw (O, C) sums dy[n] (O, S) @
x[n].T (S, C) over the images. The positions S are contiguous in x, y and dy, so the vectors run
along them: the forward holds 6 output channels x 64 positions of sums in registers while it walks
the input channels (one 64-float load of x per 6 broadcast weights: the 6 x 64 tile of the tiled
engine with x and w exchanged); the filter gradient holds 4 output x 6 input channels of 16-lane
partial sums while it walks the positions of a chunk.
"""

from __future__ import annotations

import numpy as np

from ._numba import _claim, _registers, _wide_vectors, njit, prange

_U64 = np.uint64(64)
_U16 = np.uint64(16)
# Positions per work item of the filter gradient: 4 KiB of each row of dy and x (float32), so that
# a tile's 6 rows of x stay in the first-level cache and the chunk of dy in the second while the
# tiles of every output channel read them.
CHUNK = 1024
# Positions per work item of the forward (and input gradient): rows of y written 64 positions
# at a time, one row after another 256 channels apart, ran at half the rate of the channels-last
# GEMM in the input gradient (256 rows of 64 contracted channels: 9.5 against 5.0 ms on one
# thread, 8 images of 56 x 56); runs of 512 took 6.2 ms (256: 6.9, 1024: 6.3), and the forward's
# 64 rows of 256 channels 5.3 against 6.0.
SPAN = 512
# Partial filter gradients, each summing a fixed share of the chunks: the threads claim them, so
# that one held off its core leaves its shares to the others, and the bits do not depend on the
# thread count. 16 parts of 64 x 256 channels: 1 MiB, added in ~0.1 ms.
PARTS = 16


@njit(parallel=True, cache=True)
def pointwise_first(w, x, y):  # pragma: no cover - compiled
    """y[n, o, s] = sum_c w[o, c] * x[n, c, s]: w (O, C), x (N, C, S), y (N, O, S), all
    C-contiguous. Work items are SPAN positions of one image (the last one shorter), claimed by
    the threads (``_claim``: one that shares its core, with another process or with a pool still
    spinning after its own call, leaves its items to the others); each runs its tiles of 6 output
    channels x 64 positions along the span, one group of 6 rows after the other, so that y is
    written in runs of SPAN positions per row while the span's panel of x stays in the
    second-level cache. Every item is computed the same whichever thread takes it."""
    N, C, S = x.shape
    O = w.shape[0]
    wf, xf, yf = w.ravel(), x.ravel(), y.ravel()
    cols = -(-S // SPAN)
    items = N * cols
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(items):
        t = _claim(counter)
        while t < items:
            n, start = t // cols, t % cols * SPAN
            stop = min(S, start + SPAN)
            for o0 in range(0, O, 6):
                for s0 in range(start, stop, 64):
                    xo, yo = n * C * S + s0, n * O * S + s0
                    m = min(64, S - s0)
                    if m == 64:
                        _tile_6x64(wf, xf, yf, o0, min(6, O - o0), C, S, xo, yo)
                    else:
                        _tile_narrow(wf, xf, yf, o0, min(6, O - o0), C, S, xo, yo, m)
            t = _claim(counter)


@njit(cache=True, fastmath={"contract"})
def _tile_6x64(wf, xf, yf, o0, mo, C, S, xo, yo):  # pragma: no cover - compiled
    """yf[yo + (o0 + t) * S + [0, 64)] for t < mo <= 6: the sums over c of w[o0 + t, c] times
    x's row c (64 positions from xo). Rows of w past O repeat the last one and are not stored."""
    _wide_vectors()
    a0 = _registers(64, yf.dtype)
    a1 = _registers(64, yf.dtype)
    a2 = _registers(64, yf.dtype)
    a3 = _registers(64, yf.dtype)
    a4 = _registers(64, yf.dtype)
    a5 = _registers(64, yf.dtype)
    for v in range(64):
        a0[v] = 0
        a1[v] = 0
        a2[v] = 0
        a3[v] = 0
        a4[v] = 0
        a5[v] = 0
    last = o0 + mo - 1
    r0 = np.uint64(o0 * C)
    r1 = np.uint64(min(o0 + 1, last) * C)
    r2 = np.uint64(min(o0 + 2, last) * C)
    r3 = np.uint64(min(o0 + 3, last) * C)
    r4 = np.uint64(min(o0 + 4, last) * C)
    r5 = np.uint64(min(o0 + 5, last) * C)
    p = np.uint64(xo)
    us = np.uint64(S)
    for c in range(np.uint64(C)):
        g0 = wf[r0 + c]
        g1 = wf[r1 + c]
        g2 = wf[r2 + c]
        g3 = wf[r3 + c]
        g4 = wf[r4 + c]
        g5 = wf[r5 + c]
        for v in range(_U64):
            xv = xf[p + v]
            a0[v] += g0 * xv
            a1[v] += g1 * xv
            a2[v] += g2 * xv
            a3[v] += g3 * xv
            a4[v] += g4 * xv
            a5[v] += g5 * xv
        p += us
    q = np.uint64(yo + o0 * S)
    for v in range(_U64):
        yf[q + v] = a0[v]
    if mo > 1:
        for v in range(_U64):
            yf[q + us + v] = a1[v]
    if mo > 2:
        for v in range(_U64):
            yf[q + 2 * us + v] = a2[v]
    if mo > 3:
        for v in range(_U64):
            yf[q + 3 * us + v] = a3[v]
    if mo > 4:
        for v in range(_U64):
            yf[q + 4 * us + v] = a4[v]
    if mo > 5:
        for v in range(_U64):
            yf[q + 5 * us + v] = a5[v]


@njit(cache=True, fastmath={"contract"})
def _tile_narrow(wf, xf, yf, o0, mo, C, S, xo, yo, m):  # pragma: no cover - compiled
    """_tile_6x64 for the last m < 64 positions of a row, one output channel at a time."""
    acc = _registers(64, yf.dtype)
    for t in range(mo):
        for v in range(m):
            acc[v] = 0
        r = (o0 + t) * C
        for c in range(C):
            g = wf[r + c]
            p = xo + c * S
            for v in range(m):
                acc[v] += g * xf[p + v]
        q = yo + (o0 + t) * S
        for v in range(m):
            yf[q + v] = acc[v]


@njit(parallel=True, cache=True)
def pointwise_filter_grad_first(x, dy, parts):  # pragma: no cover - compiled
    """parts[p] (O, C) = part p of dw[o, c] = sum over n, s of dy[n, o, s] * x[n, c, s]: x (N, C,
    S), dy (N, O, S). Part p sums its fixed share of the chunks of CHUNK positions of each image;
    the threads claim the parts (``_claim``), so the sums do not depend on which thread, or how
    many, took them; the caller adds the parts."""
    N, C, S = x.shape
    O = dy.shape[1]
    P = parts.shape[0]
    xf, df = x.ravel(), dy.ravel()
    chunks = -(-S // CHUNK)
    items = N * chunks
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(P):
        part = _claim(counter)
        while part < P:
            tp = parts[part]
            tp[...] = 0
            tf = tp.ravel()
            for t in range(part * items // P, (part + 1) * items // P):
                n, s0 = t // chunks, t % chunks * CHUNK
                m = min(CHUNK, S - s0)
                full = m - m % 16
                for c0 in range(0, C, 6):  # 6 rows of x in the first-level cache, all of dy's in the second
                    for o0 in range(0, O, 4):
                        _filter_tile_4x6(xf, df, tf, o0, min(4, O - o0), c0, min(6, C - c0), C, S,
                                         n * C * S + s0, n * O * S + s0, full)
                if full < m:  # the chunk's last positions, past its whole vectors
                    for o in range(O):
                        for c in range(C):
                            d, q = n * O * S + o * S + s0, n * C * S + c * S + s0
                            acc = tf[o * C + c]
                            for v in range(full, m):
                                acc += df[d + v] * xf[q + v]
                            tf[o * C + c] = acc
            part = _claim(counter)


@njit(cache=True, fastmath={"contract"})
def _filter_tile_4x6(xf, df, tf, o0, mo, c0, mc, C, S, xo, do, m):  # pragma: no cover - compiled
    """tf[(o0 + i) * C + c0 + j] += sum over the first m (a multiple of 16) positions from xo and
    do of dy's row o0 + i times x's row c0 + j, i < mo <= 4, j < mc <= 6: 24 sums of 16 lanes,
    added across their lanes once at the end. Rows past O or C repeat the last one, not stored."""
    _wide_vectors()
    a00 = _registers(16, tf.dtype)
    a01 = _registers(16, tf.dtype)
    a02 = _registers(16, tf.dtype)
    a03 = _registers(16, tf.dtype)
    a04 = _registers(16, tf.dtype)
    a05 = _registers(16, tf.dtype)
    a10 = _registers(16, tf.dtype)
    a11 = _registers(16, tf.dtype)
    a12 = _registers(16, tf.dtype)
    a13 = _registers(16, tf.dtype)
    a14 = _registers(16, tf.dtype)
    a15 = _registers(16, tf.dtype)
    a20 = _registers(16, tf.dtype)
    a21 = _registers(16, tf.dtype)
    a22 = _registers(16, tf.dtype)
    a23 = _registers(16, tf.dtype)
    a24 = _registers(16, tf.dtype)
    a25 = _registers(16, tf.dtype)
    a30 = _registers(16, tf.dtype)
    a31 = _registers(16, tf.dtype)
    a32 = _registers(16, tf.dtype)
    a33 = _registers(16, tf.dtype)
    a34 = _registers(16, tf.dtype)
    a35 = _registers(16, tf.dtype)
    for v in range(16):
        a00[v] = 0
        a01[v] = 0
        a02[v] = 0
        a03[v] = 0
        a04[v] = 0
        a05[v] = 0
        a10[v] = 0
        a11[v] = 0
        a12[v] = 0
        a13[v] = 0
        a14[v] = 0
        a15[v] = 0
        a20[v] = 0
        a21[v] = 0
        a22[v] = 0
        a23[v] = 0
        a24[v] = 0
        a25[v] = 0
        a30[v] = 0
        a31[v] = 0
        a32[v] = 0
        a33[v] = 0
        a34[v] = 0
        a35[v] = 0
    lo, lc = o0 + mo - 1, c0 + mc - 1
    d0 = np.uint64(do + o0 * S)
    d1 = np.uint64(do + min(o0 + 1, lo) * S)
    d2 = np.uint64(do + min(o0 + 2, lo) * S)
    d3 = np.uint64(do + min(o0 + 3, lo) * S)
    x0 = np.uint64(xo + c0 * S)
    x1 = np.uint64(xo + min(c0 + 1, lc) * S)
    x2 = np.uint64(xo + min(c0 + 2, lc) * S)
    x3 = np.uint64(xo + min(c0 + 3, lc) * S)
    x4 = np.uint64(xo + min(c0 + 4, lc) * S)
    x5 = np.uint64(xo + min(c0 + 5, lc) * S)
    for k in range(np.uint64(0), np.uint64(m), _U16):
        for v in range(_U16):
            e0 = df[d0 + k + v]
            e1 = df[d1 + k + v]
            e2 = df[d2 + k + v]
            e3 = df[d3 + k + v]
            y0 = xf[x0 + k + v]
            y1 = xf[x1 + k + v]
            y2 = xf[x2 + k + v]
            y3 = xf[x3 + k + v]
            y4 = xf[x4 + k + v]
            y5 = xf[x5 + k + v]
            a00[v] += e0 * y0
            a01[v] += e0 * y1
            a02[v] += e0 * y2
            a03[v] += e0 * y3
            a04[v] += e0 * y4
            a05[v] += e0 * y5
            a10[v] += e1 * y0
            a11[v] += e1 * y1
            a12[v] += e1 * y2
            a13[v] += e1 * y3
            a14[v] += e1 * y4
            a15[v] += e1 * y5
            a20[v] += e2 * y0
            a21[v] += e2 * y1
            a22[v] += e2 * y2
            a23[v] += e2 * y3
            a24[v] += e2 * y4
            a25[v] += e2 * y5
            a30[v] += e3 * y0
            a31[v] += e3 * y1
            a32[v] += e3 * y2
            a33[v] += e3 * y3
            a34[v] += e3 * y4
            a35[v] += e3 * y5
    _add_row(tf, o0 * C + c0, mc, a00, a01, a02, a03, a04, a05)
    if mo > 1:
        _add_row(tf, (o0 + 1) * C + c0, mc, a10, a11, a12, a13, a14, a15)
    if mo > 2:
        _add_row(tf, (o0 + 2) * C + c0, mc, a20, a21, a22, a23, a24, a25)
    if mo > 3:
        _add_row(tf, (o0 + 3) * C + c0, mc, a30, a31, a32, a33, a34, a35)


@njit(cache=True, fastmath=True)  # reassociation: the lanes are added as a tree, not in a chain
def _add_row(tf, at, mc, a0, a1, a2, a3, a4, a5):  # pragma: no cover - compiled
    """tf[at + j] += the sum of a_j's 16 lanes, j < mc."""
    s0, s1, s2, s3, s4, s5 = a0[0], a1[0], a2[0], a3[0], a4[0], a5[0]
    for v in range(1, 16):
        s0 += a0[v]
        s1 += a1[v]
        s2 += a2[v]
        s3 += a3[v]
        s4 += a4[v]
        s5 += a5[v]
    tf[at] += s0
    if mc > 1:
        tf[at + 1] += s1
    if mc > 2:
        tf[at + 2] += s2
    if mc > 3:
        tf[at + 3] += s3
    if mc > 4:
        tf[at + 4] += s4
    if mc > 5:
        tf[at + 5] += s5
