"""The seven ops on dask arrays: validated on the client (the core's geometry and messages),
then laid out as blocked graphs (``_graph``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dask.array as da
import numpy as np

from .. import _canon
from .._budget import workspace_limit
from .._dtypes import convention_of, result_dtype
from .._geometry import ConvGeometry
from .._padmode import PadMap
from . import _blocks, _graph, _modes
from ._memory import Budget

SPLIT_EVERY = 8  # the tree's fan-in: 512 partials sum in three levels, 8 arrays in a task


@dataclass(frozen=True)
class _Mode:
    """A padding mode on an op's geometry: ``geom`` is what the blocks run (the VALID conv on x
    padded lazily by the mode, or the geometry itself for zeros); ``pad`` and ``fold`` are the
    lazy steps around it (identities for zeros)."""

    geom: ConvGeometry
    pad_map: PadMap | None
    fmt: str

    def pad(self, x: da.Array) -> da.Array:
        return x if self.pad_map is None else _modes.pad(x, self.pad_map, self.fmt)

    def fold(self, g: da.Array) -> da.Array:
        return g if self.pad_map is None else _modes.fold(g, self.pad_map, self.fmt)

    def biased_fold(self, g: da.Array, bias: da.Array | None) -> da.Array:
        """``fold(g)`` plus a transposed conv's bias, added after the fold (the pads get none)."""
        out = self.fold(g)
        if self.pad_map is None or bias is None:
            return out
        shape = (-1,) + (1,) * (out.ndim - 2) if self.fmt == "channels_first" else (-1,)
        dtype = result_dtype(np.empty(0, out.dtype), np.empty(0, bias.dtype))[0]
        return (out + bias.reshape(shape)).astype(dtype)

    @property
    def block_bias(self) -> bool:
        """Whether a transposed conv's blocks add the bias (no fold follows them)."""
        return self.pad_map is None


def _mode(padding_mode: object, geom: ConvGeometry, padding: object, fmt: str,
          workspace_bytes: int | None) -> _Mode:
    """The core's map of ``padding_mode`` on ``geom`` (its names, limits and messages)."""
    pad_map = PadMap.build(padding_mode, geom, padding, workspace_limit(workspace_bytes))
    return _Mode(geom if pad_map is None else pad_map.valid, pad_map, fmt)


def _bias(bias: object, channels: int) -> da.Array | None:
    b = _graph.small("bias", bias)
    if b is not None and b.shape != (channels,):
        raise ValueError(f"bias must have shape ({channels},) (one per output channel), got {b.shape}")
    return b


def _operands(names: tuple[str, str], a: object, b: object, fmt: str, op: str) -> tuple[da.Array, da.Array]:
    """The batch-and-space operand (channels in one chunk) and the other, as dask arrays."""
    big = _graph.one_channel_chunk(names[0], _graph.lazy(names[0], a), fmt, op)
    return big, _graph.lazy(names[1], b)


def conv(x: object, w: object, bias: object = None, *, stride: object = 1, padding: object = 0,
         dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
         data_format: str = "channels_first", method: str = "auto",
         workspace_bytes: int | None = None, block_bytes: int | None = None) -> da.Array:
    """``convgrad.conv`` on a dask ``x``: y has x's batch chunks and spatial chunks of x's
    divided by the stride (x's boundaries moved to the outputs their windows' anchors own).

    Parameters
    ----------
    x : (N, C, *S) or (N, *S, C), dask or NumPy
    w : (O, C / groups, *K) or (*K, C / groups, O); bias : (O,), optional
    stride, padding, dilation, groups, data_format, method, workspace_bytes : as ``convgrad.conv``
    block_bytes : int, optional; the peak one block may use (see the module's docstring)

    Returns
    -------
    y : lazy dask array (N, O, *out) or (N, *out, O)
    """
    fmt = _canon.data_format(data_format)
    x, w = _operands(("x", "w"), x, w, fmt, "conv")
    geom = ConvGeometry.for_conv(x.shape, w.shape, stride=stride, padding=padding, dilation=dilation,
                                 groups=groups, data_format=fmt)
    mode = _mode(padding_mode, geom, padding, fmt, workspace_bytes)
    b = _bias(bias, geom.out_channels)
    return _graph.forward(mode.geom, mode.pad(x), _graph.small("w", w), b, fmt,
                          Budget(method, workspace_bytes, block_bytes))


