"""Every call ``convgrad explain`` prints, executed in the real framework on random arrays and
compared with convgrad's numbers (issue 17): PyTorch, TensorFlow (depthwise included), JAX and
ONNX (its node lists built into a graph and run by onnxruntime), the forward, both gradients, the
transposed conv and autodiff, and the gradients written as ``convgrad.conv_general`` calls, for
random 1-, 2- and 3-D geometries with every padding kind, groups, depthwise and both layouts.

Tolerances: float64 everywhere (1e-9 of the largest value) except onnxruntime, which has no
float64 Conv kernels and runs in float32 (2e-4).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import convgrad
from convgrad.cli import main
from convgrad.layouts import convert_filter
from strategies import budget, conv_cases, general_cases

from .conftest import geometry_argv, spell

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")
jax = pytest.importorskip("jax")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

onnxruntime.set_default_logger_severity(3)


def explain_json(argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["explain", "--json", *argv]) == 0
    return json.loads(out.getvalue())


def close(got, want, what: str, low_precision: bool = False) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    atol = (2e-4 if low_precision else 1e-9) * scale
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=what)


def code_of(text: str) -> str:
    """The printed text without its comment lines (the reason, the '# x: ...' layout note)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def run_python(text: str, scope: dict, result: str):
    """Run a printed call: one expression, or statements that assign ``result``."""
    code = code_of(text)
    try:
        compiled = compile(code, "<printed>", "eval")
    except SyntaxError:
        exec(code, scope)
        return scope[result]
    return eval(compiled, scope)


