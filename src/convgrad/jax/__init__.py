"""JAX conventions over NumPy: ``from convgrad.jax import lax``, then ``lax.conv_general_dilated``.

Every op has ``op.vjp(*args, **kwargs) -> (out, pullback)``, ``pullback(dy) -> (dlhs, drhs)``.
"""

from __future__ import annotations

from . import lax

__all__ = ["lax"]
__dir__ = __all__.copy  # dir() lists the API only
