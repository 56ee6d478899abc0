"""conv_general: the one general primitive, on JAX's parameter model."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from . import _canon
from ._budget import check_fits, workspace_limit
from ._dtypes import as_array, result_dtype
from ._formulas import dilate_dim
from ._geometry import ConvGeometry, _split_w, _split_x
from ._layout import w_from_last, w_to_last, x_from_last, x_to_last
from ._padding import parse_padding
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
    y : (N / batch_group_count, O, *out) or channels-last likewise.

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> x = np.arange(5.0).reshape(1, 1, 5)
    >>> convgrad.conv_general(x, np.ones((1, 1, 2)), lhs_dilation=2, padding=[(1, 1)])
    array([[[0., 0., 1., 1., 2., 2., 3., 3., 4., 4.]]])
    """
    fmt = _canon.data_format(data_format)
    x, w = as_array("x", x), as_array("w", w)
    geom = _geometry(x, w, fmt, stride, padding, lhs_dilation, rhs_dilation, feature_group_count,
                     batch_group_count)
    res, comp = result_dtype(x, w)
    limit = workspace_limit(workspace_bytes)
    check_fits(f"the output {geom.y_shape(fmt)}", math.prod(geom.y_shape()) * comp.itemsize, limit)
    y = run_general(geom, np.ascontiguousarray(x_to_last(x, fmt), dtype=comp),
                    np.ascontiguousarray(w_to_last(w, fmt), dtype=comp), method, limit)
    return np.ascontiguousarray(x_from_last(y, fmt)).astype(res, copy=False)


def conv_general_vjp(
    x: object, w: object, **params: object
) -> tuple[np.ndarray, Callable[[object], tuple[np.ndarray, np.ndarray]]]:
    """``(y, vjp)`` with ``y = conv_general(x, w, **params)`` and ``vjp(dy) -> (dx, dw)``.

    Input dilation and batch groups included: the gradients are taken on the plain grouped conv
    that ``conv_general`` reduces them to, then mapped back (dx subsampled by the input dilation,
    batch blocks moved back out of the channels).
    """
    opts = {k: params.pop(k) for k in ("method", "workspace_bytes") if k in params}
    fmt = _canon.data_format(params.pop("data_format", "channels_first"))
    names = ("stride", "padding", "lhs_dilation", "rhs_dilation", "feature_group_count",
             "batch_group_count")
    defaults = (1, 0, 1, 1, 1, 1)
    values = [params.pop(k, d) for k, d in zip(names, defaults)]
    if params:
        raise TypeError(f"conv_general_vjp got unexpected keyword arguments {sorted(params)}")
    x, w = as_array("x", x), as_array("w", w)
    geom = _geometry(x, w, fmt, *values)
    res, comp = result_dtype(x, w)
    method = str(opts.get("method", "auto"))
    limit = workspace_limit(opts.get("workspace_bytes"))
    check_fits(f"the output {geom.y_shape(fmt)}", math.prod(geom.y_shape()) * comp.itemsize, limit)
    xl = np.ascontiguousarray(x_to_last(x, fmt), dtype=comp)
    wl = np.ascontiguousarray(w_to_last(w, fmt), dtype=comp)
    y = run_general(geom, xl, wl, method, limit)

    def vjp(dy: object) -> tuple[np.ndarray, np.ndarray]:
        g = as_array("dy", dy)
        if g.shape != geom.y_shape(fmt):
            raise ValueError(f"dy.shape={g.shape} does not match the output shape {geom.y_shape(fmt)}")
        gl = np.ascontiguousarray(x_to_last(g, fmt), dtype=result_dtype(g, w)[1])
        reduced, xr, undo = _reduce(geom, xl, limit)
        dx = undo(make_plan("input_grad", reduced, gl.dtype, method, limit)(
            gl, wl.astype(gl.dtype, copy=False)))
        dw = make_plan("filter_grad", reduced, gl.dtype, method, limit)(xr.astype(gl.dtype, copy=False), gl)
        dx_res, _ = result_dtype(g, w)
        dw_res, _ = result_dtype(x, g)
        return (np.ascontiguousarray(x_from_last(dx, fmt)).astype(dx_res, copy=False),
                np.ascontiguousarray(w_from_last(dw, fmt)).astype(dw_res, copy=False))

    return np.ascontiguousarray(x_from_last(y, fmt)).astype(res, copy=False), vjp


