"""Shared helpers for the command-line tests: run ``convgrad.cli.main`` and capture its output."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

# Pictures are drawn off-screen; convgrad.cli.draw uses the Agg canvas directly, this keeps any
# matplotlib import on Agg as well.
os.environ.setdefault("MPLBACKEND", "Agg")

from convgrad.cli import main


@pytest.fixture(autouse=True)
def _wide_output(monkeypatch):
    """Tables are as wide as $COLUMNS when captured: fix it, so no test depends on the terminal."""
    monkeypatch.setenv("COLUMNS", "140")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys):
    """cli("check", "--x", ...) -> Result(code, stdout, stderr)."""

    def run(*argv: str) -> Result:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def spell(value) -> str:
    """A stride, dilation or padding value as the command line writes it."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    parts = []
    for v in value:
        parts.append(f"{v[0]}:{v[1]}" if isinstance(v, (tuple, list)) else str(v))
    return ",".join(parts)


def geometry_argv(x_shape, w_shape, kwargs: dict) -> list[str]:
    argv = ["--x", ",".join(map(str, x_shape)), "--w", ",".join(map(str, w_shape))]
    for name in ("stride", "padding", "dilation"):
        if name in kwargs:
            argv.append(f"--{name}={spell(kwargs[name])}")
    if "groups" in kwargs:
        argv += ["--groups", str(kwargs["groups"])]
    argv += ["--data-format", kwargs.get("data_format", "channels_first")]
    return argv
