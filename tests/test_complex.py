"""complex64 and complex128 through the core, against the loop oracle run in complex.

The forward is the plain (non-conjugating) sum. The gradients are the adjoint A^H dy by default
(held by the complex dot test <A x, y> = <x, A^H y>, with vdot) and the plain transpose A^T dy
with ``convention='transpose'``; the oracle's adjoint loops, which never conjugate, give the
first as ``input_grad(dy, conj(w))`` / ``filter_grad(conj(x), dy)`` and the second as written.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
import oracle
from checks import run_each_method
from strategies import budget, conv_cases, general_cases, transpose_cases
from tally import checked_against

# complex128 against the complex128 oracle: the same sums in another order (as float64).
# complex64 computes in complex64 (no widening): single-precision rounding on sums of at most a
# few hundred O(1) terms, relative to the largest value.
RTOL = {np.complex128: 1e-10, np.complex64: 2e-5}
CONVENTIONS = ("adjoint", "transpose")


def crandn(rng, shape, dtype=np.complex128):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def close(got, want, dtype=np.complex128):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL[np.dtype(dtype).type] * scale)


def first(case, x, w):
    """x, w in the oracle's channels-first layout."""
    fmt = case.kwargs["data_format"]
    return oracle.x_to_first(x, fmt), oracle.w_to_first(w, fmt)


def conv_kwargs(case):
    return {k: v for k, v in case.kwargs.items() if k != "data_format"}


def oracle_grads(case, x, w, dy, convention):
    """(dx, dw) in the case's layout: the oracle's loops on the conjugated primal operands
    (adjoint) or as they are (transpose)."""
    fmt, kw = case.kwargs["data_format"], conv_kwargs(case)
    xf, wf = first(case, x, w)
    dyf = oracle.x_to_first(dy, fmt)
    cj = np.conj if convention == "adjoint" else (lambda a: a)
    dx = oracle.input_grad(dyf, cj(wf), xf.shape, **kw)
    dw = oracle.filter_grad(cj(xf), dyf, wf.shape, **kw)
    return oracle.x_from_first(dx, fmt), oracle.w_from_first(dw, fmt)


@given(case=conv_cases(), dtype=st.sampled_from([np.complex128, np.complex64]),
       convention=st.sampled_from(CONVENTIONS), seed=st.integers(0, 2**16))
