"""``check`` and ``explain`` for ``convgrad.conv_general``: input dilation (``--lhs-dilation``) and
batch groups (``--batch-groups``), JAX's ``lax.conv_general_dilated`` model.

``check`` compares ``conv_general_vjp`` (each gradient the transposed conv of ``_transpose``) with
routes that share none of its rules: the reduced conv written out in NumPy and differentiated by
``conv_vjp``, ``jax.vjp`` of ``lax.conv_general_dilated``, PyTorch's autograd through the zero
insertion and batch reshape, the ``convgrad.jax`` front, bilinear finite differences and the dot
test. ``explain`` prints the JAX and PyTorch calls, executable, and what the others lack.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .._frameworks._common import letters, pairs_text, tuple_text
from .._general import conv_general, conv_general_vjp, reduced_geometry
from .._ops import conv_vjp
from ..testing import CheckReport, Problem, Route, Row, compare, not_available

if TYPE_CHECKING:
    from .._geometry import ConvGeometry
    from ._args import GeometryArgs

CF = "channels_first"
# Frameworks with no conv that takes input dilation or batch groups: what they need instead.
LIMITS = {
    "tf": "tf.nn.conv2d / tf.nn.convolution take no input dilation and no batch groups: zero-insert x "
    "(lhs_dilation - 1 zeros between samples) and tf.pad it (negative pads: slice), then a VALID conv, as "
    "the PyTorch lines do; batch groups: reshape the batch blocks into channel groups (groups=B). With "
    "stride 1, input dilation D is tf.nn.conv2d_transpose(strides=D) of the kernel flipped in space, "
    "in/out swapped, whose pads are k_eff - 1 - these pads",
    "onnx": "ONNX Conv has no input dilation or batch groups: with stride 1, ConvTranspose(strides=D) of "
    "the kernel flipped in space, in/out swapped (pads k_eff - 1 - these pads); else zero-insert x "
    "(Reshape/Concat with zeros) before Conv",
    "scipy": "scipy.signal correlates one plane with one kernel: no channels, groups or input dilation",
}


def conv_general_kwargs(g: ConvGeometry, fmt: str) -> dict:
    """The keywords of ``convgrad.conv_general`` that give ``g`` (pads explicit)."""
    return {"stride": g.stride, "padding": list(g.padding), "lhs_dilation": g.lhs_dilation,
            "rhs_dilation": g.rhs_dilation, "feature_group_count": g.feature_group_count,
            "batch_group_count": g.batch_group_count, "data_format": fmt}


# --- check ----------------------------------------------------------------------------------------
def check(args: GeometryArgs, problem: Problem, selected: tuple[str, ...], rtol: float) -> CheckReport:
    """Every route's d_x and d_w against ``conv_general_vjp``'s, then finite differences and the
    dot test. ``problem``: x, w, dy of ``args.geometry`` in its layout (no bias)."""
    g, fmt, p = args.geometry, args.data_format, problem
    kw = conv_general_kwargs(g, fmt)
    report = CheckReport(p, rtol)
    _, vjp = conv_general_vjp(p.x, p.w, **kw)
    report.refs = dict(zip(("d_x", "d_w"), vjp(p.dy)))
    for gradient, ref in report.refs.items():
        report.rows.append(Row(gradient, "conv_general_vjp (reference)", "reference", rtol=rtol,
                               note=f"shape {ref.shape}"))
    routes = _routes(g, fmt, selected)
    for gradient in ("d_x", "d_w"):
        for route in routes:
            if route.gradient != gradient:
                continue
            if route.compute is None:
                report.rows.append(Row(gradient, route.method, "n/a", note=route.note))
                continue
            try:
                value = route.compute(p)
            except Exception as e:  # a broken route is a row, never a traceback
                first = (str(e).strip().splitlines() or [""])[0]
                report.rows.append(Row(gradient, route.method, "error", rtol=rtol,
                                       note=f"{type(e).__name__}: {first[:160]}"))
                continue
            report.rows.append(compare(route, value, report.refs[gradient], rtol))
    report.rows += _finite_differences(p, kw, report.refs, rtol) + _dot_test(p, kw, rtol)
    order = ("d_x", "d_w", "finite differences", "dot test")
    report.rows.sort(key=lambda r: order.index(r.gradient))  # stable: each reference first
    return report


def _routes(g: ConvGeometry, fmt: str, selected: tuple[str, ...]) -> list[Route]:
    both = ("d_x", "d_w")

    def pair(method: str, fn: object, note: str = "") -> list[Route]:
        cache: dict[int, tuple] = {}

        def part(i: int) -> object:
            def compute(q: Problem) -> np.ndarray:
                if id(q) not in cache:
                    cache[id(q)] = fn(q)
                return cache[id(q)][i]
            return compute

        return [Route(gr, method, part(i), note) for i, gr in enumerate(both)]

    routes = pair("NumPy: x zero-inserted, batch blocks as groups; conv_vjp of that plain conv",
                  lambda q: _reduced_vjp(g, fmt, q))
    routes += pair("convgrad.jax lax.conv_general_dilated.vjp", lambda q: _front_vjp(g, fmt, q))
    if "jax" in selected:
        routes += pair("jax.vjp(lax.conv_general_dilated), float64", lambda q: _jax_vjp(g, fmt, q))
    if "torch" in selected:
        routes += pair("torch autograd: x zero-inserted, F.pad, batch reshape, F.conv, float64",
                       lambda q: _torch_vjp(g, fmt, q))
    for name in selected:
        if name in LIMITS:
            why = LIMITS[name].split(":")[0]
            routes += [not_available(gr, f"{name}: no conv_general", why) for gr in both]
    return routes


def _reduced_vjp(g: ConvGeometry, fmt: str, q: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The plain grouped conv ``conv_general`` reduces to, written out here: holes as zeros, batch
    block b as channel group b; its gradients by ``conv_vjp``, then the holes dropped."""
    x = q.view("x", CF)
    n, c = x.shape[:2]
    xd = np.zeros((n, c, *g.dilated_input), x.dtype)
    holes = tuple(slice(None, None, d) for d in g.lhs_dilation)
    xd[(slice(None), slice(None), *holes)] = x
    b = g.batch_group_count
    xr = np.moveaxis(xd.reshape(b, n // b, c, *xd.shape[2:]), 0, 1).reshape(n // b, b * c, *xd.shape[2:])
    _, vjp = conv_vjp(xr, q.view("w", CF), None, stride=g.stride, padding=list(g.padding),
                      dilation=g.rhs_dilation, groups=max(b, g.feature_group_count))
    dxr, dw = vjp(q.view("dy", CF))[:2]
    dxd = np.moveaxis(dxr.reshape(n // b, b, c, *xd.shape[2:]), 1, 0).reshape(xd.shape)
    return q.back("x", dxd[(slice(None), slice(None), *holes)], CF), q.back("w", dw, CF)


def _front_vjp(g: ConvGeometry, fmt: str, q: Problem) -> tuple[np.ndarray, np.ndarray]:
    from ..jax import lax

    _, vjp = lax.conv_general_dilated.vjp(
        q.view("x", CF), q.view("w", CF), g.stride, list(g.padding), lhs_dilation=g.lhs_dilation,
        rhs_dilation=g.rhs_dilation, feature_group_count=g.feature_group_count,
        batch_group_count=g.batch_group_count)
    dx, dw = vjp(q.view("dy", CF))
    return q.back("x", np.asarray(dx), CF), q.back("w", np.asarray(dw), CF)


def _jax_vjp(g: ConvGeometry, fmt: str, q: Problem) -> tuple[np.ndarray, np.ndarray]:
    import jax
    from jax import lax

    def f(x: object, w: object) -> object:
        return lax.conv_general_dilated(
            x, w, g.stride, list(g.padding), lhs_dilation=g.lhs_dilation, rhs_dilation=g.rhs_dilation,
            feature_group_count=g.feature_group_count, batch_group_count=g.batch_group_count)

    x, w, dy = (q.view(n, CF).astype(np.float64) for n in ("x", "w", "dy"))
    with jax.enable_x64(True):
        dx, dw = jax.vjp(f, x, w)[1](dy)
    return q.back("x", np.asarray(dx), CF), q.back("w", np.asarray(dw), CF)


def torch_forward(g: ConvGeometry, torch: object) -> object:
    """PyTorch's conv_general, channels-first: x zero-inserted, padded (negative pads crop), the
    batch blocks moved into the channels, then ``F.convNd`` with the blocks as groups."""
    F = torch.nn.functional
    conv = getattr(F, f"conv{g.rank}d")

    def f(x: object, w: object) -> object:
        n, c = x.shape[:2]
        xd = x.new_zeros((n, c, *g.dilated_input))
        xd[(slice(None), slice(None), *(slice(None, None, d) for d in g.lhs_dilation))] = x
        pads = [v for pair in reversed(g.padding) for v in pair]
        # Pad, then crop: PyTorch crops first, which fails where a crop is larger than the input.
        xp = F.pad(F.pad(xd, [max(v, 0) for v in pads]), [min(v, 0) for v in pads])
        b = g.batch_group_count
        xb = xp.reshape(b, n // b, c, *xp.shape[2:]).movedim(0, 1).reshape(n // b, b * c, *xp.shape[2:])
        return conv(xb, w, stride=g.stride, dilation=g.rhs_dilation, groups=max(b, g.feature_group_count))

    return f


def _torch_vjp(g: ConvGeometry, fmt: str, q: Problem) -> tuple[np.ndarray, np.ndarray]:
    import torch

    x, w = (torch.tensor(q.view(n, CF).astype(np.float64), requires_grad=True) for n in ("x", "w"))
    y = torch_forward(g, torch)(x, w)
    dx, dw = torch.autograd.grad(y, (x, w), torch.tensor(q.view("dy", CF).astype(np.float64)))
    return q.back("x", dx.numpy(), CF), q.back("w", dw.numpy(), CF)


def _finite_differences(p: Problem, kw: dict, refs: dict, rtol: float) -> list[Row]:
    """Central differences of L = <conv_general(x, w), dy> along one random direction per
    operand, float64, step 1: L is linear in each, so the difference is exact up to rounding."""
    rng = np.random.default_rng(p.seed)
    x, w, dy = (a.astype(np.float64) for a in (p.x, p.w, p.dy))

    def loss(xx: np.ndarray, ww: np.ndarray) -> float:
        return float(np.sum(conv_general(xx, ww, **kw) * dy))

    rows = []
    for what, name, d in (("<d_x, v> vs (L(x + v) - L(x - v)) / 2", "x", refs["d_x"]),
                          ("<d_w, v> vs (L(w + v) - L(w - v)) / 2", "w", refs["d_w"])):
        v = rng.standard_normal(d.shape)
        plus, minus = ((x + s * v, w) if name == "x" else (x, w + s * v) for s in (1, -1))
        num, ana = (loss(*plus) - loss(*minus)) / 2, float(np.sum(d.astype(np.float64) * v))
        rel = abs(ana - num) / max(abs(ana), abs(num), np.finfo(float).tiny)
        rows.append(Row("finite differences", what, "pass" if rel <= rtol else "FAIL", abs(ana - num), rel,
                        rtol, f"analytic {ana:.6g}, numeric {num:.6g} (float64)"))
    return rows


def _dot_test(p: Problem, kw: dict, rtol: float) -> list[Row]:
    """<conv_general(x, w), dy> == <x, d_x> == <w, d_w> on random normal arrays of the dtype."""
    rng = np.random.default_rng(p.seed + 1)
    x, w, dy = (rng.standard_normal(a.shape).astype(p.dtype) for a in (p.x, p.w, p.dy))
    y, vjp = conv_general_vjp(x, w, **kw)
    dx, dw = vjp(dy)
    wide = [a.astype(np.float64) for a in (x, w, y, dy, dx, dw)]
    forward = float(np.sum(wide[2] * wide[3]))
    scale = max(math.prod(float(np.linalg.norm(a)) for a in wide[:2] + wide[3:4]), np.finfo(float).tiny)
    rows = []
    for what, side in (("<x, d_x> vs <conv_general(x, w), dy>", float(np.sum(wide[0] * wide[4]))),
                       ("<w, d_w> vs <conv_general(x, w), dy>", float(np.sum(wide[1] * wide[5])))):
        rel = abs(forward - side) / scale
        rows.append(Row("dot test", what, "pass" if rel <= rtol else "FAIL", abs(forward - side), rel, rtol,
                        f"<conv_general(x, w), dy> = {forward:.6g}; relative to |x| |w| |dy|"))
    return rows


# --- explain --------------------------------------------------------------------------------------
def explanation(g: ConvGeometry, fmt: str, dtype: np.dtype, frameworks: tuple[str, ...] = ()) -> dict:
    """The shapes, each gradient as a conv_general, the plain conv it runs as (and its engine), and
    each framework's calls: JAX's and PyTorch's executable, the others' limits."""
    from .. import _transpose
    from .._budget import workspace_limit
    from .._plan import make_plan

    reduced = reduced_geometry(g)
    engine = make_plan("forward", reduced, dtype, "auto", workspace_limit(None)).engine.name
    grads = {}
    for name, rule in (("d_x", _transpose.input_grad), ("d_w", _transpose.filter_grad)):
        t = rule(g, fmt).geometry
        lhs, rhs = ("dy", "w flipped in space, in/out channels swapped per group") if name == "d_x" else \
            ("x with batch and channels swapped", "dy as the kernel")
        grads[name] = (f"conv_general({lhs}, {rhs}, stride={tuple_text(t.stride)}, "
                       f"padding={pairs_text(t.padding)}, lhs_dilation={tuple_text(t.lhs_dilation)}, "
                       f"rhs_dilation={tuple_text(t.rhs_dilation)}, feature_group_count="
                       f"{t.feature_group_count}, batch_group_count={t.batch_group_count})")
    calls = {"jax": jax_calls(g, fmt), "torch": torch_calls(g)}
    calls.update({name: {"limitations": [text]} for name, text in LIMITS.items()})
    if frameworks:
        calls = {k: v for k, v in calls.items() if k in frameworks}
    return {"shapes": {"x": list(g.x_shape(fmt)), "w": list(g.w_shape(fmt)), "y": list(g.y_shape(fmt))},
            "input_dilated": list(g.dilated_input), "gradients": grads,
            "runs_as": {"x": list(reduced.x_shape(fmt)), "w": list(reduced.w_shape(fmt)),
                        "groups": reduced.feature_group_count, "engine": engine},
            "frameworks": calls}


def jax_calls(g: ConvGeometry, fmt: str) -> dict:
    """``lax.conv_general_dilated`` in the block's layout (its dimension_numbers), and ``jax.vjp``."""
    sp = letters(g.rank)
    dn = ("NC" + sp, "OI" + sp, "NC" + sp) if fmt == CF else ("N" + sp + "C", sp + "IO", "N" + sp + "C")
    call = (f"lax.conv_general_dilated(x, w, window_strides={tuple_text(g.stride)}, "
            f"padding={pairs_text(g.padding)}, lhs_dilation={tuple_text(g.lhs_dilation)}, "
            f"rhs_dilation={tuple_text(g.rhs_dilation)}, dimension_numbers={dn}, "
            f"feature_group_count={g.feature_group_count}, batch_group_count={g.batch_group_count})")
    return {"layout": dn[0], "forward": f"y = {call}",
            "autodiff": f"d_x, d_w = jax.vjp(lambda x, w: {call}, x, w)[1](dy)"}


def torch_calls(g: ConvGeometry) -> dict:
    """The PyTorch statements of ``torch_forward`` (channels-first), and autograd."""
    sp = letters(g.rank)
    holes = ", ".join(f"::{d}" for d in g.lhs_dilation)
    pads = [v for pair in reversed(g.padding) for v in pair]
    b, groups = g.batch_group_count, max(g.batch_group_count, g.feature_group_count)
    lines = [f"xd = x.new_zeros((x.shape[0], x.shape[1], {', '.join(map(str, g.dilated_input))}))",
             f"xd[:, :, {holes}] = x  # lhs_dilation: zeros between the samples",
             f"xp = F.pad(xd, {[max(v, 0) for v in pads]})"]
    if min(pads) < 0:  # after the padding: PyTorch crops first, and a crop past the input fails
        lines.append(f"xp = F.pad(xp, {[min(v, 0) for v in pads]})  # negative pads crop")
    if b > 1:
        lines.append(f"xp = xp.reshape({b}, xp.shape[0] // {b}, *xp.shape[1:]).movedim(0, 1)"
                     f".reshape(xp.shape[0] // {b}, {b} * xp.shape[1], *xp.shape[2:])"
                     "  # batch block b: group b")
    lines.append(f"y = F.conv{g.rank}d(xp, w, stride={tuple_text(g.stride)}, "
                 f"dilation={tuple_text(g.rhs_dilation)}, groups={groups})")
    return {"layout": "NC" + sp, "forward": "\n".join(lines),
            "autodiff": "d_x, d_w = torch.autograd.grad(y, (x, w), dy)  # x, w with requires_grad=True"}
