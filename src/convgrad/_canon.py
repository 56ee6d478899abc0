"""Canonicalisation at the boundary: user values become tuples of Python ints.

Everything past this module sees only canonical tuples, so the core never re-checks types.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence

DATA_FORMATS = ("channels_first", "channels_last")
# Sizes, strides and pads reach NumPy and Numba as int64: a larger value would overflow there,
# far from the parameter that caused it.
INT64_MAX = 2**63 - 1


def as_int(name: str, value: object) -> int:
    """``value`` as a Python int; bools, floats and strings are a TypeError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    v = operator.index(value)
    if not -INT64_MAX <= v <= INT64_MAX:
        raise ValueError(f"{name}={v} is outside the int64 range (|{name}| <= 2**63 - 1)")
    return v


def int_tuple(name: str, value: object, rank: int, *, minimum: int | None = None) -> tuple[int, ...]:
    """An int or one int per spatial dim, as a tuple of length ``rank``."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be an int or a sequence of {rank} ints, got {value!r}")
    if isinstance(value, Sequence) or (hasattr(value, "__len__") and hasattr(value, "__iter__")):
        items = list(value)
        if len(items) != rank:
            raise ValueError(
                f"{name} must have one value per spatial dim ({rank}), got {len(items)}: {value!r}"
            )
        out = tuple(as_int(f"{name}[{i}]", v) for i, v in enumerate(items))
    else:
        out = (as_int(name, value),) * rank
    if minimum is not None and any(v < minimum for v in out):
        raise ValueError(f"{name} must be >= {minimum} in every dim, got {value!r}")
    return out


def positive_int(name: str, value: object) -> int:
    v = as_int(name, value)
    if v < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return v


def data_format(value: object) -> str:
    """'channels_first' or 'channels_last' (case-insensitive)."""
    if not isinstance(value, str):
        raise TypeError(f"data_format must be a string, one of {DATA_FORMATS}, got {value!r}")
    v = value.lower()
    if v not in DATA_FORMATS:
        raise ValueError(f"unknown data_format={value!r}; expected one of {DATA_FORMATS}")
    return v


def shape_tuple(name: str, value: object) -> tuple[int, ...]:
    """A shape: a sequence of non-negative ints."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints, got {value!r}")
    out = tuple(as_int(f"{name}[{i}]", v) for i, v in enumerate(value))
    if any(v < 0 for v in out):
        raise ValueError(f"{name} must not contain negative sizes, got {out}")
    return out
