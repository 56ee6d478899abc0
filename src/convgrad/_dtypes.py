"""Array coercion and the dtype rules.

float16 is computed in float32 and returned as float16; integers give exact int64 results;
mixed inputs promote as NumPy does. bool, complex, object and strings are refused.
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
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {a.dtype}, which convgrad does not support yet")
    if kind not in "iuf":
        raise TypeError(f"{name} has dtype {a.dtype}; expected an integer or floating dtype")
    return a


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
