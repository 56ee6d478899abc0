"""Forward mode: conv_jvp and conv_transpose_jvp against ``jax.jvp`` (every padding mode, via
``jnp.pad``), ``torch.func.jvp``, and Hessian-vector products composed from the core's ops
against PyTorch's double backward."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from jax import lax

import convgrad
import oracle
import tally
from padmode_cases import NP_MODE, mode_cases
from strategies import budget, seeds, windows

jax.config.update("jax_enable_x64", True)

TOL = {"rtol": 1e-10, "atol": 1e-10}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny convs: a second intra-op thread only waits (x1000 slower on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _jax_conv(kw, rank):
    """Channels-first VALID conv in JAX (lax.conv_general_dilated), plus bias."""
    def f(xp, w, b):
        y = lax.conv_general_dilated(xp, w, kw["stride"], [(0, 0)] * rank, rhs_dilation=kw["dilation"],
                                     feature_group_count=kw["groups"])
        return y + b.reshape((-1,) + (1,) * rank)
    return f


def _np_pad(x, pairs, mode):
    return np.pad(x, [(0, 0), (0, 0), *pairs], mode=NP_MODE[mode])


@budget(100)
@given(mode_cases(), seeds, st.sampled_from(["x", "w", "both"]))
@tally.checked_against("jax", capability="jvp")
def test_conv_jvp_matches_jax_jvp(case, seed, which):
    x_shape, w_shape, kw, mode, pairs = case
    fmt, rng = kw["data_format"], np.random.default_rng(seed)
    x, w, x_dot, w_dot = (rng.standard_normal(s) for s in (x_shape, w_shape, x_shape, w_shape))
    o = oracle.w_to_first(w, fmt).shape[0]
    b, b_dot = rng.standard_normal(o), rng.standard_normal(o)
    x_dot = None if which == "w" else x_dot
    w_dot = None if which == "x" else w_dot
    y, y_dot = convgrad.conv_jvp(x, w, x_dot, w_dot, b, b_dot, **kw)
    # The pad is linear: its tangent is the padded tangent (np.pad, one XLA compile less per case).
    first = [_np_pad(oracle.x_to_first(x, fmt), pairs, mode), oracle.w_to_first(w, fmt), b]
    x_dot_p = np.zeros_like(first[0])
    if x_dot is not None:
        x_dot_p = _np_pad(oracle.x_to_first(x_dot, fmt), pairs, mode)
    tangents = [x_dot_p, np.zeros_like(first[1]) if w_dot is None else oracle.w_to_first(w_dot, fmt), b_dot]
    y_ref, y_dot_ref = jax.jvp(_jax_conv(kw, len(pairs)), first, tangents)
    np.testing.assert_allclose(oracle.x_to_first(y, fmt), y_ref, **TOL)
    np.testing.assert_allclose(oracle.x_to_first(y_dot, fmt), y_dot_ref, **TOL)


@st.composite
def transpose_cases(draw):
    """A PyTorch conv_transpose{1,2}d call: symmetric pads, output_padding < max(stride, dilation)."""
    rank = draw(st.sampled_from((1, 2)))
    kernel, stride, dilation = draw(windows(rank, max_kernel=3, max_stride=3, max_dilation=2))
    n_in = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    padding = tuple(draw(st.integers(0, (k - 1) * d)) for k, d in zip(kernel, dilation))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    assume(all((n - 1) * s - 2 * p + (k - 1) * d + op >= 0  # PyTorch refuses an empty output
               for n, s, p, k, d, op in zip(n_in, stride, padding, kernel, dilation, output_padding)))
    g = draw(st.integers(1, 2))
    c, o = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    return {"x": (draw(st.integers(1, 2)), c, *n_in), "w": (c, o // g, *kernel), "stride": stride,
            "padding": padding, "output_padding": output_padding, "dilation": dilation, "groups": g}


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@budget(40)
@given(transpose_cases(), seeds)
@tally.checked_against("torch", capability="jvp")
def test_conv_transpose_jvp_matches_torch_func_jvp(case, seed):
    rng = np.random.default_rng(seed)
    x, w, x_dot, w_dot = (rng.standard_normal(case[k]) for k in ("x", "w", "x", "w"))
    b, b_dot = rng.standard_normal(case["w"][1] * case["groups"]), None
    kw = {k: case[k] for k in ("stride", "padding", "output_padding", "dilation", "groups")}
    op = getattr(F, f"conv_transpose{len(case['stride'])}d")
    y, y_dot = convgrad.conv_transpose_jvp(x, w, x_dot, w_dot, b, b_dot, **kw)
    y_ref, y_dot_ref = torch.func.jvp(lambda xx, ww: op(xx, ww, torch.tensor(b), **kw),
                                      (torch.tensor(x), torch.tensor(w)),
                                      (torch.tensor(x_dot), torch.tensor(w_dot)))
    np.testing.assert_allclose(y, y_ref.numpy(), **TOL)
    np.testing.assert_allclose(y_dot, y_dot_ref.numpy(), **TOL)


@budget(30)
@given(mode_cases(modes=("zeros", "reflect", "replicate", "circular"), ranks=(1, 2), min_batch=1), seeds)
@tally.checked_against("torch", capability="jvp")
def test_hessian_vector_product_matches_pytorch_double_backward(case, seed):
    """L = |conv(x, w) - t|^2 / 2. Forward over reverse from the core's ops: g = y - t,
    g_dot = y_dot, and the tangent of (dL/dx, dL/dw) along (vx, vw) is (input_grad(g_dot, w) +
    input_grad(g, vw), filter_grad(x, g_dot) + filter_grad(vx, g)); PyTorch differentiates its
    own gradients (create_graph=True)."""
    x_shape, w_shape, kw, mode, pairs = case
    fmt, rng = kw["data_format"], np.random.default_rng(seed)
    x, w, vx, vw = (rng.standard_normal(s) for s in (x_shape, w_shape, x_shape, w_shape))
    y, y_dot = convgrad.conv_jvp(x, w, vx, vw, **kw)
    t = rng.standard_normal(y.shape)
    g = y - t
    hx = convgrad.conv_input_grad(y_dot, w, x.shape, **kw) + convgrad.conv_input_grad(g, vw, x.shape, **kw)
    hw = convgrad.conv_filter_grad(x, y_dot, w.shape, **kw) + convgrad.conv_filter_grad(vx, g, w.shape, **kw)

    xt, wt = (torch.tensor(oracle.x_to_first(x, fmt), requires_grad=True),
              torch.tensor(oracle.w_to_first(w, fmt), requires_grad=True))
    torch_pad = [p for lo_hi in reversed(pairs) for p in lo_hi]  # F.pad: last dim first
    xp = F.pad(xt, torch_pad, mode="constant" if mode == "zeros" else mode)
    conv = getattr(F, f"conv{len(pairs)}d")
    yt = conv(xp, wt, stride=kw["stride"], dilation=kw["dilation"], groups=kw["groups"])
    loss = ((yt - torch.tensor(oracle.x_to_first(t, fmt))) ** 2).sum() / 2
    gx, gw = torch.autograd.grad(loss, (xt, wt), create_graph=True)
    vxt, vwt = torch.tensor(oracle.x_to_first(vx, fmt)), torch.tensor(oracle.w_to_first(vw, fmt))
    inner = (gx * vxt).sum() + (gw * vwt).sum()
    hx_ref, hw_ref = torch.autograd.grad(inner, (xt, wt), allow_unused=True)
    np.testing.assert_allclose(oracle.x_to_first(hx, fmt), hx_ref.numpy(), **TOL)
    np.testing.assert_allclose(oracle.w_to_first(hw, fmt), hw_ref.numpy(), **TOL)


def test_jvp_is_linear_in_the_tangents_and_exact_for_any_step():
    """Bilinearity: y(x + e x_dot, w + e w_dot) = y + e y_dot + e^2 conv(x_dot, w_dot), any e."""
    rng = np.random.default_rng(3)
    x, w, x_dot, w_dot = (rng.standard_normal(s) for s in ((2, 3, 7), (4, 3, 3), (2, 3, 7), (4, 3, 3)))
    kw = {"stride": 2, "padding": 2, "padding_mode": "reflect"}
    y, y_dot = convgrad.conv_jvp(x, w, x_dot, w_dot, **kw)
    e = 3.0
    rhs = y + e * y_dot + e**2 * convgrad.conv(x_dot, w_dot, **kw)
    np.testing.assert_allclose(convgrad.conv(x + e * x_dot, w + e * w_dot, **kw), rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: convgrad.conv_jvp(np.ones((1, 1, 4)), np.ones((1, 1, 2)), np.ones((1, 1, 3))),
     r"x_dot.shape=\(1, 1, 3\) must equal x.shape=\(1, 1, 4\)"),
    (lambda: convgrad.conv_jvp(np.ones((1, 1, 4)), np.ones((1, 1, 2)), None, np.ones((1, 2, 2))),
     r"w_dot.shape=\(1, 2, 2\) must equal w.shape=\(1, 1, 2\)"),
    (lambda: convgrad.conv_jvp(np.ones((1, 1, 4)), np.ones((1, 1, 2)), bias_dot=np.ones(1)),
     r"bias_dot needs a bias"),
    (lambda: convgrad.conv_jvp(np.ones((1, 1, 4)), np.ones((1, 1, 2)), bias=np.ones(1), bias_dot=np.ones(2)),
     r"bias_dot.shape=\(2,\) must equal bias.shape=\(1,\)"),
    (lambda: convgrad.conv_transpose_jvp(np.ones((1, 1, 2)), np.ones((1, 1, 3)), np.ones((1, 1, 5))),
     r"x_dot.shape=\(1, 1, 5\) must equal x.shape=\(1, 1, 2\)"),
])
def test_tangent_shape_refusals(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_zero_tangents_give_a_zero_tangent():
    y, y_dot = convgrad.conv_jvp(np.ones((1, 2, 5)), np.ones((3, 2, 2)), padding=1, padding_mode="edge")
    assert y_dot.shape == y.shape and not y_dot.any()
