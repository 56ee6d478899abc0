"""PyTorch's conventions over NumPy: ``from convgrad import torch``, then
``torch.nn.functional.conv2d(...)`` or ``torch.nn.grad.conv2d_input(...)``.

Arrays in and out are NumPy arrays; every op has ``.vjp`` for its exact gradients.
"""

from __future__ import annotations

from . import nn

__all__ = ["nn"]
__dir__ = __all__.copy  # dir() lists the API only
