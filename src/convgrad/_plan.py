"""Planning, separate from executing: which engine runs an op, why, and at what cost."""

from __future__ import annotations

from dataclasses import dataclass

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
    """Eligibility, then cost, then the caller's override."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, 'auto' or one of {engine_names()}, got {method!r}")
    if method != "auto":
        engine = get_engine(method)
        why_not = engine.unsupported(geom, op, dtype)
        if why_not:
            raise ValueError(f"method={method!r} cannot run this {op}: {why_not}")
        candidates = [(engine.cost(geom, op, dtype), engine)]
        reason = "requested by method="
    else:
        candidates = []
        for name in engine_names():
            engine = get_engine(name)
            if engine.unsupported(geom, op, dtype) is None:
                candidates.append((engine.cost(geom, op, dtype), engine))
        if not candidates:
            raise ValueError(f"no engine supports this {op}: {geom.describe()}")
        reason = f"cheapest of {len(candidates)} eligible engine(s)"
    cost, engine = min(candidates, key=lambda c: c[0])
    workspace = engine.workspace(geom, op, dtype, limit)
    return ConvPlan(op, geom, np.dtype(dtype), engine, reason, cost, workspace)
