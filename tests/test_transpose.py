"""conv_transpose against the oracle's scatter loop, and against conv_input_grad."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import convgrad
import oracle as O
from checks import assert_close, check_each_method
from samples import sample_cases
from strategies import budget, conv_cases, seeds, transpose_cases
from tally import checked_against


@budget(400)
@given(transpose_cases(), seeds)
@checked_against("oracle")
def test_random_geometries_match_scatter_oracle(case, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    bias = rng.standard_normal(case.out_channels) if seed % 2 else None
    check_each_method(convgrad.conv_transpose, case.oracle(x, w, bias), x, w, bias,
                      **case.kwargs)


@budget(60)
@given(conv_cases(), seeds)
def test_input_grad_equals_transpose_with_output_shape_exactly(case, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    dy = rng.standard_normal(convgrad.conv(x, w, **case.kwargs).shape)
    for method in ("auto", *convgrad.engine_names()):
        try:
            dx = convgrad.conv_input_grad(dy, w, x.shape, method=method, **case.kwargs)
        except ValueError as e:
            assert f"method={method!r} cannot run" in str(e)
            continue
        got = convgrad.conv_transpose(dy, w, output_shape=x.shape, method=method, **case.kwargs)
        np.testing.assert_array_equal(got, dx, err_msg=f"method={method!r}")


@pytest.mark.parametrize("case", list(sample_cases()), ids=str)
def test_sample_cases_input_grad_is_transpose(case):
    x, w, dy = case.arrays(seed=5)
    dx = convgrad.conv_input_grad(dy, w, x.shape, **case.kwargs)
    np.testing.assert_array_equal(convgrad.conv_transpose(dy, w, output_shape=x.shape, **case.kwargs), dx)
    fmt = case.data_format
    spatial = x.shape[2:] if fmt == "channels_first" else x.shape[1:-1]
    np.testing.assert_array_equal(convgrad.conv_transpose(dy, w, output_shape=spatial, **case.kwargs), dx)


def test_docstring_example():
    got = convgrad.conv_transpose(np.ones((1, 1, 2)), np.ones((1, 1, 3)), stride=2)
    assert_close(got, [[[1.0, 1.0, 2.0, 1.0, 1.0]]])


@pytest.mark.parametrize(
    "n, k, s, d, p, op, want",
    [
        (4, 3, 2, 1, 1, 1, 8),  # (4-1)*2 - 2 + 3 + 1
        (4, 3, 2, 1, 1, 0, 7),
        (3, 2, 3, 2, 0, 2, 11),  # (3-1)*3 + (2-1)*2 + 1 + 2
        (5, 3, 1, 2, 2, 1, 6),  # output_padding may reach max(stride, dilation) - 1 = 1
        (2, 1, 1, 1, 0, 0, 2),
    ],
)
def test_output_size_follows_pytorch(n, k, s, d, p, op, want):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, n)), rng.standard_normal((3, 2, k))
    y = convgrad.conv_transpose(x, w, stride=s, padding=p, output_padding=op, dilation=d)
    assert y.shape == (2, 2, want)
    assert_close(y, O.conv_transpose(x, w, s, p, d, 1, (want,)))


@pytest.mark.parametrize("n, s", [(3, 2), (4, 2), (5, 3)])
@pytest.mark.parametrize("padding", ["same", "same_lower"])
def test_same_gives_n_times_stride(n, s, padding):
    rng = np.random.default_rng(n)
    x, w = rng.standard_normal((1, 2, n, n)), rng.standard_normal((2, 3, 3, 4))
    y = convgrad.conv_transpose(x, w, stride=s, padding=padding)
    assert y.shape == (1, 3, n * s, n * s)
    before = [lo for lo, _ in O.resolve_padding(padding, (n * s,) * 2, (3, 4), s, 1)]
    assert_close(y, O.conv_transpose(x, w, s, before, 1, 1, (n * s, n * s)))


def test_tf_same_k3_s2_even_output_is_not_a_pytorch_recipe():
    """TF conv2d_transpose(SAME, k=3, s=2) to an even size pads (0, 1): PyTorch's usual
    padding=1, output_padding=1 gives the same shape shifted by one sample."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((1, 1, 4)), rng.standard_normal((1, 1, 3))
    tf_like = convgrad.conv_transpose(x, w, stride=2, padding="same", output_shape=(8,))
    assert_close(tf_like, O.conv_transpose(x, w, 2, 0, 1, 1, (8,)))
    torch_recipe = convgrad.conv_transpose(x, w, stride=2, padding=1, output_padding=1)
    assert torch_recipe.shape == tf_like.shape
    assert not np.allclose(torch_recipe, tf_like)
    assert_close(torch_recipe[..., :-1], tf_like[..., 1:])


def test_channels_last_filter_is_tf_layout():
    """channels-last w is (*K, C_out/groups, C_in), as tf.nn.conv2d_transpose's filters."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3, 4))  # (N, C_in, H, W)
    w = rng.standard_normal((4, 3, 2, 3))  # (C_in, C_out/groups, kH, kW), groups = 2
    first = convgrad.conv_transpose(x, w, stride=2, groups=2, padding="same")
    last = convgrad.conv_transpose(np.moveaxis(x, 1, -1), w.transpose(2, 3, 1, 0), stride=2,
                                   groups=2, padding="same", data_format="channels_last")
    assert last.shape == (2, 6, 8, 6)
    assert_close(np.moveaxis(last, -1, 1), first)


def test_empty_batch():
    y = convgrad.conv_transpose(np.zeros((0, 2, 3)), np.ones((2, 4, 3)), stride=2)
    assert y.shape == (0, 4, 7)


@pytest.mark.parametrize("n, pads, s", [(1, (2, -1), 2), (2, (2, -2), 2), (1, (3, -1), 3), (1, (2, 2), 5)])
def test_output_shape_reachable_with_pad_then_crop(n, pads, s):
    """The forward conv of n samples has one output window, which reads only the leading
    padding (pads (2, -1) on n = 1, or padding 2 with stride 5): its transpose to that size is
    zero, as the input gradient is."""
    w = np.ones((1, 1, 1))
    dy = np.ones((1, 1, 1))
    dx = convgrad.conv_input_grad(dy, w, (1, 1, n), stride=s, padding=[pads])
    assert_close(dx, np.zeros((1, 1, n)))
    got = convgrad.conv_transpose(dy, w, stride=s, padding=[pads], output_shape=(n,))
    assert_close(got, dx)
