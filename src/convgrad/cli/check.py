"""``convgrad check``: every way of computing d_x, d_w and d_b, compared in one table."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import sys
from typing import TYPE_CHECKING

import numpy as np

from .. import _frameworks
from .._budget import WORKSPACE_ENV, workspace_limit
from .._tolerance import RTOL
from . import _console
from ._args import ArgumentError, GeometryArgs, add_geometry_arguments, geometry_dict

if TYPE_CHECKING:
    from ..testing import CheckReport

DESCRIPTION = """\
Compute the gradients of y = conv(x, w) + b every way there is and check that they agree: the
vector-Jacobian product (the reference), the transposition identities written out in NumPy and
run by convgrad.identities, every engine's conv_input_grad / conv_filter_grad, conv_transpose,
each selected framework's own backprop and autodiff, plus finite differences and the adjoint dot
test. With complex values (--dtype complex64 or complex128) each route says which gradient it
computes, the adjoint A^H dy (PyTorch's autograd, convgrad's default) or the transpose A^T dy
(jax.vjp, convention='transpose'), and is compared with conv_vjp's of that convention; routes whose
framework refuses complex are listed as not available, with the framework's message. Exit status 0
when everything agrees, 1 when something disagrees, 2 for bad arguments."""

STATUS_STYLE = {"pass": "green", "reference": "cyan", "FAIL": "bold red", "error": "bold red",
                "n/a": "dim"}
STATUS_SHOWN = {"reference": "ref"}
SECTIONS = {"d_x": "d_x, the input gradient", "d_w": "d_w, the filter gradient",
            "d_b": "d_b, the bias gradient", "finite differences": "finite differences (float64)",
            "dot test": "adjoint dot test"}
# Complex values: the sections' titles and each convention's sub-heading.
COMPLEX_SECTIONS = {"finite differences": "finite differences (complex128, Wirtinger: Re <d, v>)",
                    "dot test": "dot tests (adjoint: vdot; transpose: bilinear)"}
SUBHEADS = {"": "not available"}
SHOW_ARRAYS_UP_TO = 64  # elements: the seed's 4x4 input is printed, larger examples are not
# Checked by default: cheap to import. TensorFlow, JAX and ONNX when --frameworks asks.
DEFAULT_FRAMEWORKS = ("torch", "scipy")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("check", help="check that every way of computing the gradients agrees",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_geometry_arguments(p)
    o = p.add_argument_group("check")
    o.add_argument("--frameworks", default=",".join(DEFAULT_FRAMEWORKS), metavar="LIST",
                   help=f"comma-separated, from {','.join(_frameworks.FRAMEWORKS)}; 'all' or 'none' "
                   f"(default {','.join(DEFAULT_FRAMEWORKS)})")
    o.add_argument("--rtol", type=float, default=None,
                   help="tolerance on max rel error (default per dtype: " +
                   ", ".join(f"{k} {v:g}" for k, v in RTOL.items()) + ")")
    o.add_argument("--values", choices=("int", "normal"), default="int",
                   help="example arrays: random integers 0..9 as in the seed note (default), or normal")
    o.add_argument("--json", action="store_true", help="print the results as JSON")
    o.add_argument("--compile", action="store_true",
                   help="build the Numba kernels not built on this machine yet (once; minutes) and check "
                   "every engine; without it, engines whose kernels are not built are shown not available")
    return p


def run(ns: argparse.Namespace) -> int:
    from ..testing import check_routes, not_available
    from . import _routes

    args = GeometryArgs.from_namespace(ns)
    try:
        selected = _frameworks.parse(ns.frameworks)
    except ValueError as e:
        raise ArgumentError(str(e)) from None
    if ns.rtol is not None and not ns.rtol > 0:
        raise ArgumentError(f"--rtol must be positive, got {ns.rtol}")
    rtol = ns.rtol if ns.rtol is not None else RTOL[str(args.dtype)]
    g, fmt = args.geometry, args.data_format
    need = sum(math.prod(s) for s in (g.x_shape(fmt), g.w_shape(fmt), g.y_shape(fmt))) * args.dtype.itemsize
    limit = workspace_limit(None)
    if 4 * need > limit:
        raise ArgumentError(
            f"x, w and dy take {need:,} bytes; checking every route needs several copies of each, more "
            f"than the workspace budget of {limit:,} bytes allows: use smaller shapes or raise "
            f"${WORKSPACE_ENV}")
    problem = _routes.make_problem(args, ns.values)
    if args.op == "general":
        from . import _general

        if args.dtype.kind == "c":
            raise ArgumentError(f"--dtype {args.dtype} with --lhs-dilation or --batch-groups: check compares "
                                "real conv_general only")
        report = _general.check(args, problem, selected, rtol)
        return _render(report, args, selected, ns.json)

    if ns.compile:
        _compile(args.dtype)
    routes = _routes.core_routes(problem, compiled=ns.compile)
    if min(problem.x.size, problem.w.size, problem.dy.size) == 0:
        # Zero-size arrays: convgrad's own routes are checked; frameworks mostly refuse them.
        routes.append(not_available("d_x", "fronts and frameworks", "not checked on zero-size arrays"))
        run_frameworks: tuple[str, ...] = ()
    else:
        routes += _frameworks.front_routes(problem)
        run_frameworks = selected
    with _console.steps(len(routes) + 2 + 6 * len(run_frameworks), "check") as step:
        for name in run_frameworks:
            step(f"importing {name}")
            routes += _frameworks.routes(name, problem)
        # From here: the reference, each route, then finite differences and the dot test.
        if not args.bias:  # y = conv(x, w): no d_b rows
            routes = [r for r in routes if r.gradient != "d_b"]
        step.set_total(len(run_frameworks) + len(routes) + 2)
        report = check_routes(problem, routes, rtol, step)
    if not args.bias:  # nor its reference
        report.rows[:] = [r for r in report.rows if r.gradient != "d_b"]

    return _render(report, args, selected, ns.json)


def _compile(dtype: np.dtype) -> None:
    """Every compiled kernel for ``dtype``'s real compute dtype, built or loaded now."""
    from .._dtypes import result_dtype
    from ..engines import warm_up

    _, comp = result_dtype(np.zeros(0, dtype))
    real = np.dtype(comp.char.lower()).name
    if real in ("float32", "float64"):
        print(f"building convgrad's compiled kernels for {real} (once per machine; minutes)", file=sys.stderr)
        warm_up((real,))


