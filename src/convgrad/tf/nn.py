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
as written; TF 1's own ops are here too (``atrous_conv2d``, ``atrous_conv2d_transpose``,
``separable_conv2d``, ``depthwise_conv2d_native`` and its backprops). ``name`` and
``use_cudnn_on_gpu`` are accepted and ignored. Every op has ``op.vjp(*args, **kwargs) -> (out,
pullback)``; ``pullback(dy)`` returns the gradients of the op's array arguments in signature order
(shape arguments such as ``input_sizes`` have none).

NumPy operands are converted to the dtype of the op's first tensor operand, as TensorFlow
converts NumPy arguments (``convolution``, ``atrous_conv2d``, ``depthwise_conv2d`` and
``separable_conv2d`` convert each operand alone and refuse a mix, as TensorFlow does); the dtypes are
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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._budget import check_fits, workspace_limit
from .._canon import as_int, shape_tuple
from .._dtypes import as_array
from .._fronts.kit import CoreCall, Linear, op_with_vjp
from ._rules import (
    _DEPTHWISE_DTYPES,
    _LAST,
    _channels_first,
    _conv,
    _conv_call,
    _equal_strides,
    _Filter,
    _filter_grad,
    _input_grad,
    _Layout,
    _operands,
    _padding,
    _pick,
    _required,
    _sequence,
    _window,
)

__all__ = [
    "atrous_conv2d",
    "atrous_conv2d_transpose",
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
    "depthwise_conv2d_native",
    "depthwise_conv2d_native_backprop_filter",
    "depthwise_conv2d_native_backprop_input",
    "separable_conv2d",
]
__dir__ = __all__.copy  # dir() lists the API only



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
    // s + 1`` samples). TensorFlow's CPU kernel refuses NCHW ("only supports the NHWC tensor
    format on the CPU"); it computes here, as on TensorFlow's GPU kernel. TF 1: ``filter=`` for
    ``filters``."""
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
    Padding 'SAME' or 'VALID', or explicit pairs (4 of them) for a 2-D conv with a dilation > 1,
    where TensorFlow takes them. TF 1: ``filter=``, ``dilation_rate=``."""
    w = as_array("filters", _pick("filters", filters, "filter", filter))
    d_raw = _pick("dilations", dilations, "dilation_rate", dilation_rate, required=False)
    rank = w.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"`num_spatial_dims` must be 1, 2, or 3. Received: num_spatial_dims={rank}.")
    first = False if data_format is None else _channels_first(data_format, rank, legacy_1d=True)
    if isinstance(strides, str):  # a TF 1 positional call: convolution(input, filter, padding, ...)
        raise TypeError(f"strides={strides!r} is a padding: tf.compat.v1.nn.convolution takes padding "
                        f"third, TensorFlow 2 (and this op) fourth; pass padding={strides!r} by keyword")
    s = _sequence("strides", strides, rank, first)
    d = _sequence("dilations", d_raw, rank, first)
    if any(v > 1 for v in s) and any(v > 1 for v in d):
        raise ValueError(
            "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
            f"Received: strides={list(s)} and dilation_rate={list(d)}"
        )
    # TensorFlow takes explicit pads on its dilated path only (space-to-batch around a VALID conv,
    # whose pad list must have 4 entries); the undilated one hands the list to a string attribute.
    p = _padding(padding, rank, first, explicit=rank == 2 and any(v > 1 for v in d), func="convolution")
    return _conv("convolution", input, w, rank, first, s, p, d, strict=True)


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


def _depthwise_dilations(r: object, s: tuple[int, ...], strides: object, name: str) -> tuple[int, ...]:
    """dilations (TF 1: rate) of the depthwise and separable ops: None, or 2 values >= 1, and
    > 1 only with all strides 1 (TensorFlow's rule: it samples a dilated input by space-to-batch,
    where a stride would skip whole blocks)."""
    if r is None:
        return (1, 1)
    if not hasattr(r, "__len__") or len(r) != 2:
        raise ValueError(f"{name} must be 1-D of size 2, got {r!r}")
    d = tuple(as_int(f"{name}[{i}]", v) for i, v in enumerate(r))
    if any(v < 1 for v in d):
        raise ValueError(f"`dilation_rate` must be positive. Received: {name}={list(d)}")
    if any(v > 1 for v in d) and any(v != 1 for v in s):
        raise ValueError(
            "When dilation rate is greater than 1, then all values of strides must be 1. "
            f"Received: `dilation rate` {list(d)} and `strides` {list(strides)}"
        )
    return d


