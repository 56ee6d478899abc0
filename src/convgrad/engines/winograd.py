"""Winograd minimal filtering F(m, 3) for stride-1, undilated 3-tap kernels in every axis.

Each output tile of m samples per axis is computed from an input tile of m + 2 samples as
``Y = A^T [ (G g G^T) * (B^T d B) ] A`` (per axis for N-d). The channel contraction happens in
the transformed domain, one GEMM per tile element: ``(n^r, tiles, C) @ (n^r, C, O)``, which
needs (n / m)^r / 3^r of the multiplies of the direct method: 4x fewer for F(4x4, 3x3).

The transforms amplify rounding (the F(4, 3) matrices have entries up to 8 and 1/24), so the
planner uses this engine only in float64, or in float32 under the tolerance below. The input
gradient of a stride-1 conv is itself a stride-1 conv of dy with the flipped filter, so it runs
through the same forward; the filter gradient is left to the other engines.

2-D F(4x4, 3x3) without groups and with at least ONE_PASS_CHANNELS channels runs in one compiled
pass (_kernels/winograd_fused.py): per block of tiles, the input transform read from x (padding
decided per tile), the 36 GEMMs in register tiles, the output transform written into y, in
either layout (channels-first moved to channels-last and back in cache, a row of tiles at a
time). A dilated kernel runs there too, on the phase grids: with dilation d, the outputs
a, a + d, a + 2 d, ... are an undilated conv of the inputs a - pad, a - pad + d, ... Measured
under other jobs' load (12-22, so as ratios in one process): 0.58-0.67 of the tiled engine's time
channels-last on resnet_3x3 and resnet_3x3_deep. Other ranks, groups and thin convs take the
NumPy transforms and batched GEMMs (undilated only).
"""

from __future__ import annotations

import math
import string
from functools import partial

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import _transpose
from .._budget import check_fits
from .._engine import OPS, NonFinite, Op, Planner, Prepared, Refusal
from .._geometry import ConvGeometry
from .._layout import pad_or_crop, w_to_last, x_from_last, x_to_last
from . import _kernels, _threads
from ._common import no_complex
from ._kernels import layout, winograd_fused
from ._machine import figures
from ._scratch import aligned_empty, scratch

# Points 0, -1, 1, -2, 2 and infinity (Lavin & Gray 2016); checked against direct correlation
# in the tests.
_F43 = (
    np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
              [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float),
    np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
    np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
             dtype=float),
)
# Points 0, -1, 1 and infinity.
_F23 = (
    np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float),
    np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
    np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float),
)
TRANSFORMS = {4: _F43, 2: _F23}
# Relative error (max |error| / max |result|) measured against float64 in the tests; the
# documented float32 tolerance is 1e-4.
FLOAT32_TOLERANCE = 1e-4

# The cost model (figures in calibration.json): one GEMM per tile element, the transforms' copies
# (several with NumPy's einsum passes, one with the compiled transforms) and the filter's transform
# and NumPy calls around the GEMMs, times the fitted factor per op.


def tile_size(geom: ConvGeometry) -> int:
    """F(4, 3) where outputs are long enough to fill its tiles, else F(2, 3)."""
    return 4 if min(geom.out_spatial) >= 4 and geom.rank <= 2 else 2

_MIXES_TAPS = "its tile transforms mix taps: one inf or NaN spreads over a tile"


