"""im2col packing and col2im scatter-adds in blocks of output rows. 3-D; 2-D convs come with a
unit leading spatial axis."""

from __future__ import annotations

from ._numba import njit


# The packing kernels run on the calling thread only: they alternate with multi-threaded BLAS
# calls, and two thread pools spinning against each other on two cores cost more than the
# parallel packing gains.
@njit(cache=True)
def im2col3d(xp, r0, od, oh, ow, s0, s1, s2, d0, d1, d2, kd, kh, kw, cols):  # pragma: no cover
    """cols[g, r, (a*kh + b)*kw + e, c] = xp[n, i*s0 + a*d0, j*s1 + b*d1, m*s2 + e*d2, g*Cg + c] for
    the flat output rows r0 + r = ((n * od + i) * oh + j) * ow + m of the block."""
    g_, rows, _, cg = cols.shape
    c_in = xp.shape[4]
    if g_ == 1 and d2 == 1:
        # One group, contiguous taps: each kernel row is one run of kw * C samples.
        flat = xp.reshape(xp.shape[0], xp.shape[1], xp.shape[2], xp.shape[3] * c_in)
        out = cols.reshape(rows, kd * kh * kw * c_in)
        run = kw * c_in
        for r in range(rows):
            q = r0 + r
            n = q // (od * oh * ow)
            i = (q // (oh * ow)) % od
            j = (q // ow) % oh
            v0 = (q % ow) * s2 * c_in
            for a in range(kd):
                for b in range(kh):
                    src = flat[n, i * s0 + a * d0, j * s1 + b * d1]
                    base = (a * kh + b) * run
                    for e in range(run):
                        out[r, base + e] = src[v0 + e]
        return
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
    """The adjoint of im2col3d: scatter-add the columns back into the padded dx."""
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
