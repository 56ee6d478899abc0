"""A tiny, obviously correct reference for convolution, written from the definitions only.

Never imports convgrad and is never optimised. Everything is channels-first: x ``(N, C, *S)``,
w ``(O, C/G, *K)``, y ``(N, O, *out)``, any spatial rank. Arithmetic happens in the dtype of the
arrays passed in: float64 by default (``as_float``), or ``object`` holding Python ints for exact
integer checks (``as_exact``).

Three independent formulations, so that one cannot hide a mistake in another:

* ``conv_general``: gather. For each output channel and kernel offset, take the strided window
  of the dilated, padded input and contract it with one filter tap.
* ``conv_transpose``: scatter. For each input position and kernel offset, add the product into
  the output position it reaches; positions outside the output are dropped.
* ``input_grad`` / ``filter_grad``: the adjoint maps written as scatter (dx) and correlation
  (dw) loops, and ``jacobian`` to check all of the above against the dense matrix of the map.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def as_float(a):
    return np.array(a, dtype=np.float64)


def as_exact(a):
    """Integer array as an object array of Python ints: sums never overflow or round."""
    return np.array(a, dtype=np.int64).astype(object)


# --- layouts ------------------------------------------------------------------------------------
def x_to_first(x, data_format):
    """(N, *S, C) -> (N, C, *S) for channels_last; unchanged for channels_first."""
    return np.moveaxis(x, -1, 1) if data_format == "channels_last" else x


def x_from_first(x, data_format):
    return np.moveaxis(x, 1, -1) if data_format == "channels_last" else x


def w_to_first(w, data_format):
    """(*K, I, O) -> (O, I, *K) for channels_last; unchanged for channels_first."""
    if data_format != "channels_last":
        return w
    r = w.ndim - 2
    return w.transpose(r + 1, r, *range(r))


def w_from_first(w, data_format):
    if data_format != "channels_last":
        return w
    return w.transpose(*range(2, w.ndim), 1, 0)


# --- sizes and pads -----------------------------------------------------------------------------
def k_eff(k, d):
    return (k - 1) * d + 1


def per_dim(value, rank):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank


def resolve_padding(padding, spatial, kernel, stride, dilation):
    """Explicit (before, after) pads per spatial dim, from any accepted padding spelling.

    'same' is TF / ONNX SAME_UPPER for any stride: ceil(n / s) outputs, total pad
    max((ceil(n / s) - 1) * s + k_eff - n, 0), the odd sample at the end; 'same_lower' puts it at
    the start; 'full' pads k_eff - 1 on both sides; 'valid' pads nothing.
    """
    rank = len(kernel)
    stride, dilation = per_dim(stride, rank), per_dim(dilation, rank)
    if isinstance(padding, str):
        kind = padding.lower()
        pairs = []
        for n, k, s, d in zip(spatial, kernel, stride, dilation):
            ke = k_eff(k, d)
            if kind == "valid":
                pairs.append((0, 0))
            elif kind == "full":
                pairs.append((ke - 1, ke - 1))
            else:
                outputs = -(-n // s)
                total = max((outputs - 1) * s + ke - n, 0)
                small, big = total // 2, total - total // 2
                pairs.append((small, big) if kind == "same" else (big, small))
        return tuple(pairs)
    if isinstance(padding, int):
        return ((padding, padding),) * rank
    return tuple((p, p) if isinstance(p, int) else (p[0], p[1]) for p in padding)


def out_size(n, k, s, d, before, after):
    """Number of windows of the conv along one dim (n: size after any input dilation)."""
    return (n + before + after - k_eff(k, d)) // s + 1


# --- array helpers ------------------------------------------------------------------------------
def dilate(x, factors):
    """Insert factor - 1 zeros between samples of every spatial axis (axes 2...)."""
    shape = [*x.shape[:2], *((n - 1) * f + 1 if n else 0 for n, f in zip(x.shape[2:], factors))]
    out = np.zeros(shape, dtype=x.dtype)
    out[(slice(None), slice(None), *(slice(None, None, f) for f in factors))] = x
    return out


def pad_or_crop(x, pairs):
    """Pad (positive) or crop (negative) the spatial axes by (before, after) pairs, as JAX's
    lax.pad: sample i of the result is x's sample i - before where that exists, else zero, for
    i < n + before + after. A crop may reach past the input into the other side's padding."""
    for axis, (before, after) in enumerate(pairs, start=2):
        n = x.shape[axis]
        source = np.arange(n + before + after) - before
        inside = (source >= 0) & (source < n)
        shape = list(x.shape)
        shape[axis] = len(source)
        out = np.zeros(shape, dtype=x.dtype)
        index = (slice(None),) * axis + (np.flatnonzero(inside),)
        out[index] = np.take(x, source[inside], axis=axis)
        x = out
    return x


