"""1x1 convolutions on channels-first arrays as register-tiled GEMMs: no transposition, no copy.

A 1x1 stride-1 unpadded conv in NCHW is, per image, y[n] (O, S) = w (O, C) @ x[n] (C, S); its
input gradient is the same product with w.T; its filter gradient dw (O, C) sums dy[n] (O, S) @
x[n].T (S, C) over the images. The positions S are contiguous in x, y and dy, so the vectors run
along them: the forward holds 6 output channels x 64 positions of sums in registers while it walks
the input channels (one 64-float load of x per 6 broadcast weights: the 6 x 64 tile of the tiled
engine with x and w exchanged). The filter gradient's two operands both run along the positions,
so each chunk of dy is moved into a panel with the channels along the vectors (8 x 8 register
transposes), and the tiles of 6 input x 64 output channels run as the channels-last GEMM's, their
sums in registers over the whole chunk: 0.56-0.6x the time of 4 x 6 tiles of 16-lane dot products
reduced across their lanes per chunk (one thread, 8 x 256 -> 64 channels of 56 x 56, loaded).
A large y (or dx) is stored past the caches, as the channels-last tiles store theirs
(tile_stream.py): one thread, CPU time, 8 x 256 <-> 64 channels of 56 x 56, loaded, streamed /
cached stores: the forward (6.4 MB of y) 0.85, the input gradient (25.7 MB of dx) 0.55.
With 32-byte vectors (AVX2: 16 registers) the 6 x 64 tiles' 48 vectors of sums spilled at every
multiply-add; there they run as passes of 6 x 2 vectors (``_tile_6x16``, ``_panel_tile_6x16``),
the same sums in the same order, and the forward's work item goes pass by pass through every group
of output channels (``_span_passes``): its panel of x (C x SPAN) filled the second-level cache of
the AVX2 machine (512 KiB) and was read once per group from the third; a row's last positions
short of a pass run as one on a zero-padded copy (``_narrow_pass``), not one output at a time.
"""

from __future__ import annotations

import numpy as np

from ._numba import NUMBA, _claim, _registers, _wide_vectors, njit, prange
from ._shuffle import transpose8
from ._simd import (
    VECTOR_BYTES,
    add6x2,
    lanes,
    outer6x2,
    prefetch,
    put2,
    sfence,
    vload,
    vstore,
    vzero,
)
from .tile_stream import STREAM_BYTES, stream_sums

_U64 = np.uint64(64)
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
# ... and at most this many bytes of them, never under two (tiled._pointwise_first): each part is
# zeroed, added into at each of its chunks and summed. One thread, loaded, 8 x 2048 -> 512
# channels of 7 x 7 (4 MiB a part): 8 parts 16.2 ms in the kernel + 2.5 summed, 2 parts 14.8 + 1.0.
PARTS_BYTES = 8 << 20
# Positions per work item of the filter gradient: dy's 256 x 64 channels moved into a panel of
# 64 KiB that every tile of the chunk reads (one thread, 8 x 256 -> 64 channels of 56 x 56,
# loaded: 64 positions 6.8 ms, 128: 4.2, 256: 3.8-3.9, 512: 4.0).
CHUNK = 256
# A filter larger than this runs in blocks of KC input x OB output channels (32-byte vectors,
# ``_blocked_passes``): four times this AVX2 machine's second-level cache (512 KiB). One thread,
# loaded, 8 images, against pass by pass through all of w: 2048 -> 512 channels at 7 x 7
# 17.3-22.3 -> 15.4-17.5 ms, at 8 x 8 19.1-22.8 -> 17.2-20.0, 2048 -> 1024 at 7 x 7 44.3 -> 36.5
# (PyTorch 14.4-16.3, 15.7-18.2, 33.6); 512 -> 2048 at 7 x 7 16.9-17.7 -> 17.1-17.2. Smaller
# filters gained nothing or lost: 512 -> 512 at 14 x 14 (1 MiB) 16.0 -> 17.4, 512 -> 256 at
# 28 x 28 21.6 -> 27.2.
W_BYTES = 1 << 21
KC = 256
OB = 48


