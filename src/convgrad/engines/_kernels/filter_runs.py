"""The dense filter gradient as a GEMM over an implicit im2col of x, in register tiles of 6 rows
of the filter x 64 output channels (float32).

dw[(a, b, e, c), o] = sum over outputs (n, i, j, k) of xp[n, i*s0 + a*d0, j*s1 + b*d1,
k*s2 + e*d2, c] * dy[n, i, j, k, o]. Without dilation along the row, a tap row's (e, c) are one
run of KW * C values, contiguous in x as in dw: a 7x7 stem with 3 input channels has runs of 21,
not 3, so the tile's 6 rows are full where tiles of input channels would be 3 of 4. Each tile
loads 6 broadcast x values and 4 vectors of dy per 24 multiply-adds (the 4 x 64 tiles of
tiled.py: 8 per 16).

The threads split the output channels first (their blocks of dw are theirs alone: nothing to add
at the end, nothing re-read by the other), then the rows, each part summing into its own copy.
Each thread walks its blocks of 64 output channels one at a time, the rows in chunks of about
``chunk_bytes`` of dy: a block of dw (KD*KH*KW*C*64 floats; 590 KB for 256 channels, 3x3) stays
in the second-level cache while the chunks stream past it where that cache holds it (the AVX2 VM's
512 KiB per core holds only part of a deep layer's block).

Channels-first dy (N, O, D, H, W) is read as it is: each chunk's block of 64 channels is moved
into a panel (rows, OW, 64) in the first cache by 8 x 8 register transposes, zeros past O, then
the tiles read the panel as they read channels-last dy. The panel is written once and read by
every tap and tile of the chunk; the pass over the whole of dy it replaces took 23 % of the
stem's filter gradient (2.1 of 9.2 ms, one thread). Channels-last dy of more than 64 channels
is copied into such a panel too: its block's rows lie O floats apart, and the tiles read the
packed panel faster (resnet_3x3_deep, 256 channels, one thread: kernel 8.0 against 9.2 ms).

For a channels-first caller ``finish_runs`` adds the partial filter gradients in a fixed order
and writes them as (O, C, *K) in one parallel pass into the array returned (NumPy's sum and
transposition after the kernel, each into a new array, took 2.1 ms of resnet_3x3_deep's
channels-first 11.5, one thread). With one share of rows (as many blocks of 64 output channels
as threads or more: resnet_3x3_deep), each thread lays its finished blocks out so itself, while
they are in its second-level cache, and no pass follows (kernel and pass 8.45-8.78 -> 8.16-8.45
ms, one thread, CPU time, loaded 4.6-4.7; the same bits).
"""

from __future__ import annotations

import numpy as np

from ._numba import _registers, _wide_vectors, literally, njit, prange
from ._shuffle import transpose8
from ._simd import VECTOR_BYTES, lanes
from .tiled import _filter_rows_2v

_U64 = np.uint64(64)
ROWS = 6  # filter rows (run entries) per tile


