"""convgrad: N-d convolution, transposed convolution and their exact gradients over NumPy."""

from __future__ import annotations

from ._budget import DEFAULT_WORKSPACE_BYTES, WORKSPACE_ENV
from ._general import conv_general, conv_general_vjp
from ._geometry import ConvGeometry
from ._ops import (
    conv,
    conv_bias_grad,
    conv_filter_grad,
    conv_filter_grad_vjp,
    conv_input_grad,
    conv_input_grad_vjp,
    conv_transpose,
    conv_transpose_vjp,
    conv_vjp,
)
from ._plan import ConvPlan, make_plan, set_jit
from ._prepared import PreparedConv, prepare
from .engines import engine_names

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_WORKSPACE_BYTES",
    "WORKSPACE_ENV",
    "ConvGeometry",
    "ConvPlan",
    "PreparedConv",
    "__version__",
    "conv",
    "conv_bias_grad",
    "conv_filter_grad",
    "conv_filter_grad_vjp",
    "conv_general",
    "conv_general_vjp",
    "conv_input_grad",
    "conv_input_grad_vjp",
    "conv_transpose",
    "conv_transpose_vjp",
    "conv_vjp",
    "engine_names",
    "make_plan",
    "prepare",
    "set_jit",
]
