"""``convgrad explain`` against the core's ConvGeometry and planner, and its framework calls run."""

from __future__ import annotations

import contextlib
import io
import json
import re
import warnings

import numpy as np
import pytest
from hypothesis import given

import convgrad
from convgrad.cli import main
from strategies import budget, conv_cases

from .conftest import geometry_argv


def explain_json(argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["explain", "--json", *argv])
    assert code == 0
    return json.loads(out.getvalue())


def _core(case) -> tuple[convgrad.ConvGeometry, str]:
    fmt = case.kwargs["data_format"]
    return convgrad.ConvGeometry.for_conv(case.x_shape, case.w_shape, **case.kwargs), fmt


@budget(30)
@given(conv_cases(min_batch=1))
def test_explain_matches_the_core_geometry(case):
    g, fmt = _core(case)
    data = explain_json(geometry_argv(case.x_shape, case.w_shape, case.kwargs))
    assert data["shapes"]["y"] == list(g.y_shape(fmt))
    assert data["shapes"]["d_x"] == list(g.x_shape(fmt)) and data["shapes"]["d_w"] == list(g.w_shape(fmt))
    sizes = g.input_size_range()
    for i, d in enumerate(data["dims"]):
        assert (d["input"], d["kernel"], d["dilation"], d["stride"]) == (
            g.in_spatial[i], g.kernel[i], g.rhs_dilation[i], g.stride[i])
        assert d["kernel_eff"] == g.kernel_eff[i]
        assert tuple(d["padding"]) == g.padding[i]
        assert d["padded_input"] == g.padded_input[i]
        assert d["output"] == g.out_spatial[i]
        assert tuple(d["tight_padding"]) == g.tight_padding[i]
        assert tuple(d["transpose_output_sizes"]) == sizes[i]
        assert 0 <= d["unused_input"] < g.stride[i]
    grads = data["gradients"]
    assert [tuple(p) for p in grads["d_x"]["input_grad_padding"]] == list(g.input_grad_padding)
    assert [tuple(p) for p in grads["d_w"]["filter_grad_padding"]] == list(g.filter_grad_padding)
    ig, fg = g.input_grad_geometry(), g.filter_grad_geometry()
    assert grads["d_x"]["as_conv_general"]["out_spatial"] == list(ig.out_spatial) == list(g.in_spatial)
    assert grads["d_x"]["as_conv_general"]["lhs_dilation"] == list(g.stride)
    assert grads["d_w"]["as_conv_general"]["out_spatial"] == list(fg.out_spatial) == list(g.kernel)
    assert grads["d_w"]["as_conv_general"]["batch_group_count"] == g.feature_group_count
    limit = data["costs"]["workspace_limit"]
    for op, o in data["costs"]["ops"].items():
        plan = convgrad.make_plan(op, g, np.dtype(np.float64), "auto", limit, fmt)  # the caller's layout
        assert o["engine"] == plan.engine.name
        assert o["reason"] == plan.reason
        assert o["workspace_bytes"] == plan.workspace_bytes
        assert o["flops"] == g.flops
        assert o["engines"][plan.engine.name]["eligible"] is True
        verdicts = plan.verdicts()  # the plan's candidates, cheapest first, are what explain prints
        assert list(o["engines"]) == list(verdicts)
        for name, v in verdicts.items():
            assert o["engines"][name]["eligible"] is v["eligible"]
            assert o["engines"][name].get("reason") == v.get("reason")
            assert o["engines"][name].get("estimated_seconds") == v.get("estimated_seconds")
    assert data["costs"]["ops"]["input_grad"]["flops_as_plain_conv"] == ig.flops


