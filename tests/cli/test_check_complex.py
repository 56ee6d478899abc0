"""``convgrad check --dtype complex64|complex128``: each route names the complex gradient it
computes, the adjoint A^H dy (PyTorch autograd, convgrad's default) or the transpose A^T dy
(jax.vjp, ``convention='transpose'``), and is held to that convention's reference; routes whose
framework refuses complex are listed with the framework's own message."""

from __future__ import annotations

import numpy as np
import pytest

import convgrad
from convgrad import testing
from convgrad.cli import _routes
from convgrad.testing import Route

pytest.importorskip("jax")

# The convention each kind of route computes, named independently of the code under test: PyTorch's
# autograd conjugates (A^H dy); JAX's vjp and every transposed conv do not (A^T dy).
TRANSPOSE = ("jax.vjp", "jax.linear_transpose", "convgrad.jax", "conv_transpose", "identities.",
             "NumPy: dy dilated", "NumPy: conv of x")
ADJOINT = ("torch autograd", "convgrad.torch conv", "conv_input_grad(method=", "conv_filter_grad(method=")


def expected_convention(method: str) -> str:
    if "conv_transpose" in method or method.startswith(TRANSPOSE):
        return "transpose"
    assert method.startswith(ADJOINT), f"route {method!r} of unknown convention"
    return "adjoint"

GEOMETRIES = [
    ("complex128", ["--x", "1,2,5,5", "--w", "4,1,3,3", "--groups", "2", "--stride", "2", "--padding", "1"]),
    ("complex64", ["--x", "2,3,7", "--w", "2,3,2", "--stride", "2", "--dilation", "2", "--padding=1:0"]),
    ("complex128", ["--op", "transpose", "--x", "1,2,3,3", "--w", "2,3,2,2", "--stride", "2",
                    "--output-padding", "1", "--layout", "channels_first"]),
]


def rows(data: dict, gradient: str) -> dict[str, dict]:
    return {r["method"]: r for r in data["rows"] if r["gradient"] == gradient and r["status"] != "reference"}


@pytest.mark.parametrize(("dtype", "argv"), GEOMETRIES)
def test_every_route_agrees_in_its_own_convention(cli, dtype, argv):
    res = cli("check", *argv, "--dtype", dtype, "--frameworks", "torch,jax", "--values", "normal", "--json")
    data = res.json()
    assert res.code == 0 and data["passed"], [r for r in data["rows"] if r["status"] not in ("pass", "n/a",
                                                                                               "reference")]
    for gradient in ("d_x", "d_w"):
        by_method = rows(data, gradient)
        compared = {m: r for m, r in by_method.items() if r["status"] == "pass"}
        # Both conventions are represented, each by convgrad and a real framework.
        assert {r["convention"] for r in compared.values()} == {"adjoint", "transpose"}
        for method, r in compared.items():
            assert r["convention"] == expected_convention(method), method
        assert compared["torch autograd"]["convention"] == "adjoint"
        assert compared["jax.vjp(lax.conv_general_dilated)"]["convention"] == "transpose"
        # torch.nn.grad has no complex kernels: listed as not available, with PyTorch's message.
        rank = len(data["geometry"]["x_shape"]) - 2
        refused = by_method[f"torch.nn.grad.conv{rank}d_" + ("input" if gradient == "d_x" else "weight")]
        assert refused["status"] == "n/a"
        assert "PyTorch refuses complex" in refused["note"]
        assert "not implemented for 'Complex" in refused["note"]
    # Each convention has its own reference, and they differ (the values have imaginary parts).
    refs = [r for r in data["rows"] if r["status"] == "reference" and r["gradient"] == "d_x"]
    assert {r["convention"] for r in refs} == {"adjoint", "transpose"}
    dots = {r["method"]: r for r in data["rows"] if r["gradient"] == "dot test"}
    assert {r["convention"] for r in dots.values()} == {"adjoint", "transpose"}
    assert all(r["status"] == "pass" for r in dots.values())


def test_the_table_names_each_convention(cli):
    res = cli("check", *GEOMETRIES[0][1], "--dtype", "complex64", "--frameworks", "torch,jax")
    assert res.code == 0, res.out
    assert "adjoint A^H dy: PyTorch autograd" in res.out
    assert "transpose A^T dy: jax.vjp, convention='transpose'" in res.out
    assert "conv_vjp(convention='transpose') (reference)" in res.out
    assert "Wirtinger" in res.out
    last = res.out.splitlines()[-1]
    assert "checks agree" in last and "as the adjoint A^H dy" in last and "as the transpose A^T dy" in last


