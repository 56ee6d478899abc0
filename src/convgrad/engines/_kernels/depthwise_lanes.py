"""Channels-last 3x3 depthwise rows in vectors (``_simd``): the forward and the filter
gradient of one or two output rows with unit column stride and dilation, one output per channel.

Each block of ``lanes`` channels walks the row with its nine weights (or nine sums) in registers
and a sliding window of three columns per input row: per step it loads one new column of each
input row, so each input sample is read once per output row pair, not nine times. Two output
rows share the middle two of their four input rows (2 loads per output and channel instead of
3). Rows outside x are passed as a row of zeros and columns outside it read as zeros, so the
borders run the same loop (their products with the padding are zeros too). Both walk strips of
``STRIP`` columns, every block of channels in a strip before the next strip (the window reloaded
per strip); the forward may store y past the caches (``vstream``). With 32-byte vectors (AVX2) the
forward goes by columns instead (``forward_cols``), streaming the first row of a pair only.

Rows are 1-D views of ``W * C`` samples, channels innermost; ``p1`` is the leading column pad.
Channels come in blocks of ``lanes`` from 0; when C is not a multiple, the last block starts at
``C - lanes`` and overlaps the one before (the forward writes the same values twice; the filter
gradient adds only the lanes that block alone holds). C >= lanes.
"""

from __future__ import annotations

import numpy as np

from ._numba import njit
from ._simd import VECTOR_BYTES, lanes, prefetch, vadd, vfma, vload, vmul, vstore, vstream, vzero


@njit(cache=True)
def _column(row, col, cb, c_in, w_in):  # pragma: no cover - compiled
    """Channels [cb, cb + lanes) of column ``col`` of a row, zeros outside it."""
    if col < 0 or col >= w_in:
        return vzero(row)
    return vload(row, col * c_in + cb)


@njit(cache=True)
def _three(row, col, cb, c_in, w_in):  # pragma: no cover - compiled
    """Columns ``col``, ``col + 1`` and ``col + 2`` of a row (``_column``: zeros outside it): a
    border output's window row."""
    return (_column(row, col, cb, c_in, w_in), _column(row, col + 1, cb, c_in, w_in),
            _column(row, col + 2, cb, c_in, w_in))


@njit(cache=True)
def _block_start(blk, c_in, width):  # pragma: no cover - compiled
    """The first channel of block ``blk`` (the last one ends at C)."""
    return min(blk * width, c_in - width)


@njit(cache=True)
def _columns(cb, c_in, w_in, p1, ow):  # pragma: no cover - compiled
    """The outputs [j0, j1) whose newest column (j + 2 - p1) lies inside the row: there the loop
    loads without checking; before j0 and from j1 it reads zeros where the column is outside."""
    j0 = min(ow, max(0, p1 - 2))
    return j0, max(j0, min(ow, w_in - 2 + p1))


@njit(cache=True, fastmath={"contract"})
def _taps(a0, a1, a2, b0, b1, b2, e0, e1, e2, k0, k1, k2, k3, k4, k5, k6, k7, k8):  # pragma: no cover
    """One output: the three rows' sums, added last (a chain of 3 multiply-adds, not 9)."""
    t = vfma(a2, k2, vfma(a1, k1, vmul(a0, k0)))
    u = vfma(b2, k5, vfma(b1, k4, vmul(b0, k3)))
    return vadd(vadd(t, u), vfma(e2, k8, vfma(e1, k7, vmul(e0, k6))))


# Output columns per strip: the forward walks a strip of STRIP columns for every channel block
# before the next strip, so the rows' samples it reads and the outputs it writes lie within a few
# KB, each cache line of y written whole at once (8 x 128 x 56 x 56 float32, one thread, loaded
# machine: strips of 4 / 8 / 16 / the whole row 0.60 / 0.48 / 0.58 / 1.03 ms with streamed stores).
STRIP = 8


