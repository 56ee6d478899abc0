"""Forward mode: the tangent of a conv's output for tangents of its input, filter and bias.

A conv is bilinear in (x, w), so its derivative along (x_dot, w_dot) is exact and needs no
step: ``y_dot = conv(x_dot, w) + conv(x, w_dot) + bias_dot``. The same holds for the transposed
conv. Tangents are named as JAX names them (``x_dot``); ``dx`` in convgrad is a gradient.

Hessian-vector products compose these with the vjps (docs/conventions.md, "Forward mode and
Hessian-vector products"): for a loss L(y) with gradient g = dL/dy and ``g_dot`` = L''(y) y_dot,
the tangent of (dL/dx, dL/dw) is ``(conv_input_grad(g_dot, w) + conv_input_grad(g, w_dot),
conv_filter_grad(x, g_dot) + conv_filter_grad(x_dot, g))``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import _lazy
from ._dtypes import INT64_MAX, as_array, int_peak, result_dtype
from ._geometry import ConvGeometry
from ._ops import _Call, _resolve


def _tangent(name: str, t: object, primal: str, shape: tuple[int, ...]) -> np.ndarray:
    a = as_array(name, t)
    if a.shape != shape:
        raise ValueError(f"{name}.shape={a.shape} must equal {primal}.shape={shape} (a tangent of {primal})")
    return a


def _tangent_out(call: _Call, role: str, pairs: dict[str, np.ndarray], tangents: dict[str, object],
                 bias: object, bias_dot: object) -> tuple[np.ndarray, np.ndarray]:
    """``(out, out_dot)`` of the bilinear map giving ``role`` from ``pairs`` (its two operands
    by role), for the operands' ``tangents`` (by role; None: zero) and the bias's."""
    out = call.biased(role, pairs, bias)
    names = {"x": "x", "y": "x", "w": "w"}  # the transposed conv's x is its forward conv's y
    operands = [{**pairs, r: _tangent(f"{names[r]}_dot", t, names[r], pairs[r].shape)}
                for r, t in tangents.items() if t is not None]
    # Each term in the compute dtype (float32 for float16 and bfloat16), summed with bias_dot
    # there and rounded once at the end: a term rounded first loses what the other cancels.
    res = np.result_type(out, *(result_dtype(*ops.values())[0] for ops in operands))
    terms = [replace(call, wide=True)(role, **ops) for ops in operands]
    if len(terms) == 2 and call.exact_ints and terms[0].dtype.kind == "i":
        # Each term was held under int64; their sum could still wrap.
        peaks = [int_peak(t) for t in terms]
        if sum(peaks) > INT64_MAX:
            raise OverflowError(f"an integer tangent could pass int64: max|conv(x_dot, w)|={peaks[0]} + "
                                f"max|conv(x, w_dot)|={peaks[1]} > 2**63 - 1 = {INT64_MAX}; pass float64")
    out_dot = sum(terms[1:], terms[0]) if terms else np.zeros(out.shape, res)
    if bias_dot is not None:
        if bias is None:
            raise ValueError("bias_dot needs a bias: without one the output does not depend on it")
        b_dot = _tangent("bias_dot", bias_dot, "bias", np.shape(bias))
        res = np.result_type(res, b_dot)
        out_dot = call._add(out_dot, b_dot, b_dot.shape[0], res=np.result_type(out_dot, b_dot))
    return out, out_dot.astype(res, copy=False)


def conv_jvp(
    x: object, w: object, x_dot: object = None, w_dot: object = None, bias: object = None,
    bias_dot: object = None, *, stride: object = 1, padding: object = 0, dilation: object = 1,
    groups: int = 1, padding_mode: object = "zeros", data_format: str = "channels_first",
    method: str = "auto", workspace_bytes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``conv`` and its tangent (forward-mode derivative) along ``(x_dot, w_dot, bias_dot)``.

    Parameters
    ----------
    x, w, bias : as in ``conv``
    x_dot, w_dot, bias_dot : tangents of x, w and bias, of their shapes; None is zero
        (``bias_dot`` needs a bias)
    stride, padding, dilation, groups, padding_mode, data_format, method, workspace_bytes :
        as in ``conv``

    Returns
    -------
    y : (N, O, *out) or (N, *out, O), ``conv(x, w, bias, ...)``
    y_dot : y's shape, ``conv(x_dot, w) + conv(x, w_dot) + bias_dot`` (exact: conv is bilinear)

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> x, w = np.arange(4.0).reshape(1, 1, 4), np.array([[[1.0, 2.0]]])
    >>> convgrad.conv_jvp(x, w, np.ones((1, 1, 4)), np.array([[[1.0, 0.0]]]))
    (array([[[2., 5., 8.]]]), array([[[3., 4., 5.]]]))
    """
    if _lazy.any_dask(x, w, x_dot, w_dot, bias, bias_dot):  # never computed here: convgrad.dask
        return _lazy.route("conv_jvp", locals())
    call, x, w = _resolve(ConvGeometry.for_conv, "x", x, "w", w, stride=stride, padding=padding,
                          dilation=dilation, groups=groups, data_format=data_format, method=method,
                          workspace_bytes=workspace_bytes, padding_mode=padding_mode)
    return _tangent_out(call, "y", {"x": x, "w": w}, {"x": x_dot, "w": w_dot}, bias, bias_dot)


def conv_transpose_jvp(
    x: object, w: object, x_dot: object = None, w_dot: object = None, bias: object = None,
    bias_dot: object = None, *, stride: object = 1, padding: object = 0, output_padding: object = 0,
    output_shape: object = None, dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
    data_format: str = "channels_first", method: str = "auto", workspace_bytes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``conv_transpose`` and its tangent along ``(x_dot, w_dot, bias_dot)``.

    Parameters
    ----------
    x, w, bias : as in ``conv_transpose``
    x_dot, w_dot, bias_dot : tangents of x, w and bias, of their shapes; None is zero
    stride, padding, output_padding, output_shape, dilation, groups, padding_mode, data_format,
    method, workspace_bytes : as in ``conv_transpose``

    Returns
    -------
    y : ``conv_transpose(x, w, bias, ...)``
    y_dot : y's shape, ``conv_transpose(x_dot, w) + conv_transpose(x, w_dot) + bias_dot``

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> convgrad.conv_transpose_jvp(np.ones((1, 1, 2)), np.ones((1, 1, 3)), np.array([[[1.0, 0.0]]]),
    ...                             stride=2)
    (array([[[1., 1., 2., 1., 1.]]]), array([[[1., 1., 1., 0., 0.]]]))
    """
    if _lazy.any_dask(x, w, x_dot, w_dot, bias, bias_dot):  # never computed here: convgrad.dask
        return _lazy.route("conv_transpose_jvp", locals())
    call, x, w = _resolve(ConvGeometry.for_transpose, "x", x, "w", w, stride=stride, padding=padding,
                          output_padding=output_padding, output_shape=output_shape, dilation=dilation,
                          groups=groups, data_format=data_format, method=method,
                          workspace_bytes=workspace_bytes, padding_mode=padding_mode)
    return _tangent_out(call, "x", {"y": x, "w": w}, {"y": x_dot, "w": w_dot}, bias, bias_dot)
