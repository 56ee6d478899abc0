"""The strided input gradient's sub-pixel phases written into a channels-first dx: the two phases
of a stride of 2 along the rows run as one (_kernels/regions.py's _pair_first, 6 x 64 tiles
summed into one staging block and stored as whole runs of dx's rows), the phases of equal item
counts taking turns in the launch. Against the loop oracle, bit for bit against the unpaired
channels-last run, on one thread and two; dx NaN-filled first (an output left out stays NaN)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import convgrad
import oracle
import strategies
import tally
from checks import assert_close, at_thread_counts
from convgrad._layout import w_to_last, x_from_last, x_to_last
from convgrad.engines import _regions, tiled
from convgrad.engines._kernels import regions as columns


def _poisoned(shape, dtype, zeroed):
    """tiled._new_output with NaN where the phases are to write every sample."""
    return np.zeros(shape, dtype) if zeroed else np.full(shape, np.nan, dtype)


@st.composite
def paired_cases(draw, channels=(8, 64, 70, 128, 136)):
    """(x_shape, w_shape, kwargs) channels-first: stride 2 along the rows (1-3 on the other
    axes), kernels 1-4 (so phases of 2 and 1 taps, or none), dilation 1-2 on the other axes,
    pads -1 to 2, planes from one tile up, dx's channels from ``channels`` (by default across
    whole and partial blocks of 64)."""
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 2 if rank == 3 else 4)) for _ in range(rank))
    stride = (*(draw(st.integers(1, 3)) for _ in range(rank - 1)), 2)
    dilation = (*(draw(st.integers(1, 2)) for _ in range(rank - 1)), 1)
    pads = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(rank))
    spatial = []
    for axis, (k, d, (lo, hi)) in enumerate(zip(kernel, dilation, pads)):
        least = max(1, (k - 1) * d + 1 - lo - hi)
        last = axis == rank - 1  # along the rows: planes of whole staging runs too
        spatial.append(least + draw(st.integers(10 if last else 0, 40 if last else 6)))
    c = draw(st.sampled_from(channels))
    o = draw(st.integers(1, 12))
    return (draw(st.integers(1, 2)), c, *spatial), (o, c, *kernel), {"stride": stride, "padding": pads,
                                                                    "dilation": dilation}


def _grads(geom, dy, w):
    """(channels-first dx with the phases paired, the same written channels-last, unpaired), dx
    NaN first where the phases cover it, float32, 6 x 64 tiles."""
    dyl = np.ascontiguousarray(x_to_last(dy, "channels_first")).astype(np.float32)
    wl = np.ascontiguousarray(w_to_last(w, "channels_first")).astype(np.float32)
    with mock.patch.object(tiled, "_new_output", _poisoned):
        first = x_from_last(tiled._strided_input_grad(geom, 64, dyl, wl, first=True), "channels_first")
        last = x_from_last(tiled._strided_input_grad(geom, 64, dyl, wl), "channels_first")
    return np.ascontiguousarray(first), np.ascontiguousarray(last)


@given(case=paired_cases())
@strategies.budget(30)
@tally.checked_against("oracle")
def test_paired_phases_match_the_oracle_and_the_channels_last_bits(case):
    """Where the launch pairs the phases (every phase of the launch has its partner along the
    rows), channels-first dx matches the float64 oracle within float32 rounding and equals, bit
    for bit, dx written channels-last region by region: each output is one tile's sum."""
    x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assume(all(geom.out_spatial))
    phases = tiled._phases(geom, 64)
    assume(phases.paired and not phases.rows)
    rng = np.random.default_rng(17)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    want = oracle.input_grad(dy, w, x_shape, **kw)
    first, last = _grads(geom, dy, w)
    assert_close(first, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()), dtype=np.float32)
    assert first.tobytes() == last.tobytes()


@pytest.mark.parametrize("shape", [(2, 136, 9, 29), (1, 64, 2, 12), (1, 70, 2, 50)])
def test_paired_phases_on_one_thread_and_two(shape):
    """3x3 stride 2 (phases of 2 x 2, 2 x 1, 1 x 2 and 1 x 1 taps, two pairs), planes with whole
    staging runs and partial ones, of one tile, a channel block partial: dx the same bits on one
    thread and two, equal to the channels-last run's and to the oracle."""
    x_shape, w_shape, kw = shape, (40, shape[1], 3, 3), {"stride": 2, "padding": ((1, 0), (1, 0))}
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    phases = tiled._phases(geom, 64)
    assert phases.paired and len(phases.table) == 4
    rng = np.random.default_rng(5)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    one, two = at_thread_counts(lambda: _grads(geom, dy, w))
    assert one[0].tobytes() == two[0].tobytes() == one[1].tobytes()
    want = oracle.input_grad(dy, w, x_shape, **kw)
    assert_close(one[0], want, rtol=0, atol=1e-5 * np.abs(want).max(), dtype=np.float32)


