"""TensorFlow's ``tf.nn`` convolutions over NumPy: ``from convgrad import tf; tf.nn.conv2d(...)``.

TensorFlow's shape model: x is ``batch_shape + spatial + [C]`` (``N...C`` formats, the default)
or ``batch_shape + [C] + spatial`` (``NC...``); filters are ``spatial + [C / groups, O]``
(HWIO) whatever the data format, and depthwise filters ``(kh, kw, C, multiplier)``; the output
has ``ceil(n / s)`` samples per axis with ``"SAME"`` (the extra pad at the end) and
``ceil((n - (k - 1) * d) / s)`` with ``"VALID"``. A transposed conv is the input gradient of the
forward conv (``Conv2DBackpropInput``): its filter is that conv's HWIO filter, read as
``spatial + [C_out, C_in]``, and ``output_shape`` is that conv's input shape.

Every op keeps TensorFlow 2's names, order and defaults, and also takes the TensorFlow 1 keyword
spellings (``filter=``, ``value=``, ``input=``, ``rate=``, ``dilation_rate=``), so TF 1 calls run
as written; ``name`` and ``use_cudnn_on_gpu`` are accepted and ignored. Every op has
``op.vjp(*args, **kwargs) -> (out, pullback)``; ``pullback(dy)`` returns the gradients of the
op's array arguments in signature order (shape arguments such as ``input_sizes`` have none).

NumPy operands are converted to the dtype of the op's first tensor operand, as TensorFlow
converts NumPy arguments (the depthwise ops refuse a mix, as TensorFlow does); the dtypes are
those of TensorFlow's kernels: float16, bfloat16 (``tf.bfloat16``'s NumPy type, ml_dtypes'),
float32, float64 and int32 (no int32 for depthwise).

Where TensorFlow refuses an argument it is refused here with TensorFlow's reason (ValueError or
TypeError). Limits of TensorFlow's CPU kernels (NCHW, grouped or dilated backprops, dilated
Conv3D) are not copied: those geometries compute as they do on TensorFlow's GPU kernels. A
kernel larger than the input (VALID, or padded by explicit pads) by less than two strides gives
TensorFlow's empty output (its output size ``(n - k + s) / s`` rounds toward zero) and zero
gradients; larger still, TensorFlow's negative output size is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._budget import check_fits, workspace_limit
from .._canon import MAX_NDIM, as_int, bounded_list, shape_tuple
from .._dtypes import as_array
from .._formulas import dilate_dim
from .._fronts.kit import CoreCall, Linear, op_with_vjp
from .._geometry import ConvGeometry
from ..layouts import convert_filter

__all__ = [
    "bias_add",
    "conv1d",
    "conv1d_transpose",
    "conv2d",
    "conv2d_backprop_filter",
    "conv2d_backprop_input",
    "conv2d_transpose",
    "conv3d",
    "conv3d_backprop_filter_v2",
    "conv3d_backprop_input_v2",
    "conv3d_transpose",
    "conv_transpose",
    "convolution",
    "depthwise_conv2d",
    "depthwise_conv2d_backprop_filter",
    "depthwise_conv2d_backprop_input",
]
__dir__ = __all__.copy  # dir() lists the API only

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


def _groups(func: str, channels: int, filter_in: int) -> int:
    if filter_in < 1 or channels % filter_in:
        raise ValueError(
            f"{func}: the number of input channels ({channels}) is not divisible by the filter's "
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
          dilation: tuple) -> CoreCall:
    dtype, (x, w) = _operands(func, ("input", x), ("filters", w))
    _ndim(func, "filters", w, rank + 2)
    _ndim(func, "input", x, rank + 2, at_least=True)
    layout = _Layout(first, tuple(x.shape[: x.ndim - rank - 1]))
    xc = layout.to_core(x)
    groups = _groups(func, xc.shape[-1], w.shape[-2])
    return _conv_call(xc, w, stride, padding, dilation, groups, layout, _Filter(), dtype)


def _input_grad(
    func: str, sizes: object, w: object, dy: object, rank: int, first: bool, stride: tuple,
    padding: object, dilation: tuple, *, filter_first: bool, depthwise: bool = False,
    names: tuple[str, str, str] = ("input_sizes", "filter", "out_backprop"),
) -> CoreCall:
    """names: the op's own names of input_sizes, filter and out_backprop, for its messages."""
    sizes_name, w_name, dy_name = names
    dtype, (w, dy) = _operands(func, (w_name, w), (dy_name, dy), ndim=rank + 2,
                               allowed=_DEPTHWISE_DTYPES if depthwise else _CONV_DTYPES, strict=depthwise)
    layout = _Layout(first, (dy.shape[0],))
    sizes = shape_tuple(sizes_name, sizes)
    wc_in = w.shape[-2]
    if len(sizes) == rank + 2:
        n, c, spatial = layout.split(sizes)
        if n != dy.shape[0]:
            raise ValueError(f"{func}: {sizes_name}={sizes} has batch {n} but {dy_name} has {dy.shape[0]}")
    elif len(sizes) == rank:
        c, spatial = wc_in, sizes  # channels from the filter: groups = 1 (or depthwise)
    else:
        raise ValueError(f"{func}: {sizes_name}={sizes} must have {rank + 2} (or {rank} spatial) entries")
    if depthwise:
        if c != w.shape[-2]:
            raise ValueError(f"{func}: input depth {c} does not match the filter's in_channels {w.shape[-2]}")
        filt = _Filter(c)
        wc, groups = filt.to_core(w), c
    else:
        filt, wc, groups = _Filter(), w, _groups(func, c, wc_in)
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
                               allowed=_DEPTHWISE_DTYPES if depthwise else _CONV_DTYPES, strict=depthwise)
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
        filt, core_shape, groups = _Filter(), sizes, _groups(func, c, sizes[-2])
    dyc = layout.to_core(dy)
    empty = _empty_geometry(xc.shape, tuple(core_shape), stride, padding, dilation, groups)
    said = (("x", "input"), ("dy", "out_backprop"), ("filter_shape", "filter_sizes"))
    geom = _check_empty_dy(func, "out_backprop", empty, dyc.shape) if empty else ConvGeometry.for_filter_grad(
        xc.shape, dyc.shape, tuple(core_shape), names=said, **_keywords(stride, padding, dilation, groups))
    return CoreCall(geom, "w", {"x": xc, "y": dyc}, dtype, layout=layout, filt=filt, fmt=_CORE)


