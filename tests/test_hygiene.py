"""The code's own upkeep, checked on every run: the docstring examples run and print what they
show, ruff finds nothing, ``import convgrad`` loads no engine, and every public module lists
only its API.
"""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import convgrad

ROOT = Path(__file__).resolve().parents[1]

PUBLIC_MODULES = (
    "convgrad", "convgrad.engines", "convgrad.identities", "convgrad.layouts", "convgrad.testing",
    "convgrad.testing.strategies",
    "convgrad.translate", "convgrad.tf", "convgrad.tf.nn", "convgrad.torch", "convgrad.torch.nn",
    "convgrad.torch.nn.functional", "convgrad.torch.nn.grad", "convgrad.jax", "convgrad.jax.lax",
    "convgrad.onnx", "convgrad.scipy", "convgrad.scipy.signal",
)


def _examples() -> list[doctest.DocTest]:
    """Every docstring example reachable from the public modules and their ``__all__``."""
    finder, found = doctest.DocTestFinder(), {}
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        exported = [(f"{name}.{n}", getattr(module, n)) for n in getattr(module, "__all__", ())]
        objects = [(name, module), *exported]
        for label, obj in objects:
            if isinstance(obj, type(convgrad)) and label != name:
                continue  # a submodule: visited under its own name
            home = sys.modules[getattr(obj, "__module__", None) or name]  # examples see their module
            for test in finder.find(obj, label, module=home, globs=dict(vars(home))):
                if test.examples:
                    found.setdefault((test.filename, test.lineno), test)
    return sorted(found.values(), key=lambda t: t.name)


EXAMPLES = _examples()


def test_the_public_api_has_examples():
    names = {t.name.rsplit(".", 1)[-1] for t in EXAMPLES}
    assert {"conv", "conv_transpose", "conv_general"} <= names, sorted(names)


@pytest.mark.parametrize("test", EXAMPLES, ids=lambda t: t.name)
def test_docstring_example_runs(test: doctest.DocTest):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    out: list[str] = []
    result = runner.run(test, out=out.append)
    assert result.failed == 0, "".join(out)


def test_ruff_finds_nothing():
    pytest.importorskip("ruff")  # installed with the test extras
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "src", "tests", "benchmarks", "examples"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _fresh(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_import_loads_no_engine_numba_or_fft():
    loaded = _fresh(
        "import sys, json, convgrad\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('numba', 'scipy', 'convgrad')))))"
    )
    heavy = [m for m in loaded if m.startswith(("numba", "scipy.fft", "convgrad.engines."))]
    assert not heavy, heavy


def test_subpackages_are_attributes_after_import():
    names = ("testing", "translate", "layouts", "identities", "engines", "tf", "torch", "jax", "onnx",
             "scipy")
    found = _fresh(
        "import json, convgrad\n"
        f"print(json.dumps({{n: getattr(convgrad, n).__name__ for n in {names!r}}}))"
    )
    assert found == {n: f"convgrad.{n}" for n in names}


def test_a_missing_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        convgrad.nope  # noqa: B018


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_dir_lists_the_api_only(name: str):
    module = importlib.import_module(name)
    public = {n for n in dir(module) if not n.startswith("_")}
    submodules = {n for n in public if getattr(getattr(module, n), "__name__", "") == f"{name}.{n}"}
    assert public - submodules <= set(getattr(module, "__all__", ())), sorted(
        public - submodules - set(getattr(module, "__all__", ())))
    assert "annotations" not in public


def test_no_type_ignore_comments():
    """No type checker runs over src/, so a ``type: ignore`` would silence nothing."""
    marker = "# type: " + "ignore"
    found = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "src").rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if marker in line]
    assert not found, found
