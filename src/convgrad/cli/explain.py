"""``convgrad explain``: the resolved geometry, each gradient's formula, costs, the planner's
choice, and the same call in each framework's convention.

The explanation is the library's (``convgrad._explain``); this module parses and renders it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from .. import _frameworks
from .._frameworks._common import tuple_text as _t
from . import _console
from ._args import ArgumentError, GeometryArgs, add_geometry_arguments, geometry_dict

if TYPE_CHECKING:
    from rich.console import Console

def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "explain", help="the geometry, the gradients' formulas, costs and each framework's call",
        description="Explain one convolution: its resolved geometry (output shape, pads, effective "
        "kernel, the valid transposed-conv output sizes), the formula of each gradient written out "
        "for it, FLOPs and memory of each op, the engine the planner picks and why, and the "
        "equivalent call in PyTorch, TensorFlow, JAX and ONNX.")
    add_geometry_arguments(p)
    p.add_argument("--framework", choices=_frameworks.with_("write"), action="append",
                   help="show only this framework's equivalent (repeatable); default all")
    p.add_argument("--full", action="store_true",
                   help="also every step of each gradient and every engine's verdict (the planner's table)")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON (everything)")
    return p


def run(ns: argparse.Namespace) -> int:
    from .._explain import explain

    args = GeometryArgs.from_namespace(ns)
    if args.op == "general":
        return _run_general(args, ns)
    try:  # a geometry too large for any engine's workspace: the planner says why
        e = explain(args.geometry, args.data_format, args.dtype, *(ns.framework or ()),
                    padding_mode=args.padding_mode)
    except ValueError as err:
        raise ArgumentError(str(err)) from None
    data = {"command": "explain", "geometry": geometry_dict(args), **e.as_dict()}
    if not args.bias:  # y = conv(x, w): no b, no d_b
        for key in ("b", "d_b"):
            data["shapes"].pop(key)
        data["gradients"].pop("d_b")
    if ns.json:
        _console.print_json(data)
    else:
        render(data, args, ns.full)
    return 0


def _run_general(args: GeometryArgs, ns: argparse.Namespace) -> int:
    """conv_general (--lhs-dilation, --batch-groups): its shapes, gradients as conv_generals, the
    plain conv it runs as, and each framework's calls."""
    from . import _general

    data = {"command": "explain", "geometry": geometry_dict(args),
            **_general.explanation(args.geometry, args.data_format, args.dtype, tuple(ns.framework or ()))}
    if ns.json:
        _console.print_json(data)
        return 0
    from .._frameworks import module

    con = _console.stdout()
    con.print(Text("convgrad explain: ", style="bold") + Text(args.title()))
    sh, r = data["shapes"], data["runs_as"]
    con.print(f"x {_t(sh['x'])} · w {_t(sh['w'])} → y {_t(sh['y'])}; x input-dilated: "
              f"{_t(data['input_dilated'])} (spatial)")
    con.print(f"runs as the plain conv of x {_t(r['x'])} (holes as zeros, batch blocks as channel groups), "
              f"w {_t(r['w'])}, groups {r['groups']}: {r['engine']}")
    con.print(Text("\ngradients as conv_generals", style="bold"))
    for name, formula in data["gradients"].items():
        con.print(Text(f"{name}: ", style="bold cyan") + Text(formula))
    for name, fw in data["frameworks"].items():
        layout = f" ({fw['layout']})" if "layout" in fw else ""
        con.print(Text(f"\n{module(name).TITLE}{layout}", style="bold"))
        for key in ("forward", "autodiff"):
            for i, line in enumerate(fw.get(key, "").splitlines()):
                con.print(f"   {key + ':' if i == 0 else '':<10}{line}", soft_wrap=True)
        for lim in fw.get("limitations", []):
            con.print(Text(f"   note: {lim}", style="yellow"))
    return 0


# --- rendering ------------------------------------------------------------------------------------
def render(data: dict, args: GeometryArgs, full: bool = False) -> None:
    """The short form (geometry, each gradient as a convolution, costs, the engine and why, each
    framework's calls); ``full`` adds each gradient's steps and every engine's verdict."""
    con = _console.stdout()
    con.print(Text("convgrad explain: ", style="bold") + Text(args.title()))
    sh = data["shapes"]
    xl, wl = args.layouts
    b = f" · b {_t(sh['b'])}" if "b" in sh else ""
    con.print(f"x {_t(sh['x'])} {xl} · w {_t(sh['w'])} {wl}{b} → y {_t(sh['y'])}")
    _geometry(con, data)
    _gradients(con, data, full)
    for note in data.get("notes", []):
        con.print(Text(f"   {note}", style="yellow"))
    _costs(con, data, full)
    if full:
        _verdicts(con, data)
    for name, fw in data["frameworks"].items():
        _framework(con, name, fw)
    if not full:
        con.print(Text("\n--full adds each gradient's steps and every engine's verdict; --json gives all "
                       "of it", style="dim"))


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...], no_wrap: bool = True) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right", no_wrap=no_wrap)
    return table


