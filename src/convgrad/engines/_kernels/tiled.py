"""Dense convolutions as register tiles of sums: the forward (also the input gradient's, on dy
with the flipped kernel) and the filter gradient."""

from __future__ import annotations

import numpy as np

from ._numba import _claim, _prefetch, _registers, _wide_vectors, chunk_size, literally, njit, prange
from ._shuffle import transpose8
from ._simd import (
    VECTOR_BYTES,
    add3,
    add6x2,
    lane2,
    lanes,
    outer6x2,
    put2,
    sfence,
    vfma,
    vload,
    vsplat,
    vsum,
    vzero,
)
from .tile_stream import stream_copy, stream_sums

# The dense convs' register tiles. Forward: 8 outputs along the last axis x 16 channels (one
# 512-bit register per output in float32), or for many channels 6 x 64 (24 registers), which
# needs 1 load per 4 multiply-adds instead of 9 per 8 and measured 1.5-1.9x faster with 64
# channels or more. Filter gradient: 16 input x 16 output channels (8 x 16 in float64, whose 16
# x 16 sums would not fit in the registers), or 4 x 64. Each tile is one function with its sums
# in named stack arrays, the only form in which LLVM keeps them in registers (an array indexed by
# a tile position gathered instead); the drivers are shared. These sizes are AVX-512's (32
# registers of 64 bytes). With 32-byte vectors (AVX2: 16 registers) the forward runs every block
# of channels in tiles of 6 outputs (tile_width), as passes of 6 outputs x 2 vectors held as _simd
# vector values (_forward_tile_6x16), the other tiles as passes too (_dot_tile_3x3,
# _filter_rows_2v, _filter_4x3v), each output's products in the same order.
#
# The kernels address flat arrays with unsigned offsets. A signed index costs a test for Python's
# negative indexing at every load, and a view taken per row costs reference counting: together
# they ran the filter-gradient tiles at 35-55% of the rate of the same loop on flat offsets.
_U16 = np.uint64(16)
_U32 = np.uint64(32)
_U64 = np.uint64(64)
_AHEAD = np.uint64(256)  # filter values (1 KiB of float32) prefetched ahead of the 6 x 64 tiles


