"""Regions of one conv's output, each a conv of its own source window and filter, written by one
launch of the tiled engine's register tiles (_kernels/regions.py).

A strided conv's input gradient is one region per sub-pixel phase of dx: the stride-1 conv of dy
(padded once) with the phase's taps flipped and swapped, its outputs every s-th sample of dx. A
strided forward is the region of outputs whose windows lie inside x, read from x as it is (no
padded copy of x: the copy cost as much as 5% of the call), and the regions around it, whose
windows reach into the padding, read from padded copies of their windows (the few rows and
columns at the borders); or, where those borders are large or x is channels-first, one region
reading x padded whole. The copies (padded, transposed from channels-first) are made by the
launch that runs the regions: one fork and join per call; x padded whole is copied chunk of rows
by chunk of rows just before the tiles that read them. Into a channels-first dx, the two phases
of a stride of 2 along the rows run as one (``paired``): each line of dx written once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .._formulas import dilate_dim, stride_dim
from .._geometry import ConvGeometry
from .._layout import x_first_axes, x_to_last
from . import _kernels, _threads
from ._common import as_3d
from ._kernels import layout
from ._kernels import regions as columns
from ._scratch import aligned_empty, scratch


@dataclass(frozen=True, eq=False)
class Region:
    """One region: outputs ``at + i * step`` for i < ``count`` (per axis) of the conv of the
    source array (``source`` 0 or 1, starting ``base`` elements in, spatial sizes ``sizes``)
    read from ``corner``, with the filter ``w`` (*taps, C, O), ``stride`` and ``dilation``. A
    region of source 1 reads the window of source 0 from ``origin`` (zeros outside it), which
    the launch copies there before any region runs."""

    source: int
    base: int
    sizes: tuple[int, ...]
    corner: tuple[int, ...]
    w: np.ndarray
    at: tuple[int, ...]
    step: tuple[int, ...]
    count: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    origin: tuple[int, ...] = ()  # source 1: where its window starts in source 0 (copied there first)


def table_row(source: int, base: int, sizes: tuple[int, ...], corner: tuple[int, ...], taps: tuple[int, ...],
              offset: int, at: tuple[int, ...], step: tuple[int, ...], count: tuple[int, ...],
              stride: tuple[int, ...], dilation: tuple[int, ...], origin: tuple[int, ...] = ()) -> list[int]:
    """One region's row of the kernel's table (_kernels/regions.py's columns; a Region's fields,
    its packed filter at ``offset`` of wt, 1-D and 2-D as 3-D), laid out once per geometry by its
    caller; refuses windows that leave the source."""
    rank = len(at)
    zero, one = (0,) * (3 - rank), (1,) * (3 - rank)
    check_reach(tuple(n - a for n, a in zip(sizes, corner)), count, taps, stride, dilation)
    return [source, base, *one, *sizes, offset, *one, *taps, *zero, *corner, *zero, *at, *one, *step, *one,
            *count, *one, *stride, *one, *dilation, *zero, *(origin or (0,) * rank)]


# No windows to copy (every region reads a source as it is).
NO_COPIES = np.zeros((0, columns.COPY_COLUMNS), np.int64)


def launch(table: np.ndarray, a: np.ndarray, b: np.ndarray, c: int, wt: np.ndarray, block: int, y: np.ndarray,
           first: bool, filter_major: bool, copies: np.ndarray = NO_COPIES, a_first: bool = False) -> None:
    """Write every region of ``table`` (rows of ``table_row``) into y ``(N, *S, O)`` (``first``:
    ``(N, O, *S)``, C-contiguous) in one launch: the sources ``a`` ``(N, *S', c)`` (``a_first``:
    ``(N, c, *S')``, read only by the copies) and ``b`` (flat) C-contiguous, the windows of a that
    ``copies`` lists (copy_row's rows) copied into b in the same launch, the filters packed side
    by side in ``wt`` in blocks of ``block`` output channels (pack_into's layout); with
    ``filter_major`` (a packed filter larger than tiled.FILTER_MAJOR_BYTES) each thread walks the
    filter block by block; with ``first`` and 6 x 64 tiles, regions 2k and 2k + 1 that pair up
    (``paired``) run as one, writing whole lines of y."""
    one = (1,) * (5 - a.ndim)  # 1-D and 2-D as 3-D
    y5 = y.reshape(*y.shape[:2], *one, *y.shape[2:]) if first else as_3d(y)
    extent = (*one, *(a.shape[2:] if a_first else a.shape[1:-1]))
    _threads.for_numba()
    _kernels.regions_forward(a.reshape(-1), extent, b.reshape(-1), c, wt, table, block, y5, filter_major,
                             copies, a_first, first)


def paired(table: np.ndarray) -> np.ndarray | None:
    """``table`` (table_row's rows) reordered so that regions 2k and 2k + 1 are the two phases of a
    stride of 2 along the rows (_kernels/regions.py's _pair_first: the same source sizes and the
    same outputs, those of region 2k + 1 one sample after region 2k's along the rows, planes of
    one tile (6 outputs) or more: the kernel's own test, _kernels/regions.py's _pairs); None where
    they do not pair up so."""
    if len(table) == 0 or len(table) % 2:
        return None
    order = np.arange(len(table))
    later = table[0::2, columns.YA + 2] > table[1::2, columns.YA + 2]  # the pair's second first
    order[0::2][later], order[1::2][later] = order[1::2][later], order[0::2][later]
    table = table[order]
    one, two = table[0::2], table[1::2]
    same = [columns.XD, columns.XH, columns.XW, columns.YA, columns.YA + 1,
            *range(columns.YB, columns.OUT + 3), *range(columns.S, columns.S + 3)]
    if ((one[:, same] == two[:, same]).all() and (one[:, columns.YB + 2] == 2).all()
            and (two[:, columns.YA + 2] == one[:, columns.YA + 2] + 1).all()
            and (one[:, columns.OUT + 1] * one[:, columns.OUT + 2] >= 6).all()):
        return table
    return None


def copy_row(base: int, sizes: tuple[int, ...], origin: tuple[int, ...]) -> list[int]:
    """A window's row of the copy table (_kernels/regions.py's COPY_ columns): it starts ``base``
    elements into b, ``sizes`` samples per axis from ``origin`` in a (1-D and 2-D as 3-D)."""
    rank = len(sizes)
    return [base, *(1,) * (3 - rank), *sizes, *(0,) * (3 - rank), *origin]


def source(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """(memory, channels-first) of the channels-last ``a`` ``(N, *S, C)``: ``a`` itself where it
    is C-contiguous, its channels-first memory ``(N, C, *S)`` where it is a channels-last view of
    that (the copies transpose it), else a C-contiguous copy."""
    if a.flags.c_contiguous:
        return a, False
    first = a.transpose(x_first_axes(a.ndim))
    if first.flags.c_contiguous:
        return first, True
    return np.ascontiguousarray(a), False


def pack_into(w: np.ndarray, block: int, out: np.ndarray) -> None:
    """w ``(*K, C, O)`` as (ceil(O / block), *K, C, block), zero past O (the tiles' packed filter:
    the regions' and ``tiled._pack``'s), written into the flat ``out``."""
    *k, c, o = w.shape
    whole, r = o // block, len(k) + 1
    view = out.reshape(-(-o // block), *k, c, block)
    first = w.transpose(r, r - 1, *range(r - 1))  # (O, C, *K): the memory of a channels-first filter
    if first.flags.c_contiguous and layout.runs_on(first, "x", False) and layout.loaded(w.dtype):
        # The default layout's filter, a channels-last view (large enough, float: what the
        # transposition takes): per block, a batch over C of (block x taps) transposed in 8 x 8
        # registers, where NumPy's copy went one value at a time (one thread: 3x3 128 -> 128
        # channels 190 -> 120 us, 4x4 32 -> 64 in blocks of 64 101 -> 49 us).
        taps, flat, dst = math.prod(k), first.reshape(-1), out[:view.size]
        for q in range(-(-o // block)):
            rows = min(block, o - q * block)
            layout.transpose_batches(flat[q * block * c * taps:], dst[q * taps * c * block:], c, rows, taps,
                                     taps, c * taps, block, c * block)
        if o > whole * block:
            view[whole, ..., o - whole * block:] = 0
        return
    if whole:
        view[:whole] = w[..., :whole * block].reshape(*k, c, whole, block).transpose(r, *range(r), r + 1)
    if o > whole * block:
        view[whole, ..., :o - whole * block] = w[..., whole * block:]
        view[whole, ..., o - whole * block:] = 0


def flat_filter(w: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """w's memory as a flat array and w's strides in its elements, with no copy where w is a
    transposed view of contiguous memory (a channels-last view of a channels-first filter);
    else of a contiguous copy."""
    order = sorted(range(w.ndim), key=lambda a: -w.strides[a])
    if not w.transpose(order).flags.c_contiguous or min(w.strides, default=0) < 0:
        w = np.ascontiguousarray(w)
        order = list(range(w.ndim))
    return w.transpose(order).reshape(-1), tuple(s // w.itemsize for s in w.strides)


def check_reach(padded: tuple[int, ...], out: tuple[int, ...], kernel: tuple[int, ...],
                stride: tuple[int, ...], dilation: tuple[int, ...]) -> None:
    """The kernels do not check bounds: refuse outright a call whose windows leave the array."""
    for n, o, k, s, d in zip(padded, out, kernel, stride, dilation):
        if o > stride_dim(n, dilate_dim(k, d), s):
            raise ValueError(f"tiled kernel: {o} outputs with stride {s}, kernel {k} and dilation {d} "
                             f"read past a padded size of {n}")


def inside_outputs(geom: ConvGeometry) -> list[tuple[int, int]]:
    """Per axis, the outputs [first, stop) whose windows lie inside x (none: first == stop)."""
    out = []
    for n, o, k, s, d, (lo, _) in zip(geom.in_spatial, geom.out_spatial, geom.kernel, geom.stride,
                                      geom.rhs_dilation, geom.tight_padding):
        first = max(0, -(-lo // s))  # i * s - lo >= 0
        stop = min(o, max(first, (n - 1 + lo - (k - 1) * d) // s + 1))  # window end <= n - 1
        out.append((first, max(first, stop)))
    return out


@functools.lru_cache(maxsize=64)
def border_samples(geom: ConvGeometry) -> int:
    """Samples per image and channel in the border boxes' windows (what forward copies)."""
    boxes = border_boxes(geom.out_spatial, inside_outputs(geom))
    return sum(math.prod(hi - lo for lo, hi in _window(geom, box)) for box in boxes)


def forward(geom: ConvGeometry, block: int, x: np.ndarray, w: np.ndarray, filter_major: int,
            first: bool = False, inside: bool = True) -> np.ndarray:
    """y ``(N, *out, O)`` of the channels-last x ``(N, *S, C)`` (with ``first``, a channels-last
    view of y written channels-first ``(N, O, *out)``), in one launch: with ``inside`` (x
    C-contiguous), the outputs whose windows lie inside x read x as it is and the boxes around
    them padded copies of their windows; else all outputs read one padded copy of x, made (and
    transposed from a channels-first x) by the same launch."""
    y = aligned_empty(geom.y_shape("channels_first" if first else "channels_last"), x.dtype)
    a, a_first = source(x)
    table, copies, copied = _forward_table(geom, inside)
    buf = scratch("tiled.regions.x" if inside else "tiled.x", (copied,), x.dtype)
    *k, c, o = w.shape
    wt = scratch("tiled.regions.w", (-(-o // block) * math.prod(k) * c * block,), x.dtype)
    pack_into(w, block, wt)
    launch(table, a, buf, c, wt, block, y, first, wt.nbytes > filter_major, copies, a_first)
    return x_to_last(y, "channels_first") if first else y


@functools.lru_cache(maxsize=64)
def _forward_table(geom: ConvGeometry, inside: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """forward's regions, laid out once per geometry: their table (_kernels/regions.py's columns,
    the one filter at 0), the copy table of their windows and the samples those copies hold.
    With ``inside`` the inside region reads x and each border box its own window; else one
    region reads the whole padded x."""
    one = (1,) * geom.rank
    lows = tuple(lo for lo, _ in geom.tight_padding)
    if not inside:
        window = geom.tight_padded
        table = [table_row(1, 0, window, (0,) * geom.rank, geom.kernel, 0, (0,) * geom.rank, one,
                           geom.out_spatial, geom.stride, geom.rhs_dilation)]
        copies = [copy_row(0, window, tuple(-lo for lo in lows))]
        return (np.array(table, np.int64).reshape(-1, columns.COLUMNS),
                np.array(copies, np.int64).reshape(-1, columns.COPY_COLUMNS),
                geom.batch * math.prod(window) * geom.in_channels)
    inner = inside_outputs(geom)
    corner = tuple(f * s - lo for (f, _), s, lo in zip(inner, geom.stride, lows))
    rows = [(0, 0, geom.in_spatial, corner, tuple(f for f, _ in inner), tuple(e - f for f, e in inner), ())]
    base = 0
    for box in border_boxes(geom.out_spatial, inner):
        window = _window(geom, box)
        sizes = tuple(hi - lo for lo, hi in window)
        rows.append((1, base, sizes, (0,) * geom.rank, tuple(lo for lo, _ in box),
                     tuple(hi - lo for lo, hi in box), tuple(lo for lo, _ in window)))
        base += geom.batch * math.prod(sizes) * geom.in_channels
    rows = [row for row in rows if min(row[5]) > 0]
    table = [table_row(source, start, sizes, corner, geom.kernel, 0, at, one, count, geom.stride,
                       geom.rhs_dilation, origin)
             for source, start, sizes, corner, at, count, origin in rows]
    copies = [copy_row(start, sizes, origin) for source, start, sizes, _, _, _, origin in rows if source == 1]
    return (np.array(table, np.int64).reshape(-1, columns.COLUMNS),
            np.array(copies, np.int64).reshape(-1, columns.COPY_COLUMNS), base)


def border_boxes(out: tuple[int, ...], inner: list[tuple[int, int]]) -> list[tuple[tuple[int, int], ...]]:
    """The output box minus the inner box, as disjoint boxes ([first, stop) per axis): along
    each axis in turn, the slabs before and after the inner range, across the axes still whole."""
    boxes = []
    for axis, (first, stop) in enumerate(inner):
        before = tuple(inner[:axis])
        after = tuple((0, n) for n in out[axis + 1:])
        for lo, hi in ((0, first), (stop, out[axis])):
            if hi > lo:
                boxes.append((*before, (lo, hi), *after))
        if stop <= first:  # the inner box is empty: the slabs along this axis hold it all
            break
    return boxes


def _window(geom: ConvGeometry, box: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """The samples of the padded x (x's indices, from -lo) that the outputs of ``box`` read."""
    return tuple((f * s - lo, (e - 1) * s - lo + (k - 1) * d + 1) for (f, e), s, (lo, _), k, d in
                 zip(box, geom.stride, geom.tight_padding, geom.kernel, geom.rhs_dilation))
