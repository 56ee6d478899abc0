"""``warm_up`` compiles every signature the engines pass: after it, no first call on any engine,
op, layout or dtype compiles a kernel again. The planner costs a kernel with any signature for
the dtype as loaded, so a signature warm_up misses costs seconds of compiling at a call the
planner believed cheap (it happened twice: the one-pass Winograd's packed filter, the filter as
a view)."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("numba")

# Runs in a process of its own: in the suite's process earlier tests have compiled the
# signatures already, so the test could not fail there.
_AUDIT = """
import importlib, itertools, json, pkgutil
import numpy as np
import convgrad
import convgrad.engines._kernels as package
from convgrad.engines import warm_up

kernels = {}
for info in pkgutil.iter_modules(package.__path__):
    module = importlib.import_module(f"{package.__name__}.{info.name}")
    for name, obj in vars(module).items():
        if hasattr(obj, "signatures") and hasattr(obj, "py_func"):
            kernels[f"{info.name}.{name}"] = obj
warm_up()
seen = {name: set(map(str, k.signatures)) for name, k in kernels.items()}
rng = np.random.default_rng(0)
cases = [  # x (N, C, *S), w (O, C / groups, *K), the conv's keywords
    ((2, 16, 12, 12), (16, 16, 3, 3), dict(padding=1)),
    ((2, 16, 12, 12), (16, 16, 3, 3), dict(padding=1, stride=2)),
    ((2, 16, 12, 12), (16, 16, 3, 3), dict(padding=2, dilation=2)),
    ((2, 16, 12, 12), (16, 1, 3, 3), dict(padding=1, groups=16)),
    ((2, 16, 12, 12), (8, 16, 1, 1), dict()),
    ((2, 16, 96, 96), (8, 16, 1, 1), dict()),  # 18,432 positions: AVX2's channels-last 1x1 filter gradient
    ((2, 3, 20, 20), (16, 3, 7, 7), dict(padding=3, stride=2)),
    ((2, 8, 8, 8, 8), (8, 8, 3, 3, 3), dict(padding=1)),
    ((2, 8, 40), (8, 8, 15), dict(padding=7)),
]
added, calls = [], 0
for (xs, ws, kw), dtype, fmt, view in itertools.product(
        cases, ("float32", "float64"), ("channels_first", "channels_last"), (False, True)):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    if fmt == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        w = np.ascontiguousarray(np.transpose(w, tuple(range(2, w.ndim)) + (1, 0)))
    if view:  # the same values, strided as a caller's transposed arrays are
        x = np.ascontiguousarray(x.T).T
        w = np.ascontiguousarray(w.T).T
    for method in convgrad.engine_names():
        try:
            y = convgrad.conv(x, w, data_format=fmt, method=method, **kw)
            convgrad.conv_input_grad(y, w, x.shape, data_format=fmt, method=method, **kw)
            convgrad.conv_filter_grad(x, y, w.shape, data_format=fmt, method=method, **kw)
        except ValueError as e:  # an engine that cannot run this case says so; others may still
            if "cannot run" not in str(e):
                raise
        calls += 1
        for name, k in kernels.items():
            for sig in set(map(str, k.signatures)) - seen[name]:
                added.append([name, sig[:200], method, list(xs), dtype, fmt, view])
                seen[name].add(sig)
modes = itertools.product(("float32", "float64", "complex128"), ("channels_first", "channels_last"))
for dtype, fmt in modes:
    x, w = np.ones((2, 3, 12, 12), dtype), np.ones((4, 3, 3, 3), dtype)  # padmode's pad and fold
    if fmt == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        w = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2)))
    y = convgrad.conv(x, w, padding=1, padding_mode="reflect", data_format=fmt)
    convgrad.conv_input_grad(y, w, x.shape, padding=1, padding_mode="reflect", data_format=fmt)
    calls += 1
    for name, k in kernels.items():
        for sig in set(map(str, k.signatures)) - seen[name]:
            added.append([name, sig[:200], "reflect", [2, 3, 12, 12], dtype, fmt, False])
            seen[name].add(sig)
print(json.dumps({"kernels": len(kernels), "calls": calls, "added": added}))
"""


def test_no_kernel_compiles_after_warm_up():
    out = subprocess.run([sys.executable, "-c", _AUDIT], capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["kernels"] >= 20 and result["calls"] >= 300  # the audit saw the kernels and ran
    assert result["added"] == [], "\n".join(map(str, result["added"]))
