"""Dense convolutions as register-tiled direct loops compiled by Numba.

Every GEMM formulation of a conv with few channels (3-D convs with 16, dilated 64 -> 64) runs a
thin GEMM that BLAS takes far below peak, after packing each input sample once per tap. The
tiled kernels pack no input: for each output row they hold a tile of 8 outputs x 16 or 32
channels (or 6 x 64) of sums in vector registers while they walk the taps and input channels,
reading x from the padded input. With only a few output channels (a 3-channel stem's input
gradient) they hold dot products along the input channels instead, 6 outputs x 3 channels.

The forward runs any stride and dilation. The input gradient is the same kernel: dx is the conv
of dy, padded by ``(k - 1) * d - pad`` on each side, with the kernel flipped and its channel
axes swapped; with a stride, each sub-pixel phase of dx (see subpixel.py) is such a conv,
written in place, all phases in one launch (_regions.py), which also pads dy. A channels-last
strided forward reads x as it is where its windows lie inside x, and padded copies of the border
windows only; other strided forwards pad x in the launch of their tiles.
The filter gradient holds tiles of 16 input x 16 output channels (8 x 16 in
float64, or 4 x 64) over a chunk of output rows; each thread sums its share of the rows into its
own copy of dw, and the copies are added at the end. In float32 it runs instead, where the model
finds it faster, as a GEMM over an implicit im2col of x (_kernels/filter_runs.py): tiles of 6
filter rows x 64 output channels along a tap row's run of (kw, c) (21 for a 3-channel 7x7 stem,
where tiles of input channels would be 3 of 4 full), the threads splitting the output channels
before the rows; with few output channels (a 3-D conv's 16, which would fill a quarter of those
tiles) as the same GEMM with the vectors along the run and 8 output channels broadcast
(_kernels/thin_filter.py), the threads claiming chunks of rows.

Channels-first callers: the padding pass transposes x (or dy) as it copies it, and the tiles
store y and dx channels-first themselves (the 6 x 64 tiles 48 outputs of a plane per channel at
a time, through a staging block; a large y past the caches: tile_stream.streams_first). The float32 filter
gradients read channels-first dy as it is: the thin kernel broadcasts its values, the runs kernel
moves each chunk of rows into a panel in the first cache. A float32 1x1 conv (stride 1, unpadded)
runs instead as GEMMs on the NCHW arrays as they are (_kernels/pointwise.py), with no copy at all.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from functools import partial

import numpy as np

from .. import _transpose
from .._budget import check_fits
from .._engine import Op, Planner, Prepared, Refusal
from .._geometry import ConvGeometry
from .._layout import (
    flip_swap_filter,
    pad_or_crop,
    w_from_last,
    w_to_last,
    x_first_axes,
    x_from_last,
    x_to_last,
)
from . import _kernels, _regions, _threads
from ._common import Phase, as_3d, no_complex, phase_axes, plain
from ._kernels import layout, pointwise, thin_filter, tile_stream
from ._kernels import regions as columns
from ._kernels._simd import VECTOR_BYTES
from ._machine import figures
from ._scratch import aligned_empty, empty_for, scratch

# The cost model (figures in calibration.json): flops at the rate of the tile that runs (wider
# tiles faster; 3-tap tiles faster where a row's taps share their inputs; dot-product tiles for
# few output channels), channels in whole blocks, a row narrower than the tile one output at a time
# (NARROW_SLOWDOWN), the filter gradient's last input channels past a whole tile one at a time
# (RAGGED_CHANNELS_SLOWDOWN); plus the padded copy, each tile's setup and stores (what makes a
# short reduction, a 1x1 conv, run below the tiles' rate) and writing y; times the fitted factor.
# Convs with at most a few output channels run dot-product tiles of 6 outputs x DOT channels.
DOT = 3
# The padded input is written by the pad kernel on the cores Numba may use; below
# PARALLEL_PAD_BYTES NumPy pads on the calling thread: starting the threads costs more.
PARALLEL_PAD_BYTES = 1 << 18
# A packed filter larger than this is walked block by block (each thread keeps to its blocks),
# not row by row through every block: half the second-level cache of this machine kind (2 MiB
# per core). 256 -> 256 channels, 3x3 (2.4 MB): see the A/B in the kernel's docstring.
FILTER_MAJOR_BYTES = 1 << 20


class Tiled:
    name = "tiled"
    nonfinite_skips = (("input_grad", "multiplies w by zeros outside the direct sum, NaN for an inf"),)
    # dy's padding zeros multiply w; dy itself meets only the taps of the direct sum: only w is
    # checked per call (the pass over transposed_k4_s2's 1.5 MiB dy: 19-23 us on one thread,
    # loaded, of a call of 1.1-1.3 ms).
    nonfinite_operands = (("input_grad", (1,)),)

    def keeps_nonfinite(self, op: Op, geom: ConvGeometry, dtype: np.dtype, layout: str) -> bool:
        """The channels-first 1x1 kernels (``_pointwise_first``) sum exactly the direct sum's
        products, no padding and no zeros: their input gradient keeps its inf and NaN."""
        return layout == "channels_first" and np.dtype(dtype) == np.float32 and _pointwise(geom)

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        fig = figures("tiled")
        why_not = _refuse(geom, dtype)
        if why_not:
            return Refusal(self.name, why_not)
        block = _block(geom, op, dtype)
        padded = _padded_bytes(geom, op, dtype, block)
        what = "the padded dy" if op == "input_grad" else "the padded input"
        check_fits(f"{what} of this {op}", padded, limit)
        copy = padded / fig.COPY_BYTES_PER_S
        kernel = _kernels.tiled_filter_grad if op == "filter_grad" else _kernels.tiled_forward
        penalty = planner.load_seconds(dtype, kernel, _kernels.pad_copy)
        choices: dict[str, object] = {"block": block}
        kernel_first = None  # a filter-gradient kernel that reads channels-first dy as it is
        if op == "filter_grad" and _thin_fit(geom, dtype):
            parts = _thin_parts(geom)
            workspace = _thin_workspace(geom, dtype, parts)
            check_fits(f"the padded input and {parts} partial filter gradients", workspace, limit)
            choices.update(block=thin_filter.OUTS, tile="8x48 thin", parts=parts)
            run = partial(_filter_grad_thin, geom, parts)
            kernel_first = partial(_filter_grad_thin, geom, parts, first=True)
            penalty = planner.load_seconds(dtype, _kernels.thin_filter_grad, _kernels.pad_copy)
        elif op == "filter_grad" and _runs_fit(geom, dtype):
            row_parts, workspace = _runs_workspace(geom, dtype, padded)
            check_fits(f"the padded input, dy with 64k channels and {row_parts} partial filter gradients",
                       workspace, limit)
            choices.update(block=64, tile="6x64 runs", parts=row_parts)
            run = partial(_filter_grad_runs, geom, row_parts)
            kernel_first = partial(_filter_grad_runs, geom, row_parts, first=True)
            penalty = planner.load_seconds(dtype, _kernels.filter_grad_runs, _kernels.pad_copy)
        elif op == "filter_grad":
            item, c = dtype.itemsize, geom.in_channels
            o = -(-geom.out_channels // block) * block
            dy_copy = 0 if o == geom.out_channels else geom.batch * math.prod(geom.out_spatial) * o * item
            cp = _filter_channels(c, block, dtype) if c else 0
            x_bytes = padded if cp == c else padded // c * cp  # x padded with cp channels, one copy
            # partial filter gradients: one per core, at most one per output row
            parts = max(1, min(_threads.cores(), geom.batch * math.prod(geom.out_spatial[:-1])))
            workspace = x_bytes + dy_copy + parts * math.prod(geom.kernel) * cp * o * item
            check_fits(f"the padded input, dy with {o} channels and {parts} partial filter gradients",
                       workspace, limit)
            choices.update(channels=cp, parts=parts, tile=_filter_tile(block, dtype))
            run = partial(_filter_grad, geom, block, cp, parts)
        else:
            out, channels = _output(geom, op)
            y_bytes = geom.batch * math.prod(out) * channels * dtype.itemsize
            copy += _tiles_seconds(geom, op, block) + y_bytes / fig.WRITE_BYTES_PER_S
            workspace = padded + _packed_bytes(geom, op, dtype, block)
            choices["spreads"] = _spreads(geom, op, block)
            if op == "forward":
                run = partial(_forward, block, geom)
                first = partial(_run_first, partial(_forward, block, geom, first=True), op)
            elif all(s == 1 for s in geom.stride):
                run = partial(_transpose.input_grad(geom), run=partial(_forward, block))
                first = partial(_transpose.input_grad(geom, "channels_first"),
                                run=partial(_forward, block, first=True))
            else:
                run = partial(_strided_input_grad, geom, block)
                penalty += planner.load_seconds(dtype, _kernels.regions_forward)
                first = partial(_run_first, partial(_strided_input_grad, geom, block, first=True), op)
        if choices.get("tile") == "8x48 thin":
            compute = _thin_seconds(geom)
        elif choices.get("tile") == "6x64 runs":
            compute = _runs_seconds(geom) + _runs_partials_seconds(geom, first=False)
        else:
            compute = _compute_seconds(geom, op, block, dtype)
        seconds = (compute + copy + fig.CALL_SECONDS) * fig.FITTED[op]
        seconds += penalty
        if op == "filter_grad" and _pointwise_last_fits(geom, dtype):  # channels-last 1x1: no copies
            run, seconds, workspace, parts = _pointwise_last(geom, dtype, limit, planner)
            choices = {"block": 2 * VECTOR_BYTES // dtype.itemsize, "tile": "6x2L pointwise", "parts": parts}
        # Channels-first: the padding pass transposes the operands as it copies them; the tiles
        # write y and dx channels-first; only dw (small) is transposed on its own.
        back = 0.0
        if op == "filter_grad":
            fl = figures("_layout")
            rate = fl.COMPILED_TRANSPOSE_BYTES_PER_S if layout.loaded(dtype) else fl.TRANSPOSE_BYTES_PER_S
            back = 2 * math.prod(geom.w_shape()) * dtype.itemsize / rate
            first = kernel_first if kernel_first is not None else partial(_run_first, run, op)
            if choices.get("tile") == "6x64 runs":  # its channels-first pass after the kernel
                back += (_runs_partials_seconds(geom, first=True)
                         - _runs_partials_seconds(geom, first=False)) * fig.FITTED[op]
        first_seconds = seconds + back + planner.load_seconds(dtype, _kernels.pad_copy_first)
        first_workspace = first_choices = None
        if _pointwise(geom) and dtype == np.float32:  # channels-first 1x1: GEMMs on NCHW as it is
            first, first_seconds, first_workspace, first_choices = _pointwise_first(op, geom, dtype, planner)
        return Prepared(self.name, seconds, workspace, run, choices, run_first=first,
                        first_seconds=first_seconds, first_workspace=first_workspace,
                        first_choices=first_choices)


def _pointwise(geom: ConvGeometry) -> bool:
    """A 1x1 stride-1 unpadded conv: channels-first, a GEMM per image on x's (C, S) as it is (in
    float32: the kernels' 6 x 64 tiles of sums fill the vector registers; float64's would spill)."""
    return (all(k == 1 for k in geom.kernel) and all(s == 1 for s in geom.stride)
            and not any(lo or hi for lo, hi in geom.tight_padding))


def _pointwise_first(op: Op, geom: ConvGeometry, dtype: np.dtype, planner: Planner):
    """(run_first, its seconds, its workspace, its choices) of a channels-first 1x1 conv: the
    pointwise kernels (one launch, no copy of x, dy or the result; the filter gradient's partial
    sums, a fixed number that the threads claim, are its workspace)."""
    fig = figures("tiled")
    chunks = geom.batch * -(-math.prod(geom.in_spatial) // pointwise.CHUNK)
    part = math.prod(_pointwise_part(geom)) * dtype.itemsize
    # a large dw in fewer parts (each thread still one): every part is zeroed, added into at each
    # of its chunks and summed, 4 MiB each for 2048 -> 512 channels
    parts = max(1, min(pointwise.PARTS, chunks, max(2, pointwise.PARTS_BYTES // max(1, part))))
    workspace = parts * part if op == "filter_grad" else 0
    seconds = geom.flops / fig.POINTWISE_FIRST_FLOPS_PER_S[op] + fig.CALL_SECONDS
    if op == "filter_grad":
        load = planner.load_seconds(dtype, _kernels.pointwise_filter_grad_first, _kernels.transpose_batches)
    else:
        load = planner.load_seconds(dtype, _kernels.pointwise_first)
    choices = {"tile": "channels-first 1x1 GEMM", **({"parts": parts} if op == "filter_grad" else {})}
    return partial(_run_pointwise_first, op, geom, parts), seconds + load, workspace, choices


def _pointwise_last_fits(geom: ConvGeometry, dtype: np.dtype) -> bool:
    """Whether a channels-last filter gradient runs the 1x1 kernel on x and dy as they are
    (``_pointwise_last``): a 1x1 conv in float32 with 32-byte vectors (AVX2, where it was
    measured; AVX-512 keeps its plans) within the kernel's bounds (``pointwise.LAST_*``: past
    them im2col's SGEMM ran faster)."""
    if not (VECTOR_BYTES == 32 and dtype == np.float32 and _pointwise(geom)):
        return False
    rows, columns, _ = _pointwise_last_sides(geom, dtype)
    row = columns * dtype.itemsize
    return (rows * row <= pointwise.LAST_PART_BYTES and row <= pointwise.LAST_ROW_BYTES
            and geom.batch * math.prod(geom.in_spatial) >= pointwise.LAST_POSITIONS)


