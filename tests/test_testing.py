"""convgrad.testing for a user's own code: the dot test of any operator pair, finite differences of
any function with its vjp (and jvp) at the dtype used, the exported geometry strategies, and
assert_conv_matches. Each check must pass on right code and catch a wrong one, naming the numbers
(or the call) that show it; the strategies' calls run in the real frameworks."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle as O
from convgrad.testing import assert_conv_matches, check_grads, dot_test
from convgrad.testing import strategies as cst
from strategies import budget, conv_cases, seeds
from tally import checked_against


# --- dot_test(op, adjoint, x_shape, y_shape) ------------------------------------------------------
def _matrix(rng, m, n, complex_=False):
    a = rng.standard_normal((m, n))
    return a + 1j * rng.standard_normal((m, n)) if complex_ else a


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128, np.complex64])
def test_operator_dot_test_passes_a_true_adjoint_and_reports_both_products(dtype):
    rng = np.random.default_rng(1)
    a = _matrix(rng, 5, 3, np.dtype(dtype).kind == "c").astype(dtype)
    result = dot_test(lambda x: a @ x, lambda y: a.conj().T @ y, (3,), (5,), dtype=dtype, rng=7)
    assert result.passed
    # Both inner products, computed here independently: <A x, y> and <x, A^H y> with vdot.
    g = np.random.default_rng(7)
    draw = (lambda s: (g.standard_normal(s) + 1j * g.standard_normal(s)).astype(dtype)) \
        if np.dtype(dtype).kind == "c" else (lambda s: g.standard_normal(s).astype(dtype))
    x, y = draw((3,)), draw((5,))
    want = np.vdot((a @ x).astype(np.complex128), y.astype(np.complex128))
    assert abs(result.forward - want) <= 1e-5 * abs(want) + 1e-6
    assert abs(result.adjoint - want) <= 1e-5 * abs(want) + 1e-6
    assert repr(result.forward.real) in str(result)


@pytest.mark.parametrize("wrong, dtype", [
    ("transpose", np.complex128),  # A^T y: the missing conjugate
    ("same", np.float64),  # A itself on a square matrix: the missing transpose
    ("scaled", np.float32),  # 2 A^T: a factor lost
])
def test_operator_dot_test_catches_a_wrong_adjoint(wrong, dtype):
    rng = np.random.default_rng(2)
    a = _matrix(rng, 4, 4, np.dtype(dtype).kind == "c").astype(dtype)
    adjoint = {"transpose": lambda y: a.T @ y, "same": lambda y: a @ y,
               "scaled": lambda y: 2 * a.T @ y}[wrong]
    with pytest.raises(AssertionError, match=r"dot test failed: <A x, y> = .*; <x, A\^H y> = "):
        dot_test(lambda x: a @ x, adjoint, (4,), (4,), dtype=dtype)


@budget(40)
@given(conv_cases(), seeds)
@checked_against("oracle")
def test_operator_dot_test_of_a_masked_conv_and_its_oracle_adjoint(case, seed):
    """A scientist's operator: conv with a fixed filter, then a mask. Its adjoint written with the
    oracle's scatter loop passes; the same adjoint with the mask forgotten fails."""
    fmt, geo = case.data_format, case.geometry
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(case.w_shape)
    wf = O.w_to_first(w, fmt)
    y_shape = O.x_from_first(O.conv(np.zeros(O.x_to_first(np.empty(case.x_shape), fmt).shape), wf, **geo),
                             fmt).shape
    mask = rng.random(y_shape) < 0.5
    xf_shape = O.x_to_first(np.empty(case.x_shape), fmt).shape

    def op(x):
        return mask * convgrad.conv(x, w, **case.kwargs)

    def adjoint(y):
        return O.x_from_first(O.input_grad(O.x_to_first(mask * y, fmt), wf, xf_shape, **geo), fmt)

    assert dot_test(op, adjoint, case.x_shape, y_shape, rng=seed).passed
    if mask.any() and not mask.all() and np.prod(case.x_shape) > 0:
        def unmasked(y):
            return O.x_from_first(O.input_grad(O.x_to_first(y, fmt), wf, xf_shape, **geo), fmt)

        result = dot_test(op, unmasked, case.x_shape, y_shape, rng=seed, raise_on_failure=False)
        nonzero = np.abs(convgrad.conv(np.ones(case.x_shape), np.abs(w) + 1, **case.kwargs))[~mask].any()
        assert result.passed != bool(nonzero), str(result)


