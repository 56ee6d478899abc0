"""Checks of a user's own linear operators and derivatives: the dot test of any operator pair
(PyLops's ``dottest``) and finite differences of any function that returns its vector-Jacobian
product, in the dtype the user computes in (``jax.test_util.check_grads``, ``torch.autograd.gradcheck``).

Inner products are summed in float64 (complex128) so that only the operators' own rounding is
measured; the arrays they are given are of the dtype under test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .. import _canon
from .._budget import check_fits, workspace_limit

# The dot test's default rtol, relative to |Ax| |y| (Cauchy-Schwarz bounds both sides by it):
# rounding of sums of thousands of terms stays below these by two orders of magnitude.
DOT_RTOL = {"float16": 1e-2, "float32": 1e-4, "float64": 1e-10}
# Finite differences at the dtype used: the step and the tolerance, per precision. The central
# difference's truncation error is O(eps^2) and its rounding O(u / eps) (u the unit roundoff), so
# eps ~ u^(1/3) (times the argument's scale) balances them, leaving an error of about u^(2/3)
# times the number of terms summed; the tolerances are jax.test_util's default_gradient_tolerance.
GRAD_EPS = {"float16": 0.1, "float32": 4e-3, "float64": 6e-6}
GRAD_RTOL = {"float16": 5e-2, "float32": 2e-3, "float64": 1e-5}
# Order 2 differences twice (step sqrt(eps)): rounding grows as u / eps, truncation as eps.
GRAD_RTOL2 = {"float16": 2e-1, "float32": 1e-2, "float64": 1e-4}
MODES = ("fwd", "rev")


def _real_name(dtype: np.dtype) -> str:
    """float32 for float32 and complex64, float64 for float64 and complex128."""
    return np.dtype(np.finfo(dtype).dtype).name


def _wide(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(np.complex128 if np.iscomplexobj(a) else np.float64).ravel()


def _vdot(a: np.ndarray, b: np.ndarray) -> complex:
    """<a, b> = sum(conj(a) * b), in double precision."""
    return complex(np.vdot(_wide(a), _wide(b)))


def _norm(a: np.ndarray) -> float:
    return float(np.linalg.norm(_wide(a)))


def _inexact(dtype: object, name: str = "dtype") -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}={dtype!r} is not a NumPy dtype") from None
    if dt.kind not in "fc":
        raise TypeError(f"{name}={dt} is not a floating or complex dtype")
    return dt


def _operand(name: str, value: object) -> np.ndarray:
    """An argument of ``f`` as an array of numbers (complex too), or a TypeError naming it."""
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} must be an array of numbers: {e}") from None
    if a.dtype.kind not in "biufc":
        raise TypeError(f"{name} has dtype {a.dtype}; expected numbers")
    return a


def _generator(rng: object) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng={rng!r} is not a numpy.random.Generator, an int seed or None")


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Standard normal entries of ``dtype`` (complex: independent real and imaginary parts)."""
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@dataclass(frozen=True)
class OperatorDotTestResult:
    """<A x, y> against <x, A^H y> for random x and y; ``error`` is their difference relative to
    ``scale`` = max(|A x| |y|, |x| |A^H y|), which bounds both (Cauchy-Schwarz) and stays
    meaningful when the inner product itself is near zero."""

    forward: complex
    adjoint: complex
    scale: float
    rtol: float

    @property
    def error(self) -> float:
        return abs(self.forward - self.adjoint) / max(self.scale, np.finfo(float).tiny)

    @property
    def passed(self) -> bool:
        return self.error <= self.rtol

    def __str__(self) -> str:
        def show(v: complex) -> str:
            return repr(v.real) if v.imag == 0 else repr(v)

        return (f"<A x, y> = {show(self.forward)}; <x, A^H y> = {show(self.adjoint)}; error "
                f"{self.error:.2e} relative to |A x| |y| = {self.scale:.3g}; rtol {self.rtol:g}")


