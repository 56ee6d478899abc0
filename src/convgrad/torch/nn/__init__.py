"""``convgrad.torch.nn``: the ``functional`` convolutions and ``pad``, the ``grad`` helpers, and
the ``Conv1d`` / ``Conv2d`` / ``Conv3d`` layers (for their ``padding_mode``)."""

from __future__ import annotations

from . import functional, grad
from .modules import Conv1d, Conv2d, Conv3d

__all__ = ["Conv1d", "Conv2d", "Conv3d", "functional", "grad"]
__dir__ = __all__.copy  # dir() lists the API only
