"""The planner and its plans: every engine's verdict kept, the plan runs, planning is pure, the JIT
policy and the registry are explicit, and a conv prepared once runs without re-planning."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

import convgrad
import oracle
from checks import assert_close
from convgrad._layout import x_from_last, x_to_last
from convgrad._plan import Planner
from convgrad.engines import Prepared, Refusal, _registry, engine_names, register_engine

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
GEOM = convgrad.ConvGeometry.for_conv((2, 3, 12, 11), (4, 3, 3, 3), padding=1)


def test_a_plan_holds_every_engines_verdict_and_keeps_the_cheapest():
    plan = Planner().plan("forward", GEOM, F64)
    assert sorted(c.engine for c in plan.candidates) == sorted(engine_names())
    ready = [c for c in plan.candidates if isinstance(c, Prepared)]
    refused = {c.engine: c.reason for c in plan.candidates if isinstance(c, Refusal)}
    assert plan.chosen is ready[0] and plan.chosen.seconds == min(c.seconds for c in ready)
    assert refused == {"subpixel": "needs a stride > 1",
                       "depthwise": "needs a depthwise conv (groups == in_channels)"}
    assert all(c.seconds > 0 and c.workspace >= 0 for c in ready)
    # printed like a path: one line per engine, with its estimate and workspace, or why not
    lines = str(plan).splitlines()
    for c in plan.candidates:
        (line,) = [t for t in lines if t[2:].startswith(c.engine + " ")]
        assert (c.reason in line) if isinstance(c, Refusal) else (f"{c.workspace:,}" in line)
    assert [t[0] for t in lines if t[2:].split(" ")[0] in engine_names()].count("*") == 1
    # the reason is read from the candidates: the cheapest first, then every refusal
    assert plan.reason.startswith(f"cheapest estimate of {plan.chosen.engine} ")
    assert all(f"{e}: {r}" in plan.reason.split("not eligible: ")[1] for e, r in refused.items())


def test_an_engine_whose_workspace_does_not_fit_is_a_refusal_in_the_plan():
    geom = convgrad.ConvGeometry.for_conv((2, 16, 30, 30), (16, 16, 3, 3), padding=1)
    full = Planner().plan("forward", geom, F64)
    fits = {c.engine: c.workspace for c in full.candidates if isinstance(c, Prepared)}
    limit = sorted(fits.values())[len(fits) // 2]  # about half the engines fit
    plan = Planner().plan("forward", geom, F64, "auto", limit)
    for c in plan.candidates:
        if c.engine in fits and fits[c.engine] > limit:
            assert isinstance(c, Refusal) and "workspace budget" in c.reason, c
        elif c.engine in fits:
            assert isinstance(c, Prepared)
    assert plan.workspace_bytes <= limit


@pytest.mark.parametrize("op", ["forward", "input_grad", "filter_grad"])
def test_a_plan_runs_on_channels_last_operands(op):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(GEOM.x_shape()), rng.standard_normal(GEOM.w_shape())
    dy = rng.standard_normal(GEOM.y_shape())
    plan = convgrad.make_plan(op, GEOM, F64, "auto", 2**31)
    last = {"x": np.ascontiguousarray(x_to_last(x, "channels_first")),
            "dy": np.ascontiguousarray(x_to_last(dy, "channels_first")),
            "w": np.ascontiguousarray(w.transpose(2, 3, 1, 0))}
    if op == "forward":
        got, want = x_from_last(plan(last["x"], last["w"]), "channels_first"), oracle.conv(x, w, padding=1)
    elif op == "input_grad":
        got = x_from_last(plan(last["dy"], last["w"]), "channels_first")
        want = oracle.input_grad(dy, w, x.shape, padding=1)
    else:
        got = plan(last["x"], last["dy"]).transpose(3, 2, 0, 1)
        want = oracle.filter_grad(x, dy, w.shape, padding=1)
    assert_close(got, want)


def test_identical_float32_calls_are_bitwise_identical():
    """Under the default policy a plan, once made for a request, is kept: no engine switch on
    the third call (which used to load the compiled kernels and change the last bits)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    geom = convgrad.ConvGeometry.for_conv(x.shape, w.shape, padding=1)
    plans = set()
    results = []
    for _ in range(5):
        results.append(convgrad.conv(x, w, padding=1))
        plans.add(id(convgrad.make_plan("forward", geom, F32, "auto", convgrad.DEFAULT_WORKSPACE_BYTES)))
    assert len(plans) == 1
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    assert_close(results[0], oracle.conv(x.astype(np.float64), w.astype(np.float64), padding=1),
                 rtol=1e-4, atol=1e-4)


