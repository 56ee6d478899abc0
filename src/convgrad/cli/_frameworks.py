"""Each framework's own gradients, as routes for ``convgrad check``.

A framework is imported only when selected, so ``convgrad check`` stays fast by default. What a
framework cannot express is a route with ``compute=None`` and the reason; where it can express it
with a standard workaround (padding x first, a unit dimension for 1-D), the route says so in its
note. Each framework works in its own layout (channels-first for PyTorch, JAX and ONNX,
channels-last for TensorFlow); results come back in the user's layout.

The pad-first workaround: a conv of x with pads (before, after) is a VALID conv of
``pad_or_crop(x, pads)``, so its input gradient is the VALID conv's input gradient (for the padded
size) cropped back: ``pad_or_crop(dx_padded, -pads)``, the adjoint of padding.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable

import numpy as np

from . import _conventions
from ._routes import Problem, Route, not_available, pad_or_crop, zero_insert

FRAMEWORKS = ("torch", "tf", "jax", "onnx", "scipy")
MODULES = {"torch": ("torch",), "tf": ("tensorflow",), "jax": ("jax",),
           "onnx": ("onnx", "onnxruntime"), "scipy": ("scipy",)}
PIP_NAMES = {"torch": "torch", "tf": "tensorflow", "jax": "jax", "onnx": "onnx onnxruntime",
             "scipy": "scipy"}
# Checked by default: cheap to import. TensorFlow, JAX and ONNX when --frameworks asks.
DEFAULT = ("torch", "scipy")
# onnxruntime has no float64 Conv/ConvTranspose kernels on CPU: it runs in float32, held to
# float32's tolerance.
ONNX_FLOAT64_RTOL = 1e-4
# The SciPy loops make one N-d correlation per (batch, in channel, out channel) triple.
SCIPY_MAX_PAIRS = 4096


def installed(name: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in MODULES[name])


def parse_frameworks(text: str) -> tuple[str, ...]:
    """'torch,tf' -> ('torch', 'tf'); 'all' -> every one; 'none' or '' -> ()."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    aliases = {"tensorflow": "tf", "pytorch": "torch", "onnxruntime": "onnx", "ort": "onnx"}
    names = [aliases.get(n, n) for n in names]
    if names in (["none"], []):
        return ()
    if names == ["all"]:
        return FRAMEWORKS
    bad = [n for n in names if n not in FRAMEWORKS]
    if bad:
        raise ValueError(f"unknown framework(s) {bad}; choose from {', '.join(FRAMEWORKS)}, all, none")
    return tuple(dict.fromkeys(names))


def framework_routes(name: str, p: Problem) -> list[Route]:
    if not installed(name):
        return [not_available("d_x", f"{name}: every route",
                              f"not installed (pip install {PIP_NAMES[name]})")]
    make = {"torch": _torch, "tf": _tf, "jax": _jax, "onnx": _onnx, "scipy": _scipy}[name]
    try:
        return make(p)
    except Exception as e:  # an installed but broken framework is reported, not a traceback
        first = (str(e).strip().splitlines() or [""])[0][:160]
        return [not_available("d_x", f"{name}: every route", f"failed to load: {type(e).__name__}: {first}")]


def _once(fn: Callable[[Problem], tuple]) -> Callable[[Problem], tuple]:
    """One autodiff call gives d_x, d_w and d_b: compute it once for the three routes."""
    cache: dict[str, tuple] = {}

    def run(p: Problem) -> tuple:
        if "v" not in cache:
            cache["v"] = fn(p)
        return cache["v"]

    return run


