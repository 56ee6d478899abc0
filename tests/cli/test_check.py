"""``convgrad check`` through its entry point: exit codes, the table, --json."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import convgrad
from convgrad import _frameworks, testing
from convgrad.cli import _routes
from convgrad.cli.check import DEFAULT_FRAMEWORKS
from convgrad.testing import Route

SEED_DX_ROUTES = {
    "NumPy: dy dilated, padded, conv with flipped w", "identities.input_grad_via_conv",
    "conv_transpose(dy, w, output_shape=x.shape)", "torch autograd", "torch.nn.grad.conv2d_input",
    "torch conv_transpose2d", "scipy.signal.convolve(dy, w, 'full')",
}
SEED_DW_ROUTES = {
    "NumPy: conv of x with dy as kernel (N <-> C)", "identities.filter_grad_via_conv", "torch autograd",
    "torch.nn.grad.conv2d_weight", "scipy.signal.correlate(x, dy, 'valid')",
}


def rows_by(data: dict, gradient: str) -> dict[str, dict]:
    return {r["method"]: r for r in data["rows"] if r["gradient"] == gradient}


def test_no_arguments_is_the_seed_example(cli):
    res = cli()
    assert res.code == 0, res.out + res.err
    first = res.out.splitlines()[0]
    assert first.startswith("convgrad check: x 1x4x4x1 NHWC · w 3x3x1x1 HWIO · stride 1 · padding VALID")
    assert "→ y 1x2x2x1; float64" in first
    # The seed's printout of the arrays, then the table with its tolerance in the header.
    assert "x[0, :, :, 0] =" in res.out and "d_w[:, :, 0, 0] =" in res.out
    assert "tolerance: max rel error ≤ 1e-10" in res.out
    for method in SEED_DX_ROUTES | SEED_DW_ROUTES | {"conv_vjp (reference)", "conv_bias_grad(dy)"}:
        assert method in res.out, method
    assert "finite differences" in res.out and "dot test" in res.out
    assert not re.search(r"│\s*(FAIL|error)\s*│", res.out)
    assert "checks agree" in res.out.splitlines()[-1]


def test_seed_json_every_route_agrees_exactly(cli):
    res = cli("check", "--json")
    assert res.code == 0
    data = res.json()
    assert data["passed"] is True and data["rtol"] == 1e-10
    assert data["geometry"]["y_shape"] == [1, 2, 2, 1]
    assert data["geometry"]["padding"] == [[0, 0], [0, 0]]
    assert set(data["frameworks"]) == set(DEFAULT_FRAMEWORKS)
    d_x, d_w = rows_by(data, "d_x"), rows_by(data, "d_w")
    assert SEED_DX_ROUTES <= set(d_x) and SEED_DW_ROUTES <= set(d_w)
    # Integer-valued float64 arrays, as in the seed: every route is exact.
    for method in SEED_DX_ROUTES:
        assert d_x[method]["status"] == "pass" and d_x[method]["max_abs_error"] == 0.0, method
    for method in SEED_DW_ROUTES:
        assert d_w[method]["status"] == "pass" and d_w[method]["max_abs_error"] == 0.0, method
    engines = [m for m in d_x if m.startswith("conv_input_grad(method=")]
    assert len(engines) == len(convgrad.engine_names())
    kinds = {r["gradient"] for r in data["rows"]}
    assert kinds == {"d_x", "d_w", "d_b", "finite differences", "dot test"}
    assert data["counts"]["FAIL"] == data["counts"]["error"] == 0


def test_python_dash_m_convgrad_runs_the_seed_check():
    proc = subprocess.run([sys.executable, "-m", "convgrad", "--frameworks", "none"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "convgrad check: x 1x4x4x1 NHWC" in proc.stdout
    assert "checks agree" in proc.stdout


def test_the_demo_on_a_new_machine_compiles_nothing(tmp_path):
    """`python -m convgrad` right after install: with Numba's cache empty the engines whose kernels
    are not built are listed (with --compile to build them), nothing is compiled, all else agrees."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "convgrad", "--json"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["passed"] is True
    unbuilt = [r for r in data["rows"] if "not built on this machine yet" in r["note"]]
    assert unbuilt and all(r["status"] == "n/a" and "--compile" in r["note"] for r in unbuilt)
    tiled = {"conv_input_grad(method='tiled')", "conv_filter_grad(method='tiled')"}
    assert {r["method"] for r in unbuilt} >= tiled
    assert not list(tmp_path.rglob("*.nbi")), "the demo compiled kernels"


