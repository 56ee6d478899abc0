"""Checks anyone can run on a geometry: the adjoint dot test and finite differences.

Both are identities, not comparisons with another implementation, so they hold any engine to
the definition of the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _canon
from ._geometry import ConvGeometry
from ._ops import conv, conv_filter_grad, conv_input_grad


@dataclass(frozen=True)
class DotTestResult:
    """<conv(x, w), dy> against <x, dx(dy)> and <w, dw(x, dy)>.

    Errors are relative to ``scale`` = |x| |w| |dy| (2-norms), which bounds the trilinear form
    the three inner products compute (up to the square root of the kernel size): rounding is
    proportional to it, and it stays meaningful when the exact inner product is zero.
    """

    forward: float
    input_side: float
    filter_side: float
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
        return (
            f"<conv(x, w), dy> = {self.forward!r}; <x, conv_input_grad(dy)> = {self.input_side!r} "
            f"(error {self.input_error:.2e}); <w, conv_filter_grad(x, dy)> = {self.filter_side!r} "
            f"(error {self.filter_error:.2e}); errors relative to the bound {self.scale:.3g}; "
            f"rtol {self.rtol:g}"
        )


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def dot_test(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], *, dtype: object = np.float64,
    rtol: float | None = None, seed: int | None = 0, raise_on_failure: bool = True,
    **geometry: object,
) -> DotTestResult:
    """The adjoint identity on random arrays of the given shapes.

    Checks ``<conv(x, w), dy> == <x, conv_input_grad(dy, w)> == <w, conv_filter_grad(x, dy)>``,
    summing in float64. Default rtol: 1e-10 for float64, 1e-4 for float32, 1e-2 for float16.
    Raises AssertionError with all three numbers when it fails (unless ``raise_on_failure``
    is False); returns the numbers.
    """
    dt = np.dtype(dtype)  # type: ignore[arg-type]
    if rtol is None:
        rtol = {8: 1e-10, 4: 1e-4}.get(dt.itemsize, 1e-2)
    fmt = _canon.data_format(geometry.get("data_format", "channels_first"))
    kwargs = {k: geometry[k] for k in ("stride", "padding", "dilation", "groups") if k in geometry}
    geom = ConvGeometry.for_conv(x_shape, w_shape, data_format=fmt, **kwargs)
    rng = np.random.default_rng(seed)
    x, w = _random(rng, geom.x_shape(fmt), dt), _random(rng, geom.w_shape(fmt), dt)
    dy = _random(rng, geom.y_shape(fmt), dt)
    y = conv(x, w, **geometry)
    dx = conv_input_grad(dy, w, x.shape, **geometry)
    dw = conv_filter_grad(x, dy, w.shape, **geometry)

    def inner(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.vdot(a.astype(np.float64).ravel(), b.astype(np.float64).ravel()))

    def norm(a: np.ndarray) -> float:
        return float(np.linalg.norm(a.astype(np.float64).ravel()))

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
        return (
            f"input: analytic {self.input_analytic!r} vs finite difference {self.input_numeric!r} "
            f"(error {self.input_error:.2e}); filter: analytic {self.filter_analytic!r} vs finite "
            f"difference {self.filter_numeric!r} (error {self.filter_error:.2e}); rtol {self.rtol:g}"
        )


def check_grads(
    x: object, w: object, *, eps: float = 1.0, rtol: float = 1e-8, seed: int | None = 0,
    raise_on_failure: bool = True, **geometry: object,
) -> GradCheckResult:
    """Finite differences along one random direction per argument, in float64.

    For L = <conv(x, w), r> with a random r: (L(x + eps v) - L(x - eps v)) / (2 eps) against
    <conv_input_grad(r), v>, and likewise for w. conv is linear in each argument, so the central
    difference is exact up to rounding for any eps: a large step (1.0) avoids cancellation.
    """
    xa = np.asarray(x, dtype=np.float64)
    wa = np.asarray(w, dtype=np.float64)
    rng = np.random.default_rng(seed)
    y = conv(xa, wa, **geometry)
    r = rng.standard_normal(y.shape)
    vx, vw = rng.standard_normal(xa.shape), rng.standard_normal(wa.shape)

    def loss(xx: np.ndarray, ww: np.ndarray) -> float:
        return float(np.vdot(conv(xx, ww, **geometry).ravel(), r.ravel()))

    num_x = (loss(xa + eps * vx, wa) - loss(xa - eps * vx, wa)) / (2 * eps)
    num_w = (loss(xa, wa + eps * vw) - loss(xa, wa - eps * vw)) / (2 * eps)
    ana_x = float(np.vdot(conv_input_grad(r, wa, xa.shape, **geometry).ravel(), vx.ravel()))
    ana_w = float(np.vdot(conv_filter_grad(xa, r, wa.shape, **geometry).ravel(), vw.ravel()))
    norm = np.linalg.norm
    scale_x = float(norm(r) * norm(wa) * (norm(xa) + eps * norm(vx)) / eps)
    scale_w = float(norm(r) * norm(xa) * (norm(wa) + eps * norm(vw)) / eps)
    result = GradCheckResult(ana_x, num_x, scale_x, ana_w, num_w, scale_w, rtol)
    if raise_on_failure and not result.passed:
        raise AssertionError(f"gradient check failed: {result}")
    return result