def run_onnx(text: str, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
    """Build the printed ``nodes`` into a graph with ``feeds`` as its inputs and run it in
    onnxruntime (float32)."""
    scope = {"helper": helper}
    exec(code_of(text), scope)
    used = {name for node in scope["nodes"] for name in node.input}
    inputs = {k: v.astype(np.float32) for k, v in feeds.items() if k in used}
    ndim = next(iter(inputs.values())).ndim
    graph = helper.make_graph(
        scope["nodes"], "printed",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [None] * ndim)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run([output], inputs)[0]


def filter_layouts(text: str) -> tuple[str, str]:
    return re.search(r"convert_filter\(w, '(\w+)', '(\w+)'\)", text).groups()


def note_layout(text: str) -> str:
    return re.search(r"# x: (\w+);", text).group(1)


class Arrays:
    """Random x, w, dy of a geometry in the command's layout, convgrad's results, and the same
    arrays in the layouts a printed note names."""

    def __init__(self, data: dict, seed: int = 0):
        geo = data["geometry"]
        self.fmt = geo["data_format"]
        self.kw = {"stride": geo["stride"], "padding": [tuple(p) for p in geo["padding"]],
                   "dilation": geo["dilation"], "groups": geo["groups"], "data_format": self.fmt}
        rng = np.random.default_rng(seed)
        self.x, self.w = rng.standard_normal(geo["x_shape"]), rng.standard_normal(geo["w_shape"])
        self.dy = rng.standard_normal(geo["y_shape"])
        self.y = convgrad.conv(self.x, self.w, **self.kw)
        self.d_x = convgrad.conv_input_grad(self.dy, self.w, self.x.shape, **self.kw)
        self.d_w = convgrad.conv_filter_grad(self.x, self.dy, self.w.shape, **self.kw)

    def to(self, a: np.ndarray, layout: str) -> np.ndarray:
        """``a`` (in the command's layout) in ``layout``: channels last when it ends in 'C'."""
        last = layout.endswith("C")
        if last == (self.fmt == "channels_last"):
            return a
        return np.moveaxis(a, 1, -1) if last else np.moveaxis(a, -1, 1)


def check_convgrad_lines(data: dict, a: Arrays) -> None:
    """The gradients written as convgrad calls ('= convgrad.conv_general(...)')."""
    scope = {"np": np, "convgrad": convgrad, "x": a.x, "w": a.w, "dy": a.dy}
    grads = data["gradients"]
    close(eval(grads["d_x"]["call"], dict(scope)), a.d_x, "d_x as conv_general")
    close(eval(grads["d_w"]["call"], dict(scope)), a.d_w, "d_w as conv_general")
    close(eval(grads["d_b"]["call"], dict(scope)), a.dy.sum(axis=tuple(i for i in range(a.dy.ndim)
                                                                      if i != (1 if a.fmt == "channels_first"
                                                                               else a.dy.ndim - 1))), "d_b")


def check_onnx(t: dict, a: Arrays) -> None:
    first = note_layout(t["forward"])
    w_f = convert_filter(a.w, *filter_layouts(t["forward"]))
    x, dy = a.to(a.x, first), a.to(a.dy, first)
    close(run_onnx(t["forward"], {"x": x, "w": w_f}, "y"), a.to(a.y, first), "onnx forward", True)
    close(run_onnx(t["input_grad"], {"dy": dy, "w": w_f}, "d_x"), a.to(a.d_x, first), "onnx d_x", True)
    close(run_onnx(t["filter_grad"], {"x": x, "dy": dy}, "d_w"),
          convert_filter(a.d_w, *filter_layouts(t["forward"])), "onnx d_w", True)
    w_t = convert_filter(a.w, *filter_layouts(t["transpose"]))
    layout = note_layout(t["transpose"])
    close(run_onnx(t["transpose"], {"x": a.to(a.dy, layout), "w": w_t}, "y"), a.to(a.d_x, layout),
          "onnx transposed conv", True)
    assert code_of(t["autodiff"]) == ""  # ONNX has none: a comment, not a call


def check_python(name: str, t: dict, a: Arrays) -> None:
    """Forward, both gradients, autodiff and the transposed conv of PyTorch, TensorFlow or JAX."""
    first = note_layout(t["forward"])
    w_f = convert_filter(a.w, *filter_layouts(t["forward"]))
    w_t = convert_filter(a.w, *filter_layouts(t["transpose"]))
    tr_layout = note_layout(t["transpose"])
    if name == "torch":
        scope = {"torch": torch, "F": torch.nn.functional}

        def arr(v):
            return torch.from_numpy(np.ascontiguousarray(v))
    elif name == "tf":
        arr, scope = tf.constant, {"tf": tf}
    else:
        arr, scope = jax.numpy.asarray, {"jax": jax, "lax": jax.lax}

    def run(text: str, arrays: dict, result: str):
        with contextlib.ExitStack() as stack:
            if name == "jax":
                stack.enter_context(jax.enable_x64(True))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore", UserWarning)  # torch: padding='same' with an even kernel
            got = run_python(text, {**scope, **{k: arr(v) for k, v in arrays.items()}}, result)
        return tuple(map(np.asarray, got)) if isinstance(got, tuple) else np.asarray(got)

    fwd = {"x": a.to(a.x, first), "w": w_f, "dy": a.to(a.dy, first)}
    limits = t.get("limitations", [])
    if not any("Conv3D forward" in m for m in limits):
        close(run(t["forward"], fwd, "y"), a.to(a.y, first), f"{name} forward")
    if "depthwise" in t:
        close(run(t["depthwise"], fwd, "y"), a.to(a.y, first), f"{name} depthwise")
    if limits:  # TensorFlow's CPU kernels refuse these gradients, as the notes say
        return
    d_x, d_w = a.to(a.d_x, first), convert_filter(a.d_w, *filter_layouts(t["forward"]))
    close(run(t["input_grad"], fwd, "d_x"), d_x, f"{name} d_x")
    close(run(t["filter_grad"], fwd, "d_w"), d_w, f"{name} d_w")
    if name == "tf":
        auto = (run(t["autodiff"], fwd, "d_x"), run(t["autodiff"], fwd, "d_w"))
    else:
        auto = run(t["autodiff"], fwd, "")
    close(auto[0], d_x, f"{name} autodiff d_x")
    close(auto[1], d_w, f"{name} autodiff d_w")
    close(run(t["transpose"], {"x": a.to(a.dy, tr_layout), "w": w_t}, "y"), a.to(a.d_x, tr_layout),
          f"{name} transposed conv")


def check_all(argv: list[str], seed: int = 0) -> None:
    data = explain_json(argv)
    a = Arrays(data, seed)
    check_convgrad_lines(data, a)
    for name, t in data["frameworks"].items():
        if t.get("expressible") is None or "forward" not in t:  # beyond the framework's ranks
            continue
        if name == "onnx":
            check_onnx(t, a)
        else:
            check_python(name, t, a)


@budget(15)
@given(conv_cases(min_batch=1, max_batch=2), st.integers(0, 2**16))
def test_every_line_explain_prints_runs_in_its_framework(case, seed):
    check_all(geometry_argv(case.x_shape, case.w_shape, case.kwargs), seed)


@pytest.mark.parametrize("argv", [
    # TensorFlow's depthwise ops: multiplier 1 and 2, SAME, explicit, negative pads, 1-D lifted.
    ["--x", "1,9,8,4", "--w", "3,3,1,8", "--groups", "4", "--stride", "2", "--padding=1:2,0:1"],
    ["--x", "2,7,7,3", "--w", "3,2,1,3", "--groups", "3", "--padding", "same"],
    ["--x", "1,8,8,2", "--w", "3,3,1,2", "--groups", "2", "--stride", "2", "--padding=-1:1,0:0"],
    ["--x", "2,9,3", "--w", "3,1,6", "--groups", "3", "--padding", "same_lower"],
    # 3-D grouped and strided, TensorFlow's N + 2 strides; FULL padding; channels-first.
    ["--x", "1,5,4,6,4", "--w", "2,2,3,2,4", "--groups", "2", "--stride", "2,1,2", "--padding", "full"],
    ["--x", "2,3,6,5", "--w", "4,3,3,2", "--stride", "2", "--padding", "same", "--layout", "NCHW"],
])
def test_depthwise_grouped_and_3d_lines_run(argv):
    check_all(argv)


MODE_CASES = [
    ("reflect", ["--x", "1,2,5,6", "--w", "3,2,3,3", "--stride", "2", "--padding=1:2,2:1"]),
    ("symmetric", ["--x", "2,6,3", "--w", "3,1,3", "--groups", "3", "--dilation", "2", "--padding", "2",
                   "--layout", "NWC"]),
    ("replicate", ["--x", "1,5,4,2", "--w", "3,2,2,3", "--padding", "same", "--layout", "NHWC"]),
    ("circular", ["--x", "1,1,4,3,5", "--w", "2,1,3,2,3", "--padding=1:1,0:1,2:2", "--layout", "NCDHW"]),
]


@pytest.mark.parametrize(("mode", "argv"), MODE_CASES)
def test_every_padding_mode_line_runs_in_its_framework(mode, argv):
    """With --padding-mode each framework's forward (its pad, or a gather where it has no such
    mode, then a VALID conv) and autodiff through it give convgrad's padding_mode results; so does
    the NumPy np.pad line of the note."""
    data = explain_json([*argv, "--padding-mode", mode])
    a = Arrays(data)
    kw = {**a.kw, "padding_mode": mode}
    a.y = convgrad.conv(a.x, a.w, **kw)
    a.d_x = convgrad.conv_input_grad(a.dy, a.w, a.x.shape, **kw)
    a.d_w = convgrad.conv_filter_grad(a.x, a.dy, a.w.shape, **kw)
    valid = {k: v for k, v in a.kw.items() if k != "padding"}
    padded = re.search(r"np\.pad\(x, .*?mode='\w+'\)", " ".join(data["notes"])).group(0)
    close(convgrad.conv(eval(padded, {"np": np, "x": a.x}), a.w, padding="valid", **valid), a.y,
          "np.pad line")
    ran = set()
    for name, t in data["frameworks"].items():
        if "forward" not in t:  # beyond the framework's ranks
            continue
        assert not any(k in t for k in ("input_grad", "filter_grad", "transpose")), name  # zero pads only
        first = note_layout(t["forward"])
        w_f = convert_filter(a.w, *filter_layouts(t["forward"]))
        if name == "onnx":
            close(run_onnx(t["forward"], {"x": a.to(a.x, first), "w": w_f}, "y"), a.to(a.y, first),
                  f"onnx {mode} forward", True)
            ran.add(name)
            continue
        scope = {"torch": {"torch": torch, "F": torch.nn.functional}, "tf": {"tf": tf},
                 "jax": {"jax": jax}}[name]
        arr = {"torch": lambda v: torch.from_numpy(np.ascontiguousarray(v)), "tf": tf.constant,
               "jax": jax.numpy.asarray}[name]
        limits = [m for m in t.get("limitations", []) if not m.startswith("padding_mode")]
        with jax.enable_x64(True):
            given = {"x": a.to(a.x, first), "w": w_f, "dy": a.to(a.dy, first)}
            arrays = {k: arr(v) for k, v in given.items()}
            if not any("Conv3D forward" in m for m in limits):
                y = run_python(t["forward"], {**scope, **arrays}, "y")
                close(np.asarray(y), a.to(a.y, first), f"{name} {mode} forward")
            if limits:  # TensorFlow's CPU kernels refuse these gradients, as the notes say
                ran.add(name)
                continue
            if name == "tf":
                grads = [run_python(t["autodiff"], {**scope, **arrays}, v) for v in ("d_x", "d_w")]
            else:
                grads = run_python(t["autodiff"], {**scope, **arrays}, "")
        close(np.asarray(grads[0]), a.to(a.d_x, first), f"{name} {mode} autodiff d_x")
        close(np.asarray(grads[1]), convert_filter(a.d_w, *filter_layouts(t["forward"])),
              f"{name} {mode} autodiff d_w")
        ran.add(name)
    assert ran == ({"torch", "tf", "jax", "onnx"} if len(a.x.shape) <= 5 else {"jax", "onnx"})


# --- conv_general: --lhs-dilation, --batch-groups --------------------------------------------------
def general_argv(case) -> list[str]:
    """The command line of a ``strategies.general_cases`` case."""
    kw = case.kwargs
    return ["--x", ",".join(map(str, case.x_shape)), "--w", ",".join(map(str, case.w_shape)),
            f"--stride={spell(kw['stride'])}", f"--padding={spell(kw['padding'])}",
            f"--dilation={spell(kw['rhs_dilation'])}", f"--lhs-dilation={spell(kw['lhs_dilation'])}",
            "--feature-groups", str(kw["feature_group_count"]),
            "--batch-groups", str(kw["batch_group_count"]),
            "--layout", kw["data_format"]]


def is_general(case) -> bool:
    lhs = case.kwargs["lhs_dilation"]
    return case.kwargs["batch_group_count"] > 1 or any(v != 1 for v in np.atleast_1d(lhs))


@budget(10)
@given(general_cases(min_batch=1), st.integers(0, 2**16))
def test_every_conv_general_line_explain_prints_runs_in_its_framework(case, seed):
    """explain --lhs-dilation/--batch-groups: JAX's lines (in the block's layout, its
    dimension_numbers) and PyTorch's (channels-first) run in the real framework, float64, and give
    convgrad.conv_general's y and conv_general_vjp's d_x, d_w."""
    assume(is_general(case))
    data = explain_json(general_argv(case))
    fmt = case.kwargs["data_format"]
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    y, vjp = convgrad.conv_general_vjp(x, w, **case.kwargs)
    dy = rng.standard_normal(y.shape)
    d_x, d_w = vjp(dy)
    fw = data["frameworks"]
    with jax.enable_x64(True):
        arrays = {k: jax.numpy.asarray(v) for k, v in (("x", x), ("w", w), ("dy", dy))}
        scope = {"jax": jax, "lax": jax.lax, **arrays}
        close(run_python(fw["jax"]["forward"], dict(scope), "y"), y, "jax forward")
        grads = dict(scope)
        run_python(fw["jax"]["autodiff"], grads, "d_x")
        close(grads["d_x"], d_x, "jax d_x")
        close(grads["d_w"], d_w, "jax d_w")
    first = fmt == "channels_first"
    tx = torch.tensor(x if first else np.moveaxis(x, -1, 1), requires_grad=True)
    tw = torch.tensor(w if first else np.moveaxis(w, (-1, -2), (0, 1)), requires_grad=True)
    tdy = torch.tensor(dy if first else np.moveaxis(dy, -1, 1))
    scope = {"torch": torch, "F": torch.nn.functional, "x": tx, "w": tw, "dy": tdy}
    exec(code_of(fw["torch"]["forward"]), scope)
    exec(code_of(fw["torch"]["autodiff"]), scope)
    back = (lambda a: a) if first else (lambda a: np.moveaxis(a, 1, -1))
    close(back(scope["y"].detach().numpy()), y, "torch forward")
    close(back(scope["d_x"].numpy()), d_x, "torch d_x")
    dw = scope["d_w"].numpy()
    close(dw if first else np.moveaxis(dw, (0, 1), (-1, -2)), d_w, "torch d_w")
    assert set(fw) == {"jax", "torch", "tf", "onnx", "scipy"}