@budget(60)
@checked_against("oracle", capability="complex")
def test_conv_and_both_gradients_match_the_oracle(case, dtype, convention, seed):
    rng = np.random.default_rng(seed)
    x, w = crandn(rng, case.x_shape, dtype), crandn(rng, case.w_shape, dtype)
    fmt, kw = case.kwargs["data_format"], conv_kwargs(case)
    y = convgrad.conv(x, w, **case.kwargs)
    want_y = oracle.x_from_first(oracle.conv(*first(case, x.astype(complex), w.astype(complex)), **kw), fmt)
    close(y, want_y, dtype)
    dy = crandn(rng, y.shape, dtype)
    want_dx, want_dw = oracle_grads(case, *(a.astype(complex) for a in (x, w, dy)), convention)
    close(convgrad.conv_input_grad(dy, w, x.shape, convention=convention, **case.kwargs), want_dx, dtype)
    close(convgrad.conv_filter_grad(x, dy, w.shape, convention=convention, **case.kwargs), want_dw, dtype)
    b = crandn(rng, (y.shape[1] if fmt == "channels_first" else y.shape[-1],), dtype)
    yb, vjp = convgrad.conv_vjp(x, w, b, convention=convention, **case.kwargs)
    b_shape = (-1,) + (1,) * (y.ndim - 2) if fmt == "channels_first" else (-1,)
    close(yb, want_y + b.reshape(b_shape), dtype)
    dx, dw, db = vjp(dy)
    close(dx, want_dx, dtype)
    close(dw, want_dw, dtype)
    close(db, oracle.bias_grad(oracle.x_to_first(dy, fmt)), dtype)


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_every_engine_that_takes_complex_matches_the_oracle(dtype):
    """Each engine that runs complex (the others refuse by name) on geometries that reach it:
    groups, stride, dilation and a depthwise conv."""
    rng = np.random.default_rng(7)
    ran: set[str] = set()
    for xs, ws, kw in [((2, 4, 9, 8), (6, 2, 3, 3), {"padding": 1, "groups": 2}),
                       ((2, 3, 9, 8), (4, 3, 3, 2), {"stride": 2, "padding": 1}),
                       ((2, 3, 11, 10), (4, 3, 3, 3), {"padding": 1}),
                       ((1, 3, 12), (3, 1, 5), {"padding": 2, "groups": 3, "dilation": 2}),
                       ((1, 2, 5, 4, 6), (2, 2, 2, 3, 2), {"stride": (1, 2, 1)})]:
        x, w = crandn(rng, xs, dtype), crandn(rng, ws, dtype)
        want = oracle.conv(x.astype(complex), w.astype(complex), **kw)
        dy = crandn(rng, want.shape, dtype)
        want_dx = oracle.input_grad(dy.astype(complex), np.conj(w.astype(complex)), xs, **kw)
        want_dw = oracle.filter_grad(np.conj(x.astype(complex)), dy.astype(complex), ws, **kw)
        for fn, want_r, args in ((convgrad.conv, want, (x, w)),
                                 (convgrad.conv_input_grad, want_dx, (dy, w, xs)),
                                 (convgrad.conv_filter_grad, want_dw, (x, dy, ws))):
            for method, got in run_each_method(fn, *args, **kw).items():
                close(got, want_r, dtype)
                ran.add(method)
    assert {"im2col", "offset_gemm", "split_kernel", "subpixel", "gather"} <= ran


@pytest.mark.parametrize("engine", ["fft", "winograd", "tiled", "depthwise"])
def test_real_only_engines_refuse_complex_with_the_reason(engine):
    x, w = np.ones((1, 2, 8, 8), np.complex64), np.ones((2, 1, 3, 3), np.complex64)
    with pytest.raises(ValueError, match=rf"method='{engine}' cannot run this forward: no complex kernel"):
        convgrad.conv(x, w, groups=2, method=engine)
    plan = convgrad.make_plan("forward", convgrad.ConvGeometry.for_conv(x.shape, w.shape, groups=2),
                              np.complex64, "auto", 2**31)
    assert plan.verdicts()[engine] == {"eligible": False,
                                       "reason": "no complex kernel (real float kernels only)"}


def _dot_error(lhs, rhs):
    return abs(lhs - rhs) / max(1.0, abs(lhs))


@given(case=conv_cases(min_batch=1), seed=st.integers(0, 2**16))
@budget(25)
def test_complex_dot_test_conv(case, seed):
    """<conv(x, w), dy> = <x, conv_input_grad(dy)> = <w, conv_filter_grad(x, dy)>, vdot
    conjugating the left operand: holds for the adjoint only."""
    rng = np.random.default_rng(seed)
    x, w = crandn(rng, case.x_shape), crandn(rng, case.w_shape)
    y = convgrad.conv(x, w, **case.kwargs)
    dy = crandn(rng, y.shape)
    lhs = np.vdot(dy, y)
    assert _dot_error(lhs, np.vdot(convgrad.conv_input_grad(dy, w, x.shape, **case.kwargs), x)) < 1e-12
    assert _dot_error(lhs, np.vdot(convgrad.conv_filter_grad(x, dy, w.shape, **case.kwargs), w)) < 1e-12


