"""The docs site (mkdocs.yml): it builds with ``--strict``, the tutorial's pictures are what
docs/images/draw_tutorial.py draws, and every code block on every page runs (Python blocks in
order in one namespace a page, shell commands through a subprocess) or is listed in NOT_RUN with
the reason."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NAV_PAGE = re.compile(r"^\s*- .*?([\w/.-]+\.md)\s*$", re.M)
SNIPPET = re.compile(r'^--8<-- "([^":]+)(?::([\w-]+))?"\s*$', re.M)
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
SHELL = ("bash", "sh", "console", "shell")

# (page, the block's first line) -> why it is not run here. Keep this short.
NOT_RUN = {
    ("index.md", 'python -m pip install -e ".[docs]"'): "installs packages; the build it enables is "
    "test_the_site_builds_with_warnings_as_errors",
    ("getting-started.md", "python -m pip install .              # NumPy, SciPy, Numba, threadpoolctl, rich"):
        "installs packages",
    ("testing.md", 'python -m pip install -e ".[test]" && python -m pytest'): "installs packages and runs "
    "the whole suite: it is CI itself",
    ("dask.md", 'pip install "convgrad[dask]"     # dask[array], distributed and zarr'): "installs packages",
    ("dask.md", "import numpy as np"): "a 2-worker cluster and a 2.78 GiB volume (tests/dask/"
    "test_dask_cluster.py runs it with CONVGRAD_DASK_LARGE=1)",
    ("dask.md", "CONVGRAD_DASK_LARGE=1 python -m pytest -q tests/dask/test_dask_cluster.py -k larger -s"):
        "the large run itself: about 11 minutes",
    ("cli.md", "$ convgrad"): "imports every framework (~20 s); tests/cli/test_check.py runs the seed check",
    ("cli.md", "$ convgrad check --x 2,7,9,3 --w 3,2,3,4 --stride 2 --padding=1:2,0:1 --values normal "
     "--frameworks all"): "imports every framework; tests/cli/test_check.py runs this geometry",
    ("cli.md", "$ convgrad check --x 1,6,6,4 --w 3,3,2,4 --groups 2 --dilation 2 --padding same "
     "--dtype float32 --frameworks tf --json"):
        "imports TensorFlow (~10 s); tests/cli/test_check.py runs this command",
    ("cli.md", "$ convgrad bench --cases tiny_3x3 small_3x3_s2 small_depthwise --repeats 5 -o report.md "
     "--plot ratios.png"): "a benchmark run; tests/cli/test_bench.py runs the suite on tiny cases",
}


def nav() -> list[str]:
    """The pages in mkdocs.yml's nav, in order."""
    text = (ROOT / "mkdocs.yml").read_text()
    return NAV_PAGE.findall(text.split("\nnav:", 1)[1])


def expand(text: str) -> str:
    """The page as the site shows it: snippet lines replaced by the file, or its marked section."""
    def include(m: re.Match) -> str:
        body = (ROOT / m[1]).read_text()
        if m[2]:
            body = body.split(f"--8<-- [start:{m[2]}]", 1)[1].split(f"--8<-- [end:{m[2]}]", 1)[0]
            body = body.split("\n", 1)[1].rsplit("\n", 1)[0]  # drop the marker lines' remains
        return body
    return SNIPPET.sub(include, text)


