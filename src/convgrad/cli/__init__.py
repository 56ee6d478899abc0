"""The ``convgrad`` command: check, explain, draw, bench.

A thin shell over the library: each subcommand parses its arguments into the core's values
(``_args``), asks the library, and prints. ``main(argv)`` returns the exit status: 0 success
(for ``check``: everything agrees), 1 a disagreement or failed run, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from . import _console
from ._args import ArgumentError

COMMANDS = ("check", "explain", "draw", "bench")

DESCRIPTION = """\
Convolution gradients, every way, for any geometry.

  convgrad check    every way of computing d_x, d_w, d_b: do they agree? (the default command;
                    without arguments, the seed note's 1x4x4x1 input, 3x3 filter, VALID)
  convgrad explain  the resolved geometry, each gradient's formula, costs, the planner's choice,
                    and the same call in PyTorch, TensorFlow, JAX and ONNX
  convgrad draw     a picture of the op: the padded, dilated input, the kernel window, the output
  convgrad bench    convgrad against the installed frameworks, with a ratio chart

Run `convgrad COMMAND --help` for the options."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() returns the status."""

    def error(self, message: str) -> None:
        raise ArgumentError(f"{message}\n{self.format_usage().strip()}")


def build_parser() -> argparse.ArgumentParser:
    from . import check

    modules = [check]
    if _console.has_rich():  # explain, draw and bench print rich tables; check can print plain text
        from . import bench, draw, explain

        modules += [explain, draw, bench]
    parser = _Parser(prog="convgrad", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"convgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in modules:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "check")  # `convgrad` alone, or `convgrad --x ...`, is `convgrad check`
    command = args[0] if args[0] in COMMANDS else None
    try:
        parser = build_parser()
        if command not in (None, "check") and not _console.has_rich():
            raise ArgumentError(f"`convgrad {command}` needs rich, a declared dependency that is not "
                                "installed here: run `python -m pip install .`")
        ns = parser.parse_args(args)
        return importlib.import_module(f"{__name__}.{ns.command}").run(ns)
    except ArgumentError as e:
        print(f"convgrad{' ' + command if command else ''}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["main"]
