"""Winograd F(4x4, 3x3), fused: one pass per block of tiles, read from x and written into y.

Each work item takes a block of 4 x 4 output tiles: it transforms their 6 x 6 input tiles
straight from x (zero padding decided per tile, no padded copy of x), runs the 36 element-wise
channel contractions as register-tiled GEMMs on the block, and writes the output transform into
y. A block's transformed tiles, 36 x tiles x (C + O) values, stay in the second-level cache
instead of going to memory and back as whole-array passes do.

Work comes in units of a row of tiles (or a part of a long row); a block is a few units. Both
layouts run the same transforms along the contiguous channels and the same GEMM tiles (6 tiles x
64, or 16, output channels): channels-last reads x and writes y in place; channels-first first
moves a unit's 6 input rows to channels-last in 8 x 8 blocks transposed in registers, and moves its
4 output rows back the same way, in cache (the old channels-first kernel, its transforms along a
row of tiles and its GEMM tiles 6 output channels x 64 tiles, took ~1.6x the channels-last time,
3x on 14 x 14 planes); output planes a multiple of 1 KiB apart (32 x 32 float32), whose rows share
a few sets of the first-level cache, through a stage with a skewed row stride (not on AVX2:
there the stage cost more than it saved). A dilated kernel
runs on the phase grids (every d-th row and column), read and written in place: F(4x4, 3x3) on
each.

The transforms are Lavin & Gray's F(4, 3) at the points 0, -1, 1, -2, 2 and infinity (the
matrices of engines/winograd.py, written out). The input transform runs on explicit vectors of
channels (_simd), the same operations as the scalar ones, so the same bits; the threads claim the
work items, and the filter's transform (``winograd43_filter``) chunks of its input channels.
"""

from __future__ import annotations

import numpy as np

from ._numba import _claim, _registers, _wide_vectors, chunk_size, literally, njit, prange
from ._shuffle import transpose8
from ._simd import VECTOR_BYTES, lanes, outer6x2, vadd, vfma, vload, vmul, vsplat, vstore, vzero
from .finite import residue

# The transforms' constants, passed to the kernels in the arrays' dtype: a Python number in a
# float32 product makes it float64 (Numba's typing), which halved the vectors and converted
# every value.
CONSTANTS = (2, 4, 5, 8, 1 / 4, 1 / 6, 1 / 12, 1 / 24)


