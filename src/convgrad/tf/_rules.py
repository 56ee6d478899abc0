"""TensorFlow's argument rules and the builders every ``convgrad.tf.nn`` op shares.

Canonicalisation (``_pick``, ``_window``, ``_padding``, ``_operands``), the layout adapters
between TensorFlow's arrays and the core's channels-last ones (``_Layout``, ``_Filter``),
TensorFlow's output sizes (``_empty_geometry``) and the three builders (``_conv``,
``_input_grad``, ``_filter_grad``) that resolve a checked call into a ``CoreCall``. The names keep
their underscore: they are ``convgrad.tf``'s internals, imported by ``nn`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._budget import check_fits, workspace_limit
from .._canon import MAX_NDIM, as_int, bounded_list, shape_tuple
from .._dtypes import as_array
from .._formulas import dilate_dim
from .._fronts.kit import CoreCall
from .._geometry import ConvGeometry
from ..layouts import convert_filter

_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
_FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}
_CORE = "channels_last"


# --- canonicalisation: TensorFlow's argument rules --------------------------------------------
def _pick(new_name: str, new: object, old_name: str, old: object, *, required: bool = True) -> Any:
    """TensorFlow's deprecated_argument_lookup: one of two spellings of the same argument."""
    if new is not None and old is not None:
        raise ValueError(f"Cannot specify both '{new_name}' and '{old_name}'")
    value = new if new is not None else old
    if value is None and required:
        raise TypeError(f"missing required argument '{new_name}' (or its TF 1 spelling '{old_name}')")
    return value


def _required(name: str, value: object) -> Any:
    if value is None:
        raise TypeError(f"missing required argument '{name}'")
    return value


def _channels_first(data_format: object, rank: int, *, legacy_1d: bool = False) -> bool:
    """True for NC... formats; the names TensorFlow accepts for ``rank`` spatial dims."""
    allowed = [_LAST[rank], _FIRST[rank]]
    if rank == 1 and legacy_1d:
        allowed += ["NHWC", "NCHW"]  # conv1d's deprecated 2-d names
    if data_format not in allowed:
        raise ValueError(
            f"`data_format` must be {' or '.join(repr(a) for a in allowed)}. "
            f"Received: data_format={data_format!r}"
        )
    return str(data_format).startswith("NC")


def _sequence(
    name: str, value: object, rank: int, first: bool, *, full_only: bool = False
) -> tuple[int, ...]:
    """strides or dilations: None (all 1), an int, 1, ``rank`` or ``rank + 2`` values
    (TensorFlow's ``_get_sequence``), or with ``full_only`` exactly ``rank + 2`` values (the raw
    ops). Batch and channel entries must be 1. Returns the spatial values."""
    if value is None:
        return (1,) * rank
    if full_only and not isinstance(value, (list, tuple)):
        raise TypeError(f"Expected list for '{name}' argument, not {value!r}: give {rank + 2} values")
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an int or a list of ints, got {value!r}")
    # Checked here, so that an error names the user's spelling (strides) and index.
    items = ([as_int(f"{name}[{i}]", v) for i, v in enumerate(bounded_list(name, value, MAX_NDIM))]
             if hasattr(value, "__len__")
             else [as_int(name, value)])
    if len(items) == rank + 2:
        outer = (items[0], items[1]) if first else (items[0], items[-1])
        if any(v != 1 for v in outer):
            raise ValueError(
                f"{name}={items}: TensorFlow does not support {name} in the batch and depth "
                "dimensions; those entries must be 1"
            )
        return tuple(items[2:] if first else items[1:-1])
    if full_only:
        raise ValueError(f"{name} field must specify {rank + 2} dimensions, got {name}={items}")
    if len(items) == 1:
        return tuple(items) * rank
    if len(items) != rank:
        raise ValueError(
            f"{name} should be of length 1, {rank} or {rank + 2}. Received: {name}={items} of "
            f"length {len(items)}"
        )
    return tuple(items)


