"""The front kit (``convgrad._fronts.kit``) across the five fronts: one vjp pattern (the op's
forward builds no pullback), one cotangent check, and pullbacks that are the adjoints of the
ops, checked by finite differences (exact here: every op is linear in each array argument)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import convgrad._ops as ops
from convgrad import onnx, tf, torch
from convgrad.jax import lax
from convgrad.scipy import signal

rng = np.random.default_rng(14)


def arr(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


F, G = torch.nn.functional, torch.nn.grad
# (op, positional args, keyword args, positions of the arrays whose gradients pullback returns)
CALLS = [
    (lax.conv_general_dilated, (arr(4, 2, 6), arr(4, 1, 2), (2,), [(1, 0)]),
     {"feature_group_count": 2, "rhs_dilation": (2,)}, (0, 1)),
    (lax.conv, (arr(2, 3, 5, 4), arr(2, 3, 2, 2), (1, 2), "SAME"), {}, (0, 1)),
    (lax.conv_with_general_padding, (arr(1, 2, 5), arr(2, 2, 3), (1,), [(2, -1)], (2,), (1,)), {}, (0, 1)),
    (lax.conv_transpose, (arr(1, 5, 2), arr(3, 3, 2), (2,), "SAME"), {"transpose_kernel": True}, (0, 1)),
    (onnx.conv, (arr(1, 2, 5), arr(3, 2, 2), arr(3)), {"pads": [1, 0], "strides": [2]}, (0, 1, 2)),
    (onnx.conv_transpose, (arr(1, 2, 4), arr(2, 3, 3), arr(3)), {"strides": [2]}, (0, 1, 2)),
    (signal.convolve, (arr(5, 2), arr(3, 2)), {"mode": "same"}, (0, 1)),
    (signal.correlate, (arr(3), arr(5)), {"mode": "valid"}, (0, 1)),  # in2 the larger: swapped
    (signal.convolve2d, (arr(4, 4), arr(2, 3)), {"boundary": "wrap", "mode": "same"}, (0, 1)),
    (signal.correlate2d, (arr(2, 3), arr(4, 4)), {"mode": "valid"}, (0, 1)),
    (tf.nn.conv2d, (arr(2, 5, 4, 2), arr(3, 2, 2, 3), 2, "SAME"), {}, (0, 1)),
    (tf.nn.conv2d, (arr(1, 2, 5, 4), arr(2, 3, 1, 2)), {"strides": 1, "padding": "VALID",
                                                         "data_format": "NCHW"}, (0, 1)),
    (tf.nn.conv2d_backprop_input, ([2, 5, 4, 2], arr(3, 2, 2, 3), arr(2, 3, 2, 3), [1, 2, 2, 1], "SAME"),
     {}, (1, 2)),
    (tf.nn.conv2d_backprop_filter, (arr(2, 5, 4, 2), [3, 2, 2, 3], arr(2, 3, 2, 3), [1, 2, 2, 1], "SAME"),
     {}, (0, 2)),
    (tf.nn.conv2d_transpose, (arr(2, 3, 2, 3), arr(3, 2, 2, 3), [2, 5, 4, 2], 2), {}, (0, 1)),
    (tf.nn.depthwise_conv2d, (arr(1, 5, 5, 2), arr(3, 3, 2, 2), [1, 2, 2, 1], "VALID"), {}, (0, 1)),
    (tf.nn.depthwise_conv2d_backprop_filter, (arr(1, 5, 5, 2), [3, 3, 2, 2], arr(1, 2, 2, 4),
                                              [1, 2, 2, 1], "VALID"), {}, (0, 2)),
    (tf.nn.bias_add, (arr(2, 3, 4), arr(4)), {}, (0, 1)),
    (F.conv2d, (arr(2, 4, 5, 5), arr(6, 2, 3, 2), arr(6)), {"stride": 2, "padding": 1, "groups": 2},
     (0, 1, 2)),
    (F.conv_transpose1d, (arr(3, 6), arr(3, 2, 3), arr(2)), {"stride": 2, "output_padding": 1}, (0, 1, 2)),
    (F.pad, (arr(2, 3, 4), (1, 2, 0, 1)), {"mode": "reflect"}, (0,)),
    (G.conv2d_input, ((2, 4, 6, 5), arr(6, 2, 3, 2), arr(2, 6, 2, 2)), {"stride": 2, "groups": 2}, (1, 2)),
    (G.conv1d_weight, (arr(2, 3, 7), (4, 3, 3), arr(2, 4, 4)), {"stride": 2, "padding": 1}, (0, 2)),
]
IDS = [f"{op.__module__.split('.')[-1]}.{op.__name__}-{i}" for i, (op, *_) in enumerate(CALLS)]


@pytest.mark.parametrize(("op", "args", "kwargs", "arrays"), CALLS, ids=IDS)
def test_forward_builds_no_pullback_and_equals_the_vjps_output(op, args, kwargs, arrays, monkeypatch):
    out, _ = op.vjp(*args, **kwargs)

    def refuse(*_a, **_k):
        raise AssertionError("the forward built a pullback")

    # Every front runs the core through its one entry for a built geometry, _ops._Call
    # (conv_general's GeneralCall included): its vjp builds the core's pullbacks.
    monkeypatch.setattr(ops._Call, "vjp", refuse)
    y = op(*args, **kwargs)
    assert y.shape == out.shape and y.dtype == out.dtype
    # Not bitwise: the planner may pick another engine for a repeated call.
    np.testing.assert_allclose(y, out, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("op", "args", "kwargs", "arrays"), CALLS, ids=IDS)
def test_pullback_refuses_a_cotangent_of_another_shape(op, args, kwargs, arrays):
    out, pullback = op.vjp(*args, **kwargs)
    wrong = np.zeros((*out.shape, 1))
    shapes = re.escape(str(wrong.shape)), re.escape(str(out.shape))
    with pytest.raises(ValueError, match=r"dy\.shape={} does not match the output shape {}".format(*shapes)):
        pullback(wrong)


@pytest.mark.parametrize(("op", "args", "kwargs", "arrays"), CALLS, ids=IDS)
def test_pullback_is_the_adjoint_by_exact_finite_differences(op, args, kwargs, arrays):
    """Each op is linear (or affine, for a bias) in each array argument, so a central difference
    along a random direction, with a step of 1, is exact up to rounding:
    ``<(f(a + v) - f(a - v)) / 2, g> == <pullback(g)[i], v>``."""
    out, pullback = op.vjp(*args, **kwargs)
    g = rng.standard_normal(out.shape)
    grads = pullback(g)
    assert len(grads) == len(arrays)
    for i, grad in zip(arrays, grads):
        v = rng.standard_normal(np.shape(args[i]))
        plus = op(*args[:i], args[i] + v, *args[i + 1:], **kwargs)
        minus = op(*args[:i], args[i] - v, *args[i + 1:], **kwargs)
        assert grad.shape == v.shape
        np.testing.assert_allclose(np.vdot((plus - minus) / 2, g), np.vdot(grad, v), rtol=1e-10, atol=1e-10)


def test_conv_integer_pullback_is_the_adjoint_of_the_shifted_conv():
    """ConvInteger is Conv(x - x_zero_point, w - w_zero_point): the zero points' gradients are
    minus the sums of x's and w's (per output channel for a per-channel w_zero_point)."""
    x = rng.integers(-5, 5, (2, 2, 6)).astype(np.int8)
    w = rng.integers(-3, 3, (3, 2, 2)).astype(np.int8)
    xz, wz = np.int8(2), np.array([1, -1, 0], np.int8)
    out, pullback = onnx.conv_integer.vjp(x, w, xz, wz, pads=[1, 0])
    ref = ops.conv(x.astype(np.int64) - 2, w.astype(np.int64) - wz.astype(np.int64)[:, None, None],
                   padding=[(1, 0)])
    np.testing.assert_array_equal(out, ref)
    g = rng.integers(-4, 4, out.shape)
    dx, dw, dxz, dwz = pullback(g)
    np.testing.assert_array_equal(dxz, -dx.sum())
    np.testing.assert_array_equal(dwz, -dw.sum(axis=(1, 2)))
    with pytest.raises(ValueError, match=r"dy\.shape=\(1,\) does not match the output shape"):
        pullback(np.zeros(1))


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: lax.conv(arr(1, 1, 4), arr(1, 1, 2), "ab", "VALID"), TypeError,
     "window_strides must be a sequence of 1 ints, got 'ab'"),
    (lambda: lax.conv(arr(1, 1, 4), arr(1, 1, 2), (1, 1), "VALID"), ValueError,
     r"window_strides=\(1, 1\) must have one entry per spatial dim \(1\), got 2"),
    (lambda: lax.conv(arr(1, 1, 4), arr(1, 1, 2), (0,), "VALID"), ValueError,
     r"window_strides must be positive in every dim, got \(0,\)"),
    (lambda: lax.conv_general_dilated(arr(1, 1, 4), arr(1, 1, 2), (1,), "VALID", rhs_dilation=(1.0,)),
     TypeError, r"rhs_dilation\[0\] must be an integer"),
    (lambda: onnx.conv(arr(1, 1, 4), arr(1, 1, 2), strides=3), TypeError,
     "attribute strides must be a list of 1 ints, got 3"),
    (lambda: onnx.conv(arr(1, 1, 4), arr(1, 1, 2), strides=[1, 1]), ValueError,
     r"attribute strides=\[1, 1\] has incorrect size: expected 1 values"),
    (lambda: onnx.conv(arr(1, 1, 4), arr(1, 1, 2), pads=[0, -1]), ValueError,
     r"attribute pads=\[0, -1\] must contain values >= 0"),
    (lambda: G.conv1d_input((1, 2.0, 5), arr(3, 2, 2), arr(1, 3, 4)), TypeError,
     r"input_size\[1\] must be an integer, got 2.0"),
    (lambda: G.conv1d_weight(arr(1, 2, 5), (3, 2), arr(1, 3, 4)), ValueError,
     r"conv1d_weight: weight_size=\(3, 2\) must be the full shape \(3 entries"),
])
def test_integer_sequences_are_refused_in_each_frameworks_words(call, error, message):
    with pytest.raises(error, match=message):
        call()


OPS = sorted({op for op, *_ in CALLS}, key=lambda op: op.__module__ + op.__qualname__)


@pytest.mark.parametrize("op", OPS)
def test_an_ops_signature_is_its_frameworks_and_returns_an_array(op):
    """op_with_vjp keeps the resolver's parameters (in op and op.vjp) but not its return type
    (a call object)."""
    import inspect

    signature = inspect.signature(op)
    assert signature.return_annotation == "np.ndarray"
    assert list(signature.parameters) == list(inspect.signature(op.__wrapped__).parameters)
    assert list(inspect.signature(op.vjp).parameters) == list(signature.parameters)
    assert op.vjp.__qualname__ == f"{op.__qualname__}.vjp"
