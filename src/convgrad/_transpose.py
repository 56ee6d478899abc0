"""The transposition rules: both gradients of a convolution are convolutions (JAX's
``_conv_general_dilated_transpose_lhs`` / ``_rhs``), for feature and batch groups alike.

Read a convolution as a matrix product y[m, k] = x[m, j] @ w[j, k] (m: batch and output
positions, j: input channels and kernel offsets, k: output channels). The input gradient
dx = dy @ w.T contracts output channels: a convolution of dy with the kernel flipped and its
channel roles swapped, where the window stride of the forward becomes an input dilation of dy
(its samples sit s apart in x), the input dilation becomes the stride, and the pads become
k_eff - 1 - before. The filter gradient dw = x.T @ dy contracts batch and positions: a
convolution of x (batch <-> channels swapped) with dy as the kernel, dy's samples spread s apart
(rhs dilation = stride) and windows d apart (stride = rhs dilation); feature groups turn into
batch groups and back. A batch-grouped forward (output block b sees batch block b) transposes
like a feature-grouped one whose groups are the batch blocks, which then come back out of dx's
channels into its batch.

Arrays are channels-last: x ``(N, *S, C)``, w ``(*K, C_w, O)``, y ``(N_out, *out, O)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._dtypes import result_dtype
from ._layout import flip_swap_filter, w_from_last, w_to_last, x_from_last, x_to_last

if TYPE_CHECKING:  # the geometry's methods call this module: no import at run time
    from ._geometry import ConvGeometry

Array = np.ndarray
Runner = Callable[["ConvGeometry", Array, Array], Array]


@dataclass(frozen=True)
class Transposed:
    """One gradient as a convolution: ``finish(conv(lhs(a), rhs(b)))`` with ``geometry``.

    ``a, b`` are (dy, w) for the input gradient and (x, dy) for the filter gradient, in the
    layout the rule was made for; ``__call__`` runs the conv in their computation dtype with
    ``run(geometry, x, w) -> y`` (channels-last, any geometry) and returns a C-contiguous
    gradient in that layout and their result dtype.
    """

    geometry: ConvGeometry
    lhs: Callable[[Array], Array]
    rhs: Callable[[Array], Array]
    finish: Callable[[Array], Array]

    def __call__(self, a: Array, b: Array, run: Runner) -> Array:
        res, comp = result_dtype(a, b)
        out = run(self.geometry, self.lhs(a.astype(comp, copy=False)), self.rhs(b.astype(comp, copy=False)))
        return self.finish(out).astype(res, copy=False)


def input_grad(g: ConvGeometry, fmt: str = "channels_last") -> Transposed:
    """dx of ``g`` from (dy, w): dy as lhs, w flipped with in/out swapped within each group.

    Examples
    --------
    >>> import convgrad
    >>> t = input_grad(convgrad.ConvGeometry.for_conv((1, 1, 7), (1, 1, 3), stride=2)).geometry
    >>> t.lhs_dilation, t.stride, t.padding, t.out_spatial  # dy spread by the stride, k - 1 pads
    ((2,), (1,), ((2, 2),), (7,))
    """
    groups = max(g.feature_group_count, g.batch_group_count)
    cw = g.filter_in_channels
    geometry = dataclasses.replace(
        g, batch=g.out_batch, in_channels=g.out_channels, out_channels=groups * cw,
        in_spatial=g.out_spatial, stride=g.lhs_dilation, padding=g.input_grad_padding,
        lhs_dilation=g.stride, feature_group_count=groups, batch_group_count=1,
    )
    b = g.batch_group_count

    def finish(dx: Array) -> Array:
        if b > 1:  # (N/B, *S, B * C) -> (N, *S, C): the channel blocks were the batch blocks.
            nb, *spatial, _ = dx.shape
            dx = np.moveaxis(dx.reshape(nb, *spatial, b, cw), -2, 0).reshape(b * nb, *spatial, cw)
        return np.ascontiguousarray(x_from_last(dx, fmt))

    return Transposed(geometry, lambda dy: x_to_last(dy, fmt),
                      lambda w: flip_swap_filter(w_to_last(w, fmt), groups), finish)


def filter_grad(g: ConvGeometry, fmt: str = "channels_last") -> Transposed:
    """dw of ``g`` from (x, dy): x with batch <-> channels as lhs, dy as the kernel."""
    geometry = dataclasses.replace(
        g, batch=g.in_channels, in_channels=g.batch, kernel=g.out_spatial,
        stride=g.rhs_dilation, padding=g.filter_grad_padding, rhs_dilation=g.stride,
        feature_group_count=g.batch_group_count, batch_group_count=g.feature_group_count,
    )
    return Transposed(
        geometry,
        lambda x: np.swapaxes(x_to_last(x, fmt), 0, -1),  # (C, *S, N): channels are the batch
        lambda dy: np.moveaxis(x_to_last(dy, fmt), 0, -2),  # (*out, N_out, O): dy is the kernel
        lambda out: np.ascontiguousarray(w_from_last(np.moveaxis(out, 0, -2), fmt)),  # (*K, C_w, O)
    )