def _render(report: CheckReport, args: GeometryArgs, selected: tuple[str, ...], as_json: bool) -> int:
    if as_json:
        _console.print_json(as_dict(report, args, selected))
    elif _console.has_rich():
        render(report, args, selected)
    else:
        render_plain(report, args, selected)
    return 0 if report.passed else 1


def as_dict(report: CheckReport, args: GeometryArgs, selected: tuple[str, ...]) -> dict:
    return {
        "command": "check",
        "geometry": geometry_dict(args),
        "rtol": report.rtol,
        "error_measures": {"max_abs_error": "max |route - reference|", "reference": "conv_vjp",
                           "max_rel_error": "max |route - reference| / max |reference|"},
        "frameworks": list(selected),
        "passed": report.passed,
        "counts": report.counts(),
        "rows": [dataclasses.asdict(r) for r in report.rows],
    }


def _summary(report: CheckReport, selected: tuple[str, ...]) -> tuple[str, str]:
    """The frameworks line and the verdict line, as both renderings print them."""
    counts = report.counts()
    checked = counts["pass"] + counts["FAIL"] + counts["error"]
    skipped = f" ({counts['n/a']} not available)" if counts["n/a"] else ""
    frameworks = "frameworks: " + (", ".join(selected) if selected else "none (--frameworks all to add them)")
    if report.complex:
        per = {c: sum(r.convention == c and r.status != "reference" for r in report.rows)
               for c in ("adjoint", "transpose")}
        skipped += f"; {per['adjoint']} as the adjoint A^H dy, {per['transpose']} as the transpose A^T dy"
    if report.passed:
        return frameworks, f"all {checked} checks agree{skipped}"
    bad = [f"{r.gradient} {r.method}" for r in report.rows if not r.ok]
    return frameworks, f"{len(bad)} of {checked} checks DISAGREE{skipped}: " + "; ".join(bad)


def render_plain(report: CheckReport, args: GeometryArgs, selected: tuple[str, ...]) -> None:
    """The same rows without rich (not installed): one line per route."""
    print(f"convgrad check: {args.title()}")
    print(f"tolerance: max rel error <= {report.rtol:g} (rel = max|route - ref| / max|ref|; "
          f"{_reference(report)})")
    for gradient, rows in itertools.groupby(report.rows, lambda r: r.gradient):
        print(_section_title(report, gradient))
        for r, head in _with_subheads(report, rows):
            if head:
                print(f" {head}")
            note = "" if r.status == "reference" else r.note
            errors = f"{_console.fmt_err(r.max_abs_error):>10} {_console.fmt_err(r.max_rel_error):>10}"
            print(f"  {r.method:<48} {errors}  {STATUS_SHOWN.get(r.status, r.status):<9} {note}".rstrip())
    print(*_summary(report, selected), sep="\n")
    print("(rich is not installed: `python -m pip install .` gives the full tables)")


