# ruff: noqa: E402  (dask is imported only when the extra is installed)
"""Blocked == whole array: each of convgrad.dask's seven ops, on random geometries and random
chunkings, in every dtype the core takes (float16/32/64, bfloat16, complex64/128 under both
gradient conventions, int32/64), against the core on the whole NumPy arrays (the core is held to
the loop oracle by its own tests), on dask's synchronous scheduler; and the narrow floats'
filter and bias gradients against sums worked by hand."""

from __future__ import annotations

import re

import numpy as np
import pytest

dask = pytest.importorskip("dask")  # the extra convgrad[dask]
import dask.array as da
from dask_cases import Blocked, assert_close, blocked_cases, chunking
from hypothesis import assume, given
from hypothesis import strategies as st

import convgrad
import convgrad.dask as cgd
from strategies import budget


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def _lazy(a: np.ndarray, chunks) -> da.Array:
    return da.from_array(a, chunks=chunks)


@budget(100)
@given(case=blocked_cases(), data=st.data())
def test_conv_and_its_gradients_blocked_equal_whole(case: Blocked, data):
    kw, gk, fmt = case.kwargs, case.grad_kwargs, case.kwargs["data_format"]
    x, w = case.arrays(case.x_shape, case.w_shape)
    y = convgrad.conv(x, w, **kw)
    dy, bias = case.arrays(y.shape, (y.shape[1 if fmt == "channels_first" else -1],))
    dy_chunks = chunking(data.draw, dy.shape, fmt)
    xd, dyd = _lazy(x, case.x_chunks), _lazy(dy, dy_chunks)

    yd = cgd.conv(xd, w, bias, **kw)
    assert isinstance(yd, da.Array)
    assert_close(yd.compute(), convgrad.conv(x, w, bias, **kw), case.dtype)
    assert_close(cgd.conv_input_grad(dyd, w, x.shape, **gk).compute(),
                 convgrad.conv_input_grad(dy, w, x.shape, **gk), case.dtype)
    assert_close(cgd.conv_filter_grad(xd, dyd, w.shape, **gk).compute(),
                 convgrad.conv_filter_grad(x, dy, w.shape, **gk), case.dtype)
    assert_close(cgd.conv_bias_grad(dyd, data_format=fmt).compute(),
                 convgrad.conv_bias_grad(dy, data_format=fmt), case.dtype)

    y_lazy, vjp = cgd.conv_vjp(xd, w, bias, **gk)
    want_y, want_vjp = convgrad.conv_vjp(x, w, bias, **gk)
    got = dask.compute(y_lazy, *vjp(dyd))
    for g, want in zip(got, (want_y, *want_vjp(dy))):
        assert_close(g, want, case.dtype)


