"""PyTorch's ``nn.Conv1d``, ``nn.Conv2d`` and ``nn.Conv3d`` over NumPy: the layer objects, for
their ``padding_mode``, which ``torch.nn.functional`` does not take.

Constructor arguments, attribute names and ``forward`` are PyTorch's; ``weight`` ``(C_out,
C_in / groups, *K)`` and ``bias`` ``(C_out,)`` are NumPy arrays drawn from PyTorch's initial
distribution, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C_in / groups * prod(K) (the
same law, not the same numbers: assign ``m.weight`` and ``m.bias`` to reproduce a torch
layer). As in PyTorch, a mode other than 'zeros' pads with ``F.pad`` ('reflect', 'replicate',
'circular'; 'same' pads split ``d (k - 1)`` with the extra sample on the right) and then
convolves with no padding; ``m.vjp(input) -> (out, pullback)``, ``pullback(dy) -> (d_input,
d_weight, d_bias)``, gives the exact gradients, the pad's folded back onto the samples it copied.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..._budget import check_fits, workspace_limit
from ..._dtypes import dtype_named
from . import functional as F

__all__ = ["Conv1d", "Conv2d", "Conv3d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _kernel_size(value: Any, rank: int) -> tuple[int, ...]:
    items = list(value) if isinstance(value, (list, tuple)) else [value] * rank
    if len(items) != rank:
        raise ValueError(f"kernel_size must be an int or {rank} ints, got kernel_size={value!r}")
    k = tuple(F._int(f"kernel_size[{i}]", v) for i, v in enumerate(items))
    if any(v < 1 for v in k):
        raise ValueError(f"kernel_size must be positive, got kernel_size={value!r}")
    return k


class _ConvNd:
    rank: int

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        r = self.rank
        groups = F.groups_of(groups)
        in_channels, out_channels = F._int("in_channels", in_channels), F._int("out_channels", out_channels)
        if in_channels < 0 or out_channels < 0:
            raise ValueError(f"in_channels and out_channels must be non-negative, got "
                             f"in_channels={in_channels}, out_channels={out_channels}")
        if in_channels % groups:
            raise ValueError(f"in_channels must be divisible by groups, got in_channels={in_channels}, "
                             f"groups={groups}")
        if out_channels % groups:
            raise ValueError(f"out_channels must be divisible by groups, got out_channels={out_channels}, "
                             f"groups={groups}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {list(_PADDING_MODES)}, but got "
                             f"padding_mode={padding_mode!r}")
        if device not in (None, "cpu"):
            raise ValueError(f"device={device!r}: convgrad computes on the CPU (NumPy)")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _kernel_size(kernel_size, r)
        self.stride = F.expand("stride", stride, r)
        self.dilation = F.expand("dilation", dilation, r)
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of ('valid', 'same')")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding: Any = padding
        else:
            self.padding = F.expand("padding", padding, r)
        # F.pad's list, last dim first, as nn.ConvNd's _reversed_padding_repeated_twice.
        pairs = []
        for i in range(r):
            if self.padding == "same":
                total = self.dilation[i] * (self.kernel_size[i] - 1)
                pairs.append((total // 2, total - total // 2))
            else:
                p = 0 if self.padding == "valid" else self.padding[i]
                pairs.append((p, p))
        self._reversed_padding_repeated_twice = [v for pair in reversed(pairs) for v in pair]
        # torch.bfloat16 is spelled "bfloat16" (or ml_dtypes.bfloat16): NumPy has no torch dtypes.
        if isinstance(dtype, str) and dtype == "bfloat16":
            dt = dtype_named("dtype", dtype)
        else:
            dt = np.dtype(np.float32 if dtype is None else dtype)
        fan_in = in_channels // groups * math.prod(self.kernel_size)
        bound = 1 / math.sqrt(fan_in) if fan_in else 0.0  # PyTorch's bound for no inputs
        rng = np.random.default_rng()
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        # drawn in float64, then cast: both checked before either is made
        check_fits(f"weight {shape}", math.prod(shape) * 8, workspace_limit())
        self.weight = rng.uniform(-bound, bound, shape).astype(dt)
        self.bias = rng.uniform(-bound, bound, out_channels).astype(dt) if bias else None

    def _conv(self) -> Callable[..., Any]:
        return getattr(F, f"conv{self.rank}d")

    def _conv_forward(self, input: Any, weight: Any, bias: Any) -> np.ndarray:
        """nn.ConvNd._conv_forward: pad by the mode, then a conv with no padding."""
        return self._vjp(input, weight, bias, with_pullback=False)

    def forward(self, input: Any) -> np.ndarray:
        """The conv of ``input`` ``(N, C_in, *S)`` or ``(C_in, *S)`` with ``weight`` and ``bias``."""
        return self._conv_forward(input, self.weight, self.bias)

    __call__ = forward

    def vjp(self, input: Any) -> tuple[np.ndarray, Callable[[object], tuple[Any, ...]]]:
        """``(forward(input), pullback)``; ``pullback(dy) -> (d_input, d_weight, d_bias)``
        (``d_bias`` None without bias)."""
        return self._vjp(input, self.weight, self.bias, with_pullback=True)

    def _vjp(self, input: Any, weight: Any, bias: Any, with_pullback: bool) -> Any:
        conv = self._conv()
        if self.padding_mode == "zeros":
            args = (input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
            return conv.vjp(*args) if with_pullback else conv(*args)
        pad = (input, self._reversed_padding_repeated_twice, self.padding_mode)
        rest = (weight, bias, self.stride, 0, self.dilation, self.groups)
        if not with_pullback:
            return conv(F.pad(*pad), *rest)
        padded, pad_pullback = F.pad.vjp(*pad)
        out, conv_pullback = conv.vjp(padded, *rest)

        def pullback(dy: object) -> tuple[Any, ...]:
            d_padded, d_weight, d_bias = conv_pullback(dy)
            return (pad_pullback(d_padded)[0], d_weight, d_bias)

        return out, pullback

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self.rank:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self.rank:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class Conv1d(_ConvNd):
    """``nn.Conv1d``: input ``(N, C_in, L)`` or ``(C_in, L)``, weight ``(C_out, C_in / groups, k)``."""

    rank = 1


class Conv2d(_ConvNd):
    """``nn.Conv2d``: input ``(N, C_in, H, W)`` or ``(C_in, H, W)``, weight ``(C_out, C_in / groups,
    kh, kw)``."""

    rank = 2


class Conv3d(_ConvNd):
    """``nn.Conv3d``: input ``(N, C_in, D, H, W)`` or ``(C_in, D, H, W)``, weight ``(C_out, C_in /
    groups, kd, kh, kw)``."""

    rank = 3