@given(case=transpose_cases(min_batch=1), seed=st.integers(0, 2**16))
@budget(25)
@checked_against("oracle", capability="complex")
def test_complex_dot_test_conv_transpose(case, seed):
    """conv_transpose is the plain transpose (the oracle's scatter loop, no conj); its vjp's
    gradients are its adjoints (dot test) or, with 'transpose', the plain transposes."""
    rng = np.random.default_rng(seed)
    x, w = crandn(rng, case.x_shape), crandn(rng, case.w_shape)
    y = convgrad.conv_transpose(x, w, **case.kwargs)
    close(y, case.oracle(x, w))
    g = crandn(rng, y.shape)
    _, vjp = convgrad.conv_transpose_vjp(x, w, **case.kwargs)
    dx, dw, _ = vjp(g)
    lhs = np.vdot(g, y)
    assert _dot_error(lhs, np.vdot(dx, x)) < 1e-12
    assert _dot_error(lhs, np.vdot(dw, w)) < 1e-12
    _, vjp_t = convgrad.conv_transpose_vjp(x, w, convention="transpose", **case.kwargs)
    tx, tw, _ = vjp_t(g)
    # the plain transpose: sum(g * T x) = sum(T^T g * x), no conjugation anywhere
    assert _dot_error(np.sum(g * y), np.sum(tx * x)) < 1e-12
    assert _dot_error(np.sum(g * y), np.sum(tw * w)) < 1e-12


@given(case=general_cases(), seed=st.integers(0, 2**16))
@budget(25)
@checked_against("oracle", capability="complex")
def test_conv_general_and_its_vjp_in_complex(case, seed):
    rng = np.random.default_rng(seed)
    x, w = crandn(rng, case.x_shape), crandn(rng, case.w_shape)
    fmt = case.data_format
    xf, wf = oracle.x_to_first(x, fmt), oracle.w_to_first(w, fmt)
    y, vjp = convgrad.conv_general_vjp(x, w, **case.kwargs)
    close(y, oracle.x_from_first(oracle.conv_general(xf, wf, **case.geometry), fmt))
    dy = crandn(rng, y.shape)
    dx, dw = vjp(dy)
    lhs = np.vdot(dy, y)
    assert _dot_error(lhs, np.vdot(dx, x)) < 1e-12
    assert _dot_error(lhs, np.vdot(dw, w)) < 1e-12
    dyf = oracle.x_to_first(dy, fmt)
    tx, tw = convgrad.conv_general_vjp(x, w, convention="transpose", **case.kwargs)[1](dy)
    close(tx, oracle.x_from_first(oracle.input_grad(dyf, wf, xf.shape, **_renamed(case.geometry)), fmt))
    close(tw, oracle.w_from_first(oracle.filter_grad(xf, dyf, wf.shape, **_renamed(case.geometry)), fmt))