def _padding(padding: object, rank: int, first: bool, *, explicit: bool, func: str) -> object:
    """'SAME' / 'VALID' (case-sensitive, as TensorFlow), or where the op allows it an explicit
    list of ``rank + 2`` (before, after) pairs with zeros for batch and channels."""
    if isinstance(padding, str):
        if padding in ("SAME", "VALID"):
            return padding.lower()
        if padding == "EXPLICIT":
            raise ValueError(
                "'EXPLICIT' is not a valid value for `padding`. To use explicit padding, "
                "`padding` must be a list."
            )
        raise ValueError(f"`padding` must be 'SAME' or 'VALID'. Received: padding={padding!r}")
    if not isinstance(padding, (list, tuple)):
        raise TypeError(f"padding must be 'SAME', 'VALID' or a list of pairs, got {padding!r}")
    if not explicit:
        raise TypeError(f"{func} takes padding 'SAME' or 'VALID' only (no explicit padding), got {padding!r}")
    pairs = []
    for i, pair in enumerate(bounded_list("padding", padding, MAX_NDIM)):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(
                "When `padding` is a list, each element of `padding` must be a list/tuple of "
                f"size 2. Received: padding={padding} with element at index {i}: {pair!r}"
            )
        pairs.append(tuple(pair))
    if len(pairs) != rank + 2:
        raise ValueError(
            f"When padding is a list, it must be of size {rank + 2}. Received: padding={padding} "
            f"of size {len(pairs)}"
        )
    outer = (pairs[0], pairs[1]) if first else (pairs[0], pairs[-1])
    if any(v != 0 for pair in outer for v in pair):
        raise ValueError(
            f"padding={padding}: nonzero explicit padding in the batch or depth dimensions is not supported"
        )
    spatial = pairs[2:] if first else pairs[1:-1]
    if any(v < 0 for pair in spatial for v in pair):
        raise ValueError(f"padding={padding}: all elements of explicit_paddings must be nonnegative")
    return [list(p) for p in spatial]


def _window(func: str, rank: int, data_format: object, strides: object, padding: object, dilations: object, *,
            explicit: bool, raw: bool = False, depthwise: bool = False, stride_name: str = "strides",
            legacy_1d: bool = False) -> tuple[bool, tuple[int, ...], object, tuple[int, ...]]:
    """(channels_first, strides, padding, dilations) of a call by TensorFlow's rules: ``raw`` ops
    take strides and dilations of ``rank + 2`` values, depthwise ops equal row and column strides,
    ``explicit`` ones explicit pads."""
    first = _channels_first(data_format, rank, legacy_1d=legacy_1d)
    s = _sequence(stride_name, _required(stride_name, strides), rank, first, full_only=raw)
    s = _equal_strides(s, strides) if depthwise else s
    d = _sequence("dilations", dilations, rank, first, full_only=raw)
    return first, s, _padding(_required("padding", padding), rank, first, explicit=explicit, func=func), d


_CONV_DTYPES = ("float16", "bfloat16", "float32", "float64", "int32")
_DEPTHWISE_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _operands(func: str, *arrays: tuple[str, object], allowed: tuple[str, ...] | None = _CONV_DTYPES,
              strict: bool = False, ndim: int | None = None) -> tuple[np.dtype, list[np.ndarray]]:
    """The op's array operands in one dtype, as TensorFlow converts NumPy arguments: to the dtype
    of its first tensor operand (``strict``: the op has no dtype hint and refuses a mix); with
    ``ndim``, each must have that many dims."""
    named = [(name, as_array(name, a)) for name, a in arrays]
    dtype = named[0][1].dtype
    if strict and any(a.dtype != dtype for _, a in named):
        raise TypeError(f"{func}: TensorFlow needs one dtype for {[n for n, _ in named]}, got "
                        f"{[str(a.dtype) for _, a in named]}")
    if allowed is not None and dtype.name not in allowed:
        raise TypeError(f"{func}: TensorFlow's kernel takes dtypes {allowed}, got {dtype}")
    for name, a in named:
        if ndim is not None:
            _ndim(func, name, a, ndim)
        if a.dtype != dtype:  # the conversion copies: a broadcast view may span TiBs
            check_fits(f"{name} {a.shape} converted to {dtype}", a.size * dtype.itemsize, workspace_limit())
    return dtype, [a.astype(dtype, copy=False) for _, a in named]


def _ndim(func: str, name: str, a: np.ndarray, ndim: int, *, at_least: bool = False) -> None:
    if a.ndim < ndim if at_least else a.ndim != ndim:
        raise ValueError(
            f"{func}: {name} must have {'at least ' if at_least else ''}{ndim} dims, got shape {a.shape}"
        )


def _groups(func: str, channels: int, filter_in: int, w_name: str) -> int:
    if filter_in < 1 or channels % filter_in:
        raise ValueError(
            f"{func}: the number of input channels ({channels}) is not divisible by {w_name}'s "
            f"input channels ({filter_in})"
        )
    return channels // filter_in