def _geometry(x: np.ndarray, w: np.ndarray, fmt: str, stride: object, padding: object,
              lhs_dilation: object, rhs_dilation: object, feature_group_count: object,
              batch_group_count: object) -> ConvGeometry:
    if w.ndim < 3 or x.ndim != w.ndim:
        raise ValueError(
            f"x and w must have the same number of dims (at least 3): x.shape={x.shape}, "
            f"w.shape={w.shape}"
        )
    rank = w.ndim - 2
    n, c, spatial = _split_x(x.shape, fmt)
    o, cw, kernel = _split_w(w.shape, fmt)
    s = _canon.int_tuple("stride", stride, rank, minimum=1)
    ld = _canon.int_tuple("lhs_dilation", lhs_dilation, rank, minimum=1)
    rd = _canon.int_tuple("rhs_dilation", rhs_dilation, rank, minimum=1)
    fg = _canon.positive_int("feature_group_count", feature_group_count)
    bg = _canon.positive_int("batch_group_count", batch_group_count)
    spec = parse_padding(padding, rank)
    if spec.kind != "explicit" and any(v != 1 for v in ld):
        raise ValueError(
            f"string padding={padding!r} is not defined with lhs_dilation={ld}; give explicit pads"
        )
    expected_cw = c if bg > 1 else (c // fg if c % fg == 0 else None)
    if expected_cw != cw:
        raise ValueError(
            f"x has {c} channels; with feature_group_count={fg} the filter needs "
            f"{c}/{fg} input channels, but w.shape={w.shape} has {cw}"
        )
    return ConvGeometry(
        n, c, o, spatial, kernel, s,
        spec.resolve([dilate_dim(m, d) for m, d in zip(spatial, ld)], kernel, s, rd),
        ld, rd, fg, bg,
    )


def run_general(geom: ConvGeometry, x: np.ndarray, w: np.ndarray, method: str, limit: int) -> np.ndarray:
    """Channels-last forward of any geometry.

    x ``(N, *S, C)``, w ``(*K, C_w, O)`` -> y ``(N / batch_groups, *out, O)``.
    """
    reduced, xr, _ = _reduce(geom, np.ascontiguousarray(x), limit)
    return make_plan("forward", reduced, xr.dtype, method, limit)(xr, np.ascontiguousarray(w))


def _reduce(
    geom: ConvGeometry, x: np.ndarray, limit: int
) -> tuple[ConvGeometry, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Rewrite input dilation and batch groups into a plain grouped conv the engines run.

    Returns the reduced geometry, x in its terms, and the map taking a gradient with respect to
    the reduced x back to one with respect to x (the adjoint of the rewriting).
    """
    steps: list[Callable[[np.ndarray], np.ndarray]] = []
    if any(v != 1 for v in geom.lhs_dilation):
        dilated = geom.dilated_input
        check_fits(
            "the input-dilated x", geom.batch * math.prod(dilated) * geom.in_channels * x.itemsize, limit
        )
        index = (slice(None), *(slice(None, None, d) for d in geom.lhs_dilation))
        xd = np.zeros((geom.batch, *dilated, geom.in_channels), dtype=x.dtype)
        xd[index] = x
        x = xd
        steps.append(lambda g: g[index])  # the adjoint of zero insertion is subsampling
        geom = dataclasses.replace(geom, in_spatial=dilated, lhs_dilation=(1,) * geom.rank)
    if geom.batch_group_count > 1:
        # Batch block b meets output block b: move the batch blocks next to the channels and the
        # conv becomes an ordinary grouped one with the blocks as groups.
        b, c, spatial = geom.batch_group_count, geom.in_channels, geom.in_spatial
        nb = geom.batch // b
        x = np.moveaxis(x.reshape(b, nb, *spatial, c), 0, -2).reshape(nb, *spatial, b * c)
        steps.append(lambda g: np.moveaxis(g.reshape(nb, *spatial, b, c), -2, 0).reshape(b * nb, *spatial, c))
        geom = dataclasses.replace(
            geom, batch=nb, in_channels=b * c, feature_group_count=b, batch_group_count=1,
        )

    def undo(g: np.ndarray) -> np.ndarray:
        for step in reversed(steps):
            g = step(g)
        return g

    return geom, x, undo
