"""TensorFlow's conventions over NumPy: ``from convgrad import tf``, then ``tf.nn.conv2d(...)``.

Only the convolution ops of ``tf.nn`` are here (see ``convgrad.tf.nn``); arrays in and out are
NumPy arrays, and every op has ``.vjp`` for its exact gradients.
"""

from __future__ import annotations

from . import nn

__all__ = ["nn"]
__dir__ = __all__.copy  # dir() lists the API only
