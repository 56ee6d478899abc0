"""Small pieces every engine needs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas

from .._geometry import ConvGeometry
from .._layout import pad_or_crop


def plain(geom: ConvGeometry) -> str | None:
    """Why an engine cannot run ``geom`` as it is: conv_general rewrites input dilation and batch
    groups into plain grouped convs before it plans."""
    if geom.batch_group_count != 1 or any(v != 1 for v in geom.lhs_dilation):
        return "needs batch_group_count == 1 and no input dilation"
    return None


def no_complex(dtype: np.dtype) -> str | None:
    """Why an engine whose kernels or transforms are real-only refuses a complex ``dtype``."""
    return "no complex kernel (real float kernels only)" if dtype.kind == "c" else None


def padded_zeros(geom: ConvGeometry, dtype: np.dtype) -> np.ndarray:
    """A zero dx ``(N, *tight_padded, C)``: input gradients scatter-add into the padded grid."""
    return np.zeros((geom.batch, *geom.tight_padded, geom.in_channels), dtype=dtype)


def unpad(a: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``(N, *tight_padded, C)`` cropped to x's ``(N, *S, C)`` (zeros where negative pads cropped x)."""
    return pad_or_crop(a, tuple((-lo, -hi) for lo, hi in geom.tight_padding))


def as_3d(a: np.ndarray) -> np.ndarray:
    """``(N, *S, C)`` with unit leading spatial axes up to three, a view: the compiled kernels are 3-D."""
    return a.reshape(a.shape[0], *(1,) * (5 - a.ndim), *a.shape[1:])


# Sub-pixel phases (see subpixel.py): along an axis with stride s and dilation d, the taps that land
# on input samples r, r + s, r + 2s, ... form a stride-1 conv of those samples.
@dataclass(frozen=True)
class Phase:
    """One phase along one axis: x_pad[start : start + length*s : s] with taps[::step] of w."""

    start: int  # first padded-input index read
    length: int  # samples of x read
    tap0: int  # first kernel tap
    taps: int  # number of taps
    step: int  # tap index step (s / g)
    dilation: int  # spacing of the taps in the phase grid (d / g)

    @property
    def kernel_taps(self) -> slice:
        """The phase's taps of w along this axis."""
        return slice(self.tap0, self.tap0 + (self.taps - 1) * self.step + 1, self.step)

    @property
    def reach(self) -> int:
        """How far past its first sample the phase's sub-kernel reads: (taps - 1) * dilation."""
        return (self.taps - 1) * self.dilation


def phases(o: int, k: int, s: int, d: int) -> list[Phase]:
    """The phases that hold taps: tap t0 < s/g starts phase (t0 * d) mod s, and taps t0 + s/g,
    t0 + 2s/g, ... fall in the same one. At most min(k, s/g) of them, whatever the stride."""
    g = math.gcd(s, d)
    step, dil = s // g, d // g
    out = []
    for t0 in range(min(k, step)):
        taps = len(range(t0, k, step))
        out.append(Phase(t0 * d, o + (taps - 1) * dil, t0, taps, step, dil))
    return out


def phase_axes(geom: ConvGeometry) -> list[list[Phase]]:
    """The phases of each spatial axis of a (strided) conv."""
    return [phases(o, k, s, d) for o, k, s, d in
            zip(geom.out_spatial, geom.kernel, geom.stride, geom.rhs_dilation)]


# BLAS runs GEMMs with a thin side far below peak: below THIN rows or columns of output the rate
# is scaled by sqrt(side / THIN) (measured here: 256 -> 64 channels at 0.6-0.7 of the 2048^3
# rate, 432 x 16 at ~0.3, 144 x 48 at ~0.6).
THIN = 128


def thin_factor(side: int) -> float:
    """The fraction of BLAS peak a GEMM whose output's short side is ``side`` reaches."""
    return min(1.0, math.sqrt(max(1, side) / THIN))


def gemm_into(gemm, a: np.ndarray, b: np.ndarray, c: np.ndarray, *, beta: float, trans_b: int = 0) -> None:
    """c <- a @ op(b) + beta * c on Fortran-ordered views, written in place."""
    r = gemm(1.0, a, b, beta=beta, c=c, overwrite_c=1, trans_b=trans_b)
    if not np.may_share_memory(r, c):  # BLAS had to work on a copy: write it back
        c[...] = r


def gemm_for(dtype: np.dtype):
    """The BLAS gemm for a float dtype, or None (integers go through NumPy's exact loops)."""
    if dtype == np.float32:
        return blas.sgemm
    if dtype == np.float64:
        return blas.dgemm
    return None


def blocks(outer: tuple[int, ...], max_rows: int) -> Iterator[tuple[tuple, tuple[int, ...]]]:
    """Tile the index space ``outer`` = (N, *O) into C-contiguous blocks of at most ``max_rows``.

    Yields (index, shape): ``index`` has ints for the leading axes, one slice, and leaves the
    trailing axes whole, so ``y[index]`` is a contiguous view of shape ``shape + (channels,)``.
    """
    if 0 in outer:
        return
    inner = 1
    j = len(outer) - 1
    while j > 0 and inner * outer[j] <= max_rows:
        inner *= outer[j]
        j -= 1
    if inner * outer[j] <= max_rows:
        yield (slice(None),), outer
        return
    chunk = max(1, max_rows // inner)
    for prefix in itertools.product(*(range(n) for n in outer[:j])):
        for a in range(0, outer[j], chunk):
            b = min(a + chunk, outer[j])
            yield (*prefix, slice(a, b)), (b - a, *outer[j + 1 :])
