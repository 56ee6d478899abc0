"""Checks anyone can run: on convgrad's own ops and on a user's code.

* ``dot_test``: the adjoint identity, of any linear operator pair (``dot_test(op, adjoint,
  x_shape, y_shape)``) or of convgrad's conv and its gradients (``dot_test(x_shape, w_shape,
  **geometry)``).
* ``check_grads``: finite differences at the dtype used, of any function that returns its
  vector-Jacobian product (``check_grads(f, args, order, modes)``), or of convgrad's conv
  (``check_grads(x, w, **geometry)``).
* ``assert_conv_matches``: a user's conv (or its gradient), in a framework's convention, against
  convgrad on random geometries drawn by ``convgrad.testing.strategies`` (hypothesis strategies,
  imported on first use: ``pip install "convgrad[testing]"``).
* ``check_routes``: many ways of computing the gradients against ``conv_vjp``'s (``convgrad check``).

The dot test and finite differences are identities, not comparisons with another
implementation, so they hold any code to the definition of its gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .. import _canon
from .._budget import check_fits, contiguous, workspace_limit
from .._dtypes import as_array
from .._geometry import ConvGeometry
from .._ops import conv, conv_filter_grad, conv_input_grad, conv_vjp
from .._prepared import prepare
from .._tolerance import RTOL as RTOL  # the one tolerance table, re-exported
from .._tolerance import tolerance
from ._matches import assert_conv_matches
from ._operators import (
    Comparison,
    FunctionGradCheckResult,
    OperatorDotTestResult,
    _random,
    function_check_grads,
    operator_dot_test,
)

__all__ = ["CONVENTIONS", "RTOL", "CheckReport", "Comparison", "DotTestResult", "FunctionGradCheckResult",
           "GradCheckResult", "OperatorDotTestResult", "Problem", "Route", "RouteRefused", "Row",
           "assert_conv_matches", "check_grads", "check_routes", "compare", "dot_test", "not_available"]


def __dir__() -> list[str]:  # dir() lists the API (and the strategies submodule) only
    return [*__all__, "strategies"]


def __getattr__(name: str) -> object:
    if name == "strategies":  # hypothesis loads only when the strategies are asked for
        import importlib

        return importlib.import_module(f"{__name__}.strategies")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class DotTestResult:
    """<conv(x, w), dy> against <x, dx(dy)> and <w, dw(x, dy)>.

    Errors are relative to ``scale`` = |x| |w| |dy| (2-norms), which bounds the trilinear form
    the three inner products compute (up to the square root of the kernel size): rounding is
    proportional to it, and it stays meaningful when the exact inner product is zero.
    """

    forward: float | complex  # complex for complex dtypes (vdot conjugates its left operand)
    input_side: float | complex
    filter_side: float | complex
    scale: float
    rtol: float

    @property
    def input_error(self) -> float:
        return abs(self.forward - self.input_side) / max(self.scale, np.finfo(float).tiny)

    @property
    def filter_error(self) -> float:
        return abs(self.forward - self.filter_side) / max(self.scale, np.finfo(float).tiny)

    @property
    def passed(self) -> bool:
        return self.input_error <= self.rtol and self.filter_error <= self.rtol

    def __str__(self) -> str:
        return (f"<conv(x, w), dy> = {self.forward!r}; <x, conv_input_grad(dy)> = {self.input_side!r} "
                f"(error {self.input_error:.2e}); <w, conv_filter_grad(x, dy)> = {self.filter_side!r} "
                f"(error {self.filter_error:.2e}); errors relative to the bound {self.scale:.3g}; "
                f"rtol {self.rtol:g}")


def dot_test(*args: object, **kwargs: object) -> OperatorDotTestResult | DotTestResult:
    """The adjoint identity on random arrays, in two forms (told apart by whether the first
    argument is callable).

    ``dot_test(op, adjoint, x_shape, y_shape, *, dtype=np.float64, rng=None, rtol=None,
    raise_on_failure=True)``: any linear operator ``op`` (x ``x_shape`` -> y ``y_shape``) and its
    ``adjoint`` (y -> x): ``<op(x), y> == <x, adjoint(y)>`` with ``<a, b> = np.vdot(a, b)`` (a
    conjugated; for complex dtypes ``adjoint`` is the conjugate transpose), x and y standard
    normal of ``dtype`` (``rng``: a Generator or a seed; None is seed 0), summed in double
    precision. Errors are relative to max(|op(x)| |y|, |x| |adjoint(y)|); default rtol 1e-10
    (float64, complex128), 1e-4 (float32, complex64), 1e-2 (float16). Returns an
    ``OperatorDotTestResult`` (both inner products).

    ``dot_test(x_shape, w_shape, *, dtype=np.float64, rtol=None, seed=0, raise_on_failure=True,
    **geometry)``: convgrad's conv and both its gradients, ``<conv(x, w), dy> == <x,
    conv_input_grad(dy, w)> == <w, conv_filter_grad(x, dy)>``; default rtol ``RTOL`` of the dtype.
    Returns a ``DotTestResult`` (all three inner products).

    Either form raises AssertionError with the inner products when it fails (unless
    ``raise_on_failure`` is False).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.arange(6.0).reshape(2, 3)
    >>> dot_test(lambda x: a @ x, lambda y: a.T @ y, (3,), (2,)).passed
    True
    >>> dot_test(lambda x: a @ x, lambda y: a[:, ::-1].T @ y, (3,), (2,), raise_on_failure=False).passed
    False
    """
    if args and callable(args[0]):
        return operator_dot_test(*args, **kwargs)
    return _conv_dot_test(*args, **kwargs)


def _conv_dot_test(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], *, dtype: object = np.float64,
    rtol: float | None = None, seed: int | None = 0, raise_on_failure: bool = True,
    **geometry: object,
) -> DotTestResult:
    """``dot_test``'s convenience form: convgrad's conv and its two gradients (complex dtypes:
    complex arrays, summed in complex128; the gradients' adjoints pass)."""
    # every argument checked, and the random arrays' sizes against the budget, before drawing them
    geom = prepare(x_shape, w_shape, dtype, **geometry).geometry
    dt, limit = np.dtype(dtype), workspace_limit(geometry.get("workspace_bytes"))
    for what, shape in (("x", geom.x_shape("channels_first")), ("w", geom.w_shape("channels_first")),
                        ("dy", geom.y_shape("channels_first"))):
        check_fits(f"the random {what} {shape}", math.prod(shape) * (16 if dt.kind == "c" else 8), limit)
    rtol = tolerance(dt) if rtol is None else _canon.real_number("rtol", rtol)
    raise_on_failure = _canon.flag("raise_on_failure", raise_on_failure)
    rng = np.random.default_rng(_canon.seed(seed))
    x, w = (_random(rng, s, dt) for s in (x_shape, w_shape))
    y = conv(x, w, **geometry)
    dy = _random(rng, y.shape, dt)
    dx = conv_input_grad(dy, w, x.shape, **geometry)
    dw = conv_filter_grad(x, dy, w.shape, **geometry)
    wide = np.complex128 if dt.kind == "c" else np.float64

    def inner(a: np.ndarray, b: np.ndarray) -> float | complex:
        v = np.vdot(a.astype(wide).ravel(), b.astype(wide).ravel())
        return complex(v) if dt.kind == "c" else float(v)

    def norm(a: np.ndarray) -> float:
        return float(np.linalg.norm(a.astype(wide).ravel()))

    scale = norm(x) * norm(w) * norm(dy)
    result = DotTestResult(inner(y, dy), inner(x, dx), inner(w, dw), scale, rtol)
    if raise_on_failure and not result.passed:
        raise AssertionError(f"dot test failed: {result}")
    return result


@dataclass(frozen=True)
class GradCheckResult:
    """Directional derivatives: analytic <grad, v> against the central difference.

    Errors are relative to the size of what is differenced (``input_scale`` = |r| |w| (|x| +
    eps |v|) / eps, likewise for the filter), so an exact zero is no failure.
    """

    input_analytic: float
    input_numeric: float
    input_scale: float
    filter_analytic: float
    filter_numeric: float
    filter_scale: float
    rtol: float

    @staticmethod
    def _err(a: float, n: float, scale: float) -> float:
        return abs(a - n) / max(abs(a), abs(n), scale, np.finfo(float).tiny)

    @property
    def input_error(self) -> float:
        return self._err(self.input_analytic, self.input_numeric, self.input_scale)

    @property
    def filter_error(self) -> float:
        return self._err(self.filter_analytic, self.filter_numeric, self.filter_scale)

    @property
    def passed(self) -> bool:
        return self.input_error <= self.rtol and self.filter_error <= self.rtol

    def __str__(self) -> str:
        return (f"input: analytic {self.input_analytic!r} vs finite difference {self.input_numeric!r} "
                f"(error {self.input_error:.2e}); filter: analytic {self.filter_analytic!r} vs finite "
                f"difference {self.filter_numeric!r} (error {self.filter_error:.2e}); rtol {self.rtol:g}")


def check_grads(*args: object, **kwargs: object) -> FunctionGradCheckResult | GradCheckResult:
    """Finite differences against derivatives, in two forms (told apart by whether the first
    argument is callable).

    ``check_grads(f, args, order=1, modes=None, *, jvp=None, dtype=None, eps=None, rtol=None,
    rng=None, raise_on_failure=True)``: a user's function ``f(*args) -> (value, vjp)``, as
    convgrad's ``*_vjp`` functions return it (``vjp(ct)`` gives one cotangent per argument, None
    for one not differentiated; trailing Nones are ignored), so ``check_grads(convgrad.conv_vjp,
    (x, w))`` works as is. convgrad has no autodiff: the derivative code under test is what the
    user passes, as with ``torch.autograd.gradcheck`` it would be a custom Function's backward.

    * 'rev' (always available): ``Re <vjp(u), v>`` against ``Re <u, (f(a + eps v) - f(a - eps v))
      / 2 eps>`` for a random cotangent u and direction v (``jax.test_util.check_grads``'s
      check; real parts, so complex ops follow PyTorch's conjugate convention).
    * 'fwd' (with ``jvp(primals, tangents) -> (value, tangent_out)``, ``jax.jvp``'s form): the
      whole tangent against the central difference.
    * ``order=2``: also the derivative of those results along a second direction (step
      sqrt(eps)) against f's mixed second difference: derivative code right only at ``args``
      fails.

    Everything runs in ``dtype`` (default: the arguments' common dtype): float32 is checked at
    float32. Default steps eps (relative to each argument's RMS, at least 1) and rtols, from
    rounding u / eps against truncation eps^2 (jax.test_util's gradient tolerances):
    float64 6e-6 / 1e-5, float32 4e-3 / 2e-3, float16 0.1 / 5e-2; order 2: 1e-4, 1e-2, 0.2.
    Errors are relative to |u| |J v| (rev) or |J v| (fwd). For a (bi)linear f any step is exact
    up to rounding: ``eps=1.0`` avoids cancellation. Modes default to ('fwd', 'rev') with a jvp,
    else ('rev',). Returns a ``FunctionGradCheckResult``.

    ``check_grads(x, w, *, eps=1.0, rtol=1e-8, seed=0, raise_on_failure=True, **geometry)``:
    convgrad's conv, in float64, along one random direction per argument. Returns a
    ``GradCheckResult``.

    Either form raises AssertionError with the numbers when it fails (unless
    ``raise_on_failure`` is False).

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    >>> w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    >>> check_grads(lambda x, w: convgrad.conv_vjp(x, w, padding=1), (x, w), order=2).passed
    True
    """
    if args and callable(args[0]):
        return function_check_grads(*args, **kwargs)
    return _conv_check_grads(*args, **kwargs)


def _conv_check_grads(
    x: object, w: object, *, eps: float = 1.0, rtol: float = 1e-8, seed: int | None = 0,
    raise_on_failure: bool = True, **geometry: object,
) -> GradCheckResult:
    """``check_grads``'s convenience form: finite differences along one random direction per
    argument, in float64.

    For L = <conv(x, w), r> with a random r: (L(x + eps v) - L(x - eps v)) / (2 eps) against
    <conv_input_grad(r), v>, and likewise for w. conv is linear in each argument, so the central
    difference is exact up to rounding for any eps: a large step (1.0) avoids cancellation.
    Complex x or w (in complex128): Wirtinger calculus on the real loss L = Re <r, conv(x, w)>,
    r and v complex; its gradient as a complex vector is the adjoint, checked as Re <grad, v>.
    """
    eps = _canon.real_number("eps", eps, positive=True, finite=True)
    rtol = _canon.real_number("rtol", rtol)
    raise_on_failure = _canon.flag("raise_on_failure", raise_on_failure)
    rng = np.random.default_rng(_canon.seed(seed))
    limit = workspace_limit(geometry.get("workspace_bytes"))
    # the float64 (complex128) copies, checked before making them
    xa, wa = (as_array(name, a) for name, a in (("x", x), ("w", w)))
    dt = np.dtype(np.complex128 if "c" in (xa.dtype.kind, wa.dtype.kind) else np.float64)
    xa, wa = (contiguous(name, a, dt, limit) for name, a in (("x", xa), ("w", wa)))
    y = conv(xa, wa, **geometry)
    r = _random(rng, y.shape, dt)
    vx, vw = _random(rng, xa.shape, dt), _random(rng, wa.shape, dt)

    def loss(xx: np.ndarray, ww: np.ndarray) -> float:
        return float(np.real(np.vdot(r.ravel(), conv(xx, ww, **geometry).ravel())))

    def along(g: np.ndarray, v: np.ndarray) -> float:
        return float(np.real(np.vdot(g.ravel(), v.ravel())))

    num_x = (loss(xa + eps * vx, wa) - loss(xa - eps * vx, wa)) / (2 * eps)
    num_w = (loss(xa, wa + eps * vw) - loss(xa, wa - eps * vw)) / (2 * eps)
    ana_x = along(conv_input_grad(r, wa, xa.shape, **geometry), vx)
    ana_w = along(conv_filter_grad(xa, r, wa.shape, **geometry), vw)
    norm = np.linalg.norm
    scale_x = float(norm(r) * norm(wa) * (norm(xa) + eps * norm(vx)) / eps)
    scale_w = float(norm(r) * norm(xa) * (norm(wa) + eps * norm(vw)) / eps)
    result = GradCheckResult(ana_x, num_x, scale_x, ana_w, num_w, scale_w, rtol)
    if raise_on_failure and not result.passed:
        raise AssertionError(f"gradient check failed: {result}")
    return result


# --- every route against the vector-Jacobian product ---------------------------------------------
GRADIENTS = ("d_x", "d_w", "d_b")


@dataclass(frozen=True)
class Problem:
    """The example arrays of one check, in ``data_format``, and their geometry.

    ``x`` (N, C, *S) or (N, *S, C); ``w`` (O, C/G, *K) or (*K, C/G, O); ``b`` (O,); ``dy`` the
    output's shape. ``kwargs`` are the keywords of ``conv`` that give ``geom`` (and
    ``padding_mode``).
    """

    x: np.ndarray
    w: np.ndarray
    b: np.ndarray
    dy: np.ndarray
    kwargs: Mapping[str, object]
    seed: int = 0

    @property
    def fmt(self) -> str:
        return _canon.data_format(self.kwargs.get("data_format", "channels_first"))

    @cached_property
    def geom(self) -> ConvGeometry:
        """The conv's geometry (its pads: those the padding mode fills)."""
        kw = {k: v for k, v in self.kwargs.items() if k not in ("data_format", "padding_mode")}
        return ConvGeometry.for_conv(self.x.shape, self.w.shape, data_format=self.fmt, **kw)

    @property
    def padding_mode(self) -> str:
        """What fills the pads, canonical: 'zeros' (the default), 'reflect', 'symmetric',
        'replicate' or 'circular'."""
        from .._padmode import canonical

        return canonical(self.kwargs.get("padding_mode", "zeros"))

    @property
    def dtype(self) -> np.dtype:
        return self.x.dtype

    def view(self, name: str, fmt: str) -> np.ndarray:
        """x, w or dy in ``fmt``: (N, C, *S), (O, C/G, *K), (N, O, *out) channels-first."""
        return self._move(getattr(self, name), name, fmt, back=False)

    def back(self, name: str, a: np.ndarray, fmt: str) -> np.ndarray:
        """A result for ``name`` ('x' or 'w') in ``fmt`` back in the problem's format."""
        return self._move(a, name, fmt, back=True)

    def _move(self, a: np.ndarray, name: str, fmt: str, back: bool) -> np.ndarray:
        if self.fmt == fmt or a.ndim == 1:
            return a
        src, dst = ((-1, -2), (0, 1)) if name == "w" else ((-1,), (1,))  # channels-last -> first
        if (fmt == "channels_last") != back:
            src, dst = dst, src
        return np.moveaxis(a, src, dst)


# The two gradients of a complex conv y = A x: the adjoint A^H dy (PyTorch's autograd, convgrad's
# default) and the plain transpose A^T dy (JAX's vjp, ``convention="transpose"``). Equal for real values.
CONVENTIONS = {"adjoint": "adjoint A^H dy: PyTorch autograd, convgrad's default",
               "transpose": "transpose A^T dy: jax.vjp, convention='transpose'"}


@dataclass(frozen=True)
class Route:
    """One way of computing a gradient ('d_x', 'd_w' or 'd_b') of a ``Problem``.

    ``compute`` None means not available, and ``note`` says why; ``rtol`` None means the
    check's tolerance; ``dtype`` names the dtype it computes in, when not the problem's;
    ``convention`` the complex gradient it computes ('adjoint' or 'transpose', see
    ``CONVENTIONS``), compared with ``conv_vjp``'s of that convention.
    """

    gradient: str
    method: str
    compute: Callable[[Problem], np.ndarray] | None
    note: str = ""
    rtol: float | None = None
    dtype: str | None = None
    convention: str = "adjoint"


class RouteRefused(Exception):
    """Raised by a route whose framework refuses the problem (complex values, say): the row is
    'n/a' with this message, not an error."""


def not_available(gradient: str, method: str, why: str) -> Route:
    """A route that cannot run here (a framework not installed, ...): its row says ``why``."""
    return Route(gradient, method, None, why)


@dataclass
class Row:
    """One route's result: ``status`` 'pass', 'FAIL', 'n/a', 'error' or 'reference';
    ``convention`` the complex gradient it was compared with ('' for real values or n/a)."""

    gradient: str
    method: str
    status: str
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    rtol: float | None = None
    note: str = ""
    convention: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("pass", "n/a", "reference")


@dataclass
class CheckReport:
    """The rows of ``check_routes``, by gradient, then finite differences and the dot test;
    ``refs`` holds conv_vjp's d_x, d_w and d_b (the adjoint's), ``transpose_refs`` those of
    ``convention='transpose'`` (complex problems only)."""

    problem: Problem
    rtol: float
    rows: list[Row] = field(default_factory=list)
    refs: dict[str, np.ndarray] = field(default_factory=dict)
    transpose_refs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def complex(self) -> bool:
        return self.problem.dtype.kind == "c"

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.rows)

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.rows) for s in ("pass", "FAIL", "error", "n/a")}


