"""The workspace budget: how many bytes an op may allocate beyond its inputs and outputs.

Sizes are Python ints computed before anything is allocated, so an absurd geometry is a clear
error instead of an overflow or an out-of-memory kill.
"""

from __future__ import annotations

import os

DEFAULT_WORKSPACE_BYTES = 2 * 1024**3
WORKSPACE_ENV = "CONVGRAD_WORKSPACE_BYTES"


def workspace_limit(workspace_bytes: object = None) -> int:
    """The budget: the keyword if given, else $CONVGRAD_WORKSPACE_BYTES, else 2 GiB."""
    if workspace_bytes is None:
        env = os.environ.get(WORKSPACE_ENV)
        if env is None:
            return DEFAULT_WORKSPACE_BYTES
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"{WORKSPACE_ENV}={env!r} is not an integer number of bytes") from None
        name = WORKSPACE_ENV
    else:
        if isinstance(workspace_bytes, bool) or not isinstance(workspace_bytes, int):
            raise TypeError(f"workspace_bytes must be an int, got {workspace_bytes!r}")
        value, name = workspace_bytes, "workspace_bytes"
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def check_fits(what: str, nbytes: int, limit: int) -> None:
    """Fail fast when one array alone would exceed the budget."""
    if nbytes > limit:
        raise ValueError(
            f"{what} needs {nbytes:,} bytes, more than the workspace budget of {limit:,} bytes; "
            f"raise it with workspace_bytes= or ${WORKSPACE_ENV}"
        )
