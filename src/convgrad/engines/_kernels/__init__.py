"""Numba kernels for the loops NumPy cannot fuse, one module per engine that runs them:
depthwise (``depthwise``, its 3x3 rows in vectors ``depthwise_lanes``, and on channels-first
planes ``depthwise_first``), register-tiled dense convolutions (``tiled``, with its parallel zero
padding; ``filter_runs`` and, for few output channels, ``thin_filter``: its float32 filter
gradient as a GEMM over an implicit im2col; ``regions``, several regions of one strided conv's
output in one launch), Winograd transforms, im2col packing, the FFT engine's spectral mixing, the
passes around Gauss's trick for complex ops
(``gauss``); ``_numba`` holds the fallback without Numba and the
intrinsics, ``_simd`` vector values (load, store, multiply-add) that stay in registers. This
module says which kernels are loaded and what loading the others would cost the planner.

All arrays are C-contiguous and channels-last, the channel loop innermost so it vectorises;
``depthwise_first`` runs channels-first planes, a row innermost.
``cache=True`` keeps the machine code on disk, so only the first run on a machine compiles.

Numba is a declared dependency. Where it is missing (an interpreter that skipped the install),
the kernels stay plain Python: correct but slow, so the planner charges them as never loadable
and picks the NumPy engines; only ``method=`` can still force them.
"""

from __future__ import annotations

import numpy as np

from .._machine import figures
from ._numba import NUMBA, compiled_for, start_pool
from ._simd import VECTOR_BYTES
from .depthwise import depthwise2d_filter_grad, depthwise2d_forward, depthwise2d_input_grad
from .depthwise_first import (
    depthwise2d_filter_grad_first,
    depthwise2d_forward_first,
    depthwise2d_input_grad_first,
)
from .filter_runs import filter_grad_runs, finish_runs
from .finite import residue
from .gauss import join_parts, split_parts
from .im2col import col2im3d, im2col3d
from .layout import transpose_batches
from .pad import last_to_first, pad_copy, pad_copy_first
from .padmode import fold_gather, pad_gather
from .pointwise import pointwise_filter_grad_first, pointwise_filter_grad_last, pointwise_first
from .regions import pack_phases, regions_forward
from .spectral import conjugate_planes, spectral_mix
from .thin_filter import thin_filter_grad
from .tiled import tiled_filter_grad, tiled_forward
from .winograd import winograd2d_input, winograd2d_output
from .winograd_fused import winograd43, winograd43_filter

# The planner charges a kernel that this process has not run yet its compile time (a few
# seconds; more for the kernels with several specialised paths, COMPILE_SECONDS_BY_KERNEL) or its
# load time from numba's on-disk cache (LOAD_SECONDS; the small passes with NumPy fallbacks,
# LOAD_SECONDS_BY_KERNEL), so small problems stay on the NumPy engines.
# Figures in calibration.json.


def compile_penalty(dtype, *kernels) -> float:
    """Estimated seconds of compiling or loading before the given kernels can run on ``dtype``
    (with Numba; the planner charges plain-Python loops as never loadable)."""
    fig = figures("_kernels")
    name = np.dtype(dtype).name
    total = 0.0
    for k in kernels:
        if not loaded(k, name):
            compile_s = fig.COMPILE_SECONDS_BY_KERNEL.get(k.py_func.__name__, fig.COMPILE_SECONDS)
            load_s = fig.LOAD_SECONDS_BY_KERNEL.get(k.py_func.__name__, fig.LOAD_SECONDS)
            total += load_s if _cached(k, name) else compile_s
    return total


def unbuilt(dtype, *kernels) -> tuple:
    """Those of ``kernels`` that would compile before running on ``dtype``: neither loaded in
    this process nor in Numba's disk cache for it (none without Numba: the loops run as Python)."""
    name = np.dtype(dtype).name
    return tuple(k for k in dict.fromkeys(kernels) if NUMBA and not loaded(k, name) and not _cached(k, name))


