"""The cost model's machine figures, as data: a calibration file per vector width beside this
module, ``calibration.json`` (AVX-512, 64-byte vectors) and ``calibration_avx2.json`` (32).

Per engine: rates (FLOP/s, bytes/s), seconds per call, and the factors fitted by
``benchmarks/calibrate.py`` (measured / estimated time, per op), with the date, machine and
versions they were measured with. The compiled register tiles differ with the width (AVX2 runs
the wide tiles as passes of 2 vectors), and so do their rates: the packaged file of this
machine's width (``_kernels._simd.VECTOR_BYTES``) is read at first use, ``DEFAULT_PATH``.
``benchmarks/calibrate.py --write`` measures them on this machine and writes a file;
``load_calibration(path)`` loads one without editing the source. The engines read
``figures(engine)`` each time they prepare an op, so a new calibration takes effect for every
plan made after it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

# The packaged calibration per vector width in bytes.
PACKAGED = {64: Path(__file__).with_name("calibration.json"),
            32: Path(__file__).with_name("calibration_avx2.json")}


def default_path() -> Path:
    """The packaged calibration of the width the compiled kernels use; without Numba (the NumPy
    fallbacks, no register tiles), or for a width or an install without a file of its own,
    AVX-512's."""
    from ._kernels._numba import NUMBA
    from ._kernels._simd import VECTOR_BYTES

    path = PACKAGED.get(VECTOR_BYTES) if NUMBA else None
    return path if path is not None and path.is_file() else PACKAGED[64]


def __getattr__(name: str) -> Path:
    """``DEFAULT_PATH``: ``default_path()``, looked up when read (importing this module does not
    load Numba to learn the width)."""
    if name == "DEFAULT_PATH":
        return default_path()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cpu() -> str:
    """The CPU as the figures depend on it: its model name, LLVM's name for its core and the width
    of the vectors the compiled kernels use (AVX-512's 64 bytes or AVX2's 32: the register tiles
    differ, and so do their rates)."""
    import platform

    from ._kernels._simd import VECTOR_BYTES

    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    try:
        from llvmlite import binding

        core = f"{binding.get_host_cpu_name()}, "
    except Exception:  # no llvmlite: the NumPy engines only
        core = ""
    return f"{name} ({core}{VECTOR_BYTES}-byte vectors)"


class Figures(SimpleNamespace):
    """One engine's figures as read-only attributes named like the constants."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"calibration figures are read-only (set {name} through load_calibration)")


@dataclass(frozen=True)
class MachineModel:
    """``engines[name]`` holds that engine's figures by constant name; ``provenance`` says where
    they come from (date, machine, versions)."""

    engines: Mapping[str, Figures]
    provenance: Mapping[str, object]


def _figure(value: object) -> object:
    """JSON objects keyed by integers (tile widths) get their int keys back; read-only."""
    if isinstance(value, dict):
        return MappingProxyType({int(k) if k.isdigit() else k: _figure(v) for k, v in value.items()})
    return value


def _read(path: Path) -> MachineModel:
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("engines"), dict):
        raise ValueError(f"calibration file {str(path)!r} has no 'engines' object")
    engines = {name: Figures(**{k: _figure(v) for k, v in figs.items()})
               for name, figs in doc["engines"].items()}
    return MachineModel(MappingProxyType(engines), MappingProxyType(doc.get("provenance", {})))


_MODEL: MachineModel | None = None


def model() -> MachineModel:
    """The machine model in use: the packaged calibration of this machine's vector width unless
    ``load_calibration`` loaded another."""
    global _MODEL
    if _MODEL is None:
        _MODEL = _read(default_path())
    return _MODEL


def figures(engine: str) -> Figures:
    """``engine``'s figures, as attributes named like the constants (``GEMM_FLOPS_PER_S``...)."""
    return model().engines[engine]


def load_calibration(path: str | Path | None = None) -> MachineModel:
    """Use the calibration file at ``path`` (None: the packaged one of this machine's vector width)
    for every plan made from now.

    The file must give every figure the packaged one gives, for every engine (a file written by
    ``benchmarks/calibrate.py --write`` does); planners forget the plans made before.
    """
    packaged_path = default_path()
    new = _read(packaged_path if path is None else Path(path))
    packaged = _read(packaged_path)
    for name, figs in packaged.engines.items():
        missing = sorted(set(vars(figs)) - set(vars(new.engines.get(name, SimpleNamespace()))))
        if missing:
            raise ValueError(f"calibration file {str(path)!r} lacks {name}'s figures {missing}")
    global _MODEL
    _MODEL = new
    return new
