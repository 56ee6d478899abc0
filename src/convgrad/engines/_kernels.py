"""Numba kernels for the loops NumPy cannot fuse: depthwise and register-tiled dense
convolutions, Winograd transforms, im2col packing.

All arrays are channels-last and C-contiguous; the channel loop is innermost so it vectorises.
``cache=True`` keeps the machine code on disk, so only the first run on a machine compiles.

Numba is a declared dependency. Where it is missing (an interpreter that skipped the install),
the kernels stay plain Python: correct but slow, so the planner charges them as never loadable
and picks the NumPy engines; only ``method=`` can still force them.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

try:
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    NUMBA = True
except ImportError:  # pragma: no cover - exercised in a subprocess by tests/test_without_extras.py
    NUMBA = False
    prange = range

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        """The plain-Python stand-in for numba.njit: returns the function unchanged."""
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f

    def _registers(size, dtype):  # type: ignore[no-untyped-def]
        return np.empty(size, dtype)

    def _wide_vectors():  # type: ignore[no-untyped-def]
        return None

    def _prefetch(arr, index):  # type: ignore[no-untyped-def]
        return None

if NUMBA:

    @intrinsic
    def _registers(typingctx, size, dtype):  # type: ignore[no-untyped-def]
        """A scratch array of ``size`` (a literal) on the stack: LLVM keeps it in registers.

        A heap array (np.empty) may alias every other array, so LLVM loads and stores it at each
        multiply-add; a stack slot it can prove private and promote to vector registers.
        """
        if not isinstance(size, types.IntegerLiteral) or not isinstance(dtype, types.DType):
            return None
        n = size.literal_value

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            return cgutils.alloca_once(builder, context.get_value_type(dtype.dtype), size=n)

        return types.CPointer(dtype.dtype)(size, dtype), codegen

    @intrinsic
    def _wide_vectors(typingctx):  # type: ignore[no-untyped-def]
        """Let LLVM use 512-bit vectors in the function that calls this (a prange body).

        On AVX-512 machines LLVM prefers 256-bit vectors by default (frequency throttling on old
        chips), which halves the multiply-adds per instruction of a register-tiled loop: the
        attribute measured 1.6-1.9x faster on 64-channel tiles here. Elsewhere it is ignored.
        """

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            try:  # llvmlite only validates attribute names in add(); the set holds plain strings
                set.add(builder.function.attributes, '"prefer-vector-width"="512"')
            except (AttributeError, TypeError):  # another llvmlite: keep its default width
                pass
            return context.get_dummy_value()

        return types.none(), codegen

    @intrinsic
    def _prefetch(typingctx, arr, index):  # type: ignore[no-untyped-def]
        """Ask for arr[index]'s cache line ahead of its use (llvm.prefetch: read, keep in all levels).

        The 6 x 64 forward tiles stream the filter from the second-level cache, 256 bytes per 24
        multiply-adds: asking 1 KiB ahead took 0.94-0.96x the time on the transposed conv's
        stride-2 input gradient, 0.96-0.99x with dilation 2, about the same elsewhere.
        """
        if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
            return None

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            byte = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]), "llvm.prefetch.p0i8")
            where = builder.bitcast(builder.gep(data, [args[1]]), byte)
            builder.call(fn, [where, i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.none(arr, index), codegen


@njit(cache=True)
def _depthwise_row(x, w, n, i, j_lo, j_hi, p0, p1, s0, s1, d0, d1, yrow):  # pragma: no cover - compiled
    """Outputs [j_lo, j_hi) of row (n, i) of depthwise2d_forward, tap by tap, skipping taps outside x."""
    h_in, w_in, c_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = w.shape[0], w.shape[1]
    mult = yrow.shape[1] // c_in
    yrow[j_lo:j_hi, :] = 0
    for a in range(kh):
        h = i * s0 + a * d0 - p0
        if h < 0 or h >= h_in:
            continue
        xrow = x[n, h]
        for b in range(kw):
            wr = w[a, b]
            # Outputs j whose tap b lands inside the row: 0 <= j*s1 + b*d1 - p1 < w_in.
            off = b * d1 - p1
            j0 = 0 if off >= 0 else (-off + s1 - 1) // s1
            j1 = min(ow_clip(w_in, off, s1), j_hi)
            for j in range(max(j0, j_lo), j1):
                xr = xrow[j * s1 + off]
                out = yrow[j]
                if mult == 1:
                    for c in range(c_in):
                        out[c] += xr[c] * wr[c]
                else:
                    for c in range(c_in):
                        for q in range(mult):
                            out[c * mult + q] += xr[c] * wr[c * mult + q]


@njit(cache=True)
def ow_clip(w_in, off, s1):  # pragma: no cover - compiled
    """One past the last output whose tap at offset ``off`` reads inside a row of ``w_in`` samples."""
    return (w_in - off + s1 - 1) // s1 if w_in - off > 0 else 0


@njit(parallel=True, cache=True, fastmath={"contract"})
def depthwise2d_forward(x, w, p0, p1, s0, s1, d0, d1, y):  # pragma: no cover - compiled
    """y[n, i, j, c*M + q] = sum_{a,b} x[n, i*s0 + a*d0 - p0, j*s1 + b*d1 - p1, c] * w[a, b, c*M + q],
    taps outside x reading zeros (the padding, never materialised).

    3x3 kernels with one output per channel take a fast path inside the image: the nine taps of
    an output are summed in registers and stored once, instead of nine read-modify-writes of y.
    """
    n_, oh, ow, o = y.shape
    h_in, w_in, c_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = w.shape[0], w.shape[1]
    fast = kh == 3 and kw == 3 and o == c_in
    # Interior columns: all three taps inside the row.
    j_lo = min(ow, (p1 + s1 - 1) // s1)
    j_hi = max(j_lo, min(ow, ow_clip(w_in, 2 * d1 - p1, s1)))
    for idx in prange(n_ * oh):
        n = idx // oh
        i = idx % oh
        yrow = y[n, i]
        h = i * s0 - p0
        if not fast or h < 0 or h + 2 * d0 >= h_in:
            _depthwise_row(x, w, n, i, 0, ow, p0, p1, s0, s1, d0, d1, yrow)
            continue
        _depthwise_row(x, w, n, i, 0, j_lo, p0, p1, s0, s1, d0, d1, yrow)
        _depthwise_row(x, w, n, i, j_hi, ow, p0, p1, s0, s1, d0, d1, yrow)
        x0, x1, x2 = x[n, h], x[n, h + d0], x[n, h + 2 * d0]
        w00, w01, w02 = w[0, 0], w[0, 1], w[0, 2]
        w10, w11, w12 = w[1, 0], w[1, 1], w[1, 2]
        w20, w21, w22 = w[2, 0], w[2, 1], w[2, 2]
        for j in range(j_lo, j_hi):
            v = j * s1 - p1
            a0, a1, a2 = x0[v], x0[v + d1], x0[v + 2 * d1]
            b0, b1, b2 = x1[v], x1[v + d1], x1[v + 2 * d1]
            e0, e1, e2 = x2[v], x2[v + d1], x2[v + 2 * d1]
            out = yrow[j]
            for c in range(c_in):
                out[c] = (a0[c] * w00[c] + a1[c] * w01[c] + a2[c] * w02[c]
                          + b0[c] * w10[c] + b1[c] * w11[c] + b2[c] * w12[c]
                          + e0[c] * w20[c] + e1[c] * w21[c] + e2[c] * w22[c])


@njit(parallel=True, cache=True)
def depthwise2d_input_grad(dy, w, s0, s1, d0, d1, dxp):  # pragma: no cover - compiled
    """The adjoint: dxp[n, i*s0 + a*d0, j*s1 + b*d1, c] += sum_q dy[n, i, j, c*M + q] * w[a, b, c*M + q].

    Parallel over the batch only: windows of neighbouring outputs overlap in dxp.
    """
    n_, oh, ow, o = dy.shape
    kh, kw = w.shape[0], w.shape[1]
    c_in = dxp.shape[3]
    mult = o // c_in
    for n in prange(n_):
        for i in range(oh):
            grow = dy[n, i]
            for a in range(kh):
                dxrow = dxp[n, i * s0 + a * d0]
                for b in range(kw):
                    wr = w[a, b]
                    for j in range(ow):
                        g = grow[j]
                        out = dxrow[j * s1 + b * d1]
                        if mult == 1:
                            for c in range(c_in):
                                out[c] += g[c] * wr[c]
                        else:
                            for c in range(c_in):
                                for q in range(mult):
                                    out[c] += g[c * mult + q] * wr[c * mult + q]


@njit(cache=True)
def _depthwise_fg_row(x, grow, n, i, j_lo, j_hi, p0, p1, s0, s1, d0, d1, out):  # pragma: no cover
    """Add the row (n, i) of dy's outputs [j_lo, j_hi) to out[a, b] tap by tap, skipping taps outside x."""
    h_in, w_in, c_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = out.shape[0], out.shape[1]
    mult = out.shape[2] // c_in
    for a in range(kh):
        h = i * s0 + a * d0 - p0
        if h < 0 or h >= h_in:
            continue
        xrow = x[n, h]
        for b in range(kw):
            off = b * d1 - p1
            j0 = 0 if off >= 0 else (-off + s1 - 1) // s1
            j1 = min(ow_clip(w_in, off, s1), j_hi)
            acc = out[a, b]
            for j in range(max(j0, j_lo), j1):
                xr = xrow[j * s1 + off]
                g = grow[j]
                if mult == 1:
                    for c in range(c_in):
                        acc[c] += xr[c] * g[c]
                else:
                    for c in range(c_in):
                        for q in range(mult):
                            acc[c * mult + q] += xr[c] * g[c * mult + q]


