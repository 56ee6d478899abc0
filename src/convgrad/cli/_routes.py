"""The routes ``convgrad check`` compares: every way of computing d_x, d_w and d_b.

No I/O here: a route is a name and a function of the example arrays; ``run_check`` computes each
one, compares it with the vector-Jacobian product and returns the rows that ``check`` prints.

The explicit routes spell the transposition identities out in NumPy, independently of
``convgrad.identities`` (which runs them through ``conv_general``):

* d_x: zero-insert dy by the stride (s - 1 zeros between samples), pad it by
  ``ConvGeometry.input_grad_padding`` (negative pads crop), and correlate it with the filter
  flipped in every spatial axis, its input and output channels swapped within each group, at the
  forward's kernel dilation and stride 1.
* d_w: pad x by ``ConvGeometry.filter_grad_padding``, swap batch and channels in x and in dy, and
  correlate x with dy as the kernel: dy dilated by the stride, windows the kernel dilation apart;
  one correlation per group.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .. import identities
from .._budget import workspace_limit
from .._dtypes import result_dtype
from .._formulas import dilate_dim
from .._geometry import ConvGeometry
from .._ops import conv, conv_bias_grad, conv_filter_grad, conv_input_grad, conv_transpose, conv_vjp
from .._plan import make_plan
from ..engines import engine_names, get_engine
from ..testing import check_grads, dot_test
from ._args import GeometryArgs

GRADIENTS = ("d_x", "d_w", "d_b")
# Default tolerance on max |route - vjp| / max |vjp|, per dtype: float64 rounding on sums of
# thousands of terms stays near 1e-13; float32 near 1e-6; float16 (computed in float32 by
# convgrad, natively by the frameworks) near 1e-3.
RTOL = {"float64": 1e-10, "float32": 1e-4, "float16": 1e-2}


@dataclass(frozen=True)
class Problem:
    """The example of one check: arrays in the user's data format, and the geometry."""

    args: GeometryArgs
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray
    dy: np.ndarray

    @property
    def geom(self) -> ConvGeometry:
        return self.args.geometry

    @property
    def fmt(self) -> str:
        return self.args.data_format

    @property
    def kwargs(self) -> dict[str, object]:
        return self.args.kwargs

    # Channels-first views (N, C, *S), (O, C/G, *K), (N, O, *out) for the routes that want them.
    def cf(self, name: str) -> np.ndarray:
        a = getattr(self, name)
        if self.fmt == "channels_first" or a.ndim == 1:
            return a
        if name == "w":
            return np.moveaxis(a, (-1, -2), (0, 1))
        return np.moveaxis(a, -1, 1)

    def from_cf(self, name: str, a: np.ndarray) -> np.ndarray:
        """A channels-first result for ``name`` ('x' or 'w') back in the user's format."""
        if self.fmt == "channels_first" or a.ndim == 1:
            return a
        if name == "w":
            return np.moveaxis(a, (0, 1), (-1, -2))
        return np.moveaxis(a, 1, -1)

    def cl(self, name: str) -> np.ndarray:
        """Channels-last views (N, *S, C), (*K, C/G, O), (N, *out, O)."""
        a = getattr(self, name)
        if self.fmt == "channels_last" or a.ndim == 1:
            return a
        if name == "w":
            return np.moveaxis(a, (0, 1), (-1, -2))
        return np.moveaxis(a, 1, -1)

    def from_cl(self, name: str, a: np.ndarray) -> np.ndarray:
        if self.fmt == "channels_last" or a.ndim == 1:
            return a
        if name == "w":
            return np.moveaxis(a, (-1, -2), (0, 1))
        return np.moveaxis(a, -1, 1)


