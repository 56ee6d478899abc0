"""The one-pass Winograd kernel's transforms (engines/_kernels/winograd_fused.py): the input
and output transforms on explicit vectors (whole vectors of channels, then a scalar tail; tiles
inside x read in place, tiles at its edges copied with zeros first) and the filter's transform, parallel over
claimed chunks of input channels.

The kernel is called directly on NaN-prefilled outputs (every element must be written) and
compared with the loop oracle (tests/oracle.py) in float64; the filter's transform with
Lavin & Gray's G written out here, in float64 NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
from checks import assert_close
from convgrad.engines import _kernels, winograd
from strategies import budget

pytest.importorskip("numba")

# G of F(4, 3) at the points 0, -1, 1, -2, 2 and infinity (Lavin & Gray 2016, table 1).
_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])


def _kernel_forward(x, w, padding, dilation, first):
    """y of the one-pass kernel, called on a NaN-prefilled y, for channels-first x ``(N, C, H, W)``
    and w ``(O, C, 3, 3)``; returned channels-first. Nothing may be written past y (a phase
    grid's last tile can start past y's last column)."""
    geom = convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding=padding, dilation=dilation)
    wl = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    xs = x if first else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    shape = geom.y_shape("channels_first" if first else "channels_last")
    size = int(np.prod(shape))
    after = np.full(size + 1024, np.nan, x.dtype)  # and 1024 values after y that stay NaN
    y = after[:size].reshape(shape)
    seg, per, threads = winograd._work(geom)
    u = winograd._one_pass_filter(wl)
    (pt, _), (pl, _) = geom.tight_padding
    dh, dw = geom.rhs_dilation
    _kernels.winograd43(xs, u, winograd._consts(x.dtype), first, dh, dw, pt, pl, seg, per, threads, y,
                        np.zeros(threads, x.dtype))
    assert np.isnan(after[size:]).all(), "wrote past y"
    return y if first else y.transpose(0, 3, 1, 2)


@st.composite
def _cases(draw):
    """Channels-first (x, w, padding, dilation): input channels across one to four vectors of
    float32 (16) or float64 (8) lanes with and without a tail, planes of 1-4 tile rows and
    columns (tiles inside x and at every edge), pads 0-2, dilations 1-2 per axis."""
    c = draw(st.sampled_from([8, 9, 15, 16, 17, 24, 31, 33, 40, 64, 71]))
    o = draw(st.integers(winograd.ONE_PASS_CHANNELS, 24))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h, wd = draw(st.integers(6, 17)), draw(st.integers(6, 19))
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    out = [s + lo + hi - 2 * d for s, (lo, hi), d in zip((h, wd), padding, dilation)]
    padding = padding if min(out) >= 4 else tuple((2 * d, 2 * d) for d in dilation)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return rng.standard_normal((1, c, h, wd)), rng.standard_normal((o, c, 3, 3)), padding, dilation


@budget(12)
@given(case=_cases(), first=st.booleans())
def test_vector_input_transform_matches_the_oracle(case, first):
    x, w, padding, dilation = case
    want = oracle.conv(x, w, padding=padding, dilation=dilation)
    assert_close(_kernel_forward(x, w, padding, dilation, first), want)


@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize("c", [17, 33, 48])
def test_vector_input_transform_float32_within_the_documented_tolerance(c, first):
    """float32 (16 lanes: 17 and 33 channels leave a tail of 1) against the float64 oracle."""
    rng = np.random.default_rng(c)
    x, w = rng.standard_normal((2, c, 11, 13)), rng.standard_normal((20, c, 3, 3))
    want = oracle.conv(x, w, padding=1)
    got = _kernel_forward(x.astype(np.float32), w.astype(np.float32), 1, 1, first)
    assert not np.isnan(got).any()
    assert np.abs(got - want).max() / np.abs(want).max() < winograd.FLOAT32_TOLERANCE


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_transform_is_g_w_gt_on_any_thread_count(dtype, flip):
    """u[a * 6 + b, c, o] = (G w[:, :, c, o] G^T)[a, b] (taps reversed with ``flip``), zeros past
    O; channels claimed in chunks by the threads: the same bits on one thread and on two."""
    import numba

    rng = np.random.default_rng(3)
    c, o = 300, 20  # 150 chunks of 2 channels; O rounded up to 32
    w = rng.standard_normal((3, 3, c, o)).astype(dtype)
    taps = w[::-1, ::-1] if flip else w
    want = np.einsum("ai,ijco,bj->abco", _G, taps.astype(np.float64), _G).reshape(36, c, o)
    _kernels.start_pool()
    before = numba.get_num_threads()
    got = {}
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            u = np.full((36, c, 32), np.nan, dtype)
            _kernels.winograd43_filter(w, u, winograd._consts(np.dtype(dtype)), flip)
            got[threads] = u
    finally:
        numba.set_num_threads(before)
    one, every = got[1], got[numba.config.NUMBA_NUM_THREADS]
    assert np.array_equal(one, every)
    assert np.all(one[:, :, o:] == 0)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(one[:, :, :o], want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize(("x_shape", "padding", "dilation"), [
    ((1, 9, 8, 9), 2, (1, 2)),  # 9 output columns: phase grids of 5 and 4, the second's last tile empty
    ((3, 37, 23, 29), ((2, 2), (1, 1)), (1, 3)),  # 27 columns: 9 per phase, 3 tiles each, 12 wide
])
def test_phase_tiles_past_the_last_column_write_nothing(x_shape, padding, dilation, first):
    """A dilated row's tiles, 4 per phase grid from the largest grid, may start past y's last
    column on a smaller grid: such a tile writes nothing (its row's outputs would have gone to
    the next row, past y at the last one). float64 against the oracle, nothing written past y."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal((19, x_shape[1], 3, 3))
    want = oracle.conv(x, w, padding=padding, dilation=dilation)
    assert_close(_kernel_forward(x, w, padding, dilation, first), want)


