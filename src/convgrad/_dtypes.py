"""Array coercion and the dtype rules.

float16 is computed in float32 and returned as float16; integers give exact int64 results;
complex64 and complex128 are computed in their own dtype; mixed inputs promote as NumPy does.
bool, object, strings and other complex widths are refused.

A gradient of a complex conv follows one of two ``CONVENTIONS``: 'adjoint', the conjugate
transpose ``A^H dy`` (PyTorch's autograd, the complex dot test ``<Ax, y> = <x, A^H y>``), or
'transpose', the plain transpose ``A^T dy`` (JAX's ``vjp``). The ops are bilinear with real
coefficients, so the adjoint is the transpose run on the conjugated primal operands.
"""

from __future__ import annotations

import numpy as np


def as_array(name: str, value: object) -> np.ndarray:
    """``value`` as an ndarray (never copied or written to), or TypeError for unsupported dtypes."""
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} must be an array of numbers: {e}") from None
    kind = a.dtype.kind
    if kind == "b":
        raise TypeError(f"{name} has dtype bool; convert it to an integer or float dtype")
    if kind == "c" and a.dtype not in (np.complex64, np.complex128):
        raise TypeError(f"{name} has dtype {a.dtype}; complex operands must be complex64 or complex128")
    if kind not in "iufc":
        raise TypeError(f"{name} has dtype {a.dtype}; expected an integer or floating dtype")
    return a


CONVENTIONS = ("adjoint", "transpose")


def convention_of(convention: object) -> str:
    """``convention`` checked: one of ``CONVENTIONS``."""
    if not isinstance(convention, str) or convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r}; expected 'adjoint' (conjugate transpose, "
                         "PyTorch's gradients) or 'transpose' (plain transpose, JAX's vjp)")
    return convention


def conj(a: np.ndarray) -> np.ndarray:
    """The complex conjugate of ``a`` (a copy), or ``a`` itself when it is real."""
    return np.conj(a) if a.dtype.kind == "c" else a


def cotangent(g: object, expected: tuple[int, ...], name: str = "dy") -> np.ndarray:
    """The cotangent ``g`` of a pullback as an array of its result's shape ``expected``: the one
    check of every pullback, in the core and the fronts."""
    a = as_array(name, g)
    if a.shape != expected:
        raise ValueError(f"{name}.shape={a.shape} does not match the output shape {expected}")
    return a


def result_dtype(*arrays: np.ndarray | None) -> tuple[np.dtype, np.dtype]:
    """(dtype returned, dtype computed in) for the given operands."""
    dtypes = [a.dtype for a in arrays if a is not None]
    if all(d.kind in "iu" for d in dtypes):
        return np.dtype(np.int64), np.dtype(np.int64)
    res = np.result_type(*dtypes)
    if res == np.float16:
        return res, np.dtype(np.float32)
    return res, res
