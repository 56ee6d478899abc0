"""convgrad.tf.nn against TensorFlow itself: forward values, ``.vjp`` against tf.GradientTape,
and the inputs TensorFlow refuses.

Two TensorFlow sides for every random case:

* the real op called with the very same keyword arguments, where TensorFlow's CPU kernels run
  it (they lack NCHW, grouped and dilated backprops, dilated or grouped Conv3D: those raise
  "CPU"-worded errors that are skipped, never our refusals);
* a reference built from CPU-complete TensorFlow ops (channels-last conv with stride, the
  kernel dilated by a 0/1 matrix product, groups by split and concat, explicit pads by
  ``tf.pad``), differentiated with GradientTape, nested for the gradients of gradient ops.

Tolerance: float64 throughout; 1e-9 relative to the largest magnitude (observed ~1e-15).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as T
from hypothesis import given, settings
from hypothesis import strategies as st

from convgrad import tf
from strategies import budget
from tally import checked_against

RTOL = 1e-9
# Messages of TensorFlow's CPU kernels that refuse geometries its GPU kernels compute (every error
# message names the device, "CPU:0", so that alone does not mark one).
CPU_LIMITS = (
    "CPU implementation", "on the CPU", "NHWC tensor format", "only supported for NHWC",
    "only supports NHWC", "Number of channels in filter", "filter_size does not have enough elements",
    "grouped convolutions",
    "strides in the batch and depth dimensions",  # NCDHW strides read as NDHWC by the CPU kernel
    "must have the same number of channels",  # grouped 3-D backprops
)


def close(a, b, what="", rtol=RTOL):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    scale = max(1.0, float(np.abs(b).max(initial=0)))
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale, err_msg=what)


def cpu_limited(e: Exception) -> bool:
    return any(m in str(e) for m in CPU_LIMITS)


# --- the reference, in CPU-complete TensorFlow ops ---------------------------------------------
def _dilate(w, d):
    """HWIO kernel with d - 1 zeros between taps, as a 0/1 matrix product (differentiable)."""
    rank = len(d)
    for axis, di in enumerate(d):
        if di == 1:
            continue
        k = w.shape[axis]
        e = np.zeros(((k - 1) * di + 1, k))
        e[np.arange(k) * di, np.arange(k)] = 1
        w = T.tensordot(T.constant(e), w, axes=[[1], [axis]])
        perm = list(range(1, rank + 2))
        perm.insert(axis, 0)
        w = T.transpose(w, perm)
    return w


def same_pads(n, k_eff, s):
    """TensorFlow's documented SAME: ceil(n / s) outputs, total pad max((out - 1) s + k_eff - n, 0),
    the extra sample at the end. (Written out because TF's CPU Conv3D shifts its windows by one
    when that total is <= -2 before the max, e.g. n = 3, k = 1, s = 3: a TensorFlow bug.)"""
    pairs = []
    for ni, ki, si in zip(n, k_eff, s):
        total = max((-(-ni // si) - 1) * si + ki - ni, 0)
        pairs.append([total // 2, total - total // 2])
    return pairs


def tf_conv3d_same_bug(g):
    """True where TensorFlow's CPU Conv3D gets SAME wrong (see ``same_pads``)."""
    return g["kind"] == "SAME" and len(g["s"]) == 3 and any(
        (-(-n // s) - 1) * s + (k - 1) * d + 1 - n <= -2
        for n, k, s, d in zip(g["spatial"], g["k"], g["s"], g["d"])
    )


def ref_conv(x, w, s, d, pad, groups, first, batch_dims=1):
    """TF conv of x (TF layout) with HWIO w: channels-last, single batch dim inside."""
    if first:
        perm = list(range(x.shape.rank))
        c = perm.pop(batch_dims)
        x = T.transpose(x, [*perm, c])
    lead = x.shape[:batch_dims]
    x = T.reshape(x, [-1, *x.shape[batch_dims:]])
    w = _dilate(w, d)
    if pad == "SAME":
        pad = same_pads(x.shape[1:-1], w.shape[:-2], s)
    if not isinstance(pad, str):
        x = T.pad(x, [[0, 0], *pad, [0, 0]])
        pad = "VALID"
    xs = T.split(x, groups, axis=-1)
    ws = T.split(w, groups, axis=-1)
    fmt = FORMATS[len(s)][0]
    ys = [T.nn.convolution(a, b, strides=list(s), padding=pad, data_format=fmt) for a, b in zip(xs, ws)]
    y = T.concat(ys, axis=-1)
    y = T.reshape(y, [*lead, *y.shape[1:]])
    if first:
        r = y.shape.rank
        y = T.transpose(y, [*range(batch_dims), r - 1, *range(batch_dims, r - 1)])
    return y


# --- random geometries --------------------------------------------------------------------------
@st.composite
def geometry(draw, rank, *, explicit=False, groups=True, dilation=True, stride_dilation=True,
             max_n=6):
    k = [draw(st.integers(1, 3)) for _ in range(rank)]
    s = [draw(st.integers(1, 3)) for _ in range(rank)]
    d = [draw(st.integers(1, 2)) if dilation else 1 for _ in range(rank)]
    if not stride_dilation and any(v > 1 for v in s) and any(v > 1 for v in d):
        d = [1] * rank
    kinds = ["SAME", "VALID"] + (["explicit"] if explicit else [])
    kind = draw(st.sampled_from(kinds))
    pairs = [[draw(st.integers(0, 2)), draw(st.integers(0, 2))] for _ in range(rank)]
    spatial = []
    for i in range(rank):
        keff = (k[i] - 1) * d[i] + 1
        lo = {"SAME": 1, "VALID": keff, "explicit": max(1, keff - sum(pairs[i]))}[kind]
        spatial.append(draw(st.integers(lo, lo + max_n - 1)))
    g = draw(st.sampled_from([1, 1, 2])) if groups else 1
    cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    n = draw(st.integers(1, 2))
    first = draw(st.booleans())
    return {"k": k, "s": s, "d": d, "kind": kind, "pairs": pairs, "spatial": spatial, "groups": g,
            "cin": cin, "cout": cout, "n": n, "first": first}


def spell(draw, name, values, first, *, full_only=False):
    """strides / dilations as TensorFlow takes them: an int, one value, N values or N + 2."""
    full = [1, 1, *values] if first else [1, *values, 1]
    if full_only:
        return full
    options = [list(values), tuple(values), full]
    if len(set(values)) == 1:
        options += [values[0], [values[0]]]
    return draw(st.sampled_from(options))


def tf_padding(g):
    if g["kind"] != "explicit":
        return g["kind"]
    outer = [[0, 0], [0, 0]] if g["first"] else [[0, 0]]
    return [*outer, *g["pairs"]] if g["first"] else [[0, 0], *g["pairs"], [0, 0]]


def ref_padding(g):
    return g["kind"] if g["kind"] != "explicit" else g["pairs"]


def shape_x(g, batch=None):
    b = list(batch) if batch is not None else [g["n"]]
    return (*b, g["cin"], *g["spatial"]) if g["first"] else (*b, *g["spatial"], g["cin"])


FORMATS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
rng = np.random.default_rng(0)


def arr(shape):
    return rng.standard_normal(shape)


# --- forward convolutions ----------------------------------------------------------------------
@st.composite
def conv_case(draw):
    func = draw(st.sampled_from(["conv1d", "conv2d", "conv3d", "convolution"]))
    rank = {"conv1d": 1, "conv2d": 2, "conv3d": 3}.get(func) or draw(st.integers(1, 3))
    g = draw(geometry(rank, explicit=func == "conv2d", stride_dilation=func != "convolution",
                      max_n=4 if rank == 3 else 6))
    # TensorFlow takes extra leading batch dims, except in conv3d's raw op path.
    batch = (g["n"],) if func == "conv3d" else draw(st.sampled_from([(g["n"],), (g["n"],), (2, g["n"])]))
    x = arr(shape_x(g, batch))
    w = arr((*g["k"], g["cin"] // g["groups"], g["cout"]))
    kwargs = {"input": x, "filters": w, "padding": tf_padding(g),
              "data_format": FORMATS[rank][g["first"]]}
    kwargs["stride" if func == "conv1d" else "strides"] = spell(draw, "strides", g["s"], g["first"],
                                                                full_only=func == "conv3d")
    if any(v > 1 for v in g["d"]) or draw(st.booleans()):
        kwargs["dilations"] = spell(draw, "dilations", g["d"], g["first"], full_only=func == "conv3d")
    return func, g, kwargs, len(batch)


@budget(90)
@given(conv_case())
@checked_against("tensorflow")
def test_conv_matches_tensorflow(case):
    func, g, kwargs, batch_dims = case
    op = getattr(tf.nn, func)
    y, pullback = op.vjp(**kwargs)
    np.testing.assert_array_equal(op(**kwargs), y)
    dy = arr(y.shape)
    dx, dw = pullback(dy)

    xv, wv = T.Variable(kwargs["input"]), T.Variable(kwargs["filters"])
    with T.GradientTape() as tape:
        y_ref = ref_conv(xv, wv, g["s"], g["d"], ref_padding(g), g["groups"], g["first"], batch_dims)
    dx_ref, dw_ref = tape.gradient(y_ref, [xv, wv], output_gradients=T.constant(dy))
    close(y, y_ref.numpy(), "forward vs reference")
    close(dx, dx_ref.numpy(), "dx")
    close(dw, dw_ref.numpy(), "dw")

    if tf_conv3d_same_bug(g):
        return
    try:
        y_tf = getattr(T.nn, func)(**kwargs).numpy()
    except Exception as e:
        if not cpu_limited(e):
            raise
    else:
        close(y, y_tf, f"forward vs tf.nn.{func}")


# --- gradient ops and transposed convolutions -------------------------------------------------
INPUT_GRAD = {
    "conv2d_backprop_input": (2, T.compat.v1.nn.conv2d_backprop_input, "input_sizes", "filter",
                              "out_backprop"),
    "conv3d_backprop_input_v2": (3, T.raw_ops.Conv3DBackpropInputV2, "input_sizes", "filter", "out_backprop"),
    "conv1d_transpose": (1, T.nn.conv1d_transpose, "output_shape", "filters", "input"),
    "conv2d_transpose": (2, T.nn.conv2d_transpose, "output_shape", "filters", "input"),
    "conv3d_transpose": (3, T.nn.conv3d_transpose, "output_shape", "filters", "input"),
    "conv_transpose": (None, T.nn.conv_transpose, "output_shape", "filters", "input"),
}
FILTER_GRAD = {
    "conv2d_backprop_filter": (2, T.compat.v1.nn.conv2d_backprop_filter),
    "conv3d_backprop_filter_v2": (3, T.compat.v1.nn.conv3d_backprop_filter_v2),
}


@st.composite
def grad_case(draw):
    func = draw(st.sampled_from(sorted(INPUT_GRAD) + sorted(FILTER_GRAD)))
    rank = (INPUT_GRAD.get(func) or FILTER_GRAD.get(func))[0] or draw(st.integers(1, 3))
    raw = func.startswith(("conv2d_backprop", "conv3d_backprop"))
    g = draw(geometry(rank, explicit=func in ("conv2d_backprop_input", "conv2d_backprop_filter",
                                               "conv2d_transpose"), max_n=4 if rank == 3 else 6))
    x_shape = shape_x(g)
    w = arr((*g["k"], g["cin"] // g["groups"], g["cout"]))
    kwargs = {"strides": spell(draw, "strides", g["s"], g["first"], full_only=raw),
              "padding": tf_padding(g), "data_format": FORMATS[rank][g["first"]]}
    if any(v > 1 for v in g["d"]) or draw(st.booleans()):
        kwargs["dilations"] = spell(draw, "dilations", g["d"], g["first"], full_only=raw)
    if func == "conv_transpose" and g["first"] is False and draw(st.booleans()):
        del kwargs["data_format"]  # None: channels-last
    return func, g, x_shape, w, kwargs, draw(st.booleans())


def _forward_shape(g, x_shape, w):
    with T.GradientTape():
        return ref_conv(T.constant(np.zeros(x_shape)), T.constant(w), g["s"], g["d"], ref_padding(g),
                        g["groups"], g["first"]).shape


@budget(90)
@given(grad_case())
@checked_against("tensorflow")
def test_gradient_ops_match_tensorflow(case):
    func, g, x_shape, w, kwargs, spatial_only = case
    dy = arr(_forward_shape(g, x_shape, w))
    op = getattr(tf.nn, func)
    wv, dyv = T.Variable(w), T.Variable(dy)
    if func in INPUT_GRAD:
        _, real, size_name, w_name, dy_name = INPUT_GRAD[func]
        sizes = list(x_shape)
        if func in ("conv2d_backprop_input", "conv2d_transpose") and g["groups"] == 1 and spatial_only:
            sizes = list(g["spatial"])  # TensorFlow also takes the spatial sizes alone
        call = {size_name: sizes, w_name: w, dy_name: dy, **kwargs}
        out, pullback = op.vjp(**call)
        cot = arr(out.shape)
        # backprop_input's gradients are (d_filter, d_out_backprop); a transpose's (d_input, d_filters)
        d_w, d_dy = pullback(cot) if size_name == "input_sizes" else pullback(cot)[::-1]
        with T.GradientTape() as outer:
            x0 = T.Variable(np.zeros(x_shape))
            with T.GradientTape() as inner:
                y = ref_conv(x0, wv, g["s"], g["d"], ref_padding(g), g["groups"], g["first"])
            ref = inner.gradient(y, x0, output_gradients=dyv)
            loss = T.reduce_sum(ref * cot)
        gw, gdy = outer.gradient(loss, [wv, dyv])
    else:
        _, real = FILTER_GRAD[func]
        x = arr(x_shape)
        call = {"input": x, "filter_sizes": list(w.shape), "out_backprop": dy, **kwargs}
        out, pullback = op.vjp(**call)
        cot = arr(out.shape)
        d_x, d_dy = pullback(cot)
        xv = T.Variable(x)
        with T.GradientTape() as outer:
            w0 = T.Variable(np.zeros(w.shape))
            with T.GradientTape() as inner:
                y = ref_conv(xv, w0, g["s"], g["d"], ref_padding(g), g["groups"], g["first"])
            ref = inner.gradient(y, w0, output_gradients=dyv)
            loss = T.reduce_sum(ref * cot)
        gx, gdy = outer.gradient(loss, [xv, dyv])
        close(d_x, gx.numpy(), "d_input")
    np.testing.assert_array_equal(op(**call), out)
    close(out, ref.numpy(), f"{func} vs reference")
    if func in INPUT_GRAD:
        close(d_w, gw.numpy(), "d_filter")
    close(d_dy, gdy.numpy(), "d_out_backprop")
    try:
        real_out = real(**call).numpy()
    except Exception as e:
        if not cpu_limited(e):
            raise
    else:
        close(out, real_out, f"{func} vs TensorFlow")


# --- depthwise ------------------------------------------------------------------------------------
def ref_depthwise(x, w, s, d, padding, first):
    if first:
        x = T.transpose(x, [0, 2, 3, 1])
    y = T.nn.depthwise_conv2d(x, w, [1, s, s, 1], padding, dilations=d)
    return T.transpose(y, [0, 3, 1, 2]) if first else y


@st.composite
def depthwise_case(draw):
    g = draw(geometry(2, explicit=True, groups=False, stride_dilation=False))
    s = draw(st.integers(1, 3))
    if s > 1:
        g["d"] = [1, 1]
    g["s"] = [s, s]
    c, m = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    g["cin"] = c
    for i in range(2):  # the spatial sizes were drawn for the geometry's own stride: keep them valid
        keff = (g["k"][i] - 1) * g["d"][i] + 1
        if g["kind"] == "VALID":
            g["spatial"][i] = max(g["spatial"][i], keff)
        elif g["kind"] == "explicit":
            g["spatial"][i] = max(g["spatial"][i], keff - sum(g["pairs"][i]), 1)
    func = draw(st.sampled_from(["depthwise_conv2d", "depthwise_conv2d_backprop_input",
                                 "depthwise_conv2d_backprop_filter"]))
    return func, g, m


@budget(45)
@given(depthwise_case())
@checked_against("tensorflow")
def test_depthwise_matches_tensorflow(case):
    func, g, m = case
    first = g["first"]
    x_shape = shape_x(g)
    w = arr((*g["k"], g["cin"], m))
    strides = [1, 1, *g["s"]] if first else [1, *g["s"], 1]
    fmt = "NCHW" if first else "NHWC"
    pad_ref = g["kind"] if g["kind"] != "explicit" else [[0, 0], *g["pairs"], [0, 0]]
    xv, wv = T.Variable(arr(x_shape)), T.Variable(w)
    y_shape = ref_depthwise(xv, wv, g["s"][0], g["d"], pad_ref, first).shape
    dyv = T.Variable(arr(y_shape))
    if func == "depthwise_conv2d":
        # dilations left out only where they are the default 1 (the reference runs g["d"])
        dil = g["d"] if draw_bool(g) or g["d"] != [1, 1] else None
        call = {"input": xv.numpy(), "filter": w, "strides": strides, "padding": tf_padding(g),
                "data_format": fmt, "dilations": dil if dil is None else list(dil)}
        out, pullback = tf.nn.depthwise_conv2d.vjp(**call)
        with T.GradientTape() as tape:
            ref = ref_depthwise(xv, wv, g["s"][0], g["d"], pad_ref, first)
        grads = tape.gradient(ref, [xv, wv], output_gradients=dyv)
        mine = pullback(dyv.numpy())
        close(out, ref.numpy(), "forward")
    else:
        dil4 = [1, 1, *g["d"]] if first else [1, *g["d"], 1]
        common = {"out_backprop": dyv.numpy(), "strides": strides, "padding": tf_padding(g),
                  "data_format": fmt, "dilations": dil4}
        if func == "depthwise_conv2d_backprop_input":
            call = {"input_sizes": list(x_shape), "filter": w, **common}
            wrt, other = T.Variable(np.zeros(x_shape)), wv
        else:
            call = {"input": xv.numpy(), "filter_sizes": list(w.shape), **common}
            wrt, other = T.Variable(np.zeros(w.shape)), xv
        op = getattr(tf.nn, func)
        out, pullback = op.vjp(**call)
        cot = arr(out.shape)
        with T.GradientTape() as outer:
            with T.GradientTape() as inner:
                if func == "depthwise_conv2d_backprop_input":
                    y = ref_depthwise(wrt, other, g["s"][0], g["d"], pad_ref, first)
                else:
                    y = ref_depthwise(other, wrt, g["s"][0], g["d"], pad_ref, first)
            ref = inner.gradient(y, wrt, output_gradients=dyv)
            loss = T.reduce_sum(ref * cot)
        grads = outer.gradient(loss, [other, dyv])
        mine = pullback(cot)
        close(out, ref.numpy(), f"{func} vs gradient of tf.nn.depthwise_conv2d")
        # TensorFlow's CPU DepthwiseConv2dNativeBackprop* kernels silently ignore `dilations`
        # (same result with and without): compare the op itself only without dilation.
        if not first and g["d"] == [1, 1]:
            close(out, getattr(T.nn, func)(**call).numpy(), f"{func} vs TensorFlow")
    np.testing.assert_array_equal(getattr(tf.nn, func)(**call), out)
    for a, b in zip(mine, grads):
        close(a, b.numpy(), "gradients")


def draw_bool(g):
    return sum(g["spatial"]) % 2 == 0


# --- bias_add -------------------------------------------------------------------------------------
@settings(max_examples=20)
@given(st.integers(2, 5), st.sampled_from([None, "NHWC", "NCHW", "N...C", "NC..."]), st.data())
def test_bias_add_matches_tensorflow(ndim, data_format, data):
    shape = tuple(data.draw(st.integers(1, 3)) for _ in range(ndim))
    axis = 1 if data_format and data_format.startswith("NC") else -1
    value, bias = arr(shape), arr(shape[axis])
    out, pullback = tf.nn.bias_add.vjp(value, bias, data_format=data_format)
    vv, bv = T.Variable(value), T.Variable(bias)
    fmt = None if data_format is None else ("NCHW" if axis == 1 else "NHWC")
    with T.GradientTape() as tape:
        ref = T.nn.bias_add(vv, bv, data_format=fmt)
    dy = arr(shape)
    for a, b in zip(pullback(dy), tape.gradient(ref, [vv, bv], output_gradients=T.constant(dy))):
        close(a, b.numpy(), "bias_add gradients")
    close(out, ref.numpy(), "bias_add")


# --- TF 1 spellings and positional TF 2 calls -------------------------------------------------------
def test_tf1_keyword_spellings_and_positional_calls():
    x, w = arr((1, 6, 5, 2)), arr((3, 3, 2, 4))
    y = T.nn.conv2d(x, w, [1, 2, 2, 1], "SAME").numpy()
    close(tf.nn.conv2d(input=x, filter=w, strides=[1, 2, 2, 1], padding="SAME"), y)
    close(tf.nn.conv2d(x, w, [1, 2, 2, 1], "SAME"), y)
    close(tf.nn.convolution(x, w, 2, "SAME"), y)
    close(tf.nn.convolution(input=x, filter=w, strides=2, padding="SAME"), y)
    close(tf.nn.conv1d(value=x[0], filters=w[0], stride=2, padding="SAME"),
          T.nn.conv1d(x[0], w[0], 2, "SAME").numpy())
    dy = arr(y.shape)
    ref = T.nn.conv2d_transpose(dy, w, x.shape, 2, "SAME").numpy()
    close(tf.nn.conv2d_transpose(value=dy, filter=w, output_shape=x.shape, strides=2, padding="SAME"), ref)
    close(tf.nn.conv2d_backprop_input(input_sizes=x.shape, filter=w, out_backprop=dy,
                                      strides=[1, 2, 2, 1], padding="SAME"), ref)
    close(tf.nn.conv2d_backprop_input(x.shape, filters=w, out_backprop=dy, strides=[1, 2, 2, 1],
                                      padding="SAME"), ref)
    f = arr((3, 3, 2, 2))
    close(tf.nn.depthwise_conv2d(x, f, [1, 1, 1, 1], "SAME", rate=[2, 2]),
          T.nn.depthwise_conv2d(x, f, [1, 1, 1, 1], "SAME", dilations=[2, 2]).numpy())
    close(tf.nn.convolution(x, w, padding="SAME", dilation_rate=[2, 1]),
          T.nn.convolution(x, w, padding="SAME", dilations=[2, 1]).numpy())
    with pytest.raises(ValueError, match="Cannot specify both"):
        T.compat.v1.nn.conv2d(x, filter=w, filters=w, strides=1, padding="SAME")
    with pytest.raises(ValueError, match="Cannot specify both"):
        tf.nn.conv2d(x, filters=w, filter=w, strides=1, padding="SAME")
    _, pullback = tf.nn.conv2d.vjp(input=x, filter=w, strides=[1, 2, 2, 1], padding="SAME")
    assert [a.shape for a in pullback(dy)] == [x.shape, w.shape]


def test_numpy_operands_take_the_first_operands_dtype():
    """TensorFlow converts NumPy arguments to the dtype of the op's first tensor operand."""
    x32, w = X4.astype(np.float32), W4
    for ours, real in [
        (tf.nn.conv2d(x32, w, 1, "SAME"), T.nn.conv2d(x32, w, 1, "SAME")),
        (tf.nn.conv2d(X4, w.astype(np.float32), 1, "SAME"), T.nn.conv2d(X4, w.astype(np.float32), 1, "SAME")),
        (tf.nn.conv2d_transpose(DY4.astype(np.float32), w, X4.shape, 1, "VALID"),
         T.nn.conv2d_transpose(DY4.astype(np.float32), w, X4.shape, 1, "VALID")),
        (tf.nn.bias_add(x32, np.ones(2)), T.nn.bias_add(x32, np.ones(2))),
    ]:
        assert ours.dtype == real.numpy().dtype
        np.testing.assert_allclose(ours, real.numpy(), rtol=1e-5, atol=1e-5)


# --- what TensorFlow refuses ------------------------------------------------------------------------
X4, W4 = arr((1, 5, 5, 2)), arr((3, 3, 2, 4))
DY4 = arr((1, 3, 3, 4))
X3, W3 = arr((1, 6, 2)), arr((3, 2, 4))
X5, W5 = arr((1, 4, 4, 4, 2)), arr((2, 2, 2, 2, 4))
REAL = {
    "conv1d": T.nn.conv1d, "conv2d": T.nn.conv2d, "conv3d": T.nn.conv3d, "convolution": T.nn.convolution,
    "conv2d_backprop_input": T.compat.v1.nn.conv2d_backprop_input,
    "conv2d_backprop_filter": T.compat.v1.nn.conv2d_backprop_filter,
    "conv1d_transpose": T.nn.conv1d_transpose, "conv2d_transpose": T.nn.conv2d_transpose,
    "conv3d_transpose": T.nn.conv3d_transpose, "conv_transpose": T.nn.conv_transpose,
    "depthwise_conv2d": T.nn.depthwise_conv2d,
    "depthwise_conv2d_backprop_input": T.nn.depthwise_conv2d_backprop_input,
    "depthwise_conv2d_backprop_filter": T.nn.depthwise_conv2d_backprop_filter, "bias_add": T.nn.bias_add,
}
C2 = {"input": X4, "filters": W4}
REFUSED = [
    ("conv2d", {**C2, "strides": [1, 1, 1], "padding": "SAME"}),
    ("conv2d", {**C2, "strides": [2, 1, 1, 1], "padding": "SAME"}),
    ("conv2d", {**C2, "strides": 1, "padding": "SAME", "dilations": [1, 1, 1, 2]}),
    ("conv2d", {**C2, "strides": 1, "padding": "same"}),
    ("conv2d", {**C2, "strides": 1, "padding": "EXPLICIT"}),
    ("conv2d", {**C2, "strides": 1, "padding": [[1, 0], [1, 1], [1, 1], [0, 0]]}),
    ("conv2d", {**C2, "strides": 1, "padding": [[0, 0], [-1, 1], [1, 1], [0, 0]]}),
    ("conv2d", {**C2, "strides": 1, "padding": [[1, 1], [1, 1]]}),
    ("conv2d", {**C2, "strides": 1, "padding": [[0, 0], [1, 1, 1], [1, 1], [0, 0]]}),
    ("conv2d", {**C2, "strides": 1, "padding": "SAME", "data_format": "NCW"}),
    ("conv2d", {"input": X4, "filters": W3, "strides": 1, "padding": "SAME"}),
    ("conv2d", {"input": X4, "filters": arr((3, 3, 3, 4)), "strides": 1, "padding": "SAME"}),
    ("conv2d", {**C2, "strides": 0, "padding": "SAME"}),
    ("conv2d", {"input": X4.astype(np.int64), "filters": W4, "strides": 1, "padding": "SAME"}),
    ("depthwise_conv2d", {"input": X4.astype(np.float32), "filter": arr((3, 3, 2, 2)),
                          "strides": [1, 1, 1, 1], "padding": "SAME"}),
    ("conv2d", {"input": X4, "filters": W4, "strides": 1, "padding": "VALID", "dilations": [1, 1, 2]}),
    ("conv1d", {"input": X3, "filters": W3, "stride": 1, "padding": [[0, 0], [1, 1], [0, 0]]}),
    ("conv1d", {"input": X3, "filters": W3, "stride": [1, 1], "padding": "SAME"}),
    ("conv1d", {"input": X3, "filters": W3, "stride": 1, "padding": "SAME", "data_format": "NDHWC"}),
    ("conv3d", {"input": X5, "filters": W5, "strides": 1, "padding": "SAME"}),
    ("conv3d", {"input": X5, "filters": W5, "strides": [1, 1, 1], "padding": "SAME"}),
    ("conv3d", {"input": X5, "filters": W5, "strides": [1, 1, 1, 1, 1], "padding": [[0, 0]] + [[1, 1]] * 3
                + [[0, 0]]}),
    ("conv3d", {"input": X5, "filters": W5, "strides": [1, 1, 1, 1, 1], "padding": "SAME", "dilations": 1}),
    ("convolution", {**C2, "strides": 2, "padding": "SAME", "dilations": 2}),
    ("convolution", {**C2, "strides": [1, 2], "padding": "VALID", "dilations": [2, 1]}),
    ("convolution", {"input": arr((1, 3, 3, 3, 3, 1)), "filters": arr((1, 1, 1, 1, 1, 1)),
                     "padding": "SAME"}),
    ("convolution", {**C2, "padding": [[0, 0], [1, 1], [1, 1], [0, 0]]}),
    ("convolution", {**C2, "padding": "SAME", "data_format": "NDHWC"}),
    ("conv2d_backprop_input", {"input_sizes": X4.shape, "filter": W4, "out_backprop": DY4, "strides": 1,
                               "padding": "VALID"}),
    ("conv2d_backprop_input", {"input_sizes": (1, 7, 5, 2), "filter": W4, "out_backprop": DY4,
                               "strides": [1, 1, 1, 1], "padding": "VALID"}),
    ("conv2d_backprop_input", {"input_sizes": (1, 5, 5, 2), "filter": W4, "out_backprop": DY4,
                               "strides": [1, 1, 1, 1], "padding": "VALID", "dilations": [1, 1]}),
    ("conv2d_backprop_filter", {"input": X4, "filter_sizes": W4.shape, "out_backprop": DY4,
                                "strides": [1, 1], "padding": "VALID"}),
    ("conv2d_backprop_filter", {"input": X4, "filter_sizes": (3, 3, 2), "out_backprop": DY4,
                                "strides": [1, 1, 1, 1], "padding": "VALID"}),
    ("conv2d_backprop_filter", {"input": X4, "filter_sizes": W4.shape, "out_backprop": DY4,
                                "strides": [1, 1, 1, 1], "padding": "SAME"}),
    ("conv2d_transpose", {"input": DY4, "filters": W4, "output_shape": (1, 9, 5, 2), "strides": 1,
                          "padding": "VALID"}),
    ("conv2d_transpose", {"input": DY4, "filters": W4, "output_shape": (1, 5, 5, 3), "strides": 1,
                          "padding": "VALID"}),
    ("conv2d_transpose", {"input": DY4, "filters": W4, "output_shape": (2, 5, 5, 2), "strides": 1,
                          "padding": "VALID"}),
    ("conv1d_transpose", {"input": arr((1, 4, 4)), "filters": W3, "output_shape": (1, 6, 2), "strides": 1,
                          "padding": [[0, 0], [0, 0], [0, 0]]}),
    ("conv3d_transpose", {"input": arr((1, 3, 3, 3, 4)), "filters": W5, "output_shape": (1, 4, 4, 4, 2),
                          "strides": 1, "padding": [[0, 0]] + [[0, 0]] * 3 + [[0, 0]]}),
    ("conv_transpose", {"input": arr((1, 2, 2, 2, 2, 1)), "filters": arr((1, 1, 1, 1, 1, 1)),
                        "output_shape": (1, 2, 2, 2, 2, 1), "strides": 1}),
    ("depthwise_conv2d", {"input": X4, "filter": arr((3, 3, 2, 2)), "strides": [1, 2, 1, 1],
                          "padding": "SAME"}),
    ("depthwise_conv2d", {"input": X4, "filter": arr((3, 3, 2, 2)), "strides": 2, "padding": "SAME"}),
    ("depthwise_conv2d", {"input": X4, "filter": arr((3, 3, 2, 2)), "strides": [1, 1, 1, 1],
                          "padding": "SAME", "dilations": [1, 2, 2, 1]}),
    ("depthwise_conv2d", {"input": X4, "filter": arr((3, 3, 3, 2)), "strides": [1, 1, 1, 1],
                          "padding": "SAME"}),
    ("depthwise_conv2d_backprop_input", {"input_sizes": X4.shape, "filter": arr((3, 3, 2, 2)),
                                         "out_backprop": arr((1, 3, 5, 4)), "strides": [1, 2, 1, 1],
                                         "padding": "SAME"}),
    ("depthwise_conv2d_backprop_filter", {"input": X4, "filter_sizes": (3, 3, 2, 2),
                                          "out_backprop": arr((1, 5, 5, 4)), "strides": 1,
                                          "padding": "SAME"}),
    ("bias_add", {"value": X4, "bias": arr(3)}),
    ("bias_add", {"value": arr(4), "bias": arr(4)}),
    ("bias_add", {"value": X4, "bias": arr((1, 2))}),
    ("bias_add", {"value": X4, "bias": arr(2), "data_format": "HWC"}),
]


@pytest.mark.parametrize(("func", "kwargs"), REFUSED, ids=[f"{f}-{i}" for i, (f, _) in enumerate(REFUSED)])
def test_refused_like_tensorflow(func, kwargs):
    with pytest.raises((ValueError, TypeError)):
        getattr(tf.nn, func)(**kwargs)
    with pytest.raises((ValueError, TypeError)):
        getattr(tf.nn, func).vjp(**kwargs)
    with pytest.raises(Exception):  # noqa: B017 - TensorFlow's own error classes vary
        REAL[func](**kwargs)


def test_depthwise_stride_with_dilation_is_refused():
    """TensorFlow documents that dilation > 1 needs stride 1; it now only warns and returns a
    differently-sized result. convgrad refuses, with TensorFlow's reason."""
    kwargs = {"input": X4, "filter": arr((3, 3, 2, 2)), "strides": [1, 2, 2, 1], "padding": "SAME",
              "dilations": [2, 2]}
    with pytest.warns(UserWarning, match="all values of strides must be 1"):
        T.nn.depthwise_conv2d(**kwargs)
    with pytest.raises(ValueError, match="all values of strides must be 1"):
        tf.nn.depthwise_conv2d(**kwargs)


@settings(max_examples=40)
@given(
    st.sampled_from([1, 2, 0, [1], [1, 2], [2, 2, 2], [1, 2, 1, 1], [1, 1, 2, 1], [2, 1, 1, 1], (1, 2)]),
    st.sampled_from([None, 1, 2, [1, 2], [1, 1, 1, 1], [1, 2, 1, 1], [2, 1, 1, 1], [3]]),
    st.sampled_from(["SAME", "VALID", "same", "FULL", [[0, 0], [1, 1], [0, 2], [0, 0]],
                     [[0, 0], [1, 1], [0, 2]], [[1, 0], [1, 1], [0, 2], [0, 0]]]),
    st.integers(2, 6),
)
def test_conv2d_arguments_accepted_exactly_as_tensorflow(strides, dilations, padding, size):
    kwargs = {"input": arr((1, size, 5, 2)), "filters": W4, "strides": strides, "padding": padding,
              "dilations": dilations}
    try:
        ref = T.nn.conv2d(**kwargs).numpy()
    except Exception as e:
        if cpu_limited(e):
            return
        with pytest.raises((ValueError, TypeError)):
            tf.nn.conv2d(**kwargs)
        return
    if ref.size == 0:  # TensorFlow's empty output for a kernel larger than the (VALID or padded) input
        mine = tf.nn.conv2d(**kwargs)
        assert mine.shape == ref.shape
        out, pullback = tf.nn.conv2d.vjp(**kwargs)
        grads = pullback(np.zeros(ref.shape))
        assert out.shape == ref.shape and not any(np.any(g) for g in grads)
        return
    close(tf.nn.conv2d(**kwargs), ref, "conv2d")


@pytest.mark.parametrize(("shape", "strides", "padding"), [
    ((1, 6, 7, 2), 1, "VALID"),
    ((1, 4, 5, 2), 1, [[0, 0], [1, 1], [0, 2], [0, 0]]),
    # 4 padded rows, 7 taps, stride 2: (4 - 7 + 2) / 2 is -1 / 2, 0 in TensorFlow's C division
    ((1, 2, 5, 2), 2, [[0, 0], [1, 1], [0, 2], [0, 0]]),
])
def test_kernel_larger_than_the_padded_input_gives_an_empty_output(shape, strides, padding):
    """Dilation 3 makes the 3x3 kernel span 7 samples, more than the rows (padded or not) by less
    than a stride: TensorFlow returns an empty output (not an error), and the gradients are zero."""
    x = arr(shape)
    kwargs = {"strides": strides, "dilations": [3], "padding": padding}
    ref = T.nn.conv2d(x, W4, **kwargs).numpy()
    assert ref.size == 0
    mine = tf.nn.conv2d(input=x, filters=W4, **kwargs)
    assert mine.shape == ref.shape
    out, pullback = tf.nn.conv2d.vjp(input=x, filters=W4, **kwargs)
    dx, dw = pullback(np.zeros(ref.shape))
    assert out.shape == ref.shape and dx.shape == x.shape and dw.shape == W4.shape
    assert not np.any(dx) and not np.any(dw)


@pytest.mark.parametrize(("size", "padding"), [(5, "VALID"), (3, [[0, 0], [1, 1], [0, 2], [0, 0]])])
def test_kernel_larger_than_the_padded_input_by_more_than_a_stride_is_refused(size, padding):
    """A negative output size (7 taps over 5 rows): TensorFlow refuses it, and so does the front."""
    x = arr((1, size, 5, 2))
    kwargs = {"strides": 1, "dilations": [3], "padding": padding}
    with pytest.raises(T.errors.InvalidArgumentError, match="output size would be negative"):
        T.nn.conv2d(x, W4, **kwargs)
    with pytest.raises(ValueError, match="output size would be negative"):
        tf.nn.conv2d(input=x, filters=W4, **kwargs)


def test_explicit_pads_past_every_window():
    """An explicit pad larger than what the windows reach (here every window sees only padding):
    the input gradient is zero, as TensorFlow says."""
    w, dy = arr((1, 1, 1, 1)), arr((1, 1, 1, 1))
    kwargs = {"strides": [1, 1, 3, 1], "padding": [[0, 0], [0, 0], [2, 0], [0, 0]]}
    ref = T.compat.v1.nn.conv2d_backprop_input([1, 1, 1, 1], w, dy, **kwargs).numpy()
    close(tf.nn.conv2d_backprop_input([1, 1, 1, 1], w, dy, **kwargs), ref)
    close(tf.nn.conv2d_transpose(dy, w, [1, 1, 1, 1], **kwargs), ref)


def test_every_op_is_exported_with_vjp_and_its_shape_model():
    import inspect

    public = sorted(n for n, v in vars(tf.nn).items() if inspect.isfunction(v) and not n.startswith("_")
                    and v.__module__ == tf.nn.__name__)
    assert sorted(tf.nn.__all__) == public
    assert len(public) == 22
    for name in public:
        op = getattr(tf.nn, name)
        assert callable(op.vjp) and op.__doc__ and "``" in op.__doc__, name
        assert "name" in inspect.signature(op).parameters, name  # TensorFlow's signatures


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize(("h", "dilations"), [(2, 1), (4, 2)])
def test_backprops_of_an_empty_conv2d_output_are_zeros(fmt, h, dilations):
    """A VALID kernel larger than the input: conv2d's empty output is a valid out_backprop for the
    three backprop ops, which give zeros, as conv2d.vjp's gradients and as TensorFlow (where its
    CPU kernels run: NHWC without dilation; its filter backprop leaves memory uninitialised
    there, so that one is compared with the vjp only)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, h, 5, 1) if fmt == "NHWC" else (1, 1, h, 5))
    w = rng.standard_normal((3, 3, 1, 1))
    d = [1, dilations, dilations, 1] if fmt == "NHWC" else [1, 1, dilations, dilations]
    kw = {"strides": [1, 1, 1, 1], "padding": "VALID", "data_format": fmt, "dilations": d}
    dy = tf.nn.conv2d(x, w, **kw)
    assert dy.size == 0
    _, pullback = tf.nn.conv2d.vjp(x, w, **kw)
    dx, dw = pullback(dy)
    assert dx.shape == x.shape and dw.shape == w.shape and not dx.any() and not dw.any()
    np.testing.assert_array_equal(tf.nn.conv2d_backprop_input(x.shape, w, dy, **kw), dx)
    np.testing.assert_array_equal(tf.nn.conv2d_backprop_filter(x, w.shape, dy, **kw), dw)
    np.testing.assert_array_equal(tf.nn.conv2d_transpose(dy, w, output_shape=x.shape, **kw), dx)
    if fmt == "NHWC" and dilations == 1:
        np.testing.assert_array_equal(dy, T.nn.conv2d(x, w, **kw).numpy())
        np.testing.assert_array_equal(T.compat.v1.nn.conv2d_backprop_input(x.shape, w, dy, **kw).numpy(), dx)
        np.testing.assert_array_equal(T.nn.conv2d_transpose(dy, w, output_shape=x.shape, **kw).numpy(), dx)


def test_backprop_of_an_empty_output_checks_its_shape():
    w = np.ones((3, 3, 1, 1))
    with pytest.raises(ValueError, match=r"conv2d_transpose: input has shape \(1, 1, 3, 1\) .* output is "
                                         r"\(1, 0, 3, 1\)"):
        tf.nn.conv2d_transpose(np.ones((1, 1, 3, 1)), w, output_shape=(1, 2, 5, 1), strides=1,
                               padding="VALID")
    with pytest.raises(ValueError, match=r"conv2d_backprop_filter: out_backprop has shape \(1, 0, 2, 1\)"):
        tf.nn.conv2d_backprop_filter(np.ones((1, 2, 5, 1)), w.shape, np.ones((1, 0, 2, 1)), [1, 1, 1, 1],
                                     "VALID")
