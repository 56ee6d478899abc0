"""The compiled transpositions between the layouts (engines/_kernels/layout.py) that the public ops
use around an engine that runs only channels-last, once the kernels are loaded.

Every copy is checked bitwise against NumPy's transposing copy of the same view (x: (N, C, *S) <->
(N, *S, C); w: (O, Cg, *K) <-> (*K, Cg, O)), on shapes that take the kernels' 8 x 8 blocks, their
bands of 64 bytes and the ragged rows and columns; a channels-first op through an engine that runs
channels-last (im2col's 3x3) equals the channels-last one bitwise and the loop oracle, and so
does the tiled engine's channels-first filter gradient, whose dw goes back by the kernel.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
from checks import assert_close
from convgrad._layout import w_from_last, w_to_last, x_from_last, x_to_last

pytest.importorskip("numba")
layout = pytest.importorskip("convgrad.engines._kernels.layout")


@pytest.fixture(scope="module", autouse=True)
def _loaded():
    """The kernels compiled for both float widths (what ``warm_up`` does for them)."""
    for dt in (np.float32, np.float64):
        layout.transpose_batches(np.zeros(4, dt), np.zeros(4, dt), 1, 2, 2, 4, 2, 4, 2)


def _numpy(a, role, to_last):
    view = {("x", True): x_to_last, ("x", False): x_from_last,
            ("w", True): w_to_last, ("w", False): w_from_last}[role, to_last]
    return np.ascontiguousarray(view(a, "channels_first"))


@given(role=st.sampled_from(["x", "w"]), to_last=st.booleans(),
       shape=st.tuples(st.integers(1, 3), st.integers(1, 37), st.integers(1, 37)).flatmap(
           lambda s: st.sampled_from([s, (*s, 9), (*s, 2, 3)])),
       dtype=st.sampled_from([np.float32, np.float64, np.complex64]))
@strategies.budget(40)
def test_relaid_equals_numpys_transposing_copy(role, to_last, shape, dtype):
    rng = np.random.default_rng(sum(shape))
    a = rng.standard_normal(shape).astype(dtype)
    if dtype == np.complex64:
        a = a + 1j * rng.standard_normal(shape).astype(np.float32)
    before = a.copy()
    with mock.patch.object(layout, "MIN_VALUES", 0):
        got = layout.relaid(a, role, to_last)
    if role == "w" and to_last:  # NumPy's copy moves the filter to channels-last
        assert got is None
        return
    want = _numpy(a, role, to_last)
    assert got.shape == want.shape and got.dtype == want.dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(a, before)


def test_relaid_declines_what_it_does_not_move():
    """Small arrays, dtypes other than 4- and 8-byte floats and complex, non-contiguous views: None
    (NumPy copies them)."""
    big = np.zeros((2, 8, 32, 32), np.float32)
    assert layout.relaid(big, "x", True) is not None
    assert layout.relaid(np.zeros((1, 2, 3), np.float32), "x", True) is None
    assert layout.relaid(big.astype(np.int32), "x", True) is None
    assert layout.relaid(big.astype(np.complex128), "x", True) is None
    assert layout.relaid(big[:, :, ::2], "x", True) is None


@pytest.mark.parametrize("op", ["forward", "input_grad", "filter_grad"])
def test_channels_first_through_a_channels_last_engine_uses_the_kernels(op):
    """im2col runs a 3x3 conv channels-last: a channels-first call moves x, w (or dy) and the
    result by the compiled transpositions, and gives the channels-last call's result bitwise,
    within float32 rounding of the oracle."""
    x_shape, w_shape, kw = (2, 8, 41, 40), (8, 8, 3, 3), {"padding": 1}
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(3)
    x, w, dy = (rng.standard_normal(s).astype(np.float32) for s in (x_shape, w_shape, geom.y_shape()))
    calls = []
    real = layout.relaid

    def counted(a, role, to_last, load=False):
        out = real(a, role, to_last, load)
        calls.append(out is not None)
        return out

    with mock.patch.object(layout, "relaid", counted):
        got = {"forward": lambda: convgrad.conv(x, w, method="im2col", **kw),
               "input_grad": lambda: convgrad.conv_input_grad(dy, w, x_shape, method="im2col", **kw),
               "filter_grad": lambda: convgrad.conv_filter_grad(x, dy, w_shape, method="im2col", **kw)}[op]()
    assert calls.count(True) >= 2  # x or dy in, and y, dx or dw out (w: NumPy's)
    xl, dyl = (np.ascontiguousarray(x_to_last(a, "channels_first")) for a in (x, dy))
    wl = np.ascontiguousarray(w_to_last(w, "channels_first"))
    last = {"method": "im2col", "data_format": "channels_last", **kw}
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    if op == "forward":
        ref = x_from_last(convgrad.conv(xl, wl, **last), "channels_first")
        want = oracle.conv(x64, w64, **kw)
    elif op == "input_grad":
        ref = x_from_last(convgrad.conv_input_grad(dyl, wl, xl.shape, **last), "channels_first")
        want = oracle.input_grad(dy64, w64, x_shape, **kw)
    else:
        ref = w_from_last(convgrad.conv_filter_grad(xl, dyl, wl.shape, **last), "channels_first")
        want = oracle.filter_grad(x64, dy64, w_shape, **kw)
    np.testing.assert_array_equal(got, ref)
    assert_close(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()), dtype=np.float32)


@pytest.mark.parametrize("kw", [{"padding": 1}, {"padding": 1, "stride": 2, "dilation": (1, 2)}])
def test_tiled_channels_first_filter_grad_moves_dw_back_by_the_kernel(monkeypatch, kw):
    """The tiled engine's tiles of input channels compute dw channels-last; a channels-first
    caller's dw (64 x 32 x 3 x 3, above the kernel's minimum) goes back by ``relaid``: bitwise the
    channels-last run's dw moved by NumPy, within float32 rounding of the oracle."""
    from convgrad._plan import default_planner
    from convgrad.engines import tiled

    monkeypatch.setattr(tiled, "THIN", False)  # the thin kernel writes a channels-first dw itself
    monkeypatch.setattr(tiled, "RUNS", False)  # the runs kernel's parts are laid out by finish_runs
    default_planner().clear()
    x_shape, w_shape = (2, 32, 9, 10), (64, 32, 3, 3)
    assert np.prod(w_shape) >= layout.MIN_VALUES
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(5)
    x, dy = (rng.standard_normal(s).astype(np.float32) for s in (x_shape, geom.y_shape()))
    assert convgrad.make_plan("filter_grad", geom, np.dtype(np.float32), "tiled", 2**31,
                              "channels_first").takes == "channels_first"
    calls = []
    real = layout.relaid

    def counted(a, role, to_last, load=False):
        out = real(a, role, to_last, load)
        calls.append((role, to_last, out is not None))
        return out

    with mock.patch.object(layout, "relaid", counted):
        got = convgrad.conv_filter_grad(x, dy, w_shape, method="tiled", **kw)
    assert ("w", False, True) in calls
    xl, dyl = (np.ascontiguousarray(x_to_last(a, "channels_first")) for a in (x, dy))
    last = convgrad.conv_filter_grad(xl, dyl, (3, 3, 32, 64), method="tiled", data_format="channels_last",
                                     **kw)
    np.testing.assert_array_equal(got, np.ascontiguousarray(w_from_last(last, "channels_first")))
    want = oracle.filter_grad(x.astype(np.float64), dy.astype(np.float64), w_shape, **kw)
    assert_close(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()), dtype=np.float32)
