"""The strided input gradient's sub-pixel phases written into a channels-first dx in blocks of 16
or 32 channels: with AVX2 (tiles of 6 outputs for every block, ``tile_width``) the two phases of
a stride of 2 along the rows run as one (_kernels/regions.py's _pair_first, AVX2's passes of
6 x 2 vectors summed into its staging block), as the 6 x 64 tiles do; with wider vectors (8-output
tiles) they run region by region. Either way: against the loop oracle, and bit for bit against
the channels-last run region by region, on one thread and two; dx NaN-filled first (an output
left out stays NaN)."""

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
from convgrad.engines import tiled
from convgrad.engines._kernels import regions as columns
from convgrad.engines._kernels._simd import VECTOR_BYTES
from test_avx2_strided import paired_cases


def _poisoned(shape, dtype, zeroed):
    """tiled._new_output with NaN where the phases are to write every sample."""
    return np.zeros(shape, dtype) if zeroed else np.full(shape, np.nan, dtype)


@st.composite
def block_cases(draw):
    """(block, x_shape, w_shape, kwargs): a block of 16 or 32 and test_avx2_strided's paired
    geometries, dx's channels across whole and partial blocks and passes of 2 vectors."""
    return (draw(st.sampled_from([16, 32])), *draw(paired_cases(channels=(3, 8, 16, 20, 32, 40, 70))))


def _grads(geom, block, dy, w):
    """(channels-first dx, the same written channels-last, unpaired), tiles of ``block``, dx NaN
    first where the phases cover it, float32."""
    dyl = np.ascontiguousarray(x_to_last(dy, "channels_first")).astype(np.float32)
    wl = np.ascontiguousarray(w_to_last(w, "channels_first")).astype(np.float32)
    with mock.patch.object(tiled, "_new_output", _poisoned):
        first = x_from_last(tiled._strided_input_grad(geom, block, dyl, wl, first=True), "channels_first")
        last = x_from_last(tiled._strided_input_grad(geom, block, dyl, wl), "channels_first")
    return np.ascontiguousarray(first), np.ascontiguousarray(last)


@given(case=block_cases())
@strategies.budget(30)
@tally.checked_against("oracle")
def test_phases_in_blocks_of_16_and_32_match_the_oracle_and_the_channels_last_bits(case):
    """Where the launch's phases pair up, channels-first dx in blocks of 16 or 32 matches the
    float64 oracle within float32 rounding and equals, bit for bit, dx written channels-last
    region by region: each output is one tile's sum, paired or not."""
    block, x_shape, w_shape, kw = case
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    assume(all(geom.out_spatial))
    phases = tiled._phases(geom, block)
    assume(phases.paired and not phases.rows)
    rng = np.random.default_rng(23)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    want = oracle.input_grad(dy, w, x_shape, **kw)
    first, last = _grads(geom, block, dy, w)
    assert_close(first, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()), dtype=np.float32)
    assert first.tobytes() == last.tobytes()


@pytest.mark.parametrize("block", [16, 32])
@pytest.mark.parametrize("shape", [(2, 32, 8, 30), (1, 20, 2, 12), (1, 40, 4, 50)])
def test_the_transposed_case_in_blocks_on_one_thread_and_two(block, shape):
    """The bench's transposed_k4_s2 geometry, smaller: 4x4 stride 2 pad 1 (four phases of 2 x 2
    taps, two pairs), planes of whole staging runs and partial ones, of one tile, channel blocks
    whole and partial: dx the same bits on one thread and two, equal to the channels-last run's
    and to the oracle. With AVX2 the launch pairs these phases (tiles of 6 outputs)."""
    x_shape, w_shape, kw = shape, (24, shape[1], 4, 4), {"stride": 2, "padding": 1}
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    phases = tiled._phases(geom, block)
    assert phases.paired and len(phases.table) == 4 and not phases.rows
    assert (columns.tile_width(block) == 6) == (VECTOR_BYTES == 32)  # AVX2: the kernel pairs them
    rng = np.random.default_rng(7)
    w, dy = rng.standard_normal(w_shape), rng.standard_normal(geom.y_shape())
    one, two = at_thread_counts(lambda: _grads(geom, block, dy, w))
    assert one[0].tobytes() == two[0].tobytes() == one[1].tobytes()
    want = oracle.input_grad(dy, w, x_shape, **kw)
    assert_close(one[0], want, rtol=0, atol=1e-5 * np.abs(want).max(), dtype=np.float32)