@budget(12)
@given(conv_cases(ranks=(1, 2), min_batch=1, max_batch=2))
def test_the_torch_calls_explain_prints_compute_the_same(case):
    """Run the PyTorch calls exactly as explain spells them: forward, d_x via conv_input and via
    conv_transpose (with its output_padding), each against convgrad."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    g, _ = _core(case)
    t = explain_json(geometry_argv(case.x_shape, case.w_shape, case.kwargs))["frameworks"]["torch"]
    r = g.rank
    rng = np.random.default_rng(0)
    x = rng.standard_normal(g.x_shape())  # channels-first: PyTorch's layout
    w = rng.standard_normal(g.w_shape())
    dy = rng.standard_normal(g.y_shape())
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in t["kwargs"].items()}
    tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))
    xin = tx if t["pre_pad"] is None else F.pad(tx, t["pre_pad"])
    y = getattr(F, f"conv{r}d")(xin, tw, **kw).numpy()
    geom_kw = {k: v for k, v in case.kwargs.items() if k != "data_format"}
    np.testing.assert_allclose(y, convgrad.conv(x, w, **geom_kw), atol=1e-10)
    dx_ref = convgrad.conv_input_grad(dy, w, x.shape, **geom_kw)
    dx = getattr(torch.nn.grad, f"conv{r}d_input")(xin.shape, tw, tdy, **kw)
    dx_t = getattr(F, f"conv_transpose{r}d")(tdy, tw, stride=kw["stride"], padding=kw["padding"],
                                             output_padding=tuple(t["output_padding"]), groups=kw["groups"],
                                             dilation=kw["dilation"])
    for got in (dx, dx_t):
        if t["pre_pad"] is not None:
            got = F.pad(got, [-p for p in t["pre_pad"]])
        np.testing.assert_allclose(got.numpy(), dx_ref, atol=1e-10)
    # Expressible: padding says the pads (torch's own 'same' included, where they are not symmetric).
    assert t["expressible"] == (t["pre_pad"] is None or "padding='same'" in t["forward"])


def test_seed_text(cli):
    res = cli("explain", "--full")
    assert res.code == 0
    out = res.out
    assert out.startswith("convgrad explain: x 1x4x4x1 NHWC")
    assert "geometry per spatial axis" in out
    assert ("pad by (b' = k_eff - 1 - before, n + k_eff - 1 - o_dilated - b') = [(2, 2), (2, 2)] "
            "-> (6, 6)") in out
    assert "convgrad.conv_general(dy, np.flip(w, (0, 1)).swapaxes(-1, -2), lhs_dilation=(1, 1)" in out
    assert "d_b[o] = sum of dy[..., o] over batch and every spatial position" in out
    assert "the planner's choice" in out and "every engine's verdict" in out
    for title in ("PyTorch (channels_first): expressible directly",
                  "TensorFlow (channels_last): expressible directly",
                  "JAX (channels_first): expressible directly",
                  "ONNX (channels_first): expressible directly"):
        assert title in out
    assert "tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x)" in out
    assert "ONNX has no filter-gradient op" in out
    assert "tape.gradient(y, [x, w], output_gradients=dy)" in out  # not eaten as markup


def test_not_expressible_directly_with_workaround(cli):
    res = cli("explain", "--x", "1,7,9,3", "--w", "3,2,3,4", "--stride", "2", "--padding=-1:2,0:1")
    assert res.code == 0
    out = res.out
    # The forward is translate's spelling: the reason, then the pad-first workaround as code.
    assert "PyTorch (channels_first): NOT expressible directly" in out
    assert "y = F.conv2d(F.pad(F.pad(x, [0, 1, 0, 1]), [0, 0, -1, 0]), w, stride=(2, 2)" in out
    assert "TensorFlow (channels_last): NOT expressible directly" in out
    assert "y = tf.nn.conv2d(tf.pad(x[:, 1:7, 0:9, :], [[0, 0], [0, 1], [0, 1], [0, 0]]), w" in out
    assert "ONNX (channels_first): NOT expressible directly" in out
    assert "JAX (channels_first): expressible directly" in out


def test_framework_filter_and_limits(cli):
    data = json.loads(cli("explain", "--json", "--framework", "tf", "--x", "1,8,8,4", "--w", "3,3,2,4",
                          "--groups", "2", "--dilation", "2").out)
    assert list(data["frameworks"]) == ["tf"]
    limits = data["frameworks"]["tf"]["limitations"]
    assert any("grouped" in m for m in limits) and any("dilation" in m for m in limits)
    res = cli("explain", "--framework", "caffe")
    assert res.code == 2 and "invalid choice" in res.err


def test_a_geometry_no_engine_can_run_is_an_argument_error(cli):
    res = cli("explain", "--padding", "99999999999")
    assert res.code == 2 and "Traceback" not in res.err
    assert res.err.startswith("convgrad explain: error: no engine can run this forward")


def test_explain_high_rank(cli):
    data = json.loads(cli("explain", "--json", "--x", "1,4,4,5,3,2", "--w", "2,2,2,2,2,3",
                          "--stride", "2").out)
    assert data["frameworks"]["torch"]["expressible"] is False
    assert "not 4-D" in data["frameworks"]["torch"]["reason"]
    assert data["frameworks"]["jax"]["expressible"] is True
    assert [d["axis"] for d in data["dims"]] == ["d0", "d1", "d2", "d3"]


@pytest.mark.parametrize("argv", [
    ["--x", "2,7,9,3", "--w", "3,2,3,4", "--stride", "2", "--padding=-1:2,0:1"],
    ["--x", "1,8,8,2", "--w", "3,3,2,3", "--stride", "2", "--padding", "same", "--dilation", "2"],
    ["--x", "1,3,9", "--w", "4,3,3", "--stride", "3", "--padding", "full", "--layout", "NCW"],
])
def test_the_jax_transposed_call_explain_prints_is_d_x(argv):
    """The lax.conv_transpose call explain prints (translate's spelling: the input-gradient pads,
    transpose_kernel=True), run as printed on dy and w in its layouts, computes d_x."""
    jax = pytest.importorskip("jax")
    from convgrad.layouts import convert_filter

    data = explain_json(argv)
    geo = data["geometry"]
    fmt = geo["data_format"]
    g = convgrad.ConvGeometry.for_conv(geo["x_shape"], geo["w_shape"], stride=geo["stride"],
                                       padding=[tuple(p) for p in geo["padding"]], dilation=geo["dilation"],
                                       data_format=fmt)
    rng = np.random.default_rng(1)
    w = rng.standard_normal(g.w_shape(fmt))
    dy = rng.standard_normal(g.y_shape(fmt))
    call, note = data["frameworks"]["jax"]["transpose"].splitlines()
    pads = [tuple(p) for p in data["gradients"]["d_x"]["input_grad_padding"]]
    assert f"padding={tuple(pads)}" in call
    src, dst = re.search(r"convert_filter\(w, '(\w+)', '(\w+)'\)", note).groups()
    # Every call of the JAX block is channels-first (issue 18: the transposed one was NHWC).
    assert re.search(r"# x: (\w+);", note).group(1).startswith("NC")
    assert "dimension_numbers=('NC" in call
    scope = {"jax": jax, "x": np.moveaxis(dy, -1, 1) if fmt == "channels_last" else dy,
             "w": convert_filter(w, src, dst)}
    with jax.enable_x64(True):
        dx = np.asarray(eval(call, scope))
    ref = convgrad.conv_input_grad(dy, w, g.x_shape(fmt), stride=g.stride, padding=list(g.padding),
                                   dilation=g.rhs_dilation, data_format=fmt)
    np.testing.assert_allclose(np.moveaxis(dx, 1, -1) if fmt == "channels_last" else dx, ref, atol=1e-10)


def test_explain_prints_translates_spelling():
    """One writer per framework: explain's forward line is convgrad.translate's call."""
    from convgrad.translate import translate

    data = explain_json(["--x", "1,7,9,3", "--w", "3,2,3,4", "--stride", "2", "--padding=-1:2,0:1"])
    fws = data["frameworks"]
    t = translate("jax", "torch", input_size=(7, 9), kernel_size=(3, 2), window_strides=2,
                  padding=[(-1, 2), (0, 1)])
    assert fws["torch"]["expressible"] is False and t.call() in fws["torch"]["forward"]
    assert "F.pad(" in fws["torch"]["forward"] and fws["torch"]["reason"] == t.reason
    u = translate("jax", "jax", input_size=(7, 9), kernel_size=(3, 2), window_strides=2,
                  padding=[(-1, 2), (0, 1)])
    assert fws["jax"]["expressible"] is True and fws["jax"]["forward"].startswith(u.call() + "\n")


def _run_printed(text: str, scope: dict, result: str) -> np.ndarray:
    """Run a call explain prints: one expression, or (not expressible directly) a '# reason' line
    then statements that assign ``result``; the '  # x: ...' layout note is a comment either way."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    if "\n" in code or code.startswith(f"{result} ="):
        exec(code, scope)
        return np.asarray(scope[result])
    return np.asarray(eval(code, scope))