def test_jit_never_refuses_the_engines_that_run_compiled_kernels():
    depthwise = convgrad.ConvGeometry.for_conv((3, 24, 20, 20), (24, 1, 3, 3), groups=24)
    for engine, geom in [("depthwise", depthwise), ("tiled", convgrad.ConvGeometry.for_conv((2, 16, 20, 20),
                                                                                         (16, 16, 3, 3)))]:
        plan = Planner("never").plan("forward", geom, F32)
        refused = {c.engine: c.reason for c in plan.candidates if isinstance(c, Refusal)}
        assert refused[engine] == "runs compiled kernels (jit='never')"
        assert plan.chosen.engine != engine and np.isfinite(plan.estimated_seconds)
    with pytest.raises(ValueError, match=r"jit='sometimes'; expected one of \('lazy', 'eager'"):
        Planner("sometimes")


class _Slow:
    """An engine that claims to cost nothing and sleeps: only measuring finds it out."""

    name = "slow"

    def prepare(self, op, geom, dtype, limit, planner):
        fast = _registry()["im2col"].prepare(op, geom, dtype, limit, planner)

        def run(a, b):
            time.sleep(0.02)
            return fast(a, b)

        return Prepared(self.name, 0.0, 0, run)


@pytest.fixture
def slow_engine():
    register_engine(_Slow())
    yield
    _registry().pop("slow")
    convgrad._plan.default_planner().clear()


def test_measure_times_the_candidates_and_keeps_the_fastest(slow_engine):
    assert Planner().plan("forward", GEOM, F64).chosen.engine == "slow"  # by its estimate
    plan = Planner().plan("forward", GEOM, F64, "measure")
    assert plan.chosen.engine != "slow" and plan.reason.startswith("fastest measured")
    measured = {c.engine: c.seconds for c in plan.candidates if isinstance(c, Prepared)}
    assert measured["slow"] >= 0.02 and plan.estimated_seconds == min(measured.values())
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(GEOM.x_shape()), rng.standard_normal(GEOM.w_shape())
    assert_close(convgrad.conv(x, w, padding=1, method="measure"), oracle.conv(x, w, padding=1))


def test_register_engine_refuses_a_name_it_has_unless_told_to_replace(slow_engine):
    with pytest.raises(ValueError, match=r"named 'im2col' is registered already \(engines: \('im2col', "):
        register_engine(type("Im2col", (_Slow,), {"name": "im2col"})())
    replacement = _Slow()
    register_engine(replacement, replace=True)
    assert _registry()["slow"] is replacement


class _Spy:
    """An engine that records the geometries it is asked to prepare."""

    name = "spy"

    def __init__(self):
        self.seen = []

    def prepare(self, op, geom, dtype, limit, planner):
        self.seen.append(geom)
        return Refusal(self.name, "only watches")


