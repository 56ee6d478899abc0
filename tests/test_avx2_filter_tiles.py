"""The filter-gradient tiles' AVX2 forms (32-byte vectors: 8 float32, 4 float64), against the
loop oracle: tiled.py's 16 x 16, 8 x 16 and 4 x 64 tiles as passes of at most 6 rows x 2 vectors
(``_filter_2v``, ``_filter_rows_2v``) or 4 rows x 3 vectors (``_filter_4x3v``), filter_runs.py's
6 x 64 and R x 64 tiles as such passes, thin_filter.py's 8 x 48 (and 8 x 32, 8 x 16) tiles as
passes of 4 output channels x 3 or 2 vectors (``_passes``, ``_pass_4xv``).

Through the engine, each kernel forced, on random geometries: on an AVX2 machine these run the
AVX2 forms, on an AVX-512 machine the 512-bit tiles. The pass functions are also called directly
with extents in whole vectors of the machine's width, so that they are checked on either machine.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import convgrad
import oracle
from checks import assert_close, assert_float32_filter_grad
from convgrad._plan import default_planner
from strategies import budget, filter_grad_cases, seeds
from tally import checked_against

KERNELS = ("tiles of 16", "tiles of 64", "runs", "thin")


def _lanes(dtype):
    """Elements of dtype in one of the machine's vectors (the kernels' ``lanes``)."""
    from convgrad.engines._kernels._simd import VECTOR_BYTES

    return VECTOR_BYTES // np.dtype(dtype).itemsize


def _forced(kernel, block):
    """Patches that make the tiled engine's filter gradient take ``kernel``."""
    from convgrad.engines import tiled

    if kernel == "runs":
        return [mock.patch.object(tiled, "THIN", False),
                mock.patch.object(tiled, "_runs_seconds", lambda g: 0.0)]
    if kernel == "thin":
        return [mock.patch.object(tiled, "_thin_seconds", lambda g: 0.0)]
    return [mock.patch.object(tiled, "THIN", False), mock.patch.object(tiled, "RUNS", False),
            mock.patch.object(tiled, "_block", lambda geom, op, dtype: block)]


def _tile(kernel, dtype):
    """The plan's ``tile`` choice that says ``kernel`` runs."""
    return {"runs": "6x64 runs", "thin": "8x48 thin", "tiles of 64": 4}.get(
        kernel, 16 if np.dtype(dtype) == np.float32 else 8)


def _check(kernel, dtype, x, dy, w_shape, fmt, **kw):
    """dw of ``kernel`` (asserted to be the plan's) in ``dtype`` against the float64 oracle."""
    geom = convgrad.ConvGeometry.for_conv(x.shape, w_shape, data_format=fmt, **kw)
    patches = _forced(kernel, 64 if kernel == "tiles of 64" else 16)
    for p in patches:
        p.start()
    try:
        default_planner().clear()  # plans made before the patches
        plan = convgrad.make_plan("filter_grad", geom, np.dtype(dtype), "tiled", 2**31)
        assert plan.choices["tile"] == _tile(kernel, dtype)
        xd, dyd = x.astype(dtype), dy.astype(dtype)
        keep = xd.copy(), dyd.copy()
        got = convgrad.conv_filter_grad(xd, dyd, w_shape, data_format=fmt, method="tiled", **kw)
    finally:
        for p in patches:
            p.stop()
        default_planner().clear()
    assert np.array_equal(xd, keep[0]) and np.array_equal(dyd, keep[1])  # inputs not written
    if np.dtype(dtype) == np.float32:
        assert_float32_filter_grad(got, x, dy, w_shape, fmt, **kw)
    else:
        xf, dyf = oracle.x_to_first(x, fmt), oracle.x_to_first(dy, fmt)
        wf_shape = oracle.w_to_first(np.empty(w_shape), fmt).shape
        assert_close(got, oracle.w_from_first(oracle.filter_grad(xf, dyf, wf_shape, **kw), fmt), dtype=dtype)


@st.composite
def avx2_cases(draw):
    """(kernel, dtype, case): the kernel and dtype, and a conv (filter_grad_cases) with input
    channels around whole tiles of 4, 8 and 16 (partial tiles, the last channels one at a time;
    thin runs of 1-3 vectors of 16 rows) and output channels around blocks of 8, 16 and 64
    (partial blocks: the thin kernel's last 1-7 channels, zero channels past O)."""
    kernel = draw(st.sampled_from(KERNELS))
    dtype = np.float32 if kernel in ("runs", "thin") else draw(st.sampled_from([np.float32, np.float64]))
    outputs = [1, 3, 5, 8, 13, 16] if kernel == "thin" else [1, 16, 17, 33, 64, 65]
    case = draw(filter_grad_cases(st.sampled_from([1, 3, 4, 5, 7, 8, 12, 16, 17, 21, 35]),
                                  st.sampled_from(outputs)))
    return kernel, dtype, case