def _filter_layouts(text: str) -> tuple[str, str]:
    return re.search(r"convert_filter\(w, '(\w+)', '(\w+)'\)", text).groups()


GEOMETRIES = [
    ["--x", "2,9,3", "--w", "3,3,4", "--stride", "2", "--padding", "1"],
    ["--x", "2,9,3", "--w", "3,3,4", "--stride", "2", "--padding", "same"],
    ["--x", "2,10,3", "--w", "2,3,2", "--stride", "3", "--padding=-1:2"],
    ["--x", "1,11,2", "--w", "3,2,2", "--dilation", "2", "--padding", "valid"],
    ["--x", "1,3,9", "--w", "4,3,3", "--stride", "2", "--padding", "same", "--layout", "NCW"],
    ["--x", "1,7,9,3", "--w", "3,2,3,4", "--stride", "2", "--padding=-1:2,0:1"],
    ["--x", "2,8,7,2", "--w", "3,3,2,3", "--stride", "2,1", "--padding", "1:2,0:1"],
    ["--x", "1,8,8,2", "--w", "3,3,2,3", "--padding", "same", "--dilation", "2"],
    ["--x", "1,2,8,7", "--w", "3,2,3,3", "--stride", "2", "--padding", "valid", "--layout", "NCHW"],
    ["--x", "1,5,5,5,2", "--stride", "2", "--padding", "1"],
    ["--x", "1,6,5,7,2", "--w", "2,3,2,2,3", "--stride", "2,1,3", "--padding", "valid"],
    ["--x", "1,7,6,5,1", "--w", "3,3,2,1,2", "--padding", "same", "--dilation", "2,1,1"],
    ["--x", "1,6,5,4,2", "--w", "3,2,2,2,2", "--stride", "2", "--padding=1:0,0:2,-1:1"],
]


