"""Planning, separate from executing: which engine runs an op, why, and at what cost.

A ``Planner`` asks every registered engine to prepare the op (eligibility, workspace, cost, in
that order), keeps the cheapest, and returns a ``ConvPlan`` that runs it (``plan(a, b)``) and
prints every engine's verdict. Planning has no side effects and a plan, once made for a
request, is kept: identical calls in one process run the same engine and give bitwise-identical
results. When the compiled kernels load, and whether a plan may change once they have, is the
planner's JIT policy (``set_jit``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from ._geometry import ConvGeometry
from .engines import Engine, Op, Prepared, Refusal, engine_names, get_engine

JIT_POLICIES = {
    # Kernels not loaded yet are charged their load (or compile) time, so one-off small convs stay
    # on NumPy; a plan picking one loads it when it first runs. Plans are kept.
    "lazy": "charge unloaded kernels their load time; plans are kept",
    # Every kernel is loaded for the dtype before its first plan (1-12 s per kernel on a machine
    # without numba's disk cache), then weighed by its running time alone. Plans are kept.
    "eager": "load every kernel for the dtype before planning; plans are kept",
    # Compiled kernels are never picked by 'auto' or 'measure' (method= can still name them).
    "never": "never pick a compiled kernel",
    # As 'lazy', but the third identical request loads the kernels if they would win once loaded
    # and plans again: a loop gets the faster engine, and its results may change in the last bits.
    "adaptive": "as lazy; the third identical request loads the kernels that would win and replans",
}
LOAD_AFTER_REQUESTS = 3
CACHE_SIZE = 256


@dataclass(frozen=True, eq=False)
class ConvPlan:
    """A decision for one op on one geometry, dtype and budget, that runs: ``plan(a, b)``.

    ``a``, ``b`` are C-contiguous channels-last operands in ``dtype`` (forward: x, w;
    input_grad: dy, w; filter_grad: x, dy). ``candidates`` holds every engine's verdict, a
    ``Prepared`` (estimate, workspace, choices) or a ``Refusal`` (reason), cheapest first.
    """

    op: Op
    geometry: ConvGeometry
    dtype: np.dtype
    limit: int
    chosen: Prepared
    candidates: tuple[Prepared | Refusal, ...]
    reason: str

    @property
    def engine(self) -> Engine:
        return get_engine(self.chosen.engine)

    @property
    def estimated_seconds(self) -> float:
        return self.chosen.seconds

    @property
    def workspace_bytes(self) -> int:
        return self.chosen.workspace

    @property
    def choices(self) -> dict[str, object]:
        return dict(self.chosen.choices)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        from .engines import _scratch

        _scratch.fit(self.chosen.workspace, self.limit)  # the scratch kept from earlier calls counts
        return self.chosen.run(a, b)

    def __str__(self) -> str:
        lines = [f"{self.op} with engine {self.chosen.engine!r} ({self.reason}); "
                 f"~{self.estimated_seconds * 1e3:.3g} ms estimated, workspace "
                 f"{self.workspace_bytes:,} bytes, {self.dtype} compute",
                 self.geometry.describe(),
                 f"  {'engine':<10} {'estimate':>12} {'workspace':>15}  choices or why not"]
        for c in self.candidates:
            mark = "*" if c is self.chosen else " "
            if isinstance(c, Refusal):
                lines.append(f"{mark} {c.engine:<10} {'-':>12} {'-':>15}  {c.reason}")
            else:
                what = ", ".join(f"{k}={v}" for k, v in c.choices.items())
                lines.append(f"{mark} {c.engine:<10} {c.seconds * 1e3:>9.3g} ms {c.workspace:>15,}  {what}")
        return "\n".join(lines)


class Planner:
    """Plans ops and keeps the plans (at most ``CACHE_SIZE``, least recently used dropped).

    ``jit`` is one of ``JIT_POLICIES``. One default planner serves the library
    (``default_planner()``); make another to plan under another policy without touching it.
    """

    def __init__(self, jit: str = "lazy") -> None:
        if jit not in JIT_POLICIES:
            raise ValueError(f"jit={jit!r}; expected one of {tuple(JIT_POLICIES)}")
        self.jit = jit
        self._plans: OrderedDict[tuple, ConvPlan] = OrderedDict()
        self._requests: dict[tuple, int] = {}
        self._warmed: set[str] = set()

    def clear(self) -> None:
        """Forget every plan and request count (the registry or the policy changed)."""
        self._plans.clear()
        self._requests.clear()

    def load_seconds(self, dtype: np.dtype, *kernels: object) -> float:
        """What the policy charges before the compiled ``kernels`` can run on ``dtype``."""
        from .engines import _kernels

        if self.jit == "never":
            return float("inf")
        if self.jit == "eager" or self._free:
            return 0.0 if _kernels.NUMBA else float("inf")
        return _kernels.compile_penalty(dtype, *kernels)

    _free = False  # set on the planner 'adaptive' asks what it would pick with every kernel loaded

    def plan(self, op: Op, geom: ConvGeometry, dtype: np.dtype, method: object = "auto",
             limit: int = 2 * 1024**3) -> ConvPlan:
        """Eligibility, then workspace, then cost, then the caller's override.

        ``method="auto"`` keeps the cheapest estimate; ``"measure"`` runs every eligible engine on
        random operands of the op's shapes and keeps the fastest; an engine's name is used as it
        is, or fails with the reason it cannot run.
        """
        if not isinstance(method, str):
            raise TypeError(f"method must be a string, 'auto', 'measure' or one of {engine_names()}, "
                            f"got {method!r}")
        dtype = np.dtype(dtype)
        key = (op, geom, dtype, method, limit)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            if self.jit == "adaptive" and method == "auto":
                plan = self._adapt(key, plan)
            return plan
        if self.jit == "eager" and dtype in (np.float32, np.float64) and dtype.name not in self._warmed:
            from .engines import warm_up

            warm_up((dtype.name,))
            self._warmed.add(dtype.name)
        plan = self._make(op, geom, dtype, method, limit)
        self._keep(key, plan)
        return plan

    def _keep(self, key: tuple, plan: ConvPlan) -> None:
        self._plans[key] = plan
        if len(self._plans) > CACHE_SIZE:
            self._plans.popitem(last=False)

    def _adapt(self, key: tuple, plan: ConvPlan) -> ConvPlan:
        count = self._requests.get(key, 1) + 1
        if count > LOAD_AFTER_REQUESTS:
            return plan
        if len(self._requests) > 4096:  # bounded: forget old geometries
            self._requests.clear()
        self._requests[key] = count
        if count < LOAD_AFTER_REQUESTS or plan.dtype not in (np.float32, np.float64):
            return plan
        loaded = Planner("lazy")
        loaded._free = True
        if loaded._make(*key).chosen.engine == plan.chosen.engine:
            return plan
        from .engines import warm_up

        warm_up((plan.dtype.name,))
        plan = self._make(*key)
        self._keep(key, plan)
        return plan

    def _make(self, op: Op, geom: ConvGeometry, dtype: np.dtype, method: str, limit: int) -> ConvPlan:
        if method not in ("auto", "measure"):
            p = self._prepare(get_engine(method), op, geom, dtype, limit)
            if isinstance(p, Refusal):
                raise ValueError(f"method={method!r} cannot run this {op}: {p.reason}")
            return ConvPlan(op, geom, dtype, limit, p, (p,), "requested by method=")
        verdicts = [self._prepare(get_engine(name), op, geom, dtype, limit) for name in engine_names()]
        if self.jit == "never":
            verdicts = [Refusal(v.engine, "runs compiled kernels (jit='never')")
                        if isinstance(v, Prepared) and v.seconds == float("inf") else v for v in verdicts]
        ready = [v for v in verdicts if isinstance(v, Prepared)]
        refused = [v for v in verdicts if isinstance(v, Refusal)]
        if not ready:
            why = "; ".join(f"{r.engine}: {r.reason}" for r in refused)
            raise ValueError(f"no engine can run this {op} ({why}): {geom.describe()}")
        if method == "measure":
            ready = [replace(p, seconds=_measure(p, op, geom, dtype)) for p in ready]
        ready.sort(key=lambda p: p.seconds)
        what = "fastest measured" if method == "measure" else "cheapest estimate"
        costs = ", ".join(f"{p.engine} {p.seconds * 1e3:.3g} ms" for p in ready)
        nots = "; ".join(f"{r.engine}: {r.reason}" for r in refused)
        reason = f"{what} of {costs}" + (f"; not eligible: {nots}" if refused else "")
        return ConvPlan(op, geom, dtype, limit, ready[0], (*ready, *refused), reason)

    def _prepare(self, engine: Engine, op: Op, geom: ConvGeometry, dtype: np.dtype,
                 limit: int) -> Prepared | Refusal:
        try:
            return engine.prepare(op, geom, dtype, limit, self)
        except ValueError as e:  # a workspace that does not fit the budget
            return Refusal(engine.name, str(e))


def _measure(p: Prepared, op: Op, geom: ConvGeometry, dtype: np.dtype, repeat: int = 3) -> float:
    """Best of ``repeat`` runs on random operands, after one untimed run (which loads kernels)."""
    rng = np.random.default_rng(0)
    x, w, y = (geom.x_shape("channels_last"), geom.w_shape("channels_last"), geom.y_shape("channels_last"))
    shapes = {"forward": (x, w), "input_grad": (y, w), "filter_grad": (x, y)}[op]
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    p.run(a, b)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        p.run(a, b)
        best = min(best, time.perf_counter() - start)
    return best


_DEFAULT = Planner()


def default_planner() -> Planner:
    """The planner the library's functions use."""
    return _DEFAULT


def set_jit(policy: str) -> None:
    """Set when compiled (Numba) kernels load, and whether plans may change once they have.

    'lazy' (default): a kernel not loaded yet is charged its load time (0.2 s from Numba's disk
    cache, seconds to compile on a new machine), so one-off small convs stay on NumPy; every plan
    is kept, so identical calls give identical results. 'eager': every kernel is loaded for a
    dtype before its first plan. 'never': compiled kernels are never picked unless named by
    ``method=``. 'adaptive': as 'lazy', but the third identical request loads the kernels that
    would win and plans again (results may then change in the last bits). Plans made before are
    forgotten. ``convgrad.engines.warm_up()`` loads every kernel now, under any policy.
    """
    global _DEFAULT
    _DEFAULT = Planner(policy)


def make_plan(op: Op, geom: ConvGeometry, dtype: np.dtype, method: object, limit: int) -> ConvPlan:
    """The default planner's plan for ``op`` on ``geom`` in ``dtype`` within ``limit`` workspace
    bytes; ``method`` is 'auto', 'measure' or an engine name (see ``Planner.plan``)."""
    return _DEFAULT.plan(op, geom, dtype, method, limit)
