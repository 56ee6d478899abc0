"""Winograd F(m, 3) input and output transforms, tile by tile."""

from __future__ import annotations

import numpy as np

from ._numba import njit, prange


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