def _depthwise(func: str, x: object, w: object, first: bool, s: tuple, p: object, d: tuple, *,
               strict: bool) -> CoreCall:
    """The depthwise conv of x ``[N, H, W, C]`` (or NCHW) with w ``[kh, kw, C, M]`` as the core's
    grouped conv (C groups); ``strict``: refuse operands of different dtypes (the Python ops) rather
    than convert them to x's (the raw op)."""
    dtype, (x, w) = _operands(func, ("input", x), ("filter", w), allowed=_DEPTHWISE_DTYPES, strict=strict,
                              ndim=4)
    layout = _Layout(first, (x.shape[0],))
    xc = layout.to_core(x)
    c = xc.shape[-1]
    if w.shape[2] != c:
        raise ValueError(f"{func}: input and filter must have the same depth: {c} vs {w.shape[2]}")
    filt = _Filter(c)
    return _conv_call(xc, filt.to_core(w), s, p, d, c, layout, filt, dtype)


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
    s = _equal_strides(_sequence("strides", _required("strides", strides), 2, first, full_only=True), strides)
    d = _depthwise_dilations(r, s, strides, "dilations")
    p = _padding(padding, 2, first, explicit=True, func="depthwise_conv2d")
    return _depthwise("depthwise_conv2d", input, filter, first, s, p, d, strict=True)


@op_with_vjp
def depthwise_conv2d_native(input, filter, strides, padding, data_format="NHWC", dilations=(1, 1, 1, 1),
                            name=None):
    """``tf.compat.v1.nn.depthwise_conv2d_native`` (the raw ``DepthwiseConv2dNative``): as
    ``depthwise_conv2d`` with strides and dilations lists of 4 (equal row and column strides) and
    data_format 'NHWC' or 'NCHW'; NumPy operands take the input's dtype. TensorFlow's CPU kernel
    refuses NCHW and dilations > 1; they compute here as on its GPU kernel (a dilated, strided
    grouped conv). Gradients: (d_input, d_filter).
    """
    fmt = "NHWC" if data_format is None else data_format
    window = _window("depthwise_conv2d_native", 2, fmt, strides, padding, dilations, explicit=True,
                     raw=True, depthwise=True)
    return _depthwise("depthwise_conv2d_native", input, filter, *window, strict=False)


def _depthwise_input_grad(func: str, input_sizes: object, filter: object, out_backprop: object,
                          strides: object, padding: object, data_format: object,
                          dilations: object) -> CoreCall:
    window = _window(func, 2, data_format, strides, padding, dilations, explicit=True, raw=True,
                     depthwise=True)
    return _input_grad(func, input_sizes, filter, out_backprop, 2, *window, filter_first=True, depthwise=True)


def _depthwise_filter_grad(func: str, input: object, filter_sizes: object, out_backprop: object,
                           strides: object, padding: object, data_format: object,
                           dilations: object) -> CoreCall:
    window = _window(func, 2, data_format, strides, padding, dilations, explicit=True, raw=True,
                     depthwise=True)
    return _filter_grad(func, input, filter_sizes, out_backprop, 2, *window, depthwise=True)


@op_with_vjp
def depthwise_conv2d_backprop_input(input_sizes, filter, out_backprop, strides, padding,
                                    data_format="NHWC", dilations=(1, 1, 1, 1), name=None):
    """``tf.nn.depthwise_conv2d_backprop_input``: the gradient of ``depthwise_conv2d`` with
    respect to its input of shape ``input_sizes`` (4 values), filter ``[kh, kw, C, M]``,
    ``out_backprop`` ``[N, H_out, W_out, C * M]``. strides and dilations lists of 4.
    Gradients: (d_filter, d_out_backprop).
    """
    return _depthwise_input_grad("depthwise_conv2d_backprop_input", input_sizes, filter, out_backprop,
                                 strides, padding, data_format, dilations)


