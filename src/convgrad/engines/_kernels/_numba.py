"""Numba, or plain Python where it is missing, and the intrinsics the register-tiled kernels use:
a stack scratch array LLVM keeps in registers, 512-bit vectors, a cache-line prefetch; and the
atomic counter the kernels share work through (``_claim``)."""

from __future__ import annotations

import os
import threading

import numpy as np

try:
    from llvmlite import ir
    from numba import literally, njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    NUMBA = True
except ImportError:  # pragma: no cover - exercised in a subprocess by tests/test_without_extras.py
    NUMBA = False
    prange = range

    def literally(value):
        """numba.literally without Numba: the value itself."""
        return value

    def njit(*args, **kwargs):
        """The plain-Python stand-in for numba.njit: returns the function unchanged."""
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f

    def _registers(size, dtype):
        return np.empty(size, dtype)

    def _wide_vectors():
        return None

    def _prefetch(arr, index):
        return None

    def _claim(counter):
        value = counter[0]
        counter[0] += 1
        return value

    def _add(counter, value):
        before = counter[0]
        counter[0] += value
        return before

if NUMBA:

    @intrinsic
    def _registers(typingctx, size, dtype):
        """A scratch array of ``size`` (a literal) on the stack: LLVM keeps it in registers.

        A heap array (np.empty) may alias every other array, so LLVM loads and stores it at each
        multiply-add; a stack slot it can prove private and promote to vector registers.
        """
        if not isinstance(size, types.IntegerLiteral) or not isinstance(dtype, types.DType):
            return None
        n = size.literal_value

        def codegen(context, builder, signature, args):
            return cgutils.alloca_once(builder, context.get_value_type(dtype.dtype), size=n)

        return types.CPointer(dtype.dtype)(size, dtype), codegen

    @intrinsic
    def _wide_vectors(typingctx):
        """Let LLVM use 512-bit vectors in the function that calls this (a prange body).

        On AVX-512 machines LLVM prefers 256-bit vectors by default (frequency throttling on old
        chips), which halves the multiply-adds per instruction of a register-tiled loop: the
        attribute measured 1.6-1.9x faster on 64-channel tiles here. Elsewhere it is ignored.
        """

        def codegen(context, builder, signature, args):
            try:  # llvmlite only validates attribute names in add(); the set holds plain strings
                set.add(builder.function.attributes, '"prefer-vector-width"="512"')
            except (AttributeError, TypeError):  # another llvmlite: keep its default width
                pass
            return context.get_dummy_value()

        return types.none(), codegen

    @intrinsic
    def _prefetch(typingctx, arr, index):
        """Ask for arr[index]'s cache line ahead of its use (llvm.prefetch: read, keep in all levels).

        The 6 x 64 forward tiles stream the filter from the second-level cache, 256 bytes per 24
        multiply-adds: asking 1 KiB ahead took 0.94-0.96x the time on the transposed conv's
        stride-2 input gradient, 0.96-0.99x with dilation 2, about the same elsewhere.
        """
        if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
            return None
        return types.none(arr, index), prefetch_codegen(0, 3)

    def prefetch_codegen(write: int, locality: int):
        """The code of llvm.prefetch of args[0][args[1]]'s cache line: for a read (``write`` 0)
        or a write (1), into the caches from ``locality`` up (3: the first level, 1: the last).
        The prefetch intrinsics here and in _simd share it."""

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            byte = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]), "llvm.prefetch.p0i8")
            where = builder.bitcast(builder.gep(data, [args[1]]), byte)
            builder.call(fn, [where, i32(write), i32(locality), i32(1)])
            return context.get_dummy_value()

        return codegen

    @intrinsic
    def _claim(typingctx, counter):
        """counter[0] += 1 atomically; the value before. Threads that take the next chunk of a
        loop this way share it dynamically: Numba's OpenMP backend splits a prange into equal
        static parts (also with ``parallel_chunksize``: measured, a loop whose first iteration
        spins kept its 32/32 split), so a thread that another process holds off its core holds
        up the whole call, while with claimed chunks the running thread takes its work."""
        if not isinstance(counter, types.Array) or counter.dtype != types.int64:
            return None

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            return builder.atomic_rmw("add", data, ir.Constant(ir.IntType(64), 1), "monotonic")

        return types.int64(counter), codegen

    @intrinsic
    def _add(typingctx, counter, value):
        """counter[0] += value atomically; the value before. ``_add(counter, 0)`` reads it (a
        plain read in a loop that waits for another thread may be hoisted out of the loop)."""
        if (not isinstance(counter, types.Array) or counter.dtype != types.int64
                or not isinstance(value, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            step = context.cast(builder, args[1], signature.args[1], types.int64)
            # acq_rel: what the adding thread wrote before is seen by a thread that reads the sum
            return builder.atomic_rmw("add", data, step, "acq_rel")

        return types.int64(counter, value), codegen


CHUNKS = 128


@njit(cache=True)
def chunk_size(tasks):  # pragma: no cover - compiled
    """Tasks per claimed chunk (``_claim``): up to CHUNKS chunks, so that a thread that runs takes
    over the chunks of one that waits for its core, at one atomic add per chunk.

    The loop that shares them is ``for _ in prange(chunks)``, each iteration claiming chunks
    until none is left: the thread count need not be known (``numba.get_num_threads`` in a
    kernel keeps it out of the disk cache), the first iteration a thread runs does its share and
    its other iterations find nothing left.
    """
    return max(1, -(-tasks // CHUNKS))


_COMPILED: set[tuple[object, object]] = set()  # (kernel, dtype) found compiled: it stays so


def compiled_for(kernel, dtype) -> bool:
    """Whether this process has ``kernel`` compiled for ``dtype`` (a NumPy dtype or its name: its
    first operand's; never for a plain-Python stand-in). Remembered once true, by the dtype as
    given: reading the signatures and the dtype's name took 6-8 us, two or three times a call (the
    finite check, the layout transposition)."""
    if (kernel, dtype) in _COMPILED:
        return True
    name = np.dtype(dtype).name
    if any(name in str(sig[0]) for sig in getattr(kernel, "signatures", ())):
        _COMPILED.add((kernel, dtype))
        return True
    return False


_pool_lock = threading.Lock()
_pool_started = False


def start_pool() -> None:
    """Start Numba's thread pool (its first ``get_num_threads`` does), once, with
    OMP_WAIT_POLICY=PASSIVE in the environment, which GNU OpenMP reads once, when it loads: its
    threads then sleep after a parallel loop instead of spinning on the cores other work needs
    (engines/_threads.py has the measurements). The environment is restored after, so processes
    started later keep theirs. Where PyTorch was imported first, its wheel's GNU OpenMP (loaded
    with the default policy) is the one Numba's pool starts on, and its threads spin ~8 ms after
    each loop; PyTorch imported after shares this passive one. A caller's own OMP_WAIT_POLICY or
    GOMP_SPINCOUNT is kept."""
    global _pool_started
    if _pool_started or not NUMBA:
        return
    with _pool_lock:
        if _pool_started:
            return
        import numba

        keep = any(k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
        if not keep:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        try:
            numba.get_num_threads()
        finally:
            if not keep:
                del os.environ["OMP_WAIT_POLICY"]
        _pool_started = True