@pytest.mark.parametrize(("x_shape", "padding", "dilation", "dtype"), [
    ((1, 8, 32, 32), 2, (2, 2), np.float32),  # dilated_3x3_d2's planes: 32 x 32 float32, 4 KiB
    ((2, 9, 16, 16), 1, (1, 1), np.float64),  # 16 x 16 float64, 2 KiB; 9 channels: a tail of 1
    ((1, 8, 8, 16), ((1, 1), (2, 2)), (1, 2), np.float64),  # 8 x 16 float64, 1 KiB; dilated columns
    ((1, 8, 4, 256), 1, (1, 1), np.float32),  # 4 x 256: rows of 64 tiles in parts of 48 (oc0 > 0)
])
def test_channels_first_planes_a_multiple_of_1_kib_go_through_the_stage(x_shape, padding, dilation, dtype):
    """Output planes whose size is a multiple of 1 KiB (``_aliased``) are written through the
    stage (transposed into it, then copied a row at a time): against the float64 oracle, every
    output written (NaN-prefilled y), nothing past y."""
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape), rng.standard_normal((11, x_shape[1], 3, 3))
    _check_aliased(x, w, padding, dilation, dtype, True)


def _check_aliased(x, w, padding, dilation, dtype, first):
    """The one-pass kernel in ``dtype`` on output planes a multiple of 1 KiB (asserted) against
    the float64 oracle: float32's documented tolerance or 1e-10, every output written."""
    from convgrad.engines._kernels import winograd_fused

    want = oracle.conv(x, w, padding=padding, dilation=dilation)
    assert winograd_fused._aliased(want.shape[2] * want.shape[3] * np.dtype(dtype).itemsize)
    got = _kernel_forward(x.astype(dtype), w.astype(dtype), padding, dilation, first)
    assert not np.isnan(got).any()
    tol = winograd.FLOAT32_TOLERANCE if dtype == np.float32 else 1e-10
    assert np.abs(got - want).max() / np.abs(want).max() < tol


@st.composite
def _aliased_cases(draw):
    """(x, w, padding, dilation, dtype) whose output planes are a multiple of 1 KiB: float32
    planes of 256 or 512 values, float64 of 128, 256 or 512; 'same' padding, so x's planes are
    y's; 8-20 channels (float32: with and without a tail of the 16 lanes)."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    singles = [(8, 32), (16, 16), (16, 32), (32, 8)]
    h, wd = draw(st.sampled_from(singles if dtype == np.float32 else [(8, 16), (16, 8), (16, 16), (8, 64)]))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    c, o = draw(st.integers(8, 20)), draw(st.integers(winograd.ONE_PASS_CHANNELS, 20))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return (rng.standard_normal((1, c, h, wd)), rng.standard_normal((o, c, 3, 3)), tuple(dilation),
            dilation, dtype)


@budget(8)
@given(case=_aliased_cases(), first=st.booleans())
def test_planes_a_multiple_of_1_kib_match_the_oracle_in_both_layouts(case, first):
    """Random geometries whose output planes go through the stage when channels-first (the
    channels-last kernel, which never does, alongside): the float64 oracle within float32's
    documented tolerance or 1e-10, every output written, nothing past y."""
    _check_aliased(*case, first)
