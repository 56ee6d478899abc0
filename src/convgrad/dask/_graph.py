"""Blocked graphs of the conv ops: one task per result block, fed by the chunks that hold its
slice of each operand (halos included), and filter / bias gradients summed by a tree.

The arithmetic of blocks (which input range an output block reads, its pads, where boundaries
go) is ``ConvGeometry``'s; this module only lays the blocks out as dask keys.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask.array.core import PerformanceWarning
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from .._dtypes import as_array, is_bfloat16, result_dtype
from .._geometry import ConvGeometry
from . import _blocks
from ._memory import Budget

Range = tuple[int, int]


def lazy(name: str, value: object) -> da.Array:
    """``value`` as a dask array (NumPy and array-likes wrapped), its dtype one the core takes."""
    a = value if isinstance(value, da.Array) else da.asarray(value)
    as_array(name, np.empty(0, a.dtype))  # the core's TypeError for bool, complex, objects
    if any(math.isnan(c) for cs in a.chunks for c in cs):
        raise ValueError(f"{name} has unknown chunk sizes {a.chunks}; call "
                         f"{name}.compute_chunk_sizes() first")
    return a


def small(name: str, value: object) -> da.Array | None:
    """A filter or bias: one chunk, so every block task reads one key."""
    if value is None:
        return None
    a = lazy(name, value)
    return a.rechunk(a.shape) if a.numblocks != (1,) * a.ndim else a


def one_channel_chunk(name: str, a: da.Array, fmt: str, op: str) -> da.Array:
    """``a`` with its channel axis in one chunk: blocks split space and batch, never channels."""
    axis = 1 if fmt == "channels_first" else a.ndim - 1
    if len(a.chunks[axis]) == 1:
        return a
    warnings.warn(f"convgrad.dask.{op}: {name}'s channel axis {axis} has chunks {a.chunks[axis]}; "
                  "rechunking it to one chunk (a shuffle). Chunk only batch and spatial axes.",
                  PerformanceWarning, stacklevel=4)
    return a.rechunk({axis: -1})


def bounds(chunks: Sequence[int]) -> tuple[int, ...]:
    """Chunk sizes as boundaries 0, c0, c0 + c1, ..."""
    return (0, *itertools.accumulate(chunks))


def spans(b: Sequence[int]) -> list[Range]:
    """Boundaries as [start, stop) ranges."""
    return list(itertools.pairwise(b))


def gather(a: da.Array, ranges: Sequence[Range]) -> tuple[list, _blocks.Gather]:
    """The keys of ``a``'s chunks that hold the region ``ranges`` (one per axis) and how to
    assemble it from them."""
    per_axis = []
    for cs, (start, stop) in zip(a.chunks, ranges):
        hits = []
        for i, (lo, hi) in enumerate(spans(bounds(cs))):
            if (lo < stop and start < hi) or (start == stop and lo <= start <= hi and not hits):
                lo2, hi2 = max(lo, start), min(hi, stop)
                hits.append((i, (lo2 - lo, hi2 - lo, lo2 - start)))
        per_axis.append(hits)
    keys = [(a.name, *(i for i, _ in combo)) for combo in itertools.product(*per_axis)]
    shape = tuple(stop - start for start, stop in ranges)
    return keys, _blocks.Gather(shape, tuple(tuple(p for _, p in hits) for hits in per_axis))


class Interned:
    """One object per distinct block description: a graph's interior blocks are equal, and
    pickle sends (and the scheduler keeps) a shared object once."""

    def __init__(self) -> None:
        self._seen: dict = {}

    def __call__(self, block: _blocks.Block) -> _blocks.Block:
        key = (block.a, block.b, tuple(sorted(block.kwargs.items())), block.shape, block.dtype,
               block.data_format, block.compute, block.split)
        return self._seen.setdefault(key, block)


@dataclass(frozen=True)
class Layout:
    """Where batch, channels and the spatial axes sit in an array of ``data_format``."""

    rank: int
    fmt: str

    @property
    def channel(self) -> int:
        return 1 if self.fmt == "channels_first" else self.rank + 1

    @property
    def spatial(self) -> tuple[int, ...]:
        first = 2 if self.fmt == "channels_first" else 1
        return tuple(range(first, first + self.rank))

    def full(self, batch: Range, channels: int, space: Sequence[Range]) -> list[Range]:
        """Per-axis ranges of a block: ``batch``, all ``channels``, ``space``."""
        if self.fmt == "channels_first":
            return [batch, (0, channels), *space]
        return [batch, *space, (0, channels)]

    def index(self, b: int, space: Sequence[int]) -> tuple[int, ...]:
        """A block's chunk index (the channel axis is one chunk)."""
        return (b, 0, *space) if self.fmt == "channels_first" else (b, *space, 0)

    def chunks(self, batch: tuple[int, ...], channels: int, space: Sequence[tuple[int, ...]]) -> tuple:
        """dask ``chunks`` of an array with these batch and spatial chunks and one channel chunk."""
        if self.fmt == "channels_first":
            return (tuple(batch), (channels,), *space)
        return (tuple(batch), *space, (channels,))


