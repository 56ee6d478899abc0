"""Planning, separate from executing: which engine runs an op, why, and at what cost."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._geometry import ConvGeometry
from .engines import Engine, engine_names, get_engine


@dataclass(frozen=True)
class ConvPlan:
    """A reusable decision for one op on one geometry and dtype."""

    op: str
    geometry: ConvGeometry
    dtype: np.dtype
    engine: Engine
    reason: str
    estimated_seconds: float
    workspace_bytes: int

    def __str__(self) -> str:
        return (
            f"{self.op} with engine {self.engine.name!r} ({self.reason}); "
            f"~{self.estimated_seconds * 1e3:.3g} ms estimated, "
            f"workspace {self.workspace_bytes:,} bytes, {self.dtype} compute\n"
            f"{self.geometry.describe()}"
        )


def make_plan(op: str, geom: ConvGeometry, dtype: np.dtype, method: object, limit: int) -> ConvPlan:
    """Eligibility, then cost, then the caller's override.

    With ``method="auto"`` every registered engine that supports the geometry and fits the
    workspace budget is costed and the cheapest wins; a named method is used as it is, or fails
    with the reason it cannot run.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, 'auto' or one of {engine_names()}, got {method!r}")
    from .engines import _kernels, _scratch

    dtype = np.dtype(dtype)
    if method == "auto" and dtype in (np.float32, np.float64):
        _load_kernels_for_loops(op, geom, dtype, limit)
    # Costing every engine takes a fraction of a millisecond; a training loop asks the same question
    # each step. The answer changes only with the inputs and with which kernels are loaded.
    plan = _make_plan(op, geom, dtype, method, limit, _kernels.loaded_state(), engine_names())
    _scratch.fit(plan.workspace_bytes, limit)  # the scratch kept from earlier calls counts too
    return plan


# The planner charges a compiled kernel its load (or compile) time until the process has loaded it,
# so a one-off small conv stays on NumPy. The same conv asked for this many times is a loop: if a
# kernel that is not loaded yet would win once loaded, load the kernels then.
LOAD_AFTER_REQUESTS = 3
_requests: dict[tuple, int] = {}


def _load_kernels_for_loops(op: str, geom: ConvGeometry, dtype: np.dtype, limit: int) -> None:
    from .engines import _kernels

    key = (op, geom, dtype, limit)
    count = _requests.get(key, 0) + 1
    if count > LOAD_AFTER_REQUESTS:
        return
    if len(_requests) > 4096:  # bounded: forget old geometries
        _requests.clear()
    _requests[key] = count
    if count < LOAD_AFTER_REQUESTS:
        return
    charged = _make_plan(op, geom, dtype, "auto", limit, _kernels.loaded_state(), engine_names())
    with _kernels.as_if_loaded():
        free = _make_plan.__wrapped__(op, geom, dtype, "auto", limit, (), engine_names())
    if free.engine is not charged.engine:
        _kernels.warm_up((dtype.name,))


@lru_cache(maxsize=256)
def _make_plan(op: str, geom: ConvGeometry, dtype: np.dtype, method: str, limit: int,
               _loaded: tuple[int, ...], _engines: tuple[str, ...]) -> ConvPlan:
    if method != "auto":
        engine = get_engine(method)
        why_not = engine.unsupported(geom, op, dtype)
        if why_not:
            raise ValueError(f"method={method!r} cannot run this {op}: {why_not}")
        workspace = engine.workspace(geom, op, dtype, limit)
        return ConvPlan(op, geom, np.dtype(dtype), engine, "requested by method=",
                        engine.cost(geom, op, dtype), workspace)
    candidates, rejected = [], []
    for name in engine_names():
        engine = get_engine(name)
        why_not = engine.unsupported(geom, op, dtype)
        if why_not is None:
            try:
                workspace = engine.workspace(geom, op, dtype, limit)
            except ValueError as e:
                why_not = str(e)
        if why_not is None:
            candidates.append((engine.cost(geom, op, dtype), workspace, engine))
        else:
            rejected.append(f"{name}: {why_not}")
    if not candidates:
        raise ValueError(f"no engine can run this {op} ({'; '.join(rejected)}): {geom.describe()}")
    candidates.sort(key=lambda c: c[0])
    cost, workspace, engine = candidates[0]
    costs = ", ".join(f"{e.name} {c * 1e3:.3g} ms" for c, _, e in candidates)
    reason = f"cheapest estimate of {costs}" + (f"; not eligible: {'; '.join(rejected)}" if rejected else "")
    return ConvPlan(op, geom, np.dtype(dtype), engine, reason, cost, workspace)
