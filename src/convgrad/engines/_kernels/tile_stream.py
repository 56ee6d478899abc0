"""A tile's sums stored past the caches: the 6 x 64 forward tiles' outputs written with
non-temporal stores, so that a y much larger than the caches is neither read before it is written
nor evicts the filter block and the input rows the next tiles read.

The tiles keep their sums in stack arrays of 64 lanes (``_numba._registers``, which LLVM promotes
to vector registers); ``stream_sums`` stores such an array as whole 64-byte vectors with the
``nontemporal`` hint. Each vector's address must be a multiple of 64 bytes; the kernel's
``sfence`` (``_simd.sfence``) orders a thread's streamed stores before the end of the parallel
loop. Without Numba it is a plain copy.
"""

from __future__ import annotations

from ._numba import NUMBA
from ._simd import VECTOR_BYTES

# Bytes of y from which the forward tiles stream it: more than the second-level caches of two
# cores hold, so y leaves them as it is written anyway; a smaller y stays near for the caller's
# next op. Measured on one thread, loaded, streamed / cached stores: the stem (25.7 MB of y) 0.80,
# 64 channels of 56 x 56 (6.4 MB) 0.93, 128 of 28 x 28 (3.2 MB) 0.96, 256 of 14 x 14 (1.6 MB) 0.99.
STREAM_BYTES = 1 << 22



def streams_first(y, block: int) -> bool:
    """Whether the 6 x 64 forward tiles may stream a channels-first y ``(N, O, *S)`` through a
    staging block of 48 outputs of a plane (``block`` 64, at least STREAM_BYTES, its start and
    every plane of the last two axes on vector boundaries, so that each 48 outputs of a channel
    are whole aligned vectors)."""
    plane = y.shape[-1] * (y.shape[-2] if y.ndim >= 4 else 1)
    return (NUMBA and block == 64 and y.nbytes >= STREAM_BYTES and y.ctypes.data % VECTOR_BYTES == 0
            and plane * y.itemsize % VECTOR_BYTES == 0)


def streams(y) -> bool:
    """Whether the forward tiles may stream y (C-contiguous, channels-last ``(..., O)``): at least
    STREAM_BYTES, its start and every output's channels on vector boundaries."""
    lanes = VECTOR_BYTES // y.itemsize
    return (NUMBA and y.nbytes >= STREAM_BYTES and y.ctypes.data % VECTOR_BYTES == 0
            and y.shape[-1] % lanes == 0)


if NUMBA:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    def _store_past_caches(context, builder, dtype, dst, to, src, start, n):
        """Emit dst[to : to + n] = src[start : start + n] as whole vectors of VECTOR_BYTES with the
        ``nontemporal`` hint: the stores aligned to VECTOR_BYTES, the loads to one element."""
        lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
        vty = ir.VectorType(context.get_value_type(dtype), lanes)
        hint = builder.module.add_metadata([ir.IntType(32)(1)])
        for k in range(n // lanes):
            part = builder.gep(src, [builder.add(start, start.type(k * lanes))])
            part = builder.bitcast(part, vty.as_pointer())
            v = builder.load(part, align=dtype.bitwidth // 8)
            at = builder.gep(dst, [builder.add(to, to.type(k * lanes))])
            store = builder.store(v, builder.bitcast(at, vty.as_pointer()), align=VECTOR_BYTES)
            store.set_metadata("nontemporal", hint)

    @intrinsic
    def stream_sums(typingctx, a, index, sums, count):
        """a[index : index + count] = sums[:count], past the caches, in vectors of VECTOR_BYTES:
        ``count`` (a literal) a multiple of the vector's lanes, a's address at index a multiple of
        VECTOR_BYTES; ``sums`` a stack array of the kernel (``_registers``)."""
        if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                and isinstance(index, types.Integer) and isinstance(sums, types.CPointer)
                and sums.dtype == a.dtype and isinstance(count, types.IntegerLiteral)):
            return None
        lanes = VECTOR_BYTES // (a.dtype.bitwidth // 8)
        n = count.literal_value
        if n % lanes:
            return None

        def codegen(context, builder, sig, args):
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            _store_past_caches(context, builder, a.dtype, ary.data, args[1], args[2], ir.IntType(64)(0), n)
            return context.get_dummy_value()

        return types.none(a, index, sums, count), codegen

    @intrinsic
    def stream_copy(typingctx, a, index, src, at, count):
        """a[index : index + count] = src[at : at + count], past the caches, in vectors of
        VECTOR_BYTES: ``count`` (a literal) a multiple of the vector's lanes, a's address at index
        a multiple of VECTOR_BYTES (src's need not be); 1-D C-contiguous arrays of one dtype."""
        if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                and isinstance(src, types.Array) and src.ndim == 1 and src.layout == "C"
                and src.dtype == a.dtype and isinstance(index, types.Integer)
                and isinstance(at, types.Integer) and isinstance(count, types.IntegerLiteral)):
            return None
        lanes = VECTOR_BYTES // (a.dtype.bitwidth // 8)
        n = count.literal_value
        if n % lanes:
            return None

        def codegen(context, builder, sig, args):
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            sry = context.make_array(sig.args[2])(context, builder, args[2])
            i64 = ir.IntType(64)
            to, start = (builder.sext(v, i64) if v.type.width < 64 else v for v in (args[1], args[3]))
            _store_past_caches(context, builder, a.dtype, ary.data, to, sry.data, start, n)
            return context.get_dummy_value()

        return types.none(a, index, src, at, count), codegen

else:  # pragma: no cover - exercised in a subprocess by tests/test_without_extras.py

    def stream_sums(a, index, sums, count):
        """a[index : index + count] = sums[:count]."""
        a[index:index + count] = sums[:count]

    def stream_copy(a, index, src, at, count):
        """a[index : index + count] = src[at : at + count]."""
        a[index:index + count] = src[at:at + count]