def _renamed(kw):
    """conv_general's names as the oracle's gradient loops spell them."""
    names = {"rhs_dilation": "dilation", "feature_group_count": "groups"}
    return {names.get(k, k): v for k, v in kw.items()}


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_second_order_pullbacks_in_complex(convention, fmt):
    """conv_input_grad_vjp and conv_filter_grad_vjp: the docstrings' formulas hold in each
    convention, against the oracle (adjoint: dx antilinear in w, d_w = filter_grad(conj(g), dy))."""
    rng = np.random.default_rng(3)
    kw = {"stride": 2, "padding": 1, "dilation": 1, "groups": 2}
    xs, ws = (2, 4, 7, 6), (6, 2, 3, 2)
    x, w = crandn(rng, xs), crandn(rng, ws)
    dy = crandn(rng, oracle.conv(x, w, **kw).shape)
    g_x, g_w = crandn(rng, xs), crandn(rng, ws)
    cj = np.conj if convention == "adjoint" else (lambda a: a)
    t = (lambda a: oracle.x_from_first(a, fmt)), (lambda a: oracle.w_from_first(a, fmt))
    args = dict(kw, data_format=fmt, convention=convention)

    dx, vjp = convgrad.conv_input_grad_vjp(t[0](dy), t[1](w), t[0](x).shape, **args)
    close(dx, t[0](oracle.input_grad(dy, cj(w), xs, **kw)))
    d_dy, d_w = vjp(t[0](g_x))
    close(d_dy, t[0](oracle.conv(g_x, w, **kw)))
    close(d_w, t[1](oracle.filter_grad(cj(g_x), dy, ws, **kw)))

    dw, vjp = convgrad.conv_filter_grad_vjp(t[0](x), t[0](dy), t[1](w).shape, **args)
    close(dw, t[1](oracle.filter_grad(cj(x), dy, ws, **kw)))
    d_x, d_dy = vjp(t[1](g_w))
    close(d_x, t[0](oracle.input_grad(dy, cj(g_w), xs, **kw)))
    close(d_dy, t[0](oracle.conv(x, g_w, **kw)))


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_a_prepared_complex_conv(convention):
    rng = np.random.default_rng(5)
    xs, ws = (2, 5, 6, 3), (2, 2, 3, 3)  # channels-last, groups 1
    p = convgrad.prepare(xs, ws, np.complex64, data_format="channels_last", padding=1, convention=convention)
    x, w = crandn(rng, xs, np.complex64), crandn(rng, ws, np.complex64)
    xf, wf = oracle.x_to_first(x, "channels_last"), oracle.w_to_first(w, "channels_last")
    y = p(x, w)
    close(y, oracle.x_from_first(oracle.conv(xf, wf, padding=1), "channels_last"), np.complex64)
    dy = crandn(rng, y.shape, np.complex64)
    dyf = oracle.x_to_first(dy, "channels_last")
    cj = np.conj if convention == "adjoint" else (lambda a: a)
    close(p.input_grad(dy, w), oracle.x_from_first(oracle.input_grad(dyf, cj(wf), xf.shape, padding=1),
                                                   "channels_last"), np.complex64)
    close(p.filter_grad(x, dy), oracle.w_from_first(oracle.filter_grad(cj(xf), dyf, wf.shape, padding=1),
                                                    "channels_last"), np.complex64)


def test_mixed_dtypes_promote_as_numpy_and_inputs_are_not_mutated():
    rng = np.random.default_rng(1)
    x, w = crandn(rng, (1, 2, 6), np.complex64), rng.standard_normal((3, 2, 3))
    x0, w0 = x.copy(), w.copy()
    y, vjp = convgrad.conv_vjp(x, w)
    assert y.dtype == np.complex128  # complex64 with float64, as np.result_type
    dx, dw, _ = vjp(crandn(rng, y.shape))
    assert dx.dtype == dw.dtype == np.complex128
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


def test_the_transposed_conv_is_the_input_gradient_for_real_dtypes_only():
    rng = np.random.default_rng(2)
    dy, w = crandn(rng, (1, 2, 4)), crandn(rng, (2, 3, 3))
    t = convgrad.conv_transpose(dy, w, stride=2, output_shape=(9,))
    assert np.allclose(convgrad.conv_input_grad(dy, w, (9,), stride=2, convention="transpose"), t)
    assert np.allclose(convgrad.conv_input_grad(dy, w, (9,), stride=2), convgrad.conv_transpose(
        dy, np.conj(w), stride=2, output_shape=(9,)))
    assert not np.allclose(convgrad.conv_input_grad(dy, w, (9,), stride=2), t)


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "replicate", "circular"])
def test_complex_dot_test_with_padding_modes(mode):
    """A padding mode copies samples (real coefficients): the adjoint still conjugates only the
    other operand, and the fold-back of the pads' gradients keeps the complex dot test."""
    rng = np.random.default_rng(11)
    kw = {"stride": (2, 1), "padding": 1, "groups": 2, "padding_mode": mode}
    x, w = crandn(rng, (2, 4, 6, 5)), crandn(rng, (6, 2, 3, 2))
    y, vjp = convgrad.conv_vjp(x, w, **kw)
    dy = crandn(rng, y.shape)
    dx, dw, _ = vjp(dy)
    lhs = np.vdot(dy, y)
    assert _dot_error(lhs, np.vdot(dx, x)) < 1e-12
    assert _dot_error(lhs, np.vdot(dw, w)) < 1e-12
    close(convgrad.conv_input_grad(dy, w, x.shape, **kw), dx)
    close(convgrad.conv_filter_grad(x, dy, w.shape, **kw), dw)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_testing_dot_test_and_check_grads_take_complex(dtype):
    """convgrad.testing's conv forms on complex operands: the dot test sums complex inner
    products (vdot), check_grads differences Re <r, conv> along complex directions."""
    from convgrad import testing

    kw = {"stride": 2, "padding": 1, "groups": 2}
    r = testing.dot_test((2, 4, 7, 6), (6, 2, 3, 3), dtype=dtype, **kw)
    assert r.passed and isinstance(r.forward, complex) and abs(r.forward.imag) > 1e-3 * abs(r.forward)
    rng = np.random.default_rng(8)
    g = testing.check_grads(crandn(rng, (1, 4, 6, 5), dtype), crandn(rng, (6, 2, 3, 2), dtype), **kw)
    assert g.passed and g.input_error < 1e-9 and g.filter_error < 1e-9