def _sizes(b: Sequence[int]) -> tuple[int, ...]:
    return tuple(hi - lo for lo, hi in spans(b))


def _kwargs(geom: ConvGeometry, fmt: str, pads: Sequence[Range]) -> dict:
    return {"stride": geom.stride, "padding": tuple(pads), "dilation": geom.rhs_dilation,
            "groups": geom.feature_group_count, "data_format": fmt}


def _array(name: str, layer: dict, deps: list, chunks: tuple, dtype: np.dtype) -> da.Array:
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[d for d in deps if d is not None])
    return da.Array(graph, name, chunks=chunks, dtype=dtype)


def _key(a: da.Array | None) -> tuple | None:
    return None if a is None else (a.name, *(0,) * a.ndim)


def whole(name: str, run: object, arrays: list[da.Array | None], shape: tuple[int, ...], dtype: np.dtype,
          **kwargs: object) -> da.Array:
    """One task running the core's ``run(*arrays, **kwargs)`` on whole arrays: for a geometry
    with an empty spatial input, which has no blocks (its result is small: pads alone)."""
    arrays = [None if a is None else a.rechunk(-1) for a in arrays]
    layer = {(name, *(0,) * len(shape)): (_blocks.whole, run, [_key(a) for a in arrays], kwargs)}
    return _array(name, layer, arrays, tuple((n,) for n in shape), dtype)


def forward_blocks(geom: ConvGeometry, chunks: tuple, fmt: str
                   ) -> list[tuple[tuple[int, ...], list[Range], list[Range], list[Range]]]:
    """Per y block, for x chunked as ``chunks``: its index, its ranges in y, the x ranges it
    reads and its pads."""
    lay = Layout(geom.rank, fmt)
    y_bounds = [geom.output_bounds(i, bounds(chunks[ax])) for i, ax in enumerate(lay.spatial)]
    out = []
    for bi, batch in enumerate(spans(bounds(chunks[0]))):
        for idx in itertools.product(*(range(len(b) - 1) for b in y_bounds)):
            y_space = [(y_bounds[i][j], y_bounds[i][j + 1]) for i, j in enumerate(idx)]
            blocks = [geom.forward_block(i, j0, j1) for i, (j0, j1) in enumerate(y_space)]
            out.append(((bi, *idx), lay.full(batch, geom.out_channels, y_space),
                        lay.full(batch, geom.in_channels, [r for r, _ in blocks]), [p for _, p in blocks]))
    return out


def input_blocks(geom: ConvGeometry, chunks: tuple, fmt: str
                 ) -> list[tuple[tuple[int, ...], list[Range], list[Range] | None, list[Range]]]:
    """Per dx block, for dy chunked as ``chunks``: its index, its ranges in x, the dy ranges it
    reads (None where no window reaches it) and its pads."""
    lay = Layout(geom.rank, fmt)
    x_bounds = [geom.input_bounds(i, bounds(chunks[ax])) for i, ax in enumerate(lay.spatial)]
    out = []
    for bi, batch in enumerate(spans(bounds(chunks[0]))):
        for idx in itertools.product(*(range(len(b) - 1) for b in x_bounds)):
            x_space = [(x_bounds[i][j], x_bounds[i][j + 1]) for i, j in enumerate(idx)]
            parts = [geom.input_grad_block(i, p0, p1) for i, (p0, p1) in enumerate(x_space)]
            reached = all(j0 < j1 for (j0, j1), _ in parts)
            out.append(((bi, *idx), lay.full(batch, geom.in_channels, x_space),
                        lay.full(batch, geom.out_channels, [r for r, _ in parts]) if reached else None,
                        [p for _, p in parts]))
    return out


def _shape(ranges: Sequence[Range]) -> tuple[int, ...]:
    return tuple(hi - lo for lo, hi in ranges)


def _chunked(lay: Layout) -> tuple[int, ...]:
    return (0, *lay.spatial)


