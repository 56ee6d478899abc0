"""bfloat16 against float32: convgrad's time for the suite's resnet_3x3, each op, one run.

Run: ``python benchmarks/bench_bfloat16.py [--calls 21] [--cases resnet_3x3]``. bfloat16 is
computed in float32: its extra cost is the casts in (bfloat16 -> float32) and out (float32 ->
bfloat16, round to nearest even). Both dtypes run on the same operand values (float32 copies of
the bfloat16 ones), back to back in interleaved rounds (``suite.steady``); the median is
reported, and the ratio bfloat16 / float32 (the issue's target: at most 1.3). PyTorch's
own bfloat16 / float32 ratio on the same shapes is printed beside it, for scale.
"""

from __future__ import annotations

import argparse
import statistics

import ml_dtypes
import numpy as np

import convgrad
from convgrad.cli.bench import suite

OPS = ("forward", "input_grad", "filter_grad")


def calls(case: suite.Case, dtype: np.dtype) -> dict:
    """The three ops of ``case`` on operands of ``dtype`` (same values for every dtype)."""
    g = case.geometry()
    rng = np.random.default_rng(0)
    x, w, dy = (rng.standard_normal(s).astype(ml_dtypes.bfloat16).astype(dtype)
                for s in (g.x_shape(), g.w_shape(), g.y_shape()))
    kw = case.kwargs
    return {"forward": lambda: convgrad.conv(x, w, **kw),
            "input_grad": lambda: convgrad.conv_input_grad(dy, w, x.shape, **kw),
            "filter_grad": lambda: convgrad.conv_filter_grad(x, dy, w.shape, **kw)}


def torch_calls(case: suite.Case, dtype: str) -> dict:
    import torch

    g = case.geometry()
    rng = np.random.default_rng(0)
    tdt = getattr(torch, dtype)
    x, w, dy = (torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(tdt)
                for s in (g.x_shape(), g.w_shape(), g.y_shape()))
    kw = {"stride": case.stride, "padding": case.pad, "dilation": case.dilation, "groups": case.groups}
    F, grad = torch.nn.functional, torch.nn.grad
    return {"forward": lambda: F.conv2d(x, w, **kw),
            "input_grad": lambda: grad.conv2d_input(x.shape, w, dy, **kw),
            "filter_grad": lambda: grad.conv2d_weight(x, w.shape, dy, **kw)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=21, help="timed calls per contestant and op")
    parser.add_argument("--cases", nargs="*", default=["resnet_3x3"])
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch's ratio")
    args = parser.parse_args()
    convgrad.engines.warm_up()
    by_name = {c.name: c for c in (*suite.CASES, *suite.EXTRA_CASES)}
    print(f"NumPy {np.__version__}, ml_dtypes {ml_dtypes.__version__}; median of {args.calls} back-to-back "
          f"calls per contestant in {suite.STEADY_ROUNDS} interleaved rounds\n")
    print("| case | op | float32 ms | bfloat16 ms | bfloat16 / float32 | torch bf16 / fp32 |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.cases:
        case = by_name[name]
        contestants = {"float32": calls(case, np.dtype(np.float32)),
                       "bfloat16": calls(case, np.dtype(ml_dtypes.bfloat16))}
        if not args.no_torch:
            contestants |= {"torch float32": torch_calls(case, "float32"),
                            "torch bfloat16": torch_calls(case, "bfloat16")}
        for op in OPS:
            times = suite.steady({k: fns[op] for k, fns in contestants.items()}, args.calls)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            torch_ratio = "-" if args.no_torch else f"{med['torch bfloat16'] / med['torch float32']:.2f}"
            print(f"| {name} | {op} | {med['float32']:.2f} | {med['bfloat16']:.2f} | "
                  f"{med['bfloat16'] / med['float32']:.2f} | {torch_ratio} |", flush=True)


if __name__ == "__main__":
    main()