def _pointwise_last(geom: ConvGeometry, dtype: np.dtype, limit: int, planner: Planner):
    """(run, seconds, workspace, parts) of a channels-last 1x1 filter gradient: one launch of
    ``pointwise.pointwise_filter_grad_last`` on x (N * S, C) and dy (N * S, O) as they are, its
    partial sums (a fixed number the threads claim, as the channels-first kernel's) summed after.
    Its rate is the channels-first kernel's (the same tiles; one thread, loaded, 8 x 256 -> 64
    channels of 56 x 56, in one process: 12.6 against 12.5 ms)."""
    fig = figures("tiled")
    rows, columns, _ = _pointwise_last_sides(geom, dtype)
    chunks = -(-geom.batch * math.prod(geom.in_spatial) // pointwise.LAST_CHUNK)
    part = rows * columns * dtype.itemsize
    parts = max(1, min(pointwise.PARTS, chunks, max(2, pointwise.PARTS_BYTES // max(1, part))))
    workspace = parts * part
    check_fits(f"{parts} partial filter gradients", workspace, limit)
    seconds = geom.flops / fig.POINTWISE_FIRST_FLOPS_PER_S["filter_grad"] + fig.CALL_SECONDS
    seconds += planner.load_seconds(dtype, pointwise.pointwise_filter_grad_last)
    return partial(_run_pointwise_last, geom, parts), seconds, workspace, parts


def _pointwise_last_sides(geom: ConvGeometry, dtype: np.dtype) -> tuple[int, int, bool]:
    """(rows, columns, swapped) of one partial sum of the channels-last 1x1 kernel: its vectors
    run along the side with fewer channels, rounded up to its tiles' 2 vectors, so that a chunk's
    rows of that operand stay in the first cache: dw (C, O) or, swapped (C < O), dw.T (O, C).
    One thread, CPU time, loaded, 8 images of 56 x 56: 64 -> 256 channels unswapped 15.7 against
    im2col's 14.8 ms, swapped 12.8 against 13.9 (PyTorch 13.0 channels_last), 64 -> 128 swapped
    7.5 against 8.0 (7.9)."""
    pair = 2 * VECTOR_BYTES // np.dtype(dtype).itemsize
    c, o = geom.in_channels, geom.out_channels
    swapped = c < o
    rows, side = (o, c) if swapped else (c, o)
    return rows, -(-side // pair) * pair, swapped


def _run_pointwise_last(geom: ConvGeometry, parts: int, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dw ``(*1, C, O)`` of a channels-last 1x1 conv: x ``(N, *S, C)``, dy ``(N, *S, O)``."""
    c, o = geom.in_channels, geom.out_channels
    p = geom.batch * math.prod(geom.in_spatial)
    if not (p and c and o):
        return np.zeros(geom.w_shape("channels_last"), dtype=x.dtype)
    rows, columns, swapped = _pointwise_last_sides(geom, x.dtype)
    acc = scratch("tiled.pointwise_last", (parts, rows, columns), x.dtype)
    a, b = np.ascontiguousarray(x).reshape(p, c), np.ascontiguousarray(dy).reshape(p, o)
    _threads.for_numba()
    pointwise.pointwise_filter_grad_last(*((b, a) if swapped else (a, b)), acc)
    # the parts summed in their order (the same bits whatever the thread count), cropped
    summed = acc.sum(axis=0)[:, :(c if swapped else o)]
    return np.ascontiguousarray(summed.T if swapped else summed).reshape(geom.w_shape("channels_last"))


def _pointwise_part(geom: ConvGeometry) -> tuple[int, int]:
    """The shape of one partial filter gradient of the channels-first 1x1 kernel: dw.T, (C, O
    rounded up to 64), or where C < O (``_pointwise_swapped``) dw, (O, C rounded up to 64)."""
    if _pointwise_swapped(geom):
        return geom.out_channels, -(-geom.in_channels // 64) * 64
    return geom.in_channels, -(-geom.out_channels // 64) * 64


def _pointwise_swapped(geom: ConvGeometry) -> bool:
    """Whether the channels-first 1x1 filter gradient runs its kernel on (dy, x), not (x, dy):
    each chunk moves its second operand into a panel (8 x 8 transposes), and the one with fewer
    channels is the smaller move (x for 64 -> 256 channels, a quarter of dy); its parts sum to dw
    itself, with no transposition after; the same sums in the same order (the same bits).
    With 32-byte vectors, where it was measured (AVX-512 keeps its order): one thread, CPU time,
    loaded, the kernel and its pass after, in one process, 8 images of 56 x 56: 64 -> 256
    channels 14.5 against 16.2 ms (PyTorch 12.3-13.3 in other processes), 64 -> 128 7.8 against
    8.0, 16 -> 64 1.15 against 1.46; 128 -> 512 of 28 x 28 and 256 -> 1024 of 14 x 14 the same."""
    c, o = geom.in_channels, geom.out_channels
    if VECTOR_BYTES != 32 or c >= o:
        return False
    pair = 2 * VECTOR_BYTES // 4  # float32 channels of one pass of the tiles

    def tiles(rows: int, columns: int) -> int:  # the tiles' passes per chunk: groups of 6 x pairs
        return -(-rows // 6) * -(-columns // pair)

    return tiles(o, c) <= tiles(c, o)  # not for a few input channels: 3 -> 64 is 4 passes, 11 swapped


def _run_pointwise_first(op: Op, geom: ConvGeometry, parts: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The op of a 1x1 conv on channels-first (x, w), (dy, w) or (x, dy): x ``(N, C, *S)``,
    w ``(O, C, *1)``, dy ``(N, O, *S)``."""
    n, c, o, s = geom.batch, geom.in_channels, geom.out_channels, math.prod(geom.in_spatial)
    if op == "filter_grad":
        if not (n and s and o and c):
            return np.zeros(geom.w_shape(), dtype=a.dtype)
        acc = scratch("tiled.pointwise", (parts, *_pointwise_part(geom)), a.dtype)
        _threads.for_numba()
        if _pointwise_swapped(geom):  # the parts hold dw, C rounded up to 64: summed and cropped
            _kernels.pointwise_filter_grad_first(b.reshape(n, o, s), a.reshape(n, c, s), acc)
            return np.ascontiguousarray(acc.sum(axis=0)[:, :c]).reshape(geom.w_shape())
        _kernels.pointwise_filter_grad_first(a.reshape(n, c, s), b.reshape(n, o, s), acc)
        # the parts hold dw.T with O rounded up to 64: summed, cropped and transposed (O x C) in
        # 8 x 8 blocks (NumPy's copy of 2048 x 512 float32 took 5.7 ms on one thread, loaded)
        summed = acc.sum(axis=0)
        if o * c < layout.MIN_VALUES:
            return np.ascontiguousarray(summed[:, :o].T).reshape(geom.w_shape())
        dw = np.empty((o, c), a.dtype)
        _kernels.transpose_batches(summed.ravel(), dw.ravel(), 1, c, o, 0, summed.shape[1], 0, c)
        return dw.reshape(geom.w_shape())
    w = b.reshape(o, c) if op == "forward" else np.ascontiguousarray(b.reshape(o, c).T)
    rows, cols = w.shape
    out = aligned_empty((n, rows, s), a.dtype)
    if out.size and cols == 0:
        out.fill(0)
    elif out.size:
        _threads.for_numba()
        _kernels.pointwise_first(w, a.reshape(n, cols, s), out, pointwise.streams(out))
    return out.reshape(geom.y_shape() if op == "forward" else geom.x_shape())


def _refuse(geom: ConvGeometry, dtype: np.dtype) -> str | None:
    if geom.rank > 3:
        return "compiled for 1-D, 2-D and 3-D"
    if dtype not in (np.float32, np.float64):
        return no_complex(dtype) or "compiled for float32 and float64"
    if geom.feature_group_count != 1:
        return "needs groups == 1 (depthwise convs go to the depthwise engine)"
    return plain(geom)


def _packed_bytes(geom: ConvGeometry, op: Op, dtype: np.dtype, block: int) -> int:
    """The filter packed in blocks of output channels (the input gradient's flipped and swapped
    first)."""
    c, o = (geom.out_channels, geom.in_channels) if op == "input_grad" else (geom.in_channels,
                                                                             geom.out_channels)
    channels = _dot_channels(c) if block == DOT else c
    packed = math.prod(geom.kernel) * channels * -(-o // block) * block
    flipped = math.prod(geom.kernel) * c * o if op == "input_grad" else 0
    return (packed + flipped) * dtype.itemsize


def _padded_bytes(geom: ConvGeometry, op: Op, dtype: np.dtype, block: int) -> int:
    if op == "input_grad":  # dy padded for its stride-1 conv, or for the widest sub-pixel phase
        size = (_transpose.input_grad(geom).geometry.tight_padded if all(s == 1 for s in geom.stride)
                else [o + 2 * r for o, r in zip(geom.out_spatial, _phase_reach(geom))])
        channels = geom.out_channels
    else:
        size, channels = geom.tight_padded, geom.in_channels
    if op != "filter_grad" and block == DOT:
        channels = _dot_channels(channels)
    return geom.batch * math.prod(size) * channels * dtype.itemsize


def _forward(block: int, geom: ConvGeometry, x: np.ndarray, w: np.ndarray, first: bool = False) -> np.ndarray:
    """y ``(N, *out, O)``, ``block`` output channels per register tile (DOT: dot-product tiles);
    with ``first``, a channels-last view of y written channels-first ``(N, O, *out)``."""
    if _in_regions(geom, block, x, first) and not _streams(geom, block, x.dtype):
        return _regions.forward(geom, block, x, w, FILTER_MAJOR_BYTES)
    if _padded_in_launch(geom, block, x, first):
        return _regions.forward(geom, block, x, w, FILTER_MAJOR_BYTES, first=first, inside=False)
    y = aligned_empty(geom.y_shape("channels_first" if first else "channels_last"), x.dtype)
    if y.size and x.shape[-1] == 0:  # no input channels: every sum is empty
        y.fill(0)
    elif y.size:
        xp = _padded(x, geom.tight_padding, _dot_channels(x.shape[-1]) if block == DOT else None, "tiled.x")
        zero, one = (0,) * geom.rank, (1,) * geom.rank
        _call(xp, zero, w, geom.stride, geom.rhs_dilation, y, zero, one, geom.out_spatial, block, first)
    return x_to_last(y, "channels_first") if first else y


def _in_regions(geom: ConvGeometry, block: int, x: np.ndarray, first: bool) -> bool:
    """Whether a strided forward reads x as it is where its windows lie inside x, with padded
    copies of the border windows only (_regions.forward): channels-last (channels-first, the
    padding pass is also the transposition), x C-contiguous, the tiles that run across rows, a
    padding or crop to avoid, and border windows of at most a quarter of x (the copy they save
    must pay for the regions' setup: measured 3-5% faster with 11% of x, 3x3 stride 2, 2-3%
    slower with 28%, 4x4 stride 2)."""
    return (not first and x.flags.c_contiguous and x.size > 0 and any(s > 1 for s in geom.stride)
            and _spreads(geom, "forward", block) and any(lo or hi for lo, hi in geom.tight_padding)
            and 4 * _regions.border_samples(geom) <= math.prod(geom.in_spatial))


def _padded_in_launch(geom: ConvGeometry, block: int, x: np.ndarray, first: bool) -> bool:
    """Whether another strided forward pads (and, channels-first, transposes) x in the launch of
    its tiles (_regions.forward, one region): one fork and join per call, not one for the padding
    pass and one for the tiles; the tiles that run across rows, a y that does not stream."""
    return (any(s > 1 for s in geom.stride) and x.size > 0 and _spreads(geom, "forward", block)
            and not (_streams_first(geom, block, x.dtype) if first else _streams(geom, block, x.dtype)))


def _streams(geom: ConvGeometry, block: int, dtype: np.dtype) -> bool:
    """Whether a channels-last forward's 6 x 64 tiles will store y past the caches
    (``tile_stream``): then x padded whole beats the strided regions, whose kernel does not stream
    (the stem, 7x7 stride 2 into 64 channels, one thread: 0.82x the regions' time)."""
    return block == 64 and math.prod(geom.y_shape()) * np.dtype(dtype).itemsize >= tile_stream.STREAM_BYTES


def _streams_first(geom: ConvGeometry, block: int, dtype: np.dtype) -> bool:
    """Whether a channels-first forward's 6 x 64 tiles will store y past the caches through their
    staging blocks (``tile_stream.streams_first`` on the aligned y ``_forward`` allocates): then x
    padded whole by its transposing pass beats the padding in the regions' launch, whose tiles do
    not stream (the stem, one thread, CPU time, loaded: 0.93x)."""
    item = np.dtype(dtype).itemsize
    return (block == 64 and tile_stream.NUMBA and math.prod(geom.y_shape()) * item >= tile_stream.STREAM_BYTES
            and math.prod(geom.out_spatial[-2:]) * item % tile_stream.VECTOR_BYTES == 0)


def _filter_grad(geom: ConvGeometry, block: int, cp: int, parts: int, x: np.ndarray,
                 dy: np.ndarray) -> np.ndarray:
    k, c, o = geom.kernel, geom.in_channels, geom.out_channels
    if dy.size == 0 or c == 0 or o == 0:
        return np.zeros((*k, c, o), dtype=x.dtype)
    blocks = -(-o // block) * block
    # The kernel reads whole blocks of dy's channels; zero input channels fill x's last tile
    # where that is cheaper than one channel at a time.
    dy = _padded(dy, ((0, 0),) * geom.rank, blocks, "tiled.dy")
    xp = _padded(x, geom.tight_padding, cp, "tiled.x")
    _regions.check_reach(xp.shape[1:-1], geom.out_spatial, k, geom.stride, geom.rhs_dilation)
    unit = (1,) * (3 - geom.rank)
    acc = scratch("tiled.parts", (parts, *unit, *k, cp, blocks), x.dtype)
    _threads.for_numba()
    _kernels.tiled_filter_grad(as_3d(xp), as_3d(dy), *(unit + geom.stride), *(unit + geom.rhs_dilation),
                               _filter_tile(block, x.dtype), acc)
    return acc.sum(axis=0)[..., :c, :o].reshape(*k, c, o)


# The filter gradient as a GEMM over an implicit im2col of x (_kernels/filter_runs.py): tiles of
# 6 filter rows along a tap row's run of (kw, c) x 64 output channels, float32. The threads split
# the blocks of 64 output channels first, then the rows (a partial filter gradient per row share).
RUNS = True  # tests turn the runs off to reach the tiles of input channels
RUN_ROWS = 6
# dy per chunk of rows: 64 channels of 128 outputs stay in the first cache (48 KiB here) beside
# the rows of x they read; twice the outputs per tile halve the tiles' stores into the partial
# filter gradient. One thread, CPU time, medians of 21 calls, 8 rounds interleaved against 16 KiB
# (load 8-10): resnet_3x3_deep 0.96-0.97 channels-last, 1.00 channels-first, resnet_3x3
# 0.96-0.98, the dilated and stem rows 0.99-1.01; 64 KiB no better.
RUNS_CHUNK_BYTES = 32768
# A block of partial sums larger than this (the second-level cache, 1 MiB per core here) is
# zeroed and added into out there: charged by _runs_partials_seconds.
RUNS_CACHE_BYTES = 1 << 20


def _run_length_fg(geom: ConvGeometry) -> int:
    """Filter rows in one run: a tap row's (kw, c), or c alone with a dilation along the row."""
    c = geom.in_channels
    return geom.kernel[-1] * c if geom.rhs_dilation[-1] == 1 else c


def _runs_fit(geom: ConvGeometry, dtype: np.dtype) -> bool:
    """Whether the runs kernel takes this filter gradient and its model beats the tiles of input
    channels: float32 (6 x 64 float64 sums would not fit the registers), runs of at least 6."""
    if not (RUNS and np.dtype(dtype) == np.float32 and _run_length_fg(geom) >= RUN_ROWS
            and geom.out_channels and geom.in_channels):
        return False
    block = _block(geom, "filter_grad", dtype)
    return _runs_seconds(geom) < _compute_seconds(geom, "filter_grad", block, dtype)


def _runs_seconds(geom: ConvGeometry) -> float:
    """The runs kernel's compute: its rate, times the zero output channels up to a multiple of 64
    and a run's last rows past a whole number of tiles charged as a whole tile (their tile of
    fewer rows loads each dy vector for fewer multiply-adds)."""
    fig = figures("tiled")
    o, run = max(1, geom.out_channels), _run_length_fg(geom)
    tiles = -(-run // RUN_ROWS)
    return geom.flops / fig.RUNS_FLOPS_PER_S * (-(-o // 64) * 64 / o) * (tiles * RUN_ROWS / run)


def _runs_partials_seconds(geom: ConvGeometry, first: bool) -> float:
    """The runs kernel's partial filter gradients (float32, 64k output channels) beyond its
    multiply-adds: where one block of 64 output channels' sums (a thread's working set) is larger
    than the second-level cache (RUNS_CACHE_BYTES), each part zeroed and added into by every
    chunk of rows out there (1x512x7x7 -> 256, 5x5: 3.1-5.8 ms on one thread against im2col's
    2.7-3.1, the rate's 1.7); and the pass after the kernel, the parts added (and for a
    channels-first caller, ``first``, laid out), except where the one part is the result. Charged
    against the other engines only: the choice between the tiled engine's own kernels keeps to
    their rates."""
    fig = figures("tiled")
    o = -(-geom.out_channels // 64) * 64
    parts = _runs_parts(geom)
    part = math.prod(geom.kernel) * geom.in_channels * o * 4
    seconds = 0.0
    if part // (o // 64) > RUNS_CACHE_BYTES:
        rows = -(-geom.batch * math.prod(geom.out_spatial[:-1]) // parts)
        chunk = max(1, RUNS_CHUNK_BYTES // max(1, geom.out_spatial[-1] * 64 * 4))
        seconds += parts * part * (1 + -(-rows // chunk)) / fig.RUNS_STORE_BYTES_PER_S
    if first or parts > 1 or o != geom.out_channels:
        seconds += parts * part / fig.RUNS_PARTIAL_BYTES_PER_S
    return seconds


def _runs_parts(geom: ConvGeometry) -> int:
    """Shares of the rows: the cores the blocks of 64 output channels leave idle."""
    blocks = -(-geom.out_channels // 64)
    rows = geom.batch * math.prod(geom.out_spatial[:-1])
    return max(1, min(rows, -(-_threads.cores() // blocks)))


def _runs_workspace(geom: ConvGeometry, dtype: np.dtype, padded: int) -> tuple[int, int]:
    """(row shares, bytes): the padded x, dy with 64k channels where O is not, the partial
    filter gradients."""
    o = -(-geom.out_channels // 64) * 64
    item = dtype.itemsize
    dy_copy = 0 if o == geom.out_channels else geom.batch * math.prod(geom.out_spatial) * o * item
    parts = _runs_parts(geom)
    return parts, padded + dy_copy + parts * math.prod(geom.kernel) * geom.in_channels * o * item


def _filter_grad_runs(geom: ConvGeometry, row_parts: int, x: np.ndarray, dy: np.ndarray,
                      first: bool = False) -> np.ndarray:
    """dw ``(*K, C, O)`` of channels-last x ``(N, *S, C)`` and dy ``(N, *out, O)`` by the runs
    kernel (float32); with ``first``, dw ``(O, C, *K)`` of channels-first x ``(N, C, *S)`` and
    dy ``(N, O, *out)`` (x transposed by its padding pass, dy read as it is by the kernel)."""
    k, c, o = geom.kernel, geom.in_channels, geom.out_channels
    if dy.size == 0 or c == 0 or o == 0:
        return np.zeros((o, c, *k) if first else (*k, c, o), dtype=x.dtype)
    blocks = -(-o // 64) * 64
    if first:
        x, dy = x_to_last(x, "channels_first"), np.ascontiguousarray(dy)
        dy5 = dy.reshape(*dy.shape[:2], *(1,) * (3 - geom.rank), *dy.shape[2:])
    else:
        dy5 = as_3d(_padded(dy, ((0, 0),) * geom.rank, blocks, "tiled.dy"))
    xp = _padded(x, geom.tight_padding, None, "tiled.x")
    _regions.check_reach(xp.shape[1:-1], geom.out_spatial, k, geom.stride, geom.rhs_dilation)
    unit = (1,) * (3 - geom.rank)
    _threads.for_numba()
    run = partial(_kernels.filter_grad_runs, as_3d(xp), dy5, *(unit + geom.stride),
                  *(unit + geom.rhs_dilation), row_parts, RUNS_CHUNK_BYTES, first)
    none = np.empty((0,) * 5, x.dtype)
    if row_parts == 1 and not first and o == blocks:  # the one partial is the result: no pass after
        dw = aligned_empty((1, *unit, *k, c, o), x.dtype)
        run(dw, none)
        return dw.reshape(*k, c, o)
    acc = scratch("tiled.parts", (row_parts, *unit, *k, c, blocks), x.dtype)
    if first and row_parts == 1:  # each block laid out channels-first by its thread, in cache
        dw = aligned_empty((o, c, *unit, *k), x.dtype)
        run(acc, dw)
        return dw.reshape(o, c, *k)
    run(acc, none)
    if not first:  # a new array even for one part: acc is scratch
        return np.ascontiguousarray(acc.sum(axis=0).reshape(*k, c, blocks)[..., :o])
    # The parts added and laid out as the caller's dw in one parallel pass, into a new array.
    dw = aligned_empty((o, c, *unit, *k), x.dtype)
    _kernels.finish_runs(acc, dw)
    return dw.reshape(o, c, *k)


# Few output channels (a 3-D conv's 16): the filter gradient with vectors along the runs of filter
# rows and 8 output channels broadcast (_kernels/thin_filter.py), float32; chunks of dy's rows,
# each into its own partial filter gradient, claimed by the threads.
THIN = True  # tests turn it off to reach the other filter-gradient kernels
# dy per group of rows that the taps walk: measured on the 3-D conv's 16 channels, one thread, in one
# process: 16 KiB 4.33 ms, 64 KiB 3.60, 256 KiB 3.48, 1 MiB 3.99 (long loops over the outputs pay
# more than the second cache costs).
THIN_GROUP_BYTES = 1 << 18


def _thin_shape(geom: ConvGeometry) -> tuple[int, int, int]:
    """(taps, run, run padded to whole vectors) of the thin kernel: a tap row's (kw, c) as one run,
    or with a dilation along the row KW runs of c."""
    c, kw = geom.in_channels, geom.kernel[-1]
    taps, run = (1, kw * c) if geom.rhs_dilation[-1] == 1 else (kw, c)
    return taps, run, -(-run // thin_filter.VECTOR) * thin_filter.VECTOR


def _thin_fit(geom: ConvGeometry, dtype: np.dtype) -> bool:
    """Whether the thin kernel takes this filter gradient (float32) and its model beats the
    kernel the engine would run otherwise (the runs or the tiles of input channels)."""
    if not (THIN and np.dtype(dtype) == np.float32 and geom.out_channels and geom.in_channels):
        return False
    if _runs_fit(geom, dtype):
        other = _runs_seconds(geom)
    else:
        other = _compute_seconds(geom, "filter_grad", _block(geom, "filter_grad", dtype), dtype)
    return _thin_seconds(geom) < other


def _thin_seconds(geom: ConvGeometry) -> float:
    """The thin kernel's compute: its rate, times the zero output channels up to a multiple of 8
    and the rows past each run up to a whole vector."""
    o = max(1, geom.out_channels)
    _, run, padded = _thin_shape(geom)
    return (geom.flops / figures("tiled").THIN_FLOPS_PER_S * (-(-o // 8) * 8 / o)
            * (padded / max(1, run)))


def _thin_parts(geom: ConvGeometry) -> int:
    """Chunks of dy's rows, each summed into its own partial filter gradient: a few per core, so
    that a thread that runs takes over the chunks of one that waits for its core."""
    rows = geom.batch * math.prod(geom.out_spatial[:-1])
    return max(1, min(rows, 4 * _threads.cores()))


def _thin_workspace(geom: ConvGeometry, dtype: np.dtype, parts: int) -> int:
    """Bytes: x padded with a margin, the partial gradients (8k output channels; dy is read as it
    is)."""
    taps, _, padded = _thin_shape(geom)
    o = -(-geom.out_channels // 8) * 8
    item = dtype.itemsize
    x = (geom.batch * math.prod(geom.tight_padded) * geom.in_channels + thin_filter.VECTOR) * item
    return x + parts * o * math.prod(geom.kernel[:-1]) * taps * padded * item


def _filter_grad_thin(geom: ConvGeometry, parts: int, x: np.ndarray, dy: np.ndarray,
                      first: bool = False) -> np.ndarray:
    """dw ``(*K, C, O)`` of channels-last x ``(N, *S, C)`` and dy ``(N, *out, O)`` by the thin
    kernel (float32); with ``first``, dw ``(O, C, *K)`` of channels-first x ``(N, C, *S)`` and
    dy ``(N, O, *out)`` (x transposed by its padding pass, dy read as it is)."""
    k, c, o = geom.kernel, geom.in_channels, geom.out_channels
    if dy.size == 0 or c == 0 or o == 0:
        return np.zeros((o, c, *k) if first else (*k, c, o), dtype=x.dtype)
    taps, run, padded = _thin_shape(geom)
    x = x_to_last(x, "channels_first") if first else x
    xf, shape = _padded_flat(x, geom.tight_padding, "tiled.x", margin=padded > run)
    _regions.check_reach(shape[1:-1], geom.out_spatial, k, geom.stride, geom.rhs_dilation)
    unit = (1,) * (3 - geom.rank)
    lead = (*unit, *k)[:2]  # KD, KH
    acc = scratch("tiled.parts", (parts, -(-o // 8) * 8, *lead, taps, padded), x.dtype)
    _threads.for_numba()
    _kernels.thin_filter_grad(xf, (shape[0], *unit, *shape[1:]), np.ascontiguousarray(dy).reshape(-1),
                              (geom.batch, *unit, *geom.out_spatial, o), first, *(unit + geom.stride),
                              *(unit + geom.rhs_dilation), THIN_GROUP_BYTES, acc)
    dw = acc.sum(axis=0)[:o, ..., :run].reshape(o, *k, c)  # a new array even for one part: acc is scratch
    return np.ascontiguousarray(np.moveaxis(dw, -1, 1) if first else np.moveaxis(dw, 0, -1))


def _padded_flat(x: np.ndarray, pads: tuple[tuple[int, int], ...], name: str,
                 margin: bool) -> tuple[np.ndarray, tuple[int, ...]]:
    """(flat, shape): x padded as _padded does, flat, followed by a margin of a vector of zeros
    with ``margin`` (the thin kernel's last vector of a run may read past the last window)."""
    if not margin:
        xp = _padded(x, pads, None, name)
        return xp.reshape(-1), xp.shape
    shape = (x.shape[0], *(n + lo + hi for n, (lo, hi) in zip(x.shape[1:-1], pads)), x.shape[-1])
    size = math.prod(shape)
    buf = scratch(name, (size + thin_filter.VECTOR,), x.dtype)
    view = buf[:size].reshape(shape)
    parallel = _kernels.NUMBA and x.ndim <= 5 and x.nbytes >= PARALLEL_PAD_BYTES
    xp = pad_or_crop(x, pads, None, copy=_pad_on_threads if parallel else None, empty=lambda s, d: view)
    if xp is not view:  # x itself (nothing to pad) or all cropped: copied in front of the margin
        np.copyto(view, xp)
    buf[size:] = 0
    return buf, shape


# Outputs per forward tile (_kernels/tiled.py's tile_width): AVX2 runs every block as 6 x 2 vectors.
_TILE_WIDTH = {DOT: 6, 16: 8, 32: 8, 64: 6} if VECTOR_BYTES != 32 else {DOT: 6, 16: 6, 32: 6, 64: 6}


def _filter_tile(block: int, dtype: np.dtype) -> int:
    """Input channels per filter-gradient tile: 16 x 16 in float32, 8 x 16 in float64, 4 x 64."""
    if block == 64:
        return 4
    return 16 if np.dtype(dtype).itemsize == 4 else 8


def _filter_channels(c: int, block: int, dtype: np.dtype) -> int:
    """Input channels the filter-gradient kernel runs: c padded to a whole number of tiles where
    that wastes less than going one channel at a time (3 -> 4 for the 4 x 64 tiles)."""
    fig = figures("tiled")
    tile = _filter_tile(block, dtype)
    padded = -(-c // tile) * tile
    return padded if padded <= c + (c % tile) * (fig.RAGGED_CHANNELS_SLOWDOWN - 1) else c


def _compute_seconds(geom: ConvGeometry, op: Op, block: int, dtype: np.dtype) -> float:
    fig = figures("tiled")
    channels = _output(geom, op)[1]
    run = _run_length(geom, op, block)
    padded = -(-channels // block) * block / max(1, channels)
    if block == DOT:  # sums along the input channels, padded to a multiple of 16
        c = max(1, geom.out_channels if op == "input_grad" else geom.in_channels)
        narrow = _row_waste(run, _TILE_WIDTH[DOT])
        return geom.flops / fig.DOT_FLOPS_PER_S * padded * _dot_channels(c) / c * narrow
    if op == "filter_grad":  # tiles of input channels; the last few go one at a time
        c = max(1, geom.in_channels)
        cp = _filter_channels(c, block, dtype)
        tile = _filter_tile(block, dtype)
        ragged = (cp % tile) / cp  # channels left to go one at a time
        slowdown = 1 + ragged * (fig.RAGGED_CHANNELS_SLOWDOWN - 1)
        return geom.flops / fig.FILTER_FLOPS_PER_S[block] * padded * cp / c * slowdown
    narrow = _row_waste(run, _TILE_WIDTH[block])
    rate = fig.THREE_TAP_FLOPS_PER_S if _three_taps(geom, block) else fig.FLOPS_PER_S[block]
    return geom.flops / rate * _computed_channels(channels, block, dtype) / max(1, channels) * narrow


def _computed_channels(channels: int, block: int, dtype: np.dtype) -> int:
    """Output channels the forward tiles compute: whole blocks, or with 32-byte vectors (AVX2)
    whole passes of 2 vectors (16 float32, 8 float64), the passes of a block past its last valid
    channel skipped (_kernels/tiled: the 6 x 64 tiles run as passes of 6 x 2 vectors, the 8 x 16
    and 8 x 32 as passes of 4 x 2): a block of 64 computes no more than one of 16 for 16
    channels."""
    step = min(block, 2 * VECTOR_BYTES // np.dtype(dtype).itemsize) if VECTOR_BYTES == 32 else block
    return -(-channels // step) * step


def _three_taps(geom: ConvGeometry, block: int) -> bool:
    """Whether the kernel runs the 3-tap tiles, which share x between a row's taps. (The input
    gradient runs the forward kernel with stride 1 and the same dilation.) Not with 32-byte
    vectors (AVX2): its 6 x 2 vector tiles run them faster."""
    return (VECTOR_BYTES != 32 and block == 16 and geom.kernel[-1] == 3 and geom.rhs_dilation[-1] == 1
            and geom.stride[-1] == 1)


def _run_length(geom: ConvGeometry, op: Op, block: int) -> int:
    """Outputs in a run the kernel cuts into tiles: a plane of the last two axes, or a row for the
    dot-product and 3-tap tiles; a strided input gradient runs per sub-pixel phase, 1/s as long
    per axis."""
    out = _output(geom, op)[0]
    if op == "input_grad":
        out = tuple(-(-n // s) for n, s in zip(out, geom.stride))
    return math.prod(out[-2:]) if _spreads(geom, op, block) else out[-1]


def _spreads(geom: ConvGeometry, op: Op, block: int) -> bool:
    """Whether the tiles run on across the rows of a plane."""
    return op != "filter_grad" and block != DOT and not _three_taps(geom, block)


def _row_waste(width: int, tile: int) -> float:
    """The slowdown of a run of ``width`` outputs cut into tiles: one output at a time below a
    tile, else outputs computed / wanted, the last tile overlapping the one before (14 outputs in
    tiles of 6: 18 computed)."""
    fig = figures("tiled")
    if width < tile:
        return fig.NARROW_SLOWDOWN
    return -(-width // tile) * tile / width


def _block(geom: ConvGeometry, op: Op, dtype: np.dtype) -> int:
    """Output channels per tile: 32 or 64 where their faster rates beat the waste of a partial block,
    DOT (dot-product tiles of 3) for few output channels."""
    single = np.dtype(dtype) == np.float32
    if not single and (op == "filter_grad" or VECTOR_BYTES != 32):  # wider float64 tiles would not
        return 16  # fit in the registers
    if op == "filter_grad":
        return min((16, 64), key=lambda b: _compute_seconds(geom, op, b, dtype))
    # float64 with 32-byte vectors (AVX2): the 6 x 64 tiles run as passes of 6 x 8 sums, which fit
    # (one thread, 3x3 64 -> 40 channels and 3x3x3 16 -> 16: 0.74x and 0.83x the 8 x 16 tiles' time).
    return min((DOT, 16, 32, 64) if single else (16, 64),
               key=lambda b: _compute_seconds(geom, op, b, dtype) + _tiles_seconds(geom, op, b))


def _output(geom: ConvGeometry, op: Op) -> tuple[tuple[int, ...], int]:
    """What the kernel writes for ``op``: spatial size and channels (dx for the input gradient,
    y for the forward; the filter gradient's tiles are summed over y)."""
    return (geom.in_spatial, geom.in_channels) if op == "input_grad" else (geom.out_spatial,
                                                                           geom.out_channels)


def _tiles_seconds(geom: ConvGeometry, op: Op, block: int) -> float:
    """The tiles' setup and stores (forward and input gradient)."""
    fig = figures("tiled")
    out, channels = _output(geom, op)
    run = max(1, _run_length(geom, op, block))
    runs = -(-geom.batch * math.prod(out) // run)
    return runs * -(-run // _TILE_WIDTH[block]) * -(-channels // block) * fig.TILE_SECONDS


def _dot_channels(c: int) -> int:
    """Input channels of the dot-product tiles: a multiple of their 16-float vectors."""
    return -(-c // 16) * 16


def _call(xp: np.ndarray, corner: tuple[int, ...], w: np.ndarray, stride: tuple[int, ...],
          dilation: tuple[int, ...], y: np.ndarray, at: tuple[int, ...], step: tuple[int, ...],
          out: tuple[int, ...], block: int, first: bool = False) -> None:
    """The kernel on the padded, C-contiguous xp read from ``corner``: ``out`` outputs per sample,
    written to the C-contiguous y ``(N, *S, O)`` (``first``: ``(N, O, *S)``) at ``at + i * step``."""
    _regions.check_reach(tuple(n - a for n, a in zip(xp.shape[1:-1], corner)), out, w.shape[:-2], stride,
                         dilation)
    _threads.for_numba()
    unit, zero = (1,) * (5 - xp.ndim), (0,) * (5 - xp.ndim)  # 1-D and 2-D convs run as 3-D
    w5 = w.reshape(*unit, *w.shape)
    packed = _pack_dot(w5, xp.shape[-1]) if block == DOT else _pack(w5, block)
    y5 = y.reshape(*y.shape[:2], *unit, *y.shape[2:]) if first else as_3d(y)
    if first:  # through staging blocks, where the tiles write all of y's planes in row order
        whole = not any(at) and all(s == 1 for s in step) and tuple(out) == y.shape[2:]
        stream = whole and tile_stream.streams_first(y, block)
    else:
        stream = block != DOT and tile_stream.streams(y)
    _kernels.tiled_forward(as_3d(xp), zero + corner, packed, *(unit + tuple(stride)),
                           *(unit + tuple(dilation)), y5, zero + at, unit + step, unit + tuple(out),
                           block == DOT, packed.nbytes > FILTER_MAJOR_BYTES, stream, first)


def _phase_reach(geom: ConvGeometry) -> tuple[int, ...]:
    """Per axis, the padding of dy the widest sub-pixel phase's stride-1 input gradient needs."""
    return tuple(max(p.reach for p in ps) for ps in phase_axes(geom))


def _strided_input_grad(geom: ConvGeometry, block: int, dy: np.ndarray, w: np.ndarray,
                        first: bool = False) -> np.ndarray:
    """dx of a strided conv: dy is padded once for all phases, and each phase writes its samples
    of dx in place, those in the padding left out: no copy per phase. With ``first``, a
    channels-last view of dx written channels-first."""
    phases = _phases(geom, block)
    shape = geom.x_shape("channels_first" if first else "channels_last")
    if dy.size == 0 or geom.in_channels == 0:
        dx = np.zeros(shape, dtype=dy.dtype)
        return x_to_last(dx, "channels_first") if first else dx
    dx = _new_output(shape, dy.dtype, zeroed=not phases.covered)
    # The phases of the 8 x 16 or 32 and 6 x 64 tiles run in one launch, their filters flipped,
    # swapped and packed by one compiled pass; where they are all, that launch also pads (and,
    # channels-first, transposes) dy. The phases of the row tiles (dot products, 3 taps along the
    # row) run one launch each on dy padded first.
    if phases.rows:
        c = _dot_channels(geom.out_channels) if block == DOT else None
        a = b = _padded(dy, tuple((r, r) for r in phases.reach), c, "tiled.dy")
        a_first, copies = False, _regions.NO_COPIES
    elif len(phases.table):
        a, a_first = _regions.source(dy)
        b = scratch("tiled.dy", (phases.copied,), dy.dtype)
        copies = phases.copies
    if len(phases.table):
        wt = scratch("tiled.regions.w", (phases.packed,), dy.dtype)
        flat, strides = _regions.flat_filter(w.reshape(*(1,) * (3 - geom.rank), *w.shape))
        _kernels.pack_phases(flat, strides, phases.pack, block, geom.in_channels, geom.out_channels, wt)
        _regions.launch(phases.table, a, b, geom.out_channels, wt, block, dx, first,
                        phases.largest * dy.itemsize > FILTER_MAJOR_BYTES, copies, a_first)
    for item in phases.rows:
        r = _phase_region(geom, phases.reach, b, w, *item)
        _call(b, r.corner, r.w, r.stride, r.dilation, dx, r.at, r.step, r.count, block, first)
    return x_to_last(dx, "channels_first") if first else dx


@dataclass(frozen=True, eq=False)
class _Phases:
    """A strided input gradient's sub-pixel phases, laid out once per geometry and tile block:
    dy's padding (``reach`` per axis), whether the phases write every sample of dx (``covered``),
    the region table of the phases that run in one launch (_regions.table_row: each reads the
    padded dy, the second source), the copy table that pads dy in that launch (``copied``
    floats), the table that packs their filters (_kernels.pack_phases: ``packed`` floats, the
    largest phase's ``largest``), the phases of the row tiles (``rows``: (phases, first
    sample, count)), one launch each, and whether the table's phases pair up along the rows
    (``paired``: _regions.paired, ordered so; the launch runs each pair as one where dx is
    channels-first and the tiles 6 x 64)."""

    reach: tuple[int, ...]
    covered: bool
    table: np.ndarray
    copies: np.ndarray
    copied: int
    pack: np.ndarray
    packed: int
    largest: int
    rows: tuple
    paired: bool = False


@functools.lru_cache(maxsize=64)
def _phases(geom: ConvGeometry, block: int) -> _Phases:
    reach = _phase_reach(geom)
    work = []
    for combo in itertools.product(*phase_axes(geom)):
        starts, count = zip(*(_inside(p, s, lo, n) for p, s, (lo, _), n in
                              zip(combo, geom.stride, geom.tight_padding, geom.in_spatial)))
        if min(count) > 0:
            work.append((combo, starts, count))
    # The phases write disjoint samples of dx: zeros first only where some are left (phases
    # without taps), not when they cover it all.
    covered = sum(math.prod(count) for _, _, count in work) == math.prod(geom.in_spatial)
    c, o = geom.in_channels, geom.out_channels  # dx's channels, dy's
    sizes = tuple(o + 2 * r for o, r in zip(geom.out_spatial, reach))  # of the padded dy
    unit = (0,) * (3 - geom.rank)
    table, pack, at = [], [], 0
    for combo, starts, count in work:
        if not _spreads_phase(combo, block):
            continue
        taps = tuple(p.taps for p in combo)
        corner = tuple(r - p.reach + m for r, p, m in zip(reach, combo, starts))
        first = tuple(p.start + m * s - lo for p, m, s, (lo, _) in zip(combo, starts, geom.stride,
                                                                          geom.tight_padding))
        table.append(_regions.table_row(1, 0, sizes, corner, taps, at, first, geom.stride, count,
                                        (1,) * geom.rank, tuple(p.dilation for p in combo)))
        for t, tap in enumerate(itertools.product(*(range(n) for n in taps))):
            # phase tap t reads w's tap of the flipped sub-kernel: taps[::step] in reverse
            source = tuple(p.tap0 + (p.taps - 1 - i) * p.step for p, i in zip(combo, tap))
            pack.append((at, math.prod(taps), t, *unit, *source))
        at += -(-c // block) * math.prod(taps) * o * block
    largest = max((-(-c // block) * row[columns.KD] * row[columns.KH] * row[columns.KW] * o * block
                   for row in table), default=0)
    rows = tuple(item for item in work if not _spreads_phase(item[0], block))
    copies = np.array([_regions.copy_row(0, sizes, tuple(-r for r in reach))], np.int64)
    table = np.array(table, np.int64).reshape(-1, columns.COLUMNS)
    pairs = _regions.paired(table)  # the same regions, those along the rows side by side
    pack = np.array(pack, np.int64).reshape(-1, columns.PACK_COLUMNS)
    return _Phases(reach, covered, table if pairs is None else pairs, copies,
                   geom.batch * math.prod(sizes) * o, pack, at, largest, rows, pairs is not None)


def _phase_region(geom: ConvGeometry, reach: tuple[int, ...], dyp: np.ndarray, w: np.ndarray,
                  combo: tuple[Phase, ...], starts: tuple[int, ...],
                  count: tuple[int, ...]) -> _regions.Region:
    """The phase's samples of dx as a region: the stride-1 conv of dyp (dy padded by ``reach``)
    from the phase's corner with its taps flipped and swapped; phase sample m (its first inside
    x: ``starts``) sits at padded index start + m * s, that is x index start + m * s - lo."""
    corner = tuple(r - p.reach + m for r, p, m in zip(reach, combo, starts))
    lows = (lo for lo, _ in geom.tight_padding)
    at = tuple(p.start + m * s - lo for p, m, s, lo in zip(combo, starts, geom.stride, lows))
    taps = flip_swap_filter(w[tuple(p.kernel_taps for p in combo)], 1)
    return _regions.Region(0, 0, dyp.shape[1:-1], corner, taps, at, geom.stride, count, (1,) * geom.rank,
                           tuple(p.dilation for p in combo))


def _spreads_phase(combo: tuple[Phase, ...], block: int) -> bool:
    """Whether the phase's stride-1 conv runs the tiles that go on across rows (tiled_forward's
    choice: not the dot-product tiles, nor, but with AVX2, 3 undilated taps along the row in
    blocks of 16)."""
    three = VECTOR_BYTES != 32 and block == 16 and combo[-1].taps == 3 and combo[-1].dilation == 1
    return block != DOT and not three


def _new_output(shape: tuple[int, ...], dtype: np.dtype, zeroed: bool) -> np.ndarray:
    """The result array, zero-filled only where the kernels will not write all of it (a test
    fills the other kind with NaN, to see that every sample is written)."""
    return np.zeros(shape, dtype=dtype) if zeroed else aligned_empty(shape, dtype)


def _inside(p: Phase, s: int, lo: int, n: int) -> tuple[int, int]:
    """The phase's first sample inside x (not in its padding) and how many are."""
    first = max(0, -((p.start - lo) // s))  # ceil((lo - start) / s)
    last = min(p.length - 1, (lo + n - 1 - p.start) // s)
    return first, last - first + 1


def _padded(a: np.ndarray, pads: tuple[tuple[int, int], ...], channels: int | None, name: str) -> np.ndarray:
    """pad_or_crop (channels-last ``a``, the same result) into the scratch array ``name``, written
    on Numba's threads where the array is large enough: one pass, half NumPy's time on two cores."""
    parallel = _kernels.NUMBA and a.ndim <= 5 and a.nbytes >= PARALLEL_PAD_BYTES
    return pad_or_crop(a, pads, channels, copy=_pad_on_threads if parallel else None,
                       empty=empty_for(name))


def _pad_on_threads(a: np.ndarray, lows: tuple[int, ...], out: np.ndarray) -> None:
    _threads.for_numba()
    lows = (0,) * (5 - a.ndim) + lows
    first = a.transpose(x_first_axes(a.ndim))
    if not a.flags.c_contiguous and first.flags.c_contiguous:  # a channels-last view of NCHW memory
        unit = (1,) * (5 - a.ndim)
        _kernels.pad_copy_first(first.reshape(*first.shape[:2], *unit, *first.shape[2:]), lows, as_3d(out))
        return
    _kernels.pad_copy(as_3d(np.ascontiguousarray(a)), lows, as_3d(out))


def _run_first(run, op: Op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``run`` on channels-first operands: it gets channels-last views, which its padding pass
    transposes as it copies (pad_copy_first); y and dx come back as channels-last views of
    channels-first memory (the tiles write that layout), dw is transposed back."""
    if op == "filter_grad":
        dw = run(x_to_last(a, "channels_first"), x_to_last(b, "channels_first"))
        moved = layout.relaid(dw, "w", False)  # NumPy's transposing copy: 2-5x slower
        return moved if moved is not None else np.ascontiguousarray(w_from_last(dw, "channels_first"))
    out = run(x_to_last(a, "channels_first"), w_to_last(b, "channels_first"))
    return np.ascontiguousarray(x_from_last(out, "channels_first"))


def _pack(w: np.ndarray, block: int) -> np.ndarray:
    """(*K, C, O) -> (ceil(O / block), *K, C, block), zero past O, in the scratch array "tiled.w"
    (``_regions.pack_into``, the regions' packing): each block of the filter is one contiguous
    stream, read in order as the kernel walks taps and input channels (strided reads of 16 floats
    measured 2x slower with 256 channels)."""
    *k, c, o = w.shape
    packed = scratch("tiled.w", (-(-o // block), *k, c, block), w.dtype)
    _regions.pack_into(w, block, packed.reshape(-1))
    return packed


def _pack_dot(w: np.ndarray, channels: int) -> np.ndarray:
    """(KD, KH, KW, C, O) -> (ceil(O / 3), KD, KH, 3, KW, ``channels``), zero past C and O: each
    output channel's taps along a row and input channels are one contiguous run."""
    kd, kh, kw, c, o = w.shape
    groups = -(-o // DOT)
    packed = np.zeros((kd, kh, kw, channels, groups * DOT), dtype=w.dtype)
    packed[..., :c, :o] = w
    packed = packed.reshape(kd, kh, kw, channels, groups, DOT)
    return np.ascontiguousarray(packed.transpose(4, 0, 1, 5, 2, 3))
