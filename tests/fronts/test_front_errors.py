"""Bad input to every front is refused with a ValueError/TypeError naming the parameter as that
front spells it, before any engine runs or any large allocation."""

from __future__ import annotations

import time

import numpy as np
import pytest

from convgrad import jax as cjax
from convgrad import onnx as conv_onnx
from convgrad import scipy as cscipy
from convgrad import tf as ctf
from convgrad import torch as ctorch

F = ctorch.nn.functional
X, W = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3))
XL, WL = np.ones((1, 5, 5, 1)), np.ones((3, 3, 1, 1))
BIG = 2**63  # one past int64: NumPy and Numba raised OverflowError deep inside an engine

OVERFLOW = {
    "torch_stride": (lambda: F.conv2d(X, W, stride=BIG), r"stride(\[0\])?"),
    "torch_dilation": (lambda: F.conv2d(X, W, dilation=(1, BIG)), r"dilation\[1\]"),
    "torch_transpose_stride": (lambda: F.conv_transpose2d(X, W, stride=BIG), r"stride(\[0\])?"),
    "tf_strides": (lambda: ctf.nn.conv2d(XL, WL, strides=BIG, padding="VALID"), r"strides"),
    "jax_window_strides": (lambda: cjax.lax.conv_general_dilated(X, W, (BIG, 1), "VALID"),
                           r"window_strides\[0\]"),
    "jax_rhs_dilation": (lambda: cjax.lax.conv_general_dilated(X, W, (1, 1), "VALID", rhs_dilation=(1, BIG)),
                         r"rhs_dilation\[1\]"),
    "jax_lhs_dilation": (lambda: cjax.lax.conv_general_dilated(X, W, (1, 1), "VALID", lhs_dilation=(BIG, 1)),
                         r"lhs_dilation\[0\]"),
    "onnx_strides": (lambda: conv_onnx.conv(X, W, strides=[BIG, 1]), r"strides\[0\]"),
    "onnx_dilations": (lambda: conv_onnx.conv(X, W, dilations=[1, BIG]), r"dilations\[1\]"),
    "onnx_transpose_strides": (lambda: conv_onnx.conv_transpose(X, W, strides=[BIG, 1]), r"strides\[0\]"),
}


@pytest.mark.parametrize("name", sorted(OVERFLOW))
def test_int64_overflow_names_the_parameter(name):
    call, param = OVERFLOW[name]
    with pytest.raises(ValueError, match=rf"{param}=9223372036854775808 is outside the int64 range"):
        call()


@pytest.mark.parametrize("op", [conv_onnx.conv, conv_onnx.conv_transpose])
@pytest.mark.parametrize("missing", ["X", "W"])
def test_onnx_missing_operand_is_a_type_error_naming_it(op, missing):
    args = {"X": X, "W": W, missing: None}
    with pytest.raises(TypeError, match=rf"^{missing} has dtype object"):
        op(args["X"], args["W"])


def _big(shape, dtype=np.float64):
    """A broadcast view of tens of GiB: free until something copies it."""
    return np.broadcast_to(np.ones((), dtype), shape)