def test_the_dot_test_tells_the_adjoint_from_the_transpose():
    """Only the adjoint passes the complex dot test; the plain transpose fails it, and passes
    check_grads' real-part identity only for real dtypes (both run through convgrad.testing)."""
    from convgrad import testing

    rng = np.random.default_rng(9)
    xs, ys, w = (1, 2, 7), (1, 3, 5), crandn(rng, (3, 2, 3))
    op = lambda x: convgrad.conv(x, w)  # noqa: E731
    adjoint = lambda y: convgrad.conv_input_grad(y, w, xs)  # noqa: E731
    transpose = lambda y: convgrad.conv_input_grad(y, w, xs, convention="transpose")  # noqa: E731
    assert testing.dot_test(op, adjoint, xs, ys, dtype=np.complex128).passed
    assert not testing.dot_test(op, transpose, xs, ys, dtype=np.complex128, raise_on_failure=False).passed
    wr = w.real.copy()
    real_transpose = lambda y: convgrad.conv_input_grad(y, wr, xs, convention="transpose")  # noqa: E731
    assert testing.dot_test(lambda x: convgrad.conv(x, wr), real_transpose, xs, ys).passed
    x = crandn(rng, xs)
    vjp_ok = testing.check_grads(lambda a, b: convgrad.conv_vjp(a, b), (x, w), eps=1.0)
    vjp_bad = testing.check_grads(lambda a, b: convgrad.conv_vjp(a, b, convention="transpose"), (x, w),
                                  eps=1.0, raise_on_failure=False)
    assert vjp_ok.passed and not vjp_bad.passed


@given(case=conv_cases(), dtype=st.sampled_from([np.complex128, np.complex64]),
       convention=st.sampled_from(CONVENTIONS), seed=st.integers(0, 2**16))
@budget(30)
@checked_against("oracle", capability="complex")
def test_auto_runs_complex_ops_as_three_real_convs_and_matches_the_oracle(case, dtype, convention, seed):
    """'auto' runs a complex op as three real convs (Gauss's trick) where they are estimated
    cheaper; here always (a fresh planner that charges them nothing), counted as they run."""
    from convgrad import _gauss, _plan

    runs = []

    def counted(how, real, *args):
        runs.append(real.dtype)
        return split(how, real, *args)

    split = _gauss.run
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_plan, "_DEFAULT", _plan.Planner())
        mp.setattr(_plan, "_gauss_seconds", lambda *args: 0.0)
        mp.setattr(_plan.Planner, "_gauss_load", lambda *args: 0.0)  # its compiled passes loaded
        mp.setattr(_gauss, "run", counted)
        rng = np.random.default_rng(seed)
        x, w = crandn(rng, case.x_shape, dtype), crandn(rng, case.w_shape, dtype)
        fmt, kw = case.kwargs["data_format"], conv_kwargs(case)
        y = convgrad.conv(x, w, **case.kwargs)
        dy = crandn(rng, y.shape, dtype)
        dx = convgrad.conv_input_grad(dy, w, x.shape, convention=convention, **case.kwargs)
        dw = convgrad.conv_filter_grad(x, dy, w.shape, convention=convention, **case.kwargs)
    if y.size and x.size and w.size:  # an empty geometry runs no engine
        assert runs == [np.dtype(dtype(0).real.dtype)] * 3, runs
    want_y = oracle.x_from_first(oracle.conv(*first(case, x.astype(complex), w.astype(complex)), **kw), fmt)
    want_dx, want_dw = oracle_grads(case, *(a.astype(complex) for a in (x, w, dy)), convention)
    close(y, want_y, dtype)
    close(dx, want_dx, dtype)
    close(dw, want_dw, dtype)


