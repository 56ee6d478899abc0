"""Algorithms for the convolution primitive, behind one interface.

Every engine works on canonical channels-last arrays: x ``(N, *S, C)``, w ``(*K, C/G, O)``,
y ``(N, *O_sp, O)``, for geometries without input dilation or batch groups (``conv_general``
reduces those first). An engine says which geometries it supports and what they cost; the
planner picks the cheapest eligible one unless the caller names one.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .._geometry import ConvGeometry

OPS = ("forward", "input_grad", "filter_grad")


class Engine(Protocol):
    name: str

    def unsupported(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> str | None:
        """None when the engine can run ``op`` on ``geom``, else the reason it cannot."""

    def cost(self, geom: ConvGeometry, op: str, dtype: np.dtype) -> float:
        """Estimated seconds."""

    def workspace(self, geom: ConvGeometry, op: str, dtype: np.dtype, limit: int) -> int:
        """Bytes allocated beyond inputs and outputs; raises ValueError if it cannot fit ``limit``."""

    def forward(self, geom: ConvGeometry, x: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray: ...

    def input_grad(self, geom: ConvGeometry, dy: np.ndarray, w: np.ndarray, limit: int) -> np.ndarray: ...

    def filter_grad(self, geom: ConvGeometry, x: np.ndarray, dy: np.ndarray, limit: int) -> np.ndarray: ...


_REGISTRY: dict[str, Engine] = {}


def register_engine(engine: Engine) -> None:
    _REGISTRY[engine.name] = engine


def get_engine(name: str) -> Engine:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method={name!r}; expected 'auto' or one of {engine_names()}") from None


def engine_names() -> tuple[str, ...]:
    """The names accepted by ``method=`` besides 'auto', in registration order."""
    return tuple(_REGISTRY)


def release_scratch() -> None:
    """Free the scratch memory the engines keep for this thread between calls (see _scratch)."""
    from . import _scratch

    _scratch.release()


def warm_up(dtypes: tuple[str, ...] = ("float32", "float64")) -> None:
    """Compile or load the compiled kernels now. Until then the planner charges them their load
    (or compile) time, so a one-off small conv stays on NumPy; the third request for the same conv
    loads them by itself. Call this once before timing, or at the start of a long job.
    """
    from ._kernels import warm_up as kernels_warm_up

    kernels_warm_up(dtypes)


def _register_builtin() -> None:
    from .direct import Direct
    from .fft import FFT
    from .im2col import Im2col
    from .shifted import Shifted
    from .split import Split
    from .subpixel import Subpixel
    from .tiled import Tiled
    from .winograd import Winograd

    register_engine(Im2col())
    register_engine(Shifted())
    register_engine(FFT())
    register_engine(Winograd())
    register_engine(Direct())
    register_engine(Subpixel())
    register_engine(Split())
    register_engine(Tiled())


_register_builtin()
