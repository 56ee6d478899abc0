"""Forward, input gradient and filter gradient: convgrad against PyTorch on the same machine.

Run: ``python benchmarks/bench_core.py [--repeats 7] [--calls 15] [--cases ...]
[--frameworks torch,tf,jax] [--contention] [--write BENCHMARKS.md]`` (``convgrad bench`` is the same
suite with a
progress bar and a chart).
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where set on a machine, slow NumPy's BLAS; to measure
without them, unset both in the benchmark's own command (and say so in the report).

The suite itself (cases, checking, timing) is ``convgrad.cli.bench.suite``, the report
``convgrad.cli.bench.report``; each framework's contestants are in ``convgrad._frameworks``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from convgrad import _frameworks
from convgrad.cli.bench import report, suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="paused rounds per op")
    parser.add_argument("--calls", type=int, default=15, help="steady-state calls per op and contestant")
    parser.add_argument("--cases", nargs="*", default=[c.name for c in suite.CASES],
                        help=f"any of {', '.join(c.name for c in (*suite.CASES, *suite.EXTRA_CASES))}")
    parser.add_argument("--frameworks", default="torch",
                        help=f"comma-separated, from {','.join(suite.FRAMEWORKS)}")
    parser.add_argument("--contention", action="store_true",
                        help="time each row again beside one competing busy process")
    parser.add_argument("--write", metavar="FILE", help="write the report (markdown) to FILE")
    args = parser.parse_args()
    frameworks = _frameworks.parse(args.frameworks, suite.FRAMEWORKS)
    rows = []
    for case in suite.get_cases(args.cases):
        rows.extend(suite.run_case(case, args.repeats, frameworks, calls=args.calls,
                                   contend=args.contention))
        print(f"done {case.name}", flush=True)
    text = report.report(rows, args.repeats, suite.gemm_peak(args.repeats), args.calls)
    print(text)
    if args.write:
        title = ", ".join(_frameworks.module(f).TITLE for f in frameworks)
        section = (f"## convgrad against {title} (CPU), {time.strftime('%Y-%m-%d')}\n\n"
                   f"Command: `{command(args, frameworks)}`. {report.METHOD}\n\n" + text)
        path = Path(args.write)
        path.write_text(report.replace_section(path.read_text() if path.exists() else "", section))


def command(args: argparse.Namespace, frameworks: list[str]) -> str:
    """The command line that made the report, with ``--cases`` where the run left cases out (a
    table of some rows was written under the command of the whole suite)."""
    every = [c.name for c in suite.CASES]
    cases = "" if list(args.cases) == every else f" --cases {' '.join(args.cases)}"
    return (f"python benchmarks/bench_core.py --frameworks {','.join(frameworks)} --repeats {args.repeats} "
            f"--calls {args.calls}{cases}{' --contention' * args.contention} --write {args.write}")


if __name__ == "__main__":
    main()
