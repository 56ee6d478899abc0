"""``assert_conv_matches``: a user's conv (or its gradient), called as a framework calls it, against
convgrad on random geometries, reporting the first mismatch with the call that shows it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._tolerance import tolerance


def _mismatch(got: object, want: np.ndarray, rtol: float) -> str | None:
    """Why ``got`` is not ``want`` (shape, or max |got - want| over max |want| above rtol)."""
    a = np.asarray(got)
    if a.shape != want.shape:
        return f"shape {a.shape}, convgrad's {want.shape}"
    if a.size == 0:
        return None
    diff = np.abs(a.astype(np.float64) - want.astype(np.float64))
    err = float(diff.max()) if np.all(np.isfinite(diff)) else np.inf
    scale = float(np.abs(want.astype(np.float64)).max())
    if err <= rtol * scale or err == 0:
        return None
    at = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(diff), diff, np.inf))), a.shape)
    return (f"max |difference| {err:.3g} (relative {err / scale if scale else np.inf:.3g} > rtol {rtol:g}) "
            f"at index {tuple(int(i) for i in at)}: got {a[at]!r}, convgrad {want[at]!r}")


def assert_conv_matches(
    fn: Callable, convention: str = "torch", op: str = "conv", *, ranks: tuple[int, ...] | None = None,
    max_examples: int = 100, rtol: float | None = None, dtype: object = np.float64,
) -> int:
    """Drive ``fn`` over random geometries in ``convention``'s spelling and compare with convgrad.

    ``fn`` is called as the framework's own function is, on NumPy arrays, and returns anything
    ``np.asarray`` takes:

    * 'torch': ``fn(input, weight, stride=, padding=, dilation=, groups=)`` (``F.convNd``);
      gradients ``fn(input_size, weight, grad_output, ...)`` and ``fn(input, weight_size,
      grad_output, ...)`` (``torch.nn.grad.convNd_input`` / ``_weight``).
    * 'tf': ``fn(input, filters, strides=, padding=, dilations=)`` (``tf.nn.convolution``,
      channels-last); 2-D gradients ``fn(input_sizes, filters, out_backprop, ...)`` and ``fn(input,
      filter_sizes, out_backprop, ...)``.
    * 'jax': ``fn(lhs, rhs, window_strides=, padding=, lhs_dilation=, rhs_dilation=,
      feature_group_count=, batch_group_count=)`` (``lax.conv_general_dilated``, NCHW / OIHW).
    * 'onnx': ``fn(X, W, kernel_shape=, strides=, dilations=, group=, pads= or auto_pad=)``.
    * 'convgrad': ``convgrad.conv`` / ``conv_input_grad`` / ``conv_filter_grad``'s own spelling.

    ``op`` is 'conv', 'input_grad' or 'filter_grad' (gradients: 'torch', 'tf', 'convgrad').
    ``ranks`` limits the spatial ranks (e.g. ``(2,)`` for a conv2d); arrays are standard normal
    of ``dtype``. A result matches when max |got - convgrad| <= rtol * max |convgrad| (default
    rtol: ``convgrad.testing.RTOL`` of the dtype: 1e-10 float64, 1e-4 float32). The geometries are
    ``convgrad.testing.strategies.conv_examples``, drawn by hypothesis (deterministically), which
    shrinks a failure to a small geometry.

    Returns the number of geometries checked. Raises AssertionError naming the call (its shapes
    and keywords) and the difference at the first mismatch, or the exception ``fn`` raised there.

    Examples
    --------
    >>> import convgrad.torch.nn.functional as F
    >>> assert_conv_matches(F.conv2d, "torch", ranks=(2,), max_examples=5)
    5
    """
    from hypothesis import HealthCheck, given, settings

    from .strategies import conv_examples

    if not callable(fn):
        raise TypeError(f"fn={fn!r} is not callable")
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise ValueError(f"max_examples={max_examples!r} must be a positive int")
    dt = np.dtype(dtype)
    rtol = tolerance(dt) if rtol is None else float(rtol)
    examples = conv_examples(convention, op, ranks=ranks, dtype=dt)
    checked = [0]

    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(examples)
    def run(example):
        try:
            got = fn(*example.args, **example.kwargs)
        except Exception as e:
            raise AssertionError(f"{example.describe()} raised {type(e).__name__}: {e}") from e
        why = _mismatch(got, example.expected(), rtol)
        if why is not None:
            raise AssertionError(f"{example.describe()} differs from convgrad: {why}")
        checked[0] += 1

    run()
    return checked[0]
