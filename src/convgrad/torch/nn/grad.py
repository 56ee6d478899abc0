"""PyTorch's ``torch.nn.grad``: the gradients of ``conv{1,2,3}d`` as functions, over NumPy.

PyTorch's shape model: ``conv{n}d_input(input_size, weight, grad_output)`` returns the gradient
of ``conv{n}d(input, weight)`` with respect to ``input``, whose full shape ``(N, C_in, *S)`` is
given because a stride makes it ambiguous (it must be one the conv maps to grad_output's size);
``conv{n}d_weight(input, weight_size, grad_output)`` returns the gradient with respect to the
weight ``(C_out, C_in / groups, *K)``. padding is an int or one int per dim (no strings).

Each has ``.vjp``: these functions are bilinear, and ``pullback(g)`` returns the gradients of
their array arguments: ``(d_weight, d_grad_output)`` for ``*_input``, ``(d_input,
d_grad_output)`` for ``*_weight``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..._canon import shape_tuple
from ..._dtypes import as_array
from ..._fronts.kit import CoreCall, op_with_vjp
from ..._geometry import ConvGeometry
from .functional import _DIMS, expand, groups_of, same_dtype

__all__ = [
    "conv1d_input",
    "conv1d_weight",
    "conv2d_input",
    "conv2d_weight",
    "conv3d_input",
    "conv3d_weight",
]
__dir__ = __all__.copy  # dir() lists the API only


def _call(func: str, rank: int, role: str, names: tuple[str, str], a: object, b: object, size_name: str,
          size: object, stride: object, padding: object, dilation: object, groups: object) -> CoreCall:
    """``role``'s array ('x': ``*_input``, 'w': ``*_weight``) of full shape ``size`` from the
    arrays ``a`` and ``b`` named ``names``; gradients in that order."""
    a, b = as_array(names[0], a), as_array(names[1], b)
    dtype = same_dtype(func, **{names[0]: a, names[1]: b})
    if dtype.kind == "c":  # torch.nn.grad runs the real-only CPU backward kernels (NotImplementedError)
        raise TypeError(f"{func}: PyTorch's CPU kernel is not implemented for {dtype}; the adjoint of "
                        f"a complex conv is conv{rank}d's autograd (convgrad.torch.nn.functional."
                        f"conv{rank}d.vjp)")
    full = shape_tuple(size_name, size)
    if len(full) != rank + 2:
        raise ValueError(f"{func}: {size_name}={full} must be the full shape ({rank + 2} entries, batch and "
                         "channels included), as PyTorch requires")
    if a.ndim != rank + 2 or b.ndim != rank + 2:
        raise ValueError(f"{func}: {names[0]} and {names[1]} must be {rank + 2}-D, got {a.shape} and "
                         f"{b.shape}")
    if isinstance(padding, str):
        raise TypeError(f"padding must be an int or a tuple of {rank} ints, got {padding!r}")
    kw = {"stride": expand("stride", stride, rank), "padding": expand("padding", padding, rank),
          "dilation": expand("dilation", dilation, rank), "groups": groups_of(groups)}
    if role == "x":  # (weight, grad_output)
        said = (("w", names[0]), ("dy", names[1]), ("input_shape", size_name))
        return CoreCall(ConvGeometry.for_input_grad(b.shape, a.shape, full, names=said, **kw), "x",
                        {"w": a, "y": b}, dtype)
    said = (("x", names[0]), ("dy", names[1]), ("filter_shape", size_name))
    return CoreCall(ConvGeometry.for_filter_grad(a.shape, b.shape, full, names=said, **kw), "w",
                    {"x": a, "y": b}, dtype)


def _op(rank: int, role: str) -> Callable[..., Any]:
    """``conv{rank}d_input`` (role 'x') or ``conv{rank}d_weight`` (role 'w'), with PyTorch's signature."""
    spatial, kernel = _DIMS[rank]
    x_doc, w_doc = f"``(N, C_in, {spatial})``", f"``(C_out, C_in / groups, {kernel})``"
    name = f"conv{rank}d_{'input' if role == 'x' else 'weight'}"
    if role == "x":
        def op(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1):
            return _call(name, rank, "x", ("weight", "grad_output"), weight, grad_output,
                         "input_size", input_size, stride, padding, dilation, groups)

        what = f"input) of full shape ``input_size`` {x_doc}, from ``weight`` {w_doc}"
    else:
        def op(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1):
            return _call(name, rank, "w", ("input", "grad_output"), input, grad_output,
                         "weight_size", weight_size, stride, padding, dilation, groups)

        what = f"weight) of full shape ``weight_size`` {w_doc}, from ``input`` {x_doc}"
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``torch.nn.grad.{name}``: d(conv{rank}d)/d({what} and ``grad_output``."
    return op_with_vjp(op)


conv1d_input, conv2d_input, conv3d_input = (_op(r, "x") for r in (1, 2, 3))
conv1d_weight, conv2d_weight, conv3d_weight = (_op(r, "w") for r in (1, 2, 3))
