"""convgrad.onnx against onnxruntime running one-node models (opset 22; ConvInteger opset 10).

Forward values against onnxruntime (float32: its CPU provider has no float64 Conv) on random
geometries; gradients (``op.vjp``, run in float64) by the adjoint dot test and by central
differences, which are exact up to rounding for any step because each op is linear in each
argument. Inputs onnxruntime rejects are rejected; the places where onnxruntime departs from the
spec are pinned by their own tests below.

Tolerances: float32 results of two implementations summing in different orders, relative to the
largest value (1e-5 per term, at most ~200 terms here); float64 identities 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from onnx import TensorProto, helper

from convgrad import onnx as conv_onnx
from strategies import budget
from tally import checked_against

ELEM = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
        np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
        np.dtype(np.int32): TensorProto.INT32}
OPSET = {"Conv": 22, "ConvTranspose": 22, "ConvInteger": 10}


def _integer_kernels_saturate() -> bool:
    """Whether onnxruntime's ConvInteger is no oracle on this CPU: on x86 without VNNI (AVX2) its
    8-bit kernels add pairs of products in int16 with saturation (VPMADDUBSW; onnxruntime issues
    16105 and 24220): 34820 came back as 32767 here."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    return not (features.get("avx512vnni", False) or features.get("avxvnni", False))


INTEGER_KERNELS_SATURATE = _integer_kernels_saturate()


def onnxruntime_run(op, inputs, out_dtype=None, **attrs):
    """Run a one-node ``op`` model; ``None`` inputs are omitted optional inputs."""
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    while names and names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, ["y"], **{k: v for k, v in attrs.items() if v is not None})
    feeds = {n: np.asarray(a) for n, a in zip(names, inputs) if n}
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, ELEM[a.dtype], a.shape) for n, a in feeds.items()],
        [helper.make_tensor_value_info("y", ELEM[np.dtype(out_dtype or inputs[0].dtype)], None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET[op])])
    model.ir_version = 10
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def assert_close32(got, want):
    assert got.shape == want.shape, f"shape {got.shape} != onnxruntime's {want.shape}"
    assert got.dtype == want.dtype, f"dtype {got.dtype} != onnxruntime's {want.dtype}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


def check_gradients(op, args, attrs, rng):
    """``op.vjp`` in float64: central differences along random directions, and the dot test.

    ``args`` = (X, W, B or None); the op is linear in each of them, so a step of 1 is exact.
    """
    args = [None if a is None else a.astype(np.float64) for a in args]
    y, pullback = op.vjp(*args, **attrs)
    dy = rng.standard_normal(y.shape)
    grads = pullback(dy)
    assert len(grads) == 3
    for i, a in enumerate(args):
        if a is None:
            assert grads[i] is None
            continue
        assert grads[i].shape == a.shape and grads[i].dtype == np.float64
        v = rng.standard_normal(a.shape)
        plus = [b if j != i else b + v for j, b in enumerate(args)]
        minus = [b if j != i else b - v for j, b in enumerate(args)]
        directional = np.vdot(op(*plus, **attrs) - op(*minus, **attrs), dy) / 2
        np.testing.assert_allclose(np.vdot(grads[i], v), directional, rtol=1e-9, atol=1e-9 * np.abs(dy).sum())
    x, w, b = args
    bias_part = 0.0 if b is None else np.vdot(grads[2], b)
    total = np.vdot(y, dy) - bias_part  # <L(X, W), dy> for the bilinear part L
    for g, a in ((grads[0], x), (grads[1], w)):
        np.testing.assert_allclose(np.vdot(g, a), total, rtol=1e-9, atol=1e-9 * (1 + np.abs(y).sum()))


def k_eff(k, d):
    return (k - 1) * d + 1