def _negated(pairs: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    return [(-lo, -hi) for lo, hi in pairs]


# --- PyTorch ------------------------------------------------------------------------------------
def _torch(p: Problem) -> list[Route]:
    g, r = p.geom, p.geom.rank
    if r > 3:
        return [not_available("d_x", "torch: every route",
                              f"PyTorch has conv1d/2d/3d only, not {r}-D (workaround: convgrad)")]
    import torch
    import torch.nn.functional as F

    tdt = getattr(torch, p.args.dtype.name)
    G = g.feature_group_count
    sym = _conventions.symmetric_pads(g)
    symmetric = sym is not None
    pad = sym if sym is not None else 0
    kw = {"stride": g.stride, "padding": pad, "dilation": g.rhs_dilation, "groups": G}
    fpad = _conventions.torch_pad_list(g.padding)
    note = "" if symmetric else "asymmetric/negative pads: x padded first (F.pad)"
    conv = getattr(F, f"conv{r}d")
    grad_input = getattr(torch.nn.grad, f"conv{r}d_input")
    grad_weight = getattr(torch.nn.grad, f"conv{r}d_weight")
    transpose = getattr(F, f"conv_transpose{r}d")

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(tdt)

    def padded_x(q: Problem) -> np.ndarray:
        return q.cf("x") if symmetric else pad_or_crop(q.cf("x"), g.padding, 2)

    def crop_back(q: Problem, dx: torch.Tensor) -> np.ndarray:
        a = dx.detach().numpy()
        return q.from_cf("x", a if symmetric else pad_or_crop(a, _negated(g.padding), 2))

    @_once
    def autograd(q: Problem) -> tuple:
        x, w, b = (t(q.cf(n)).requires_grad_() for n in ("x", "w", "b"))
        y = conv(x if symmetric else F.pad(x, fpad), w, b, **kw)
        y.backward(t(q.cf("dy")))
        return (q.from_cf("x", x.grad.numpy()), q.from_cf("w", w.grad.numpy()), b.grad.numpy())

    def backprop_input(q: Problem) -> np.ndarray:
        xp = padded_x(q)
        return crop_back(q, grad_input(xp.shape, t(q.cf("w")), t(q.cf("dy")), **kw))

    def backprop_weight(q: Problem) -> np.ndarray:
        dw = grad_weight(t(padded_x(q)), q.cf("w").shape, t(q.cf("dy")), **kw)
        return q.from_cf("w", dw.numpy())

    def conv_transpose(q: Problem) -> np.ndarray:
        # Output size (o - 1) * s - 2 * pad + k_eff + output_padding: output_padding restores the
        # samples past the last window (fewer than the stride).
        out_pad = _conventions.leftover(g)
        dx = transpose(t(q.cf("dy")), t(q.cf("w")), stride=g.stride, padding=pad,
                       output_padding=out_pad, groups=G, dilation=g.rhs_dilation)
        return crop_back(q, dx)

    return [
        Route("d_x", "torch autograd", lambda q: autograd(q)[0], note),
        Route("d_x", f"torch.nn.grad.conv{r}d_input", backprop_input, note),
        Route("d_x", f"torch conv_transpose{r}d", conv_transpose, note),
        Route("d_w", "torch autograd", lambda q: autograd(q)[1], note),
        Route("d_w", f"torch.nn.grad.conv{r}d_weight", backprop_weight, note),
        Route("d_b", "torch autograd", lambda q: autograd(q)[2]),
    ]


# --- TensorFlow ---------------------------------------------------------------------------------
def _tf(p: Problem) -> list[Route]:
    g, r = p.geom, p.geom.rank
    if r > 3:
        return [not_available("d_x", "tf: every route",
                              f"TensorFlow convolves 1-, 2- and 3-D only, not {r}-D")]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tdt = tf.as_dtype(p.args.dtype.name)
    G = g.feature_group_count
    tf_pad = _conventions.tf_padding(g)
    string = tf_pad if isinstance(tf_pad, str) else None
    explicit = isinstance(tf_pad, list)
    prepad = tf_pad is None
    note = "pads not expressible: x padded first (tf.pad / slicing)" if prepad else ""

    def c(a: np.ndarray) -> tf.Tensor:
        return tf.constant(np.ascontiguousarray(a), dtype=tdt)

    def padded_x(q: Problem) -> np.ndarray:
        return pad_or_crop(q.cl("x"), g.padding, 1) if prepad else q.cl("x")

    def crop_back(q: Problem, dx: np.ndarray) -> np.ndarray:
        return q.from_cl("x", pad_or_crop(dx, _negated(g.padding), 1) if prepad else dx)

    why = None
    if G > 1:
        why = "TensorFlow has no CPU gradient kernels for grouped convolutions"
    elif any(d > 1 for d in g.rhs_dilation):
        why = "TensorFlow's CPU gradient kernels do not support dilation > 1"

    def convolution(x: tf.Tensor, w: tf.Tensor, padding: object) -> tf.Tensor:
        if r == 3:  # tf.nn.convolution leaves Conv3D's data_format unset, which its gradient needs
            return tf.nn.conv3d(x, w, strides=[1, *g.stride, 1], padding=padding, data_format="NDHWC",
                                dilations=[1, *g.rhs_dilation, 1])
        return tf.nn.convolution(x, w, strides=g.stride, padding=padding, dilations=g.rhs_dilation)

    @_once
    def tape(q: Problem) -> tuple:
        x, w, b = (c(q.cl(n)) for n in ("x", "w", "b"))
        with tf.GradientTape() as gt:
            gt.watch([x, w, b])
            if prepad:
                xin = tf.pad(x, [[0, 0], *([max(lo, 0), max(hi, 0)] for lo, hi in g.padding), [0, 0]])
                xin = xin[(slice(None), *(slice(max(-lo, 0), n - max(-hi, 0)) for (lo, hi), n in
                                          zip(g.padding, xin.shape[1:-1])), slice(None))]
                y = convolution(xin, w, "VALID")
            elif explicit:
                y = tf.nn.conv2d(x, w, strides=g.stride, dilations=g.rhs_dilation,
                                 padding=[[0, 0], *([lo, hi] for lo, hi in g.padding), [0, 0]])
            else:
                y = convolution(x, w, string)
            y = tf.nn.bias_add(y, b)
        dx, dw, db = gt.gradient(y, [x, w, b], output_gradients=c(q.cl("dy")))
        return q.from_cl("x", dx.numpy()), q.from_cl("w", dw.numpy()), db.numpy()

    routes = []
    if why:
        routes += [not_available(d, "tf.GradientTape", why) for d in ("d_x", "d_w", "d_b")]
    else:
        routes += [Route("d_x", "tf.GradientTape", lambda q: tape(q)[0], note),
                   Route("d_w", "tf.GradientTape", lambda q: tape(q)[1], note),
                   Route("d_b", "tf.GradientTape", lambda q: tape(q)[2])]

    # The backprop kernels: 2-D (1-D lifted to 2-D, as tf.nn.conv1d does) and 3-D.
    r2 = max(r, 2)
    bp_input = "Conv2DBackpropInput" if r2 == 2 else "Conv3DBackpropInputV2"
    bp_filter = "Conv2DBackpropFilter" if r2 == 2 else "Conv3DBackpropFilterV2"
    lift = r == 1
    bp_note = "; ".join(n for n in (note, "1-D run as 2-D with a unit height" if lift else "") if n)

    def raw(q: Problem) -> dict:
        def up(a: np.ndarray, w: bool = False) -> np.ndarray:
            return (a[None] if w else a[:, None]) if lift else a

        strides = [1, *(1,) * lift, *g.stride, 1]
        dil = [1, *(1,) * lift, *g.rhs_dilation, 1]
        pads = [(0, 0)] * lift + list(g.padding)
        kw: dict = {"strides": strides, "dilations": dil}
        if prepad:
            kw["padding"] = "VALID"
        elif explicit:
            kw["padding"] = "EXPLICIT"
            kw["explicit_paddings"] = [0, 0, *(v for pr in pads for v in pr), 0, 0]
        else:
            kw["padding"] = string
        return {"up": up, "kw": kw}

    def backprop_input(q: Problem) -> np.ndarray:
        h = raw(q)
        xp = h["up"](padded_x(q))
        dx = getattr(tf.raw_ops, bp_input)(input_sizes=list(xp.shape), filter=c(h["up"](q.cl("w"), True)),
                                           out_backprop=c(h["up"](q.cl("dy"))), **h["kw"]).numpy()
        return crop_back(q, dx[:, 0] if lift else dx)

    def backprop_filter(q: Problem) -> np.ndarray:
        h = raw(q)
        w = h["up"](q.cl("w"), True)
        dw = getattr(tf.raw_ops, bp_filter)(input=c(h["up"](padded_x(q))), filter_sizes=list(w.shape),
                                            out_backprop=c(h["up"](q.cl("dy"))), **h["kw"]).numpy()
        return q.from_cl("w", dw[0] if lift else dw)

    def conv_transpose(q: Problem) -> np.ndarray:
        xp = padded_x(q)
        fn = {1: tf.nn.conv1d_transpose, 2: tf.nn.conv2d_transpose, 3: tf.nn.conv3d_transpose}[r]
        pad = ("VALID" if prepad else string if string else
               [[0, 0], *([lo, hi] for lo, hi in g.padding), [0, 0]])
        dx = fn(c(q.cl("dy")), c(q.cl("w")), list(xp.shape), strides=list(g.stride), padding=pad,
                dilations=list(g.rhs_dilation)).numpy()
        return crop_back(q, dx)

    if why:
        routes += [not_available("d_x", f"tf.raw_ops.{bp_input}", why),
                   not_available("d_x", f"tf.nn.conv{r}d_transpose", why),
                   not_available("d_w", f"tf.raw_ops.{bp_filter}", why)]
    else:
        routes += [Route("d_x", f"tf.raw_ops.{bp_input}", backprop_input, bp_note),
                   Route("d_x", f"tf.nn.conv{r}d_transpose", conv_transpose, note),
                   Route("d_w", f"tf.raw_ops.{bp_filter}", backprop_filter, bp_note)]
    return routes


# --- JAX ----------------------------------------------------------------------------------------
def _jax(p: Problem) -> list[Route]:
    import jax
    from jax import lax

    g = p.geom
    G, r = g.feature_group_count, g.rank

    def conv(x: object, w: object) -> object:
        # Default dimension numbers: channels-first (N, C, *S), (O, I, *K), any rank.
        return lax.conv_general_dilated(x, w, window_strides=g.stride, padding=list(g.padding),
                                        rhs_dilation=g.rhs_dilation, feature_group_count=G)

    def f(x: object, w: object, b: object) -> object:
        return conv(x, w) + b.reshape((-1,) + (1,) * r)

    @_once
    def vjp(q: Problem) -> tuple:
        with jax.enable_x64(True):
            _, pull = jax.vjp(f, q.cf("x"), q.cf("w"), q.b)
            dx, dw, db = pull(q.cf("dy"))
            return q.from_cf("x", np.asarray(dx)), q.from_cf("w", np.asarray(dw)), np.asarray(db)

    def linear_transpose(q: Problem, which: str) -> np.ndarray:
        with jax.enable_x64(True):
            x, w = q.cf("x"), q.cf("w")
            if which == "x":
                fn, arg = (lambda a: conv(a, w)), x
            else:
                fn, arg = (lambda a: conv(x, a)), w
            (out,) = jax.linear_transpose(fn, jax.ShapeDtypeStruct(arg.shape, arg.dtype))(q.cf("dy"))
            return q.from_cf(which, np.asarray(out))

    return [
        Route("d_x", "jax.vjp(lax.conv_general_dilated)", lambda q: vjp(q)[0]),
        Route("d_x", "jax.linear_transpose(conv in x)", lambda q: linear_transpose(q, "x")),
        Route("d_w", "jax.vjp(lax.conv_general_dilated)", lambda q: vjp(q)[1]),
        Route("d_w", "jax.linear_transpose(conv in w)", lambda q: linear_transpose(q, "w")),
        Route("d_b", "jax.vjp(lax.conv_general_dilated)", lambda q: vjp(q)[2]),
    ]


# --- ONNX ---------------------------------------------------------------------------------------
def _onnx(p: Problem) -> list[Route]:
    import onnx
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    g, r = p.geom, p.geom.rank
    G = g.feature_group_count
    dt = p.args.dtype
    ort_dt = np.dtype(np.float32) if dt == np.float64 else dt
    ort_note = "run in float32: onnxruntime has no float64 Conv kernels" if dt == np.float64 else ""
    ort_rtol = ONNX_FLOAT64_RTOL if dt == np.float64 else None
    native = _conventions.onnx_pads(g.padding) is not None
    pre_note = "" if native else "negative pads: ONNX pads must be >= 0, x cropped first"

    def model(nodes: list, feeds: dict[str, np.ndarray], out_shape: tuple[int, ...]) -> bytes:
        tp = {np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.float32): TensorProto.FLOAT,
              np.dtype(np.float16): TensorProto.FLOAT16}[next(iter(feeds.values())).dtype]
        graph = helper.make_graph(nodes, "convgrad_check",
                                  [helper.make_tensor_value_info(n, tp, a.shape) for n, a in feeds.items()],
                                  [helper.make_tensor_value_info("Y", tp, out_shape)])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m.SerializeToString()

    # d_x: ConvTranspose of dy with w (ONNX's W is (C_in, C_out/group, *K): the forward's w).
    n_pad = [n + lo + hi for n, (lo, hi) in zip(g.in_spatial, g.padding)]
    pads = _conventions.onnx_pads(g.padding) if native else [0] * 2 * r
    out_pad = list(_conventions.leftover(g))

    def transpose(group: int) -> object:
        return helper.make_node("ConvTranspose", ["X", "W"], ["Y"], strides=list(g.stride),
                                dilations=list(g.rhs_dilation), group=group, pads=pads,
                                output_padding=out_pad)

    def run_transpose(q: Problem, evaluate: Callable, np_dt: np.dtype, per_group: bool) -> np.ndarray:
        dy, w = q.cf("dy").astype(np_dt), q.cf("w").astype(np_dt)
        if per_group:
            og, cg = g.out_channels // G, g.filter_in_channels
            parts = [{"X": dy[:, i * og:(i + 1) * og], "W": w[i * og:(i + 1) * og]} for i in range(G)]
            dx = np.concatenate([evaluate(model([transpose(1)], f, (g.batch, cg, *n_pad)), f)
                                 for f in parts], axis=1)
        else:
            feeds = {"X": dy, "W": w}
            dx = evaluate(model([transpose(G)], feeds, (g.batch, g.in_channels, *n_pad)), feeds)
        if not native:
            dx = pad_or_crop(dx, _negated(g.padding), 2)
        return q.from_cf("x", dx)

    # d_w: ONNX has no filter-gradient op; the transposed-layout Conv, one per group.
    fg = g.filter_grad_padding
    native_w = _conventions.onnx_pads(fg) is not None
    conv_nodes = [
        helper.make_node("Transpose", ["X"], ["XT"], perm=[1, 0, *range(2, r + 2)]),
        helper.make_node("Transpose", ["DY"], ["DYT"], perm=[1, 0, *range(2, r + 2)]),
        helper.make_node("Conv", ["XT", "DYT"], ["YT"], strides=list(g.rhs_dilation),
                         dilations=list(g.stride),
                         pads=_conventions.onnx_pads(fg) if native_w else [0] * 2 * r),
        helper.make_node("Transpose", ["YT"], ["Y"], perm=[1, 0, *range(2, r + 2)]),
    ]

    def run_filter(q: Problem, evaluate: Callable, np_dt: np.dtype) -> np.ndarray:
        x = q.cf("x") if native_w else pad_or_crop(q.cf("x"), fg, 2)
        dy = q.cf("dy")
        cg, og = g.filter_in_channels, g.out_channels // G
        blocks = []
        for i in range(G):
            feeds = {"X": x[:, i * cg:(i + 1) * cg].astype(np_dt),
                     "DY": dy[:, i * og:(i + 1) * og].astype(np_dt)}
            blocks.append(evaluate(model(conv_nodes, feeds, (og, cg, *g.kernel)), feeds))
        return q.from_cf("w", np.concatenate(blocks, axis=0))

    def ort(m: bytes, feeds: dict) -> np.ndarray:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.log_severity_level = 3
        sess = onnxruntime.InferenceSession(m, opts, providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)[0]

    def reference(m: bytes, feeds: dict) -> np.ndarray:
        return ReferenceEvaluator(onnx.load_from_string(m)).run(None, feeds)[0]

    # onnx.reference's ConvTranspose breaks on group > 1 (a broadcasting error): one call per group.
    ref_note = f"one ConvTranspose per group ({G}): onnx.reference mishandles group > 1" if G > 1 else ""
    w_note = "ONNX has no filter-gradient op: Conv of x with dy as the kernel, batch <-> channels"
    if G > 1:
        w_note += f", one per group ({G})"
    return [
        Route("d_x", "onnxruntime ConvTranspose", lambda q: run_transpose(q, ort, ort_dt, False),
              "; ".join(n for n in (pre_note, ort_note) if n), ort_rtol, str(ort_dt)),
        Route("d_x", "onnx.reference ConvTranspose", lambda q: run_transpose(q, reference, dt, G > 1),
              "; ".join(n for n in (pre_note, ref_note) if n)),
        Route("d_w", "onnxruntime Conv (transposed layouts)", lambda q: run_filter(q, ort, ort_dt),
              "; ".join(n for n in (w_note, ort_note) if n), ort_rtol, str(ort_dt)),
        Route("d_w", "onnx.reference Conv (transposed layouts)", lambda q: run_filter(q, reference, dt),
              w_note),
    ]