def _problem(seed: int = 3) -> testing.Problem:
    rng = np.random.default_rng(seed)

    def c(*shape):
        return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)

    return testing.Problem(c(1, 2, 6, 6), c(3, 2, 3, 3), c(3), c(1, 3, 2, 2), {"stride": 2, "padding": 0})


def _dx(q, convention):
    return convgrad.conv_input_grad(q.dy, q.w, q.x.shape, convention=convention, **q.kwargs)


def _dw(q, convention):
    return convgrad.conv_filter_grad(q.x, q.dy, q.w.shape, convention=convention, **q.kwargs)


@pytest.mark.parametrize("gradient", ["d_x", "d_w"])
def test_a_route_in_the_wrong_convention_is_flagged(gradient):
    """A route labelled with one convention that computes the other, or the conjugate of its own,
    fails; labelled right, the same values pass."""
    grad = _dx if gradient == "d_x" else _dw
    routes = [
        Route(gradient, "adjoint, right", lambda q: grad(q, "adjoint")),
        Route(gradient, "transpose, right", lambda q: grad(q, "transpose"), convention="transpose"),
        Route(gradient, "says adjoint, computes transpose", lambda q: grad(q, "transpose")),
        Route(gradient, "says transpose, computes adjoint", lambda q: grad(q, "adjoint"),
              convention="transpose"),
        Route(gradient, "conjugated adjoint", lambda q: np.conj(grad(q, "adjoint"))),
    ]
    report = testing.check_routes(_problem(), routes)
    status = {r.method: r.status for r in report.rows if r.gradient == gradient}
    assert status["adjoint, right"] == status["transpose, right"] == "pass"
    for method in ("says adjoint, computes transpose", "says transpose, computes adjoint",
                   "conjugated adjoint"):
        assert status[method] == "FAIL", method
    # The errors are of the size of the values: the imaginary parts are compared, not dropped.
    bad = next(r for r in report.rows if r.method == "conjugated adjoint")
    assert bad.max_rel_error > 0.1


def test_a_framework_route_in_the_wrong_convention_fails_the_command(cli, monkeypatch):
    core = _routes.core_routes

    def with_conjugated(p, **kw):
        wrong = Route("d_x", "conj(conv_input_grad)", lambda q: np.conj(_dx(q, "adjoint")))
        return [*core(p, **kw), wrong]

    monkeypatch.setattr(_routes, "core_routes", with_conjugated)
    res = cli("check", "--x", "1,1,4,4", "--w", "1,1,3,3", "--dtype", "complex128", "--frameworks", "none")
    assert res.code == 1
    assert "DISAGREE" in res.out.splitlines()[-1] and "conj(conv_input_grad)" in res.out.splitlines()[-1]


def test_refused_routes_are_not_available_not_errors():
    """TensorFlow and ONNX have no complex convs: their routes are n/a with their own reasons."""
    from convgrad import _frameworks

    p = _problem()
    reasons = {}
    for name in ("tf", "onnx"):
        if not _frameworks.installed(name):
            continue
        report = testing.check_routes(p, _frameworks.routes(name, p))
        mine = [r for r in report.rows if r.status != "reference" and r.gradient in ("d_x", "d_w", "d_b")]
        assert mine and all(r.status == "n/a" for r in mine), [(r.method, r.status, r.note) for r in mine]
        reasons[name] = " ".join(r.note for r in mine)
    if "tf" in reasons:
        assert "TensorFlow refuses complex" in reasons["tf"] and "complex128" in reasons["tf"]
    if "onnx" in reasons:
        assert "tensor(double)" in reasons["onnx"] and "no complex" in reasons["onnx"]


def test_explain_says_what_each_framework_does_with_complex(cli):
    data = cli("explain", "--x", "1,2,5,5", "--w", "4,2,3,3", "--dtype", "complex64", "--json").json()
    assert data["costs"]["dtype"] == "complex64"
    assert any("A^T dy" in n and "A^H dy" in n for n in data["notes"])
    notes = {name: " ".join(fw.get("limitations", [])) for name, fw in data["frameworks"].items()}
    assert "adjoint A^H dy" in notes["torch"] and "NotImplementedError" in notes["torch"]
    assert "transpose A^T dy" in notes["jax"]
    assert "float and double only" in notes["tf"] and "float and double only" in notes["onnx"]
    text = cli("explain", "--x", "1,2,5,5", "--w", "4,2,3,3", "--dtype", "complex128").out
    assert "complex128" in text.splitlines()[0] and "complex values:" in text
    real = cli("explain", "--x", "1,2,5,5", "--w", "4,2,3,3", "--json").json()
    assert real["notes"] == []
    assert "complex" not in " ".join(real["frameworks"]["torch"].get("limitations", []))
