"""inf and NaN land where the direct sum puts them, whatever engine runs and whatever ran before.

The reference is the loop oracle's direct sum: every product of the definition is summed (the
forward's window reads the zero padding, the filter gradient too; the input gradient scatters
each dy * w to the one sample it was read from), so inf * 0 and inf - inf give NaN, a single
signed inf gives that inf, and nothing else is non-finite. Each output is compared as one of
finite / NaN / +inf / -inf; finite values are held by the other test modules.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import checks
import convgrad
import oracle
from checks import methods
from convgrad._dtypes import all_finite
from convgrad._plan import Planner
from samples import Case
from strategies import budget, conv_cases, general_cases
from tally import checked_against

NONFINITE = (np.inf, -np.inf, np.nan)
OPS = ("forward", "input_grad", "filter_grad")


def kind(a):
    """0 finite, 1 NaN, 2 +inf, 3 -inf, per element."""
    a = np.asarray(a, dtype=np.float64)
    return np.select([np.isnan(a), np.isposinf(a), np.isneginf(a)], [1, 2, 3], 0)


def assert_same_kinds(got, want, what):
    g, w = kind(got), kind(want)
    assert g.shape == w.shape, (what, g.shape, w.shape)
    wrong = np.flatnonzero(g != w)
    assert wrong.size == 0, (f"{what}: {wrong.size} of {g.size} outputs differ from the direct sum's "
                             f"(0 finite, 1 NaN, 2 +inf, 3 -inf): first at {wrong[0]}, got "
                             f"{g.flat[wrong[0]]}, want {w.flat[wrong[0]]}")


@st.composite
def spoiled(draw, a: np.ndarray, most: int = 3) -> np.ndarray:
    """``a`` with up to ``most`` samples replaced by inf, -inf or NaN (a copy)."""
    a = a.copy()
    if a.size:
        for _ in range(draw(st.integers(0, most))):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(NONFINITE))
    return a


def ieee(a):
    """``a`` as Python floats: the oracle's sums then multiply every pair, where BLAS (which
    NumPy's float dot calls) may skip a zero factor and lose the NaN of inf * 0."""
    return np.asarray(a, dtype=np.float64).astype(object)


def oracle_results(case, x, w, dy):
    fmt, geo = case.data_format, case.geometry
    xf, wf, dyf = (ieee(a) for a in (oracle.x_to_first(x, fmt), oracle.w_to_first(w, fmt),
                                     oracle.x_to_first(dy, fmt)))
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 and inf - inf are the point
        return {"forward": oracle.x_from_first(oracle.conv(xf, wf, **geo), fmt),
                "input_grad": oracle.x_from_first(oracle.input_grad(dyf, wf, xf.shape, **geo), fmt),
                "filter_grad": oracle.w_from_first(oracle.filter_grad(xf, dyf, wf.shape, **geo), fmt)}


# NumPy's warnings for inf * 0: the values are checked
run_op = np.errstate(invalid="ignore", over="ignore")(checks.run_op)


def operands(op, x, w, dy):
    return {"forward": (x, w), "input_grad": (dy, w), "filter_grad": (x, dy)}[op]


def check_every_method(case, x, w, dy, ops=OPS):
    """Every method's non-finite outputs are the oracle's; an engine that declines says why
    (for operands with inf or NaN, an engine that would not keep them says so). Returns the
    number of (method, op) results compared."""
    want = oracle_results(case, x, w, dy)
    compared = 0
    for op in ops:
        finite = all(all_finite(a) for a in operands(op, x, w, dy))
        for method in methods():
            try:
                got = run_op(op, x, w, dy, method, case.kwargs)
            except ValueError as e:
                assert method != "auto", e
                assert re.search(rf"method='{method}' cannot run this {op}", str(e)), e
                if method in ("fft", "winograd") and not finite and "non-finite" not in str(e):
                    with pytest.raises(ValueError, match=f"method='{method}' cannot run this {op}"):
                        run_op(op, *(np.nan_to_num(a) for a in (x, w, dy)), method, case.kwargs)
                continue
            assert_same_kinds(got, want[op], f"method={method!r} {op}")
            compared += 1
    return compared


@st.composite
def spoiled_cases(draw):
    case = draw(conv_cases(min_batch=1))
    x, w, dy = case.arrays(draw(st.integers(0, 2**16)))
    # Values of both signs, so that +inf and -inf meet in one sum; sometimes exact zeros in w,
    # so that an inf in x meets a zero tap.
    if draw(st.booleans()):
        w = np.where(np.abs(w) < 0.5, 0.0, w)
    return case, draw(spoiled(x)), draw(spoiled(w, 2)), draw(spoiled(dy))