@njit(parallel=True, cache=True)
def winograd43(x, u, consts, first, dh, dw, pt, pl, seg, per, threads, y,
               seen):  # pragma: no cover - compiled
    """y = the stride-1 3x3 conv of x with dilation (``dh``, ``dw``), x padded by ``pt`` rows above
    and ``pl`` columns left (zeros, and as far below and right as the tiles reach); x (N, H, W, C)
    and y (N, OH, OW, O), or with ``first`` x (N, C, H, W) and y (N, O, OH, OW). u (36, C, P'): the
    transformed filter, P = O rounded up to 16 <= P', zero in [O, P); ``consts``: the transforms' constants
    in x's dtype (``CONSTANTS``).

    ``seen`` (``threads`` values): 0 in each, or NaN in some where an input tile held an inf or a
    NaN (x's whole, where its tiles read it: every value some output's window reads). Its
    transformed tiles' elements (0, 0), (0, 5), (5, 0) and (5, 5) each sum every input of the tile
    with a nonzero factor (B^T's rows 0 and 5 reach every row of d between them; the transforms'
    zero factors are never multiplied), so a check of those 4 of the 36 rows of each block of
    tiles sees every inf and NaN, where a check of x by the plan was a pass over x from memory
    (resnet_3x3: 8% of a call, x not in cache). A finite x whose tiles overflow is reported too.

    Dilation d: output rows a, a + d, a + 2 d, ... (a < d) are a stride-1 undilated conv of input
    rows a - pt, a - pt + d, ...: F(4x4, 3x3) runs on those phase grids, read and written in place.
    A unit of work is ``seg`` tiles (a multiple of ``dw``) of one row of tiles (n, row phase a,
    tile row), ordered (tile column, column phase) so that they cover a contiguous run of
    columns; ``per`` units a work item.
    """
    if first:
        N, C, H, W = x.shape
        O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    else:
        N, H, W, C = x.shape
        OH, OW, O = y.shape[1], y.shape[2], y.shape[3]
    two, four, eight = consts[0], consts[1], consts[3]
    P = -(-O // 16) * 16  # the transformed filter's output channels
    PS = u.shape[2]  # its rows' stride: P or more (winograd._one_pass_filter)
    # AVX2, u[e] larger than half the first cache (32 KiB here): the GEMMs a strip of output
    # channels at a time (below). A u[e] that fits (64 x 64 channels: 16 KiB) stays there either
    # way, and there strips took 1.05-1.1x the time of the 6-tile tiles in turn, whose 6 rows of
    # tiles each of their passes reads again (resnet_3x3, one thread, loaded).
    strips = VECTOR_BYTES == 32 and C * P * x.itemsize > 16384
    th, tw = ((OH + dh - 1) // dh + 3) // 4, ((OW + dw - 1) // dw + 3) // 4  # tiles per phase grid
    across = dw * tw
    segs = -(-across // seg)
    units = N * dh * th * segs
    items = -(-units // per)
    T = -(-(per * seg) // 6) * 6
    span = seg // dw  # tile columns a unit covers
    uf = u.ravel()
    xf, yf = x.ravel(), y.ravel()
    # Channels-first output planes whose size is a multiple of 1 KiB put a row of 8 consecutive
    # planes on one or two sets of the first-level cache (8 ways): the 8 x 8 transpositions into
    # planes 1,024 floats apart took 7x the time of 1,040 apart. There a unit's output rows are
    # transposed into ``stage`` (its rows a skewed stride apart), then copied a row at a time.
    # (Input rows read through such a stage measured slower: not done.) AVX2 (8 x 8 blocks of
    # 32-byte rows): no stage; there the transpositions straight into the planes took 0.86-0.92x
    # the staged call's time (dilated_3x3_d2's 32 x 32 planes, one thread, loaded).
    aliased = VECTOR_BYTES != 32 and _aliased(OH * OW * x.itemsize)
    sy = _skewed(dw * 4 * span, x.itemsize) if first and aliased else 0
    # Each thread claims items until none is left (_claim), so that a thread another process
    # keeps off its core leaves its items to the one that runs; its scratch allocated once (a
    # fresh block of tiles per item cost a page fault per 4 KiB). Items come in a multiple of
    # ``threads``, so that without such a wait no thread waits for another's last one.
    threads = min(threads, items)
    counter = np.zeros(1, dtype=np.int64)
    for slot in prange(threads):
        it = _claim(counter)
        seen[slot] = 0
        rows = T if it < items else 0  # a thread that finds no item left allocates nothing large
        v = np.zeros((36, rows, C), x.dtype)  # rows past count: read by the GEMM tiles, results unused
        m = np.empty((36, rows, P), x.dtype)
        d = np.empty((6, 6, C), x.dtype)  # an input tile at x's edges, zeros outside
        t = np.empty((6, 6, C), x.dtype)  # B^T d
        s = np.empty((6, 6, P), x.dtype)
        df, tf, vf, mf = d.ravel(), t.ravel(), v.ravel(), m.ravel()
        cv = np.empty(4, x.dtype)  # 2, 4, 5, -1: the vector transforms' constants
        cv[:3] = consts[:3]
        cv[3] = -1
        # Channels-first: a unit's 6 input rows and 4 output rows, channels-last (transposed in
        # 8 x 8 blocks in registers), so that the transforms and GEMMs are the channels-last ones.
        xs = np.empty((6, dw * (4 * span + 6) if first else 1, C), x.dtype)
        ys = np.empty((4, dw * 4 * span if first else 1, O), x.dtype)
        xsf, ysf = xs.ravel(), ys.ravel()
        stage = np.empty(O * sy, x.dtype)
        while it < items:
            r0 = it * per
            count = min(per, units - r0)
            for rr in range(count):
                n, a, ti, q0, q1 = _unit(r0 + rr, dh, th, segs, seg, across)
                hb, c0 = dh * 4 * ti + a - pt, dw * 4 * (q0 // dw) - pl
                if first:
                    lo, hi = max(0, c0), min(W, c0 + dw * (4 * ((q1 - 1) // dw - q0 // dw) + 6))
                    for i in range(6):
                        if 0 <= hb + dh * i < H and lo < hi:
                            _to_last(xf, ((n * C) * H + hb + dh * i) * W + lo, H * W, C, hi - lo,
                                     xsf, (i * xs.shape[1] + lo - c0) * C)
                if first:
                    src, r_base, r_step, cofs = xs, 0, 1, c0
                else:
                    src, r_base, r_step, cofs = x[n], hb, dh, 0
                rows_in = hb >= 0 and hb + 5 * dh < H
                for q in range(q0, q1):
                    k = rr * seg + q - q0
                    tj, b = q // dw, q % dw
                    wb = dw * 4 * tj + b - pl
                    if rows_in and wb >= 0 and wb + 5 * dw < W:  # B^T down the columns, read in place
                        if first:
                            _bt_columns(xsf, (wb - c0) * C, xs.shape[1] * C, dw * C, tf, C, cv)
                        else:
                            _bt_columns(xf, ((n * H + hb) * W + wb) * C, dh * W * C, dw * C, tf, C, cv)
                    else:
                        for i in range(6):
                            h = hb + dh * i
                            for j in range(6):
                                col = wb + dw * j
                                if 0 <= h < H and 0 <= col < W:
                                    for c in range(C):
                                        d[i, j, c] = src[r_base + r_step * i, col - cofs, c]
                                else:
                                    for c in range(C):
                                        d[i, j, c] = 0
                        _bt_columns(df, 0, 6 * C, C, tf, C, cv)
                    _bt_rows(tf, vf, k * C, T * C, C, cv)
            used = -(-(count * seg) // 6) * 6
            for e in (0, 5, 30, 35):  # the corners of the transformed tiles: every input (above)
                seen[slot] += residue(vf[e * T * C:(e * T + count * seg) * C])
            for e in range(36):
                if strips:
                    # AVX2: _gemm_6's passes of 2 vectors of output channels, each over all the
                    # block's tiles: that strip of u[e] (C x 2 vectors, 16 KiB for 256 channels)
                    # stays in the first cache from one 6-tile pass to the next, where the 6-tile
                    # tiles' 4 passes in turn walked all of u[e] (256 KiB) per tile.
                    # The tiles past the last whole 6 in one pass of that many rows (_gemm_rx2),
                    # not 6: resnet_3x3_deep's blocks of 32 tiles multiplied 36.
                    whole = count * seg - count * seg % 6
                    rest, a1, m1 = count * seg % 6, (e * T + whole) * C, (e * T + whole) * P
                    for ob in range(0, P, 2 * lanes(mf)):
                        for i0 in range(0, whole, 6):
                            _gemm_6x2(vf, (e * T + i0) * C, C, 1, uf, e * C * PS + ob, PS, mf,
                                      (e * T + i0) * P + ob, P, C)
                        b1 = e * C * PS + ob
                        if rest == 1:
                            _gemm_rx2(vf, a1, C, 1, uf, b1, PS, mf, m1 + ob, P, C, 1)
                        elif rest == 2:
                            _gemm_rx2(vf, a1, C, 1, uf, b1, PS, mf, m1 + ob, P, C, 2)
                        elif rest == 3:
                            _gemm_rx2(vf, a1, C, 1, uf, b1, PS, mf, m1 + ob, P, C, 3)
                        elif rest == 4:
                            _gemm_rx2(vf, a1, C, 1, uf, b1, PS, mf, m1 + ob, P, C, 4)
                        elif rest == 5:
                            _gemm_rx2(vf, a1, C, 1, uf, b1, PS, mf, m1 + ob, P, C, 5)
                    continue
                for i0 in range(0, used, 6):
                    ob = 0
                    a0, m0 = (e * T + i0) * C, (e * T + i0) * P
                    while ob + 64 <= P:
                        _gemm_6(vf, a0, C, 1, uf, e * C * PS + ob, PS, mf, m0 + ob, P, C, 64)
                        ob += 64
                    while ob < P:
                        _gemm_6(vf, a0, C, 1, uf, e * C * PS + ob, PS, mf, m0 + ob, P, C, 16)
                        ob += 16
            for rr in range(count):
                n, a, ti, q0, q1 = _unit(r0 + rr, dh, th, segs, seg, across)
                oc0 = dw * 4 * (q0 // dw)
                for q in range(q0, q1):
                    k = rr * seg + q - q0
                    tj, b = q // dw, q % dw
                    for bb in range(6):
                        for o in range(O):
                            _at_into(s, bb, o, two, four, eight, m[bb, k, o], m[6 + bb, k, o],
                                     m[12 + bb, k, o], m[18 + bb, k, o], m[24 + bb, k, o], m[30 + bb, k, o])
                    for i in range(4):
                        h = dh * (4 * ti + i) + a
                        if h >= OH:
                            break
                        col = dw * 4 * tj + b
                        ncols = min(4, -(-(OW - col) // dw))
                        if first:
                            _output_row(s, i, O, ys, i, col - oc0, dw, ncols, two, four, eight)
                        else:
                            _output_row(s, i, O, y[n], h, col, dw, ncols, two, four, eight)
                if first:
                    hi = min(OW, dw * 4 * ((q1 - 1) // dw + 1))
                    for i in range(4):
                        h = dh * (4 * ti + i) + a
                        if h < OH:
                            _to_first_via(ysf, i * ys.shape[1] * O, O, hi - oc0, yf,
                                          ((n * O) * OH + h) * OW + oc0, OH * OW, stage, sy)
            it = _claim(counter)


@njit(cache=True)
def _unit(r, dh, th, segs, seg, across):  # pragma: no cover - compiled
    """Unit ``r``'s image, row phase, tile row and its tiles [q0, q1) along the row."""
    row, sg = r // segs, r % segs
    n, a, ti = row // (dh * th), row // th % dh, row % th
    return n, a, ti, sg * seg, min(across, (sg + 1) * seg)


@njit(cache=True)
def _bt_columns(src, s0, rs, cs, tf, C, cv):  # pragma: no cover - compiled
    """t[a, j, :C] = (B^T d)[a, j] for the 6 x 6 x C input tile d whose row i, column j is
    ``src[s0 + i * rs + j * cs:][:C]``; t (6, 6, C) as ``tf``, cv: 2, 4, 5, -1 in src's dtype."""
    two, four, five, neg = vsplat(cv, 0), vsplat(cv, 1), vsplat(cv, 2), vsplat(cv, 3)
    step = lanes(tf)
    body = C - C % step
    for j in range(6):
        p, q = s0 + j * cs, j * C
        for c in range(0, body, step):
            e0, e1, e2, e3, e4, e5 = _btv(vload(src, p + c), vload(src, p + rs + c),
                                          vload(src, p + 2 * rs + c), vload(src, p + 3 * rs + c),
                                          vload(src, p + 4 * rs + c), vload(src, p + 5 * rs + c),
                                          two, four, five, neg)
            vstore(tf, q + c, e0)
            vstore(tf, q + 6 * C + c, e1)
            vstore(tf, q + 12 * C + c, e2)
            vstore(tf, q + 18 * C + c, e3)
            vstore(tf, q + 24 * C + c, e4)
            vstore(tf, q + 30 * C + c, e5)
        for c in range(body, C):
            e0, e1, e2, e3, e4, e5 = _bt(src[p + c], src[p + rs + c], src[p + 2 * rs + c],
                                         src[p + 3 * rs + c], src[p + 4 * rs + c], src[p + 5 * rs + c],
                                         cv[0], cv[1], cv[2])
            tf[q + c] = e0
            tf[q + 6 * C + c] = e1
            tf[q + 12 * C + c] = e2
            tf[q + 18 * C + c] = e3
            tf[q + 24 * C + c] = e4
            tf[q + 30 * C + c] = e5


@njit(cache=True)
def _bt_rows(tf, vf, v0, vs, C, cv):  # pragma: no cover - compiled
    """v[a * 6 + b] = (t B)[a, b] (t = B^T d, ``_bt_columns``), written at ``vf[v0 + (a * 6 + b) *
    vs:][:C]``."""
    two, four, five, neg = vsplat(cv, 0), vsplat(cv, 1), vsplat(cv, 2), vsplat(cv, 3)
    step = lanes(tf)
    body = C - C % step
    for a in range(6):
        p, q = a * 6 * C, v0 + a * 6 * vs
        for c in range(0, body, step):
            e0, e1, e2, e3, e4, e5 = _btv(vload(tf, p + c), vload(tf, p + C + c), vload(tf, p + 2 * C + c),
                                          vload(tf, p + 3 * C + c), vload(tf, p + 4 * C + c),
                                          vload(tf, p + 5 * C + c), two, four, five, neg)
            vstore(vf, q + c, e0)
            vstore(vf, q + vs + c, e1)
            vstore(vf, q + 2 * vs + c, e2)
            vstore(vf, q + 3 * vs + c, e3)
            vstore(vf, q + 4 * vs + c, e4)
            vstore(vf, q + 5 * vs + c, e5)
        for c in range(body, C):
            e0, e1, e2, e3, e4, e5 = _bt(tf[p + c], tf[p + C + c], tf[p + 2 * C + c], tf[p + 3 * C + c],
                                         tf[p + 4 * C + c], tf[p + 5 * C + c], cv[0], cv[1], cv[2])
            vf[q + c] = e0
            vf[q + vs + c] = e1
            vf[q + 2 * vs + c] = e2
            vf[q + 3 * vs + c] = e3
            vf[q + 4 * vs + c] = e4
            vf[q + 5 * vs + c] = e5


@njit(cache=True, inline="always")
def _btv(d0, d1, d2, d3, d4, d5, two, four, five, neg):  # pragma: no cover - compiled
    """``_bt`` on vectors, the same operations in the same order (a - b as a + -1 * b, which is
    exact), so the same bits: 4.0x faster than the loop LLVM vectorised from ``_bt`` (0.21 against
    0.85 us a 6 x 6 x 64 tile, one thread, loaded)."""
    n1, n2, n3 = vmul(neg, d1), vmul(neg, d2), vmul(neg, d3)
    return (vadd(vadd(vmul(four, d0), vmul(neg, vmul(five, d2))), d4),
            vadd(vadd(d3, d4), vmul(neg, vmul(four, vadd(d1, d2)))),
            vadd(vadd(d4, n3), vmul(four, vadd(d1, n2))),
            vadd(vadd(d4, n2), vmul(two, vadd(d3, n1))),
            vadd(vadd(d4, n2), vmul(two, vadd(d1, n3))),
            vadd(vadd(vmul(four, d1), vmul(neg, vmul(five, d3))), d5))


@njit(cache=True)
def _output_row(s, i, O, dst, row, col, step, ncols, two, four, eight):  # pragma: no cover - compiled
    """dst[row, col + step * kk, :O] = (A^T s[i, :, :O])[kk] for kk < ``ncols`` (a tile's output row
    i, its columns ``step`` apart; fewer than 4 at the right edge)."""
    if ncols == 4:
        for o in range(O):
            z0, z1, z2, z3 = _at(s[i, 0, o], s[i, 1, o], s[i, 2, o], s[i, 3, o], s[i, 4, o], s[i, 5, o],
                                 two, four, eight)
            dst[row, col, o] = z0
            dst[row, col + step, o] = z1
            dst[row, col + 2 * step, o] = z2
            dst[row, col + 3 * step, o] = z3
    else:
        for o in range(O):
            z0, z1, z2, z3 = _at(s[i, 0, o], s[i, 1, o], s[i, 2, o], s[i, 3, o], s[i, 4, o], s[i, 5, o],
                                 two, four, eight)
            s[i, 0, o] = z0  # s[i, :, o] is read in full above: free to overwrite
            s[i, 1, o] = z1
            s[i, 2, o] = z2
        for kk in range(ncols):
            for o in range(O):
                dst[row, col + kk * step, o] = s[i, kk, o]


@njit(cache=True)
def _to_last(src, s0, s_step, rows, cols, dst, d0):  # pragma: no cover - compiled
    """dst[d0 + j * rows + i] = src[s0 + i * s_step + j], i < rows, j < cols: ``rows`` channel
    rows of a plane (``s_step`` apart) into ``cols`` channels-last positions."""
    _blocks(src, s0, s_step, 1, dst, d0, 1, rows, rows, cols, False)


@njit(cache=True)
def _to_first(src, s0, chans, cols, dst, d0, d_step):  # pragma: no cover - compiled
    """dst[d0 + o * d_step + j] = src[s0 + j * chans + o], o < chans, j < cols: ``cols``
    channels-last positions into ``chans`` rows of planes ``d_step`` apart."""
    _blocks(src, s0, 1, chans, dst, d0, d_step, 1, chans, cols, True)


@njit(cache=True)
def _aliased(plane_bytes):  # pragma: no cover - compiled
    """Whether planes ``plane_bytes`` apart map a row of 8 of them to fewer than 8 sets of a 64-set,
    64-byte-line cache: a multiple of 1 KiB apart."""
    return plane_bytes % 1024 == 0


@njit(cache=True)
def _skewed(n, itemsize):  # pragma: no cover - compiled
    """A row stride of at least ``n`` values that is not a multiple of 1 KiB (``_aliased``)."""
    return n + 64 // itemsize if _aliased(n * itemsize) else n


@njit(cache=True)
def _to_first_via(src, s0, chans, cols, dst, d0, d_step, stage, st):  # pragma: no cover - compiled
    """``_to_first``; with a stride ``st`` > 0, transposed into ``stage`` (rows ``st`` apart), then
    copied a row at a time."""
    if st == 0:
        _to_first(src, s0, chans, cols, dst, d0, d_step)
        return
    _to_first(src, s0, chans, cols, stage, 0, st)
    for o in range(chans):
        _copy(stage, o * st, dst, d0 + o * d_step, cols)


@njit(cache=True)
def _copy(src, s0, dst, d0, count):  # pragma: no cover - compiled
    """dst[d0:d0 + count] = src[s0:s0 + count] (unsigned offsets: no test for negative indices,
    so the loop vectorises)."""
    a, b = np.uint64(s0), np.uint64(d0)
    for k in range(np.uint64(count)):
        dst[b + k] = src[a + k]


@njit(cache=True)
def _blocks(src, s0, si, sj, dst, d0, di, dj, rows, cols, to_first):  # pragma: no cover - compiled
    """dst[d0 + i * di + j * dj] = src[s0 + i * si + j * sj], i < rows, j < cols, in 8 x 8 blocks
    transposed in registers: ``to_first`` (si = dj = 1) channels-last positions j into planes i,
    else (sj = di = 1) plane rows i into channels-last positions j. Edges narrower than 8 take a
    last block shifted back to overlap the one before (its values written twice, the same), not a
    value at a time: 14-column planes have 6 such columns of 14. Under 8 rows or columns, a value
    at a time."""
    if rows < 8 or cols < 8:
        for i in range(rows):
            for j in range(cols):
                dst[d0 + i * di + j * dj] = src[s0 + i * si + j * sj]
        return
    i = 0
    while i < rows:
        i = min(i, rows - 8)
        j = 0
        while j < cols:
            j = min(j, cols - 8)
            if to_first:
                transpose8(src, s0 + j * sj + i, sj, dst, d0 + i * di + j, di)
            else:
                transpose8(src, s0 + i * si + j, si, dst, d0 + j * dj + i, dj)
            j += 8
        i += 8


@njit(parallel=True, cache=True)
def winograd43_filter(w, u, consts, flip):  # pragma: no cover - compiled
    """u[a * 6 + b, c, o] = (G w[:, :, c, o] G^T)[a, b] for w (3, 3, C, O) (any strides; with
    ``flip``, w's taps taken in reverse order in both axes), u (36, C, P), P >= O, zero past O.
    Compiled, not a BLAS GEMM: OpenBLAS's threads starting right after Numba's parallel loops (and
    the other way round) took 3x the whole conv's time.

    Parallel over chunks of input channels that the threads claim (_numba.chunk_size): u is
    4 times the filter's size (9.4 MB for 256 x 256 channels, float32), written at the memory's
    speed, 0.5-0.8 ms on one thread (loaded): a sixth of resnet_3x3_deep's one-thread conv, which
    the calling thread spent alone before every call's parallel loop."""
    C = w.shape[2]
    per = chunk_size(C)
    chunks = -(-C // per)
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(chunks):
        k = _claim(counter)
        t = np.empty((6, 3, w.shape[3] if k < chunks else 0), u.dtype)
        while k < chunks:
            for c in range(k * per, min(C, (k + 1) * per)):
                _filter_channel(w, u, consts, flip, c, t)
            k = _claim(counter)


@njit(cache=True)
def _filter_channel(w, u, consts, flip, c, t):  # pragma: no cover - compiled
    """u[:, c, :] of ``winograd43_filter`` (t: scratch (6, 3, O))."""
    O, P = w.shape[3], u.shape[2]
    quarter, sixth, twelfth, twentyfourth = consts[4], consts[5], consts[6], consts[7]
    first, last = (2, 0) if flip else (0, 2)
    for j in range(3):
        jj = 2 - j if flip else j
        for o in range(O):
            g0, g1, g2 = w[first, jj, c, o], w[1, jj, c, o], w[last, jj, c, o]
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
    if VECTOR_BYTES == 32:  # AVX2: 6 x 64 float32 sums would take 48 of its 16 vector registers
        step = 2 * lanes(cf)
        for j in range(0, B, step):
            _gemm_6x2(af, ab, ai, ak, bf, bb + j, bs, cf, cb + j, cs, K)
        return
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
    uk, us = np.uint64(ak), np.uint64(bs)
    # One unsigned offset per row of A: ``pa + 2 * ui`` was a signed sum (Numba types int64 *
    # uint64 as int64), tested for Python's negative indexing at each step of k, and the offsets'
    # arithmetic spilled to the stack.
    p0 = np.uint64(ab)
    p1 = np.uint64(ab + ai)
    p2 = np.uint64(ab + 2 * ai)
    p3 = np.uint64(ab + 3 * ai)
    p4 = np.uint64(ab + 4 * ai)
    p5 = np.uint64(ab + 5 * ai)
    pb = np.uint64(bb)
    for _ in range(K):
        x0 = af[p0]
        x1 = af[p1]
        x2 = af[p2]
        x3 = af[p3]
        x4 = af[p4]
        x5 = af[p5]
        for j in range(ub):
            g = bf[pb + j]
            a0[j] += x0 * g
            a1[j] += x1 * g
            a2[j] += x2 * g
            a3[j] += x3 * g
            a4[j] += x4 * g
            a5[j] += x5 * g
        p0 += uk
        p1 += uk
        p2 += uk
        p3 += uk
        p4 += uk
        p5 += uk
        pb += us
    q, uc = np.uint64(cb), np.uint64(cs)
    for j in range(ub):
        cf[q + j] = a0[j]
        cf[q + uc + j] = a1[j]
        cf[q + 2 * uc + j] = a2[j]
        cf[q + 3 * uc + j] = a3[j]
        cf[q + 4 * uc + j] = a4[j]
        cf[q + 5 * uc + j] = a5[j]


@njit(cache=True, fastmath={"contract"})
def _gemm_6x2(af, ab, ai, ak, bf, bb, bs, cf, cb, cs, K):  # pragma: no cover - compiled
    """_gemm_6 for j < 2L, L = lanes(cf), as 6 x 2 vectors of sums: with 32-byte vectors (AVX2's
    16 registers) 6 x 64 float32 sums spilled at every multiply-add, where 12 leave room for B's
    two vectors and the broadcast of A (float32: a 6 x 64 tile in 4 passes). The same
    multiply-adds over k in the same order as _gemm_6's, so the same bits."""
    s00, s01, s10, s11 = vzero(cf), vzero(cf), vzero(cf), vzero(cf)
    s20, s21, s30, s31 = vzero(cf), vzero(cf), vzero(cf), vzero(cf)
    s40, s41, s50, s51 = vzero(cf), vzero(cf), vzero(cf), vzero(cf)
    h = np.uint64(lanes(cf))
    uk, us = np.uint64(ak), np.uint64(bs)
    p0 = np.uint64(ab)
    p1 = np.uint64(ab + ai)
    p2 = np.uint64(ab + 2 * ai)
    p3 = np.uint64(ab + 3 * ai)
    p4 = np.uint64(ab + 4 * ai)
    p5 = np.uint64(ab + 5 * ai)
    pb = np.uint64(bb)
    for _ in range(K):
        g0 = vload(bf, pb)
        g1 = vload(bf, pb + h)
        s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = outer6x2(
            af, p0, p1, p2, p3, p4, p5, g0, g1,
            s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51)
        p0 += uk
        p1 += uk
        p2 += uk
        p3 += uk
        p4 += uk
        p5 += uk
        pb += us
    q, uc = np.uint64(cb), np.uint64(cs)
    vstore(cf, q, s00)
    vstore(cf, q + h, s01)
    vstore(cf, q + uc, s10)
    vstore(cf, q + uc + h, s11)
    vstore(cf, q + np.uint64(2) * uc, s20)
    vstore(cf, q + np.uint64(2) * uc + h, s21)
    vstore(cf, q + np.uint64(3) * uc, s30)
    vstore(cf, q + np.uint64(3) * uc + h, s31)
    vstore(cf, q + np.uint64(4) * uc, s40)
    vstore(cf, q + np.uint64(4) * uc + h, s41)
    vstore(cf, q + np.uint64(5) * uc, s50)
    vstore(cf, q + np.uint64(5) * uc + h, s51)


@njit(cache=True, fastmath={"contract"})
def _gemm_rx2(af, ab, ai, ak, bf, bb, bs, cf, cb, cs, K, R):  # pragma: no cover - compiled
    """_gemm_6x2 for R = 1-5 rows (a compile-time constant): the sums of the rows past R are
    never touched, and LLVM drops them. The same multiply-adds over k in the same order."""
    literally(R)
    s00, s01, s10, s11 = vzero(cf), vzero(cf), vzero(cf), vzero(cf)
    s20, s21, s30, s31 = vzero(cf), vzero(cf), vzero(cf), vzero(cf)
    s40, s41 = vzero(cf), vzero(cf)
    h = np.uint64(lanes(cf))
    uk, us = np.uint64(ak), np.uint64(bs)
    p0 = np.uint64(ab)
    pi = np.uint64(ai)
    pb = np.uint64(bb)
    for _ in range(K):
        g0 = vload(bf, pb)
        g1 = vload(bf, pb + h)
        v = vsplat(af, p0)
        s00 = vfma(v, g0, s00)
        s01 = vfma(v, g1, s01)
        if R > 1:
            v = vsplat(af, p0 + pi)
            s10 = vfma(v, g0, s10)
            s11 = vfma(v, g1, s11)
        if R > 2:
            v = vsplat(af, p0 + np.uint64(2) * pi)
            s20 = vfma(v, g0, s20)
            s21 = vfma(v, g1, s21)
        if R > 3:
            v = vsplat(af, p0 + np.uint64(3) * pi)
            s30 = vfma(v, g0, s30)
            s31 = vfma(v, g1, s31)
        if R > 4:
            v = vsplat(af, p0 + np.uint64(4) * pi)
            s40 = vfma(v, g0, s40)
            s41 = vfma(v, g1, s41)
        p0 += uk
        pb += us
    q, uc = np.uint64(cb), np.uint64(cs)
    vstore(cf, q, s00)
    vstore(cf, q + h, s01)
    if R > 1:
        vstore(cf, q + uc, s10)
        vstore(cf, q + uc + h, s11)
    if R > 2:
        vstore(cf, q + np.uint64(2) * uc, s20)
        vstore(cf, q + np.uint64(2) * uc + h, s21)
    if R > 3:
        vstore(cf, q + np.uint64(3) * uc, s30)
        vstore(cf, q + np.uint64(3) * uc + h, s31)
    if R > 4:
        vstore(cf, q + np.uint64(4) * uc, s40)
        vstore(cf, q + np.uint64(4) * uc + h, s41)