# --- convolutions -------------------------------------------------------------------------------
@op_with_vjp
def conv1d(input=None, filters=None, stride=None, padding=None, data_format="NWC", dilations=None,
           name=None, *, value=None, use_cudnn_on_gpu=None):
    """``tf.nn.conv1d``: x ``batch_shape + [W, C]`` (NWC) or ``batch_shape + [C, W]`` (NCW),
    filters ``[k, C / groups, O]``; padding 'SAME' or 'VALID'. TF 1: ``value=`` for ``input``."""
    x = _pick("input", input, "value", value)
    window = _window("conv1d", 1, data_format, stride, padding, dilations, explicit=False,
                     stride_name="stride", legacy_1d=True)
    return _conv("conv1d", x, _required("filters", filters), 1, *window)


@op_with_vjp
def conv2d(input=None, filters=None, strides=None, padding=None, data_format="NHWC", dilations=None,
           name=None, *, filter=None, use_cudnn_on_gpu=True):
    """``tf.nn.conv2d``: x ``batch_shape + [H, W, C]`` (NHWC) or ``batch_shape + [C, H, W]``
    (NCHW), filters HWIO ``[kh, kw, C / groups, O]``; padding SAME, VALID or explicit
    ``[[0, 0], [top, bottom], [left, right], [0, 0]]`` (``(n + top + bottom - (k - 1) * d - 1)
    // s + 1`` samples). TF 1: ``filter=`` for ``filters``."""
    w = _pick("filters", filters, "filter", filter)
    return _conv("conv2d", input, w, 2, *_window("conv2d", 2, data_format, strides, padding, dilations,
                                                 explicit=True))


