"""``scipy.signal`` convolution and correlation over NumPy, with exact gradients.

SciPy's shape model, per axis: 'full' gives ``n1 + n2 - 1`` samples, 'same' gives ``n1`` taken
from the full output, 'valid' gives ``n1 - n2 + 1`` (the inputs are swapped when ``in2`` is the
larger in every axis; neither being larger is an error). ``convolve*`` flip ``in2`` (true
convolution), ``correlate*`` do not.

Each call is one deep-learning cross-correlation (``convgrad.conv`` on ``(1, 1, *shape)`` views)
of ``in1`` with ``in2`` (flipped for convolve), with (before, after) pads per axis for a kernel
of size ``k``: 'full' ``(k - 1, k - 1)``; 'valid' ``(0, 0)``; 'same' ``(k // 2, (k - 1) // 2)`` for
``convolve``, ``correlate`` and ``convolve2d`` (SciPy centres the full output), but
``((k - 1) // 2, k // 2)`` for ``correlate2d`` (one sample apart for even ``k``). A swapped
'valid' correlation is reversed, as SciPy's is. The 2-D boundaries 'wrap' and 'symm' (and a
non-zero ``fillvalue``) pad ``in1`` with ``numpy.pad`` first; the gradient adds the padded
samples back where they came from.

Complex inputs are taken as SciPy takes them: ``convolve*`` never conjugate; ``correlate*``
conjugate ``in2`` (``z = sum in1 * conj(in2)``), except where SciPy swaps a 'valid' call:
``correlate`` then conjugates in2 still (it conjugates its reversed result), ``correlate2d``
conjugates in1 instead. Gradients are adjoints (the core's convention, PyTorch's): with respect to
a conjugated input, the conjugate-Wirtinger gradient of the antilinear map.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._budget import check_fits, workspace_limit
from .._dtypes import as_array, conj
from .._fronts.kit import Linear, op_with_vjp
from .._geometry import ConvGeometry
from .._ops import _Call

__all__ = ["convolve", "convolve2d", "correlate", "correlate2d"]
__dir__ = __all__.copy  # dir() lists the API only

MODES = ("full", "valid", "same")
METHODS = ("auto", "direct", "fft")
# SciPy's boundary names and the numpy.pad mode that extends in1 the same way.
BOUNDARIES = {"fill": "constant", "pad": "constant", "wrap": "wrap", "circular": "wrap",
              "symm": "symmetric", "symmetric": "symmetric"}

Pairs = tuple[tuple[int, int], ...]


def _check_mode(mode: object) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"Acceptable mode flags are 'valid', 'same', or 'full', not mode={mode!r}.")
    return mode


def _swap_needed(mode: str, shape1: tuple[int, ...], shape2: tuple[int, ...]) -> bool:
    """SciPy's rule for 'valid': swap when in2 is at least as large in every axis, and in1 is not."""
    if mode != "valid" or not shape1:
        return False
    ok1 = all(a >= b for a, b in zip(shape1, shape2))
    ok2 = all(b >= a for a, b in zip(shape1, shape2))
    if not (ok1 or ok2):
        raise ValueError(
            "For 'valid' mode, one must be at least as large as the other in every dimension: "
            f"in1.shape={shape1}, in2.shape={shape2}"
        )
    return not ok1


