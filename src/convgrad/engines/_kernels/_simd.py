"""512-bit vectors of float32 or float64 as Numba values: load, store, multiply-add, broadcast.

A kernel that keeps a sliding window of inputs, nine weights and nine sums in registers along a
row needs values that LLVM holds in vector registers across loop iterations. Arrays of 16 lanes
(``_numba._registers``) stay in registers only while every index is a constant; the moment a
window slides (``a0[c] = a1[c]``) LLVM's loop vectoriser keeps them on the stack. A value of an
LLVM vector type is a register by construction: ``vload`` reads one from an array, ``vfma``
multiplies and adds lane by lane, ``vstore`` writes it. A vector holds ``lanes(a)`` elements of
a's dtype: 64 bytes (16 float32, 8 float64) where the machine has AVX-512, else 32 (the kernels'
windows of 12 vectors and 9 weights would not fit 16 registers in halves). Numba's disk cache
keys compiled code by the machine's features, so the width compiled in is the machine's.

Offsets are element indices into 1-D arrays (``a.ravel()``), unchecked: the kernels compute
them. Without Numba each function is the NumPy equivalent on a copy of the lanes.
"""

from __future__ import annotations

import platform

import numpy as np

from ._numba import NUMBA, njit


def _vector_bytes() -> int:
    """64 where the CPU has AVX-512, else 32."""
    try:
        from llvmlite import binding

        return 64 if binding.get_host_cpu_features().get("avx512f", False) else 32
    except Exception:  # no llvmlite (plain Python) or a platform it cannot query
        return 64


VECTOR_BYTES = _vector_bytes()
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@njit(cache=True)
def lanes(a):  # pragma: no cover - compiled
    """Elements of a's dtype in one vector: 16 for float32, 8 for float64."""
    return VECTOR_BYTES // a.itemsize


