"""complex64 convs: convgrad against PyTorch's complex64 CPU conv, forward and both gradients.

Run: ``python benchmarks/bench_complex.py [--calls 21] [--case resnet_3x3]``. PyTorch computes a
complex conv as three real convs (Gauss's trick); its gradients are timed as
``torch.autograd.grad`` on a kept graph, one operand requiring grad (the adjoint, as convgrad's).
convgrad's results are checked against PyTorch's first (relative error <= 1e-4). Calls run
back to back, as a loop makes them, in interleaved rounds (``suite.steady``, the suite's
headline); the median is reported. Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from datetime import date

import numpy as np
import scipy
import torch

import convgrad
from convgrad.cli.bench import suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=21, help="timed calls per contestant and op")
    parser.add_argument("--case", default="resnet_3x3", help="a case of convgrad's bench suite")
    args = parser.parse_args()
    case = next(c for c in suite.CASES if c.name == args.case)
    geom = case.geometry()
    # convgrad runs complex ops as three float32 convs where cheaper (Gauss's trick, as PyTorch):
    # its float32 kernels are loaded first, as bench_core.py's suite does.
    convgrad.engines.warm_up(("float32",))
    rng = np.random.default_rng(0)

    def crandn(shape):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)

    x, w = crandn(geom.x_shape("channels_first")), crandn(geom.w_shape("channels_first"))
    dy = crandn(geom.y_shape("channels_first"))
    kw = ckw = case.kwargs  # stride, padding, dilation, groups: ints both libraries read alike
    torch.set_grad_enabled(True)
    xt, wt, dyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)
    xg, wg = xt.clone().requires_grad_(True), wt.clone().requires_grad_(True)
    y_for_x = torch.nn.functional.conv2d(xg, wt, **kw)  # graphs kept for the timed backward passes
    y_for_w = torch.nn.functional.conv2d(xt, wg, **kw)
    ops = {
        "forward": (lambda: convgrad.conv(x, w, **ckw),
                    lambda: torch.nn.functional.conv2d(xt, wt, **kw)),
        "input_grad": (lambda: convgrad.conv_input_grad(dy, w, x.shape, **ckw),
                       lambda: torch.autograd.grad(y_for_x, xg, dyt, retain_graph=True)[0]),
        "filter_grad": (lambda: convgrad.conv_filter_grad(x, dy, w.shape, **ckw),
                        lambda: torch.autograd.grad(y_for_w, wg, dyt, retain_graph=True)[0]),
    }
    engines = {}
    for op, (ours, theirs) in ops.items():
        got, want = ours(), theirs().detach().numpy()
        err = float(np.abs(got - want).max() / np.abs(want).max())
        assert err <= 1e-4, (op, err)
        # the plan the call above made and kept (same geometry, dtype, method and budget)
        engines[op] = convgrad.make_plan(op, geom, np.complex64, "auto", convgrad.DEFAULT_WORKSPACE_BYTES
                                         ).chosen.engine
    # Calls back to back, as a loop makes them (the suite's steady state), interleaved rounds.
    times = {op: suite.steady({"convgrad": ours, "torch": theirs}, args.calls)
             for op, (ours, theirs) in ops.items()}
    print(f"Measured {date.today()} on {platform.machine()}, {torch.get_num_threads()} torch threads; "
          f"Python {platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}, "
          f"PyTorch {torch.__version__}, convgrad {convgrad.__version__}. complex64, {case.name} "
          f"({case.describe()}), median of {args.calls} back-to-back calls in "
          f"{suite.STEADY_ROUNDS} interleaved rounds.\n")
    print("| case | op | engine | convgrad ms | torch complex64 ms | convgrad / torch |")
    print("|---|---|---|---:|---:|---:|")
    for op, t in times.items():
        a, b = statistics.median(t["convgrad"]) * 1e3, statistics.median(t["torch"]) * 1e3
        print(f"| {case.name} | {op} | {engines[op]} | {a:.2f} | {b:.2f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
