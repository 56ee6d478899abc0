"""The per-axis shape formulas. Each docstring is its formula; integer arithmetic only."""

from __future__ import annotations


def dilate_dim(n: int, d: int) -> int:
    """(n - 1) * d + 1, or 0 when n == 0: the size of n samples spread d apart."""
    return 0 if n == 0 else (n - 1) * d + 1


def stride_dim(n: int, k: int, s: int) -> int:
    """max(0, (n - k) // s + 1): windows of size k, s apart, that fit in n."""
    return max(0, (n - k) // s + 1)


def same_total_pad(n: int, k_eff: int, s: int) -> int:
    """max((ceil(n / s) - 1) * s + k_eff - n, 0): the total SAME pad (TF, ONNX, JAX)."""
    return max((-(-n // s) - 1) * s + k_eff - n, 0)


def transpose_size(o: int, k_eff: int, s: int, before: int, after: int, output_padding: int) -> int:
    """(o - 1) * s - before - after + k_eff + output_padding: the transposed-conv output size."""
    return (o - 1) * s - before - after + k_eff + output_padding


def tight_after(o: int, s: int, k_eff: int, n: int, before: int) -> int:
    """(o - 1) * s + k_eff - n - before: the after pad that ends the last of o windows on the last
    padded sample (samples past it are read by no window)."""
    return (o - 1) * s + k_eff - n - before
