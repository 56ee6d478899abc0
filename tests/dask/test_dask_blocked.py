# ruff: noqa: E402  (dask is imported only when the extra is installed)
"""Blocked == whole array: each of convgrad.dask's seven ops, on random geometries and random
chunkings, against the core on the whole NumPy arrays (the core is held to the loop oracle by
its own tests), on dask's synchronous scheduler."""

from __future__ import annotations

import numpy as np
import pytest

dask = pytest.importorskip("dask")  # the extra convgrad[dask]
import dask.array as da
from dask_cases import Blocked, assert_close, blocked_cases, chunking
from hypothesis import given
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
    kw, fmt = case.kwargs, case.kwargs["data_format"]
    x, w = case.arrays(case.x_shape, case.w_shape)
    y = convgrad.conv(x, w, **kw)
    dy, bias = case.arrays(y.shape, (y.shape[1 if fmt == "channels_first" else -1],))
    dy_chunks = chunking(data.draw, dy.shape, fmt)
    xd, dyd = _lazy(x, case.x_chunks), _lazy(dy, dy_chunks)

    yd = cgd.conv(xd, w, bias, **kw)
    assert isinstance(yd, da.Array)
    assert_close(yd.compute(), convgrad.conv(x, w, bias, **kw), case.dtype)
    assert_close(cgd.conv_input_grad(dyd, w, x.shape, **kw).compute(),
                 convgrad.conv_input_grad(dy, w, x.shape, **kw), case.dtype)
    assert_close(cgd.conv_filter_grad(xd, dyd, w.shape, **kw).compute(),
                 convgrad.conv_filter_grad(x, dy, w.shape, **kw), case.dtype)
    assert_close(cgd.conv_bias_grad(dyd, data_format=fmt).compute(),
                 convgrad.conv_bias_grad(dy, data_format=fmt), case.dtype)

    y_lazy, vjp = cgd.conv_vjp(xd, w, bias, **kw)
    want_y, want_vjp = convgrad.conv_vjp(x, w, bias, **kw)
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
    out, vjp = cgd.conv_transpose_vjp(td, w, bias, **tk)
    want_out, want_vjp = convgrad.conv_transpose_vjp(t, w, bias, **tk)
    got = dask.compute(out, *vjp(_lazy(x, case.x_chunks)))
    for g, want in zip(got, (want_out, *want_vjp(x))):
        assert_close(g, want, case.dtype)
