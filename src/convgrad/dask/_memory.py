"""Per-block memory: the budget one task may use, each block's estimated peak (refused before
the graph exists, with a chunking that fits), and the engine each block runs, chosen on the
client when the graph is built."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence

import numpy as np

from .._budget import workspace_limit
from .._geometry import ConvGeometry
from .._plan import make_plan
from ._pinned import Split

# A worker holds more than its running task: the chunks its neighbours still need, results
# waiting to be sent, its own baseline (~150-250 MiB). The design study's 1 GiB workers peaked
# near 80 % with blocks estimated at half their share, so blocks get half.
WORKER_FRACTION = 0.5
# Of a block's budget, the engine's workspace gets a quarter (the rest holds the block's
# operands, copies and result). At 1 GiB per worker that is 128 MiB, the study's figure; with
# 512 MiB, a 96^3 block picked im2col's 382 MiB columns and the workers paused at 83 %.
WORKSPACE_SHARE = 4

# (input shapes, output shape, the block's conv: op, its x-side shape, filter shape, kwargs)
Item = tuple[list[tuple[int, ...]], tuple[int, ...], tuple]


def _client_share() -> int | None:
    """Half of the smallest ``memory_limit / nthreads`` among the active Client's workers, or
    None without a Client (distributed is never imported here)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:  # no Client
        return None
    shares = [w["memory_limit"] / max(1, w["nthreads"]) for w in client.scheduler_info()["workers"].values()
              if w.get("memory_limit")]
    return int(min(shares) * WORKER_FRACTION) if shares else None


class Budget:
    """``block_bytes``: the peak one block may reach (default: half a worker thread's share of
    its memory limit under a distributed Client, else the core's workspace budget);
    ``workspace``: the core's budget inside each block, a quarter of ``block_bytes`` at most;
    ``method``: 'auto' or an engine name, resolved per block to an engine name when the graph
    is built."""

    def __init__(self, method: str = "auto", workspace_bytes: int | None = None,
                 block_bytes: int | None = None) -> None:
        core = workspace_limit(workspace_bytes)
        if block_bytes is None:
            block_bytes = _client_share() or core
        elif isinstance(block_bytes, bool) or not isinstance(block_bytes, int) or block_bytes < 1:
            raise ValueError(f"block_bytes must be a positive int, got {block_bytes!r}")
        self.block_bytes = block_bytes
        self.workspace = max(1, min(core, block_bytes // WORKSPACE_SHARE))
        self.method = method
        self._plans: dict = {}

    def __dask_tokenize__(self) -> tuple:
        return (self.block_bytes, self.workspace, self.method)

    def plan(self, op: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...], kwargs: dict,
             comp: np.dtype):
        """The core's plan for one block's conv (kept: blocks repeat a few geometries)."""
        key = (op, x_shape, w_shape, tuple(sorted(kwargs.items())), comp)
        if key not in self._plans:
            geom = ConvGeometry.for_conv(x_shape, w_shape, **kwargs)
            # costed for the caller's layout, as the block's core call plans it
            self._plans[key] = make_plan(op, geom, comp, self.method, self.workspace, kwargs["data_format"])
        return self._plans[key]

    def pinned(self, op: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...], kwargs: dict,
               comp: np.dtype) -> tuple[dict, Split | None]:
        """The block's ``method=`` (the engine chosen now) and ``workspace_bytes=``, and for a
        complex plan that runs as three real convs, the ``Split`` the block runs as its plan
        (a named engine would run the complex op natively)."""
        plan = self.plan(op, x_shape, w_shape, kwargs, comp)
        return {"method": plan.chosen.engine if plan.split is None else "auto",
                "workspace_bytes": self.workspace}, Split.of(plan)

    def peak(self, item: Item, comp: np.dtype) -> int:
        """Estimated peak bytes of one block: twice its inputs (the chunks and the assembled,
        channels-last copy), twice its output (the result and its layout copy), the engine's
        workspace."""
        ins, out, (op, x_shape, w_shape, kwargs) = item
        size = comp.itemsize
        try:
            work = self.plan(op, x_shape, w_shape, kwargs, comp).workspace_bytes
        except ValueError:
            if self.method not in ("auto", "measure"):
                raise  # the named engine cannot run this block: the planner says why
            work = self.block_bytes  # no engine fits the workspace: the block does not fit
        return 2 * sum(math.prod(s) for s in ins) * size + 2 * math.prod(out) * size + work

    def check(self, op: str, comp: np.dtype, items_for: Callable[[tuple], list[Item]], chunks: tuple,
              shape: tuple[int, ...], operand: str, chunked: Sequence[int]) -> list[Item]:
        """``items_for(chunks)``, or the ValueError naming ``op``, the largest block and a
        chunking of ``operand`` (axes ``chunked`` made smaller) whose blocks fit."""
        items = items_for(chunks)
        worst = max(items, key=lambda it: self.peak(it, comp), default=None)
        if worst is None or self.peak(worst, comp) <= self.block_bytes:
            return items
        size, fits = [max(c) for c in chunks], ""
        while not fits:
            axis = max(chunked, key=lambda a: size[a])
            if size[axis] <= 1:
                break
            size[axis] = -(-size[axis] // 2)
            trial = tuple(_regular(n, c) for n, c in zip(shape, size))
            if all(self.peak(it, comp) <= self.block_bytes for it in items_for(trial)):
                fits = f"rechunk {operand} to chunks={tuple(size)}"
        if not fits:
            fits = f"no chunking of {operand} fits; raise block_bytes="
        ins, out, _ = worst
        raise ValueError(
            f"convgrad.dask.{op}: a block reading {' and '.join(map(str, ins))} into {out} needs "
            f"~{self.peak(worst, comp):,} bytes, more than the per-block budget block_bytes="
            f"{self.block_bytes:,}; {fits} (or give block_bytes=)")


def _regular(n: int, c: int) -> tuple[int, ...]:
    """n split in chunks of c (the last one shorter)."""
    if n == 0:
        return (0,)
    return (c,) * (n // c) + ((n % c,) if n % c else ())