@pytest.mark.parametrize("method", ["auto", "measure", "im2col"])
def test_an_empty_geometry_is_refused_before_any_engine_sees_it(method):
    geom = convgrad.ConvGeometry.for_general((1, 2, 2, 5), (3, 2, 3, 3))  # a kernel taller than x
    assert geom.out_spatial == (0, 3)
    spy = _Spy()
    register_engine(spy)
    try:
        with pytest.raises(ValueError, match=r"empty output, out_spatial=\(0, 3\): no filter_grad"):
            Planner().plan("filter_grad", geom, F64, method)
    finally:
        _registry().pop("spy")
    assert spy.seen == []
    # the public op short-circuits it: JAX's zero-size result
    y = convgrad.conv_general(np.ones(geom.x_shape()), np.ones(geom.w_shape()))
    assert y.shape == (1, 3, 0, 3)


def test_importing_the_planner_loads_no_engine_numba_or_scipy_fft():
    code = ("import sys, convgrad._plan, convgrad.engines; print(sorted(m for m in sys.modules "
            "if m.startswith(('numba', 'scipy.fft', 'convgrad.engines.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['convgrad.engines._machine']"  # the calibration's reader: json, no engine


def test_subpixel_plans_its_phases_with_the_planner_it_is_given():
    geom = convgrad.ConvGeometry.for_conv((2, 4, 13, 12), (5, 4, 4, 3), stride=(2, 3), padding=1)
    planner = Planner()
    plan = planner.plan("forward", geom, F64, "subpixel")
    assert len(plan.choices["pieces"]) == 2 * 3  # min(k, s) phases per axis
    assert all(name in engine_names() for name in plan.choices["pieces"])
    assert any(key[3] == "auto" for key in planner._plans)  # the pieces' plans, kept by this planner
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(geom.x_shape()), rng.standard_normal(geom.w_shape())
    kw = {"stride": (2, 3), "padding": 1}
    assert_close(convgrad.conv(x, w, method="subpixel", **kw), oracle.conv(x, w, **kw))


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    ((1, 1, 16, 16), (1, 1, 3, 3), {}),
    ((2, 3, 9, 8), (4, 3, 3, 2), {"padding": ((2, -1), (1, 3)), "stride": (2, 1), "dilation": (1, 2)}),
    ((3, 2, 11), (2, 2, 4), {"padding": "same", "dilation": 2}),
    ((1, 2, 4, 5, 3), (3, 2, 2, 3, 2), {"padding": 1, "stride": (1, 2, 1)}),
    ((2, 0, 5, 5), (2, 0, 3, 3), {"padding": 1}),  # no input channels
    ((0, 2, 5, 5), (2, 2, 3, 3), {}),  # no batch
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_engine_three_ops(x_shape, w_shape, kw, dtype):
    """The tiny-problem engine (im2col by precomputed indices, scatter by bincount)."""
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    geom = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    dy = rng.standard_normal(geom.y_shape())
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {}
    xd, wd, dyd = (a.astype(dtype) for a in (x, w, dy))
    got = convgrad.conv(xd, wd, method="gather", **kw)
    assert got.dtype == dtype
    assert_close(got, oracle.conv(x, w, **kw), **tol)
    assert_close(convgrad.conv_input_grad(dyd, wd, x_shape, method="gather", **kw),
                 oracle.input_grad(dy, w, x_shape, **kw), **tol)
    assert_close(convgrad.conv_filter_grad(xd, dyd, w_shape, method="gather", **kw),
                 oracle.filter_grad(x, dy, w_shape, **kw), **tol)


def test_gather_engine_refuses_what_it_does_not_run():
    big = convgrad.ConvGeometry.for_conv((8, 16, 32, 32), (16, 16, 3, 3), padding=1)
    grouped = convgrad.ConvGeometry.for_conv((1, 4, 8, 8), (4, 2, 3, 3), groups=2)
    reasons = {name: Planner().plan("forward", g, dt).verdicts()["gather"]["reason"]
               for name, g, dt in [("big", big, F64), ("grouped", grouped, F64), ("int", GEOM, np.int64)]}
    assert reasons == {"big": "for at most 32768 im2col elements, not 1179648",
                       "grouped": "needs groups == 1",
                       "int": "sums in float64 (bincount): integer results would not be exact"}


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
def test_a_prepared_conv_matches_conv_and_its_gradients(fmt):
    rng = np.random.default_rng(5)
    kw = {"stride": (2, 1), "padding": ((1, 0), (2, 2)), "dilation": (1, 2), "groups": 2, "data_format": fmt}
    geom = convgrad.ConvGeometry.for_conv((2, 4, 9, 8), (6, 2, 3, 2),
                                          **(kw | {"data_format": "channels_first"}))
    x_shape, w_shape, y_shape = geom.x_shape(fmt), geom.w_shape(fmt), geom.y_shape(fmt)
    p = convgrad.prepare(x_shape, w_shape, np.float32, **kw)
    for _ in range(2):  # new operands each call
        x, w, dy = (rng.standard_normal(s).astype(np.float32) for s in (x_shape, w_shape, y_shape))
        np.testing.assert_array_equal(p(x, w), convgrad.conv(x, w, **kw))
        np.testing.assert_array_equal(p.input_grad(dy, w), convgrad.conv_input_grad(dy, w, x_shape, **kw))
        np.testing.assert_array_equal(p.filter_grad(x, dy), convgrad.conv_filter_grad(x, dy, w_shape, **kw))
    assert p(x, w).dtype == np.float32 and p.plan("forward") is p.plan("forward")


def test_a_prepared_conv_refuses_other_shapes_and_dtypes():
    p = convgrad.prepare((1, 2, 6, 6), (3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"x.shape=\(1, 2, 6, 7\) is not the prepared \(1, 2, 6, 6\)"):
        p(np.ones((1, 2, 6, 7)), np.ones((3, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"w.shape=\(3, 2, 2, 3\) is not the prepared \(3, 2, 3, 3\)"):
        p(np.ones((1, 2, 6, 6)), np.ones((3, 2, 2, 3)))
    with pytest.raises(TypeError, match=r"dtype=complex\d+ is not an integer, floating, complex64 or "):
        convgrad.prepare((1, 2, 6, 6), (3, 2, 3, 3), np.clongdouble)
    with pytest.raises(TypeError, match=r"x has complex dtype complex128, but the conv was prepared for f"):
        p(np.ones((1, 2, 6, 6), complex), np.ones((3, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"x has 2 channels but groups \* w in_channels = 4 \* 2 = 8"):
        convgrad.prepare((1, 2, 6, 6), (3, 2, 3, 3), groups=4)


@pytest.fixture
def packaged_calibration():
    yield
    convgrad.engines.load_calibration()


def test_a_calibration_file_sets_the_cost_model(tmp_path, packaged_calibration):
    """A refitted file (as calibrate.py --write makes) changes the estimates by its factors, for
    plans made after it is loaded; a file missing a figure is refused, naming it."""
    import json

    from convgrad.engines import _machine

    doc = json.loads(_machine.DEFAULT_PATH.read_text())
    before = Planner().plan("forward", GEOM, F64, "offset_gemm").estimated_seconds
    assert convgrad.make_plan("forward", GEOM, F64, "offset_gemm", 2**31).estimated_seconds == before
    doc["engines"]["offset_gemm"]["FITTED"]["forward"] *= 3
    doc["provenance"] = {"date": "2030-01-01"}
    (tmp_path / "cal.json").write_text(json.dumps(doc))
    model = convgrad.engines.load_calibration(tmp_path / "cal.json")
    assert model.provenance["date"] == "2030-01-01"
    after = convgrad.make_plan("forward", GEOM, F64, "offset_gemm", 2**31).estimated_seconds
    assert after == pytest.approx(3 * before)
    del doc["engines"]["tiled"]["TILE_SECONDS"]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"bad.json' lacks tiled's figures \['TILE_SECONDS'\]"):
        convgrad.engines.load_calibration(tmp_path / "bad.json")
    assert _machine.model() is model  # the refused file left the model in use alone


@pytest.mark.parametrize("module", ["_plan", "_prepared"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"convgrad.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
