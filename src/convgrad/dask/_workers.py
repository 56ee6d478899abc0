"""Worker setup for a distributed Client: budgets from each worker's memory, one thread per
task for BLAS, SciPy's FFT and Numba, the compiled kernels loaded; on restarts too."""

from __future__ import annotations

import os

from .._budget import WORKSPACE_ENV
from ._memory import WORKER_FRACTION, WORKSPACE_SHARE

try:  # a plugin class needs distributed; convgrad.dask works without it (local schedulers)
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover
    WorkerPlugin = object


class ConvgradWorker(WorkerPlugin):
    """Runs on every worker as it starts (restarted ones included): sets the workspace budget
    to a quarter of ``fraction`` of the worker's memory per thread (what convgrad.dask's blocks
    get) and the scratch pool to a quarter of that (convgrad's defaults, 2 GiB and 512 MiB per
    thread, do not fit a 1 GiB worker, and kept scratch shows up as unmanaged memory): 128 MiB
    and 32 MiB at 1 GiB and one thread, the design study's figures; limits BLAS and OpenMP
    pools to one thread (the worker runs one task per thread; convgrad's FFT and Numba follow
    those limits); loads the kernels."""

    name = "convgrad"

    def __init__(self, fraction: float = WORKER_FRACTION) -> None:
        self.fraction = fraction

    def setup(self, worker: object) -> None:
        configure(worker.memory_manager.memory_limit, worker.state.nthreads, self.fraction)


_LIMITS: list = []  # the threadpool limits stay in force for the worker's life


def configure(memory_limit: int | None, nthreads: int, fraction: float = WORKER_FRACTION) -> dict:
    """Budgets and thread limits of this process for ``nthreads`` tasks in ``memory_limit``
    bytes; returns what it set."""
    from ..engines import _scratch, warm_up

    if memory_limit:
        share = int(memory_limit / max(1, nthreads) * fraction) // WORKSPACE_SHARE
        os.environ[WORKSPACE_ENV] = str(share)
        _scratch.POOL_BYTES = share // 4
    try:
        from threadpoolctl import threadpool_limits

        _LIMITS.append(threadpool_limits(limits=1))
    except ImportError:  # pragma: no cover - a declared dependency
        pass
    warm_up()
    return {"workspace_bytes": os.environ.get(WORKSPACE_ENV), "scratch_bytes": _scratch.POOL_BYTES,
            "pid": os.getpid()}


def setup(client: object, fraction: float = WORKER_FRACTION) -> dict:
    """Prepare every worker of ``client`` (a ``distributed.Client``) for convgrad.dask, now and
    on every restart (a ``WorkerPlugin``): workspace and scratch budgets from the worker's
    ``memory_limit / nthreads`` times ``fraction`` (see ``ConvgradWorker``), BLAS / FFT / Numba
    at one thread per task, compiled kernels loaded.

    Returns
    -------
    dict : worker address -> {'workspace_bytes', 'scratch_bytes', 'pid'}
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    client.register_plugin(ConvgradWorker(fraction))
    return client.run(_settings)


def _settings() -> dict:
    from ..engines import _scratch

    return {"workspace_bytes": os.environ.get(WORKSPACE_ENV), "scratch_bytes": _scratch.POOL_BYTES,
            "pid": os.getpid()}