def test_auto_splits_a_large_complex64_conv_and_keeps_nonfinite_values_native(monkeypatch):
    """A ResNet-sized complex64 conv runs as three float32 convs (the plan says so, with the
    kernels loaded: a fresh planner in a fresh process would charge their load time); an inf in x
    runs the native complex plan, whose inf and NaN are the direct sum's."""
    from convgrad import _plan
    from convgrad.engines import _kernels

    g = convgrad.ConvGeometry.for_conv((1, 64, 64, 64), (64, 64, 3, 3), padding=1)
    with monkeypatch.context() as m:
        m.setattr(_kernels, "compile_penalty", lambda dtype, *kernels: 0.0)
        plan = _plan.Planner("lazy").plan("forward", g, np.complex64, "auto", 2**31)
    assert plan.split is not None and plan.split.dtype == np.float32, str(plan)
    assert "three float32 convs" in str(plan)
    assert _plan.make_plan("forward", g, np.complex64, "im2col", 2**31).split is None  # named: native
    rng = np.random.default_rng(0)
    x, w = crandn(rng, (1, 64, 64, 64), np.complex64), crandn(rng, (64, 64, 3, 3), np.complex64)
    want = convgrad.conv(x, w, padding=1, method="im2col")
    close(convgrad.conv(x, w, padding=1), want, np.complex64)
    x[0, 0, 5, 5] = np.inf
    with np.errstate(invalid="ignore"):  # inf * 0 in the complex products
        got, want = convgrad.conv(x, w, padding=1), convgrad.conv(x, w, padding=1, method="im2col")
    assert not np.isfinite(got).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


@pytest.fixture
def split_planner(monkeypatch):
    """A fresh default planner that runs every complex op as three real convs where it can, with
    the split's compiled passes (those of the fused split) counted as loaded."""
    from convgrad import _plan

    monkeypatch.setattr(_plan, "_DEFAULT", _plan.Planner())
    monkeypatch.setattr(_plan, "_gauss_seconds", lambda *args: 0.0)
    monkeypatch.setattr(_plan.Planner, "_gauss_load", lambda *args: 0.0)
    return _plan