@op_with_vjp
def conv3d(input=None, filters=None, strides=None, padding=None, data_format="NDHWC", dilations=None,
           name=None, *, filter=None):
    """``tf.nn.conv3d``: x ``batch_shape + [D, H, W, C]`` (NDHWC) or ``[N, C, D, H, W]``
    (NCDHW), filters ``[kd, kh, kw, C / groups, O]``; strides and dilations are lists of 5
    (TensorFlow's raw op). TF 1: ``filter=`` for ``filters``."""
    w = _pick("filters", filters, "filter", filter)
    window = _window("conv3d", 3, data_format, strides, padding, dilations, explicit=False, raw=True)
    return _conv("conv3d", input, w, 3, *window)


@op_with_vjp
def convolution(input=None, filters=None, strides=None, padding="VALID", data_format=None,
                dilations=None, name=None, *, filter=None, dilation_rate=None):
    """``tf.nn.convolution``: rank-agnostic (1 to 3 spatial dims, from the filter's rank);
    x ``batch_shape + spatial + [C]`` unless data_format starts with "NC", filters
    ``spatial + [C / groups, O]``. Dilation > 1 with stride > 1 is refused, as in TensorFlow.
    TF 1: ``filter=``, ``dilation_rate=``."""
    w = as_array("filters", _pick("filters", filters, "filter", filter))
    d_raw = _pick("dilations", dilations, "dilation_rate", dilation_rate, required=False)
    rank = w.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"`num_spatial_dims` must be 1, 2, or 3. Received: num_spatial_dims={rank}.")
    first = False if data_format is None else _channels_first(data_format, rank, legacy_1d=True)
    s = _sequence("strides", strides, rank, first)
    d = _sequence("dilations", d_raw, rank, first)
    if any(v > 1 for v in s) and any(v > 1 for v in d):
        raise ValueError(
            "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
            f"Received: strides={list(s)} and dilation_rate={list(d)}"
        )
    p = _padding(padding, rank, first, explicit=False, func="convolution")
    return _conv("convolution", input, w, rank, first, s, p, d)


# --- gradients as ops ---------------------------------------------------------------------------
@op_with_vjp
def conv2d_backprop_input(input_sizes, filter=None, out_backprop=None, strides=None, padding=None,
                          use_cudnn_on_gpu=True, data_format="NHWC", dilations=(1, 1, 1, 1), name=None,
                          filters=None):
    """``tf.compat.v1.nn.conv2d_backprop_input``: the gradient of ``conv2d`` with respect to
    its input, of shape ``input_sizes`` (4 values, or the 2 spatial ones), from ``out_backprop``
    (the conv's output shape) and the HWIO filter; ``input_sizes`` must be one the forward conv
    maps to out_backprop's size. strides and dilations are lists of 4. Gradients: (d_filter,
    d_out_backprop).
    """
    w = _pick("filter", filter, "filters", filters)
    window = _window("conv2d_backprop_input", 2, data_format, strides, padding, dilations, explicit=True,
                     raw=True)
    return _input_grad("conv2d_backprop_input", input_sizes, w, _required("out_backprop", out_backprop),
                       2, *window, filter_first=True)


@op_with_vjp
def conv2d_backprop_filter(input, filter_sizes, out_backprop, strides, padding, use_cudnn_on_gpu=True,
                           data_format="NHWC", dilations=(1, 1, 1, 1), name=None):
    """``tf.compat.v1.nn.conv2d_backprop_filter``: the gradient of ``conv2d`` with respect to
    its HWIO filter of shape ``filter_sizes``, from the input and ``out_backprop`` (the conv's
    output shape). strides and dilations are lists of 4. Gradients: (d_input, d_out_backprop).
    """
    window = _window("conv2d_backprop_filter", 2, data_format, strides, padding, dilations, explicit=True,
                     raw=True)
    return _filter_grad("conv2d_backprop_filter", input, filter_sizes, out_backprop, 2, *window)


