"""The passes around Gauss's trick (``convgrad._gauss``): a complex operand split into its real
part, imaginary part and their sum, padded and channels-last, in one read; the three real
results joined into the complex one, in the caller's layout, in one write.

Split apart (NumPy's ``a.real`` / ``a.imag`` copies and sum) and then padded and transposed by
the tiled engine on each of the three convs, and its result transposed back three times, these
passes took more time than the three convs (resnet_3x3 complex64, channels-first: 46 of 85 ms
CPU per forward). The complex array is read through element strides, so one kernel serves
both layouts; 8 channels go together, as in ``pad.pad_copy_first``.
"""

from __future__ import annotations

import numpy as np

from ._numba import njit, prange


@njit(cache=True, inline="always")
def _zero(pf, qf, sf, start, stop):  # pragma: no cover - compiled
    for u in range(start, stop):
        pf[u] = 0
        qf[u] = 0
        sf[u] = 0


@njit(parallel=True, cache=True)
def split_parts(z, strides, shape, lo, p, q, pq):  # pragma: no cover - compiled
    """p, q, pq[n, i, j, k, c] = Re, Im, Re + Im of z's sample (n, c, i - lo[0], j - lo[1],
    k - lo[2]) where it exists, else 0; a negative ``lo`` crops.

    z: a C-contiguous complex array viewed as its real pairs (``z.view(real dtype)``), of
    ``shape`` (N, C, D, H, W) read through its complex element ``strides`` in that order (so
    either layout); p, q, pq: C-contiguous channels-last real arrays (N, D', H', W', C).
    Returns how many samples have a part or their sum not finite (inf or NaN in a part, or a
    sum that overflows): Gauss's trick would spread those."""
    N, C, D, H, W = shape
    sn, sc, sd, sh, sw = strides
    OD, OH, OW = p.shape[1], p.shape[2], p.shape[3]
    k0, k1 = min(max(lo[2], 0), OW), min(max(lo[2] + W, 0), OW)
    zf, pf, qf, sf = z.ravel(), p.ravel(), q.ravel(), pq.ravel()
    uc, usc, usw = np.uint64(C), np.uint64(2 * sc), np.uint64(2 * sw)
    bad = 0
    for t in prange(N * OD * OH):
        n, i, j = t // (OD * OH), t // OH % OD, t % OH
        si, sj = i - lo[0], j - lo[1]
        row = np.uint64(t * OW * C)
        if si < 0 or si >= D or sj < 0 or sj >= H or k1 <= k0:
            _zero(pf, qf, sf, row, row + np.uint64(OW * C))
            continue
        _zero(pf, qf, sf, row, row + np.uint64(k0 * C))
        _zero(pf, qf, sf, row + np.uint64(k1 * C), row + np.uint64(OW * C))
        base = np.uint64(2 * (n * sn + si * sd + sj * sh + (k0 - lo[2]) * sw))
        dst0 = row + np.uint64(k0 * C)
        m = np.uint64(k1 - k0)
        rowbad = 0
        for c in range(C):
            src, dst = base + np.uint64(c) * usc, dst0 + np.uint64(c)
            for u in range(m):
                a, b = zf[src + u * usw], zf[src + u * usw + 1]
                s = a + b
                d = dst + u * uc
                pf[d] = a
                qf[d] = b
                sf[d] = s
                rowbad += not np.isfinite(s)  # inf or NaN in a part makes the sum so too
        bad += rowbad
    return bad


@njit(parallel=True, cache=True)
def join_parts(t1, t2, t3, z, strides):  # pragma: no cover - compiled
    """z's sample (n, o, i, j, k) = (t1 - t2) + i ((t3 - t1) - t2) at [n, i, j, k, o] of the
    C-contiguous channels-last real t1, t2, t3 (N, D, H, W, O): Gauss's trick's complex result,
    z viewed as its real pairs and written through its complex element ``strides`` (N, O, D,
    H, W order), so in either layout."""
    N, D, H, W, O = t1.shape
    sn, so, sd, sh, sw = strides
    f1, f2, f3, zf = t1.ravel(), t2.ravel(), t3.ravel(), z.ravel()
    uo, uso, usw = np.uint64(O), np.uint64(2 * so), np.uint64(2 * sw)
    for t in prange(N * D * H):
        n, i, j = t // (D * H), t // H % D, t % H
        row = np.uint64(t * W * O)
        base = np.uint64(2 * (n * sn + i * sd + j * sh))
        for o in range(O):
            src, dst = row + np.uint64(o), base + np.uint64(o) * uso
            for k in range(np.uint64(W)):
                s = src + k * uo
                a, b, c = f1[s], f2[s], f3[s]
                d = dst + k * usw
                zf[d] = a - b
                zf[d + 1] = (c - a) - b