SPLIT_OPS = {  # op: the arrays (a, b) it takes, by role
    "forward": ("x", "w"), "input_grad": ("y", "w"), "filter_grad": ("x", "y")}


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
@pytest.mark.parametrize("op", list(SPLIT_OPS))
def test_the_split_hands_nonfinite_operands_to_the_native_plan(split_planner, op, fmt):
    """An inf or NaN in either operand, or parts whose sum overflows (p + q = inf where p and q
    are finite), sends the fused split to the native complex plan (whose inf and NaN are the
    direct sum's: tests/test_nonfinite.py): the same values, bit for bit; on finite operands
    the split agrees with that plan."""
    g = convgrad.ConvGeometry.for_conv((2, 5, 9, 8), (4, 5, 3, 2), padding=((1, 2), (0, 1)))
    plan = split_planner.make_plan(op, g, np.complex64, "auto", 2**31, fmt)
    assert plan.split is not None and plan.gauss.pads is not None, str(plan)  # the fused split
    assert plan.takes == fmt
    shapes = {"x": g.x_shape(fmt), "w": g.w_shape(fmt), "y": g.y_shape(fmt)}
    rng = np.random.default_rng(1)
    native = lambda a, b: split_planner._in_layout(plan.nonfinite_plan(), fmt, a, b)  # noqa: E731
    a, b = (crandn(rng, shapes[r], np.complex64) for r in SPLIT_OPS[op])
    close(plan(a, b), native(a, b), np.complex64)
    for which in range(2):
        for bad in (np.inf, np.nan, complex(3e38, 3e38)):
            a, b = (crandn(rng, shapes[r], np.complex64) for r in SPLIT_OPS[op])
            (a if which == 0 else b).flat[7] = bad
            with np.errstate(invalid="ignore", over="ignore"):  # inf * 0, inf - inf, overflow
                got, want = plan(a, b), native(a, b)
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", list(SPLIT_OPS))
def test_the_split_allocates_no_more_than_its_plan_says(split_planner, op):
    """The workspace a split plan declares (and the budget is checked against) covers what it
    allocates besides its result: the real plan's and the split's parts and real results
    (tracemalloc sees NumPy's allocations)."""
    import tracemalloc

    from convgrad.engines import _scratch

    g = convgrad.ConvGeometry.for_conv((2, 16, 20, 20), (16, 16, 3, 3), padding=1)
    plan = split_planner.make_plan(op, g, np.complex64, "auto", 2**31, "channels_first")
    assert plan.split is not None, str(plan)
    shapes = {"x": g.x_shape(), "w": g.w_shape(), "y": g.y_shape()}
    rng = np.random.default_rng(0)
    a, b = (crandn(rng, shapes[r], np.complex64) for r in SPLIT_OPS[op])
    plan(a, b)  # loads the kernels (their compiler's allocations are not the plan's)
    _scratch.release()
    tracemalloc.start()
    try:
        out = plan(a, b)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - out.nbytes <= plan.workspace_bytes, (peak, out.nbytes, plan.workspace_bytes)


REAL_VJPS = {  # name: (call, cotangent name)
    "conv_vjp": (lambda x, w: convgrad.conv_vjp(x, w, padding=1), "dy"),
    "conv_transpose_vjp": (lambda x, w: convgrad.conv_transpose_vjp(x, w.swapaxes(0, 1), stride=2), "dy"),
    "conv_general_vjp": (lambda x, w: convgrad.conv_general_vjp(x, w, lhs_dilation=2), "dy"),
    "conv_input_grad_vjp": (lambda x, w: convgrad.conv_input_grad_vjp(convgrad.conv(x, w), w, x.shape),
                            "g"),
    "conv_filter_grad_vjp": (lambda x, w: convgrad.conv_filter_grad_vjp(x, convgrad.conv(x, w), w.shape),
                             "g"),
}


@pytest.mark.parametrize("name", list(REAL_VJPS))
def test_a_real_convs_pullback_refuses_a_complex_cotangent(name):
    """A complex cotangent of a real result is refused with a TypeError naming it, as JAX's vjp
    and PyTorch's autograd refuse it; a real one runs."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2))
    call, cot = REAL_VJPS[name]
    out, pullback = call(x, w)
    assert out.dtype == np.float64
    refused = rf"^{cot} has dtype complex128 but the result it is the cotangent of is real"
    with pytest.raises(TypeError, match=refused):
        pullback(crandn(rng, out.shape))
    grads = pullback(rng.standard_normal(out.shape))
    assert all(g is None or g.dtype == np.float64 for g in grads)


def test_the_gradient_functions_take_a_complex_dy_with_real_operands_as_a_plain_conv():
    """conv_input_grad / conv_filter_grad of a complex dy and a real w / x: the real conv's
    transpose applied to dy (no conjugation to make: the operands are real), against the loop
    oracle in complex."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    dy = crandn(rng, (2, 4, 4, 3))
    kw = {"stride": 2, "padding": 1}
    want_dx = oracle.input_grad(dy, w.astype(complex), x.shape, **kw)
    want_dw = oracle.filter_grad(x.astype(complex), dy, w.shape, **kw)
    close(convgrad.conv_input_grad(dy, w, x.shape, **kw), want_dx)
    close(convgrad.conv_filter_grad(x, dy, w.shape, **kw), want_dw)
