"""convgrad.torch.nn against PyTorch itself: forward values, ``.vjp`` against torch.autograd
(double backward for the ``nn.grad`` functions), and the inputs PyTorch refuses.

Tolerance: float64 throughout; 1e-9 relative to the largest magnitude (observed ~1e-15).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch as T
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from convgrad import torch
from strategies import budget
from tally import checked_against

F = torch.nn.functional
RTOL = 1e-9
rng = np.random.default_rng(1)


def arr(shape):
    return rng.standard_normal(shape)


def close(a, b, what=""):
    b = b.detach().numpy() if isinstance(b, T.Tensor) else np.asarray(b)
    a = np.asarray(a)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    scale = max(1.0, float(np.abs(b).max(initial=0)))
    np.testing.assert_allclose(a, b, rtol=0, atol=RTOL * scale, err_msg=what)


def leaf(a):
    return None if a is None else T.tensor(a, requires_grad=True)


def spell(draw, values):
    """An int (when all equal), a one-element list (PyTorch expands it), a tuple or a list."""
    options = [tuple(values), list(values)]
    if len(set(values)) == 1:
        options += [values[0], [values[0]]]
    return draw(st.sampled_from(options))


@st.composite
def conv_case(draw, transposed=False):
    rank = draw(st.integers(1, 3))
    k = [draw(st.integers(1, 3)) for _ in range(rank)]
    s = [draw(st.integers(1, 3)) for _ in range(rank)]
    d = [draw(st.integers(1, 2)) for _ in range(rank)]
    g = draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    kwargs = {"stride": spell(draw, s), "dilation": spell(draw, d), "groups": g}
    n_max = 4 if rank == 3 else 7
    if transposed:
        p = [draw(st.integers(0, 2)) for _ in range(rank)]
        op = [draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d)]
        spatial = []
        for i in range(rank):
            # the smallest input whose output has at least one sample
            keff = (k[i] - 1) * d[i] + 1
            lo = next(m for m in range(1, 20) if (m - 1) * s[i] - 2 * p[i] + keff + op[i] >= 1)
            spatial.append(draw(st.integers(lo, lo + n_max - 1)))
        kwargs.update(padding=spell(draw, p), output_padding=spell(draw, op))
        w_shape = (cin, cout // g, *k)
    else:
        kind = draw(st.sampled_from(["int", "int", "same", "valid"]))
        if kind == "same":
            kwargs["stride"] = 1
            s = [1] * rank
        p = [draw(st.integers(0, 2)) for _ in range(rank)] if kind == "int" else [0] * rank
        kwargs["padding"] = spell(draw, p) if kind == "int" else kind
        spatial = []
        for i in range(rank):
            keff = (k[i] - 1) * d[i] + 1
            lo = 1 if kind == "same" else max(1, keff - 2 * p[i])
            spatial.append(draw(st.integers(lo, lo + n_max - 1)))
        w_shape = (cout, cin // g, *k)
    batched = draw(st.booleans()) or rank == 3
    x_shape = (draw(st.integers(1, 2)), cin, *spatial) if batched else (cin, *spatial)
    bias = arr(w_shape[1] * g if transposed else cout) if draw(st.booleans()) else None
    return rank, arr(x_shape), arr(w_shape), bias, kwargs


def _check(name, ours, theirs, x, w, b, kwargs):
    out, pullback = getattr(F, name).vjp(x, w, b, **kwargs)
    np.testing.assert_array_equal(getattr(F, name)(x, w, b, **kwargs), out)
    xt, wt, bt = leaf(x), leaf(w), leaf(b)
    ref = theirs(xt, wt, bt, **kwargs)
    close(out, ref, "forward")
    dy = arr(out.shape)
    ref.backward(T.tensor(dy))
    dx, dw, db = pullback(dy)
    close(dx, xt.grad, "d_input")
    close(dw, wt.grad, "d_weight")
    if b is None:
        assert db is None
    else:
        close(db, bt.grad, "d_bias")


@budget(90)
@given(conv_case())
@checked_against("torch")
def test_conv_matches_torch(case):
    rank, x, w, b, kwargs = case
    _check(f"conv{rank}d", F, getattr(TF, f"conv{rank}d"), x, w, b, kwargs)


@budget(70)
@given(conv_case(transposed=True))
@checked_against("torch")
def test_conv_transpose_matches_torch(case):
    rank, x, w, b, kwargs = case
    _check(f"conv_transpose{rank}d", F, getattr(TF, f"conv_transpose{rank}d"), x, w, b, kwargs)


@budget(50)
@given(conv_case(), st.booleans())
@checked_against("torch")
def test_nn_grad_matches_torch_and_its_double_backward(case, want_input):
    rank, x, w, _, kwargs = case
    if isinstance(kwargs["padding"], str):  # torch.nn.grad takes ints only: 'same' as ints (odd k_eff)
        d = kwargs["dilation"]
        d = [d] * rank if isinstance(d, int) else d * rank if len(d) == 1 else d
        kwargs["padding"] = [((k - 1) * di + 1) // 2 if kwargs["padding"] == "same" else 0
                             for k, di in zip(w.shape[2:], d)]
    if x.ndim == rank + 1:
        x = x[None]
    y = TF.__dict__[f"conv{rank}d"](T.tensor(x), T.tensor(w), **kwargs)
    dy = arr(tuple(y.shape))
    if want_input:
        name = f"conv{rank}d_input"
        args = (x.shape, w, dy)
        wt, dyt = leaf(w), leaf(dy)
        ref = getattr(T.nn.grad, name)(x.shape, wt, dyt, **kwargs)
        wrt = [wt, dyt]
    else:
        name = f"conv{rank}d_weight"
        args = (x, w.shape, dy)
        xt, dyt = leaf(x), leaf(dy)
        ref = getattr(T.nn.grad, name)(xt, w.shape, dyt, **kwargs)
        wrt = [xt, dyt]
    out, pullback = getattr(torch.nn.grad, name).vjp(*args, **kwargs)
    np.testing.assert_array_equal(getattr(torch.nn.grad, name)(*args, **kwargs), out)
    close(out, ref, name)
    cot = arr(out.shape)
    for mine, theirs in zip(pullback(cot), T.autograd.grad(ref, wrt, T.tensor(cot))):
        close(mine, theirs, f"{name} gradients")


@st.composite
def pad_case(draw):
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    ndim = draw(st.integers(1, 5)) if mode == "constant" else draw(st.integers(2, 5))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    if mode == "constant":
        npairs = draw(st.integers(1, ndim))
    else:
        npairs = draw(st.sampled_from([p for p in (1, 2, 3) if ndim in (p + 1, p + 2)]))
    pads = [draw(st.integers(-3, 4)) for _ in range(2 * npairs)]
    value = draw(st.sampled_from([None, 0, 1.5])) if mode == "constant" else None
    return arr(shape), pads, mode, value


@settings(max_examples=70)
@given(pad_case())
def test_pad_matches_torch(case):
    x, pads, mode, value = case
    xt = leaf(x)
    if mode == "circular" and any(
        max(lo, hi) > x.shape[-1 - i] + min(lo, 0) + min(hi, 0) and x.shape[-1 - i] + lo + hi > 0
        for i, (lo, hi) in enumerate(zip(pads[::2], pads[1::2]))
    ):
        # A pad longer than what is left after cropping: PyTorch returns uninitialised memory
        # or fails on overlapping memory, depending on the shape; convgrad refuses.
        with pytest.raises(ValueError):
            F.pad(x, pads, mode=mode)
        return
    try:
        ref = TF.pad(xt, pads, mode=mode, value=value)
    except (RuntimeError, NotImplementedError):
        with pytest.raises(ValueError):
            F.pad(x, pads, mode=mode, value=value)
        return
    out, pullback = F.pad.vjp(x, pads, mode=mode, value=value)
    close(out, ref, "pad")
    np.testing.assert_array_equal(F.pad(x, pads, mode, value), out)
    dy = arr(out.shape)
    ref.backward(T.tensor(dy))
    (dx,) = pullback(dy)
    close(dx, xt.grad, "pad gradient")


# --- what PyTorch refuses ----------------------------------------------------------------------------
X, W = arr((1, 2, 5, 6)), arr((4, 2, 3, 3))
WT = arr((2, 3, 3, 3))
REFUSED = [
    ("conv2d", (X, W), {"padding": "same", "stride": 2}),
    ("conv2d", (X, W), {"padding": "SAME"}),
    ("conv2d", (X, W), {"padding": "full"}),
    ("conv2d", (X, W), {"padding": -1}),
    ("conv2d", (X, W), {"padding": ((1, 1), (1, 1))}),
    ("conv2d", (X, W), {"stride": 0}),
    ("conv2d", (X, W), {"stride": (1, 1, 1)}),
    ("conv2d", (X, W), {"stride": 2.0}),
    ("conv2d", (X, W), {"stride": True}),
    ("conv2d", (X, W), {"dilation": 0}),
    ("conv2d", (X, W), {"groups": 0}),
    ("conv2d", (X, W), {"groups": 2}),
    ("conv2d", (arr((1, 4, 5, 6)), arr((3, 2, 3, 3))), {"groups": 2}),
    ("conv2d", (X[:, :, :2], W), {}),
    ("conv2d", (X[0, 0], W), {}),
    ("conv2d", (X[None], W), {}),
    ("conv2d", (X, W, arr(3)), {}),
    ("conv2d", (X, W, arr((4, 1))), {}),
    ("conv2d", (X, W.astype(np.float32)), {}),
    ("conv2d", (X, W[0]), {}),
    ("conv1d", (arr((1, 2, 5)), arr((3, 2, 6))), {}),
    ("conv3d", (arr((1, 2, 3, 3, 3)), arr((1, 2, 2, 2, 2))), {"padding": "same", "stride": (1, 2, 1)}),
    ("conv_transpose2d", (X, WT), {"stride": 2, "output_padding": 2}),
    ("conv_transpose2d", (X, WT), {"stride": 1, "output_padding": 1}),
    ("conv_transpose2d", (X, WT), {"padding": "same"}),
    ("conv_transpose2d", (X[:, :, :1, :1], arr((2, 3, 1, 1))), {"padding": 1}),
    ("conv_transpose2d", (X[:, :, :1, :1], arr((2, 3, 1, 1))), {"padding": 2}),
    ("conv_transpose2d", (arr((1, 3, 3, 3)), arr((3, 3, 3, 3))), {"groups": 2}),
    ("conv_transpose2d", (X, WT), {"padding": -1}),
    ("conv_transpose2d", (X, WT), {"output_padding": -1}),
    ("conv_transpose2d", (X, arr((3, 3, 3, 3))), {}),
    ("conv_transpose2d", (X, WT, arr(2)), {}),
    ("conv_transpose1d", (arr((2, 5)), arr((2, 3, 3)).astype(np.float32)), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), REFUSED,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(REFUSED)])
def test_refused_like_torch(name, args, kwargs):
    with pytest.raises((RuntimeError, TypeError)):
        getattr(TF, name)(*(T.tensor(a) for a in args), **kwargs)
    with pytest.raises((ValueError, TypeError)):
        getattr(F, name)(*args, **kwargs)
    with pytest.raises((ValueError, TypeError)):
        getattr(F, name).vjp(*args, **kwargs)


DY = arr((1, 4, 3, 4))
GRAD_REFUSED = [
    ("conv2d_input", ((5, 6), W, DY), {}),
    ("conv2d_input", ((2, 5, 6), W, DY[0]), {}),
    ("conv2d_input", ((1, 2, 9, 7), W, arr((1, 4, 2, 3))), {"stride": 2}),
    ("conv2d_input", ((1, 2, 5, 6), W, arr((1, 4, 5, 6))), {"padding": "same"}),
    ("conv2d_input", ((1, 2, 5, 6), W, DY), {"padding": -1}),
    ("conv2d_input", ((1, 3, 5, 6), W, DY), {}),
    ("conv2d_weight", (X, (3, 3), DY), {}),
    ("conv2d_weight", (X[0], (4, 2, 3, 3), DY[0]), {}),
    ("conv2d_weight", (X, (4, 2, 3, 3), arr((1, 4, 5, 6))), {"padding": "same"}),
    ("conv2d_weight", (X, (4, 2, 3, 3), arr((1, 4, 4, 4))), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), GRAD_REFUSED,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(GRAD_REFUSED)])
def test_nn_grad_refused_like_torch(name, args, kwargs):
    real = [T.tensor(a) if isinstance(a, np.ndarray) else a for a in args]
    with pytest.raises((RuntimeError, TypeError)):
        getattr(T.nn.grad, name)(*real, **kwargs)
    with pytest.raises((ValueError, TypeError)):
        getattr(torch.nn.grad, name)(*args, **kwargs)


@settings(max_examples=60)
@given(
    st.sampled_from(["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]),
    st.sampled_from([1, 2, 0, -1, (1,), (2, 1), (1, 1, 1), [2, 2]]),
    st.sampled_from([0, 1, 3, -1, "same", "valid", "Same", (1,), (0, 2), (1, 1, 1)]),
    st.sampled_from([1, 2, 0, (2,), (1, 2), (3, 3, 3)]),
    st.sampled_from([1, 2, 3]),
    st.sampled_from([0, 1, 2, (1,), (0, 1)]),
    st.integers(1, 6),
)
def test_arguments_accepted_exactly_as_torch(name, stride, padding, dilation, groups, output_padding, size):
    rank = 1 if name.endswith("1d") else 2
    transposed = name.startswith("conv_transpose")
    x = arr((1, 6, *([size] * rank)))
    w = arr((6, 3, *([2] * rank)) if transposed else (6, 6 // groups, *([2] * rank)))
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    if transposed:
        kwargs["output_padding"] = output_padding
        if groups != 1 and 6 % groups == 0:
            w = arr((6, 6 // groups, *([2] * rank)))
    try:
        ref = getattr(TF, name)(T.tensor(x), T.tensor(w), **kwargs)
    except (RuntimeError, TypeError, ValueError):
        with pytest.raises((ValueError, TypeError)):
            getattr(F, name)(x, w, **kwargs)
        return
    close(getattr(F, name)(x, w, **kwargs), ref, name)


def test_every_op_is_exported_with_vjp_and_its_shape_model():
    import inspect

    conv = ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]
    conv_t = ["input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"]
    expected = {f"conv{r}d": conv for r in (1, 2, 3)} | {f"conv_transpose{r}d": conv_t for r in (1, 2, 3)}
    expected["pad"] = list(inspect.signature(TF.pad).parameters)
    for r in (1, 2, 3):  # torch.nn.grad is plain Python: compare with its signatures
        for kind in ("input", "weight"):
            real = getattr(T.nn.grad, f"conv{r}d_{kind}")
            expected[f"conv{r}d_{kind}"] = list(inspect.signature(real).parameters)
    for module in (torch.nn.functional, torch.nn.grad):
        for name in module.__all__:
            op = getattr(module, name)
            assert callable(op.vjp) and op.__doc__, name
            assert list(inspect.signature(op).parameters) == expected.pop(name), name
    assert not expected
