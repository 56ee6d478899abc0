"""``convgrad check --padding-mode``: the routes that can fill the pads with a mode run it (the
core's vjp and engines, the identities on x extended by ``np.pad``, PyTorch's ``nn.ConvNd(
padding_mode=...)`` / ``F.pad`` autograd, ``jax.vjp`` through ``jnp.pad``, SciPy's routes on x
extended by ``scipy.ndimage.map_coordinates`` in SciPy's name of the mode, TensorFlow's on
``tf.pad``), the others are listed with why; finite differences and the dot test run the mode."""

from __future__ import annotations

import numpy as np
import pytest

import convgrad
from convgrad.cli import _routes
from convgrad.testing import Route

pytest.importorskip("jax")
pytest.importorskip("torch")

# What each framework calls the mode, written out here (scipy.ndimage: its 'reflect' is NumPy's
# 'symmetric', its 'mirror' NumPy's 'reflect').
NUMPY = {"reflect": "reflect", "symmetric": "symmetric", "replicate": "edge", "circular": "wrap"}
SCIPY = {"reflect": "mirror", "symmetric": "reflect", "replicate": "nearest", "circular": "grid-wrap"}
TORCH = {"reflect", "replicate", "circular"}

CASES = [
    ("reflect", ["--x", "1,2,5,6", "--w", "3,2,3,3", "--stride", "2", "--padding=1:2,2:1"]),
    ("symmetric", ["--x", "2,4,6", "--w", "2,2,3", "--groups", "2", "--padding", "2", "--dilation", "2",
                   "--layout", "NCW"]),
    ("edge", ["--x", "1,1,4,5", "--w", "1,1,2,3", "--padding", "same", "--layout", "NCHW"]),
    ("circular", ["--x", "1,5,5,2", "--w", "3,3,2,2", "--padding", "1", "--stride", "2,1"]),
]


def rows(data: dict, gradient: str) -> dict[str, dict]:
    return {r["method"]: r for r in data["rows"] if r["gradient"] == gradient and r["status"] != "reference"}


@pytest.mark.parametrize(("mode", "argv"), CASES)
def test_each_mode_agrees_on_every_route_that_can_run_it(cli, mode, argv):
    res = cli("check", *argv, "--padding-mode", mode, "--frameworks", "torch,jax,scipy", "--values",
              "normal", "--json")
    data = res.json()
    mode = {"edge": "replicate"}.get(mode, mode)
    assert data["geometry"]["padding_mode"] == mode
    assert res.code == 0 and data["passed"], [r for r in data["rows"] if r["status"] in ("FAIL", "error")]
    for gradient in ("d_x", "d_w"):
        by = rows(data, gradient)
        ran = {m for m, r in by.items() if r["status"] == "pass"}
        assert f"NumPy: {'dy dilated' if gradient == 'd_x' else 'conv of x'}" in " ".join(ran)
        assert sum(f"on np.pad(x, mode='{NUMPY[mode]}')" in m for m in ran) == 2
        engine = "conv_input_grad(method=" if gradient == "d_x" else "conv_filter_grad(method="
        assert any(m.startswith(engine) for m in ran)
        assert any(f"jnp.pad(x, mode='{NUMPY[mode]}')" in m for m in ran)
        assert any(f"map_coordinates(x, mode='{SCIPY[mode]}')" in m for m in ran)
        torch_rows = [m for m in ran if m.startswith("torch")]
        if mode in TORCH:
            assert len(torch_rows) == 1 and (f"padding_mode='{mode}'" in torch_rows[0]
                                             or f"F.pad(x, mode='{mode}')" in torch_rows[0])
        else:
            assert torch_rows == []
            assert "PyTorch has no 'symmetric' mode" in by["torch autograd"]["note"]
        # The routes that cannot fill the pads are listed, not hidden, and say why.
        assert by[f"torch.nn.grad.conv{len(data['geometry']['x_shape']) - 2}d_" +
                  ("input" if gradient == "d_x" else "weight")]["status"] == "n/a"
        assert "padding mode" in by["jax.vjp(lax.conv_general_dilated)"]["note"]
    if mode != "symmetric":  # torch's d_b too
        assert any(m.startswith("torch") for m, r in rows(data, "d_b").items() if r["status"] == "pass")
    checks = [r for r in data["rows"] if r["gradient"] in ("finite differences", "dot test")]
    assert len(checks) == 4 and all(r["status"] == "pass" for r in checks)