def test_compile_builds_and_checks_every_engine(cli):
    res = cli("check", "--compile", "--frameworks", "none", "--json")
    assert res.code == 0 and "building convgrad's compiled kernels for float64" in res.err
    rows = [r for r in res.json()["rows"] if "(method=" in r["method"]]
    assert len(rows) == 2 * len(convgrad.engine_names())
    for r in rows:  # each engine runs, or refuses this geometry for a reason of its own
        assert r["status"] == "pass" or (r["status"] == "n/a" and r["note"].startswith("engine: ")), r
    assert sum(r["status"] == "pass" for r in rows) >= 12
    # Built now: the plain command runs them too.
    again = cli("check", "--frameworks", "none", "--json").json()
    assert not [r for r in again["rows"] if "not built" in r["note"]]


@pytest.fixture
def wrong_route(monkeypatch):
    """Add a deliberately wrong d_x route to the core routes."""
    core = _routes.core_routes

    def with_wrong(p, **kw):
        def wrong(q):
            dx = convgrad.conv_input_grad(q.dy, q.w, q.x.shape, **q.kwargs)
            return dx * 1.001
        return [*core(p, **kw), Route("d_x", "deliberately wrong (x 1.001)", wrong)]

    monkeypatch.setattr(_routes, "core_routes", with_wrong)


def test_a_disagreeing_route_exits_1(cli, wrong_route):
    res = cli("check", "--frameworks", "none")
    assert res.code == 1
    line = next(ln for ln in res.out.splitlines() if "deliberately wrong" in ln)
    assert "FAIL" in line and "1.00e-03" in line  # max rel error of a 0.1% scaling
    assert "DISAGREE" in res.out.splitlines()[-1] and "deliberately wrong" in res.out.splitlines()[-1]


def test_a_disagreeing_route_in_json(cli, wrong_route):
    res = cli("check", "--frameworks", "none", "--json", "--values", "normal", "--x", "2,6,5,3",
              "--w", "3,2,3,4", "--stride", "2")
    assert res.code == 1
    data = res.json()
    assert data["passed"] is False and data["counts"]["FAIL"] == 1
    row = rows_by(data, "d_x")["deliberately wrong (x 1.001)"]
    assert row["status"] == "FAIL"
    assert row["max_rel_error"] == pytest.approx(1e-3, rel=1e-6)
    assert all(r["status"] != "FAIL" for r in data["rows"] if r is not row)


def test_a_route_that_raises_or_has_the_wrong_shape_fails(cli, monkeypatch):
    core = _routes.core_routes

    def broken(q):
        raise RuntimeError("boom")

    monkeypatch.setattr(_routes, "core_routes", lambda p, **kw: [
        *core(p, **kw), Route("d_w", "raises", broken),
        Route("d_w", "wrong shape", lambda q: np.zeros(3))])
    data = cli("check", "--frameworks", "none", "--json").json()
    d_w = rows_by(data, "d_w")
    assert d_w["raises"]["status"] == "error" and "RuntimeError: boom" in d_w["raises"]["note"]
    assert d_w["wrong shape"]["status"] == "FAIL" and "shape (3,)" in d_w["wrong shape"]["note"]
    assert data["passed"] is False


