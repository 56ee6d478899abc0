"""The workspace budget: how many bytes an op may allocate beyond its inputs and outputs.

Sizes are Python ints computed before anything is allocated, so an absurd geometry is a clear
error instead of an overflow or an out-of-memory kill.
"""

from __future__ import annotations

import os

import numpy as np

from ._dtypes import is_bfloat16, widened

DEFAULT_WORKSPACE_BYTES = 2 * 1024**3
WORKSPACE_ENV = "CONVGRAD_WORKSPACE_BYTES"


def workspace_limit(workspace_bytes: object = None) -> int:
    """The budget: the keyword if given, else $CONVGRAD_WORKSPACE_BYTES, else 2 GiB."""
    if workspace_bytes is None:
        return env_bytes(WORKSPACE_ENV, DEFAULT_WORKSPACE_BYTES)
    if isinstance(workspace_bytes, bool) or not isinstance(workspace_bytes, int):
        raise TypeError(f"workspace_bytes must be an int, got {workspace_bytes!r}")
    return _at_least("workspace_bytes", workspace_bytes, 1)


def env_bytes(name: str, default: int, least: int = 1) -> int:
    """The environment variable ``name`` as a number of bytes, at least ``least``; ``default``
    where it is unset."""
    env = os.environ.get(name)
    if env is None:
        return default
    try:
        value = int(env)
    except ValueError:
        raise ValueError(f"{name}={env!r} is not an integer number of bytes") from None
    return _at_least(name, value, least)


def _at_least(name: str, value: int, least: int) -> int:
    if value < least:
        raise ValueError(f"{name} must be {'positive' if least == 1 else f'{least} or more'}, got {value}")
    return value


def check_fits(what: str, nbytes: int, limit: int) -> None:
    """Fail fast when one array alone would exceed the budget."""
    if nbytes > limit:
        raise ValueError(
            f"{what} needs {nbytes:,} bytes, more than the workspace budget of {limit:,} bytes; "
            f"raise it with workspace_bytes= or ${WORKSPACE_ENV}"
        )


def span_bytes(a: np.ndarray) -> int:
    """Bytes of memory ``a`` spans: a broadcast view (stride 0) spans far less than ``a.nbytes``."""
    if a.size == 0:
        return 0
    return sum((n - 1) * abs(s) for n, s in zip(a.shape, a.strides)) + a.itemsize


def contiguous(what: str, a: np.ndarray, dtype: np.dtype, limit: int) -> np.ndarray:
    """``np.ascontiguousarray(a, dtype)``; a copy larger than the memory ``a`` spans (a broadcast
    view, a widened dtype) is a temporary the budget must cover, checked before it is made."""
    nbytes = a.size * np.dtype(dtype).itemsize
    if nbytes > span_bytes(a):
        check_fits(f"a contiguous copy of {what} {a.shape}", nbytes, limit)
    try:
        if np.dtype(dtype) == np.float32 and is_bfloat16(a.dtype):
            return widened(a)
        return np.ascontiguousarray(a, dtype=dtype)
    except MemoryError:  # a budget raised past what the machine has
        raise ValueError(f"a contiguous copy of {what} {a.shape} needs {nbytes:,} bytes, within the "
                         f"workspace budget of {limit:,} bytes but more than this machine could "
                         f"allocate") from None