@op_with_vjp
def conv3d_backprop_input_v2(input_sizes, filter, out_backprop, strides, padding, data_format="NDHWC",
                             dilations=(1, 1, 1, 1, 1), name=None):
    """``tf.raw_ops.Conv3DBackpropInputV2``: the gradient of ``conv3d`` with respect to its
    input of shape ``input_sizes`` (5 values, or the 3 spatial ones). Padding 'SAME' or
    'VALID'; strides and dilations lists of 5. Gradients: (d_filter, d_out_backprop).
    """
    window = _window("conv3d_backprop_input_v2", 3, data_format, strides, padding, dilations, explicit=False,
                     raw=True)
    return _input_grad("conv3d_backprop_input_v2", input_sizes, filter, out_backprop, 3, *window,
                       filter_first=True)


@op_with_vjp
def conv3d_backprop_filter_v2(input, filter_sizes, out_backprop, strides, padding, data_format="NDHWC",
                              dilations=(1, 1, 1, 1, 1), name=None):
    """``tf.compat.v1.nn.conv3d_backprop_filter_v2``: the gradient of ``conv3d`` with respect to
    its filter of shape ``filter_sizes`` (5 values). Padding 'SAME' or 'VALID'; strides and
    dilations lists of 5. Gradients: (d_input, d_out_backprop).
    """
    window = _window("conv3d_backprop_filter_v2", 3, data_format, strides, padding, dilations, explicit=False,
                     raw=True)
    return _filter_grad("conv3d_backprop_filter_v2", input, filter_sizes, out_backprop, 3, *window)


# --- transposed convolutions --------------------------------------------------------------------
def _transpose(func: str, rank: int, x: object, w: object, output_shape: object, strides: object,
               padding: object, data_format: object, dilations: object) -> CoreCall:
    window = _window(func, rank, data_format, strides, padding, dilations, explicit=rank == 2)
    return _input_grad(func, _required("output_shape", output_shape), _required("filters", w),
                       _required("input", x), rank, *window, filter_first=False,
                       names=("output_shape", "filters", "input"))


@op_with_vjp
def conv1d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NWC",
                     dilations=None, name=None):
    """``tf.nn.conv1d_transpose``: the transpose of ``conv1d``. input ``[N, W_in, C_in]``,
    filters ``[k, C_out, C_in]`` (the forward conv's filter), ``output_shape`` the forward conv's
    input shape ``[N, W, C_out]``, which must map back to W_in: ``ceil(W / s) == W_in`` with
    SAME. Padding 'SAME' or 'VALID'. Gradients: (d_input, d_filters).
    """
    return _transpose("conv1d_transpose", 1, input, filters, output_shape, strides, padding, data_format,
                      dilations)


@op_with_vjp
def conv2d_transpose(input=None, filters=None, output_shape=None, strides=None, padding="SAME",
                     data_format="NHWC", dilations=None, name=None, *, value=None, filter=None):
    """``tf.nn.conv2d_transpose`` (= ``Conv2DBackpropInput``): input ``[N, H_in, W_in, C_in]``,
    filters ``[kh, kw, C_out, C_in]`` (the forward conv's HWIO filter), ``output_shape`` the
    forward conv's input shape (4 values or the 2 spatial ones), which must map back to the
    input: SAME needs ``ceil(H / s) == H_in``, explicit pads ``(H + before + after - k_eff) // s
    + 1 == H_in``. TF 1: ``value=``, ``filter=``. Gradients: (d_input, d_filters).
    """
    x = _pick("input", input, "value", value)
    w = _pick("filters", filters, "filter", filter)
    return _transpose("conv2d_transpose", 2, x, w, output_shape, strides, padding, data_format, dilations)