def _window(t, stride, dilation, out_spatial):
    """Index of the positions p * s + t * d, p < out, of every spatial axis."""
    return tuple(
        slice(ti * d, ti * d + (o - 1) * s + 1, s)
        for ti, s, d, o in zip(t, stride, dilation, out_spatial)
    )


# --- the three formulations ---------------------------------------------------------------------
def conv_general(x, w, stride=1, padding=0, lhs_dilation=1, rhs_dilation=1,
                 feature_group_count=1, batch_group_count=1):
    """y[n, o, p] = sum_{c, t} w[o, c, t] * xp[b(o) * N/B + n, g(o) * C/G + c, p * s + t * d].

    xp is x with lhs_dilation - 1 zeros between samples, then padded / cropped by ``padding``
    (explicit pairs, or an int or one int per dim). g(o) is o's feature group, b(o) its batch
    group; with batch groups w has all C input channels.
    """
    n_batch = x.shape[0]
    o_count, cw, *kernel = w.shape
    rank = len(kernel)
    stride, lhs, rhs = (per_dim(v, rank) for v in (stride, lhs_dilation, rhs_dilation))
    xd = dilate(x, lhs)
    xp = pad_or_crop(xd, resolve_padding(padding, xd.shape[2:], kernel, stride, rhs))
    out = tuple(
        (n - k_eff(k, d)) // s + 1 for n, k, d, s in zip(xp.shape[2:], kernel, rhs, stride)
    )
    fg, bg = feature_group_count, batch_group_count
    nb = n_batch // bg
    y = np.zeros((nb, o_count, *out), dtype=np.result_type(x, w))
    for o in range(o_count):
        g = o // (o_count // fg)
        b = o // (o_count // bg)
        rows = xp[b * nb:(b + 1) * nb, g * cw:(g + 1) * cw]
        for t in itertools.product(*(range(k) for k in kernel)):
            window = rows[(slice(None), slice(None), *_window(t, stride, rhs, out))]
            y[:, o] += np.tensordot(window, w[(o, slice(None), *t)], axes=([1], [0]))
    return y


