"""How many threads the engines may use: no more than the caller allows the thread pools it knows.

BLAS reads limits set with ``threadpoolctl.threadpool_limits`` (or ``OPENBLAS_NUM_THREADS``) by
itself; scipy.fft's workers and Numba's parallel loops do not. They get the smallest thread
count among the BLAS and OpenMP libraries loaded in the process, so a caller that limits those
to one thread gets a single-threaded convgrad, and two pools never oversubscribe the cores.
"""

from __future__ import annotations

import os

_controller = None
_CORES = os.cpu_count() or 1


def allowed() -> int:
    """The thread count every engine keeps to (at least 1); all cores without threadpoolctl."""
    global _controller
    if _controller is None:  # libraries are scanned once, after NumPy's and SciPy's BLAS loaded
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # a declared dependency; without it there are no limits to read
            return _CORES
        _controller = ThreadpoolController()
    counts = [lib.num_threads for lib in _controller.lib_controllers]
    return max(1, min(counts)) if counts else _CORES


def for_numba() -> int:
    """Set Numba's parallel loops to ``allowed()`` threads (within its pool) and return it."""
    from . import _kernels

    n = allowed()
    if _kernels.NUMBA:
        import numba

        n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(n)
    return n