@budget(60)
@given(avx2_cases(), seeds)
@checked_against("oracle")
def test_avx2_filter_tiles_random_geometries(case, seed):
    from convgrad.engines import tiled

    kernel, dtype, (x_shape, w_shape, kw, fmt) = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, data_format=fmt, **kw)
    assume(not geom.empty and tiled._refuse(geom, np.dtype(dtype)) is None)
    if kernel == "runs":
        assume(tiled._run_length_fg(geom) >= tiled.RUN_ROWS)
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape(fmt))
    _check(kernel, dtype, x, dy, w_shape, fmt, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["tiles of 16", "tiles of 64"])
@pytest.mark.parametrize("c", [4, 8, 16, 23])
def test_avx2_filter_tiles_whole_and_partial_tiles(kernel, dtype, c):
    """Every split of a tile into passes: 16 channels (6 + 6 + 4 rows), 8 (4 + 4), 4, and 23 (one
    tile of 16 and 7 channels past it, or 5 tiles of 4 and 3 past them), 2 blocks of output
    channels plus a partial one, both layouts."""
    rng = np.random.default_rng(c)
    o = 2 * (64 if kernel == "tiles of 64" else 16) + 5
    for fmt in ("channels_first", "channels_last"):
        first = fmt == "channels_first"
        x_shape, w_shape = ((2, c, 6, 7), (o, c, 3, 2)) if first else ((2, 6, 7, c), (3, 2, c, o))
        kw = {"padding": 1, "stride": (1, 2)}
        geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, data_format=fmt, **kw)
        x, dy = rng.standard_normal(x_shape), rng.standard_normal(geom.y_shape(fmt))
        _check(kernel, dtype, x, dy, w_shape, fmt, **kw)


def _sums(xf, df, xo, do, shift, ob, sw, OW, dstep, rows, cols):
    """The float64 sums the pass functions add: [i, o] = sum over rows q and outputs k of
    xf[xo[q] + shift + i + k * sw] * df[do[q] + ob + o + k * dstep]."""
    out = np.zeros((rows, cols))
    for q in range(len(xo)):
        for k in range(OW):
            p, d = xo[q] + shift + k * sw, do[q] + ob + k * dstep
            out += np.outer(xf[p:p + rows].astype(np.float64), df[d:d + cols].astype(np.float64))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 6])
def test_filter_rows_2v_direct(dtype, rows):
    """tiled._filter_rows_2v (filter_runs.py's passes too) on any machine: R = 1-6 rows x 2 vectors
    of the machine's width, added to what tf holds, with distinct strides of dy and of tf."""
    from convgrad.engines._kernels.tiled import _filter_rows_2v

    rng = np.random.default_rng(rows)
    cols = 2 * _lanes(dtype)
    OW, sw, dstep, O, count = 5, 3, cols + 7, cols + 3, 3
    xf = rng.standard_normal(400).astype(dtype)
    df = rng.standard_normal(count * OW * dstep + 40).astype(dtype)
    xo, do = np.array([0, 50, 120]), np.array([0, OW * dstep, 2 * OW * dstep])
    tf = rng.standard_normal(rows * O + 20).astype(dtype)
    start, at, shift, ob = tf.copy(), 4, 2, 5
    _filter_rows_2v(xf, df, tf, xo, do, count, shift, ob, np.uint64(sw), OW, dstep, O, at, rows)
    want = start.astype(np.float64)
    for i in range(rows):
        want[at + i * O:at + i * O + cols] += _sums(xf, df, xo, do, shift, ob, sw, OW, dstep, rows, cols)[i]
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(tf, want, rtol=0, atol=64 * eps * (np.abs(want).max() + count * OW))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_4x3v_direct(dtype):
    """tiled._filter_4x3v (the 4 x 64 tile's passes) on any machine: 4 rows x 3 vectors of the
    machine's width, added to what tf holds, with distinct strides of dy and of tf."""
    from convgrad.engines._kernels.tiled import _filter_4x3v

    rng = np.random.default_rng(7)
    cols = 3 * _lanes(dtype)
    OW, sw, dstep, O, count = 5, 3, cols + 7, cols + 3, 3
    xf = rng.standard_normal(400).astype(dtype)
    df = rng.standard_normal(count * OW * dstep + 40).astype(dtype)
    xo, do = np.array([0, 50, 120]), np.array([0, OW * dstep, 2 * OW * dstep])
    tf = rng.standard_normal(4 * O + 20).astype(dtype)
    start, at, shift, ob = tf.copy(), 4, 2, 5
    _filter_4x3v(xf, df, tf, xo, do, count, shift, ob, np.uint64(sw), OW, dstep, O, at)
    want = start.astype(np.float64)
    sums = _sums(xf, df, xo, do, shift, ob, sw, OW, dstep, 4, cols)
    for i in range(4):
        want[at + i * O:at + i * O + cols] += sums[i]
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(tf, want, rtol=0, atol=64 * eps * (np.abs(want).max() + count * OW))