def conv(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """The deep-learning conv (cross-correlation): conv_general without input dilation."""
    kernel = w.shape[2:]
    pairs = resolve_padding(padding, x.shape[2:], kernel, stride, dilation)
    y = conv_general(x, w, stride, pairs, 1, dilation, groups, 1)
    if bias is not None:
        y = y + np.asarray(bias).reshape((-1,) + (1,) * (y.ndim - 2))
    return y


def conv_transpose(x, w, stride, before, dilation, groups, out_spatial):
    """Scatter loop. x ``(N, O, *n)``, w ``(O, C/G, *K)`` (the forward conv's filter).

    Every x[n, o, p] times w[o, c, t] is added to y[n, g(o) * C/G + c, p * s + t * d - before];
    outputs outside [0, out_spatial) are dropped. Returns ``(N, C, *out_spatial)``.
    """
    n_batch, o_count, *n = x.shape
    _, cg, *kernel = w.shape
    rank = len(kernel)
    stride, dilation, before = (per_dim(v, rank) for v in (stride, dilation, before))
    og = o_count // groups
    y = np.zeros((n_batch, cg * groups, *out_spatial), dtype=np.result_type(x, w))
    for p in itertools.product(*(range(m) for m in n)):
        for t in itertools.product(*(range(k) for k in kernel)):
            q = tuple(pi * s + ti * d - b for pi, ti, s, d, b in zip(p, t, stride, dilation, before))
            if not all(0 <= qi < size for qi, size in zip(q, out_spatial)):
                continue
            for g in range(groups):
                src = x[(slice(None), slice(g * og, (g + 1) * og), *p)]  # (N, og)
                taps = w[(slice(g * og, (g + 1) * og), slice(None), *t)]  # (og, cg)
                y[(slice(None), slice(g * cg, (g + 1) * cg), *q)] += src @ taps
    return y


def input_grad(dy, w, x_shape, stride=1, padding=0, dilation=1, groups=1, lhs_dilation=1,
               batch_group_count=1):
    """Adjoint of ``conv_general`` in x, as a scatter: dy[n, o, p] * w[o, c, t] goes to the
    padded input sample it was read from; then the pads are undone and the dilation removed."""
    n_batch, c, *spatial = x_shape
    nb = n_batch // batch_group_count
    o_count, cg, *kernel = w.shape
    rank = len(kernel)
    stride, dilation, lhs = (per_dim(v, rank) for v in (stride, dilation, lhs_dilation))
    dilated = [(n - 1) * f + 1 if n else 0 for n, f in zip(spatial, lhs)]
    pairs = resolve_padding(padding, dilated, kernel, stride, dilation)
    padded = [n + lo + hi for n, (lo, hi) in zip(dilated, pairs)]
    out = dy.shape[2:]
    dxp = np.zeros((n_batch, c, *padded), dtype=np.result_type(dy, w))
    for o in range(o_count):
        g = o // (o_count // groups)
        b = o // (o_count // batch_group_count)
        rows = (slice(b * nb, (b + 1) * nb), slice(g * cg, (g + 1) * cg))
        for t in itertools.product(*(range(k) for k in kernel)):
            view = dxp[(*rows, *_window(t, stride, dilation, out))]
            tap = w[(o, slice(None), *t)].reshape((1, cg) + (1,) * rank)
            view += dy[:, o:o + 1] * tap
    dxd = pad_or_crop(dxp, [(-lo, -hi) for lo, hi in pairs])
    return dxd[(slice(None), slice(None), *(slice(None, None, f) for f in lhs))]


def filter_grad(x, dy, w_shape, stride=1, padding=0, dilation=1, groups=1, lhs_dilation=1,
                batch_group_count=1):
    """Adjoint of ``conv_general`` in w:
    dw[o, c, t] = sum_{n, p} dy[n, o, p] * xp[b(o) N/B + n, g(o) C/G + c, p s + t d]."""
    o_count, cg, *kernel = w_shape
    rank = len(kernel)
    stride, dilation = per_dim(stride, rank), per_dim(dilation, rank)
    xd = dilate(x, per_dim(lhs_dilation, rank))
    xp = pad_or_crop(xd, resolve_padding(padding, xd.shape[2:], kernel, stride, dilation))
    out = dy.shape[2:]
    nb = x.shape[0] // batch_group_count
    dw = np.zeros(tuple(w_shape), dtype=np.result_type(x, dy))
    spatial_axes = list(range(2, 2 + rank))
    for o in range(o_count):
        g = o // (o_count // groups)
        b = o // (o_count // batch_group_count)
        rows = (slice(b * nb, (b + 1) * nb), slice(g * cg, (g + 1) * cg))
        for t in itertools.product(*(range(k) for k in kernel)):
            window = xp[(*rows, *_window(t, stride, dilation, out))]
            dw[(o, slice(None), *t)] = np.tensordot(
                dy[:, o], window, axes=([0, *(a - 1 for a in spatial_axes)], [0, *spatial_axes])
            )
    return dw


def three_ops(x, w, dy, **kw):
    """(y, dx, dw) of the conv ``kw`` for channels-first x, w and dy: ``conv``, ``input_grad``
    and ``filter_grad`` above."""
    return conv(x, w, **kw), input_grad(dy, w, x.shape, **kw), filter_grad(x, dy, w.shape, **kw)


def bias_grad(dy):
    return dy.sum(axis=(0, *range(2, dy.ndim)))


# --- the transposed conv's output size ----------------------------------------------------------
def transpose_out_spatial(n, kernel, stride, padding, dilation, output_padding=0):
    """PyTorch / ONNX: (n - 1) s - before - after + k_eff + output_padding; 'same': n * s."""
    rank = len(kernel)
    stride, dilation, output_padding = (per_dim(v, rank) for v in (stride, dilation, output_padding))
    if isinstance(padding, str) and padding.lower() in ("same", "same_lower"):
        return tuple(ni * s for ni, s in zip(n, stride))
    pairs = resolve_padding(padding, (0,) * rank, kernel, stride, dilation)
    return tuple(
        (ni - 1) * s - lo - hi + k_eff(k, d) + op
        for ni, k, s, d, (lo, hi), op in zip(n, kernel, stride, dilation, pairs, output_padding)
    )


def transpose_size_range(n, kernel, stride, padding, dilation):
    """Per dim, the sizes [lo, hi] that the forward conv maps to n: the reachable output sizes."""
    rank = len(kernel)
    stride, dilation = per_dim(stride, rank), per_dim(dilation, rank)
    if isinstance(padding, str) and padding.lower() in ("same", "same_lower"):
        return tuple(((ni - 1) * s + 1, ni * s) for ni, s in zip(n, stride))
    pairs = resolve_padding(padding, (0,) * rank, kernel, stride, dilation)
    out = []
    for ni, k, s, d, (lo, hi) in zip(n, kernel, stride, dilation, pairs):
        first = (ni - 1) * s + k_eff(k, d) - lo - hi
        out.append((max(first, 0), first + s - 1))
    return tuple(out)


# --- the dense matrix of a linear map, for tiny sizes -------------------------------------------
def jacobian(f, in_shape):
    """Matrix J with f(v).ravel() == J @ v.ravel() for a linear f, column by column."""
    size = math.prod(in_shape)
    cols = []
    for i in range(size):
        e = np.zeros(size)
        e[i] = 1.0
        cols.append(np.asarray(f(e.reshape(in_shape)), dtype=np.float64).ravel())
    return np.stack(cols, axis=1) if cols else np.zeros((0, 0))