def conv_input_grad(dy: object, w: object, input_shape: object, *, stride: object = 1, padding: object = 0,
                    dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
                    data_format: str = "channels_first",
                    method: str = "auto", workspace_bytes: int | None = None,
                    convention: str = "adjoint", block_bytes: int | None = None) -> da.Array:
    """``convgrad.conv_input_grad`` on a dask ``dy``: each dx block gathers the dy samples
    whose windows reach it (no overlap-add); dx's chunks are dy's times the stride.
    ``convention`` as the core's ('adjoint' conjugates a complex ``w``, 'transpose' does not).

    Returns
    -------
    dx : lazy dask array (N, C, *S) or (N, *S, C)
    """
    fmt = _canon.data_format(data_format)
    dy, w = _operands(("dy", "w"), dy, w, fmt, "conv_input_grad")
    geom = ConvGeometry.for_input_grad(dy.shape, w.shape, input_shape, stride=stride, padding=padding,
                                       dilation=dilation, groups=groups, data_format=fmt)
    budget, convention = Budget(method, workspace_bytes, block_bytes), convention_of(convention)
    mode = _mode(padding_mode, geom, padding, fmt, workspace_bytes)
    return mode.fold(_graph.input_grad(mode.geom, dy, _graph.small("w", w), None, fmt, budget,
                                       convention=convention))


def conv_filter_grad(x: object, dy: object, filter_shape: object, *, stride: object = 1,
                     padding: object = 0, dilation: object = 1, groups: int = 1,
                     padding_mode: object = "zeros", data_format: str = "channels_first",
                     method: str = "auto", workspace_bytes: int | None = None,
                     convention: str = "adjoint", block_bytes: int | None = None,
                     split_every: int = SPLIT_EVERY) -> da.Array:
    """``convgrad.conv_filter_grad`` on dask ``x`` and ``dy``: one partial per y block,
    tree-summed (fan-in ``split_every``): float64 for float32, float16 and bfloat16 (partials
    never rounded to the narrow dtype), complex128 for complex64, exact int64 (OverflowError if
    the total wraps); ``convention`` as the core's.

    Returns
    -------
    dw : lazy dask array (O, C / groups, *K) or (*K, C / groups, O), one chunk
    """
    fmt = _canon.data_format(data_format)
    x, dy = _operands(("x", "dy"), x, dy, fmt, "conv_filter_grad")
    geom = ConvGeometry.for_filter_grad(x.shape, dy.shape, filter_shape, stride=stride, padding=padding,
                                        dilation=dilation, groups=groups, data_format=fmt)
    mode = _mode(padding_mode, geom, padding, fmt, workspace_bytes)
    return _graph.filter_grad(mode.geom, mode.pad(x), dy, fmt, Budget(method, workspace_bytes, block_bytes),
                              split_every, convention=convention_of(convention))


def conv_bias_grad(dy: object, *, data_format: str = "channels_first", workspace_bytes: int | None = None,
                   split_every: int = SPLIT_EVERY) -> da.Array:
    """``convgrad.conv_bias_grad`` on a dask ``dy``: a partial sum per chunk (float64 for
    float32), tree-summed. ``workspace_bytes`` is accepted for the core's signature; no block
    copies dy.

    Returns
    -------
    db : lazy dask array (O,)
    """
    fmt = _canon.data_format(data_format)
    Budget("auto", workspace_bytes)  # the core's check of the value
    return _graph.bias_grad(_graph.lazy("dy", dy), fmt, split_every)


def conv_transpose(x: object, w: object, bias: object = None, *, stride: object = 1, padding: object = 0,
                   output_padding: object = 0, output_shape: object = None, dilation: object = 1,
                   groups: int = 1, padding_mode: object = "zeros",
                   data_format: str = "channels_first", method: str = "auto",
                   workspace_bytes: int | None = None, block_bytes: int | None = None) -> da.Array:
    """``convgrad.conv_transpose`` on a dask ``x``: the input gradient of the forward conv it
    transposes (``ConvGeometry.for_transpose``), block by block, bias added per block; as the
    core's, it never conjugates a complex ``w``.

    Returns
    -------
    y : lazy dask array (N, C_out, *S_out) or (N, *S_out, C_out)
    """
    fmt = _canon.data_format(data_format)
    x, w = _operands(("x", "w"), x, w, fmt, "conv_transpose")
    geom = ConvGeometry.for_transpose(x.shape, w.shape, stride=stride, padding=padding,
                                      output_padding=output_padding, output_shape=output_shape,
                                      dilation=dilation, groups=groups, data_format=fmt)
    b = _bias(bias, geom.in_channels)
    budget = Budget(method, workspace_bytes, block_bytes)
    mode = _mode(padding_mode, geom, padding, fmt, workspace_bytes)
    y = _graph.input_grad(mode.geom, x, _graph.small("w", w), b if mode.block_bias else None, fmt, budget,
                          "conv_transpose", "transpose")
    return mode.biased_fold(y, b)


