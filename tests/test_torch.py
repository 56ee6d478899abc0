"""PyTorch as a second, independent oracle: F.conv*d and autograd, torch.nn.grad.conv*d_input /
_weight, F.conv_transpose*d, on random geometries (float64, CPU)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle as O
from checks import assert_close
from strategies import budget, conv_cases, seeds, transpose_cases
from tally import checked_against

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
GRAD_INPUT = {1: torch.nn.grad.conv1d_input, 2: torch.nn.grad.conv2d_input, 3: torch.nn.grad.conv3d_input}
GRAD_WEIGHT = {1: torch.nn.grad.conv1d_weight, 2: torch.nn.grad.conv2d_weight,
               3: torch.nn.grad.conv3d_weight}


def tensor(a, grad=False):
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.float64, requires_grad=grad)


def torch_pads(pairs):
    """F.pad's order: last dim first, (before, after) each; negative values crop."""
    return [p for lo_hi in reversed(pairs) for p in lo_hi]


def pad_then_crop(t, pairs):
    """The positive pads first, then the negative ones: F.pad crops before it pads, and refuses a
    crop longer than the unpadded axis (1 sample padded by 2 before and cropped by 2 after)."""
    grow = F.pad(t, torch_pads([(max(lo, 0), max(hi, 0)) for lo, hi in pairs]))
    return F.pad(grow, torch_pads([(min(lo, 0), min(hi, 0)) for lo, hi in pairs]))


@budget(80)
@given(conv_cases(), seeds, st.booleans())
@checked_against("torch")
def test_forward_and_autograd_match_torch(case, seed, with_bias):
    fmt, geo = case.data_format, case.geometry
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    xf, wf = O.x_to_first(x, fmt), O.w_to_first(w, fmt)
    r = wf.ndim - 2
    bias = rng.standard_normal(wf.shape[0]) if with_bias else None
    stride, dilation = O.per_dim(geo["stride"], r), O.per_dim(geo["dilation"], r)
    pairs = O.resolve_padding(geo["padding"], xf.shape[2:], wf.shape[2:], stride, dilation)

    tx, tw = tensor(xf, True), tensor(wf, True)
    tb = tensor(bias, True) if with_bias else None
    ty = CONV[r](pad_then_crop(tx, pairs), tw, tb, stride=stride, dilation=dilation, groups=geo["groups"])
    y, vjp = convgrad.conv_vjp(x, w, bias, **case.kwargs)
    assert_close(O.x_to_first(y, fmt), ty.detach().numpy())

    dyf = rng.standard_normal(tuple(ty.shape))
    ty.backward(tensor(dyf))
    dx, dw, db = vjp(O.x_from_first(dyf, fmt))
    assert_close(O.x_to_first(dx, fmt), tx.grad.numpy())
    assert_close(O.w_to_first(dw, fmt), tw.grad.numpy())
    if with_bias:
        assert_close(db, tb.grad.numpy())


@budget(40)
@given(conv_cases(kinds=("int", "per_dim", "valid")), seeds)
@checked_against("torch")
def test_gradients_match_torch_nn_grad(case, seed):
    """torch.nn.grad takes symmetric non-negative padding, as convgrad's int and per-dim ints."""
    fmt, geo = case.data_format, case.geometry
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    xf, wf = O.x_to_first(x, fmt), O.w_to_first(w, fmt)
    r = wf.ndim - 2
    stride, dilation = O.per_dim(geo["stride"], r), O.per_dim(geo["dilation"], r)
    pairs = O.resolve_padding(geo["padding"], xf.shape[2:], wf.shape[2:], stride, dilation)
    pads = tuple(lo for lo, _ in pairs)
    dyf = rng.standard_normal(O.conv(xf, wf, **geo).shape)
    dy = O.x_from_first(dyf, fmt)
    kw = {"stride": stride, "padding": pads, "dilation": dilation, "groups": geo["groups"]}
    want_dx = GRAD_INPUT[r](xf.shape, tensor(wf), tensor(dyf), **kw).numpy()
    want_dw = GRAD_WEIGHT[r](tensor(xf), wf.shape, tensor(dyf), **kw).numpy()
    assert_close(O.x_to_first(convgrad.conv_input_grad(dy, w, x.shape, **case.kwargs), fmt), want_dx)
    assert_close(O.w_to_first(convgrad.conv_filter_grad(x, dy, w.shape, **case.kwargs), fmt), want_dw)


def _torch_transpose_args(case):
    """PyTorch's (padding, output_padding) for a case with symmetric non-negative pads: the
    output_padding that reaches the case's output size."""
    kw = case.kwargs
    r = len(case.out_spatial)
    stride, dilation = O.per_dim(kw["stride"], r), O.per_dim(kw["dilation"], r)
    first = O.x_to_first(np.empty(case.x_shape), case.data_format).shape
    kernel = O.w_to_first(np.empty(case.w_shape), case.data_format).shape[2:]
    pads = tuple(lo for lo, _ in case.pairs)
    base = O.transpose_out_spatial(first[2:], kernel, stride, [(p, p) for p in pads], dilation)
    op = tuple(o - b for o, b in zip(case.out_spatial, base))
    return {"stride": stride, "padding": pads, "output_padding": op, "dilation": dilation,
            "groups": kw["groups"]}


@budget(50)
@given(transpose_cases(kinds=("int", "per_dim", "valid")), seeds, st.booleans())
@checked_against("torch")
def test_conv_transpose_and_its_vjp_match_torch(case, seed, with_bias):
    fmt = case.data_format
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    xf, wf = O.x_to_first(x, fmt), O.w_to_first(w, fmt)
    r = wf.ndim - 2
    bias = rng.standard_normal(case.out_channels) if with_bias else None
    tx, tw = tensor(xf, True), tensor(wf, True)
    tb = tensor(bias, True) if with_bias else None
    ty = TRANSPOSE[r](tx, tw, tb, **_torch_transpose_args(case))
    y, vjp = convgrad.conv_transpose_vjp(x, w, bias, **case.kwargs)
    assert_close(O.x_to_first(y, fmt), ty.detach().numpy())

    dyf = rng.standard_normal(tuple(ty.shape))
    ty.backward(tensor(dyf))
    dx, dw, db = vjp(O.x_from_first(dyf, fmt))
    assert_close(O.x_to_first(dx, fmt), tx.grad.numpy())
    assert_close(O.w_to_first(dw, fmt), tw.grad.numpy())
    if with_bias:
        assert_close(db, tb.grad.numpy())


def test_output_padding_adds_computed_values_not_zeros():
    """PyTorch's output_padding extends the output with real sums (pytorch#8816)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 1, 3)), rng.standard_normal((1, 1, 3))
    want = F.conv_transpose1d(tensor(x), tensor(w), stride=2, padding=1, output_padding=1).numpy()
    got = convgrad.conv_transpose(x, w, stride=2, padding=1, output_padding=1)
    assert_close(got, want)
    assert got[0, 0, -1] != 0
