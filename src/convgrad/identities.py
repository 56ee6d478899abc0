"""The gradients written as convolutions: the transposition identities, executed.

These are the definitions the fast paths are held to (and the seed note's "manual" routes,
generalised to every geometry):

* ``input_grad_via_conv``: dx is ``conv_general`` of dy, input-dilated by the stride and padded
  by ``k_eff - 1 - before`` (and the matching after), with the filter flipped in space and its
  input and output channels swapped within each group.
* ``filter_grad_via_conv``: dw is ``conv_general`` of x with batch and channels swapped, taking dy
  (batch and channels swapped too) as the kernel, dilated by the stride, with the dilation as
  stride and the groups as batch groups.
"""

from __future__ import annotations

import numpy as np

from . import _canon
from ._budget import workspace_limit
from ._dtypes import as_array, result_dtype
from ._general import run_general
from ._geometry import ConvGeometry
from ._layout import flip_swap_filter, w_from_last, w_to_last, x_from_last, x_to_last


def input_grad_via_conv(
    dy: object, w: object, input_shape: object, *, stride: object = 1, padding: object = 0,
    dilation: object = 1, groups: int = 1, data_format: str = "channels_first",
    workspace_bytes: int | None = None,
) -> np.ndarray:
    """``conv_input_grad`` computed as one ``conv_general`` of dy with the flipped filter."""
    fmt = _canon.data_format(data_format)
    dy, w = as_array("dy", dy), as_array("w", w)
    geom = ConvGeometry.for_input_grad(dy.shape, w.shape, input_shape, stride=stride, padding=padding,
                                       dilation=dilation, groups=groups, data_format=fmt)
    res, comp = result_dtype(dy, w)
    wt = flip_swap_filter(w_to_last(w, fmt).astype(comp, copy=False), geom.feature_group_count)
    dx = run_general(geom.input_grad_geometry(), x_to_last(dy, fmt).astype(comp, copy=False), wt,
                     "auto", workspace_limit(workspace_bytes))
    return np.ascontiguousarray(x_from_last(dx, fmt)).astype(res, copy=False)


def filter_grad_via_conv(
    x: object, dy: object, filter_shape: object, *, stride: object = 1, padding: object = 0,
    dilation: object = 1, groups: int = 1, data_format: str = "channels_first",
    workspace_bytes: int | None = None,
) -> np.ndarray:
    """``conv_filter_grad`` computed as one ``conv_general`` of x (batch <-> channels) with dy."""
    fmt = _canon.data_format(data_format)
    x, dy = as_array("x", x), as_array("dy", dy)
    geom = ConvGeometry.for_filter_grad(x.shape, dy.shape, filter_shape, stride=stride, padding=padding,
                                        dilation=dilation, groups=groups, data_format=fmt)
    res, comp = result_dtype(x, dy)
    xl = x_to_last(x, fmt).astype(comp, copy=False)  # (N, *S, C)
    dyl = x_to_last(dy, fmt).astype(comp, copy=False)  # (N, *out, O)
    lhs = np.swapaxes(xl, 0, -1)  # (C, *S, N): channels are the batch, batch the features
    kernel = np.moveaxis(dyl, 0, -2)  # (*out, N, O): dy is the kernel
    out = run_general(geom.filter_grad_geometry(), lhs, kernel, "auto", workspace_limit(workspace_bytes))
    dw = np.moveaxis(out, 0, -2)  # (C/G, *K, O) -> (*K, C/G, O)
    return np.ascontiguousarray(w_from_last(dw, fmt)).astype(res, copy=False)