def compare(route: Route, value: object, ref: np.ndarray, rtol: float) -> Row:
    """max |value - ref| and that over max |ref| (complex: the modulus of the difference);
    shapes must match exactly."""
    a = np.asarray(value)
    tol = route.rtol if route.rtol is not None else rtol
    conv = route.convention if "c" in (a.dtype.kind, ref.dtype.kind) else ""
    if a.shape != ref.shape:
        return Row(route.gradient, route.method, "FAIL", None, None, tol,
                   f"shape {a.shape}, expected {ref.shape}", conv)
    if a.size == 0:
        return Row(route.gradient, route.method, "pass", 0.0, 0.0, tol, route.note, conv)
    wide = np.complex128 if conv else np.float64  # never drop an imaginary part
    diff = np.abs(a.astype(wide) - ref.astype(wide))
    err = float(diff.max()) if np.all(np.isfinite(diff)) else math.inf
    scale = float(np.abs(ref.astype(wide)).max())
    rel = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
    status = "pass" if rel <= tol else "FAIL"
    return Row(route.gradient, route.method, status, err, rel, tol, route.note, conv)


def check_routes(problem: Problem, routes: list[Route], rtol: float | None = None,
                 step: Callable[[str], None] = lambda _: None) -> CheckReport:
    """Compare every route with ``conv_vjp``'s gradients, then run finite differences and the
    dot test on the problem's geometry.

    A route that raises is an 'error' row, never an exception. ``rtol`` defaults to
    ``tolerance(problem.dtype)``; ``step(name)`` is called before each computation (progress).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    >>> p = Problem(x, w, np.zeros(3), rng.standard_normal((1, 3, 3, 3)), {"padding": 0})
    >>> route = Route("d_x", "conv_input_grad", lambda q: conv_input_grad(q.dy, q.w, q.x.shape))
    >>> check_routes(p, [route]).passed
    True
    """
    p = problem
    rtol = tolerance(p.dtype) if rtol is None else rtol
    report = CheckReport(p, rtol)
    cplx = report.complex
    step("conv_vjp (reference)")
    _, vjp = conv_vjp(p.x, p.w, p.b, **p.kwargs)
    report.refs = dict(zip(GRADIENTS, vjp(p.dy)))
    refs = {"adjoint": report.refs}
    if cplx:  # each route is compared with the gradient of the convention it computes
        _, vjp_t = conv_vjp(p.x, p.w, p.b, convention="transpose", **p.kwargs)
        report.transpose_refs = refs["transpose"] = dict(zip(GRADIENTS, vjp_t(p.dy)))
    for convention, by_gradient in refs.items():
        name = "conv_vjp (reference)" if convention == "adjoint" else \
            "conv_vjp(convention='transpose') (reference)"
        for gradient, ref in by_gradient.items():
            report.rows.append(Row(gradient, name, "reference", None, None, rtol, f"shape {ref.shape}",
                                   convention if cplx else ""))
    for route in sorted(routes, key=lambda r: GRADIENTS.index(r.gradient)):
        step(route.method)
        if route.compute is None:
            report.rows.append(Row(route.gradient, route.method, "n/a", note=route.note))
            continue
        try:
            value = route.compute(p)
        except RouteRefused as e:  # the framework refuses this problem: said, not an error
            report.rows.append(Row(route.gradient, route.method, "n/a", note=str(e)))
            continue
        except Exception as e:  # a route that breaks is reported in its row, never a traceback
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            report.rows.append(Row(route.gradient, route.method, "error", rtol=route.rtol or rtol,
                                   note=f"{type(e).__name__}: {first[:160]}"))
            continue
        ref = refs.get(route.convention, report.refs)[route.gradient]
        report.rows.append(compare(route, value, ref, rtol))
    step("finite differences and dot test")
    # Central differences along one random direction per argument, in float64 with a large step
    # (conv is bilinear, so the difference is exact up to rounding; complex: Wirtinger calculus on
    # the real loss Re <r, y>, which checks the adjoint), and the dot test on random normal arrays
    # of the problem's dtype.
    fd = _conv_check_grads(p.x, p.w, seed=p.seed, raise_on_failure=False, **p.kwargs)
    dt = _conv_dot_test(p.x.shape, p.w.shape, dtype=p.dtype, rtol=rtol, seed=p.seed, raise_on_failure=False,
                  **p.kwargs)
    adjoint = "adjoint" if cplx else ""
    for what, ana, num in (("<d_x, v> vs (L(x + v) - L(x - v)) / 2", fd.input_analytic, fd.input_numeric),
                           ("<d_w, v> vs (L(w + v) - L(w - v)) / 2", fd.filter_analytic, fd.filter_numeric)):
        rel = abs(ana - num) / max(abs(ana), abs(num), np.finfo(float).tiny)
        report.rows.append(Row("finite differences", what, "pass" if rel <= rtol else "FAIL", abs(ana - num),
                               rel, rtol, f"analytic {ana:.6g}, numeric {num:.6g} "
                               f"({'complex128, Re <d, v>' if cplx else 'float64'})", adjoint))
    for what, side, rel in (("<x, d_x> vs <conv(x, w), dy>", dt.input_side, dt.input_error),
                            ("<w, d_w> vs <conv(x, w), dy>", dt.filter_side, dt.filter_error)):
        report.rows.append(Row("dot test", what, "pass" if rel <= rtol else "FAIL", abs(dt.forward - side),
                               rel, rtol, f"<conv(x, w), dy> = {dt.forward:.6g}", adjoint))
    if cplx:
        report.rows += _transpose_dot_test(p, rtol)
    order = (*GRADIENTS, "finite differences", "dot test")
    ranks = {"adjoint": 0, "transpose": 1, "": 2}  # complex: each convention's rows together
    report.rows.sort(key=lambda r: (order.index(r.gradient), ranks[r.convention]))
    return report