def _cotangent(g: object, shape: tuple[int, ...], fmt: str, op: str) -> da.Array:
    dy = _graph.one_channel_chunk("dy", _graph.lazy("dy", g), fmt, op)
    if dy.shape != shape:
        raise ValueError(f"dy.shape={dy.shape} does not match the output shape {shape}")
    return dy


def conv_vjp(x: object, w: object, bias: object = None, *, stride: object = 1, padding: object = 0,
             dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
             data_format: str = "channels_first", method: str = "auto",
             workspace_bytes: int | None = None, convention: str = "adjoint",
             block_bytes: int | None = None,
             split_every: int = SPLIT_EVERY) -> tuple[da.Array, Callable]:
    """``convgrad.conv_vjp`` on dask arrays: a lazy y and ``vjp(dy) -> (dx, dw, db)``, lazy
    (db None without bias); ``convention`` as the core's."""
    convention = convention_of(convention)
    fmt = _canon.data_format(data_format)
    x, w = _operands(("x", "w"), x, w, fmt, "conv_vjp")
    geom = ConvGeometry.for_conv(x.shape, w.shape, stride=stride, padding=padding, dilation=dilation,
                                 groups=groups, data_format=fmt)
    b, w = _bias(bias, geom.out_channels), _graph.small("w", w)
    budget = Budget(method, workspace_bytes, block_bytes)
    mode = _mode(padding_mode, geom, padding, fmt, workspace_bytes)
    xp = mode.pad(x)
    y = _graph.forward(mode.geom, xp, w, b, fmt, budget, "conv_vjp")

    def vjp(g: object) -> tuple[da.Array, da.Array, da.Array | None]:
        dy = _cotangent(g, geom.y_shape(fmt), fmt, "conv_vjp")
        return (mode.fold(_graph.input_grad(mode.geom, dy, w, None, fmt, budget, "conv_vjp", convention)),
                _graph.filter_grad(mode.geom, xp, dy, fmt, budget, split_every, "conv_vjp", convention),
                None if b is None else _graph.bias_grad(dy, fmt, split_every, "conv_vjp"))

    return y, vjp


def conv_transpose_vjp(x: object, w: object, bias: object = None, *, stride: object = 1, padding: object = 0,
                       output_padding: object = 0, output_shape: object = None, dilation: object = 1,
                       groups: int = 1, padding_mode: object = "zeros",
                       data_format: str = "channels_first", method: str = "auto",
                       workspace_bytes: int | None = None, convention: str = "adjoint",
                       block_bytes: int | None = None,
                       split_every: int = SPLIT_EVERY) -> tuple[da.Array, Callable]:
    """``convgrad.conv_transpose_vjp`` on dask arrays: dx is the forward conv of dy, dw the
    forward's filter gradient with dy as its input and x as its output gradient (for complex
    operands under 'adjoint': dx with ``w.conj()``, dw conjugated, as the core's)."""
    convention = convention_of(convention)
    fmt = _canon.data_format(data_format)
    x, w = _operands(("x", "w"), x, w, fmt, "conv_transpose_vjp")
    geom = ConvGeometry.for_transpose(x.shape, w.shape, stride=stride, padding=padding,
                                      output_padding=output_padding, output_shape=output_shape,
                                      dilation=dilation, groups=groups, data_format=fmt)
    b, w = _bias(bias, geom.in_channels), _graph.small("w", w)
    budget = Budget(method, workspace_bytes, block_bytes)
    mode = _mode(padding_mode, geom, padding, fmt, workspace_bytes)
    y = mode.biased_fold(_graph.input_grad(mode.geom, x, w, b if mode.block_bias else None, fmt, budget,
                                           "conv_transpose_vjp", "transpose"), b)

    def vjp(g: object) -> tuple[da.Array, da.Array, da.Array | None]:
        dy = _cotangent(g, geom.x_shape(fmt), fmt, "conv_transpose_vjp")
        # The transposed conv is A^T (no conjugation): its adjoint is conj(A), so dx convolves dy
        # with conj(w), and dw, the forward's filter gradient of (dy, x) under 'adjoint', which
        # conjugates dy, is conjugated back (each op is bilinear with real coefficients).
        flip = convention == "adjoint" and any(a.dtype.kind == "c" for a in (x, w, dy))
        dyp, op = mode.pad(dy), "conv_transpose_vjp"
        dw = _graph.filter_grad(mode.geom, dyp, x, fmt, budget, split_every, op, convention)
        return (_graph.forward(mode.geom, dyp, w.conj() if flip else w, None, fmt, budget, op),
                dw.conj() if flip else dw,
                None if b is None else _graph.bias_grad(dy, fmt, split_every, "conv_transpose_vjp"))

    return y, vjp