TOO_BIG = r"needs {} bytes, more than the workspace budget of 2,147,483,648 bytes"
G64 = TOO_BIG.format("68,719,476,736")
G32 = TOO_BIG.format("34,359,738,368")
IDX = TOO_BIG.format("34,359,738,384")
CROP = TOO_BIG.format("34,358,689,792")
SYMM = TOO_BIG.format("34,363,932,800")
FOUR_G = (4, 32768, 8192, 8)  # 2**33 samples: 64 GiB of float64
MEMORY = {
    "tf_bias_add": (lambda: ctf.nn.bias_add(_big(FOUR_G), np.ones(8)),
                    r"the result \(4, 32768, 8192, 8\) " + G64),
    "onnx_conv_integer": (lambda: conv_onnx.conv_integer(_big((1, 1, 2**16, 2**16), np.uint8),
                                                         np.ones((1, 1, 1, 1), np.uint8)),
                          r"a contiguous copy of x \(1, 1, 65536, 65536\) " + G32),
    "jax_conv": (lambda: cjax.lax.conv(_big((1, 1, 2**17, 2**16)), np.ones((1, 1, 1, 1)), (1024, 1024),
                                       "VALID"),
                 r"a contiguous copy of x \(1, 131072, 65536, 1\) " + G64),
    "jax_conv_cast": (lambda: cjax.lax.conv_general_dilated(
        _big((1, 1, 2**17, 2**16), np.float32), np.ones((1, 1, 1, 1), np.float32), (1024, 1024), "VALID",
        preferred_element_type=np.float64),
        r"a contiguous copy of lhs \(1, 1, 131072, 65536\) " + G64),
    "jax_conv_transpose": (lambda: cjax.lax.conv_transpose(
        _big((1, 2**17, 2**16, 1)), np.ones((1, 1, 1, 1)), (1, 1), "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC")), G64),
    "torch_pad_constant": (lambda: F.pad(np.ones((1, 1, 2)), (2**31, 2**31)),
                           r"the source index of dim 2 \(size 4294967298\) " + IDX),
    "torch_pad_replicate": (lambda: F.pad(np.ones((1, 1, 2)), (2**31, 2**31), mode="replicate"),
                            r"the source index of dim 2 \(size 4294967298\) " + IDX),
    "torch_pad_crop": (lambda: F.pad(_big((2**16, 2**16)), (-1, -1)),
                       r"the result \(65536, 65534\) " + CROP),
    "scipy_convolve2d_symm": (lambda: cscipy.signal.convolve2d(_big((2**16, 2**16)), np.ones((3, 3)),
                                                               boundary="symm"),
                              r"in1 extended by the boundary \(65540, 65540\) " + SYMM),
    "scipy_correlate2d_wrap": (lambda: cscipy.signal.correlate2d(_big((2**16, 2**16)), np.ones((3, 3)),
                                                                 boundary="wrap"),
                               r"in1 extended by the boundary \(65540, 65540\) " + SYMM),
}


@pytest.mark.parametrize("name", sorted(MEMORY))
def test_huge_temporaries_are_refused_before_allocation(name, monkeypatch):
    """Each of these made a copy of tens of GiB (MemoryError, or the OOM killer) before any check."""
    monkeypatch.delenv("CONVGRAD_WORKSPACE_BYTES", raising=False)
    call, message = MEMORY[name]
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        call()
    assert time.perf_counter() - start < 5


def test_budgeted_copies_still_compute():
    """A small broadcast operand is copied and gives the dense operand's values."""
    x = np.broadcast_to(np.arange(5.0), (2, 3, 4, 5))
    w = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    dense = np.ascontiguousarray(x)
    np.testing.assert_array_equal(F.pad(x, (1, 2)), np.pad(dense, [(0, 0)] * 3 + [(1, 2)]))
    np.testing.assert_array_equal(ctf.nn.bias_add(x, np.ones(5)), dense + 1)
    np.testing.assert_array_equal(cscipy.signal.correlate2d(x[0, 0], w[0, 0], boundary="symm"),
                                  cscipy.signal.correlate2d(dense[0, 0], w[0, 0], boundary="symm"))
    np.testing.assert_array_equal(cjax.lax.conv(x[:, :1], w, (1, 1), "VALID"),
                                  cjax.lax.conv(dense[:, :1], w, (1, 1), "VALID"))