@op_with_vjp
def depthwise_conv2d_native_backprop_input(input_sizes, filter, out_backprop, strides, padding,
                                           data_format="NHWC", dilations=(1, 1, 1, 1), name=None):
    """``tf.compat.v1.nn.depthwise_conv2d_native_backprop_input``: TensorFlow 1's name of
    ``depthwise_conv2d_backprop_input`` (the same raw op). Gradients: (d_filter, d_out_backprop).
    """
    return _depthwise_input_grad("depthwise_conv2d_native_backprop_input", input_sizes, filter, out_backprop,
                                 strides, padding, data_format, dilations)


@op_with_vjp
def depthwise_conv2d_backprop_filter(input, filter_sizes, out_backprop, strides, padding,
                                     data_format="NHWC", dilations=(1, 1, 1, 1), name=None):
    """``tf.nn.depthwise_conv2d_backprop_filter``: the gradient of ``depthwise_conv2d`` with
    respect to its filter of shape ``filter_sizes = [kh, kw, C, M]``. strides and dilations
    lists of 4. Gradients: (d_input, d_out_backprop).
    """
    return _depthwise_filter_grad("depthwise_conv2d_backprop_filter", input, filter_sizes, out_backprop,
                                  strides, padding, data_format, dilations)


@op_with_vjp
def depthwise_conv2d_native_backprop_filter(input, filter_sizes, out_backprop, strides, padding,
                                            data_format="NHWC", dilations=(1, 1, 1, 1), name=None):
    """``tf.compat.v1.nn.depthwise_conv2d_native_backprop_filter``: TensorFlow 1's name of
    ``depthwise_conv2d_backprop_filter`` (the same raw op). Gradients: (d_input, d_out_backprop).
    """
    return _depthwise_filter_grad("depthwise_conv2d_native_backprop_filter", input, filter_sizes,
                                  out_backprop, strides, padding, data_format, dilations)


# --- separable ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Chain:
    """Two calls in sequence, the second built on the first's result: the pullback runs back
    through both and returns the first call's gradients, then the second's filter gradient."""

    first: CoreCall
    second: Callable[[np.ndarray], CoreCall]

    def forward(self) -> np.ndarray:
        return self.second(self.first.forward()).forward()

    def vjp(self) -> tuple[np.ndarray, Callable[[object], tuple[np.ndarray, ...]]]:
        z, pull_first = self.first.vjp()
        out, pull_second = self.second(z).vjp()

        def pullback(dy: object) -> tuple[np.ndarray, ...]:
            dz, d_second = pull_second(dy)
            return (*pull_first(dz), d_second)

        return out, pullback


@op_with_vjp
def separable_conv2d(input, depthwise_filter, pointwise_filter, strides, padding, data_format=None,
                     dilations=None, name=None, *, rate=None):
    """``tf.nn.separable_conv2d``: ``depthwise_conv2d`` of x ``[N, H, W, C]`` (or NCHW) with
    ``depthwise_filter`` ``[kh, kw, C, M]``, then a 1x1 ``conv2d`` (stride 1, VALID) with
    ``pointwise_filter`` ``[1, 1, C * M, O]``: ``O`` channels, sizes as ``depthwise_conv2d``.
    strides: 4 values, equal row and column strides; dilations (TF 1: ``rate``): 2 values, > 1
    only with all strides 1; padding SAME, VALID or explicit pairs. The three operands share one
    dtype (float16, bfloat16, float32, float64). TensorFlow's CPU kernel refuses NCHW; it computes
    here. Gradients: (d_input, d_depthwise_filter, d_pointwise_filter).
    """
    func = "separable_conv2d"
    if isinstance(data_format, (list, tuple)):  # a TF 1 positional call: (..., padding, rate, ...)
        raise TypeError(f"data_format={data_format!r} is a rate: tf.compat.v1.nn.separable_conv2d takes "
                        "rate sixth, TensorFlow 2 (and this op) data_format; pass rate= by keyword")
    first = False if data_format is None else _channels_first(data_format, 2)
    r = _pick("dilations", dilations, "rate", rate, required=False)
    s = _equal_strides(_sequence("strides", _required("strides", strides), 2, first, full_only=True), strides)
    d = _depthwise_dilations(r, s, strides, "dilations")
    p = _padding(padding, 2, first, explicit=True, func=func)
    dtype, (x, dw, pw) = _operands(func, ("input", input), ("depthwise_filter", depthwise_filter),
                                   ("pointwise_filter", pointwise_filter), allowed=_DEPTHWISE_DTYPES,
                                   strict=True, ndim=4)
    if pw.shape[:2] != (1, 1):
        raise ValueError(f"{func}: pointwise_filter must be [1, 1, C * M, O], got shape {pw.shape}")
    depthwise = _depthwise(func, x, dw, first, s, p, d, strict=True)

    def pointwise(z: np.ndarray) -> CoreCall:
        return _conv(func, z, pw, 2, first, (1, 1), "valid", (1, 1),
                     names=("the depthwise output", "pointwise_filter"))

    # The pointwise filter is checked now, on a broadcast zero of the depthwise output's shape,
    # before any work.
    z_core = np.broadcast_to(np.zeros((), dtype), depthwise.geom.y_shape("channels_last"))
    pointwise(_Layout(first, (x.shape[0],)).from_core(z_core))
    return _Chain(depthwise, pointwise)


