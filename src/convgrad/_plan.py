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
    from .engines._kernels import loaded_state

    # Costing every engine takes a fraction of a millisecond; a training loop asks the same question
    # each step. The answer changes only with the inputs and with which kernels are loaded.
    return _make_plan(op, geom, np.dtype(dtype), method, limit, loaded_state(), engine_names())


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
