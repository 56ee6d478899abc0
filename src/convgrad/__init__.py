"""convgrad: N-d convolution, transposed convolution and their exact gradients over NumPy.

Names load on first use (PEP 562), so ``import convgrad`` costs NumPy and little else: the
engines, Numba and SciPy's FFT load when a convolution first runs, and the fronts
(``convgrad.tf``, ``convgrad.torch``, ``convgrad.jax``, ``convgrad.onnx``, ``convgrad.scipy``),
``convgrad.testing``, ``convgrad.translate`` and the other modules when first named.
"""

import importlib

__version__ = "0.1.0"

# Each public name and the private module that defines it.
_HOMES = {
    "DEFAULT_WORKSPACE_BYTES": "_budget",
    "WORKSPACE_ENV": "_budget",
    "conv_general": "_general",
    "conv_general_vjp": "_general",
    "ConvGeometry": "_geometry",
    "conv_jvp": "_jvp",
    "conv_transpose_jvp": "_jvp",
    "conv": "_ops",
    "conv_bias_grad": "_ops",
    "conv_filter_grad": "_ops",
    "conv_filter_grad_vjp": "_ops",
    "conv_input_grad": "_ops",
    "conv_input_grad_vjp": "_ops",
    "conv_transpose": "_ops",
    "conv_transpose_vjp": "_ops",
    "conv_vjp": "_ops",
    "ConvPlan": "_plan",
    "make_plan": "_plan",
    "set_jit": "_plan",
    "PreparedConv": "_prepared",
    "prepare": "_prepared",
    "engine_names": "engines",
}
_SUBMODULES = ("cli", "engines", "identities", "jax", "layouts", "onnx", "scipy", "testing", "tf",
               "torch", "translate")

__all__ = ["__version__", *_HOMES]


def __getattr__(name: str) -> object:
    if name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'convgrad' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES])
