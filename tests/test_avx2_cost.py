"""The cost model's calibration per vector width: the packaged file of the width the compiled
kernels use (calibration.json for AVX-512's 64-byte vectors, calibration_avx2.json for AVX2's 32),
AVX-512's without Numba; both files give the same figures, and the AVX2 file's figures that were
not measured on an AVX2 machine are AVX-512's, as its provenance says."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

import convgrad
from convgrad import _plan
from convgrad.engines import _machine
from convgrad.engines._kernels import _numba, _simd


def _doc(width: int) -> dict:
    return json.loads(_machine.PACKAGED[width].read_text())


def _shape(value: object) -> object:
    """The keys of a figure, nested (rates per block, factors per op), without the values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return type(value) in (int, float)


@pytest.fixture
def fresh_model(monkeypatch):
    """The model read anew, and the default planner's plans forgotten; both restored after."""
    monkeypatch.setattr(_machine, "_MODEL", None)
    monkeypatch.setattr(_plan, "_DEFAULT", _plan.Planner())


@pytest.mark.parametrize("width", [32, 64])
def test_the_model_reads_the_file_of_the_kernels_vector_width(monkeypatch, fresh_model, width):
    monkeypatch.setattr(_simd, "VECTOR_BYTES", width)
    monkeypatch.setattr(_numba, "NUMBA", True)
    assert _machine.DEFAULT_PATH == _machine.default_path() == _machine.PACKAGED[width]
    doc = _doc(width)
    model = _machine.model()
    assert dict(model.provenance)["machine"] == doc["provenance"]["machine"]
    rates = doc["engines"]["tiled"]["FLOPS_PER_S"]
    assert dict(_machine.figures("tiled").FLOPS_PER_S) == {int(k): v for k, v in rates.items()}


def test_without_numba_the_model_reads_avx512s_file(monkeypatch, fresh_model):
    """The NumPy fallbacks run no register tiles: the packaged default, whatever the CPU."""
    monkeypatch.setattr(_simd, "VECTOR_BYTES", 32)
    monkeypatch.setattr(_numba, "NUMBA", False)
    assert _machine.default_path() == _machine.PACKAGED[64]
    assert _machine.model().provenance["machine"] == _doc(64)["provenance"]["machine"]


def test_both_files_give_every_figure():
    """Every engine's every figure, rates per block and factors per op included, in both files
    (load_calibration refuses a file lacking one the packaged file gives), all numbers."""
    avx512, avx2 = _doc(64)["engines"], _doc(32)["engines"]
    assert _shape(avx2) == _shape(avx512)
    assert all(v is True for figs in _shape(avx2).values() for v in _leaves(figs))


def _leaves(shape: object):
    if isinstance(shape, dict):
        for v in shape.values():
            yield from _leaves(v)
    else:
        yield shape


def test_the_figures_not_measured_on_avx2_are_avx512s():
    """The AVX2 file's provenance names the figures measured on an AVX2 machine per engine; every
    other figure is AVX-512's, unchanged."""
    doc = _doc(32)
    measured = doc["provenance"].get("measured")
    if measured is None:  # a file benchmarks/calibrate.py --write refitted: its own provenance
        pytest.skip("the AVX2 file was rewritten by calibrate.py; it names no measured figures")
    avx512 = _doc(64)["engines"]
    assert measured and all(k in avx512[e] for e, ks in measured.items() for k in ks)
    for engine, figs in doc["engines"].items():
        for key, value in figs.items():
            if key not in measured.get(engine, ()):
                assert value == avx512[engine][key], (engine, key)
    assert doc["engines"]["tiled"]["FLOPS_PER_S"] != avx512["tiled"]["FLOPS_PER_S"]


@pytest.mark.parametrize("width", [32, 64])
def test_load_calibration_loads_either_file_by_path(monkeypatch, fresh_model, width):
    """load_calibration(path) on any machine: either packaged file is complete against this
    machine's, and its figures are the ones planned with; load_calibration() goes back."""
    model = convgrad.engines.load_calibration(_machine.PACKAGED[width])
    assert _machine.model() is model
    assert model.provenance["machine"] == _doc(width)["provenance"]["machine"]
    back = convgrad.engines.load_calibration()
    here = json.loads(_machine.default_path().read_text())
    assert back.provenance["machine"] == here["provenance"]["machine"]


def test_every_packaged_calibration_is_package_data():
    """An installed wheel carries each packaged file: pyproject's package-data globs match them all
    (a file left out would silently fall back to AVX-512's figures on an AVX2 machine)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(convgrad.__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not a source checkout")
    globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["convgrad"]
    package = Path(convgrad.__file__).resolve().parent
    for path in _machine.PACKAGED.values():
        rel = path.resolve().relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), (rel, globs)
