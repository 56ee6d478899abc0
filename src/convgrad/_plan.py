"""Planning, separate from executing: which engine runs an op, why, and at what cost.

A ``Planner`` asks every registered engine to prepare the op (eligibility, workspace, cost),
keeps the cheapest, and returns a ``ConvPlan`` that runs it (``plan(a, b)``) and prints every
engine's verdict. Planning has no side effects and a plan, once made for a request, is kept:
identical calls in one process run the same engine and give bitwise-identical results. When
compiled kernels load is the planner's JIT policy (``set_jit``).

Complex ops: ``auto`` and ``measure`` also plan the op in the component dtype and run it as three
real convs (Gauss's trick, ``_gauss``) where that is estimated cheaper than the complex engines,
and fits the budget (the split's real arrays counted); a named engine runs the complex op itself.

Non-finite values: an output is NaN or +-inf exactly where the direct sum's is (inf * 0 and
inf - inf are NaN there). Engines whose arithmetic differs for an op (``nonfinite_skips``: FFT
and Winograd mix taps) are skipped for operands that are not all finite: a plan that chose one
checks its operands (one compiled pass, ``checked_finite``; those the engine checks itself as it
reads them, ``Prepared.checks_itself``, not) and runs its non-finite plan instead, which says why.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from . import _gauss
from ._dtypes import all_finite
from ._engine import LAYOUTS, NonFinite
from ._geometry import ConvGeometry
from ._layout import w_from_last, w_to_last, x_from_last, x_to_last
from .engines import Engine, Op, Prepared, Refusal, _machine, engine_names, get_engine, registered

JIT_POLICIES = ("lazy", "eager", "never")  # see set_jit
# Compiled kernels pay off over a loop, not one call: the lazy policy charges a kernel's one-time
# load spread over this many calls of the op being planned. A plan is kept for the process, so a
# conv called in a loop gets the compiled engine from its first call (charged whole, a 0.4 s load
# kept a 1.85 GFLOP resnet conv on a NumPy engine 3x slower for every call after), while a one-off
# small conv, whose saving is below load / LOAD_SPREAD_CALLS, stays on NumPy.
LOAD_SPREAD_CALLS = 100
# A plan whose engine the load charges chose (one that is not the cheapest once every kernel is
# loaded) gives way to the plan made without them once its calls have lost, by the estimates, as
# much as the load costs (the ski-rental rule: at most twice the best in hindsight). Without it a
# process that never called warm_up kept the first choice for good: dilated_3x3_d2's filter
# gradient on split_kernel, 27 ms a call against tiled's 12 (one thread, a fresh process).
CACHE_SIZE = 256


@dataclass(frozen=True, eq=False)
class ConvPlan:
    """A decision for one op on one geometry, dtype and budget, that runs: ``plan(a, b)``.

    ``a``, ``b`` are C-contiguous operands in ``dtype`` (forward: x, w; input_grad: dy, w;
    filter_grad: x, dy) in the layout ``takes``: ``layout``, the caller's layout the plan was
    costed for, where the chosen engine runs it natively, else channels-last (the caller
    transposes). ``candidates`` holds every engine's verdict, a ``Prepared`` (estimate for
    ``layout``, transpositions included; workspace, choices) or a ``Refusal`` (reason),
    cheapest first; ``method`` is the caller's ('auto', 'measure' or the engine's name).
    ``finite`` says whether the plan is for operands without inf and NaN: such a plan whose engine
    does not keep the direct sum's non-finite outputs runs ``nonfinite_plan()`` for operands that
    have them (in this plan's ``takes`` layout).
    """

    op: Op
    geometry: ConvGeometry
    dtype: np.dtype
    limit: int
    chosen: Prepared
    candidates: tuple[Prepared | Refusal, ...]
    method: str
    layout: str = "channels_last"
    finite: bool = True
    _nonfinite: Callable[[], ConvPlan] | None = field(default=None, repr=False)
    # The operands (0: a, 1: b) whose inf or NaN would make the engine's output differ from the
    # direct sum's: only those are checked per call (``_nonfinite_operands``).
    checks: tuple[int, ...] = field(default=(0, 1), repr=False)
    # A complex op run as three real convs (Gauss's trick) by this plan of the component dtype,
    # whose engine is ``chosen``, as ``gauss`` says; the native complex plan runs operands with
    # an inf or NaN.
    split: ConvPlan | None = field(default=None, repr=False)
    gauss: _gauss.RealConv | None = field(default=None, repr=False)
    # (calls, plan): the plan made as if every kernel were loaded, which the planner keeps instead
    # after that many calls of this one, when the load has paid off (``LOAD_SPREAD_CALLS``); None
    # when no load swayed the choice.
    switch: tuple[int, ConvPlan] | None = field(default=None, repr=False)
    _calls: list[int] = field(default_factory=lambda: [0], repr=False)

    def nonfinite_plan(self) -> ConvPlan:
        """The plan run for operands with an inf or NaN: this one, or one without the engines that
        would not keep them where the direct sum does (ValueError for such a named method)."""
        return self if self._nonfinite is None else self._nonfinite()

    @property
    def takes(self) -> str:
        """The layout of the operands and result of ``self(a, b)``."""
        if self.gauss is not None and self.gauss.pads is not None:  # the split lays the parts out
            return self.layout
        native = self.layout == "channels_first" and self.chosen.run_first is not None
        return "channels_first" if native else "channels_last"

    @property
    def reason(self) -> str:
        """Why ``chosen`` runs, read from ``candidates``."""
        if self.method not in ("auto", "measure"):
            return "requested by method="
        ready = ", ".join(f"{c.engine} {c.seconds * 1e3:.3g} ms" for c in self.candidates
                          if isinstance(c, Prepared))
        nots = "; ".join(f"{c.engine}: {c.reason}" for c in self.candidates if isinstance(c, Refusal))
        what = "fastest measured" if self.method == "measure" else "cheapest estimate"
        if self.split is not None:
            each = self.split.estimated_seconds * 1e3
            what = (f"three {self.split.dtype} convs by {self.chosen.engine}, ~{each:.3g} ms each, "
                    f"beat the complex engines' {what}")
        later = "" if self.switch is None else (f"; {self.switch[1].chosen.engine} from call "
                                                f"{self.switch[0]} on, where its kernels' load has paid off")
        return f"{what} of {ready}" + (f"; not eligible: {nots}" if nots else "") + later

    @property
    def engine(self) -> Engine:
        return get_engine(self.chosen.engine)

    @property
    def estimated_seconds(self) -> float:
        return self.chosen.seconds

    @property
    def workspace_bytes(self) -> int:
        if self.split is not None:  # the real plan's, and the split's parts and results
            return self.split.workspace_bytes + _gauss.split_bytes(self.op, self.geometry, self.dtype,
                                                                   self.gauss)
        first = self.takes == "channels_first" and self.chosen.first_workspace is not None
        return self.chosen.first_workspace if first else self.chosen.workspace

    @property
    def choices(self) -> dict[str, object]:
        return dict(self.chosen.choices)

    def verdicts(self) -> dict[str, dict[str, object]]:
        """Every engine's verdict by name, as ``explain`` prints them: eligible with its estimate,
        workspace and choices, or not with the reason."""
        return {c.engine: {"eligible": False, "reason": c.reason} if isinstance(c, Refusal) else
                {"eligible": True, "estimated_seconds": c.seconds, "workspace_bytes": c.workspace,
                 "choices": dict(c.choices)} for c in self.candidates}

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        from .engines import _scratch, _threads

        if self.split is not None:  # the split checks the operands itself
            out = _gauss.run(self.gauss, self.split, self.layout, self.op, self.geometry, a, b)
            return out if out is not None else _in_layout(self._nonfinite(), self.takes, a, b)
        if self._nonfinite is not None and not all(checked_finite((a, b)[i]) for i in self.checks):
            return _in_layout(self._nonfinite(), self.takes, a, b)
        _scratch.fit(self.workspace_bytes, self.limit)  # the scratch kept from earlier calls counts
        try:
            with _threads.serial_under(self.geometry.flops):  # small work on the calling thread
                if self.takes == "channels_first":
                    return self.chosen.run_first(a, b)
                return self.chosen.run(a, b)
        except NonFinite:  # an operand the engine checks itself (Prepared.checks_itself)
            if self._nonfinite is None:
                raise
            return _in_layout(self._nonfinite(), self.takes, a, b)

    def __str__(self) -> str:
        lines = [f"{self.op} with engine {self.chosen.engine!r} ({self.reason}); "
                 f"~{self.estimated_seconds * 1e3:.3g} ms estimated, workspace "
                 f"{self.workspace_bytes:,} bytes, {self.dtype} compute"
                 + ("" if self.split is None else f" as three {self.split.dtype} convs (Gauss's trick)")
                 + ("" if self.layout == "channels_last" else
                    ", channels-first operands " + ("run as they are" if self.takes == self.layout
                                                    else "transposed to channels-last")),
                 self.geometry.describe()]
        width = max(len("engine"), *(len(c.engine) for c in self.candidates))
        lines.append(f"  {'engine':<{width}} {'estimate':>12} {'workspace':>15}  choices or why not")
        for c in self.candidates:
            mark = "*" if c is self.chosen else " "
            if isinstance(c, Refusal):
                lines.append(f"{mark} {c.engine:<{width}} {'-':>12} {'-':>15}  {c.reason}")
            else:
                what = ", ".join(f"{k}={v}" for k, v in c.choices.items())
                estimate = f"{c.seconds * 1e3:>9.3g} ms"
                lines.append(f"{mark} {c.engine:<{width}} {estimate} {c.workspace:>15,}  {what}")
        return "\n".join(lines)


class Planner:
    """Plans ops under a JIT policy (one of ``JIT_POLICIES``, see ``set_jit``) and keeps the plans
    (the ``CACHE_SIZE`` most recently used). ``default_planner()`` serves the library."""

    charges_loads = True  # its estimates carry the load of kernels not loaded yet

    def __init__(self, jit: str = "lazy") -> None:
        if jit not in JIT_POLICIES:
            raise ValueError(f"jit={jit!r}; expected one of {JIT_POLICIES}")
        self.jit = jit
        self._plans: OrderedDict[tuple, ConvPlan] = OrderedDict()
        self._warmed: set[str] = set()
        self._made_with: tuple = ()  # the machine model and engines the plans were made with
        self._saved: dict[tuple[str, str], float] = {}  # (kernel, dtype): the fallbacks' losses so far
        # Threads share the default planner: the cache's look-up-then-reorder and insert-then-evict
        # must not interleave (a plan evicted between get and move_to_end raised KeyError).
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every plan."""
        with self._lock:
            self._plans.clear()

    def load_seconds(self, dtype: np.dtype, *kernels: object) -> float:
        """What the policy charges before the compiled ``kernels`` can run on ``dtype``."""
        from .engines import _kernels

        if self.jit == "never" or not _kernels.NUMBA:
            return float("inf")
        if self.jit == "eager":
            return 0.0
        charge = _kernels.compile_penalty(dtype, *kernels) / LOAD_SPREAD_CALLS
        _charged.count = getattr(_charged, "count", 0) + (charge > 0)
        return charge

    def pays_to_load(self, kernel: object, dtype: np.dtype, saving: float) -> bool:
        """Whether a pass with a NumPy fallback (the finite check, the layout transposition) runs
        its compiled ``kernel`` on ``dtype`` this time, which saves ``saving`` seconds over the
        fallback: at once where it is loaded, or under 'eager'; never under 'never' (or without
        Numba); under 'lazy' once the savings of the calls that took the fallback add up to the
        kernel's load (the ski-rental rule of ``ConvPlan.switch``). No plan runs these kernels, so
        no plan ever loaded them: a process that never called ``warm_up`` checked the operands of
        its FFT and Winograd plans by NumPy's min and max (15 GB/s against the kernel's 35, one
        thread: 0.22 ms against 0.10 on a 4 MiB operand)."""
        from .engines import _kernels

        name = np.dtype(dtype).name
        if not _kernels.NUMBA or self.jit == "never":
            return False
        if self.jit == "eager" or _kernels.loaded(kernel, name):
            return True
        with self._lock:
            key = (kernel.__name__, name)
            self._saved[key] = self._saved.get(key, 0.0) + saving
            return self._saved[key] >= _kernels.compile_penalty(dtype, kernel)

    def plan(self, op: Op, geom: ConvGeometry, dtype: np.dtype, method: object = "auto",
             limit: int = 2 * 1024**3, layout: str = "channels_last", finite: bool = True) -> ConvPlan:
        """Eligibility, then workspace, then cost, then the caller's override.

        ``method="auto"`` keeps the cheapest estimate; ``"measure"`` runs every eligible engine on
        random operands of the op's shapes and keeps the fastest; an engine's name is used as it
        is, or fails with the reason it cannot run. ``layout`` is the caller's operands'
        ('channels_last' or 'channels_first'): an engine that does not run it natively is
        charged the transpositions of the operands and the result. ``finite=False`` plans for
        operands with an inf or NaN: engines that would not keep them where the direct sum does are
        not eligible.
        """
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r}; expected one of {LAYOUTS}")
        if not isinstance(method, str):
            raise TypeError(f"method must be a string, 'auto', 'measure' or one of {engine_names()}, "
                            f"got {method!r}")
        if geom.empty:  # the public ops short-circuit it; no engine handles it
            raise ValueError(f"geom has an empty output, out_spatial={geom.out_spatial}: no {op} to plan\n"
                             f"{geom.describe()}")
        dtype = np.dtype(dtype)
        made_with = (_machine.model(), *registered())
        key = (op, geom, dtype, method, limit, layout, finite)
        with self._lock:
            if made_with != self._made_with:  # a new calibration or engine: plan again
                self._plans.clear()
                self._made_with = made_with
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                plan._calls[0] += 1
                if plan.switch is not None and plan._calls[0] >= plan.switch[0]:
                    plan = self._plans[key] = plan.switch[1]  # its calls have paid for the load
                return plan
        if self.jit == "eager" and dtype.name in ("float32", "float64") and dtype.name not in self._warmed:
            from .engines import warm_up

            warm_up((dtype.name,))
            self._warmed.add(dtype.name)
        plan = self._make(op, geom, dtype, method, limit, layout, finite)  # outside the lock: may measure
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > CACHE_SIZE:
                self._plans.popitem(last=False)
        return plan

    def _make(self, op: Op, geom: ConvGeometry, dtype: np.dtype, method: str, limit: int,
              layout: str, finite: bool) -> ConvPlan:
        if method not in ("auto", "measure"):
            p = self._prepare(get_engine(method), op, geom, dtype, limit, layout, finite)
            if isinstance(p, Refusal):
                raise ValueError(f"method={method!r} cannot run this {op}: {p.reason}")
            return self._made(op, geom, dtype, limit, p, (p,), method, layout, finite)
        before = getattr(_charged, "count", 0)
        verdicts = [self._prepare(get_engine(name), op, geom, dtype, limit, layout, finite)
                    for name in engine_names()]
        charged = self.charges_loads and getattr(_charged, "count", 0) > before  # an estimate carries a load
        if self.jit == "never":
            verdicts = [Refusal(v.engine, "runs compiled kernels (jit='never')")
                        if isinstance(v, Prepared) and v.seconds == float("inf") else v for v in verdicts]
        ready = [v for v in verdicts if isinstance(v, Prepared)]
        refused = [v for v in verdicts if isinstance(v, Refusal)]
        if not ready:
            why = "; ".join(f"{r.engine}: {r.reason}" for r in refused)
            raise ValueError(f"no engine can run this {op} ({why}): {geom.describe()}")
        if method == "measure":
            ready = [replace(p, seconds=_measure(p, op, geom, dtype, layout)) for p in ready]
        ready.sort(key=lambda p: p.seconds)
        native = self._made(op, geom, dtype, limit, ready[0], (*ready, *refused), method, layout, finite)
        if dtype.kind != "c" or not finite:
            return self._provisional(native) if charged and method == "auto" else native
        how = _gauss.real_conv(op, geom, layout)
        if how.pads is not None and self._gauss_load(dtype) == float("inf"):  # no compiled passes
            how = _gauss.RealConv(op, geom, layout)
        real = self.plan(how.op, how.geometry, np.dtype(dtype.char.lower()), method, limit, how.layout)
        seconds = _gauss_seconds(real, op, geom, dtype, how)
        split = replace(real.chosen, seconds=seconds + (0.0 if how.pads is None else self._gauss_load(dtype)))
        fits = real.workspace_bytes + _gauss.split_bytes(op, geom, dtype, how) <= limit
        if split.seconds >= native.estimated_seconds or not fits:
            return native
        return replace(native, chosen=split, _nonfinite=native.nonfinite_plan, split=real, gauss=how)

    def _provisional(self, plan: ConvPlan) -> ConvPlan:
        """``plan``, with the plan it gives way to (made as if every kernel were loaded) after its
        calls have paid for loading that plan's kernels, where the load charges chose another:
        switching after the calls whose estimated loss reaches the load keeps a loop within twice
        the best choice in hindsight."""
        free = _Loaded(self.jit)._make(plan.op, plan.geometry, plan.dtype, plan.method, plan.limit,
                                       plan.layout, plan.finite)
        if free.chosen.engine == plan.chosen.engine:
            return plan
        now = {c.engine: c.seconds for c in plan.candidates if isinstance(c, Prepared)}
        then = {c.engine: c.seconds for c in free.candidates if isinstance(c, Prepared)}
        a, b = plan.chosen.engine, free.chosen.engine
        loss = then[a] - then[b]  # per call, both loaded
        load = ((now[b] - then[b]) - (now[a] - then[a])) * LOAD_SPREAD_CALLS
        if not loss > 0:
            return plan
        return replace(plan, switch=(max(1, math.ceil(load / loss)), free))

    def _gauss_load(self, dtype: np.dtype) -> float:
        """What the policy charges before the split's compiled passes can run on ``dtype``'s parts."""
        from .engines import _kernels

        return self.load_seconds(np.dtype(dtype.char.lower()), _kernels.split_parts, _kernels.join_parts)

    def _made(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int, chosen: Prepared,
              candidates: tuple, method: str, layout: str, finite: bool) -> ConvPlan:
        """The plan; one for finite operands whose engine would not keep inf and NaN where the
        direct sum does refers to its non-finite plan, made (and kept) when first needed."""
        later = None
        engine = get_engine(chosen.engine)
        if finite and dtype.kind in "fc" and _nonfinite_skip(engine, op) and \
                not _keeps_nonfinite(engine, op, geom, dtype, layout):
            later = partial(self.plan, op, geom, dtype, method, limit, layout, False)
        checks = tuple(i for i in _nonfinite_operands(engine, op) if i not in chosen.checks_itself)
        return ConvPlan(op, geom, dtype, limit, chosen, candidates, method, layout, finite, later,
                        checks=checks)

    def _prepare(self, engine: Engine, op: Op, geom: ConvGeometry, dtype: np.dtype,
                 limit: int, layout: str = "channels_last", finite: bool = True) -> Prepared | Refusal:
        if not finite:
            why = _nonfinite_skip(engine, op)
            if why:
                return Refusal(engine.name, f"non-finite input: {engine.name} skipped ({why})")
        try:
            p = engine.prepare(op, geom, dtype, limit, self)
        except ValueError as e:  # a workspace that does not fit the budget
            return Refusal(engine.name, str(e))
        if layout == "channels_last" or isinstance(p, Refusal):
            return p
        if p.run_first is not None:  # its channels-first estimate and choices stand for it
            return replace(p, seconds=p.seconds if p.first_seconds is None else p.first_seconds,
                           choices=p.choices if p.first_choices is None else p.first_choices)
        return replace(p, seconds=p.seconds + transpose_seconds(op, geom, dtype))


