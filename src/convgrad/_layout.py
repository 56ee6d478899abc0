"""Data formats as axis permutations, and padding or cropping of channels-last arrays.

The core computes in channels-last (x ``(N, *S, C)``, w ``(*K, C/G, O)``): packed GEMM rows
then read channels contiguously. Channels-first arrays are viewed, not copied, in that order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


# The permutations between the layouts, as transpose axes (np.moveaxis normalises its arguments
# on every call: 2 us against 0.1 us, a tenth of a small prepared conv).
def x_last_axes(ndim: int) -> tuple[int, ...]:
    """(N, C, *S) -> (N, *S, C)."""
    return (0, *range(2, ndim), 1)


def x_first_axes(ndim: int) -> tuple[int, ...]:
    """(N, *S, C) -> (N, C, *S)."""
    return (0, ndim - 1, *range(1, ndim - 1))


def w_last_axes(ndim: int) -> tuple[int, ...]:
    """(O, C/G, *K) -> (*K, C/G, O)."""
    return (*range(2, ndim), 1, 0)


def w_first_axes(ndim: int) -> tuple[int, ...]:
    """(*K, C/G, O) -> (O, C/G, *K)."""
    return (ndim - 1, ndim - 2, *range(ndim - 2))


def x_to_last(x: np.ndarray, fmt: str) -> np.ndarray:
    """(N, C, *S) -> (N, *S, C) view for channels-first; identity otherwise."""
    return x.transpose(x_last_axes(x.ndim)) if fmt == "channels_first" else x


def x_from_last(x: np.ndarray, fmt: str) -> np.ndarray:
    return x.transpose(x_first_axes(x.ndim)) if fmt == "channels_first" else x


def w_to_last(w: np.ndarray, fmt: str) -> np.ndarray:
    """(O, C/G, *K) -> (*K, C/G, O) view for channels-first; identity otherwise."""
    return w.transpose(w_last_axes(w.ndim)) if fmt == "channels_first" else w


def w_from_last(w: np.ndarray, fmt: str) -> np.ndarray:
    return w.transpose(w_first_axes(w.ndim)) if fmt == "channels_first" else w


def pad_or_crop(a: np.ndarray, pads: tuple[tuple[int, int], ...], channels: int | None = None,
                copy: Callable[[np.ndarray, tuple[int, ...], np.ndarray], None] | None = None,
                empty: Callable[[tuple[int, ...], np.dtype], np.ndarray] = np.empty) -> np.ndarray:
    """Zero-pad (positive) or crop (negative) the spatial axes of ``a`` ``(N, *S, C)``, and with
    ``channels`` (>= C) zero-pad the channel axis to that many, in one copy.

    Returns a C-contiguous array; ``a`` itself when nothing changes and it already is one.
    Its adjoint is ``pad_or_crop`` with the pads negated (and the channels cropped back).
    ``copy(a, lows, out)``, where given, fills the result instead of NumPy (the tiled engine's
    parallel pass): ``out[i] = a[i - lows]`` where that sample exists, else 0. ``empty(shape,
    dtype)`` makes the array it fills (the engines' scratch memory).
    """
    c = a.shape[-1]
    channels = c if channels is None else channels
    if not any(lo or hi for lo, hi in pads) and channels == c and a.flags.c_contiguous:
        return a
    spatial = a.shape[1:-1]
    shape = (a.shape[0], *(n + lo + hi for n, (lo, hi) in zip(spatial, pads)), channels)
    src, dst = [slice(None)], [slice(None)]
    for n, (lo, hi) in zip(spatial, pads):
        # Output sample i is input sample i - lo where that exists.
        start, stop = max(lo, 0), n + lo + min(hi, 0)
        if stop <= start:
            return np.zeros(shape, dtype=a.dtype)
        src.append(slice(start - lo, stop - lo))
        dst.append(slice(start, stop))
    out = empty(shape, a.dtype)
    if copy is not None:
        copy(a, tuple(lo for lo, _ in pads), out)
        return out
    # Zero only the borders: writing the whole array twice costs a pass over memory.
    for axis, inner in enumerate(dst[1:], start=1):
        lead = (slice(None),) * axis
        out[(*lead, slice(0, inner.start))] = 0
        out[(*lead, slice(inner.stop, None))] = 0
    out[..., c:] = 0
    out[(*dst, slice(0, c))] = a[tuple(src)]
    return out


def flip_swap_filter(w: np.ndarray, groups: int) -> np.ndarray:
    """Channels-last filter ``(*K, C/G, O)`` -> ``(*K, O/G, C)``, flipped in every spatial axis.

    Output channel ``g * C/G + c`` of the result takes input channel ``c`` of group ``g``.
    """
    *k, cg, o = w.shape
    og = o // groups
    r = len(k)
    grouped = w.reshape(*k, cg, groups, og)[(slice(None, None, -1),) * r]  # [*k, c, g, j]
    return grouped.transpose(*range(r), r + 2, r + 1, r).reshape(*k, og, groups * cg)