def forward(geom: ConvGeometry, x: da.Array, w: da.Array, bias: da.Array | None, fmt: str,
            budget: Budget, op: str = "conv") -> da.Array:
    """y = conv(x, w) + bias: one task per y block, reading x's chunks under its windows."""
    lay = Layout(geom.rank, fmt)
    dtype = result_dtype(*(np.empty(0, a.dtype) for a in (x, w, bias) if a is not None))[0]
    comp = result_dtype(np.empty(0, x.dtype), np.empty(0, w.dtype))[1]
    w_shape = geom.w_shape(fmt)

    def items(chunks: tuple) -> list:
        return [([_shape(xr), w_shape], _shape(yr), ("forward", _shape(xr), w_shape, _kwargs(geom, fmt, p)))
                for _, yr, xr, p in forward_blocks(geom, chunks, fmt)]

    name = f"convgrad-{op}-{tokenize(geom, fmt, x, w, bias, budget)}"
    if 0 in geom.in_spatial:
        return whole(name, _blocks.conv, [x, w, bias], geom.y_shape(fmt), dtype,
                     **_kwargs(geom, fmt, geom.padding))
    budget.check(op, comp, items, x.chunks, x.shape, "x", _chunked(lay))
    layer, intern = {}, Interned()
    for (bi, *idx), _, x_ranges, pads in forward_blocks(geom, x.chunks, fmt):
        keys, g = gather(x, x_ranges)
        kwargs = _kwargs(geom, fmt, pads)
        pinned, split = budget.pinned("forward", _shape(x_ranges), w_shape, kwargs, comp)
        block = intern(_blocks.Block(g, None, {**kwargs, **pinned}, (), dtype, fmt, split=split))
        layer[(name, *lay.index(bi, idx))] = (_blocks.forward, block, keys, _key(w), _key(bias))
    space = [_sizes(geom.output_bounds(i, bounds(x.chunks[ax]))) for i, ax in enumerate(lay.spatial)]
    return _array(name, layer, [x, w, bias], lay.chunks(x.chunks[0], geom.out_channels, space), dtype)


def input_grad(geom: ConvGeometry, dy: da.Array, w: da.Array, bias: da.Array | None, fmt: str,
               budget: Budget, op: str = "conv_input_grad", convention: str = "adjoint") -> da.Array:
    """dx = conv_input_grad(dy, w, convention=convention) (+ bias): one task per dx block,
    gathering dy with its halo ('transpose' for a transposed conv, which never conjugates)."""
    lay = Layout(geom.rank, fmt)
    res, comp = result_dtype(np.empty(0, dy.dtype), np.empty(0, w.dtype))
    dtype = res if bias is None else result_dtype(np.empty(0, res), np.empty(0, bias.dtype))[0]
    w_shape = geom.w_shape(fmt)

    def items(chunks: tuple) -> list:
        return [([_shape(yr), w_shape], _shape(xr),
                 ("input_grad", _shape(xr), w_shape, _kwargs(geom, fmt, p)))
                for _, xr, yr, p in input_blocks(geom, chunks, fmt) if yr is not None]

    name = f"convgrad-{op}-{tokenize(geom, fmt, dy, w, bias, budget, convention)}"
    if 0 in geom.in_spatial:
        return whole(name, _blocks.transpose, [dy, w, bias], geom.x_shape(fmt), dtype,
                     input_shape=geom.x_shape(fmt), convention=convention, **_kwargs(geom, fmt, geom.padding))
    budget.check(op, comp, items, dy.chunks, dy.shape, "dy", _chunked(lay))
    layer, intern = {}, Interned()
    for (bi, *idx), x_ranges, y_ranges, pads in input_blocks(geom, dy.chunks, fmt):
        shape = _shape(x_ranges)
        if y_ranges is None:
            keys, block = [], intern(_blocks.Block(None, None, {}, shape, res, fmt))
        else:
            keys, g = gather(dy, y_ranges)
            kwargs = _kwargs(geom, fmt, pads)
            pinned, split = budget.pinned("input_grad", shape, w_shape, kwargs, comp)
            kwargs = {**kwargs, **pinned, "convention": convention}
            block = intern(_blocks.Block(g, None, kwargs, shape, res, fmt, split=split))
        layer[(name, *lay.index(bi, idx))] = (_blocks.input_grad, block, keys, _key(w), _key(bias))
    space = [_sizes(geom.input_bounds(i, bounds(dy.chunks[ax]))) for i, ax in enumerate(lay.spatial)]
    return _array(name, layer, [dy, w, bias], lay.chunks(dy.chunks[0], geom.in_channels, space), dtype)