def conv_jvp(x: object, w: object, x_dot: object = None, w_dot: object = None, bias: object = None,
             bias_dot: object = None, *, stride: object = 1, padding: object = 0, dilation: object = 1,
             groups: int = 1, padding_mode: object = "zeros", data_format: str = "channels_first",
             method: str = "auto", workspace_bytes: int | None = None,
             block_bytes: int | None = None) -> tuple[da.Array, da.Array]:
    """``convgrad.conv_jvp`` on dask arrays: y and its tangent ``conv(x_dot, w) + conv(x, w_dot)
    + bias_dot`` (conv is bilinear: two blocked convs, summed block by block; integer sums that
    would wrap raise OverflowError).

    Returns
    -------
    y, y_dot : lazy dask arrays (N, O, *out) or (N, *out, O)
    """
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
          "padding_mode": padding_mode, "data_format": data_format, "method": method,
          "workspace_bytes": workspace_bytes, "block_bytes": block_bytes}

    def run(a: da.Array, b: object, c: object = None) -> da.Array:
        return conv(a, b, c, **kw)

    fmt = _canon.data_format(data_format)
    return _tangent_out(run, _graph.lazy("x", x), w, x_dot, w_dot, bias, bias_dot, fmt)


def conv_transpose_jvp(x: object, w: object, x_dot: object = None, w_dot: object = None, bias: object = None,
                       bias_dot: object = None, *, stride: object = 1, padding: object = 0,
                       output_padding: object = 0, output_shape: object = None, dilation: object = 1,
                       groups: int = 1, padding_mode: object = "zeros", data_format: str = "channels_first",
                       method: str = "auto", workspace_bytes: int | None = None,
                       block_bytes: int | None = None) -> tuple[da.Array, da.Array]:
    """``convgrad.conv_transpose_jvp`` on dask arrays: y and ``conv_transpose(x_dot, w) +
    conv_transpose(x, w_dot) + bias_dot``, lazy, as ``conv_jvp``.

    Returns
    -------
    y, y_dot : lazy dask arrays (N, C_out, *S_out) or (N, *S_out, C_out)
    """
    kw = {"stride": stride, "padding": padding, "output_padding": output_padding,
          "output_shape": output_shape, "dilation": dilation, "groups": groups,
          "padding_mode": padding_mode, "data_format": data_format, "method": method,
          "workspace_bytes": workspace_bytes, "block_bytes": block_bytes}

    def run(a: da.Array, b: object, c: object = None) -> da.Array:
        return conv_transpose(a, b, c, **kw)

    fmt = _canon.data_format(data_format)
    return _tangent_out(run, _graph.lazy("x", x), w, x_dot, w_dot, bias, bias_dot, fmt)


def _tangent(name: str, t: object, primal: str, like: da.Array) -> da.Array:
    """A tangent of ``primal`` (``like``), in its chunks: the two terms' blocks then align."""
    a = _graph.lazy(name, t)
    if a.shape != like.shape:
        raise ValueError(f"{name}.shape={a.shape} must equal {primal}.shape={like.shape} "
                         f"(a tangent of {primal})")
    return a if a.chunks == like.chunks else a.rechunk(like.chunks)


def _tangent_out(run: Callable[..., da.Array], x: da.Array, w: object, x_dot: object, w_dot: object,
                 bias: object, bias_dot: object, fmt: str) -> tuple[da.Array, da.Array]:
    """``(run(x, w, bias), run(x_dot, w) + run(x, w_dot) + bias_dot)`` for the bilinear ``run``;
    None tangents are zero."""
    out = run(x, w, bias)
    terms = []
    if x_dot is not None:
        terms.append(run(_tangent("x_dot", x_dot, "x", x), w))
    if w_dot is not None:
        terms.append(run(x, _tangent("w_dot", w_dot, "w", _graph.small("w", w))))
    if bias_dot is not None:
        if bias is None:
            raise ValueError("bias_dot needs a bias: without one the output does not depend on it")
        b_dot = _tangent("bias_dot", bias_dot, "bias", _graph.small("bias", bias))
        shape = (-1,) + (1,) * (out.ndim - 2) if fmt == "channels_first" else (-1,)
        terms.append(da.broadcast_to(b_dot.reshape(shape), out.shape, chunks=out.chunks))
    if not terms:
        return out, da.zeros(out.shape, out.dtype, chunks=out.chunks)
    dtype = np.result_type(*(t.dtype for t in terms))
    total = terms[0] if len(terms) == 1 else da.map_blocks(_blocks.add, *terms, dtype=dtype)
    return out, total.astype(np.result_type(out.dtype, total.dtype))
