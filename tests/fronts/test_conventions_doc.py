"""docs/conventions.md: every recipe (each ```python block) runs against the real libraries, and
the filter-layout table says what ``convgrad.layouts.filter_layout`` says."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from convgrad.layouts import filter_layout

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DOC = Path(__file__).resolve().parents[2] / "docs" / "conventions.md"
TEXT = DOC.read_text()
BLOCKS = re.findall(r"^### (.+?)\n.*?^```python\n(.*?)^```", TEXT, flags=re.S | re.M)


def test_there_are_recipes():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize(("title", "code"), BLOCKS, ids=[t for t, _ in BLOCKS])
def test_recipe_runs(title, code, capsys):
    exec(compile(code, f"{DOC.name}: {title}", "exec"), {"__name__": "recipe"})


def test_layout_table_matches_filter_layout():
    section = TEXT.split("## Filter layouts", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith(("| conv", "| depthwise"))]
    assert len(rows) == 3
    for row in rows:
        op, *cells = [c.strip().strip("`") for c in row.strip("|").split("|")]
        assert cells == [filter_layout(f, op, 2) for f in ("tf", "torch", "onnx", "jax")], row
