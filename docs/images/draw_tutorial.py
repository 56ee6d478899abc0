"""Draw the tutorial's pictures: each op of one conv (8x8 input, 3x3 kernel, stride 2, padding 1,
channels-last as in the seed note) with ``convgrad draw``. The tests check that this reproduces the
committed PNGs (tests/docs/test_site.py).

    python docs/images/draw_tutorial.py [OUT_DIR]      # default: this folder
"""

from __future__ import annotations

import sys
from pathlib import Path

from convgrad.cli import main

GEOMETRY = ["--layout", "NHWC", "--w", "3,3,1,1", "--stride", "2", "--padding", "1"]
PICTURES = {  # file name -> the op and its input: the transposed conv maps the 4x4 dy back to 8x8
    "tutorial-forward.png": ["--op", "forward", "--x", "1,8,8,1"],
    "tutorial-input-grad.png": ["--op", "input-grad", "--x", "1,8,8,1"],
    "tutorial-transpose.png": ["--op", "transpose", "--x", "1,4,4,1", "--output-shape", "8,8"],
    "tutorial-filter-grad.png": ["--op", "filter-grad", "--x", "1,8,8,1"],
}


def draw_all(out: Path) -> list[Path]:
    """Write every picture into ``out``; returns their paths."""
    paths = []
    for name, argv in PICTURES.items():
        path = out / name
        if main(["draw", *GEOMETRY, *argv, "-o", str(path)]) != 0:
            raise SystemExit(f"convgrad draw failed for {name}")
        paths.append(path)
    return paths


if __name__ == "__main__":
    draw_all(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