def test_a_route_that_ignores_the_mode_is_flagged(cli, monkeypatch):
    """The zero-padded gradient is wrong for a reflect-padded conv: the check says so."""
    core = _routes.core_routes

    def with_zeros(p, **kw):
        def zero_padded(q):
            kw = {k: v for k, v in q.kwargs.items() if k != "padding_mode"}
            return convgrad.conv_input_grad(q.dy, q.w, q.x.shape, **kw)

        return [*core(p, **kw), Route("d_x", "zero-padded conv_input_grad", zero_padded)]

    monkeypatch.setattr(_routes, "core_routes", with_zeros)
    res = cli("check", "--x", "1,1,5,5", "--w", "1,1,3,3", "--padding", "1", "--padding-mode", "reflect",
              "--frameworks", "none")
    assert res.code == 1 and "zero-padded conv_input_grad" in res.out.splitlines()[-1]


def test_tensorflow_pads_reflect_and_symmetric_and_says_why_not_the_others(cli):
    pytest.importorskip("tensorflow")
    argv = ["check", "--x", "1,5,6,2", "--w", "3,3,2,2", "--padding=2:1,1:2", "--frameworks", "tf", "--json"]
    data = cli(*argv, "--padding-mode", "symmetric").json()
    assert data["passed"]
    ran = [m for m, r in rows(data, "d_x").items() if r["status"] == "pass" and m.startswith("tf.")]
    assert ran and all(m.endswith("on tf.pad(x, mode='SYMMETRIC')") for m in ran)
    data = cli(*argv, "--padding-mode", "circular").json()
    tf_rows = [r for m, r in rows(data, "d_x").items() if m.startswith("tf.")]
    assert tf_rows
    assert all(r["status"] == "n/a" and "tf.pad has no 'circular' mode" in r["note"] for r in tf_rows)


@pytest.mark.parametrize(("spelling", "mode"), [
    ("edge", "replicate"), ("wrap", "circular"), ("REFLECT", "reflect"), ("scipy:mirror", "reflect"),
    ("scipy:reflect", "symmetric"), ("onnx:edge", "replicate"), ("constant", "zeros")])
def test_every_framework_spelling_is_read(cli, spelling, mode):
    data = cli("explain", "--x", "1,1,5,5", "--w", "1,1,3,3", "--padding", "1", "--padding-mode", spelling,
               "--json").json()
    assert data["geometry"]["padding_mode"] == mode


@pytest.mark.parametrize(("argv", "message"), [
    (["--padding-mode", "mirror"], "--padding-mode scipy:mirror"),
    (["--padding-mode", "bogus"], "unknown padding_mode='bogus'"),
    (["--padding-mode", "tf:edge"], "tf has no mode 'edge'"),
    (["--x", "1,1,3,3", "--w", "1,1,3,3", "--padding", "3", "--padding-mode", "reflect"],
     "each pad smaller than the input size"),
    (["--x", "1,1,3,3", "--w", "1,1,1,1", "--padding=-1:0,0:0", "--padding-mode", "replicate"],
     "cannot crop"),
])
def test_bad_modes_exit_2_naming_the_option(cli, argv, message):
    res = cli("check", *argv, "--frameworks", "none")
    assert res.code == 2 and message in res.err, res.err
    assert "Traceback" not in res.err


def test_the_mode_is_in_the_title_and_zeros_changes_nothing(cli):
    res = cli("check", "--x", "1,1,4,4", "--w", "1,1,3,3", "--padding", "1", "--padding-mode", "circular",
              "--frameworks", "none")
    assert res.code == 0 and "padding_mode circular" in res.out.splitlines()[0]
    plain = cli("check", "--json", "--frameworks", "none").json()
    zeros = cli("check", "--json", "--frameworks", "none", "--padding-mode", "zeros").json()
    assert plain["rows"] == zeros["rows"] and np.isclose(plain["rtol"], zeros["rtol"])