@njit(parallel=True, cache=True)
def filter_grad_runs(xp, dy, s0, s1, s2, d0, d1, d2, row_parts, chunk_bytes, first,
                     parts, out):  # pragma: no cover - compiled
    """parts[p] (KD, KH, KW, C, O64) = the filter gradient summed over part p of the output rows,
    of xp (N, D', H', W', C), padded, and dy (N, D, H, W, O), O == O64 a multiple of 64, or with
    ``first`` dy (N, O, D, H, W), any O (O64 = O rounded up to 64; the sums past O are zero).
    The threads take ``parts.shape[0] == row_parts`` shares of the rows times the blocks of 64
    output channels; the caller adds the parts. With one share and a non-empty ``out`` (O, C,
    KD, KH, KW), each thread also writes its finished blocks there, channels-first, while they
    are in its second-level cache (``_block_first``; the caller skips ``finish_runs``). 1-D and
    2-D convs come with unit leading axes."""
    if first:
        N, O, OD, OH, OW = dy.shape
    else:
        N, OD, OH, OW, O = dy.shape
    XD, XH, XW, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    KD, KH, KW, O64 = parts.shape[1], parts.shape[2], parts.shape[3], parts.shape[5]
    xf, df = xp.ravel(), dy.ravel()
    sd, sh, sw = XH * XW * C, XW * C, np.uint64(s2 * C)
    rows = N * OD * OH
    blocks = O64 // 64
    packed = first or O > 64  # dy's block read from a panel (see the module's docstring)
    dstep = 64 if packed else O  # dy's (or the panel's) stride from one output to the next
    chunk = max(1, chunk_bytes // max(1, OW * 64 * dy.itemsize))
    run, taps = (KW * C, 1) if d2 == 1 else (C, KW)
    per_tap = KW * C * O64  # dw entries per tap row (a, b)
    for t in prange(row_parts * blocks):
        part, q = t // blocks, t % blocks
        ob = q * 64
        dob = 0 if packed else ob  # the block's first channel in dy (or the panel)
        tf = parts[part].ravel()
        for r in range(KD * KH * KW * C):
            for o in range(64):
                tf[r * O64 + ob + o] = 0
        xo = np.empty(chunk, np.int64)
        do = np.empty(chunk, np.int64)
        panel = np.empty(chunk * OW * 64 if packed else 0, dy.dtype)
        src = panel if packed else df
        start, stop = part * rows // row_parts, (part + 1) * rows // row_parts
        for r0 in range(start, stop, chunk):
            count = min(chunk, stop - r0)
            for i in range(count):
                do[i] = i * OW * 64 if packed else (r0 + i) * OW * O
            if first:
                _panel(df, O, OD * OH, OW, r0, count, ob, panel)
            elif packed:
                _panel_last(df, O, OW, r0, count, ob, panel)
            for a in range(KD):
                for b in range(KH):
                    for i in range(count):  # divisions are slow: once per row and tap row
                        r = r0 + i
                        xo[i] = (r // (OD * OH) * XD + r // OH % OD * s0 + a * d0) * sd + (
                            r % OH * s1 + b * d1) * sh
                    for e in range(taps):
                        shift = e * d2 * C
                        at = (a * KH + b) * per_tap + e * C * O64 + ob
                        if VECTOR_BYTES == 32:  # AVX2: the run 2 vectors of channels at a time
                            _run_2v(xf, src, tf, xo, do, count, shift, dob, sw, OW, dstep, O64, at, run)
                            continue
                        for j0 in range(0, run - run % ROWS, ROWS):
                            _tile_6x64(xf, src, tf, xo, do, count, shift + j0, dob, sw, OW, dstep, O64,
                                       at + j0 * O64)
                        j0 = run - run % ROWS
                        _tail(xf, src, tf, xo, do, count, shift + j0, dob, sw, OW, dstep, O64, at + j0 * O64,
                              run % ROWS)
        if row_parts == 1 and out.size:
            _block_first(tf, out.ravel(), C, KD * KH * KW, O64, ob, min(64, O - ob))


@njit(cache=True, fastmath={"contract"})
def _tile_6x64(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at):  # pragma: no cover
    """tf[at + i * O + o] += sum over the chunk's outputs of x[i] * dy[o], i < 6, o < 64:
    x at xo[q] + shift + i + k * sw and dy at do[q] + ob + k * dstep for row q < count and output
    k < OW."""
    if VECTOR_BYTES == 32:  # AVX2: 6 x 64 float32 sums would take 48 of its 16 vector registers
        _passes(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, 6)
        return
    _wide_vectors()
    a0 = _registers(64, df.dtype)
    a1 = _registers(64, df.dtype)
    a2 = _registers(64, df.dtype)
    a3 = _registers(64, df.dtype)
    a4 = _registers(64, df.dtype)
    a5 = _registers(64, df.dtype)
    for o in range(64):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
    step, ds = np.uint64(O), np.uint64(dstep)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            x0 = xf[p]
            x1 = xf[p + np.uint64(1)]
            x2 = xf[p + np.uint64(2)]
            x3 = xf[p + np.uint64(3)]
            x4 = xf[p + np.uint64(4)]
            x5 = xf[p + np.uint64(5)]
            for o in range(_U64):
                g = df[d + o]
                a0[o] += x0 * g
                a1[o] += x1 * g
                a2[o] += x2 * g
                a3[o] += x3 * g
                a4[o] += x4 * g
                a5[o] += x5 * g
            p += sw
            d += ds
    t = np.uint64(at)
    for o in range(_U64):
        tf[t + o] += a0[o]
    for o in range(_U64):
        tf[t + step + o] += a1[o]
    for o in range(_U64):
        tf[t + np.uint64(2) * step + o] += a2[o]
    for o in range(_U64):
        tf[t + np.uint64(3) * step + o] += a3[o]
    for o in range(_U64):
        tf[t + np.uint64(4) * step + o] += a4[o]
    for o in range(_U64):
        tf[t + np.uint64(5) * step + o] += a5[o]


@njit(cache=True)
def _tail(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, rows):  # pragma: no cover
    """The last ``rows`` (< 6) filter rows of a run, in one tile of that many rows. A 6-row tile
    overlapping the one before computed up to 5 rows twice: a stem's runs of 21 took 8.75 ms
    that way against 8.08 (one thread, CPU time, loaded; the same bits)."""
    if rows == 1:
        _row_1x64(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, at)
    elif rows == 2:
        _tile_rx64(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, 2)
    elif rows == 3:
        _tile_rx64(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, 3)
    elif rows == 4:
        _tile_rx64(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, 4)
    elif rows == 5:
        _tile_rx64(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, 5)


@njit(cache=True, fastmath={"contract"})
def _tile_rx64(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, R):  # pragma: no cover
    """_tile_6x64 for R = 2-5 rows, a compile-time constant: the sums of the rows past R are never
    touched, and LLVM drops them."""
    literally(R)
    if VECTOR_BYTES == 32:  # AVX2: R x 64 float32 sums would take 16-40 of its 16 vector registers
        _passes(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, R)
        return
    _wide_vectors()
    a0 = _registers(64, df.dtype)
    a1 = _registers(64, df.dtype)
    a2 = _registers(64, df.dtype)
    a3 = _registers(64, df.dtype)
    a4 = _registers(64, df.dtype)
    for o in range(64):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
    step, ds = np.uint64(O), np.uint64(dstep)
    one = np.uint64(1)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            x0 = xf[p]
            x1 = xf[p + one]
            x2 = xf[p + np.uint64(2)] if R > 2 else x1
            x3 = xf[p + np.uint64(3)] if R > 3 else x1
            x4 = xf[p + np.uint64(4)] if R > 4 else x1
            for o in range(_U64):
                g = df[d + o]
                a0[o] += x0 * g
                a1[o] += x1 * g
                if R > 2:
                    a2[o] += x2 * g
                if R > 3:
                    a3[o] += x3 * g
                if R > 4:
                    a4[o] += x4 * g
            p += sw
            d += ds
    t = np.uint64(at)
    for o in range(_U64):
        tf[t + o] += a0[o]
        tf[t + step + o] += a1[o]
        if R > 2:
            tf[t + np.uint64(2) * step + o] += a2[o]
        if R > 3:
            tf[t + np.uint64(3) * step + o] += a3[o]
        if R > 4:
            tf[t + np.uint64(4) * step + o] += a4[o]


@njit(cache=True)
def _passes(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, R):  # pragma: no cover
    """_tile_rx64 (R = 2-6, a compile-time constant) where vectors hold 8 float32 (AVX2): the 64
    channels as passes of R rows x 2 vectors (tiled._filter_rows_2v), at most 12 sums in the 16
    registers beside dy's two vectors and the broadcast x, where the R x 64 sums spilled to the
    stack at every multiply-add. Each sum adds its products in the same order: the same bits."""
    literally(R)
    two = 2 * lanes(tf)
    for o0 in range(0, 64, two):
        _filter_rows_2v(xf, df, tf, xo, do, count, shift, ob + o0, sw, OW, dstep, O, at + o0, R)


@njit(cache=True)
def _run_2v(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, run):  # pragma: no cover
    """_tile_6x64 and _tail over a whole run (``run`` filter rows) where vectors hold 8 float32
    (AVX2): the block's 64 channels 2 vectors at a time, each walked over the whole run in passes
    of 6 rows (tiled._filter_rows_2v). A pass reads one cache line of each output's 256 bytes of
    dy, so a group's lines of the chunk (8 KiB of 32) and the x rows the passes broadcast stay in
    the 32 KiB first cache from one tile to the next; the 4 passes of each 6 x 64 tile in turn
    (_passes) walked all of the chunk's dy per tile, which the x rows then evicted. Each sum adds
    its products in the same order: the same bits."""
    two = 2 * lanes(tf)
    whole, rest = run - run % ROWS, run % ROWS
    step = np.int64(O)
    for o0 in range(0, 64, two):
        for j0 in range(0, whole, ROWS):
            _filter_rows_2v(xf, df, tf, xo, do, count, shift + j0, ob + o0, sw, OW, dstep, O,
                            at + j0 * step + o0, 6)
        s, t = shift + whole, at + whole * step + o0
        if rest == 2:
            _filter_rows_2v(xf, df, tf, xo, do, count, s, ob + o0, sw, OW, dstep, O, t, 2)
        elif rest == 3:
            _filter_rows_2v(xf, df, tf, xo, do, count, s, ob + o0, sw, OW, dstep, O, t, 3)
        elif rest == 4:
            _filter_rows_2v(xf, df, tf, xo, do, count, s, ob + o0, sw, OW, dstep, O, t, 4)
        elif rest == 5:
            _filter_rows_2v(xf, df, tf, xo, do, count, s, ob + o0, sw, OW, dstep, O, t, 5)
    if rest == 1:  # one row's 8 vectors of sums at once: 2 at a time would wait on their latency
        _row_1x64(xf, df, tf, xo, do, count, shift + whole, ob, sw, OW, dstep, at + whole * step)


@njit(cache=True, fastmath={"contract"})
def _row_1x64(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, at):  # pragma: no cover
    """One filter row alone (runs shorter than a tile): tf[at + o], o < 64."""
    acc = _registers(64, df.dtype)
    for o in range(64):
        acc[o] = 0
    ds = np.uint64(dstep)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            xv = xf[p]
            for o in range(_U64):
                acc[o] += xv * df[d + o]
            p += sw
            d += ds
    t = np.uint64(at)
    for o in range(_U64):
        tf[t + o] += acc[o]


@njit(cache=True)
def _panel_last(df, O, OW, r0, count, ob, panel):  # pragma: no cover - compiled
    """panel[(i * OW + k) * 64 + o] = dy[r0 + i, k, ob + o] for i < count, of the flat
    channels-last dy (rows, OW, O): the block's 64 channels of each output, packed."""
    u64 = np.uint64(64)
    for i in range(count):
        for k in range(OW):
            s = np.uint64(((r0 + i) * OW + k) * O + ob)
            d = np.uint64((i * OW + k) * 64)
            for o in range(u64):
                panel[d + o] = df[s + o]


@njit(cache=True)
def _block_first(tf, of, C, T, O64, ob, m):  # pragma: no cover - compiled
    """of[((ob + o) * C + c) * T + t] = tf[(t * C + c) * O64 + ob + o] for o < m: one finished
    block of output channels of a single part, laid out channels-first (O, C, T) by 8 x 8
    register transposes. Done by the thread that summed it, from its second-level cache: the
    pass over the whole part after the kernel (finish_runs) took 0.43-1.32 ms of
    resnet_3x3_deep's channels-first 9.4-10.2 (one thread, loaded)."""
    T8, m8 = T // 8 * 8, m // 8 * 8
    ss, ds = np.uint64(C * O64), np.uint64(C * T)
    for c in range(C):
        for o0 in range(0, m8, 8):
            s = np.uint64(c * O64 + ob + o0)
            d = np.uint64(((ob + o0) * C + c) * T)
            for t0 in range(0, T8, 8):
                transpose8(tf, s + np.uint64(t0) * ss, ss, of, d + np.uint64(t0), ds)
        for o in range(m):
            d = ((ob + o) * C + c) * T
            for t in range(0 if o >= m8 else T8, T):
                of[d + t] = tf[(t * C + c) * O64 + ob + o]


@njit(parallel=True, cache=True)
def finish_runs(parts, out):  # pragma: no cover - compiled
    """out (O, C, KD, KH, KW), channels-first = the sum of the partial filter gradients parts (P,
    KD, KH, KW, C, O64), added in the order p = 0, 1, ... (the bits do not depend on the
    threads); O <= O64, the channels past O dropped. (Channels-last, NumPy's sum of the parts is
    the result already: 8 against 23 us for 2 parts of 3 x 3 x 64 x 64.)"""
    P, C, O64 = parts.shape[0], parts.shape[4], parts.shape[5]
    T = parts.shape[1] * parts.shape[2] * parts.shape[3]  # taps
    O = out.shape[0]
    pf, of = parts.ravel(), out.ravel()
    size = T * C * O64  # one part
    # Blocks of 16 output channels: each (tap, channel) of parts gives one cache line of them,
    # written as each output channel's T taps (contiguous in out) by 8 x 8 register
    # transposes. Stores one value at a time across the output channels took 1.65 ms (256 x
    # 256 x 3 x 3, one thread), each channel's taps one value at a time 0.61.
    T8 = T // 8 * 8
    ct = np.uint64(C * T)
    for b in prange(-(-O // 16)):
        ob = b * 16
        m = min(16, O - ob)
        acc = np.empty(T * 16, parts.dtype)
        for c in range(C):
            for t in range(T):
                src = (t * C + c) * O64 + ob
                for v in range(16):
                    acc[t * 16 + v] = pf[src + v]
                for p in range(1, P):
                    for v in range(16):
                        acc[t * 16 + v] += pf[p * size + src + v]
            for v0 in range(0, m - m % 8, 8):
                dst = np.uint64(((ob + v0) * C + c) * T)
                for t0 in range(0, T8, 8):
                    transpose8(acc, np.uint64(t0 * 16 + v0), np.uint64(16), of, dst + np.uint64(t0), ct)
            for v in range(m):
                dst = ((ob + v) * C + c) * T
                for t in range(0 if v >= m - m % 8 else T8, T):
                    of[dst + t] = acc[t * 16 + v]


@njit(cache=True)
def _panel(df, O, plane, OW, r0, count, ob, panel):  # pragma: no cover - compiled
    """panel[(i * OW + k) * 64 + o] = dy[n, ob + o, r, k] for the chunk's rows r0 + i = (n, r),
    i < count, of the flat channels-first dy (N, O, ``plane`` rows, OW), zero for ob + o >= O:
    blocks of 8 channels x 8 outputs transposed in registers."""
    m = min(64, O - ob)
    m8 = m // 8 * 8
    k8 = OW // 8 * 8
    up, u64 = np.uint64(plane * OW), np.uint64(64)
    for i in range(count):
        n, r = (r0 + i) // plane, (r0 + i) % plane
        s0 = np.uint64(((n * O + ob) * plane + r) * OW)
        d0 = np.uint64(i * OW * 64)
        for o in range(0, m8, 8):
            s, d = s0 + np.uint64(o) * up, d0 + np.uint64(o)
            for k in range(0, k8, 8):
                transpose8(df, s + np.uint64(k), up, panel, d + np.uint64(k) * u64, u64)
            if k8 < OW and OW >= 8:  # the last 8 outputs again, overlapping: no value at a time
                k = np.uint64(OW - 8)
                transpose8(df, s + k, up, panel, d + k * u64, u64)
            else:
                for k in range(k8, OW):
                    q = d + np.uint64(k) * u64
                    for oo in range(8):
                        panel[q + np.uint64(oo)] = df[s + np.uint64(oo) * up + np.uint64(k)]
        for k in range(OW):
            q = d0 + np.uint64(k) * u64
            for o in range(m8, m):
                panel[q + np.uint64(o)] = df[s0 + np.uint64(o) * up + np.uint64(k)]
            for o in range(m, 64):
                panel[q + np.uint64(o)] = 0
