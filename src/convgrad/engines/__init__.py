"""Algorithms for the convolution primitive, behind one interface.

Every engine works on canonical channels-last arrays: x ``(N, *S, C)``, w ``(*K, C/G, O)``,
y ``(N, *O_sp, O)``, for geometries without input dilation or batch groups (``conv_general``
reduces those first). An engine *prepares* an op for one (op, geometry, dtype, budget): it
refuses with its reason, or returns a ``Prepared`` that carries its estimate, its workspace,
the choices it made (block sizes, tiles, which axes are split) and a ``run(a, b)`` that never
re-derives them. The planner (``convgrad._plan``) keeps the cheapest unless the caller names one.

Importing this package loads no engine, no Numba and no SciPy FFT: the built-in engines are
registered on the first use of the registry.
"""

from __future__ import annotations

import threading

from .._engine import OPS, Engine, NonFinite, Op, Planner, Prepared, Refusal
from ._machine import MachineModel, load_calibration

__all__ = ["OPS", "Engine", "MachineModel", "NonFinite", "Op", "Planner", "Prepared", "Refusal",
           "engine_names", "get_engine", "load_calibration", "register_engine", "release_scratch", "warm_up"]
__dir__ = __all__.copy  # dir() lists the API only

_REGISTRY: dict[str, Engine] = {}
_BUILTIN_LOADED = False
# The first calls may come from several threads at once: the others wait for the built-in engines
# (a flag raised before they were registered sent them on with an empty registry).
_LOADING = threading.RLock()


def register_engine(engine: Engine, replace: bool = False) -> None:
    """Add ``engine`` under ``engine.name``; a name already registered needs ``replace=True``."""
    registry = _registry()
    if engine.name in registry and not replace:
        raise ValueError(f"an engine named {engine.name!r} is registered already (engines: "
                         f"{tuple(registry)}); pass replace=True to replace it")
    registry[engine.name] = engine


def get_engine(name: str) -> Engine:
    try:
        return _registry()[name]
    except KeyError:
        raise ValueError(f"unknown method={name!r}; expected 'auto' or one of {engine_names()}, "
                         f"or 'measure'") from None


def registered() -> tuple[Engine, ...]:
    """The registered engines, in registration order (a planner's plans hold while this is the same)."""
    return tuple(_registry().values())


def engine_names() -> tuple[str, ...]:
    """The names accepted by ``method=`` besides 'auto' and 'measure', in registration order."""
    return tuple(_registry())


def release_scratch() -> None:
    """Free the scratch memory the engines keep for this thread between calls (see _scratch)."""
    from . import _scratch

    _scratch.release()


def warm_up(dtypes: tuple[str, ...] = ("float32", "float64")) -> None:
    """Compile or load the compiled kernels now. Under the default JIT policy ('lazy', see
    ``convgrad.set_jit``) the planner charges them their load (or compile) time until then, so a
    one-off small conv stays on NumPy; plans made before keep their engine. Call this once at the
    start of a long job, or before timing.
    """
    from ._kernels import warm_up as kernels_warm_up

    kernels_warm_up(dtypes)


def _registry() -> dict[str, Engine]:
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return _REGISTRY
    with _LOADING:
        if _BUILTIN_LOADED:
            return _REGISTRY
        from .depthwise import Depthwise
        from .fft import FFT
        from .gather import Gather
        from .im2col import Im2col
        from .offset_gemm import OffsetGemm
        from .split_kernel import SplitKernel
        from .subpixel import Subpixel
        from .tiled import Tiled
        from .winograd import Winograd

        builtin = (Im2col(), OffsetGemm(), FFT(), Winograd(), Depthwise(), Subpixel(), SplitKernel(), Tiled(),
                   Gather())
        _REGISTRY.update({e.name: e for e in builtin})
        _BUILTIN_LOADED = True
    return _REGISTRY