def test_operator_dot_test_names_bad_arguments():
    def ident(v):
        return v

    with pytest.raises(TypeError, match="adjoint=3"):
        dot_test(ident, 3, (2,), (2,))
    with pytest.raises(ValueError, match="x_shape"):
        dot_test(ident, ident, (2, -1), (2,))
    with pytest.raises(TypeError, match="dtype=int64"):
        dot_test(ident, ident, (2,), (2,), dtype=np.int64)
    with pytest.raises(TypeError, match="rng="):
        dot_test(ident, ident, (2,), (2,), rng="seed")
    with pytest.raises(AssertionError, match=r"op\(x\) has shape \(2,\), not y_shape=\(3,\)"):
        dot_test(ident, ident, (2,), (3,))


def test_operator_dot_test_leaves_no_trace_on_the_operands():
    seen = []

    def op(x):
        seen.append(x.copy())
        x *= 2  # a careless operator that scales in place
        return x

    assert dot_test(op, lambda y: 2 * y, (3,), (3,)).passed


def test_convenience_form_stays():
    result = dot_test((1, 2, 6), (3, 2, 3), stride=2, padding="same")
    assert result.passed and result.input_side and result.filter_side


# --- check_grads(f, args, order, modes) -------------------------------------------------------------
KW = {"stride": 2, "padding": 1, "groups": 1}


def _conv(x, w):
    return convgrad.conv_vjp(x, w, **KW)


def _arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, 2, 7, 6)).astype(dtype), rng.standard_normal((3, 2, 3, 3)).astype(dtype)


def _square(x, w):
    """A nonlinear f: conv(x, w) ** 2, its vjp by the chain rule."""
    y, vjp = convgrad.conv_vjp(x, w, **KW)
    return y * y, lambda ct: vjp(2 * y * ct)


def _square_jvp(primals, tangents):
    (x, w), (tx, tw) = primals, tangents
    y = convgrad.conv(x, w, **KW)
    return y * y, 2 * y * (convgrad.conv(tx, w, **KW) + convgrad.conv(x, tw, **KW))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("order", [1, 2])
def test_check_grads_passes_conv_vjp_and_a_nonlinear_f_at_the_dtype_used(dtype, order):
    seen = set()

    def recording(x, w):
        seen.update({x.dtype, w.dtype})
        return _square(x, w)

    x, w = _arrays(dtype)
    result = check_grads(_conv, (x, w), order=order)
    assert result.passed and result.dtype == np.dtype(dtype).name
    result = check_grads(recording, (x, w), order=order, jvp=_square_jvp)
    assert result.passed, str(result)
    assert seen == {np.dtype(dtype)}  # f is evaluated in the dtype under test, not float64
    assert [c.what.split(":")[0] for c in result.comparisons] == ["fwd", "rev", "fwd, order 2",
                                                                  "rev, order 2"][:2 * order]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_check_grads_catches_a_flipped_input_gradient(dtype):
    def flipped(x, w):
        y, vjp = convgrad.conv_vjp(x, w, **KW)

        def wrong(ct):
            _, dw, db = vjp(ct)
            return convgrad.conv_input_grad(ct, w[..., ::-1, ::-1], x.shape, **KW), dw, db

        return y, wrong

    with pytest.raises(AssertionError, match=r"rev: <vjp\(u\), v> vs <u, finite difference>: analytic"):
        check_grads(flipped, _arrays(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_order_2_catches_a_vjp_right_only_at_args(dtype):
    x0, w0 = _arrays(dtype)

    def stale(x, w):  # the pullback of the first point, whatever the point
        return convgrad.conv(x, w, **KW), _conv(x0, w0)[1]

    assert check_grads(stale, (x0, w0), order=1).passed
    with pytest.raises(AssertionError, match="rev, order 2"):
        check_grads(stale, (x0, w0), order=2)


def test_fwd_mode_catches_a_jvp_missing_a_term():
    def half(primals, tangents):
        (x, w), (tx, _) = primals, tangents
        y = convgrad.conv(x, w, **KW)
        return y * y, 2 * y * convgrad.conv(tx, w, **KW)

    with pytest.raises(AssertionError, match="fwd: jvp"):
        check_grads(_square, _arrays(np.float32), modes=("fwd",), jvp=half)
    assert check_grads(_square, _arrays(np.float32), modes=("rev",), jvp=half).passed


def test_check_grads_of_a_torch_checked_function():
    """The same f and vjp that torch.autograd.gradcheck accepts as a custom Function pass here."""
    torch = pytest.importorskip("torch")
    x, w = _arrays(np.float64, seed=3)

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, xt, wt):
            ctx.save_for_backward(xt, wt)
            return torch.from_numpy(_square(xt.numpy(), wt.numpy())[0])

        @staticmethod
        def backward(ctx, g):
            xt, wt = ctx.saved_tensors
            dx, dw, _ = _square(xt.detach().numpy(), wt.detach().numpy())[1](g.numpy())
            return torch.from_numpy(dx), torch.from_numpy(dw)

    args = (torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True))
    assert torch.autograd.gradcheck(Square.apply, args)
    assert check_grads(_square, (x, w)).passed


