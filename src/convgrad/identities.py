"""The gradients written as convolutions: the transposition identities of ``_transpose``, executed.

These are the definitions the fast paths are held to (and the seed note's "manual" routes,
generalised to every geometry): each gradient is one ``conv_general``-style conv.

* ``input_grad_via_conv``: dx is a conv of dy, input-dilated by the stride and padded by
  ``k_eff - 1 - before`` (and the matching after), with the filter flipped in space and its
  input and output channels swapped within each group.
* ``filter_grad_via_conv``: dw is a conv of x with batch and channels swapped, taking dy (batch
  and channels swapped too) as the kernel, dilated by the stride, with the dilation as stride
  and the groups as batch groups.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from . import _transpose
from ._budget import workspace_limit
from ._general import run_general
from ._geometry import ConvGeometry
from ._ops import _resolve

__all__ = ["filter_grad_via_conv", "input_grad_via_conv"]
__dir__ = __all__.copy  # dir() lists the API only


def input_grad_via_conv(
    dy: object, w: object, input_shape: object, *, stride: object = 1, padding: object = 0,
    dilation: object = 1, groups: int = 1, data_format: str = "channels_first",
    workspace_bytes: int | None = None,
) -> np.ndarray:
    """``conv_input_grad`` computed as one conv of dy with the flipped filter."""
    call, dy, w = _resolve(ConvGeometry.for_input_grad, "dy", dy, "w", w, input_shape, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, data_format=data_format,
                           method="auto", workspace_bytes=workspace_bytes)
    run = partial(run_general, method="auto", limit=workspace_limit(workspace_bytes))
    return _transpose.input_grad(call.geom, call.fmt)(dy, w, run)


def filter_grad_via_conv(
    x: object, dy: object, filter_shape: object, *, stride: object = 1, padding: object = 0,
    dilation: object = 1, groups: int = 1, data_format: str = "channels_first",
    workspace_bytes: int | None = None,
) -> np.ndarray:
    """``conv_filter_grad`` computed as one conv of x (batch <-> channels) with dy as kernel."""
    call, x, dy = _resolve(ConvGeometry.for_filter_grad, "x", x, "dy", dy, filter_shape, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, data_format=data_format,
                           method="auto", workspace_bytes=workspace_bytes)
    run = partial(run_general, method="auto", limit=workspace_limit(workspace_bytes))
    return _transpose.filter_grad(call.geom, call.fmt)(x, dy, run)
