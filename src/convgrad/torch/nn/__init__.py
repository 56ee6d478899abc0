"""``convgrad.torch.nn``: the ``functional`` convolutions and ``pad``, and the ``grad`` helpers."""

from __future__ import annotations

from . import functional, grad

__all__ = ["functional", "grad"]
