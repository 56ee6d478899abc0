"""Output: rich consoles for tables, a progress bar on stderr, JSON on stdout.

rich is imported where it is used: without it (an interpreter that skipped the install) ``check``
still prints its results as plain text and JSON needs nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def has_rich() -> bool:
    return importlib.util.find_spec("rich") is not None


def require(what: str, *modules: str) -> None:
    """Raise an ArgumentError saying what to install when one of ``modules`` does not import."""
    from ._args import ArgumentError

    try:
        for m in modules:
            __import__(m)
    except ImportError:
        raise ArgumentError(f"{what} needs {' and '.join(modules)}, which are not installed: "
                            "pip install 'convgrad[draw]'") from None


def stdout() -> Console:
    """Tables to stdout; when not a terminal, $COLUMNS wide or 140, so captured output is stable."""
    from rich.console import Console

    tty = sys.stdout.isatty()
    columns = os.environ.get("COLUMNS", "")
    width = None if tty else max(int(columns), 60) if columns.isdigit() else 140
    return Console(file=sys.stdout, width=width, highlight=False, markup=False, soft_wrap=not tty)


def stderr() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False)


class Steps:
    """A progress bar of named steps on stderr (``progress`` None: silent): ``step(name)`` starts
    the next one."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress, self._done = progress, -1
        self._task = progress.add_task("", total=total) if progress else None

    def __call__(self, name: str = "") -> None:
        self._done += 1
        if self._progress is not None:
            self._progress.update(self._task, completed=self._done, description=name or None)

    def set_total(self, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total)


@contextlib.contextmanager
def steps(total: int, label: str) -> Iterator[Steps]:
    """Steps on stderr when it is a terminal and rich is installed."""
    if not has_rich() or not sys.stderr.isatty():
        yield Steps(None, total)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(f"[bold]{label}[/] {{task.description:<44}}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=stderr(), transient=True) as progress:
        s = Steps(progress, total)
        yield s
        s()  # the last step done


def _clean(value: object) -> object:
    """JSON has no inf or nan: they become strings; tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(value: object, level: int = 0) -> str:
    """JSON, indented by objects; lists of numbers (shapes, pads) stay on one line."""
    inner = "  " * (level + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {dumps(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) and v for v in value) and not all(
            isinstance(v, list) and not any(isinstance(i, (dict, list)) for i in v) for v in value):
        items = [inner + dumps(v, level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * level + "]"
    return json.dumps(value)


def print_json(data: dict) -> None:
    sys.stdout.write(dumps(_clean(data)) + "\n")


def fmt_err(v: float | None) -> str:
    """An error for the tables: a dash when not computed, 0 when exact."""
    return "—" if v is None else "0" if v == 0 else f"{v:.2e}"
