"""The tiled engine's strided input gradient (and so its transposed conv): every sub-pixel phase
of dx in one launch of _kernels.regions_forward, against the loop oracle."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close
from convgrad._layout import w_to_last, x_from_last, x_to_last
from convgrad.engines import _kernels, _regions, tiled

F32 = np.dtype(np.float32)


@st.composite
def strided_cases(draw):
    """(x_shape, w_shape, kwargs) channels-first, groups 1: strides 2-4 on at least one axis,
    kernels 1-5 (1-3 in 3-D), dilations 1-3, (before, after) pads from -2 to 3, output channels
    (dx's channels) across the tiles' blocks of 16, 32 and 64."""
    rank = draw(st.integers(1, 3))
    small = rank == 3
    kernel = tuple(draw(st.integers(1, 3 if small else 5)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    if max(stride) == 1:
        stride = (*stride[:-1], draw(st.integers(2, 4)))
    dilation = tuple(draw(st.integers(1, 2 if small else 3)) for _ in range(rank))
    pads = tuple((draw(st.integers(-2, 3)), draw(st.integers(-2, 3))) for _ in range(rank))
    spatial = []
    for k, s, d, (lo, hi) in zip(kernel, stride, dilation, pads):
        least = max(1, (k - 1) * d + 1 - lo - hi)  # one output at least
        spatial.append(least + draw(st.integers(0, 2 * s + (2 if small else 6))))
    n = draw(st.integers(1, 2))
    c = draw(st.sampled_from([1, 3, 16, 21, 40, 64, 70]))  # dx's channels: the tiles' blocks
    o = draw(st.integers(1, 9))
    return (n, c, *spatial), (o, c, *kernel), {"stride": stride, "padding": pads, "dilation": dilation}


def _launches(fn):
    """fn() and the regions_forward launches it made (each recorded as its phase table)."""
    tables, kernel = [], _kernels.regions_forward

    class Recorded:  # the kernel, for the planner too (its signatures), recording each launch
        def __getattr__(self, name):
            return getattr(kernel, name)

        def __call__(self, *args):
            tables.append(args[5].copy())
            return kernel(*args)

    with mock.patch.object(tiled._kernels, "regions_forward", Recorded()):
        return fn(), tables


@given(case=strided_cases(), layout=st.sampled_from(["channels_first", "channels_last"]))
@strategies.budget(40)
@tally.checked_against("oracle")
def test_strided_input_grad_runs_every_phase_in_one_launch(case, layout):
    """float32 conv_input_grad and conv_transpose by the tiled engine, in either layout: the phases
    of the 8 x 16 or 32 and 6 x 64 tiles go to one launch (the others, dot-product and 3-tap row
    tiles, one each), and dx (NaN first where the phases cover it) matches the float64 oracle
    within float32 rounding."""
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assume(all(geom.out_spatial))
    rng = np.random.default_rng(7)
    w = rng.standard_normal(w_shape)
    dy = rng.standard_normal(geom.y_shape())
    want = oracle.input_grad(dy, w, x_shape, **kw)
    block = convgrad.make_plan("input_grad", geom, F32, "tiled", 2**31).choices["block"]
    spreading = [combo for combo in _phases_with_samples(geom) if tiled._spreads_phase(combo, block)]
    dy32, w32 = dy.astype(np.float32), w.astype(np.float32)
    if layout == "channels_last":
        dy32 = np.ascontiguousarray(x_to_last(dy32, "channels_first"))
        w32 = np.ascontiguousarray(w_to_last(w32, "channels_first"))
    args = {**kw, "data_format": layout, "method": "tiled"}
    for run in (lambda: convgrad.conv_input_grad(dy32, w32, _shape(x_shape, layout), **args),
                lambda: convgrad.conv_transpose(dy32, w32, output_shape=x_shape[2:], **args)):
        with mock.patch.object(tiled, "_new_output", _poisoned):
            got, tables = _launches(run)
        if layout == "channels_last":
            got = x_from_last(got, "channels_first")
        assert_close(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()), dtype=np.float32)
        assert len(tables) == (1 if spreading else 0)
        if spreading:
            assert len(tables[0]) == len(spreading)


def _poisoned(shape, dtype, zeroed):
    """tiled._new_output with NaN where the phases are to write every sample."""
    return np.zeros(shape, dtype) if zeroed else np.full(shape, np.nan, dtype)


def _shape(x_shape, layout):
    return x_shape if layout == "channels_first" else (x_shape[0], *x_shape[2:], x_shape[1])


def _phases_with_samples(geom):
    """The phases that write some sample of dx (those reaching only padding are left out)."""
    import itertools

    from convgrad.engines._common import phase_axes

    for combo in itertools.product(*phase_axes(geom)):
        counts = [tiled._inside(p, s, lo, n)[1]
                  for p, s, (lo, _), n in zip(combo, geom.stride, geom.tight_padding, geom.in_spatial)]
        if min(counts) > 0:
            yield combo


@pytest.mark.parametrize("block", [16, 32, 64])
@pytest.mark.parametrize("first", [False, True])
def test_one_launch_writes_each_phase_with_every_tile_block(block, first):
    """_strided_input_grad with each tile block forced (the cost model picks by size), in both
    layouts of dx: 2-D, stride (2, 3), 4 and 3 taps, asymmetric and negative pads, dilation 2
    along the rows; dx starts as NaN where the phases cover it, so a sample left unwritten fails."""
    x_shape, w_shape = (2, 70, 11, 17), (9, 70, 4, 3)
    kw = {"stride": (2, 3), "padding": ((2, -1), (1, 3)), "dilation": (1, 2)}
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(8)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    want = oracle.input_grad(dy, w, x_shape, **kw)
    dyl = np.ascontiguousarray(x_to_last(dy, "channels_first")).astype(np.float32)
    wl = np.ascontiguousarray(w_to_last(w, "channels_first")).astype(np.float32)

    with mock.patch.object(tiled, "_new_output", _poisoned):
        got, tables = _launches(lambda: tiled._strided_input_grad(geom, block, dyl, wl, first=first))
    assert len(tables) == 1 and len(tables[0]) == 6  # 2 x 3 phases, all in the one launch
    got = x_from_last(got, "channels_first")
    assert_close(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@given(case=strided_cases(), out_channels=st.sampled_from([16, 40, 64, 70]),
       layout=st.sampled_from(["channels_first", "channels_last"]))
@strategies.budget(40)
@tally.checked_against("oracle")
def test_strided_forward_reads_x_in_place_inside_and_copies_only_the_border(case, out_channels, layout):
    """A float32 strided forward by the tiled engine, in either layout: channels-last, where most
    windows lie inside x it pads no copy of x (the inside reads x as it is, the border boxes
    copies of their windows, in one launch); elsewhere (the tiles that run across rows, and
    channels-first, where the copy also transposes x) the same launch pads x whole, with no
    padding pass before it. y starts as NaN, so an output left unwritten fails; against the
    float64 oracle within float32 rounding either way."""
    x_shape, w_shape, kw = case
    w_shape = (out_channels, *w_shape[1:])
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assume(all(geom.out_spatial))
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    want = oracle.conv(x, w, **kw)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    if layout == "channels_last":
        x32 = np.ascontiguousarray(x_to_last(x32, "channels_first"))
        w32 = np.ascontiguousarray(w_to_last(w32, "channels_first"))
    xl = x32 if layout == "channels_last" else x_to_last(x32, "channels_first")
    block = convgrad.make_plan("forward", geom, F32, "tiled", 2**31).choices["block"]
    first = layout == "channels_first"
    regions = tiled._in_regions(geom, block, xl, first) and not tiled._streams(geom, block, F32)
    whole = not regions and tiled._padded_in_launch(geom, block, xl, first)
    padded, pad = [], tiled._padded

    def counted(a, *args):
        padded.append(a.shape)
        return pad(a, *args)

    with mock.patch.object(tiled, "_padded", counted), \
            mock.patch.object(_regions, "aligned_empty", _nan_empty):
        got, tables = _launches(lambda: convgrad.conv(x32, w32, method="tiled", data_format=layout, **kw))
    if layout == "channels_last":
        got = x_from_last(got, "channels_first")
    assert_close(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()), dtype=np.float32)
    assert (len(tables), len(padded)) == ((1, 0) if regions or whole else (0, 1))
    if regions:  # the inside (read from x: source 0), and at most two border boxes per axis
        sources = list(tables[0][:, 0])
        assert sources.count(0) <= 1 and sources[sources.count(0):] == [1] * (len(sources) - sources.count(0))
        assert len(sources) <= 1 + 2 * geom.rank
    if whole:  # one region, reading the padded copy (the second source)
        assert [list(row[:2]) for row in tables[0]] == [[1, 0]]


def _nan_empty(shape, dtype):
    """An array of NaN where the engine asks for an uninitialised one."""
    return np.full(shape, np.nan, dtype)


@given(out=st.lists(st.integers(1, 9), min_size=1, max_size=3), data=st.data())
@strategies.budget(30)
def test_border_boxes_and_the_inside_tile_the_output_once(out, data):
    """_regions.border_boxes: with the inner box, every output exactly once."""
    from convgrad.engines import _regions

    inner = []
    for n in out:
        first = data.draw(st.integers(0, n))
        inner.append((first, data.draw(st.integers(first, n))))
    hits = np.zeros(out, dtype=int)
    for box in [tuple(inner), *_regions.border_boxes(tuple(out), inner)]:
        hits[tuple(slice(lo, hi) for lo, hi in box)] += 1
    np.testing.assert_array_equal(hits, 1)


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    ((2, 40, 9, 10), (24, 40, 1, 1), {"stride": 2, "padding": 0}),  # channels-first w: Fortran-ordered
    ((2, 21, 13), (16, 21, 4), {"stride": 3, "padding": ((2, 1),), "dilation": 2}),
    ((1, 16, 5, 6, 7), (9, 16, 3, 2, 3), {"stride": (2, 1, 3), "padding": 1}),
])
@pytest.mark.parametrize("first", [False, True])
def test_phase_filters_packed_from_the_callers_filter_in_either_layout(x_shape, w_shape, kw, first):
    """The phases' filters are flipped, swapped and packed by one compiled pass over w as the
    caller holds it (C-contiguous channels-last, or a view of channels-first memory, Fortran-ordered
    for a 1x1 filter), ranks 1-3; dx starts as NaN where the phases cover it, against the loop
    oracle."""
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(10)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    want = oracle.input_grad(dy, w, x_shape, **kw)
    w32, dy32 = w.astype(np.float32), dy.astype(np.float32)
    dyl = x_to_last(dy32, "channels_first")
    wl = w_to_last(w32, "channels_first") if first else np.ascontiguousarray(w_to_last(w32, "channels_first"))
    if not first:
        dyl = np.ascontiguousarray(dyl)
    block = convgrad.make_plan("input_grad", geom, F32, "tiled", 2**31).choices["block"]

    with mock.patch.object(tiled, "_new_output", _poisoned):
        got = tiled._strided_input_grad(geom, block, dyl, wl, first=first)
    assert_close(x_from_last(got, "channels_first"), want, rtol=0, atol=1e-5 * np.abs(want).max())


@given(o=st.integers(1, 70), c=st.integers(1, 40), kernel=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       block=st.sampled_from([16, 32, 64]), first=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]))
@example(4, 33, [5, 5, 5], 16, True, np.float32)  # the compiled transposition: a partial block
@example(70, 32, [3, 3], 64, True, np.float32)  # whole blocks and a partial one
@example(64, 32, [4, 4], 32, True, np.float64)
@strategies.budget(40)
def test_the_forward_filter_packed_in_blocks_of_output_channels(o, c, kernel, block, first, dtype):
    """_regions.pack_into (the strided forward's filter, packed for the tiles), from a C-contiguous
    channels-last filter or the default layout's channels-last view of channels-first memory (the
    compiled transposition, loaded by the test module's setup): packed[q, *k, ci, b] = w[*k, ci,
    q * block + b], zero past O, every value written (the scratch starts as NaN)."""
    from convgrad.engines._kernels import layout

    layout.transpose_batches(np.zeros(4, dtype), np.zeros(4, dtype), 1, 2, 2, 4, 2, 4, 2)  # loaded
    rng = np.random.default_rng(o * 1000 + c)
    w_first = rng.standard_normal((o, c, *kernel)).astype(dtype)
    w = w_to_last(w_first, "channels_first")
    if not first:
        w = np.ascontiguousarray(w)
    blocks = -(-o // block)
    out = np.full(blocks * int(np.prod(kernel)) * c * block, np.nan, dtype)
    real, moved = layout.transpose_batches, []

    def spy(*args):
        moved.append(args)
        return real(*args)

    spy.signatures = real.signatures  # what layout.loaded reads
    with mock.patch.object(layout, "transpose_batches", spy):
        _regions.pack_into(w, block, out)
    assert bool(moved) == (first and w.size >= layout.MIN_VALUES)
    packed = out.reshape(blocks, *kernel, c, block)
    for q in range(blocks):
        for b in range(block):
            want = w[..., q * block + b] if q * block + b < o else 0
            np.testing.assert_array_equal(packed[q, ..., b], want)


@given(shape=st.lists(st.integers(1, 4), min_size=5, max_size=5), data=st.data())
@strategies.budget(30)
def test_flat_filter_gives_the_memory_and_strides_of_any_view(shape, data):
    """_regions.flat_filter (what pack_phases reads): for a filter as the caller may hold it (any
    axis order, an axis flipped, every other channel), the flat array and element strides address
    every value of the view (read back through NumPy's own strided view); a transposed view of
    contiguous memory is not copied."""
    base = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    order = data.draw(st.permutations(range(5)))
    w = base.transpose(order)
    kind = data.draw(st.sampled_from(["view", "flipped", "sliced"]))
    if kind == "flipped":
        w = w[..., ::-1, :]
    elif kind == "sliced":
        w = w[..., ::2]
    flat, strides = _regions.flat_filter(w)
    assert flat.ndim == 1 and flat.flags.c_contiguous
    seen = np.lib.stride_tricks.as_strided(flat, w.shape, tuple(s * flat.itemsize for s in strides))
    assert np.array_equal(seen, w)
    if kind == "view":
        assert np.shares_memory(flat, base)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_the_tiles_wait_for_the_copies_made_in_their_launch(monkeypatch, layout):
    """One image of a long 1-D signal: the launch's only copy item pads (and, channels-first,
    transposes) all of dy, so a second thread that claims a tile while the first still copies
    must wait for it. The padded copy starts as NaN on every call; on two threads forced, every
    call gives bitwise the one-thread result, which matches the loop oracle."""
    numba = pytest.importorskip("numba")
    from convgrad.engines import _threads

    x_shape, w_shape, kw = (1, 64, 8192), (64, 64, 4), {"stride": 2, "padding": 1}
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(11)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    dy32, w32 = dy.astype(np.float32), w.astype(np.float32)
    if layout == "channels_last":
        dy32 = np.ascontiguousarray(x_to_last(dy32, "channels_first"))
        w32 = np.ascontiguousarray(w_to_last(w32, "channels_first"))
    monkeypatch.setattr(tiled, "scratch", lambda name, shape, dtype: np.full(shape, np.nan, dtype))
    block = convgrad.make_plan("input_grad", geom, F32, "tiled", 2**31).choices["block"]
    assert not tiled._phases(geom, block).rows  # all phases in the one launch, which pads dy

    def run():
        return convgrad.conv_input_grad(dy32, w32, _shape(x_shape, layout), data_format=layout,
                                        method="tiled", **kw)

    monkeypatch.setattr(_threads, "free_cores", lambda: 1)
    want = run()
    got = want if layout == "channels_first" else x_from_last(want, "channels_first")
    assert_close(got, oracle.input_grad(dy, w, x_shape, **kw), rtol=0, atol=1e-5 * np.abs(got).max())
    monkeypatch.setattr(_threads, "free_cores", lambda: 1 << 10)
    if _threads.for_numba() < 2 or numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one thread")
    for _ in range(40):
        assert run().tobytes() == want.tobytes()


@given(case=strided_cases(), layout=st.sampled_from(["channels_first", "channels_last"]),
       spoil=st.sampled_from([np.inf, -np.inf, np.nan]), data=st.data())
@strategies.budget(20)
@tally.checked_against("oracle", capability="nonfinite")
def test_the_tiled_input_gradient_checks_only_w_for_inf_and_nan(case, layout, spoil, data):
    """The tiled input gradient multiplies w by dy's padding zeros, never dy by taps outside the
    direct sum: an inf or NaN in dy runs the tiled engine itself (its plan checks w alone per
    call) and lands where the loop oracle's direct sum puts it; one in w makes the engine decline
    (its non-finite plan), as before."""
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assume(all(geom.out_spatial))
    rng = np.random.default_rng(12)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    dy.flat[data.draw(st.integers(0, dy.size - 1))] = spoil
    with np.errstate(invalid="ignore", over="ignore"):  # every product summed, as Python floats
        want = oracle.input_grad(dy.astype(object), w.astype(object), x_shape, **kw).astype(np.float64)
    dy32, w32 = dy.astype(np.float32), w.astype(np.float32)
    if layout == "channels_last":
        dy32 = np.ascontiguousarray(x_to_last(dy32, "channels_first"))
        w32 = np.ascontiguousarray(w_to_last(w32, "channels_first"))
    args = {**kw, "data_format": layout, "method": "tiled"}
    assert convgrad.make_plan("input_grad", geom, F32, "tiled", 2**31, layout).checks == (1,)
    got = convgrad.conv_input_grad(dy32, w32, _shape(x_shape, layout), **args)
    if layout == "channels_last":
        got = x_from_last(got, "channels_first")
    np.testing.assert_array_equal(_kinds(got), _kinds(want))
    w32.flat[0] = spoil
    with pytest.raises(ValueError, match="method='tiled' cannot run this input_grad"):
        convgrad.conv_input_grad(dy32, w32, _shape(x_shape, layout), **args)


def _kinds(a):
    """Each value as finite (0), NaN (1), +inf (2) or -inf (3)."""
    return np.select([np.isnan(a), a == np.inf, a == -np.inf], [1, 2, 3], 0)
