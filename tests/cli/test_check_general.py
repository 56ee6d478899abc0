"""``convgrad check`` / ``explain`` with conv_general's options (--lhs-dilation, --feature-groups,
--batch-groups): every route (the reduced conv written out in NumPy, the convgrad.jax front,
jax.vjp of lax.conv_general_dilated, PyTorch's autograd through the zero insertion, finite
differences, the dot test) agrees with conv_general_vjp over random geometries; a wrong reference
is caught; bad values exit 2 naming the option."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from hypothesis import assume, given

from convgrad.cli import _general, main
from strategies import budget, general_cases

from .test_printed_calls import general_argv, is_general

pytest.importorskip("torch")
pytest.importorskip("jax")


@budget(8)
@given(general_cases(min_batch=1))
def test_every_route_agrees_on_random_conv_general_geometries(case):
    assume(is_general(case))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["check", "--json", "--frameworks", "torch,jax", "--values", "normal",
                     *general_argv(case)])
    assert code == 0, out.getvalue()
    report = json.loads(out.getvalue())
    rows = report["rows"]
    ran = {row["method"].split(":")[0].split("(")[0] for row in rows if row["status"] == "pass"}
    assert {"jax.vjp", "torch autograd", "NumPy", "convgrad.jax lax.conv_general_dilated.vjp"} <= ran
    assert {row["gradient"] for row in rows} == {"d_x", "d_w", "finite differences", "dot test"}
    assert report["geometry"]["batch_groups"] == case.kwargs["batch_group_count"]


@pytest.mark.parametrize("scale", [{"d_x": 1.01}, {"d_w": 0.99}])
def test_a_wrong_reference_is_caught_by_every_independent_route(cli, monkeypatch, scale):
    real = _general.conv_general_vjp

    def off(*args, **kwargs):
        y, vjp = real(*args, **kwargs)
        return y, lambda dy: tuple(g * scale.get(n, 1.0) for n, g in zip(("d_x", "d_w"), vjp(dy)))

    monkeypatch.setattr(_general, "conv_general_vjp", off)
    r = cli("check", "--json", "--frameworks", "torch,jax", "--x", "4,2,5,5", "--lhs-dilation", "2,1",
            "--padding", "1:0,0:2", "--stride", "2", "--batch-groups", "2")
    assert r.code == 1
    (name,) = scale
    bad = {row["method"] for row in r.json()["rows"] if row["gradient"] == name and row["status"] == "FAIL"}
    assert len(bad) == 4, bad  # NumPy, the front, jax, torch


def test_feature_groups_is_groups(cli):
    a = cli("explain", "--json", "--x", "1,4,6", "--feature-groups", "2", "--lhs-dilation", "2")
    b = cli("explain", "--json", "--x", "1,4,6", "--groups", "2", "--lhs-dilation", "2")
    assert a.code == b.code == 0
    assert a.json()["geometry"] == b.json()["geometry"]
    assert a.json()["geometry"]["groups"] == 2 and a.json()["geometry"]["w_shape"] == [4, 2, 3]


@pytest.mark.parametrize("argv, message", [
    (["--lhs-dilation", "0"], "--lhs-dilation must be >= 1"),
    (["--lhs-dilation", "x"], "argument --lhs-dilation: 'x' is not an int"),
    (["--lhs-dilation", "2,2,2"], "--lhs-dilation"),
    (["--batch-groups", "3"], "--batch-groups=3 does not divide batch=4"),
    (["--batch-groups", "0"], "--batch-groups"),
    (["--batch-groups", "2", "--feature-groups", "2"],
     "--feature-groups=2 and --batch-groups=2: at most one"),
    (["--lhs-dilation", "2", "--padding", "same"], "write pads such as --padding 1"),
    (["--lhs-dilation", "2", "--op", "transpose"], "--lhs-dilation and --batch-groups are conv_general's"),
    (["--lhs-dilation", "2", "--padding-mode", "reflect", "--padding", "1"], "--padding-mode"),
    (["--lhs-dilation", "2", "--dtype", "complex128"], "--dtype complex128 with --lhs-dilation"),
    (["--lhs-dilation", "2", "--padding=-4"], "the output 4x2x0 is empty"),
])
def test_bad_conv_general_values_exit_2_naming_the_option(cli, argv, message):
    for command in ("check", "explain"):
        r = cli(command, "--x", "4,2,5", *argv)
        if command == "explain" and "complex" in message:
            continue  # explain describes complex conv_generals
        assert r.code == 2, (command, r.out, r.err)
        assert message in r.err, r.err
        assert "Traceback" not in r.err