# --- layouts: TensorFlow's arrays <-> the core's channels-last arrays --------------------------
@dataclass(frozen=True)
class _Layout:
    """How an activation of the op maps to the core's ``(N, *S, C)``: channels moved last for
    ``NC...`` formats, extra leading batch dims (``batch_shape``) merged into one."""

    first: bool
    batch_shape: tuple[int, ...]

    def to_core(self, a: np.ndarray) -> np.ndarray:
        a = a.reshape((-1, *a.shape[len(self.batch_shape):])) if len(self.batch_shape) != 1 else a
        return np.moveaxis(a, 1, -1) if self.first else a

    def from_core(self, a: np.ndarray) -> np.ndarray:
        a = np.moveaxis(a, -1, 1) if self.first else a
        return a.reshape(self.batch_shape + a.shape[1:]) if len(self.batch_shape) != 1 else a

    def split(self, shape: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
        """(batch, channels, spatial) of a full shape in this format."""
        if self.first:
            return shape[0], shape[1], tuple(shape[2:])
        return shape[0], shape[-1], tuple(shape[1:-1])


@dataclass(frozen=True)
class _Filter:
    """TensorFlow's filter <-> the core's channels-last ``(*K, C/G, O)``: the identity for HWIO,
    the grouped view ``(kh, kw, 1, C * M)`` for a depthwise ``(kh, kw, C, M)``."""

    depthwise_channels: int | None = None

    def to_core(self, w: np.ndarray) -> np.ndarray:
        if self.depthwise_channels is None:
            return w
        return convert_filter(w, "HWIM", "HWIO")

    def from_core(self, w: np.ndarray) -> np.ndarray:
        if self.depthwise_channels is None:
            return w
        return convert_filter(w, "HWIO", "HWIM", in_channels=self.depthwise_channels)


# --- TensorFlow's output sizes -----------------------------------------------------------------
def _truncated_div(a: int, b: int) -> int:
    """a / b rounded toward zero, as C's integer division."""
    return a // b if a >= 0 else -(-a // b)


def _empty_geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: tuple, padding: object,
                    dilation: tuple, groups: int) -> ConvGeometry | None:
    """The geometry of a conv of core-layout shapes whose output TensorFlow makes empty, else None.
    TensorFlow's output size ``(n - k_eff + s) / s`` rounds toward zero: a kernel larger than the
    (VALID or explicitly padded) input by less than two strides gives an empty output (and zero
    gradients: conv_general's geometry, as JAX), by more a negative size, refused."""
    rank, empty = len(w_shape) - 2, False
    if padding != "same" and min(stride) >= 1:  # SAME never overhangs; the core refuses stride 0
        pads: Any = [(0, 0)] * rank if padding == "valid" else padding
        for n, (lo, hi), k, d, s in zip(x_shape[-rank - 1 : -1], pads, w_shape[:rank], dilation, stride):
            padded, k_eff = n + lo + hi, dilate_dim(k, d)
            size = _truncated_div(padded - k_eff + s, s)
            if size < 0:
                raise ValueError(f"Computed output size would be negative: {size} "
                                 f"[input_size: {padded}, effective_filter_size: {k_eff}, stride: {s}]")
            empty |= size == 0
    if not empty:
        return None
    return ConvGeometry.for_general(x_shape, w_shape, stride=stride, padding=padding, rhs_dilation=dilation,
                                    feature_group_count=groups, data_format=_CORE)


def _conv_call(x: np.ndarray, w: np.ndarray, stride: tuple, padding: object, dilation: tuple, groups: int,
               layout: _Layout, filt: _Filter, dtype: np.dtype) -> CoreCall:
    """The conv of core-layout x and w; TensorFlow's empty output where it has one."""
    geom = _empty_geometry(x.shape, w.shape, stride, padding, dilation, groups) or ConvGeometry.for_conv(
        x.shape, w.shape, **_keywords(stride, padding, dilation, groups))
    return CoreCall(geom, "y", {"x": x, "w": w}, dtype, layout=layout, filt=filt, fmt=_CORE)


def _check_empty_dy(func: str, name: str, geom: ConvGeometry, dy_shape: tuple[int, ...]) -> ConvGeometry:
    """geom, if the output gradient ``name`` (core layout) has its empty output shape."""
    if tuple(dy_shape) != geom.y_shape(_CORE):
        raise ValueError(f"{func}: {name} has shape {tuple(dy_shape)} (channels last) but the "
                         f"convolution's output is {geom.y_shape(_CORE)}")
    return geom


def _keywords(stride: tuple, padding: object, dilation: tuple, groups: int) -> dict[str, Any]:
    return {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
            "data_format": _CORE}


# --- builders shared by the ops -----------------------------------------------------------------
def _conv(func: str, x: object, w: object, rank: int, first: bool, stride: tuple, padding: object,
          dilation: tuple, *, names: tuple[str, str] = ("input", "filters"),
          strict: bool = False) -> CoreCall:
    """names: the op's own names of x and w, for its messages; ``strict``: the op converts each
    operand alone (``tf.nn.convolution``), so two dtypes are refused rather than converted."""
    x_name, w_name = names
    dtype, (x, w) = _operands(func, (x_name, x), (w_name, w), strict=strict)
    _ndim(func, w_name, w, rank + 2)
    _ndim(func, x_name, x, rank + 2, at_least=True)
    layout = _Layout(first, tuple(x.shape[: x.ndim - rank - 1]))
    xc = layout.to_core(x)
    groups = _groups(func, xc.shape[-1], w.shape[-2], w_name)
    return _conv_call(xc, w, stride, padding, dilation, groups, layout, _Filter(), dtype)