@budget(125)
@given(spoiled_cases())
@checked_against("oracle", capability="nonfinite")
def test_every_engine_puts_inf_and_nan_where_the_direct_sum_does(drawn):
    case, x, w, dy = drawn
    assert check_every_method(case, x, w, dy) >= 3  # auto, at least, ran each op


@pytest.mark.parametrize("channels_last", [False, True])
def test_winograd_skipped_for_nonfinite_and_auto_keeps_the_direct_sum(channels_last):
    """Winograd runs 3x3 stride-1 convs: one inf would spread over its tile."""
    rng = np.random.default_rng(3)
    fmt = "channels_last" if channels_last else "channels_first"
    case_x, case_w = ((2, 10, 9, 3), (3, 3, 3, 4)) if channels_last else ((2, 3, 10, 9), (4, 3, 3, 3))
    case = Case("winograd", case_x, case_w, {"padding": 1, "data_format": fmt})
    x, w, dy = case.arrays(4)
    x.flat[rng.integers(x.size, size=3)] = [np.inf, -np.inf, np.nan]
    dy.flat[rng.integers(dy.size)] = np.inf
    assert check_every_method(case, x, w, dy) >= 3
    for op in ("forward", "input_grad"):
        with pytest.raises(ValueError, match=f"method='winograd' cannot run this {op}: non-finite input"):
            run_op(op, x, w, dy, "winograd", case.kwargs)
        run_op(op, np.nan_to_num(x), w, np.nan_to_num(dy), "winograd", case.kwargs)  # finite: it runs


def test_one_inf_under_a_large_kernel_stays_in_its_windows():
    """The issue's case: one inf in a 48x48 input, a positive 31x31 kernel: inf exactly in the
    outputs whose window holds it, finite elsewhere, under every method, before and after the
    same conv runs on finite values, and with a fresh planner of each JIT policy."""
    rng = np.random.default_rng(0)
    x = rng.random((1, 1, 48, 48))
    w = rng.random((1, 1, 31, 31)) + 0.1
    bad = x.copy()
    bad[0, 0, 20, 30] = np.inf
    want = oracle.conv(ieee(bad), ieee(w), padding="same")
    assert 0 < (kind(want) == 2).sum() < want.size and (kind(want) == 1).sum() == 0
    conv = np.errstate(invalid="ignore")(convgrad.conv)
    first = conv(bad, w, padding="same")
    assert_same_kinds(first, want, "auto, first call")
    conv(x, w, padding="same")  # the finite call keeps its own plan
    assert_same_kinds(conv(bad, w, padding="same"), want, "auto, after a finite call")
    np.testing.assert_array_equal(conv(bad, w, padding="same"), first)
    g = convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding="same")
    xl, wl = np.ascontiguousarray(bad.transpose(0, 2, 3, 1)), np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    for jit in ("lazy", "eager", "never"):
        plan = Planner(jit).plan("forward", g, np.dtype(np.float64), "auto", 2**31)
        with np.errstate(invalid="ignore"):
            assert_same_kinds(plan(xl, wl).transpose(0, 3, 1, 2), want, f"jit={jit!r}")
    case = Case("one inf", x.shape, w.shape, {"padding": "same"})
    check_every_method(case, bad, w, np.ones_like(want), ops=("forward",))


def test_the_plan_says_why_an_engine_is_skipped():
    g = convgrad.ConvGeometry.for_conv((1, 1, 48, 48), (1, 1, 31, 31))
    plan = convgrad.make_plan("forward", g, np.float64, "fft", 2**31)
    x, w = np.ones((1, 48, 48, 1)), np.ones((31, 31, 1, 1))
    assert np.isfinite(plan(x, w)).all()
    x[0, 5, 5, 0] = np.nan
    with pytest.raises(ValueError, match="cannot run this forward: non-finite input: fft skipped"):
        plan(x, w)
    # the non-finite plan itself: auto's finite pick may keep inf and NaN (depthwise, with one
    # channel) and need none
    auto = Planner().plan("forward", g, np.dtype(np.float64), "auto", 2**31, finite=False)
    assert auto.finite is False and auto.chosen.engine not in ("fft", "winograd")
    verdicts = auto.verdicts()
    assert verdicts["fft"] == {"eligible": False, "reason": "non-finite input: fft skipped (its transform "
                               "mixes every tap: one inf or NaN makes every output NaN)"}
    assert "fft: non-finite input: fft skipped" in auto.reason and "non-finite input" in str(auto)