G = ctorch.nn.grad
ONES = np.ones((1, 1, 3, 3))
DY3, DY4 = np.ones((1, 3, 3, 1)), np.ones((1, 4, 4, 1))
# The parameters as each front spells them; the core says dy, w, x, input_shape, filter_shape.
NAMES = {
    "torch_input_size": (
        lambda: G.conv2d_input((1, 1, 9, 9), ONES, ONES),
        r"^grad_output\.shape=\(1, 1, 3, 3\) does not match the output shape \(1, 1, 7, 7\) of a conv "
        r"of input_size \(1, 1, 9, 9\) with weight\.shape \(1, 1, 3, 3\): in spatial dim 0 "
        r"\(array axis 2 channels-first"),
    "torch_weight_size": (
        lambda: G.conv2d_weight(np.ones((1, 1, 5, 5)), (1, 1, 3, 3), np.ones((1, 1, 4, 4))),
        r"^grad_output\.shape=\(1, 1, 4, 4\) does not match the output shape \(1, 1, 3, 3\) of a conv "
        r"of input\.shape \(1, 1, 5, 5\) with weight_size \(1, 1, 3, 3\)$"),
    "tf_input_sizes": (
        lambda: ctf.nn.conv2d_backprop_input((1, 9, 9, 1), WL, DY3, [1] * 4, "VALID"),
        r"^out_backprop\.shape=\(1, 3, 3, 1\) .* of a conv of input_sizes \(1, 9, 9, 1\) with "
        r"filter\.shape \(3, 3, 1, 1\): in spatial dim 0 \(array axis 2 channels-first, 1 channels-last\)"),
    "tf_filter_sizes": (
        lambda: ctf.nn.conv2d_backprop_filter(XL, (3, 3, 1, 1), DY4, [1] * 4, "VALID"),
        r"^out_backprop\.shape=\(1, 4, 4, 1\) .* of a conv of input\.shape \(1, 5, 5, 1\) with "
        r"filter_sizes \(3, 3, 1, 1\)$"),
    "tf_transpose": (
        lambda: ctf.nn.conv2d_transpose(DY3, WL, (1, 9, 9, 1), [1] * 4, "VALID"),
        r"^input\.shape=\(1, 3, 3, 1\) .* of a conv of output_shape \(1, 9, 9, 1\) with "
        r"filters\.shape \(3, 3, 1, 1\)"),
    "torch_conv2d_channels": (
        lambda: F.conv2d(np.ones((1, 2, 5, 5)), np.ones((1, 3, 3, 3))),
        r"^input has 2 channels but groups \* weight in_channels = 1 \* 3 = 3$"),
    "torch_input_size_channels": (
        lambda: G.conv2d_input((1, 2, 5, 5), ONES, ONES),
        r"^input_size has 2 channels but groups \* weight in_channels = 1 \* 1 = 1$"),
    "onnx_conv_channels": (
        lambda: conv_onnx.conv(np.ones((1, 2, 5, 5)), np.ones((1, 3, 3, 3))),
        r"^X has 2 channels but groups \* W in_channels = 1 \* 3 = 3$"),
    "onnx_conv_integer_channels": (
        lambda: conv_onnx.conv_integer(np.ones((1, 2, 5, 5), np.uint8), np.ones((1, 3, 3, 3), np.uint8)),
        r"^x has 2 channels but groups \* w in_channels = 1 \* 3 = 3$"),
    "tf_negative_input_sizes": (
        lambda: ctf.nn.conv2d_backprop_input((1, -5, 5, 1), WL, DY3, [1] * 4, "VALID"),
        r"^input_sizes must not contain negative sizes"),
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_messages_name_parameters_as_the_front_spells_them(name):
    call, message = NAMES[name]
    with pytest.raises(ValueError, match=message):
        call()


# --- holes found by the fuzz (tests/test_fuzz.py); "seed S call i" replays the original with
# ``python tests/fuzz_calls.py --seed S --show i`` as the generator stood when it was found.
FUZZ = {
    # seed 1 calls 90 and 349: MemoryError comparing a broadcast `value` with 0, or NumPy's
    # "truth value of an array ... is ambiguous"
    "torch_pad_array_value": (lambda: F.pad(np.ones((1, 1, 7)), (0, 1), mode="circular",
                                            value=_big((2**23, 2**23, 3))),
                              TypeError, r"^value must be a number, got array"),
    "torch_pad_vjp_array_value": (lambda: F.pad.vjp(np.ones((2, 1, 3, 3)), (1, 2, 2, 1), mode="replicate",
                                                    value=np.ones(3)),
                                  TypeError, r"^value must be a number"),
    # seed 11 call 1811: TypeError "'>' not supported between instances of 'tuple' and 'int'"
    "tf_depthwise_nested_dilations": (lambda: ctf.nn.depthwise_conv2d(XL, np.ones((1, 1, 1, 2)), [1] * 4,
                                                                       "VALID", dilations=((1, 1), (1, 1))),
                                      TypeError, r"^dilations\[0\] must be an integer, got \(1, 1\)"),
    # seed 12 call 111: NumPy's UFuncTypeError for a structured-dtype dilations array
    "tf_depthwise_struct_dilations": (lambda: ctf.nn.depthwise_conv2d(
        XL, np.ones((1, 1, 1, 2)), [1] * 4, "VALID", dilations=np.ones(2, [("a", "f8")])),
        TypeError, r"^dilations\[0\] must be an integer"),
    # seed 21 call 9263: a hang reading a 2**40-entry array given as pad
    "torch_pad_huge_pad_array": (lambda: F.pad(np.ones((1, 1, 3)), _big((2**40,))),
                                 ValueError, r"^pad must have at most 128 entries, got 1099511627776"),
    # seed 21 calls 2081 and 4584: MemoryError drawing a 128 GiB weight; ZeroDivisionError for
    # a huge NumPy in_channels (fan_in overflowed to 0)
    "torch_layer_huge_weight": (lambda: ctorch.nn.Conv1d(2**32, 4, 2, groups=2),
                                ValueError, r"^weight \(4, 2147483648, 2\) needs 137,438,953,472 bytes"),
    "torch_layer_numpy_channels": (lambda: ctorch.nn.Conv2d(np.uint64(2**63), 1, (2, 1)),
                                   ValueError, r"^weight \(1, 9223372036854775808, 2, 1\) needs"),
    "torch_layer_negative_channels": (lambda: ctorch.nn.Conv2d(-2, 1, 3),
                                      ValueError, r"^in_channels and out_channels must be non-negative"),
    # seed 32 call 10846: NumPy's "truth value ... ambiguous" comparing an array padding to "SAME"
    "jax_transpose_array_padding": (lambda: cjax.lax.conv_transpose(
        np.ones((1, 8, 2)), np.ones((3, 2, 2)), (2,), np.array([(0, 0), (1, 1)], object),
        use_consistent_padding=True), ValueError, r"(?s)^padding=.* must have one \(low, high\) pair"),
    # seed 33 call 12033: a hang reading a 2**37-entry kernel_shape
    "onnx_huge_kernel_shape": (lambda: conv_onnx.conv_transpose(X, W, kernel_shape=_big((2**37,), np.int64)),
                               ValueError, r"^kernel_shape must have at most 64 entries, got 137438953472"),
    # the same hole, found by reading the code after it: every front's per-dim list
    "tf_huge_strides": (lambda: ctf.nn.conv2d(XL, WL, strides=_big((2**40,), np.int64), padding="VALID"),
                        ValueError, r"^strides must have at most 64 entries"),
    "jax_huge_padding": (lambda: cjax.lax.conv_general_dilated(X, W, (1, 1), _big((2**40, 2), np.int64)),
                         ValueError, r"^padding must have at most 64 entries"),
    # seed 1 call 5815: a 512 MiB copy of a broadcast int64 bias, made before any check
    "tf_bias_add_cast": (lambda: ctf.nn.bias_add(np.ones((0, 3, 3, 2)), _big((2**32,), np.int64)),
                         ValueError, r"^bias \(4294967296,\) converted to float64 needs 34,359,738,368"),
}


@pytest.mark.parametrize("name", sorted(FUZZ))
def test_fuzz_findings_in_the_fronts(name):
    call, exc, message = FUZZ[name]
    start = time.perf_counter()
    with pytest.raises(exc, match=message):
        call()
    assert time.perf_counter() - start < 5


def test_a_layer_without_inputs_is_built_as_pytorch_builds_it():
    """seed 21 call 4584's neighbour: in_channels=0 divided by zero computing the init bound;
    PyTorch's bound for no inputs is 0 (an empty weight and a zero bias)."""
    layer = ctorch.nn.Conv2d(0, 3, 2)
    assert layer.weight.shape == (3, 0, 2, 2)
    np.testing.assert_array_equal(layer.bias, np.zeros(3, np.float32))


def test_a_huge_scipy_kernel_is_refused_at_once(monkeypatch):
    """seed 20261206 call 453: the split-kernel engine listed every one of the kernel's 786,432
    tap offsets to cost the plan (seconds) before the budget refused it."""
    monkeypatch.setenv("CONVGRAD_WORKSPACE_BYTES", str(64 * 2**20))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"workspace budget of 67,108,864 bytes"):
        cscipy.signal.correlate(np.ones((4, 2, 5)), _big((65536, 6, 2)))
    assert time.perf_counter() - start < 1