class Winograd:
    name = "winograd"
    nonfinite_skips = tuple((op, _MIXES_TAPS) for op in OPS)

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        fig = figures("winograd")
        why_not = _refuse(op, geom, dtype)
        if why_not:
            return Refusal(self.name, why_not)
        if _one_pass(geom, dtype):  # transforms and GEMMs per block of tiles, in cache
            return _prepare_one_pass(op, geom, dtype, limit, planner, fig)
        m = tile_size(geom)
        n, tiles = m + 2, geom.batch * math.prod(-(-o // m) for o in geom.out_spatial)
        item = dtype.itemsize
        workspace = 2 * n**geom.rank * tiles * (geom.in_channels + geom.out_channels) * item
        check_fits(f"the Winograd tiles of {geom.x_shape('channels_last')}", workspace, limit)
        g, cg, og, _ = geom.group_dims
        flops = 2 * n**geom.rank * tiles * cg * og * g
        rate = fig.GEMM_FLOPS_PER_S if g == 1 else fig.GEMM_FLOPS_PER_S / 8
        moved = n**geom.rank * tiles * (geom.in_channels + geom.out_channels) * item
        fused = _fused(geom, dtype)
        if fused:  # the fused transforms read and write each tile once
            seconds = flops / rate + moved / fig.COPY_BYTES_PER_S + fig.CALL_SECONDS + planner.load_seconds(
                dtype, _kernels.winograd2d_input, _kernels.winograd2d_output)
        else:  # NumPy's einsum passes make several copies of the tiles
            seconds = flops / rate + 8 * moved / fig.COPY_BYTES_PER_S + 3 * fig.CALL_SECONDS
        run = partial(_forward, geom)
        if op == "input_grad":
            run = partial(_transpose.input_grad(geom), run=_forward)
        return Prepared(self.name, seconds * fig.FITTED[op], workspace, run, {"tile": m, "fused": fused})


def _one_pass(geom: ConvGeometry, dtype: np.dtype) -> bool:
    """F(4x4, 3x3) in one compiled pass (_kernels/winograd_fused.py): 2-D, no groups, float32
    or float64, at least ONE_PASS_CHANNELS input and output channels (with fewer, its GEMM tiles
    are mostly setup: 3 -> 64 channels measured 7x the tiled engine's time)."""
    return (geom.rank == 2 and tile_size(geom) == 4 and geom.feature_group_count == 1
            and dtype in (np.float32, np.float64)
            and min(geom.in_channels, geom.out_channels) >= ONE_PASS_CHANNELS)


def _prepare_one_pass(op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int, planner: Planner,
                      fig) -> Prepared:
    """The one-pass engine in both layouts; the input gradient is the forward of dy with the
    flipped, channel-swapped filter (the conv of ``_transpose.input_grad``)."""
    conv = _transpose.input_grad(geom).geometry if op == "input_grad" else geom
    c, o, item = conv.in_channels, conv.out_channels, dtype.itemsize
    (dh, dw), (th, tw) = conv.rhs_dilation, _phase_tiles(conv)
    tiles = conv.batch * dh * th * dw * tw
    seg = _segment(conv)
    # The transformed filter (and the input gradient's filter copied back), each thread's block of
    # transformed tiles and their products, and its channels-first rows (6 input rows and 4 output
    # rows of a unit, channels-last).
    most = _BLOCK_TILES + seg + 6
    rows = 6 * (4 * seg + 6 * dw) * c + 16 * seg * o
    workspace = (36 * c * (o + 32) + 9 * c * o * (op == "input_grad")  # the flipped filter's copy
                 + _threads.allowed() * (36 * most * (c + o + 16) + rows)) * item
    check_fits(f"the Winograd tiles of {conv.x_shape('channels_last')}", workspace, limit)
    # The cost model: the GEMMs at their rate, the transforms per tile (their time hardly
    # depends on the channels: short channel loops), the filter's transform.
    flops = 2 * 36 * tiles * c * -(-o // 16) * 16
    seconds = (flops / fig.ONE_PASS_FLOPS_PER_S + 36 * tiles * fig.ONE_PASS_TILE_SECONDS
               + 36 * c * o * item / fig.ONE_PASS_FILTER_BYTES_PER_S + fig.CALL_SECONDS)
    seconds = seconds * fig.ONE_PASS_FITTED[op]
    load = planner.load_seconds(dtype, _kernels.winograd43)
    first_seconds = seconds * fig.ONE_PASS_FIRST_SLOWDOWN + load
    seconds += load
    if op == "input_grad":
        run = partial(_transpose.input_grad(geom), run=partial(_one_pass_forward, first=False))
        first = partial(_transpose.input_grad(geom, "channels_first"),
                        run=partial(_one_pass_forward, first=True))
    else:
        run = partial(_one_pass_forward, geom, first=False)
        first = partial(_run_first, partial(_one_pass_forward, geom, first=True))
    return Prepared("winograd", seconds, workspace, run, {"tile": 4, "fused": True, "one_pass": True},
                    run_first=first, first_seconds=first_seconds, checks_itself=(0,))


def _run_first(run, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``run`` on channels-first (x, w): it gets channels-last views and returns one of the
    channels-first y it wrote."""
    y = run(x_to_last(x, "channels_first"), w_to_last(w, "channels_first"))
    return np.ascontiguousarray(x_from_last(y, "channels_first"))


def _one_pass_forward(geom: ConvGeometry, x: np.ndarray, w: np.ndarray, first: bool) -> np.ndarray:
    """y of the stride-1 3x3 conv ``geom`` (any dilation) from channels-last x ``(N, H, W, C)`` and
    w ``(3, 3, C, O)``; with ``first``, x is a channels-last view of channels-first memory and y
    comes back as one (its memory ``(N, O, OH, OW)``)."""
    fmt = "channels_first" if first else "channels_last"
    y = aligned_empty(geom.y_shape(fmt), x.dtype)
    if y.size == 0:
        return x_to_last(y, fmt)
    if x.shape[-1] == 0:
        y.fill(0)
        return x_to_last(y, fmt)
    xs = np.ascontiguousarray(x_from_last(x, fmt))
    seg, per, threads = _work(geom)  # sets Numba's threads for the filter's transform too
    u = _one_pass_filter(w)
    (pt, _), (pl, _) = geom.tight_padding
    dh, dw = geom.rhs_dilation
    seen = np.zeros(threads, x.dtype)
    _kernels.winograd43(xs, u, _consts(x.dtype), first, dh, dw, pt, pl, seg, per, threads, y, seen)
    if not (seen == 0).all():  # an inf or a NaN in x (the kernel checks what its tiles read)
        raise NonFinite
    return x_to_last(y, fmt)


def _phase_tiles(geom: ConvGeometry) -> tuple[int, int]:
    """Tile rows and columns of 4 x 4 outputs on each phase grid (dilation d: every d-th output)."""
    return tuple(((o + d - 1) // d + 3) // 4 for o, d in zip(geom.out_spatial, geom.rhs_dilation))


def _segment(geom: ConvGeometry) -> int:
    """Tiles a unit of work takes along a row of tiles (all its phases): rows up to _BLOCK_TILES
    tiles whole, longer ones in parts of about that many (whole groups of phases)."""
    dw, across = geom.rhs_dilation[1], geom.rhs_dilation[1] * _phase_tiles(geom)[1]
    return across if across <= _BLOCK_TILES else dw * max(1, _BLOCK_TILES // dw)


def _work(geom: ConvGeometry) -> tuple[int, int, int]:
    """(tiles a unit takes along its row, units a work item, threads)."""
    dh, dw = geom.rhs_dilation
    th, tw = _phase_tiles(geom)
    across, seg = dw * tw, _segment(geom)
    units = geom.batch * dh * th * -(-across // seg)
    threads = _threads.for_numba()
    return seg, _per_item(units, max(1, _BLOCK_TILES // seg), threads), threads


ONE_PASS_CHANNELS = 8
# Tiles a work item transforms and multiplies at a time: whole rows of tiles up to about this
# many, longer rows in parts.
_BLOCK_TILES = 48


def _per_item(count: int, most: int, threads: int) -> int:
    """Units (tiles or rows of tiles) per work item: at most ``most``, in a multiple of
    ``threads`` items so that no thread waits for another's last one."""
    items = threads * -(-count // (threads * most))
    return max(1, -(-count // items))


def _consts(dtype: np.dtype) -> np.ndarray:
    return np.array(winograd_fused.CONSTANTS, dtype=dtype)


def _one_pass_filter(w: np.ndarray) -> np.ndarray:
    """w ``(3, 3, C, O)`` -> G w G^T as ``(36, C, P')``, zero past O: P = O rounded up to 16
    output channels, and P' = P, or P and one cache line where P's rows would be a multiple of 256
    bytes apart (``_filter_stride``)."""
    *_, c, o = w.shape
    u = scratch("winograd.u", (36, c, _filter_stride(o, w.dtype)), w.dtype)
    flipped = _flipped_copy(w)
    if flipped is None:
        _kernels.winograd43_filter(w, u, _consts(w.dtype), False)
    else:
        _kernels.winograd43_filter(flipped, u, _consts(w.dtype), True)
    return u


def _filter_stride(o: int, dtype: np.dtype) -> int:
    """The transformed filter's row stride for O output channels: O rounded up to 16, and 64
    bytes more where that is a multiple of 256 bytes. The GEMM tiles read a strip of 2 vectors of
    output channels down the C rows; rows 1 KiB apart (256 float32 channels) put that strip's
    lines on 4 of the first-level cache's 64 sets (8 ways: 32 lines of 256), so it did not stay
    there from one block of tiles to the next. The stage rows of ``_kernels.winograd_fused._skewed``
    skew only at multiples of 1 KiB (8 rows read together); these are read down all C rows, so
    rows 256 or 512 bytes apart (16 or 8 sets) skew too (resnet_3x3's 64 channels: 0.96-0.98x)."""
    p, item = -(-o // 16) * 16, np.dtype(dtype).itemsize
    return p + 64 // item if p * item % 256 == 0 else p


def _flipped_copy(w: np.ndarray) -> np.ndarray | None:
    """The input gradient's filter (``flip_swap_filter`` of the caller's filter, a view) flipped
    back and C-contiguous, by the compiled transposition; None for other filters.

    The transform read the view's channel axes the wrong way round: 1.07 ms against 0.45 for a
    contiguous 256 x 256 filter (one thread); transposed first, 0.16 + 0.45.
    """
    if w.flags.c_contiguous or w.size < layout.MIN_VALUES or not layout.loaded(w.dtype):
        return None
    base = np.flip(w, (0, 1))  # flip_swap_filter flipped the caller's taps
    kh, kw, c, o = w.shape
    out = scratch("winograd.w", (kh, kw, c, o), w.dtype)
    last = base.transpose(0, 1, 3, 2)  # a channels-last caller's (3, 3, C, O) memory
    first = base.transpose(2, 3, 0, 1)  # a channels-first caller's (O, C, 3, 3) memory
    if last.flags.c_contiguous:  # per tap, (o, c) -> (c, o)
        layout.transpose_batches(last.ravel(), out.ravel(), kh * kw, o, c, o * c, c, c * o, o)
    elif first.flags.c_contiguous:  # (c * o, taps) -> (taps, c * o)
        layout.transpose_batches(first.ravel(), out.ravel(), 1, c * o, kh * kw, 0, kh * kw, 0, c * o)
    else:
        return None
    return out


def _refuse(op: Op, geom: ConvGeometry, dtype: np.dtype) -> str | None:
    if op == "filter_grad":
        return "computes the forward and the input gradient only"
    if dtype.kind == "c":
        return no_complex(dtype)
    if dtype.kind != "f":
        return "integer results would not be exact"
    if any(k != 3 for k in geom.kernel) or any(s != 1 for s in geom.stride):
        return "needs a 3-tap kernel and stride 1 in every axis"
    if any(d != 1 for d in geom.lhs_dilation):
        return "needs input dilation 1"
    if any(d != 1 for d in geom.rhs_dilation) and not _one_pass(geom, dtype):
        return (f"dilation runs on the one-pass kernel only (2-D, no groups, float32/64, at least "
                f"{ONE_PASS_CHANNELS} channels)")
    if geom.batch_group_count != 1:
        return "needs batch_group_count == 1"
    return None


def _forward(geom: ConvGeometry, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    g, cg, _og, _ = geom.group_dims
    if x.shape[0] == 0 or cg == 0 or geom.out_channels == 0:
        return np.zeros((geom.batch, *geom.out_spatial, geom.out_channels), dtype=x.dtype)
    m = tile_size(geom)
    bt, gm, at = (a.astype(x.dtype) for a in TRANSFORMS[m])
    n, r = m + 2, geom.rank
    tiles = tuple(-(-o // m) for o in geom.out_spatial)
    # Pad so that the tiles cover the input exactly; the extra outputs are cropped below.
    pads = tuple((lo, hi + t * m - o) for (lo, hi), t, o in zip(geom.tight_padding, tiles, geom.out_spatial))
    xp = pad_or_crop(x, pads)
    if _fused(geom, x.dtype):
        return _forward_fused(geom, xp, w, bt, gm, at, tiles)
    win = sliding_window_view(xp, (n,) * r, axis=tuple(range(1, r + 1)))
    win = win[(slice(None), *(slice(None, None, m),) * r)]  # (N, *tiles, C, *n)
    v = _transform(win, bt, r, batch_axes=r + 2)  # (*n, N, *tiles, C)
    v = v.reshape(n**r, -1, g, cg).transpose(0, 2, 1, 3)  # (n^r, G, T, Cg)
    u = _filter_transform(w, gm, r, g)
    mm = _threads.matmul(v, u).transpose(0, 2, 1, 3).reshape(*(n,) * r, -1, geom.out_channels)
    y = _transform(np.moveaxis(mm, tuple(range(r)), tuple(range(-r, 0))), at, r, batch_axes=2)
    # (*m, T, O) -> (N, *tiles, *m, O) -> (N, t1, m, t2, m, ..., O)
    y = y.reshape(*(m,) * r, geom.batch, *tiles, geom.out_channels)
    order = [r] + [ax for i in range(r) for ax in (r + 1 + i, i)] + [2 * r + 1]
    y = y.transpose(order).reshape(geom.batch, *(t * m for t in tiles), geom.out_channels)
    return np.ascontiguousarray(y[(slice(None), *(slice(0, o) for o in geom.out_spatial))])


def _fused(geom: ConvGeometry, dtype: np.dtype) -> bool:
    return geom.rank == 2 and dtype in (np.float32, np.float64)


def _filter_transform(w: np.ndarray, gm: np.ndarray, r: int, g: int) -> np.ndarray:
    """w ``(*3, Cg, O)`` -> ``G w G^T`` per axis, as ``(n^r, G, Cg, Og)``."""
    cg, o = w.shape[-2:]
    n, k = gm.shape
    # One GEMM with the Kronecker product of G over the axes: rows (a_1, ..., a_r), columns the taps.
    kron = gm
    for _ in range(r - 1):
        kron = np.kron(kron, gm)
    u = _threads.matmul(kron, w.reshape(k**r, cg * o))  # (n^r, Cg * O)
    return u.reshape(n**r, cg, g, o // g).transpose(0, 2, 1, 3)


def _forward_fused(geom: ConvGeometry, xp: np.ndarray, w: np.ndarray, bt: np.ndarray, gm: np.ndarray,
                   at: np.ndarray, tiles: tuple[int, ...]) -> np.ndarray:
    """2-D: the input and output transforms as compiled loops around one batched GEMM."""
    g, cg, _og, _ = geom.group_dims
    m, n = at.shape
    count = geom.batch * tiles[0] * tiles[1]
    v = aligned_empty((n * n, count, geom.in_channels), xp.dtype)
    _threads.for_numba()
    _kernels.winograd2d_input(xp, bt, m, tiles[0], tiles[1], v)
    u = _filter_transform(w, gm, 2, g)
    if g == 1:
        mm = _threads.matmul(v, u[:, 0])
    else:
        mm = _threads.matmul(v.reshape(n * n, count, g, cg).transpose(0, 2, 1, 3), u)
        mm = np.ascontiguousarray(mm.transpose(0, 2, 1, 3)).reshape(n * n, count, geom.out_channels)
    y = aligned_empty((geom.batch, *geom.out_spatial, geom.out_channels), xp.dtype)
    _kernels.winograd2d_output(mm, at, tiles[0], tiles[1], y)
    return y


def _transform(a: np.ndarray, mat: np.ndarray, r: int, batch_axes: int) -> np.ndarray:
    """Apply ``mat`` along the last ``r`` axes of ``a`` and move them to the front.

    a ``(*batch, *k)`` -> ``(*p, *batch)`` with ``p`` = mat.shape[0] per axis.
    """
    letters = string.ascii_letters
    batch = letters[: a.ndim - r]
    ins = letters[a.ndim - r : a.ndim]
    outs = letters[a.ndim : a.ndim + r]
    operands = [f"{o}{i}" for o, i in zip(outs, ins)]
    spec = ",".join([batch + ins, *operands]) + "->" + outs + batch
    return np.einsum(spec, a, *([mat] * r), optimize=True)
