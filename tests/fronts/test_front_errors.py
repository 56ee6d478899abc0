"""Bad input to every front is refused with a ValueError/TypeError naming the parameter as that
front spells it, before any engine runs or any large allocation."""

from __future__ import annotations

import numpy as np
import pytest

from convgrad import jax as cjax
from convgrad import onnx as conv_onnx
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
