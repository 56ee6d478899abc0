"""Zero padding (or cropping) of a channels-last array in one parallel pass; the same from a
channels-first array (the transposition fused in), and the transposition back.

NumPy's copy into a bordered array runs on one thread at 5-10 GB/s; the tiled engine pads its
input on every call, and on two cores this loop took 0.52-0.57 of NumPy's time (a 56 x 56 x 64
batch of 8: 0.77 against 1.36 ms).
"""

from __future__ import annotations

import numpy as np

from ._numba import njit, prange
from ._shuffle import transpose8


@njit(parallel=True, cache=True)
def pad_copy(x, lo, out):  # pragma: no cover - compiled
    """out[n, i, j, k, c] = x[n, i - lo[0], j - lo[1], k - lo[2], c] where that sample exists
    (c < C), else 0: x (N, D, H, W, C) and out (N, D', H', W', C' >= C), both C-contiguous; a
    negative ``lo`` crops. 1-D and 2-D arrays come with unit leading spatial axes."""
    N, D, H, W, C = x.shape
    OD, OH, OW, OC = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    xf, of = x.ravel(), out.ravel()
    # The columns k of an output row that come from x: k - lo[2] in [0, W).
    k0, k1 = min(max(lo[2], 0), OW), min(max(lo[2] + W, 0), OW)
    for t in prange(N * OD * OH):
        n, i, j = t // (OD * OH), t // OH % OD, t % OH
        si, sj = i - lo[0], j - lo[1]
        row = t * OW * OC
        if si < 0 or si >= D or sj < 0 or sj >= H or k1 <= k0:
            of[row:row + OW * OC] = 0
            continue
        of[row:row + k0 * OC] = 0
        src = ((n * D + si) * H + sj) * W * C + (k0 - lo[2]) * C
        if OC == C:  # the whole inside of the row is one run
            of[row + k0 * C:row + k1 * C] = xf[src:src + (k1 - k0) * C]
        else:
            for k in range(k1 - k0):
                base = row + (k0 + k) * OC
                of[base:base + C] = xf[src + k * C:src + (k + 1) * C]
                of[base + C:base + OC] = 0
        of[row + k1 * OC:row + OW * OC] = 0


@njit(cache=True)
def transposed_run(a, src0, plane, C, m, b, dst0, step):  # pragma: no cover - compiled
    """b[dst0 + u * step + c] = a[src0 + c * plane + u] for u < m, c < C: a run of m samples of C
    channel planes ``plane`` apart (channels-first) written channels-last, blocks of 8 channels x
    8 samples transposed in registers (``_shuffle.transpose8``); unsigned offsets."""
    m8 = m // np.uint64(8) * np.uint64(8)
    c = 0
    while c + 8 <= C:
        s, d = src0 + np.uint64(c) * plane, dst0 + np.uint64(c)
        for u in range(np.uint64(0), m8, np.uint64(8)):
            transpose8(a, s + u, plane, b, d + u * step, step)
        for u in range(m8, m):
            q = d + u * step
            for cc in range(8):
                b[q + cc] = a[s + np.uint64(cc) * plane + u]
        c += 8
    for cc in range(c, C):
        s, d = src0 + np.uint64(cc) * plane, dst0 + np.uint64(cc)
        for u in range(m):
            b[d + u * step] = a[s + u]


@njit(parallel=True, cache=True)
def pad_copy_first(x, lo, out):  # pragma: no cover - compiled
    """pad_copy from a channels-first x (N, C, D, H, W): out[n, i, j, k, c] = x[n, c, i - lo[0],
    j - lo[1], k - lo[2]] where that sample exists (c < C), else 0; out (N, D', H', W', C' >= C)
    channels-last. The transposition rides on the padding pass the engine makes anyway: each
    output row reads C rows of x (a few KiB, in cache) and writes blocks of 8 channels x 8 samples
    transposed in registers (``_shuffle.transpose8``: 0.20 ms against 0.95 one value at a time,
    8 x 64 channels of 56 x 56, one thread; unsigned flat offsets: 0.65 ms against 1.64 with
    signed row views, before that)."""
    N, C, D, H, W = x.shape
    OD, OH, OW, OC = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    k0, k1 = min(max(lo[2], 0), OW), min(max(lo[2] + W, 0), OW)
    xf, of = x.ravel(), out.ravel()
    plane, uoc = np.uint64(D * H * W), np.uint64(OC)
    for t in prange(N * OD * OH):
        n, i, j = t // (OD * OH), t // OH % OD, t % OH
        si, sj = i - lo[0], j - lo[1]
        row = np.uint64(t * OW * OC)
        if si < 0 or si >= D or sj < 0 or sj >= H or k1 <= k0:
            for u in range(np.uint64(OW * OC)):
                of[row + u] = 0
            continue
        for u in range(np.uint64(k0 * OC)):
            of[row + u] = 0
        for u in range(np.uint64(k1 * OC), np.uint64(OW * OC)):
            of[row + u] = 0
        m, dst0 = np.uint64(k1 - k0), row + np.uint64(k0 * OC)
        src0 = np.uint64(((n * C * D + si) * H + sj) * W + k0 - lo[2])
        transposed_run(xf, src0, plane, C, m, of, dst0, uoc)
        if OC > C:  # the channels past C of each sample
            for u in range(m):
                q = dst0 + u * uoc
                for cc in range(np.uint64(C), uoc):
                    of[q + cc] = 0


@njit(parallel=True, cache=True)
def last_to_first(a, out):  # pragma: no cover - compiled
    """out (N, C, P) = a (N, P, C) transposed, both C-contiguous: blocks of 64 positions, 8
    channels of a position read together (one 32-byte run), written to 8 rows of out. NumPy's
    transposing copy took 1.6-3.6x as long on one thread (8 x 56 x 56 positions, 64 and 256
    channels; equal at 8 x 112 x 112 x 64, where both are bound by memory)."""
    N, P, C = a.shape
    af, of = a.ravel(), out.ravel()
    nb = -(-P // 64)
    uc, up = np.uint64(C), np.uint64(P)
    for t in prange(N * nb):
        n, p0 = t // nb, t % nb * 64
        m = np.uint64(min(64, P - p0))
        src0, dst0 = np.uint64((n * P + p0) * C), np.uint64(n * C * P + p0)
        c = 0
        while c + 8 <= C:
            s, d = src0 + np.uint64(c), dst0 + np.uint64(c) * up
            for u in range(m):
                q = s + u * uc
                of[d + u] = af[q]
                of[d + up + u] = af[q + 1]
                of[d + 2 * up + u] = af[q + 2]
                of[d + 3 * up + u] = af[q + 3]
                of[d + 4 * up + u] = af[q + 4]
                of[d + 5 * up + u] = af[q + 5]
                of[d + 6 * up + u] = af[q + 6]
                of[d + 7 * up + u] = af[q + 7]
            c += 8
        for cc in range(c, C):
            s, d = src0 + np.uint64(cc), dst0 + np.uint64(cc) * up
            for u in range(m):
                of[d + u] = af[s + u * uc]
