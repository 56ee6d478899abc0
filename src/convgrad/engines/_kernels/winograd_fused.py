"""Winograd F(4x4, 3x3), fused: one pass per block of tiles, read from x and written into y.

Each work item takes a block of 4 x 4 output tiles: it transforms their 6 x 6 input tiles
straight from x (zero padding decided per tile, no padded copy of x), runs the 36 element-wise
channel contractions as register-tiled GEMMs on the block, and writes the output transform into
y. A block's transformed tiles, 36 x tiles x (C + O) values, stay in the second-level cache
instead of going to memory and back as whole-array passes do.

Channels-last ``winograd43_last``: a block is a run of tiles in (n, tile row, tile column)
order; the transforms run along the contiguous channels and the GEMM tiles are 6 tiles x 64 (or
16) output channels. Channels-first ``winograd43_first``: a block is whole rows of tiles; the
transforms run along a row of the plane and the GEMM tiles are 6 output channels x 64 (or 16)
tiles, so that y's rows are written from contiguous runs of tiles.

The transforms are Lavin & Gray's F(4, 3) at the points 0, -1, 1, -2, 2 and infinity (the
matrices of engines/winograd.py, written out).
"""

from __future__ import annotations

import numpy as np

from ._numba import _registers, _wide_vectors, literally, njit, prange

# The transforms' constants, passed to the kernels in the arrays' dtype: a Python number in a
# float32 product makes it float64 (Numba's typing), which halved the vectors and converted
# every value.
CONSTANTS = (2, 4, 5, 8, 1 / 4, 1 / 6, 1 / 12, 1 / 24)