def streams(y: np.ndarray) -> bool:
    """Whether ``pointwise_first`` may store y ``(N, O, S)`` past the caches: at least
    tile_stream.STREAM_BYTES (y leaves the caches as it is written anyway), its start and every
    row on a vector boundary, so that each whole tile's rows are whole aligned vectors."""
    return (NUMBA and y.nbytes >= STREAM_BYTES and y.ctypes.data % VECTOR_BYTES == 0
            and y.shape[-1] * y.itemsize % VECTOR_BYTES == 0)


@njit(parallel=True, cache=True)
def pointwise_first(w, x, y, stream):  # pragma: no cover - compiled
    """y[n, o, s] = sum_c w[o, c] * x[n, c, s]: w (O, C), x (N, C, S), y (N, O, S), all
    C-contiguous; with ``stream`` (``streams``: y large, every row on a 64-byte boundary) the
    whole tiles store y past the caches. Work items are SPAN positions of one image (the last
    one shorter), claimed by the threads (``_claim``: one that shares its core, with another
    process or with a pool still spinning after its own call, leaves its items to the others);
    each runs its tiles of 6 output channels x 64 positions along the span, one group of 6 rows
    after the other, so that y is written in runs of SPAN positions per row while the span's
    panel of x stays in the second-level cache. Every item is computed the same whichever
    thread takes it. With 32-byte vectors the span runs pass by pass instead (``_span_passes``)."""
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
            if VECTOR_BYTES == 32:
                _span_passes(wf, xf, yf, O, C, S, n, start, stop, stream)
                t = _claim(counter)
                continue
            for o0 in range(0, O, 6):
                for s0 in range(start, stop, 64):
                    xo, yo = n * C * S + s0, n * O * S + s0
                    m = min(64, S - s0)
                    if m == 64:
                        _tile_6x64(wf, xf, yf, o0, min(6, O - o0), C, S, xo, yo, stream)
                    else:
                        _tile_narrow(wf, xf, yf, o0, min(6, O - o0), C, S, xo, yo, m)
            t = _claim(counter)
        if stream:
            sfence()


@njit(cache=True)
def _span_passes(wf, xf, yf, O, C, S, n, start, stop, stream):  # pragma: no cover - compiled
    """pointwise_first's work item (image n, positions [start, stop)) with 32-byte vectors: one
    pass of 2L positions (L = lanes(yf), one cache line of each of x's C rows) after the other,
    each through every group of 6 output channels, so that the pass's rows of x are read from
    memory once and then from the first caches, where the AVX-512 order (each group of 6 along
    the whole span) read the span's panel of x (C x SPAN: 512 KiB for 256 channels, this AVX2
    machine's whole second-level cache) once per group, from the third. Each group's first pass
    asks for x's lines two passes ahead; where the pass's C lines fit the first cache beside w
    (C * 64 bytes <= 8 KiB: rows S apart fall into few of its sets) every group asks, keeping
    them there. One thread, CPU time, 8 images of 56 x 56, loaded, against the order of the
    6 x 64 tiles, in the same process: 256 -> 64 channels 14.8-18.5 -> 11.8-13.9 ms, 64 -> 256
    (the input gradient) 13.3-15.8 -> 12.4-12.9 (PyTorch 12.2-17.9 and 11.7-12.9). The same sums
    in the same order as _tile_6x64's."""
    pair = 2 * lanes(yf)
    ahead = np.uint64(2 * pair)
    if O * C * yf.itemsize > W_BYTES:
        _blocked_passes(wf, xf, yf, O, C, S, n, start, stop, stream)
        return
    every = C * pair * yf.itemsize <= 8192
    for s0 in range(start, stop, pair):
        xo, yo = n * C * S + s0, n * O * S + s0
        m = min(pair, S - s0)
        if m < pair:
            _narrow_pass(wf, xf, yf, O, C, S, xo, yo, m)
            continue
        for o0 in range(0, O, 6):
            _tile_6x16(wf, xf, yf, o0, min(6, O - o0), C, S, xo, yo, stream, 0,
                       ahead if o0 == 0 or every else np.uint64(0))