def _input_grad(
    func: str, sizes: object, w: object, dy: object, rank: int, first: bool, stride: tuple,
    padding: object, dilation: tuple, *, filter_first: bool, depthwise: bool = False,
    names: tuple[str, str, str] = ("input_sizes", "filter", "out_backprop"),
) -> CoreCall:
    """names: the op's own names of input_sizes, filter and out_backprop, for its messages."""
    sizes_name, w_name, dy_name = names
    dtype, (w, dy) = _operands(func, (w_name, w), (dy_name, dy), ndim=rank + 2,
                               allowed=_DEPTHWISE_DTYPES if depthwise else _CONV_DTYPES)
    layout = _Layout(first, (dy.shape[0],))
    sizes = shape_tuple(sizes_name, sizes)
    wc_in = w.shape[-2]
    if len(sizes) == rank + 2:
        n, c, spatial = layout.split(sizes)
        if n != dy.shape[0]:
            raise ValueError(f"{func}: {sizes_name}={sizes} has batch {n} but {dy_name} has {dy.shape[0]}")
    elif len(sizes) == rank and not depthwise:  # the depthwise kernels take 4 sizes only
        c, spatial = wc_in, sizes  # channels from the filter: groups = 1 (or depthwise)
    else:
        spatial_too = "" if depthwise else f" (or {rank} spatial)"
        raise ValueError(f"{func}: {sizes_name}={sizes} must have {rank + 2}{spatial_too} entries")
    if depthwise:
        if c != w.shape[-2]:
            raise ValueError(f"{func}: input depth {c} does not match the filter's in_channels {w.shape[-2]}")
        filt = _Filter(c)
        wc, groups = filt.to_core(w), c
    else:
        filt, wc, groups = _Filter(), w, _groups(func, c, wc_in, w_name)
    dyc = layout.to_core(dy)
    empty = _empty_geometry((dyc.shape[0], *spatial, c), wc.shape, stride, padding, dilation, groups)
    said = (("w", w_name), ("dy", dy_name), ("input_shape", sizes_name))
    geom = _check_empty_dy(func, dy_name, empty, dyc.shape) if empty else ConvGeometry.for_input_grad(
        dyc.shape, wc.shape, tuple(spatial), names=said, **_keywords(stride, padding, dilation, groups))
    arrays = {"w": wc, "y": dyc} if filter_first else {"y": dyc, "w": wc}
    return CoreCall(geom, "x", arrays, dtype, layout=layout, filt=filt, fmt=_CORE)


def _filter_grad(func: str, x: object, sizes: object, dy: object, rank: int, first: bool, stride: tuple,
                 padding: object, dilation: tuple, *, depthwise: bool = False) -> CoreCall:
    dtype, (x, dy) = _operands(func, ("input", x), ("out_backprop", dy), ndim=rank + 2,
                               allowed=_DEPTHWISE_DTYPES if depthwise else _CONV_DTYPES)
    layout = _Layout(first, (x.shape[0],))
    sizes = shape_tuple("filter_sizes", sizes)
    if len(sizes) != rank + 2:
        raise ValueError(f"{func}: filter_sizes={sizes} must have {rank + 2} entries")
    xc = layout.to_core(x)
    c = xc.shape[-1]
    if depthwise:
        if sizes[-2] != c:
            raise ValueError(f"{func}: filter_sizes={sizes} in_channels {sizes[-2]} != input depth {c}")
        filt, core_shape, groups = _Filter(c), (*sizes[:-2], 1, sizes[-2] * sizes[-1]), c
    else:
        filt, core_shape, groups = _Filter(), sizes, _groups(func, c, sizes[-2], "filter_sizes")
    dyc = layout.to_core(dy)
    empty = _empty_geometry(xc.shape, tuple(core_shape), stride, padding, dilation, groups)
    said = (("x", "input"), ("dy", "out_backprop"), ("filter_shape", "filter_sizes"))
    geom = _check_empty_dy(func, "out_backprop", empty, dyc.shape) if empty else ConvGeometry.for_filter_grad(
        xc.shape, dyc.shape, tuple(core_shape), names=said, **_keywords(stride, padding, dilation, groups))
    return CoreCall(geom, "w", {"x": xc, "y": dyc}, dtype, layout=layout, filt=filt, fmt=_CORE)


def _equal_strides(s: tuple[int, ...], strides: object) -> tuple[int, ...]:
    if s[0] != s[1]:
        raise ValueError(
            f"strides={list(strides)}: TensorFlow's depthwise convolution only supports equal "
            "strides in the row and column dimensions"
        )
    return s