@njit(parallel=True, cache=True)
def tiled_forward(xp, xa, wt, s0, s1, s2, d0, d1, d2, y, ya, yb, out, dot, filter_major, stream,
                  first):  # pragma: no cover - compiled
    """The dense conv of the padded xp (N, D', H', W', C), read from the corner ``xa`` (3 ints),
    with the filter packed as wt (ceil(O / B), KD, KH, KW, C, B), B = 16, 32 (float32) or 64
    (float32), channels past O zero: its ``out`` (3 ints) outputs per sample go to y
    (N, D, H, W, O), or with ``first`` y (N, O, D, H, W), at ``ya + i * yb`` (all of y, ya = 0
    and yb = 1, for a plain conv; one sub-pixel phase of a strided conv's input gradient
    otherwise).

    Channels-first, a tile stores each of its channels as a run of its outputs along the row
    (O runs of 8 instead of 8 runs of O): the caller gets its layout without a transposing pass.

    The outputs of each plane (n, i) of OH x OW, in row order, are cut into tiles of 8 (B = 16 or
    32) or 6 (B = 64, and every B with AVX2's vectors: ``tile_width``), which run on from the end
    of one row to the start of the next; the last tile overlaps the one before, and planes smaller
    than a tile go one output at a time. The 3-tap tiles (below; not with AVX2) and the
    dot-product tiles cut each row alone. 1-D and 2-D convs come with unit leading axes.

    With ``dot``, for few output channels (the input gradient of a 3-channel stem): C is a
    multiple of 16 and the filter is packed as wt (ceil(O / 3), KD, KH, 3, KW, C). Each sum is a
    dot product along x's contiguous channels, in tiles of 6 outputs x 3 channels; tiles of 8 x 16
    would compute 13 zero channels out of 16.

    With ``filter_major``, each thread takes its share of (block, row) pairs block by block, so
    that it cycles through its blocks of the filter once instead of once per row: a filter larger
    than the second-level cache (256 -> 256 channels, 3x3: 2.4 MB) otherwise streams from the
    third level for every row.

    With ``stream`` (channels-last, O a multiple of the vector's lanes, y on a 64-byte boundary:
    ``tile_stream.streams``), the tiles store their whole blocks of channels past the caches.
    Channels-first (``first``, the 6 x 64 tiles of a plain forward, ``tile_stream.streams_first``),
    a tile's 6 outputs per channel are a fraction of a cache line, so 8 tiles (48 outputs of a
    plane) go into a staging block, channels-last, which is transposed in registers and stored
    past the caches as 48 whole outputs per channel (``_stream_plane_6x64``).
    """
    if first:  # y's strides, in elements: a sample, one output along a row, a channel
        N, O, YD, YH, YW = y.shape
        yn, yw, yc = O * YD * YH * YW, 1, YD * YH * YW
    else:
        N, YD, YH, YW, O = y.shape
        yn, yw, yc = YD * YH * YW * O, O, 1
    OD, OH, OW = out
    XD, XH, XW, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    KD, KH = wt.shape[1], wt.shape[2]
    KW, block = (wt.shape[4], 3) if dot else (wt.shape[3], wt.shape[5])
    xf, wf, yf = xp.ravel(), wt.ravel(), y.ravel()
    sd, sh, sw = XH * XW * C, XW * C, s2 * C  # x's strides: first axis, second axis, one output
    ys = yb[2] * yw  # y's stride from one output of a row to the next
    # A 3-tap row with no stride or dilation: the tile's 10 input positions serve all 3 taps
    # (not with AVX2's 16 registers: its 6 x 2 vector tiles are faster, tile_width).
    three = block == 16 and KW == 3 and s2 == 1 and d2 == 1 and VECTOR_BYTES != 32
    width = 8 if three else 6 if dot else tile_width(block)
    rows = N * OD * OH
    blocks = -(-O // block)
    # One work item: all the blocks of a row, or (filter_major) one block of a row. The tiles of
    # outputs along rows run on across the rows of a plane (n, i): a 14-wide row alone would take
    # 3 tiles of 6, 18 outputs for 14, a 14 x 14 plane takes 33, 198 for 196. Their items are
    # about a row's tiles. The dot-product and 3-tap tiles stay within a row.
    per_item = 1 if filter_major else blocks
    spread = not dot and not three
    per = -(-OW // width)  # tiles per work item
    staged = stream and first and block == 64
    if first and width == 6 and not dot:  # whole staging blocks of 8 tiles (_plane_tiles stages y's planes)
        per = -(-per // _STAGE) * _STAGE
    plane_tiles = -(-(OH * OW) // width)
    chunks = -(-plane_tiles // per)  # work items per plane
    items = N * OD * chunks if spread else rows
    # The work items in chunks that the threads claim (_claim), not an equal static share each (as
    # the regions' and depthwise kernels): a thread that another process holds off its core held
    # up the call while the other one waited at the join (a 2-thread conv3d 3x3x3 16 -> 16 used
    # 19.6 ms of CPU over 13.1 ms against 16.7 ms on one thread). One thread, CPU time, loaded:
    # 1.00-1.02x the static split's time. Each item writes its own outputs: the same bits
    # whichever thread runs it.
    tasks = items * (blocks // per_item)
    size = chunk_size(tasks)
    claims = -(-tasks // size)
    counter = np.zeros(1, np.int64)
    for _ in prange(claims):
        k = _claim(counter)
        while k < claims:
            for t in range(k * size, min(tasks, (k + 1) * size)):
                r = t % items
                q0 = t // items * per_item
                if spread:
                    _plane_tiles(xf, wf, yf, r, q0, per_item, xa, ya, yb, s0, s1, s2, d0, d1, d2, out, OD,
                                 XD, sd, sh, C, YH, YW, O, yn, yw, yc, KD, KH, KW, per, chunks, width, block,
                                 stream, staged)
                else:
                    _row_tiles(xf, wf, yf, r, q0, per_item, xa, ya, yb, s0, s1, d0, d1, d2, OD, OH, OW, XD,
                               YH, YW, O, yn, yw, sd, sh, sw, ys, yc, KD, KH, KW, C, block, width, dot,
                               stream)
            if stream:  # this thread's streamed stores, before the loop's join
                sfence()
            k = _claim(counter)


@njit(cache=True)
def _row_tiles(xf, wf, yf, r, q0, per_item, xa, ya, yb, s0, s1, d0, d1, d2, OD, OH, OW, XD, YH, YW, O, yn, yw,
               sd, sh, sw, ys, yc, KD, KH, KW, C, block, width, dot, stream):  # pragma: no cover - compiled
    """Work item r of tiled_forward's tiles that stay within a row (the dot-product and 3-tap
    tiles): output row r (n, i, j), for the filter blocks q0 to q0 + per_item."""
    n = r // (OD * OH)
    i = r // OH % OD
    j = r % OH
    xrow = (n * XD + xa[0] + i * s0) * sd + (xa[1] + j * s1) * sh + xa[2] * C
    yrow = n * yn + (((ya[0] + i * yb[0]) * YH + ya[1] + j * yb[1]) * YW + ya[2]) * yw
    for q in range(q0, q0 + per_item):
        ob = q * block
        wo = ob // block * KD * KH * KW * C * block
        m = min(block, O - ob)
        tiles = OW if OW >= width else 0
        for k00 in range(0, tiles, width):
            k0 = min(k00, OW - width)
            xo, yo = xrow + k0 * sw, yrow + k0 * ys + ob * yc
            if dot:
                _dot_tile_6x3(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2, ys, yc)
            else:
                _forward_tile_8x16_three(xf, wf, yf, xo, wo, yo, m, KD, KH, C, sd, sh, d0, d1, ys, yc,
                                         stream)
        for k in range(tiles, OW):
            xo, yo = xrow + k * sw, yrow + k * ys + ob * yc
            if dot:
                _dot_one(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, yc)
            else:
                _forward_one(xf, wf, yf, xo, wo, yo, m, block, KD, KH, KW, C, sd, sh, d0, d1, d2, yc)


@njit(cache=True, fastmath={"contract"})
def _forward_tile_8(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, xo, yo, yc,
                    B, stream):  # pragma: no cover - compiled
    """Outputs yo[t] + [0, m) * yc of the flat y, t < 8: the window of output t starts at xo[t] of the
    flat x; the filter block (KD, KH, KW, C, B) starts at wo of the flat filter. B (16, or 32
    in float32: 8 broadcasts per 16 multiply-adds, measured 1.4x faster than two 8 x 16 tiles) is
    a compile-time constant: the sums are B-wide registers. With ``stream`` whole blocks (m = B,
    channels-last) are stored past the caches."""
    literally(B)
    _wide_vectors()
    a0 = _registers(B, yf.dtype)
    a1 = _registers(B, yf.dtype)
    a2 = _registers(B, yf.dtype)
    a3 = _registers(B, yf.dtype)
    a4 = _registers(B, yf.dtype)
    a5 = _registers(B, yf.dtype)
    a6 = _registers(B, yf.dtype)
    a7 = _registers(B, yf.dtype)
    for o in range(B):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
        a6[o] = 0
        a7[o] = 0
    # With no dilation along the row, a row's taps and channels are one run of KW * C values,
    # in x as in the packed filter.
    run, taps = (KW * C, 1) if d2 == 1 else (C, KW)
    ub = np.uint64(B)
    w = np.uint64(wo)
    for a in range(KD):
        for b in range(KH):
            for e in range(taps):
                tap = a * d0 * sd + b * d1 * sh + e * d2 * C
                p0 = np.uint64(xo[0] + tap)
                p1 = np.uint64(xo[1] + tap)
                p2 = np.uint64(xo[2] + tap)
                p3 = np.uint64(xo[3] + tap)
                p4 = np.uint64(xo[4] + tap)
                p5 = np.uint64(xo[5] + tap)
                p6 = np.uint64(xo[6] + tap)
                p7 = np.uint64(xo[7] + tap)
                for c in range(np.uint64(run)):
                    x0 = xf[p0 + c]
                    x1 = xf[p1 + c]
                    x2 = xf[p2 + c]
                    x3 = xf[p3 + c]
                    x4 = xf[p4 + c]
                    x5 = xf[p5 + c]
                    x6 = xf[p6 + c]
                    x7 = xf[p7 + c]
                    for o in range(ub):
                        g = wf[w + o]
                        a0[o] += x0 * g
                        a1[o] += x1 * g
                        a2[o] += x2 * g
                        a3[o] += x3 * g
                        a4[o] += x4 * g
                        a5[o] += x5 * g
                        a6[o] += x6 * g
                        a7[o] += x7 * g
                    w += ub
    if stream and m == B:
        _stream_8(yf, yo, a0, a1, a2, a3, a4, a5, a6, a7, B)
    else:
        _store_8(yf, yo, m, yc, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(cache=True, fastmath={"contract"})
def _forward_tile_8x16_three(xf, wf, yf, xo, wo, yo, m, KD, KH, C, sd, sh, d0, d1, ys,
                             yc, stream):  # pragma: no cover - compiled
    """_forward_tile_8 (16 channels) for 3 taps along the row, stride and dilation 1 there: for each input
    channel the 10 values x[t + e] are loaded once for the 24 multiply-adds of the 3 taps (one
    load per 2.4 instead of 9 per 8; measured 1.5-1.65x faster on 3x3x3 convs with 16 channels).

    The middle tap's products go to sums of their own (b), added to the others' (a) at the end:
    with one set of 8 sums, each took 3 dependent multiply-adds per input channel, 12 cycles of
    latency for the 12 cycles the 24 multiply-adds take, so any stall showed. With ``stream``
    whole blocks (m = 16, channels-last) are stored past the caches."""
    _wide_vectors()
    a0 = _registers(16, yf.dtype)
    a1 = _registers(16, yf.dtype)
    a2 = _registers(16, yf.dtype)
    a3 = _registers(16, yf.dtype)
    a4 = _registers(16, yf.dtype)
    a5 = _registers(16, yf.dtype)
    a6 = _registers(16, yf.dtype)
    a7 = _registers(16, yf.dtype)
    b0 = _registers(16, yf.dtype)
    b1 = _registers(16, yf.dtype)
    b2 = _registers(16, yf.dtype)
    b3 = _registers(16, yf.dtype)
    b4 = _registers(16, yf.dtype)
    b5 = _registers(16, yf.dtype)
    b6 = _registers(16, yf.dtype)
    b7 = _registers(16, yf.dtype)
    for o in range(16):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
        a6[o] = 0
        a7[o] = 0
        b0[o] = 0
        b1[o] = 0
        b2[o] = 0
        b3[o] = 0
        b4[o] = 0
        b5[o] = 0
        b6[o] = 0
        b7[o] = 0
    uc = np.uint64(C)
    tap = uc * _U16  # one tap of the packed filter block
    for a in range(KD):
        for b in range(KH):
            p = np.uint64(xo + a * d0 * sd + b * d1 * sh)
            w = np.uint64(wo + (a * KH + b) * 3 * C * 16)
            for c in range(uc):
                q = p + c
                x0 = xf[q]
                x1 = xf[q + uc]
                x2 = xf[q + np.uint64(2) * uc]
                x3 = xf[q + np.uint64(3) * uc]
                x4 = xf[q + np.uint64(4) * uc]
                x5 = xf[q + np.uint64(5) * uc]
                x6 = xf[q + np.uint64(6) * uc]
                x7 = xf[q + np.uint64(7) * uc]
                x8 = xf[q + np.uint64(8) * uc]
                x9 = xf[q + np.uint64(9) * uc]
                w0 = w + c * _U16
                w1 = w0 + tap
                w2 = w1 + tap
                for o in range(_U16):
                    g0 = wf[w0 + o]
                    g1 = wf[w1 + o]
                    g2 = wf[w2 + o]
                    # One sum per statement: LLVM fuses each into a multiply-add.
                    a0[o] += x0 * g0
                    a1[o] += x1 * g0
                    a2[o] += x2 * g0
                    a3[o] += x3 * g0
                    a4[o] += x4 * g0
                    a5[o] += x5 * g0
                    a6[o] += x6 * g0
                    a7[o] += x7 * g0
                    b0[o] += x1 * g1
                    b1[o] += x2 * g1
                    b2[o] += x3 * g1
                    b3[o] += x4 * g1
                    b4[o] += x5 * g1
                    b5[o] += x6 * g1
                    b6[o] += x7 * g1
                    b7[o] += x8 * g1
                    a0[o] += x2 * g2
                    a1[o] += x3 * g2
                    a2[o] += x4 * g2
                    a3[o] += x5 * g2
                    a4[o] += x6 * g2
                    a5[o] += x7 * g2
                    a6[o] += x8 * g2
                    a7[o] += x9 * g2
    for o in range(16):
        a0[o] += b0[o]
        a1[o] += b1[o]
        a2[o] += b2[o]
        a3[o] += b3[o]
        a4[o] += b4[o]
        a5[o] += b5[o]
        a6[o] += b6[o]
        a7[o] += b7[o]
    at = (yo, yo + ys, yo + 2 * ys, yo + 3 * ys, yo + 4 * ys, yo + 5 * ys, yo + 6 * ys, yo + 7 * ys)
    if stream and m == 16:
        _stream_8(yf, at, a0, a1, a2, a3, a4, a5, a6, a7, 16)
    else:
        _store_8(yf, at, m, yc, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(cache=True)
def _store_8(yf, yo, m, yc, a0, a1, a2, a3, a4, a5, a6, a7):  # pragma: no cover - compiled
    """yf[yo[t] + o * yc] = a_t[o] for the 8 outputs t of a tile, o < m (yc: 1 channels-last)."""
    q0, q1, q2, q3 = np.uint64(yo[0]), np.uint64(yo[1]), np.uint64(yo[2]), np.uint64(yo[3])
    q4, q5, q6, q7 = np.uint64(yo[4]), np.uint64(yo[5]), np.uint64(yo[6]), np.uint64(yo[7])
    if yc != 1:  # channels-first: each channel's 8 outputs, in a row mostly side by side
        for o in range(np.uint64(m)):
            r = o * np.uint64(yc)
            yf[q0 + r] = a0[o]
            yf[q1 + r] = a1[o]
            yf[q2 + r] = a2[o]
            yf[q3 + r] = a3[o]
            yf[q4 + r] = a4[o]
            yf[q5 + r] = a5[o]
            yf[q6 + r] = a6[o]
            yf[q7 + r] = a7[o]
        return
    if m == 16 or m == 32:  # whole blocks: constant counts, stored as whole vectors
        _store_run(yf, q0, a0, m)
        _store_run(yf, q1, a1, m)
        _store_run(yf, q2, a2, m)
        _store_run(yf, q3, a3, m)
        _store_run(yf, q4, a4, m)
        _store_run(yf, q5, a5, m)
        _store_run(yf, q6, a6, m)
        _store_run(yf, q7, a7, m)
        return
    for o in range(np.uint64(m)):
        yf[q0 + o] = a0[o]
        yf[q1 + o] = a1[o]
        yf[q2 + o] = a2[o]
        yf[q3 + o] = a3[o]
        yf[q4 + o] = a4[o]
        yf[q5 + o] = a5[o]
        yf[q6 + o] = a6[o]
        yf[q7 + o] = a7[o]


@njit(cache=True)
def _store_run(yf, q, a, m):  # pragma: no cover - compiled
    """yf[q + o] = a[o] for o < m, m 16 or 32: with a count known when compiled, whole vectors
    (a count read at run time stored the 8 sums interleaved, lane by lane: measured 8% of an 8 x 32
    tile's time with a 256-long sum, the transposed conv's sub-pixel phases)."""
    if m == 32:
        for o in range(_U32):
            yf[q + o] = a[o]
    else:
        for o in range(_U16):
            yf[q + o] = a[o]


@njit(cache=True)
def _stream_8(yf, yo, a0, a1, a2, a3, a4, a5, a6, a7, B):  # pragma: no cover - compiled
    """_store_8 of whole blocks of B (16 or 32) channels, channels-last, past the caches."""
    if B == 16:
        stream_sums(yf, yo[0], a0, 16)
        stream_sums(yf, yo[1], a1, 16)
        stream_sums(yf, yo[2], a2, 16)
        stream_sums(yf, yo[3], a3, 16)
        stream_sums(yf, yo[4], a4, 16)
        stream_sums(yf, yo[5], a5, 16)
        stream_sums(yf, yo[6], a6, 16)
        stream_sums(yf, yo[7], a7, 16)
    else:
        stream_sums(yf, yo[0], a0, 32)
        stream_sums(yf, yo[1], a1, 32)
        stream_sums(yf, yo[2], a2, 32)
        stream_sums(yf, yo[3], a3, 32)
        stream_sums(yf, yo[4], a4, 32)
        stream_sums(yf, yo[5], a5, 32)
        stream_sums(yf, yo[6], a6, 32)
        stream_sums(yf, yo[7], a7, 32)


@njit(cache=True)
def tile_width(block):  # pragma: no cover - compiled
    """Outputs per forward tile of ``block`` channels: 6 for the 6 x 64 tiles, and with 32-byte
    vectors (AVX2) for blocks of 16 and 32 too (passes of 6 x 2 vectors, 12 sums in its 16
    registers: conv3d 3x3x3 16 -> 16 channels-last, one thread, 0.75-0.95x the time of the 4 x 2
    passes, whose 8 sums leave no slack over the multiply-adds' 4-cycle latency); 8 otherwise."""
    return 6 if block == 64 or VECTOR_BYTES == 32 else 8


@njit(cache=True)
def _tile_6(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, xo, yo, yc, stream,
            B):  # pragma: no cover - compiled
    """A tile of 6 outputs x a filter block (KD, KH, KW, C, B) at wo (_forward_tile_6x64's
    arguments): the 6 x 64 tile, or for B = 16 or 32 (AVX2) passes of 6 x 2 vectors up to m."""
    if B == 64:
        _forward_tile_6x64(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, xo, yo, yc, stream)
        return
    step = 2 * lanes(yf)
    for v in range(B // step):
        if v * step < m:
            if B == 16:  # the block a constant: one compiled pass per block (_forward_tile_6x16)
                _forward_tile_6x16(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, xo, yo, yc, stream,
                                   v, 16)
            else:
                _forward_tile_6x16(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, xo, yo, yc, stream,
                                   v, 32)


@njit(cache=True)
def _plane_tiles(xf, wf, yf, r, first, count, xa, ya, yb, s0, s1, s2, d0, d1, d2, out, OD, XD, sd, sh, C,
                 YH, YW, O, yn, yw, yc, KD, KH, KW, per, chunks, width, block,
                 stream=False, staged=False):  # pragma: no cover - compiled
    """Work item r of tiled_forward's tiles of 8 x 16, 8 x 32 or 6 x 64: ``per`` tiles of one plane
    (n, i) (``chunks`` items to a plane), each of ``width`` (8 or 6) consecutive outputs of the
    plane's OH x OW in row order, for the filter blocks first to first + count. The plane's last
    tile overlaps the one before; a plane smaller than a tile goes one output at a time. With
    ``stream`` the tiles store whole blocks past the caches (the caller fences). The 6 x 64 tiles
    of a channels-first y whose plane of outputs is one run of y (``per`` a multiple of 8) store
    through staging blocks of 8 tiles, past the caches with ``staged``."""
    OH, OW = out[1], out[2]
    plane = OH * OW
    tiles = -(-plane // width) if plane >= width else 0
    n, i, c = r // chunks // OD, r // chunks % OD, r % chunks
    xp = (n * XD + xa[0] + i * s0) * sd + xa[1] * sh + xa[2] * C
    yp = n * yn + (((ya[0] + i * yb[0]) * YH + ya[1]) * YW + ya[2]) * yw
    xj, xk, yj, yk = s1 * sh, s2 * C, yb[1] * YW * yw, yb[2] * yw  # strides of an output row, column
    # Channels-first, a tile's 6 outputs of a channel are under half a vector: 64 x 6 scalar
    # stores; staged, 48 outputs of a channel are 3 whole vectors (the regions' strided forwards,
    # one thread, loaded: 0.98-0.99x the scalar stores' time).
    staged = staged or (yc != 1 and width == 6 and per % _STAGE == 0 and yk == 1 and yj == OW)
    for q in range(first, first + count):
        ob = q * block * yc
        wo = q * KD * KH * KW * C * block
        m = min(block, O - q * block)
        if tiles == 0:
            for u in range(plane):
                j, k = u // OW, u % OW
                _forward_one(xf, wf, yf, xp + j * xj + k * xk, wo, yp + j * yj + k * yk + ob, m, block,
                             KD, KH, KW, C, sd, sh, d0, d1, d2, yc)
            continue
        if staged:
            _stream_plane_6x64(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, xp, xj, xk, yp + ob, yj,
                               yk, yc, OW, plane, c * per, min((c + 1) * per, tiles), stream, block)
            continue
        for u in range(c * per, min((c + 1) * per, tiles)):
            u0 = min(u * width, plane - width)
            j0, k0 = u0 // OW, u0 % OW
            j1, k1 = _next(j0, k0, OW)
            j2, k2 = _next(j1, k1, OW)
            j3, k3 = _next(j2, k2, OW)
            j4, k4 = _next(j3, k3, OW)
            j5, k5 = _next(j4, k4, OW)
            j6, k6 = _next(j5, k5, OW)  # past the plane for the 6-output tiles: not used
            j7, k7 = _next(j6, k6, OW)
            x6 = (xp + j0 * xj + k0 * xk, xp + j1 * xj + k1 * xk, xp + j2 * xj + k2 * xk,
                  xp + j3 * xj + k3 * xk, xp + j4 * xj + k4 * xk, xp + j5 * xj + k5 * xk)
            y6 = (yp + j0 * yj + k0 * yk + ob, yp + j1 * yj + k1 * yk + ob, yp + j2 * yj + k2 * yk + ob,
                  yp + j3 * yj + k3 * yk + ob, yp + j4 * yj + k4 * yk + ob, yp + j5 * yj + k5 * yk + ob)
            if width == 6:  # the 6 x 64 tiles, or AVX2's passes of 6 x 2 vectors (tile_width)
                _tile_6(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, x6, y6, yc, stream, block)
                continue
            x8 = (*x6, xp + j6 * xj + k6 * xk, xp + j7 * xj + k7 * xk)
            y8 = (*y6, yp + j6 * yj + k6 * yk + ob, yp + j7 * yj + k7 * yk + ob)
            if block == 16:
                _forward_tile_8(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, x8, y8, yc, 16, stream)
            else:
                _forward_tile_8(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, x8, y8, yc, 32, stream)


# Tiles of 6 outputs per staging block of the channels-first streamed stores: 48 outputs, whole
# vectors of float32 and float64.
_STAGE = 8


@njit(cache=True)
def _stream_plane_6x64(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, xp, xj, xk, yq, yj, yk, yc, OW,
                       plane, u_start, u_stop, past, B=64):  # pragma: no cover - compiled
    """Tiles u_start to u_stop (u_start a multiple of _STAGE) of 6 outputs x m <= 64 channels of a
    plane of OW-wide rows, x's plane at xp (strides xj a row, xk an output), channels-first y's
    at yq (strides yj, yk = 1, yc; its rows one run, yj = OW): each run of _STAGE whole tiles (48
    outputs) is stored channels-last into a staging block, transposed in 8 x 8 registers and
    stored as 48 outputs per channel, with ``past`` past the caches (yq + 6 u on a 64-byte
    boundary: tile_stream.streams_first); the plane's last tiles (the last one overlapping the
    one before) are stored as they are."""
    span = _STAGE * 6
    stage = np.empty(span * 64, yf.dtype)  # (48 outputs, 64 channels)
    moved = np.empty(8 * span, yf.dtype)  # (8 channels, 48 outputs)
    # The channels the tiles sum into the staging block: AVX-512's 6 x 64 tiles all 64 (whole
    # stores); AVX2's passes of 2 vectors up to the block's last valid channel m, so that a block
    # of 16 channels costs one pass, not four (3x3x3 16 -> 16 channels-first: 45 ms against 14 for
    # the 8 x 16 tiles, one thread); blocks of 16 and 32 (AVX2, B) pass over their own packing.
    # Channels the passes leave unwritten are never stored to y.
    summed = 64 if VECTOR_BYTES != 32 else min(64, -(-m // (2 * lanes(yf))) * 2 * lanes(yf))
    u = u_start
    while u < u_stop:
        if u + _STAGE <= u_stop and 6 * u + span <= plane:
            for t in range(_STAGE):
                p = 6 * (u + t)
                x6 = _x6(xp, xj, xk, OW, p)
                b = t * 6 * 64
                y6 = (b, b + 64, b + 128, b + 192, b + 256, b + 320)
                _tile_6(xf, wf, stage, wo, summed, KD, KH, KW, C, sd, sh, d0, d1, d2, x6, y6, 1, False, B)
            p = 6 * u
            at = yq + p // OW * yj + p % OW * yk
            for o0 in range(0, m, 8):  # 8 channels at a time: the staging stays small beside the filter
                if not past and o0 + 8 <= m:  # 8 whole channels: transposed straight into y's planes
                    for i0 in range(0, span, 8):
                        transpose8(stage, np.uint64(i0 * 64 + o0), np.uint64(64), yf,
                                   np.uint64(at + o0 * yc + i0), np.uint64(yc))
                    continue
                for i0 in range(0, span, 8):
                    transpose8(stage, np.uint64(i0 * 64 + o0), np.uint64(64), moved, np.uint64(i0),
                               np.uint64(span))
                if past:
                    for o in range(o0, min(o0 + 8, m)):
                        stream_copy(yf, at + o * yc, moved, (o - o0) * span, 48)
                else:
                    for o in range(o0, min(o0 + 8, m)):
                        q, f = np.uint64(at + o * yc), np.uint64((o - o0) * span)
                        for e in range(np.uint64(48)):
                            yf[q + e] = moved[f + e]
            u += _STAGE
            continue
        p = min(6 * u, plane - 6)
        x6 = _x6(xp, xj, xk, OW, p)
        y6 = _x6(yq, yj, yk, OW, p)
        _tile_6(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, x6, y6, yc, False, B)
        u += 1


@njit(cache=True)
def _x6(base, sj, sk, OW, p):  # pragma: no cover - compiled
    """Offsets of the 6 outputs p to p + 5 of a plane in row order (rows OW wide), strides sj a
    row, sk an output."""
    return (base + p // OW * sj + p % OW * sk, base + (p + 1) // OW * sj + (p + 1) % OW * sk,
            base + (p + 2) // OW * sj + (p + 2) % OW * sk, base + (p + 3) // OW * sj + (p + 3) % OW * sk,
            base + (p + 4) // OW * sj + (p + 4) % OW * sk, base + (p + 5) // OW * sj + (p + 5) % OW * sk)


@njit(cache=True)
def _next(j, k, width):  # pragma: no cover - compiled
    """The output after (j, k) in row order, rows ``width`` long."""
    return (j, k + 1) if k + 1 < width else (j + 1, 0)


@njit(cache=True, fastmath={"contract"})
def _forward_tile_6x64(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, xo, yo,
                       yc, stream):  # pragma: no cover - compiled
    """_forward_tile_8 for 6 outputs x the 64 channels of a filter block (KD, KH, KW, C, 64): output
    t's window starts at xo[t] of the flat x and its sums go to yo[t] + [0, m) of the flat y, so
    that a tile may run on from the end of one output row to the start of the next. With
    ``stream`` a whole block's sums (m = 64, channels-last) are stored past the caches."""
    if VECTOR_BYTES == 32:  # AVX2: 6 x 64 float32 sums would take 48 of its 16 vector registers
        step = 2 * lanes(yf)
        for q in range(64 // step):
            if q * step < m:
                _forward_tile_6x16(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, xo, yo, yc, stream,
                                   q, 64)
        return
    _wide_vectors()
    a0 = _registers(64, yf.dtype)
    a1 = _registers(64, yf.dtype)
    a2 = _registers(64, yf.dtype)
    a3 = _registers(64, yf.dtype)
    a4 = _registers(64, yf.dtype)
    a5 = _registers(64, yf.dtype)
    for o in range(64):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
    run, taps = (KW * C, 1) if d2 == 1 else (C, KW)
    w = np.uint64(wo)
    for a in range(KD):
        for b in range(KH):
            for e in range(taps):
                tap = a * d0 * sd + b * d1 * sh + e * d2 * C
                p0 = np.uint64(xo[0] + tap)
                p1 = np.uint64(xo[1] + tap)
                p2 = np.uint64(xo[2] + tap)
                p3 = np.uint64(xo[3] + tap)
                p4 = np.uint64(xo[4] + tap)
                p5 = np.uint64(xo[5] + tap)
                for c in range(np.uint64(run)):
                    x0 = xf[p0 + c]
                    x1 = xf[p1 + c]
                    x2 = xf[p2 + c]
                    x3 = xf[p3 + c]
                    x4 = xf[p4 + c]
                    x5 = xf[p5 + c]
                    _prefetch(wf, w + _AHEAD)
                    for o in range(_U64):
                        g = wf[w + o]
                        a0[o] += x0 * g
                        a1[o] += x1 * g
                        a2[o] += x2 * g
                        a3[o] += x3 * g
                        a4[o] += x4 * g
                        a5[o] += x5 * g
                    w += _U64
    q0, q1, q2 = np.uint64(yo[0]), np.uint64(yo[1]), np.uint64(yo[2])
    q3, q4, q5 = np.uint64(yo[3]), np.uint64(yo[4]), np.uint64(yo[5])
    if yc != 1:  # channels-first (see _store_8)
        for o in range(np.uint64(m)):
            r = o * np.uint64(yc)
            yf[q0 + r] = a0[o]
            yf[q1 + r] = a1[o]
            yf[q2 + r] = a2[o]
            yf[q3 + r] = a3[o]
            yf[q4 + r] = a4[o]
            yf[q5 + r] = a5[o]
        return
    if stream and m == 64:  # whole vectors on 64-byte boundaries: past the caches
        stream_sums(yf, q0, a0, 64)
        stream_sums(yf, q1, a1, 64)
        stream_sums(yf, q2, a2, 64)
        stream_sums(yf, q3, a3, 64)
        stream_sums(yf, q4, a4, 64)
        stream_sums(yf, q5, a5, 64)
        return
    for o in range(np.uint64(m)):
        yf[q0 + o] = a0[o]
        yf[q1 + o] = a1[o]
        yf[q2 + o] = a2[o]
        yf[q3 + o] = a3[o]
        yf[q4 + o] = a4[o]
        yf[q5 + o] = a5[o]


@njit(cache=True, fastmath={"contract"})
def _forward_tile_6x16(xf, wf, yf, wo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, xo, yo, yc, stream,
                       q, B):  # pragma: no cover - compiled
    """Channels [2Lq, 2Lq + 2L) of a tile of 6 outputs x a filter block (KD, KH, KW, C, B) at wo
    (_forward_tile_6x64's arguments), as 6 x 2 vectors of L = lanes(yf) sums: with 32-byte
    vectors (AVX2's 16 registers) the whole tile's sums would spill to the stack at every
    multiply-add (one thread, 256 -> 256 channels of 14 x 14, float32: 25 GFLOP/s), where passes
    over the window in 12 registers each leave room for the filter's two vectors and the
    broadcast input (float32: 4 passes of 16 channels for B = 64, one for B = 16). B is a
    compile-time constant (16, 32 or 64: the filter's steps are immediate offsets)."""
    literally(B)
    s00, s01, s10, s11 = vzero(yf), vzero(yf), vzero(yf), vzero(yf)
    s20, s21, s30, s31 = vzero(yf), vzero(yf), vzero(yf), vzero(yf)
    s40, s41, s50, s51 = vzero(yf), vzero(yf), vzero(yf), vzero(yf)
    run, taps = (KW * C, 1) if d2 == 1 else (C, KW)
    h = np.uint64(lanes(yf))
    ub = np.uint64(B)
    base = np.uint64(2 * q) * h
    w = np.uint64(wo) + base
    # The window's runs (a, b, e) as one loop, each run's offset from the outputs' corners advanced
    # by constants: fewer values live between runs than the 3 loops' counters and products, which
    # went to the stack and back at every run (9 runs of 48 steps per tile on conv3d 3x3x3). One
    # thread, CPU time, loaded, interleaved against the 3 loops: 0.93-0.98x on conv3d 16 -> 16,
    # strided 3x3 128 -> 128, the transposed row's 4x4 stride-2 conv and the stem, both layouts.
    rows, runs = np.uint64(KH), np.uint64(KD * KH * taps)
    se, sb, sa = np.uint64(d2 * C), np.uint64(d1 * sh), np.uint64(d0 * sd)
    back_e = np.uint64(taps) * se
    back_b = rows * sb
    p0 = np.uint64(xo[0])
    p1 = np.uint64(xo[1])
    p2 = np.uint64(xo[2])
    p3 = np.uint64(xo[3])
    p4 = np.uint64(xo[4])
    p5 = np.uint64(xo[5])
    off = np.uint64(0)  # the run's offset: a d0 sd + b d1 sh + e d2 C
    e, b = np.uint64(0), np.uint64(0)
    one = np.uint64(1)
    for _ in range(runs):
        for c in range(np.uint64(run)):
            g0 = vload(wf, w)
            g1 = vload(wf, w + h)
            s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = outer6x2(
                xf, p0 + off + c, p1 + off + c, p2 + off + c, p3 + off + c, p4 + off + c, p5 + off + c,
                g0, g1, s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51)
            w += ub
        e += one
        off += se
        if e == np.uint64(taps):
            e = np.uint64(0)
            off = off - back_e + sb
            b += one
            if b == rows:
                b = np.uint64(0)
                off = off - back_b + sa
    n = min(2 * lanes(yf), m - np.int64(base))
    if yc == 1 and n == 2 * lanes(yf):  # whole vectors; streamed ones (m = B) start on 64-byte boundaries
        put2(yf, np.uint64(yo[0]) + base, s00, s01, stream)
        put2(yf, np.uint64(yo[1]) + base, s10, s11, stream)
        put2(yf, np.uint64(yo[2]) + base, s20, s21, stream)
        put2(yf, np.uint64(yo[3]) + base, s30, s31, stream)
        put2(yf, np.uint64(yo[4]) + base, s40, s41, stream)
        put2(yf, np.uint64(yo[5]) + base, s50, s51, stream)
        return
    for o in range(n):  # a partial block, or channels-first (see _store_8)
        r = (base + np.uint64(o)) * np.uint64(yc)
        yf[np.uint64(yo[0]) + r] = lane2(s00, s01, o, h)
        yf[np.uint64(yo[1]) + r] = lane2(s10, s11, o, h)
        yf[np.uint64(yo[2]) + r] = lane2(s20, s21, o, h)
        yf[np.uint64(yo[3]) + r] = lane2(s30, s31, o, h)
        yf[np.uint64(yo[4]) + r] = lane2(s40, s41, o, h)
        yf[np.uint64(yo[5]) + r] = lane2(s50, s51, o, h)


@njit(cache=True, fastmath={"contract"})
def _forward_one(xf, wf, yf, xo, wo, yo, m, block, KD, KH, KW, C, sd, sh, d0, d1, d2,
                 yc):  # pragma: no cover - compiled
    """One output alone (rows narrower than a tile): yf[yo + o * yc] for o < m."""
    acc = _registers(64, yf.dtype)
    for o in range(block):
        acc[o] = 0
    ub = np.uint64(block)
    w = np.uint64(wo)
    for a in range(KD):
        for b in range(KH):
            for e in range(KW):
                p = np.uint64(xo + a * d0 * sd + b * d1 * sh + e * d2 * C)
                for c in range(np.uint64(C)):
                    xv = xf[p + c]
                    for o in range(ub):
                        acc[o] += xv * wf[w + o]
                    w += ub
    q = np.uint64(yo)
    for o in range(np.uint64(m)):
        yf[q + o * np.uint64(yc)] = acc[o]


@njit(cache=True, fastmath={"contract"})
def _dot_tile_6x3(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2, ys,
                  yc):  # pragma: no cover - compiled
    """Outputs yo + t * ys + [0, m) * yc of the flat y, t < 6, m <= 3: output t's window starts at
    xo + t * sw of the flat x, the filter group (KD, KH, 3, KW, C) at wo of the flat filter."""
    if VECTOR_BYTES == 32:  # AVX2: 18 sums of 16 lanes would take 36 of its 16 vector registers
        _dot_tile_3x3(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2, ys, yc)
        _dot_tile_3x3(xf, wf, yf, xo + 3 * sw, wo, yo + 3 * ys, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2, ys,
                      yc)
        return
    _wide_vectors()
    a00 = _registers(16, yf.dtype)
    a01 = _registers(16, yf.dtype)
    a02 = _registers(16, yf.dtype)
    a10 = _registers(16, yf.dtype)
    a11 = _registers(16, yf.dtype)
    a12 = _registers(16, yf.dtype)
    a20 = _registers(16, yf.dtype)
    a21 = _registers(16, yf.dtype)
    a22 = _registers(16, yf.dtype)
    a30 = _registers(16, yf.dtype)
    a31 = _registers(16, yf.dtype)
    a32 = _registers(16, yf.dtype)
    a40 = _registers(16, yf.dtype)
    a41 = _registers(16, yf.dtype)
    a42 = _registers(16, yf.dtype)
    a50 = _registers(16, yf.dtype)
    a51 = _registers(16, yf.dtype)
    a52 = _registers(16, yf.dtype)
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
    run, taps = (KW * C, 1) if d2 == 1 else (C, KW)  # no dilation: a row's taps x channels are one run
    step = np.uint64(sw)
    row = np.uint64(KW * C)  # from one output channel's filter row to the next
    for a in range(KD):
        for b in range(KH):
            for e in range(taps):
                p0 = np.uint64(xo + a * d0 * sd + b * d1 * sh + e * d2 * C)
                p1 = p0 + step
                p2 = p1 + step
                p3 = p2 + step
                p4 = p3 + step
                p5 = p4 + step
                w0 = np.uint64(wo + (a * KH + b) * 3 * KW * C + e * C)
                w1 = w0 + row
                w2 = w1 + row
                for c in range(np.uint64(0), np.uint64(run), _U16):
                    for v in range(_U16):
                        g0 = wf[w0 + c + v]
                        g1 = wf[w1 + c + v]
                        g2 = wf[w2 + c + v]
                        x0 = xf[p0 + c + v]
                        x1 = xf[p1 + c + v]
                        x2 = xf[p2 + c + v]
                        x3 = xf[p3 + c + v]
                        x4 = xf[p4 + c + v]
                        x5 = xf[p5 + c + v]
                        a00[v] += x0 * g0
                        a01[v] += x0 * g1
                        a02[v] += x0 * g2
                        a10[v] += x1 * g0
                        a11[v] += x1 * g1
                        a12[v] += x1 * g2
                        a20[v] += x2 * g0
                        a21[v] += x2 * g1
                        a22[v] += x2 * g2
                        a30[v] += x3 * g0
                        a31[v] += x3 * g1
                        a32[v] += x3 * g2
                        a40[v] += x4 * g0
                        a41[v] += x4 * g1
                        a42[v] += x4 * g2
                        a50[v] += x5 * g0
                        a51[v] += x5 * g1
                        a52[v] += x5 * g2
    _store_dot(yf, yo, m, yc, a00, a01, a02)
    _store_dot(yf, yo + ys, m, yc, a10, a11, a12)
    _store_dot(yf, yo + 2 * ys, m, yc, a20, a21, a22)
    _store_dot(yf, yo + 3 * ys, m, yc, a30, a31, a32)
    _store_dot(yf, yo + 4 * ys, m, yc, a40, a41, a42)
    _store_dot(yf, yo + 5 * ys, m, yc, a50, a51, a52)


@njit(cache=True, fastmath=True)  # reassociation: the lanes are added as a tree, not in a chain
def _store_dot(yf, yo, m, yc, a0, a1, a2):  # pragma: no cover - compiled
    """yf[yo + o * yc] = the sum of a_o's 16 lanes, o < m."""
    s0, s1, s2 = a0[0], a1[0], a2[0]
    for v in range(1, 16):
        s0 += a0[v]
        s1 += a1[v]
        s2 += a2[v]
    yf[yo] = s0
    if m > 1:
        yf[yo + yc] = s1
    if m > 2:
        yf[yo + 2 * yc] = s2


@njit(cache=True, fastmath={"contract"})
def _dot_tile_3x3(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2, ys,
                  yc):  # pragma: no cover - compiled
    """Outputs 0-2 of _dot_tile_6x3's tile (its arguments) as 3 x 3 vectors of lanes(yf) partial
    sums (AVX2): 9 sums, 3 filter vectors and the input vector in 16 registers, 9 independent
    chains for the multiply-add's latency. Each output's lanes are summed as a tree at the end."""
    s00, s01, s02 = vzero(yf), vzero(yf), vzero(yf)
    s10, s11, s12 = vzero(yf), vzero(yf), vzero(yf)
    s20, s21, s22 = vzero(yf), vzero(yf), vzero(yf)
    run, taps = (KW * C, 1) if d2 == 1 else (C, KW)  # no dilation: a row's taps x channels are one run
    step = np.uint64(sw)
    row = np.uint64(KW * C)  # from one output channel's filter row to the next
    h = np.uint64(lanes(yf))
    for a in range(KD):
        for b in range(KH):
            for e in range(taps):
                p0 = np.uint64(xo + a * d0 * sd + b * d1 * sh + e * d2 * C)
                p1 = p0 + step
                p2 = p1 + step
                w0 = np.uint64(wo + (a * KH + b) * 3 * KW * C + e * C)
                w1 = w0 + row
                w2 = w1 + row
                for c in range(np.uint64(0), np.uint64(run), h):
                    g0 = vload(wf, w0 + c)
                    g1 = vload(wf, w1 + c)
                    g2 = vload(wf, w2 + c)
                    v = vload(xf, p0 + c)
                    s00 = vfma(v, g0, s00)
                    s01 = vfma(v, g1, s01)
                    s02 = vfma(v, g2, s02)
                    v = vload(xf, p1 + c)
                    s10 = vfma(v, g0, s10)
                    s11 = vfma(v, g1, s11)
                    s12 = vfma(v, g2, s12)
                    v = vload(xf, p2 + c)
                    s20 = vfma(v, g0, s20)
                    s21 = vfma(v, g1, s21)
                    s22 = vfma(v, g2, s22)
    _store_dot3(yf, yo, m, yc, s00, s01, s02)
    _store_dot3(yf, yo + ys, m, yc, s10, s11, s12)
    _store_dot3(yf, yo + 2 * ys, m, yc, s20, s21, s22)


@njit(cache=True)
def _store_dot3(yf, yo, m, yc, v0, v1, v2):  # pragma: no cover - compiled
    """yf[yo + o * yc] = the sum of v_o's lanes, o < m."""
    yf[yo] = vsum(v0)
    if m > 1:
        yf[yo + yc] = vsum(v1)
    if m > 2:
        yf[yo + 2 * yc] = vsum(v2)


@njit(cache=True, fastmath={"contract"})
def _dot_one(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, d0, d1, d2, yc):  # pragma: no cover
    """One output alone (rows narrower than a tile): yf[yo + o * yc] for o < m."""
    a0 = _registers(16, yf.dtype)
    a1 = _registers(16, yf.dtype)
    a2 = _registers(16, yf.dtype)
    for v in range(16):
        a0[v] = 0
        a1[v] = 0
        a2[v] = 0
    row = np.uint64(KW * C)
    for a in range(KD):
        for b in range(KH):
            for e in range(KW):
                p = np.uint64(xo + a * d0 * sd + b * d1 * sh + e * d2 * C)
                w0 = np.uint64(wo + (a * KH + b) * 3 * KW * C + e * C)
                w1 = w0 + row
                w2 = w1 + row
                for c in range(np.uint64(0), np.uint64(C), _U16):
                    for v in range(_U16):
                        xv = xf[p + c + v]
                        a0[v] += xv * wf[w0 + c + v]
                        a1[v] += xv * wf[w1 + c + v]
                        a2[v] += xv * wf[w2 + c + v]
    _store_dot(yf, yo, m, yc, a0, a1, a2)


@njit(parallel=True, cache=True)
def tiled_filter_grad(xp, dy, s0, s1, s2, d0, d1, d2, tile, parts):  # pragma: no cover - compiled
    """parts[p] (KD, KH, KW, C, O) = part p of the filter gradient: the sums over its share of
    output rows of xp (N, D', H', W', C), padded, times dy (N, D, H, W, O), O a multiple of 16
    (``tile`` 16 or 8: tiles of that many input channels x 16 output channels) or of 64 (``tile``
    4: 4 x 64).

    The tiles stay in registers over a chunk of output rows; the last input channels go one at
    a time. The caller adds the parts. 1-D and 2-D convs come with unit leading axes.
    """
    N, OD, OH, OW, O = dy.shape
    XD, XH, XW, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    P, KD, KH, KW = parts.shape[0], parts.shape[1], parts.shape[2], parts.shape[3]
    block = 64 if tile == 4 else 16
    xf, df = xp.ravel(), dy.ravel()
    sd, sh, sw = XH * XW * C, XW * C, np.uint64(s2 * C)
    rows = N * OD * OH
    # Rows per chunk: about 16 KiB of dy per tile (measured best: 8 rows of 32 x 16 floats for
    # the 3-D conv, 1 row of 56 x 64 for the resnet layer; more spills the first cache).
    chunk = max(1, 16384 // (OW * block * dy.itemsize)) if OW else 1
    for part in prange(P):
        tp = parts[part]
        tp[...] = 0
        tf = tp.ravel()
        xo = np.empty(chunk, np.int64)  # where each row of the chunk starts in x (tap a, b) and dy
        do = np.empty(chunk, np.int64)
        start, stop = part * rows // P, (part + 1) * rows // P
        for r0 in range(start, stop, chunk):
            count = min(chunk, stop - r0)
            for q in range(count):
                do[q] = (r0 + q) * OW * O
            for a in range(KD):
                for b in range(KH):
                    for q in range(count):  # divisions are slow: once per row and tap row
                        r = r0 + q
                        xo[q] = (r // (OD * OH) * XD + r // OH % OD * s0 + a * d0) * sd + (
                            r % OH * s1 + b * d1) * sh
                    for e in range(KW):
                        to = ((a * KH + b) * KW + e) * C * O
                        for ob in range(0, O, block):
                            for c0 in range(0, C - tile + 1, tile):
                                shift, at = e * d2 * C + c0, to + c0 * O + ob
                                if tile == 16:
                                    _filter_tile_16x16(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at)
                                elif tile == 8:
                                    _filter_tile_8x16(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at)
                                else:
                                    _filter_tile_4x64(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at)
                            for c in range(C - C % tile, C):
                                _filter_one(xf, df, tf, xo, do, count, e * d2 * C + c, ob, sw, OW, O,
                                            to + c * O + ob, block)


@njit(cache=True, fastmath={"contract"})
def _filter_tile_16x16(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at):  # pragma: no cover
    """tf[at + i * O + o] += sum over the chunk's outputs of x[i] * dy[o], i, o < 16: x at
    xo[q] + shift + k * sw and dy at do[q] + ob + k * O for row q < count and output k < OW."""
    if VECTOR_BYTES == 32:  # AVX2: 16 x 16 float32 sums would take 32 of its 16 vector registers
        _filter_2v(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, O, at, 16, 16)
        return
    _wide_vectors()
    a0 = _registers(16, df.dtype)
    a1 = _registers(16, df.dtype)
    a2 = _registers(16, df.dtype)
    a3 = _registers(16, df.dtype)
    a4 = _registers(16, df.dtype)
    a5 = _registers(16, df.dtype)
    a6 = _registers(16, df.dtype)
    a7 = _registers(16, df.dtype)
    a8 = _registers(16, df.dtype)
    a9 = _registers(16, df.dtype)
    a10 = _registers(16, df.dtype)
    a11 = _registers(16, df.dtype)
    a12 = _registers(16, df.dtype)
    a13 = _registers(16, df.dtype)
    a14 = _registers(16, df.dtype)
    a15 = _registers(16, df.dtype)
    for o in range(16):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
        a6[o] = 0
        a7[o] = 0
        a8[o] = 0
        a9[o] = 0
        a10[o] = 0
        a11[o] = 0
        a12[o] = 0
        a13[o] = 0
        a14[o] = 0
        a15[o] = 0
    step = np.uint64(O)
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
            x6 = xf[p + np.uint64(6)]
            x7 = xf[p + np.uint64(7)]
            x8 = xf[p + np.uint64(8)]
            x9 = xf[p + np.uint64(9)]
            x10 = xf[p + np.uint64(10)]
            x11 = xf[p + np.uint64(11)]
            x12 = xf[p + np.uint64(12)]
            x13 = xf[p + np.uint64(13)]
            x14 = xf[p + np.uint64(14)]
            x15 = xf[p + np.uint64(15)]
            for o in range(_U16):
                g = df[d + o]
                a0[o] += x0 * g
                a1[o] += x1 * g
                a2[o] += x2 * g
                a3[o] += x3 * g
                a4[o] += x4 * g
                a5[o] += x5 * g
                a6[o] += x6 * g
                a7[o] += x7 * g
                a8[o] += x8 * g
                a9[o] += x9 * g
                a10[o] += x10 * g
                a11[o] += x11 * g
                a12[o] += x12 * g
                a13[o] += x13 * g
                a14[o] += x14 * g
                a15[o] += x15 * g
            p += sw
            d += step
    t = np.uint64(at)
    for o in range(_U16):
        tf[t + o] += a0[o]
        tf[t + step + o] += a1[o]
        tf[t + np.uint64(2) * step + o] += a2[o]
        tf[t + np.uint64(3) * step + o] += a3[o]
        tf[t + np.uint64(4) * step + o] += a4[o]
        tf[t + np.uint64(5) * step + o] += a5[o]
        tf[t + np.uint64(6) * step + o] += a6[o]
        tf[t + np.uint64(7) * step + o] += a7[o]
        tf[t + np.uint64(8) * step + o] += a8[o]
        tf[t + np.uint64(9) * step + o] += a9[o]
        tf[t + np.uint64(10) * step + o] += a10[o]
        tf[t + np.uint64(11) * step + o] += a11[o]
        tf[t + np.uint64(12) * step + o] += a12[o]
        tf[t + np.uint64(13) * step + o] += a13[o]
        tf[t + np.uint64(14) * step + o] += a14[o]
        tf[t + np.uint64(15) * step + o] += a15[o]


@njit(cache=True, fastmath={"contract"})
def _filter_tile_8x16(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at):  # pragma: no cover
    """_filter_tile_16x16 for 8 input channels (float64: 16 x 16 sums would not fit the registers)."""
    if VECTOR_BYTES == 32:  # AVX2: 8 x 16 float64 sums would take 32 of its 16 vector registers
        _filter_2v(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, O, at, 8, 16)
        return
    _wide_vectors()
    a0 = _registers(16, df.dtype)
    a1 = _registers(16, df.dtype)
    a2 = _registers(16, df.dtype)
    a3 = _registers(16, df.dtype)
    a4 = _registers(16, df.dtype)
    a5 = _registers(16, df.dtype)
    a6 = _registers(16, df.dtype)
    a7 = _registers(16, df.dtype)
    for o in range(16):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
        a6[o] = 0
        a7[o] = 0
    step = np.uint64(O)
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
            x6 = xf[p + np.uint64(6)]
            x7 = xf[p + np.uint64(7)]
            for o in range(_U16):
                g = df[d + o]
                a0[o] += x0 * g
                a1[o] += x1 * g
                a2[o] += x2 * g
                a3[o] += x3 * g
                a4[o] += x4 * g
                a5[o] += x5 * g
                a6[o] += x6 * g
                a7[o] += x7 * g
            p += sw
            d += step
    t = np.uint64(at)
    for o in range(_U16):
        tf[t + o] += a0[o]
        tf[t + step + o] += a1[o]
        tf[t + np.uint64(2) * step + o] += a2[o]
        tf[t + np.uint64(3) * step + o] += a3[o]
        tf[t + np.uint64(4) * step + o] += a4[o]
        tf[t + np.uint64(5) * step + o] += a5[o]
        tf[t + np.uint64(6) * step + o] += a6[o]
        tf[t + np.uint64(7) * step + o] += a7[o]


@njit(cache=True, fastmath={"contract"})
def _filter_tile_4x64(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at):  # pragma: no cover
    """_filter_tile_16x16 for 4 input channels x 64 output channels."""
    if VECTOR_BYTES == 32:  # AVX2: 4 x 64 float32 sums would take 32 of its 16 vector registers
        _filter_2v(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, O, at, 4, 64)
        return
    _wide_vectors()
    a0 = _registers(64, df.dtype)
    a1 = _registers(64, df.dtype)
    a2 = _registers(64, df.dtype)
    a3 = _registers(64, df.dtype)
    for o in range(64):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
    step = np.uint64(O)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            x0 = xf[p]
            x1 = xf[p + np.uint64(1)]
            x2 = xf[p + np.uint64(2)]
            x3 = xf[p + np.uint64(3)]
            for o in range(_U64):
                g = df[d + o]
                a0[o] += x0 * g
                a1[o] += x1 * g
                a2[o] += x2 * g
                a3[o] += x3 * g
            p += sw
            d += step
    t = np.uint64(at)
    for o in range(_U64):
        tf[t + o] += a0[o]
        tf[t + step + o] += a1[o]
        tf[t + np.uint64(2) * step + o] += a2[o]
        tf[t + np.uint64(3) * step + o] += a3[o]


@njit(cache=True)
def _filter_2v(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, rows, cols):  # pragma: no cover
    """The AVX2 form of a filter-gradient tile of ``rows`` input channels (filter rows) x ``cols``
    output channels (both multiples of 4; cols of 2 vectors): tf[at + i * O + o] += the sums over
    the chunk of x[i] * dy[o], x at xo[q] + shift + i + k * sw, dy at do[q] + ob + k * dstep (row q
    < count, output k < OW). With 32-byte vectors the tiles' sums (16 x 16 or 4 x 64 float32, 8 x
    16 float64: 32 vectors) would spill to the stack at every multiply-add; passes of at most 6
    rows x 2 vectors (12 of the 16 registers) leave room for dy's two vectors and the broadcast x;
    4 rows go 3 vectors at a time (4 x 64 float32, one thread, loaded: 1.14-1.34x the passes of 2).
    Each sum still adds its products in the order of the outputs: the bits of the tile's."""
    L = lanes(tf)
    two = 2 * L
    start = 0
    if rows == 4:  # 4 rows x 3 vectors (12 sums) while more than 4 or exactly 3 vectors are left
        while (cols - start) // L > 4 or (cols - start) // L == 3:
            _filter_4x3v(xf, df, tf, xo, do, count, shift, ob + start, sw, OW, dstep, O, at + start)
            start += 3 * L
    for o0 in range(start, cols, two):
        d, t = ob + o0, at + o0
        if rows == 16:  # 6 + 6 + 4 rows: 12, 12 and 8 sums
            _filter_rows_2v(xf, df, tf, xo, do, count, shift, d, sw, OW, dstep, O, t, 6)
            _filter_rows_2v(xf, df, tf, xo, do, count, shift + 6, d, sw, OW, dstep, O, t + 6 * O, 6)
            _filter_rows_2v(xf, df, tf, xo, do, count, shift + 12, d, sw, OW, dstep, O, t + 12 * O, 4)
        else:  # 4 + 4 rows rather than 6 + 2: 2 rows' 4 sums would wait on the multiply-add's latency
            for i in range(0, rows, 4):
                _filter_rows_2v(xf, df, tf, xo, do, count, shift + i, d, sw, OW, dstep, O, t + i * O, 4)


@njit(cache=True, fastmath={"contract"})
def _filter_rows_2v(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at, R):  # pragma: no cover
    """tf[at + i * O + o] += sum over the chunk's outputs of x[i] * dy[o], i < R, o < 2L (L =
    lanes(tf)): x at xo[q] + shift + i + k * sw and dy at do[q] + ob + k * dstep for row q < count
    and output k < OW. R (1-6) is a compile-time constant: the sums of the rows past R are never
    touched, and LLVM drops them. The sums are explicit vectors, registers by construction (AVX2's
    pass of _filter_2v; filter_runs.py's too)."""
    literally(R)
    s00, s01, s10, s11 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    s20, s21, s30, s31 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    s40, s41, s50, s51 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    h, ds, one = np.uint64(lanes(tf)), np.uint64(dstep), np.uint64(1)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            g0 = vload(df, d)
            g1 = vload(df, d + h)
            v = vsplat(xf, p)
            s00 = vfma(v, g0, s00)
            s01 = vfma(v, g1, s01)
            if R > 1:
                v = vsplat(xf, p + one)
                s10 = vfma(v, g0, s10)
                s11 = vfma(v, g1, s11)
            if R > 2:
                v = vsplat(xf, p + np.uint64(2))
                s20 = vfma(v, g0, s20)
                s21 = vfma(v, g1, s21)
            if R > 3:
                v = vsplat(xf, p + np.uint64(3))
                s30 = vfma(v, g0, s30)
                s31 = vfma(v, g1, s31)
            if R > 4:
                v = vsplat(xf, p + np.uint64(4))
                s40 = vfma(v, g0, s40)
                s41 = vfma(v, g1, s41)
            if R > 5:
                v = vsplat(xf, p + np.uint64(5))
                s50 = vfma(v, g0, s50)
                s51 = vfma(v, g1, s51)
            p += sw
            d += ds
    t, step = np.uint64(at), np.uint64(O)
    add6x2(tf, t, step, R, s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51)


@njit(cache=True, fastmath={"contract"})
def _filter_4x3v(xf, df, tf, xo, do, count, shift, ob, sw, OW, dstep, O, at):  # pragma: no cover
    """_filter_rows_2v for 4 rows x 3 vectors (12 sums): the 4 x 64 tile's passes, whose 4 rows x 2
    vectors (8 sums) loaded 2 vectors and 4 broadcasts per 8 multiply-adds."""
    s00, s01, s02, s10 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    s11, s12, s20, s21 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    s22, s30, s31, s32 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    h, ds = np.uint64(lanes(tf)), np.uint64(dstep)
    h2 = h + h
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            g0 = vload(df, d)
            g1 = vload(df, d + h)
            g2 = vload(df, d + h2)
            v = vsplat(xf, p)
            s00 = vfma(v, g0, s00)
            s01 = vfma(v, g1, s01)
            s02 = vfma(v, g2, s02)
            v = vsplat(xf, p + np.uint64(1))
            s10 = vfma(v, g0, s10)
            s11 = vfma(v, g1, s11)
            s12 = vfma(v, g2, s12)
            v = vsplat(xf, p + np.uint64(2))
            s20 = vfma(v, g0, s20)
            s21 = vfma(v, g1, s21)
            s22 = vfma(v, g2, s22)
            v = vsplat(xf, p + np.uint64(3))
            s30 = vfma(v, g0, s30)
            s31 = vfma(v, g1, s31)
            s32 = vfma(v, g2, s32)
            p += sw
            d += ds
    t, step = np.uint64(at), np.uint64(O)
    add3(tf, t, s00, s01, s02)
    add3(tf, t + step, s10, s11, s12)
    add3(tf, t + np.uint64(2) * step, s20, s21, s22)
    add3(tf, t + np.uint64(3) * step, s30, s31, s32)


@njit(cache=True, fastmath={"contract"})
def _filter_one(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at, block):  # pragma: no cover
    """One input channel alone (those past the tiles): tf[at + o] for o < block."""
    acc = _registers(64, df.dtype)
    for o in range(block):
        acc[o] = 0
    ub = np.uint64(block)
    step = np.uint64(O)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            xv = xf[p]
            for o in range(ub):
                acc[o] += xv * df[d + o]
            p += sw
            d += step
    t = np.uint64(at)
    for o in range(ub):
        tf[t + o] += acc[o]
