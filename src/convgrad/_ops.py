"""The public ops: thin layers that canonicalise, build the geometry, plan and run.

Shapes (channels-first / channels-last):
x ``(N, C, *S)`` / ``(N, *S, C)``; w ``(O, C/groups, *K)`` / ``(*K, C/groups, O)``;
y and dy ``(N, O, *out)`` / ``(N, *out, O)``; bias ``(O,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from . import _canon, _lazy
from ._budget import check_fits, contiguous, workspace_limit
from ._dtypes import (
    INT64_MAX,
    as_array,
    check_int_sum,
    conj,
    convention_of,
    cotangent,
    int_peak,
    int_terms,
    result_dtype,
    rounded,
)
from ._geometry import ConvGeometry
from ._layout import w_from_last, w_to_last, x_from_last, x_to_last
from ._padmode import PadMap
from ._plan import make_plan, pays_to_load
from .engines._kernels import layout
from .engines._machine import figures

GradTriple = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]
Pullback = Callable[[object], tuple]


def _run(op: str, geom: ConvGeometry, a: np.ndarray, b: np.ndarray, fmt: str, method: str,
         workspace_bytes: object, out_shape: tuple[int, ...], plan_for: Callable | None = None,
         exact_ints: bool = True, wide: bool = False) -> np.ndarray:
    """Run ``op`` on ``a`` and ``b`` in ``fmt`` by ``make_plan`` (costed for ``fmt``) or by
    ``plan_for(op, geom, dtype, method, limit)`` (channels-last); returns in ``fmt``, result dtype
    (the compute dtype with ``wide``: float32 for float16 and bfloat16, for a sum still to come).
    Integers: OverflowError first where a result could pass int64, unless ``exact_ints`` is False
    (int64 wraps then, as SciPy's direct method)."""
    res, comp = result_dtype(a, b)
    if wide:
        res = comp
    a_name, b_name = {"forward": ("x", "w"), "input_grad": ("dy", "w"), "filter_grad": ("x", "dy")}[op]
    if comp.kind == "i" and exact_ints:
        check_int_sum(*int_terms(op, geom), **{a_name: a, b_name: b})
    limit = workspace_limit(workspace_bytes)
    check_fits(f"the result {out_shape}", math.prod(out_shape) * comp.itemsize, limit)
    plan = make_plan(op, geom, comp, method, limit, fmt) if plan_for is None else \
        plan_for(op, geom, comp, method, limit)
    # Engines get C-contiguous operands, channels-last unless the plan's engine runs the caller's
    # layout itself: one copy at most, and results that do not depend on how the caller's arrays
    # are laid out in memory (BLAS and NumPy sum in an order that follows the strides).
    if getattr(plan, "takes", "channels_last") != "channels_last":
        out = plan(contiguous(a_name, a, comp, limit), contiguous(b_name, b, comp, limit))
        assert out.shape == out_shape, (out.shape, out_shape)
        return rounded(out, res)
    b_role, out_role = ("x", "w") if op == "filter_grad" else ("w", "x")
    a_last = contiguous(a_name, _relaid(a, fmt, "x", comp), comp, limit)
    out = plan(a_last, contiguous(b_name, _relaid(b, fmt, b_role, comp), comp, limit))
    # A result rounded to a narrower dtype is laid out by ``rounded`` in that dtype.
    out = _relaid(out, fmt, out_role, res, back=True)
    assert out.shape == out_shape, (out.shape, out_shape)
    return rounded(out, res)


def _relaid(a: np.ndarray, fmt: str, role: str, dtype: np.dtype, back: bool = False) -> np.ndarray:
    """``a`` (role 'x' or 'w') from ``fmt`` to channels-last (``back``: from channels-last to
    ``fmt``): a channels-first array already of ``dtype`` by the compiled transposition where it
    is loaded or worth loading (``relaid``: 8 x 8 blocks in registers, 0.06-0.4x NumPy's copy on the FFT rows'
    large arrays), else a view that ``contiguous`` (or ``rounded``) copies."""
    if fmt == "channels_first" and a.dtype == dtype:
        moved = layout.relaid(a, role, not back, load=_pays(a, role, not back))
        if moved is not None:
            return moved
    views = {("x", False): x_to_last, ("w", False): w_to_last, ("x", True): x_from_last,
             ("w", True): w_from_last}
    return views[role, back](a, fmt)


def _pays(a: np.ndarray, role: str, to_last: bool) -> bool:
    """Whether the compiled transposition of ``a``, not loaded yet, is worth loading now by the JIT
    policy (``_plan.pays_to_load``): no plan runs it, so none loads it."""
    if not layout.runs_on(a, role, to_last) or layout.loaded(a.dtype):
        return False
    fig = figures("_layout")
    saving = 2 * a.nbytes * (1 / fig.TRANSPOSE_BYTES_PER_S - 1 / fig.COMPILED_TRANSPOSE_BYTES_PER_S)
    return pays_to_load(layout.transpose_batches, layout.mover(a.dtype), saving)


# Each op computes one of a conv's three arrays from the other two, and is bilinear in them: the
# pullback of "compute r from (a, b)" with cotangent g in r's place computes a from (g, b) and b
# from (a, g). So conv's vjp runs input_grad and filter_grad, conv_input_grad's runs forward and
# filter_grad, and so on, from one table.
_FROM = {"y": ("x", "w"), "x": ("y", "w"), "w": ("x", "y")}
_OP = {"y": "forward", "x": "input_grad", "w": "filter_grad"}


@dataclass(frozen=True)
class _Call:
    """One checked call: the geometry, layout and engine choice its op and pullback share. The
    core's entry for a built geometry: the ops and the fronts run their arrays through it."""

    geom: ConvGeometry
    fmt: str
    method: str = "auto"
    workspace_bytes: int | None = None
    pad_map: PadMap | None = None  # a padding mode other than zeros: pad, run VALID, fold back
    convention: str = "adjoint"  # of complex gradients: 'adjoint' (A^H dy) or 'transpose' (A^T dy)
    # Results in the compute dtype (float32 for float16 and bfloat16): a bias is added before the
    # one rounding to the result dtype, not after a first one.
    wide: bool = False
    # The plan each op runs, instead of the default planner's: plan_for(op, geom, dtype, method,
    # limit) (convgrad.dask pins a block's plan when its graph is built).
    plan_for: Callable | None = None
    checks_all_ops: ClassVar[bool] = True  # vjp plans all three ops first for a named method
    exact_ints: ClassVar[bool] = True  # integers: OverflowError where int64 could wrap (else wrap)

    def shape(self, role: str) -> tuple[int, ...]:
        return getattr(self.geom, f"{role}_shape")(self.fmt)

    def __call__(self, role: str, **arrays: np.ndarray) -> np.ndarray:
        """The array of ``role`` ('x', 'w' or 'y') from the other two, given by role."""
        a, b = (arrays[r] for r in _FROM[role])
        shape = self.shape(role)
        if self.geom.empty or 0 in shape:  # no window, or nothing to compute: no engine sees it
            dtype = result_dtype(a, b)[1 if self.wide else 0]
            # NumPy refuses a shape whose extents multiply past 2**63 bytes even with a 0 in it.
            nominal = math.prod(max(n, 1) for n in shape) * dtype.itemsize
            if nominal >= 2**63:
                raise ValueError(f"the result {shape} of {dtype} cannot be a NumPy array: its extents "
                                 f"multiply to {nominal:,} bytes, past NumPy's limit of 2**63 - 1")
            check_fits(f"the result {shape}", math.prod(shape) * dtype.itemsize,
                       workspace_limit(self.workspace_bytes))
            return np.zeros(shape, dtype)
        if self.pad_map is not None:
            if role == "x" and self.exact_ints and result_dtype(a, b)[1].kind == "i":
                check_int_sum(*int_terms("input_grad", self.pad_map.valid, self.pad_map.pads), dy=a, w=b)
            valid = replace(self, geom=self.pad_map.valid, pad_map=None)
            return self.pad_map.through(valid, role, arrays, self.fmt, workspace_limit(self.workspace_bytes))
        return _run(_OP[role], self.geom, a, b, self.fmt, self.method, self.workspace_bytes, shape,
                    self.plan_for, exact_ints=self.exact_ints, wide=self.wide)

    def primal(self, a: np.ndarray) -> np.ndarray:
        """A primal operand as a gradient reads it: conjugated for the adjoint of a complex op
        (each op is bilinear with real coefficients, so ``A^H g`` is the transpose run on the
        conjugated operand), as it is otherwise."""
        return conj(a) if self.convention == "adjoint" else a

    def _bias(self, role: str, bias: object) -> tuple[np.ndarray | None, int]:
        """``bias`` checked against the channels of ``role``'s array, and their count."""
        channels = self.geom.out_channels if role == "y" else self.geom.in_channels
        if bias is None:
            return None, channels
        b = as_array("bias", bias)
        if b.shape != (channels,):
            raise ValueError(f"bias must have shape ({channels},) (one per output channel), got {b.shape}")
        return b, channels

    def _add(self, y: np.ndarray, bias: np.ndarray | None, channels: int,
             res: np.dtype | None = None) -> np.ndarray:
        """``y + bias`` per channel, in ``res`` (default: y's and bias's result dtype)."""
        if bias is None:
            return y
        if self.exact_ints and result_dtype(y, bias)[1].kind == "i":
            peak_y, peak_b = int_peak(y), int_peak(bias)
            if peak_y + peak_b > INT64_MAX:
                raise OverflowError(f"an integer result could pass int64: max|y|={peak_y} + max|bias|="
                                    f"{peak_b} > 2**63 - 1 = {INT64_MAX}; pass float64")
        shape = (channels,) + (1,) * (y.ndim - 2) if self.fmt == "channels_first" else (channels,)
        res = result_dtype(y, bias)[0] if res is None else res
        return (y + bias.reshape(shape)).astype(res, copy=False)

    def _widened(self, arrays: dict[str, np.ndarray], bias: np.ndarray | None
                 ) -> tuple[bool, np.dtype | None]:
        """Whether ``self`` computes a biased result wide (its conv would round: float16,
        bfloat16), and the result dtype of the operands and the bias."""
        if bias is None:
            return False, None
        res, comp = result_dtype(*arrays.values())
        return res != comp, result_dtype(*arrays.values(), bias)[0]

    def biased(self, role: str, arrays: dict[str, np.ndarray], bias: object = None) -> np.ndarray:
        """``self(role, **arrays)`` plus ``bias``, one per channel of the result (checked first),
        rounded once to the result dtype."""
        b, channels = self._bias(role, bias)
        wide, res = self._widened(arrays, b)
        call = replace(self, wide=True) if wide else self
        return self._add(call(role, **arrays), b, channels, res)

    def vjp(self, role: str, arrays: dict[str, np.ndarray], name: str = "dy",
            conjugated: tuple[str, ...] = (), wide: bool = False) -> tuple[np.ndarray, Pullback]:
        """``(self(role, **arrays), pullback)``; ``pullback(g)`` gives the other two roles' gradients
        (adjoints under the 'adjoint' convention). The roles in ``conjugated`` enter the op
        through ``primal`` (a first-order gradient's primal operand); their gradients are
        conjugated back, as the chain rule through a conjugation gives. ``wide``: the result
        (not the gradients) in the compute dtype."""
        if self.checks_all_ops and self.method != "auto":  # say which op a named method cannot run
            limit, comp = workspace_limit(self.workspace_bytes), result_dtype(*arrays.values())[1]
            geom = self.geom if self.pad_map is None else self.pad_map.valid
            for op in _OP.values():
                make_plan(op, geom, comp, self.method, limit)
        entered = {r: self.primal(a) if r in conjugated else a for r, a in arrays.items()}
        out = (replace(self, wide=True) if wide else self)(role, **entered)

        def pullback(g: object) -> tuple[np.ndarray, ...]:
            given = {r: a if r in conjugated else self.primal(a) for r, a in arrays.items()}
            given[role] = cotangent(g, self.shape(role), name, out.dtype)
            return tuple(self.primal(self(r, **given)) if r in conjugated else self(r, **given)
                         for r in _FROM[role])

        return out, pullback

    def biased_vjp(self, role: str, arrays: dict[str, np.ndarray], bias: object = None
                   ) -> tuple[np.ndarray, Pullback]:
        """``vjp`` with a bias added to the result; the pullback also gives db (None without)."""
        b, channels = self._bias(role, bias)
        wide, res = self._widened(arrays, b)
        out, pullback = self.vjp(role, arrays, wide=wide)

        def with_db(dy: object) -> tuple[np.ndarray | None, ...]:
            return (*pullback(dy), None if b is None else conv_bias_grad(dy, data_format=self.fmt))

        return self._add(out, b, channels, res), with_db


def _resolve(build: Callable[..., ConvGeometry], a_name: str, a: object, b_name: str, b: object,
             *shape: object, data_format: str, method: str, workspace_bytes: int | None,
             call_type: type[_Call] | None = None, padding_mode: object = "zeros",
             convention: object = "adjoint", **params: object) -> tuple[_Call, np.ndarray, np.ndarray]:
    """The two arrays checked and the geometry ``build(a.shape, b.shape, *shape, **params)``,
    its pads filled by ``padding_mode``; complex gradients by ``convention``."""
    fmt = _canon.data_format(data_format)
    convention = convention_of(convention)
    a, b = as_array(a_name, a), as_array(b_name, b)
    geom = build(a.shape, b.shape, *shape, data_format=fmt, **params)
    pad_map = PadMap.build(padding_mode, geom, params.get("padding"), workspace_limit(workspace_bytes))
    return (call_type or _Call)(geom, fmt, method, workspace_bytes, pad_map, convention), a, b


def conv(
    x: object, w: object, bias: object = None, *, stride: object = 1, padding: object = 0,
    dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
    data_format: str = "channels_first", method: str = "auto", workspace_bytes: int | None = None,
) -> np.ndarray:
    """N-d convolution (cross-correlation, as in deep learning).

    ``y[n, o, p] = bias[o] + sum_{c, t} w[o, c, t] * x_pad[n, g(o) * C/G + c, p * stride + t * dilation]``.

    Parameters
    ----------
    x : (N, C, *S) or, channels-last, (N, *S, C)
    w : (O, C / groups, *K) or, channels-last, (*K, C / groups, O)
    bias : (O,), optional
    stride, dilation : int or one per spatial dim, >= 1
    padding : int, per-dim ints, per-dim (before, after) pairs (negative crops), or 'valid',
        'same' (TF/ONNX SAME_UPPER, any stride), 'same_lower', 'full'
    groups : int; ``groups == C`` is depthwise
    padding_mode : what fills the pads: 'zeros' (default), 'reflect' (``c b | a b c d``, pads <
        size), 'symmetric' (``b a | a b c d``, pads <= size), 'replicate' (``a a | a b c d``) or
        'circular' (``c d | a b c d``, pads <= size); NumPy's 'constant', 'edge', 'wrap' and
        TensorFlow's 'CONSTANT', 'REFLECT', 'SYMMETRIC' too. SciPy ndimage's names only as
        ``("scipy", name)``: its 'reflect' is 'symmetric' here. Non-zero modes refuse negative pads.
    data_format : 'channels_first' (PyTorch, ONNX, JAX) or 'channels_last' (TensorFlow)
    method : 'auto' or an engine name (see ``convgrad.engine_names()``)
    workspace_bytes : int, optional; the budget for temporaries (default 2 GiB or
        $CONVGRAD_WORKSPACE_BYTES)

    Returns
    -------
    y : (N, O, *out) or (N, *out, O), ``out = (S + before + after - (K - 1) * dilation - 1) // stride + 1``

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> convgrad.conv(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 3)), padding=1)
    array([[[1., 3., 6., 9., 7.]]])
    """
    if _lazy.any_dask(x, w, bias):  # never computed here: convgrad.dask, or a TypeError
        return _lazy.route("conv", locals())
    call, x, w = _resolve(ConvGeometry.for_conv, "x", x, "w", w, stride=stride, padding=padding,
                          dilation=dilation, groups=groups, data_format=data_format, method=method,
                          workspace_bytes=workspace_bytes, padding_mode=padding_mode)
    return call.biased("y", {"x": x, "w": w}, bias)


def conv_input_grad(
    dy: object, w: object, input_shape: object, *, stride: object = 1, padding: object = 0,
    dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
    data_format: str = "channels_first", method: str = "auto", workspace_bytes: int | None = None,
    convention: str = "adjoint",
) -> np.ndarray:
    """Gradient of ``conv`` with respect to its input: dx = J_x^H dy (the adjoint).

    Parameters
    ----------
    dy : (N, O, *out) or (N, *out, O); complex with a real ``w`` gives the (complex) product
        with the real conv's transpose, as a plain convolution (the vjps' pullbacks refuse a
        complex cotangent of a real result, as JAX and PyTorch do)
    w : (O, C / groups, *K) or (*K, C / groups, O), as in ``conv``
    input_shape : x's shape, full or spatial only
        Given because a stride makes it ambiguous; it must be one the forward conv maps to
        ``dy``'s shape (the error states the valid range).
    stride, padding, dilation, groups, padding_mode, data_format, method, workspace_bytes :
        as in ``conv``; with a padding mode the pads' gradients fold back onto the samples they copy
    convention : 'adjoint' (default; PyTorch's gradient, conjugates ``w`` when complex) or
        'transpose' (J_x^T dy, JAX's ``vjp``); the same for real dtypes

    Returns
    -------
    dx : (N, C, *S) or (N, *S, C); ``conv_transpose(dy, w, output_shape=input_shape)`` for real
        dtypes and 'transpose' (``conv_transpose`` never conjugates: the adjoint of a complex
        conv is ``conv_transpose(dy, w.conj(), ...)``)

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> convgrad.conv_input_grad(np.ones((1, 1, 2)), np.array([[[1.0, 2.0]]]), (5,), stride=2)
    array([[[1., 2., 1., 2., 0.]]])
    """
    if _lazy.any_dask(dy, w):  # never computed here: convgrad.dask, or a TypeError
        return _lazy.route("conv_input_grad", locals())
    call, dy, w = _resolve(ConvGeometry.for_input_grad, "dy", dy, "w", w, input_shape, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, data_format=data_format,
                           method=method, workspace_bytes=workspace_bytes, padding_mode=padding_mode,
                           convention=convention)
    return call("x", y=dy, w=call.primal(w))


def conv_filter_grad(
    x: object, dy: object, filter_shape: object, *, stride: object = 1, padding: object = 0,
    dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
    data_format: str = "channels_first", method: str = "auto", workspace_bytes: int | None = None,
    convention: str = "adjoint",
) -> np.ndarray:
    """Gradient of ``conv`` with respect to its filter: dw = J_w^H dy (the adjoint).

    Parameters
    ----------
    x : (N, C, *S) or (N, *S, C)
    dy : (N, O, *out) or (N, *out, O), the conv's output shape; complex with a real ``x`` as in
        ``conv_input_grad``
    filter_shape : w's shape, full or the kernel sizes K only
    stride, padding, dilation, groups, padding_mode, data_format, method, workspace_bytes :
        as in ``conv``
    convention : 'adjoint' (default, conjugates ``x`` when complex) or 'transpose', as in
        ``conv_input_grad``

    Returns
    -------
    dw : (O, C / groups, *K) or (*K, C / groups, O);
        ``dw[o, c, t] = sum_{n, p} dy[n, o, p] * conj(x_pad[n, c, p * stride + t * dilation])``
        (no conj with 'transpose')

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> convgrad.conv_filter_grad(np.arange(4.0).reshape(1, 1, 4), np.ones((1, 1, 3)), (2,))
    array([[[3., 6.]]])
    """
    if _lazy.any_dask(x, dy):  # never computed here: convgrad.dask, or a TypeError
        return _lazy.route("conv_filter_grad", locals())
    call, x, dy = _resolve(ConvGeometry.for_filter_grad, "x", x, "dy", dy, filter_shape, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, data_format=data_format,
                           method=method, workspace_bytes=workspace_bytes, padding_mode=padding_mode,
                           convention=convention)
    return call("w", x=call.primal(x), y=dy)


def conv_bias_grad(dy: object, *, data_format: str = "channels_first",
                   workspace_bytes: int | None = None) -> np.ndarray:
    """Gradient of ``conv`` with respect to its bias: dy summed over batch and positions.

    Parameters
    ----------
    dy : (N, O, *out) or (N, *out, O)
    data_format : 'channels_first' or 'channels_last'
    workspace_bytes : budget for the contiguous copy of a strided or broadcast dy (as ``conv``)

    Returns
    -------
    db : (O,)

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> convgrad.conv_bias_grad(np.arange(12.0).reshape(2, 2, 3))
    array([24., 42.])
    """
    if _lazy.any_dask(dy):  # never computed here: convgrad.dask, or a TypeError
        return _lazy.route("conv_bias_grad", locals())
    fmt = _canon.data_format(data_format)
    dy = as_array("dy", dy)
    if dy.ndim < 3:
        raise ValueError(f"dy must have at least 3 dims (N, channels, *spatial), got dy.shape={dy.shape}")
    res, comp = result_dtype(dy)
    limit = workspace_limit(workspace_bytes)
    channels = dy.shape[1 if fmt == "channels_first" else -1]
    check_fits(f"the result ({channels},)", channels * comp.itemsize, limit)  # N = 0 copies nothing
    if comp.kind == "i":
        check_int_sum(dy.size // max(dy.shape[1 if fmt == "channels_first" else -1], 1),
                      "N * prod(out) terms per channel", dy=dy)
    # Sum rows of a contiguous channels-last copy: the same order whatever dy's memory layout.
    rows = contiguous("dy", x_to_last(dy, fmt), comp, limit)
    # NumPy sums axis 0 row by row (not pairwise): a float32 running total over a million rows lost
    # 4 digits, so reduced precisions accumulate in float64 and round once.
    acc = np.float64 if comp.kind == "f" and comp.itemsize < 8 else None
    total = rows.reshape(math.prod(rows.shape[:-1]), rows.shape[-1]).sum(axis=0, dtype=acc)
    return total.astype(res, copy=False)


def conv_transpose(
    x: object, w: object, bias: object = None, *, stride: object = 1, padding: object = 0,
    output_padding: object = 0, output_shape: object = None, dilation: object = 1,
    groups: int = 1, padding_mode: object = "zeros", data_format: str = "channels_first",
    method: str = "auto", workspace_bytes: int | None = None,
) -> np.ndarray:
    """Transposed convolution: the transpose of ``conv`` with respect to its input.

    As in PyTorch and JAX it never conjugates, so it equals ``conv_input_grad`` (the adjoint)
    for real dtypes only; for complex ones ``conv_input_grad(dy, w, ...) ==
    conv_transpose(dy, w.conj(), ...)``.

    ``w`` is the filter of the forward conv it transposes: channels-first
    ``(C_in, C_out / groups, *K)`` as PyTorch's ``conv_transpose*d``, channels-last
    ``(*K, C_out / groups, C_in)`` as TensorFlow's ``conv2d_transpose``; ``padding`` is that
    forward conv's padding. Output size per dim: ``(n - 1) * s - before - after + (k - 1) * d
    + 1 + output_padding`` ('same' gives ``n * s``), or ``output_shape`` (full or spatial), which
    must be one the forward conv maps back to ``n``. bias: ``(C_out,)``. ``padding_mode`` (as in
    ``conv``) gives the adjoint of the forward conv with that mode (PyTorch's transposed convs
    take zeros only).

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> convgrad.conv_transpose(np.ones((1, 1, 2)), np.ones((1, 1, 3)), stride=2)
    array([[[1., 1., 2., 1., 1.]]])
    """
    if _lazy.any_dask(x, w, bias):  # never computed here: convgrad.dask, or a TypeError
        return _lazy.route("conv_transpose", locals())
    call, x, w = _resolve(ConvGeometry.for_transpose, "x", x, "w", w, stride=stride, padding=padding,
                          output_padding=output_padding, output_shape=output_shape, dilation=dilation,
                          groups=groups, data_format=data_format, method=method,
                          workspace_bytes=workspace_bytes, padding_mode=padding_mode)
    # The geometry is the forward conv's: this x is its y, and the result its x.
    return call.biased("x", {"y": x, "w": w}, bias)


def conv_vjp(
    x: object, w: object, bias: object = None, *, stride: object = 1, padding: object = 0,
    dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
    data_format: str = "channels_first", method: str = "auto", workspace_bytes: int | None = None,
    convention: str = "adjoint",
) -> tuple[np.ndarray, Callable[[object], GradTriple]]:
    """``conv`` and its pullback: the geometry is checked once, ``vjp`` reuses it.

    Parameters
    ----------
    x, w, bias, stride, padding, dilation, groups, padding_mode, data_format, method,
    workspace_bytes :
        as in ``conv``; a named ``method`` must run all three ops (checked before any work).
    convention : 'adjoint' (default; PyTorch's autograd: dx, dw conjugate the other operand
        when complex) or 'transpose' (JAX's ``vjp``), as in ``conv_input_grad``

    Returns
    -------
    y : (N, O, *out) or (N, *out, O), ``conv(x, w, bias, ...)``
    vjp : callable
        ``vjp(dy) -> (dx, dw, db)``: dy of y's shape; dx, dw of x's and w's shapes; db ``(O,)``,
        or None without bias.

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> y, vjp = convgrad.conv_vjp(np.arange(4.0).reshape(1, 1, 4), np.array([[[1.0, 2.0]]]), np.array([0.5]))
    >>> y
    array([[[2.5, 5.5, 8.5]]])
    >>> vjp(np.ones((1, 1, 3)))
    (array([[[1., 3., 3., 2.]]]), array([[[3., 6.]]]), array([3.]))
    """
    if _lazy.any_dask(x, w, bias):  # never computed here: convgrad.dask, or a TypeError
        return _lazy.route("conv_vjp", locals())
    call, x, w = _resolve(ConvGeometry.for_conv, "x", x, "w", w, stride=stride, padding=padding,
                          dilation=dilation, groups=groups, data_format=data_format, method=method,
                          workspace_bytes=workspace_bytes, padding_mode=padding_mode,
                          convention=convention)
    return call.biased_vjp("y", {"x": x, "w": w}, bias)


def conv_transpose_vjp(
    x: object, w: object, bias: object = None, *, stride: object = 1, padding: object = 0,
    output_padding: object = 0, output_shape: object = None, dilation: object = 1,
    groups: int = 1, padding_mode: object = "zeros", data_format: str = "channels_first",
    method: str = "auto", workspace_bytes: int | None = None,
    convention: str = "adjoint",
) -> tuple[np.ndarray, Callable[[object], GradTriple]]:
    """``conv_transpose`` and its pullback: the geometry is checked once, ``vjp`` reuses it.

    The transpose of a transpose is the forward: dx = conv(dy, w), and dw is the forward conv's
    filter gradient with dy as its input and x as its output gradient.

    Parameters
    ----------
    x, w, bias, stride, padding, output_padding, output_shape, dilation, groups, padding_mode,
    data_format, method, workspace_bytes : as in ``conv_transpose``
    convention : 'adjoint' (default) or 'transpose', as in ``conv_vjp``

    Returns
    -------
    y : (N, C_out, *S_out) or (N, *S_out, C_out), ``conv_transpose(x, w, bias, ...)``
    vjp : callable
        ``vjp(dy) -> (dx, dw, db)``: dy of y's shape; dx, dw of x's and w's shapes; db
        ``(C_out,)``, or None without bias.

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> y, vjp = convgrad.conv_transpose_vjp(np.ones((1, 1, 2)), np.ones((1, 1, 3)), stride=2)
    >>> y
    array([[[1., 1., 2., 1., 1.]]])
    >>> vjp(np.arange(5.0).reshape(1, 1, 5))
    (array([[[3., 9.]]]), array([[[2., 4., 6.]]]), None)
    """
    if _lazy.any_dask(x, w, bias):  # never computed here: convgrad.dask, or a TypeError
        return _lazy.route("conv_transpose_vjp", locals())
    call, x, w = _resolve(ConvGeometry.for_transpose, "x", x, "w", w, stride=stride, padding=padding,
                          output_padding=output_padding, output_shape=output_shape, dilation=dilation,
                          groups=groups, data_format=data_format, method=method,
                          workspace_bytes=workspace_bytes, padding_mode=padding_mode,
                          convention=convention)
    return call.biased_vjp("x", {"y": x, "w": w}, bias)


# --- the second order: input and filter gradients are bilinear, so each pullback is two calls ---
def conv_input_grad_vjp(
    dy: object, w: object, input_shape: object, *, stride: object = 1, padding: object = 0,
    dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
    data_format: str = "channels_first", method: str = "auto", workspace_bytes: int | None = None,
    convention: str = "adjoint",
) -> tuple[np.ndarray, Callable[[object], tuple[np.ndarray, np.ndarray]]]:
    """``conv_input_grad`` and its pullback (dx is bilinear in dy and w).

    ``<dx(dy, w), g> = <dy, conv(g, w)> = <w, conv_filter_grad(g, dy)>``.

    Parameters
    ----------
    dy, w, input_shape, stride, padding, dilation, groups, padding_mode, data_format, method,
    workspace_bytes, convention : as in ``conv_input_grad``; the formulas below hold in either
    convention (with 'adjoint', dx is antilinear in w, and d_w its conjugate-Wirtinger gradient)

    Returns
    -------
    dx : x's shape, ``conv_input_grad(dy, w, input_shape, ...)``
    vjp : callable
        ``vjp(g) -> (d_dy, d_w)`` for g of dx's shape: ``d_dy = conv(g, w)`` (dy's shape),
        ``d_w = conv_filter_grad(g, dy)`` (w's shape).

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> dx, vjp = convgrad.conv_input_grad_vjp(np.ones((1, 1, 3)), np.array([[[1.0, 2.0]]]), (4,))
    >>> dx
    array([[[1., 3., 3., 2.]]])
    >>> vjp(np.ones((1, 1, 4)))
    (array([[[3., 3., 3.]]]), array([[[3., 3.]]]))
    """
    if _lazy.any_dask(dy, w):  # never computed here: convgrad.dask, or a TypeError
        return _lazy.route("conv_input_grad_vjp", locals())
    call, dy, w = _resolve(ConvGeometry.for_input_grad, "dy", dy, "w", w, input_shape, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, data_format=data_format,
                           method=method, workspace_bytes=workspace_bytes, padding_mode=padding_mode,
                           convention=convention)
    return call.vjp("x", {"y": dy, "w": w}, "g", conjugated=("w",))


def conv_filter_grad_vjp(
    x: object, dy: object, filter_shape: object, *, stride: object = 1, padding: object = 0,
    dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
    data_format: str = "channels_first", method: str = "auto", workspace_bytes: int | None = None,
    convention: str = "adjoint",
) -> tuple[np.ndarray, Callable[[object], tuple[np.ndarray, np.ndarray]]]:
    """``conv_filter_grad`` and its pullback (dw is bilinear in x and dy).

    ``<dw(x, dy), g> = <x, conv_input_grad(dy, g)> = <dy, conv(x, g)>``.

    Parameters
    ----------
    x, dy, filter_shape, stride, padding, dilation, groups, padding_mode, data_format, method,
    workspace_bytes, convention : as in ``conv_filter_grad``; the formulas below hold in either
    convention

    Returns
    -------
    dw : w's shape, ``conv_filter_grad(x, dy, filter_shape, ...)``
    vjp : callable
        ``vjp(g) -> (d_x, d_dy)`` for g of dw's shape: ``d_x = conv_input_grad(dy, g)`` (x's
        shape), ``d_dy = conv(x, g)`` (dy's shape).

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> dw, vjp = convgrad.conv_filter_grad_vjp(np.arange(4.0).reshape(1, 1, 4), np.ones((1, 1, 3)), (2,))
    >>> dw
    array([[[3., 6.]]])
    >>> vjp(np.array([[[1.0, 0.0]]]))
    (array([[[1., 1., 1., 0.]]]), array([[[0., 1., 2.]]]))
    """
    if _lazy.any_dask(x, dy):  # never computed here: convgrad.dask, or a TypeError
        return _lazy.route("conv_filter_grad_vjp", locals())
    call, x, dy = _resolve(ConvGeometry.for_filter_grad, "x", x, "dy", dy, filter_shape, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, data_format=data_format,
                           method=method, workspace_bytes=workspace_bytes, padding_mode=padding_mode,
                           convention=convention)
    return call.vjp("w", {"x": x, "y": dy}, "g", conjugated=("x",))
