"""A strided conv's input gradient in one launch: every sub-pixel phase's tiles in one parallel loop."""

from __future__ import annotations

import numpy as np

from ._numba import _claim, chunk_size, njit, prange
from .tiled import _plane_tiles

# Columns of the phase table: where the phase's packed filter starts in wt, its taps, the corner
# of dy it reads from, its first sample of dx, its sample counts, its tap dilation.
WO, KD, KH, KW, XA, YA, OUT, DIL = 0, 1, 2, 3, 4, 7, 10, 13
COLUMNS = 16


@njit(parallel=True, cache=True)
def phases_forward(dyp, wt, table, block, step, dx, filter_major, first):  # pragma: no cover - compiled
    """dx (N, D, H, W, C), or with ``first`` dx (N, C, D, H, W), of a strided conv, every sub-pixel
    phase p (a row of ``table``) at once: the stride-1 conv of the padded dyp (N, D', H', W', O),
    read from the corner table[p, XA:XA+3], with the phase's taps flipped and swapped, packed as
    wt[table[p, WO]:] (ceil(C / B), KD, KH, KW, O, B) (B = ``block``: 16, 32 or 64), dilated by
    table[p, DIL:DIL+3]; its table[p, OUT:OUT+3] samples go to dx at table[p, YA:YA+3] + i * ``step``.

    The work items are the tiles of tiled_forward's planes (``_plane_tiles``, 8 x 16 or 32, 6 x
    64), phase after phase, claimed in chunks by the threads that run (``_claim``): one fork and
    join for all phases instead of one per phase, and a thread held off its core leaves its chunks
    to the other. Each phase writes its own samples of dx, so no two items write the same place.
    """
    if first:  # dx's strides, in elements: a sample, one position along a row, a channel
        N, C, YD, YH, YW = dx.shape
        yn, yw, yc = C * YD * YH * YW, 1, YD * YH * YW
    else:
        N, YD, YH, YW, C = dx.shape
        yn, yw, yc = YD * YH * YW * C, C, 1
    XD, XH, XW, O = dyp.shape[1], dyp.shape[2], dyp.shape[3], dyp.shape[4]
    sd, sh = XH * XW * O, XW * O
    width = 8 if 16 <= block <= 32 else 6
    blocks = -(-C // block)
    per_item = 1 if filter_major else blocks
    P = table.shape[0]
    starts = np.zeros(P + 1, np.int64)  # each phase's first work item
    for p in range(P):
        per, chunks = _items(table[p, OUT + 1], table[p, OUT + 2], width)
        starts[p + 1] = starts[p] + N * table[p, OUT] * chunks * (blocks // per_item)
    tasks = starts[P]
    size = chunk_size(tasks)
    count = -(-tasks // size)
    counter = np.zeros(1, np.int64)
    xf, yf = dyp.ravel(), dx.ravel()
    for _ in prange(count):
        k = _claim(counter)
        while k < count:
            p = 0
            for t in range(k * size, min(tasks, (k + 1) * size)):
                while t >= starts[p + 1]:
                    p += 1
                OD, OH, OW = table[p, OUT], table[p, OUT + 1], table[p, OUT + 2]
                per, chunks = _items(OH, OW, width)
                items = N * OD * chunks
                r = t - starts[p]
                xa = (table[p, XA], table[p, XA + 1], table[p, XA + 2])
                ya = (table[p, YA], table[p, YA + 1], table[p, YA + 2])
                _plane_tiles(xf, wt[table[p, WO]:], yf, r % items, r // items * per_item, per_item, xa, ya,
                             step, 1, 1, 1, table[p, DIL], table[p, DIL + 1], table[p, DIL + 2],
                             (OD, OH, OW), OD, XD, sd, sh, O, YH, YW, C, yn, yw, yc, table[p, KD],
                             table[p, KH], table[p, KW], per, chunks, width, block)
            k = _claim(counter)


@njit(cache=True)
def _items(OH, OW, width):  # pragma: no cover - compiled
    """(tiles per work item, work items per plane) of an OH x OW plane in tiles of ``width``:
    tiled_forward's split, about a row's tiles per item."""
    per = -(-OW // width)
    tiles = -(-(OH * OW) // width)
    return per, -(-tiles // per)