def test_check_grads_names_bad_arguments_and_keeps_the_caller_arrays():
    x, w = _arrays(np.float32)
    before = x.copy(), w.copy()
    with pytest.raises(ValueError, match="order=3"):
        check_grads(_conv, (x, w), order=3)
    with pytest.raises(ValueError, match="modes includes 'fwd': pass jvp"):
        check_grads(_conv, (x, w), modes=("fwd",))
    with pytest.raises(ValueError, match="modes='rev'"):
        check_grads(_conv, (x, w), modes="rev")
    with pytest.raises(TypeError, match="dtype=int32"):
        check_grads(_conv, (x, w), dtype=np.int32)
    with pytest.raises(TypeError, match="args must be a non-empty tuple"):
        check_grads(_conv, x)
    with pytest.raises(AssertionError, match="must return \\(value, vjp\\)"):
        check_grads(lambda x, w: convgrad.conv(x, w), (x, w))
    check_grads(_conv, (x, w), order=2)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])


# --- strategies and assert_conv_matches ---------------------------------------------------------
def test_strategies_load_hypothesis_only_when_asked():
    code = ("import sys, convgrad.testing as t; assert 'hypothesis' not in sys.modules; "
            "t.strategies; assert 'hypothesis' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _torch_call(name):
    torch = pytest.importorskip("torch")

    def call(*args, **kwargs):
        rank = next(np.ndim(a) for a in args if isinstance(a, np.ndarray)) - 2
        fn = {"conv": getattr(torch.nn.functional, f"conv{rank}d"),
              "input_grad": getattr(torch.nn.grad, f"conv{rank}d_input"),
              "filter_grad": getattr(torch.nn.grad, f"conv{rank}d_weight")}[name]
        args = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]
        with warnings.catch_warnings():  # padding='same' with an even kernel: a copy, it says
            warnings.simplefilter("ignore", UserWarning)
            return fn(*args, **kwargs).numpy()

    return call


@pytest.mark.parametrize("op", ["conv", "input_grad", "filter_grad"])
def test_real_torch_matches_through_the_torch_convention(op):
    assert assert_conv_matches(_torch_call(op), "torch", op, max_examples=60) == 60


def test_convgrad_torch_front_passes_as_a_users_conv2d():
    conv2d = convgrad.torch.nn.functional.conv2d
    assert assert_conv_matches(conv2d, "torch", ranks=(2,), max_examples=40) == 40


def test_real_tensorflow_matches_through_the_tf_convention():
    tf = pytest.importorskip("tensorflow")

    def conv(x, w, **kw):
        return tf.nn.convolution(x, w, **kw).numpy()

    assert assert_conv_matches(conv, "tf", max_examples=25) == 25
    def input_grad(input_sizes, filters, out_backprop, strides, padding, dilations):
        return tf.compat.v1.nn.conv2d_backprop_input(input_sizes, filters, out_backprop, [1, *strides, 1],
                                                     padding, dilations=[1, *dilations, 1]).numpy()

    assert assert_conv_matches(input_grad, "tf", "input_grad", max_examples=15) == 15