def test_the_engine_pairs_the_phases_of_a_channels_first_dx_only():
    """The bench's strided_3x3_s2 input gradient through convgrad.conv_input_grad: its launch
    gets the phases paired up (the kernel's own test, _pairs) and a channels-first dx (6 x 64
    tiles), and for a channels-last dx the same table: the kernel pairs them for the first only."""
    x_shape, w_shape, kw = (1, 128, 14, 14), (128, 128, 3, 3), {"stride": 2, "padding": 1}
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assert convgrad.make_plan("input_grad", geom, np.dtype(np.float32), "tiled", 2**31).choices["block"] == 64
    seen, kernel = [], tiled._kernels.regions_forward

    class Recorded:
        def __getattr__(self, name):
            return getattr(kernel, name)

        def __call__(self, *args):
            seen.append((args[-1], columns._pairs(args[5])))  # (channels-first, pairs up)
            return kernel(*args)

    rng = np.random.default_rng(3)
    dy = rng.standard_normal(geom.y_shape()).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    with mock.patch.object(tiled._kernels, "regions_forward", Recorded()):
        got = convgrad.conv_input_grad(dy, w, x_shape, method="tiled", **kw)
        convgrad.conv_input_grad(np.ascontiguousarray(x_to_last(dy, "channels_first")),
                                 np.ascontiguousarray(w_to_last(w, "channels_first")), (1, 14, 14, 128),
                                 data_format="channels_last", method="tiled", **kw)
    assert seen == [(True, True), (False, True)]
    want = oracle.input_grad(dy.astype(np.float64), w.astype(np.float64), x_shape, **kw)
    assert_close(got, want, rtol=0, atol=1e-5 * np.abs(want).max(), dtype=np.float32)


def test_paired_orders_each_pair_along_the_rows_and_refuses_others():
    """_regions.paired: a pair given second-phase first comes back swapped; a stride of 3, outputs
    that differ, an odd count of regions or a plane under one tile are not paired."""
    def row(at_w, count=(4, 5), step=2):
        return _regions.table_row(1, 0, (9, 12), (0, 0), (2, 2), 0, (0, at_w), (2, step), count, (1, 1),
                                  (1, 1))

    table = np.array([row(1), row(0), row(0), row(1)], np.int64)
    got = _regions.paired(table)
    assert got is not None and got[:, columns.YA + 2].tolist() == [0, 1, 0, 1]
    assert columns._pairs(got) and not columns._pairs(table)  # the kernel's test agrees
    assert _regions.paired(np.array([row(0, step=3), row(1, step=3)], np.int64)) is None
    assert _regions.paired(np.array([row(0), row(1, count=(4, 4))], np.int64)) is None
    assert _regions.paired(np.array([row(0), row(1), row(0)], np.int64)) is None
    assert _regions.paired(np.array([row(0, count=(1, 5)), row(1, count=(1, 5))], np.int64)) is None
    assert _regions.paired(np.array([row(0), row(2)], np.int64)) is None
    assert not columns._pairs(np.array([row(0, step=3), row(1, step=3)], np.int64))
    assert not columns._pairs(np.array([row(0, count=(1, 5)), row(1, count=(1, 5))], np.int64))