@njit(cache=True)
def _blocked_passes(wf, xf, yf, O, C, S, n, start, stop, stream):  # pragma: no cover - compiled
    """_span_passes for a w past W_BYTES: input channels in blocks of KC (the sums stored in y and
    taken up again by the next block: the same multiply-adds in the same order), each block's
    output channels in blocks of OB, each of those pass by pass along the span, so that the
    block of w (OB x KC) stays in the first caches and the span's rows of the input block in the
    second, where pass by pass through all of w read it (4 MiB for 2048 -> 512 channels) from
    the third at every pass (figures at W_BYTES). Blocks of 128 or 512 input channels, of 24 or
    96 outputs, ran 2-6 % slower (1024 -> 256 channels of 16 x 16)."""
    pair = 2 * lanes(yf)
    ahead = np.uint64(2 * pair)
    whole = start + (stop - start) // pair * pair
    for c0 in range(0, C, KC):
        c1 = min(C, c0 + KC)
        for b0 in range(0, O, OB):
            b1 = min(O, b0 + OB)
            for s0 in range(start, whole, pair):
                xo, yo = n * C * S + s0, n * O * S + s0
                for o0 in range(b0, b1, 6):
                    _tile_6x16(wf, xf, yf, o0, min(6, b1 - o0), C, S, xo, yo, stream and c1 == C, 0,
                               ahead if o0 == b0 else np.uint64(0), c0, c1)
    if whole < stop:
        _narrow_pass(wf, xf, yf, O, C, S, n * C * S + whole, n * O * S + whole, stop - whole)


@njit(cache=True)
def _narrow_pass(wf, xf, yf, O, C, S, xo, yo, m):  # pragma: no cover - compiled
    """_span_passes' last m < 2L positions of a row: x's m columns copied into a pass of rows
    2L wide (zeros past m), run through _tile_6x16 into rows of 2L, whose first m go to y: one
    output at a time (_tile_narrow) ran at a quarter of the tiles' rate, 4 positions of 196
    (14 x 14) doubling the time of 1024 -> 256 channels (one thread, 8 images: 33.8 against
    17.2 ms for 192 positions). The same multiply-adds in the same order."""
    pair = 2 * lanes(yf)
    xt = np.zeros(C * pair, yf.dtype)
    for c in range(C):
        for v in range(m):
            xt[c * pair + v] = xf[xo + c * S + v]
    yt = np.empty(O * pair, yf.dtype)
    for o0 in range(0, O, 6):
        _tile_6x16(wf, xt, yt, o0, min(6, O - o0), C, pair, 0, 0, False, 0, np.uint64(0))
    for o in range(O):
        for v in range(m):
            yf[yo + o * S + v] = yt[o * pair + v]


@njit(cache=True, fastmath={"contract"})
def _tile_6x64(wf, xf, yf, o0, mo, C, S, xo, yo, stream):  # pragma: no cover - compiled
    """yf[yo + (o0 + t) * S + [0, 64)] for t < mo <= 6: the sums over c of w[o0 + t, c] times
    x's row c (64 positions from xo), with ``stream`` past the caches. Rows of w past O repeat
    the last one and are not stored."""
    if VECTOR_BYTES == 32:  # AVX2: 6 x 64 float32 sums would take 48 of its 16 vector registers
        step = 2 * lanes(yf)
        for b in range(0, 64, step):
            _tile_6x16(wf, xf, yf, o0, mo, C, S, xo, yo, stream, b, np.uint64(0))
        return
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
    if stream:
        _stream_rows(yf, q, us, mo, a0, a1, a2, a3, a4, a5)
        return
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