def warm_up(dtypes=("float32", "float64")) -> None:
    """Compile (or load from the disk cache) every kernel for ``dtypes`` now, on tiny arrays,
    so that the planner weighs them by their running time alone."""
    if not NUMBA:
        return
    start_pool()  # before any parallel kernel runs: its threads wait passively
    for name in dtypes:
        dt = np.dtype(name)
        residue(np.zeros(2, dt))
        x = np.zeros((1, 6, 6, 2), dt)
        w = np.zeros((3, 3, 2), dt)
        y = np.zeros((1, 4, 4, 2), dt)
        depthwise2d_forward(x, w, 0, 0, 1, 1, 1, 1, y, False)
        depthwise2d_input_grad(y, w, 1, 1, 1, 1, x)
        depthwise2d_filter_grad(x, y, 0, 0, 1, 1, 1, 1, np.zeros((1, 3, 3, 2), dt))
        xf, wf, yf = np.zeros((1, 2, 6, 6), dt), np.zeros((2, 3, 3), dt), np.zeros((1, 2, 4, 4), dt)
        depthwise2d_forward_first(xf, wf, 0, 0, 1, 1, 1, 1, yf)
        depthwise2d_input_grad_first(yf, wf, 0, 0, 1, 1, 1, 1, xf)
        depthwise2d_filter_grad_first(xf, yf, 0, 0, 1, 1, 1, 1, wf)
        corner, one, out = (0, 0, 0), (1, 1, 1), (1, 4, 4)
        tiled_forward(x[:, None], corner, np.zeros((1, 1, 3, 3, 2, 16), dt), 1, 1, 1, 1, 1, 1, y[:, None],
                      corner, one, out, False, False, False, False)
        # one region: a 3x3 conv of a window of x copied to the second source in the launch
        region = np.array([[1, 0, 1, 6, 6, 0, 1, 3, 3, *corner, *corner, *one, *out, *one, *one, *corner]],
                          np.int64)
        window = np.array([[0, 1, 6, 6, *corner]], np.int64)
        flat = x.reshape(-1)
        regions_forward(flat, (1, 6, 6), flat.copy(), 2, np.zeros(3 * 3 * 2 * 16, dt), region, 16, y[:, None],
                        False, window, False, False)
        # the filter's memory as it is (flat) with its strides
        pack_phases(np.zeros(36, dt), (18, 6, 2, 1, 1), np.zeros((1, 6), np.int64), 16, 2, 2,
                    np.zeros(2 * 16, dt))
        tiled_filter_grad(x[:, None], np.zeros((1, 1, 4, 4, 16), dt), 1, 1, 1, 1, 1, 1, 8,
                          np.zeros((1, 1, 3, 3, 2, 16), dt))
        for first in (False, True):
            filter_grad_runs(x[:, None], np.zeros((1, 1, 4, 4, 64), dt), 1, 1, 1, 1, 1, 1, 1, 16384, first,
                             np.zeros((1, 1, 3, 3, 2, 64), dt), np.zeros((64, 2, 1, 3, 3), dt))
        finish_runs(np.zeros((1, 1, 3, 3, 2, 64), dt), np.zeros((64, 2, 1, 3, 3), dt))
        for first in (False, True):
            thin_filter_grad(np.zeros(6 * 6 * 2 + 16, dt), (1, 1, 6, 6, 2), np.zeros(16, dt), (1, 1, 4, 4, 1),
                             first, 1, 1, 1, 1, 1, 1, 16384, np.zeros((1, 8, 1, 3, 1, 16), dt))
        cols = np.zeros((1, 16, 9, 2), dt)
        im2col3d(x[:, None], 0, 1, 4, 4, 1, 1, 1, 1, 1, 1, 1, 3, 3, cols)
        col2im3d(cols, 0, 1, 4, 4, 1, 1, 1, 1, 1, 1, 1, 3, 3, x[:, None])
        for transform in (np.ones((6, 6)), np.ones((4, 4))):
            m = transform.shape[0] - 2
            tiles = np.zeros((transform.shape[0] ** 2, 1, 2), dt)
            winograd2d_input(np.zeros((1, m + 2, m + 2, 2), dt), transform.astype(dt), m, 1, 1, tiles)
            winograd2d_output(tiles, transform[:m].astype(dt), 1, 1, np.zeros((1, m, m, 2), dt))
        u = np.zeros((36, 2, 16), dt)
        consts = np.zeros(8, dt)
        # The operand types the engine passes: a filter given as it is (C-contiguous) or as a
        # view of the caller's layout ('A'), in either layout; each
        # other array type would compile again at its first real call (seconds).
        for w in (np.zeros((3, 3, 2, 2), dt), np.zeros((2, 2, 3, 3), dt).transpose(2, 3, 1, 0)):
            winograd43_filter(w, u, consts, False)
        for first in (False, True):
            winograd43(np.zeros((1, 6, 6, 2), dt), u, consts, first, 1, 1, 1, 1, 2, 1, 1,
                       np.zeros((1, 6, 6, 2), dt), np.zeros(1, dt))
        pad_copy(x[:, None], (0, 1, 1), np.zeros((1, 1, 8, 8, 2), dt))
        pad_copy_first(np.zeros((1, 2, 1, 6, 6), dt), (0, 1, 1), np.zeros((1, 1, 8, 8, 2), dt))
        last_to_first(np.zeros((1, 4, 2), dt), np.zeros((1, 2, 4), dt))
        # a padding mode's pass (_padmode.PadMap): values copied as words of their size
        index = np.zeros(2, np.int64)
        words = np.zeros((1, 1, 1, 2, 1), dt).view(np.uint32 if dt.itemsize == 4 else np.uint64)
        pad_gather(words, index[:1], index[:1], index, 0, words.copy())
        fold_gather(np.zeros((1, 1, 1, 2, 1), dt), index, index[:1], index, index[:1], index, 0,
                    np.zeros((1, 1, 1, 2, 1), dt))
        transpose_batches(np.zeros(4, dt), np.zeros(4, dt), 1, 2, 2, 4, 2, 4, 2)
        pointwise_first(np.zeros((2, 2), dt), np.zeros((1, 2, 4), dt), np.zeros((1, 2, 4), dt), False)
        pointwise_filter_grad_first(np.zeros((1, 2, 4), dt), np.zeros((1, 2, 4), dt),
                                    np.zeros((1, 2, 64), dt))  # parts (P, C, O rounded up to 64)
        if dt == np.float32:  # channels-last 1x1 filter gradient: x (P, C), dy (P, O), parts (1, C, 2L)
            pair = 2 * VECTOR_BYTES // dt.itemsize
            pointwise_filter_grad_last(np.zeros((2, 6), dt), np.zeros((2, 2), dt), np.zeros((1, 6, pair), dt))
        pairs = np.zeros(2 * 2 * 36, dt)  # complex (1, 2, 6, 6) as real pairs
        split_parts(pairs, (72, 36, 36, 6, 1), (1, 2, 1, 6, 6), (0, 1, 1), *np.zeros((3, 1, 1, 8, 8, 2), dt))
        join_parts(*np.zeros((3, 1, 1, 4, 4, 2), dt), pairs[:64], (32, 16, 16, 4, 1))
        spectral_mix(np.zeros(8, dt), (8, 4, 2, 1), np.zeros((2, 2, 2), dt), np.zeros((2, 2, 2), dt), 1,
                     np.zeros(8, dt), (8, 4, 2, 1), 1)
        conjugate_planes(np.zeros((1, 2, 2), np.result_type(dt, np.complex64)), 1, np.zeros((1, 2, 1, 2), dt),
                         np.zeros((1, 2, 1, 2), dt))


def loaded(kernel, name: str) -> bool:
    """Whether this process has ``kernel`` compiled for dtype ``name`` (its first operand's)."""
    return compiled_for(kernel, name)


def _cached(kernel, name: str) -> bool:
    """Whether Numba's disk cache holds ``kernel`` for dtype ``name``, compiled from this source."""
    try:  # the cache's index (it is empty when the source changed since) keyed by signature
        index = kernel._cache._cache_file._load_index()
    except (AttributeError, OSError):  # another numba version lays its cache out differently
        return False
    return any(name in str(key[0][0]) for key in index if key and key[0])