def _rows_read(geom, table, copies, width, csize):
    """Per work item of the one region's table row (regions_forward's split: planes of the output
    in tiles of ``width``, _items' items), the last chunk of the copied window's rows its outputs'
    windows read, from the geometry output by output (the loop the kernel's formula replaces)."""
    row = table[0]
    od, oh, ow = row[columns.OUT:columns.OUT + 3]
    per, chunks = columns._items(oh, ow, width)
    wd, wh = copies[0, columns.COPY_SIZE], copies[0, columns.COPY_SIZE + 1]
    plane, tiles = oh * ow, -(-(oh * ow) // width)
    last = []
    for n in range(geom.batch):
        for i in range(od):
            for c in range(chunks):
                outs = {min(u * width, plane - width) + e for u in range(c * per, min((c + 1) * per, tiles))
                        for e in range(width)} if plane >= width else set(range(plane))
                rows = [(n * wd + row[columns.XA] + i * row[columns.S] + a * row[columns.DIL]) * wh
                        + row[columns.XA + 1] + p // ow * row[columns.S + 1] + b * row[columns.DIL + 1]
                        for p in outs for a in range(row[columns.KD]) for b in range(row[columns.KH])]
                last.append(max(rows) // csize)
    return last


@given(case=paired_cases(), data=st.data())
@strategies.budget(30)
def test_the_fused_order_copies_each_chunk_of_rows_before_the_tiles_that_read_it(case, data):
    """A strided forward that pads x whole in its launch (one region, one window): _fused_order
    lists every chunk of copied rows and of tiles once, each chunk of rows before the first chunk
    of tiles whose outputs' windows read one of its rows (from the geometry, output by output),
    and gives each chunk of tiles the last chunk of rows it reads (at least that far)."""
    x_shape, w_shape, kw = case
    out_channels = data.draw(st.sampled_from([16, 64, 70]))
    geom = convgrad.ConvGeometry.for_conv(x_shape, (out_channels, *w_shape[1:]), **kw)
    assume(all(geom.out_spatial))
    block = convgrad.make_plan("forward", geom, np.dtype(np.float32), "tiled", 2**31).choices["block"]
    assume(block != tiled.DOT)
    table, copies, _ = _regions._forward_table(geom, False)
    width = 8 if 16 <= block <= 32 else 6
    per_item = data.draw(st.sampled_from([1, -(-geom.out_channels // block)]))  # filter-major or not
    n = geom.batch
    rows = n * copies[0, columns.COPY_SIZE] * copies[0, columns.COPY_SIZE + 1]
    chunks = columns._items(*table[0, columns.OUT + 1:columns.OUT + 3], width)[1]
    tasks = n * table[0, columns.OUT] * chunks * (-(-geom.out_channels // block) // per_item)
    csize, size = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    ccount = -(-rows // csize)
    order, need = columns._fused_order(n, copies, table, csize, ccount, tasks, size, width, True)
    assert sorted(order.tolist()) == sorted([-j - 1 for j in range(ccount)] + list(range(-(-tasks // size))))
    reads = _rows_read(geom, table, copies, width, csize)
    items = len(reads)
    seen = 0  # chunks of rows listed so far (in order)
    for unit in order:
        if unit < 0:
            assert -unit - 1 == seen
            seen += 1
            continue
        wanted = max(reads[q % items] for q in range(unit * size, min(tasks, (unit + 1) * size)))
        assert need[unit] >= wanted and seen > need[unit]


@pytest.mark.parametrize("layout, x_shape, w_shape, kw", [  # (channels-last: borders over a quarter of x)
    ("channels_first", (3, 40, 23, 30), (70, 40, 3, 3), {"stride": 2, "padding": ((1, 0), (1, 0))}),
    ("channels_first", (2, 16, 7, 9, 11), (64, 16, 2, 3, 2),
     {"stride": (1, 2, 2), "padding": 1, "dilation": (2, 1, 1)}),
    ("channels_last", (2, 16, 7, 9, 11), (64, 16, 2, 3, 2),
     {"stride": (1, 2, 2), "padding": 1, "dilation": (2, 1, 1)}),
    ("channels_first", (1, 24, 700), (16, 24, 4), {"stride": 3, "padding": 2}),
    # rows of 3 MB, one per chunk of copies: a thread that claims the first tiles needs the third
    # row while the other copies it
    ("channels_first", (1, 256, 6, 3000), (16, 256, 3, 1), {"stride": 2, "padding": ((1, 0), (0, 0))}),
])
def test_the_tiles_of_a_fused_launch_read_only_copied_rows(monkeypatch, layout, x_shape, w_shape, kw):
    """A strided forward whose launch pads (channels-first: transposes) x whole, the copies and the
    tiles taking turns, a chunk of tiles copying the rows it reads that the other thread has not
    finished: the padded copy starts as NaN on every call, so a tile that reads a row before it
    is copied gives NaN; on two threads forced, every call gives bitwise the one-thread result,
    which matches the loop oracle."""
    numba = pytest.importorskip("numba")
    from convgrad.engines import _threads

    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    if layout == "channels_last":
        x32 = np.ascontiguousarray(x_to_last(x32, "channels_first"))
        w32 = np.ascontiguousarray(w_to_last(w32, "channels_first"))
    block = convgrad.make_plan("forward", geom, np.dtype(np.float32), "tiled", 2**31).choices["block"]
    xl = x32 if layout == "channels_last" else x_to_last(x32, "channels_first")
    first = layout == "channels_first"
    assert tiled._padded_in_launch(geom, block, xl, first)
    assert not (tiled._in_regions(geom, block, xl, first) and not tiled._streams(geom, block, np.float32))
    monkeypatch.setattr(_regions, "scratch", lambda name, shape, dtype: np.full(shape, np.nan, dtype))

    def run():
        return convgrad.conv(x32, w32, method="tiled", data_format=layout, **kw)

    monkeypatch.setattr(_threads, "free_cores", lambda: 1)
    want = run()
    got = want if first else x_from_last(want, "channels_first")
    expect = oracle.conv(x, w, **kw)
    assert_close(got, expect, rtol=0, atol=1e-5 * np.abs(expect).max(), dtype=np.float32)
    monkeypatch.setattr(_threads, "free_cores", lambda: 1 << 10)
    if _threads.for_numba() < 2 or numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one thread")
    for _ in range(40):
        assert run().tobytes() == want.tobytes()