def _transpose_dot_test(p: Problem, rtol: float) -> list[Row]:
    """The transpose convention's dot test, on the problem's arrays: the bilinear products (no
    conjugate) ``sum(x * d_x) == sum(conv(x, w) * dy) == sum(w * d_w)``, relative to |x| |w| |dy|."""
    kw = dict(p.kwargs)
    x, w, dy = (a.astype(np.complex128) for a in (p.x, p.w, p.dy))
    forward = complex(np.sum(conv(x, w, **kw) * dy))
    sides = (("<x, d_x> vs <conv(x, w), dy>, bilinear",
              np.sum(x * conv_input_grad(dy, w, x.shape, convention="transpose", **kw))),
             ("<w, d_w> vs <conv(x, w), dy>, bilinear",
              np.sum(w * conv_filter_grad(x, dy, w.shape, convention="transpose", **kw))))
    scale = max(float(np.linalg.norm(x) * np.linalg.norm(w) * np.linalg.norm(dy)), np.finfo(float).tiny)
    rows = []
    for what, side in sides:
        err = abs(forward - complex(side))
        rows.append(Row("dot test", what, "pass" if err / scale <= rtol else "FAIL", err, err / scale, rtol,
                        f"sum(conv(x, w) * dy) = {forward:.6g}", "transpose"))
    return rows