@op_with_vjp
def conv3d_transpose(input=None, filters=None, output_shape=None, strides=None, padding="SAME",
                     data_format="NDHWC", dilations=None, name=None, *, value=None, filter=None):
    """``tf.nn.conv3d_transpose``: input ``[N, D_in, H_in, W_in, C_in]``, filters
    ``[kd, kh, kw, C_out, C_in]``, ``output_shape`` the forward conv's input shape, which must
    map back to the input. Padding 'SAME' or 'VALID'. TF 1: ``value=``, ``filter=``. Gradients:
    (d_input, d_filters).
    """
    x = _pick("input", input, "value", value)
    w = _pick("filters", filters, "filter", filter)
    return _transpose("conv3d_transpose", 3, x, w, output_shape, strides, padding, data_format, dilations)


@op_with_vjp
def conv_transpose(input, filters, output_shape, strides, padding="SAME", data_format=None,
                   dilations=None, name=None):
    """``tf.nn.conv_transpose``: the transpose of ``convolution``, its rank read from
    ``len(output_shape) - 2`` (1 to 3); otherwise as ``conv{1,2,3}d_transpose``.
    Gradients: (d_input, d_filters).
    """
    if not hasattr(output_shape, "__len__"):
        raise ValueError(f"`output_shape` must be a tensor or sized collection. Received: {output_shape!r}")
    rank = len(output_shape) - 2
    if not 1 <= rank <= 3:
        raise ValueError(
            f"`output_shape` must be of length 3, 4 or 5. Received: output_shape={output_shape} "
            f"of length {rank + 2}."
        )
    fmt = _LAST[rank] if data_format is None else data_format
    return _transpose("conv_transpose", rank, input, filters, output_shape, strides, padding, fmt, dilations)


# --- depthwise ----------------------------------------------------------------------------------
def _equal_strides(s: tuple[int, ...], strides: object) -> tuple[int, ...]:
    if s[0] != s[1]:
        raise ValueError(
            f"strides={list(strides)}: TensorFlow's depthwise convolution only supports equal "
            "strides in the row and column dimensions"
        )
    return s


@op_with_vjp
def depthwise_conv2d(input, filter, strides, padding, data_format=None, dilations=None, name=None, *,
                     rate=None):
    """``tf.nn.depthwise_conv2d``: x ``[N, H, W, C]`` (or NCHW), filter ``[kh, kw, C, M]``;
    output channel ``c * M + m`` convolves input channel ``c`` with ``filter[:, :, c, m]``,
    ``C * M`` channels, sizes as ``conv2d``. strides: 4 values with equal row and column
    strides; dilations (TF 1: ``rate``): 2 values, and > 1 only with all strides 1.
    """
    first = False if data_format is None else _channels_first(data_format, 2)
    r = _pick("dilations", dilations, "rate", rate, required=False)
    d: tuple[int, ...] = (1, 1)
    if r is not None:
        if not hasattr(r, "__len__") or len(r) != 2:
            raise ValueError(f"dilations (rate) must be 1-D of size 2, got {r!r}")
        d = tuple(as_int(f"dilations[{i}]", v) for i, v in enumerate(r))
    s = _equal_strides(_sequence("strides", _required("strides", strides), 2, first, full_only=True), strides)
    if any(v > 1 for v in d) and any(v != 1 for v in s):
        raise ValueError(
            "When dilation rate is greater than 1, then all values of strides must be 1. "
            f"Received: `dilation rate` {list(d)} and `strides` {list(strides)}"
        )
    p = _padding(padding, 2, first, explicit=True, func="depthwise_conv2d")
    dtype, (x, w) = _operands("depthwise_conv2d", ("input", input), ("filter", filter),
                              allowed=_DEPTHWISE_DTYPES, strict=True, ndim=4)
    layout = _Layout(first, (x.shape[0],))
    xc = layout.to_core(x)
    c = xc.shape[-1]
    if w.shape[2] != c:
        raise ValueError(f"depthwise_conv2d: input and filter must have the same depth: {c} vs {w.shape[2]}")
    filt = _Filter(c)
    return _conv_call(xc, filt.to_core(w), s, p, d, c, layout, filt, dtype)