def same_pads(n, k, s, d, upper):
    """The Conv spec's SAME pads (flat ONNX order is built by the caller)."""
    total = max((-(-n // s) - 1) * s + k_eff(k, d) - n, 0)
    small, big = total // 2, total - total // 2
    return (small, big) if upper else (big, small)


# --- Conv ---------------------------------------------------------------------------------------
@st.composite
def conv_cases(draw):
    ints = st.integers
    rank = draw(st.sampled_from([1, 1, 2, 2, 3]))
    kernel = [draw(ints(1, 3)) for _ in range(rank)]
    strides = [draw(ints(1, 3)) for _ in range(rank)]
    dilations = [draw(ints(1, 2)) for _ in range(rank)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "default", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    pads = [draw(ints(0, 2)) for _ in range(2 * rank)] if auto_pad == "NOTSET" else None
    spatial = []
    for i, (k, d) in enumerate(zip(kernel, dilations)):
        room = 0 if pads is None else pads[i] + pads[i + rank]
        spatial.append(max(1, k_eff(k, d) - room) + draw(ints(0, 3 if rank < 3 else 1)))
    grouping = draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    g = 1 if grouping == "plain" else draw(ints(2, 3))
    c = g * (1 if grouping == "depthwise" else draw(ints(1, 2)))
    m = g * draw(ints(1, 2))
    attrs = {"strides": strides if draw(st.booleans()) or strides != [1] * rank else None,
             "dilations": dilations, "group": g, "pads": pads,
             "auto_pad": None if auto_pad == "default" else auto_pad,
             "kernel_shape": kernel if draw(st.booleans()) else None}
    return (draw(ints(1, 2)), c, *spatial), (m, c // g, *kernel), draw(st.booleans()), attrs


def ours(attrs):
    """convgrad's keywords: the same names, with ONNX defaults for the absent ones."""
    return {k: v for k, v in attrs.items() if v is not None}


@budget(90)
@given(conv_cases(), st.integers(0, 2**32 - 1))
@checked_against("onnxruntime")
def test_conv_matches_onnxruntime(case, seed):
    x_shape, w_shape, with_bias, attrs = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if with_bias else None
    ort_attrs = dict(attrs)
    if attrs["auto_pad"] in ("SAME_UPPER", "SAME_LOWER") and any(d > 1 for d in attrs["dilations"]):
        # onnxruntime refuses dilated SAME (the spec does not): give it the spec's pads instead.
        pairs = [same_pads(n, k, s, d, attrs["auto_pad"] == "SAME_UPPER")
                 for n, k, s, d in zip(x_shape[2:], w_shape[2:], attrs["strides"] or [1] * len(x_shape[2:]),
                                       attrs["dilations"])]
        ort_attrs.update(auto_pad=None, pads=[p for p, _ in pairs] + [q for _, q in pairs])
    want = onnxruntime_run("Conv", [x, w, b], **ort_attrs)
    assert_close32(conv_onnx.conv(x, w, b, **ours(attrs)), want)
    check_gradients(conv_onnx.conv, (x, w, b), ours(attrs), rng)


# --- ConvTranspose ------------------------------------------------------------------------------
@st.composite
def transpose_cases(draw):
    ints = st.integers
    rank = draw(st.sampled_from([1, 1, 2, 2, 3]))
    kernel = [draw(ints(1, 3)) for _ in range(rank)]
    strides = [draw(ints(1, 3)) for _ in range(rank)]
    dilations = [draw(ints(1, 2)) for _ in range(rank)]
    spatial = [draw(ints(1, 4 if rank < 3 else 2)) for _ in range(rank)]
    # onnxruntime's shape check allows output_padding < stride only (see the test below).
    output_padding = [draw(ints(0, s - 1)) for s in strides]
    full = [s * (n - 1) + k_eff(k, d) for n, k, s, d in zip(spatial, kernel, strides, dilations)]
    mode = draw(st.sampled_from(["pads", "pads", "output_shape", "same", "valid"]))
    attrs = {"strides": strides, "dilations": dilations, "output_padding": output_padding}
    if mode == "pads":
        pads = [draw(ints(0, 2)) for _ in range(2 * rank)]
        for i in range(rank):
            if full[i] + output_padding[i] - pads[i] - pads[i + rank] < 1:
                pads[i] = pads[i + rank] = 0  # keep the output non-empty
        attrs["pads"] = pads
    elif mode == "output_shape":
        attrs["output_shape"] = [draw(ints(max(1, f - 3), f + s - 1)) for f, s in zip(full, strides)]
        attrs["auto_pad"] = draw(st.sampled_from([None, "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    elif mode == "same":
        # SAME needs (K - 1) * dilation + 1 + output_padding >= stride (else the spec's pads < 0).
        for i, (k, d, s) in enumerate(zip(kernel, dilations, strides)):
            if k_eff(k, d) + output_padding[i] < s:
                kernel[i] = s
        attrs["auto_pad"] = draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER"]))
    else:
        attrs["auto_pad"] = "VALID"
    g = draw(ints(1, 2))
    c, m = g * draw(ints(1, 2)), g * draw(ints(1, 2))
    attrs["group"] = g
    return (draw(ints(1, 2)), c, *spatial), (c, m // g, *kernel), draw(st.booleans()), attrs


@budget(90)
@given(transpose_cases(), st.integers(0, 2**32 - 1))
@checked_against("onnxruntime")
def test_conv_transpose_matches_onnxruntime(case, seed):
    x_shape, w_shape, with_bias, attrs = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[1] * attrs["group"]).astype(np.float32) if with_bias else None
    want = onnxruntime_run("ConvTranspose", [x, w, b], **attrs)
    assert_close32(conv_onnx.conv_transpose(x, w, b, **ours(attrs)), want)
    check_gradients(conv_onnx.conv_transpose, (x, w, b), ours(attrs), rng)


# --- ConvInteger --------------------------------------------------------------------------------
@budget(40)
@given(conv_cases(), st.integers(0, 2**32 - 1), st.sampled_from([np.uint8, np.int8]),
       st.sampled_from([np.uint8, np.int8]), st.booleans(), st.booleans())
@checked_against("onnxruntime")
def test_conv_integer_matches_onnxruntime(case, seed, x_dtype, w_dtype, x_zp, w_zp):
    x_shape, w_shape, _, attrs = case
    rng = np.random.default_rng(seed)
    info_x, info_w = np.iinfo(x_dtype), np.iinfo(w_dtype)
    x = rng.integers(info_x.min, info_x.max, x_shape, endpoint=True).astype(x_dtype)
    w = rng.integers(info_w.min, info_w.max, w_shape, endpoint=True).astype(w_dtype)
    xz = x_dtype(rng.integers(info_x.min, info_x.max)) if x_zp else None
    wz = np.array([rng.integers(info_w.min, info_w.max)], dtype=w_dtype) if w_zp else None
    ort_attrs = dict(attrs)
    if attrs["auto_pad"] in ("SAME_UPPER", "SAME_LOWER") and any(d > 1 for d in attrs["dilations"]):
        ort_attrs["dilations"] = None
        attrs = dict(attrs, dilations=None)
    if not x_zp and w_zp:
        xz = x_dtype(0)
    xs = x.astype(np.int64) - (0 if xz is None else int(xz))
    ws = w.astype(np.int64) - (0 if wz is None else int(wz[0]))
    if INTEGER_KERNELS_SATURATE:  # onnxruntime's float Conv on the shifted operands: exact while
        # every sum of |products| stays below 2^24 (float32's integers)
        largest = int(np.abs(ws).max(initial=0)) * int(np.abs(xs).max(initial=0))
        assume(largest * math.prod(w.shape[1:]) < 2**24)
        want = onnxruntime_run("Conv", [xs.astype(np.float32), ws.astype(np.float32)], **ort_attrs)
        want = want.astype(np.int32)
    else:
        want = onnxruntime_run("ConvInteger", [x, w, None if xz is None else np.asarray(xz), wz],
                               out_dtype=np.int32, **ort_attrs)
    got = conv_onnx.conv_integer(x, w, xz, wz, **ours(attrs))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    # Gradients of the real-valued extension, exactly in integers: the dot test.
    y, pullback = conv_onnx.conv_integer.vjp(x, w, xz, wz, **ours(attrs))
    dy = rng.integers(-3, 4, y.shape)
    dx, dw, dxz, dwz = pullback(dy)
    exact = np.vdot(y.astype(np.int64), dy) if np.abs(y).max(initial=0) < 2**31 - 1 else None
    if exact is not None:
        assert np.vdot(dx, xs) == exact and np.vdot(dw, ws) == exact
    if xz is not None:
        assert dxz.shape == np.shape(xz) and dxz == -dx.sum()
    if wz is not None:
        assert dwz.shape == wz.shape and dwz[0] == -dw.sum()


# --- where onnxruntime departs from the spec ------------------------------------------------
def test_dilated_same_conv_follows_the_spec_where_onnxruntime_refuses():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 7, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 2)).astype(np.float32)
    attrs = {"auto_pad": "SAME_LOWER", "dilations": [2, 3], "strides": [2, 1]}
    with pytest.raises(Exception, match="Dilation not supported"):
        onnxruntime_run("Conv", [x, w], **attrs)
    got = conv_onnx.conv(x, w, **attrs)
    assert got.shape == (1, 3, 4, 6)  # ceil(input / stride)
    (a, b), (c, d) = same_pads(7, 3, 2, 2, False), same_pads(6, 2, 1, 3, False)
    assert_close32(got, onnxruntime_run("Conv", [x, w], pads=[a, c, b, d], dilations=[2, 3], strides=[2, 1]))


def test_per_channel_w_zero_point_follows_the_spec_where_onnxruntime_refuses():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (2, 3, 6)).astype(np.uint8)
    w = rng.integers(0, 256, (4, 3, 2)).astype(np.uint8)
    xz, wz = np.uint8(7), np.array([1, 50, 100, 200], np.uint8)
    with pytest.raises(Exception, match="per-tensor"):
        onnxruntime_run("ConvInteger", [x, w, np.asarray(xz), wz], out_dtype=np.int32)
    got = conv_onnx.conv_integer(x, w, xz, wz, pads=[1, 0])
    per_channel = [
        onnxruntime_run("ConvInteger", [x, w[m:m + 1], np.asarray(xz), wz[m:m + 1]], out_dtype=np.int32,
                        pads=[1, 0])
        for m in range(4)
    ]
    np.testing.assert_array_equal(got, np.concatenate(per_channel, axis=1))
    _, pullback = conv_onnx.conv_integer.vjp(x, w, xz, wz, pads=[1, 0])
    dx, dw, dxz, dwz = pullback(np.ones(got.shape, np.int64))
    np.testing.assert_array_equal(dwz, -dw.sum(axis=(1, 2)))
    assert dxz == -dx.sum()


def test_output_padding_below_dilation_follows_the_spec_where_onnxruntime_refuses():
    """The spec bounds output_padding by stride/dilation; onnxruntime's shape check by stride."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 4)).astype(np.float32)
    w = rng.standard_normal((1, 1, 3)).astype(np.float32)
    with pytest.raises(Exception, match="output_padding"):
        onnxruntime_run("ConvTranspose", [x, w], dilations=[3], output_padding=[2], pads=[0, 2])
    got = conv_onnx.conv_transpose(x, w, dilations=[3], output_padding=[2], pads=[0, 2])
    # output_padding selects computed samples: the same as cropping 2 fewer at the end.
    assert_close32(got, onnxruntime_run("ConvTranspose", [x, w], dilations=[3], pads=[0, 0]))


def test_same_transpose_beyond_the_full_size_is_an_error_where_onnxruntime_shrinks_it():
    x, w = np.ones((1, 1, 4), np.float32), np.ones((1, 1, 1), np.float32)
    assert onnxruntime_run("ConvTranspose", [x, w], strides=[3], auto_pad="SAME_UPPER").shape == (1, 1, 10)
    with pytest.raises(ValueError, match="pads would be negative"):
        conv_onnx.conv_transpose(x, w, strides=[3], auto_pad="SAME_UPPER")
    # The size the spec asks for, as an explicit output_shape: the full output, zero-filled.
    want = onnxruntime_run("ConvTranspose", [x, w], strides=[3], output_shape=[12])
    assert_close32(conv_onnx.conv_transpose(x, w, strides=[3], output_shape=[12]), want)


def test_output_shape_ignores_pads_and_splits_as_the_spec_says():
    x, w = np.arange(1.0, 5.0, dtype=np.float32).reshape(1, 1, 4), np.ones((1, 1, 3), np.float32)
    full = conv_onnx.conv_transpose(x, w, strides=[2])
    assert full.shape == (1, 1, 9)
    # total = 9 - 6 = 3: NOTSET puts 2 before, SAME_UPPER 1.
    np.testing.assert_array_equal(conv_onnx.conv_transpose(x, w, strides=[2], output_shape=[6], pads=[0, 0]),
                                  full[..., 2:8])
    np.testing.assert_array_equal(
        conv_onnx.conv_transpose(x, w, strides=[2], output_shape=[6], auto_pad="SAME_UPPER"), full[..., 1:7]
    )


# --- rejected inputs ----------------------------------------------------------------------------
F32 = np.float32
ERROR_CASES = [
    # (description, op, input shapes (None: omitted), dtypes, attributes)
    ("negative pads", "Conv", [(1, 1, 7), (1, 1, 3)], [F32, F32], {"pads": [-1, 0]}),
    ("pads with auto_pad", "Conv", [(1, 1, 7), (1, 1, 3)], [F32, F32],
     {"pads": [0, 0], "auto_pad": "SAME_UPPER"}),
    ("kernel_shape unlike W", "Conv", [(1, 1, 7), (1, 1, 3)], [F32, F32], {"kernel_shape": [2]}),
    ("zero stride", "Conv", [(1, 1, 7), (1, 1, 3)], [F32, F32], {"strides": [0]}),
    ("zero dilation", "Conv", [(1, 1, 7), (1, 1, 3)], [F32, F32], {"dilations": [0]}),
    ("group mismatch", "Conv", [(1, 1, 7), (1, 1, 3)], [F32, F32], {"group": 2}),
    ("bias of the wrong size", "Conv", [(1, 1, 7), (1, 1, 3), (2,)], [F32, F32, F32], {}),
    ("unknown auto_pad", "Conv", [(1, 1, 7), (1, 1, 3)], [F32, F32], {"auto_pad": "FOO"}),
    ("pads of the wrong length", "Conv", [(1, 1, 7), (1, 1, 3)], [F32, F32], {"pads": [1]}),
    ("strides of the wrong length", "Conv", [(1, 1, 7), (1, 1, 3)], [F32, F32], {"strides": [1, 1]}),
    ("kernel larger than the input", "Conv", [(1, 1, 2), (1, 1, 3)], [F32, F32], {}),
    ("integer input", "Conv", [(1, 1, 7), (1, 1, 3)], [np.int32, np.int32], {}),
    ("mixed float types", "Conv", [(1, 1, 7), (1, 1, 3)], [F32, np.float64], {}),
    ("unreachable output_shape", "ConvTranspose", [(1, 1, 4), (1, 1, 3)], [F32, F32],
     {"strides": [2], "output_shape": [11]}),
    ("output_padding not below max(stride, dilation)", "ConvTranspose", [(1, 1, 4), (1, 1, 3)], [F32, F32],
     {"strides": [2], "output_padding": [2]}),
    ("pads cropping the whole output", "ConvTranspose", [(1, 1, 4), (1, 1, 3)], [F32, F32], {"pads": [3, 3]}),
    ("zero output_shape", "ConvTranspose", [(1, 1, 4), (1, 1, 3)], [F32, F32],
     {"strides": [2], "output_shape": [0]}),
    ("transpose channel mismatch", "ConvTranspose", [(1, 2, 4), (1, 1, 3)], [F32, F32], {}),
    ("ConvTranspose negative pads", "ConvTranspose", [(1, 1, 4), (1, 1, 3)], [F32, F32], {"pads": [-1, 0]}),
    ("zero point of another type", "ConvInteger", [(1, 1, 5), (1, 1, 3), ()],
     [np.uint8, np.uint8, np.int8], {}),
    ("2-D zero point", "ConvInteger", [(1, 1, 5), (1, 1, 3), (1, 1)], [np.uint8, np.uint8, np.uint8], {}),
    ("float ConvInteger", "ConvInteger", [(1, 1, 5), (1, 1, 3)], [F32, F32], {}),
    ("int16 ConvInteger", "ConvInteger", [(1, 1, 5), (1, 1, 3)], [np.int16, np.int16], {}),
]
OURS = {"Conv": conv_onnx.conv, "ConvTranspose": conv_onnx.conv_transpose,
        "ConvInteger": conv_onnx.conv_integer}


@pytest.mark.parametrize(("what", "op", "shapes", "dtypes", "attrs"), ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_inputs_onnxruntime_rejects_are_rejected(what, op, shapes, dtypes, attrs):
    inputs = [np.ones(s, dtype=d) for s, d in zip(shapes, dtypes)]
    ELEM.setdefault(np.dtype(np.int16), TensorProto.INT16)
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime raises its own exception types
        onnxruntime_run(op, inputs, out_dtype=np.int32 if op == "ConvInteger" else None, **attrs)
    with pytest.raises((ValueError, TypeError)):
        OURS[op](*inputs, **attrs)
    with pytest.raises((ValueError, TypeError)):
        OURS[op].vjp(*inputs, **attrs)
