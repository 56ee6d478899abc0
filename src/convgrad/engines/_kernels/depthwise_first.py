"""Depthwise 2-D convolutions on channels-first arrays, one plane at a time.

In NCHW a depthwise conv is a 2-D correlation of each (image, channel) plane with its own small
kernel: a plane (56 x 56 floats: 12.5 KiB) stays in the first-level cache while every tap walks
it, rows are contiguous so the loop along a row vectorises, and x and y are each streamed from
memory once. No transposition and no padded copy: taps outside the plane are skipped.

x ``(N, C, H, W)``, w ``(O, KH, KW)`` (O = C * M, output channel c*M + q reads input channel c),
y and dy ``(N, O, OH, OW)``; all C-contiguous. ``p0``, ``p1`` are the leading pads (negative:
cropped), ``s`` the strides, ``d`` the dilations.
"""

from __future__ import annotations

from ._numba import njit, prange


@njit(cache=True)
def _span(n_in, off, s, n_out):  # pragma: no cover - compiled
    """Outputs [j0, j1) whose sample j * s + off lies in [0, n_in)."""
    j0 = 0 if off >= 0 else (-off + s - 1) // s
    j1 = (n_in - off + s - 1) // s if n_in - off > 0 else 0
    return j0, max(j0, min(j1, n_out))


@njit(parallel=True, cache=True, fastmath={"contract"})
def depthwise2d_forward_first(x, w, p0, p1, s0, s1, d0, d1, y):  # pragma: no cover - compiled
    """y[n, o, i, j] = sum_{a,b} x[n, o // M, i*s0 + a*d0 - p0, j*s1 + b*d1 - p1] * w[o, a, b],
    taps outside x skipped; parallel over the (n, o) planes."""
    n_, o_, oh, ow = y.shape
    c_in, h_in, w_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = w.shape[1], w.shape[2]
    mult = o_ // c_in
    for t in prange(n_ * o_):
        n, o = t // o_, t % o_
        xp, yp = x[n, o // mult], y[n, o]
        for i in range(oh):
            yrow = yp[i]
            yrow[:] = 0
            for a in range(kh):
                h = i * s0 + a * d0 - p0
                if h < 0 or h >= h_in:
                    continue
                xrow = xp[h]
                for b in range(kw):
                    wv = w[o, a, b]
                    off = b * d1 - p1
                    j0, j1 = _span(w_in, off, s1, ow)
                    if s1 == 1:
                        for j in range(j0, j1):
                            yrow[j] += xrow[j + off] * wv
                    else:
                        for j in range(j0, j1):
                            yrow[j] += xrow[j * s1 + off] * wv


@njit(parallel=True, cache=True, fastmath={"contract"})
def depthwise2d_input_grad_first(dy, w, p0, p1, s0, s1, d0, d1, dx):  # pragma: no cover - compiled
    """The adjoint: dx[n, c, i*s0 + a*d0 - p0, j*s1 + b*d1 - p1] += dy[n, c*M + q, i, j] * w[c*M + q, a, b]
    where that sample is in dx; parallel over the (n, c) planes of dx, each written by one task."""
    n_, c_in, h_in, w_in = dx.shape
    o_, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    kh, kw = w.shape[1], w.shape[2]
    mult = o_ // c_in
    for t in prange(n_ * c_in):
        n, c = t // c_in, t % c_in
        dxp = dx[n, c]
        dxp[:, :] = 0
        for q in range(mult):
            o = c * mult + q
            gp = dy[n, o]
            for i in range(oh):
                grow = gp[i]
                for a in range(kh):
                    h = i * s0 + a * d0 - p0
                    if h < 0 or h >= h_in:
                        continue
                    dxrow = dxp[h]
                    for b in range(kw):
                        wv = w[o, a, b]
                        off = b * d1 - p1
                        j0, j1 = _span(w_in, off, s1, ow)
                        if s1 == 1:
                            for j in range(j0, j1):
                                dxrow[j + off] += grow[j] * wv
                        else:
                            for j in range(j0, j1):
                                dxrow[j * s1 + off] += grow[j] * wv


@njit(parallel=True, cache=True, fastmath={"contract", "reassoc"})
def depthwise2d_filter_grad_first(x, dy, p0, p1, s0, s1, d0, d1, dw):  # pragma: no cover - compiled
    """dw[o, a, b] = sum_{n,i,j} dy[n, o, i, j] * x[n, o // M, i*s0 + a*d0 - p0, j*s1 + b*d1 - p1],
    taps outside x skipped; parallel over o, each tap's sum along a row vectorised (reassociated)."""
    n_, o_, oh, ow = dy.shape
    c_in, h_in, w_in = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = dw.shape[1], dw.shape[2]
    mult = o_ // c_in
    for o in prange(o_):
        for a in range(kh):
            for b in range(kw):
                off = b * d1 - p1
                j0, j1 = _span(w_in, off, s1, ow)
                acc = dw.dtype.type(0)
                for n in range(n_):
                    xp, gp = x[n, o // mult], dy[n, o]
                    for i in range(oh):
                        h = i * s0 + a * d0 - p0
                        if h < 0 or h >= h_in:
                            continue
                        xrow, grow = xp[h], gp[i]
                        if s1 == 1:
                            for j in range(j0, j1):
                                acc += grow[j] * xrow[j + off]
                        else:
                            for j in range(j0, j1):
                                acc += grow[j] * xrow[j * s1 + off]
                dw[o, a, b] = acc
