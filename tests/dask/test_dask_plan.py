"""The blocks' arithmetic (ConvGeometry's halos and boundaries) against the design study's table,
the per-block memory check (refused before any task runs, with a chunking that fits), and the
graph's size."""

# ruff: noqa: E402  (dask is imported only when the extra is installed)
from __future__ import annotations

import ast
import re

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
from dask.callbacks import Callback

import convgrad
import convgrad.dask as cgd
from convgrad import ConvGeometry


@pytest.mark.parametrize(("n", "padding", "stride", "x_halo", "dy_halo"), [
    # The closed forms measured in the study (research/dask-design.md §2.1), 3-tap kernel.
    (16, "same", 1, (1, 1), (1, 1)),
    (16, "valid", 1, (0, 2), (2, 0)),
    (16, "full", 1, (2, 0), (0, 2)),
    (16, "same", 2, (0, 1), (1, 0)),
])
def test_halos_match_the_study(n, padding, stride, x_halo, dy_halo):
    g = ConvGeometry.for_conv((1, 1, n), (1, 1, 3), padding=padding, stride=stride)
    assert g.halos(0) == (x_halo, dy_halo)


def test_output_chunks_follow_input_chunks_divided_by_the_stride():
    same1 = ConvGeometry.for_conv((1, 1, 200), (1, 1, 3), padding="same")
    assert same1.output_bounds(0, (0, 68, 134, 200)) == (0, 68, 134, 200)
    same2 = ConvGeometry.for_conv((1, 1, 200), (1, 1, 3), padding="same", stride=2)
    assert same2.output_bounds(0, (0, 68, 134, 200)) == (0, 34, 67, 100)  # the study's (34, 33, 33)
    assert same2.input_bounds(0, (0, 34, 67, 100)) == (0, 68, 134, 200)
    # chunks shorter than the halo merge into a neighbour
    assert ConvGeometry.for_conv((1, 1, 20), (1, 1, 7), padding="same").output_bounds(0, (0, 2, 10, 12, 20)) \
        == (0, 10, 20)


def test_an_oversized_chunking_is_refused_before_any_task_runs_with_one_that_fits():
    x = da.ones((2, 4, 64, 64, 64), chunks=(2, 4, 64, 64, 64))
    w = np.ones((8, 4, 3, 3, 3))
    starts = []
    with Callback(start=lambda dsk: starts.append(1)):
        with pytest.raises(ValueError, match=r"dask.conv: a block reading \(2, 4, 64, 64, 64\)") as e:
            cgd.conv(x, w, padding="same", block_bytes=20 * 2**20)
    assert starts == []
    fits = re.search(r"rechunk x to chunks=(\(.*?\))", str(e.value)).group(1)
    y = cgd.conv(x.rechunk(ast.literal_eval(fits)), w, padding="same", block_bytes=20 * 2**20)  # accepted
    assert y.numblocks[2:] != (1, 1, 1)


def test_a_same_3d_conv_costs_about_one_task_per_block():
    # The prototype's map_overlap graph had ~24 tasks per block; here each y block is one task
    # reading the chunks under its windows, beside the input's own chunk tasks.
    x = da.ones((1, 2, 64, 64, 64), chunks=(1, 2, 8, 8, 8))
    y = cgd.conv(x, np.ones((2, 2, 3, 3, 3)), padding="same")
    blocks = 8 ** 3
    assert y.numblocks == (1, 1, 8, 8, 8)
    tasks = len(dict(y.__dask_graph__()))
    assert tasks <= 2 * blocks + 2, tasks
    dw = cgd.conv_filter_grad(x, da.ones(y.shape, chunks=y.chunks), (2, 2, 3, 3, 3), padding="same")
    sums = [k for k in dict(dw.__dask_graph__()) if isinstance(k, tuple) and "-sum" in k[0]]
    assert len(sums) == 64 + 8 + 1  # 512 partials -> 64 -> 8 -> 1 at fan-in 8


def test_the_filter_gradient_tree_is_bitwise_reproducible():
    rng = np.random.default_rng(1)
    x = da.from_array(rng.standard_normal((2, 3, 40, 40)).astype(np.float32), chunks=(1, 3, 9, 13))
    dy = da.from_array(rng.standard_normal((2, 5, 40, 40)).astype(np.float32), chunks=(1, 5, 9, 13))
    runs = [cgd.conv_filter_grad(x, dy, (5, 3, 3, 3), padding="same", split_every=3).compute(scheduler=s)
            for s in ("synchronous", "threads", "synchronous")]
    assert runs[0].dtype == np.float32
    assert all(np.array_equal(r, runs[0]) for r in runs[1:])
    want = convgrad.conv_filter_grad(x.compute().astype(np.float64), dy.compute().astype(np.float64),
                                     (5, 3, 3, 3), padding="same")
    assert np.max(np.abs(runs[0] - want)) / np.max(np.abs(want)) < 2e-6  # float64 accumulation


