"""convgrad in an interpreter without Numba, rich and threadpoolctl (declared dependencies that an
install may have skipped): the library still computes through its NumPy engines, and the demo
(``python -m convgrad``, the seed's check) still runs and prints plain text.

Each case runs in a subprocess in which importing those packages fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

TESTS = os.path.dirname(__file__)
BLOCK = "import sys\nfor m in ('numba', 'rich', 'threadpoolctl'):\n    sys.modules[m] = None\n"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, cwd=TESTS)


def test_the_demo_runs_and_agrees_in_plain_text():
    done = _run("""
        from convgrad.__main__ import main
        raise SystemExit(main([]))
    """)
    assert done.returncode == 0, done.stderr
    assert "checks agree" in done.stdout and "DISAGREE" not in done.stdout
    assert "rich is not installed" in done.stdout
    assert "conv_input_grad(method='depthwise')" in done.stdout  # the compiled kernels, as plain Python


def test_commands_that_need_rich_say_so():
    done = _run("""
        from convgrad.__main__ import main
        raise SystemExit(main(["explain"]))
    """)
    assert done.returncode == 2
    assert "needs rich" in done.stderr and "pip install" in done.stderr


def test_the_library_matches_the_oracle_without_numba():
    done = _run("""
        import json
        import numpy as np
        import convgrad, oracle
        from convgrad.engines import _kernels
        rng = np.random.default_rng(0)
        x, w = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((4, 1, 3, 3))
        want = oracle.conv(x, w, padding=1, groups=4)
        errors = {m: float(np.abs(convgrad.conv(x, w, padding=1, groups=4, method=m) - want).max())
                  for m in ("auto", "depthwise", "im2col")}
        geom = convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding=1, groups=4)
        plan = convgrad.make_plan("forward", geom, np.float64, "auto", 2**31)
        print(json.dumps({"numba": _kernels.NUMBA, "errors": errors, "engine": plan.engine.name}))
    """)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["numba"] is False
    assert out["engine"] != "depthwise"  # plain-Python loops are never the planner's choice
    assert all(e < 1e-12 for e in out["errors"].values()), out
