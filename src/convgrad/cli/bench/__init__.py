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
        description="Time forward, input gradient and filter gradient of each case, convgrad in both "
        "layouts against each installed framework (every result is checked first), and print the "
        "ratios convgrad time / framework time (below 1: convgrad is faster): channels-last against "
        "every framework, channels-first against PyTorch and against channels-last. The steady "
        "state (calls back to back) is the headline; the paused timing is kept in the report.")
    p.add_argument("--cases", nargs="+", metavar="CASE",
                   help=f"cases to run (default: the suite, {', '.join(c.name for c in suite.CASES)}); "
                   f"also: {', '.join(c.name for c in suite.EXTRA_CASES)}")
    p.add_argument("--frameworks", default="all", metavar="LIST",
                   help=f"comma-separated, from {','.join(suite.FRAMEWORKS)}; 'all' (default: the "
                   "installed ones) or 'none' (convgrad alone)")
    p.add_argument("--repeats", type=count(1, 10_000), default=7,
                   help="paused timed rounds per op (default 7)")
    p.add_argument("--calls", type=count(1, 10_000), default=15,
                   help="steady-state timed calls per op and contestant, back to back (default 15)")
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
                rows.extend(suite.run_case(case, ns.repeats, present, step, ns.calls))
            except AssertionError as e:
                err.print(Text(f"convgrad bench: {e}", style="bold red"))
                return 1
    peak = None if ns.no_peak else suite.gemm_peak(min(ns.repeats, 3))
    if ns.json:
        _console.print_json({"command": "bench", "frameworks": list(present), "repeats": ns.repeats,
                             "calls": ns.calls, "gemm_gflops": peak, "rows": rows,
                             "geometric_means": {f"{op}/{fw}": v for (op, fw), v in
                                                 report.geometric_means(rows).items()},
                             "channels_first_means": {f"{op}/{title}": v for (op, title), v in
                                                      report.cf_means(rows).items()}})
    else:
        render(rows, ns.repeats, peak, ns.calls)
    try:
        if ns.output:
            with open(ns.output, "w", encoding="utf-8") as f:
                f.write("# Benchmarks: convgrad against the frameworks (CPU)\n\n"
                        + report.report(rows, ns.repeats, peak, ns.calls))
        if ns.plot:
            report.ratio_chart(rows, ns.plot)
    except OSError as e:
        raise ArgumentError(f"{e.filename or ns.output}: {e.strerror or e}") from None
    written = [p for p in (ns.output, ns.plot) if p]
    if written and not ns.json:
        _console.stdout().print(f"wrote {', '.join(written)}")
    return 0


def render(rows: list[dict], repeats: int, peak: float | None, calls: int | None = None) -> None:
    """convgrad's steady-state times in both layouts and the ratios (every framework's own times
    and the paused timing: the report, or --json)."""
    con = _console.stdout()
    con.print(Text(report.environment(repeats, peak, calls), style="dim"))
    fws = report.ratio_frameworks(rows)
    cfs = [c for c in report.CF_RATIOS if any(report.cf_value(r, c[0], c[1]) is not None for r in rows)]
    short = {"CF / torch NCHW": "CF÷torch", "CF / torch channels_last": "CF÷torch_cl", "CF / CL": "CF÷CL"}
    table = Table(title="÷ fw: convgrad channels-last (CL) time / the framework's best time; CF: convgrad "
                  "channels-first (below 1: convgrad is faster)", title_justify="left", header_style="bold")
    for col in ("case", "op", "engine", "CL ms", "CF ms", *(short[c[2]] for c in cfs),
                *(f"÷ {fw}" for fw in fws), "GFLOP/s"):
        table.add_column(col, justify="left" if col in ("case", "op", "engine") else "right", no_wrap=True)
    last = None
    for r in rows:
        if last is not None and r["case"] != last:
            table.add_section()
        shown = r["case"] if r["case"] != last else ""
        last = r["case"]
        table.add_row(shown, r["op"], r["engine"], _ms(r["ms"]["convgrad"]), _ms(r["ms"].get("convgrad_cf")),
                      *[_ratio(report.cf_value(r, key, variant)) for key, variant, _ in cfs],
                      *[_ratio(r["ratio"].get(fw)) for fw in fws], report.rate(r["gflops"]))
    means, cmeans = report.geometric_means(rows), report.cf_means(rows)
    if means or cmeans:
        table.add_section()
        for i, op in enumerate(suite.OPS):
            table.add_row("geometric mean" if i == 0 else "", op, "", "", "",
                          *[_ratio(cmeans.get((op, c[2]))) for c in cfs],
                          *[_ratio(means.get((op, fw))) for fw in fws], "")
    con.print(table)
    for case in suite.get_cases(dict.fromkeys(r["case"] for r in rows)):
        con.print(Text(f"{case.name}: {case.describe()}", style="dim"))
    if fws:
        con.print(Text("every framework's own times: -o report.md or --json", style="dim"))


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}" if v < 10 else f"{v:.1f}"


def _ratio(v: float | None) -> Text:
    if v is None:
        return Text("—")
    return Text(f"{v:.2f}", style="green" if v <= 1 else ("yellow" if v <= 2 else "red"))
