"""``convgrad explain``: the resolved geometry, each gradient's formula, costs, the planner's
choice, and the same call in each framework's convention.

Every number is read from the core: ``ConvGeometry`` (shapes, pads, both gradient geometries,
FLOPs), ``make_plan`` and the engines (choice, reason, estimated time, workspace).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from rich.table import Table
from rich.text import Text

from .._budget import workspace_limit
from .._dtypes import result_dtype
from .._geometry import ConvGeometry
from .._plan import make_plan
from ..engines import OPS, engine_names, get_engine
from . import _console, _conventions
from ._args import GeometryArgs, add_geometry_arguments, geometry_dict

FRAMEWORK_NAMES = ("torch", "tf", "jax", "onnx")
AXES = {1: "W", 2: "HW", 3: "DHW"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "explain", help="the geometry, the gradients' formulas, costs and each framework's call",
        description="Explain one convolution: its resolved geometry (output shape, pads, effective "
        "kernel, the valid transposed-conv output sizes), the formula of each gradient written out "
        "for it, FLOPs and memory of each op, the engine the planner picks and why, and the "
        "equivalent call in PyTorch, TensorFlow, JAX and ONNX.")
    add_geometry_arguments(p)
    p.add_argument("--framework", choices=FRAMEWORK_NAMES, action="append",
                   help="show only this framework's equivalent (repeatable); default all")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    return p


def run(ns: argparse.Namespace) -> int:
    args = GeometryArgs.from_namespace(ns)
    data = explain(args, tuple(ns.framework or FRAMEWORK_NAMES))
    if ns.json:
        _console.print_json(data)
    else:
        render(data, args)
    return 0


# --- the explanation as data --------------------------------------------------------------------
def axis_names(rank: int) -> list[str]:
    return list(AXES[rank]) if rank in AXES else [f"d{i}" for i in range(rank)]


def explain(args: GeometryArgs, frameworks: tuple[str, ...]) -> dict:
    g, fmt = args.geometry, args.data_format
    dims = []
    sizes = g.input_size_range()
    for i, name in enumerate(axis_names(g.rank)):
        dims.append({
            "axis": name, "input": g.in_spatial[i], "kernel": g.kernel[i], "dilation": g.rhs_dilation[i],
            "kernel_eff": g.kernel_eff[i], "stride": g.stride[i], "padding": list(g.padding[i]),
            "padded_input": g.padded_input[i], "output": g.out_spatial[i],
            "tight_padding": list(g.tight_padding[i]), "unused_input": _conventions.leftover(g)[i],
            "transpose_output_sizes": list(sizes[i]),
        })
    return {
        "command": "explain",
        "geometry": geometry_dict(args),
        "dims": dims,
        "shapes": {"x": list(g.x_shape(fmt)), "w": list(g.w_shape(fmt)), "y": list(g.y_shape(fmt)),
                   "b": [g.out_channels], "dy": list(g.y_shape(fmt)), "d_x": list(g.x_shape(fmt)),
                   "d_w": list(g.w_shape(fmt)), "d_b": [g.out_channels]},
        "gradients": gradients(args),
        "costs": costs(args),
        "frameworks": {name: FRAMEWORKS[name](args) for name in frameworks},
    }


def _geom_dict(h: ConvGeometry) -> dict:
    return {"batch": h.batch, "in_channels": h.in_channels, "out_channels": h.out_channels,
            "in_spatial": list(h.in_spatial), "kernel": list(h.kernel), "stride": list(h.stride),
            "padding": [list(p) for p in h.padding], "lhs_dilation": list(h.lhs_dilation),
            "rhs_dilation": list(h.rhs_dilation), "feature_group_count": h.feature_group_count,
            "batch_group_count": h.batch_group_count, "out_spatial": list(h.out_spatial)}


def gradients(args: GeometryArgs) -> dict:
    """Each gradient as a convolution of this geometry, step by step."""
    g, fmt = args.geometry, args.data_format
    G = g.feature_group_count
    wl = args.layouts[1]
    dil_dy = tuple((o - 1) * s + 1 for o, s in zip(g.out_spatial, g.stride))
    igp = g.input_grad_padding
    padded_dy = tuple(d + lo + hi for d, (lo, hi) in zip(dil_dy, igp))
    fgp = g.filter_grad_padding
    padded_x = tuple(n + lo + hi for n, (lo, hi) in zip(g.in_spatial, fgp))
    crop = " (negative: crop)" if any(v < 0 for p in igp for v in p) else ""
    crop_w = " (negative: crop)" if any(v < 0 for p in fgp for v in p) else ""
    groups = f", within each of the {G} groups" if G > 1 else ""
    flip_shape = _flip_swap_shape(g, fmt)
    d_x = {
        "formula": "d_x = conv(pad(dilate(dy, stride), input_grad_padding), flip(w) with in/out "
                   "channels swapped; kernel dilation d, stride 1)",
        "steps": [
            f"dilate dy {_t(g.y_shape(fmt))} by the stride {_t(g.stride)}: s - 1 zeros between "
            f"samples, spatial {_t(g.out_spatial)} -> {_t(dil_dy)}",
            f"pad by (b' = k_eff - 1 - before, n + k_eff - 1 - o_dilated - b') = {_pairs(igp)}{crop} "
            f"-> {_t(padded_dy)}",
            f"correlate with w flipped along every spatial axis, its in and out channels swapped"
            f"{groups}: {_t(flip_shape)} {wl}, kernel dilation {_t(g.rhs_dilation)}, stride 1 "
            f"-> d_x {_t(g.x_shape(fmt))}",
        ],
        "input_grad_padding": [list(p) for p in igp],
        "as_conv_general": _geom_dict(g.input_grad_geometry()),
        "call": f"convgrad.conv_general(dy, flip_swap(w), lhs_dilation={_t(g.stride)}, "
                f"rhs_dilation={_t(g.rhs_dilation)}, padding={_pairs(igp)}, feature_group_count={G})",
    }
    fg = g.filter_grad_geometry()
    d_w = {
        "formula": "d_w = conv(x with batch <-> channels, padded by filter_grad_padding; kernel dy "
                   "with batch <-> channels, dilated by the stride; window stride = kernel dilation)",
        "steps": [
            f"swap batch and channels of x {_t(g.x_shape(fmt))}: C = {g.in_channels} images of "
            f"N = {g.batch} channels; pad by (before, o_dilated - n + k_eff - 1 - before) = "
            f"{_pairs(fgp)}{crop_w} -> {_t(padded_x)}",
            f"dy {_t(g.y_shape(fmt))} with batch and channels swapped is the kernel: spatial "
            f"{_t(g.out_spatial)}, dilated by the stride {_t(g.stride)} -> {_t(dil_dy)}",
            f"window stride = the forward's kernel dilation {_t(g.rhs_dilation)} -> spatial "
            f"{_t(fg.out_spatial)} = the kernel"
            + (f"; the {G} channel groups become {G} batch groups" if G > 1 else ""),
            f"read the ({g.filter_in_channels}, {g.out_channels}, *K) result as w's layout {wl}: "
            f"d_w {_t(g.w_shape(fmt))}",
        ],
        "filter_grad_padding": [list(p) for p in fgp],
        "as_conv_general": _geom_dict(fg),
        "call": f"convgrad.conv_general(swap_NC(x), swap_NC(dy), stride={_t(g.rhs_dilation)}, "
                f"rhs_dilation={_t(g.stride)}, padding={_pairs(fgp)}, batch_group_count={G})",
    }
    axes = "batch and every spatial position"
    d_b = {"formula": f"d_b[o] = sum of dy[..., o] over {axes}",
           "steps": [f"sum dy {_t(g.y_shape(fmt))} over {axes} -> d_b ({g.out_channels},)"],
           "call": "convgrad.conv_bias_grad(dy, data_format=...)"}
    return {"d_x": d_x, "d_w": d_w, "d_b": d_b}


def _flip_swap_shape(g: ConvGeometry, fmt: str) -> tuple[int, ...]:
    og = g.out_channels // g.feature_group_count
    if fmt == "channels_first":
        return (g.in_channels, og, *g.kernel)
    return (*g.kernel, og, g.in_channels)


def costs(args: GeometryArgs) -> dict:
    """FLOPs, memory and the planner's choice for each op, with every engine's verdict."""
    g, fmt = args.geometry, args.data_format
    _, comp = result_dtype(np.zeros(0, args.dtype))
    limit = workspace_limit(None)
    item = np.dtype(args.dtype).itemsize
    sizes = {"x": math.prod(g.x_shape(fmt)), "w": math.prod(g.w_shape(fmt)), "y": math.prod(g.y_shape(fmt))}
    io = {"forward": (("x", "w"), "y"), "input_grad": (("dy", "w"), "d_x"),
          "filter_grad": (("x", "dy"), "d_w")}
    as_conv = {"forward": g.flops, "input_grad": g.input_grad_geometry().flops,
               "filter_grad": g.filter_grad_geometry().flops}
    ops = {}
    for op in OPS:
        plan = make_plan(op, g, comp, "auto", limit)
        engines = {}
        for name in engine_names():
            engine = get_engine(name)
            why_not = engine.unsupported(g, op, comp)
            engines[name] = ({"eligible": False, "reason": why_not} if why_not else
                             {"eligible": True, "estimated_seconds": engine.cost(g, op, comp)})
        ins, out = io[op]
        key = {"dy": "y", "d_x": "x", "d_w": "w"}
        ops[op] = {
            "flops": g.flops,
            "flops_as_plain_conv": as_conv[op],
            "input_bytes": sum(sizes[key.get(n, n)] for n in ins) * item,
            "output_bytes": sizes[key.get(out, out)] * item,
            "engine": plan.engine.name,
            "reason": plan.reason,
            "estimated_seconds": plan.estimated_seconds,
            "workspace_bytes": plan.workspace_bytes,
            "engines": engines,
        }
    return {"dtype": str(args.dtype), "compute_dtype": str(comp), "workspace_limit": limit, "ops": ops}


# --- framework equivalents -------------------------------------------------------------------------
def _layout_note(args: GeometryArgs, framework_fmt: str) -> str:
    if args.data_format == framework_fmt:
        return ""
    r = args.geometry.rank
    if framework_fmt == "channels_first":
        sp = ", ".join(map(str, range(1, r + 1)))
        return (f"from your channels-last arrays: x.permute(0, {r + 1}, {sp}), "
                f"w.permute({r + 1}, {r}, {', '.join(map(str, range(r)))})")
    sp = ", ".join(map(str, range(2, r + 2)))
    return f"from your channels-first arrays: transpose x by (0, {sp}, 1), w by ({sp}, 1, 0)"


def torch_equivalent(args: GeometryArgs) -> dict:
    g, r = args.geometry, args.geometry.rank
    out: dict = {"framework": "torch", "layout": "channels_first", "layout_note":
                 _layout_note(args, "channels_first")}
    if r > 3:
        out.update(expressible=False, reason=f"PyTorch has conv1d/2d/3d only, not {r}-D",
                   workaround="sum conv3d over the leading kernel axis, or use convgrad")
        return out
    sym = _conventions.symmetric_pads(g)
    kw = {"stride": list(g.stride), "padding": list(sym) if sym is not None else [0] * r,
          "dilation": list(g.rhs_dilation), "groups": g.feature_group_count}
    pre = None if sym is not None else _conventions.torch_pad_list(g.padding)
    out_pad = list(_conventions.leftover(g))
    k = ", ".join(f"{a}={_t(v) if isinstance(v, list) else v}" for a, v in kw.items())
    xin = "x" if pre is None else "F.pad(x, pad)"
    out.update(
        expressible=sym is not None,
        kwargs=kw, pre_pad=pre, output_padding=out_pad,
        forward=f"F.conv{r}d({xin}, w, b, {k})",
        input_grad=(f"torch.nn.grad.conv{r}d_input(x.shape, w, dy, {k})" if pre is None else
                    f"F.pad(torch.nn.grad.conv{r}d_input(F.pad(x, pad).shape, w, dy, {k}), "
                    "[-p for p in pad])"),
        filter_grad=f"torch.nn.grad.conv{r}d_weight({xin}, w.shape, dy, {k})",
        transpose=(f"F.conv_transpose{r}d(dy, w, stride={_t(g.stride)}, padding={_t(kw['padding'])}, "
                   f"output_padding={_t(out_pad)}, groups={g.feature_group_count}, "
                   f"dilation={_t(g.rhs_dilation)})"
                   + ("" if pre is None else ", then F.pad(..., [-p for p in pad])")),
        autodiff="y.backward(dy) after x.requires_grad_(), w.requires_grad_()",
    )
    if pre is not None:
        out["reason"] = "PyTorch pads both sides of a dim equally (and never crops)"
        out["workaround"] = f"pad = {pre}  # F.pad order: last dim first; negative values crop"
    return out


def tf_equivalent(args: GeometryArgs) -> dict:
    g, r = args.geometry, args.geometry.rank
    out: dict = {"framework": "tf", "layout": "channels_last",
                 "layout_note": _layout_note(args, "channels_last")}
    if r > 3:
        out.update(expressible=False, reason=f"TensorFlow convolves 1-, 2- and 3-D only, not {r}-D",
                   workaround="use convgrad")
        return out
    pad = _conventions.tf_padding(g)
    s, d = list(g.stride), list(g.rhs_dilation)
    shown = repr(pad) if isinstance(pad, str) else str(pad) if pad is not None else "'VALID'"
    xin = "x" if pad is not None else "x_padded"
    if isinstance(pad, list):
        raw = f"'EXPLICIT', explicit_paddings={[v for pr in pad for v in pr]}"
    else:
        raw = repr(pad) if pad is not None else "'VALID'"
    fn = {1: "conv1d", 2: "conv2d", 3: "conv3d"}[r]
    bp = {1: "Conv2D", 2: "Conv2D", 3: "Conv3D"}[r]
    v2 = "V2" if r == 3 else ""
    out.update(
        expressible=pad is not None, padding=pad,
        forward=f"tf.nn.{fn}({xin}, w, strides={s}, padding={shown}, dilations={d})",
        input_grad=f"tf.raw_ops.{bp}BackpropInput{v2}(input_sizes={xin}.shape, filter=w, out_backprop=dy, "
                   f"strides={[1, *s, 1]}, padding={raw}, dilations={[1, *d, 1]})"
                   + (" on x lifted to 2-D (a unit height)" if r == 1 else ""),
        filter_grad=f"tf.raw_ops.{bp}BackpropFilter{v2}(input={xin}, filter_sizes=w.shape, out_backprop=dy, "
                    f"strides={[1, *s, 1]}, padding={raw}, dilations={[1, *d, 1]})",
        transpose=f"tf.nn.{fn}_transpose(dy, w, output_shape={xin}.shape, strides={s}, padding={shown}, "
                  f"dilations={d})",
        autodiff="tf.GradientTape: tape.gradient(y, [x, w, b], output_gradients=dy)",
    )
    if pad is None:
        pads = [[0, 0], *([max(lo, 0), max(hi, 0)] for lo, hi in g.padding), [0, 0]]
        out["reason"] = ("TensorFlow takes 'VALID', 'SAME' or, for conv2d only, explicit non-negative pads; "
                         f"these pads are {_pairs(g.padding)}")
        crop = any(lo < 0 or hi < 0 for lo, hi in g.padding)
        out["workaround"] = (f"x_padded = tf.pad(x, {pads})"
                             + (" then slice off the negative pads" if crop else "")
                             + "; convolve with padding='VALID'; crop d_x back to x's shape")
    limits = []
    if g.feature_group_count > 1:
        limits.append("no CPU gradient kernels for grouped convolutions (GPU only)")
    if any(v > 1 for v in g.rhs_dilation):
        limits.append("no CPU gradient kernels for dilation > 1")
        if any(v > 1 for v in g.stride):
            limits.append("tf.nn.convolution refuses stride > 1 with dilation > 1")
    if limits:
        out["limitations"] = limits
    return out


def jax_equivalent(args: GeometryArgs) -> dict:
    g, r = args.geometry, args.geometry.rank
    fmt = args.data_format
    dn = _jax_dims(r, fmt)
    G = g.feature_group_count
    igp = g.input_grad_padding
    out = {
        "framework": "jax", "layout": fmt, "layout_note": "", "expressible": True,
        "dimension_numbers": dn,
        "forward": f"lax.conv_general_dilated(x, w, window_strides={_t(g.stride)}, "
                   f"padding={_pairs(g.padding)}, "
                   f"rhs_dilation={_t(g.rhs_dilation)}, dimension_numbers={dn}, feature_group_count={G})",
        "input_grad": f"lax.conv_general_dilated(dy, flip_swap(w), (1,) * {r}, padding={_pairs(igp)}, "
                      f"lhs_dilation={_t(g.stride)}, rhs_dilation={_t(g.rhs_dilation)}, "
                      f"dimension_numbers={dn}, feature_group_count={G})",
        "filter_grad": "jax.vjp(lambda w: conv(x, w), w)[1](dy)  # or jax.linear_transpose",
        "transpose": (f"lax.conv_transpose(dy, w, strides={_t(g.stride)}, padding={_pairs(igp)}, "
                      f"rhs_dilation={_t(g.rhs_dilation)}, dimension_numbers={dn}, transpose_kernel=True)"
                      if G == 1 else "not expressible directly: lax.conv_transpose has no groups; use "
                      "the input_grad call above"),
        "autodiff": "jax.vjp(conv, x, w)[1](dy)",
        "padding": [list(p) for p in g.padding],
    }
    return out


def _jax_dims(r: int, fmt: str) -> list[str]:
    sp = AXES.get(r, "".join("DHW"[-r:]) if r <= 3 else None)
    if sp is None:
        return ["N,C,*S", "O,I,*K", "N,C,*S"] if fmt == "channels_first" else ["N,*S,C", "*K,I,O", "N,*S,C"]
    if fmt == "channels_first":
        return [f"NC{sp}", f"OI{sp}", f"NC{sp}"]
    return [f"N{sp}C", f"{sp}IO", f"N{sp}C"]


def onnx_equivalent(args: GeometryArgs) -> dict:
    g, r = args.geometry, args.geometry.rank
    pads = _conventions.onnx_pads(g.padding)
    auto = _conventions.onnx_auto_pad(g)
    attrs = {"kernel_shape": list(g.kernel), "strides": list(g.stride), "dilations": list(g.rhs_dilation),
             "group": g.feature_group_count}
    a = ", ".join(f"{k}={v}" for k, v in attrs.items())
    shown = f"pads={pads}" if pads is not None else f"pads=[0] * {2 * r}"
    alt = f" (or auto_pad='{auto}')" if auto else ""
    out: dict = {"framework": "onnx", "layout": "channels_first",
                 "layout_note": _layout_note(args, "channels_first"),
                 "expressible": pads is not None, "attributes": attrs, "pads": pads, "auto_pad": auto,
                 "output_padding": list(_conventions.leftover(g))}
    xin = "X" if pads is not None else "Slice/Pad(X)"
    out["forward"] = f"Conv({xin}, W, B; {a}, {shown}){alt}"
    out["input_grad"] = (f"ConvTranspose(dY, W; strides={list(g.stride)}, dilations={list(g.rhs_dilation)}, "
                         f"group={g.feature_group_count}, {shown}, output_padding={out['output_padding']})"
                         + ("" if pads is not None else ", then crop/pad back to X's shape"))
    out["transpose"] = out["input_grad"]
    fgp = _conventions.onnx_pads(g.filter_grad_padding)
    out["filter_grad"] = ("not expressible directly: ONNX has no filter-gradient op; workaround: "
                          f"Transpose(Conv(Transpose(X, perm=[1, 0, ...]), Transpose(dY, perm=[1, 0, ...]); "
                          f"strides={list(g.rhs_dilation)}, dilations={list(g.stride)}, "
                          f"pads={fgp if fgp is not None else 'crop X first'}), perm=[1, 0, ...])"
                          + (", one per group" if g.feature_group_count > 1 else ""))
    out["autodiff"] = "none in the ONNX standard (onnxruntime-training builds a gradient graph)"
    if pads is None:
        out["reason"] = f"ONNX pads must be >= 0; these pads are {_pairs(g.padding)}"
        out["workaround"] = "crop X with a Slice node (and pad with Pad), then Conv with pads=0"
    return out


def translated(args: GeometryArgs, framework: str) -> dict | None:
    """The forward conv as ``convgrad.translate`` writes it for ``framework`` (from JAX's explicit
    pads, which say any geometry), or None where that module is absent or the rank is above 3."""
    g = args.geometry
    if g.rank > 3:
        return None
    try:
        from .. import translate as tr
    except ImportError:
        return None
    try:
        t = tr.translate("jax", framework, "conv", input_size=g.in_spatial, kernel_size=g.kernel,
                         window_strides=g.stride, padding=[tuple(p) for p in g.padding],
                         rhs_dilation=g.rhs_dilation, feature_group_count=g.feature_group_count)
    except (ValueError, TypeError) as e:
        return {"error": str(e)}
    lines = [ln for ln in str(t).splitlines() if not ln.lstrip().startswith("# x:")]
    return {"call": "\n".join(lines), "expressible": t.expressible, "reason": t.reason,
            "input_layout": t.input_layout}


def _with_translation(fn: object, name: str) -> object:
    def run(args: GeometryArgs) -> dict:
        out = fn(args)  # type: ignore[operator]
        out["translate"] = translated(args, name)
        return out

    return run


FRAMEWORKS = {name: _with_translation(fn, name) for name, fn in (
    ("torch", torch_equivalent), ("tf", tf_equivalent), ("jax", jax_equivalent), ("onnx", onnx_equivalent))}


# --- rendering ------------------------------------------------------------------------------------
def render(data: dict, args: GeometryArgs) -> None:
    con = _console.stdout()
    con.print(Text("convgrad explain: ", style="bold") + Text(args.title()))
    sh = data["shapes"]
    xl, wl = args.layouts
    con.print(f"x {_t(sh['x'])} {xl} · w {_t(sh['w'])} {wl} · b {_t(sh['b'])} → y {_t(sh['y'])}")

    table = Table(title="geometry per spatial axis", title_justify="left", header_style="bold")
    for col in ("axis", "n", "k", "d", "k_eff", "s", "pads", "padded", "o", "unused", "transposed sizes"):
        table.add_column(col, justify="left" if col in ("axis", "pads") else "right", no_wrap=True)
    for d in data["dims"]:
        lo, hi = d["transpose_output_sizes"]
        table.add_row(d["axis"], str(d["input"]), str(d["kernel"]), str(d["dilation"]), str(d["kernel_eff"]),
                      str(d["stride"]), _t(d["padding"]), str(d["padded_input"]), str(d["output"]),
                      str(d["unused_input"]), f"{lo}" if lo == hi else f"{lo}..{hi}")
    con.print(table)
    con.print(Text(
        "n input, k kernel, d dilation, s stride, o output; pads (before, after), negative ones crop;\n"
        "k_eff = (k - 1)·d + 1; o = (padded - k_eff) // s + 1; unused: padded samples past the last\n"
        "window (their gradient is 0; a transposed conv restores them with output_padding);\n"
        "transposed sizes: the input sizes this conv maps to o, the sizes conv_transpose can produce",
        style="dim"))

    con.print(Text("\ngradients as convolutions", style="bold"))
    for name, grad in data["gradients"].items():
        con.print(Text(f"{name}: ", style="bold cyan") + Text(grad["formula"]))
        for i, step in enumerate(grad["steps"], 1):
            con.print(f"   {i}. {step}")
        con.print(Text(f"   = {grad['call']}", style="dim"))

    c = data["costs"]
    table = Table(title=f"\ncost ({c['dtype']}, computed in {c['compute_dtype']}) and the planner's choice",
                  title_justify="left", header_style="bold")
    for col in ("op", "FLOPs", "as a plain conv", "in + out memory", "engine", "est. time", "workspace"):
        table.add_column(col, justify="right" if col not in ("op", "engine") else "left", no_wrap=True)
    for op, o in c["ops"].items():
        table.add_row(op, _si(o["flops"]), _si(o["flops_as_plain_conv"]),
                      _bytes(o["input_bytes"] + o["output_bytes"]), o["engine"],
                      _secs(o["estimated_seconds"]), _bytes(o["workspace_bytes"]))
    con.print(table)
    for op, o in c["ops"].items():
        con.print(Text(f"{op}: {o['engine']}, ", style="bold") + Text(o["reason"]))
    table = Table(title="every engine's verdict (estimated time, or why not)", title_justify="left",
                  header_style="bold")
    table.add_column("engine")
    for op in c["ops"]:
        table.add_column(op)
    for name in next(iter(c["ops"].values()))["engines"]:
        cells = []
        for o in c["ops"].values():
            e = o["engines"][name]
            cell = _secs(e["estimated_seconds"]) if e["eligible"] else f"n/a: {e['reason']}"
            cells.append(Text(cell, style="bold green" if o["engine"] == name else
                              ("" if e["eligible"] else "dim")))
        table.add_row(name, *cells)
    con.print(table)
    con.print(Text("FLOPs count multiplies and adds; 'as a plain conv' counts the products with the zeros "
                   "a stride-dilated dy\ninserts, which the engines skip.", style="dim"))

    for name, fw in data["frameworks"].items():
        title = {"torch": "PyTorch", "tf": "TensorFlow", "jax": "JAX", "onnx": "ONNX"}[name]
        state = "expressible directly" if fw.get("expressible") else "NOT expressible directly"
        style = "green" if fw.get("expressible") else "yellow"
        con.print(Text(f"\n{title}", style="bold") + Text(f" ({fw['layout']}): {state}", style=style))
        if fw.get("reason"):
            con.print(f"   why: {fw['reason']}")
        if fw.get("workaround"):
            con.print(f"   workaround: {fw['workaround']}")
        if fw.get("layout_note"):
            con.print(f"   layout: {fw['layout_note']}")
        for key in ("forward", "input_grad", "filter_grad", "transpose", "autodiff"):
            if key in fw:
                con.print(f"   {key + ':':<13}{fw[key]}")
        tr = fw.get("translate")
        if tr and "call" in tr:
            lines = tr["call"].splitlines()
            con.print(Text(f"   {'translate:':<13}", style="dim") + Text(lines[0]))
            for line in lines[1:]:
                con.print(f"   {'':<13}{line}")
        for lim in fw.get("limitations", []):
            con.print(Text(f"   note: {lim}", style="yellow"))


def _t(v: object) -> str:
    return "(" + ", ".join(str(i) for i in v) + ("," if len(v) == 1 else "") + ")"  # type: ignore[attr-defined]


def _pairs(pairs: object) -> str:
    return "[" + ", ".join(f"({lo}, {hi})" for lo, hi in pairs) + "]"  # type: ignore[attr-defined]


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:g}"


def _bytes(v: float) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:g} B"


def _secs(v: float) -> str:
    if v >= 1:
        return f"{v:.3g} s"
    if v >= 1e-3:
        return f"{v * 1e3:.3g} ms"
    return f"{v * 1e6:.3g} µs"