# --- SciPy --------------------------------------------------------------------------------------
def _scipy(p: Problem) -> list[Route]:
    import scipy.signal

    g = p.geom
    cg, og = g.filter_in_channels, g.out_channels // g.feature_group_count
    pairs = g.batch * g.in_channels * og
    if pairs > SCIPY_MAX_PAIRS:
        why = f"{pairs} (batch, channel, filter) loops > {SCIPY_MAX_PAIRS}; too slow to be useful"
        return [not_available("d_x", "scipy.signal.convolve", why),
                not_available("d_w", "scipy.signal.correlate", why)]

    # SciPy has no float16 kernels: float16 runs in float32.
    up = np.float32 if p.args.dtype == np.float16 else None

    def cf(q: Problem, name: str) -> np.ndarray:
        return q.cf(name) if up is None else q.cf(name).astype(up)

    def w_dilated(q: Problem) -> np.ndarray:
        return zero_insert(cf(q, "w"), g.rhs_dilation, 2)

    def dx(q: Problem) -> np.ndarray:
        # d_x[n, c] = full convolution of the zero-inserted dy[n, o] with w[o, c], read from
        # the padded position `before` on (positions cropped away by negative pads get none).
        dy = zero_insert(cf(q, "dy"), g.stride, 2)
        w = w_dilated(q)
        full_len = [a + b - 1 for a, b in zip(dy.shape[2:], w.shape[2:])]
        out = np.zeros(q.cf("x").shape, dtype=np.result_type(dy, w))
        for n in range(g.batch):
            for c in range(g.in_channels):
                grp, cl = divmod(c, cg)
                full = sum(scipy.signal.convolve(dy[n, grp * og + j], w[grp * og + j, cl], "full",
                                                 method="direct") for j in range(og))
                out[n, c] = pad_or_crop(np.asarray(full)[None], [
                    (-lo, n_x + lo - f) for (lo, _), n_x, f in zip(g.padding, g.in_spatial, full_len)
                ], 1)[0]
        return q.from_cf("x", out.astype(q.x.dtype))

    def dw(q: Problem) -> np.ndarray:
        # d_w[o, c, t] = sum_n valid correlation of the padded x[n, c] with the zero-inserted
        # dy[n, o], read every `dilation` samples.
        x = pad_or_crop(cf(q, "x"), g.padding, 2)
        dy = zero_insert(cf(q, "dy"), g.stride, 2)
        out = np.zeros(q.cf("w").shape, dtype=np.result_type(x, dy))
        take = tuple(slice(0, (k - 1) * d + 1, d) for k, d in zip(g.kernel, g.rhs_dilation))
        for o in range(g.out_channels):
            grp = o // og
            for cl in range(cg):
                c = grp * cg + cl
                out[o, cl] = sum(scipy.signal.correlate(x[n, c], dy[n, o], "valid", method="direct")[take]
                                 for n in range(g.batch))
        return q.from_cf("w", out.astype(q.w.dtype))

    note = "zero-inserted dy, a loop over channels" + ("; run in float32" if up else "")
    return [Route("d_x", "scipy.signal.convolve(dy, w, 'full')", dx, note),
            Route("d_w", "scipy.signal.correlate(x, dy, 'valid')", dw, note)]


