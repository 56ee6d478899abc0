"""Small pieces every engine needs."""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import blas

from .._geometry import ConvGeometry


def tight_padded(geom: ConvGeometry) -> tuple[int, ...]:
    """Spatial size of x after the tight pads: exactly what the windows read."""
    return tuple(n + lo + hi for n, (lo, hi) in zip(geom.in_spatial, geom.tight_padding))


def group_dims(geom: ConvGeometry) -> tuple[int, int, int, int]:
    """(G, C/G, O/G, prod(K))."""
    g = geom.feature_group_count
    return g, geom.in_channels // g, geom.out_channels // g, math.prod(geom.kernel)


def gemm_for(dtype: np.dtype):  # type: ignore[no-untyped-def]
    """The BLAS gemm for a float dtype, or None (integers go through NumPy's exact loops)."""
    if dtype == np.float32:
        return blas.sgemm
    if dtype == np.float64:
        return blas.dgemm
    return None