def make_problem(args: GeometryArgs, values: str = "int") -> Problem:
    """Random x, w, bias and dy: integers in [0, 10) as in the seed note, or standard normal."""
    rng = np.random.default_rng(args.seed)
    g, fmt, dt = args.geometry, args.data_format, args.dtype

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        a = rng.integers(10, size=shape) if values == "int" else rng.standard_normal(shape)
        return a.astype(dt)

    return Problem(args, draw(g.x_shape(fmt)), draw(g.w_shape(fmt)), draw((g.out_channels,)),
                   draw(g.y_shape(fmt)))


@dataclass(frozen=True)
class Route:
    """One way of computing a gradient; ``compute`` None means not available (``note`` says why)."""

    gradient: str
    method: str
    compute: Callable[[Problem], np.ndarray] | None
    note: str = ""
    rtol: float | None = None  # None: the check's tolerance
    dtype: str | None = None  # the dtype it computes in, when not the check's


def not_available(gradient: str, method: str, why: str) -> Route:
    return Route(gradient, method, None, why)


# --- padding in NumPy --------------------------------------------------------------------------
def pad_or_crop(a: np.ndarray, pairs: Iterable[tuple[int, int]], first_axis: int) -> np.ndarray:
    """Zero-pad (positive) or crop (negative) the axes from ``first_axis`` on by (before, after)."""
    pairs = list(pairs)
    a = np.pad(a, [(0, 0)] * first_axis + [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
               + [(0, 0)] * (a.ndim - first_axis - len(pairs)))
    index = [slice(None)] * a.ndim
    for i, (lo, hi) in enumerate(pairs):
        index[first_axis + i] = slice(max(-lo, 0), a.shape[first_axis + i] - max(-hi, 0))
    return a[tuple(index)]


def zero_insert(a: np.ndarray, factors: tuple[int, ...], first_axis: int) -> np.ndarray:
    """Spread the samples of the axes from ``first_axis`` on ``factors`` apart (f - 1 zeros between)."""
    shape = list(a.shape)
    for i, f in enumerate(factors):
        shape[first_axis + i] = dilate_dim(a.shape[first_axis + i], f)
    out = np.zeros(shape, dtype=a.dtype)
    index = [slice(None)] * a.ndim
    for i, f in enumerate(factors):
        index[first_axis + i] = slice(None, None, f)
    out[tuple(index)] = a
    return out


def flip_swap(w: np.ndarray, groups: int) -> np.ndarray:
    """Channels-first (O, C/G, *K) -> (C, O/G, *K), flipped in space, in/out swapped per group."""
    o, cg, *k = w.shape
    grouped = w.reshape(groups, o // groups, cg, *k).swapaxes(1, 2)  # (G, C/G, O/G, *K)
    flipped = grouped[(Ellipsis, *(slice(None, None, -1),) * len(k))]
    return flipped.reshape(groups * cg, o // groups, *k)


# --- the explicit NumPy routes ----------------------------------------------------------------
def dx_explicit(p: Problem) -> np.ndarray:
    """Full correlation of the zero-inserted, padded dy with the flipped, swapped filter."""
    g = p.geom
    dy = zero_insert(p.cf("dy"), g.stride, 2)
    dy = pad_or_crop(dy, g.input_grad_padding, 2)
    w = flip_swap(p.cf("w"), g.feature_group_count)
    dx = conv(dy, w, padding="valid", dilation=g.rhs_dilation, groups=g.feature_group_count)
    return p.from_cf("x", dx)


def dw_explicit(p: Problem) -> np.ndarray:
    """Correlation of x (batch <-> channels) with dy (batch <-> channels) as the kernel, per group."""
    g = p.geom
    x = pad_or_crop(p.cf("x"), g.filter_grad_padding, 2)
    dy = p.cf("dy")
    G, cg, og = g.feature_group_count, g.filter_in_channels, g.out_channels // g.feature_group_count
    blocks = []
    for i in range(G):
        xt = x[:, i * cg:(i + 1) * cg].swapaxes(0, 1)  # (C/G, N, *S)
        dyt = dy[:, i * og:(i + 1) * og].swapaxes(0, 1)  # (O/G, N, *out): a filter
        r = conv(xt, dyt, stride=g.rhs_dilation, dilation=g.stride, padding="valid")  # (C/G, O/G, *K)
        blocks.append(r.swapaxes(0, 1))
    return p.from_cf("w", np.concatenate(blocks, axis=0))


def db_explicit(p: Problem) -> np.ndarray:
    dy = p.cf("dy")
    return dy.sum(axis=(0, *range(2, dy.ndim)))


def core_routes(p: Problem) -> list[Route]:
    """Every convgrad route: the explicit identities, convgrad.identities, each engine, the transpose."""
    _, comp = result_dtype(p.x, p.w)
    limit = workspace_limit(None)
    routes = [
        Route("d_x", "NumPy: dy dilated, padded, conv with flipped w", dx_explicit),
        Route("d_x", "identities.input_grad_via_conv", lambda q: identities.input_grad_via_conv(
            q.dy, q.w, q.x.shape, **q.kwargs)),
    ]
    d_w = [
        Route("d_w", "NumPy: conv of x with dy as kernel (N <-> C)", dw_explicit),
        Route("d_w", "identities.filter_grad_via_conv", lambda q: identities.filter_grad_via_conv(
            q.x, q.dy, q.w.shape, **q.kwargs)),
    ]
    for gradient, op, out in (("d_x", "input_grad", routes), ("d_w", "filter_grad", d_w)):
        auto = make_plan(op, p.geom, comp, "auto", limit).engine.name
        for name in engine_names():
            why_not = get_engine(name).unsupported(p.geom, op, comp)
            fn = "conv_input_grad" if gradient == "d_x" else "conv_filter_grad"
            if why_not:
                out.append(not_available(gradient, f"{fn}(method={name!r})", f"engine: {why_not}"))
            else:
                out.append(_engine(gradient, name, auto))
    routes.append(Route("d_x", "conv_transpose(dy, w, output_shape=x.shape)", lambda q: conv_transpose(
        q.dy, q.w, output_shape=q.x.shape, **q.kwargs)))
    d_b = [
        Route("d_b", "conv_bias_grad(dy)", lambda q: conv_bias_grad(q.dy, data_format=q.fmt)),
        Route("d_b", "NumPy: dy summed over batch and positions", db_explicit),
    ]
    return routes + d_w + d_b


def _engine(gradient: str, name: str, auto: str) -> Route:
    fn = "conv_input_grad" if gradient == "d_x" else "conv_filter_grad"

    def run(p: Problem) -> np.ndarray:
        if gradient == "d_x":
            return conv_input_grad(p.dy, p.w, p.x.shape, method=name, **p.kwargs)
        return conv_filter_grad(p.x, p.dy, p.w.shape, method=name, **p.kwargs)

    return Route(gradient, f"{fn}(method={name!r})", run, "planner's choice" if name == auto else "")


# --- running and comparing ---------------------------------------------------------------------
@dataclass
class Row:
    """One line of the table."""

    gradient: str
    method: str
    status: str  # 'pass' | 'FAIL' | 'n/a' | 'error' | 'reference'
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    rtol: float | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "n/a", "reference")

    def as_dict(self) -> dict[str, object]:
        return {"gradient": self.gradient, "method": self.method, "status": self.status,
                "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
                "rtol": self.rtol, "note": self.note}


@dataclass
class CheckReport:
    problem: Problem
    rtol: float
    rows: list[Row] = field(default_factory=list)
    refs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.rows)


def compare(route: Route, value: object, ref: np.ndarray, rtol: float) -> Row:
    """max |value - ref| and that over max |ref|; shapes must match exactly."""
    a = np.asarray(value)
    tol = route.rtol if route.rtol is not None else rtol
    if a.shape != ref.shape:
        return Row(route.gradient, route.method, "FAIL", None, None, tol,
                   f"shape {a.shape}, expected {ref.shape}")
    if a.size == 0:
        return Row(route.gradient, route.method, "pass", 0.0, 0.0, tol, route.note)
    diff = np.abs(a.astype(np.float64) - ref.astype(np.float64))
    err = float(diff.max()) if np.all(np.isfinite(diff)) else math.inf
    scale = float(np.abs(ref.astype(np.float64)).max())
    rel = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
    return Row(route.gradient, route.method, "pass" if rel <= tol else "FAIL", err, rel, tol, route.note)


def run_check(p: Problem, routes: list[Route], rtol: float,
              step: Callable[[str], None] = lambda _: None) -> CheckReport:
    """Compare every route with conv_vjp's gradients, then the finite-difference and dot tests."""
    report = CheckReport(p, rtol)
    step("conv_vjp (reference)")
    _, vjp = conv_vjp(p.x, p.w, p.b, **p.kwargs)
    refs = dict(zip(GRADIENTS, vjp(p.dy)))
    report.refs = refs
    for gradient in GRADIENTS:
        report.rows.append(Row(gradient, "conv_vjp (reference)", "reference", None, None, rtol,
                               f"shape {refs[gradient].shape}"))
    for route in sorted(routes, key=lambda r: GRADIENTS.index(r.gradient)):
        step(route.method)
        if route.compute is None:
            report.rows.append(Row(route.gradient, route.method, "n/a", note=route.note))
            continue
        try:
            value = route.compute(p)
        except Exception as e:  # a route that breaks is reported in its row, never a traceback
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            report.rows.append(Row(route.gradient, route.method, "error", rtol=route.rtol or rtol,
                                   note=f"{type(e).__name__}: {first[:160]}"))
            continue
        report.rows.append(compare(route, value, refs[route.gradient], rtol))
    step("finite differences")
    report.rows.extend(_finite_differences(p, rtol))
    step("dot test")
    report.rows.extend(_dot_test(p, rtol))
    report.rows.sort(key=lambda r: _ORDER.index(r.gradient))
    return report


_ORDER = (*GRADIENTS, "finite differences", "dot test")


def _finite_differences(p: Problem, rtol: float) -> list[Row]:
    """Central differences along one random direction per argument, in float64 with a large step
    (conv is bilinear, so the difference is exact up to rounding)."""
    res = check_grads(p.x, p.w, seed=p.args.seed, raise_on_failure=False, **p.kwargs)
    tol = rtol
    rows = []
    for what, ana, num in (
            ("<d_x, v> vs (L(x + v) - L(x - v)) / 2", res.input_analytic, res.input_numeric),
            ("<d_w, v> vs (L(w + v) - L(w - v)) / 2", res.filter_analytic, res.filter_numeric)):
        err = abs(ana - num)
        rel = err / max(abs(ana), abs(num), np.finfo(float).tiny)
        rows.append(Row("finite differences", what, "pass" if rel <= tol else "FAIL", err, rel, tol,
                        f"analytic {ana:.6g}, numeric {num:.6g} (float64)"))
    return rows


def _dot_test(p: Problem, rtol: float) -> list[Row]:
    """<conv(x, w), dy> against <x, d_x> and <w, d_w> on random normal arrays of the check's dtype."""
    res = dot_test(p.x.shape, p.w.shape, dtype=p.args.dtype, rtol=rtol, seed=p.args.seed,
                   raise_on_failure=False, **p.kwargs)
    rows = []
    for what, side, rel in (("<x, d_x> vs <conv(x, w), dy>", res.input_side, res.input_error),
                            ("<w, d_w> vs <conv(x, w), dy>", res.filter_side, res.filter_error)):
        err = abs(res.forward - side)
        rows.append(Row("dot test", what, "pass" if rel <= rtol else "FAIL", err, rel, rtol,
                        f"<conv(x, w), dy> = {res.forward:.6g}"))
    return rows