# --- convgrad's own framework fronts -------------------------------------------------------------
def front_routes(p: Problem) -> list[Route]:
    """The same calls through convgrad's fronts (``convgrad.torch``, ``convgrad.tf``,
    ``convgrad.jax``), where those modules exist: each framework's convention, answered by
    convgrad. A front that is missing is left out; one that fails is an error row."""
    routes: list[Route] = []
    for name, make in (("torch", _torch_front), ("tf", _tf_front), ("jax", _jax_front)):
        if importlib.util.find_spec(f"convgrad.{name}") is None:
            continue
        try:
            routes += make(p)
        except ImportError:
            continue
    return routes


def _torch_front(p: Problem) -> list[Route]:
    g, r = p.geom, p.geom.rank
    if r > 3:
        return []
    from convgrad.torch import nn

    sym = _conventions.symmetric_pads(g)
    kw = {"stride": g.stride, "padding": sym if sym is not None else 0, "dilation": g.rhs_dilation,
          "groups": g.feature_group_count}
    note = "" if sym is not None else "asymmetric/negative pads: x padded first"

    def x_in(q: Problem) -> np.ndarray:
        return q.cf("x") if sym is not None else pad_or_crop(q.cf("x"), g.padding, 2)

    def back(q: Problem, dx: np.ndarray) -> np.ndarray:
        return q.from_cf("x", dx if sym is not None else pad_or_crop(dx, _negated(g.padding), 2))

    @_once
    def vjp(q: Problem) -> tuple:
        _, pull = getattr(nn.functional, f"conv{r}d").vjp(x_in(q), q.cf("w"), q.b, **kw)
        dx, dw, db = pull(q.cf("dy"))
        return back(q, dx), q.from_cf("w", dw), db

    def input_grad(q: Problem) -> np.ndarray:
        return back(q, getattr(nn.grad, f"conv{r}d_input")(x_in(q).shape, q.cf("w"), q.cf("dy"), **kw))

    def weight_grad(q: Problem) -> np.ndarray:
        dw = getattr(nn.grad, f"conv{r}d_weight")(x_in(q), q.cf("w").shape, q.cf("dy"), **kw)
        return q.from_cf("w", dw)

    def transpose(q: Problem) -> np.ndarray:
        dx = getattr(nn.functional, f"conv_transpose{r}d")(
            q.cf("dy"), q.cf("w"), stride=g.stride, padding=kw["padding"],
            output_padding=_conventions.leftover(g), groups=g.feature_group_count, dilation=g.rhs_dilation)
        return back(q, dx)

    return [
        Route("d_x", f"convgrad.torch conv{r}d.vjp", lambda q: vjp(q)[0], note),
        Route("d_x", f"convgrad.torch nn.grad.conv{r}d_input", input_grad, note),
        Route("d_x", f"convgrad.torch conv_transpose{r}d", transpose, note),
        Route("d_w", f"convgrad.torch conv{r}d.vjp", lambda q: vjp(q)[1], note),
        Route("d_w", f"convgrad.torch nn.grad.conv{r}d_weight", weight_grad, note),
        Route("d_b", f"convgrad.torch conv{r}d.vjp", lambda q: vjp(q)[2]),
    ]


