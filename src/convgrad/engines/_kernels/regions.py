"""Several regions of one conv's output in one launch of the register tiles: a strided conv's input
gradient, one region per sub-pixel phase of dx; a strided forward, its outputs whose windows lie
inside x read from x as it is and those that reach into the padding from padded copies of their
windows."""

from __future__ import annotations

import numpy as np

from ._numba import _add, _claim, chunk_size, njit, prange
from ._shuffle import transpose8
from ._simd import VECTOR_BYTES, lanes
from .pad import transposed_run
from .tiled import _STAGE, _plane_tiles, _tile_6, _x6, tile_width

# Columns of the region table (one row per region): which source it reads (0: ``a``, 1: ``b``),
# where its (N, D', H', W', C) array starts in that source and its sizes, where its packed filter
# starts in wt and its taps, the corner of the source it reads from, its first output, the step
# between its outputs in y, its output counts, its stride and its tap dilation (3 each); the
# last 3 are not read by the kernel (a window's origin, kept for the caller's copy table).
SRC, BASE, XD, XH, XW, WO, KD, KH, KW = range(9)
XA, YA, YB, OUT, S, DIL, FROM = 9, 12, 15, 18, 21, 24, 27
COLUMNS = 30
# Columns of the copy table (one row per window of ``a`` copied into ``b`` in the launch): where
# it starts in b, its sizes (3), its origin in a (3; negative or past a's end in the padding:
# zeros there).
COPY_BASE, COPY_SIZE, COPY_FROM = 0, 1, 4
COPY_COLUMNS = 7


