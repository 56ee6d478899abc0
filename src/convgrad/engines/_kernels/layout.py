"""The transpositions between channels-first and channels-last for engines that run only one of
them: batches of 2-D transposes, in blocks of 8 x 8 transposed in registers.

Every layout change is such a batch: x ``(N, C, S)`` <-> ``(N, S, C)`` per image, and the filter
``(O, Cg, T)`` <-> ``(T, Cg, O)`` per input channel, its rows ``Cg * T`` (or ``Cg * O``) apart.
NumPy's transposing copy moves one value at a time (a 32 x 32 x 31 x 31 filter's way back from
channels-last: 2.9 ms on one thread, 0.2 here). One thread: the engines around it end or start with
BLAS, whose worker threads spin for about 0.1 s after a call, and the parallel version measured
2-3x the channels-last time of the whole FFT op on two quiet cores (the same reason
``spectral_mix`` runs on one); the filter goes to channels-last by NumPy (see ``relaid``).
"""

from __future__ import annotations

import numpy as np

from .._scratch import aligned_empty
from ._numba import compiled_for, njit
from ._shuffle import transpose8


@njit(cache=True)
def transpose_batches(a, out, batches, rows, cols, a_batch, a_row, o_batch,
                      o_row):  # pragma: no cover - compiled
    """out[b * o_batch + j * o_row + i] = a[b * a_batch + i * a_row + j] for b < batches,
    i < rows, j < cols: a and out flat, of one float dtype. Work items are bands of 64 bytes of
    rows (16 float32 or 8 float64) of a batch, each moving 8 x 8 blocks along its columns, so
    that every cache line of out is written whole at once (bands of 8 float32 wrote half lines,
    and with rows 4 KiB apart the other half came after the line had left the cache); the last
    columns and rows go one value at a time."""
    height = 64 // a.itemsize
    bands = -(-rows // height)
    for t in range(batches * bands):
        b, i0 = t // bands, t % bands * height
        src = np.uint64(b * a_batch + i0 * a_row)
        dst = np.uint64(b * o_batch + i0)
        ar, orow = np.uint64(a_row), np.uint64(o_row)
        full = min(height, rows - i0) // 8 * 8
        j = 0
        while j + 8 <= cols:
            for h in range(0, full, 8):
                uh = np.uint64(h)
                transpose8(a, src + uh * ar + np.uint64(j), ar, out, dst + np.uint64(j) * orow + uh, orow)
            j += 8
        for jj in range(j, cols):
            for ii in range(full):
                out[dst + np.uint64(jj) * orow + np.uint64(ii)] = a[src + np.uint64(ii) * ar + np.uint64(jj)]
        for ii in range(full, min(height, rows - i0)):
            for jj in range(cols):
                out[dst + np.uint64(jj) * orow + np.uint64(ii)] = a[src + np.uint64(ii) * ar + np.uint64(jj)]


# Below this many values NumPy's copy is as quick as the kernel's launch.
MIN_VALUES = 1 << 14
_FLOATS = {4: np.float32, 8: np.float64}


def loaded(dtype: np.dtype) -> bool:
    """Whether the kernel is compiled (``warm_up``) for the float type that moves ``dtype``'s values
    (floats and complex of 4 or 8 bytes; without Numba, never)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "fc" or dtype.itemsize not in _FLOATS:
        return False
    return compiled_for(transpose_batches, _FLOATS[dtype.itemsize])


def runs_on(a: np.ndarray, role: str, to_last: bool) -> bool:
    """Whether ``relaid(a, role, to_last)`` would run the kernel once it is loaded."""
    # (O, Cg, T) -> (*K, Cg, O) does not: the rows written lie Cg * O apart (4 KiB for 32 x 32
    # channels), each block's stores in one cache set; NumPy's copy was faster (0.47 against
    # 3.6 ms, 32 x 32 channels of 31 x 31, quiet) and a two-pass version ran slower on two
    # threads right after BLAS.
    return (a.ndim >= 3 and a.size >= MIN_VALUES and a.flags.c_contiguous and a.dtype.kind in "fc"
            and a.dtype.itemsize in _FLOATS and (role == "x" or not to_last))


def mover(dtype: np.dtype) -> np.dtype:
    """The float type whose values the kernel moves for ``dtype``'s (complex as pairs of them)."""
    return np.dtype(_FLOATS[np.dtype(dtype).itemsize])


def relaid(a: np.ndarray, role: str, to_last: bool, load: bool = False) -> np.ndarray | None:
    """The C-contiguous ``a`` in the other layout, C-contiguous, by the compiled kernel; None where
    it does not run (``runs_on``; not loaded for the dtype, unless ``load``).

    ``role`` 'x': ``(N, C, *S)`` <-> ``(N, *S, C)`` (x, y, dx, dy); 'w': ``(O, Cg, *K)`` <->
    ``(*K, Cg, O)``. ``to_last``: from channels-first to channels-last, else back.
    """
    if not runs_on(a, role, to_last) or not (load or loaded(a.dtype)):
        return None
    if role == "x":
        n, s = a.shape[0], int(np.prod(a.shape[2:] if to_last else a.shape[1:-1]))
        c = a.shape[1] if to_last else a.shape[-1]
        shape = (n, *a.shape[2:], c) if to_last else (n, c, *a.shape[1:-1])
        rows, cols = (c, s) if to_last else (s, c)
        steps = (n, rows, cols, rows * cols, cols, rows * cols, rows)
    else:
        o, cg, t = a.shape[-1], a.shape[-2], int(np.prod(a.shape[:-2]))
        shape = (o, cg, *a.shape[:-2])
        steps = (cg, t, o, o, cg * o, t, cg * t)
    out = aligned_empty(shape, a.dtype)
    real = mover(a.dtype)
    transpose_batches(a.reshape(-1).view(real), out.reshape(-1).view(real), *steps)
    return out