@njit(cache=True)
def _stream_rows(yf, q, us, mo, a0, a1, a2, a3, a4, a5):  # pragma: no cover - compiled
    """The tile's mo rows of 64 sums to yf[q + t * us], t < mo, past the caches."""
    stream_sums(yf, q, a0, 64)
    if mo > 1:
        stream_sums(yf, q + us, a1, 64)
    if mo > 2:
        stream_sums(yf, q + np.uint64(2) * us, a2, 64)
    if mo > 3:
        stream_sums(yf, q + np.uint64(3) * us, a3, 64)
    if mo > 4:
        stream_sums(yf, q + np.uint64(4) * us, a4, 64)
    if mo > 5:
        stream_sums(yf, q + np.uint64(5) * us, a5, 64)


@njit(cache=True, fastmath={"contract"})
def _tile_narrow(wf, xf, yf, o0, mo, C, S, xo, yo, m):  # pragma: no cover - compiled
    """_tile_6x64 for the last m < 64 positions of a row, one output channel at a time."""
    lo = 0
    if VECTOR_BYTES == 32:  # AVX2: the whole vector pairs as _tile_6x64's passes (same sums, same order)
        step = 2 * lanes(yf)
        lo = m // step * step
        for b in range(0, lo, step):
            _tile_6x16(wf, xf, yf, o0, mo, C, S, xo, yo, False, b, np.uint64(0))
    acc = _registers(64, yf.dtype)
    for t in range(mo):
        for v in range(lo, m):
            acc[v] = 0
        r = (o0 + t) * C
        for c in range(C):
            g = wf[r + c]
            p = xo + c * S
            for v in range(lo, m):
                acc[v] += g * xf[p + v]
        q = yo + (o0 + t) * S
        for v in range(lo, m):
            yf[q + v] = acc[v]


@njit(cache=True, fastmath={"contract"})
def _tile_6x16(wf, xf, yf, o0, mo, C, S, xo, yo, stream, b, ahead, c0=0, c1=-1):  # pragma: no cover
    """Positions [b, b + 2L) of _tile_6x64's tile (its arguments), L = lanes(yf), as 6 x 2
    vectors of sums: with 32-byte vectors (AVX2's 16 registers) the whole tile's 48 would spill
    at every multiply-add, where 12 leave room for x's two vectors and the broadcast weight
    (float32: 4 passes of 16 positions). Each sum is the same multiply-adds over c in the same
    order as the 6 x 64 tile's, so the same bits. ``ahead`` > 0: each row of x's line ``ahead``
    positions on is asked for into the first cache (a prefetch never faults past the array).
    Input channels [c0, c1) only (c1 < 0: to C), the sums from y's values where c0 > 0 (the
    earlier channels' sums, stored by this tile: the same multiply-adds in the same order)."""
    last = o0 + mo - 1
    h = np.uint64(lanes(yf))
    us = np.uint64(S)
    q = np.uint64(yo + o0 * S + b)
    if c0 == 0:
        s00, s01, s10, s11 = vzero(yf), vzero(yf), vzero(yf), vzero(yf)
        s20, s21, s30, s31 = vzero(yf), vzero(yf), vzero(yf), vzero(yf)
        s40, s41, s50, s51 = vzero(yf), vzero(yf), vzero(yf), vzero(yf)
    else:  # rows past mo repeat the last one (not stored)
        s00, s01 = vload(yf, q), vload(yf, q + h)
        t = q + np.uint64(min(1, mo - 1)) * us
        s10, s11 = vload(yf, t), vload(yf, t + h)
        t = q + np.uint64(min(2, mo - 1)) * us
        s20, s21 = vload(yf, t), vload(yf, t + h)
        t = q + np.uint64(min(3, mo - 1)) * us
        s30, s31 = vload(yf, t), vload(yf, t + h)
        t = q + np.uint64(min(4, mo - 1)) * us
        s40, s41 = vload(yf, t), vload(yf, t + h)
        t = q + np.uint64(min(5, mo - 1)) * us
        s50, s51 = vload(yf, t), vload(yf, t + h)
    r0 = np.uint64(o0 * C)
    r1 = np.uint64(min(o0 + 1, last) * C)
    r2 = np.uint64(min(o0 + 2, last) * C)
    r3 = np.uint64(min(o0 + 3, last) * C)
    r4 = np.uint64(min(o0 + 4, last) * C)
    r5 = np.uint64(min(o0 + 5, last) * C)
    p = np.uint64(xo + b + c0 * S)
    for c in range(np.uint64(c0), np.uint64(C if c1 < 0 else c1)):
        if ahead:
            prefetch(xf, p + ahead, 0, 3)
        e0 = vload(xf, p)
        e1 = vload(xf, p + h)
        s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = outer6x2(
            wf, r0 + c, r1 + c, r2 + c, r3 + c, r4 + c, r5 + c, e0, e1,
            s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51)
        p += us
    put2(yf, q, s00, s01, stream)
    if mo > 1:
        put2(yf, q + us, s10, s11, stream)
    if mo > 2:
        put2(yf, q + np.uint64(2) * us, s20, s21, stream)
    if mo > 3:
        put2(yf, q + np.uint64(3) * us, s30, s31, stream)
    if mo > 4:
        put2(yf, q + np.uint64(4) * us, s40, s41, stream)
    if mo > 5:
        put2(yf, q + np.uint64(5) * us, s50, s51, stream)