def accumulation(dtype: np.dtype) -> np.dtype:
    """The dtype a tree sums partials in: float64 for float32, float16 and bfloat16, complex128
    for complex64 (cast back once at the end); the dtype itself otherwise (float64, complex128,
    int64: exact or the widest there is)."""
    if (dtype.kind == "f" and dtype.itemsize < 8) or is_bfloat16(dtype):
        return np.dtype(np.float64)
    if dtype.kind == "c" and dtype.itemsize < 16:
        return np.dtype(np.complex128)
    return dtype


def tree(name: str, layer: dict, leaves: list, split_every: int, dtype: np.dtype, ndim: int) -> tuple:
    """Sum ``leaves`` (keys, in a fixed order) by a tree of fan-in ``split_every``, then cast to
    ``dtype``; returns the final key."""
    if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
        raise ValueError(f"split_every must be an int >= 2, got {split_every!r}")
    level = 0
    while len(leaves) > 1:
        nxt = []
        for i in range(0, len(leaves), split_every):
            key = (f"{name}-sum{level}", i // split_every)
            layer[key] = (_blocks.add, *leaves[i:i + split_every])
            nxt.append(key)
        leaves, level = nxt, level + 1
    final = (name, *(0,) * ndim)
    layer[final] = (_blocks.cast, leaves[0], dtype)
    return final


def filter_grad(geom: ConvGeometry, x: da.Array, dy: da.Array, fmt: str, budget: Budget,
                split_every: int, op: str = "conv_filter_grad", convention: str = "adjoint") -> da.Array:
    """dw = conv_filter_grad(x, dy, convention=convention): one partial per y block (x with its
    halo, dy's block), tree-summed in the ``accumulation`` dtype and cast at the end; the graph
    fixes the order of the sums."""
    lay = Layout(geom.rank, fmt)
    res, comp = result_dtype(np.empty(0, x.dtype), np.empty(0, dy.dtype))
    acc = accumulation(res)
    w_shape = geom.w_shape(fmt)

    def items(chunks: tuple) -> list:
        return [([_shape(xr), _shape(yr)], w_shape,
                 ("filter_grad", _shape(xr), w_shape, _kwargs(geom, fmt, p)))
                for _, yr, xr, p in forward_blocks(geom, chunks, fmt)]

    name = f"convgrad-{op}-{tokenize(geom, fmt, x, dy, budget, split_every, convention)}"
    if 0 in geom.in_spatial:
        return whole(name, _blocks.filter_grad_whole, [x, dy], w_shape, res, filter_shape=w_shape,
                     convention=convention, **_kwargs(geom, fmt, geom.padding))
    budget.check(op, comp, items, x.chunks, x.shape, "x", _chunked(lay))
    layer: dict = {}
    leaves, intern = [], Interned()
    for n, (_, y_ranges, x_ranges, pads) in enumerate(forward_blocks(geom, x.chunks, fmt)):
        x_keys, gx = gather(x, x_ranges)
        y_keys, gy = gather(dy, y_ranges)
        kwargs = _kwargs(geom, fmt, pads)
        pinned, split = budget.pinned("filter_grad", _shape(x_ranges), w_shape, kwargs, comp)
        kwargs = {**kwargs, **pinned, "convention": convention}
        block = _blocks.Block(gx, gy, kwargs, w_shape, acc, fmt, comp, split)
        key = (f"{name}-part", n)
        layer[key] = (_blocks.filter_grad, intern(block), x_keys, y_keys)
        leaves.append(key)
    tree(name, layer, leaves, split_every, res, len(w_shape))
    return _array(name, layer, [x, dy], tuple((s,) for s in w_shape), res)


def bias_grad(dy: da.Array, fmt: str, split_every: int, op: str = "conv_bias_grad") -> da.Array:
    """db: one partial sum per dy chunk (float64 for float32), tree-summed, cast at the end."""
    if dy.ndim < 3:
        raise ValueError(f"dy must have at least 3 dims (N, channels, *spatial), got dy.shape={dy.shape}")
    lay = Layout(dy.ndim - 2, fmt)
    res = result_dtype(np.empty(0, dy.dtype))[0]
    acc = accumulation(res)
    axes = tuple(a for a in range(dy.ndim) if a != lay.channel)
    dy = one_channel_chunk("dy", dy, fmt, op)
    name = f"convgrad-{op}-{tokenize(dy, fmt, split_every)}"
    layer: dict = {}
    leaves = []
    for n, idx in enumerate(itertools.product(*(range(k) for k in dy.numblocks))):
        key = (f"{name}-part", n)
        layer[key] = (_blocks.bias_grad, (dy.name, *idx), axes, acc)
        leaves.append(key)
    tree(name, layer, leaves, split_every, res, 1)
    return _array(name, layer, [dy], ((dy.shape[lay.channel],),), res)
