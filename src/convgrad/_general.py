"""conv_general: the one general primitive, on JAX's parameter model."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial

import numpy as np

from . import _transpose
from ._budget import check_fits, workspace_limit
from ._dtypes import all_finite, check_int_sum, int_terms, result_dtype
from ._geometry import ConvGeometry
from ._ops import _Call, _resolve, _run
from ._plan import make_plan


def conv_general(
    x: object,
    w: object,
    *,
    stride: object = 1,
    padding: object = 0,
    lhs_dilation: object = 1,
    rhs_dilation: object = 1,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    data_format: str = "channels_first",
    method: str = "auto",
    workspace_bytes: int | None = None,
) -> np.ndarray:
    """General dilated convolution (cross-correlation), closed under transposition.

    Parameters
    ----------
    x : (N, C, *S) channels-first or (N, *S, C) channels-last
    w : (O, C / feature_group_count, *K) or (*K, C / feature_group_count, O); with batch
        groups the filter has all C input channels and O is split into batch groups.
    stride : int or one per spatial dim
        Window stride.
    padding : int, per-dim ints, per-dim (before, after) pairs, or 'valid' / 'same' /
        'same_lower' / 'full'
        Pads of the input-dilated x; negative pads crop. Strings need ``lhs_dilation == 1``.
    lhs_dilation, rhs_dilation : int or one per spatial dim
        Input dilation (``lhs_dilation - 1`` zeros between input samples: the transposed
        convolution) and kernel dilation (atrous).
    feature_group_count, batch_group_count : int
        Channel groups, and batch groups (batch block b meets output-channel block b).

    Returns
    -------
    y : (N / batch_group_count, O, *out) or channels-last likewise; ``out`` is 0 along an axis
        where the kernel is larger than the padded input (JAX's empty result).

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> x = np.arange(5.0).reshape(1, 1, 5)
    >>> convgrad.conv_general(x, np.ones((1, 1, 2)), lhs_dilation=2, padding=[(1, 1)])
    array([[[0., 0., 1., 1., 2., 2., 3., 3., 4., 4.]]])
    """
    call, x, w = _resolve(ConvGeometry.for_general, "x", x, "w", w, stride=stride, padding=padding,
                          lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                          feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                          data_format=data_format, method=method, workspace_bytes=workspace_bytes,
                          call_type=GeneralCall)
    return call("y", x=x, w=w)


def conv_general_vjp(
    x: object, w: object, *, stride: object = 1, padding: object = 0, lhs_dilation: object = 1,
    rhs_dilation: object = 1, feature_group_count: int = 1, batch_group_count: int = 1,
    data_format: str = "channels_first", method: str = "auto", workspace_bytes: int | None = None,
    convention: str = "adjoint",
) -> tuple[np.ndarray, Callable[[object], tuple[np.ndarray, np.ndarray]]]:
    """``conv_general`` and its pullback: the geometry is checked once, ``vjp`` reuses it.

    A plain grouped conv runs the engines' own gradients; with input dilation or batch groups
    each gradient is the transposed conv of ``_transpose`` (JAX's rule), run as a forward.

    Parameters
    ----------
    x, w, stride, padding, lhs_dilation, rhs_dilation, feature_group_count, batch_group_count,
    data_format, method, workspace_bytes : as in ``conv_general``
    convention : 'adjoint' (default, the conjugate transpose: dx, dw conjugate the other
        operand when complex) or 'transpose' (JAX's ``vjp``); the same for real dtypes

    Returns
    -------
    y : (N / batch_group_count, O, *out) or channels-last likewise
    vjp : callable
        ``vjp(dy) -> (dx, dw)``: dy of y's shape; dx, dw of x's and w's shapes (zeros where
        ``out`` is empty).

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> x, w = np.arange(3.0).reshape(1, 1, 3), np.ones((1, 1, 2))
    >>> y, vjp = convgrad.conv_general_vjp(x, w, lhs_dilation=2)
    >>> y
    array([[[0., 1., 1., 2.]]])
    >>> vjp(np.ones((1, 1, 4)))
    (array([[[1., 2., 1.]]]), array([[[1., 3.]]]))
    """
    call, x, w = _resolve(ConvGeometry.for_general, "x", x, "w", w, stride=stride, padding=padding,
                          lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                          feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                          data_format=data_format, method=method, workspace_bytes=workspace_bytes,
                          call_type=GeneralCall, convention=convention)
    return call.vjp("y", {"x": x, "w": w})


class GeneralCall(_Call):
    """A ``_Call`` on any geometry. A plain grouped conv runs the engines' own gradients; with
    input dilation or batch groups the forward runs as ``run_general``'s reduced conv and each
    gradient as the transposed conv of ``_transpose`` (JAX's rule), run as a forward; for an
    input gradient of operands with inf or NaN, as the reduced conv's input gradient instead
    (``_scattered_input_grad``)."""

    checks_all_ops = False

    def __call__(self, role: str, **arrays: np.ndarray) -> np.ndarray:
        geom, fmt = self.geom, self.fmt
        if geom.empty or (geom.batch_group_count == 1 and all(v == 1 for v in geom.lhs_dilation)):
            return super().__call__(role, **arrays)
        if role == "y":
            return _run("forward", geom, arrays["x"], arrays["w"], fmt, self.method, self.workspace_bytes,
                        self.shape("y"), lambda _op, g, _dtype, method, limit: partial(
                            run_general, g, method=method, limit=limit))
        run = partial(run_general, method=self.method, limit=workspace_limit(self.workspace_bytes))
        op, names = ("input_grad", ("y", "w")) if role == "x" else ("filter_grad", ("x", "y"))
        if result_dtype(*(arrays[n] for n in names))[1].kind == "i":  # as _run checks its ops
            check_int_sum(*int_terms(op, geom), **{"dy" if n == "y" else n: arrays[n] for n in names})
        if role == "x" and not (all_finite(arrays["y"]) and all_finite(arrays["w"])):
            return self._scattered_input_grad(arrays["y"], arrays["w"])
        if role == "x":
            return _transpose.input_grad(geom, fmt)(arrays["y"], arrays["w"], run)
        return _transpose.filter_grad(geom, fmt)(arrays["x"], arrays["y"], run)


    def _scattered_input_grad(self, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
        """dx as the direct sum gives it, for dy or w with an inf or NaN: each dy * w product goes
        to the sample it was read from, and those that land on the holes of input dilation are
        dropped. The transposed conv instead multiplies w by dy's holes and pads (inf * 0 = NaN
        where no product lands). So: the input gradient of the reduced conv (holes and batch
        groups written out; its plan keeps inf and NaN where the direct sum does), its holes
        dropped and its channel blocks moved back into the batch."""
        geom, fmt = self.geom, self.fmt
        reduced = reduced_geometry(geom)
        dxr = _run("input_grad", reduced, dy, w, fmt, self.method, self.workspace_bytes, reduced.x_shape(fmt))
        first = fmt == "channels_first"
        holes = tuple(slice(None, None, d) for d in geom.lhs_dilation)
        dxr = dxr[(slice(None), slice(None), *holes) if first else (slice(None), *holes)]
        b, c, spatial = geom.batch_group_count, geom.in_channels, geom.in_spatial
        if b > 1:  # channel block i of the reduced conv's x was batch block i
            nb = geom.batch // b
            if first:
                dxr = np.moveaxis(dxr.reshape(nb, b, c, *spatial), 1, 0)
            else:
                dxr = np.moveaxis(dxr.reshape(nb, *spatial, b, c), -2, 0)
        return np.ascontiguousarray(dxr.reshape(geom.x_shape(fmt)))


def reduced_geometry(geom: ConvGeometry) -> ConvGeometry:
    """The plain grouped conv ``_reduce`` rewrites ``geom`` into: input dilation's holes written
    out as samples, batch blocks moved into the channels as feature groups."""
    if any(v != 1 for v in geom.lhs_dilation):
        geom = dataclasses.replace(geom, in_spatial=geom.dilated_input, lhs_dilation=(1,) * geom.rank)
    if geom.batch_group_count > 1:
        b = geom.batch_group_count
        geom = dataclasses.replace(geom, batch=geom.batch // b, in_channels=b * geom.in_channels,
                                   feature_group_count=b, batch_group_count=1)
    return geom


def run_general(geom: ConvGeometry, x: np.ndarray, w: np.ndarray, method: str, limit: int) -> np.ndarray:
    """Channels-last forward of any geometry.

    x ``(N, *S, C)``, w ``(*K, C_w, O)`` -> y ``(N / batch_groups, *out, O)``.
    """
    reduced, xr = _reduce(geom, np.ascontiguousarray(x), limit)
    return make_plan("forward", reduced, xr.dtype, method, limit)(xr, np.ascontiguousarray(w))


def _reduce(geom: ConvGeometry, x: np.ndarray, limit: int) -> tuple[ConvGeometry, np.ndarray]:
    """Rewrite input dilation and batch groups into a plain grouped conv the engines run:
    the reduced geometry, and x in its terms."""
    if any(v != 1 for v in geom.lhs_dilation):
        dilated = geom.dilated_input
        check_fits(
            "the input-dilated x", geom.batch * math.prod(dilated) * geom.in_channels * x.itemsize, limit
        )
        xd = np.zeros((geom.batch, *dilated, geom.in_channels), dtype=x.dtype)
        xd[(slice(None), *(slice(None, None, d) for d in geom.lhs_dilation))] = x
        x = xd
        geom = dataclasses.replace(geom, in_spatial=dilated, lhs_dilation=(1,) * geom.rank)
    if geom.batch_group_count > 1:
        # Batch block b meets output block b: move the batch blocks next to the channels and the
        # conv becomes an ordinary grouped one with the blocks as groups.
        b, c, spatial = geom.batch_group_count, geom.in_channels, geom.in_spatial
        nb = geom.batch // b
        x = np.moveaxis(x.reshape(b, nb, *spatial, c), 0, -2).reshape(nb, *spatial, b * c)
        geom = dataclasses.replace(
            geom, batch=nb, in_channels=b * c, feature_group_count=b, batch_group_count=1,
        )
    return geom, x
