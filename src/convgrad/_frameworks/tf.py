"""TensorFlow: ``tf.nn.conv{1,2,3}d``, their ``_transpose`` and the ``tf.raw_ops`` backprops;
channels-last.

TensorFlow's ``padding`` is 'SAME', 'VALID' or, for the 2-D ops only, explicit non-negative
pairs; a transposed conv takes the forward conv's padding and the output shape. Other pads are
the pad-first workaround. Its CPU kernels have no gradients for grouped or dilated convs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .._formulas import same_total_pad
from ._common import (
    Call,
    Conv,
    ModePad,
    PadFirst,
    Translation,
    answer,
    autodiff_routes,
    call_routes,
    conv_from_pads,
    kwargs_text,
    letters,
    mode_indices,
    on_padded,
    padded_problem,
    refuses_complex,
    sizes,
    stride_dilation_groups,
    transpose_of,
)

if TYPE_CHECKING:
    from .._geometry import ConvGeometry
    from ..testing import Problem, Route

NAME, TITLE, PIP, IMPORTS = "tf", "TensorFlow", "tensorflow", ("tensorflow",)
LAYOUT = "channels_last"
MAX_RANK, RANK_LIMIT = 3, "TensorFlow convolves 1-, 2- and 3-D only"
FILTER_LAYOUTS = {"conv": "*IO", "conv_transpose": "*OI", "depthwise": "*IM"}
# What TensorFlow does with complex values (convgrad explain --dtype complex64/complex128).
COMPLEX = ("complex: TensorFlow's conv kernels take half, bfloat16, float and double only "
           "(InvalidArgumentError)")
PARAMS = {"conv": {"strides", "dilations", "padding", "groups", "data_format", "rate", "dilation_rate"},
          "conv_transpose": {"strides", "dilations", "padding", "output_shape", "input_sizes", "groups",
                             "data_format", "rate", "dilation_rate"}}
# The depthwise ops: a conv grouped by the input channels (``in_channels``, the C of the filter's
# (kh, kw, C, M)), the filter in FILTER_LAYOUTS["depthwise"].
DEPTHWISE_OPS = ("depthwise_conv2d", "depthwise_conv2d_native")
# TensorFlow's op names (tf.nn, TF1's tf.nn and tf.compat.v1.nn) as the conv they compute or transpose.
OP_NAMES = {**dict.fromkeys(("conv1d", "conv2d", "conv3d", "convolution", "atrous_conv2d", *DEPTHWISE_OPS),
                            "conv"),
            **dict.fromkeys(("conv1d_transpose", "conv2d_transpose", "conv3d_transpose",
                             "atrous_conv2d_transpose", "conv2d_backprop_input", "conv3d_backprop_input_v2"),
                            "conv_transpose")}


def _import() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf


def padding(c: Conv) -> str | list[list[int]] | None:
    """TensorFlow's ``padding`` for the conv ``c``: 'SAME' (ceil(n / s) outputs, half the total pad
    before, the odd one after), 'VALID', explicit N + 2 pairs (the 2-D ops only, non-negative), or
    None: not expressible."""
    if all(b == same_total_pad(n, ke, s) // 2 and o == -(-n // s)
           for b, n, ke, s, o in zip(c.before, c.n, c.keff, c.s, c.o)):
        return "SAME"
    if all(b == 0 for b in c.before) and c.after_pads((0,) * c.rank) is not None:
        return "VALID"
    after = c.after_pads() if c.rank == 2 and all(b >= 0 for b in c.before) else None
    return None if after is None else [[0, 0], *([b, a] for b, a in zip(c.before, after)), [0, 0]]


def gradient_limits(g: ConvGeometry) -> list[str]:
    """Why TensorFlow's CPU kernels cannot take ``g``'s gradients (empty when they can)."""
    limits = []
    if g.feature_group_count > 1 and not _depthwise(g):
        limits.append("TensorFlow has no CPU gradient kernels for grouped convolutions"
                      + (", nor a grouped CPU Conv3D forward" if g.rank == 3 else ""))
    if any(d > 1 for d in g.rhs_dilation):
        limits.append("TensorFlow's CPU gradient kernels do not support dilation > 1"
                      + (", nor its CPU Conv3D forward" if g.rank == 3 else ""))
    return limits


def _pad_first(c: Conv) -> str:
    """x cropped by the negative pads and padded by the positive ones: the pad-first workaround."""
    pairs = list(zip(c.before, c.after))
    crop = ", ".join(f"{max(-a, 0)}:{n - max(-b, 0)}" for (a, b), n in zip(pairs, c.n))
    return f"tf.pad(x[:, {crop}, :], {[[0, 0], *[[max(a, 0), max(b, 0)] for a, b in pairs], [0, 0]]})"


# --- translate ----------------------------------------------------------------------------------
def _spatial(value: object, rank: int, first: bool) -> object:
    """A per-dim value in TensorFlow's N + 2 form ([1, *spatial, 1] for NHWC, [1, 1, *spatial] for
    NCHW) as its spatial part; other forms as they are."""
    if isinstance(value, (list, tuple)) and len(value) == rank + 2:
        return list(value[2:] if first else value[1:-1])
    return value


def read(op: str, size: tuple[int, ...], k: tuple[int, ...], p: dict) -> Conv:
    rank = len(k)
    p = dict(p)
    fmt = p.pop("data_format", None) or "NHWC"
    if not isinstance(fmt, str) or fmt not in ("NWC", "NCW", "NHWC", "NCHW", "NDHWC", "NCDHW"):
        raise ValueError(f"tf data_format={fmt!r} is not NWC, NCW, NHWC, NCHW, NDHWC or NCDHW")
    first = fmt.startswith("NC")
    rates = [name for name in ("dilations", "rate", "dilation_rate") if p.get(name) is not None]
    if len(rates) > 1:
        raise ValueError(f"tf: give one of {rates}, the same dilation")
    if rates:  # TF1's atrous_conv2d(rate=) and convolution(dilation_rate=) are the dilations
        p["dilations"] = p.pop(rates[0])
    for name in ("strides", "dilations"):
        p[name] = _spatial(p.get(name), rank, first)
    s, d, g = stride_dilation_groups(p, rank, "strides dilations groups")
    pad = p.get("padding", "VALID")
    if isinstance(pad, str):
        if pad not in ("SAME", "VALID"):
            raise ValueError(f"tf padding must be 'SAME', 'VALID' or pairs, got {pad!r}")
        spec: object = pad.lower()
    else:
        pairs = [list(pair) for pair in pad]
        if len(pairs) == rank + 2:  # the N + 2 form: drop batch and channels
            outer = (pairs[:2], pairs[2:]) if first else ([pairs[0], pairs[-1]], pairs[1:-1])
            if any(v for pair in outer[0] for v in pair):
                raise ValueError(f"tf padding={pad}: batch and channel pads must be zero")
            pairs = outer[1]
        if any(v < 0 for pair in pairs for v in pair):
            raise ValueError(f"tf padding={pad}: TensorFlow's explicit pads are non-negative")
        spec = pairs
    if op == "conv":
        return conv_from_pads(size, k, s, d, spec, g)
    if p.get("output_shape") is not None and p.get("input_sizes") is not None:
        raise TypeError("tf conv_transpose takes output_shape or input_sizes (conv2d_backprop_input's), "
                        "not both")
    name = "output_shape" if p.get("input_sizes") is None else "input_sizes"
    out = p.get(name)
    if out is None:
        raise TypeError("tf conv_transpose needs output_shape (the spatial sizes or the whole shape)")
    return transpose_of(size, k, s, d, spec, g, output_shape=sizes(name, _spatial(out, rank, first), rank))


def write(c: Conv) -> Translation:
    r = c.rank
    layout = "N" + letters(r) + "C"
    raw = r == 3  # Conv3D's raw op wants N + 2 values
    strides = [1, *c.s, 1] if raw else list(c.s)
    dilations = [1, *c.d, 1] if raw else list(c.d)
    pad = padding(c)
    why = f"the forward conv's pads (before {c.before}) are neither SAME nor VALID" + (
        " and only the 2-d ops take explicit pads" if r != 2 else " and explicit pads are non-negative")
    if c.op == "conv":
        target = f"tf.nn.conv{r}d"
        stride_name = "stride" if r == 1 else "strides"
        if pad is not None:
            kwargs = {stride_name: strides, "padding": pad, "dilations": dilations}
            return answer(target, kwargs, "", "", layout)
        code = (f"y = tf.nn.conv{r}d({_pad_first(c)}, w, {stride_name}={strides}, "
                f"padding='VALID', dilations={dilations})")
        return answer(target, None, code, why, layout)
    target = f"tf.nn.conv{r}d_transpose"
    if c.groups > 1:  # one transposed conv per group, its slice of x's and w's last axis
        one = write(dataclasses.replace(c, groups=1))
        body = f"    return {one.call()}" if one.expressible else \
            "\n".join(f"    {line}" for line in one.workaround.splitlines()) + "\n    return y"
        part = f"i * x.shape[-1] // {c.groups}:(i + 1) * x.shape[-1] // {c.groups}"
        code = (f"def conv_transpose(x, w):\n{body}\n"
                f"y = tf.concat([conv_transpose(x[..., {part}], w[..., {part}]) for i in range({c.groups})], "
                "axis=-1)")
        return answer(target, None, code, "TensorFlow's transposed convs have no groups", layout)
    if pad is not None:
        # TensorFlow takes the whole output shape; the printed call builds it from x and w.
        whole = f"[x.shape[0], {', '.join(map(str, c.n))}, w.shape[-2]]"
        return answer(target, {"output_shape": c.n, "strides": strides, "padding": pad,
                               "dilations": dilations}, "", "", layout, {"output_shape": whole})
    # Sample j of the result is sample j + before of the full output, zero outside it.
    pads = [(max(-b, 0), max(b + ni - f, 0)) for b, ni, f in zip(c.before, c.n, c.full)]
    pad_end = [[0, 0], *[list(p) for p in pads], [0, 0]]
    crop = ", ".join(f"{b + lo}:{b + lo + ni}" for b, ni, (lo, _) in zip(c.before, c.n, pads))
    code = (f"y = tf.nn.conv{r}d_transpose(x, w, output_shape=[x.shape[0], {', '.join(map(str, c.full))}, "
            f"w.shape[-2]], strides={strides}, padding='VALID', dilations={dilations})\n"
            f"y = tf.pad(y, {pad_end})[:, {crop}, :]")
    return answer(target, None, code, why, layout)


# --- explain ------------------------------------------------------------------------------------
def _depthwise_filter(g: ConvGeometry, w: str = "w") -> str:
    """``w`` (*K, 1, C * M) as the depthwise ops' (*K, C, M) (1-D: a unit height first): a reshape,
    as output channel c * M + m reads input channel c."""
    k = [1] * (g.rank == 1) + list(g.kernel)
    return f"tf.reshape({w}, {[*k, g.in_channels, g.out_channels // g.in_channels]})"


def _forward_expr(g: ConvGeometry) -> str:
    """The forward conv of ``g`` as one TensorFlow expression in x and w (depthwise: the depthwise
    op, whose gradients TensorFlow's CPU kernels have; grouped ones they lack)."""
    if _depthwise(g):  # 1-D lifted to 2-D with a unit height
        pad, lift = padding(Conv.of(g)), g.rank == 1
        xin = "x" if pad is not None else _pad_first(Conv.of(g))
        xin = f"tf.expand_dims({xin}, 1)" if lift else xin
        strides = [1, *[1] * lift, *g.stride, 1]
        return (f"tf.nn.depthwise_conv2d({xin}, {_depthwise_filter(g)}, strides={strides}, "
                f"padding={pad or 'VALID'!r}){'[:, 0]' if lift else ''}")
    t = write(Conv.of(g))
    return t.call() if t.expressible else t.workaround.removeprefix("y = ")


def gradient_calls(g: ConvGeometry) -> dict:
    """Both gradients of ``g`` as the raw backprop ops (x padded first where ``padding`` cannot say
    its pads; the depthwise ops for a depthwise conv), GradientTape, and what TensorFlow's CPU
    kernels refuse."""
    c = Conv.of(g)
    pad = padding(c)
    xin = "x" if pad is not None else _pad_first(c)
    _, bp_input, bp_filter = _names(g)
    raw = kwargs_text(_raw(g, pad or "VALID"))
    # 1-D runs as 2-D with a unit height, as tf.nn.conv1d does: x and dy gain axis 1, w axis 0.
    lift, dw = g.rank == 1, _depthwise(g)
    xl, wl, dyl = (f"tf.expand_dims({a}, {i})" if lift else a for a, i in ((xin, 1), ("w", 0), ("dy", 1)))
    wl = _depthwise_filter(g) if dw else wl
    d_x = (f"tf.raw_ops.{bp_input}(input_sizes=tf.shape({xl}), filter={wl}, out_backprop={dyl}, "
           f"{raw}){'[:, 0]' if lift else ''}")
    if pad is None:  # d_x of the padded x: crop its pads, zero-fill what the pad-first cropped
        pairs = list(zip(c.before, c.after))
        kept = [n - max(-b, 0) - max(-a, 0) for (b, a), n in zip(pairs, c.n)]
        crop = ", ".join(f"{max(b, 0)}:{max(b, 0) + k}" for (b, _), k in zip(pairs, kept))
        fill = [[0, 0], *[[max(-b, 0), max(-a, 0)] for b, a in pairs], [0, 0]]
        d_x = f"tf.pad({d_x}[:, {crop}, :], {fill})"
    d_w = f"tf.raw_ops.{bp_filter}(input={xl}, filter_sizes=tf.shape({wl}), out_backprop={dyl}, {raw})"
    d_w = f"tf.reshape({d_w}, tf.shape(w))" if dw else f"{d_w}{'[0]' if lift else ''}"
    limits = gradient_limits(g)
    if any(d > 1 for d in g.rhs_dilation) and any(s > 1 for s in g.stride):
        limits.append("tf.nn.convolution refuses stride > 1 with dilation > 1")
    calls = {"padding": pad, "limitations": limits, "input_grad": d_x, "filter_grad": d_w,
             "autodiff": "with tf.GradientTape() as tape:\n    tape.watch([x, w])\n"
                         f"    y = {_forward_expr(g)}\n"
                         "d_x, d_w = tape.gradient(y, [x, w], output_gradients=dy)"}
    if dw:
        calls["depthwise"] = _forward_expr(g)
    return calls


# --- check and bench: the raw ops ---------------------------------------------------------------
def _raw(g: ConvGeometry, pad: str | list) -> dict:
    """The raw ops' strides, dilations and ``pad`` (``padding``'s value) for ``g``: N + 2 values, 1-D
    lifted to 2-D with a unit height (as tf.nn.conv1d does)."""
    lift = (1,) * (g.rank == 1)
    kw: dict = {"strides": [1, *lift, *g.stride, 1], "dilations": [1, *lift, *g.rhs_dilation, 1]}
    if isinstance(pad, str):
        return {**kw, "padding": pad}
    return {**kw, "padding": "EXPLICIT", "explicit_paddings": [v for pr in pad for v in pr]}


def _depthwise(g: ConvGeometry) -> bool:
    """Whether TensorFlow's depthwise ops (2-D, CPU kernels: equal strides, no dilation) run ``g``:
    one group per input channel, 1-D lifted to 2-D with a unit height."""
    strides = (1,) * (g.rank == 1) + g.stride
    return (g.feature_group_count == g.in_channels > 1 and g.filter_in_channels == 1 and g.rank <= 2
            and all(d == 1 for d in g.rhs_dilation) and len(set(strides)) == 1)


def _names(g: ConvGeometry) -> tuple[str, str, str]:
    """The raw ops of ``g``'s forward and gradients: depthwise, 3-D, or 2-D (1-D lifted)."""
    if _depthwise(g):
        return tuple(f"DepthwiseConv2dNative{s}" for s in ("", "BackpropInput", "BackpropFilter"))
    return ("Conv3D", "Conv3DBackpropInputV2", "Conv3DBackpropFilterV2") if g.rank == 3 else \
        ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")


def raw_calls(g: ConvGeometry, pad: str | list, x: np.ndarray, w: np.ndarray, dy: np.ndarray,
              dtype: object = None) -> tuple[Callable[[], np.ndarray], ...]:
    """The raw forward, input-gradient and filter-gradient ops of ``g`` on channels-last x
    (N, *S, C), w (*K, C/G, O) and dy (N, *out, O), as calls without arguments that return
    channels-last NumPy results (the arrays become tensors once, outside the calls)."""
    tf = _import()
    f, bi, bf = (getattr(tf.raw_ops, n) for n in _names(g))
    kw, lift, depthwise = _raw(g, pad), g.rank == 1, _depthwise(g)

    def const(a: np.ndarray, axis: int) -> Any:
        return tf.constant(np.ascontiguousarray(np.expand_dims(a, axis) if lift else a), dtype)

    def out(t: Any, axis: int) -> np.ndarray:
        a = t.numpy()
        return a.squeeze(axis) if lift else a

    def filt(a: np.ndarray) -> np.ndarray:  # a depthwise filter (*K, 1, C * M) is TensorFlow's (*K, C, M)
        return a.reshape(*a.shape[:-2], g.in_channels, -1) if depthwise else a

    tx, tdy, tw = const(x, 1), const(dy, 1), const(filt(w), 0)
    back = (lambda t: t.numpy().reshape(w.shape)) if depthwise else (lambda t: out(t, 0))
    return (lambda: out(f(input=tx, filter=tw, **kw), 1),
            lambda: out(bi(input_sizes=list(tx.shape), filter=tw, out_backprop=tdy, **kw), 1),
            lambda: back(bf(input=tx, filter_sizes=list(tw.shape), out_backprop=tdy, **kw)))


def routes(p: Problem) -> list[Route]:
    """GradientTape, the raw backprop ops and ``conv_transpose``, in the problem's dtype."""
    from ..testing import not_available

    g, r = p.geom, p.geom.rank
    if r > MAX_RANK:
        return [not_available("d_x", "tf: every route", f"{RANK_LIMIT}, not {r}-D")]
    tf = _import()
    tdt = tf.as_dtype(p.dtype.name)
    pad = padding(Conv.of(g))
    pf = PadFirst(g.padding, 1, pad is None)
    pad = "VALID" if pad is None else pad
    note = "pads not expressible: x padded first (tf.pad / slicing)" if pf.active else ""
    why = "; ".join(gradient_limits(g))
    _, bp_input, bp_filter = _names(g)
    if why:
        return [*(not_available(d, "tf.GradientTape", why) for d in ("d_x", "d_w", "d_b")),
                not_available("d_x", f"tf.raw_ops.{bp_input}", why),
                not_available("d_x", f"tf.nn.conv{r}d_transpose", why),
                not_available("d_w", f"tf.raw_ops.{bp_filter}", why)]

    def c(a: np.ndarray) -> Any:
        return tf.constant(np.ascontiguousarray(a), dtype=tdt)

    def convolution(x: Any, w: Any) -> Any:
        if _depthwise(g):  # TensorFlow's CPU kernels have gradients for the depthwise op only
            lift = r == 1
            k = [1] * lift + list(g.kernel)
            y = tf.nn.depthwise_conv2d(tf.expand_dims(x, 1) if lift else x,
                                       tf.reshape(w, [*k, g.in_channels, g.out_channels // g.in_channels]),
                                       strides=[1, *[1] * lift, *g.stride, 1], padding=pad)
            return y[:, 0] if lift else y
        if isinstance(pad, list):
            return tf.nn.conv2d(x, w, strides=g.stride, dilations=g.rhs_dilation, padding=pad)
        if r == 3:  # tf.nn.convolution leaves Conv3D's data_format unset, which its gradient needs
            return tf.nn.conv3d(x, w, strides=[1, *g.stride, 1], padding=pad, data_format="NDHWC",
                                dilations=[1, *g.rhs_dilation, 1])
        return tf.nn.convolution(x, w, strides=g.stride, padding=pad, dilations=g.rhs_dilation)

    def tape(*arrays: np.ndarray) -> tuple:
        x, w, b, dy = map(c, arrays)
        with tf.GradientTape() as gt:
            gt.watch([x, w, b])
            y = tf.nn.bias_add(convolution(x, w), b)
        return tuple(gt.gradient(y, [x, w, b], output_gradients=dy))

    def raw(i: int) -> Call:
        return lambda x, w, b, dy: raw_calls(g, pad, x, w, dy, tdt)[i]()

    def transpose(x: np.ndarray, w: np.ndarray, b: object, dy: np.ndarray) -> Any:
        return getattr(tf.nn, f"conv{r}d_transpose")(c(dy), c(w), list(x.shape), strides=list(g.stride),
                                                     padding=pad, dilations=list(g.rhs_dilation))

    bp_note = "; ".join(n for n in (note, "1-D run as 2-D with a unit height" if r == 1 else "") if n)
    transposed = [not_available("d_x", f"tf.nn.conv{r}d_transpose", "TensorFlow's transposed convs have no "
                                "groups")] if g.feature_group_count > 1 else \
        call_routes(pf, note, ("d_x", f"tf.nn.conv{r}d_transpose", transpose))
    return refuses_complex([*autodiff_routes(pf, note, "tf.GradientTape", tape),
                            *call_routes(pf, bp_note, ("d_x", f"tf.raw_ops.{bp_input}", raw(1))),
                            *transposed,
                            *call_routes(pf, bp_note, ("d_w", f"tf.raw_ops.{bp_filter}", raw(2)))],
                           "TensorFlow")


# tf.pad's modes: no replicate or circular.
MODES = {"reflect": "REFLECT", "symmetric": "SYMMETRIC"}


def mode_pad(x: str, mode: str, sizes: tuple[int, ...], pads: tuple) -> str:
    """``x`` (N*C) extended by ``mode``: ``tf.pad`` for reflect and symmetric; replicate and
    circular, which tf.pad lacks, as a ``tf.gather`` of each axis's indices (differentiable)."""
    if mode in MODES:
        return f"tf.pad({x}, {[[0, 0], *map(list, pads), [0, 0]]}, mode={MODES[mode]!r})"
    for i, idx in enumerate(mode_indices(mode, sizes, pads)):
        x = f"tf.gather({x}, {idx}, axis={1 + i})"
    return x


def mode_limit(mode: str) -> str:
    if mode not in MODES:
        return (f"tf.pad has no {mode!r} mode (CONSTANT, REFLECT, SYMMETRIC); explain prints a tf.concat "
                "workaround")
    return "TensorFlow's conv ops take no padding mode: tf.pad first (the rows 'on tf.pad')"


def mode_routes(p: Problem) -> list[Route]:
    """The routes above on x extended by ``tf.pad(mode='REFLECT' | 'SYMMETRIC')`` (as an index map),
    their d_x folded back."""
    mode = p.padding_mode
    if mode not in MODES or p.geom.rank > MAX_RANK:
        return []
    tf = _import()

    def pad(a: np.ndarray) -> np.ndarray:
        return tf.pad(tf.constant(a), [list(pair) for pair in p.geom.padding], mode=MODES[mode]).numpy()

    mp = ModePad.build(pad, p.geom.in_spatial, 2 if p.fmt == "channels_first" else 1)
    return on_padded(p, mp, routes(padded_problem(p, mp)), f"tf.pad(x, mode={MODES[mode]!r})")


def front_routes(p: Problem) -> list[Route]:
    """The same calls through ``convgrad.tf`` (its 2-D ops)."""
    from ..tf import nn

    g = p.geom
    if g.rank != 2:
        return []
    pad = padding(Conv.of(g))
    pf = PadFirst(g.padding, 1, pad is None)
    kw = {"strides": [1, *g.stride, 1], "padding": pad or "VALID", "dilations": [1, *g.rhs_dilation, 1]}
    return refuses_complex(call_routes(
        pf, "pads not expressible: x padded first" if pf.active else "",
        ("d_x", "convgrad.tf nn.conv2d_backprop_input",
         lambda x, w, b, dy: nn.conv2d_backprop_input(list(x.shape), w, dy, **kw)),
        ("d_x", "convgrad.tf nn.conv2d_transpose",
         lambda x, w, b, dy: nn.conv2d_transpose(dy, w, list(x.shape), **kw)),
        ("d_w", "convgrad.tf nn.conv2d_backprop_filter",
         lambda x, w, b, dy: nn.conv2d_backprop_filter(x, list(w.shape), dy, **kw))), "convgrad.tf")


# --- bench --------------------------------------------------------------------------------------
def contestants(g: ConvGeometry, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> dict[str, list]:
    """{op: [('tf', fn)]} for the benchmark: the raw ops in NHWC, where TensorFlow has CPU kernels
    for ``g`` (no grouped ones but the depthwise ones; explicit pads in 2-D only). x, w and dy are
    channels-first; each fn returns a channels-first NumPy result."""
    pad = padding(Conv.of(g))
    if (g.feature_group_count != 1 and not _depthwise(g)) or g.rank > MAX_RANK or pad is None:
        return {"forward": [], "input_grad": [], "filter_grad": []}
    f, bi, bf = raw_calls(g, pad, np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2)),
                          np.moveaxis(dy, 1, -1))
    return {"forward": [("tf", lambda: np.moveaxis(f(), -1, 1))],
            "input_grad": [("tf", lambda: np.moveaxis(bi(), -1, 1))],
            "filter_grad": [("tf", lambda: np.moveaxis(bf(), (-1, -2), (0, 1)))]}