@njit(parallel=True, cache=True)
def pointwise_filter_grad_first(x, dy, parts):  # pragma: no cover - compiled
    """parts[p] (C, O64) = part p of dw.T: parts[p][c, o] = sum over n, s of x[n, c, s] * dy[n, o,
    s] over its share of the chunks, x (N, C, S), dy (N, O, S), O64 = O rounded up to 64 (zeros
    past O). Each chunk of CHUNK positions of an image moves dy's block of 64 channels into a
    panel (CHUNK, 64) in the first cache by 8 x 8 register transposes; the tiles of 6 input x 64
    output channels then run as the channels-last GEMM's: 6 values of x broadcast (one from each
    of 6 rows, read along s) and 4 vectors of the panel per 24 multiply-adds, the sums kept in
    registers over the chunk and added into the part once. The threads claim the parts
    (``_claim``), so the sums do not depend on which thread, or how many, took them."""
    N, C, S = x.shape
    O = dy.shape[1]
    P, O64 = parts.shape[0], parts.shape[2]
    xf, df = x.ravel(), dy.ravel()
    chunks = -(-S // CHUNK)
    items = N * chunks
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(P):
        part = _claim(counter)
        panel = np.empty(CHUNK * 64, dy.dtype)
        while part < P:
            tp = parts[part]
            tp[...] = 0
            tf = tp.ravel()
            for t in range(part * items // P, (part + 1) * items // P):
                n, s0 = t // chunks, t % chunks * CHUNK
                m = min(CHUNK, S - s0)
                for ob in range(0, O64, 64):
                    _dy_panel(df, O, S, n * O * S + s0, ob, m, panel)
                    for c0 in range(0, C, 6):
                        _panel_tile_6x64(xf, panel, tf, n * C * S + s0, c0, min(6, C - c0), S, m, ob, O64,
                                         min(64, O - ob))
            part = _claim(counter)


@njit(cache=True)
def _dy_panel(df, O, S, at, ob, m, panel):  # pragma: no cover - compiled
    """panel[k * 64 + o] = df[at + (ob + o) * S + k] for k < m, o < 64; zero for ob + o >= O."""
    mo = min(64, O - ob)
    m8, k8 = mo // 8 * 8, m // 8 * 8
    us, u64 = np.uint64(S), np.uint64(64)
    s0 = np.uint64(at + ob * S)
    for o in range(0, m8, 8):
        s = s0 + np.uint64(o) * us
        for k in range(0, k8, 8):
            transpose8(df, s + np.uint64(k), us, panel, np.uint64(k) * u64 + np.uint64(o), u64)
        for k in range(k8, m):
            for oo in range(8):
                panel[np.uint64(k) * u64 + np.uint64(o + oo)] = df[s + np.uint64(oo) * us + np.uint64(k)]
    for k in range(m):
        q = np.uint64(k) * u64
        for o in range(m8, mo):
            panel[q + np.uint64(o)] = df[s0 + np.uint64(o) * us + np.uint64(k)]
        for o in range(mo, 64):
            panel[q + np.uint64(o)] = 0


@njit(cache=True, fastmath={"contract"})
def _panel_tile_6x64(xf, panel, tf, xo, c0, mc, S, m, ob, O64, mo):  # pragma: no cover - compiled
    """tf[(c0 + j) * O64 + ob + o] += sum over k < m of x's row c0 + j (from xo) at k times
    panel[k * 64 + o], j < mc <= 6, o < 64. Rows past C repeat the last one and are not stored.
    With 32-byte vectors only the passes over the block's mo output channels run (the panel's
    columns past O are zeros, their sums left at the part's zeros): 256 -> 32 channels ran
    half the tile's multiply-adds on zeros."""
    if VECTOR_BYTES == 32:  # AVX2: 6 x 64 float32 sums would take 48 of its 16 vector registers
        step = 2 * lanes(tf)
        for b in range(0, mo, step):
            _panel_tile_6x16(xf, panel, tf, xo, c0, mc, S, m, ob, O64, b)
        return
    _wide_vectors()
    a0 = _registers(64, tf.dtype)
    a1 = _registers(64, tf.dtype)
    a2 = _registers(64, tf.dtype)
    a3 = _registers(64, tf.dtype)
    a4 = _registers(64, tf.dtype)
    a5 = _registers(64, tf.dtype)
    for o in range(64):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
    last = c0 + mc - 1
    x0 = np.uint64(xo + c0 * S)
    x1 = np.uint64(xo + min(c0 + 1, last) * S)
    x2 = np.uint64(xo + min(c0 + 2, last) * S)
    x3 = np.uint64(xo + min(c0 + 3, last) * S)
    x4 = np.uint64(xo + min(c0 + 4, last) * S)
    x5 = np.uint64(xo + min(c0 + 5, last) * S)
    d = np.uint64(0)
    for k in range(np.uint64(m)):
        e0 = xf[x0 + k]
        e1 = xf[x1 + k]
        e2 = xf[x2 + k]
        e3 = xf[x3 + k]
        e4 = xf[x4 + k]
        e5 = xf[x5 + k]
        for o in range(_U64):
            g = panel[d + o]
            a0[o] += e0 * g
            a1[o] += e1 * g
            a2[o] += e2 * g
            a3[o] += e3 * g
            a4[o] += e4 * g
            a5[o] += e5 * g
        d += _U64
    q = np.uint64(c0 * O64 + ob)
    step = np.uint64(O64)
    for o in range(_U64):
        tf[q + o] += a0[o]
    if mc > 1:
        for o in range(_U64):
            tf[q + step + o] += a1[o]
    if mc > 2:
        for o in range(_U64):
            tf[q + np.uint64(2) * step + o] += a2[o]
    if mc > 3:
        for o in range(_U64):
            tf[q + np.uint64(3) * step + o] += a3[o]
    if mc > 4:
        for o in range(_U64):
            tf[q + np.uint64(4) * step + o] += a4[o]
    if mc > 5:
        for o in range(_U64):
            tf[q + np.uint64(5) * step + o] += a5[o]


@njit(cache=True, fastmath={"contract"})
def _panel_tile_6x16(xf, panel, tf, xo, c0, mc, S, m, ob, O64, b):  # pragma: no cover - compiled
    """Output channels [b, b + 2L) of _panel_tile_6x64's tile (its arguments), L = lanes(tf), as
    6 x 2 vectors of sums (AVX2: see _tile_6x16); the same multiply-adds over k in the same order,
    added into tf the same way, so the same bits."""
    s00, s01, s10, s11 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    s20, s21, s30, s31 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    s40, s41, s50, s51 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    last = c0 + mc - 1
    x0 = np.uint64(xo + c0 * S)
    x1 = np.uint64(xo + min(c0 + 1, last) * S)
    x2 = np.uint64(xo + min(c0 + 2, last) * S)
    x3 = np.uint64(xo + min(c0 + 3, last) * S)
    x4 = np.uint64(xo + min(c0 + 4, last) * S)
    x5 = np.uint64(xo + min(c0 + 5, last) * S)
    h = np.uint64(lanes(tf))
    d = np.uint64(b)
    for k in range(np.uint64(m)):
        g0 = vload(panel, d)
        g1 = vload(panel, d + h)
        s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = outer6x2(
            xf, x0 + k, x1 + k, x2 + k, x3 + k, x4 + k, x5 + k, g0, g1,
            s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51)
        d += _U64
    q = np.uint64(c0 * O64 + ob + b)
    step = np.uint64(O64)
    add6x2(tf, q, step, mc, s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51)


# The channels-last filter gradient (``pointwise_filter_grad_last``) sums chunks of this many
# positions: its dy rows (64 KiB for 256 positions of 64 channels) stay in the first cache with
# the chunk's slivers of x. One thread, CPU time, loaded, 8 x 256 -> 64 channels of 56 x 56, in
# one process: 64 positions 12.6 ms, 128: 14.1 (the channels-first kernel 12.5, NumPy's SGEMM
# of x.T @ dy 14.3).
LAST_CHUNK = 64
# Bytes of one cache line: the next chunk's rows are asked for a line at a time.
LINE = 64
# Where the kernel runs (tiled._pointwise_last_fits): at most this many bytes of dw (each chunk
# adds into all of its part: 64 KiB stays in the second cache beside the chunk) and of each
# position's dy (its rows of a chunk in the first cache), at least this many positions (its
# parts zeroed and summed, its threads started). One thread, CPU time, loaded, 8 images, in one
# process, against im2col's SGEMM: 256 -> 64 channels of 56 x 56 0.94x, 256 -> 32 0.86x,
# 128 -> 64 1.03x, 256 -> 64 of 28 x 28 (6,272 positions) 1.03x; past the bounds 512 -> 64
# of 28 x 28 1.13x, 64 -> 256 of 56 x 56 1.05x, 1024 -> 256 of 14 x 14 1.18x, 2048 -> 512
# of 7 x 7 1.32x, 100 -> 37 of 20 x 20 1.2x.
LAST_PART_BYTES = 1 << 16
LAST_ROW_BYTES = 256
LAST_POSITIONS = 1 << 14


@njit(parallel=True, cache=True)
def pointwise_filter_grad_last(x, dy, parts):  # pragma: no cover - compiled
    """parts[p] (C, O2) = part p of dw (channels-last, (C, O)): parts[p][c, o] = the sum over the
    part's positions k of x[k, c] * dy[k, o]; x (P, C), dy (P, O), both C-contiguous (the
    positions of every image in a row, channels last), O2 = O rounded up to 2L (L = lanes(x);
    zeros past O); float32 (each position's 6 values of x in one vector). The positions run in
    chunks of LAST_CHUNK, each part a fixed share of them, claimed by the threads (``_claim``),
    so the sums do not depend on which thread, or how many, took them. In a chunk each group of
    6 input channels is copied into a sliver (x's values of a position 6 floats apart in rows
    1 KiB apart fill few sets of the first cache; the sliver's rows are contiguous), then the
    tiles of 6 input x 2L output channels (``_last_tile``: 12 vectors of sums, as the
    channels-first tiles') run along the chunk, reading dy's rows as they are; the last O % 2L
    output channels from a zero-padded copy of their columns. The first two tiles of each group
    ask for the next chunk's lines of x and dy into the second cache, a share each."""
    P, C = x.shape
    O = dy.shape[1]
    npart, O2 = parts.shape[0], parts.shape[2]
    xf, df = x.ravel(), dy.ravel()
    h = lanes(xf)
    pair = 2 * h
    K = LAST_CHUNK
    chunks = -(-P // K)
    groups = -(-C // 6)
    whole = O // pair * pair
    line = LINE // x.itemsize
    # each group's share of the next chunk's lines (x: K rows of C values, dy: K rows of O)
    x_lines = -(-(K * C) // (line * groups))
    d_lines = -(-(K * O) // (line * groups))
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(npart):
        part = _claim(counter)
        sliver = np.empty(K * h, x.dtype)
        tail = np.zeros(K * pair, x.dtype)  # dy's columns [whole, O), zeros past O
        while part < npart:
            tp = parts[part]
            tp[...] = 0
            tf = tp.ravel()
            for t in range(part * chunks // npart, (part + 1) * chunks // npart):
                k0 = t * K
                m = min(K, P - k0)
                for k in range(m):
                    for o in range(whole, O):
                        tail[k * pair + o - whole] = df[(k0 + k) * O + o]
                for g in range(groups):
                    c0 = 6 * g
                    mc = min(6, C - c0)
                    _sliver(xf, C, k0, m, c0, sliver)
                    for ob in range(0, whole, pair):
                        if ob == 0:  # a share of the next chunk's x
                            _last_tile(sliver, df, O, k0 * O, tf, c0, mc, O2, m, ob,
                                       xf, (k0 + K) * C + g * x_lines * line, x_lines, line)
                        elif ob == pair:  # ... and of its dy
                            _last_tile(sliver, df, O, k0 * O, tf, c0, mc, O2, m, ob,
                                       df, (k0 + K) * O + g * d_lines * line, d_lines, line)
                        else:
                            _last_tile(sliver, df, O, k0 * O, tf, c0, mc, O2, m, ob, df, 0, 0, line)
                    if whole < O:
                        _last_tile(sliver, tail, pair, -whole, tf, c0, mc, O2, m, whole, df, 0, 0, line)
            part = _claim(counter)


@njit(cache=True)
def _sliver(xf, C, k0, m, c0, sliver):  # pragma: no cover - compiled
    """sliver[k * L + j] = x[k0 + k, min(c0 + j, C - 1)] for k < m, j < 6 (L = lanes(xf) >= 6;
    lanes past 6 unspecified): one vector per position where it fits in x's row."""
    h = np.uint64(lanes(xf))
    uc = np.uint64(C)
    p = np.uint64(k0) * uc + np.uint64(c0)
    e = np.uint64(0)
    if c0 + lanes(xf) <= C:
        for _ in range(m):
            vstore(sliver, e, vload(xf, p))
            p += uc
            e += h
        return
    last = C - 1 - c0
    for _ in range(m):
        for j in range(6):
            sliver[e + np.uint64(j)] = xf[p + np.uint64(min(j, last))]
        p += uc
        e += h


@njit(inline="always", fastmath={"contract"})
def _last_tile(sliver, df, O, base, tf, c0, mc, O2, m, ob, ahead, at, lines, line):  # pragma: no cover
    """tf[(c0 + j) * O2 + ob + [0, 2L)] += the sum over k < m of sliver[k * L + j] times
    df[base + k * O + ob + [0, 2L)] (dy's rows O apart), j < mc <= 6, as 6 x 2 vectors of sums
    (L = lanes(tf)); rows of the sliver past mc repeat the last channel and are not stored. The
    first ``lines`` of the positions each ask for one line of ``ahead`` (from ``at``, ``line``
    values apart) into the second cache. Inlined into the chunk's loop."""
    s00, s01, s10, s11 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    s20, s21, s30, s31 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    s40, s41, s50, s51 = vzero(tf), vzero(tf), vzero(tf), vzero(tf)
    h = np.uint64(lanes(tf))
    uo = np.uint64(O)
    d = np.uint64(base + ob)
    e = np.uint64(0)
    f = np.uint64(at)
    step = np.uint64(line)
    ask = np.uint64(lines)
    u1, u2, u3, u4, u5 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4), np.uint64(5)
    for k in range(np.uint64(m)):
        if k < ask:
            prefetch(ahead, f, 0, 2)
            f += step
        g0 = vload(df, d)
        g1 = vload(df, d + h)
        s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = outer6x2(
            sliver, e, e + u1, e + u2, e + u3, e + u4, e + u5, g0, g1,
            s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51)
        d += uo
        e += h
    q = np.uint64(c0 * O2 + ob)
    step = np.uint64(O2)
    add6x2(tf, q, step, mc, s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51)
