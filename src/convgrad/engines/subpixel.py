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

import numpy as np

from .._geometry import ConvGeometry
from .._layout import pad_or_crop
from ._common import Phase, phase_axes, tight_padded

# Measured time / the estimate above: the pieces read strided phases of x (copied before their
# GEMMs) and are small, so they run slower than their own estimates (benchmarks/calibrate.py's two
# strided shapes, 2-core AVX-512 machine; all engines refit in one run, 2026-11-28).
FITTED = {"forward": 1.78, "input_grad": 0.86, "filter_grad": 1.55}


def _phase_geometry(geom: ConvGeometry, phases: tuple[Phase, ...]) -> ConvGeometry:
    return ConvGeometry(
        geom.batch, geom.in_channels, geom.out_channels, tuple(p.length for p in phases),
        tuple(p.taps for p in phases), (1,) * geom.rank, ((0, 0),) * geom.rank, (1,) * geom.rank,
        tuple(p.dilation for p in phases), geom.feature_group_count, 1,
    )


class Subpixel:
    name = "subpixel"

    def unsupported(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> str | None:
        if all(s == 1 for s in geom.stride):
            return "needs a stride > 1"
        if geom.batch_group_count != 1 or any(v != 1 for v in geom.lhs_dilation):
            return "needs batch_group_count == 1 and no input dilation"
        return None

    def _pieces(self, geom: ConvGeometry) -> list[tuple[tuple[Phase, ...], ConvGeometry]]:
        return [(combo, _phase_geometry(geom, combo)) for combo in itertools.product(*phase_axes(geom))]

    def _plans(self, geom: ConvGeometry, op: str, dtype: np.dtype, limit: int):  # type: ignore[no-untyped-def]
        from .._plan import make_plan  # the pieces are planned like any stride-1 conv

        return [(combo, make_plan(op, g, dtype, "auto", limit)) for combo, g in self._pieces(geom)]

    def cost(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> float:
        from .._plan import make_plan

        total = 0.0
        for _, g in self._pieces(geom):
            total += make_plan(op, g, dtype, "auto", 2**62).estimated_seconds
        moved = geom.batch * math.prod(tight_padded(geom)) * geom.in_channels * np.dtype(dtype).itemsize
        return (total + 2 * moved / 5e9) * FITTED[op]

    def workspace(self, geom: ConvGeometry, op: str, dtype: np.dtype, limit: int) -> int:
        item = np.dtype(dtype).itemsize
        padded = geom.batch * math.prod(tight_padded(geom)) * geom.in_channels * item
        return padded + max(p.workspace_bytes for _, p in self._plans(geom, op, dtype, limit))

    @staticmethod
    def _window(phases: tuple[Phase, ...], strides: tuple[int, ...]) -> tuple:
        return (slice(None), *(slice(p.start, p.start + (p.length - 1) * s + 1, s)
                               for p, s in zip(phases, strides)))

    @staticmethod
    def _taps(phases: tuple[Phase, ...]) -> tuple:
        return tuple(p.kernel_taps for p in phases)

    def forward(self, geom: ConvGeometry, x: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray:
        y = np.zeros((geom.batch, *geom.out_spatial, geom.out_channels), dtype=x.dtype)
        if y.size == 0:
            return y
        xp = pad_or_crop(x, geom.tight_padding)
        for combo, plan in self._plans(geom, "forward", x.dtype, limit):
            xr = xp[self._window(combo, geom.stride)]
            y += plan.engine.forward(plan.geometry, xr, w[self._taps(combo)], limit)
        return y

    def input_grad(self, geom: ConvGeometry, dy: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray:
        dxp = np.zeros((geom.batch, *tight_padded(geom), geom.in_channels), dtype=dy.dtype)
        if dy.size:
            for combo, plan in self._plans(geom, "input_grad", dy.dtype, limit):
                # Phases are disjoint sample sets of dx: each is written once.
                dxp[self._window(combo, geom.stride)] = plan.engine.input_grad(
                    plan.geometry, dy, w[self._taps(combo)], limit)
        return pad_or_crop(dxp, tuple((-lo, -hi) for lo, hi in geom.tight_padding))

    def filter_grad(self, geom: ConvGeometry, x: np.ndarray, dy: np.ndarray, limit: int) -> np.ndarray:
        dw = np.zeros((*geom.kernel, geom.filter_in_channels, geom.out_channels), dtype=x.dtype)
        if dy.size == 0:
            return dw
        xp = pad_or_crop(x, geom.tight_padding)
        for combo, plan in self._plans(geom, "filter_grad", x.dtype, limit):
            xr = xp[self._window(combo, geom.stride)]
            dw[self._taps(combo)] = plan.engine.filter_grad(plan.geometry, xr, dy, limit)
        return dw
