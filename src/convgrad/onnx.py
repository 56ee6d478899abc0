"""ONNX ``Conv``, ``ConvTranspose`` and ``ConvInteger`` (opset 22 spec) over NumPy.

ONNX's shape model: X is ``(N, C, *S)``; Conv gives ``(S + begin + end - ((K - 1) * dilation +
1)) // stride + 1`` samples per axis (SAME_UPPER / SAME_LOWER: ``ceil(S / stride)``, the odd pad
at the end / the start); ConvTranspose gives ``stride * (S - 1) + output_padding + (K - 1) *
dilation + 1 - begin - end``, or ``output_shape``, from which the spec derives the pads.

Attribute names, defaults and checks are the operator spec's: ``pads`` is
``[x1_begin, x2_begin, ..., x1_end, x2_end, ...]`` and non-negative, ``pads`` together with an
``auto_pad`` other than NOTSET is an error, ``kernel_shape`` must agree with ``W``. Layouts are
ONNX's: X ``(N, C, *S)``, Conv W ``(M, C / group, *K)``, ConvTranspose W ``(C, M / group, *K)``,
B ``(M,)``. Every op has ``op.vjp(*args, **kwargs) -> (out, pullback)``: ``pullback(dy)``
returns ``(dX, dW, dB)`` (dB None without B), for ConvInteger ``(dx, dw, dx_zero_point,
dw_zero_point)`` (None for an absent zero point).

Where onnxruntime 1.32 departs from the spec, this module follows the spec and the tests pin the
difference: dilated SAME_UPPER/SAME_LOWER Conv (onnxruntime refuses it), a per-channel
``w_zero_point`` (refused by onnxruntime's ConvInteger), ConvTranspose ``output_padding`` in
``[stride, max(stride, dilation))`` (onnxruntime's shape check refuses it), and ConvTranspose
SAME when ``stride * n`` exceeds the full transposed size (onnxruntime silently returns the
smaller full size; here it is an error, since the spec's pads would be negative).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _ops
from ._budget import contiguous, workspace_limit
from ._canon import positive_int
from ._dtypes import as_array
from ._formulas import dilate_dim, transpose_size
from ._fronts.kit import CoreCall, Linear, int_seq, op_with_vjp
from ._geometry import ConvGeometry

__all__ = ["conv", "conv_integer", "conv_transpose"]
__dir__ = __all__.copy  # dir() lists the API only

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
_CONV_PADDING = {"VALID": "valid", "SAME_UPPER": "same", "SAME_LOWER": "same_lower"}

Grads = tuple["np.ndarray | None", ...]


_MESSAGES = {
    "type": "attribute {name} must be a list of {count} ints, got {value!r}",
    "size": "attribute {name}={items} has incorrect size: expected {count} values",
    "minimum": "attribute {name}={items} must contain values >= {minimum}",
}


def _ints(name: str, value: object, count: int, default: int, minimum: int) -> tuple[int, ...]:
    """An ONNX ints attribute of exactly ``count`` values >= ``minimum`` (``default`` if None)."""
    return int_seq(name, value, count, minimum=minimum, messages=_MESSAGES, default=default)


class _Attrs:
    """The checked attributes shared by Conv, ConvTranspose and ConvInteger."""

    def __init__(
        self, X: np.ndarray, W: np.ndarray, auto_pad: object, dilations: object, group: object,
        kernel_shape: object, pads: object, strides: object,
    ) -> None:
        if X.ndim < 3 or W.ndim != X.ndim:
            raise ValueError(
                f"X and W must have the same rank, at least 3 (N, C, *spatial): X.shape={X.shape}, "
                f"W.shape={W.shape}"
            )
        self.rank = rank = X.ndim - 2
        if not isinstance(auto_pad, str) or auto_pad not in AUTO_PADS:
            raise ValueError(f"auto_pad={auto_pad!r} must be one of {AUTO_PADS}")
        if pads is not None and auto_pad != "NOTSET":
            raise ValueError(
                f"pads={pads!r} cannot be used together with auto_pad={auto_pad!r} (the spec "
                "allows one or the other)"
            )
        self.auto_pad = auto_pad
        self.kernel = W.shape[2:]
        if kernel_shape is not None:
            ks = _ints("kernel_shape", kernel_shape, rank, 1, 1)
            if ks != self.kernel:
                raise ValueError(f"kernel_shape={list(ks)} is not compatible with W.shape={W.shape}")
        self.strides = _ints("strides", strides, rank, 1, 1)
        self.dilations = _ints("dilations", dilations, rank, 1, 1)
        self.group = positive_int("group", group)
        flat = _ints("pads", pads, 2 * rank, 0, 0)
        self.pairs = tuple(zip(flat[:rank], flat[rank:]))

    def geometry(self, X: np.ndarray, W: np.ndarray, padding: object = None, names: str = "XW",
                 **extra: object) -> ConvGeometry:
        """Conv's geometry (``padding`` defaults to auto_pad or the pads), or with ``extra``
        (output_padding) ConvTranspose's; ``names``: the op's names of its two operands."""
        if padding is None:
            padding = _CONV_PADDING.get(self.auto_pad, self.pairs)
        if extra:
            return ConvGeometry.for_transpose(X.shape, W.shape, stride=self.strides, dilation=self.dilations,
                                              groups=self.group, padding=padding, **extra)
        return ConvGeometry.for_conv(X.shape, W.shape, stride=self.strides, dilation=self.dilations,
                                     groups=self.group, padding=padding,
                                     names=(("x", names[0]), ("w", names[1])))


def _float_operands(op: str, **arrays: object) -> dict[str, np.ndarray]:
    """The spec's type constraint T: one floating dtype for all of X, W and B."""
    # Only B is optional: a missing X or W is the caller's mistake, not an absent input.
    out = {k: as_array(k, v) for k, v in arrays.items() if v is not None or k != "B"}
    dtypes = {a.dtype for a in out.values()}
    if len(dtypes) != 1 or next(iter(dtypes)).kind != "f":
        raise TypeError(
            f"{op} needs X, W and B of one floating dtype (T), got "
            + ", ".join(f"{k}: {a.dtype}" for k, a in out.items())
        )
    return out


