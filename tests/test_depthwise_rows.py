"""The depthwise engine's 3x3 row kernels against the loop oracle, over random geometries.

The channels-last forward sums four neighbouring outputs of a row at once where the column
stride and dilation are 1 (the six columns of x they share loaded once), one output at a time
after the last group of four and for other strides; the rows whose windows leave x, and the
columns at both ends, go tap by tap. Widths, pads, strides, dilations and channel counts are
drawn so that every split occurs: rows of fewer than four interior outputs, a ragged last group,
negative pads (cropping), channels not a multiple of a vector.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import strategies
import tally
from checks import assert_depthwise_three_ops


@st.composite
def depthwise_cases(draw):
    """(x_shape, w_shape, kwargs) of a channels-first 2-D depthwise conv: half of them 3x3 with
    one output per channel and unit column stride and dilation (the four-output groups), the
    others any kernel, multiplier, stride and dilation."""
    c = draw(st.integers(1, 20))
    if draw(st.booleans()):
        mult, kernel = 1, (3, 3)
        stride, dilation = (draw(st.integers(1, 2)), 1), (draw(st.integers(1, 2)), 1)
    else:
        mult = draw(st.sampled_from((1, 2)))
        kernel = tuple(draw(st.sampled_from((3, 2, 5))) for _ in range(2))
        stride = tuple(draw(st.integers(1, 2)) for _ in range(2))
        dilation = tuple(draw(st.integers(1, 2)) for _ in range(2))
    pads = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(2))
    spatial = []
    for k, d, (lo, hi) in zip(kernel, dilation, pads):
        reach = (k - 1) * d + 1
        spatial.append(draw(st.integers(max(1, reach - lo - hi, -lo + 1, -hi + 1), reach + 9)))
    n = draw(st.integers(1, 2))
    return (n, c, *spatial), (c * mult, 1, *kernel), {"stride": stride, "dilation": dilation,
                                                       "padding": pads, "groups": c}


@given(case=depthwise_cases(), data_format=st.sampled_from(("channels_last", "channels_first")),
       dtype=st.sampled_from((np.float32, np.float64)), seed=st.integers(0, 2**31))
@strategies.budget(40)
@tally.checked_against("oracle")
def test_depthwise_three_ops_match_the_oracle(case, data_format, dtype, seed):
    assert_depthwise_three_ops(case, data_format, dtype, seed)
