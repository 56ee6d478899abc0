"""The core's ops never compute a dask array into the caller: they route it to convgrad.dask
(a lazy result, no compute) once that is imported, and refuse naming it otherwise; dask arrays
are recognised without importing dask."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": SRC, "PATH": ""})


def test_conv_on_a_dask_array_routes_to_convgrad_dask_and_computes_nothing():
    da = pytest.importorskip("dask.array")
    from dask.array.core import PerformanceWarning
    from dask.callbacks import Callback

    import convgrad
    import convgrad.dask  # routing is on once it is imported

    rng = np.random.default_rng(0)
    x, w, dy = rng.standard_normal((2, 3, 12, 10)), rng.standard_normal((4, 3, 3, 3)), None
    starts = []
    with Callback(start=lambda dsk: starts.append(1)):
        y = convgrad.conv(da.from_array(x, chunks=(1, 3, 5, 5)), w, padding="same", stride=2)
        dy = rng.standard_normal(y.shape)
        with pytest.warns(PerformanceWarning, match="dy's channel axis 1 has chunks .*rechunking it"):
            dx = convgrad.conv_input_grad(da.from_array(dy, chunks=2), w, x.shape, padding="same", stride=2)
        dw = convgrad.conv_filter_grad(x, da.from_array(dy, chunks=(1, 4, 3, 3)), w.shape, padding="same",
                                       stride=2)
    assert starts == []  # nothing computed by building the graphs
    assert all(isinstance(a, da.Array) for a in (y, dx, dw))
    np.testing.assert_allclose(y.compute(), convgrad.conv(x, w, padding="same", stride=2), rtol=0, atol=1e-12)
    want = convgrad.conv_input_grad(dy, w, x.shape, padding="same", stride=2)
    np.testing.assert_allclose(dx.compute(), want, rtol=0, atol=1e-12)
    want = convgrad.conv_filter_grad(x, dy, w.shape, padding="same", stride=2)
    np.testing.assert_allclose(dw.compute(), want, rtol=0, atol=1e-12)


def test_ops_without_a_blocked_version_refuse_dask_arrays():
    da = pytest.importorskip("dask.array")
    import convgrad
    import convgrad.dask

    with pytest.raises(TypeError, match=r"convgrad.conv_input_grad_vjp got a dask array \(dy\).*no blocked"):
        convgrad.conv_input_grad_vjp(da.ones((1, 1, 4), chunks=2), np.ones((1, 1, 3)), (6,))


def test_before_convgrad_dask_is_imported_the_core_refuses_naming_it():
    pytest.importorskip("dask.array")
    done = _run("""
        import numpy as np, dask.array as da, convgrad
        from dask.callbacks import Callback
        starts = []
        with Callback(start=lambda dsk: starts.append(1)):
            try:
                convgrad.conv(da.ones((1, 1, 8), chunks=4), np.ones((1, 1, 3)))
            except TypeError as e:
                print(e)
        print("computes", len(starts))
    """)
    assert done.returncode == 0, done.stderr
    assert "use convgrad.dask.conv" in done.stdout and "import convgrad.dask" in done.stdout
    assert "computes 0" in done.stdout


def test_dask_arrays_are_recognised_without_dask_installed():
    # dask hidden: a stand-in whose type claims dask's module and graph protocol, and that fails
    # loudly if anything tries to turn it into a NumPy array.
    done = _run("""
        import sys
        sys.modules["dask"] = None
        import numpy as np, convgrad
        Fake = type("Array", (), {"__module__": "dask.array.core", "__dask_graph__": lambda self: {},
                                  "__array__": lambda self, *a, **k: 1 / 0, "shape": (1, 1, 8)})
        for call in (lambda: convgrad.conv(Fake(), np.ones((1, 1, 3))),
                     lambda: convgrad.conv_bias_grad(Fake()),
                     lambda: convgrad.conv_transpose(np.ones((1, 1, 4)), np.ones((1, 1, 3)), bias=Fake())):
            try:
                call()
            except TypeError as e:
                print("refused:", e)
        print(convgrad.conv(np.ones((1, 1, 4)), np.ones((1, 1, 3))).ravel())
        print("dask loaded:", any(m.startswith("dask") and sys.modules[m] for m in sys.modules))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("refused: convgrad.") == 3, done.stdout
    assert "(bias)" in done.stdout and "convgrad.dask.conv_transpose" in done.stdout
    assert "[3. 3.]" in done.stdout and "dask loaded: False" in done.stdout


def test_the_ops_convgrad_dask_does_not_block_refuse_dask_arrays_without_computing_them():
    """conv_general, prepared convs and the fronts called np.asarray on a dask array: they
    computed all of it in the caller's process. Every array now enters through a check."""
    da = pytest.importorskip("dask.array")
    from dask.callbacks import Callback

    import convgrad
    import convgrad.dask  # routing on: these ops still have no blocked form
    from convgrad.torch.nn import functional as F

    x, w = np.ones((1, 2, 8, 8)), np.ones((3, 2, 3, 3))
    lazy_x = da.from_array(x, chunks=4)
    calls = {
        "conv_general": lambda: convgrad.conv_general(lazy_x, w, lhs_dilation=2),
        "conv_general_vjp": lambda: convgrad.conv_general_vjp(lazy_x, w),
        "prepared conv": lambda: convgrad.prepare(x.shape, w.shape)(lazy_x, w),
        "torch front": lambda: F.conv2d(lazy_x, w),
    }
    starts = []
    with Callback(start=lambda dsk: starts.append(1)):
        for label, call in calls.items():
            with pytest.raises(TypeError, match="is a dask array, which this function would compute whole"):
                call()
            assert starts == [], f"{label} computed a dask array"


def test_conv_jvp_on_dask_tangents_routes_and_computes_nothing():
    da = pytest.importorskip("dask.array")
    from dask.callbacks import Callback

    import convgrad
    import convgrad.dask  # routing on

    rng = np.random.default_rng(5)
    x, w, tx, tw = (rng.standard_normal(s) for s in ((1, 2, 9, 8), (3, 2, 3, 3), (1, 2, 9, 8), (3, 2, 3, 3)))
    starts = []
    with Callback(start=lambda dsk: starts.append(1)):
        _, y_dot = convgrad.conv_jvp(x, w, da.from_array(tx, chunks=(1, 2, 4, 5)), tw, padding="same")
    assert starts == [] and isinstance(y_dot, da.Array)
    want = convgrad.conv_jvp(x, w, tx, tw, padding="same")
    np.testing.assert_allclose(y_dot.compute(), want[1], rtol=0, atol=1e-12)
