"""im2col packing and col2im scatter-adds, 2-D and 3-D, in blocks of output rows."""

from __future__ import annotations

from ._numba import njit


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
