"""Complex convolutions through the fronts, against the real libraries.

PyTorch (CPU complex64/complex128): ``F.conv{1,2,3}d`` and ``F.conv_transpose{1,2,3}d`` forward
and ``.vjp`` against ``torch.autograd``, whose gradient of a complex conv is the adjoint (A^H dy);
the double backward of ``conv{n}d`` against the core's second-order pullbacks; ``torch.nn.grad``
refuses complex as PyTorch's CPU kernels do. JAX: ``lax.conv_general_dilated`` (any layout,
input and kernel dilation, feature and batch groups) and ``lax.conv_transpose`` forward and
``.vjp`` against ``jax.vjp``, the plain transpose (A^T dy). TensorFlow and ONNX refuse complex
convs, as their kernels do (TF's ``bias_add`` takes them, as TF's does).

Tolerances: complex128, the same sums in another order: 1e-9 relative to the largest magnitude.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch as T
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st
from jax import lax as jlax

import convgrad
from convgrad import onnx, tf
from convgrad import torch as ctorch
from convgrad.jax import lax
from strategies import budget
from tally import checked_against

from .test_jax_front import _start_jax_without_llvm_optimisation  # noqa: F401 (JAX starts with it)

jax.config.update("jax_enable_x64", True)
F = ctorch.nn.functional
RTOL = 1e-9


def crandn(rng, shape, dtype=np.complex128):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def close(got, want, what=""):
    want = want.detach().numpy() if isinstance(want, T.Tensor) else np.asarray(want)
    got = np.asarray(got)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * scale, err_msg=what)


# --- PyTorch --------------------------------------------------------------------------------------
@st.composite
def torch_cases(draw, transposed=False):
    """(rank, x, w, bias, kwargs): tiny complex128 convs, any rank, stride, dilation, groups."""
    rank = draw(st.integers(1, 3))
    ints = st.integers
    k = [draw(ints(1, 3)) for _ in range(rank)]
    s = [draw(ints(1, 2)) for _ in range(rank)]
    d = [draw(ints(1, 2)) for _ in range(rank)]
    g = draw(st.sampled_from([1, 1, 2]))
    cin, cout = g * draw(ints(1, 2)), g * draw(ints(1, 2))
    kwargs = {"stride": tuple(s), "dilation": tuple(d), "groups": g}
    rng = np.random.default_rng(draw(ints(0, 2**16)))
    n_max = 2 if rank == 3 else 4
    if transposed:
        p = [draw(ints(0, 1)) for _ in range(rank)]
        op = [draw(ints(0, max(si, di) - 1)) for si, di in zip(s, d)]
        spatial = [draw(ints(1, n_max)) for _ in range(rank)]
        # an output of at least one sample per axis
        spatial = [max(m, next(v for v in range(1, 20) if (v - 1) * si - 2 * pi + (ki - 1) * di + oi >= 0))
                   for m, si, pi, ki, di, oi in zip(spatial, s, p, k, d, op)]
        kwargs.update(padding=tuple(p), output_padding=tuple(op))
        w_shape, out_channels = (cin, cout // g, *k), cout
    else:
        p = [draw(ints(0, 1)) for _ in range(rank)]
        kwargs["padding"] = tuple(p)
        spatial = [max(1, (ki - 1) * di + 1 - 2 * pi) + draw(ints(0, n_max)) for ki, di, pi in zip(k, d, p)]
        w_shape, out_channels = (cout, cin // g, *k), cout
    x = crandn(rng, (draw(ints(1, 2)), cin, *spatial))
    bias = crandn(rng, (out_channels,)) if draw(st.booleans()) else None
    return rank, x, crandn(rng, w_shape), bias, kwargs, rng


def _check_torch(name, case):
    rank, x, w, b, kwargs, rng = case
    out, pullback = getattr(F, f"{name}{rank}d").vjp(x, w, b, **kwargs)
    xt, wt = T.tensor(x, requires_grad=True), T.tensor(w, requires_grad=True)
    bt = None if b is None else T.tensor(b, requires_grad=True)
    ref = getattr(TF, f"{name}{rank}d")(xt, wt, bt, **kwargs)
    close(out, ref, "forward")
    dy = crandn(rng, out.shape)
    ref.backward(T.tensor(dy))
    dx, dw, db = pullback(dy)
    close(dx, xt.grad, "d_input")
    close(dw, wt.grad, "d_weight")
    assert (db is None) == (b is None)
    if b is not None:
        close(db, bt.grad, "d_bias")


@given(torch_cases())
@budget(100)
@checked_against("torch", capability="complex")
def test_torch_conv_and_its_vjp_match_torch_autograd(case):
    _check_torch("conv", case)


@given(torch_cases(transposed=True))
@budget(100)
@checked_against("torch", capability="complex")
def test_torch_conv_transpose_and_its_vjp_match_torch_autograd(case):
    _check_torch("conv_transpose", case)


@given(torch_cases())
@budget(20)
@checked_against("torch", capability="complex")
def test_second_order_pullbacks_match_torch_double_backward(case):
    """conv_input_grad_vjp / conv_filter_grad_vjp (adjoint) against autograd through
    torch.autograd.grad(create_graph=True): dx is antilinear in w, dw in x."""
    rank, x, w, _, kwargs, rng = case
    xt, wt = T.tensor(x, requires_grad=True), T.tensor(w, requires_grad=True)
    y = getattr(TF, f"conv{rank}d")(xt, wt, **kwargs)
    dy = T.tensor(crandn(rng, tuple(y.shape)), requires_grad=True)
    dxt, dwt = T.autograd.grad(y, (xt, wt), dy, create_graph=True)
    core = dict(kwargs)
    g_x, g_w = crandn(rng, x.shape), crandn(rng, w.shape)
    dx, vjp_x = convgrad.conv_input_grad_vjp(dy.detach().numpy(), w, x.shape, **core)
    close(dx, dxt, "dx")
    want_dy, want_w = T.autograd.grad(dxt, (dy, wt), T.tensor(g_x), retain_graph=True)
    got_dy, got_w = vjp_x(g_x)
    close(got_dy, want_dy, "d(dx)/d(dy)")
    close(got_w, want_w, "d(dx)/d(w)")
    dw, vjp_w = convgrad.conv_filter_grad_vjp(x, dy.detach().numpy(), w.shape, **core)
    close(dw, dwt, "dw")
    want_x, want_dy = T.autograd.grad(dwt, (xt, dy), T.tensor(g_w))
    got_x, got_dy = vjp_w(g_w)
    close(got_x, want_x, "d(dw)/d(x)")
    close(got_dy, want_dy, "d(dw)/d(dy)")


def test_torch_nn_grad_refuses_complex_as_torch_does():
    x, w, gy = (np.ones(s, np.complex64) for s in ((1, 2, 5), (3, 2, 3), (1, 3, 3)))
    with pytest.raises(NotImplementedError):
        T.nn.grad.conv1d_input(x.shape, T.tensor(w), T.tensor(gy))
    with pytest.raises(TypeError, match=r"conv1d_input: PyTorch's CPU kernel is not implemented for c"):
        ctorch.nn.grad.conv1d_input(x.shape, w, gy)
    with pytest.raises(TypeError, match=r"conv1d_weight: .* not implemented for complex64.*conv1d.vjp"):
        ctorch.nn.grad.conv1d_weight(x, w.shape, gy)


def test_torch_needs_one_dtype_as_torch_does():
    with pytest.raises(RuntimeError, match="should be the same"):
        TF.conv1d(T.ones((1, 2, 5), dtype=T.complex64), T.ones((3, 2, 3)))
    with pytest.raises(TypeError, match="one dtype"):
        F.conv1d(np.ones((1, 2, 5), np.complex64), np.ones((3, 2, 3), np.float32))


def test_torch_complex64_is_computed_in_complex64():
    rng = np.random.default_rng(0)
    x, w = crandn(rng, (2, 3, 9, 9), np.complex64), crandn(rng, (4, 3, 3, 3), np.complex64)
    got = F.conv2d(x, w, padding=1)
    want = TF.conv2d(T.tensor(x), T.tensor(w), padding=1).numpy()
    assert got.dtype == want.dtype == np.complex64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


# --- JAX ----------------------------------------------------------------------------------------
SPATIAL = "HWD"


@st.composite
def jax_general_cases(draw):
    """(lhs, rhs, strides, padding, kwargs for both, rng): any layout string, dilations, groups."""
    rank = draw(st.integers(1, 3))
    ints = st.integers
    kernel = [draw(ints(1, 2 if rank == 3 else 3)) for _ in range(rank)]
    strides = tuple(draw(ints(1, 2)) for _ in range(rank))
    lhs_dil = tuple(draw(st.sampled_from([1, 1, 2])) for _ in range(rank))
    rhs_dil = tuple(draw(ints(1, 2)) for _ in range(rank))
    spatial = [(k - 1) * d + 1 + draw(ints(0, 1 if rank == 3 else 3)) for k, d in zip(kernel, rhs_dil)]
    if all(v == 1 for v in lhs_dil) and draw(st.booleans()):
        padding = draw(st.sampled_from(["SAME", "VALID", "SAME_LOWER"]))
    else:
        padding = tuple((draw(ints(-1, 2)), draw(ints(-1, 2))) for _ in range(rank))
    grouping = draw(st.sampled_from(["none", "none", "feature", "batch"]))
    g = 2 if grouping != "none" else 1
    fg, bg = (g, 1) if grouping == "feature" else (1, g) if grouping == "batch" else (1, 1)
    n, c, o = bg * draw(ints(1, 2)), fg * draw(ints(1, 2)), g * draw(ints(1, 2))
    sp = SPATIAL[:rank]
    specs = ("N" + "C" + sp, "O" + "I" + sp, "N" + "C" + sp)
    if draw(st.booleans()):  # channels-last layouts, as TensorFlow's
        specs = ("N" + sp + "C", sp + "I" + "O", "N" + sp + "C")
    sizes = {"N": n, "C": c, "O": o, "I": c // fg, **dict(zip(sp, spatial))}
    ksizes = {"O": o, "I": c // fg, **dict(zip(sp, kernel))}
    rng = np.random.default_rng(draw(ints(0, 2**16)))
    lhs = crandn(rng, tuple(sizes[ch] for ch in specs[0]))
    rhs = crandn(rng, tuple(ksizes[ch] for ch in specs[1]))
    kwargs = {"lhs_dilation": lhs_dil, "rhs_dilation": rhs_dil, "dimension_numbers": specs,
              "feature_group_count": fg, "batch_group_count": bg}
    return lhs, rhs, strides, padding, kwargs, rng


def _jax_reference(fn, lhs, rhs, rng):
    """(dy, JAX's output and its jax.vjp gradients for dy)."""
    out = jax.eval_shape(fn, lhs, rhs)
    dy = crandn(rng, out.shape, out.dtype)

    def forward_and_back(a, b, g):
        y, pullback = jax.vjp(fn, a, b)
        return (y, *pullback(g))

    return dy, [np.asarray(v) for v in jax.jit(forward_and_back)(lhs, rhs, dy)]


def _check_jax(ours, reference):
    out, pullback = ours
    dy, (want, *grads) = reference
    close(out, want, "forward")
    for got, expected, what in zip(pullback(dy), grads, ("d_lhs", "d_rhs")):
        close(got, expected, what)


@given(jax_general_cases())
@budget(150)
@checked_against("jax", capability="complex")
def test_jax_conv_general_dilated_and_its_vjp_match_jax_vjp(case):
    lhs, rhs, strides, padding, kwargs, rng = case
    try:
        reference = _jax_reference(lambda a, b: jlax.conv_general_dilated(a, b, strides, padding, **kwargs),
                                   lhs, rhs, rng)
    except (ValueError, TypeError):  # e.g. a negative pad past the input: refused by both
        with pytest.raises((ValueError, TypeError)):
            lax.conv_general_dilated(lhs, rhs, strides, padding, **kwargs)
        return
    _check_jax(lax.conv_general_dilated.vjp(lhs, rhs, strides, padding, **kwargs), reference)


@st.composite
def jax_transpose_cases(draw):
    rank = draw(st.integers(1, 2))
    ints = st.integers
    kernel = [draw(ints(1, 3)) for _ in range(rank)]
    strides = tuple(draw(ints(1, 3)) for _ in range(rank))
    rhs_dil = tuple(draw(ints(1, 2)) for _ in range(rank))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    n, c, o = draw(ints(1, 2)), draw(ints(1, 2)), draw(ints(1, 2))
    sp = SPATIAL[:rank]
    specs = ("N" + sp + "C", sp + "IO", "N" + sp + "C")
    rng = np.random.default_rng(draw(ints(0, 2**16)))
    lhs = crandn(rng, (n, *(draw(ints(1, 4)) for _ in range(rank)), c))
    flipped = draw(st.booleans())  # transpose_kernel: rhs is the forward conv's, I and O swapped
    rhs = crandn(rng, (*kernel, o, c) if flipped else (*kernel, c, o))
    kwargs = {"rhs_dilation": rhs_dil, "dimension_numbers": specs, "transpose_kernel": flipped}
    return lhs, rhs, strides, padding, kwargs, rng


@given(jax_transpose_cases())
@budget(50)
@checked_against("jax", capability="complex")
def test_jax_conv_transpose_and_its_vjp_match_jax_vjp(case):
    lhs, rhs, strides, padding, kwargs, rng = case
    reference = _jax_reference(lambda a, b: jlax.conv_transpose(a, b, strides, padding, **kwargs),
                               lhs, rhs, rng)
    _check_jax(lax.conv_transpose.vjp(lhs, rhs, strides, padding, **kwargs), reference)


def test_the_two_conventions_differ_by_the_conjugation():
    """The same complex conv's gradient: PyTorch's front gives A^H dy, JAX's A^T dy."""
    rng = np.random.default_rng(4)
    x, w = crandn(rng, (1, 2, 6)), crandn(rng, (3, 2, 3))
    y, torch_pb = F.conv1d.vjp(x, w)
    _, jax_pb = lax.conv_general_dilated.vjp(x, w, (1,), "VALID")
    dy = crandn(rng, y.shape)
    (tdx, tdw, _), (jdx, jdw) = torch_pb(dy), jax_pb(dy)
    close(tdx, np.conj(jax_pb(np.conj(dy))[0]))  # A^H dy = conj(A^T conj(dy))
    close(tdw, np.conj(jax_pb(np.conj(dy))[1]))
    assert not np.allclose(tdx, jdx) and not np.allclose(tdw, jdw)


# --- TensorFlow and ONNX refuse complex convs, as their kernels do ------------------------------
def test_tf_and_onnx_refuse_complex_convs():
    x, w = np.ones((1, 5, 5, 2), np.complex64), np.ones((3, 3, 2, 3), np.complex64)
    with pytest.raises(TypeError, match=r"conv2d: TensorFlow's kernel takes dtypes .*, got complex64"):
        tf.nn.conv2d(x, w, 1, "VALID")
    with pytest.raises(TypeError, match=r"Conv needs X, W and B of one floating dtype"):
        onnx.conv(np.ones((1, 2, 5, 5), np.complex64), np.ones((3, 2, 3, 3), np.complex64))
    b = np.arange(2) * 1j
    y, pb = tf.nn.bias_add.vjp(x, b.astype(np.complex64))  # TF's BiasAdd takes complex
    close(y, x + b.astype(np.complex64))
    assert pb(y)[1].dtype == np.complex64


# --- SciPy: convolve* never conjugate, correlate* conjugate one input, as SciPy does --------------
@st.composite
def scipy_cases(draw):
    name = draw(st.sampled_from(["convolve", "correlate", "convolve2d", "correlate2d"]))
    rank = 2 if name.endswith("2d") else draw(st.integers(0, 3))
    s1 = tuple(draw(st.integers(1, 5 if rank < 3 else 3)) for _ in range(rank))
    if draw(st.booleans()):  # in2 larger in every axis: SciPy swaps a 'valid' call
        s2 = tuple(n + draw(st.integers(0, 2)) for n in s1)
    else:
        s2 = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    kwargs = {"mode": draw(st.sampled_from(["full", "same", "valid"]))}
    if not (all(a >= b for a, b in zip(s1, s2)) or all(b >= a for a, b in zip(s1, s2))):
        kwargs["mode"] = "full"  # 'valid' needs one input at least as large in every axis
    if name.endswith("2d"):
        kwargs["boundary"] = draw(st.sampled_from(["fill", "wrap", "symm"]))
        if kwargs["boundary"] == "fill":
            kwargs["fillvalue"] = draw(st.sampled_from([0, 1.5, 0.5 - 2j]))
    dtypes = draw(st.sampled_from([(np.complex128, np.complex128), (np.complex128, np.float64),
                                   (np.float64, np.complex128), (np.complex64, np.complex64)]))
    return name, s1, s2, kwargs, dtypes, np.random.default_rng(draw(st.integers(0, 2**16)))


def _real_loss(op, kwargs, dy):
    """L(in1, in2) = Re <dy, op(in1, in2)>: its gradient (as a complex vector) is the adjoint's."""
    return lambda a, b: float(np.real(np.vdot(dy, op(a, b, **kwargs))))


@given(scipy_cases())
@budget(60)
@checked_against("scipy", capability="complex")
def test_scipy_complex_correlations_match_scipy_with_adjoint_gradients(case):
    """Forward against scipy.signal (which input is conjugated, swapped 'valid' included); the
    gradients by central differences of Re <dy, op> along complex directions (exact for maps
    linear or antilinear in each input, up to rounding)."""
    import scipy.signal

    from convgrad.scipy import signal

    name, s1, s2, kwargs, (t1, t2), rng = case
    a = (crandn(rng, s1) if np.dtype(t1).kind == "c" else rng.standard_normal(s1)).astype(t1)
    b = (crandn(rng, s2) if np.dtype(t2).kind == "c" else rng.standard_normal(s2)).astype(t2)
    want = getattr(scipy.signal, name)(a, b, **kwargs)
    op = getattr(signal, name)
    y, pullback = op.vjp(a, b, **kwargs)
    assert y.dtype == want.dtype and y.shape == want.shape
    tol = 1e-9 if want.dtype == np.complex128 else 1e-5
    np.testing.assert_allclose(y, want, rtol=0, atol=tol * max(1.0, np.abs(want).max(initial=0)))
    a, b = a.astype(np.result_type(a, 1j)), b.astype(np.result_type(b, 1j))  # complex directions
    if y.dtype == np.complex64:
        a, b = a.astype(np.complex128), b.astype(np.complex128)
    y, pullback = op.vjp(a, b, **kwargs)
    dy = crandn(rng, y.shape)
    loss = _real_loss(op, kwargs, dy)
    for i, grad in enumerate(pullback(dy)):
        v = crandn(rng, (a, b)[i].shape)
        plus = [a + v, b] if i == 0 else [a, b + v]
        minus = [a - v, b] if i == 0 else [a, b - v]
        directional = (loss(*plus) - loss(*minus)) / 2  # a fill value's offset cancels
        scale = np.abs(dy).sum() * max(1.0, np.abs(y).max(initial=0)) + 1
        assert abs(np.real(np.vdot(grad, v)) - directional) <= 1e-9 * scale, (name, i)
