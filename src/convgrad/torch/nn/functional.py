"""PyTorch's ``torch.nn.functional`` convolutions and ``pad`` over NumPy.

PyTorch's shape model: x is ``(N, C_in, *S)`` or, unbatched, ``(C_in, *S)``; a conv's weight is
``(C_out, C_in / groups, *K)`` and its output has ``(n + 2 p - d (k - 1) - 1) // s + 1`` samples
per axis (``padding='same'``, stride 1 only, keeps ``n``: total ``d (k - 1)``, the extra sample
on the right); a transposed conv's weight is ``(C_in, C_out / groups, *K)`` and its output has
``(n - 1) s - 2 p + d (k - 1) + output_padding + 1`` samples, ``output_padding < max(s, d)``.

Names, order and defaults are PyTorch's. Every op has ``op.vjp(*args, **kwargs) -> (out,
pullback)``; ``pullback(dy)`` returns the gradients of the array arguments in signature order:
``(d_input, d_weight, d_bias)`` (``d_bias`` None without bias), ``(d_input,)`` for ``pad``.
Where PyTorch raises RuntimeError this raises ValueError (TypeError for wrong types) with the
same meaning. PyTorch's CPU dtype gaps (e.g. integer convolutions) are not copied.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from ..._budget import check_fits, workspace_limit
from ..._canon import MAX_NDIM, bounded_list
from ..._dtypes import as_array
from ..._fronts.kit import CoreCall, Linear, Unbatched, op_with_vjp
from ..._geometry import ConvGeometry

__all__ = [
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "pad",
]
__dir__ = __all__.copy  # dir() lists the API only

_MINIMUM = {
    "stride": (1, "non-positive stride is not supported"),
    "dilation": (1, "dilation should be greater than zero"),
    "padding": (0, "negative padding is not supported"),
    "output_padding": (0, "negative output_padding is not supported"),
}


# --- PyTorch's argument rules -----------------------------------------------------------------
def _int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {value!r}")
    return int(value)


def expand(name: str, value: object, rank: int) -> tuple[int, ...]:
    """An int, or a list/tuple of 1 or ``rank`` ints (PyTorch's expand_param_if_needed), checked
    against PyTorch's minimum for ``name``."""
    if isinstance(value, (list, tuple)):
        items = [_int(f"{name}[{i}]", v) for i, v in enumerate(value)]
        if len(items) == 1:
            items *= rank
        elif len(items) != rank:
            raise ValueError(
                f"expected {name} to be a single integer value or a list of {rank} values to match "
                f"the convolution dimensions, but got {name}={items}"
            )
    else:
        items = [_int(name, value)] * rank
    minimum, message = _MINIMUM[name]
    if any(v < minimum for v in items):
        raise ValueError(f"{message}, got {name}={items}")
    return tuple(items)


def groups_of(groups: object) -> int:
    g = _int("groups", groups)
    if g < 1:
        raise ValueError(f"non-positive groups is not supported, got groups={g}")
    return g


def same_dtype(func: str, **arrays: np.ndarray | None) -> np.dtype:
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        raise TypeError(f"{func}: PyTorch needs one dtype for all operands, got {dtypes}")
    return next(iter(dtypes.values()))


def _operands(func: str, rank: int, input: object, weight: object, bias: object
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.dtype, Unbatched]:
    """(x, w, b, their one dtype, x's adapter): PyTorch also accepts an unbatched ``(C, *S)``."""
    x, w = as_array("input", input), as_array("weight", weight)
    b = None if bias is None else as_array("bias", bias)
    dtype = same_dtype(func, input=x, weight=w, bias=b)
    if w.ndim != rank + 2:
        raise ValueError(f"{func}: weight must have {rank + 2} dims (out, in, *kernel), got shape {w.shape}")
    if x.ndim not in (rank + 1, rank + 2):
        raise ValueError(
            f"Expected {rank + 1}D (unbatched) or {rank + 2}D (batched) input to {func}, but got input "
            f"of size: {list(x.shape)}"
        )
    layout = Unbatched(x.ndim == rank + 1)
    return layout.to_core(x), w, b, dtype, layout


_DIMS = {1: ("L", "k"), 2: ("H, W", "kh, kw"), 3: ("D, H, W", "kd, kh, kw")}  # spatial, kernel


def _ranked(name: str, op: Callable[..., CoreCall], rank: int, weight: str) -> Callable[..., Any]:
    """The public op ``name`` of one rank (its signature is ``op``'s)."""
    spatial, kernel = _DIMS[rank]
    op.__name__ = op.__qualname__ = name
    op.__doc__ = (f"``F.{name}``: input ``(N, C_in, {spatial})`` or ``(C_in, {spatial})``, weight "
                  f"``({weight}, {kernel})``; sizes as the module says. Gradients: (d_input, d_weight, "
                  "d_bias).")
    return op_with_vjp(op)


def _conv_op(rank: int) -> Callable[..., Any]:
    func = f"conv{rank}d"

    def op(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        x, w, b, dtype, layout = _operands(func, rank, input, weight, bias)
        s = expand("stride", stride, rank)
        d = expand("dilation", dilation, rank)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string: {padding!r}")
            if padding == "same" and any(v != 1 for v in s):
                raise ValueError("padding='same' is not supported for strided convolutions")
            # PyTorch's 'same' (total d (k - 1), extra on the right) is the core's SAME at stride 1.
            p: object = padding
        else:
            p = expand("padding", padding, rank)
        geom = ConvGeometry.for_conv(x.shape, w.shape, stride=s, padding=p, dilation=d,
                                     groups=groups_of(groups), names=(("x", "input"), ("w", "weight")))
        return CoreCall(geom, "y", {"x": x, "w": w}, dtype, b, with_bias=True, layout=layout)

    return _ranked(func, op, rank, "C_out, C_in / groups")


def _conv_transpose_op(rank: int) -> Callable[..., Any]:
    func = f"conv_transpose{rank}d"

    def op(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        x, w, b, dtype, layout = _operands(func, rank, input, weight, bias)
        if isinstance(padding, str):
            raise TypeError(f"{func}(): argument 'padding' must be tuple of ints, not str ({padding!r})")
        geom = ConvGeometry.for_transpose(
            x.shape, w.shape, stride=expand("stride", stride, rank), padding=expand("padding", padding, rank),
            output_padding=expand("output_padding", output_padding, rank),
            dilation=expand("dilation", dilation, rank), groups=groups_of(groups))
        size = geom.in_spatial
        if any(v < 1 for v in size):
            raise ValueError(
                f"Given input size per channel: {tuple(x.shape[2:])}. Calculated output size per channel: "
                f"{size}. Output size is too small"
            )
        return CoreCall(geom, "x", {"y": x, "w": w}, dtype, b, with_bias=True, layout=layout)

    return _ranked(func, op, rank, "C_in, C_out / groups")


conv1d, conv2d, conv3d = (_conv_op(r) for r in (1, 2, 3))
conv_transpose1d, conv_transpose2d, conv_transpose3d = (_conv_transpose_op(r) for r in (1, 2, 3))


# --- pad ---------------------------------------------------------------------------------------
_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _source_index(mode: str, n: int, lo: int, hi: int, dim: int, limit: int) -> np.ndarray:
    """For each sample of the padded axis, the input sample it copies; ``n`` marks the fill
    value. Raises where PyTorch refuses the pads."""
    if mode == "circular":
        # PyTorch crops first (negative pads), then wraps around what is left.
        m = n + min(lo, 0) + min(hi, 0)
        if lo > n or hi > n:
            raise ValueError(
                f"Padding value causes wrapping around more than once: pads ({lo}, {hi}) in dim {dim} "
                f"of size {n}"
            )
        if n + lo + hi < 0:
            raise ValueError(f"pads ({lo}, {hi}) crop more than the size {n} of dim {dim}")
        if n + lo + hi == 0:
            return np.zeros(0, dtype=np.intp)
        if max(lo, 0) > m or max(hi, 0) > m:
            raise ValueError(
                f"Padding value causes wrapping around more than once: pads ({lo}, {hi}) in dim {dim} "
                f"of size {n} ({m} after cropping)"
            )
        start, left = max(-lo, 0), max(lo, 0)
        size = m + left + max(hi, 0)
        _check_index(size, dim, limit)
        return start + (np.arange(size) - left) % max(m, 1)
    size = n + lo + hi
    if mode == "constant" and n + min(lo, 0) + min(hi, 0) < 0:
        raise ValueError(f"pads ({lo}, {hi}) crop more than the size {n} of dim {dim}")
    if size < 0:
        raise ValueError(
            f"input (size {n} in dim {dim}) is too small for pads ({lo}, {hi}): output size {size}"
        )
    if mode == "reflect" and (lo >= n or hi >= n):
        raise ValueError(
            f"Padding size should be less than the corresponding input dimension, but got: padding "
            f"({lo}, {hi}) at dimension {dim} of size {n}"
        )
    _check_index(size, dim, limit)
    p = np.arange(size) - lo  # position in the unpadded axis
    if mode == "constant":
        return np.where((p >= 0) & (p < n), p, n)
    if mode == "reflect":
        q = np.abs(p)
        return np.where(q >= n, 2 * (n - 1) - q, q)
    return np.clip(p, 0, n - 1)  # replicate


def _check_index(size: int, dim: int, limit: int) -> None:
    # An index per padded sample: pads of 2**31 would make one of 32 GiB even for an empty input.
    check_fits(f"the source index of dim {dim} (size {size})", size * np.dtype(np.intp).itemsize, limit)


def _gather(a: np.ndarray, index: list[tuple[int, np.ndarray]], value: object) -> np.ndarray:
    """``a`` padded: per (axis, source index), the samples the index names (``n``: the fill)."""
    for axis, idx in index:
        fill_shape = list(a.shape)
        fill_shape[axis] = 1
        ext = np.concatenate([a, np.full(fill_shape, value, dtype=a.dtype)], axis=axis)
        a = np.take(ext, idx, axis=axis)
    return a


def _scatter_add(g: np.ndarray, axis: int, idx: np.ndarray, n: int) -> np.ndarray:
    moved = np.moveaxis(g, axis, 0)
    acc = np.zeros((n + 1, *moved.shape[1:]), dtype=g.dtype)
    np.add.at(acc, idx, moved)
    return np.moveaxis(acc[:n], 0, axis)


def _resolve_pad(input: object, pad: object, mode: str = "constant", value: object = None) -> Linear:
    x = as_array("input", input)
    if isinstance(pad, (str, bytes)) or not hasattr(pad, "__iter__"):
        raise TypeError(f"pad must be a tuple of ints, got {pad!r}")
    pads = [_int(f"pad[{i}]", v) for i, v in enumerate(bounded_list("pad", pad, 2 * MAX_NDIM))]
    if len(pads) % 2:
        raise ValueError(f"Padding length must be divisible by 2, got pad={pads}")
    if len(pads) // 2 > x.ndim:
        raise ValueError(
            "Padding length should be less than or equal to two times the input dimension but got "
            f"padding length {len(pads)} and input of dimension {x.ndim}"
        )
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"value must be a number, got {value!r}")
    if mode not in _PAD_MODES:
        raise ValueError(f"Unrecognised padding mode {mode!r}; expected one of {_PAD_MODES}")
    if mode != "constant":
        if value is not None and value != 0:
            raise ValueError(f'Padding mode "{mode}" doesn\'t take in value argument')
        if (len(pads), x.ndim) not in {(2, 2), (2, 3), (4, 3), (4, 4), (6, 4), (6, 5)}:
            raise ValueError(
                f"Padding size {len(pads)} is not supported for {x.ndim}D input tensor with mode "
                f"{mode!r}: pad 1, 2 or 3 trailing dims of a tensor with 1 or 2 more dims"
            )
        if mode in ("reflect", "replicate") and any(v == 0 for v in x.shape[1:]):
            raise ValueError(
                f"mode {mode!r} needs non-zero dims (except the batch), got input of size {list(x.shape)}"
            )
    index, limit, shape = [], workspace_limit(), list(x.shape)
    for i in range(len(pads) // 2):
        axis = x.ndim - 1 - i
        index.append((axis, _source_index(mode, x.shape[axis], pads[2 * i], pads[2 * i + 1], axis, limit)))
        shape[axis] = index[-1][1].size
    check_fits(f"the result {tuple(shape)}", math.prod(shape) * x.itemsize, limit)
    if mode in ("reflect", "replicate") and all(idx.size == 0 for _, idx in index):
        # PyTorch's reflection and replication pads need at least one padded dim non-empty.
        raise ValueError(
            f"input of size {list(x.shape)} is too small for pad={pads}: every padded dim would be empty"
        )

    def grads(g: np.ndarray) -> tuple[np.ndarray]:
        # The adjoint of a gather is a scatter-add; the fill slot collects what the constant
        # samples received and is dropped. Each step changes only its own axis, so its input size
        # is the original one.
        for axis, idx in reversed(index):
            g = _scatter_add(g, axis, idx, x.shape[axis])
        return (g,)

    return Linear(lambda: _gather(x, index, 0 if value is None else value), grads)


@op_with_vjp
def pad(input, pad, mode="constant", value=None):
    """``F.pad``: pads the last ``len(pad) // 2`` dims of ``input``, the last dim first:
    ``pad = (left_last, right_last, left_second_last, ...)``; negative pads crop. Modes:
    'constant' (``value``, default 0; any dims), 'reflect' (whole-sample mirror, pads < size),
    'replicate' (edge), 'circular' (wrap, after any crop; pads <= size); the non-constant modes
    pad 1 to 3 trailing dims of a 2-D to 5-D input. Gradient: (d_input,), the scatter-add of dy
    back onto the samples it copies.
    """
    return _resolve_pad(input, pad, mode, value)
