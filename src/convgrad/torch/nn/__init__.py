"""``convgrad.torch.nn``: the ``functional`` convolutions and ``pad``, and the ``grad`` helpers."""

from __future__ import annotations

from . import functional, grad

__all__ = ["functional", "grad"]
__dir__ = __all__.copy  # dir() lists the API only
