"""Strided convolutions split into s^d stride-1 convolutions, one per sub-pixel phase.

Along an axis with stride s and dilation d, output p reads padded input p*s + t*d. Group the
taps by the phase r = (t*d) mod s they land on: phase r reads only x_r = x_pad[r::s], with the
taps t0, t0 + s/g, ... (g = gcd(s, d)) spaced d/g apart, at stride 1. So a strided conv is the
sum over phases of stride-1 convs of the subsampled input with sub-kernels; its input gradient
fills each phase of dx with the stride-1 input gradient of its sub-conv (no zero-inserted dy),
and its filter gradient fills each sub-kernel with a stride-1 filter gradient. The stride-1
pieces go to whichever engine the planner finds cheapest for them.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import numpy as np

from .._engine import Op, Planner, Prepared, Refusal
from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from ._common import Phase, padded_zeros, phase_axes, plain, unpad
from ._machine import figures

# The cost model (figures in calibration.json): the pieces' own estimates and the copy of x's
# phases, times a fitted factor per op: the pieces read strided phases (copied before their GEMMs)
# and are small, so they run slower than their own estimates.


def _phase_geometry(geom: ConvGeometry, phases: tuple[Phase, ...]) -> ConvGeometry:
    return ConvGeometry(
        geom.batch, geom.in_channels, geom.out_channels, tuple(p.length for p in phases),
        tuple(p.taps for p in phases), (1,) * geom.rank, ((0, 0),) * geom.rank, (1,) * geom.rank,
        tuple(p.dilation for p in phases), geom.feature_group_count, 1,
    )


class Subpixel:
    name = "subpixel"
    nonfinite_skips = ()  # its pieces are plans, which keep the rule themselves

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        fig = figures("subpixel")
        why_not = "needs a stride > 1" if all(s == 1 for s in geom.stride) else plain(geom)
        if why_not:
            return Refusal(self.name, why_not)
        # The pieces are planned like any stride-1 conv, within the same budget.
        # Each piece: its window of the padded x (or dx), its taps of w, and its plan.
        pieces = [(_window(combo, geom.stride), tuple(p.kernel_taps for p in combo),
                   planner.plan(op, _phase_geometry(geom, combo), dtype, "auto", limit))
                  for combo in itertools.product(*phase_axes(geom))]
        padded = geom.batch * math.prod(geom.tight_padded) * geom.in_channels * dtype.itemsize
        seconds = sum(p.estimated_seconds for *_, p in pieces) + 2 * padded / fig.COPY_BYTES_PER_S
        workspace = padded + max(p.workspace_bytes for *_, p in pieces)
        run = {"forward": _forward, "input_grad": _input_grad, "filter_grad": _filter_grad}[op]
        return Prepared(self.name, seconds * fig.FITTED[op], workspace, partial(run, geom, pieces),
                        {"pieces": tuple(p.chosen.engine for *_, p in pieces)})


def _window(phases: tuple[Phase, ...], strides: tuple[int, ...]) -> tuple:
    return (slice(None), *(slice(p.start, p.start + (p.length - 1) * s + 1, s)
                           for p, s in zip(phases, strides)))


def _forward(geom: ConvGeometry, pieces: list, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    y = np.zeros((geom.batch, *geom.out_spatial, geom.out_channels), dtype=x.dtype)
    if y.size == 0:
        return y
    xp = pad_or_crop(x, geom.tight_padding)
    for window, taps, plan in pieces:
        y += plan(np.ascontiguousarray(xp[window]), np.ascontiguousarray(w[taps]))
    return y


def _input_grad(geom: ConvGeometry, pieces: list, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    dxp = padded_zeros(geom, dy.dtype)
    if dy.size:
        for window, taps, plan in pieces:  # phases are disjoint sample sets of dx: each is written once
            dxp[window] = plan(dy, np.ascontiguousarray(w[taps]))
    return unpad(dxp, geom)


def _filter_grad(geom: ConvGeometry, pieces: list, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    dw = np.zeros((*geom.kernel, geom.filter_in_channels, geom.out_channels), dtype=x.dtype)
    if dy.size == 0:
        return dw
    xp = pad_or_crop(x, geom.tight_padding)
    for window, taps, plan in pieces:
        dw[taps] = plan(np.ascontiguousarray(xp[window]), dy)
    return dw
