"""The command's GEOMETRY options (issue 18): the layout it assumes (said in the first line; both
readings valid -> channels_first, the library's default, with a warning), one separator rule for
every shape-like option with hints, transposed convs (--op transpose, --output-padding,
--output-shape), --no-bias, and explain's short form against --full."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from hypothesis import given

import convgrad
import oracle
from convgrad.cli import main
from strategies import budget, transpose_cases

from .conftest import spell


def geometry(cli, *argv: str) -> tuple[dict, str]:
    res = cli("explain", "--json", "--framework", "jax", *argv)
    assert res.code == 0, res.err
    return res.json()["geometry"], res.err


@pytest.mark.parametrize(("argv", "fmt", "warned"), [
    (["--x", "1,3,8,8"], "channels_first", True),  # C=3 of 8x8, or C=8 of 3x8: both fit
    (["--x", "1,3,8,8", "--w", "4,3,3,3"], "channels_first", False),  # OIHW: only NCHW fits
    (["--x", "1,8,8,3", "--w", "3,3,3,4"], "channels_last", False),  # HWIO: only NHWC fits
    (["--x", "1,3,3,3", "--w", "3,3,3,3"], "channels_first", True),  # 3x3 images, 3 channels
    (["--x", "1,3,8,8", "--layout", "NHWC"], "channels_last", False),
    (["--x", "1,4,4,1"], "channels_last", False),  # NCHW would be a 4x1 image under a 3x3 kernel
    ([], "channels_last", False),  # the seed note's example
])
def test_the_layout_assumed_is_said_and_an_ambiguous_one_warns(cli, argv, fmt, warned):
    geo, err = geometry(cli, *argv)
    assert geo["data_format"] == fmt
    assert ("fit both layouts" in err) is warned
    # The shapes read in that layout are the core's: y as ConvGeometry computes it there.
    g = convgrad.ConvGeometry.for_conv(geo["x_shape"], geo["w_shape"], data_format=fmt)
    assert geo["y_shape"] == list(g.y_shape(fmt))
    res = cli("explain", "--framework", "jax", *argv)
    first = res.out.splitlines()[0]
    assert f"[{fmt}: " in first and geo["layout_source"] in first
    if warned:
        assert "the library's default" in first and "--layout channels_last" in res.err


def test_a_layout_error_names_the_reading_whose_channels_agree(cli):
    res = cli("check", "--x", "1,2,2,1", "--w", "3,3,1,1")  # NHWC channels agree; the kernel is too big
    assert res.code == 2 and "kernel larger than the padded input" in res.err


XW = ["--x", "2,7,9,3", "--w", "3,2,3,4"]


@pytest.mark.parametrize(("a", "b"), [
    (["--x", "1x4x4x1"], ["--x", "1,4,4,1"]),
    (["--x", "2,7,9,3", "--w", "3x2x3x4", "--stride", "2x1"], [*XW, "--stride", "2,1"]),
    ([*XW, "--dilation", "1x2"], [*XW, "--dilation", "1,2"]),
    ([*XW, "--padding", "1x2"], [*XW, "--padding", "1,2"]),
    ([*XW, "--padding=1:2x0:1"], [*XW, "--padding=1:2,0:1"]),
    ([*XW, "--padding", "1 : 2, 0 :1"], [*XW, "--padding=1:2,0:1"]),  # spaces around ':' and ','
    ([*XW, "--padding", " 1 :2x0: 1 "], [*XW, "--padding=1:2,0:1"]),
])
def test_one_separator_rule_for_every_shape_like_option(cli, a, b):
    assert geometry(cli, *a)[0] == geometry(cli, *b)[0]


@pytest.mark.parametrize(("argv", "hint"), [
    (["--stride", "2:1"], "did you mean 2,1?"),
    (["--x", "1,7,9,3", "--w", "3,2,3,4", "--padding", "1,2:0,1"], "did you mean --padding=1:2,0:1"),
    (["--x", "1,four,4,1"], "1,4,4,1 or 1x4x4x1"),
])
def test_hints_show_the_accepted_spelling(cli, argv, hint):
    res = cli("check", *argv)
    assert res.code == 2 and "Traceback" not in res.err
    assert hint in res.err


def _transpose_argv(case) -> list[str]:
    kw = case.kwargs
    argv = ["--op", "transpose", "--x", ",".join(map(str, case.x_shape)),
            "--w", ",".join(map(str, case.w_shape)), f"--stride={spell(kw['stride'])}",
            f"--padding={spell(kw['padding'])}", f"--dilation={spell(kw['dilation'])}",
            "--groups", str(kw["groups"]), "--layout", kw["data_format"]]
    if "output_padding" in kw:
        argv.append(f"--output-padding={spell(kw['output_padding'])}")
    if "output_shape" in kw:
        argv.append(f"--output-shape={spell(tuple(kw['output_shape']))}")
    return argv


@budget(25)
@given(transpose_cases(ranks=(1, 2), min_batch=1))
def test_op_transpose_explains_the_conv_it_transposes(case):
    """explain --op transpose: the conv whose input gradient conv_transpose(x, w) is; its input is the
    transposed conv's output, sized as the oracle's scatter loop sizes it."""


    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["explain", "--json", "--framework", "torch", *_transpose_argv(case)]) == 0
    geo = json.loads(out.getvalue())["geometry"]
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    assert geo["x_shape"] == list(case.oracle(x, w).shape)
    assert geo["y_shape"] == list(case.x_shape) and geo["transpose_x_shape"] == list(case.x_shape)
    assert geo["op"] == "transpose"


@pytest.mark.parametrize("argv", [
    ["--x", "1,4,4,3", "--w", "3,3,2,3", "--stride", "2", "--padding", "same", "--output-shape", "8,8"],
    ["--x", "2,3,5", "--w", "3,2,4", "--stride", "3", "--padding", "1", "--output-padding", "2",
     "--layout", "NCW"],
])
def test_op_transpose_checks_every_route(cli, argv):
    """check --op transpose: every route (convgrad's, PyTorch's, SciPy's) agrees on the gradients of
    the conv the transposed conv transposes; its title says so."""
    res = cli("check", "--op", "transpose", *argv)
    assert res.code == 0, res.out[-2000:]
    first = res.out.splitlines()[0]
    assert first.startswith("convgrad check: conv_transpose: x ")
    assert "the input gradient of the conv" in first
    assert "torch.nn.grad.conv" in res.out


def test_output_options_need_op_transpose(cli):
    res = cli("check", "--output-padding", "1")
    assert res.code == 2 and "--output-padding is for --op transpose" in res.err


def test_no_bias(cli):
    data = cli("check", "--no-bias", "--frameworks", "none", "--json").json()
    assert data["passed"] and not [r for r in data["rows"] if r["gradient"] == "d_b"]
    data = cli("explain", "--no-bias", "--json", "--framework", "torch").json()
    assert "d_b" not in data["gradients"] and "b" not in data["shapes"]
    assert "b (" not in cli("explain", "--no-bias", "--framework", "torch").out.splitlines()[1]


def test_explain_is_short_unless_full(cli):
    short, full = cli("explain").out, cli("explain", "--full").out
    table = "every engine's verdict, cheapest first"
    assert table not in short and table in full
    assert "1. dilate dy" not in short and "1. dilate dy" in full
    for text in (short, full):
        assert "gradients as convolutions" in text and "the planner's choice" in text
        assert "tf.raw_ops.Conv2DBackpropInput" in text and "helper.make_node('Conv'" in text
    assert len(short.splitlines()) < len(full.splitlines())


def test_transpose_case_shapes_match_the_oracle_helper():
    """The oracle's transposed size formula the test above relies on, once by hand: (4 - 1) * 2 + 3
    - 2 * 1 + 1 = 8."""
    assert oracle.transpose_out_spatial((4,), (3,), (2,), 1, (1,), (1,)) == (8,)


def test_compute_estimates_are_shown_apart_from_one_time_loads(cli):
    """The 5x5 conv of issue 18: fft's '200 ms' is its kernels' one-time load; the table shows the
    compute estimate and the load apart; the planner's estimate is the compute plus the load
    spread over the calls the JSON names (LOAD_SPREAD_CALLS)."""
    data = cli("explain", "--json", "--x", "1,1,5,5", "--w", "1,1,5,5", "--padding", "same",
               "--layout", "NCHW").json()
    spread = data["costs"]["load_spread_calls"]
    assert spread == 100
    for o in data["costs"]["ops"].values():
        assert o["compute_seconds"] + o["load_seconds"] / spread == pytest.approx(o["estimated_seconds"])
        for e in o["engines"].values():
            if e["eligible"]:
                assert e["load_seconds"] >= 0
                charged = e["compute_seconds"] + e["load_seconds"] / spread
                assert charged == pytest.approx(e["estimated_seconds"])
    fft = data["costs"]["ops"]["forward"]["engines"]["fft"]
    if fft["eligible"] and fft["load_seconds"] > 0:  # kernels not loaded yet in this process
        assert fft["compute_seconds"] < fft["load_seconds"]
    out = cli("explain", "--x", "1,1,5,5", "--w", "1,1,5,5", "--padding", "same", "--layout", "NCHW").out
    assert "est. compute" in out and "one-time load" in out
