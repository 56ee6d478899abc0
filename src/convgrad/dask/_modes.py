"""Padding modes on dask arrays: x padded lazily by the mode (``da.pad``: the border blocks copy
samples near the border, or from the other end for 'circular'), the conv run VALID block by
block, and the input gradient folded back onto the samples the pads copied.

The map, its limits and messages are the core's (``_padmode.PadMap``); only the two lazy steps
are here.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from .._padmode import PadMap

# The canonical names in ``da.pad``'s (NumPy's) spelling.
DASK_MODE = {"reflect": "reflect", "symmetric": "symmetric", "replicate": "edge", "circular": "wrap"}


def _first(fmt: str) -> int:
    return 2 if fmt == "channels_first" else 1


def pad(x: da.Array, pad_map: PadMap, fmt: str) -> da.Array:
    """x padded by ``pad_map``'s mode to its VALID geometry's input size (a lazy copy of the
    border blocks; the interior chunks are x's own)."""
    first = _first(fmt)
    widths = [(0, 0)] * x.ndim
    widths[first:first + len(pad_map.pads)] = pad_map.pads
    out = da.pad(x, widths, mode=DASK_MODE[pad_map.mode])
    return _crop(out, first, pad_map.valid.in_spatial)


def _crop(a: da.Array, first: int, sizes: tuple[int, ...]) -> da.Array:
    """``a`` cut to ``sizes`` along its spatial axes (a transposed conv's last windows may end
    before the pads do: the samples past them are read by none)."""
    if tuple(a.shape[first:first + len(sizes)]) == tuple(sizes):
        return a
    return a[(slice(None),) * first + tuple(slice(0, n) for n in sizes)]


def fold(g: da.Array, pad_map: PadMap, fmt: str) -> da.Array:
    """The adjoint of ``pad``: g (the VALID conv's input gradient) with each pad sample's value
    added onto the sample it copies, axis by axis in the reverse order of the padding."""
    first = _first(fmt)
    full = [n + lo + hi for n, (lo, hi) in zip(pad_map.sizes, pad_map.pads)]
    missing = [(0, 0)] * g.ndim
    missing[first:first + len(full)] = [(0, f - v) for f, v in zip(full, pad_map.valid.in_spatial)]
    if any(after for _, after in missing):  # the samples no window read get no gradient
        g = da.pad(g, missing, mode="constant")
    for i in reversed(range(len(pad_map.sizes))):
        g = _fold_axis(g, first + i, pad_map.sizes[i], pad_map.pads[i][0], pad_map.borders[i])
    return g


def _fold_axis(g: da.Array, axis: int, n: int, lo: int, borders: tuple) -> da.Array:
    """Axis ``axis`` of g (n + pads long) folded to its n inner samples."""
    def along(index: object) -> tuple:
        return (slice(None),) * axis + (index,)

    out = g[along(slice(lo, lo + n))]
    for where, src in borders:
        strip = g[along(where)]
        target = np.asarray(src) - lo
        first, last = int(target.min()), int(target.max())
        if first == last:  # 'replicate': every pad sample copies the edge one
            placed = strip.sum(axis=axis, keepdims=True)
        else:  # one pad sample per input sample, in order or reversed (reflect, symmetric, circular)
            order = np.argsort(target)
            assert np.array_equal(target[order], np.arange(first, last + 1)), target
            in_order = np.array_equal(order, np.arange(len(order)))
            placed = strip if in_order else da.take(strip, order, axis=axis)
        widths = [(0, 0)] * g.ndim
        widths[axis] = (first, n - 1 - last)
        out = out + da.pad(placed, widths, mode="constant").astype(out.dtype, copy=False)
    return out
