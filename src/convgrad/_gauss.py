"""Gauss's trick: a complex op as three real convs of its component dtype (as PyTorch does).

For ``a = p + iq`` and ``b = r + is`` and a bilinear op ``B``: ``t1 = B(p, r)``,
``t2 = B(q, s)``, ``t3 = B(p + q, r + s)`` give ``B(a, b) = (t1 - t2) + i(t3 - t1 - t2)``.
The real engines (tiled, FFT, Winograd, float GEMM) run the three faster than a complex GEMM
runs one.

Where it can (``fused``: 1-D to 3-D, no input dilation, and for the input gradient stride 1 and
no batch groups) the split pads as it splits: the x-sized operand (x; dy of the input gradient,
which runs as the forward conv of ``_transpose.input_grad``) is read once into its three parts,
already padded and channels-last (``_kernels.split_parts``), and the real convs run VALID on
them, so the engines copy nothing; the three results are joined into the caller's layout in one
write (``_kernels.join_parts``). Elsewhere the parts are split in the caller's layout and the
real convs run on them as on any operands.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _transpose
from ._dtypes import all_finite
from ._layout import w_from_last, w_to_last

if TYPE_CHECKING:
    from ._geometry import ConvGeometry, Pairs
    from .engines import Op

# The operands and result of each op, by role.
ROLES = {"forward": ("x", "w", "y"), "input_grad": ("y", "w", "x"), "filter_grad": ("x", "y", "w")}


@dataclass(frozen=True)
class RealConv:
    """The real conv that a complex op's split runs three times.

    ``op`` on ``geometry`` in ``layout`` (channels-last where ``pads`` is not None: the fused
    split, whose x-sized operand ``a`` is split already padded by ``pads`` (a VALID
    ``geometry``); else the caller's layout, the op's own geometry). ``rhs`` makes the real
    conv's second operand from a real part of ``b`` in the caller's layout (fused only: the
    filter channels-last, flipped and swapped for the input gradient).
    """

    op: Op
    geometry: ConvGeometry
    layout: str
    pads: Pairs | None = None
    rhs: Callable[[np.ndarray], np.ndarray] | None = None


def real_conv(op: Op, geom: ConvGeometry, layout: str) -> RealConv:
    """How ``op`` on ``geom`` for a caller in ``layout`` splits (see the module's docstring)."""
    fusable = geom.rank <= 3 and all(d == 1 for d in geom.lhs_dilation)
    if fusable and op in ("forward", "filter_grad"):
        rhs = (lambda w: w_to_last(w, layout)) if op == "forward" else None
        return RealConv(op, _valid(geom), "channels_last", geom.tight_padding, rhs)
    if fusable and op == "input_grad" and all(s == 1 for s in geom.stride) and geom.batch_group_count == 1:
        t = _transpose.input_grad(geom, layout)  # dx = the forward conv of dy with w flipped, swapped
        return RealConv("forward", _valid(t.geometry), "channels_last", t.geometry.tight_padding, t.rhs)
    return RealConv(op, geom, layout)


def _valid(geom: ConvGeometry) -> ConvGeometry:
    """``geom`` on its input already padded by its tight pads: the same windows, no pads."""
    return dataclasses.replace(geom, in_spatial=geom.tight_padded, padding=((0, 0),) * geom.rank)


def split_bytes(op: Op, geom: ConvGeometry, dtype: np.dtype, real: RealConv) -> int:
    """The real arrays a split holds besides its result: each operand's three parts (the
    x-sized one padded where fused) and the three real results."""
    item = np.dtype(dtype).itemsize // 2
    a, b, out = ROLES[op]
    size = {"x": math.prod(geom.x_shape()), "y": math.prod(geom.y_shape()), "w": math.prod(geom.w_shape())}
    if real.pads is not None:
        padded = real.geometry.x_shape()  # the real conv's input: the padded x, or padded dy
        size[a] = math.prod(padded)
    return 3 * (size[a] + size[b] + size[out]) * item


def split_seconds(op: Op, geom: ConvGeometry, dtype: np.dtype, real: RealConv, rate: float) -> float:
    """The passes around the three convs: each operand read and its parts written, the result's
    parts read and the result written, at ``rate`` bytes/s."""
    item = np.dtype(dtype).itemsize
    shapes = {"x": geom.x_shape(), "y": geom.y_shape(), "w": geom.w_shape()}
    moved = sum(math.prod(shapes[r]) for r in ROLES[op]) * item * 2.5  # complex in, 3 halves out
    return moved / rate


def run(real: RealConv, plan: Any, layout: str, op: Op, geom: ConvGeometry, a: np.ndarray,
        b: np.ndarray) -> np.ndarray | None:
    """The complex ``op`` on C-contiguous ``a``, ``b`` in ``layout`` by three runs of the real
    ``plan`` (for ``real``); the result C-contiguous in ``layout``. None where an operand has an
    inf or NaN (or a part's sum overflows): mixing ``p`` and ``q`` would put them where the
    direct sum does not."""
    if real.pads is None:
        return _run_plain(plan, a, b)
    parts_a = _split_x(a, layout, real.pads, "gauss.a")
    if parts_a is None:
        return None
    if op == "filter_grad":  # b is dy, x-sized too
        parts_b = _split_x(b, layout, ((0, 0),) * geom.rank, "gauss.b")
        if parts_b is None:
            return None
    else:
        parts_b = _split_small(b, real.rhs)
        if parts_b is None:
            return None
    t1, t2, t3 = (np.ascontiguousarray(plan(pa, pb)) for pa, pb in zip(parts_a, parts_b))
    if op == "filter_grad":
        return np.ascontiguousarray(w_from_last(_join_small(t1, t2, t3, a.dtype), layout))
    return _join_x(t1, t2, t3, a.dtype, layout)


def _split_x(a: np.ndarray, layout: str, pads: Pairs, name: str) -> tuple[np.ndarray, ...] | None:
    """Re, Im and Re + Im of the x-sized ``a`` (N, C, *S) or (N, *S, C), padded by ``pads``,
    channels-last C-contiguous (scratch arrays ``name.0-2``); None if any is not finite."""
    from .engines import _kernels
    from .engines._common import as_3d
    from .engines._scratch import scratch

    rank = a.ndim - 2
    first = a.transpose(0, 1, *range(2, a.ndim)) if layout == "channels_first" else \
        a.transpose(0, a.ndim - 1, *range(1, a.ndim - 1))  # a view in (N, C, *S) order
    shape = (first.shape[0], first.shape[1], *(1,) * (3 - rank), *first.shape[2:])
    strides = (first.strides[0], first.strides[1], *(0,) * (3 - rank), *first.strides[2:])
    strides = tuple(s // a.itemsize for s in strides)
    lows = (0,) * (3 - rank) + tuple(lo for lo, _ in pads)
    out_shape = (shape[0], *(n + lo + hi for n, (lo, hi) in zip(first.shape[2:], pads)), shape[1])
    parts = tuple(scratch(f"{name}.{i}", out_shape, a.real.dtype) for i in range(3))
    pairs = a.view(a.real.dtype).reshape(-1)
    if _kernels.split_parts(pairs, strides, shape, lows, *(as_3d(p) for p in parts)):
        return None
    return parts


def _split_small(b: np.ndarray, rhs: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, ...] | None:
    """Re, Im and Re + Im of the filter ``b``, each made the real conv's operand by ``rhs``."""
    r, s = b.real, b.imag
    with np.errstate(over="ignore", invalid="ignore"):
        rs = r + s
    if not all_finite(rs):
        return None
    return tuple(np.ascontiguousarray(rhs(v)) for v in (r, s, rs))


def _join_x(t1: np.ndarray, t2: np.ndarray, t3: np.ndarray, dtype: np.dtype, layout: str) -> np.ndarray:
    """The complex result (t1 - t2) + i((t3 - t1) - t2) of the channels-last x-sized t's, in
    ``layout``, in one pass."""
    from .engines import _kernels
    from .engines._common import as_3d

    n, *spatial, c = t1.shape
    rank = len(spatial)
    shape = (n, c, *spatial) if layout == "channels_first" else t1.shape
    out = np.empty(shape, dtype)
    first = out if layout == "channels_first" else out.transpose(0, out.ndim - 1, *range(1, out.ndim - 1))
    strides = (first.strides[0], first.strides[1], *(0,) * (3 - rank), *first.strides[2:])
    _kernels.join_parts(*(as_3d(t) for t in (t1, t2, t3)), out.view(t1.dtype).reshape(-1),
                        tuple(s // out.itemsize for s in strides))
    return out


def _join_small(t1: np.ndarray, t2: np.ndarray, t3: np.ndarray, dtype: np.dtype) -> np.ndarray:
    out = np.empty(t1.shape, dtype)
    np.subtract(t1, t2, out=out.real)
    t3 -= t1
    np.subtract(t3, t2, out=out.imag)
    return out


def _run_plain(plan: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """The split on the operands as they come: parts split by NumPy, the result joined by it."""
    p, q, r, s = (np.ascontiguousarray(v) for v in (a.real, a.imag, b.real, b.imag))
    if not all(map(all_finite, (p, q, r, s))):
        return None
    with np.errstate(over="ignore"):
        pq, rs = p + q, r + s
    if not (all_finite(pq) and all_finite(rs)):
        return None
    t1, t2, t3 = plan(p, r), plan(q, s), plan(pq, rs)
    return _join_small(t1, t2, t3, a.dtype)

