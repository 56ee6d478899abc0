"""SciPy: ``scipy.signal.convolve`` and ``correlate``, one N-d signal at a time.

SciPy has no strides, dilations, channels or groups: the gradients are loops over channel
pairs of full convolutions (d_x) and valid correlations (d_w) of zero-inserted arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._common import (
    SCIPY_MODES,
    ModePad,
    PadFirst,
    call_routes,
    on_padded,
    pad_or_crop,
    padded_problem,
    scipy_pad,
    zero_insert,
)

if TYPE_CHECKING:
    from ..testing import Problem, Route

NAME, TITLE, PIP, IMPORTS = "scipy", "SciPy", "scipy", ("scipy",)
LAYOUT = "channels_first"
# The loops make one N-d correlation per (batch, in channel, out channel) triple.
MAX_PAIRS = 4096


def routes(p: Problem) -> list[Route]:
    """d_x and d_w as loops of ``scipy.signal`` calls (float16 runs in float32)."""
    import scipy.signal

    from ..testing import not_available

    g = p.geom
    cg, og = g.filter_in_channels, g.out_channels // g.feature_group_count
    pairs = g.batch * g.in_channels * og
    if pairs > MAX_PAIRS:
        why = f"{pairs} (batch, channel, filter) loops > {MAX_PAIRS}; too slow to be useful"
        return [not_available("d_x", "scipy.signal.convolve", why),
                not_available("d_w", "scipy.signal.correlate", why)]
    # SciPy has no float16 or bfloat16 kernels: they run in float32.
    up = np.float32 if p.dtype.name in ("float16", "bfloat16") else None
    cplx = p.dtype.kind == "c"

    def dx(x: np.ndarray, w: np.ndarray, b: object, dy: np.ndarray) -> np.ndarray:
        # d_x[n, c] = full convolution of the zero-inserted dy[n, o] with w[o, c], summed over o.
        dy = zero_insert(dy.astype(up or dy.dtype), g.stride, 2)
        w = zero_insert(w.astype(up or w.dtype), g.rhs_dilation, 2)
        full_len = [a + b - 1 for a, b in zip(dy.shape[2:], w.shape[2:])]
        full = np.zeros((g.batch, g.in_channels, *full_len), dtype=np.result_type(dy, w))
        for n in range(g.batch):
            for c in range(g.in_channels):
                grp, cl = divmod(c, cg)
                full[n, c] = sum(scipy.signal.convolve(dy[n, grp * og + j], w[grp * og + j, cl], "full",
                                                       method="direct") for j in range(og))
        # Read from the padded position `before` on (samples cropped by negative pads get none).
        crop = [(-lo, n + lo - f) for (lo, _), n, f in zip(g.padding, g.in_spatial, full_len)]
        return pad_or_crop(full, crop, 2).astype(x.dtype)

    def dw(x: np.ndarray, w: np.ndarray, b: object, dy: np.ndarray) -> np.ndarray:
        # d_w[o, c, t] = sum_n valid correlation of the padded x[n, c] with the zero-inserted
        # dy[n, o], read every `dilation` samples. correlate conjugates its second argument: dy
        # goes in conjugated, so that both routes compute the transpose A^T dy of a complex conv.
        xp = pad_or_crop(x.astype(up or x.dtype), g.padding, 2)
        dy = zero_insert(np.conj(dy) if cplx else dy.astype(up or dy.dtype), g.stride, 2)
        out = np.zeros(w.shape, dtype=np.result_type(xp, dy))
        take = tuple(slice(0, (k - 1) * d + 1, d) for k, d in zip(g.kernel, g.rhs_dilation))
        for o in range(g.out_channels):
            for cl in range(cg):
                c = o // og * cg + cl
                out[o, cl] = sum(scipy.signal.correlate(xp[n, c], dy[n, o], "valid", method="direct")[take]
                                 for n in range(g.batch))
        return out.astype(w.dtype)

    note = "zero-inserted dy, a loop over channels" + ("; run in float32" if up else "")
    return call_routes(PadFirst(g.padding, 2, False), note,
                       ("d_x", "scipy.signal.convolve(dy, w, 'full')", dx),
                       ("d_w", f"scipy.signal.correlate(x, {'dy.conj()' if cplx else 'dy'}, 'valid')", dw),
                       convention="transpose")  # convolve and correlate(x, dy.conj()) conjugate nothing


def mode_limit(mode: str) -> str:
    return "scipy.signal takes no padding mode"


def mode_routes(p: Problem) -> list[Route]:
    """The routes above on x extended by ``scipy.ndimage.map_coordinates`` in SciPy's name of the
    mode (NumPy's 'reflect' is its 'mirror', 'symmetric' its 'reflect'), d_x folded back."""
    mp = ModePad.build(scipy_pad(p.padding_mode, p.geom.padding), p.geom.in_spatial, 2 if p.fmt ==
                       "channels_first" else 1)
    return on_padded(p, mp, routes(padded_problem(p, mp)),
                     f"scipy.ndimage.map_coordinates(x, mode={SCIPY_MODES[p.padding_mode]!r})")
