"""Depthwise 2-D convolutions (one filter per channel): forward, input gradient, filter gradient."""

from __future__ import annotations

import numpy as np

from ._numba import _claim, _registers, _wide_vectors, chunk_size, njit, prange
from ._simd import VECTOR_BYTES, lanes, sfence
from .depthwise_first import SERIAL_MACS
from .depthwise_lanes import (
    filter_grad_cols,
    filter_grad_pair,
    forward_cols,
    forward_pair,
    forward_row,
    streams,
)


@njit(cache=True)
def _depthwise_row(x, w, n, i, j_lo, j_hi, p0, p1, s0, s1, d0, d1, yrow):  # pragma: no cover - compiled
    """Outputs [j_lo, j_hi) of row (n, i) of depthwise2d_forward, tap by tap; a tap in the zero
    padding adds w * 0 (``_pad_products``)."""
    h_in, w_in, c_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = w.shape[0], w.shape[1]
    mult = yrow.shape[1] // c_in
    yrow[j_lo:j_hi, :] = 0
    for a in range(kh):
        h = i * s0 + a * d0 - p0
        inside = 0 <= h < h_in
        xrow = x[n, h if inside else 0]
        for b in range(kw):
            wr = w[a, b]
            # Outputs j whose tap b lands inside the row: 0 <= j*s1 + b*d1 - p1 < w_in.
            off = b * d1 - p1
            j0 = max(j_lo, 0 if off >= 0 else (-off + s1 - 1) // s1) if inside else j_hi
            j1 = max(j0, min(ow_clip(w_in, off, s1), j_hi))
            _pad_products(yrow, wr, j_lo, j0, c_in, mult)
            _pad_products(yrow, wr, j1, j_hi, c_in, mult)
            for j in range(j0, j1):
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
def _pad_products(rows, vals, j_lo, j_hi, c_in, mult):  # pragma: no cover - compiled
    """rows[j, o] += vals[o] * 0 for j in [j_lo, j_hi): a product with the zero padding, which the
    direct sum has: 0 for a finite value, NaN for an inf or NaN (so the engine needs no check of
    its operands for them)."""
    for j in range(j_lo, j_hi):
        out = rows[j]
        for o in range(c_in * mult):
            out[o] += vals[o] * 0


@njit(cache=True)
def ow_clip(w_in, off, s1):  # pragma: no cover - compiled
    """One past the last output whose tap at offset ``off`` reads inside a row of ``w_in`` samples."""
    return (w_in - off + s1 - 1) // s1 if w_in - off > 0 else 0


@njit(cache=True, fastmath={"contract"})
def _interior3x3(xf, wf, yf, r0, r1, r2, ys, j_lo, j_hi, p1, s1, d1, c_in):  # pragma: no cover
    """Outputs [j_lo, j_hi) of one row of depthwise2d_forward with a 3x3 kernel, one output per
    channel, all taps inside x: the rows of x start at the flat offsets r0, r1, r2, the row of y
    at ys.

    With unit column stride and dilation, four neighbouring outputs share the six columns of x
    their windows cover: each column is loaded once for up to three of them, 4.5 loads per output
    and channel instead of nine, and the row of y is written once (8 x 128 x 56 x 56 float32, one
    thread: 0.44-0.51 against 0.61-0.64 ns of CPU per output; PyTorch channels_last 0.37-0.39).
    The loop runs over all channels, not blocks of 16: a constant-length block was unrolled
    into scalar stores of y.
    """
    _wide_vectors()
    uc = np.uint64(c_in)
    c2, c3, c4, c5 = uc + uc, uc + uc + uc, uc * np.uint64(4), uc * np.uint64(5)
    c6, c7, c8 = uc * np.uint64(6), uc * np.uint64(7), uc * np.uint64(8)
    j = j_lo
    if s1 == 1 and d1 == 1:
        while j + 4 <= j_hi:
            v = np.uint64((j - p1) * c_in)
            q = ys + np.uint64(j * c_in)
            a0, a1, a2 = r0 + v, r1 + v, r2 + v
            for c in range(uc):
                k0, k1, k2 = wf[c], wf[uc + c], wf[c2 + c]
                x0, x1, x2 = xf[a0 + c], xf[a0 + uc + c], xf[a0 + c2 + c]
                x3, x4, x5 = xf[a0 + c3 + c], xf[a0 + c4 + c], xf[a0 + c5 + c]
                t0 = x0 * k0 + x1 * k1 + x2 * k2
                t1 = x1 * k0 + x2 * k1 + x3 * k2
                t2 = x2 * k0 + x3 * k1 + x4 * k2
                t3 = x3 * k0 + x4 * k1 + x5 * k2
                k0, k1, k2 = wf[c3 + c], wf[c4 + c], wf[c5 + c]
                x0, x1, x2 = xf[a1 + c], xf[a1 + uc + c], xf[a1 + c2 + c]
                x3, x4, x5 = xf[a1 + c3 + c], xf[a1 + c4 + c], xf[a1 + c5 + c]
                t0 += x0 * k0 + x1 * k1 + x2 * k2
                t1 += x1 * k0 + x2 * k1 + x3 * k2
                t2 += x2 * k0 + x3 * k1 + x4 * k2
                t3 += x3 * k0 + x4 * k1 + x5 * k2
                k0, k1, k2 = wf[c6 + c], wf[c7 + c], wf[c8 + c]
                x0, x1, x2 = xf[a2 + c], xf[a2 + uc + c], xf[a2 + c2 + c]
                x3, x4, x5 = xf[a2 + c3 + c], xf[a2 + c4 + c], xf[a2 + c5 + c]
                t0 += x0 * k0 + x1 * k1 + x2 * k2
                t1 += x1 * k0 + x2 * k1 + x3 * k2
                t2 += x2 * k0 + x3 * k1 + x4 * k2
                t3 += x3 * k0 + x4 * k1 + x5 * k2
                yf[q + c] = t0
                yf[q + uc + c] = t1
                yf[q + c2 + c] = t2
                yf[q + c3 + c] = t3
            j += 4
    # Other strides and dilations, and the last outputs: nine taps per output, summed in registers.
    e1, e2 = np.uint64(d1 * c_in), np.uint64(2 * d1 * c_in)
    for jj in range(j, j_hi):
        v = np.uint64((jj * s1 - p1) * c_in)
        q = ys + np.uint64(jj * c_in)
        for c in range(uc):
            yf[q + c] = (xf[r0 + v + c] * wf[c] + xf[r0 + v + e1 + c] * wf[uc + c]
                         + xf[r0 + v + e2 + c] * wf[c2 + c] + xf[r1 + v + c] * wf[c3 + c]
                         + xf[r1 + v + e1 + c] * wf[c4 + c] + xf[r1 + v + e2 + c] * wf[c5 + c]
                         + xf[r2 + v + c] * wf[c6 + c] + xf[r2 + v + e1 + c] * wf[c7 + c]
                         + xf[r2 + v + e2 + c] * wf[c8 + c])


@njit(cache=True)
def _in_lanes(x, w, o, s1, d1):  # pragma: no cover - compiled
    """Whether depthwise_lanes' rows run the op: 3x3, one output per channel, unit column stride
    and dilation, at least a vector of channels."""
    return (w.shape[0] == 3 and w.shape[1] == 3 and o == x.shape[3] and s1 == 1 and d1 == 1
            and x.shape[3] >= lanes(x))


@njit(cache=True)
def _x_row(x, n, h, zero):  # pragma: no cover - compiled
    """Row h of image n of x, flattened, or the row of zeros where h is outside x (the padding)."""
    if h < 0 or h >= x.shape[1]:
        return zero
    return x[n, h].ravel()


# Chunks of the forward's row pairs the threads claim: runs of neighbouring rows, so each thread
# streams its own part of x and y and the rows it asks for ahead are its own next ones (two
# threads, 8 x 128 x 56 x 56 float32: 0.87 against 1.06 ms of CPU per call with chunks of 2 pairs).
PAIR_CHUNKS = 16


@njit(parallel=True, cache=True, fastmath={"contract"})
def _forward_lanes(x, w, p0, p1, s0, d0, y, stream):  # pragma: no cover - compiled
    """depthwise2d_forward by depthwise_lanes' rows: pairs of output rows where they share input
    rows (unit row stride and dilation), else rows, in chunks the threads claim; y's vectors
    streamed past the caches where ``stream`` and y allows it (``streams``). With 32-byte vectors
    (AVX2) by columns (``forward_cols``), only a pair's first row streamed, the second stored
    through the caches: 8 x 128 x 56 x 56 float32, one thread, loaded machine, 3.4 against 6.1 ms
    of CPU per call with the strips streamed (PyTorch channels_last 3.2-3.4 ms), both rows through
    the caches as before 1.0-1.06x. Below SERIAL_MACS multiply-adds on the calling thread
    (``depthwise_first``)."""
    n_, oh, _, c_in = y.shape
    w_in = x.shape[2]
    zero = np.zeros(w_in * c_in, dtype=x.dtype)
    wf = w.ravel()
    stream = stream and streams(y, c_in)
    step = 2 if s0 == 1 and d0 == 1 else 1
    per_image = -(-oh // step)
    tasks = n_ * per_image
    per = -(-tasks // PAIR_CHUNKS)
    chunks = -(-tasks // per)
    counter = np.zeros(1, dtype=np.int64)
    if y.size * 9 < SERIAL_MACS:  # on this thread
        _forward_lanes_tasks(x, wf, p0, p1, s0, d0, y, stream, zero, step, 0, tasks)
        sfence()
        return
    for _ in prange(chunks):
        k = _claim(counter)
        while k < chunks:
            end = min(tasks, (k + 1) * per)
            _forward_lanes_tasks(x, wf, p0, p1, s0, d0, y, stream, zero, step, k * per, end)
            k = _claim(counter)
        sfence()  # this thread's streamed rows are in memory before the loop ends


@njit(cache=True, fastmath={"contract"})
def _forward_lanes_tasks(x, wf, p0, p1, s0, d0, y, stream, zero, step, t0, t1):  # pragma: no cover - compiled
    """Tasks t0 <= t < t1 of ``_forward_lanes``: a pair of output rows each (``step`` 2), or a row."""
    oh, c_in, w_in = y.shape[1], y.shape[3], x.shape[2]
    per_image = -(-oh // step)
    for t in range(t0, t1):
        n, i = t // per_image, t % per_image * step
        h = i * s0 - p0
        ra, rb, rc = _x_row(x, n, h, zero), _x_row(x, n, h + d0, zero), _x_row(x, n, h + 2 * d0, zero)
        if VECTOR_BYTES == 32:  # AVX2: by columns (forward_cols), a pair's first row streamed
            two = step == 2 and i + 1 < oh
            forward_cols(ra, rb, rc, _x_row(x, n, h + 3, zero) if two else zero, wf, y[n, i].ravel(),
                         y[n, i + 1].ravel() if two else zero, two, w_in, p1, c_in, stream)
        elif step == 2 and i + 1 < oh:
            forward_pair(ra, rb, rc, _x_row(x, n, h + 3, zero), _x_row(x, n, h + 4, zero),
                         _x_row(x, n, h + 5, zero), wf, y[n, i].ravel(), y[n, i + 1].ravel(),
                         w_in, p1, c_in, stream)
        else:
            forward_row(ra, rb, rc, wf, y[n, i].ravel(), w_in, p1, c_in, stream)


@njit(parallel=True, cache=True, fastmath={"contract"})
def depthwise2d_forward(x, w, p0, p1, s0, s1, d0, d1, y, stream):  # pragma: no cover - compiled
    """y[n, i, j, c*M + q] = sum_{a,b} x[n, i*s0 + a*d0 - p0, j*s1 + b*d1 - p1, c] * w[a, b, c*M + q],
    taps outside x reading zeros (the padding, never materialised).

    3x3 kernels with one output per channel take a fast path inside the image (``_interior3x3``):
    the nine taps of an output are summed in registers and stored once, instead of nine
    read-modify-writes of y. The loops index flat arrays with unsigned offsets (a signed index
    carries a wraparound check; an int times a uint64 is a float in Numba). Where ``stream``, the
    vector rows (``_forward_lanes``) store y past the caches if its alignment allows.
    """
    n_, oh, ow, o = y.shape
    w_in, c_in = x.shape[2], x.shape[3]
    kh, kw = w.shape[0], w.shape[1]
    if _in_lanes(x, w, o, s1, d1):
        _forward_lanes(x, w, p0, p1, s0, d0, y, stream)
        return
    fast = kh == 3 and kw == 3 and o == c_in
    # Interior columns: all three taps inside the row.
    j_lo = min(ow, (p1 + s1 - 1) // s1)
    j_hi = max(j_lo, min(ow, ow_clip(w_in, 2 * d1 - p1, s1)))
    xf, wf, yf = x.ravel(), w.ravel(), y.ravel()
    # Rows in chunks that the threads claim (_claim): not an equal share each, which makes the
    # call wait for a thread another process keeps off its core.
    tasks = n_ * oh
    per = chunk_size(tasks)
    chunks = -(-tasks // per)
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(chunks):
        k = _claim(counter)
        while k < chunks:
            for idx in range(k * per, min(tasks, (k + 1) * per)):
                _forward_row(x, w, xf, wf, yf, y, idx, fast, j_lo, j_hi, p0, p1, s0, s1, d0, d1)
            k = _claim(counter)


@njit(cache=True, fastmath={"contract"})
def _forward_row(x, w, xf, wf, yf, y, idx, fast, j_lo, j_hi, p0, p1, s0, s1, d0, d1):  # pragma: no cover
    """Row ``idx`` (image idx // OH, row idx % OH) of depthwise2d_forward."""
    oh, ow, o = y.shape[1], y.shape[2], y.shape[3]
    h_in, w_in, c_in = x.shape[1], x.shape[2], x.shape[3]
    n = idx // oh
    i = idx % oh
    yrow = y[n, i]
    h = i * s0 - p0
    if not fast or h < 0 or h + 2 * d0 >= h_in:
        _depthwise_row(x, w, n, i, 0, ow, p0, p1, s0, s1, d0, d1, yrow)
        return
    _depthwise_row(x, w, n, i, 0, j_lo, p0, p1, s0, s1, d0, d1, yrow)
    _depthwise_row(x, w, n, i, j_hi, ow, p0, p1, s0, s1, d0, d1, yrow)
    r0 = np.uint64((n * h_in + h) * w_in * c_in)
    r1 = np.uint64((n * h_in + h + d0) * w_in * c_in)
    r2 = np.uint64((n * h_in + h + 2 * d0) * w_in * c_in)
    _interior3x3(xf, wf, yf, r0, r1, r2, np.uint64(idx * ow * o), j_lo, j_hi, p1, s1, d1, c_in)


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
    """Add the row (n, i) of dy's outputs [j_lo, j_hi) to out[a, b] tap by tap; a tap in the zero
    padding adds dy * 0 (as ``_pad_products``)."""
    h_in, w_in, c_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = out.shape[0], out.shape[1]
    mult = out.shape[2] // c_in
    for a in range(kh):
        h = i * s0 + a * d0 - p0
        inside = 0 <= h < h_in
        xrow = x[n, h if inside else 0]
        for b in range(kw):
            off = b * d1 - p1
            j0 = max(j_lo, 0 if off >= 0 else (-off + s1 - 1) // s1) if inside else j_hi
            j1 = max(j0, min(ow_clip(w_in, off, s1), j_hi))
            acc = out[a, b]
            for j in range(j_lo, j0):
                for o in range(c_in * mult):
                    acc[o] += grow[j, o] * 0
            for j in range(j1, j_hi):
                for o in range(c_in * mult):
                    acc[o] += grow[j, o] * 0
            for j in range(j0, j1):
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
def _filter_grad_lanes(x, dy, p0, p1, s0, d0, parts):  # pragma: no cover - compiled
    """depthwise2d_filter_grad by depthwise_lanes' rows: pairs of dy's rows where they share
    input rows (a lone last row paired with zeros), chunk p of the pairs summed into parts[p].
    With 32-byte vectors (AVX2) by columns (``filter_grad_cols``): the strips' window, nine sums
    and two rows of dy need 23 of the 16 registers (8 x 128 x 56 x 56 float32, one thread, CPU
    time, A/B in one process, loaded machine: 3.7 against 4.2 ms, 1 x 128 x 56 x 56: 0.29 against
    0.34 ms; PyTorch channels_last 7.9 / 0.33 ms). Below SERIAL_MACS multiply-adds on the calling
    thread, each chunk into its part as on the threads (the same bits)."""
    n_, oh, ow, c_in = dy.shape
    w_in = x.shape[2]
    zero = np.zeros(max(w_in, ow) * c_in, dtype=x.dtype)
    step = 2 if s0 == 1 and d0 == 1 else 1
    per_image = -(-oh // step)
    tasks = n_ * per_image
    chunks = parts.shape[0]
    per = -(-tasks // chunks)
    counter = np.zeros(1, dtype=np.int64)
    if dy.size * 9 < SERIAL_MACS:  # on this thread, chunk k into parts[k] as the threads would
        for k in range(chunks):
            end = min(tasks, (k + 1) * per)
            _fg_lanes_tasks(x, dy, p0, p1, s0, d0, zero, step, k * per, end, parts[k].ravel())
        return
    for _ in prange(chunks):
        k = _claim(counter)
        while k < chunks:
            end = min(tasks, (k + 1) * per)
            _fg_lanes_tasks(x, dy, p0, p1, s0, d0, zero, step, k * per, end, parts[k].ravel())
            k = _claim(counter)


@njit(cache=True, fastmath={"contract"})
def _fg_lanes_tasks(x, dy, p0, p1, s0, d0, zero, step, t0, t1, out):  # pragma: no cover - compiled
    """Tasks t0 <= t < t1 of ``_filter_grad_lanes`` summed into out: a pair of dy's rows each
    (``step`` 2), or a row."""
    n_, oh, c_in, w_in = dy.shape[0], dy.shape[1], dy.shape[3], x.shape[2]
    per_image = -(-oh // step)
    for t in range(t0, t1):
        n, i = t // per_image, t % per_image * step
        h = i * s0 - p0
        ra, rb, rc = _x_row(x, n, h, zero), _x_row(x, n, h + d0, zero), _x_row(x, n, h + 2 * d0, zero)
        # the rows the next task adds, asked for ahead
        ahead = h + 4 if step == 2 else h + s0 + d0
        pa, pb = _x_row(x, n, ahead, zero), _x_row(x, n, ahead + d0, zero)
        two = step == 2 and i + 1 < oh
        if two:
            rd, gb = _x_row(x, n, h + 3, zero), dy[n, i + 1].ravel()
        else:  # a lone row
            rd, gb = zero, zero
        m, nxt = (t + 1) // per_image, (t + 1) % per_image * step  # the next task's rows of dy
        if m == n_:
            m, nxt = 0, -2  # none: rows of zeros
        pg, ph = _x_row(dy, m, nxt, zero), _x_row(dy, m, nxt + 1, zero)
        if VECTOR_BYTES == 32:  # AVX2: by columns, the sums in out (filter_grad_cols)
            filter_grad_cols(ra, rb, rc, rd, dy[n, i].ravel(), gb, two, out, w_in, p1, c_in)
        else:
            filter_grad_pair(ra, rb, rc, rd, pa, pb, dy[n, i].ravel(), gb, pg, ph, two, out, w_in, p1, c_in)


@njit(parallel=True, cache=True, fastmath={"contract"})
def depthwise2d_filter_grad(x, dy, p0, p1, s0, s1, d0, d1, parts):  # pragma: no cover - compiled
    """parts[p, a, b, c*M + q] = sum over the rows of chunk p of x[n, i*s0 + a*d0 - p0, j*s1 + b*d1 - p1, c]
    * dy[n, i, j, c*M + q], taps outside x skipped (the padding); the caller sums the parts.

    The rows (n, i) of dy are cut into as many chunks as parts, which the threads claim
    (``_claim``); each chunk sums into its own part, so the result does not depend on which
    thread took which chunk.
    """
    n_, oh, ow, o = dy.shape
    h_in, w_in, c_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = parts.shape[1], parts.shape[2]
    if _in_lanes(x, parts[0], o, s1, d1):
        _filter_grad_lanes(x, dy, p0, p1, s0, d0, parts)
        return
    fast = kh == 3 and kw == 3 and o == c_in
    # Interior rows and columns: all three taps inside x.
    i_lo = min(oh, (p0 + s0 - 1) // s0)
    i_hi = max(i_lo, min(oh, ow_clip(h_in, 2 * d0 - p0, s0)))
    j_lo = min(ow, (p1 + s1 - 1) // s1)
    j_hi = max(j_lo, min(ow, ow_clip(w_in, 2 * d1 - p1, s1)))
    tasks = n_ * oh
    chunks = parts.shape[0]
    per = -(-tasks // chunks)
    counter = np.zeros(1, dtype=np.int64)
    for _ in prange(chunks):
        _wide_vectors()
        k = _claim(counter)
        while k < chunks:
            out = parts[k]
            for idx in range(k * per, min(tasks, (k + 1) * per)):
                n, i = idx // oh, idx % oh
                grow = dy[n, i]
                if not fast or i < i_lo or i >= i_hi:
                    _depthwise_fg_row(x, grow, n, i, 0, ow, p0, p1, s0, s1, d0, d1, out)
                else:  # the ends of an interior row, then its middle
                    _depthwise_fg_row(x, grow, n, i, 0, j_lo, p0, p1, s0, s1, d0, d1, out)
                    _depthwise_fg_row(x, grow, n, i, j_hi, ow, p0, p1, s0, s1, d0, d1, out)
                    _fg_interior32(x, dy, n, i, j_lo, j_hi, p0, p1, s0, s1, d0, d1, out)
            k = _claim(counter)


@njit(cache=True, fastmath={"contract"})
def _fg_interior32(x, dy, n, i, j_lo, j_hi, p0, p1, s0, s1, d0, d1, out):  # pragma: no cover - compiled
    """_depthwise_fg_interior in blocks of 32 channels where x is float32 (the nine sums take 18
    of the 32 vector registers; float64's would take 36), the channels after the last block by
    _depthwise_fg_interior: 0.81-0.86x the CPU time of blocks of 16 (8 x 128 x 56 x 56 and
    1 x 128 x 28 x 28, one thread, A/B in one process, loaded machine). Kept in one function: the
    same block in a helper called with the width as a constant took 1.1x longer on the smaller
    problem."""
    _wide_vectors()
    c_in = x.shape[3]
    wide = c_in - c_in % 32 if x.itemsize == 4 else 0
    t0 = _registers(32, out.dtype)
    t1 = _registers(32, out.dtype)
    t2 = _registers(32, out.dtype)
    t3 = _registers(32, out.dtype)
    t4 = _registers(32, out.dtype)
    t5 = _registers(32, out.dtype)
    t6 = _registers(32, out.dtype)
    t7 = _registers(32, out.dtype)
    t8 = _registers(32, out.dtype)
    h = i * s0 - p0
    grow = dy[n, i]
    x0, x1, x2 = x[n, h], x[n, h + d0], x[n, h + 2 * d0]
    for cb in range(0, wide, 32):
        for c in range(32):
            t0[c] = 0
            t1[c] = 0
            t2[c] = 0
            t3[c] = 0
            t4[c] = 0
            t5[c] = 0
            t6[c] = 0
            t7[c] = 0
            t8[c] = 0
        for j in range(j_lo, j_hi):
            v = j * s1 - p1
            g = grow[j, cb:cb + 32]
            a0, a1, a2 = x0[v, cb:cb + 32], x0[v + d1, cb:cb + 32], x0[v + 2 * d1, cb:cb + 32]
            b0, b1, b2 = x1[v, cb:cb + 32], x1[v + d1, cb:cb + 32], x1[v + 2 * d1, cb:cb + 32]
            e0, e1, e2 = x2[v, cb:cb + 32], x2[v + d1, cb:cb + 32], x2[v + 2 * d1, cb:cb + 32]
            for c in range(32):
                t0[c] += a0[c] * g[c]
                t1[c] += a1[c] * g[c]
                t2[c] += a2[c] * g[c]
                t3[c] += b0[c] * g[c]
                t4[c] += b1[c] * g[c]
                t5[c] += b2[c] * g[c]
                t6[c] += e0[c] * g[c]
                t7[c] += e1[c] * g[c]
                t8[c] += e2[c] * g[c]
        o0, o1, o2 = out[0, 0, cb:cb + 32], out[0, 1, cb:cb + 32], out[0, 2, cb:cb + 32]
        o3, o4, o5 = out[1, 0, cb:cb + 32], out[1, 1, cb:cb + 32], out[1, 2, cb:cb + 32]
        o6, o7, o8 = out[2, 0, cb:cb + 32], out[2, 1, cb:cb + 32], out[2, 2, cb:cb + 32]
        for c in range(32):
            o0[c] += t0[c]
            o1[c] += t1[c]
            o2[c] += t2[c]
            o3[c] += t3[c]
            o4[c] += t4[c]
            o5[c] += t5[c]
            o6[c] += t6[c]
            o7[c] += t7[c]
            o8[c] += t8[c]
    if wide < c_in:
        _depthwise_fg_interior(x, dy, n, i, j_lo, j_hi, p0, p1, s0, s1, d0, d1, out, wide)


@njit(cache=True, fastmath={"contract"})
def _depthwise_fg_interior(x, dy, n, i, j_lo, j_hi, p0, p1, s0, s1, d0, d1, out, c0):  # pragma: no cover
    """The 3x3 taps of image n's outputs [j_lo, j_hi) of row i, whose windows lie inside x, added
    to out (3, 3, C), channels c0 on.

    For each block of 16 channels the nine tap sums stay in registers along the row: per output,
    one load of dy and nine of x for nine multiply-adds, and no stores. A row at a time, not an
    image per channel block: the three rows of x it reads stay in the first-level cache across
    the blocks, where an image per block streamed x and dy from the last-level cache once per
    block (0.44x the time, 8 x 128 x 56 x 56, one thread).
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
    h = i * s0 - p0
    grow = dy[n, i]
    x0, x1, x2 = x[n, h], x[n, h + d0], x[n, h + 2 * d0]
    # Only whole blocks of 16 here: constant indices let LLVM keep the sums in registers (a
    # dynamic bound left them on the stack); the last channels are summed tap by tap below.
    full = c_in - (c_in - c0) % 16
    for cb in range(c0, full, 16):
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
        o0, o1, o2 = out[0, 0, cb:cb + 16], out[0, 1, cb:cb + 16], out[0, 2, cb:cb + 16]
        o3, o4, o5 = out[1, 0, cb:cb + 16], out[1, 1, cb:cb + 16], out[1, 2, cb:cb + 16]
        o6, o7, o8 = out[2, 0, cb:cb + 16], out[2, 1, cb:cb + 16], out[2, 2, cb:cb + 16]
        for c in range(16):
            o0[c] += t0[c]
            o1[c] += t1[c]
            o2[c] += t2[c]
            o3[c] += t3[c]
            o4[c] += t4[c]
            o5[c] += t5[c]
            o6[c] += t6[c]
            o7[c] += t7[c]
            o8[c] += t8[c]
    for j in range(j_lo, j_hi):
        v = j * s1 - p1
        for c in range(full, c_in):
            gc = grow[j, c]
            out[0, 0, c] += x0[v, c] * gc
            out[0, 1, c] += x0[v + d1, c] * gc
            out[0, 2, c] += x0[v + 2 * d1, c] * gc
            out[1, 0, c] += x1[v, c] * gc
            out[1, 1, c] += x1[v + d1, c] * gc
            out[1, 2, c] += x1[v + 2 * d1, c] * gc
            out[2, 0, c] += x2[v, c] * gc
            out[2, 1, c] += x2[v + d1, c] * gc
            out[2, 2, c] += x2[v + 2 * d1, c] * gc
