"""Requests of tens of GiB under an address-space limit: a fast, clear refusal, never a
MemoryError or a crash.

The requests run in a child process (``python tests/test_address_space.py``) that first imports
NumPy, convgrad and the fronts and runs one small conv per engine, so that Numba, LLVM and the
BLAS threads have reserved their address space (about 0.6 GiB of virtual memory, measured by
VmPeak in /proc/self/status); then it caps RLIMIT_AS at that peak plus HEADROOM (4 GiB: twice
the default 2 GiB workspace budget, so whatever the budget admits still fits, while any copy of
the requests below would not). TensorFlow, JAX and PyTorch themselves are not imported: the
fronts are NumPy code, and the frameworks reserve many GiB of address space at import.
Every request must raise ValueError with the budget's message within REFUSE_S; the child
reports each outcome as one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HEADROOM = 4 * 2**30
REFUSE_S = 1.0
BUDGET_MESSAGE = "more than the workspace budget"
GIB = 2**30


def _requests():
    """{name: call}: each asks for tens of GiB; operands are broadcast views (no memory)."""
    import numpy as np

    import convgrad
    from convgrad import jax as cjax
    from convgrad import onnx as conv_onnx
    from convgrad import scipy as cscipy
    from convgrad import tf as ctf
    from convgrad import torch as ctorch

    def big(shape, dtype=np.float64):
        return np.broadcast_to(np.ones((), dtype), shape)

    w3 = np.ones((1, 1, 3, 3))
    F, G = ctorch.nn.functional, ctorch.nn.grad
    return {
        # 2**20 images of 64 x 64: 32 GiB in, 28 GiB out
        "huge_batch": lambda: convgrad.conv(big((2**20, 1, 64, 64)), w3),
        # one 2**17 x 2**16 image: 64 GiB
        "huge_spatial": lambda: convgrad.conv(big((1, 1, 2**17, 2**16)), w3, padding=1),
        # 2**17 output channels of 512 x 512: 256 GiB of result
        "huge_channels": lambda: convgrad.conv(np.ones((1, 1, 512, 512)), big((2**17, 1, 1, 1))),
        "huge_channels_filter_grad": lambda: convgrad.conv_filter_grad(
            big((1, 2**17, 64, 64)), big((1, 2**17, 62, 62)), (3, 3)),
        # a transposed conv whose output is (2**17 * 2**16) samples: 64 GiB
        "huge_transposed_output": lambda: convgrad.conv_transpose(np.ones((1, 1, 4, 4)), w3,
                                                                  stride=(2**15, 2**14)),
        "huge_input_grad": lambda: convgrad.conv_input_grad(np.ones((1, 1, 2, 1)), w3, (2**17, 2**16),
                                                            stride=2**16),
        # input dilation 2**8 of a 1024 x 1024 image: 2**36 samples, 512 GiB
        "huge_lhs_dilation": lambda: convgrad.conv_general(big((1, 1, 1024, 1024)), w3, lhs_dilation=2**8),
        # the FFT engine asked for a 2**15 x 2**15 kernel over a 2**15 x 2**15 image
        "fft_huge_kernel": lambda: convgrad.conv(big((1, 1, 2**15, 2**15)), big((1, 1, 2**15, 2**15)),
                                                 method="fft"),
        "vjp_huge_cotangent": lambda: convgrad.conv_vjp(big((1, 1, 2**17, 2**16)), w3, padding=1),
        "prepared_huge": lambda: convgrad.prepare((2**20, 1, 64, 64), (1, 1, 3, 3))(
            big((2**20, 1, 64, 64)), w3),
        "bias_grad_huge": lambda: convgrad.conv_bias_grad(big((2**20, 4, 64, 64), np.float32)[:, :, ::-1]),
        "torch_conv_transpose2d": lambda: F.conv_transpose2d(np.ones((1, 1, 4, 4)), w3, stride=2**15),
        "torch_input_grad": lambda: G.conv2d_input((1, 1, 2**17, 2**16), w3, np.ones((1, 1, 2, 1)),
                                                   stride=2**16),
        "torch_pad": lambda: F.pad(np.ones((1, 1, 2, 2)), (2**16, 2**16, 2**16, 2**16)),
        "tf_backprop_input": lambda: ctf.nn.conv2d_backprop_input(
            (1, 2**17, 2**16, 1), np.ones((3, 3, 1, 1)), np.ones((1, 2, 2, 1)), [1, 2**16, 2**15, 1],
            "VALID"),
        "tf_bias_add": lambda: ctf.nn.bias_add(big((2**20, 64, 64, 8)), np.ones(8)),
        "jax_lhs_dilation": lambda: cjax.lax.conv_general_dilated(
            np.ones((1, 1, 1024, 1024)), w3, (1, 1), [(0, 0), (0, 0)], lhs_dilation=(2**8, 2**8)),
        "onnx_conv_transpose": lambda: conv_onnx.conv_transpose(np.ones((1, 1, 4, 4)), w3,
                                                                strides=[2**15, 2**14]),
        "scipy_convolve": lambda: cscipy.signal.convolve(big((2**17, 2**16)), big((2**10, 2**10))),
        "scipy_convolve2d_symm": lambda: cscipy.signal.convolve2d(big((2**17, 2**16)), np.ones((3, 3)),
                                                                  boundary="symm"),
    }


def _vm_peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmPeak:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmPeak in /proc/self/status")


def _child() -> None:
    """Warm up, cap the address space, then one JSON line per request."""
    import resource

    import numpy as np

    import convgrad

    os.environ.pop(convgrad.WORKSPACE_ENV, None)  # the default 2 GiB budget
    x, w = np.ones((1, 1, 8, 8)), np.ones((1, 1, 3, 3))
    for method in ("auto", *convgrad.engine_names()):
        try:
            convgrad.conv(x, w, method=method)
        except ValueError:  # an engine that cannot run this small conv
            pass
    requests = _requests()
    limit = _vm_peak() + HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    try:  # the control: the limit is real, an allocation past it fails
        np.empty(limit, np.uint8)
        control = "allocated"
    except MemoryError:
        control = "MemoryError"
    print(json.dumps({"limit": limit, "control": control}), flush=True)
    for name, call in requests.items():
        start = time.perf_counter()
        try:
            call()
            outcome, message = "ok", ""
        except BaseException as e:  # every kind is reported
            outcome, message = type(e).__name__, str(e)[:400]
        print(json.dumps({"name": name, "outcome": outcome, "message": message,
                          "s": time.perf_counter() - start}), flush=True)


@pytest.fixture(scope="module")
def child():
    src = str(Path(__import__("convgrad").__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=300, env=env)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, (f"the child ended with {proc.returncode}:\n{proc.stdout}\n"
                                  f"{proc.stderr[-3000:]}")
    head, rows = lines[0], {r["name"]: r for r in lines[1:]}
    print(f"\naddress-space limit {head['limit'] / GIB:.2f} GiB; slowest refusal "
          f"{max(r['s'] for r in rows.values()):.3f} s")
    return head, rows


@pytest.fixture(scope="module")
def control(child):
    return child[0]["control"]


@pytest.fixture(scope="module")
def refusals(child):
    return child[1]


def test_every_request_was_made(refusals):
    assert sorted(refusals) == sorted(_requests())


def test_the_limit_is_in_force(control):
    """Without it the test would prove nothing: a lone allocation of the limit's size fails."""
    assert control == "MemoryError"


@pytest.mark.parametrize("name", sorted(_requests()))
def test_refused_fast_and_clearly(refusals, name):
    r = refusals[name]
    assert r["outcome"] == "ValueError" and BUDGET_MESSAGE in r["message"], r
    assert r["s"] < REFUSE_S, r


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    _child()