# --- atrous -------------------------------------------------------------------------------------
def _atrous_rate(rate: object) -> tuple[int, int]:
    """atrous_conv2d's rate: an int, or 1 or 2 ints, broadcast to 2 as TensorFlow does."""
    if not hasattr(rate, "__len__"):
        return (as_int("rate", rate),) * 2
    if isinstance(rate, (str, bytes)) or len(rate) not in (1, 2):
        raise ValueError(f"rate must be an int or 1 or 2 ints (broadcast to 2), got {rate!r}")
    d = tuple(as_int(f"rate[{i}]", v) for i, v in enumerate(rate))
    return (d[0], d[-1])


@op_with_vjp
def atrous_conv2d(value, filters, rate, padding, name=None):
    """``tf.nn.atrous_conv2d``: ``convolution`` of x ``batch_shape + [H, W, C]`` (NHWC) with
    filters ``[kh, kw, C / groups, O]`` dilated by ``rate`` (an int, or 2 ints), stride 1: the
    output has ``H`` rows with 'SAME', ``H - (kh - 1) * rate`` with 'VALID'; explicit pairs
    (4 of them) with a rate > 1, as TensorFlow. Gradients: (d_value, d_filters).
    """
    d = _atrous_rate(rate)
    if any(v < 1 for v in d):
        raise ValueError(f"all values of `dilation_rate` must be positive. Received: rate={rate!r}")
    p = _padding(padding, 2, False, explicit=any(v > 1 for v in d), func="atrous_conv2d")
    return _conv("atrous_conv2d", value, filters, 2, False, (1, 1), p, d, names=("value", "filters"),
                 strict=True)


@op_with_vjp
def atrous_conv2d_transpose(value, filters, output_shape, rate, padding, name=None):
    """``tf.nn.atrous_conv2d_transpose``: the transpose (input gradient) of ``atrous_conv2d``.
    value ``[N, H_in, W_in, C_in]`` (NHWC), filters ``[kh, kw, C_out, C_in]`` (the forward
    conv's), ``output_shape`` the forward conv's input shape ``[N, H, W, C_out]``, which must map
    to value's size (``H == H_in`` with 'SAME', ``H - (kh - 1) * rate == H_in`` with 'VALID');
    ``rate`` one int >= 1. With rate 1 it is ``conv2d_transpose`` with stride 1 (explicit pairs
    and the 2 spatial sizes allowed). Gradients: (d_value, d_filters).
    """
    func = "atrous_conv2d_transpose"
    r = as_int("rate", rate)
    if r < 1:
        raise ValueError(f"`rate` cannot be less than one. Received: rate={r}")
    p = _padding(_required("padding", padding), 2, False, explicit=r == 1, func=func)
    if r > 1:
        shape = shape_tuple("output_shape", _required("output_shape", output_shape))
        if len(shape) != 4:
            raise ValueError(f"`output_shape` must have shape (4,). Received: output_shape={list(shape)}")
        w_shape = as_array("filters", filters).shape
        if len(w_shape) == 4 and shape[3] != w_shape[2]:
            raise ValueError(
                "`output_shape` channel count must be compatible with `filters` output channel count. "
                f"Received: output_shape={list(shape)} and filters.shape={w_shape}"
            )
    return _input_grad(func, _required("output_shape", output_shape), _required("filters", filters),
                       _required("value", value), 2, False, (1, 1), p, (r, r), filter_first=False,
                       names=("output_shape", "filters", "value"))


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

