"""conv against the oracle: every sample case, every engine, random geometries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle as O
from checks import assert_close, check_each_method
from samples import sample_cases
from strategies import budget, conv_cases, seeds
from tally import checked_against

CASES = list(sample_cases())


def _want(case, x, w, bias=None):
    fmt = case.data_format
    y = O.conv(O.x_to_first(x, fmt), O.w_to_first(w, fmt), bias, **case.geometry)
    return O.x_from_first(y, fmt)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sample_cases_match_oracle_on_every_engine(case):
    x, w, _ = case.arrays(seed=1)
    check_each_method(convgrad.conv, _want(case, x, w), x, w, **case.kwargs)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bias_is_added_per_output_channel(case):
    x, w, _ = case.arrays(seed=2)
    o = w.shape[0] if case.data_format == "channels_first" else w.shape[-1]
    bias = np.random.default_rng(0).standard_normal(o)
    assert_close(convgrad.conv(x, w, bias, **case.kwargs), _want(case, x, w, bias), dtype=np.float64)


@budget(500)
@given(conv_cases(), seeds, st.booleans())
@checked_against("oracle")
def test_random_geometries_match_oracle(case, seed, with_bias):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    o = w.shape[0] if case.data_format == "channels_first" else w.shape[-1]
    bias = rng.standard_normal(o) if with_bias else None
    check_each_method(convgrad.conv, _want(case, x, w, bias), x, w, bias, **case.kwargs)


def test_docstring_example():
    got = convgrad.conv(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 3)), padding=1)
    assert_close(got, [[[1.0, 3.0, 6.0, 9.0, 7.0]]])


def test_channels_last_is_the_same_conv_in_other_axes():
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    kw = {"stride": (2, 1), "padding": "same", "dilation": (1, 2)}
    first = convgrad.conv(x, w, **kw)
    last = convgrad.conv(np.moveaxis(x, 1, -1), w.transpose(2, 3, 1, 0), data_format="channels_last", **kw)
    np.testing.assert_allclose(np.moveaxis(last, -1, 1), first, rtol=1e-12, atol=1e-12)
    upper = convgrad.conv(np.moveaxis(x, 1, -1), w.transpose(2, 3, 1, 0), data_format="CHANNELS_LAST", **kw)
    np.testing.assert_array_equal(upper, last)


@pytest.mark.parametrize(
    "padding, n, k, s, want",
    [
        ("same", 7, 3, 2, (1, 1)),
        ("same", 8, 3, 2, (0, 1)),  # odd total: the extra sample at the end (TF, ONNX SAME_UPPER)
        ("same_lower", 8, 3, 2, (1, 0)),
        ("same", 5, 4, 1, (1, 2)),
        ("Same_Lower", 5, 4, 1, (2, 1)),
        ("full", 5, 4, 1, (3, 3)),
        ("VALID", 5, 4, 1, (0, 0)),
    ],
)
def test_string_padding_resolves_like_tf_and_onnx(padding, n, k, s, want):
    geom = convgrad.ConvGeometry.for_conv((1, 1, n), (1, 1, k), stride=s, padding=padding)
    assert geom.padding == (want,)
    x = np.random.default_rng(0).standard_normal((1, 1, n))
    w = np.random.default_rng(1).standard_normal((1, 1, k))
    assert_close(convgrad.conv(x, w, stride=s, padding=padding),
                 O.conv(x, w, stride=s, padding=[want]))


@pytest.mark.parametrize("s", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 5, 6, 7, 8])
def test_same_gives_ceil_n_over_s_outputs(n, s):
    y = convgrad.conv(np.ones((1, 1, n)), np.ones((1, 1, 3)), stride=s, padding="same")
    assert y.shape == (1, 1, -(-n // s))


def test_zero_size_batch_gives_empty_result():
    y = convgrad.conv(np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3)), padding=1)
    assert y.shape == (0, 3, 5, 5) and y.dtype == np.float64
    y = convgrad.conv(np.zeros((0, 5, 5, 2)), np.ones((3, 3, 2, 3)), data_format="channels_last")
    assert y.shape == (0, 3, 3, 3)


def test_zero_output_channels():
    y = convgrad.conv(np.ones((2, 2, 5)), np.ones((0, 2, 3)))
    assert y.shape == (2, 0, 3)


@pytest.mark.parametrize("stride, padding", [(2, [(2, -3)]), (7, 2), (5, [(2, 0)]), (1, [(-4, 2)])])
def test_windows_that_read_only_leading_padding(stride, padding):
    """n = 3 and one output window that reads no sample of x: y is zero. Pads (2, -3) keep
    [0, 0] (the crop reaches into the leading pad), (-4, 2) keep [0]; padding=2 with stride 7 has
    one window in [0, 7)."""
    x = np.arange(1.0, 4.0).reshape(1, 1, 3)
    w = np.ones((1, 1, 1))
    assert_close(O.conv(x, w, stride=stride, padding=padding), [[[0.0]]])
    check_each_method(convgrad.conv, [[[0.0]]], x, w, stride=stride, padding=padding)
