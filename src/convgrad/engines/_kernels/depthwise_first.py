"""Depthwise 2-D convolutions on channels-first arrays, one plane at a time.

In NCHW a depthwise conv is a 2-D correlation of each (image, channel) plane with its own small
kernel. Each task copies its plane of x into a zero-bordered buffer of its own (in the
first-level cache: 58 x 58 floats for a 56 x 56 plane with one pad), then correlates the buffer
"valid", with no bounds to check: rows are contiguous, so the loop along a row vectorises, and
x and y are each streamed from memory once. No transposition and no padded copy of the array.

3x3 kernels with a unit column stride sum an output's nine taps in registers and store it once (the
forward with unit column dilation from buffer rows a whole number of vectors apart, on a cache line,
its column taps shifted in registers: ``_plane3x3_aligned``; with 32-byte vectors, AVX2, loaded at
their offsets, y stored past the caches from STREAM_BYTES on: ``_plane3x3_lines``); other kernels go
tap by tap. The forward with fewer than SERIAL_MACS multiply-adds runs on the calling thread. The
filter gradient with unit strides copies dy's plane into rows of the buffer's width (zeros past its
outputs), so each tap's sum is one dot product over the whole plane, reduced once per plane instead
of once per row (8 x 128 x 56 x 56, one thread: 0.58x the CPU time of nine running sums per row);
other strides sum row by row. The loops index flat arrays with unsigned offsets: Numba's signed
indices carry a wraparound check that kept LLVM from vectorising them (a 3x3 forward of 1,024 planes
of 56 x 56 on one thread: 41 ms with row views, 1.1 ms so).

x ``(N, C, H, W)``, w ``(O, KH, KW)`` (O = C * M, output channel c*M + q reads input channel c),
y and dy ``(N, O, OH, OW)``; all C-contiguous. ``p0``, ``p1`` are the leading pads (negative:
cropped), ``s`` the strides, ``d`` the dilations. The input gradient with unit strides and M = 1
is the forward kernel on dy with the flipped kernel (the caller's gathering path).
"""

from __future__ import annotations

import numpy as np

from ._numba import _claim, chunk_size, njit, prange
from ._simd import (
    VECTOR_BYTES,
    lanes,
    prefetch,
    sfence,
    vadd,
    vfma,
    vkeep,
    vload,
    vmul,
    vshift,
    vsplat,
    vstore,
    vsum,
    vzero,
)
from .depthwise_lanes import _put, _taps