def _tf_front(p: Problem) -> list[Route]:
    g, r = p.geom, p.geom.rank
    if r != 2:
        return []
    from convgrad.tf import nn

    pad = _conventions.tf_padding(g)
    prepad = pad is None
    padding = "VALID" if prepad else pad
    strides, dil = [1, *g.stride, 1], [1, *g.rhs_dilation, 1]
    note = "pads not expressible: x padded first" if prepad else ""

    def x_in(q: Problem) -> np.ndarray:
        return pad_or_crop(q.cl("x"), g.padding, 1) if prepad else q.cl("x")

    def back(q: Problem, dx: np.ndarray) -> np.ndarray:
        return q.from_cl("x", pad_or_crop(dx, _negated(g.padding), 1) if prepad else dx)

    def input_grad(q: Problem) -> np.ndarray:
        return back(q, nn.conv2d_backprop_input(list(x_in(q).shape), q.cl("w"), q.cl("dy"), strides, padding,
                                                dilations=dil))

    def filter_grad(q: Problem) -> np.ndarray:
        return q.from_cl("w", nn.conv2d_backprop_filter(x_in(q), list(q.cl("w").shape), q.cl("dy"), strides,
                                                        padding, dilations=dil))

    def transpose(q: Problem) -> np.ndarray:
        return back(q, nn.conv2d_transpose(q.cl("dy"), q.cl("w"), list(x_in(q).shape), strides, padding,
                                           dilations=dil))

    return [
        Route("d_x", "convgrad.tf nn.conv2d_backprop_input", input_grad, note),
        Route("d_x", "convgrad.tf nn.conv2d_transpose", transpose, note),
        Route("d_w", "convgrad.tf nn.conv2d_backprop_filter", filter_grad, note),
    ]


def _jax_front(p: Problem) -> list[Route]:
    from convgrad.jax import lax

    g = p.geom

    @_once
    def vjp(q: Problem) -> tuple:
        _, pull = lax.conv_general_dilated.vjp(q.cf("x"), q.cf("w"), g.stride, list(g.padding),
                                               rhs_dilation=g.rhs_dilation,
                                               feature_group_count=g.feature_group_count)
        dx, dw = pull(q.cf("dy"))[:2]
        return q.from_cf("x", dx), q.from_cf("w", dw)

    return [Route("d_x", "convgrad.jax lax.conv_general_dilated.vjp", lambda q: vjp(q)[0]),
            Route("d_w", "convgrad.jax lax.conv_general_dilated.vjp", lambda q: vjp(q)[1])]