class _Loaded(Planner):
    """A planner that charges no load: every compiled kernel as if loaded (a kernel that cannot
    run, ``jit='never'`` or no Numba, stays refused)."""

    charges_loads = False

    def load_seconds(self, dtype: np.dtype, *kernels: object) -> float:
        charged = super().load_seconds(dtype, *kernels)
        return charged if charged == float("inf") else 0.0


_charged = threading.local()  # count: the load charges this thread's estimates have made


def _nonfinite_skip(engine: Engine, op: Op) -> str | None:
    """Why ``engine`` would not keep inf and NaN where the direct sum does in ``op``, or None."""
    skips = getattr(engine, "nonfinite_skips", None)
    if skips is None:
        return "it does not say how it treats inf and NaN (nonfinite_skips)"
    return dict(skips).get(op)


def _nonfinite_operands(engine: Engine, op: Op) -> tuple[int, ...]:
    """The operands (0: a, 1: b) whose inf or NaN would break the direct sum's pattern in
    ``engine``'s ``op``: those its optional ``nonfinite_operands`` names, else both."""
    return dict(getattr(engine, "nonfinite_operands", ())).get(op, (0, 1))


def _keeps_nonfinite(engine: Engine, op: Op, geom: ConvGeometry, dtype: np.dtype, layout: str) -> bool:
    """Whether ``engine``, which declares it may not keep inf and NaN in ``op``, keeps them on this
    geometry, dtype and caller's layout all the same (its optional ``keeps_nonfinite``): the plan
    then checks no operand per call (a min/max pass over a 6 MiB dy took 4-5 % of a 1x1 input
    gradient)."""
    keeps = getattr(engine, "keeps_nonfinite", None)
    return bool(keeps is not None and keeps(op, geom, dtype, layout))


