"""Canonicalisation at the boundary: user values become tuples of Python ints.

Everything past this module sees only canonical tuples, so the core never re-checks types.
"""

from __future__ import annotations

import itertools
import numbers
import operator
from collections.abc import Sequence

import numpy as np

DATA_FORMATS = ("channels_first", "channels_last")
# Sizes, strides and pads reach NumPy and Numba as int64: a larger value would overflow there,
# far from the parameter that caused it.
INT64_MAX = 2**63 - 1
MAX_NDIM = 64  # NumPy's: no shape has more entries


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
        items = bounded_list(name, value, MAX_NDIM)
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


def bounded_list(name: str, value: object, most: int) -> list:
    """``list(value)``, refused past ``most`` entries before they are read: a broadcast array of
    2**40 entries (or an endless iterator) given as a stride or a shape never finished."""
    n = len(value) if hasattr(value, "__len__") else None
    items = list(itertools.islice(value, most + 1)) if n is None or n <= most else []
    if (n is not None and n > most) or len(items) > most:
        raise ValueError(f"{name} must have at most {most} entries, got "
                         f"{n if n is not None else 'more'}: {type(value).__name__}")
    return items


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
    out = tuple(as_int(f"{name}[{i}]", v) for i, v in enumerate(bounded_list(name, value, MAX_NDIM)))
    if any(v < 0 for v in out):
        raise ValueError(f"{name} must not contain negative sizes, got {out}")
    return out


def real_number(name: str, value: object, *, positive: bool = False, finite: bool = False) -> float:
    """A real number, not NaN, at least 0 (above 0 with ``positive``, below inf with ``finite``);
    bools are a TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    v = float(value)
    if not (v > 0 if positive else v >= 0) or (finite and v == float("inf")):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}"
                         f"{' and finite' if finite else ''}, got {value!r}")
    return v


def flag(name: str, value: object) -> bool:
    """True or False (NumPy's bools too); anything else, even 1 or 'yes', is a TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def seed(value: object) -> int | None:
    """None or a non-negative int, as ``np.random.default_rng`` takes it."""
    if value is None:
        return None
    v = as_int("seed", value)
    if v < 0:
        raise ValueError(f"seed must be None or a non-negative integer, got {value!r}")
    return v