@pytest.mark.parametrize("argv", GEOMETRIES)
def test_the_tensorflow_calls_explain_prints_compute_the_same(argv):
    """Execute every TensorFlow line explain prints (forward, transposed conv, both raw backprop
    ops) in TensorFlow, on arrays in the layouts its notes say, against convgrad's numbers."""
    tf = pytest.importorskip("tensorflow")
    from convgrad.layouts import convert_filter

    data = explain_json([*argv, "--framework", "tf"])
    geo, t = data["geometry"], data["frameworks"]["tf"]
    fmt = geo["data_format"]
    kw = {"stride": geo["stride"], "padding": [tuple(p) for p in geo["padding"]], "dilation": geo["dilation"],
          "data_format": fmt}
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(geo["x_shape"]), rng.standard_normal(geo["w_shape"])
    dy = rng.standard_normal(geo["y_shape"])

    def last(a):  # TensorFlow's channels-last
        return np.moveaxis(a, 1, -1) if fmt == "channels_first" else a

    w_tf = convert_filter(w, *_filter_layouts(t["forward"]))
    scope = {"tf": tf, "x": tf.constant(last(x)), "w": tf.constant(w_tf), "dy": tf.constant(last(dy))}
    if not any("Conv3D forward" in m for m in t["limitations"]):
        y = _run_printed(t["forward"], dict(scope), "y")
        np.testing.assert_allclose(y, last(convgrad.conv(x, w, **kw)), atol=1e-10)
    if t["limitations"]:  # TensorFlow's CPU kernels refuse these gradients, as explain says
        return
    d_x = last(convgrad.conv_input_grad(dy, w, x.shape, **kw))
    d_w = convert_filter(convgrad.conv_filter_grad(x, dy, w.shape, **kw), *_filter_layouts(t["forward"]))
    np.testing.assert_allclose(_run_printed(t["input_grad"], dict(scope), "d_x"), d_x, atol=1e-10)
    np.testing.assert_allclose(_run_printed(t["filter_grad"], dict(scope), "d_w"), d_w, atol=1e-10)
    w_t = convert_filter(w, *_filter_layouts(t["transpose"]))
    got = _run_printed(t["transpose"], {"tf": tf, "x": tf.constant(last(dy)), "w": tf.constant(w_t)}, "y")
    np.testing.assert_allclose(got, d_x, atol=1e-10)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("argv", [
    *GEOMETRIES,
    ["--x", "1,8,7,4", "--w", "3,3,2,6", "--groups", "2", "--stride", "2", "--padding", "same"],
    ["--x", "2,4,9", "--w", "8,1,3", "--groups", "4", "--padding=2:-1", "--layout", "NCW"],
    ["--x", "1,4,5,6,4", "--w", "4,2,2,3,3", "--groups", "2", "--dilation", "1,2,1", "--layout", "NCDHW"],
])
def test_the_torch_and_jax_calls_explain_prints_compute_the_same(framework, argv):
    """Execute every PyTorch or JAX line explain prints (forward, transposed conv, both gradients;
    channels-first arrays as their notes say) against convgrad's numbers."""
    from convgrad.layouts import convert_filter

    data = explain_json([*argv, "--framework", framework])
    geo, t = data["geometry"], data["frameworks"][framework]
    fmt = geo["data_format"]
    kw = {"stride": geo["stride"], "padding": [tuple(p) for p in geo["padding"]], "dilation": geo["dilation"],
          "groups": geo["groups"], "data_format": fmt}
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(geo["x_shape"]), rng.standard_normal(geo["w_shape"])
    dy = rng.standard_normal(geo["y_shape"])

    def to(a, layout):  # a in fmt -> the layout a note names (its channels first or last)
        src = "channels_first" if fmt == "channels_first" else "channels_last"
        dst = "channels_last" if layout.endswith("C") else "channels_first"
        return a if src == dst else np.moveaxis(a, *((1, -1) if dst == "channels_last" else (-1, 1)))

    def note_layout(text):
        return re.search(r"# x: (\w+);", text).group(1)

    first = note_layout(t["forward"])
    y_ref, d_x = convgrad.conv(x, w, **kw), convgrad.conv_input_grad(dy, w, x.shape, **kw)
    d_w = convgrad.conv_filter_grad(x, dy, w.shape, **kw)
    w_f = convert_filter(w, *_filter_layouts(t["forward"]))
    w_t = convert_filter(w, *_filter_layouts(t["transpose"]))
    if framework == "torch":
        torch = pytest.importorskip("torch")

        def arr(a):
            return torch.from_numpy(np.ascontiguousarray(a))

        scope = {"torch": torch, "F": torch.nn.functional}

        def run(text, sc, result):
            with warnings.catch_warnings():  # padding='same' with an even kernel: torch warns, then pads
                warnings.simplefilter("ignore", UserWarning)
                return _run_printed(text, sc, result)
    else:
        jax = pytest.importorskip("jax")

        def arr(a):
            return jax.numpy.asarray(a)

        scope = {"jax": jax, "lax": jax.lax}

        def run(text, sc, result):
            with jax.enable_x64(True):
                return _run_printed(text, sc, result)
    if framework == "jax":
        with jax.enable_x64(True):
            fwd = {**scope, "x": arr(to(x, first)), "w": arr(w_f), "dy": arr(to(dy, first))}
            tr = {**scope, "x": arr(to(dy, note_layout(t["transpose"]))), "w": arr(w_t)}
    else:
        fwd = {**scope, "x": arr(to(x, first)), "w": arr(w_f), "dy": arr(to(dy, first))}
        tr = {**scope, "x": arr(to(dy, note_layout(t["transpose"]))), "w": arr(w_t)}
    np.testing.assert_allclose(run(t["forward"], dict(fwd), "y"), to(y_ref, first), atol=1e-10)
    np.testing.assert_allclose(run(t["transpose"], dict(tr), "y"), to(d_x, note_layout(t["transpose"])),
                               atol=1e-10)
    # The gradient lines take x, w and dy as the forward line does.
    np.testing.assert_allclose(run(t["input_grad"], dict(fwd), "d_x"), to(d_x, first), atol=1e-10)
    np.testing.assert_allclose(run(t["filter_grad"], dict(fwd), "d_w"),
                               convert_filter(d_w, *_filter_layouts(t["forward"])), atol=1e-10)