def _gauss_seconds(real: ConvPlan, op: Op, geom: ConvGeometry, dtype: np.dtype,
                   how: _gauss.RealConv) -> float:
    """Three real convs, plus splitting the operands and joining the result: one pass each where
    fused, else about a transposition."""
    if how.pads is None:
        return 3 * real.estimated_seconds + transpose_seconds(op, geom, dtype)
    rate = _machine.figures("_gauss").PASS_BYTES_PER_S
    return 3 * real.estimated_seconds + _gauss.split_seconds(op, geom, dtype, how, rate)


def _in_layout(plan: ConvPlan, takes: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``plan(a, b)`` for operands and result in the layout ``takes``, which may not be the one
    ``plan`` takes (a non-finite plan may choose an engine that runs the other)."""
    if plan.takes == takes:
        return plan(a, b)
    first = takes == "channels_first"  # else the plan takes channels-first and we have channels-last
    x_to, w_to = (x_to_last, w_to_last) if first else (x_from_last, w_from_last)
    x_back, w_back = (x_from_last, w_from_last) if first else (x_to_last, w_to_last)
    roles = ("x", "x", "w") if plan.op == "filter_grad" else ("x", "w", "x")  # a, b, the result
    a2, b2 = (np.ascontiguousarray((x_to if r == "x" else w_to)(v, "channels_first"))
              for r, v in zip(roles, (a, b)))
    out = plan(a2, b2)
    return np.ascontiguousarray((x_back if roles[2] == "x" else w_back)(out, "channels_first"))


def transpose_seconds(op: Op, geom: ConvGeometry, dtype: np.dtype) -> float:
    """What a channels-first caller pays around an engine that runs channels-last: both operands
    and the result transposed, each read once and written once (by the compiled transposition
    where it is loaded, else by NumPy)."""
    from .engines._kernels import layout

    fig = _machine.figures("_layout")
    rate = fig.COMPILED_TRANSPOSE_BYTES_PER_S if layout.loaded(dtype) else fig.TRANSPOSE_BYTES_PER_S
    shapes = {"forward": ("x", "w", "y"), "input_grad": ("y", "w", "x"), "filter_grad": ("x", "y", "w")}[op]
    elements = sum(math.prod(getattr(geom, f"{role}_shape")()) for role in shapes)
    return 2 * elements * np.dtype(dtype).itemsize / rate


def _measure(p: Prepared, op: Op, geom: ConvGeometry, dtype: np.dtype, layout: str = "channels_last",
             repeat: int = 3) -> float:
    """Best of ``repeat`` runs on random operands, after one untimed run (which loads kernels); a
    channels-first caller's transpositions estimated where the engine does not run it natively."""
    rng = np.random.default_rng(0)
    native = layout == "channels_first" and p.run_first is not None
    fmt = "channels_first" if native else "channels_last"
    x, w, y = (geom.x_shape(fmt), geom.w_shape(fmt), geom.y_shape(fmt))
    shapes = {"forward": (x, w), "input_grad": (y, w), "filter_grad": (x, y)}[op]
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    run = p.run_first if native else p.run
    extra = transpose_seconds(op, geom, dtype) if layout == "channels_first" and not native else 0.0
    run(a, b)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run(a, b)
        best = min(best, time.perf_counter() - start)
    return best + extra


_DEFAULT = Planner()


def default_planner() -> Planner:
    """The planner the library's functions use."""
    return _DEFAULT


def pays_to_load(kernel: object, dtype: np.dtype, saving: float) -> bool:
    """The default planner's ``Planner.pays_to_load``."""
    return _DEFAULT.pays_to_load(kernel, dtype, saving)


def checked_finite(a: np.ndarray) -> bool:
    """``all_finite(a)`` for a plan's per-call check: its compiled pass loaded when that pays."""
    from .engines._kernels import finite

    load = False
    if a.size and finite.runs_on(a) and not finite.loaded(a.dtype):
        fig = _machine.figures("_dtypes")
        saving = a.nbytes * (1 / fig.FINITE_BYTES_PER_S - 1 / fig.COMPILED_FINITE_BYTES_PER_S)
        load = pays_to_load(finite.residue, a.dtype, saving)
    return all_finite(a, load)


def set_jit(policy: str) -> None:
    """Set when compiled (Numba) kernels load; plans made before are forgotten.

    'lazy' (default): a kernel not loaded yet is charged its load time (0.2 s from Numba's disk
    cache, seconds to compile on a new machine) spread over ``LOAD_SPREAD_CALLS`` (100) calls, so
    a conv run in a loop gets the compiled engine from its first call and one-off small convs stay
    on NumPy; a plan that picks one loads it as it runs. 'eager': every kernel is loaded for a
    dtype before its first plan, and weighed by its running time alone. 'never': compiled kernels
    are never picked unless named by ``method=``. Under every policy a plan, once made, is kept:
    identical calls give bitwise-identical results. ``convgrad.engines.warm_up()`` loads every kernel now.
    """
    global _DEFAULT
    _DEFAULT = Planner(policy)


def make_plan(op: Op, geom: ConvGeometry, dtype: np.dtype, method: object, limit: int,
              layout: str = "channels_last") -> ConvPlan:
    """The default planner's plan (see ``Planner.plan``), kept for later identical requests.

    Parameters
    ----------
    op : 'forward', 'input_grad' or 'filter_grad'
    geom : ConvGeometry
    dtype : the compute dtype
    method : 'auto', 'measure' or an engine name (``convgrad.engine_names()``)
    limit : workspace budget in bytes
    layout : the caller's layout, 'channels_last' (default) or 'channels_first': engines that
        do not run it natively are charged the transpositions

    Returns
    -------
    ConvPlan : runs the op on C-contiguous operands in ``plan.takes`` (channels-last unless the
        chosen engine runs ``layout`` natively), ``plan(a, b)``; prints every engine's verdict.

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> g = convgrad.ConvGeometry.for_conv((1, 1, 16, 16), (1, 1, 3, 3))
    >>> plan = convgrad.make_plan("forward", g, np.float64, "auto", 2**31)
    >>> plan.chosen.engine, plan.choices
    ('gather', {'elements': 1764})
    >>> plan(np.ones((1, 16, 16, 1)), np.ones((3, 3, 1, 1)))[0, :2, :2, 0]
    array([[9., 9.],
           [9., 9.]])
    """
    return _DEFAULT.plan(op, geom, dtype, method, limit, layout)