@pytest.mark.parametrize("vectors", [2, 3])
def test_thin_pass_4xv_direct(vectors):
    """thin_filter._pass_4xv on any machine: 4 output channels at their own offsets in dy x 2 or 3
    vectors of filter rows, added to what tf holds."""
    from convgrad.engines._kernels.thin_filter import _pass_4xv

    rng = np.random.default_rng(vectors)
    L = vectors * _lanes(np.float32)
    OW, sw, dp, count, u = 4, 5, 9, 2, L + 6
    xf = rng.standard_normal(300).astype(np.float32)
    df = rng.standard_normal(count * OW * dp + 40).astype(np.float32)
    xo, do = np.array([0, 90]), np.array([0, OW * dp])
    chans = (0, 3, 1, 7)  # dy's offsets of the 4 channels from d0: any order, repeats allowed
    tf = rng.standard_normal(4 * u + 10).astype(np.float32)
    start, at, shift, d0 = tf.copy(), 3, 1, 2
    c1, c2, c3 = (np.uint64(c) for c in chans[1:])
    _pass_4xv(xf, df, tf, xo, do, count, shift, np.uint64(d0), c1, c2, c3, np.uint64(sw), dp, OW,
              np.uint64(at), np.uint64(u), vectors)
    want = start.astype(np.float64)
    for j, c in enumerate(chans):
        # x's rows against channel c: _sums with dy read one value (column 0) at offset d0 + c
        want[at + j * u:at + j * u + L] += _sums(xf, df, xo, do, shift, d0 + c, sw, OW, dp, L, 1)[:, 0]
    eps = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(tf, want, rtol=0, atol=64 * eps * (np.abs(want).max() + count * OW))


@pytest.mark.parametrize("kernel", ["tiled", "runs", "thin"])
def test_avx2_filter_kernels_bits_do_not_depend_on_the_threads(kernel):
    """Each kernel called directly with a fixed split into parts: the same bits on 1 thread as on
    all Numba's (a sum's order is the tile's, whichever thread runs it)."""
    import numba

    from convgrad.engines import _kernels, tiled

    rng = np.random.default_rng(3)
    xp = rng.standard_normal((2, 1, 9, 10, 20)).astype(np.float32)  # 20 channels: a tile of 16, 4 alone
    dy = rng.standard_normal((2, 1, 7, 8, 64)).astype(np.float32)
    if kernel == "tiled":
        parts = np.zeros((3, 1, 3, 3, 20, 64), np.float32)
        run = lambda: _kernels.tiled_filter_grad(xp, dy, 1, 1, 1, 1, 1, 1, 16, parts)  # noqa: E731
    elif kernel == "runs":
        parts = np.zeros((3, 1, 3, 3, 20, 64), np.float32)
        run = lambda: _kernels.filter_grad_runs(xp, dy, 1, 1, 1, 1, 1, 1, 3, tiled.RUNS_CHUNK_BYTES,  # noqa: E731
                                                False, parts, np.empty((0,) * 5, np.float32))
    else:
        xf = np.concatenate([xp.ravel(), np.zeros(16, np.float32)])
        parts = np.zeros((5, 64, 1, 3, 1, 64), np.float32)  # runs of 60: 3 + 1 vectors of 16
        run = lambda: _kernels.thin_filter_grad(xf, xp.shape, dy.ravel(), dy.shape, False, 1, 1, 1, 1, 1, 1,  # noqa: E731
                                                1024, parts)
    got = []
    before = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            parts[...] = np.nan  # every part is written by the kernel
            run()
            got.append(parts.copy())
    finally:
        numba.set_num_threads(before)
    assert not np.isnan(got[0]).any() and got[0].tobytes() == got[1].tobytes()
    total = got[0].sum(axis=0)
    for a in range(3):
        for b in range(3):
            want = np.einsum("nhwc,nhwo->co", xp[:, 0, a:a + 7, b:b + 8].astype(np.float64),
                             dy[:, 0].astype(np.float64))
            have = total[0, a, b] if kernel != "thin" else total[:, 0, a, 0, b * 20:b * 20 + 20].T
            np.testing.assert_allclose(have, want, rtol=0, atol=1e-4 * np.abs(want).max())