def test_prepared_conv_keeps_the_direct_sum():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 20, 20)), rng.standard_normal((4, 3, 9, 9))
    x[1, 2, 3, 4], w[0, 1, 2, 2] = -np.inf, np.nan
    dy = rng.standard_normal((2, 4, 20, 20))
    dy[0, 3, 0, 0] = np.inf
    p = convgrad.prepare(x.shape, w.shape, padding=4)
    with np.errstate(invalid="ignore", over="ignore"):
        xo, wo, dyo = ieee(x), ieee(w), ieee(dy)
        assert_same_kinds(p(x, w), oracle.conv(xo, wo, padding=4), "forward")
        assert_same_kinds(p.input_grad(dy, w), oracle.input_grad(dyo, wo, x.shape, padding=4), "input_grad")
        dw = oracle.filter_grad(xo, dyo, w.shape, padding=4)
        assert_same_kinds(p.filter_grad(x, dy), dw, "filter_grad")


@budget(30)
@given(st.sampled_from([np.float16, np.float32, np.float64, np.int32, np.int64]),
       st.lists(st.sampled_from([0.0, 1.5, -2.0, 6e4, np.inf, -np.inf, np.nan]), max_size=6))
def test_all_finite_is_isfinite_all(dtype, values):
    a = np.array(values, dtype=np.float64)
    if np.dtype(dtype).kind == "i":
        a = np.nan_to_num(a, posinf=1, neginf=-1).astype(dtype)
        assert all_finite(a)
    else:
        a = a.astype(dtype)
        assert all_finite(a) == bool(np.isfinite(a).all())
        assert all_finite(a[::-2].reshape(-1, 1)) == bool(np.isfinite(a[::-2]).all())


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("method", ["gather", "im2col"])
def test_a_non_finite_plan_taking_the_other_layout_gets_its_operands_in_it(op, method):
    """The non-finite plan may run an engine that takes the other layout than the plan it stands
    in for: its operands and result are transposed, and the values are the oracle's."""
    from convgrad._plan import _in_layout

    case = Case("layouts", (2, 3, 7, 6), (4, 3, 3, 2), {"padding": 1, "stride": (2, 1)})
    x, w, dy = case.arrays(9)
    want = oracle_results(case, x, w, dy)[op]
    g = convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding=1, stride=(2, 1))
    for layout in ("channels_first", "channels_last"):
        plan = convgrad.make_plan(op, g, np.float64, method, 2**31, layout)
        other = "channels_last" if plan.takes == "channels_first" else "channels_first"
        b_role = "x" if op == "filter_grad" else "w"
        a, b = operands(op, x, w, dy)
        if other == "channels_last":
            a = oracle.x_from_first(a, "channels_last")
            b = (oracle.x_from_first if b_role == "x" else oracle.w_from_first)(b, "channels_last")
        got = _in_layout(plan, other, np.ascontiguousarray(a), np.ascontiguousarray(b))
        if other == "channels_last":
            got = (oracle.w_to_first if op == "filter_grad" else oracle.x_to_first)(got, "channels_last")
        np.testing.assert_allclose(got, np.asarray(want, np.float64), rtol=1e-10, atol=1e-12)


