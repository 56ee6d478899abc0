"""SciPy conventions over NumPy: ``from convgrad.scipy import signal``, then ``signal.convolve``.

Every op has ``op.vjp(*args, **kwargs) -> (out, pullback)``, ``pullback(dy) -> (din1, din2)``.
"""

from __future__ import annotations

from . import signal

__all__ = ["signal"]
__dir__ = __all__.copy  # dir() lists the API only
