"""Scratch memory for the engines' large intermediates, kept from one call to the next per thread.

Fresh memory is paid for at first touch, in page faults: on this machine kind (a VM) about
0.4 ms per MB. The 31 x 31 kernel's spectrum writes 16 MB of GEMM outputs; freshly allocated
they took 8-11 ms, reused 3.8-4.1 ms. Whether NumPy's allocator hands back memory already
touched depends on glibc's heuristics (its mmap threshold moves, and the heap's top is
returned to the system), so the same op ran 2x slower after an unrelated 4 MB copy. A pool
makes that steady.

Each use site names its buffer; the pool keeps the largest size asked for under that name, up
to POOL_BYTES in all per thread (beyond that, requests get fresh arrays), and the planner frees
it before an op whose workspace and the pool together would pass the op's workspace budget. A
scratch array's contents are garbage, it is overwritten by the next call from the same thread,
and it is never returned to the caller. ``release()`` frees this thread's pool.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np

from .._budget import env_bytes

SCRATCH_ENV = "CONVGRAD_SCRATCH_BYTES"
DEFAULT_POOL_BYTES = 512 * 1024**2
POOL_BYTES: int | None = None  # the cap; None: $CONVGRAD_SCRATCH_BYTES, else the default

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` for the intermediate ``name``."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    pool: dict[str, np.ndarray] = _local.__dict__.setdefault("pool", {})
    buf = pool.get(name)
    if buf is None or buf.nbytes < nbytes:
        pool.pop(name, None)
        cap = POOL_BYTES if POOL_BYTES is not None else env_bytes(SCRATCH_ENV, DEFAULT_POOL_BYTES, least=0)
        if held() + nbytes > cap:
            return aligned_empty(shape, dtype)
        buf = pool[name] = aligned_empty((nbytes,), np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


ALIGN = 64  # bytes: a cache line, one 512-bit vector


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary.

    NumPy's large arrays (glibc's mmap'd blocks) start 16 bytes past a cache line, so every
    64-byte vector of a row splits over two lines: the depthwise forward into an aligned y ran
    in 0.84x the time (8 x 128 x 56 x 56 float32, one thread), the strided_3x3_s2 filter
    gradient 0.79x (channels-last, its padded x in aligned scratch). The engines' results and
    scratch arrays come from here."""
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    spare = -(-ALIGN // dtype.itemsize)
    buf = np.empty(count + spare, dtype)
    start = (-buf.ctypes.data % ALIGN) // dtype.itemsize
    return buf[start:start + count].reshape(shape)


def empty_for(name: str) -> Callable[[tuple[int, ...], np.dtype], np.ndarray]:
    """``empty(shape, dtype)`` giving the scratch array ``name`` (pad_or_crop's ``empty``)."""
    return lambda shape, dtype: scratch(name, shape, dtype)


def copied(name: str, a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` in the scratch array ``name``."""
    out = scratch(name, a.shape, a.dtype)
    np.copyto(out, a)
    return out


def fit(needed: int, limit: int) -> None:
    """Free this thread's pool if what it holds and the ``needed`` bytes of the next op's
    workspace would pass the workspace budget ``limit``."""
    if held() + needed > limit:
        release()


def release() -> None:
    """Free the scratch memory this thread holds."""
    _local.__dict__.pop("pool", None)


def held() -> int:
    """Bytes this thread's pool holds."""
    return sum(b.nbytes for b in _local.__dict__.get("pool", {}).values())