@pytest.mark.parametrize(("argv", "message"), [
    (["--x", "1,4,4", "--w", "3,3,1,1"], "same number of dims"),
    (["--padding", "sideways"], "padding 'sideways' not understood"),
    (["--padding=1:2:3"], "not understood"),
    (["--stride", "0"], "stride must be >= 1"),
    (["--stride", "two"], "not an int"),
    (["--x", "1,4,4,3", "--w", "3,3,1,4", "--groups", "2"], "channels"),
    (["--x", "1,2,2,1", "--w", "3,3,1,1"], "kernel larger than the padded input"),
    (["--frameworks", "torch,caffe"], "unknown framework"),
    (["--dtype", "int8"], "invalid choice"),
    (["--data-format", "NHCW"], "unknown data format"),
    (["--w", "3,3,1,1"], "--w needs --x"),
    (["--rtol", "0"], "--rtol must be positive"),
    (["--no-such-option"], "unrecognized arguments"),
    (["--seed", "-1"], "argument --seed: must be between 0 and"),
    (["--seed", str(2**64)], "argument --seed: must be between 0 and"),
    (["--seed", "1.5"], "argument --seed: '1.5' is not an int"),
])
def test_bad_arguments_exit_2_with_a_clear_message(cli, argv, message):
    res = cli("check", *argv)
    assert res.code == 2
    assert res.out == ""
    assert res.err.startswith("convgrad check: error: ")
    assert message in res.err
    assert "Traceback" not in res.err


def test_unknown_command_and_help(cli):
    res = cli("frobnicate")
    assert res.code == 2 and "invalid choice" in res.err
    res = cli("--help")
    assert res.code == 0 and "convgrad check" in res.out and "convgrad bench" in res.out
    res = cli("check", "--help")
    assert res.code == 0 and "--frameworks" in res.out and "--padding" in res.out
    res = cli("--version")
    assert res.code == 0 and convgrad.__version__ in res.out


@pytest.mark.parametrize("padding", ["valid", "same", "same_lower", "full", "1", "2,0", "1:2,0:1",
                                     "-1:2,2:-1", "0,1:0"])
def test_every_padding_kind_agrees(cli, padding):
    res = cli("check", "--frameworks", "none", "--json", "--values", "normal", "--x", "2,7,6,3",
              "--w", "3,2,3,4", "--stride", "2,1", f"--padding={padding}")
    assert res.code == 0, res.out
    data = res.json()
    geom = convgrad.ConvGeometry.for_conv((2, 7, 6, 3), (3, 2, 3, 4), stride=(2, 1),
                                          data_format="channels_last", padding=_as_core(padding))
    assert data["geometry"]["padding"] == [list(p) for p in geom.padding]
    assert data["geometry"]["y_shape"] == list(geom.y_shape("channels_last"))


def _as_core(text: str):
    if text.isalpha() or "_" in text:
        return text
    items = [tuple(int(v) for v in p.split(":")) if ":" in p else int(p) for p in text.split(",")]
    return items[0] if len(items) == 1 else items


@pytest.mark.parametrize(("x", "w", "extra"), [
    ("2,3,9", "4,3,3", ["--stride", "3", "--padding", "same_lower", "--dilation", "2", "--layout", "NCW"]),
    ("2,4,7,9", "4,2,3,2", ["--stride", "2,1", "--padding=-1:2,1:0", "--groups", "2", "--layout", "NCHW"]),
    ("1,5,6,7,2", "2,3,2,2,3", ["--stride", "2", "--padding", "full", "--dtype", "float32"]),
    ("1,4,4,5,3,2", "2,2,2,2,2,3", ["--stride", "2", "--padding", "1"]),
])
def test_torch_and_scipy_routes_across_geometries(cli, x, w, extra):
    pytest.importorskip("torch")
    data = cli("check", "--json", "--values", "normal", "--x", x, "--w", w, *extra).json()
    assert data["passed"] is True, [r for r in data["rows"] if r["status"] in ("FAIL", "error")]
    methods = {r["method"]: r for r in data["rows"]}
    rank = len(x.split(",")) - 2
    if rank <= 3:
        assert methods["torch autograd"]["status"] == "pass"
    else:  # a geometry PyTorch cannot express: reported, not an error
        row = methods["torch: every route"]
        assert row["status"] == "n/a" and "conv1d/2d/3d only" in row["note"]