def operator_dot_test(
    op: Callable[[np.ndarray], object], adjoint: Callable[[np.ndarray], object], x_shape: object,
    y_shape: object, *, dtype: object = np.float64, rng: object = None, rtol: float | None = None,
    raise_on_failure: bool = True,
) -> OperatorDotTestResult:
    """The dot test of a linear operator ``op`` and its ``adjoint``: <A x, y> == <x, A^H y>.

    x ``x_shape`` and y ``y_shape`` are standard normal of ``dtype`` (complex: both parts), and
    <a, b> is ``np.vdot(a, b)`` (conjugating a), summed in double precision, so a complex
    ``adjoint`` must be the conjugate transpose. Default rtol: ``DOT_RTOL`` of the precision.
    """
    if not callable(op):
        raise TypeError(f"op={op!r} is not callable")
    if not callable(adjoint):
        raise TypeError(f"adjoint={adjoint!r} is not callable")
    xs, ys = _canon.shape_tuple("x_shape", x_shape), _canon.shape_tuple("y_shape", y_shape)
    dt = _inexact(dtype)
    rtol = DOT_RTOL[_real_name(dt)] if rtol is None else _canon.real_number("rtol", rtol)
    raise_on_failure = _canon.flag("raise_on_failure", raise_on_failure)
    for name, shape in (("x", xs), ("y", ys)):  # drawn in float64 (twice for complex), then cast
        check_fits(f"the random {name} {shape}", math.prod(shape) * 8 * (1 + (dt.kind == "c")),
                   workspace_limit())
    gen = _generator(rng)
    x, y = _random(gen, xs, dt), _random(gen, ys, dt)
    ax, ahy = np.asarray(op(x.copy())), np.asarray(adjoint(y.copy()))
    if ax.shape != ys:
        raise AssertionError(f"op(x) has shape {ax.shape}, not y_shape={ys}")
    if ahy.shape != xs:
        raise AssertionError(f"adjoint(y) has shape {ahy.shape}, not x_shape={xs}")
    scale = max(_norm(ax) * _norm(y), _norm(x) * _norm(ahy))
    result = OperatorDotTestResult(_vdot(ax, y), _vdot(x, ahy), scale, rtol)
    if raise_on_failure and not result.passed:
        raise AssertionError(f"dot test failed: {result}")
    return result


# --- finite differences of a function and its derivatives ---------------------------------------
@dataclass(frozen=True)
class Comparison:
    """One derivative check: ``error`` = ``difference`` / ``scale``. For 'rev' the two sides are
    scalars (``difference`` = |analytic - numeric|); for 'fwd' they are vectors, shown by their
    norms, and ``difference`` is the norm of their difference."""

    what: str
    analytic: float
    numeric: float
    difference: float
    scale: float
    rtol: float

    @property
    def error(self) -> float:
        return self.difference / max(self.scale, np.finfo(float).tiny)

    @property
    def passed(self) -> bool:
        return self.error <= self.rtol

    def __str__(self) -> str:
        return (f"{self.what}: analytic {self.analytic!r} vs finite difference {self.numeric!r} "
                f"(error {self.error:.2e} relative to {self.scale:.3g}; rtol {self.rtol:g})")


@dataclass(frozen=True)
class FunctionGradCheckResult:
    """The comparisons ``check_grads`` made, in the order made; ``dtype`` is the one computed in."""

    comparisons: tuple[Comparison, ...]
    dtype: str
    eps: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    def __str__(self) -> str:
        return "; ".join(map(str, self.comparisons)) + f" ({self.dtype}, eps {self.eps:g})"


def _split(out: object) -> tuple[np.ndarray, Callable]:
    if not (isinstance(out, tuple) and len(out) == 2 and callable(out[1])):
        raise AssertionError("f(*args) must return (value, vjp), as convgrad's *_vjp functions do")
    return np.asarray(out[0]), out[1]


