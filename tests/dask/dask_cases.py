"""Random convolutions with random chunkings for the blocked-vs-whole tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume
from hypothesis import strategies as st

import oracle
from strategies import DATA_FORMATS, PADDING_KINDS, channels, paddings, windows

pytest.importorskip("ml_dtypes")  # "bfloat16" names its dtype (numpy knows it once imported)

DTYPES = ("float64", "float32", "int64", "int32", "complex128", "complex64", "float16", "bfloat16")
# Tolerances, relative to the largest magnitude of the whole-array result: float64 blocks sum the
# same products in another order (the study's worst was 7.7e-15); float32 partials of the filter
# gradient are summed in float64 (the study: <= 3.1e-6), complex64 ones in complex128 (the same
# per component); integers are exact. float16 and bfloat16 are computed in float32 and rounded
# once, by the whole array and by each block alike (filter-gradient partials stay float32 and sum
# in float64): a float32 sum in another order can move a rounding by one ulp, 2**-10 and 2**-7 of
# the largest magnitude.
TOLERANCE = {"float64": 1e-12, "float32": 2e-5, "int64": 0, "int32": 0, "complex128": 1e-12,
             "complex64": 2e-5, "float16": 2.0**-10, "bfloat16": 2.0**-7}


@dataclass(frozen=True)
class Blocked:
    """A conv case (shapes and the core's keyword arguments), a dtype and chunkings of x and dy
    (batch and spatial axes; channels one chunk)."""

    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    kwargs: dict
    dtype: str
    x_chunks: tuple
    seed: int
    convention: str = "adjoint"  # of the gradients of complex operands

    def arrays(self, *shapes: tuple[int, ...]) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        if self.dtype.startswith("int"):
            return [rng.integers(-3, 4, s).astype(self.dtype) for s in shapes]
        if self.dtype.startswith("complex"):
            return [(rng.standard_normal(s) + 1j * rng.standard_normal(s)).astype(self.dtype) for s in shapes]
        return [rng.standard_normal(s).astype(np.dtype(self.dtype)) for s in shapes]

    @property
    def grad_kwargs(self) -> dict:
        """The keyword arguments of the gradients and vjps: ``kwargs`` and the convention."""
        return {**self.kwargs, "convention": self.convention}


def _cuts(draw, size: int) -> tuple[int, ...]:
    """1-8 pieces of ``size``: random boundaries, so chunks smaller than a halo and misaligned with
    the stride come up."""
    if size <= 1:
        return (size,)
    cuts = sorted(draw(st.sets(st.integers(1, size - 1), max_size=min(7, size - 1))))
    edges = [0, *cuts, size]
    return tuple(b - a for a, b in itertools.pairwise(edges))


def chunking(draw, shape: tuple[int, ...], fmt: str) -> tuple:
    """Chunks of an x or dy of ``shape``: batch and space cut at random, channels whole."""
    channel = 1 if fmt == "channels_first" else len(shape) - 1
    return tuple((n,) if a == channel else _cuts(draw, n) for a, n in enumerate(shape))


@st.composite
def blocked_cases(draw, ranks=(1, 2, 3), dtypes=DTYPES):
    """A conv of rank 1-3 (strides 1-4 with kernels shorter than the stride, dilations, every
    padding kind incl. negative, groups and depthwise, both layouts) on chunked arrays."""
    rank = draw(st.sampled_from(ranks))
    kernel, stride, dilation = draw(windows(rank, max_kernel=4 if rank < 3 else 3, max_stride=4,
                                            max_dilation=2))
    padding, minimum = draw(paddings(kernel, dilation, PADDING_KINDS))
    extra = {1: 14, 2: 9, 3: 5}[rank]
    spatial = tuple(m + draw(st.integers(0, extra)) for m in minimum)
    pairs = oracle.resolve_padding(padding, spatial, kernel, stride, dilation)
    assume(all(n + lo + hi >= oracle.k_eff(k, d)
               for n, (lo, hi), k, d in zip(spatial, pairs, kernel, dilation)))
    c, o, g = draw(channels())
    n = draw(st.integers(1, 3))
    fmt = draw(st.sampled_from(DATA_FORMATS))
    if fmt == "channels_first":
        x_shape, w_shape = (n, c, *spatial), (o, c // g, *kernel)
    else:
        x_shape, w_shape = (n, *spatial, c), (*kernel, c // g, o)
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": g, "data_format": fmt}
    return Blocked(x_shape, w_shape, kwargs, draw(st.sampled_from(dtypes)), chunking(draw, x_shape, fmt),
                   draw(st.integers(0, 2**31)), draw(st.sampled_from(("adjoint", "transpose"))))


def assert_close(got: np.ndarray, want: np.ndarray, dtype: str) -> None:
    """``got`` has ``want``'s shape and dtype, and its values within the dtype's tolerance."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    if TOLERANCE[dtype] == 0:
        np.testing.assert_array_equal(got, want)
        return
    wide = np.complex128 if want.dtype.kind == "c" else np.float64
    got, want = got.astype(wide), want.astype(wide)
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    err = float(np.max(np.abs(got - want), initial=0.0)) / scale
    assert err <= TOLERANCE[dtype], f"relative error {err:.3g} > {TOLERANCE[dtype]}"
