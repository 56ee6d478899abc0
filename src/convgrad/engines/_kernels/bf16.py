"""bfloat16 in and out of the float32 the engines compute in: flat passes over the bits (uint16
for bfloat16, uint32 for float32), which LLVM vectorises; ``convgrad._dtypes`` lays them out.

bfloat16 is the top half of a float32: widening is a 16-bit shift of the bits, rounding adds
0x7FFF plus the kept half's lowest bit (ties to even) and drops the low half. On 8 x 64 x 56 x 56
(one thread, load 10): widening 0.07 ms against ml_dtypes' 0.44-0.48, rounding 0.15 against
1.08-1.16. Serial on purpose: a prange version ran 3-10x slower on the loaded two-core machine
(memory bound, the threads only waited for each other), and so did transposing versions with
strided reads or writes (1.0-8 ms), so the layout change is left to NumPy's 2-byte copy.
"""

from __future__ import annotations

import numpy as np

from ._numba import njit


@njit(cache=True, inline="always")
def _round(u):  # pragma: no cover - compiled
    """The bfloat16 bits nearest the float32 bits ``u``, ties to even; a NaN becomes the quiet
    NaN of its sign with no payload (0x7FC0 / 0xFFC0), as ml_dtypes rounds it."""
    nearest = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    quiet = ((u >> 16) & 0x8000) | 0x7FC0
    return np.uint16(quiet if u & 0x7FFFFFFF > 0x7F800000 else nearest)


@njit(cache=True)
def round_flat(a, out):  # pragma: no cover - compiled
    """out[i] = a[i] rounded to bfloat16: a float32 bits (uint32), out bfloat16 bits (uint16),
    both 1-D and of one length."""
    for i in range(a.size):
        out[i] = _round(np.int64(a[i]))


@njit(cache=True)
def widen_flat(a, out):  # pragma: no cover - compiled
    """out[i] = a[i] widened: a bfloat16 bits (uint16), out float32 bits (uint32), 1-D."""
    for i in range(a.size):
        out[i] = np.uint32(a[i]) << np.uint32(16)