# --- Conv ---------------------------------------------------------------------------------------
@op_with_vjp
def conv(
    X: Any, W: Any, B: Any = None, *, auto_pad: str = "NOTSET", dilations: Sequence[int] | None = None,
    group: int = 1, kernel_shape: Sequence[int] | None = None, pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> CoreCall:
    """ONNX ``Conv``: cross-correlation of X ``(N, C, *S)`` with W ``(M, C / group, *K)``, plus B
    (the module's shape model; SAME_* include the dilation).

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import onnx
    >>> onnx.conv(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 2)), pads=[1, 0], strides=[2])
    array([[[0., 3., 7.]]])
    """
    ops = _float_operands("Conv", X=X, W=W, B=B)
    a = _Attrs(ops["X"], ops["W"], auto_pad, dilations, group, kernel_shape, pads, strides)
    return CoreCall(a.geometry(ops["X"], ops["W"]), "y", {"x": ops["X"], "w": ops["W"]}, ops["X"].dtype,
                    ops.get("B"), with_bias=True)


# --- ConvTranspose ------------------------------------------------------------------------------
def _transpose_geometry(
    X: np.ndarray, a: _Attrs, output_padding: object, output_shape: object
) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """(pads, output_padding) of the ConvTranspose, from the spec's equations.

    ``full = stride * (in - 1) + (K - 1) * dilation + 1``; ``out = full + output_padding - begin - end``;
    with ``output_shape`` (or SAME, ``out = in * stride``), ``total = full + output_padding - out``
    is split as SAME_UPPER ``(total // 2, rest)``, else ``(rest, total // 2)``. An ``output_shape``
    past ``full`` (total < 0) is the full output zero-filled at the end, and is reachable only when
    ``out - full < stride`` (the forward conv maps ``out`` back to ``in``).
    """
    rank = a.rank
    op = _ints("output_padding", output_padding, rank, 0, 0)
    for i, (p, s, d) in enumerate(zip(op, a.strides, a.dilations)):
        if p >= max(s, d):
            raise ValueError(
                f"output_padding={list(op)} must be less than max(stride, dilation) in every axis; "
                f"axis {i}: output_padding {p}, stride {s}, dilation {d}"
            )
    spatial = X.shape[2:]
    if any(n < 1 for n in spatial):
        raise ValueError(f"ConvTranspose needs non-empty spatial dims, got X.shape={X.shape}")
    full = [
        transpose_size(n, dilate_dim(k, d), s, 0, 0, 0)
        for n, k, d, s in zip(spatial, a.kernel, a.dilations, a.strides)
    ]
    same = output_shape is None and a.auto_pad in ("SAME_UPPER", "SAME_LOWER")
    if output_shape is None and not same:
        return a.pairs, op
    # SAME asks for input * stride outputs; output_shape names them.
    out = [n * s for n, s in zip(spatial, a.strides)] if same else _ints("output_shape", output_shape, rank,
                                                                           0, 1)
    pads, extra = [], []
    for i, (f, o, p, s) in enumerate(zip(full, out, op, a.strides)):
        total = f + p - o
        if total >= 0:
            half = total // 2
            pads.append((half, total - half) if a.auto_pad == "SAME_UPPER" else (total - half, half))
            extra.append(p)
        elif same:
            # onnx.reference splits the negative totals as the spec says and reads a negative pad
            # as zeros at that end: the pads' positive parts, then np.pad by their negative parts.
            split = [(t // 2, t - t // 2) if a.auto_pad == "SAME_UPPER" else (t - t // 2, t // 2)
                     for t in (ff + pp - oo for ff, oo, pp in zip(full, out, op))]
            keep = [max(v, 0) for v in (*(b for b, _ in split), *(e for _, e in split))]
            fill = [(0, 0), (0, 0), *((max(-b, 0), max(-e, 0)) for b, e in split)]
            raise ValueError(
                f"auto_pad={a.auto_pad} asks for {o} (= input * stride) outputs in spatial axis {i} "
                f"(X's axis {i + 2}), more than the full transposed size {f + p}: the spec's pads would "
                f"be negative, {[list(pr) for pr in split]}; ONNX's reference evaluator adds zeros "
                f"for them: y = conv_transpose(X, W, pads={keep}, the same strides, dilations, "
                f"group, output_padding and no auto_pad); np.pad(y, {fill})"
            )
        elif o - f < s:
            pads.append((0, 0))
            extra.append(o - f)
        else:
            raise ValueError(
                f"output_shape={list(out)} is unreachable in axis {i}: the full transposed size "
                f"is {f} and at most {s - 1} zero samples (stride - 1) can follow it, so the "
                f"size must be <= {f + s - 1}"
            )
    return tuple(pads), tuple(extra)


@op_with_vjp
def conv_transpose(
    X: Any, W: Any, B: Any = None, *, auto_pad: str = "NOTSET", dilations: Sequence[int] | None = None,
    group: int = 1, kernel_shape: Sequence[int] | None = None,
    output_padding: Sequence[int] | None = None, output_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None, strides: Sequence[int] | None = None,
) -> CoreCall:
    """ONNX ``ConvTranspose`` of X ``(N, C, *S)`` with W ``(C, M / group, *K)``, plus B ``(M,)``.

    ``output_shape`` (spatial only) generates the pads: their total is the module's size without
    pads minus ``output_shape``, begin ``total // 2`` for SAME_UPPER and ``total - total // 2``
    otherwise; SAME_* give ``S * stride`` outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import onnx
    >>> onnx.conv_transpose(np.ones((1, 1, 2)), np.ones((1, 1, 3)), strides=[2], output_shape=[4])
    array([[[1., 2., 1., 1.]]])
    """
    ops = _float_operands("ConvTranspose", X=X, W=W, B=B)
    x = ops["X"]
    # With output_shape the spec generates the pads and ignores the given ones.
    a = _Attrs(x, ops["W"], auto_pad, dilations, group, kernel_shape, pads, strides)
    pairs, extra = _transpose_geometry(x, a, output_padding, output_shape)
    for i, (n, k, d, s, (b, e), p) in enumerate(
        zip(x.shape[2:], a.kernel, a.dilations, a.strides, pairs, extra)
    ):
        size = transpose_size(n, dilate_dim(k, d), s, b, e, p)
        if size <= 0:
            raise ValueError(
                f"the computed output size {size} in axis {i} is not positive: pads {(b, e)} crop "
                f"the whole transposed output of size {transpose_size(n, dilate_dim(k, d), s, 0, 0, p)}"
            )
    return CoreCall(a.geometry(x, ops["W"], pairs, output_padding=extra), "x", {"y": x, "w": ops["W"]},
                    x.dtype, ops.get("B"), with_bias=True)


# --- ConvInteger --------------------------------------------------------------------------------
def _zero_point(name: str, zp: object, dtype: np.dtype, channels: int | None) -> np.ndarray | None:
    if zp is None:
        return None
    z = as_array(name, zp)
    if z.dtype != dtype:
        raise TypeError(f"{name} must have the dtype of its tensor, {dtype}, got {z.dtype}")
    sizes = (1,) if channels is None else (1, channels)
    if z.ndim > 1 or z.size not in sizes:
        allowed = "a scalar or a 1-element 1-D tensor" + (
            "" if channels is None else f", or a 1-D tensor of M={channels} (per output channel)"
        )
        raise ValueError(f"{name} must be {allowed}, got shape {z.shape}")
    return z


@op_with_vjp
def conv_integer(
    x: Any, w: Any, x_zero_point: Any = None, w_zero_point: Any = None, *, auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None, group: int = 1, kernel_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None, strides: Sequence[int] | None = None,
) -> Linear:
    """ONNX ``ConvInteger``: ``Conv(x - x_zero_point, w - w_zero_point)`` in int32, no bias.

    Shape model as ``conv``. x and w are int8 or uint8; ``x_zero_point`` is a scalar of x's dtype;
    ``w_zero_point`` a scalar or one value per output channel ``(M,)``, of w's dtype. Padding adds
    samples equal to the zero point (zero after the shift). ``.vjp`` gives the gradients of the
    real-valued extension: (dx, dw, dx_zero_point, dw_zero_point), int64 for integer dy.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad import onnx
    >>> x = np.array([[[3, 4, 5]]], np.uint8)
    >>> onnx.conv_integer(x, np.ones((1, 1, 2), np.uint8), np.uint8(3), pads=[1, 0])
    array([[[0, 1, 3]]], dtype=int32)
    """
    xa, wa = as_array("x", x), as_array("w", w)
    for name, arr in (("x", xa), ("w", wa)):
        if arr.dtype not in (np.int8, np.uint8):
            raise TypeError(f"ConvInteger needs {name} of dtype int8 or uint8, got {arr.dtype}")
    a = _Attrs(xa, wa, auto_pad, dilations, group, kernel_shape, pads, strides)
    xz = _zero_point("x_zero_point", x_zero_point, xa.dtype, None)
    wz = _zero_point("w_zero_point", w_zero_point, wa.dtype, wa.shape[0])
    geom = a.geometry(xa, wa, names="xw")
    # The int64 copies are 8 times the uint8 operands (more for broadcast views): budgeted first.
    limit = workspace_limit()
    xs, ws = contiguous("x", xa, np.int64, limit), contiguous("w", wa, np.int64, limit)
    if xz is not None:
        xs -= xz.astype(np.int64).reshape(())
    if wz is not None:
        ws -= wz.astype(np.int64).reshape(-1, *(1,) * (wa.ndim - 1))
    call = _ops._Call(geom, "channels_first")

    def grads(g: np.ndarray) -> Grads:
        dx, dw = call("x", y=g, w=ws), call("w", x=xs, y=g)
        # x - x_zero_point: the zero point's gradient is minus the sum of x's.
        dxz = None if xz is None else (-dx.sum()).reshape(xz.shape)
        if wz is None:
            dwz = None
        elif wz.size == 1:
            dwz = (-dw.sum()).reshape(wz.shape)
        else:
            dwz = -dw.sum(axis=tuple(range(1, dw.ndim)))
        return dx, dw, dxz, dwz

    # The spec accumulates in int32 and may overflow only there: exact int64 wrapped to int32.
    return Linear(lambda: call("y", x=xs, w=ws).astype(np.int32), grads)
