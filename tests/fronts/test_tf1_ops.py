"""convgrad.tf.nn's TensorFlow 1 ops against TensorFlow itself: ``atrous_conv2d``,
``atrous_conv2d_transpose``, ``separable_conv2d``, ``depthwise_conv2d_native`` and its two
backprops, and ``convolution``'s explicit pads on its dilated path.

Each random case runs the real op with the very same arguments where TensorFlow's CPU kernels
run it, and compares the values and the ``.vjp`` gradients with ``tf.GradientTape`` over it
(nested for the backprop ops, whose gradients are those of a gradient). Where the CPU kernels
refuse (NCHW, dilated depthwise) the reference is the same op built from CPU-complete TensorFlow
ops (``ref_conv`` of tests/fronts/test_tf.py: a channels-last conv, the kernel dilated by a 0/1
matrix product, groups by split and concat). Tolerance: float64, 1e-9 relative to the largest
magnitude, as test_tf.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as T
from hypothesis import given
from hypothesis import strategies as st

from convgrad import tf
from fronts.test_tf import close, cpu_limited, ref_conv
from strategies import budget
from tally import checked_against

rng = np.random.default_rng(18)


def arr(shape):
    return rng.standard_normal(shape)


def to_last(a):
    return T.transpose(a, [0, 2, 3, 1])


def to_first(a):
    return T.transpose(a, [0, 3, 1, 2])


def full(values, first, fill=1):
    """A 2-D op's spatial values as TensorFlow's 4-entry list for the data format."""
    return [fill, fill, *values] if first else [fill, *values, fill]


def explicit(pairs, first):
    return [[0, 0], [0, 0], *pairs] if first else [[0, 0], *pairs, [0, 0]]


@st.composite
def window(draw, *, stride=True, dilation=True, kinds=("SAME", "VALID", "explicit"), equal_strides=False):
    """A 2-D window with a padding and input sizes it fits: TensorFlow's output is never empty."""
    k = [draw(st.integers(1, 3)) for _ in range(2)]
    s = [draw(st.integers(1, 3)) if stride else 1 for _ in range(2)]
    if equal_strides:
        s = [s[0], s[0]]
    d = [draw(st.integers(1, 3)) if dilation else 1 for _ in range(2)]
    kind = draw(st.sampled_from(kinds))
    pairs = [[draw(st.integers(0, 2)), draw(st.integers(0, 2))] for _ in range(2)]
    spatial = []
    for ki, di, (lo, hi) in zip(k, d, pairs):
        keff = (ki - 1) * di + 1
        low = {"SAME": 1, "VALID": keff, "explicit": max(1, keff - lo - hi)}[kind]
        spatial.append(draw(st.integers(low, low + 4)))
    return {"k": k, "s": s, "d": d, "kind": kind, "pairs": pairs, "spatial": spatial}


def padding_of(g, first=False):
    return g["kind"] if g["kind"] != "explicit" else explicit(g["pairs"], first)


def ref_padding(g):
    return g["kind"] if g["kind"] != "explicit" else g["pairs"]


def tape_grads(fn, args, cot):
    """The output of ``fn(*variables)`` and its gradients for cotangent ``cot`` (a GradientTape)."""
    vs = [T.Variable(a) for a in args]
    with T.GradientTape() as tape:
        out = fn(*vs)
    return out.numpy(), [g.numpy() for g in tape.gradient(out, vs, output_gradients=T.constant(cot))]


def check(ours, ref, grads, ref_grads, what):
    close(ours, ref, what)
    for i, (a, b) in enumerate(zip(grads, ref_grads)):
        close(a, b, f"{what}: gradient {i}")


