"""A parallel call that never waits for a thread that did not start.

A Numba ``prange`` loop ends at OpenMP's barrier, which waits for every thread of the team, also
one that another process keeps off its core and that never ran a chunk. Here a kernel that claims
its chunks (``_numba._claim``) runs as one serial ``njit(nogil=True)`` body called by the caller
and by ``shared() - 1`` helpers of ``_threads``' pool; the caller runs the body until no chunk is
left and then waits only for the chunks that were claimed and are not finished yet. A helper
that starts late claims nothing and returns without touching the arrays; one still queued is
cancelled.

A kernel for ``run`` takes the team's counters ``team`` (int64, TEAM_SLOTS) first: ``team[0]``
the next chunk to claim (``_claim(team)``), ``team[1]`` the chunks finished (``_finished(team)``
after each chunk's writes: acq_rel, so the caller sees them), ``team[2:]`` zeros for the
kernel's own shared counters; it returns its chunk count, which every caller of the body
computes alike from the arguments. Bits must not depend on which thread runs which chunk::

    @njit(nogil=True, cache=True)
    def double(team, x, y):
        size = chunk_size(x.size)
        count = -(-x.size // size)
        k = _claim(team)
        while k < count:
            for i in range(k * size, min(x.size, (k + 1) * size)):
                y[i] = 2 * x[i]
            _finished(team)
            k = _claim(team)
        return count

    _team.run(double, x, y)
"""

from __future__ import annotations

import os

import numpy as np

from . import _threads
from ._kernels._numba import NUMBA

TEAM_SLOTS = 8  # claimed, finished, 6 for the kernel: one cache line
# The caller checks the finished count this many times before it yields its core between checks
# (``os.sched_yield``, which also lets a helper take the GIL to report an error): a chunk a helper
# claimed last is mostly done within a few microseconds of the caller's own last one.
SPINS = 200
CLOSED = 1 << 62  # set as the claim counter once the call is over: a late helper claims nothing


def run(kernel, *args, threads: int | None = None):
    """``kernel(team, *args)`` on the caller's thread and ``threads - 1`` helpers (default
    ``_threads.shared()``), returning once every chunk is finished; a helper's error is raised
    here. The result is the kernel's chunk count."""
    team = np.zeros(TEAM_SLOTS, np.int64)
    n = _threads.shared() if threads is None else threads
    if n <= 1 or not NUMBA:  # plain Python holds the GIL: helpers would only wait for it
        return kernel(team, *args)
    pool = _threads._helpers()
    helpers = [pool.submit(kernel, team, *args) for _ in range(n - 1)]
    try:
        count = kernel(team, *args)
        _wait(team, count, helpers)
    finally:
        team[0] = CLOSED  # every chunk was claimed: a helper that starts now finds none
        for h in helpers:
            h.cancel()  # one still queued never starts
    for h in helpers:  # one that failed before claiming (the caller did its chunks)
        if h.done() and not h.cancelled() and h.exception() is not None:
            raise h.exception()
    return count


def _wait(team: np.ndarray, count: int, helpers: list) -> None:
    """Until ``count`` chunks are finished: checks, then yields between checks; raises a helper's
    error (its chunk will never finish)."""
    spins = 0
    while team[1] < count:
        for h in helpers:
            if h.done() and not h.cancelled() and h.exception() is not None:
                raise h.exception()
        spins += 1
        if spins > SPINS:
            os.sched_yield()