def render(report: CheckReport, args: GeometryArgs, selected: tuple[str, ...]) -> None:
    from rich.table import Table
    from rich.text import Text

    con = _console.stdout()
    p = report.problem
    con.print(Text("convgrad check: ", style="bold") + Text(args.title()))
    if 0 < min(p.x.size, p.w.size, p.dy.size) and max(p.x.size, p.w.size, p.dy.size) <= SHOW_ARRAYS_UP_TO:
        _show_arrays(con, report)
    table = Table(title=f"tolerance: max rel error ≤ {report.rtol:g}  (rel = max|route − ref| / max|ref|; "
                  f"{_reference(report)})", title_justify="left", header_style="bold")
    for col, kw in (("method", {}), ("max abs err", {"justify": "right", "no_wrap": True}),
                    ("max rel err", {"justify": "right", "no_wrap": True}), ("result", {"no_wrap": True}),
                    ("note", {"no_wrap": True, "style": "dim"})):
        table.add_column(col, **kw)
    notes: dict[str, int] = {}
    for i, (gradient, rows) in enumerate(itertools.groupby(report.rows, lambda r: r.gradient)):
        if i:
            table.add_section()
        table.add_row(Text(_section_title(report, gradient), style="bold"))
        for r, head in _with_subheads(report, rows):
            if head:
                table.add_row(Text(f" {head}", style="italic"))
            note = "" if r.status == "reference" else r.note
            if r.rtol is not None and r.rtol != report.rtol and r.status not in ("n/a", "reference"):
                note = f"tolerance {r.rtol:g}" + (f"; {note}" if note else "")
            ref = f"[{notes.setdefault(note, len(notes) + 1)}]" if note else ""
            status = Text(STATUS_SHOWN.get(r.status, r.status), style=STATUS_STYLE.get(r.status, ""))
            errors = (_console.fmt_err(r.max_abs_error), _console.fmt_err(r.max_rel_error))
            table.add_row(r.method, *errors, status, ref)
    con.print(table)
    for text, n in notes.items():
        con.print(Text(f"[{n}] {text}", style="dim"))
    frameworks, verdict = _summary(report, selected)
    con.print(frameworks)
    con.print(Text(verdict, style="bold green" if report.passed else "bold red"))


def _reference(report: CheckReport) -> str:
    if report.rows and report.rows[0].method.startswith("conv_general_vjp"):
        return "ref = conv_general_vjp"
    return "ref = conv_vjp of the row's convention" if report.complex else "ref = conv_vjp"


def _with_subheads(report: CheckReport, rows: object) -> list[tuple[object, str]]:
    """(row, sub-heading or '') pairs: with complex values a heading opens each convention's rows."""
    from ..testing import CONVENTIONS

    out, last = [], None
    for r in rows:
        head = ""
        if report.complex and r.convention != last and r.gradient in ("d_x", "d_w", "d_b", "dot test"):
            head = {**CONVENTIONS, **SUBHEADS}[r.convention]
        last = r.convention
        out.append((r, head))
    return out


def _section_title(report: CheckReport, gradient: str) -> str:
    title = (COMPLEX_SECTIONS if report.complex else {}).get(gradient) or SECTIONS.get(gradient, gradient)
    if gradient in report.refs:
        title += f" {tuple(report.refs[gradient].shape)}"
    return title


def _show_arrays(con: object, report: CheckReport) -> None:
    """The seed's printout: x, w, dy and the reference gradients, squeezed to their spatial dims."""
    from rich.columns import Columns
    from rich.text import Text

    p = report.problem
    dx, dw = report.refs["d_x"], report.refs["d_w"]
    panels = []
    for name, a, kind in (("x", p.x, "x"), ("w", p.w, "w"), ("dy", p.dy, "x"), ("d_x", dx, "x"),
                          ("d_w", dw, "w")):
        # The spatial slice of the first batch / channel entries, its index written out.
        space = (slice(None),) * (a.ndim - 2)
        last = (0, *space, 0) if kind == "x" else (*space, 0, 0)
        idx = (0, 0, *space) if p.fmt == "channels_first" else last
        index = ", ".join(":" if isinstance(i, slice) else str(i) for i in idx)
        body = np.array2string(a[idx], precision=4, suppress_small=True)
        panels.append(Text(f"{name}[{index}] =\n", style="bold") + Text(body))
    con.print(Columns(panels, padding=(0, 3)))