def test_float16_uses_its_own_tolerance(cli):
    data = cli("check", "--json", "--dtype", "float16", "--frameworks", "scipy", "--values", "normal").json()
    assert data["rtol"] == 1e-2 and data["passed"] is True
    row = rows_by(data, "d_x")["scipy.signal.convolve(dy, w, 'full')"]
    assert "float32" in row["note"]


def test_a_missing_framework_is_reported_not_an_error(cli, monkeypatch):
    real = _frameworks.installed
    monkeypatch.setattr(_frameworks, "installed", lambda name: False if name == "jax" else real(name))
    res = cli("check", "--frameworks", "jax,scipy")
    assert res.code == 0
    line = next(ln for ln in res.out.splitlines() if "jax: every route" in ln)
    assert "n/a" in line
    ref = line.split("│")[-2].strip()  # the note's footnote number, e.g. [3]
    assert f"{ref} not installed (pip install jax)" in res.out
    data = cli("check", "--frameworks", "jax,scipy", "--json").json()
    assert rows_by(data, "d_x")["jax: every route"]["note"] == "not installed (pip install jax)"


def test_every_framework_on_one_geometry(cli):
    """TensorFlow's explicit pads, JAX's vjp and linear_transpose, ONNX's ConvTranspose: all agree,
    or say why they cannot run (onnxruntime in float32 is held to float32's tolerance)."""
    res = cli("check", "--frameworks", "all", "--json", "--values", "normal", "--x", "2,7,9,3",
              "--w", "3,2,3,4", "--stride", "2", "--padding=1:2,0:1")
    assert res.code == 0, res.out
    rows = res.json()["rows"]
    assert not [r for r in rows if r["status"] in ("FAIL", "error")]
    methods = {(r["gradient"], r["method"]): r for r in rows}
    expected = {
        "torch": ("d_x", "torch.nn.grad.conv2d_input"), "tf": ("d_x", "tf.raw_ops.Conv2DBackpropInput"),
        "jax": ("d_w", "jax.linear_transpose(conv in w)"), "onnx": ("d_x", "onnx.reference ConvTranspose"),
        "scipy": ("d_w", "scipy.signal.correlate(x, dy, 'valid')"),
    }
    for name, key in expected.items():
        if _frameworks.installed(name):
            assert methods[key]["status"] == "pass", (name, methods[key])
        else:
            assert methods[("d_x", f"{name}: every route")]["status"] == "n/a"
    if _frameworks.installed("onnx"):
        ort = methods[("d_x", "onnxruntime ConvTranspose")]
        assert ort["rtol"] == testing.RTOL["float32"] and "float32" in ort["note"]


def test_tensorflow_limits_are_reported(cli):
    pytest.importorskip("tensorflow")
    data = cli("check", "--frameworks", "tf", "--json", "--x", "1,6,6,4", "--w", "3,3,2,4",
               "--groups", "2").json()
    assert data["passed"] is True
    tf_rows = [r for r in data["rows"] if r["method"].startswith("tf")]
    assert tf_rows and all(r["status"] == "n/a" for r in tf_rows)
    assert all("grouped" in r["note"] for r in tf_rows)


def test_a_framework_that_fails_to_load_is_reported(cli, monkeypatch):
    def broken(p):
        raise ImportError("libsomething.so: cannot open shared object file")

    monkeypatch.setattr(_frameworks.module("scipy"), "routes", broken)
    data = cli("check", "--frameworks", "scipy", "--json").json()
    row = rows_by(data, "d_x")["scipy: every route"]
    assert row["status"] == "n/a" and row["note"].startswith("failed to load: ImportError: libsomething")
    assert data["passed"] is True


@pytest.mark.parametrize(("x", "w"), [("0,4,4,1", "3,3,1,1"), ("1,4,4,0", "3,3,0,2")])
def test_zero_size_arrays(cli, x, w):
    data = cli("check", "--x", x, "--w", w, "--frameworks", "all", "--json").json()
    assert data["passed"] is True
    assert rows_by(data, "d_x")["fronts and frameworks"]["status"] == "n/a"