def _pads(mode: str, kernel: tuple[int, ...], upper: bool) -> Pairs:
    """(before, after) per axis; 'same' puts the odd sample after (``upper``) or before."""
    if mode == "full":
        return tuple((k - 1, k - 1) for k in kernel)
    if mode == "valid":
        return tuple((0, 0) for _ in kernel)
    return tuple(((k - 1) // 2, k // 2) if upper else (k // 2, (k - 1) // 2) for k in kernel)


def _flip(a: np.ndarray) -> np.ndarray:
    return a[(slice(None, None, -1),) * a.ndim]


def _pad_adjoint(shape: tuple[int, ...], pads: Pairs, np_mode: str) -> Callable[[np.ndarray], np.ndarray]:
    """The adjoint of ``numpy.pad(a, pads, np_mode)`` (constant pads contribute nothing of ``a``):
    each padded sample's gradient is added to the sample it copies."""
    size = int(np.prod(shape))
    source = np.arange(size).reshape(shape)
    if np_mode == "constant":
        index = np.pad(source, pads, mode="constant", constant_values=-1)
    else:
        index = np.pad(source, pads, mode=np_mode)
    keep = index >= 0

    def adjoint(g: np.ndarray) -> np.ndarray:
        out = np.zeros(size, dtype=g.dtype)
        np.add.at(out, index[keep], g[keep])
        return out.reshape(shape)

    return adjoint


class _WrappingCall(_Call):
    """The core's call, with integer sums wrapping in int64 (then cast to the result dtype) as
    SciPy's direct method wraps, instead of the core's OverflowError."""

    exact_ints = False


def _correlation(a: np.ndarray, b: np.ndarray, pads: Pairs, *, flip: bool, reverse: bool, res: np.dtype,
                 np_mode: str = "constant", fill: object = 0, swapped: bool = False,
                 conj_a: bool = False, conj_b: bool = False) -> Linear:
    """``a`` cross-correlated with ``b`` (flipped if ``flip``) under ``pads``, the result
    reversed if ``reverse``. Pads are zeros, or built by ``numpy.pad`` in ``np_mode`` / with
    ``fill``. ``swapped``: a and b are in2 and in1, so the gradients come back swapped.
    ``conj_a``, ``conj_b``: that operand enters conjugated (SciPy's complex correlations)."""
    x, conv_pads, spread = a, pads, None
    if np_mode != "constant" or fill != 0:
        # numpy.pad and its adjoint's index copy in1 at the padded size: checked before either.
        padded, limit = tuple(n + lo + hi for n, (lo, hi) in zip(a.shape, pads)), workspace_limit()
        for what, itemsize in (("in1 extended by the boundary", res.itemsize), ("its index", 8)):
            check_fits(f"{what} {padded}", math.prod(padded) * itemsize, limit)
        kwargs = {"constant_values": fill} if np_mode == "constant" else {}
        x = np.pad(a.astype(res, copy=False), pads, mode=np_mode, **kwargs)
        conv_pads, spread = tuple((0, 0) for _ in pads), _pad_adjoint(a.shape, pads, np_mode)
    # One deep-learning correlation of (1, 1, *shape) views.
    x, kernel = x[None, None], (_flip(b) if flip else b)[None, None]
    x, kernel = conj(x) if conj_a else x, conj(kernel) if conj_b else kernel
    call = _WrappingCall(ConvGeometry.for_conv(x.shape, kernel.shape, padding=conv_pads), "channels_first")

    def grads(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Adjoints: each op's transpose on the other operand conjugated; an operand that entered
        # conjugated gets its gradient conjugated back (the chain rule through the conjugation).
        g = (_flip(g) if reverse else g)[None, None]
        dx, dk = call("x", y=g, w=call.primal(kernel))[0, 0], call("w", x=call.primal(x), y=g)[0, 0]
        dx, dk = conj(dx) if conj_a else dx, conj(dk) if conj_b else dk
        dx, dk = dx if spread is None else spread(dx), _flip(dk) if flip else dk
        out = np.ascontiguousarray(dx), np.ascontiguousarray(dk)
        return out[::-1] if swapped else out

    def forward() -> np.ndarray:
        y = call("y", x=x, w=kernel)[0, 0]
        return np.ascontiguousarray(_flip(y) if reverse else y).astype(res, copy=False)

    return Linear(forward, grads)


def _nd(in1: object, in2: object, mode: object, method: object, *, convolve: bool
        ) -> Linear:
    """convolve / correlate: N-d, both arrays of the same rank."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"Acceptable method flags are 'auto', 'direct', or 'fft', not method={method!r}.")
    a, b = as_array("in1", in1), as_array("in2", in2)
    if a.ndim == b.ndim == 0:  # SciPy's plain product, in2 conjugated by correlate
        if convolve:
            return Linear(lambda: a * b, lambda g: (g * conj(b), g * conj(a)))
        return Linear(lambda: a * conj(b), lambda g: (g * b, conj(g) * a))
    if a.ndim != b.ndim:
        raise ValueError(
            f"in1 and in2 should have the same dimensionality, got in1.ndim={a.ndim}, in2.ndim={b.ndim}"
        )
    mode = _check_mode(mode)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"in1 and in2 cannot be empty, got shapes {a.shape} and {b.shape}")
    res = np.result_type(a, b)
    if _swap_needed(mode, a.shape, b.shape):
        # Convolution commutes; a swapped correlation is the reversed correlation of in2 with in1.
        return _correlation(b, a, _pads(mode, a.shape, False), flip=convolve, reverse=not convolve,
                            res=res, swapped=True, conj_a=not convolve)
    return _correlation(a, b, _pads(mode, b.shape, False), flip=convolve, reverse=False, res=res,
                        conj_b=not convolve)


@op_with_vjp
def convolve(in1: Any, in2: Any, mode: str = "full", method: str = "auto") -> Linear:
    """``scipy.signal.convolve``: N-d true convolution of in1 with in2 (both the same rank).

    ``method`` is checked and ignored: the result is exact (SciPy's 'fft' rounds). The dtype is
    ``numpy.result_type(in1, in2)``; integers wrap as in SciPy's direct method.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad.scipy import signal
    >>> signal.convolve(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 0.5]))
    array([0. , 1. , 2.5, 4. , 1.5])
    """
    return _nd(in1, in2, mode, method, convolve=True)


@op_with_vjp
def correlate(in1: Any, in2: Any, mode: str = "full", method: str = "auto") -> Linear:
    """``scipy.signal.correlate``: N-d cross-correlation ``z[k] = sum_l in1[l] * in2[l - k + n2 - 1]``.

    Shape model as ``convolve``; 'same' is the centre of 'full' (for an even ``n2`` the odd pad
    sample goes before, like ONNX SAME_LOWER); a 'valid' with in2 the larger is the reversed
    correlation of in2 with in1.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad.scipy import signal
    >>> signal.correlate(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 0.5]), mode="same")
    array([2. , 3.5, 3. ])
    """
    return _nd(in1, in2, mode, method, convolve=False)


def _fill_value(fillvalue: object, res: np.dtype) -> object:
    """``fillvalue`` converted to the output dtype as SciPy converts it.

    A real scalar or one-element array. Python numbers and lists convert by value (a float
    truncates for an integer output; one out of range is refused), NumPy scalars by a C cast
    (which wraps), NumPy arrays only by a safe cast of their dtype.
    """
    fv = np.asarray(fillvalue)
    if fv.dtype.kind not in ("biufc" if res.kind == "c" else "biuf"):
        raise ValueError(f"could not cast `fillvalue`={fillvalue!r} to the output type {res}.")
    if isinstance(fillvalue, np.ndarray):
        if not np.can_cast(fv.dtype, res, "safe"):
            raise ValueError(
                f"could not cast `fillvalue` of dtype {fv.dtype} safely to the output type {res}."
            )
        cast = fv.astype(res)
    elif isinstance(fillvalue, np.generic):
        with np.errstate(all="ignore"):
            cast = fv.astype(res)
    else:
        try:
            cast = np.array(fillvalue, dtype=res)
        except (OverflowError, ValueError, TypeError) as e:
            raise ValueError(
                f"could not cast `fillvalue`={fillvalue!r} to the output type {res}: {e}"
            ) from None
    if cast.size != 1:
        raise ValueError(f"`fillvalue` must be scalar or an array with one element, got shape {fv.shape}.")
    return cast.reshape(()).item()


def _2d(in1: object, in2: object, mode: object, boundary: object, fillvalue: object, *, convolve: bool
        ) -> Linear:
    name = "convolve2d" if convolve else "correlate2d"
    a, b = as_array("in1", in1), as_array("in2", in2)
    if not a.ndim == b.ndim == 2:
        raise ValueError(f"{name} inputs must both be 2-D arrays, got shapes {a.shape} and {b.shape}")
    mode = _check_mode(mode)
    np_mode = BOUNDARIES.get(boundary) if isinstance(boundary, str) else None
    if np_mode is None:
        raise ValueError(
            "Acceptable boundary flags are 'fill', 'circular' (or 'wrap'), and 'symmetric' "
            f"(or 'symm'), not boundary={boundary!r}."
        )
    res = np.result_type(a, b)
    if res == np.float16:
        raise ValueError(f"{name} not available for this type ({res}).")
    fill = _fill_value(fillvalue, res)
    swap = _swap_needed(mode, a.shape, b.shape)
    if swap:
        a, b = b, a
    if a.size == 0 or b.size == 0:
        return _zeros(a, b, mode, res, swap)
    return _correlation(a, b, _pads(mode, b.shape, upper=not convolve), flip=convolve,
                        reverse=swap and not convolve, res=res, np_mode=np_mode, fill=fill, swapped=swap,
                        conj_b=not convolve)


def _zeros(a: np.ndarray, b: np.ndarray, mode: str, res: np.dtype, swap: bool) -> Linear:
    """An empty operand: SciPy returns zeros of the mode's shape (n1 + n2 - 1, n1, n1 - n2 + 1);
    the gradients are zeros."""
    if mode == "full":
        shape = tuple(n + k - 1 for n, k in zip(a.shape, b.shape))
    elif mode == "same":
        shape = a.shape
    else:
        shape = tuple(n - k + 1 for n, k in zip(a.shape, b.shape))
    if any(v < 0 for v in shape):
        raise ValueError(f"both inputs are empty along one axis: shapes {a.shape} and {b.shape}")
    shapes = (b.shape, a.shape) if swap else (a.shape, b.shape)
    return Linear(lambda: np.zeros(shape, dtype=res), lambda g: tuple(np.zeros(s, g.dtype) for s in shapes))


@op_with_vjp
def convolve2d(
    in1: Any, in2: Any, mode: str = "full", boundary: str = "fill", fillvalue: Any = 0
) -> Linear:
    """``scipy.signal.convolve2d``: 2-D true convolution, in1 extended by ``boundary``: outside in1
    the samples are ``fillvalue`` ('fill'), periodic ('wrap') or mirrored with the edge repeated
    ('symm'). Gradients do not include one for ``fillvalue``.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad.scipy import signal
    >>> signal.convolve2d(np.eye(2), np.ones((1, 2)), boundary="wrap", mode="same")
    array([[1., 1.],
           [1., 1.]])
    """
    return _2d(in1, in2, mode, boundary, fillvalue, convolve=True)


@op_with_vjp
def correlate2d(
    in1: Any, in2: Any, mode: str = "full", boundary: str = "fill", fillvalue: Any = 0
) -> Linear:
    """``scipy.signal.correlate2d``: 2-D cross-correlation, in1 extended by ``boundary``.

    Shape model as ``convolve2d``, but 'same' starts ``n2 // 2`` samples into 'full' (for an even
    ``n2`` the odd pad sample goes after, like TF SAME: one sample off ``correlate``).

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad.scipy import signal
    >>> signal.correlate2d(np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 1.0]]), mode="same")
    array([[3., 5., 3.]])
    """
    return _2d(in1, in2, mode, boundary, fillvalue, convolve=False)
