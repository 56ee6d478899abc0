"""The channels-first 1x1 kernels on images long enough for several work items.

``pointwise_first`` cuts each image into spans of ``SPAN`` positions and each span into tiles of
64 (the last one narrower); ``pointwise_filter_grad_first`` into chunks of ``CHUNK``, each moved
into panels of 64 output channels, under tiles of 6 input channels. The engine tests draw at most
12 positions per axis; here up to three chunks per image, with ragged ends, and output channels
over several panels, through the public ops (``method="tiled"``, channels-first), against the loop
oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
from checks import assert_close

pytest.importorskip("numba")


LONGEST = 5000


@given(n=st.integers(1, 2), c=st.integers(1, 9), o=st.integers(1, 14), length=st.integers(1, LONGEST),
       op=st.sampled_from(["forward", "input_grad", "filter_grad"]))
@strategies.budget(20)
def test_pointwise_first_on_long_images_matches_the_oracle(n, c, o, length, op):
    from convgrad.engines._kernels import pointwise

    # The draw reaches three spans and three chunks per image.
    assert 2 * pointwise.SPAN < LONGEST and 2 * pointwise.CHUNK < LONGEST
    x_shape, w_shape = (n, c, length), (o, c, 1)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape)
    plan = convgrad.make_plan(op, geom, np.dtype(np.float32), "tiled", 2**31, "channels_first")
    assert plan.takes == "channels_first"
    rng = np.random.default_rng(length * 7 + c)
    x, w, dy = (rng.standard_normal(s) for s in (x_shape, w_shape, geom.y_shape()))
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    if op == "forward":
        got, want, terms = convgrad.conv(x32, w32, method="tiled"), oracle.conv(x, w), c
    elif op == "input_grad":
        got = convgrad.conv_input_grad(dy32, w32, x_shape, method="tiled")
        want, terms = oracle.input_grad(dy, w, x_shape), o
    else:
        got = convgrad.conv_filter_grad(x32, dy32, w_shape, method="tiled")
        want, terms = oracle.filter_grad(x, dy, w_shape), n * length
    # sums of ``terms`` products of standard normals, rounded in float32
    assert_close(got, want, rtol=0, atol=1e-6 * max(1, terms), dtype=np.float32)


@given(n=st.integers(1, 2), c=st.integers(1, 20), o=st.integers(1, 140), length=st.integers(1, 700))
@strategies.budget(12)
def test_pointwise_filter_grad_panels_match_the_oracle(n, c, o, length):
    """Output channels over one to three panels of 64 (the last one part zeros), input channels
    not a multiple of the tiles' 6, chunks with ragged ends and lengths not a multiple of the 8 x 8
    transposes: the loop oracle's dw."""
    from convgrad.engines._kernels import pointwise

    assert 2 * pointwise.CHUNK < 700
    x_shape, w_shape = (n, c, length), (o, c, 1)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape)
    plan = convgrad.make_plan("filter_grad", geom, np.dtype(np.float32), "tiled", 2**31, "channels_first")
    assert plan.takes == "channels_first"
    rng = np.random.default_rng(length * 31 + o)
    x, dy = rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape())
    got = convgrad.conv_filter_grad(x.astype(np.float32), dy.astype(np.float32), w_shape, method="tiled")
    assert_close(got, oracle.filter_grad(x, dy, w_shape), rtol=0, atol=1e-6 * n * length, dtype=np.float32)


@pytest.mark.parametrize("chunks", [0.5, 1, 1.5, 2.25])
def test_pointwise_filter_grad_across_chunks(chunks):
    """Images of half a chunk to two and a quarter (the work items' boundaries, a ragged last
    chunk, a length not a multiple of the 16 lanes), two images: the loop oracle's sums."""
    from convgrad.engines._kernels import pointwise

    n, c, o, length = 2, 7, 5, int(chunks * pointwise.CHUNK) + 3
    x_shape, w_shape = (n, c, length), (o, c, 1)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape)
    plan = convgrad.make_plan("filter_grad", geom, np.dtype(np.float32), "tiled", 2**31, "channels_first")
    assert plan.takes == "channels_first"
    rng = np.random.default_rng(length)
    x, dy = rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape())
    got = convgrad.conv_filter_grad(x.astype(np.float32), dy.astype(np.float32), w_shape, method="tiled")
    assert_close(got, oracle.filter_grad(x, dy, w_shape), rtol=0, atol=1e-6 * n * length, dtype=np.float32)


@pytest.mark.parametrize("padding", [0, ((0, 1), (2, 0))])
def test_pointwise_im2col_channels_last_input_grad(padding):
    """im2col's channels-last 1x1 input gradient is one GEMM into dx: written whole when unpadded
    (no zeros first), into the padded grid and cropped when padded; the loop oracle's dx."""
    x_shape, w_shape = (3, 7, 6, 5), (4, 7, 1, 1)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, padding=padding)
    rng = np.random.default_rng(2)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    dyl = np.ascontiguousarray(np.moveaxis(dy, 1, -1))
    wl = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    plan = convgrad.make_plan("input_grad", geom, np.dtype(np.float64), "im2col", 2**31)
    assert plan.choices == {"pointwise": True}
    got = convgrad.conv_input_grad(dyl, wl, (3, 6, 5, 7), padding=padding, method="im2col",
                                   data_format="channels_last")
    assert_close(np.moveaxis(got, -1, 1), oracle.input_grad(dy, w, x_shape, padding=padding))


@pytest.mark.parametrize("op", ["forward", "input_grad", "filter_grad"])
def test_pointwise_first_bits_do_not_depend_on_the_thread_count(monkeypatch, op):
    """The threads claim the forward's spans and the filter gradient's partial sums (a fixed number
    of them, each over a fixed share of the chunks): with 1, 2 or 3 threads allowed and free, at plan
    time and at run time, the results are bitwise equal, and the loop oracle's within rounding."""
    from convgrad._plan import default_planner
    from convgrad.engines import _threads
    from convgrad.engines._kernels import pointwise

    n, c, o, length = 3, 7, 9, int(2.5 * pointwise.CHUNK)
    x_shape, w_shape = (n, c, length), (o, c, 1)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape)
    rng = np.random.default_rng(5)
    x, w, dy = (rng.standard_normal(s) for s in (x_shape, w_shape, geom.y_shape()))
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    run = {"forward": lambda: convgrad.conv(x32, w32, method="tiled"),
           "input_grad": lambda: convgrad.conv_input_grad(dy32, w32, x_shape, method="tiled"),
           "filter_grad": lambda: convgrad.conv_filter_grad(x32, dy32, w_shape, method="tiled")}[op]
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(_threads, "allowed", lambda k=threads: k)
        monkeypatch.setattr(_threads, "free_cores", lambda k=threads: k)
        default_planner().clear()  # the filter gradient's parts are fixed when it is planned
        plan = convgrad.make_plan(op, geom, np.dtype(np.float32), "tiled", 2**31, "channels_first")
        assert plan.takes == "channels_first"
        results.append(run())
    default_planner().clear()
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    want, terms = {"forward": (lambda: oracle.conv(x, w), c),
                   "input_grad": (lambda: oracle.input_grad(dy, w, x_shape), o),
                   "filter_grad": (lambda: oracle.filter_grad(x, dy, w_shape), n * length)}[op]
    assert_close(results[0], want(), rtol=0, atol=1e-6 * terms, dtype=np.float32)
