"""Several regions of one conv's output in one launch of the register tiles: a strided conv's input
gradient, one region per sub-pixel phase of dx; a strided forward, its outputs whose windows lie
inside x read from x as it is and those that reach into the padding from padded copies of their
windows."""

from __future__ import annotations

import numpy as np

from ._numba import _claim, chunk_size, njit, prange
from .tiled import _plane_tiles

# Columns of the region table (one row per region): which source it reads (0: ``a``, 1: ``b``),
# where its (N, D', H', W', C) array starts in that source and its sizes, where its packed filter
# starts in wt and its taps, the corner of the source it reads from, its first output, the step
# between its outputs in y, its output counts, its stride and its tap dilation (3 each).
# A region that reads ``b`` reads a window of ``a`` copied there first, its origin in ``a`` at
# FROM (3 ints, negative or past a's end in the padding: zeros there).
SRC, BASE, XD, XH, XW, WO, KD, KH, KW = range(9)
XA, YA, YB, OUT, S, DIL, FROM = 9, 12, 15, 18, 21, 24, 27
COLUMNS = 30


@njit(parallel=True, cache=True)
def regions_forward(a, extent, b, C, wt, table, block, y, filter_major, first):  # pragma: no cover - compiled
    """Each region r (a row of ``table``) of y (N, D, H, W, O), or with ``first`` y (N, O, D, H, W):
    the conv of its source (the flat ``a`` (N, *extent, C) or ``b``, from table[r, BASE], laid out
    (N, XD, XH, XW, C) with those sizes from the table; a region reading ``b`` first copies its
    window of ``a`` there) read from the corner table[r, XA:XA+3], with the filter
    packed as wt[table[r, WO]:] (ceil(O / B), KD, KH, KW, C, B) (B = ``block``: 16, 32 or 64),
    strides table[r, S:S+3] and dilations table[r, DIL:DIL+3]; its table[r, OUT:OUT+3] outputs
    go to y at table[r, YA:YA+3] + i * table[r, YB:YB+3].

    The work items are the tiles of tiled_forward's planes (``_plane_tiles``, 8 x 16 or 32, 6 x
    64), region after region, claimed in chunks by the threads that run (``_claim``): one fork and
    join for all regions, and a thread held off its core leaves its chunks to the other. The
    regions write disjoint outputs of y.
    """
    if first:  # y's strides, in elements: a sample, one position along a row, a channel
        N, O, YD, YH, YW = y.shape
        yn, yw, yc = O * YD * YH * YW, 1, YD * YH * YW
    else:
        N, YD, YH, YW, O = y.shape
        yn, yw, yc = YD * YH * YW * O, O, 1
    width = 8 if 16 <= block <= 32 else 6
    blocks = -(-O // block)
    per_item = 1 if filter_major else blocks
    R = table.shape[0]
    copies = False
    for r in range(R):
        copies = copies or table[r, SRC] == 1
    if copies:  # else no fork and join for an empty loop (a strided input gradient's phases)
        _copy_windows(a, extent, b, C, N, table)
    starts = np.zeros(R + 1, np.int64)  # each region's first work item
    for r in range(R):
        per, chunks = _items(table[r, OUT + 1], table[r, OUT + 2], width)
        starts[r + 1] = starts[r] + N * table[r, OUT] * chunks * (blocks // per_item)
    tasks = starts[R]
    size = chunk_size(tasks)
    count = -(-tasks // size)
    counter = np.zeros(1, np.int64)
    yf = y.ravel()
    for _ in prange(count):
        k = _claim(counter)
        while k < count:
            r = 0
            for t in range(k * size, min(tasks, (k + 1) * size)):
                while t >= starts[r + 1]:
                    r += 1
                OD, OH, OW = table[r, OUT], table[r, OUT + 1], table[r, OUT + 2]
                per, chunks = _items(OH, OW, width)
                items = N * OD * chunks
                q = t - starts[r]
                xf = a[table[r, BASE]:] if table[r, SRC] == 0 else b[table[r, BASE]:]
                sd, sh = table[r, XH] * table[r, XW] * C, table[r, XW] * C
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
def _items(OH, OW, width):  # pragma: no cover - compiled
    """(tiles per work item, work items per plane) of an OH x OW plane in tiles of ``width``:
    tiled_forward's split, about a row's tiles per item."""
    per = -(-OW // width)
    tiles = -(-(OH * OW) // width)
    return per, -(-tiles // per)


@njit(parallel=True, cache=True)
def _copy_windows(a, extent, b, C, N, table):  # pragma: no cover - compiled
    """For each region r reading ``b``: b[table[r, BASE]:] (N, XD, XH, XW, C) = the window of ``a``
    (N, *extent, C) from table[r, FROM:FROM+3], zero where it leaves ``a`` (the padding). In
    parallel over the windows' rows."""
    R = table.shape[0]
    starts = np.zeros(R + 1, np.int64)
    for r in range(R):
        rows = N * table[r, XD] * table[r, XH] if table[r, SRC] == 1 else 0
        starts[r + 1] = starts[r] + rows
    AD, AH, AW = extent
    for t in prange(starts[R]):
        r = 0
        while t >= starts[r + 1]:
            r += 1
        XD_, XH_, XW_ = table[r, XD], table[r, XH], table[r, XW]
        q = t - starts[r]  # row (n, i, j) of the window
        n, i, j = q // (XD_ * XH_), q // XH_ % XD_, q % XH_
        ai, aj, ak = table[r, FROM] + i, table[r, FROM + 1] + j, table[r, FROM + 2]
        out = table[r, BASE] + q * XW_ * C
        if not (0 <= ai < AD and 0 <= aj < AH):
            b[out:out + XW_ * C] = 0
            continue
        lo, hi = max(0, -ak), min(XW_, AW - ak)  # the row's samples inside a
        b[out:out + max(lo, 0) * C] = 0
        if hi > lo:
            src = ((n * AD + ai) * AH + aj) * AW + ak
            b[out + lo * C:out + hi * C] = a[(src + lo) * C:(src + hi) * C]
        b[out + max(hi, lo) * C:out + XW_ * C] = 0


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