@njit(parallel=True, cache=True, fastmath={"contract"})
def depthwise2d_filter_grad(x, dy, p0, p1, s0, s1, d0, d1, parts):  # pragma: no cover - compiled
    """parts[p, a, b, c*M + q] = sum over the batch slice p of x[n, i*s0 + a*d0 - p0, j*s1 + b*d1 - p1, c]
    * dy[n, i, j, c*M + q], taps outside x skipped (the padding); the caller sums the parts."""
    n_, oh, ow, o = dy.shape
    h_in, w_in, c_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = parts.shape[1], parts.shape[2]
    np_ = parts.shape[0]
    fast = kh == 3 and kw == 3 and o == c_in
    # Interior rows and columns: all three taps inside x.
    i_lo = min(oh, (p0 + s0 - 1) // s0)
    i_hi = max(i_lo, min(oh, ow_clip(h_in, 2 * d0 - p0, s0)))
    j_lo = min(ow, (p1 + s1 - 1) // s1)
    j_hi = max(j_lo, min(ow, ow_clip(w_in, 2 * d1 - p1, s1)))
    for p in prange(np_):
        _wide_vectors()
        out = parts[p]
        for n in range(p, n_, np_):
            for i in range(oh):
                grow = dy[n, i]
                if not fast or i < i_lo or i >= i_hi:
                    _depthwise_fg_row(x, grow, n, i, 0, ow, p0, p1, s0, s1, d0, d1, out)
                else:  # the ends of an interior row; its middle is summed below
                    _depthwise_fg_row(x, grow, n, i, 0, j_lo, p0, p1, s0, s1, d0, d1, out)
                    _depthwise_fg_row(x, grow, n, i, j_hi, ow, p0, p1, s0, s1, d0, d1, out)
            if fast:
                _depthwise_fg_interior(x, dy, n, i_lo, i_hi, j_lo, j_hi, p0, p1, s0, s1, d0, d1, out)


@njit(cache=True, fastmath={"contract"})
def _depthwise_fg_interior(x, dy, n, i_lo, i_hi, j_lo, j_hi, p0, p1, s0, s1, d0, d1, out):  # pragma: no cover
    """The 3x3 taps of image n's outputs [i_lo, i_hi) x [j_lo, j_hi), whose windows lie inside x,
    added to out (3, 3, C).

    For each block of 16 channels the nine tap sums stay in registers over the whole image: per
    output, one load of dy and nine of x for nine multiply-adds, and no stores.
    """
    _wide_vectors()
    c_in = x.shape[3]
    t0 = _registers(16, out.dtype)
    t1 = _registers(16, out.dtype)
    t2 = _registers(16, out.dtype)
    t3 = _registers(16, out.dtype)
    t4 = _registers(16, out.dtype)
    t5 = _registers(16, out.dtype)
    t6 = _registers(16, out.dtype)
    t7 = _registers(16, out.dtype)
    t8 = _registers(16, out.dtype)
    for cb in range(0, c_in, 16):
        m = min(16, c_in - cb)
        for c in range(16):
            t0[c] = 0
            t1[c] = 0
            t2[c] = 0
            t3[c] = 0
            t4[c] = 0
            t5[c] = 0
            t6[c] = 0
            t7[c] = 0
            t8[c] = 0
        for i in range(i_lo, i_hi):
            h = i * s0 - p0
            grow = dy[n, i]
            x0, x1, x2 = x[n, h], x[n, h + d0], x[n, h + 2 * d0]
            if m == 16:
                for j in range(j_lo, j_hi):
                    v = j * s1 - p1
                    g = grow[j, cb:cb + 16]
                    a0, a1, a2 = x0[v, cb:cb + 16], x0[v + d1, cb:cb + 16], x0[v + 2 * d1, cb:cb + 16]
                    b0, b1, b2 = x1[v, cb:cb + 16], x1[v + d1, cb:cb + 16], x1[v + 2 * d1, cb:cb + 16]
                    e0, e1, e2 = x2[v, cb:cb + 16], x2[v + d1, cb:cb + 16], x2[v + 2 * d1, cb:cb + 16]
                    for c in range(16):
                        t0[c] += a0[c] * g[c]
                        t1[c] += a1[c] * g[c]
                        t2[c] += a2[c] * g[c]
                        t3[c] += b0[c] * g[c]
                        t4[c] += b1[c] * g[c]
                        t5[c] += b2[c] * g[c]
                        t6[c] += e0[c] * g[c]
                        t7[c] += e1[c] * g[c]
                        t8[c] += e2[c] * g[c]
            else:  # the last channels, fewer than 16
                for j in range(j_lo, j_hi):
                    v = j * s1 - p1
                    for c in range(m):
                        gc = grow[j, cb + c]
                        t0[c] += x0[v, cb + c] * gc
                        t1[c] += x0[v + d1, cb + c] * gc
                        t2[c] += x0[v + 2 * d1, cb + c] * gc
                        t3[c] += x1[v, cb + c] * gc
                        t4[c] += x1[v + d1, cb + c] * gc
                        t5[c] += x1[v + 2 * d1, cb + c] * gc
                        t6[c] += x2[v, cb + c] * gc
                        t7[c] += x2[v + d1, cb + c] * gc
                        t8[c] += x2[v + 2 * d1, cb + c] * gc
        for c in range(m):
            out[0, 0, cb + c] += t0[c]
            out[0, 1, cb + c] += t1[c]
            out[0, 2, cb + c] += t2[c]
            out[1, 0, cb + c] += t3[c]
            out[1, 1, cb + c] += t4[c]
            out[1, 2, cb + c] += t5[c]
            out[2, 0, cb + c] += t6[c]
            out[2, 1, cb + c] += t7[c]
            out[2, 2, cb + c] += t8[c]


# The dense convs' register tiles. Forward: 8 outputs along the last axis x 16 channels (one
# 512-bit register per output in float32), or for many channels 6 x 64 (24 registers), which
# needs 1 load per 4 multiply-adds instead of 9 per 8 and measured 1.5-1.9x faster with 64
# channels or more. Filter gradient: 16 input x 16 output channels (8 x 16 in float64, whose 16
# x 16 sums would not fit in the registers), or 4 x 64. Each tile is one function with its sums
# in named stack arrays, the only form in which LLVM keeps them in registers (an array indexed by
# a tile position gathered instead); the drivers are shared.
#
# The kernels address flat arrays with unsigned offsets. A signed index costs a test for Python's
# negative indexing at every load, and a view taken per row costs reference counting: together
# they ran the filter-gradient tiles at 35-55% of the rate of the same loop on flat offsets.
_U16 = np.uint64(16)
_U32 = np.uint64(32)
_U64 = np.uint64(64)
_AHEAD = np.uint64(256)  # filter values (1 KiB of float32) prefetched ahead of the 6 x 64 tiles


@njit(parallel=True, cache=True)
def tiled_forward(xp, xa, wt, s0, s1, s2, d0, d1, d2, y, ya, yb, out):  # pragma: no cover - compiled
    """The dense conv of the padded xp (N, D', H', W', C), read from the corner ``xa`` (3 ints),
    with the filter packed as wt (ceil(O / B), KD, KH, KW, C, B), B = 16 or 64, channels past O
    zero: its ``out`` (3 ints) outputs per sample go to y (N, D, H, W, O) at ``ya + i * yb``
    (all of y, ya = 0 and yb = 1, for a plain conv; one sub-pixel phase of a strided conv's input
    gradient otherwise).

    Each output row is cut into tiles of 8 (B = 16 or 32) or 6 (B = 64) outputs, the last one
    overlapping the one before; rows narrower than a tile go one output at a time. 1-D and 2-D
    convs come with unit leading axes.
    """
    N, YD, YH, YW, O = y.shape
    OD, OH, OW = out
    XD, XH, XW, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    KD, KH, KW, block = wt.shape[1], wt.shape[2], wt.shape[3], wt.shape[5]
    width = 8 if block <= 32 else 6
    xf, wf, yf = xp.ravel(), wt.ravel(), y.ravel()
    sd, sh, sw = XH * XW * C, XW * C, s2 * C  # x's strides: first axis, second axis, one output
    ys = yb[2] * O  # y's stride from one output of a row to the next
    # A 3-tap row with no stride or dilation: the tile's 10 input positions serve all 3 taps.
    three = block == 16 and KW == 3 and s2 == 1 and d2 == 1
    for r in prange(N * OD * OH):
        n = r // (OD * OH)
        i = r // OH % OD
        j = r % OH
        xrow = (n * XD + xa[0] + i * s0) * sd + (xa[1] + j * s1) * sh + xa[2] * C
        yrow = ((n * YD + ya[0] + i * yb[0]) * YH + ya[1] + j * yb[1]) * YW * O + ya[2] * O
        for ob in range(0, O, block):
            wo = ob // block * KD * KH * KW * C * block
            m = min(block, O - ob)
            tiles = OW if OW >= width else 0
            for k00 in range(0, tiles, width):
                k0 = min(k00, OW - width)
                xo, yo = xrow + k0 * sw, yrow + k0 * ys + ob
                if three:
                    _forward_tile_8x16_three(xf, wf, yf, xo, wo, yo, m, KD, KH, C, sd, sh, d0, d1, ys)
                elif block == 16:
                    _forward_tile_8x16(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2, ys)
                elif block == 32:
                    _forward_tile_8x32(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2, ys)
                else:
                    _forward_tile_6x64(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2, ys)
            for k in range(tiles, OW):
                _forward_one(xf, wf, yf, xrow + k * sw, wo, yrow + k * ys + ob, m, block, KD, KH, KW,
                             C, sd, sh, d0, d1, d2)


@njit(cache=True, fastmath={"contract"})
def _forward_tile_8x16(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2,
                       ys):  # pragma: no cover - compiled
    """Outputs yo + t * ys + [0, m) of the flat y, t < 8: the window of output t starts at xo + t * sw
    of the flat x; the filter block (KD, KH, KW, C, 16) starts at wo of the flat filter."""
    _wide_vectors()
    a0 = _registers(16, yf.dtype)
    a1 = _registers(16, yf.dtype)
    a2 = _registers(16, yf.dtype)
    a3 = _registers(16, yf.dtype)
    a4 = _registers(16, yf.dtype)
    a5 = _registers(16, yf.dtype)
    a6 = _registers(16, yf.dtype)
    a7 = _registers(16, yf.dtype)
    for o in range(16):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
        a6[o] = 0
        a7[o] = 0
    # With no dilation along the row, a row's taps and channels are one run of KW * C values,
    # in x as in the packed filter.
    run, taps = (KW * C, 1) if d2 == 1 else (C, KW)
    step = np.uint64(sw)
    w = np.uint64(wo)
    for a in range(KD):
        for b in range(KH):
            for e in range(taps):
                p0 = np.uint64(xo + a * d0 * sd + b * d1 * sh + e * d2 * C)
                p1 = p0 + step
                p2 = p1 + step
                p3 = p2 + step
                p4 = p3 + step
                p5 = p4 + step
                p6 = p5 + step
                p7 = p6 + step
                for c in range(np.uint64(run)):
                    x0 = xf[p0 + c]
                    x1 = xf[p1 + c]
                    x2 = xf[p2 + c]
                    x3 = xf[p3 + c]
                    x4 = xf[p4 + c]
                    x5 = xf[p5 + c]
                    x6 = xf[p6 + c]
                    x7 = xf[p7 + c]
                    for o in range(_U16):
                        g = wf[w + o]
                        a0[o] += x0 * g
                        a1[o] += x1 * g
                        a2[o] += x2 * g
                        a3[o] += x3 * g
                        a4[o] += x4 * g
                        a5[o] += x5 * g
                        a6[o] += x6 * g
                        a7[o] += x7 * g
                    w += _U16
    _store_8(yf, yo, ys, m, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(cache=True, fastmath={"contract"})
def _forward_tile_8x32(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2,
                       ys):  # pragma: no cover - compiled
    """_forward_tile_8x16 for 32 channels (float32): 8 broadcasts per 16 multiply-adds instead of
    8 per 8 (measured 1.4x faster than two 8 x 16 tiles with 32 output channels)."""
    _wide_vectors()
    a0 = _registers(32, yf.dtype)
    a1 = _registers(32, yf.dtype)
    a2 = _registers(32, yf.dtype)
    a3 = _registers(32, yf.dtype)
    a4 = _registers(32, yf.dtype)
    a5 = _registers(32, yf.dtype)
    a6 = _registers(32, yf.dtype)
    a7 = _registers(32, yf.dtype)
    for o in range(32):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
        a6[o] = 0
        a7[o] = 0
    # With no dilation along the row, a row's taps and channels are one run of KW * C values,
    # in x as in the packed filter.
    run, taps = (KW * C, 1) if d2 == 1 else (C, KW)
    step = np.uint64(sw)
    w = np.uint64(wo)
    for a in range(KD):
        for b in range(KH):
            for e in range(taps):
                p0 = np.uint64(xo + a * d0 * sd + b * d1 * sh + e * d2 * C)
                p1 = p0 + step
                p2 = p1 + step
                p3 = p2 + step
                p4 = p3 + step
                p5 = p4 + step
                p6 = p5 + step
                p7 = p6 + step
                for c in range(np.uint64(run)):
                    x0 = xf[p0 + c]
                    x1 = xf[p1 + c]
                    x2 = xf[p2 + c]
                    x3 = xf[p3 + c]
                    x4 = xf[p4 + c]
                    x5 = xf[p5 + c]
                    x6 = xf[p6 + c]
                    x7 = xf[p7 + c]
                    for o in range(_U32):
                        g = wf[w + o]
                        a0[o] += x0 * g
                        a1[o] += x1 * g
                        a2[o] += x2 * g
                        a3[o] += x3 * g
                        a4[o] += x4 * g
                        a5[o] += x5 * g
                        a6[o] += x6 * g
                        a7[o] += x7 * g
                    w += _U32
    _store_8(yf, yo, ys, m, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(cache=True, fastmath={"contract"})
def _forward_tile_8x16_three(xf, wf, yf, xo, wo, yo, m, KD, KH, C, sd, sh, d0, d1,
                             ys):  # pragma: no cover - compiled
    """_forward_tile_8x16 for 3 taps along the row, stride and dilation 1 there: for each input
    channel the 10 values x[t + e] are loaded once for the 24 multiply-adds of the 3 taps (one
    load per 2.4 instead of 9 per 8; measured 1.5-1.65x faster on 3x3x3 convs with 16 channels)."""
    _wide_vectors()
    a0 = _registers(16, yf.dtype)
    a1 = _registers(16, yf.dtype)
    a2 = _registers(16, yf.dtype)
    a3 = _registers(16, yf.dtype)
    a4 = _registers(16, yf.dtype)
    a5 = _registers(16, yf.dtype)
    a6 = _registers(16, yf.dtype)
    a7 = _registers(16, yf.dtype)
    for o in range(16):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
        a6[o] = 0
        a7[o] = 0
    uc = np.uint64(C)
    tap = uc * _U16  # one tap of the packed filter block
    for a in range(KD):
        for b in range(KH):
            p = np.uint64(xo + a * d0 * sd + b * d1 * sh)
            w = np.uint64(wo + (a * KH + b) * 3 * C * 16)
            for c in range(uc):
                q = p + c
                x0 = xf[q]
                x1 = xf[q + uc]
                x2 = xf[q + np.uint64(2) * uc]
                x3 = xf[q + np.uint64(3) * uc]
                x4 = xf[q + np.uint64(4) * uc]
                x5 = xf[q + np.uint64(5) * uc]
                x6 = xf[q + np.uint64(6) * uc]
                x7 = xf[q + np.uint64(7) * uc]
                x8 = xf[q + np.uint64(8) * uc]
                x9 = xf[q + np.uint64(9) * uc]
                w0 = w + c * _U16
                w1 = w0 + tap
                w2 = w1 + tap
                for o in range(_U16):
                    g0 = wf[w0 + o]
                    g1 = wf[w1 + o]
                    g2 = wf[w2 + o]
                    # One sum per statement: LLVM fuses each into a multiply-add.
                    a0[o] += x0 * g0
                    a1[o] += x1 * g0
                    a2[o] += x2 * g0
                    a3[o] += x3 * g0
                    a4[o] += x4 * g0
                    a5[o] += x5 * g0
                    a6[o] += x6 * g0
                    a7[o] += x7 * g0
                    a0[o] += x1 * g1
                    a1[o] += x2 * g1
                    a2[o] += x3 * g1
                    a3[o] += x4 * g1
                    a4[o] += x5 * g1
                    a5[o] += x6 * g1
                    a6[o] += x7 * g1
                    a7[o] += x8 * g1
                    a0[o] += x2 * g2
                    a1[o] += x3 * g2
                    a2[o] += x4 * g2
                    a3[o] += x5 * g2
                    a4[o] += x6 * g2
                    a5[o] += x7 * g2
                    a6[o] += x8 * g2
                    a7[o] += x9 * g2
    _store_8(yf, yo, ys, m, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(cache=True)
def _store_8(yf, yo, ys, m, a0, a1, a2, a3, a4, a5, a6, a7):  # pragma: no cover - compiled
    """yf[yo + t * ys + o] = a_t[o] for the 8 outputs t of a tile, o < m."""
    s = np.uint64(ys)
    q0 = np.uint64(yo)
    for o in range(np.uint64(m)):
        yf[q0 + o] = a0[o]
        yf[q0 + s + o] = a1[o]
        yf[q0 + np.uint64(2) * s + o] = a2[o]
        yf[q0 + np.uint64(3) * s + o] = a3[o]
        yf[q0 + np.uint64(4) * s + o] = a4[o]
        yf[q0 + np.uint64(5) * s + o] = a5[o]
        yf[q0 + np.uint64(6) * s + o] = a6[o]
        yf[q0 + np.uint64(7) * s + o] = a7[o]


@njit(cache=True, fastmath={"contract"})
def _forward_tile_6x64(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1, d2,
                       ys):  # pragma: no cover - compiled
    """_forward_tile_8x16 for 6 outputs x the 64 channels of a filter block (KD, KH, KW, C, 64)."""
    _wide_vectors()
    a0 = _registers(64, yf.dtype)
    a1 = _registers(64, yf.dtype)
    a2 = _registers(64, yf.dtype)
    a3 = _registers(64, yf.dtype)
    a4 = _registers(64, yf.dtype)
    a5 = _registers(64, yf.dtype)
    for o in range(64):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
    run, taps = (KW * C, 1) if d2 == 1 else (C, KW)
    step = np.uint64(sw)
    w = np.uint64(wo)
    for a in range(KD):
        for b in range(KH):
            for e in range(taps):
                p0 = np.uint64(xo + a * d0 * sd + b * d1 * sh + e * d2 * C)
                p1 = p0 + step
                p2 = p1 + step
                p3 = p2 + step
                p4 = p3 + step
                p5 = p4 + step
                for c in range(np.uint64(run)):
                    x0 = xf[p0 + c]
                    x1 = xf[p1 + c]
                    x2 = xf[p2 + c]
                    x3 = xf[p3 + c]
                    x4 = xf[p4 + c]
                    x5 = xf[p5 + c]
                    _prefetch(wf, w + _AHEAD)
                    for o in range(_U64):
                        g = wf[w + o]
                        a0[o] += x0 * g
                        a1[o] += x1 * g
                        a2[o] += x2 * g
                        a3[o] += x3 * g
                        a4[o] += x4 * g
                        a5[o] += x5 * g
                    w += _U64
    s = np.uint64(ys)
    q0 = np.uint64(yo)
    for o in range(np.uint64(m)):
        yf[q0 + o] = a0[o]
        yf[q0 + s + o] = a1[o]
        yf[q0 + np.uint64(2) * s + o] = a2[o]
        yf[q0 + np.uint64(3) * s + o] = a3[o]
        yf[q0 + np.uint64(4) * s + o] = a4[o]
        yf[q0 + np.uint64(5) * s + o] = a5[o]


@njit(cache=True, fastmath={"contract"})
def _forward_one(xf, wf, yf, xo, wo, yo, m, block, KD, KH, KW, C, sd, sh, d0, d1,
                 d2):  # pragma: no cover - compiled
    """One output alone (rows narrower than a tile): yf[yo + o] for o < m."""
    acc = _registers(64, yf.dtype)
    for o in range(block):
        acc[o] = 0
    ub = np.uint64(block)
    w = np.uint64(wo)
    for a in range(KD):
        for b in range(KH):
            for e in range(KW):
                p = np.uint64(xo + a * d0 * sd + b * d1 * sh + e * d2 * C)
                for c in range(np.uint64(C)):
                    xv = xf[p + c]
                    for o in range(ub):
                        acc[o] += xv * wf[w + o]
                    w += ub
    q = np.uint64(yo)
    for o in range(np.uint64(m)):
        yf[q + o] = acc[o]


@njit(parallel=True, cache=True)
def tiled_forward_dot(xp, xa, wd, s0, s1, s2, d0, d1, d2, y, ya, yb, out):  # pragma: no cover - compiled
    """tiled_forward for few output channels (the input gradient of a 3-channel stem): C a
    multiple of 16, the filter packed as wd (ceil(O / 3), KD, KH, 3, KW, C), channels past O zero.

    Each sum is a dot product along x's contiguous channels: a tile of 6 outputs x 3 channels
    holds 18 vectors of partial sums, added up across their 16 lanes at the end. Tiles of 8
    outputs x 16 channels would compute 13 zero channels out of 16 here.
    """
    N, YD, YH, YW, O = y.shape
    OD, OH, OW = out
    XD, XH, XW, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    KD, KH, KW = wd.shape[1], wd.shape[2], wd.shape[4]
    xf, wf, yf = xp.ravel(), wd.ravel(), y.ravel()
    sd, sh, sw = XH * XW * C, XW * C, s2 * C
    ys = yb[2] * O
    for r in prange(N * OD * OH):
        n = r // (OD * OH)
        i = r // OH % OD
        j = r % OH
        xrow = (n * XD + xa[0] + i * s0) * sd + (xa[1] + j * s1) * sh + xa[2] * C
        yrow = ((n * YD + ya[0] + i * yb[0]) * YH + ya[1] + j * yb[1]) * YW * O + ya[2] * O
        for ob in range(0, O, 3):
            wo = ob // 3 * KD * KH * 3 * KW * C
            m = min(3, O - ob)
            tiles = OW if OW >= 6 else 0
            for k00 in range(0, tiles, 6):
                k0 = min(k00, OW - 6)
                _dot_tile_6x3(xf, wf, yf, xrow + k0 * sw, wo, yrow + k0 * ys + ob, m, KD, KH, KW, C,
                              sd, sh, sw, d0, d1, d2, ys)
            for k in range(tiles, OW):
                _dot_one(xf, wf, yf, xrow + k * sw, wo, yrow + k * ys + ob, m, KD, KH, KW, C, sd, sh,
                         d0, d1, d2)


@njit(cache=True, fastmath={"contract"})
def _dot_tile_6x3(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, sw, d0, d1,
                  d2, ys):  # pragma: no cover - compiled
    """Outputs yo + t * ys + [0, m) of the flat y, t < 6, m <= 3: output t's window starts at
    xo + t * sw of the flat x, the filter group (KD, KH, 3, KW, C) at wo of the flat filter."""
    _wide_vectors()
    a00 = _registers(16, yf.dtype)
    a01 = _registers(16, yf.dtype)
    a02 = _registers(16, yf.dtype)
    a10 = _registers(16, yf.dtype)
    a11 = _registers(16, yf.dtype)
    a12 = _registers(16, yf.dtype)
    a20 = _registers(16, yf.dtype)
    a21 = _registers(16, yf.dtype)
    a22 = _registers(16, yf.dtype)
    a30 = _registers(16, yf.dtype)
    a31 = _registers(16, yf.dtype)
    a32 = _registers(16, yf.dtype)
    a40 = _registers(16, yf.dtype)
    a41 = _registers(16, yf.dtype)
    a42 = _registers(16, yf.dtype)
    a50 = _registers(16, yf.dtype)
    a51 = _registers(16, yf.dtype)
    a52 = _registers(16, yf.dtype)
    for v in range(16):
        a00[v] = 0
        a01[v] = 0
        a02[v] = 0
        a10[v] = 0
        a11[v] = 0
        a12[v] = 0
        a20[v] = 0
        a21[v] = 0
        a22[v] = 0
        a30[v] = 0
        a31[v] = 0
        a32[v] = 0
        a40[v] = 0
        a41[v] = 0
        a42[v] = 0
        a50[v] = 0
        a51[v] = 0
        a52[v] = 0
    run, taps = (KW * C, 1) if d2 == 1 else (C, KW)  # no dilation: a row's taps x channels are one run
    step = np.uint64(sw)
    row = np.uint64(KW * C)  # from one output channel's filter row to the next
    for a in range(KD):
        for b in range(KH):
            for e in range(taps):
                p0 = np.uint64(xo + a * d0 * sd + b * d1 * sh + e * d2 * C)
                p1 = p0 + step
                p2 = p1 + step
                p3 = p2 + step
                p4 = p3 + step
                p5 = p4 + step
                w0 = np.uint64(wo + (a * KH + b) * 3 * KW * C + e * C)
                w1 = w0 + row
                w2 = w1 + row
                for c in range(np.uint64(0), np.uint64(run), _U16):
                    for v in range(_U16):
                        g0 = wf[w0 + c + v]
                        g1 = wf[w1 + c + v]
                        g2 = wf[w2 + c + v]
                        x0 = xf[p0 + c + v]
                        x1 = xf[p1 + c + v]
                        x2 = xf[p2 + c + v]
                        x3 = xf[p3 + c + v]
                        x4 = xf[p4 + c + v]
                        x5 = xf[p5 + c + v]
                        a00[v] += x0 * g0
                        a01[v] += x0 * g1
                        a02[v] += x0 * g2
                        a10[v] += x1 * g0
                        a11[v] += x1 * g1
                        a12[v] += x1 * g2
                        a20[v] += x2 * g0
                        a21[v] += x2 * g1
                        a22[v] += x2 * g2
                        a30[v] += x3 * g0
                        a31[v] += x3 * g1
                        a32[v] += x3 * g2
                        a40[v] += x4 * g0
                        a41[v] += x4 * g1
                        a42[v] += x4 * g2
                        a50[v] += x5 * g0
                        a51[v] += x5 * g1
                        a52[v] += x5 * g2
    _store_dot(yf, yo, m, a00, a01, a02)
    _store_dot(yf, yo + ys, m, a10, a11, a12)
    _store_dot(yf, yo + 2 * ys, m, a20, a21, a22)
    _store_dot(yf, yo + 3 * ys, m, a30, a31, a32)
    _store_dot(yf, yo + 4 * ys, m, a40, a41, a42)
    _store_dot(yf, yo + 5 * ys, m, a50, a51, a52)


@njit(cache=True, fastmath=True)  # reassociation: the lanes are added as a tree, not in a chain
def _store_dot(yf, yo, m, a0, a1, a2):  # pragma: no cover - compiled
    """yf[yo + o] = the sum of a_o's 16 lanes, o < m."""
    s0, s1, s2 = a0[0], a1[0], a2[0]
    for v in range(1, 16):
        s0 += a0[v]
        s1 += a1[v]
        s2 += a2[v]
    yf[yo] = s0
    if m > 1:
        yf[yo + 1] = s1
    if m > 2:
        yf[yo + 2] = s2


@njit(cache=True, fastmath={"contract"})
def _dot_one(xf, wf, yf, xo, wo, yo, m, KD, KH, KW, C, sd, sh, d0, d1, d2):  # pragma: no cover
    """One output alone (rows narrower than a tile): yf[yo + o] for o < m."""
    a0 = _registers(16, yf.dtype)
    a1 = _registers(16, yf.dtype)
    a2 = _registers(16, yf.dtype)
    for v in range(16):
        a0[v] = 0
        a1[v] = 0
        a2[v] = 0
    row = np.uint64(KW * C)
    for a in range(KD):
        for b in range(KH):
            for e in range(KW):
                p = np.uint64(xo + a * d0 * sd + b * d1 * sh + e * d2 * C)
                w0 = np.uint64(wo + (a * KH + b) * 3 * KW * C + e * C)
                w1 = w0 + row
                w2 = w1 + row
                for c in range(np.uint64(0), np.uint64(C), _U16):
                    for v in range(_U16):
                        xv = xf[p + c + v]
                        a0[v] += xv * wf[w0 + c + v]
                        a1[v] += xv * wf[w1 + c + v]
                        a2[v] += xv * wf[w2 + c + v]
    _store_dot(yf, yo, m, a0, a1, a2)


@njit(parallel=True, cache=True)
def tiled_filter_grad(xp, dy, s0, s1, s2, d0, d1, d2, tile, parts):  # pragma: no cover - compiled
    """parts[p] (KD, KH, KW, C, O) = part p of the filter gradient: the sums over its share of
    output rows of xp (N, D', H', W', C), padded, times dy (N, D, H, W, O), O a multiple of 16
    (``tile`` 16 or 8: tiles of that many input channels x 16 output channels) or of 64 (``tile``
    4: 4 x 64).

    The tiles stay in registers over a chunk of output rows; the last input channels go one at
    a time. The caller adds the parts. 1-D and 2-D convs come with unit leading axes.
    """
    N, OD, OH, OW, O = dy.shape
    XD, XH, XW, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    P, KD, KH, KW = parts.shape[0], parts.shape[1], parts.shape[2], parts.shape[3]
    block = 64 if tile == 4 else 16
    xf, df = xp.ravel(), dy.ravel()
    sd, sh, sw = XH * XW * C, XW * C, np.uint64(s2 * C)
    rows = N * OD * OH
    # Rows per chunk: about 16 KiB of dy per tile (measured best: 8 rows of 32 x 16 floats for
    # the 3-D conv, 1 row of 56 x 64 for the resnet layer; more spills the first cache).
    chunk = max(1, 16384 // (OW * block * dy.itemsize)) if OW else 1
    for part in prange(P):
        tp = parts[part]
        tp[...] = 0
        tf = tp.ravel()
        xo = np.empty(chunk, np.int64)  # where each row of the chunk starts in x (tap a, b) and dy
        do = np.empty(chunk, np.int64)
        start, stop = part * rows // P, (part + 1) * rows // P
        for r0 in range(start, stop, chunk):
            count = min(chunk, stop - r0)
            for q in range(count):
                do[q] = (r0 + q) * OW * O
            for a in range(KD):
                for b in range(KH):
                    for q in range(count):  # divisions are slow: once per row and tap row
                        r = r0 + q
                        xo[q] = (r // (OD * OH) * XD + r // OH % OD * s0 + a * d0) * sd + (
                            r % OH * s1 + b * d1) * sh
                    for e in range(KW):
                        to = ((a * KH + b) * KW + e) * C * O
                        for ob in range(0, O, block):
                            for c0 in range(0, C - tile + 1, tile):
                                shift, at = e * d2 * C + c0, to + c0 * O + ob
                                if tile == 16:
                                    _filter_tile_16x16(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at)
                                elif tile == 8:
                                    _filter_tile_8x16(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at)
                                else:
                                    _filter_tile_4x64(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at)
                            for c in range(C - C % tile, C):
                                _filter_one(xf, df, tf, xo, do, count, e * d2 * C + c, ob, sw, OW, O,
                                            to + c * O + ob, block)


@njit(cache=True, fastmath={"contract"})
def _filter_tile_16x16(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at):  # pragma: no cover
    """tf[at + i * O + o] += sum over the chunk's outputs of x[i] * dy[o], i, o < 16: x at
    xo[q] + shift + k * sw and dy at do[q] + ob + k * O for row q < count and output k < OW."""
    _wide_vectors()
    a0 = _registers(16, df.dtype)
    a1 = _registers(16, df.dtype)
    a2 = _registers(16, df.dtype)
    a3 = _registers(16, df.dtype)
    a4 = _registers(16, df.dtype)
    a5 = _registers(16, df.dtype)
    a6 = _registers(16, df.dtype)
    a7 = _registers(16, df.dtype)
    a8 = _registers(16, df.dtype)
    a9 = _registers(16, df.dtype)
    a10 = _registers(16, df.dtype)
    a11 = _registers(16, df.dtype)
    a12 = _registers(16, df.dtype)
    a13 = _registers(16, df.dtype)
    a14 = _registers(16, df.dtype)
    a15 = _registers(16, df.dtype)
    for o in range(16):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
        a6[o] = 0
        a7[o] = 0
        a8[o] = 0
        a9[o] = 0
        a10[o] = 0
        a11[o] = 0
        a12[o] = 0
        a13[o] = 0
        a14[o] = 0
        a15[o] = 0
    step = np.uint64(O)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            x0 = xf[p]
            x1 = xf[p + np.uint64(1)]
            x2 = xf[p + np.uint64(2)]
            x3 = xf[p + np.uint64(3)]
            x4 = xf[p + np.uint64(4)]
            x5 = xf[p + np.uint64(5)]
            x6 = xf[p + np.uint64(6)]
            x7 = xf[p + np.uint64(7)]
            x8 = xf[p + np.uint64(8)]
            x9 = xf[p + np.uint64(9)]
            x10 = xf[p + np.uint64(10)]
            x11 = xf[p + np.uint64(11)]
            x12 = xf[p + np.uint64(12)]
            x13 = xf[p + np.uint64(13)]
            x14 = xf[p + np.uint64(14)]
            x15 = xf[p + np.uint64(15)]
            for o in range(_U16):
                g = df[d + o]
                a0[o] += x0 * g
                a1[o] += x1 * g
                a2[o] += x2 * g
                a3[o] += x3 * g
                a4[o] += x4 * g
                a5[o] += x5 * g
                a6[o] += x6 * g
                a7[o] += x7 * g
                a8[o] += x8 * g
                a9[o] += x9 * g
                a10[o] += x10 * g
                a11[o] += x11 * g
                a12[o] += x12 * g
                a13[o] += x13 * g
                a14[o] += x14 * g
                a15[o] += x15 * g
            p += sw
            d += step
    t = np.uint64(at)
    for o in range(_U16):
        tf[t + o] += a0[o]
        tf[t + step + o] += a1[o]
        tf[t + np.uint64(2) * step + o] += a2[o]
        tf[t + np.uint64(3) * step + o] += a3[o]
        tf[t + np.uint64(4) * step + o] += a4[o]
        tf[t + np.uint64(5) * step + o] += a5[o]
        tf[t + np.uint64(6) * step + o] += a6[o]
        tf[t + np.uint64(7) * step + o] += a7[o]
        tf[t + np.uint64(8) * step + o] += a8[o]
        tf[t + np.uint64(9) * step + o] += a9[o]
        tf[t + np.uint64(10) * step + o] += a10[o]
        tf[t + np.uint64(11) * step + o] += a11[o]
        tf[t + np.uint64(12) * step + o] += a12[o]
        tf[t + np.uint64(13) * step + o] += a13[o]
        tf[t + np.uint64(14) * step + o] += a14[o]
        tf[t + np.uint64(15) * step + o] += a15[o]


@njit(cache=True, fastmath={"contract"})
def _filter_tile_8x16(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at):  # pragma: no cover
    """_filter_tile_16x16 for 8 input channels (float64: 16 x 16 sums would not fit the registers)."""
    _wide_vectors()
    a0 = _registers(16, df.dtype)
    a1 = _registers(16, df.dtype)
    a2 = _registers(16, df.dtype)
    a3 = _registers(16, df.dtype)
    a4 = _registers(16, df.dtype)
    a5 = _registers(16, df.dtype)
    a6 = _registers(16, df.dtype)
    a7 = _registers(16, df.dtype)
    for o in range(16):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
        a4[o] = 0
        a5[o] = 0
        a6[o] = 0
        a7[o] = 0
    step = np.uint64(O)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            x0 = xf[p]
            x1 = xf[p + np.uint64(1)]
            x2 = xf[p + np.uint64(2)]
            x3 = xf[p + np.uint64(3)]
            x4 = xf[p + np.uint64(4)]
            x5 = xf[p + np.uint64(5)]
            x6 = xf[p + np.uint64(6)]
            x7 = xf[p + np.uint64(7)]
            for o in range(_U16):
                g = df[d + o]
                a0[o] += x0 * g
                a1[o] += x1 * g
                a2[o] += x2 * g
                a3[o] += x3 * g
                a4[o] += x4 * g
                a5[o] += x5 * g
                a6[o] += x6 * g
                a7[o] += x7 * g
            p += sw
            d += step
    t = np.uint64(at)
    for o in range(_U16):
        tf[t + o] += a0[o]
        tf[t + step + o] += a1[o]
        tf[t + np.uint64(2) * step + o] += a2[o]
        tf[t + np.uint64(3) * step + o] += a3[o]
        tf[t + np.uint64(4) * step + o] += a4[o]
        tf[t + np.uint64(5) * step + o] += a5[o]
        tf[t + np.uint64(6) * step + o] += a6[o]
        tf[t + np.uint64(7) * step + o] += a7[o]


@njit(cache=True, fastmath={"contract"})
def _filter_tile_4x64(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at):  # pragma: no cover
    """_filter_tile_16x16 for 4 input channels x 64 output channels."""
    _wide_vectors()
    a0 = _registers(64, df.dtype)
    a1 = _registers(64, df.dtype)
    a2 = _registers(64, df.dtype)
    a3 = _registers(64, df.dtype)
    for o in range(64):
        a0[o] = 0
        a1[o] = 0
        a2[o] = 0
        a3[o] = 0
    step = np.uint64(O)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            x0 = xf[p]
            x1 = xf[p + np.uint64(1)]
            x2 = xf[p + np.uint64(2)]
            x3 = xf[p + np.uint64(3)]
            for o in range(_U64):
                g = df[d + o]
                a0[o] += x0 * g
                a1[o] += x1 * g
                a2[o] += x2 * g
                a3[o] += x3 * g
            p += sw
            d += step
    t = np.uint64(at)
    for o in range(_U64):
        tf[t + o] += a0[o]
        tf[t + step + o] += a1[o]
        tf[t + np.uint64(2) * step + o] += a2[o]
        tf[t + np.uint64(3) * step + o] += a3[o]


@njit(cache=True, fastmath={"contract"})
def _filter_one(xf, df, tf, xo, do, count, shift, ob, sw, OW, O, at, block):  # pragma: no cover
    """One input channel alone (those past the tiles): tf[at + o] for o < block."""
    acc = _registers(64, df.dtype)
    for o in range(block):
        acc[o] = 0
    ub = np.uint64(block)
    step = np.uint64(O)
    for q in range(count):
        p = np.uint64(xo[q] + shift)
        d = np.uint64(do[q] + ob)
        for _k in range(OW):
            xv = xf[p]
            for o in range(ub):
                acc[o] += xv * df[d + o]
            p += sw
            d += step
    t = np.uint64(at)
    for o in range(ub):
        tf[t + o] += acc[o]


@njit(parallel=True, cache=True)
def winograd2d_input(xp, bt, m, th, tw, v):  # pragma: no cover - compiled
    """v[a*n + b, t, c] = (B^T d_t B)[a, b, c] for the n x n input tile d_t at (t_h * m, t_w * m)."""
    n = bt.shape[0]
    c_in = xp.shape[3]
    tiles = th * tw
    for t in prange(xp.shape[0] * tiles):
        bn = t // tiles
        h0 = (t % tiles) // tw * m
        w0 = (t % tiles) % tw * m
        tmp = np.zeros((n, n, c_in), dtype=v.dtype)
        for a in range(n):
            for i in range(n):
                coef = bt[a, i]
                if coef != 0:
                    for j in range(n):
                        row = xp[bn, h0 + i, w0 + j]
                        for c in range(c_in):
                            tmp[a, j, c] += coef * row[c]
        for a in range(n):
            for b in range(n):
                out = v[a * n + b, t]
                out[:] = 0
                for j in range(n):
                    coef = bt[b, j]
                    if coef != 0:
                        for c in range(c_in):
                            out[c] += coef * tmp[a, j, c]


@njit(parallel=True, cache=True)
def winograd2d_output(mm, at, th, tw, y):  # pragma: no cover - compiled
    """y[tile (t_h, t_w) block (x, z)] = (A^T M_t A)[x, z], cropped at y's edges."""
    m, n = at.shape
    o = mm.shape[2]
    tiles = th * tw
    oh, ow = y.shape[1], y.shape[2]
    for t in prange(mm.shape[1]):
        bn = t // tiles
        h0 = (t % tiles) // tw * m
        w0 = (t % tiles) % tw * m
        tmp = np.zeros((m, n, o), dtype=y.dtype)
        for x in range(m):
            for a in range(n):
                coef = at[x, a]
                if coef != 0:
                    for b in range(n):
                        src = mm[a * n + b, t]
                        for k in range(o):
                            tmp[x, b, k] += coef * src[k]
        for x in range(m):
            if h0 + x >= oh:
                break
            for z in range(m):
                if w0 + z >= ow:
                    break
                out = y[bn, h0 + x, w0 + z]
                out[:] = 0
                for b in range(n):
                    coef = at[z, b]
                    if coef != 0:
                        for k in range(o):
                            out[k] += coef * tmp[x, b, k]


# The packing kernels run on the calling thread only: they alternate with multi-threaded BLAS
# calls, and two thread pools spinning against each other on two cores cost more than the
# parallel packing gains.
@njit(cache=True)
def im2col2d(xp, r0, oh, ow, s0, s1, d0, d1, kh, kw, cols):  # pragma: no cover - compiled
    """cols[g, r, a*kw + b, c] = xp[n, i*s0 + a*d0, j*s1 + b*d1, g*Cg + c] for the flat output
    rows r0 + r = (n * oh + i) * ow + j of the block."""
    g_, rows, _, cg = cols.shape
    c_in = xp.shape[3]
    if g_ == 1 and d1 == 1:
        # One group, contiguous taps: each kernel row is one run of kw * C samples.
        flat = xp.reshape(xp.shape[0], xp.shape[1], xp.shape[2] * c_in)
        out = cols.reshape(rows, kh * kw * c_in)
        run = kw * c_in
        for r in range(rows):
            q = r0 + r
            n = q // (oh * ow)
            i = (q // ow) % oh
            v0 = (q % ow) * s1 * c_in
            for a in range(kh):
                src = flat[n, i * s0 + a * d0]
                for e in range(run):
                    out[r, a * run + e] = src[v0 + e]
        return
    for r in range(rows):
        q = r0 + r
        n = q // (oh * ow)
        i = (q // ow) % oh
        j = q % ow
        for a in range(kh):
            h = i * s0 + a * d0
            for b in range(kw):
                v = j * s1 + b * d1
                t = a * kw + b
                for g in range(g_):
                    for c in range(cg):
                        cols[g, r, t, c] = xp[n, h, v, g * cg + c]


@njit(cache=True)
def col2im2d(dcols, r0, oh, ow, s0, s1, d0, d1, kh, kw, dxp):  # pragma: no cover - compiled
    """The adjoint of im2col2d: scatter-add the columns back into the padded dx."""
    g_, rows, _, cg = dcols.shape
    for r in range(rows):
        q = r0 + r
        n = q // (oh * ow)
        i = (q // ow) % oh
        j = q % ow
        for a in range(kh):
            h = i * s0 + a * d0
            for b in range(kw):
                v = j * s1 + b * d1
                t = a * kw + b
                for g in range(g_):
                    for c in range(cg):
                        dxp[n, h, v, g * cg + c] += dcols[g, r, t, c]


@njit(cache=True)
def im2col3d(xp, r0, od, oh, ow, s0, s1, s2, d0, d1, d2, kd, kh, kw, cols):  # pragma: no cover
    """3-D im2col2d: rows r0 + r = ((n * od + i) * oh + j) * ow + l of the block."""
    g_, rows, _, cg = cols.shape
    for r in range(rows):
        q = r0 + r
        n = q // (od * oh * ow)
        i = (q // (oh * ow)) % od
        j = (q // ow) % oh
        m = q % ow
        for a in range(kd):
            for b in range(kh):
                for e in range(kw):
                    t = (a * kh + b) * kw + e
                    for g in range(g_):
                        for c in range(cg):
                            cols[g, r, t, c] = xp[n, i * s0 + a * d0, j * s1 + b * d1, m * s2 + e * d2,
                                                  g * cg + c]


@njit(cache=True)
def col2im3d(dcols, r0, od, oh, ow, s0, s1, s2, d0, d1, d2, kd, kh, kw, dxp):  # pragma: no cover
    """The adjoint of im2col3d."""
    g_, rows, _, cg = dcols.shape
    for r in range(rows):
        q = r0 + r
        n = q // (od * oh * ow)
        i = (q // (oh * ow)) % od
        j = (q // ow) % oh
        m = q % ow
        for a in range(kd):
            for b in range(kh):
                for e in range(kw):
                    t = (a * kh + b) * kw + e
                    for g in range(g_):
                        for c in range(cg):
                            dxp[n, i * s0 + a * d0, j * s1 + b * d1, m * s2 + e * d2,
                                g * cg + c] += dcols[g, r, t, c]


# Seconds to compile one kernel for one signature here (measured: 1-3 s; the depthwise forward and
# filter gradient with their 3x3 paths 6-7 s), and to load it from numba's on-disk cache
# (measured: 0.1-0.3 s). The planner charges them to a kernel that this process has not run yet,
# so small problems stay on the NumPy engines.
COMPILE_SECONDS = 2.0
COMPILE_SECONDS_BY_KERNEL = {"depthwise2d_forward": 7.0, "depthwise2d_filter_grad": 7.0,
                             "tiled_forward": 8.0, "tiled_forward_dot": 4.0, "tiled_filter_grad": 8.0}
LOAD_SECONDS = 0.2


def loaded_state() -> tuple[int, ...]:
    """How many signatures each kernel has loaded: plans that weigh compile time depend on it.

    Read on every call (it keys the plan cache), so it counts the dispatchers' overload tables:
    their ``signatures`` lists are rebuilt on each access (0.15 ms for all the kernels here)."""
    return tuple(len(getattr(k, "overloads", ())) for k in (
        depthwise2d_forward, depthwise2d_input_grad, depthwise2d_filter_grad, tiled_forward,
        tiled_forward_dot, tiled_filter_grad, winograd2d_input,
        winograd2d_output, im2col2d, col2im2d, im2col3d, col2im3d))


_charging = True  # False while the planner asks what it would pick with every kernel loaded


@contextmanager
def as_if_loaded():  # type: ignore[no-untyped-def]
    """Within: compile_penalty is 0, as if every kernel were loaded."""
    global _charging
    previous, _charging = _charging, False
    try:
        yield
    finally:
        _charging = previous


def compile_penalty(dtype, *kernels) -> float:  # type: ignore[no-untyped-def]
    """Estimated seconds of compiling or loading before the given kernels can run on ``dtype``."""
    if not _charging:
        return 0.0
    if not NUMBA:
        return float("inf")  # plain-Python loops: never worth choosing
    name = np.dtype(dtype).name
    total = 0.0
    for k in kernels:
        if not any(name in str(sig[0]) for sig in k.signatures):
            compile_s = COMPILE_SECONDS_BY_KERNEL.get(k.py_func.__name__, COMPILE_SECONDS)
            total += LOAD_SECONDS if _cached(k) else compile_s
    return total


def warm_up(dtypes=("float32", "float64")) -> None:  # type: ignore[no-untyped-def]
    """Compile (or load from the disk cache) every kernel for ``dtypes`` now, on tiny arrays,
    so that the planner weighs them by their running time alone."""
    if not NUMBA:
        return
    for name in dtypes:
        dt = np.dtype(name)
        x = np.zeros((1, 6, 6, 2), dt)
        w = np.zeros((3, 3, 2), dt)
        y = np.zeros((1, 4, 4, 2), dt)
        depthwise2d_forward(x, w, 0, 0, 1, 1, 1, 1, y)
        depthwise2d_input_grad(y, w, 1, 1, 1, 1, x)
        depthwise2d_filter_grad(x, y, 0, 0, 1, 1, 1, 1, np.zeros((1, 3, 3, 2), dt))
        corner, one, out = (0, 0, 0), (1, 1, 1), (1, 4, 4)
        tiled_forward(x[:, None], corner, np.zeros((1, 1, 3, 3, 2, 16), dt), 1, 1, 1, 1, 1, 1, y[:, None],
                      corner, one, out)
        tiled_forward_dot(np.zeros((1, 1, 6, 6, 16), dt), corner, np.zeros((1, 1, 3, 3, 3, 16), dt),
                          1, 1, 1, 1, 1, 1, y[:, None], corner, one, out)
        tiled_filter_grad(x[:, None], np.zeros((1, 1, 4, 4, 16), dt), 1, 1, 1, 1, 1, 1, 8,
                          np.zeros((1, 1, 3, 3, 2, 16), dt))
        cols = np.zeros((1, 16, 9, 2), dt)
        im2col2d(x, 0, 4, 4, 1, 1, 1, 1, 3, 3, cols)
        col2im2d(cols, 0, 4, 4, 1, 1, 1, 1, 3, 3, x)
        x3 = np.zeros((1, 3, 3, 3, 2), dt)
        cols3 = np.zeros((1, 1, 27, 2), dt)
        im2col3d(x3, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, cols3)
        col2im3d(cols3, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, x3)
        for transform in (np.ones((6, 6)), np.ones((4, 4))):
            m = transform.shape[0] - 2
            tiles = np.zeros((transform.shape[0] ** 2, 1, 2), dt)
            winograd2d_input(np.zeros((1, m + 2, m + 2, 2), dt), transform.astype(dt), m, 1, 1, tiles)
            winograd2d_output(tiles, transform[:m].astype(dt), 1, 1, np.zeros((1, m, m, 2), dt))


def _cached(kernel) -> bool:  # type: ignore[no-untyped-def]
    try:  # numba's on-disk cache: an index file next to the module's bytecode
        import os

        cache = kernel._cache
        return os.path.exists(os.path.join(cache.cache_path, cache._impl.filename_base + ".nbi"))
    except AttributeError:  # another numba version lays its cache out differently
        return False