@njit(parallel=True, cache=True)
def regions_forward(a, extent, b, C, wt, table, block, y, filter_major, copies, a_first,
                    first):  # pragma: no cover - compiled
    """Each region r (a row of ``table``) of y (N, D, H, W, O), or with ``first`` y (N, O, D, H, W):
    the conv of its source (the flat ``a`` (N, *extent, C) or ``b``, from table[r, BASE], laid out
    (N, XD, XH, XW, C) with those sizes from the table) read from the corner table[r, XA:XA+3],
    with the filter packed as wt[table[r, WO]:] (ceil(O / B), KD, KH, KW, C, B) (B = ``block``:
    16, 32 or 64), strides table[r, S:S+3] and dilations table[r, DIL:DIL+3]; its
    table[r, OUT:OUT+3] outputs go to y at table[r, YA:YA+3] + i * table[r, YB:YB+3]. ``b`` holds
    the windows of ``a`` that ``copies`` lists (rows of COPY_COLUMNS), copied there in this launch
    (zeros outside ``a``); with ``a_first`` ``a`` is channels-first (N, C, *extent), transposed
    as it is copied (then no region reads ``a`` itself).

    The work items are the windows' rows, then the tiles of tiled_forward's planes
    (``_plane_tiles``, 8 x 16 or 32, 6 x 64), region after region, claimed in chunks by the
    threads that run (``_claim``): one fork and join for the copies and all regions, and a thread
    held off its core leaves its chunks to the other. A tile of a region that reads ``b`` waits
    until every row is copied (the rows come first, so only for the other thread's last few).
    The regions write disjoint outputs of y. One region reading the one window copied whole (a
    strided forward's padded x) takes its chunks of rows and of tiles in turns (``_fused_order``),
    a chunk of tiles copying itself any chunk of the rows it reads that the other thread has not
    finished. Regions of equal item counts (sub-pixel phases)
    take turns, item by item, so that the phases that write the same lines of y run close
    together. With ``first`` and 6 x 64 tiles, where regions 2k and 2k + 1 are the two phases of
    a stride of 2 along the rows (``_pairs``; _regions.paired orders them so), each pair runs as
    one (``_pair_first``).
    """
    if first:  # y's strides, in elements: a sample, one position along a row, a channel
        N, O, YD, YH, YW = y.shape
        yn, yw, yc = O * YD * YH * YW, 1, YD * YH * YW
    else:
        N, YD, YH, YW, O = y.shape
        yn, yw, yc = YD * YH * YW * O, O, 1
    width = tile_width(block)
    blocks = -(-O // block)
    per_item = 1 if filter_major else blocks
    K = copies.shape[0]
    rows = np.zeros(K + 1, np.int64)  # each window's first row among the copy items
    for r in range(K):
        rows[r + 1] = rows[r] + N * copies[r, COPY_SIZE] * copies[r, COPY_SIZE + 1]
    P = rows[K]
    # The regions that own work items: all, or paired, the first of each pair (it runs both). The
    # tiles of 6 outputs pair: the 6 x 64, and with AVX2 every block (its passes of 6 x 2 vectors;
    # a block of 32, 4x4 stride 2 64 -> 32 channels, one thread, loaded: 0.9x the time unpaired).
    paired = first and width == 6 and _pairs(table)
    lead = 2 if paired else 1
    R = table.shape[0] // lead
    starts = np.zeros(R + 1, np.int64)  # each (leading) region's first work item
    for g in range(R):
        per, chunks = _items(table[g * lead, OUT + 1], table[g * lead, OUT + 2], width)
        starts[g + 1] = starts[g] + N * table[g * lead, OUT] * chunks * (blocks // per_item)
    tasks = starts[R]
    # Regions of equal item counts (a strided input gradient's sub-pixel phases) take turns:
    # item q of every phase, then item q + 1, so that the phases writing the same lines of y run
    # close together (channels-first dx, where each line holds outputs of every phase along
    # the rows: 3x3 stride 2, 128 -> 128 channels, one thread, loaded: 0.92x the time region
    # after region).
    even = R > 1
    for g in range(R):
        even = even and starts[g + 1] - starts[g] == starts[1]
    csize = chunk_size(P)
    ccount = -(-P // csize)
    size = chunk_size(tasks)
    count = ccount + -(-tasks // size)
    # One region reading one window copied whole (a strided forward's x, padded, transposed from
    # channels-first): the copies and the tiles take turns, each chunk of rows claimed just
    # before the first chunk of tiles that reads it (still in the caches when the tiles read
    # it), the tiles needing those rows only (3x3 stride 2, 128 -> 128 channels, channels-first,
    # one thread, CPU time, loaded: 0.94x the time with all copies first).
    fused = (K == 1 and R == 1 and not paired and P > 0 and table[0, SRC] == 1 and table[0, BASE] == 0
             and copies[0, COPY_BASE] == 0 and copies[0, COPY_SIZE] == table[0, XD]
             and copies[0, COPY_SIZE + 1] == table[0, XH] and copies[0, COPY_SIZE + 2] == table[0, XW])
    order, need = _fused_order(N, copies, table, csize, ccount, tasks, size, width, fused)
    cdone = np.zeros(max(ccount, 1), np.int64)  # fused: each chunk of rows copied
    counter = np.zeros(1, np.int64)
    done = np.zeros(1, np.int64)  # rows copied
    yf = y.ravel()
    for _ in prange(count):
        ready = P == 0
        upto = 0  # fused: the chunks of rows, from the first, this thread knows copied
        k = _claim(counter)
        while k < count:
            unit = order[k] if fused else (k - ccount if k >= ccount else -k - 1)
            if unit < 0:  # chunk -unit - 1 of the copies' rows
                j = -unit - 1
                stop = min(P, (j + 1) * csize)
                _copy_rows(a, extent, a_first, b, C, N, copies, rows, j * csize, stop)
                if fused:
                    _add(cdone[j:], 1)
                else:
                    _add(done, stop - j * csize)
                k = _claim(counter)
                continue
            if fused:
                # The rows this chunk of tiles reads: a chunk the other thread has claimed and not
                # yet copied (still copying, or held off its core by another process) is copied
                # here too, the same values into the same places, not waited for.
                while upto <= need[unit]:
                    if _add(cdone[upto:], 0) == 0:
                        _copy_rows(a, extent, a_first, b, C, N, copies, rows, upto * csize,
                                   min(P, (upto + 1) * csize))
                        _add(cdone[upto:], 1)
                    upto += 1
                ready = True
            g = 0
            first_task = unit * size
            for t in range(first_task, min(tasks, first_task + size)):
                if even:
                    g = t % R
                    q = t // R
                else:
                    while t >= starts[g + 1]:
                        g += 1
                    q = t - starts[g]
                r = g * lead
                if (table[r, SRC] == 1 or table[r + lead - 1, SRC] == 1) and not ready:
                    while _add(done, 0) < P:  # the other thread's last rows
                        pass
                    ready = True
                OD, OH, OW = table[r, OUT], table[r, OUT + 1], table[r, OUT + 2]
                per, chunks = _items(OH, OW, width)
                items = N * OD * chunks
                xf = a[table[r, BASE]:] if table[r, SRC] == 0 else b[table[r, BASE]:]
                sd, sh = table[r, XH] * table[r, XW] * C, table[r, XW] * C
                if paired:
                    xg = a[table[r + 1, BASE]:] if table[r + 1, SRC] == 0 else b[table[r + 1, BASE]:]
                    _pair_first(xf, xg, wt, yf, table, r, q % items, q // items * per_item, per_item, C, sd,
                                sh, YH, YW, O, yn, yc, per, chunks, block)
                    continue
                _plane_tiles(xf, wt[table[r, WO]:], yf, q % items, q // items * per_item, per_item,
                             (table[r, XA], table[r, XA + 1], table[r, XA + 2]),
                             (table[r, YA], table[r, YA + 1], table[r, YA + 2]),
                             (table[r, YB], table[r, YB + 1], table[r, YB + 2]),
                             table[r, S], table[r, S + 1], table[r, S + 2],
                             table[r, DIL], table[r, DIL + 1], table[r, DIL + 2],
                             (OD, OH, OW), OD, table[r, XD], sd, sh, C, YH, YW, O, yn, yw, yc,
                             table[r, KD], table[r, KH], table[r, KW], per, chunks, width, block)
            k = _claim(counter)


@njit(cache=True)
def _fused_order(N, copies, table, csize, ccount, tasks, size, width, fused):  # pragma: no cover - compiled
    """(the work units in the order they are claimed: chunk j of the copies' rows as -j - 1, chunk
    k of the tiles as k; per chunk of tiles, the last chunk of rows it reads) for regions_forward's
    fused launch (one region reading the one window, both from their starts): each chunk of rows
    just before the first chunk of tiles that reads a row of it; empty where not ``fused``."""
    if not fused:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    units = -(-tasks // size)
    order = np.empty(ccount + units, np.int64)
    need = np.empty(units, np.int64)
    WD, WH = copies[0, COPY_SIZE], copies[0, COPY_SIZE + 1]  # the window's rows: (N, WD, WH)
    OD, OH, OW = table[0, OUT], table[0, OUT + 1], table[0, OUT + 2]
    per, chunks = _items(OH, OW, width)
    items, plane = N * OD * chunks, OH * OW
    last, copied, at = 0, 0, 0
    for k in range(units):
        for q in range(k * size, min(tasks, (k + 1) * size)):
            item = q % items  # (n, i, c): tiles c * per... of plane i of image n
            n, i, c = item // chunks // OD, item // chunks % OD, item % chunks
            hi = (min((c + 1) * per * width, plane) - 1) // OW  # its last output row
            depth = table[0, XA] + i * table[0, S] + (table[0, KD] - 1) * table[0, DIL]
            row = table[0, XA + 1] + hi * table[0, S + 1] + (table[0, KH] - 1) * table[0, DIL + 1]
            last = max(last, min(ccount - 1, ((n * WD + depth) * WH + row) // csize))
        need[k] = last
        while copied <= last:
            order[at] = -copied - 1
            at += 1
            copied += 1
        order[at] = k
        at += 1
    while copied < ccount:  # rows no tile reads (padding past the last window)
        order[at] = -copied - 1
        at += 1
        copied += 1
    return order, need


@njit(cache=True)
def _pairs(table):  # pragma: no cover - compiled
    """Whether regions 2k and 2k + 1 of ``table`` are the two phases of a stride of 2 along the
    rows, for every k (_regions.paired's test): the same source sizes, steps, outputs and strides,
    the outputs of 2k + 1 one sample after those of 2k along the rows, planes of 6 outputs or
    more."""
    R = table.shape[0]
    if R == 0 or R % 2:
        return False
    for r in range(0, R, 2):
        for col in (XD, XH, XW, YA, YA + 1, YB, YB + 1, YB + 2, OUT, OUT + 1, OUT + 2, S, S + 1, S + 2):
            if table[r, col] != table[r + 1, col]:
                return False
        if (table[r, YB + 2] != 2 or table[r + 1, YA + 2] != table[r, YA + 2] + 1
                or table[r, OUT + 1] * table[r, OUT + 2] < 6):
            return False
    return True


@njit(cache=True)
def _pair_first(xf, xg, wt, yf, table, r, item, first, count, C, sd, sh, YH, YW, O, yn, yc, per, chunks,
                block):  # pragma: no cover - compiled
    """Work item ``item`` of regions r and r + 1 of ``table`` as one (regions_forward, where
    ``_pairs``): the two phases of a stride of 2 along the rows of a channels-first y (yc > 1,
    its outputs along a row 1 apart), region r + 1's outputs 1 after region r's, their counts and
    other steps the same; ``xf`` and ``xg`` their sources from their BASE, tiles of 6 outputs
    (``_tile_6``: 6 x 64, with AVX2 passes of 6 x 2 vectors of any block), filter blocks first to
    first + count. Each run of _STAGE whole tiles of both phases (48 outputs each) is summed
    channels-last into one staging block (64 channels wide), the phases' outputs interleaved as
    they lie in y, transposed in 8 x 8 registers and stored as runs of y's rows: every line of y
    written once, by whole vectors. Alone, each phase wrote half of each line with scalar stores
    taken from its tile's vectors, and the line went back and forth to memory twice. The tiles
    of the plane's last partial run are stored as they are (the last one overlapping the one
    before, as tiled_forward's). Each output is one tile's sum: the same bits as region by
    region."""
    OD, OH, OW = table[r, OUT], table[r, OUT + 1], table[r, OUT + 2]
    plane = OH * OW
    tiles = -(-plane // 6)  # the caller pairs planes of 6 outputs or more
    n, i, c = item // chunks // OD, item // chunks % OD, item % chunks
    s0, s1, s2 = table[r, S], table[r, S + 1], table[r, S + 2]
    xj, xk = s1 * sh, s2 * C  # x's strides of an output row, an output (both regions)
    xp = (n * table[r, XD] + table[r, XA] + i * s0) * sd + table[r, XA + 1] * sh + table[r, XA + 2] * C
    xq = ((n * table[r, XD] + table[r + 1, XA] + i * s0) * sd + table[r + 1, XA + 1] * sh
          + table[r + 1, XA + 2] * C)
    yp = n * yn + ((table[r, YA] + i * table[r, YB]) * YH + table[r, YA + 1]) * YW + table[r, YA + 2]
    yj, yk = table[r, YB + 1] * YW, table[r, YB + 2]  # y's strides of an output row, an output (2)
    KA = table[r, KD] * table[r, KH] * table[r, KW]
    KB = table[r + 1, KD] * table[r + 1, KH] * table[r + 1, KW]
    span = _STAGE * 6
    stage = np.empty(2 * span * 64, yf.dtype)  # (96 outputs of y's row order, 64 channels)
    moved = np.empty(8 * 2 * span, yf.dtype)  # (8 channels, 96 outputs)
    for q in range(first, first + count):
        ob = q * block * yc
        wa, wb = table[r, WO] + q * KA * C * block, table[r + 1, WO] + q * KB * C * block
        m = min(block, O - q * block)
        # the channels the AVX2 tiles sum into the stage: up to the block's last valid one
        # (tiled._stream_plane_6x64's reason)
        summed = 64 if VECTOR_BYTES != 32 else min(block, -(-m // (2 * lanes(yf))) * 2 * lanes(yf))
        u = c * per
        stop = min((c + 1) * per, tiles)
        while u < stop:
            if u + _STAGE <= stop and 6 * u + span <= plane:
                for t in range(_STAGE):
                    p = 6 * (u + t)
                    e = 12 * t * 64  # output 6t + j of region r at 2(6t + j), region r + 1's after it
                    y6 = (e, e + 128, e + 256, e + 384, e + 512, e + 640)
                    _tile_6(xf, wt, stage, wa, summed, table[r, KD], table[r, KH], table[r, KW], C,
                            sd, sh, table[r, DIL], table[r, DIL + 1], table[r, DIL + 2],
                            _x6(xp, xj, xk, OW, p), y6, 1, False, block)
                    y6 = (e + 64, e + 192, e + 320, e + 448, e + 576, e + 704)
                    _tile_6(xg, wt, stage, wb, summed, table[r + 1, KD], table[r + 1, KH],
                            table[r + 1, KW], C, sd, sh, table[r + 1, DIL], table[r + 1, DIL + 1],
                            table[r + 1, DIL + 2], _x6(xq, xj, xk, OW, p), y6, 1, False, block)
                for o0 in range(0, m, 8):  # 8 channels at a time: the staging stays small beside the filter
                    for i0 in range(0, 2 * span, 8):
                        transpose8(stage, np.uint64(i0 * 64 + o0), np.uint64(64), moved, np.uint64(i0),
                                   np.uint64(2 * span))
                    for o in range(o0, min(o0 + 8, m)):
                        at = yp + ob + o * yc
                        e = 0
                        while e < span:  # the run's pieces of rows of y
                            p = 6 * u + e
                            j, k = p // OW, p % OW
                            length = 2 * min(span - e, OW - k)
                            dst = np.uint64(at + j * yj + k * yk)
                            src = np.uint64((o - o0) * 2 * span + 2 * e)
                            for z in range(np.uint64(length)):
                                yf[dst + z] = moved[src + z]
                            e += length // 2
                u += _STAGE
                continue
            p = min(6 * u, plane - 6)
            _tile_6(xf, wt, yf, wa, m, table[r, KD], table[r, KH], table[r, KW], C, sd, sh,
                    table[r, DIL], table[r, DIL + 1], table[r, DIL + 2], _x6(xp, xj, xk, OW, p),
                    _x6(yp + ob, yj, yk, OW, p), yc, False, block)
            _tile_6(xg, wt, yf, wb, m, table[r + 1, KD], table[r + 1, KH], table[r + 1, KW], C, sd,
                    sh, table[r + 1, DIL], table[r + 1, DIL + 1], table[r + 1, DIL + 2],
                    _x6(xq, xj, xk, OW, p), _x6(yp + 1 + ob, yj, yk, OW, p), yc, False, block)
            u += 1


@njit(cache=True)
def _items(OH, OW, width):  # pragma: no cover - compiled
    """(tiles per work item, work items per plane) of an OH x OW plane in tiles of ``width``:
    tiled_forward's split, about a row's tiles per item; the 6 x 64 tiles' in whole staging
    blocks (``_plane_tiles`` stages a channels-first plane)."""
    per = -(-OW // width)
    if width == 6:
        per = -(-per // _STAGE) * _STAGE
    tiles = -(-(OH * OW) // width)
    return per, -(-tiles // per)


@njit(cache=True)
def _copy_rows(a, extent, a_first, b, C, N, copies, rows, start, stop):  # pragma: no cover - compiled
    """The copies' rows start to stop (``rows``: each window's first), each by _copy_row."""
    w = 0
    for t in range(start, stop):
        while t >= rows[w + 1]:
            w += 1
        _copy_row(a, extent, a_first, b, C, N, copies, w, t - rows[w])


@njit(cache=True)
def _copy_row(a, extent, a_first, b, C, N, copies, r, q):  # pragma: no cover - compiled
    """Row q (n, i, j) of window r of ``copies``: b[base + q * XW * C:][:XW * C] (XW samples of C
    channels) = a's samples from (n, FROM + (i, j, 0)), zero where they leave ``a``; ``a``
    (N, *extent, C), or with ``a_first`` (N, C, *extent): blocks of 8 channels x 8 samples
    transposed in registers (pad_copy_first's way)."""
    XD_, XH_, XW_ = copies[r, COPY_SIZE], copies[r, COPY_SIZE + 1], copies[r, COPY_SIZE + 2]
    AD, AH, AW = extent
    n, i, j = q // (XD_ * XH_), q // XH_ % XD_, q % XH_
    ai, aj, ak = copies[r, COPY_FROM] + i, copies[r, COPY_FROM + 1] + j, copies[r, COPY_FROM + 2]
    out = np.uint64(copies[r, COPY_BASE] + q * XW_ * C)
    uc = np.uint64(C)
    if not (0 <= ai < AD and 0 <= aj < AH):
        for u in range(np.uint64(XW_ * C)):
            b[out + u] = 0
        return
    lo, hi = min(max(0, -ak), XW_), max(min(XW_, AW - ak), 0)  # the row's samples inside a
    hi = max(hi, lo)
    for u in range(np.uint64(lo * C)):
        b[out + u] = 0
    for u in range(np.uint64(hi * C), np.uint64(XW_ * C)):
        b[out + u] = 0
    if hi == lo:
        return
    if not a_first:
        src = np.uint64((((n * AD + ai) * AH + aj) * AW + ak + lo) * C)
        dst = out + np.uint64(lo * C)
        for u in range(np.uint64((hi - lo) * C)):
            b[dst + u] = a[src + u]
        return
    src0 = np.uint64(((n * C * AD + ai) * AH + aj) * AW + ak + lo)
    transposed_run(a, src0, np.uint64(AD * AH * AW), C, np.uint64(hi - lo), b, out + np.uint64(lo * C), uc)


# Columns of pack_phases' table (one row per tap of a phase's filter): where the phase's packed
# filter starts in wt, its tap count, the tap's index among them, and the tap of w it takes.
PACK_AT, PACK_TAPS, PACK_TAP, PACK_FROM = 0, 1, 2, 3
PACK_COLUMNS = 6


@njit(cache=True)
def pack_phases(wf, strides, table, block, C, O, wt):  # pragma: no cover - compiled
    """The filters of a strided conv's input-gradient phases, flipped, their channel axes swapped
    and packed for the tiles, in one pass over the filter w (KD, KH, KW, C, O) as the caller holds
    it: its memory ``wf`` (flat) and its ``strides`` in elements (channels-last, a view of
    channels-first memory, any order: _regions.flat_filter). For each row (at, T, t, kd, kh, kw) of
    ``table``, wt[at:] (ceil(C / B), T, O, B) (B = ``block``) at tap t takes w[kd, kh, kw, c, o] at
    [c // B, t, o, c % B], zero past C (regions.pack_into's layout of the flipped and swapped filter
    (*taps, O, C)).

    Flat unsigned offsets, the loop along w's shorter stride innermost: indexing the 5-D view
    (a negative-index test per axis, channels inner at a stride of O) took 0.13 ms of a 4 ms
    call for 3x3, 128 -> 128 channels, on the calling thread while the other waited."""
    sd, sh, sw = np.uint64(strides[0]), np.uint64(strides[1]), np.uint64(strides[2])
    sc, so = np.uint64(strides[3]), np.uint64(strides[4])
    ub, uo = np.uint64(block), np.uint64(O)
    blocks = -(-C // block)
    for r in range(table.shape[0]):
        at, T, t = table[r, PACK_AT], table[r, PACK_TAPS], table[r, PACK_TAP]
        src = (np.uint64(table[r, PACK_FROM]) * sd + np.uint64(table[r, PACK_FROM + 1]) * sh
               + np.uint64(table[r, PACK_FROM + 2]) * sw)
        for q in range(blocks):
            base = np.uint64(at + (q * T + t) * O * block)
            m = np.uint64(min(block, C - q * block))
            first = src + np.uint64(q * block) * sc
            if so <= sc:  # along the output channels innermost (channels-last w: contiguous)
                for cc in range(m):
                    s = first + cc * sc
                    d = base + cc
                    for o in range(uo):
                        wt[d + o * ub] = wf[s + o * so]
            else:  # along the input channels (a view of channels-first memory)
                for o in range(uo):
                    s = first + o * so
                    d = base + o * ub
                    for cc in range(m):
                        wt[d + cc] = wf[s + cc * sc]
            for o in range(uo):
                for cc in range(m, ub):
                    wt[base + o * ub + cc] = 0