def test_too_large_for_the_budget_is_an_argument_error(cli):
    res = cli("check", "--x", "64,512,512,64", "--w", "3,3,64,64")
    assert res.code == 2 and "workspace budget" in res.err


def test_help_loads_no_engine_framework_or_matplotlib():
    """`convgrad --help` builds every subcommand's parser: that must import none of the engines,
    the planner, the real frameworks or matplotlib beyond what `import convgrad` itself loads."""
    code = (
        "import sys, convgrad; before = set(sys.modules)\n"
        "from convgrad.cli import build_parser; build_parser().format_help()\n"
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.split()
    assert "convgrad.cli.check" in loaded and "convgrad.cli.bench" in loaded  # the test sees the CLI load
    heavy = ("convgrad.engines", "convgrad._plan", "convgrad._ops", "convgrad._general",
             "convgrad.identities", "torch", "tensorflow", "jax", "onnx", "onnxruntime", "matplotlib",
             "numba", "scipy")
    assert not [m for m in loaded if m.split(".")[0] in heavy or m.startswith(heavy)]


def test_check_routes_reports_each_route_against_conv_vjp():
    """The library's check: an exact route passes, a scaled one fails by its scale, one that
    raises is an error row, and finite differences and the dot test are appended."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((4, 2, 3, 2))
    kw = {"stride": (2, 1), "padding": [(1, 0), (0, 1)], "groups": 2}
    dy = rng.standard_normal(convgrad.conv(x, w, **kw).shape)
    p = testing.Problem(x, w, rng.standard_normal(4), dy, kw)

    def oracle_dx(q):  # d_x from the definition: the transpose of the Jacobian, column by column
        dx = np.zeros(q.x.size)
        for i in range(q.x.size):
            e = np.zeros(q.x.size)
            e[i] = 1
            dx[i] = np.vdot(convgrad.conv(e.reshape(q.x.shape), q.w, **kw), q.dy)
        return dx.reshape(q.x.shape)

    def boom(q):
        raise RuntimeError("boom")

    routes = [Route("d_x", "oracle", oracle_dx), Route("d_x", "scaled", lambda q: 1.01 * oracle_dx(q)),
              Route("d_w", "raises", boom), testing.not_available("d_b", "absent", "why")]
    report = testing.check_routes(p, routes)
    rows = {r.method: r for r in report.rows}
    assert report.rtol == testing.RTOL["float64"]
    assert rows["oracle"].status == "pass" and rows["oracle"].max_rel_error < 1e-12
    assert rows["scaled"].status == "FAIL" and rows["scaled"].max_rel_error == pytest.approx(0.01, rel=1e-9)
    assert rows["raises"].status == "error" and "RuntimeError: boom" in rows["raises"].note
    assert rows["absent"].status == "n/a" and rows["absent"].note == "why"
    assert [r.gradient for r in report.rows][-4:] == ["finite differences"] * 2 + ["dot test"] * 2
    assert not report.passed and report.counts() == {"pass": 5, "FAIL": 1, "error": 1, "n/a": 1}


def test_an_end_pad_that_only_crops_unused_samples_is_expressed_natively(cli):
    """Padding (0, -1) on an axis of 10 with k 3, s 3 crops a sample no window reaches: the conv is
    the one with pads (0, 0), so PyTorch, TensorFlow and ONNX take it without the pad-first
    workaround, and every route agrees."""
    pytest.importorskip("torch")
    data = cli("check", "--frameworks", "all", "--json", "--values", "normal", "--x", "2,10,10,4",
               "--w", "3,3,4,4", "--stride", "3", "--padding=0:-1,1:1").json()
    assert data["passed"] is True, [r for r in data["rows"] if r["status"] in ("FAIL", "error")]
    methods = {(r["gradient"], r["method"]): r for r in data["rows"]}
    for key in (("d_x", "torch.nn.grad.conv2d_input"), ("d_x", "tf.raw_ops.Conv2DBackpropInput"),
                ("d_x", "onnx.reference ConvTranspose")):
        if key in methods:
            assert methods[key]["status"] == "pass" and "padded first" not in methods[key]["note"], key
            assert "cropped first" not in methods[key]["note"], key