@njit(parallel=True, cache=True)
def winograd43_last(x, u, consts, pt, pl, per, threads, y):  # pragma: no cover - compiled
    """y (N, OH, OW, O) = the stride-1 3x3 conv of x (N, H, W, C) padded by ``pt`` rows above and
    ``pl`` columns left (zeros, and as far below and right as the tiles reach), with the
    transformed filter u (36, C, P), P = O rounded up to 16, zero past O. ``per`` tiles a work item;
    ``consts`` holds the transforms' constants in x's dtype (``CONSTANTS``)."""
    N, H, W, C = x.shape
    two, four, five, eight = consts[0], consts[1], consts[2], consts[3]
    OH, OW, O = y.shape[1], y.shape[2], y.shape[3]
    P = u.shape[2]
    th, tw = -(-OH // 4), -(-OW // 4)
    plane = th * tw
    total = N * plane
    items = -(-total // per)
    T = -(-per // 6) * 6
    uf = u.ravel()
    # One work list per thread (its scratch allocated once: a fresh block of tiles per item
    # cost a page fault per 4 KiB); items come in a multiple of ``threads``.
    threads = min(threads, items)
    for worker in prange(threads):
        v = np.zeros((36, T, C), x.dtype)  # rows past count: read by the GEMM tiles, results unused
        m = np.empty((36, T, P), x.dtype)
        d = np.empty((6, 6, C), x.dtype)
        s = np.empty((6, 6, max(C, P)), x.dtype)
        for it in range(worker, items, threads):
            t0 = it * per
            count = min(per, total - t0)
            for k in range(count):
                t = t0 + k
                n, r = t // plane, t % plane
                h0, w0 = r // tw * 4 - pt, r % tw * 4 - pl
                for i in range(6):
                    for j in range(6):
                        if 0 <= h0 + i < H and 0 <= w0 + j < W:
                            for c in range(C):
                                d[i, j, c] = x[n, h0 + i, w0 + j, c]
                        else:
                            for c in range(C):
                                d[i, j, c] = 0
                for j in range(6):
                    for c in range(C):
                        b0, b1, b2, b3, b4, b5 = _bt(d[0, j, c], d[1, j, c], d[2, j, c], d[3, j, c],
                                                     d[4, j, c], d[5, j, c], two, four, five)
                        s[0, j, c] = b0
                        s[1, j, c] = b1
                        s[2, j, c] = b2
                        s[3, j, c] = b3
                        s[4, j, c] = b4
                        s[5, j, c] = b5
                for a in range(6):
                    for c in range(C):
                        b0, b1, b2, b3, b4, b5 = _bt(s[a, 0, c], s[a, 1, c], s[a, 2, c], s[a, 3, c],
                                                     s[a, 4, c], s[a, 5, c], two, four, five)
                        v[a * 6, k, c] = b0
                        v[a * 6 + 1, k, c] = b1
                        v[a * 6 + 2, k, c] = b2
                        v[a * 6 + 3, k, c] = b3
                        v[a * 6 + 4, k, c] = b4
                        v[a * 6 + 5, k, c] = b5
            vf, mf = v.ravel(), m.ravel()
            for e in range(36):
                for i0 in range(0, T, 6):
                    ob = 0
                    a, c0 = (e * T + i0) * C, (e * T + i0) * P
                    while ob + 64 <= P:
                        _gemm_6(vf, a, C, 1, uf, e * C * P + ob, P, mf, c0 + ob, P, C, 64)
                        ob += 64
                    while ob < P:
                        _gemm_6(vf, a, C, 1, uf, e * C * P + ob, P, mf, c0 + ob, P, C, 16)
                        ob += 16
            for k in range(count):
                t = t0 + k
                n, r = t // plane, t % plane
                h0, w0 = r // tw * 4, r % tw * 4
                for b in range(6):
                    for o in range(O):
                            _at_into(s, b, o, two, four, eight, m[b, k, o], m[6 + b, k, o], m[12 + b, k, o],
                                 m[18 + b, k, o], m[24 + b, k, o], m[30 + b, k, o])
                for i in range(min(4, OH - h0)):
                    if w0 + 4 <= OW:
                        for o in range(O):
                            z0, z1, z2, z3 = _at(s[i, 0, o], s[i, 1, o], s[i, 2, o], s[i, 3, o], s[i, 4, o],
                                                 s[i, 5, o], two, four, eight)
                            y[n, h0 + i, w0, o] = z0
                            y[n, h0 + i, w0 + 1, o] = z1
                            y[n, h0 + i, w0 + 2, o] = z2
                            y[n, h0 + i, w0 + 3, o] = z3
                    else:
                        for o in range(O):
                            z0, z1, z2, z3 = _at(s[i, 0, o], s[i, 1, o], s[i, 2, o], s[i, 3, o], s[i, 4, o],
                                                 s[i, 5, o], two, four, eight)
                            y[n, h0 + i, w0, o] = z0
                            if w0 + 1 < OW:
                                y[n, h0 + i, w0 + 1, o] = z1
                            if w0 + 2 < OW:
                                y[n, h0 + i, w0 + 2, o] = z2


@njit(parallel=True, cache=True)
def winograd43_first(x, u, consts, pt, pl, per, threads, y):  # pragma: no cover - compiled
    """winograd43_last on channels-first x (N, C, H, W) into y (N, O, OH, OW), with u packed as
    (36, P / 6, C, 6), P = O rounded up to 6, zero past O (each GEMM tile's 6 output channels one
    contiguous run: strided, they measured up to 1.7x slower with 256 channels); ``per`` rows of
    tiles a work item."""
    N, C, H, W = x.shape
    two, four, five, eight = consts[0], consts[1], consts[2], consts[3]
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    P = u.shape[1] * 6
    th, tw = -(-OH // 4), -(-OW // 4)
    rows = N * th
    items = -(-rows // per)
    T = -(-(per * tw) // 16) * 16
    WP = 4 * tw + 2  # the padded plane's columns the tiles read
    full = OW // 4  # tiles whose 4 columns are all in y
    uf = u.ravel()
    # One work list per thread (its scratch allocated once: a fresh block of tiles per item
    # cost a page fault per 4 KiB); items come in a multiple of ``threads``.
    threads = min(threads, items)
    for worker in prange(threads):
        v = np.zeros((36, C, T), x.dtype)  # tiles past the block's: read by the GEMM tiles, results unused
        m = np.empty((36, P, T), x.dtype)
        # The 6 input rows of a row of tiles, de-interleaved: d[i, k, j] is column 4 j + k of the
        # padded plane, so that both transforms run along j on contiguous values.
        d = np.zeros((6, 4, tw + 1), x.dtype)
        s = np.empty((6, 4, tw + 1), x.dtype)
        q = np.empty((4, 6, tw), x.dtype)
        lo, hi = max(0, pl), min(WP, pl + W)  # the columns of the padded plane inside x
        for it in range(worker, items, threads):
            r0 = it * per
            count = min(per, rows - r0)
            for rr in range(count):
                n, ti = (r0 + rr) // th, (r0 + rr) % th
                h0 = ti * 4 - pt
                t0 = rr * tw
                for c in range(C):
                    for i in range(6):
                        if 0 <= h0 + i < H:
                            for p in range(lo, hi):
                                d[i, p & 3, p >> 2] = x[n, c, h0 + i, p - pl]
                        else:
                            for p in range(lo, hi):
                                d[i, p & 3, p >> 2] = 0
                    for kk in range(4):
                        for j in range(tw + 1):
                            b0, b1, b2, b3, b4, b5 = _bt(d[0, kk, j], d[1, kk, j], d[2, kk, j], d[3, kk, j],
                                                         d[4, kk, j], d[5, kk, j], two, four, five)
                            s[0, kk, j] = b0
                            s[1, kk, j] = b1
                            s[2, kk, j] = b2
                            s[3, kk, j] = b3
                            s[4, kk, j] = b4
                            s[5, kk, j] = b5
                    for a in range(6):
                        for j in range(tw):
                            b0, b1, b2, b3, b4, b5 = _bt(s[a, 0, j], s[a, 1, j], s[a, 2, j], s[a, 3, j],
                                                         s[a, 0, j + 1], s[a, 1, j + 1], two, four, five)
                            v[a * 6, c, t0 + j] = b0
                            v[a * 6 + 1, c, t0 + j] = b1
                            v[a * 6 + 2, c, t0 + j] = b2
                            v[a * 6 + 3, c, t0 + j] = b3
                            v[a * 6 + 4, c, t0 + j] = b4
                            v[a * 6 + 5, c, t0 + j] = b5
            vf, mf = v.ravel(), m.ravel()
            for e in range(36):
                for o0 in range(0, P, 6):
                    tb = 0
                    a, c0 = (e * P + o0) * C, (e * P + o0) * T
                    while tb + 64 <= T:
                        _gemm_6(uf, a, 1, 6, vf, e * C * T + tb, T, mf, c0 + tb, T, C, 64)
                        tb += 64
                    if tb + 32 <= T:
                        _gemm_6(uf, a, 1, 6, vf, e * C * T + tb, T, mf, c0 + tb, T, C, 32)
                        tb += 32
                    while tb < T:
                        _gemm_6(uf, a, 1, 6, vf, e * C * T + tb, T, mf, c0 + tb, T, C, 16)
                        tb += 16
            for rr in range(count):
                n, ti = (r0 + rr) // th, (r0 + rr) % th
                h0 = ti * 4
                t0 = rr * tw
                for o in range(O):
                    for b in range(6):
                        for j in range(tw):
                            u0 = t0 + j
                            q0, q1, q2, q3 = _at(m[b, o, u0], m[6 + b, o, u0], m[12 + b, o, u0],
                                                 m[18 + b, o, u0], m[24 + b, o, u0], m[30 + b, o, u0],
                                                 two, four, eight)
                            q[0, b, j] = q0
                            q[1, b, j] = q1
                            q[2, b, j] = q2
                            q[3, b, j] = q3
                    for i in range(min(4, OH - h0)):
                        for j in range(full):
                            z0, z1, z2, z3 = _at(q[i, 0, j], q[i, 1, j], q[i, 2, j], q[i, 3, j], q[i, 4, j],
                                                 q[i, 5, j], two, four, eight)
                            y[n, o, h0 + i, 4 * j] = z0
                            y[n, o, h0 + i, 4 * j + 1] = z1
                            y[n, o, h0 + i, 4 * j + 2] = z2
                            y[n, o, h0 + i, 4 * j + 3] = z3
                        if full < tw:
                            j = full
                            z0, z1, z2, z3 = _at(q[i, 0, j], q[i, 1, j], q[i, 2, j], q[i, 3, j], q[i, 4, j],
                                                 q[i, 5, j], two, four, eight)
                            y[n, o, h0 + i, 4 * j] = z0
                            if 4 * j + 1 < OW:
                                y[n, o, h0 + i, 4 * j + 1] = z1
                            if 4 * j + 2 < OW:
                                y[n, o, h0 + i, 4 * j + 2] = z2


@njit(cache=True)
def winograd43_filter(w, u, consts):  # pragma: no cover - compiled
    """u[a * 6 + b, c, o] = (G w[:, :, c, o] G^T)[a, b] for w (3, 3, C, O) (any strides), u
    (36, C, P), P >= O, zero past O. Compiled, not a BLAS GEMM: OpenBLAS's threads starting
    right after Numba's parallel loops (and the other way round) took 3x the whole conv's time;
    and on the calling thread: a second parallel loop's barrier costs a scheduler time slice
    whenever another process holds a core."""
    C, O, P = w.shape[2], w.shape[3], u.shape[2]
    quarter, sixth, twelfth, twentyfourth = consts[4], consts[5], consts[6], consts[7]
    for c in range(C):
        t = np.empty((6, 3, O), u.dtype)
        for j in range(3):
            for o in range(O):
                g0, g1, g2 = w[0, j, c, o], w[1, j, c, o], w[2, j, c, o]
                r0, r1, r2, r3, r4, r5 = _g(g0, g1, g2, quarter, sixth, twelfth, twentyfourth)
                t[0, j, o] = r0
                t[1, j, o] = r1
                t[2, j, o] = r2
                t[3, j, o] = r3
                t[4, j, o] = r4
                t[5, j, o] = r5
        for a in range(6):
            for o in range(O):
                r0, r1, r2, r3, r4, r5 = _g(t[a, 0, o], t[a, 1, o], t[a, 2, o], quarter, sixth, twelfth,
                                            twentyfourth)
                u[a * 6, c, o] = r0
                u[a * 6 + 1, c, o] = r1
                u[a * 6 + 2, c, o] = r2
                u[a * 6 + 3, c, o] = r3
                u[a * 6 + 4, c, o] = r4
                u[a * 6 + 5, c, o] = r5
            for e in range(a * 6, a * 6 + 6):
                for o in range(O, P):
                    u[e, c, o] = 0


@njit(cache=True)
def _g(g0, g1, g2, quarter, sixth, twelfth, twentyfourth):  # pragma: no cover - compiled
    """G g, 6 values (the constants in g's dtype: a Python number would make the sums float64)."""
    s, d = (g0 + g2) * sixth, g1 * sixth
    e, f = g0 * twentyfourth + g2 * sixth, g1 * twelfth
    return g0 * quarter, -(s + d), d - s, e + f, e - f, g2


@njit(cache=True)
def _bt(d0, d1, d2, d3, d4, d5, two, four, five):  # pragma: no cover - compiled
    """B^T d, 6 values (the constants in d's dtype: a Python number would make the sums float64)."""
    return (four * d0 - five * d2 + d4, d3 + d4 - four * (d1 + d2), d4 - d3 + four * (d1 - d2),
            d4 - d2 + two * (d3 - d1), d4 - d2 + two * (d1 - d3), four * d1 - five * d3 + d5)


@njit(cache=True)
def _at(m0, m1, m2, m3, m4, m5, two, four, eight):  # pragma: no cover - compiled
    """(A^T m)[0..4)."""
    p, q = m1 + m2, m1 - m2
    r, t = m3 + m4, m3 - m4
    return m0 + p + r, q + two * t, p + four * r, q + eight * t + m5


@njit(cache=True)
def _at_into(s, b, o, two, four, eight, m0, m1, m2, m3, m4, m5):  # pragma: no cover - compiled
    """s[i, b, o] = (A^T m)[i] for i < 4."""
    z0, z1, z2, z3 = _at(m0, m1, m2, m3, m4, m5, two, four, eight)
    s[0, b, o] = z0
    s[1, b, o] = z1
    s[2, b, o] = z2
    s[3, b, o] = z3


@njit(cache=True, fastmath={"contract"})
def _gemm_6(af, ab, ai, ak, bf, bb, bs, cf, cb, cs, K, B):  # pragma: no cover - compiled
    """cf[cb + i * cs + j] = sum_k af[ab + i * ai + k * ak] * bf[bb + k * bs + j], i < 6, j < B
    (B = 16 or 64, a compile-time constant: the 6 rows of sums are B-wide registers)."""
    literally(B)
    _wide_vectors()
    a0 = _registers(B, cf.dtype)
    a1 = _registers(B, cf.dtype)
    a2 = _registers(B, cf.dtype)
    a3 = _registers(B, cf.dtype)
    a4 = _registers(B, cf.dtype)
    a5 = _registers(B, cf.dtype)
    for j in range(B):
        a0[j] = 0
        a1[j] = 0
        a2[j] = 0
        a3[j] = 0
        a4[j] = 0
        a5[j] = 0
    ub = np.uint64(B)
    ui, uk, us = np.uint64(ai), np.uint64(ak), np.uint64(bs)
    pa, pb = np.uint64(ab), np.uint64(bb)
    for _ in range(K):
        x0 = af[pa]
        x1 = af[pa + ui]
        x2 = af[pa + 2 * ui]
        x3 = af[pa + 3 * ui]
        x4 = af[pa + 4 * ui]
        x5 = af[pa + 5 * ui]
        for j in range(ub):
            g = bf[pb + j]
            a0[j] += x0 * g
            a1[j] += x1 * g
            a2[j] += x2 * g
            a3[j] += x3 * g
            a4[j] += x4 * g
            a5[j] += x5 * g
        pa += uk
        pb += us
    q, uc = np.uint64(cb), np.uint64(cs)
    for j in range(ub):
        cf[q + j] = a0[j]
        cf[q + uc + j] = a1[j]
        cf[q + 2 * uc + j] = a2[j]
        cf[q + 3 * uc + j] = a3[j]
        cf[q + 4 * uc + j] = a4[j]
        cf[q + 5 * uc + j] = a5[j]