def test_real_jax_matches_through_the_jax_convention():
    lax = pytest.importorskip("jax.lax")

    def conv(lhs, rhs, **kw):  # float32: JAX's default, without switching x64 on for the session
        return np.asarray(lax.conv_general_dilated(lhs, rhs, precision="highest", **kw))

    assert assert_conv_matches(conv, "jax", max_examples=30, dtype=np.float32) == 30


def test_onnx_reference_matches_through_the_onnx_convention():
    onnx = pytest.importorskip("onnx")
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    def conv(X, W, **attrs):
        node = helper.make_node("Conv", ["X", "W"], ["Y"], **attrs)
        def info(name):
            return helper.make_tensor_value_info(name, onnx.TensorProto.DOUBLE, None)

        graph = helper.make_graph([node], "g", [info("X"), info("W")], [info("Y")])
        return ReferenceEvaluator(helper.make_model(graph)).run(None, {"X": X, "W": W})[0]

    assert assert_conv_matches(conv, "onnx", max_examples=25) == 25


@pytest.mark.parametrize("convention", ["convgrad", "torch", "tf", "jax", "onnx"])
@budget(10)
@given(data=st.data())
def test_examples_hold_their_convention_constraints(convention, data):
    ex = data.draw(cst.conv_examples(convention))
    kw = ex.kwargs
    if convention == "tf":
        assert kw["padding"] in ("SAME", "VALID") and ex.args[0].shape[-1] == ex.args[1].shape[-2]
        assert max(kw["dilations"]) == 1 or max(kw["strides"]) == 1
    if convention == "onnx":
        assert all(p >= 0 for p in kw.get("pads", ()))
    if convention == "torch" and isinstance(kw["padding"], str):
        assert kw["padding"] == "valid" or set(kw["stride"]) == {1}
    assert ex.expected().shape[0] >= 1


def _wrong_padding(input, weight, stride, padding, dilation, groups):
    """A user's conv with an off-by-one: one more sample of padding at the end."""
    pad = padding if isinstance(padding, str) else [(p, p + 1) for p in padding]
    return convgrad.conv(input, weight, stride=stride, padding=pad, dilation=dilation, groups=groups)


def _convolution(input, weight, **kw):
    """A user's 'conv' that flips the kernel: convolution where deep learning correlates."""
    rank = weight.ndim - 2
    return convgrad.conv(input, weight[(slice(None), slice(None), *(slice(None, None, -1),) * rank)], **kw)


def _no_groups(input, weight, groups, **kw):
    """A user's conv that has no grouped path yet."""
    if groups > 1:
        raise NotImplementedError(f"groups={groups}")
    return convgrad.conv(input, weight, **kw)


def _unflipped_input_grad(input_size, weight, grad_output, **kw):
    """A user's input gradient that forgot the kernel's flip: conv_transpose of the flipped kernel."""
    rank = weight.ndim - 2
    flipped = weight[(slice(None), slice(None), *(slice(None, None, -1),) * rank)]
    return convgrad.conv_input_grad(grad_output, flipped, input_size, **kw)


@pytest.mark.parametrize("fn, op, shows", [
    (_wrong_padding, "conv", r"differs from convgrad: shape \(1, 1, 2\), convgrad's \(1, 1, 1\)"),
    (_no_groups, "conv", r"raised NotImplementedError: groups=\d"),
    (_convolution, "conv", "differs from convgrad: max |difference|"),
    (_unflipped_input_grad, "input_grad", "differs from convgrad: max |difference|"),
])
def test_a_wrong_users_conv_is_caught_with_the_call_that_shows_it(fn, op, shows):
    with pytest.raises(AssertionError, match=shows) as e:
        assert_conv_matches(fn, "torch", op, max_examples=50)
    call = str(e.value).split(" differs")[0].split(" raised")[0]
    assert call.startswith(f"torch {op}(") and "array(" in call and "stride=(" in call and "groups=" in call


def test_assert_conv_matches_names_bad_arguments():
    with pytest.raises(ValueError, match="convention='pytorch'"):
        assert_conv_matches(convgrad.conv, "pytorch")
    with pytest.raises(ValueError, match="op='input_grad' has no call of its own in convention='jax'"):
        assert_conv_matches(convgrad.conv, "jax", "input_grad")
    with pytest.raises(ValueError, match="max_examples=0"):
        assert_conv_matches(convgrad.conv, "torch", max_examples=0)
    with pytest.raises(TypeError, match="fn=None"):
        assert_conv_matches(None)
