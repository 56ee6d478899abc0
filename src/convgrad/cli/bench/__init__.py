"""``convgrad bench``: the benchmark suite (``suite``) against the installed frameworks, with a
progress bar, a table, a markdown report and a ratio chart (``report``)."""

from __future__ import annotations

import argparse
import os

from rich.table import Table
from rich.text import Text

from ... import _frameworks
from .. import _console
from .._args import ArgumentError, count, output_file
from . import report, suite


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench", help="time convgrad against the installed frameworks",
        description="Time forward, input gradient and filter gradient of each case, convgrad against "
        "each installed framework (every result is checked first), and print the ratios "
        "convgrad time / framework time (below 1: convgrad is faster).")
    p.add_argument("--cases", nargs="+", metavar="CASE",
                   help=f"cases to run (default: the suite, {', '.join(c.name for c in suite.CASES)}); "
                   f"also: {', '.join(c.name for c in suite.EXTRA_CASES)}")
    p.add_argument("--frameworks", default="all", metavar="LIST",
                   help=f"comma-separated, from {','.join(suite.FRAMEWORKS)}; 'all' (default: the "
                   "installed ones) or 'none' (convgrad alone)")
    p.add_argument("--repeats", type=count(1, 10_000), default=7, help="timed rounds per op (default 7)")
    p.add_argument("-o", "--output", metavar="REPORT.md", help="write the report as markdown")
    p.add_argument("--plot", metavar="RATIOS.png", help="draw the ratio chart (needs matplotlib)")
    p.add_argument("--no-peak", action="store_true", help="skip the NumPy GEMM reference timing")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    return p


def run(ns: argparse.Namespace) -> int:
    try:
        cases = suite.get_cases(ns.cases)
        frameworks = _frameworks.parse(ns.frameworks, suite.FRAMEWORKS)
    except ValueError as e:
        raise ArgumentError(str(e)) from None
    present = tuple(f for f in frameworks if _frameworks.installed(f))
    if ns.plot:
        if os.path.splitext(ns.plot)[1].lower() not in (".png", ".svg", ".pdf"):
            raise ArgumentError(f"--plot {ns.plot!r}: the file name must end in .png, .svg or .pdf")
        _console.require("--plot", "matplotlib")
    for option, path in (("-o", ns.output), ("--plot", ns.plot)):
        if path:
            output_file(option, path)
    err = _console.stderr()
    for f in () if ns.frameworks.strip().lower() == "all" else frameworks:  # 'all': the installed ones
        if f not in present:
            err.print(f"{f}: not installed, skipped (pip install {_frameworks.module(f).PIP})")
    rows: list[dict] = []
    with _console.steps(3 * len(cases), "bench") as step:
        for case in cases:
            try:
                rows.extend(suite.run_case(case, ns.repeats, present, step))
            except AssertionError as e:
                err.print(Text(f"convgrad bench: {e}", style="bold red"))
                return 1
    peak = None if ns.no_peak else suite.gemm_peak(min(ns.repeats, 3))
    if ns.json:
        _console.print_json({"command": "bench", "frameworks": list(present), "repeats": ns.repeats,
                             "gemm_gflops": peak, "rows": rows,
                             "geometric_means": {f"{op}/{fw}": v for (op, fw), v in
                                                 report.geometric_means(rows).items()}})
    else:
        render(rows, ns.repeats, peak)
    try:
        if ns.output:
            with open(ns.output, "w", encoding="utf-8") as f:
                f.write("# Benchmarks: convgrad against the frameworks (CPU)\n\n"
                        + report.report(rows, ns.repeats, peak))
        if ns.plot:
            report.ratio_chart(rows, ns.plot)
    except OSError as e:
        raise ArgumentError(f"{e.filename or ns.output}: {e.strerror or e}") from None
    written = [p for p in (ns.output, ns.plot) if p]
    if written and not ns.json:
        _console.stdout().print(f"wrote {', '.join(written)}")
    return 0


def render(rows: list[dict], repeats: int, peak: float | None) -> None:
    """convgrad's time and the ratio to each framework (its times: the report, or --json)."""
    con = _console.stdout()
    con.print(Text(report.environment(repeats, peak), style="dim"))
    fws = report.ratio_frameworks(rows)
    table = Table(title="÷ fw: convgrad time / the framework's best time (below 1: convgrad is faster)",
                  title_justify="left", header_style="bold")
    for col in ("case", "op", "engine", "convgrad ms", *(f"÷ {fw}" for fw in fws), "GFLOP/s"):
        table.add_column(col, justify="left" if col in ("case", "op", "engine") else "right", no_wrap=True)
    last = None
    for r in rows:
        if last is not None and r["case"] != last:
            table.add_section()
        shown = r["case"] if r["case"] != last else ""
        last = r["case"]
        ms = r["ms"]["convgrad"]
        table.add_row(shown, r["op"], r["engine"], f"{ms:.3g}" if ms < 10 else f"{ms:.1f}",
                      *[_ratio(r["ratio"].get(fw)) for fw in fws], report.rate(r["gflops"]))
    means = report.geometric_means(rows)
    if means:
        table.add_section()
        for i, op in enumerate(suite.OPS):
            table.add_row("geometric mean" if i == 0 else "", op, "", "",
                          *[_ratio(means.get((op, fw))) for fw in fws], "")
    con.print(table)
    for case in suite.get_cases(dict.fromkeys(r["case"] for r in rows)):
        con.print(Text(f"{case.name}: {case.describe()}", style="dim"))
    if fws:
        con.print(Text("every framework's own times: -o report.md or --json", style="dim"))


def _ratio(v: float | None) -> Text:
    if v is None:
        return Text("—")
    return Text(f"{v:.2f}", style="green" if v <= 1 else ("yellow" if v <= 2 else "red"))