@op_with_vjp
def depthwise_conv2d_backprop_input(input_sizes, filter, out_backprop, strides, padding,
                                    data_format="NHWC", dilations=(1, 1, 1, 1), name=None):
    """``tf.nn.depthwise_conv2d_backprop_input``: the gradient of ``depthwise_conv2d`` with
    respect to its input of shape ``input_sizes`` (4 values), filter ``[kh, kw, C, M]``,
    ``out_backprop`` ``[N, H_out, W_out, C * M]``. strides and dilations lists of 4.
    Gradients: (d_filter, d_out_backprop).
    """
    window = _window("depthwise_conv2d_backprop_input", 2, data_format, strides, padding, dilations,
                     explicit=True, raw=True, depthwise=True)
    return _input_grad("depthwise_conv2d_backprop_input", input_sizes, filter, out_backprop, 2, *window,
                       filter_first=True, depthwise=True)


@op_with_vjp
def depthwise_conv2d_backprop_filter(input, filter_sizes, out_backprop, strides, padding,
                                     data_format="NHWC", dilations=(1, 1, 1, 1), name=None):
    """``tf.nn.depthwise_conv2d_backprop_filter``: the gradient of ``depthwise_conv2d`` with
    respect to its filter of shape ``filter_sizes = [kh, kw, C, M]``. strides and dilations
    lists of 4. Gradients: (d_input, d_out_backprop).
    """
    window = _window("depthwise_conv2d_backprop_filter", 2, data_format, strides, padding, dilations,
                     explicit=True, raw=True, depthwise=True)
    return _filter_grad("depthwise_conv2d_backprop_filter", input, filter_sizes, out_backprop, 2, *window,
                        depthwise=True)


# --- bias ---------------------------------------------------------------------------------------
@op_with_vjp
def bias_add(value, bias, data_format=None, name=None):
    """``tf.nn.bias_add``: adds the 1-D ``bias`` along the channel axis of ``value`` (at least
    2-D): the last axis for ``None`` or ``N...C`` formats, axis 1 for ``NC...``.
    Gradients: (d_value, d_bias).
    """
    _, (v, b) = _operands("bias_add", ("value", value), ("bias", bias), allowed=None)
    if data_format is None or (isinstance(data_format, str) and data_format.startswith("N")
                               and data_format.endswith("C") and not data_format.startswith("NC")):
        axis = -1
    elif isinstance(data_format, str) and data_format.startswith("NC"):
        axis = 1
    else:
        raise ValueError(
            f"`data_format` must be of the form `N...C` or `NC...`. Received: data_format={data_format}"
        )
    if v.ndim < 2:
        raise ValueError(f"bias_add: value must be at least 2-D, got shape {v.shape}")
    if b.ndim != 1:
        raise ValueError(f"bias_add: bias must be 1-D, got shape {b.shape}")
    if b.size != v.shape[axis]:
        raise ValueError(
            "bias_add: must provide as many biases as the channel dimension of value: "
            f"{b.shape} vs. {v.shape}"
        )
    shape, res = [1] * v.ndim, np.result_type(v, b)
    shape[axis] = b.size
    # value may be a broadcast view that costs nothing until the sum materialises it.
    check_fits(f"the result {v.shape}", v.size * res.itemsize, workspace_limit())
    others = tuple(i for i in range(v.ndim) if i != axis % v.ndim)
    return Linear(lambda: v + b.reshape(shape),
                  lambda g: (g.astype(res, copy=True), g.sum(axis=others).astype(res, copy=False)))