def blocks(page: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of ``page`` with a language; untagged fences are output."""
    return [(lang, code) for lang, code in FENCE.findall(expand((DOCS / page).read_text())) if lang]


def first_line(code: str) -> str:
    return code.strip().splitlines()[0].strip()


PAGES = nav()


def test_the_nav_lists_every_page_and_every_block_is_known():
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert set(PAGES) == on_disk
    langs = {lang for page in PAGES for lang, _ in blocks(page)}
    assert langs <= {"python", *SHELL}, langs
    used = {(page, first_line(code)) for page in PAGES for _, code in blocks(page)}
    used |= {(page, f"$ {c}") for page in PAGES for c in commands_of(page)}
    assert set(NOT_RUN) <= used, set(NOT_RUN) - used  # no stale exception


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f",
                          str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    expected = {"index.html"} | {p.removesuffix(".md") + "/index.html" for p in PAGES if p != "index.md"}
    assert expected <= built
    # The reference has each public name of convgrad with its docstring's parameters.
    import convgrad

    api = (tmp_path / "site" / "api" / "convgrad" / "index.html").read_text()
    for name in convgrad.__all__:
        if name != "__version__":
            assert f'id="convgrad.{convgrad._HOMES[name]}.{name}"' in api, name
    assert api.count("Parameters:") >= 15
    # Every other reference page: each function and class in the __all__ of each module it documents.
    import importlib

    for page in sorted(set((DOCS / "api").glob("*.md")) - {DOCS / "api" / "convgrad.md"}):
        html = (tmp_path / "site" / "api" / page.stem / "index.html").read_text()
        for module in re.findall(r"^::: ([\w.]+)$", page.read_text(), flags=re.M):
            mod = importlib.import_module(module)
            for name in getattr(mod, "__all__", ()):
                if callable(getattr(mod, name)):
                    assert f'id="{module}.{name}"' in html, (page.name, module, name)


def test_the_api_page_lists_every_public_name():
    import convgrad

    text = (DOCS / "api" / "convgrad.md").read_text()
    listed = re.findall(r"^::: convgrad\.(\w+)\.(\w+)$", text, flags=re.M)
    assert sorted(n for _, n in listed) == sorted(n for n in convgrad.__all__ if n != "__version__")
    assert all(convgrad._HOMES[n] == home for home, n in listed)


def test_the_tutorial_pictures_are_what_the_script_draws(tmp_path):
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    spec = importlib.util.spec_from_file_location("draw_tutorial", DOCS / "images" / "draw_tutorial.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    drawn = script.draw_all(tmp_path)
    assert len(drawn) == 4
    tutorial = (DOCS / "tutorial.md").read_text()
    for path in drawn:
        assert f"(images/{path.name})" in tutorial
        with Image.open(path) as new, Image.open(DOCS / "images" / path.name) as old:
            assert new.size == old.size, path.name
            a, b = np.asarray(new.convert("RGB")), np.asarray(old.convert("RGB"))
        # Anti-aliased text may differ by a few levels with another FreeType; the cells may not.
        assert np.mean(np.abs(a.astype(int) - b).max(axis=-1) > 32) < 0.002, path.name


PYTHON_PAGES = [p for p in PAGES if any(lang == "python" and (p, first_line(code)) not in NOT_RUN
                                         for lang, code in blocks(p))]


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_blocks_run(page, tmp_path, monkeypatch, capsys):
    codes = [code for lang, code in blocks(page) if lang == "python"]
    if page == "conventions.md":
        # tests/fronts/test_conventions_doc.py runs these recipes against the real frameworks.
        spec = importlib.util.spec_from_file_location("conventions_doc", ROOT / "tests" / "fronts" /
                                                      "test_conventions_doc.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert sorted(codes) == sorted(code for _, code in module.BLOCKS)
        return
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__docs__"}
    ran = 0
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as a reader's script runs: a framework's notice is not an error
        for n, code in enumerate(codes):
            if (page, first_line(code)) in NOT_RUN:
                continue
            exec(compile(code, f"{page}, python block {n + 1}", "exec"), namespace)
            ran += 1
    assert ran


def commands_of(page: str) -> list[str]:
    """Every command of the page's shell blocks: '$ ' lines of a console transcript, each line of
    a bash block."""
    out = []
    for lang, code in blocks(page):
        if lang == "console":
            out += [line[2:] for line in code.splitlines() if line.startswith("$ ")]
        elif lang in SHELL:
            out += [line for line in code.splitlines() if line.strip() and not line.startswith("#")]
    return out


def transcript_status(page: str) -> dict[str, int]:
    """Console commands followed by ``$ echo $?`` and its answer: the status the page shows."""
    status = {}
    for lang, code in blocks(page):
        lines = code.splitlines()
        if lang != "console":
            continue
        last = None
        for i, line in enumerate(lines):
            if line == "$ echo $?" and last is not None and i + 1 < len(lines):
                status[last] = int(lines[i + 1])
            elif line.startswith("$ "):
                last = line[2:]
    return status


SHELL_CASES = [(page, cmd) for page in PAGES for cmd in commands_of(page) if cmd != "echo $?"]


def _skipped(page: str, cmd: str) -> bool:
    return (page, cmd) in NOT_RUN or (page, f"$ {cmd}") in NOT_RUN or any(
        page == p and first_line(code) == line and cmd in code for p, line in NOT_RUN
        for lang, code in blocks(page))


@pytest.mark.parametrize(("page", "cmd"), [c for c in SHELL_CASES if not _skipped(*c)])
def test_shell_commands_run(page, cmd, tmp_path, monkeypatch, capsys):
    """Each command as the page shows it, with the exit status its transcript shows (0 if none);
    ``convgrad`` and ``python -m convgrad`` run in this process (``convgrad.cli.main``)."""
    from convgrad.cli import main

    words = shlex.split(cmd)
    (tmp_path / "docs" / "images").mkdir(parents=True)  # cli.md draws into docs/images/
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "140")
    if words[0] == "convgrad":
        code = main(words[1:])
    elif words[:3] == ["python", "-m", "convgrad"]:
        code = main(words[3:])
    else:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
        words = [sys.executable, *words[1:]] if words[0] == "python" else words
        # A long timeout: it stops a hung command, not a slow one (CI shares its two cores).
        code = subprocess.run(words, cwd=tmp_path, env=env, timeout=600).returncode
    assert code == transcript_status(page).get(cmd, 0), capsys.readouterr()