@pytest.mark.parametrize("x_shape", [(2, 1, 0), (0, 1, 7)])
def test_empty_batches_and_inputs_padded_to_a_window(x_shape):
    rng = np.random.default_rng(2)
    x, w, bias = rng.standard_normal(x_shape), rng.standard_normal((3, 1, 2)), rng.standard_normal(3)
    dy = rng.standard_normal(convgrad.conv(x, w, padding=1).shape)
    xd, dyd = da.from_array(x, chunks=(1, 1, 3)), da.from_array(dy, chunks=(1, 3, 2))
    pad = {"padding": 1}
    pairs = [(cgd.conv(xd, w, bias, **pad), convgrad.conv(x, w, bias, **pad)),
             (cgd.conv_input_grad(dyd, w, x.shape, **pad), convgrad.conv_input_grad(dy, w, x.shape, **pad)),
             (cgd.conv_filter_grad(xd, dyd, w.shape, **pad),
              convgrad.conv_filter_grad(x, dy, w.shape, **pad)),
             (cgd.conv_bias_grad(dyd), convgrad.conv_bias_grad(dy))]
    for got, want in pairs:
        got = got.compute(scheduler="synchronous")
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_bad_values_are_refused_as_the_core_refuses_them():
    x = da.ones((1, 1, 5), chunks=(1, 1, 2))
    with pytest.raises(ValueError, match="unknown method='nope'"):
        cgd.conv(x, np.ones((1, 1, 2)), method="nope")
    with pytest.raises(TypeError, match="w has dtype bool"):
        cgd.conv(x, np.ones((1, 1, 2), bool))
    with pytest.raises(ValueError, match="block_bytes must be a positive int, got 0"):
        cgd.conv(x, np.ones((1, 1, 2)), block_bytes=0)
    with pytest.raises(ValueError, match="split_every must be an int >= 2, got 1"):
        cgd.conv_filter_grad(x, x, (1, 1, 1), split_every=1)
    with pytest.raises(ValueError, match="padding_mode='reflect' needs each pad smaller than the input size"):
        convgrad.conv(x, np.ones((1, 1, 2)), padding=5, padding_mode="reflect")  # routed
    with pytest.raises(ValueError, match="padding_mode='circular' cannot crop"):
        cgd.conv_input_grad(x, np.ones((1, 1, 2)), (1, 1, 6), padding=[(-1, 1)], padding_mode="circular")
    with pytest.raises(ValueError, match=r"bias must have shape \(1,\)"):
        cgd.conv(x, np.ones((1, 1, 2)), np.ones(2))


def _splits(a) -> set:
    """The ``Split`` of each block task of ``a``'s graph (None for a block pinned by name)."""
    from convgrad.dask._blocks import Block

    return {t[1].split for t in dict(a.__dask_graph__()).values()
            if isinstance(t, tuple) and len(t) > 1 and isinstance(t[1], Block)}


def test_a_complex_block_the_planner_splits_runs_the_split_chosen_when_the_graph_was_built():
    # With the split's compiled passes loaded the planner runs these complex64 blocks as three
    # real convs; a worker whose planner would choose otherwise (here jit='never': no compiled
    # kernel is charged as loaded, so 'auto' runs a complex engine, whose bits differ) still
    # runs the split and the real engine the client chose: the same bits.
    from convgrad._plan import default_planner
    from convgrad.engines import warm_up

    warm_up(("float32",))
    rng = np.random.default_rng(5)

    def c64(shape):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)

    x, w, dy = c64((2, 4, 24, 24, 24)), c64((6, 4, 3, 3, 3)), c64((2, 6, 24, 24, 24))
    xd, dyd = da.from_array(x, chunks=(1, 4, 12, 24, 12)), da.from_array(dy, chunks=(1, 6, 12, 24, 12))
    ops = [cgd.conv(xd, w, padding="same"), cgd.conv_input_grad(dyd, w, x.shape, padding="same"),
           cgd.conv_filter_grad(xd, dyd, w.shape, padding="same")]
    for op in ops:
        assert all(s is not None for s in _splits(op)), _splits(op)  # every block pinned to a split
    built = [op.compute(scheduler="synchronous") for op in ops]
    policy = default_planner().jit
    convgrad.set_jit("never")
    try:
        elsewhere = [op.compute(scheduler="synchronous") for op in ops]
        native = convgrad.conv(x, w, padding="same")  # what 'auto' runs under this policy
    finally:
        convgrad.set_jit(policy)
    assert not np.array_equal(native, convgrad.conv(x, w, padding="same"))  # a different choice
    for a, b in zip(built, elsewhere):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    want = convgrad.conv_filter_grad(x, dy, w.shape, padding="same")
    assert np.max(np.abs(built[2] - want)) <= 2e-5 * np.max(np.abs(want))