@njit(cache=True)
def _chunks(tasks):  # pragma: no cover - compiled
    """Tasks per parallel chunk: a few chunks per thread, each with one buffer."""
    return max(1, -(-tasks // 64))


@njit(cache=True)
def _fill(xf, xb, h_in, w_in, p0, p1, buf, hb, wb):  # pragma: no cover - compiled
    """buf (hb, wb) = the plane at xf[xb:] (h_in, w_in) shifted by (p0, p1); buf's samples outside
    the plane must be zero already (they stay so: only the plane's own are written)."""
    r0, r1 = max(0, p0), min(hb, h_in + p0)
    c0, c1 = max(0, p1), min(wb, w_in + p1)
    if c1 <= c0:
        return
    n = np.uint64(c1 - c0)
    for r in range(r0, r1):
        dst, src = np.uint64(r * wb + c0), np.uint64(xb + (r - p0) * w_in + c0 - p1)
        for u in range(n):
            buf[dst + u] = xf[src + u]


@njit(cache=True)
def _row_stride(wb, width, aligned):  # pragma: no cover - compiled
    """Samples from one buffer row to the next: wb, or with ``aligned`` a whole number of vectors
    of ``width`` lanes past the row (the shifted-tap kernels read a vector beyond its end)."""
    return -(-(wb + width) // width) * width if aligned else wb


@njit(cache=True)
def _plane_buffer(hb, rs, width, aligned, active, like):  # pragma: no cover - compiled
    """A zeroed plane buffer of hb rows of rs samples in ``like``'s dtype, for a thread that
    claimed a chunk (``active``; else empty), starting on a cache line (a vector's bytes) where
    ``aligned``. Kept across planes: each ``_fill`` writes the same samples, the border stays 0."""
    store = np.zeros(hb * rs + width if active else 0, dtype=like.dtype)
    lead = (-(store.ctypes.data // store.itemsize)) % width if aligned and active else 0
    return store[lead:lead + hb * rs]


@njit(cache=True, fastmath={"contract"})
def _run3x3(bf, q0, q1, q2, e1, e2, yf, ys, count, w0, w1, w2, w3, w4, w5, w6, w7,
            w8):  # pragma: no cover - compiled
    """``count`` outputs at yf[ys:] of three buffer rows at q0, q1, q2, taps e1 and e2 apart."""
    for u in range(count):
        yf[ys + u] = (bf[q0 + u] * w0 + bf[q0 + u + e1] * w1 + bf[q0 + u + e2] * w2
                      + bf[q1 + u] * w3 + bf[q1 + u + e1] * w4 + bf[q1 + u + e2] * w5
                      + bf[q2 + u] * w6 + bf[q2 + u + e1] * w7 + bf[q2 + u + e2] * w8)


@njit(cache=True)
def _finite(a):  # pragma: no cover - compiled
    """Whether every element of a is finite (a - a is 0, not NaN)."""
    s = a.dtype.type(0)
    for k in range(a.size):
        s += a[k] - a[k]
    return s == 0


@njit(cache=True, fastmath={"contract"})
def _plane3x3(bf, wb_, wf, wo, yf, yb, oh, ow, s0, d0, d1):  # pragma: no cover - compiled
    """The plane at yf[yb:] (OH, OW) = the valid 3x3 correlation of the buffer bf (rows of wb_)
    with the kernel at wf[wo:], unit column stride, OW >= lanes: in vectors of ``lanes`` outputs
    along a row (the last one ends at OW, overlapping the one before and writing the same values
    again), the nine weights broadcast in registers, three shifted loads per buffer row. Two
    output rows at a time where they share buffer rows (unit row stride and dilation): 12 loads
    for 18 multiply-adds. (Asking for the next plane ahead, as the filter gradient does, took
    about 1.5x the time here: the next plane is the next in memory, which the hardware fetches.)"""
    width = lanes(bf)
    k0, k1, k2 = vsplat(wf, wo), vsplat(wf, wo + 1), vsplat(wf, wo + 2)
    k3, k4, k5 = vsplat(wf, wo + 3), vsplat(wf, wo + 4), vsplat(wf, wo + 5)
    k6, k7, k8 = vsplat(wf, wo + 6), vsplat(wf, wo + 7), vsplat(wf, wo + 8)
    e1, e2 = d1, 2 * d1
    pairs = s0 == 1 and d0 == 1
    i = 0
    while i < oh:
        two = pairs and i + 1 < oh
        q0 = i * s0 * wb_
        q1, q2 = q0 + d0 * wb_, q0 + 2 * d0 * wb_
        for v in range(-(-ow // width)):
            j0 = min(v * width, ow - width)
            a0, a1, a2 = vload(bf, q0 + j0), vload(bf, q0 + j0 + e1), vload(bf, q0 + j0 + e2)
            b0, b1, b2 = vload(bf, q1 + j0), vload(bf, q1 + j0 + e1), vload(bf, q1 + j0 + e2)
            c0, c1, c2 = vload(bf, q2 + j0), vload(bf, q2 + j0 + e1), vload(bf, q2 + j0 + e2)
            vstore(yf, yb + i * ow + j0, _taps(a0, a1, a2, b0, b1, b2, c0, c1, c2, k0, k1, k2, k3, k4, k5,
                                               k6, k7, k8))
            if two:
                q3 = q2 + wb_
                f0, f1, f2 = vload(bf, q3 + j0), vload(bf, q3 + j0 + e1), vload(bf, q3 + j0 + e2)
                vstore(yf, yb + (i + 1) * ow + j0, _taps(b0, b1, b2, c0, c1, c2, f0, f1, f2, k0, k1, k2, k3,
                                                         k4, k5, k6, k7, k8))
        i += 2 if two else 1


@njit(cache=True, fastmath={"contract"})
def _plane3x3_aligned(bf, rs, wf, wo, yf, yb, oh, ow, s0, d0):  # pragma: no cover - compiled
    """``_plane3x3`` with unit column dilation on a buffer whose rows (``rs`` apart, a multiple of
    the vector, the first on a cache line) hold a vector more than the row: each output vector's
    three taps of a row are the aligned vector there and two windows shifted in from the next one
    (``vshift``), which the next output vector takes over: one aligned load per row and vector,
    where ``_plane3x3`` makes three loads that each span two cache lines (8 x 128 x 56 x 56
    float32, one thread, CPU time, A/B in one process, loaded machine: 0.84-0.90x the time,
    bitwise equal). The last vector of a row, over the one before, loads as ``_plane3x3`` does."""
    width = lanes(bf)
    k0, k1, k2 = vsplat(wf, wo), vsplat(wf, wo + 1), vsplat(wf, wo + 2)
    k3, k4, k5 = vsplat(wf, wo + 3), vsplat(wf, wo + 4), vsplat(wf, wo + 5)
    k6, k7, k8 = vsplat(wf, wo + 6), vsplat(wf, wo + 7), vsplat(wf, wo + 8)
    pairs = s0 == 1 and d0 == 1
    full = ow // width * width
    i = 0
    while i < oh:
        two = pairs and i + 1 < oh
        q0 = i * s0 * rs
        q1, q2 = q0 + d0 * rs, q0 + 2 * d0 * rs
        q3 = q2 + rs
        ra, rb, rc, rd = vload(bf, q0), vload(bf, q1), vload(bf, q2), vload(bf, q3 if two else q2)
        for v in range(0, full, width):
            na, nb, nc = vload(bf, q0 + v + width), vload(bf, q1 + v + width), vload(bf, q2 + v + width)
            a0, a1, a2 = ra, vshift(ra, na, 1), vshift(ra, na, 2)
            b0, b1, b2 = rb, vshift(rb, nb, 1), vshift(rb, nb, 2)
            c0, c1, c2 = rc, vshift(rc, nc, 1), vshift(rc, nc, 2)
            vstore(yf, yb + i * ow + v, _taps(a0, a1, a2, b0, b1, b2, c0, c1, c2, k0, k1, k2, k3, k4, k5,
                                              k6, k7, k8))
            ra, rb, rc = na, nb, nc
            if two:
                nd = vload(bf, q3 + v + width)
                f0, f1, f2 = rd, vshift(rd, nd, 1), vshift(rd, nd, 2)
                rd = nd
                vstore(yf, yb + (i + 1) * ow + v, _taps(b0, b1, b2, c0, c1, c2, f0, f1, f2, k0, k1, k2, k3,
                                                        k4, k5, k6, k7, k8))
        if full < ow:
            j0 = ow - width
            a0, a1, a2 = vload(bf, q0 + j0), vload(bf, q0 + j0 + 1), vload(bf, q0 + j0 + 2)
            b0, b1, b2 = vload(bf, q1 + j0), vload(bf, q1 + j0 + 1), vload(bf, q1 + j0 + 2)
            c0, c1, c2 = vload(bf, q2 + j0), vload(bf, q2 + j0 + 1), vload(bf, q2 + j0 + 2)
            vstore(yf, yb + i * ow + j0, _taps(a0, a1, a2, b0, b1, b2, c0, c1, c2, k0, k1, k2, k3, k4, k5,
                                               k6, k7, k8))
            if two:
                f0, f1, f2 = vload(bf, q3 + j0), vload(bf, q3 + j0 + 1), vload(bf, q3 + j0 + 2)
                vstore(yf, yb + (i + 1) * ow + j0, _taps(b0, b1, b2, c0, c1, c2, f0, f1, f2, k0, k1, k2, k3,
                                                         k4, k5, k6, k7, k8))
        i += 2 if two else 1


# y from this size on is stored past the caches by the AVX2 planes (``_plane3x3_lines``): the
# engine's STREAM_BYTES, for the channels-last kernel.
STREAM_BYTES = 2**20


@njit(cache=True, fastmath={"contract"})
def _plane3x3_lines(bf, rs, wf, wo, yf, yb, oh, ow, s0, d0, stream, xf, ahead, count):  # pragma: no cover
    """``_plane3x3_aligned`` for AVX2 (32-byte vectors), the same sums in the same order: a row's
    three taps loaded at their offsets (a load across a cache line is one in two here, not every
    one as with 64-byte vectors, and the two shuffles of each ``vshift`` cross the 128-bit halves),
    y's vectors streamed past the caches where ``stream`` (OW a whole number of vectors, y's plane
    on a vector boundary), and the next plane's ``count`` samples at xf[ahead:] asked for into the
    second-level cache, a share per row pair: ``_fill`` reads a plane at once, which the hardware
    fetches ahead only as it goes. 8 x 128 x 56 x 56 float32, one thread, CPU time, loaded machine:
    each of the three 0.85-0.9x the time of ``_plane3x3_aligned``; with the loads at their offsets
    alone 0.9x."""
    width = lanes(bf)
    k0, k1, k2 = vsplat(wf, wo), vsplat(wf, wo + 1), vsplat(wf, wo + 2)
    k3, k4, k5 = vsplat(wf, wo + 3), vsplat(wf, wo + 4), vsplat(wf, wo + 5)
    k6, k7, k8 = vsplat(wf, wo + 6), vsplat(wf, wo + 7), vsplat(wf, wo + 8)
    pairs = s0 == 1 and d0 == 1
    line = 64 // bf.itemsize
    i = 0
    while i < oh:
        two = pairs and i + 1 < oh
        for u in range(i * count // oh, min((i + 2) * count // oh, count), line):
            prefetch(xf, ahead + u, 0, 2)
        q0 = i * s0 * rs
        q1, q2 = q0 + d0 * rs, q0 + 2 * d0 * rs
        q3 = q2 + rs
        for v in range(-(-ow // width)):
            j0 = min(v * width, ow - width)  # the last vector ends at OW (over the one before)
            a0, a1, a2 = vload(bf, q0 + j0), vload(bf, q0 + j0 + 1), vload(bf, q0 + j0 + 2)
            b0, b1, b2 = vload(bf, q1 + j0), vload(bf, q1 + j0 + 1), vload(bf, q1 + j0 + 2)
            c0, c1, c2 = vload(bf, q2 + j0), vload(bf, q2 + j0 + 1), vload(bf, q2 + j0 + 2)
            _put(yf, yb + i * ow + j0, _taps(a0, a1, a2, b0, b1, b2, c0, c1, c2, k0, k1, k2, k3, k4, k5,
                                             k6, k7, k8), stream)
            if two:
                f0, f1, f2 = vload(bf, q3 + j0), vload(bf, q3 + j0 + 1), vload(bf, q3 + j0 + 2)
                _put(yf, yb + (i + 1) * ow + j0, _taps(b0, b1, b2, c0, c1, c2, f0, f1, f2, k0, k1, k2, k3,
                                                       k4, k5, k6, k7, k8), stream)
        i += 2 if two else 1


@njit(cache=True, fastmath={"contract"})
def _valid_forward(bf, wb_, wf, wo, kh, kw, yf, yb, oh, ow, s0, s1, d0, d1):  # pragma: no cover - compiled
    """The plane at yf[yb:] (OH, OW) = the valid correlation of the buffer bf (rows of wb_) with
    the kernel at wf[wo:] (KH, KW)."""
    count, us = np.uint64(ow), np.uint64(s1)
    if kh == 3 and kw == 3 and s1 == 1 and ow >= lanes(bf):
        _plane3x3(bf, wb_, wf, wo, yf, yb, oh, ow, s0, d0, d1)
        return
    if kh == 3 and kw == 3 and s1 == 1:
        e1, e2 = np.uint64(d1), np.uint64(2 * d1)
        w0, w1, w2 = wf[wo], wf[wo + 1], wf[wo + 2]
        w3, w4, w5 = wf[wo + 3], wf[wo + 4], wf[wo + 5]
        w6, w7, w8 = wf[wo + 6], wf[wo + 7], wf[wo + 8]
        for i in range(oh):
            q0 = np.uint64(i * s0 * wb_)
            q1, q2 = q0 + np.uint64(d0 * wb_), q0 + np.uint64(2 * d0 * wb_)
            ys = np.uint64(yb + i * ow)
            _run3x3(bf, q0, q1, q2, e1, e2, yf, ys, count, w0, w1, w2, w3, w4, w5, w6, w7, w8)
        return
    for i in range(oh):
        ys = np.uint64(yb + i * ow)
        for u in range(count):
            yf[ys + u] = 0
        for a in range(kh):
            for b in range(kw):
                wv = wf[wo + a * kw + b]
                q = np.uint64((i * s0 + a * d0) * wb_ + b * d1)
                for u in range(count):
                    yf[ys + u] += bf[q + u * us] * wv


# Below this many multiply-adds (y's size times the taps) the kernels run on the calling thread:
# waking the others costs more than the work (2 x 16 x 16 x 16 float32, 3x3, one thread's CPU time,
# loaded machine: 11.6 against 18-20 us per call; on two threads, with another process on the
# other core, 21 against 170-1300 us).
SERIAL_MACS = 2**17


@njit(cache=True, fastmath={"contract"})
def _forward_tasks(x, w, p0, p1, s0, s1, d0, d1, y, t0, t1, buf, rs, stream):  # pragma: no cover - compiled
    """The (n, o) planes t0 <= t < t1 of ``depthwise2d_forward_first``'s y, through the plane buffer
    buf (rows rs apart)."""
    o_, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    c_in, h_in, w_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = w.shape[1], w.shape[2]
    mult = o_ // c_in
    hb, wb = (oh - 1) * s0 + (kh - 1) * d0 + 1, (ow - 1) * s1 + (kw - 1) * d1 + 1
    xf, wf, yf = x.ravel(), w.ravel(), y.ravel()
    tasks, plane = y.shape[0] * o_, h_in * w_in
    aligned = rs != wb  # the 3x3 planes' rows (``_row_stride``)
    for t in range(t0, t1):
        n, o = t // o_, t % o_
        _fill(xf, (n * c_in + o // mult) * plane, h_in, w_in, p0, p1, buf, hb, rs)
        if aligned and VECTOR_BYTES == 32:  # AVX2
            nt = min(t + 1, tasks - 1)  # the next task's plane of x (the last: its own)
            ahead = (nt // o_ * c_in + nt % o_ // mult) * plane
            _plane3x3_lines(buf, rs, wf, o * 9, yf, t * oh * ow, oh, ow, s0, d0, stream, xf, ahead, plane)
        elif aligned:
            _plane3x3_aligned(buf, rs, wf, o * 9, yf, t * oh * ow, oh, ow, s0, d0)
        else:
            _valid_forward(buf, wb, wf, o * kh * kw, kh, kw, yf, t * oh * ow, oh, ow, s0, s1, d0, d1)


@njit(parallel=True, cache=True, fastmath={"contract"})
def depthwise2d_forward_first(x, w, p0, p1, s0, s1, d0, d1, y, stream_bytes=STREAM_BYTES):  # pragma: no cover
    """y[n, o, i, j] = sum_{a,b} x[n, o // M, i*s0 + a*d0 - p0, j*s1 + b*d1 - p1] * w[o, a, b],
    samples outside x reading zeros; parallel over chunks of the (n, o) planes, claimed (below
    SERIAL_MACS on this thread). With 32-byte vectors a y of ``stream_bytes`` or more is stored
    past the caches where it can be."""
    n_, o_, oh, ow = y.shape
    kh, kw = w.shape[1], w.shape[2]
    hb, wb = (oh - 1) * s0 + (kh - 1) * d0 + 1, (ow - 1) * s1 + (kw - 1) * d1 + 1
    yf = y.ravel()
    tasks = n_ * o_
    width = lanes(yf)
    # 3x3, unit column stride and dilation: buffer rows a vector apart and aligned (``_plane3x3_aligned``)
    aligned = kh == 3 and kw == 3 and s1 == 1 and d1 == 1 and ow >= width
    rs = _row_stride(wb, width, aligned)
    # AVX2 (``_plane3x3_lines``), every plane's vectors on a vector boundary: OW a whole number of
    # them, y aligned
    stream = (VECTOR_BYTES == 32 and aligned and y.nbytes >= stream_bytes and ow % width == 0
              and yf.ctypes.data % VECTOR_BYTES == 0)
    if y.size * kh * kw < SERIAL_MACS:
        buf = _plane_buffer(hb, rs, width, aligned, True, yf)
        _forward_tasks(x, w, p0, p1, s0, s1, d0, d1, y, 0, tasks, buf, rs, stream)
        if stream:
            sfence()
        return
    per = chunk_size(tasks)
    chunks = -(-tasks // per)
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(chunks):  # chunks claimed by the threads that run (_numba.chunk_size)
        k = _claim(counter)
        buf = _plane_buffer(hb, rs, width, aligned, k < chunks, yf)
        while k < chunks:
            end = min(tasks, (k + 1) * per)
            _forward_tasks(x, w, p0, p1, s0, s1, d0, d1, y, k * per, end, buf, rs, stream)
            k = _claim(counter)
        if stream:
            sfence()  # the streamed stores in memory before the loop's end says they are


@njit(parallel=True, cache=True, fastmath={"contract"})
def depthwise2d_input_grad_first(dy, w, p0, p1, s0, s1, d0, d1, dx):  # pragma: no cover - compiled
    """The adjoint: dx[n, c, i*s0 + a*d0 - p0, j*s1 + b*d1 - p1] += dy[n, c*M + q, i, j] * w[c*M + q, a, b]
    where that sample is in dx: scattered into a zeroed buffer of the padded plane, whose inside
    is then copied to dx; parallel over chunks of the (n, c) planes of dx."""
    n_, c_in, h_in, w_in = dx.shape
    o_, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    kh, kw = w.shape[1], w.shape[2]
    mult = o_ // c_in
    hb, wb = (oh - 1) * s0 + (kh - 1) * d0 + 1, (ow - 1) * s1 + (kw - 1) * d1 + 1
    gf, wf, df = dy.ravel(), w.ravel(), dx.ravel()
    count, us = np.uint64(ow), np.uint64(s1)
    tasks = n_ * c_in
    per = _chunks(tasks)
    for ch in prange(-(-tasks // per)):
        buf = np.empty(hb * wb, dtype=dx.dtype)
        for t in range(ch * per, min(tasks, (ch + 1) * per)):
            n, c = t // c_in, t % c_in
            buf[:] = 0
            for q in range(mult):
                o = c * mult + q
                for i in range(oh):
                    gs = np.uint64(((n * o_ + o) * oh + i) * ow)
                    for a in range(kh):
                        for b in range(kw):
                            wv = wf[(o * kh + a) * kw + b]
                            r = np.uint64((i * s0 + a * d0) * wb + b * d1)
                            for u in range(count):
                                buf[r + u * us] += gf[gs + u] * wv
            # dx's sample (h, v) is the buffer's (h + p0, v + p1); those outside it got nothing.
            db = t * h_in * w_in
            for h in range(h_in):
                r = h + p0
                for v in range(w_in):
                    col = v + p1
                    inside = 0 <= r < hb and 0 <= col < wb
                    df[db + h * w_in + v] = buf[r * wb + col] if inside else 0


@njit(cache=True, fastmath={"contract", "reassoc"})
def _sums3x3(bf, q0, q1, q2, e1, e2, gf, gs, count):  # pragma: no cover - compiled
    """The nine tap sums of ``count`` outputs of dy at gf[gs:] against three buffer rows."""
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = bf.dtype.type(0)
    for u in range(count):
        g = gf[gs + u]
        t0 += bf[q0 + u] * g
        t1 += bf[q0 + u + e1] * g
        t2 += bf[q0 + u + e2] * g
        t3 += bf[q1 + u] * g
        t4 += bf[q1 + u + e1] * g
        t5 += bf[q1 + u + e2] * g
        t6 += bf[q2 + u] * g
        t7 += bf[q2 + u + e1] * g
        t8 += bf[q2 + u + e2] * g
    return t0, t1, t2, t3, t4, t5, t6, t7, t8


@njit(cache=True, fastmath={"contract", "reassoc"})
def _valid_filter_grad(bf, wb_, gf, gb, oh, ow, s0, s1, d0, d1, acc):  # pragma: no cover - compiled
    """acc (KH, KW) += the valid correlation of the buffer bf with dy's plane at gf[gb:]."""
    kh, kw = acc.shape
    count, us = np.uint64(ow), np.uint64(s1)
    fast = kh == 3 and kw == 3 and s1 == 1
    e1, e2 = np.uint64(d1), np.uint64(2 * d1)
    for i in range(oh):
        gs = np.uint64(gb + i * ow)
        if fast:
            q0 = np.uint64(i * s0 * wb_)
            q1, q2 = q0 + np.uint64(d0 * wb_), q0 + np.uint64(2 * d0 * wb_)
            t0, t1, t2, t3, t4, t5, t6, t7, t8 = _sums3x3(bf, q0, q1, q2, e1, e2, gf, gs, count)
            acc[0, 0] += t0
            acc[0, 1] += t1
            acc[0, 2] += t2
            acc[1, 0] += t3
            acc[1, 1] += t4
            acc[1, 2] += t5
            acc[2, 0] += t6
            acc[2, 1] += t7
            acc[2, 2] += t8
            continue
        for a in range(kh):
            for b in range(kw):
                q = np.uint64((i * s0 + a * d0) * wb_ + b * d1)
                s = acc.dtype.type(0)
                for u in range(count):
                    s += gf[gs + u] * bf[q + u * us]
                acc[a, b] += s


@njit(cache=True, fastmath={"contract", "reassoc"})
def _flat_sums3x3(bf, gb, count, r1, r2, e1, e2):  # pragma: no cover - compiled
    """The nine tap sums of the whole plane: dy's plane laid out in rows of the buffer's width
    (zeros beyond its outputs) makes each tap's sum one dot product over ``count`` samples, so the
    nine running sums stay in vector registers across rows and are reduced once per plane.
    ``_sums3x3`` with zero offsets computes the same sums, but 7 % slower here (8 x 128 x 56 x 56
    float32 depthwise filter gradient, channels-first: 16.1 against 15.0 ms, median of 41 calls):
    kept apart for that."""
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = bf.dtype.type(0)
    for u in range(count):
        g = gb[u]
        t0 += bf[u] * g
        t1 += bf[u + e1] * g
        t2 += bf[u + e2] * g
        t3 += bf[u + r1] * g
        t4 += bf[u + r1 + e1] * g
        t5 += bf[u + r1 + e2] * g
        t6 += bf[u + r2] * g
        t7 += bf[u + r2 + e1] * g
        t8 += bf[u + r2 + e2] * g
    return t0, t1, t2, t3, t4, t5, t6, t7, t8


@njit(cache=True, fastmath={"contract", "reassoc"})
def _flat_filter_grad(bf, wb_, gb, oh, ow, d0, d1, acc):  # pragma: no cover - compiled
    """acc (KH, KW) += the unit-stride valid correlation of the buffer bf (rows of wb_) with dy's
    plane in gb (OH rows of wb_, zero beyond column OW): one dot product per tap."""
    kh, kw = acc.shape
    count = np.uint64((oh - 1) * wb_ + ow)  # the last row's zeros past OW are never needed
    if kh == 3 and kw == 3:
        r1, r2 = np.uint64(d0 * wb_), np.uint64(2 * d0 * wb_)
        t0, t1, t2, t3, t4, t5, t6, t7, t8 = _flat_sums3x3(bf, gb, count, r1, r2, np.uint64(d1),
                                                           np.uint64(2 * d1))
        acc[0, 0] += t0
        acc[0, 1] += t1
        acc[0, 2] += t2
        acc[1, 0] += t3
        acc[1, 1] += t4
        acc[1, 2] += t5
        acc[2, 0] += t6
        acc[2, 1] += t7
        acc[2, 2] += t8
        return
    for a in range(kh):
        for b in range(kw):
            q = np.uint64(a * d0 * wb_ + b * d1)
            s = acc.dtype.type(0)
            for u in range(count):
                s += gb[u] * bf[q + u]
            acc[a, b] += s


@njit(cache=True, fastmath={"contract"})
def _plane_sums3x3(bf, wb_, gf, gb, oh, ow, s0, d0, d1, tail, shifted, t0, t1, t2, t3, t4, t5, t6, t7,
                   t8):  # pragma: no cover - compiled
    """The nine tap sums (vectors of ``lanes``) plus the valid 3x3 correlation of the buffer bf
    (rows of wb_) with dy's plane at gf[gb:] (OH, OW), unit column stride, OW >= lanes: dy in
    vectors along a row, the last one ending at OW with its products kept only in the lanes
    where ``tail`` is not zero (the others the vector before already took: a product dropped,
    not multiplied by zero, which would make NaN of an inf). The sums stay in registers across
    the plane. Where ``shifted`` (unit column dilation; bf's rows a whole number of vectors apart,
    the first on a cache line, with a vector to spare), a row's three taps are one aligned vector
    and two windows shifted in from the next (``_plane3x3_aligned``)."""
    width = lanes(bf)
    e1, e2 = d1, 2 * d1
    keep = vload(tail, 0)
    full = ow // width
    for i in range(oh):
        q0 = i * s0 * wb_
        q1, q2 = q0 + d0 * wb_, q0 + 2 * d0 * wb_
        if full * width < ow:  # the last vector's products in the lanes it alone holds
            j0 = ow - width
            g = vload(gf, gb + i * ow + j0)
            t0 = vadd(t0, vkeep(keep, vmul(vload(bf, q0 + j0), g)))
            t1 = vadd(t1, vkeep(keep, vmul(vload(bf, q0 + j0 + e1), g)))
            t2 = vadd(t2, vkeep(keep, vmul(vload(bf, q0 + j0 + e2), g)))
            t3 = vadd(t3, vkeep(keep, vmul(vload(bf, q1 + j0), g)))
            t4 = vadd(t4, vkeep(keep, vmul(vload(bf, q1 + j0 + e1), g)))
            t5 = vadd(t5, vkeep(keep, vmul(vload(bf, q1 + j0 + e2), g)))
            t6 = vadd(t6, vkeep(keep, vmul(vload(bf, q2 + j0), g)))
            t7 = vadd(t7, vkeep(keep, vmul(vload(bf, q2 + j0 + e1), g)))
            t8 = vadd(t8, vkeep(keep, vmul(vload(bf, q2 + j0 + e2), g)))
        if shifted:
            ra, rb, rc = vload(bf, q0), vload(bf, q1), vload(bf, q2)
            for v in range(0, full * width, width):
                na, nb, nc = vload(bf, q0 + v + width), vload(bf, q1 + v + width), vload(bf, q2 + v + width)
                g = vload(gf, gb + i * ow + v)
                t0, t1, t2 = vfma(ra, g, t0), vfma(vshift(ra, na, 1), g, t1), vfma(vshift(ra, na, 2), g, t2)
                t3, t4, t5 = vfma(rb, g, t3), vfma(vshift(rb, nb, 1), g, t4), vfma(vshift(rb, nb, 2), g, t5)
                t6, t7, t8 = vfma(rc, g, t6), vfma(vshift(rc, nc, 1), g, t7), vfma(vshift(rc, nc, 2), g, t8)
                ra, rb, rc = na, nb, nc
            continue
        for v in range(full):
            j0 = v * width
            g = vload(gf, gb + i * ow + j0)
            t0 = vfma(vload(bf, q0 + j0), g, t0)
            t1 = vfma(vload(bf, q0 + j0 + e1), g, t1)
            t2 = vfma(vload(bf, q0 + j0 + e2), g, t2)
            t3 = vfma(vload(bf, q1 + j0), g, t3)
            t4 = vfma(vload(bf, q1 + j0 + e1), g, t4)
            t5 = vfma(vload(bf, q1 + j0 + e2), g, t5)
            t6 = vfma(vload(bf, q2 + j0), g, t6)
            t7 = vfma(vload(bf, q2 + j0 + e1), g, t7)
            t8 = vfma(vload(bf, q2 + j0 + e2), g, t8)
    return t0, t1, t2, t3, t4, t5, t6, t7, t8


@njit(cache=True, fastmath={"contract"})
def _plane_sums_tasks(xf, gf, t0, t1, o_, c_in, h_in, w_in, oh, ow, p0, p1, s0, d0, d1, mult, hb, rs, tail,
                      shifted, buf, sums):  # pragma: no cover - compiled
    """sums[t] = the nine tap sums of the (n, o) plane t of dy, t0 <= t < t1 (``_filter_grad_planes``)."""
    for t in range(t0, t1):
        n, o = t // o_, t % o_
        _fill(xf, (n * c_in + o // mult) * h_in * w_in, h_in, w_in, p0, p1, buf, hb, rs)
        z = vzero(buf)
        a0, a1, a2, a3, a4, a5, a6, a7, a8 = _plane_sums3x3(
            buf, rs, gf, t * oh * ow, oh, ow, s0, d0, d1, tail, shifted, z, z, z, z, z, z, z, z, z)
        sums[t, 0], sums[t, 1], sums[t, 2] = vsum(a0), vsum(a1), vsum(a2)
        sums[t, 3], sums[t, 4], sums[t, 5] = vsum(a3), vsum(a4), vsum(a5)
        sums[t, 6], sums[t, 7], sums[t, 8] = vsum(a6), vsum(a7), vsum(a8)


@njit(parallel=True, cache=True, fastmath={"contract"})
def _filter_grad_planes(xf, gf, n_, c_in, o_, h_in, w_in, oh, ow, p0, p1, s0, d0, d1, mult, hb, wb, tail,
                        dw):  # pragma: no cover - compiled
    """dw (O, 3, 3) = the filter gradient, 3x3 with unit column stride, OW >= lanes: the (n, o)
    planes of dy in memory order, in chunks the threads claim, each plane's nine tap sums
    (``_plane_sums3x3``, reduced once per plane) kept apart, then summed over the images in
    their order: the bits do not depend on which thread took which plane.

    Planes in memory order, not a channel's images one after another (1.6 MB apart in
    8 x 128 x 56 x 56): x and dy are each read front to back, as the hardware fetches ahead
    (8 x 128 x 56 x 56 float32, one thread, CPU time, loaded machine: 1.47 against 1.82 ms for a
    channel's images in turn with the next planes asked for ahead; the channels-last kernel
    1.40). The sums (9 per plane of dy, which has at least ``lanes`` outputs) are smaller than dy.
    Below SERIAL_MACS multiply-adds on the calling thread."""
    tasks = n_ * o_
    sums = np.empty((tasks, 9), dtype=dw.dtype)
    per = chunk_size(tasks)
    chunks = -(-tasks // per)
    counter = np.zeros(1, dtype=np.int64)
    width = lanes(xf)
    shifted = d1 == 1  # buffer rows a vector apart and aligned (``_plane_sums3x3``)
    rs = _row_stride(wb, width, shifted)
    if tasks * oh * ow * 9 < SERIAL_MACS:  # on this thread
        buf = _plane_buffer(hb, rs, width, shifted, True, xf)
        _plane_sums_tasks(xf, gf, 0, tasks, o_, c_in, h_in, w_in, oh, ow, p0, p1, s0, d0, d1, mult, hb, rs,
                          tail, shifted, buf, sums)
    else:
        for _ in prange(chunks):
            k = _claim(counter)
            # Kept across planes: each _fill writes the same samples, the border stays zero.
            buf = _plane_buffer(hb, rs, width, shifted, k < chunks, xf)
            while k < chunks:
                end = min(tasks, (k + 1) * per)
                _plane_sums_tasks(xf, gf, k * per, end, o_, c_in, h_in, w_in, oh, ow, p0, p1, s0, d0, d1,
                                  mult, hb, rs, tail, shifted, buf, sums)
                k = _claim(counter)
    out = dw.ravel()
    for o in range(o_):
        for tap in range(9):
            s = sums[o, tap]
            for n in range(1, n_):
                s += sums[n * o_ + o, tap]
            out[o * 9 + tap] = s


@njit(parallel=True, cache=True, fastmath={"contract", "reassoc"})
def depthwise2d_filter_grad_first(x, dy, p0, p1, s0, s1, d0, d1, dw):  # pragma: no cover - compiled
    """dw[o, a, b] = sum_{n,i,j} dy[n, o, i, j] * x[n, o // M, i*s0 + a*d0 - p0, j*s1 + b*d1 - p1],
    samples outside x reading zeros. 3x3 with unit column stride and rows of at least a vector:
    parallel over the (n, o) planes (``_filter_grad_planes``); other kernels parallel over o,
    the sums along a row vectorised (reassociated)."""
    n_, o_, oh, ow = dy.shape
    c_in, h_in, w_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = dw.shape[1], dw.shape[2]
    mult = o_ // c_in
    hb, wb = (oh - 1) * s0 + (kh - 1) * d0 + 1, (ow - 1) * s1 + (kw - 1) * d1 + 1
    xf, gf = x.ravel(), dy.ravel()
    width = lanes(xf)
    if kh == 3 and kw == 3 and s1 == 1 and ow >= width:  # vectors along rows, plane by plane
        tail = np.ones(width, dtype=dw.dtype)
        tail[:(width - ow % width) % width] = 0
        _filter_grad_planes(xf, gf, n_, c_in, o_, h_in, w_in, oh, ow, p0, p1, s0, d0, d1, mult, hb, wb, tail,
                            dw)
        return
    # The flat sums would multiply x by the zeros past each row of dy (NaN for an inf in x, a
    # product the direct sum does not have): kept for finite x only.
    flat = s0 == 1 and s1 == 1 and _finite(xf)
    per = chunk_size(o_)
    chunks = -(-o_ // per)
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(chunks):  # chunks of channels claimed by the threads that run
        k = _claim(counter)
        # Buffers kept across channels: each _fill writes the same samples, the rest stay zero.
        buf = np.zeros(hb * wb if k < chunks else 0, dtype=dw.dtype)
        gb = np.zeros(oh * wb if flat and k < chunks else 0, dtype=dw.dtype)
        while k < chunks:
            for o in range(k * per, min(o_, (k + 1) * per)):
                acc = dw[o]
                acc[:, :] = 0
                for n in range(n_):
                    _fill(xf, (n * c_in + o // mult) * h_in * w_in, h_in, w_in, p0, p1, buf, hb, wb)
                    if flat:
                        _fill(gf, (n * o_ + o) * oh * ow, oh, ow, 0, 0, gb, oh, wb)
                        _flat_filter_grad(buf, wb, gb, oh, ow, d0, d1, acc)
                    else:
                        _valid_filter_grad(buf, wb, gf, (n * o_ + o) * oh * ow, oh, ow, s0, s1, d0, d1,
                                           acc)
            k = _claim(counter)