def _geometry(con: Console, data: dict) -> None:
    table = _table("geometry per spatial axis", ("axis", "n", "k", "d", "k_eff", "s", "pads", "padded", "o",
                                                 "unused", "transposed sizes"), ("axis", "pads"))
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


def _gradients(con: Console, data: dict, full: bool = True) -> None:
    con.print(Text("\ngradients as convolutions", style="bold"))
    for name, grad in data["gradients"].items():
        con.print(Text(f"{name}: ", style="bold cyan") + Text(grad["formula"]))
        for i, step in enumerate(grad["steps"] if full else (), 1):
            con.print(f"   {i}. {step}")
        con.print(Text(f"   = {grad['call']}", style="dim"))


def _short_reason(reason: str) -> str:
    """The planner's reason, its first two estimates (the chosen engine's and the runner-up's)."""
    head = reason.split("; not eligible")[0]
    parts = head.split(", ")
    return ", ".join(parts[:2]) + (", ..." if len(parts) > 2 else "")


def _costs(con: Console, data: dict, full: bool = True) -> None:
    from .._plan import LOAD_SPREAD_CALLS

    c = data["costs"]
    table = _table(f"\ncost ({c['dtype']}, computed in {c['compute_dtype']}) and the planner's choice",
                   ("op", "FLOPs", "as a plain conv", "in + out memory", "engine", "est. compute",
                    "one-time load", "workspace"), ("op", "engine"))
    for op, o in c["ops"].items():
        table.add_row(op, _si(o["flops"]), _si(o["flops_as_plain_conv"]),
                      _bytes(o["input_bytes"] + o["output_bytes"]), o["engine"],
                      _secs(o["compute_seconds"]), _secs(o["load_seconds"]) if o["load_seconds"] else "—",
                      _bytes(o["workspace_bytes"]))
    con.print(table)
    con.print(Text("est. compute: the planner's estimate of one call; one-time load: what it adds the first "
                   "time,\nto load compiled kernels (0 once loaded); the planner charges it spread over "
                   f"{LOAD_SPREAD_CALLS} calls.", style="dim"))
    for op, o in c["ops"].items():
        con.print(Text(f"{op}: {o['engine']}, ", style="bold") + Text(o["reason"] if full else _short_reason(
            o["reason"])))


def _verdicts(con: Console, data: dict) -> None:
    ops = data["costs"]["ops"]
    title = ("every engine's verdict, cheapest first (estimated compute + one-time load, workspace, choices; "
             "or why not)")
    table = _table(title, ("engine", *ops), ("engine", *ops), no_wrap=False)
    for name in next(iter(ops.values()))["engines"]:
        cells = []
        for o in ops.values():
            e = o["engines"][name]
            if e["eligible"]:
                load = f" + load {_secs(e['load_seconds'])}" if e.get("load_seconds") else ""
                choices = "".join(f"; {k}={v}" for k, v in e["choices"].items())
                cell = (f"{_secs(e.get('compute_seconds', e['estimated_seconds']))}{load}, "
                        f"{_bytes(e['workspace_bytes'])}{choices}")
            else:
                cell = f"n/a: {e['reason']}"
            style = "bold green" if o["engine"] == name else ("" if e["eligible"] else "dim")
            cells.append(Text(cell, style=style))
        table.add_row(name, *cells)
    con.print(table)
    con.print(Text("FLOPs count multiplies and adds; 'as a plain conv' counts the products with the zeros "
                   "a stride-dilated dy\ninserts, which the engines skip.", style="dim"))


def _framework(con: Console, name: str, fw: dict) -> None:
    from .._frameworks import module

    state = "expressible directly" if fw.get("expressible") else "NOT expressible directly"
    style = "green" if fw.get("expressible") else "yellow"
    con.print(Text(f"\n{module(name).TITLE}", style="bold")
              + Text(f" ({fw['layout']}): {state}", style=style))
    if "forward" not in fw:  # beyond the framework's ranks
        con.print(f"   why: {fw['reason']}\n   workaround: {fw['workaround']}")
    for key in ("forward", "depthwise", "input_grad", "filter_grad", "transpose", "autodiff"):
        for i, line in enumerate(fw.get(key, "").splitlines()):
            con.print(f"   {key + ':' if i == 0 else '':<13}{line}")
    for lim in fw.get("limitations", []):
        con.print(Text(f"   note: {lim}", style="yellow"))


def _scaled(v: float, units: tuple, small: str) -> str:
    """``v`` in the first of ``units`` ((name, scale), largest first) it reaches, else ``small``."""
    return next((f"{v / scale:.3g} {unit}" for unit, scale in units if v >= scale), small)


def _si(v: float) -> str:
    return _scaled(v, (("G", 1e9), ("M", 1e6), ("k", 1e3)), f"{v:g}")


def _bytes(v: float) -> str:
    return _scaled(v, (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)), f"{v:g} B")


def _secs(v: float) -> str:
    return _scaled(v, (("s", 1), ("ms", 1e-3)), f"{v * 1e6:.3g} µs")