@budget(40)
@given(case=blocked_cases(), data=st.data())
def test_conv_transpose_and_its_vjp_blocked_equal_whole(case: Blocked, data):
    # The transposed conv of a y-shaped input back to x's size: its input is chunked as a dy.
    kw, fmt = case.kwargs, case.kwargs["data_format"]
    x, w = case.arrays(case.x_shape, case.w_shape)
    y_shape = convgrad.ConvGeometry.for_conv(x.shape, w.shape, **kw).y_shape(fmt)
    (t,) = case.arrays(y_shape)
    c_out = x.shape[1 if fmt == "channels_first" else -1]
    (bias,) = case.arrays((c_out,))
    tk = {**kw, "output_shape": x.shape}
    td = _lazy(t, chunking(data.draw, t.shape, fmt))
    assert_close(cgd.conv_transpose(td, w, bias, **tk).compute(), convgrad.conv_transpose(t, w, bias, **tk),
                 case.dtype)
    out, vjp = cgd.conv_transpose_vjp(td, w, bias, **tk, convention=case.convention)
    want_out, want_vjp = convgrad.conv_transpose_vjp(t, w, bias, **tk, convention=case.convention)
    got = dask.compute(out, *vjp(_lazy(x, case.x_chunks)))
    for g, want in zip(got, (want_out, *want_vjp(x))):
        assert_close(g, want, case.dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_narrow_float_partials_are_not_rounded_before_the_tree_sum(dtype):
    # x = 1 and a 1-tap kernel: dw and db are sums of dy. Four-sample blocks sum to +768.25 and
    # -768: 768.25 is no float16 (ulp 0.5 there) nor bfloat16 (ulp 4), so partials rounded to
    # the dtype cancel to 0, while the exact sum, 4 * 0.25 = 1, is one rounding of the float32
    # partials' float64 sum (the whole-array op gives 1 too).
    dt = np.dtype(dtype)
    dy = np.tile([256, 256, 256, 0.25, -256, -256, -256, 0], 4).reshape(1, 1, 32).astype(dt)
    x = np.ones((1, 1, 32), dt)
    dw = cgd.conv_filter_grad(da.from_array(x, chunks=4), da.from_array(dy, chunks=4), (1, 1, 1)).compute()
    db = cgd.conv_bias_grad(da.from_array(dy, chunks=4)).compute()
    assert dw.dtype == dt and db.dtype == dt
    assert dw.ravel().tolist() == [1.0] and db.tolist() == [1.0]
    assert convgrad.conv_filter_grad(x, dy, (1, 1, 1)).ravel().tolist() == [1.0]


def test_an_integer_tree_sum_that_passes_int64_raises():
    # Each block's partial is bounded by the core (2**62 per block here), but the total of two
    # blocks is 2**63: past int64, so the tree refuses it rather than wrap to -2**63.
    x = np.full((1, 1, 2), 2**31, np.int64)
    dy = np.full((1, 1, 2), 2**31, np.int64)
    dw = cgd.conv_filter_grad(da.from_array(x, chunks=1), da.from_array(dy, chunks=1), (1, 1, 1))
    with pytest.raises(OverflowError, match="passed int64 when its blocks' partials were summed"):
        dw.compute()
    with pytest.raises(OverflowError):  # the whole array: refused before any work
        convgrad.conv_filter_grad(x, dy, (1, 1, 1))


MODES = ("reflect", "symmetric", "replicate", "circular")


@budget(30)
@given(case=blocked_cases(dtypes=("float64", "float32", "int64", "complex128")), mode=st.sampled_from(MODES),
       data=st.data())
def test_padding_modes_blocked_equal_whole(case: Blocked, mode: str, data):
    # x padded lazily by the mode (border blocks copy samples near the border, or from the other
    # end for 'circular'), the conv VALID, the input gradient folded back: against the core's
    # pad-and-fold on the whole arrays, every op that takes padding_mode.
    kw, gk, fmt = {**case.kwargs, "padding_mode": mode}, {**case.grad_kwargs, "padding_mode": mode}, \
        case.kwargs["data_format"]
    x, w = case.arrays(case.x_shape, case.w_shape)
    try:
        y = convgrad.conv(x, w, **kw)
    except ValueError as e:  # the mode's limits (no crop, pads within the input): refused alike
        with pytest.raises(ValueError, match=re.escape(str(e))):
            cgd.conv(_lazy(x, case.x_chunks), w, **kw)
        assume(False)
    dy, bias = case.arrays(y.shape, (y.shape[1 if fmt == "channels_first" else -1],))
    xd, dyd = _lazy(x, case.x_chunks), _lazy(dy, chunking(data.draw, dy.shape, fmt))
    y_lazy, vjp = cgd.conv_vjp(xd, w, bias, **gk)
    want_y, want_vjp = convgrad.conv_vjp(x, w, bias, **gk)
    got = dask.compute(y_lazy, *vjp(dyd), cgd.conv_input_grad(dyd, w, x.shape, **gk),
                       cgd.conv_filter_grad(xd, dyd, w.shape, **gk))
    want = (want_y, *want_vjp(dy), convgrad.conv_input_grad(dy, w, x.shape, **gk),
            convgrad.conv_filter_grad(x, dy, w.shape, **gk))
    for g, v in zip(got, want):
        assert_close(g, v, case.dtype)
    # the transposed conv of dy back to x's size (the adjoint of the padded conv), and its vjp
    (tb,) = case.arrays((x.shape[1 if fmt == "channels_first" else -1],))
    tk = {**gk, "output_shape": x.shape}
    out, tvjp = cgd.conv_transpose_vjp(dyd, w, tb, **tk)
    want_out, want_tvjp = convgrad.conv_transpose_vjp(dy, w, tb, **tk)
    tk.pop("convention")
    got = dask.compute(out, *tvjp(xd), cgd.conv_transpose(dyd, w, tb, **tk))
    for g, v in zip(got, (want_out, *want_tvjp(x), convgrad.conv_transpose(dy, w, tb, **tk))):
        assert_close(g, v, case.dtype)


@budget(20)
@given(case=blocked_cases(dtypes=("float64", "float32", "int64", "complex128")), data=st.data())
def test_forward_mode_blocked_equals_whole(case: Blocked, data):
    kw, fmt = case.kwargs, case.kwargs["data_format"]
    x, w, tx, tw = case.arrays(case.x_shape, case.w_shape, case.x_shape, case.w_shape)
    c_out = convgrad.ConvGeometry.for_conv(x.shape, w.shape, **kw).out_channels
    bias, tb = case.arrays((c_out,), (c_out,))
    xd = _lazy(x, case.x_chunks)
    txd = _lazy(tx, chunking(data.draw, tx.shape, fmt))  # chunked unlike x: rechunked to x's
    got = dask.compute(*cgd.conv_jvp(xd, w, txd, tw, bias, tb, **kw))
    for g, want in zip(got, convgrad.conv_jvp(x, w, tx, tw, bias, tb, **kw)):
        assert_close(g, want, case.dtype)
    # the transposed conv's, with x's shape as its output (its input is y-shaped)
    y_shape = convgrad.ConvGeometry.for_conv(x.shape, w.shape, **kw).y_shape(fmt)
    t, tt = case.arrays(y_shape, y_shape)
    c_in = x.shape[1 if fmt == "channels_first" else -1]
    tb_in, tb_dot = case.arrays((c_in,), (c_in,))
    tk = {**kw, "output_shape": x.shape}
    got = dask.compute(*cgd.conv_transpose_jvp(_lazy(t, chunking(data.draw, t.shape, fmt)), w, tt, None,
                                                tb_in, tb_dot, **tk))
    for g, want in zip(got, convgrad.conv_transpose_jvp(t, w, tt, None, tb_in, tb_dot, **tk)):
        assert_close(g, want, case.dtype)