@njit(cache=True)
def _put(y, at, v, stream):  # pragma: no cover - compiled
    """y[at : at + lanes] = v, streamed past the caches where ``stream`` (``streams``)."""
    if stream:
        vstream(y, at, v)
    else:
        vstore(y, at, v)


@njit(cache=True)
def streams(y, c_in):  # pragma: no cover - compiled
    """Whether the forward can stream y's vectors (``vstream``): every block of every column
    starts on a 64-byte boundary (y aligned so, C a multiple of the vector)."""
    return y.ctypes.data % VECTOR_BYTES == 0 and c_in % lanes(y) == 0


@njit(cache=True, fastmath={"contract"})
def forward_pair(ra, rb, rc, rd, pa, pb, wf, ya, yb, w_in, p1, c_in, stream):  # pragma: no cover - compiled
    """Output rows ya (of input rows ra, rb, rc) and yb (rb, rc, rd), ``len(ya) // C`` outputs
    each; wf is the (3, 3, C) filter flattened. In strips of STRIP columns, each strip for every
    block of channels; y's vectors streamed past the caches where ``stream``. The next pair's new
    rows pa and pb are asked for as the loop goes (0.87x the time of 8 x 128 x 56 x 56 float32,
    streamed, one thread, loaded machine): a block of channels reads every eighth cache line of a
    row, a pattern the hardware does not fetch ahead."""
    width = lanes(wf)
    ow = ya.size // c_in
    for s in range(0, ow, STRIP):
        e = min(s + STRIP, ow)
        inside = s + 2 - p1 >= 0 and e + 1 - p1 < w_in  # every column the loop loads is in the row
        for blk in range(-(-c_in // width)):
            cb = _block_start(blk, c_in, width)
            k0, k1, k2 = vload(wf, cb), vload(wf, c_in + cb), vload(wf, 2 * c_in + cb)
            k3, k4, k5 = vload(wf, 3 * c_in + cb), vload(wf, 4 * c_in + cb), vload(wf, 5 * c_in + cb)
            k6, k7, k8 = vload(wf, 6 * c_in + cb), vload(wf, 7 * c_in + cb), vload(wf, 8 * c_in + cb)
            a0, a1 = _column(ra, s - p1, cb, c_in, w_in), _column(ra, s + 1 - p1, cb, c_in, w_in)
            b0, b1 = _column(rb, s - p1, cb, c_in, w_in), _column(rb, s + 1 - p1, cb, c_in, w_in)
            e0, e1 = _column(rc, s - p1, cb, c_in, w_in), _column(rc, s + 1 - p1, cb, c_in, w_in)
            f0, f1 = _column(rd, s - p1, cb, c_in, w_in), _column(rd, s + 1 - p1, cb, c_in, w_in)
            for j in range(s, e):
                col = j + 2 - p1
                if inside:  # the same loads without the checks
                    at = col * c_in + cb
                    a2, b2, e2, f2 = vload(ra, at), vload(rb, at), vload(rc, at), vload(rd, at)
                    prefetch(pa, at, 0, 3)
                    prefetch(pb, at, 0, 3)
                else:
                    a2, b2 = _column(ra, col, cb, c_in, w_in), _column(rb, col, cb, c_in, w_in)
                    e2, f2 = _column(rc, col, cb, c_in, w_in), _column(rd, col, cb, c_in, w_in)
                _put(ya, j * c_in + cb, _taps(a0, a1, a2, b0, b1, b2, e0, e1, e2,
                                              k0, k1, k2, k3, k4, k5, k6, k7, k8), stream)
                _put(yb, j * c_in + cb, _taps(b0, b1, b2, e0, e1, e2, f0, f1, f2,
                                              k0, k1, k2, k3, k4, k5, k6, k7, k8), stream)
                a0, a1, b0, b1, e0, e1, f0, f1 = a1, a2, b1, b2, e1, e2, f1, f2


@njit(cache=True, fastmath={"contract"})
def forward_row(ra, rb, rc, wf, ya, w_in, p1, c_in, stream):  # pragma: no cover - compiled
    """Output row ya of input rows ra, rb, rc (``forward_pair`` for one row)."""
    width = lanes(wf)
    ow = ya.size // c_in
    for s in range(0, ow, STRIP):
        e = min(s + STRIP, ow)
        inside = s + 2 - p1 >= 0 and e + 1 - p1 < w_in
        for blk in range(-(-c_in // width)):
            cb = _block_start(blk, c_in, width)
            k0, k1, k2 = vload(wf, cb), vload(wf, c_in + cb), vload(wf, 2 * c_in + cb)
            k3, k4, k5 = vload(wf, 3 * c_in + cb), vload(wf, 4 * c_in + cb), vload(wf, 5 * c_in + cb)
            k6, k7, k8 = vload(wf, 6 * c_in + cb), vload(wf, 7 * c_in + cb), vload(wf, 8 * c_in + cb)
            a0, a1 = _column(ra, s - p1, cb, c_in, w_in), _column(ra, s + 1 - p1, cb, c_in, w_in)
            b0, b1 = _column(rb, s - p1, cb, c_in, w_in), _column(rb, s + 1 - p1, cb, c_in, w_in)
            e0, e1 = _column(rc, s - p1, cb, c_in, w_in), _column(rc, s + 1 - p1, cb, c_in, w_in)
            for j in range(s, e):
                col = j + 2 - p1
                if inside:
                    at = col * c_in + cb
                    a2, b2, e2 = vload(ra, at), vload(rb, at), vload(rc, at)
                else:
                    a2, b2 = _column(ra, col, cb, c_in, w_in), _column(rb, col, cb, c_in, w_in)
                    e2 = _column(rc, col, cb, c_in, w_in)
                _put(ya, j * c_in + cb, _taps(a0, a1, a2, b0, b1, b2, e0, e1, e2,
                                              k0, k1, k2, k3, k4, k5, k6, k7, k8), stream)
                a0, a1, b0, b1, e0, e1 = a1, a2, b1, b2, e1, e2


# The AVX2 forward (``VECTOR_BYTES == 32``) walks the columns, every block of channels of two
# columns before the next two, instead of strips: the strips' sliding window (12 vectors of four
# rows) and nine weights need 21 of the 16 registers, and each block read a vector of every
# 512-byte column, a stride the hardware fetches ahead poorly. Column by column, the rows of x and
# y are read and written in address order, and each step reloads its nine weights and the four
# columns of x from the first-level cache. Its stores go through the caches: streamed, the same
# loop took 5.4 against 3.1 ms. Asking for the new rows of x AHEAD_X columns ahead and for y's lines
# AHEAD_Y ahead (to write) took 2.3-2.5 against 3.1-3.6 ms without (8 x 128 x 56 x 56 float32, one
# thread, CPU time, loaded machine; PyTorch channels_last 2.7-2.9 ms in the same runs). Where y
# may be streamed, a pair's first row is (``vstream``: one stream of whole lines, the two columns'
# lines filled a block at a time) and its second goes through the caches: that saves a sixth of the
# traffic (the first row's lines are not read before they are written) and took 0.94-1.0x the
# time on one thread (CPU time), 0.81-0.83x (fastest call) and 0.88-0.91x (first quartile) on two
# (wall), of the loop with both rows through the caches (8 x 128 x 56 x 56 float32, interleaved in
# one process, loaded machine). Streaming both rows, four lines of two rows in flight at once, took
# 3x; a row at a time, each row streamed, 1.1x; staging a column pair's outputs to stream them in
# address order 1.2-1.4x.
AHEAD_X = 6
AHEAD_Y = 8


@njit(cache=True, fastmath={"contract"})
def forward_cols(ra, rb, rc, rd, wf, ya, yb, two, w_in, p1, c_in, stream=False):  # pragma: no cover
    """``forward_pair`` (where ``two``; else ``forward_row`` of ra, rb, rc into ya, rd and yb not
    read) for AVX2: two columns of outputs at a time, each for every block of channels, the
    outputs summed in ``_taps``' order (the strips' values, bit for bit). The rows new to this
    call (rc, rd) are asked for AHEAD_X columns ahead, y's lines for writing AHEAD_Y ahead; with
    ``stream`` and ``two`` (y allows it: ``streams``) ya's vectors go past the caches instead."""
    width = lanes(wf)
    ow = ya.size // c_in
    past = stream and two  # ya streamed (a lone row goes through the caches: not measured)
    for j in range(0, ow, 2):
        # both outputs' columns of x, j - p1 to j + 3 - p1, inside the row: loads without checks
        inside = j + 1 < ow and j - p1 >= 0 and j + 3 - p1 < w_in
        for blk in range(-(-c_in // width)):
            cb = _block_start(blk, c_in, width)
            k0, k1, k2 = vload(wf, cb), vload(wf, c_in + cb), vload(wf, 2 * c_in + cb)
            k3, k4, k5 = vload(wf, 3 * c_in + cb), vload(wf, 4 * c_in + cb), vload(wf, 5 * c_in + cb)
            k6, k7, k8 = vload(wf, 6 * c_in + cb), vload(wf, 7 * c_in + cb), vload(wf, 8 * c_in + cb)
            if inside:
                at, q = (j - p1) * c_in + cb, j * c_in + cb
                u1, u2, u3 = at + c_in, at + 2 * c_in, at + 3 * c_in
                a0, a1, a2, a3 = vload(ra, at), vload(ra, u1), vload(ra, u2), vload(ra, u3)
                b0, b1, b2, b3 = vload(rb, at), vload(rb, u1), vload(rb, u2), vload(rb, u3)
                e0, e1, e2, e3 = vload(rc, at), vload(rc, u1), vload(rc, u2), vload(rc, u3)
                # ahead along the rows (past a row's end: the next row's, or no memory, which a
                # prefetch may name): the new row of x, and y's lines, owned before the stores
                prefetch(rc, at + AHEAD_X * c_in, 0, 3)
                prefetch(rc, at + (AHEAD_X + 1) * c_in, 0, 3)
                if not past:
                    prefetch(ya, q + AHEAD_Y * c_in, 1, 3)
                    prefetch(ya, q + (AHEAD_Y + 1) * c_in, 1, 3)
                _put(ya, q, _taps(a0, a1, a2, b0, b1, b2, e0, e1, e2,
                                  k0, k1, k2, k3, k4, k5, k6, k7, k8), past)
                _put(ya, q + c_in, _taps(a1, a2, a3, b1, b2, b3, e1, e2, e3,
                                         k0, k1, k2, k3, k4, k5, k6, k7, k8), past)
                if two:
                    f0, f1, f2, f3 = vload(rd, at), vload(rd, u1), vload(rd, u2), vload(rd, u3)
                    prefetch(rd, at + AHEAD_X * c_in, 0, 3)
                    prefetch(rd, at + (AHEAD_X + 1) * c_in, 0, 3)
                    prefetch(yb, q + AHEAD_Y * c_in, 1, 3)
                    prefetch(yb, q + (AHEAD_Y + 1) * c_in, 1, 3)
                    vstore(yb, q, _taps(b0, b1, b2, e0, e1, e2, f0, f1, f2,
                                        k0, k1, k2, k3, k4, k5, k6, k7, k8))
                    vstore(yb, q + c_in, _taps(b1, b2, b3, e1, e2, e3, f1, f2, f3,
                                               k0, k1, k2, k3, k4, k5, k6, k7, k8))
                continue
            for jj in range(j, min(j + 2, ow)):  # a border column (or the last, odd one): checked
                col, q = jj - p1, jj * c_in + cb
                a0, a1, a2 = _three(ra, col, cb, c_in, w_in)
                b0, b1, b2 = _three(rb, col, cb, c_in, w_in)
                e0, e1, e2 = _three(rc, col, cb, c_in, w_in)
                _put(ya, q, _taps(a0, a1, a2, b0, b1, b2, e0, e1, e2,
                                  k0, k1, k2, k3, k4, k5, k6, k7, k8), past)
                if two:
                    f0, f1, f2 = _three(rd, col, cb, c_in, w_in)
                    vstore(yb, q, _taps(b0, b1, b2, e0, e1, e2, f0, f1, f2,
                                        k0, k1, k2, k3, k4, k5, k6, k7, k8))


@njit(cache=True, fastmath={"contract"})
def _add_sums(out, cb, c_in, fresh, t0, t1, t2, t3, t4, t5, t6, t7, t8):  # pragma: no cover
    """out[a, b, cb + lane] += the nine sums, flattened (3, 3, C), for the lanes >= ``fresh``
    (the lanes below it belong to the block before, which overlaps this one)."""
    width = lanes(out)
    sums = (t0, t1, t2, t3, t4, t5, t6, t7, t8)
    if fresh == 0:
        for tap in range(9):
            at = tap * c_in + cb
            vstore(out, at, vadd(vload(out, at), sums[tap]))
        return
    spill = np.empty(width, dtype=out.dtype)
    for tap in range(9):
        vstore(spill, 0, sums[tap])
        for lane in range(fresh, width):
            out[tap * c_in + cb + lane] += spill[lane]


@njit(cache=True, fastmath={"contract"})
def filter_grad_pair(ra, rb, rc, rd, pa, pb, ga, gb, pg, ph, two, out, w_in, p1, c_in):  # pragma: no cover
    """out (3, 3, C) flattened += the filter gradient of dy rows ga (input rows ra, rb, rc) and,
    where ``two``, gb (rb, rc, rd); without it, rd and gb are not read. In strips of STRIP
    columns, each strip for every block of channels, its nine sums added to out per strip (as
    ``forward_pair``: a block reads every eighth cache line of a row, so a strip keeps the lines
    the next blocks read in the first-level cache; 8 x 128 x 56 x 56 float32, one thread, CPU
    time, A/B in one process, loaded machine: 0.90-0.92x the time of whole rows). pa and pb: the
    next pair's new rows of x, pg and ph its rows of dy, asked for ahead (0.77x the time)."""
    width = lanes(out)
    ow = ga.size // c_in
    for s in range(0, ow, STRIP):
        e = min(s + STRIP, ow)
        inside = s + 2 - p1 >= 0 and e + 1 - p1 < w_in  # every column the loop loads is in the row
        for blk in range(-(-c_in // width)):
            cb = _block_start(blk, c_in, width)
            t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = vzero(out)
            a0, a1 = _column(ra, s - p1, cb, c_in, w_in), _column(ra, s + 1 - p1, cb, c_in, w_in)
            b0, b1 = _column(rb, s - p1, cb, c_in, w_in), _column(rb, s + 1 - p1, cb, c_in, w_in)
            e0, e1 = _column(rc, s - p1, cb, c_in, w_in), _column(rc, s + 1 - p1, cb, c_in, w_in)
            f0, f1 = _column(rd, s - p1, cb, c_in, w_in), _column(rd, s + 1 - p1, cb, c_in, w_in)
            for j in range(s, e):
                col = j + 2 - p1
                if inside:  # the same loads without the checks
                    at = col * c_in + cb
                    a2, b2, e2, f2 = vload(ra, at), vload(rb, at), vload(rc, at), vload(rd, at)
                    prefetch(pa, at, 0, 3)
                    prefetch(pb, at, 0, 3)
                    prefetch(pg, j * c_in + cb, 0, 3)
                    prefetch(ph, j * c_in + cb, 0, 3)
                else:
                    a2, b2 = _column(ra, col, cb, c_in, w_in), _column(rb, col, cb, c_in, w_in)
                    e2, f2 = _column(rc, col, cb, c_in, w_in), _column(rd, col, cb, c_in, w_in)
                g = vload(ga, j * c_in + cb)
                t0, t1, t2 = vfma(a0, g, t0), vfma(a1, g, t1), vfma(a2, g, t2)
                t3, t4, t5 = vfma(b0, g, t3), vfma(b1, g, t4), vfma(b2, g, t5)
                t6, t7, t8 = vfma(e0, g, t6), vfma(e1, g, t7), vfma(e2, g, t8)
                if two:  # a lone row adds no products (x * 0 would be NaN for an inf)
                    h = vload(gb, j * c_in + cb)
                    t0, t1, t2 = vfma(b0, h, t0), vfma(b1, h, t1), vfma(b2, h, t2)
                    t3, t4, t5 = vfma(e0, h, t3), vfma(e1, h, t4), vfma(e2, h, t5)
                    t6, t7, t8 = vfma(f0, h, t6), vfma(f1, h, t7), vfma(f2, h, t8)
                a0, a1, b0, b1, e0, e1, f0, f1 = a1, a2, b1, b2, e1, e2, f1, f2
            fresh = blk * width - cb  # lanes the block before already summed
            _add_sums(out, cb, c_in, fresh, t0, t1, t2, t3, t4, t5, t6, t7, t8)


@njit(cache=True, fastmath={"contract"})
def _fg_step(sums, base, stride, x0, x1, x2, x3, x4, x5, x6, x7, x8, g):  # pragma: no cover - compiled
    """sums[base + tap * stride : + lanes] += x_tap * g for the nine taps (a, b) = divmod(tap, 3):
    one column of dy (g) with its three columns of each of its three rows of x."""
    _acc(sums, base, x0, g)
    _acc(sums, base + stride, x1, g)
    _acc(sums, base + 2 * stride, x2, g)
    _acc(sums, base + 3 * stride, x3, g)
    _acc(sums, base + 4 * stride, x4, g)
    _acc(sums, base + 5 * stride, x5, g)
    _acc(sums, base + 6 * stride, x6, g)
    _acc(sums, base + 7 * stride, x7, g)
    _acc(sums, base + 8 * stride, x8, g)


@njit(cache=True, fastmath={"contract"})
def _tap4(sums, at, two, x0, g0, y0, h0, x1, g1, y1, h1):  # pragma: no cover - compiled
    """sums[at : at + lanes] += x0 * g0 (+ y0 * h0 where ``two``) + x1 * g1 (+ y1 * h1), in that
    order: one tap's products of two columns of dy rows ga (g) and gb (h)."""
    t = vfma(x0, g0, vload(sums, at))
    if two:
        t = vfma(y0, h0, t)
    t = vfma(x1, g1, t)
    if two:
        t = vfma(y1, h1, t)
    vstore(sums, at, t)


@njit(cache=True, fastmath={"contract"})
def _acc(sums, at, x, g):  # pragma: no cover - compiled
    """sums[at : at + lanes] += x * g."""
    vstore(sums, at, vfma(x, g, vload(sums, at)))


@njit(cache=True, fastmath={"contract"})
def filter_grad_cols(ra, rb, rc, rd, ga, gb, two, out, w_in, p1, c_in):  # pragma: no cover - compiled
    """``filter_grad_pair`` for AVX2: out (3, 3, C) flattened += the filter gradient of dy row ga
    (input rows ra, rb, rc) and, where ``two``, gb (rb, rc, rd), two columns of dy at a time for
    every block of channels; the nine sums of a block are out's own lanes (in the first-level
    cache), loaded and stored per column pair, so only the columns of x and dy take registers.
    The last block, where it overlaps the one before, sums into a scratch of its own, whose fresh
    lanes are added at the end (as ``_add_sums``). Per output of out, the products are added
    column by column, dy row ga before gb: one fixed order."""
    width = lanes(out)
    ow = ga.size // c_in
    blocks = -(-c_in // width)
    last = _block_start(blocks - 1, c_in, width)
    fresh = (blocks - 1) * width - last  # lanes of the last block the one before holds
    tail = np.zeros(9 * width if fresh else 0, dtype=out.dtype)
    for j in range(0, ow, 2):
        inside = j + 1 < ow and j - p1 >= 0 and j + 3 - p1 < w_in
        for blk in range(blocks):
            cb = _block_start(blk, c_in, width)
            own = fresh == 0 or blk < blocks - 1
            sums, base, stride = (out, cb, c_in) if own else (tail, 0, width)
            if inside:
                at, q = (j - p1) * c_in + cb, j * c_in + cb
                u1, u2, u3 = at + c_in, at + 2 * c_in, at + 3 * c_in
                # the new rows of x and the rows of dy, ahead (as forward_cols)
                prefetch(rc, at + AHEAD_X * c_in, 0, 3)
                prefetch(rc, at + (AHEAD_X + 1) * c_in, 0, 3)
                prefetch(ga, q + AHEAD_X * c_in, 0, 3)
                prefetch(ga, q + (AHEAD_X + 1) * c_in, 0, 3)
                if two:
                    prefetch(rd, at + AHEAD_X * c_in, 0, 3)
                    prefetch(rd, at + (AHEAD_X + 1) * c_in, 0, 3)
                    prefetch(gb, q + AHEAD_X * c_in, 0, 3)
                    prefetch(gb, q + (AHEAD_X + 1) * c_in, 0, 3)
                a0, a1, a2, a3 = vload(ra, at), vload(ra, u1), vload(ra, u2), vload(ra, u3)
                b0, b1, b2, b3 = vload(rb, at), vload(rb, u1), vload(rb, u2), vload(rb, u3)
                e0, e1, e2, e3 = vload(rc, at), vload(rc, u1), vload(rc, u2), vload(rc, u3)
                g0, g1 = vload(ga, q), vload(ga, q + c_in)
                if two:
                    f0, f1, f2, f3 = vload(rd, at), vload(rd, u1), vload(rd, u2), vload(rd, u3)
                    h0, h1 = vload(gb, q), vload(gb, q + c_in)
                else:  # not read
                    f0 = f1 = f2 = f3 = h0 = h1 = g0
                # each sum loaded once for both columns (the same order as two single columns)
                _tap4(sums, base, two, a0, g0, b0, h0, a1, g1, b1, h1)
                _tap4(sums, base + stride, two, a1, g0, b1, h0, a2, g1, b2, h1)
                _tap4(sums, base + 2 * stride, two, a2, g0, b2, h0, a3, g1, b3, h1)
                _tap4(sums, base + 3 * stride, two, b0, g0, e0, h0, b1, g1, e1, h1)
                _tap4(sums, base + 4 * stride, two, b1, g0, e1, h0, b2, g1, e2, h1)
                _tap4(sums, base + 5 * stride, two, b2, g0, e2, h0, b3, g1, e3, h1)
                _tap4(sums, base + 6 * stride, two, e0, g0, f0, h0, e1, g1, f1, h1)
                _tap4(sums, base + 7 * stride, two, e1, g0, f1, h0, e2, g1, f2, h1)
                _tap4(sums, base + 8 * stride, two, e2, g0, f2, h0, e3, g1, f3, h1)
                continue
            for jj in range(j, min(j + 2, ow)):  # a border column (or the last, odd one): checked
                col, q = jj - p1, jj * c_in + cb
                a0, a1, a2 = _three(ra, col, cb, c_in, w_in)
                b0, b1, b2 = _three(rb, col, cb, c_in, w_in)
                e0, e1, e2 = _three(rc, col, cb, c_in, w_in)
                _fg_step(sums, base, stride, a0, a1, a2, b0, b1, b2, e0, e1, e2, vload(ga, q))
                if two:  # a lone row adds no products (x * 0 would be NaN for an inf)
                    f0, f1, f2 = _three(rd, col, cb, c_in, w_in)
                    _fg_step(sums, base, stride, b0, b1, b2, e0, e1, e2, f0, f1, f2, vload(gb, q))
    for tap in range(9 if fresh else 0):
        for lane in range(fresh, width):
            out[tap * c_in + last + lane] += tail[tap * width + lane]
