"""A complex block that the planner splits (Gauss's trick: three real convs), fixed when the
graph is built and rebuilt as the same plan on the worker.

A real block is pinned by its engine's name (``method=``). A complex one cannot be: a named
engine runs the complex op natively, and under ``method='auto'`` a worker decides the split and
its real engine again, where the compiled kernels it has loaded so far change the estimates (a
restarted worker may choose otherwise, and a recomputed block would differ in the last bits).
So the client records the decision (``Split``) and the block runs it as its plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from .. import _gauss
from .._geometry import ConvGeometry
from .._plan import ConvPlan, default_planner


@dataclass(frozen=True)
class Split:
    """Run a complex op as three real convs by ``engine`` (fused with the parts' split and
    padding where ``fused``, as the planner chose), costed for ``layout``; operands with an inf
    or NaN by the complex engine ``nonfinite``. Called as a plan source,
    ``split(op, geom, dtype, method, limit) -> ConvPlan``."""

    engine: str
    fused: bool
    nonfinite: str
    layout: str

    @classmethod
    def of(cls, plan: ConvPlan) -> Split | None:
        """The split ``plan`` runs (None for a plan that runs its op natively)."""
        if plan.split is None:
            return None
        return cls(plan.split.chosen.engine, plan.gauss.pads is not None, plan.nonfinite_plan().chosen.engine,
                   plan.layout)

    def __call__(self, op: str, geom: ConvGeometry, dtype: np.dtype, method: str, limit: int) -> ConvPlan:
        planner, layout = default_planner(), self.layout
        how = _gauss.real_conv(op, geom, layout) if self.fused else _gauss.RealConv(op, geom, layout)
        parts = np.dtype(dtype.char.lower())  # complex64 -> float32: the real convs' dtype
        real = planner.plan(how.op, how.geometry, parts, self.engine, limit, how.layout)
        nonfinite = partial(planner.plan, op, geom, dtype, self.nonfinite, limit, layout, False)
        return ConvPlan(op, geom, dtype, limit, real.chosen, (real.chosen,), self.engine, layout,
                        _nonfinite=nonfinite, split=real, gauss=how)