def _pullback(f: Callable, args: tuple[np.ndarray, ...], ct: np.ndarray) -> tuple:
    """vjp(ct) of f at args: one cotangent (or None) per argument; extra trailing Nones (conv_vjp's
    db without bias) are dropped."""
    grads = tuple(_split(f(*args))[1](ct))
    if len(grads) < len(args) or any(g is not None for g in grads[len(args):]):
        raise AssertionError(f"vjp returned {len(grads)} cotangents for {len(args)} arguments")
    for i, (g, a) in enumerate(zip(grads, args)):
        if g is not None and np.shape(g) != a.shape:
            raise AssertionError(f"vjp's cotangent {i} has shape {np.shape(g)}, not args[{i}]'s {a.shape}")
    return grads[:len(args)]


def _pushforward(jvp: Callable, args: tuple[np.ndarray, ...], tangents: tuple) -> np.ndarray:
    out = jvp(args, tangents)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise AssertionError("jvp(primals, tangents) must return (value, tangent_out)")
    return _wide(out[1])


def _shift(args: tuple[np.ndarray, ...], direction: tuple, t: float) -> tuple[np.ndarray, ...]:
    return tuple((a + t * v).astype(a.dtype) for a, v in zip(args, direction))


def _nrm(a: np.ndarray) -> float:
    return float(np.linalg.norm(a))


