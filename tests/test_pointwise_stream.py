"""The channels-first 1x1 kernel storing y (or dx) past the caches (``pointwise.streams``, from
``tile_stream.STREAM_BYTES`` of output, lowered to 0 here so that small geometries take the
streamed stores): the forward and the input gradient through the public ops against the loop
oracle, every output written (the result is NaN-filled before the kernel runs), streamed exactly
where every row starts on a 64-byte boundary."""

from __future__ import annotations

import math
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close
from convgrad.engines import _kernels, tiled
from convgrad.engines._kernels import pointwise
from convgrad.engines._kernels._simd import VECTOR_BYTES
from convgrad.engines._scratch import aligned_empty

pytest.importorskip("numba")


@contextmanager
def streaming():
    """Stream every output that ``streams`` allows, fill it with NaN before the kernel writes it,
    and record the ``stream`` argument of each call of the kernel."""
    calls = []
    kernel = _kernels.pointwise_first

    class Spy:  # the planner reads the kernel's compiled signatures
        def __getattr__(self, name):
            return getattr(kernel, name)

        def __call__(self, w, x, y, stream):
            calls.append(stream)
            return kernel(w, x, y, stream)

    def nan_filled(shape, dtype):
        a = aligned_empty(shape, dtype)
        a.fill(np.nan)
        return a

    with mock.patch.object(pointwise, "STREAM_BYTES", 0), \
            mock.patch.object(_kernels, "pointwise_first", Spy()), \
            mock.patch.object(tiled, "aligned_empty", nan_filled):
        yield calls


@st.composite
def spatial_shapes(draw):
    """Ranks 1-3 whose positions per image are, half the time, a multiple of the floats of a
    vector (16 with AVX-512, 8 with AVX2: rows that stream), else anything up to a few spans."""
    rank = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 6)) for _ in range(rank - 1)]
    last = draw(st.integers(1, 40))
    if draw(st.booleans()):
        last *= VECTOR_BYTES // 4
    return (*sizes, last)


@given(n=st.integers(1, 2), c=st.integers(1, 20), o=st.integers(1, 20), spatial=spatial_shapes(),
       op=st.sampled_from(["forward", "input_grad"]))
@strategies.budget(25)
@tally.checked_against("oracle")
def test_streamed_pointwise_matches_the_oracle(n, c, o, spatial, op):
    """Channels counts off the tiles' 6, positions over several tiles of 64 with a narrower last
    one (cached stores): the loop oracle's result, nothing left unwritten; the kernel was told to
    stream exactly when each row's bytes are whole vectors."""
    x_shape, w_shape = (n, c, *spatial), (o, c, *(1,) * len(spatial))
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape)
    rng = np.random.default_rng(math.prod(spatial) * 3 + c)
    x, w, dy = (rng.standard_normal(s) for s in (x_shape, w_shape, geom.y_shape()))
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    with streaming() as calls:
        if op == "forward":
            got, want, terms = convgrad.conv(x32, w32, method="tiled"), oracle.conv(x, w), c
        else:
            got = convgrad.conv_input_grad(dy32, w32, x_shape, method="tiled")
            want, terms = oracle.input_grad(dy, w, x_shape), o
    assert calls == [math.prod(spatial) * 4 % VECTOR_BYTES == 0]
    assert_close(got, want, rtol=0, atol=1e-6 * max(1, terms), dtype=np.float32)


def test_small_and_unaligned_outputs_are_not_streamed():
    """``streams``: an output under STREAM_BYTES, off a 64-byte boundary, or whose rows are not
    whole vectors keeps the cached stores."""
    rows = pointwise.STREAM_BYTES // 4 // 64
    y = aligned_empty((1, rows, 64), np.float32)
    assert pointwise.streams(y)
    assert not pointwise.streams(aligned_empty((1, rows // 2, 64), np.float32))
    assert not pointwise.streams(aligned_empty((1, rows + 1, 68), np.float32))  # 272 bytes a row
    raw = np.empty(rows * 64 + 32, np.float32)
    off = raw[(-raw.ctypes.data % 64) // 4 + 1:][: rows * 64].reshape(1, rows, 64)
    assert not pointwise.streams(off)