# --- atrous_conv2d and convolution's dilated explicit pads ---------------------------------------
@st.composite
def atrous_case(draw):
    func = draw(st.sampled_from(["atrous_conv2d", "atrous_conv2d", "convolution"]))
    g = draw(window(stride=False, dilation=False))
    rates = [draw(st.integers(1, 3)) for _ in range(2)]
    if draw(st.booleans()):
        rates[1] = rates[0]
    if g["kind"] == "explicit" and max(rates) == 1:
        rates[0] = 2  # TensorFlow takes explicit pads only on its dilated path
    g["d"] = rates
    for i in range(2):  # the sizes were drawn for rate 1: keep the output non-empty
        keff = (g["k"][i] - 1) * rates[i] + 1
        if g["kind"] == "VALID":
            g["spatial"][i] = max(g["spatial"][i], keff)
        elif g["kind"] == "explicit":
            g["spatial"][i] = max(g["spatial"][i], keff - sum(g["pairs"][i]))
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    batch = draw(st.sampled_from([(1,), (2,), (2, 1)]))  # TensorFlow takes extra batch dims
    if func == "atrous_conv2d":
        spelled = draw(st.sampled_from([rates, tuple(rates)] + ([rates[0], [rates[0]]]
                                                                  if rates[0] == rates[1] else [])))
    else:
        spelled = draw(st.sampled_from([rates, full(rates, False)]))
    x = arr((*batch, *g["spatial"], cin))
    w = arr((*g["k"], cin // groups, cout))
    return func, g, x, w, spelled, groups


@budget(60)
@given(atrous_case())
@checked_against("tensorflow")
def test_atrous_conv2d_and_dilated_convolution_match_tensorflow(case):
    func, g, x, w, rate, groups = case
    if func == "atrous_conv2d":
        args = {"value": x, "filters": w, "rate": rate, "padding": padding_of(g)}
        real = lambda a, b: T.nn.atrous_conv2d(a, b, rate, padding_of(g))  # noqa: E731
    else:
        args = {"input": x, "filters": w, "padding": padding_of(g), "dilations": rate}
        real = lambda a, b: T.nn.convolution(a, b, padding=padding_of(g), dilations=rate)  # noqa: E731
    op = getattr(tf.nn, func)
    out, pullback = op.vjp(**args)
    np.testing.assert_array_equal(op(**args), out)
    cot = arr(out.shape)
    try:
        ref, ref_grads = tape_grads(real, [x, w], cot)
    except Exception as e:  # grouped backprops: TensorFlow's CPU kernels lack them
        if not cpu_limited(e):
            raise
        close(out, real(x, w).numpy(), f"{func} vs TensorFlow")
        batch_dims = x.ndim - 3
        ref, ref_grads = tape_grads(lambda a, b: ref_conv(a, b, [1, 1], g["d"], ref_padding(g), groups, False,
                                                          batch_dims), [x, w], cot)
    check(out, ref, pullback(cot), ref_grads, func)


# --- atrous_conv2d_transpose -------------------------------------------------------------------------
@st.composite
def atrous_transpose_case(draw):
    rate = draw(st.integers(1, 3))
    g = draw(window(stride=False, dilation=False, kinds=("SAME", "VALID", "explicit") if rate == 1
                    else ("SAME", "VALID")))
    g["d"] = [rate, rate]
    for i in range(2):
        keff = (g["k"][i] - 1) * rate + 1
        if g["kind"] == "VALID":
            g["spatial"][i] = max(g["spatial"][i], keff)
    cin, cout, n = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    out_shape = [n, *g["spatial"], cin]
    sizes = list(g["spatial"]) if rate == 1 and draw(st.booleans()) else out_shape
    return g, rate, out_shape, sizes, cin, cout


@budget(45)
@given(atrous_transpose_case())
@checked_against("tensorflow")
def test_atrous_conv2d_transpose_matches_tensorflow(case):
    g, rate, out_shape, sizes, cin, cout = case
    w = arr((*g["k"], cin, cout))
    y_shape = ref_conv(T.zeros(out_shape, T.float64), w, [1, 1], g["d"], ref_padding(g), 1, False).shape
    value = arr(y_shape)
    args = {"value": value, "filters": w, "output_shape": sizes, "rate": rate, "padding": padding_of(g)}
    out, pullback = tf.nn.atrous_conv2d_transpose.vjp(**args)
    np.testing.assert_array_equal(tf.nn.atrous_conv2d_transpose(**args), out)
    cot = arr(out.shape)
    ref, ref_grads = tape_grads(lambda a, b: T.nn.atrous_conv2d_transpose(a, b, sizes, rate, padding_of(g)),
                                [value, w], cot)
    check(out, ref, pullback(cot), ref_grads, "atrous_conv2d_transpose")


# --- separable_conv2d --------------------------------------------------------------------------------
@st.composite
def separable_case(draw):
    g = draw(window(equal_strides=True))
    if g["s"][0] > 1:
        g["d"] = [1, 1]  # TensorFlow: a dilation > 1 needs all strides 1
    for i in range(2):
        keff = (g["k"][i] - 1) * g["d"][i] + 1
        if g["kind"] == "VALID":
            g["spatial"][i] = max(g["spatial"][i], keff)
        elif g["kind"] == "explicit":
            g["spatial"][i] = max(g["spatial"][i], keff - sum(g["pairs"][i]))
    fmt = draw(st.sampled_from([None, "NHWC", "NCHW"]))
    c, m, o = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    spelling = draw(st.sampled_from(["dilations", "rate", "none"]))
    if spelling == "none" and g["d"] != [1, 1]:
        spelling = "dilations"
    return g, fmt, c, m, o, draw(st.integers(1, 2)), spelling


@budget(45)
@given(separable_case())
@checked_against("tensorflow")
def test_separable_conv2d_matches_tensorflow(case):
    g, fmt, c, m, o, n, spelling = case
    first = fmt == "NCHW"
    x = arr((n, c, *g["spatial"]) if first else (n, *g["spatial"], c))
    dw, pw = arr((*g["k"], c, m)), arr((1, 1, c * m, o))
    args = {"input": x, "depthwise_filter": dw, "pointwise_filter": pw, "strides": full(g["s"], first),
            "padding": padding_of(g, first), "data_format": fmt}
    if spelling != "none":
        args[spelling] = list(g["d"])
    out, pullback = tf.nn.separable_conv2d.vjp(**args)
    np.testing.assert_array_equal(tf.nn.separable_conv2d(**args), out)

    def real(a, b, p):  # TensorFlow's CPU kernel is NHWC only: NCHW through transposes
        y = T.nn.separable_conv2d(to_last(a) if first else a, b, p, full(g["s"], False), padding_of(g),
                                  dilations=g["d"])
        return to_first(y) if first else y

    cot = arr(out.shape)
    ref, ref_grads = tape_grads(real, [x, dw, pw], cot)
    check(out, ref, pullback(cot), ref_grads, "separable_conv2d")
    if spelling == "rate":  # TensorFlow 1's own spelling, run as written
        v1 = {k: v for k, v in args.items() if k != "data_format"}
        if not first:
            close(out, T.compat.v1.nn.separable_conv2d(**v1, data_format=fmt).numpy(), "compat.v1")


# --- depthwise_conv2d_native and its backprops --------------------------------------------------------
NATIVE = {
    "depthwise_conv2d_native": T.compat.v1.nn.depthwise_conv2d_native,
    "depthwise_conv2d_native_backprop_input": T.compat.v1.nn.depthwise_conv2d_native_backprop_input,
    "depthwise_conv2d_native_backprop_filter": T.compat.v1.nn.depthwise_conv2d_native_backprop_filter,
}


@st.composite
def native_case(draw):
    # The raw op takes a dilation with a stride (its GPU kernel runs them; the CPU kernel no dilation).
    g = draw(window(equal_strides=True))
    first = draw(st.booleans())
    c, m, n = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    return draw(st.sampled_from(sorted(NATIVE))), g, first, c, m, n


@budget(60)
@given(native_case())
@checked_against("tensorflow")
def test_depthwise_conv2d_native_ops_match_tensorflow(case):
    func, g, first, c, m, n = case
    x_shape = (n, c, *g["spatial"]) if first else (n, *g["spatial"], c)
    w = arr((*g["k"], c, m))
    pad = padding_of(g, first)

    def ref(a, b):  # the depthwise conv as a grouped conv of CPU-complete TensorFlow ops
        return ref_conv(a, T.reshape(b, [*g["k"], 1, c * m]), g["s"], g["d"], ref_padding(g), c, first)

    common = {"strides": full(g["s"], first), "padding": pad, "data_format": "NCHW" if first else "NHWC",
              "dilations": full(g["d"], first)}
    x = arr(x_shape)
    y_shape = ref(T.constant(x), T.constant(w)).shape
    if func == "depthwise_conv2d_native":
        call = {"input": x, "filter": w, **common}
        out, pullback = tf.nn.depthwise_conv2d_native.vjp(**call)
        cot = arr(out.shape)
        expect, expect_grads = tape_grads(ref, [x, w], cot)
    else:
        dy = arr(y_shape)
        wrt, other = (x_shape, w) if func.endswith("input") else (w.shape, x)
        call = ({"input_sizes": list(x_shape), "filter": w, "out_backprop": dy, **common}
                if func.endswith("input") else
                {"input": x, "filter_sizes": list(w.shape), "out_backprop": dy, **common})
        out, pullback = getattr(tf.nn, func).vjp(**call)
        cot = arr(out.shape)
        ov, dyv = T.Variable(other), T.Variable(dy)
        with T.GradientTape() as outer:
            zero = T.Variable(np.zeros(wrt))
            with T.GradientTape() as inner:
                y = ref(zero, ov) if func.endswith("input") else ref(ov, zero)
            expect = inner.gradient(y, zero, output_gradients=dyv)
            loss = T.reduce_sum(expect * cot)
        expect_grads = [gr.numpy() for gr in outer.gradient(loss, [ov, dyv])]
        expect = expect.numpy()
    np.testing.assert_array_equal(getattr(tf.nn, func)(**call), out)
    check(out, expect, pullback(cot), expect_grads, func)
    # The real op where TensorFlow's CPU kernels run it: NHWC, and no dilation (its backprop
    # kernels ignore dilations, its forward kernel refuses them).
    if not first and g["d"] == [1, 1]:
        close(out, NATIVE[func](**call).numpy(), f"{func} vs TensorFlow")


# --- kernels larger than the input: TensorFlow's empty outputs ------------------------------------
def test_empty_outputs_and_their_zero_gradients():
    """VALID with the effective kernel one sample past the input: TensorFlow returns an empty
    output (no error); the gradients of the vjp are zeros of the operands' shapes."""
    x, w = arr((1, 4, 4, 2)), arr((3, 3, 2, 3))
    dw, pw = arr((3, 3, 2, 1)), arr((1, 1, 2, 3))
    for ours, real, operands in [
        (lambda: tf.nn.atrous_conv2d.vjp(x, w, 2, "VALID"), T.nn.atrous_conv2d(x, w, 2, "VALID"), (x, w)),
        (lambda: tf.nn.separable_conv2d.vjp(x[:, :2], dw, pw, [1, 1, 1, 1], "VALID"),
         T.nn.separable_conv2d(x[:, :2], dw, pw, [1, 1, 1, 1], "VALID"), (x[:, :2], dw, pw)),
        (lambda: tf.nn.depthwise_conv2d_native.vjp(x[:, :2], dw, [1, 1, 1, 1], "VALID"),
         T.compat.v1.nn.depthwise_conv2d_native(x[:, :2], dw, [1, 1, 1, 1], "VALID"), (x[:, :2], dw)),
    ]:
        assert real.shape.num_elements() == 0
        out, pullback = ours()
        assert out.shape == tuple(real.shape)
        grads = pullback(np.zeros(out.shape))
        assert [a.shape for a in grads] == [a.shape for a in operands]
        assert not any(np.any(a) for a in grads)
    value = arr((1, 0, 2, 3))  # atrous_conv2d_transpose of that empty output: zeros, as TensorFlow
    ref = T.nn.atrous_conv2d_transpose(value, w, [1, 4, 6, 2], 2, "VALID").numpy()
    close(tf.nn.atrous_conv2d_transpose(value, w, [1, 4, 6, 2], 2, "VALID"), ref)
    assert not ref.any()


def test_operand_dtypes_as_tensorflow_converts_them():
    """The raw depthwise ops convert NumPy operands to the first one's dtype; separable_conv2d,
    which converts each alone, refuses a mix (TensorFlow's kernel then sees two dtypes)."""
    x, f = arr((1, 5, 5, 2)).astype(np.float32), arr((3, 3, 2, 2))
    f32, dy = f.astype(np.float32), arr((1, 5, 5, 4))
    for ours, real in [
        (tf.nn.depthwise_conv2d_native(x, f, S1, "SAME"),
         T.compat.v1.nn.depthwise_conv2d_native(x, f, S1, "SAME")),
        (tf.nn.depthwise_conv2d_native_backprop_input(x.shape, f32, dy, S1, "SAME"),
         T.compat.v1.nn.depthwise_conv2d_native_backprop_input(x.shape, f32, dy, S1, "SAME")),
        (tf.nn.atrous_conv2d(x, f32, 2, "SAME"), T.nn.atrous_conv2d(x, f32, 2, "SAME")),
    ]:
        assert ours.dtype == real.numpy().dtype == np.float32
    pw = arr((1, 1, 4, 3))
    with pytest.raises(Exception):  # noqa: B017 - TensorFlow's own error class
        T.nn.separable_conv2d(x, f, pw, [1, 1, 1, 1], "SAME")
    with pytest.raises(TypeError, match="one dtype"):
        tf.nn.separable_conv2d(x, f, pw, [1, 1, 1, 1], "SAME")
    # float32 sums in another order than TensorFlow's (on an AVX2 machine 1 ulp apart): float32's tolerance
    close(tf.nn.separable_conv2d(x, f.astype(np.float32), pw.astype(np.float32), [1, 1, 1, 1], "SAME"),
          T.nn.separable_conv2d(x, f.astype(np.float32), pw.astype(np.float32), [1, 1, 1, 1], "SAME").numpy(),
          "float32", rtol=1e-5)


# --- what TensorFlow refuses ----------------------------------------------------------------------------
X, W = arr((1, 7, 6, 2)), arr((3, 3, 2, 4))
DY = arr((1, 7, 6, 4))
DW, PW = arr((3, 3, 2, 2)), arr((1, 1, 4, 5))
S1 = [1, 1, 1, 1]
PADS = [[0, 0], [1, 1], [1, 1], [0, 0]]
REAL = {
    "atrous_conv2d": T.nn.atrous_conv2d, "atrous_conv2d_transpose": T.nn.atrous_conv2d_transpose,
    "separable_conv2d": T.nn.separable_conv2d, "convolution": T.nn.convolution, **NATIVE,
}
A = {"value": X, "filters": W}
AT = {"value": DY, "filters": W}
SEP = {"input": X, "depthwise_filter": DW, "pointwise_filter": PW}
NAT = {"input": X, "filter": DW}
# (op, arguments, the words our message must hold: TensorFlow's parameter name)
REFUSED = [
    ("atrous_conv2d", {**A, "rate": 0, "padding": "SAME"}, "rate"),
    ("atrous_conv2d", {**A, "rate": -1, "padding": "SAME"}, "rate"),
    ("atrous_conv2d", {**A, "rate": [2, 2, 2], "padding": "SAME"}, "rate"),
    ("atrous_conv2d", {**A, "rate": [[2]], "padding": "SAME"}, "rate"),
    ("atrous_conv2d", {**A, "rate": 2, "padding": "same"}, "padding"),
    ("atrous_conv2d", {**A, "rate": 1, "padding": PADS}, "padding"),
    ("atrous_conv2d", {"value": X[0], "filters": W, "rate": 2, "padding": "SAME"}, "value"),
    ("atrous_conv2d", {"value": X, "filters": W[0], "rate": 2, "padding": "SAME"}, "filters"),
    ("atrous_conv2d", {"value": arr((1, 7, 6, 3)), "filters": W, "rate": 2, "padding": "SAME"}, "channels"),
    ("atrous_conv2d", {**A, "rate": 4, "padding": "VALID"}, "output size would be negative"),
    ("atrous_conv2d", {"value": X.astype(np.float32), "filters": W.astype(np.int64), "rate": 2,
                       "padding": "SAME"}, "dtype"),
    ("atrous_conv2d_transpose", {**AT, "output_shape": [1, 7, 6, 2], "rate": 0, "padding": "SAME"}, "rate"),
    ("atrous_conv2d_transpose", {**AT, "output_shape": [1, 7, 6, 2], "rate": [2, 2], "padding": "SAME"},
     "rate"),
    ("atrous_conv2d_transpose", {**AT, "output_shape": [1, 7, 6, 2], "rate": 2, "padding": PADS}, "padding"),
    ("atrous_conv2d_transpose", {**AT, "output_shape": [1, 7, 6, 2], "rate": 2, "padding": "same"},
     "padding"),
    ("atrous_conv2d_transpose", {**AT, "output_shape": [7, 6, 2], "rate": 2, "padding": "SAME"},
     "output_shape"),
    ("atrous_conv2d_transpose", {**AT, "output_shape": [7, 6], "rate": 2, "padding": "SAME"}, "output_shape"),
    ("atrous_conv2d_transpose", {**AT, "output_shape": [2, 7, 6, 2], "rate": 2, "padding": "SAME"},
     "output_shape"),
    ("atrous_conv2d_transpose", {**AT, "output_shape": [1, 7, 6, 3], "rate": 2, "padding": "SAME"},
     "output_shape"),
    ("atrous_conv2d_transpose", {"value": DY[..., :3], "filters": W, "output_shape": [1, 7, 6, 2], "rate": 2,
                                 "padding": "SAME"}, "value"),
    ("atrous_conv2d_transpose", {**AT, "output_shape": [1, 8, 6, 2], "rate": 2, "padding": "SAME"},
     "output_shape"),
    ("atrous_conv2d_transpose", {**AT, "output_shape": [1, 9, 6, 2], "rate": 2, "padding": "SAME"},
     "output_shape"),
    ("atrous_conv2d_transpose", {"value": arr((1, 4, 2, 4)), "filters": W, "output_shape": [1, 7, 6, 2],
                                 "rate": 2, "padding": "VALID"}, "output_shape"),
    ("separable_conv2d", {**SEP, "strides": 2, "padding": "SAME"}, "strides"),
    ("separable_conv2d", {**SEP, "strides": [2, 2], "padding": "SAME"}, "strides"),
    ("separable_conv2d", {**SEP, "strides": [1, 2, 1, 1], "padding": "SAME"}, "strides"),
    ("separable_conv2d", {**SEP, "strides": [2, 1, 1, 1], "padding": "SAME"}, "strides"),
    ("separable_conv2d", {**SEP, "strides": S1, "padding": "SAME", "dilations": 2}, "dilations"),
    ("separable_conv2d", {**SEP, "strides": S1, "padding": "SAME", "dilations": [1, 2, 2, 1]}, "dilations"),
    ("separable_conv2d", {**SEP, "strides": S1, "padding": "SAME", "dilations": [2, 2, 2]}, "dilations"),
    ("separable_conv2d", {**SEP, "strides": S1, "padding": "VALID", "dilations": [0, 1]}, "dilations"),
    ("separable_conv2d", {**SEP, "strides": S1, "padding": "same"}, "padding"),
    ("separable_conv2d", {**SEP, "strides": S1, "padding": [[1, 0], [1, 2], [0, 1], [0, 0]]}, "padding"),
    ("separable_conv2d", {**SEP, "strides": S1, "padding": [[0, 0], [-1, 2], [0, 1], [0, 0]]}, "padding"),
    ("separable_conv2d", {"input": X, "depthwise_filter": DW, "pointwise_filter": arr((2, 1, 4, 5)),
                          "strides": S1, "padding": "SAME"}, "pointwise_filter"),
    ("separable_conv2d", {"input": X, "depthwise_filter": DW, "pointwise_filter": arr((1, 1, 3, 5)),
                          "strides": S1, "padding": "SAME"}, "pointwise_filter"),
    ("separable_conv2d", {"input": X, "depthwise_filter": DW, "pointwise_filter": arr((1, 4, 5)),
                          "strides": S1, "padding": "SAME"}, "pointwise_filter"),
    ("separable_conv2d", {"input": X, "depthwise_filter": arr((3, 3, 3, 2)), "pointwise_filter": PW,
                          "strides": S1, "padding": "SAME"}, "depth"),
    ("separable_conv2d", {"input": X, "depthwise_filter": DW[0], "pointwise_filter": PW, "strides": S1,
                          "padding": "SAME"}, "depthwise_filter"),
    ("separable_conv2d", {"input": X[None], "depthwise_filter": DW, "pointwise_filter": PW, "strides": S1,
                          "padding": "SAME"}, "input"),
    ("separable_conv2d", {"input": X.astype(np.int32), "depthwise_filter": DW.astype(np.int32),
                          "pointwise_filter": PW.astype(np.int32), "strides": S1, "padding": "SAME"},
     "dtypes"),
    ("separable_conv2d", {"input": X.astype(np.float32), "depthwise_filter": DW, "pointwise_filter": PW,
                          "strides": S1, "padding": "SAME"}, "dtype"),
    ("depthwise_conv2d_native", {**NAT, "strides": 1, "padding": "SAME"}, "strides"),
    ("depthwise_conv2d_native", {**NAT, "strides": [1, 1], "padding": "SAME"}, "strides"),
    ("depthwise_conv2d_native", {**NAT, "strides": [1, 2, 1, 1], "padding": "SAME"}, "strides"),
    ("depthwise_conv2d_native", {**NAT, "strides": [2, 1, 1, 1], "padding": "SAME"}, "strides"),
    ("depthwise_conv2d_native", {**NAT, "strides": S1, "padding": "SAME", "data_format": "NWC"},
     "data_format"),
    ("depthwise_conv2d_native", {**NAT, "strides": S1, "padding": [[0, 0], [-1, 2], [0, 1], [0, 0]]},
     "padding"),
    ("depthwise_conv2d_native", {**NAT, "strides": S1, "padding": [[0, 0], [1, 2], [0, 1], [0, 1]]},
     "padding"),
    ("depthwise_conv2d_native", {"input": X[None], "filter": DW, "strides": S1, "padding": "SAME"}, "input"),
    ("depthwise_conv2d_native", {"input": X, "filter": arr((3, 3, 3, 2)), "strides": S1, "padding": "SAME"},
     "depth"),
    ("depthwise_conv2d_native", {"input": X.astype(np.int32), "filter": DW, "strides": S1, "padding": "SAME"},
     "dtypes"),
    ("depthwise_conv2d_native_backprop_input", {"input_sizes": [7, 6], "filter": DW, "out_backprop": DY,
                                                "strides": S1, "padding": "SAME"}, "input_sizes"),
    ("depthwise_conv2d_native_backprop_input", {"input_sizes": [1, 7, 6, 2], "filter": DW,
                                                "out_backprop": DY, "strides": [1, 2, 1, 1],
                                                "padding": "SAME"}, "strides"),
    ("depthwise_conv2d_native_backprop_filter", {"input": X, "filter_sizes": [3, 3, 2], "out_backprop": DY,
                                                 "strides": S1, "padding": "SAME"}, "filter_sizes"),
    ("depthwise_conv2d_native_backprop_filter", {"input": X, "filter_sizes": [3, 3, 2, 2],
                                                 "out_backprop": DY, "strides": 1, "padding": "SAME"},
     "strides"),
    ("convolution", {"input": X, "filters": W, "padding": PADS}, "padding"),
    ("convolution", {"input": X.astype(np.float32), "filters": W, "padding": "SAME"}, "dtype"),
    ("convolution", {"input": X, "filters": W, "padding": PADS, "dilations": 2, "strides": 2}, "strides"),
]


@pytest.mark.parametrize(("func", "kwargs", "named"), REFUSED,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(REFUSED)])
def test_refused_like_tensorflow(func, kwargs, named):
    with pytest.raises((ValueError, TypeError), match=named):
        getattr(tf.nn, func)(**kwargs)
    with pytest.raises((ValueError, TypeError), match=named):
        getattr(tf.nn, func).vjp(**kwargs)
    with pytest.raises(Exception):  # noqa: B017 - TensorFlow's own error classes vary
        REAL[func](**kwargs)


def test_what_tensorflow_computes_against_its_own_rule_is_refused():
    """Two calls TensorFlow runs although its documentation forbids them: a separable conv with a
    dilation and a stride (its space-to-batch strides whole blocks: 3x4 outputs for a 7x6 input
    with stride 2, where a strided dilated conv has 4x3), and a fractional atrous rate (truncated
    to 1). convgrad refuses both, naming the argument."""
    kwargs = {**SEP, "strides": [1, 2, 2, 1], "padding": "SAME", "dilations": [2, 2]}
    assert T.nn.separable_conv2d(**kwargs).shape == (1, 3, 4, 5)
    with pytest.raises(ValueError, match="all values of strides must be 1"):
        tf.nn.separable_conv2d(**kwargs)
    close(T.nn.atrous_conv2d(X, W, 1.5, "SAME").numpy(), T.nn.atrous_conv2d(X, W, 1, "SAME").numpy())
    with pytest.raises(TypeError, match="rate must be an integer"):
        tf.nn.atrous_conv2d(X, W, 1.5, "SAME")


def test_tf1_spellings_run_as_written():
    """TensorFlow 1's positional and keyword calls of the new ops, value for value."""
    close(tf.nn.separable_conv2d(X, DW, PW, S1, "SAME", rate=[2, 2]),
          T.compat.v1.nn.separable_conv2d(X, DW, PW, S1, "SAME", [2, 2]).numpy(), "rate")
    with pytest.raises(ValueError, match="Cannot specify both"):
        T.compat.v1.nn.separable_conv2d(X, DW, PW, S1, "SAME", rate=[2, 2], dilations=[2, 2])
    with pytest.raises(ValueError, match="Cannot specify both"):
        tf.nn.separable_conv2d(X, DW, PW, S1, "SAME", rate=[2, 2], dilations=[2, 2])
    close(tf.nn.atrous_conv2d(X, W, 2, "SAME"), T.compat.v1.nn.atrous_conv2d(X, W, 2, "SAME").numpy())
    close(tf.nn.depthwise_conv2d_native(X, DW, S1, "VALID"),
          T.compat.v1.nn.depthwise_conv2d_native(X, DW, S1, "VALID").numpy())
    close(tf.nn.depthwise_conv2d_native(X, DW, S1, "VALID", data_format=None),
          T.compat.v1.nn.depthwise_conv2d_native(X, DW, S1, "VALID", data_format=None).numpy())
    dy = arr((1, 5, 4, 4))
    close(tf.nn.depthwise_conv2d_native_backprop_input(X.shape, DW, dy, S1, "VALID"),
          T.compat.v1.nn.depthwise_conv2d_native_backprop_input(X.shape, DW, dy, S1, "VALID").numpy())
    close(tf.nn.depthwise_conv2d_native_backprop_filter(X, DW.shape, dy, S1, "VALID"),
          T.compat.v1.nn.depthwise_conv2d_native_backprop_filter(X, DW.shape, dy, S1, "VALID").numpy())
    close(tf.nn.convolution(X, W, padding="SAME", dilation_rate=[2, 2]),
          T.compat.v1.nn.convolution(X, W, "SAME", dilation_rate=[2, 2]).numpy())


def test_tf1_positional_orders_are_refused_with_the_keyword_to_use():
    """TensorFlow 1 orders two signatures differently (convolution: padding third; separable_conv2d:
    rate sixth). Those positional calls fail in TensorFlow 2 too; the message says which keyword
    runs them."""
    with pytest.raises(TypeError):
        T.nn.convolution(X, W, "SAME")
    with pytest.raises(TypeError, match="pass padding='SAME' by keyword"):
        tf.nn.convolution(X, W, "SAME")
    with pytest.raises(AttributeError):  # TensorFlow 2 reads [2, 2] as a data_format string
        T.nn.separable_conv2d(X, DW, PW, S1, "SAME", [2, 2])
    with pytest.raises(TypeError, match="pass rate= by keyword"):
        tf.nn.separable_conv2d(X, DW, PW, S1, "SAME", [2, 2])
    close(tf.nn.separable_conv2d(X, DW, PW, S1, "SAME", rate=[2, 2]),
          T.compat.v1.nn.separable_conv2d(X, DW, PW, S1, "SAME", [2, 2]).numpy(), "TF 1 positional rate")