def function_check_grads(
    f: Callable, args: Sequence[object], order: int = 1, modes: Sequence[str] | None = None, *,
    jvp: Callable | None = None, dtype: object = None, eps: float | None = None,
    rtol: float | None = None, rng: object = None, raise_on_failure: bool = True,
) -> FunctionGradCheckResult:
    """Finite differences of ``f`` at ``args``, in ``dtype``, against its vjp (and its jvp)."""
    if not callable(f):
        raise TypeError(f"f={f!r} is not callable")
    if _canon.as_int("order", order) not in (1, 2):
        raise ValueError(f"order={order!r}; expected 1 or 2")
    if modes is None:
        modes = ("fwd", "rev") if jvp is not None else ("rev",)
    if isinstance(modes, str) or not modes or any(m not in MODES for m in modes):
        raise ValueError(f"modes={modes!r}; expected a non-empty tuple of {MODES}")
    if jvp is not None and not callable(jvp):
        raise TypeError(f"jvp={jvp!r} is not callable")
    if "fwd" in modes and jvp is None:
        raise ValueError("modes includes 'fwd': pass jvp=callable(primals, tangents) -> (value, tangent_out)")
    if isinstance(args, np.ndarray) or not isinstance(args, (tuple, list)) or not args:
        raise TypeError(f"args must be a non-empty tuple of arrays, got {type(args).__name__}")
    arrays = [_operand(f"args[{i}]", a) for i, a in enumerate(args)]
    dt = _inexact(dtype if dtype is not None else np.result_type(*arrays), "dtype")
    prec = _real_name(dt)
    eps = GRAD_EPS[prec] if eps is None else _canon.real_number("eps", eps, positive=True, finite=True)
    default_rtol = (GRAD_RTOL if order == 1 else GRAD_RTOL2)[prec]
    rtol = default_rtol if rtol is None else _canon.real_number("rtol", rtol)
    raise_on_failure = _canon.flag("raise_on_failure", raise_on_failure)
    for i, a in enumerate(arrays):  # the copies below, checked before they are made
        check_fits(f"args[{i}] {a.shape} as {dt}", a.size * dt.itemsize, workspace_limit())
    gen = _generator(rng)
    primals = tuple(a.astype(dt) for a in arrays)  # copies: the caller's arrays are never touched
    unit = float(np.finfo(dt).eps)

    def value(point):
        return _split(f(*point))[0]

    def direction():
        # As large as each argument (at least 1), so that eps is a relative step.
        return tuple(_random(gen, a.shape, dt) * max(1.0, float(np.sqrt(np.mean(np.abs(a) ** 2))) if a.size
                                                    else 1.0) for a in primals)

    def numeric(point, v, h):
        """(f(a + h v) - f(a - h v)) / (2 h), and the rounding of f there, amplified by 1 / h."""
        hi, lo = value(_shift(point, v, h)), value(_shift(point, v, -h))
        return (_wide(hi) - _wide(lo)) / (2 * h), unit * max(_norm(hi), _norm(lo)) / h

    def analytic(point, v, u):
        """{mode: the derivative code's result}: jvp's tangent, <vjp(u), v> (its real part: a real
        loss Re<u, f> differentiates as Re<vjp(u), v>, PyTorch's convention for complex)."""
        out = {}
        if "fwd" in modes:
            out["fwd"] = _pushforward(jvp, point, v)
        if "rev" in modes:
            out["rev"] = sum((_vdot(g, vi) for g, vi in zip(_pullback(f, point, u), v) if g is not None),
                             0j).real
        return out

    y = value(primals)
    u = _random(gen, y.shape, y.dtype if y.dtype.kind in "fc" else dt)
    v = direction()
    jv, noise = numeric(primals, v, eps)
    first = analytic(primals, v, u)
    comparisons = []
    if "fwd" in first:
        tv = first["fwd"]
        comparisons.append(Comparison("fwd: jvp(args, v) vs (f(args + eps v) - f(args - eps v)) / 2 eps",
                                      _nrm(tv), _nrm(jv), _nrm(tv - jv), max(_nrm(jv), _nrm(tv), noise),
                                      rtol))
    if "rev" in first:
        num = float(np.vdot(_wide(u), jv).real)
        # Cauchy-Schwarz: |<u, J v>| <= |u| |J v|: the scale stays meaningful when <u, J v> ~ 0.
        comparisons.append(Comparison("rev: <vjp(u), v> vs <u, finite difference>", first["rev"], num,
                                      abs(first["rev"] - num), _norm(u) * max(_nrm(jv), noise), rtol))
    if order == 2:
        # The first derivatives' own derivative along a second direction v2: a central difference
        # of the derivative code's results at args +- h v2 against the mixed second difference of
        # f. A vjp or jvp that is right at ``args`` only fails here. Second differences round as
        # u / h^2: h = sqrt(eps) keeps that small; the scale's floor |J v| (a second derivative of
        # about the size of the first, as for a bilinear conv) keeps a linear f, whose second
        # derivative is zero, from failing on rounding alone.
        h = math.sqrt(eps)
        v2 = direction()
        plus, minus = _shift(primals, v2, h), _shift(primals, v2, -h)
        d2 = (numeric(plus, v, h)[0] - numeric(minus, v, h)[0]) / (2 * h)
        hi, lo = analytic(plus, v, u), analytic(minus, v, u)
        if "fwd" in hi:
            dtv = (hi["fwd"] - lo["fwd"]) / (2 * h)
            comparisons.append(Comparison("fwd, order 2: d jvp(args, v) / d v2 vs mixed second difference",
                                          _nrm(dtv), _nrm(d2), _nrm(dtv - d2),
                                          max(_nrm(d2), _nrm(dtv), _nrm(jv)), rtol))
        if "rev" in hi:
            ana, num = (hi["rev"] - lo["rev"]) / (2 * h), float(np.vdot(_wide(u), d2).real)
            comparisons.append(Comparison("rev, order 2: d<vjp(u), v> / d v2 vs <u, mixed second difference>",
                                          ana, num, abs(ana - num), _norm(u) * max(_nrm(d2), _nrm(jv)), rtol))
    result = FunctionGradCheckResult(tuple(comparisons), dt.name, eps)
    if raise_on_failure and not result.passed:
        raise AssertionError(f"gradient check failed: {result}")
    return result
