"""What an engine and the planner say to each other (re-exported by ``convgrad.engines``): the
engines import it from here, not from their package, which imports them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from ._geometry import ConvGeometry

Op = Literal["forward", "input_grad", "filter_grad"]
# forward (x, w) -> y; input_grad (dy, w) -> dx; filter_grad (x, dy) -> dw.
OPS: tuple[Op, ...] = ("forward", "input_grad", "filter_grad")


@dataclass(frozen=True)
class Refusal:
    """Why ``engine`` cannot run an op: it does not support the geometry, or its workspace does
    not fit the budget."""

    engine: str
    reason: str


LAYOUTS = ("channels_last", "channels_first")


class NonFinite(Exception):
    """Raised by a prepared run that found an inf or a NaN in an operand it checks itself
    (``Prepared.checks_itself``): the plan runs its non-finite plan instead."""


@dataclass(frozen=True, eq=False)
class Prepared:
    """One engine ready to run one op: ``run(a, b)`` on C-contiguous channels-last operands
    (forward: x, w; input_grad: dy, w; filter_grad: x, dy) returns the channels-last result.

    An engine that also runs channels-first without transposing whole arrays (x ``(N, C, *S)``,
    w ``(O, C/G, *K)``, results likewise) gives ``run_first``, with its estimate
    ``first_seconds`` (None: ``seconds``), workspace ``first_workspace`` (None: ``workspace``) and
    ``first_choices`` (None: ``choices``) where its channels-first kernel is another; the planner
    charges the others the transpositions for a channels-first caller.
    """

    engine: str
    seconds: float  # the cost model's estimate (or a measured time, with method="measure")
    workspace: int  # bytes allocated beyond the operands and the result
    run: Callable[[np.ndarray, np.ndarray], np.ndarray] = field(repr=False)
    choices: Mapping[str, object] = field(default_factory=dict)
    run_first: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    first_seconds: float | None = None
    first_workspace: int | None = None
    first_choices: Mapping[str, object] | None = None
    # The operands (0: a, 1: b) whose inf and NaN ``run`` and ``run_first`` find themselves as they
    # read them (raising NonFinite), so that the plan does not check them first.
    checks_itself: tuple[int, ...] = ()

    @property
    def layouts(self) -> tuple[str, ...]:
        """The layouts ``self`` runs natively."""
        return LAYOUTS if self.run_first is not None else LAYOUTS[:1]

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.run(a, b)


class Planner(Protocol):
    """What an engine may ask of the planner (``convgrad._plan.Planner``) that prepares it."""

    def load_seconds(self, dtype: np.dtype, *kernels: object) -> float:
        """What the JIT policy charges before the compiled ``kernels`` can run on ``dtype``."""

    def plan(self, op: Op, geom: ConvGeometry, dtype: np.dtype, method: object, limit: int) -> object:
        """A composite engine's pieces are planned (and run) like any op."""


class Engine(Protocol):
    name: str
    # (op, why) for each op whose arithmetic is not the direct sum's for inf and NaN (transforms
    # that mix taps, products with zeros the sum never reads, skipped products with the zero
    # padding): the planner skips the engine for those ops when an operand is not all finite.
    # An engine without this attribute is skipped for every op then. An engine may also define
    # ``keeps_nonfinite(op, geom, dtype, layout) -> bool``: True where a listed op keeps inf and
    # NaN all the same (the tiled engine's channels-first 1x1 kernels), so plans there check no
    # operand per call; and ``nonfinite_operands``, (op, operand indices) pairs (0: a, 1: b)
    # naming the operands whose inf or NaN break the pattern where not both: plans check only those.
    # A ``Prepared`` whose run finds them itself as it reads an operand lists it in
    # ``checks_itself`` and raises ``NonFinite`` (the one-pass Winograd kernel's x).
    nonfinite_skips: tuple[tuple[Op, str], ...]

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        """The op prepared within ``limit`` workspace bytes, or why not. A workspace that cannot
        fit may also raise ValueError (``_budget.check_fits``): the planner records it as a
        refusal. Composite engines plan their pieces with ``planner``."""
