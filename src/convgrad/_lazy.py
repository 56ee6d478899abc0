"""Dask arrays given to the core's ops: never computed into this process.

``np.asarray`` on a dask array computes all of it here, and the workspace check would refuse a
large result only afterwards. So the ops look for dask arrays first, by their type's module and
``__dask_graph__`` (dask itself is never imported here), and hand them to ``convgrad.dask``'s
op of the same name once that module is imported (a lazy result), or refuse, naming it.
"""

from __future__ import annotations

import sys


def is_dask(a: object) -> bool:
    """True for a dask collection (dask.array.Array and the like), without importing dask."""
    t = type(a)
    return t.__module__.partition(".")[0] == "dask" and hasattr(t, "__dask_graph__")


def any_dask(*arrays: object) -> bool:
    """True when one of ``arrays`` is a dask collection. Types found not to be are remembered:
    the check runs on every call of the ops (0.76 us for three operands, measured under load)."""
    for a in arrays:
        t = type(a)
        if t in _NOT_DASK:
            continue
        if is_dask(a):
            return True
        if len(_NOT_DASK) < 256:
            _NOT_DASK.add(t)
    return False


_NOT_DASK: set[type] = {type(None)}


def route(name: str, arguments: dict) -> object:
    """``convgrad.dask.<name>(**arguments)`` (lazy), or the TypeError that names it."""
    module = sys.modules.get("convgrad.dask")
    target = getattr(module, name, None)
    if target is None:
        how = (f"use convgrad.dask.{name} (lazy, block by block), or `import convgrad.dask` once so "
               f"that convgrad.{name} routes dask arrays to it" if name in BLOCKED else
               f"convgrad.dask has no blocked {name}; compute the operands first if they fit in memory")
        given = ", ".join(k for k, v in arguments.items() if is_dask(v))
        raise TypeError(f"convgrad.{name} got a dask array ({given}), which it would compute whole in "
                        f"this process; {how}")
    return target(**arguments)


BLOCKED = ("conv", "conv_input_grad", "conv_filter_grad", "conv_bias_grad", "conv_transpose", "conv_vjp",
           "conv_transpose_vjp", "conv_jvp", "conv_transpose_jvp")