@st.composite
def spoiled_general_cases(draw):
    """A conv_general case with input dilation or batch groups (the paths that rewrite the conv
    or run each gradient as _transpose's conv), and operands with up to 3 infs or NaNs each."""
    case = draw(general_cases())
    kw = case.kwargs
    dilated = any(v > 1 for v in np.broadcast_to(kw["lhs_dilation"], (len(case.w_shape) - 2,)))
    assume(dilated or kw["batch_group_count"] > 1)
    assume(0 not in case.x_shape and 0 not in case.w_shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x, w = rng.standard_normal(case.x_shape), rng.standard_normal(case.w_shape)
    if draw(st.booleans()):
        w = np.where(np.abs(w) < 0.5, 0.0, w)  # zero taps, for an inf in x to meet
    return case, draw(spoiled(x)), draw(spoiled(w, 2)), rng


@budget(80)
@given(spoiled_general_cases(), st.data())
@checked_against("oracle", capability="nonfinite")
def test_conv_general_with_input_dilation_puts_inf_and_nan_where_the_direct_sum_does(drawn, data):
    """conv_general and its vjp under every method: inf and NaN where the oracle's direct sum
    (in Python floats) has them. The holes of input dilation are read as zeros by the forward
    (as the padding), and a gradient's products that land on them are dropped, as the oracle's
    scatter drops them."""
    case, x, w, rng = drawn
    fmt, kw = case.data_format, case.geometry
    xf, wf = oracle.x_to_first(x, fmt), oracle.w_to_first(w, fmt)
    with np.errstate(invalid="ignore", over="ignore"):
        want_y = oracle.conv_general(ieee(xf), ieee(wf), **kw)
    dyf = data.draw(spoiled(rng.standard_normal(want_y.shape)))
    geo = {"stride": kw["stride"], "padding": kw["padding"], "dilation": kw["rhs_dilation"],
           "groups": kw["feature_group_count"], "lhs_dilation": kw["lhs_dilation"],
           "batch_group_count": kw["batch_group_count"]}
    with np.errstate(invalid="ignore", over="ignore"):
        want_dx = oracle.input_grad(ieee(dyf), ieee(wf), xf.shape, **geo)
        want_dw = oracle.filter_grad(ieee(xf), ieee(dyf), wf.shape, **geo)
    dy = oracle.x_from_first(dyf, fmt)
    ran = 0
    for method in methods():
        try:
            with np.errstate(invalid="ignore", over="ignore"):
                y = convgrad.conv_general(x, w, method=method, **case.kwargs)
                _, pullback = convgrad.conv_general_vjp(x, w, method=method, **case.kwargs)
                dx, dw = pullback(dy)
        except ValueError as e:
            assert method != "auto", e
            assert f"method={method!r} cannot run" in str(e), e
            continue
        assert_same_kinds(oracle.x_to_first(y, fmt), want_y, f"method={method!r} conv_general")
        assert_same_kinds(oracle.x_to_first(dx, fmt), want_dx, f"method={method!r} dx")
        assert_same_kinds(oracle.w_to_first(dw, fmt), want_dw, f"method={method!r} dw")
        ran += 1
    assert ran >= 2  # auto and gather, at least


@given(data=st.data())
@budget(16)
@checked_against("oracle")
def test_the_one_pass_winograd_finds_an_inf_or_nan_in_x_itself(data):
    """The one-pass Winograd kernel checks what its tiles read (the corners of its transformed
    tiles sum every input of the tile), so its plans check only w before a call: one inf, -inf or
    NaN anywhere in x (dy for the input gradient), either layout, dilation 1 or 2, float32 or 64,
    sends the call to the plan that keeps the direct sum's inf and NaN (one attempt of the kernel,
    then the fallback); finite operands run the kernel once."""
    from unittest import mock

    from convgrad.engines import Refusal, _kernels

    op = data.draw(st.sampled_from(["forward", "input_grad"]))
    fmt = data.draw(st.sampled_from(["channels_first", "channels_last"]))
    d = data.draw(st.integers(1, 2))
    h, w_ = data.draw(st.integers(8, 19)), data.draw(st.integers(8, 19))
    dtype = np.dtype(data.draw(st.sampled_from([np.float32, np.float64])))
    geom = convgrad.ConvGeometry.for_conv((2, 16, h, w_), (16, 16, 3, 3), padding=d, dilation=d)

    class Winograd(Planner):  # auto, with Winograd the cheapest for finite operands
        def _prepare(self, engine, op, geom, dtype, limit, layout="channels_last", finite=True):
            if finite and engine.name != "winograd":
                return Refusal(engine.name, "not under test")
            return super()._prepare(engine, op, geom, dtype, limit, layout, finite)

    plan = Winograd("eager").plan(op, geom, dtype, "auto", 2**31, fmt)
    assert plan.chosen.engine == "winograd" and plan.chosen.choices.get("one_pass")
    assert plan.checks == (1,)  # w only
    rng = np.random.default_rng(h * 100 + w_)
    x, w = rng.standard_normal(geom.x_shape()), rng.standard_normal(geom.w_shape())
    dy = rng.standard_normal(geom.y_shape())
    a = x if op == "forward" else dy
    finite = a.copy()
    a.flat[data.draw(st.integers(0, a.size - 1))] = data.draw(st.sampled_from(NONFINITE))
    want = (oracle.conv(ieee(a), ieee(w), padding=d, dilation=d) if op == "forward" else
            oracle.input_grad(ieee(a), ieee(w), x.shape, padding=d, dilation=d))
    to = (lambda v: np.ascontiguousarray(np.moveaxis(v, 1, -1))) if fmt == "channels_last" else np.asarray
    wf = np.ascontiguousarray(w.transpose(2, 3, 1, 0)) if fmt == "channels_last" else w
    back = (lambda v: np.moveaxis(v, -1, 1)) if fmt == "channels_last" else (lambda v: v)
    runs = []
    real = _kernels.winograd43

    def counted(*args):
        runs.append(1)
        return real(*args)

    counted.signatures, counted.py_func, counted._cache = real.signatures, real.py_func, real._cache
    with mock.patch.object(_kernels, "winograd43", counted), np.errstate(invalid="ignore", over="ignore"):
        got = back(plan(to(a.astype(dtype)), wf.astype(dtype)))
        assert len(runs) == 1  # the kernel tried, found it, and the fallback ran
        assert_same_kinds(got, want, f"{op} {fmt} dilation {d} {dtype}")
        runs.clear()
        plan(to(finite.astype(dtype)), wf.astype(dtype))
        assert len(runs) == 1