if NUMBA:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic, models, register_model

    from ._numba import prefetch_codegen

    class Vector(types.Type):
        """A 512-bit LLVM vector of ``dtype`` (a Numba float type)."""

        def __init__(self, dtype):
            self.dtype = dtype
            self.count = VECTOR_BYTES * 8 // dtype.bitwidth
            super().__init__(name=f"Vector({dtype} x {self.count})")

    @register_model(Vector)
    class _VectorModel(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):
            super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(),
                                                         fe_type.count))

    def _float_array(a):
        return (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                and a.dtype in (types.float32, types.float64))

    def _address(context, builder, aty, ary, index, vty):
        data = context.make_array(aty)(context, builder, ary).data
        return builder.bitcast(builder.gep(data, [index]), context.get_value_type(vty).as_pointer())

    @intrinsic
    def vload(typingctx, a, index):
        """The vector a[index : index + lanes(a)]."""
        if not _float_array(a) or not isinstance(index, types.Integer):
            return None
        vty = Vector(a.dtype)

        def codegen(context, builder, sig, args):
            ptr = _address(context, builder, sig.args[0], args[0], args[1], vty)
            return builder.load(ptr, align=a.dtype.bitwidth // 8)

        return vty(a, index), codegen

    @intrinsic
    def vstore(typingctx, a, index, v):
        """a[index : index + lanes(a)] = v."""
        if not _float_array(a) or not isinstance(index, types.Integer) or not isinstance(v, Vector) \
                or v.dtype != a.dtype:
            return None

        def codegen(context, builder, sig, args):
            ptr = _address(context, builder, sig.args[0], args[0], args[1], sig.args[2])
            builder.store(args[2], ptr, align=a.dtype.bitwidth // 8)
            return context.get_dummy_value()

        return types.none(a, index, v), codegen

    @intrinsic
    def vstream(typingctx, a, index, v):
        """a[index : index + lanes(a)] = v, past the caches (a non-temporal store: no read of the
        line before it is written, and the line does not evict the operands). a's address at
        index must be a multiple of 64 bytes (``streams``); ``sfence`` after the last one."""
        if not _float_array(a) or not isinstance(index, types.Integer) or not isinstance(v, Vector) \
                or v.dtype != a.dtype:
            return None

        def codegen(context, builder, sig, args):
            ptr = _address(context, builder, sig.args[0], args[0], args[1], sig.args[2])
            store = builder.store(args[2], ptr, align=VECTOR_BYTES)
            store.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))
            return context.get_dummy_value()

        return types.none(a, index, v), codegen

    @intrinsic
    def sfence(typingctx):
        """Order the non-temporal stores before it ahead of every store after it (x86 ``sfence``):
        a thread's streamed results are in memory before the parallel loop's end says so."""

        def codegen(context, builder, sig, args):
            if _X86:
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                    "llvm.x86.sse.sfence")
                builder.call(fn, [])
            else:  # a full fence orders them too
                builder.fence("seq_cst")
            return context.get_dummy_value()

        return types.none(), codegen

    @intrinsic
    def vfma(typingctx, a, b, c):
        """a * b + c lane by lane, fused where the machine has the instruction (llvm.fmuladd)."""
        if not (isinstance(a, Vector) and a == b == c):
            return None

        def codegen(context, builder, sig, args):
            vt = args[0].type
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                                f"llvm.fmuladd.v{a.count}f{a.dtype.bitwidth}")
            return builder.call(fn, list(args))

        return a(a, b, c), codegen

    @intrinsic
    def vadd(typingctx, a, b):
        """a + b lane by lane."""
        if not (isinstance(a, Vector) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return builder.fadd(args[0], args[1])

        return a(a, b), codegen

    @intrinsic
    def vmul(typingctx, a, b):
        """a * b lane by lane."""
        if not (isinstance(a, Vector) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return builder.fmul(args[0], args[1])

        return a(a, b), codegen

    @intrinsic
    def vshift(typingctx, lo, hi, k):
        """The vector of lanes k .. lanes - 1 of lo, then lanes 0 .. k - 1 of hi (``k`` a constant):
        the window of a row ``k`` samples on from lo, where hi is the vector after lo (one shuffle,
        no load across a cache line)."""
        if not (isinstance(lo, Vector) and lo == hi and isinstance(k, types.IntegerLiteral)
                and 0 <= k.literal_value <= lo.count):
            return None
        shift = k.literal_value

        def codegen(context, builder, sig, args):
            index = ir.Constant(ir.VectorType(ir.IntType(32), lo.count), list(range(shift, shift + lo.count)))
            return builder.shuffle_vector(args[0], args[1], index)

        return lo(lo, hi, k), codegen

    @intrinsic
    def vsplat(typingctx, a, index):
        """The vector with a[index] in every lane."""
        if not _float_array(a) or not isinstance(index, types.Integer):
            return None
        vty = Vector(a.dtype)

        def codegen(context, builder, sig, args):
            data = context.make_array(sig.args[0])(context, builder, args[0]).data
            scalar = builder.load(builder.gep(data, [args[1]]))
            vt = context.get_value_type(vty)
            one = builder.insert_element(ir.Constant(vt, ir.Undefined), scalar, ir.IntType(32)(0))
            zeros = ir.Constant(ir.VectorType(ir.IntType(32), vty.count), [0] * vty.count)
            return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined), zeros)

        return vty(a, index), codegen

    @intrinsic
    def vkeep(typingctx, mask, v):
        """v's lanes where mask's are not zero, else 0 (a select: a lane dropped this way adds no
        product to a sum, not even 0 * inf)."""
        if not (isinstance(v, Vector) and mask == v):
            return None

        def codegen(context, builder, sig, args):
            zero = ir.Constant(args[1].type, None)
            return builder.select(builder.fcmp_unordered("!=", args[0], zero), args[1], zero)

        return v(mask, v), codegen

    @intrinsic
    def vzero(typingctx, a):
        """The zero vector of a's dtype."""
        if not _float_array(a):
            return None
        vty = Vector(a.dtype)

        def codegen(context, builder, sig, args):
            return ir.Constant(context.get_value_type(vty), None)

        return vty(a), codegen

    @intrinsic
    def vlane(typingctx, v, i):
        """Lane ``i`` of v."""
        if not isinstance(v, Vector) or not isinstance(i, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            return builder.extract_element(args[0], args[1])

        return v.dtype(v, i), codegen

    @intrinsic
    def vsum(typingctx, v):
        """The sum of v's lanes (in a tree: the order of a vector reduction)."""
        if not isinstance(v, Vector):
            return None

        def codegen(context, builder, sig, args):
            x = args[0]
            n = v.count
            while n > 1:  # halves added pairwise: a fixed order, the same on every call
                n //= 2
                half = ir.VectorType(ir.IntType(32), n)
                lo = builder.shuffle_vector(x, x, ir.Constant(half, list(range(n))))
                hi = builder.shuffle_vector(x, x, ir.Constant(half, list(range(n, 2 * n))))
                x = builder.fadd(lo, hi)
            return builder.extract_element(x, ir.IntType(32)(0))

        return v.dtype(v), codegen

    @intrinsic
    def prefetch(typingctx, a, index, write, level):
        """Ask for a[index]'s cache line ahead of its use (llvm.prefetch): for a write where
        ``write`` is 1, into the caches from ``level`` up (3: the first level, 1: the last)."""
        if not (isinstance(a, types.Array) and isinstance(index, types.Integer)
                and isinstance(write, types.IntegerLiteral) and isinstance(level, types.IntegerLiteral)):
            return None
        return types.none(a, index, write, level), prefetch_codegen(write.literal_value, level.literal_value)

else:  # pragma: no cover - exercised in a subprocess by tests/test_without_extras.py

    def vload(a, index):
        """The vector a[index : index + lanes(a)]."""
        return a[index:index + lanes(a)].copy()

    def vstore(a, index, v):
        """a[index : index + lanes(a)] = v."""
        a[index:index + lanes(a)] = v

    def vstream(a, index, v):
        """a[index : index + lanes(a)] = v."""
        a[index:index + lanes(a)] = v

    def sfence():
        """Nothing to order without Numba."""
        return None

    def vfma(a, b, c):
        """a * b + c lane by lane."""
        return a * b + c

    def vadd(a, b):
        """a + b lane by lane."""
        return a + b

    def vmul(a, b):
        """a * b lane by lane."""
        return a * b

    def vshift(lo, hi, k):
        """Lanes k on of lo, then the first k of hi."""
        return np.concatenate((lo, hi))[k:k + lo.size]

    def vsplat(a, index):
        """The vector with a[index] in every lane."""
        return np.full(lanes(a), a[index], dtype=a.dtype)

    def vzero(a):
        """The zero vector of a's dtype."""
        return np.zeros(lanes(a), dtype=a.dtype)

    def vkeep(mask, v):
        """v's lanes where mask's are not zero, else 0."""
        return np.where(mask != 0, v, 0).astype(v.dtype)

    def vlane(v, i):
        """Lane ``i`` of v."""
        return v[i]

    def vsum(v):
        """The sum of v's lanes."""
        return v.sum()

    def prefetch(a, index, write, level):
        """A hint to the caches: nothing to do without Numba."""
        return None


# Pairs of vectors: the 6 x 2 and 4 x 2 tiles of 32-byte vectors (AVX2) hold each output's sums
# in two (or three) vectors.
@njit(cache=True)
def put2(a, at, lo, hi, stream):  # pragma: no cover - compiled
    """a[at : at + 2L] = the vectors lo, hi of L = lanes(a) lanes; past the caches where ``stream``
    (a's address at ``at`` a multiple of VECTOR_BYTES)."""
    h = np.uint64(lanes(a))
    if stream:
        vstream(a, at, lo)
        vstream(a, at + h, hi)
    else:
        vstore(a, at, lo)
        vstore(a, at + h, hi)


@njit(cache=True)
def lane2(lo, hi, o, h):  # pragma: no cover - compiled
    """Element o of the 2h held as two vectors of h lanes."""
    return vlane(lo, o) if o < h else vlane(hi, o - h)


@njit(cache=True)
def add2(a, at, lo, hi):  # pragma: no cover - compiled
    """a[at : at + 2L] += the vectors lo, hi of L = lanes(a) lanes."""
    h = np.uint64(lanes(a))
    vstore(a, at, vadd(vload(a, at), lo))
    vstore(a, at + h, vadd(vload(a, at + h), hi))


@njit(cache=True)
def add3(a, at, a0, a1, a2):  # pragma: no cover - compiled
    """a[at : at + 3L] += the vectors a0, a1, a2 of L = lanes(a) lanes."""
    add2(a, at, a0, a1)
    h2 = np.uint64(2 * lanes(a))
    vstore(a, at + h2, vadd(vload(a, at + h2), a2))


@njit(inline="always")
def add6x2(a, at, step, rows, s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51):  # pragma: no cover
    """a[at + r * step + [0, 2L)] += the 6 x 2 tiles' sums s_r0, s_r1 of rows r < ``rows`` (1-6;
    L = lanes(a); ``at`` and ``step`` unsigned): the tiles' stores, inlined (a constant ``rows``
    folds the tests away)."""
    add2(a, at, s00, s01)
    if rows > 1:
        add2(a, at + step, s10, s11)
    if rows > 2:
        add2(a, at + np.uint64(2) * step, s20, s21)
    if rows > 3:
        add2(a, at + np.uint64(3) * step, s30, s31)
    if rows > 4:
        add2(a, at + np.uint64(4) * step, s40, s41)
    if rows > 5:
        add2(a, at + np.uint64(5) * step, s50, s51)


@njit(inline="always")
def outer6x2(a, i0, i1, i2, i3, i4, i5, g0, g1, s00, s01, s10, s11, s20, s21, s30, s31, s40, s41,
             s50, s51):  # pragma: no cover - compiled
    """One step of the 6 x 2 tiles of 32-byte vectors (AVX2): the 12 sums s_rj plus a[i_r]
    (broadcast) times g_j, returned in that order; inlined into the tile's loop, so the sums stay
    in registers."""
    v = vsplat(a, i0)
    s00, s01 = vfma(v, g0, s00), vfma(v, g1, s01)
    v = vsplat(a, i1)
    s10, s11 = vfma(v, g0, s10), vfma(v, g1, s11)
    v = vsplat(a, i2)
    s20, s21 = vfma(v, g0, s20), vfma(v, g1, s21)
    v = vsplat(a, i3)
    s30, s31 = vfma(v, g0, s30), vfma(v, g1, s31)
    v = vsplat(a, i4)
    s40, s41 = vfma(v, g0, s40), vfma(v, g1, s41)
    v = vsplat(a, i5)
    s50, s51 = vfma(v, g0, s50), vfma(v, g1, s51)
    return s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51
