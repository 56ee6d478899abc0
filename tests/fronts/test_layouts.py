"""convgrad.layouts: each framework's filter, converted, gives the same convolution in the real
libraries (TensorFlow, PyTorch, JAX, onnxruntime); the conversions round-trip; bad layout
strings are refused clearly.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

from convgrad.layouts import convert_filter, filter_layout

rng = np.random.default_rng(5)
SP = {1: "W", 2: "HW", 3: "DHW"}


def channels_first(x):
    return np.moveaxis(x, -1, 1)


@settings(max_examples=30)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2]), st.data())
def test_conv_filters_give_the_same_conv_everywhere(rank, cin_g, cout_g, groups, data):
    k = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    cin, cout = cin_g * groups, cout_g * groups
    x = rng.standard_normal((1, *[data.draw(st.integers(3, 5)) for _ in range(rank)], cin))  # channels-last
    w_tf = rng.standard_normal((*k, cin_g, cout))
    ref = tf.nn.convolution(x, w_tf, padding="VALID").numpy() if groups == 1 or rank < 3 else None
    w_torch = convert_filter(w_tf, filter_layout("tf", "conv", rank), filter_layout("torch", "conv", rank))
    conv = getattr(F, f"conv{rank}d")
    y_torch = conv(torch.tensor(channels_first(x)), torch.tensor(w_torch), groups=groups)
    y_torch = np.moveaxis(y_torch.numpy(), 1, -1)
    if ref is not None:
        np.testing.assert_allclose(y_torch, ref, atol=1e-10)
    w_jax = convert_filter(w_tf, "".join(SP[rank]) + "IO", filter_layout("jax", "conv", rank))
    y_jax = np.moveaxis(np.asarray(lax.conv_general_dilated(channels_first(x), w_jax, (1,) * rank, "VALID",
                                                            feature_group_count=groups)), 1, -1)
    np.testing.assert_allclose(y_jax, y_torch, atol=1e-4 * max(1, np.abs(y_torch).max()))
    assert filter_layout("onnx", "conv", rank) == filter_layout("torch", "conv", rank)
    back = convert_filter(w_torch, filter_layout("torch", "conv", rank), filter_layout("tf", "conv", rank))
    np.testing.assert_array_equal(back, w_tf)


@settings(max_examples=25)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.data())
def test_transposed_conv_filters(rank, cin, cout, s, data):
    k = [data.draw(st.integers(1, 3)) for _ in range(rank)]
    n = [data.draw(st.integers(1, 4)) for _ in range(rank)]
    x = rng.standard_normal((1, *n, cin))
    w_tf = rng.standard_normal((*k, cout, cin))  # (k..., C_out, C_in): the forward conv's filter
    out = [(ni - 1) * s + ki for ni, ki in zip(n, k)]
    ref = getattr(tf.nn, f"conv{rank}d_transpose")(x, w_tf, [1, *out, cout], s, "VALID").numpy()
    w_torch = convert_filter(w_tf, filter_layout("tf", "conv_transpose", rank),
                             filter_layout("torch", "conv_transpose", rank))
    y = getattr(F, f"conv_transpose{rank}d")(torch.tensor(channels_first(x)), torch.tensor(w_torch), stride=s)
    np.testing.assert_allclose(np.moveaxis(y.numpy(), 1, -1), ref, atol=1e-10)
    w_jax = convert_filter(w_tf, filter_layout("tf", "conv_transpose", rank),
                           filter_layout("jax", "conv_transpose", rank))
    # JAX's "VALID" picks max(n s, (n - 1) s + k); the transposed conv's own pads k - 1 give TF's size
    y_jax = np.asarray(lax.conv_transpose(x, w_jax, (s,) * rank, [(ki - 1, ki - 1) for ki in k],
                                          transpose_kernel=True))
    np.testing.assert_allclose(y_jax, ref, atol=1e-4 * max(1, np.abs(ref).max()))
    # the same transpose as the forward conv's: HWOI -> IOHW is HWIO -> OIHW
    np.testing.assert_array_equal(w_torch, convert_filter(w_tf, SP[rank] + "IO", "OI" + SP[rank]))


@settings(max_examples=20)
@given(st.integers(1, 4), st.integers(1, 3), st.data())
def test_depthwise_filters(c, m, data):
    k = [data.draw(st.integers(1, 3)) for _ in range(2)]
    x = rng.standard_normal((1, 5, 6, c))
    w_tf = rng.standard_normal((*k, c, m))
    ref = tf.nn.depthwise_conv2d(x, w_tf, [1, 1, 1, 1], "VALID").numpy()
    w_torch = convert_filter(w_tf, "HWIM", "OIHW")
    assert w_torch.shape == (c * m, 1, *k)
    y = F.conv2d(torch.tensor(channels_first(x)), torch.tensor(w_torch), groups=c)
    np.testing.assert_allclose(np.moveaxis(y.numpy(), 1, -1), ref, atol=1e-10)
    np.testing.assert_array_equal(convert_filter(w_torch, "OIHW", "HWIM", in_channels=c), w_tf)
    np.testing.assert_array_equal(convert_filter(w_torch, "OIHW", "HWIM", multiplier=m), w_tf)
    np.testing.assert_array_equal(convert_filter(w_tf, "HWIM", "IMHW"), w_tf.transpose(2, 3, 0, 1))


def test_layout_table():
    frameworks = ("tf", "torch", "onnx", "jax")
    assert [filter_layout(f, "conv", 2) for f in frameworks] == ["HWIO", "OIHW", "OIHW", "OIHW"]
    assert [filter_layout(f, "conv_transpose", 2) for f in ("tf", "torch", "onnx", "jax")] == \
        ["HWOI", "IOHW", "IOHW", "HWOI"]
    assert filter_layout("tf", "depthwise", 2) == "HWIM"
    assert filter_layout("torch", "conv", 3) == "OIDHW" and filter_layout("tf", "conv", 1) == "WIO"
    # any spatial letters, any rank
    w = rng.standard_normal((2, 3, 4, 5, 6, 7))
    assert convert_filter(w, "abcdIO", "OIabcd").shape == (7, 6, 2, 3, 4, 5)


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    (("HWIO", "OIHW"), {}, None),
    (("HWII", "OIHW"), {}, "repeats"),
    (("HWXO", "OIHW"), {}, "needs 'I'"),
    (("HWIO", "OMHW"), {}, "needs 'I'"),
    (("HWIO", "OIDHW"), {}, "letters but the filter has"),
    (("HWIO", "OIHZ"), {}, "different spatial"),
    (("HW-O", "OIHW"), {}, "letters or digits"),
    ((3, "OIHW"), {}, "layout string"),
    (("IO", "OI"), {}, "no spatial"),
    (("OIHW", "HWIM"), {}, "needs in_channels"),
    (("OIHW", "HWIM"), {"in_channels": 3}, "positive divisor"),
    (("HWIO", "OIHW"), {"in_channels": 2}, "only apply"),
    (("OIHW", "HWIM"), {"in_channels": 2, "multiplier": 2}, "not both"),
])
def test_bad_layouts_are_refused(args, kwargs, match):
    w = np.zeros((3, 3, 1, 4)) if args[0] != "OIHW" else np.zeros((4, 1, 3, 3))
    if match is None:
        assert convert_filter(w, *args, **kwargs).shape == (4, 1, 3, 3)
        return
    with pytest.raises((ValueError, TypeError), match=match):
        convert_filter(w if args[0] not in ("IO",) else np.zeros((2, 2)), *args, **kwargs)


def test_grouped_to_depthwise_needs_one_input_channel():
    with pytest.raises(ValueError, match="I = 1"):
        convert_filter(np.zeros((4, 2, 3, 3)), "OIHW", "HWIM", in_channels=2)


@pytest.mark.parametrize(("args", "match"), [(("keras", "conv", 2), "framework"), (("tf", "deconv", 2), "op"),
                                             (("tf", "conv", 4), "rank")])
def test_filter_layout_refuses_unknown_names(args, match):
    with pytest.raises(ValueError, match=match):
        filter_layout(*args)
