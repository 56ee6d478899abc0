"""The front kit: what every framework front (``convgrad.tf``, ``torch``, ``jax``, ``onnx``,
``scipy``) shares.

A front checks a call with its framework's rules and resolves it into a *call object* with
``forward() -> out`` and ``vjp() -> (out, pullback)``; ``op_with_vjp`` turns the resolver into
the public op (one signature per op) with ``op.vjp``. ``pullback(dy)`` returns the gradients of
the op's array arguments in signature order, each in that argument's own shape and layout
(None for an absent optional argument such as a bias).

The call objects here are the three ops of a convolution in the core's terms (``ConvCall``,
``InputGradCall``, ``FilterGradCall``); an ``Adapter`` maps a framework's array to the core's
layout and back (the identity where they agree).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol

import numpy as np

from .. import _general, _ops
from .._canon import as_int
from .._dtypes import cotangent  # the one check of a pullback's dy, shared with the core

Pullback = Callable[[object], tuple[Any, ...]]
Keywords = Mapping[str, Any]  # a core op's keyword arguments (stride, padding, ...)
P = ParamSpec("P")


class Call(Protocol):
    """A resolved call of a front's op."""

    def forward(self) -> Any: ...

    def vjp(self) -> tuple[Any, Pullback]: ...


def op_with_vjp(resolve: Callable[P, Call]) -> Callable[P, Any]:
    """An op from a resolver: ``resolve(*args, **kwargs)`` checks and translates the framework's
    arguments once into a call object; the op runs its ``forward()`` (no pullback is built) and
    ``op.vjp`` its ``vjp() -> (out, pullback)``."""

    @functools.wraps(resolve)
    def op(*args: P.args, **kwargs: P.kwargs) -> Any:
        return resolve(*args, **kwargs).forward()

    def vjp(*args: P.args, **kwargs: P.kwargs) -> tuple[Any, Pullback]:
        return resolve(*args, **kwargs).vjp()

    # The op returns an array, not the resolver's call object, and op.vjp (out, pullback): their
    # signatures say so, with the framework's parameters.
    signature = inspect.signature(resolve)
    op.__signature__ = signature.replace(return_annotation="np.ndarray")  # type: ignore[attr-defined]
    vjp.__signature__ = signature.replace(return_annotation="tuple[np.ndarray, Pullback]")  # type: ignore[attr-defined]
    vjp.__name__, vjp.__qualname__ = "vjp", f"{resolve.__qualname__}.vjp"
    vjp.__doc__ = (f"``(out, pullback)`` of ``{resolve.__name__}`` with the same arguments; "
                   "``pullback(dy)`` returns the gradients of its array arguments.")
    op.vjp = vjp  # type: ignore[attr-defined]
    return op


def int_seq(name: str, value: object, count: int, *, minimum: int, messages: Mapping[str, str],
            default: int | None = None) -> tuple[int, ...]:
    """``count`` ints ``>= minimum`` from a sequence (not a string), or ``(default,) * count``
    for None when a default is given.

    ``messages`` holds the framework's words for the three refusals: ``'type'`` (TypeError,
    not a sequence), ``'size'`` and ``'minimum'`` (ValueError), format strings over ``name``,
    ``value``, ``items``, ``length`` (of items), ``count`` and ``minimum``. Items are checked
    by ``as_int`` as ``name[i]``.
    """
    if value is None and default is not None:
        return (default,) * count
    fields: dict[str, object] = {"name": name, "value": value, "count": count, "minimum": minimum}
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(messages["type"].format(**fields))
    items = tuple(as_int(f"{name}[{i}]", v) for i, v in enumerate(value))  # type: ignore[attr-defined]
    fields.update(items=list(items), length=len(items))
    if len(items) != count:
        raise ValueError(messages["size"].format(**fields))
    if any(v < minimum for v in items):
        raise ValueError(messages["minimum"].format(**fields))
    return items


class Adapter(Protocol):
    """A framework's array <-> the core's layout of the same array."""

    def to_core(self, a: np.ndarray) -> np.ndarray: ...

    def from_core(self, a: np.ndarray) -> np.ndarray: ...


class _Identity:
    def to_core(self, a: np.ndarray) -> np.ndarray:
        return a

    def from_core(self, a: np.ndarray) -> np.ndarray:
        return a


IDENTITY: Adapter = _Identity()


@dataclass(frozen=True)
class Unbatched:
    """PyTorch's unbatched ``(C, *S)`` <-> the core's batch of one; ``added`` False: identity."""

    added: bool

    def to_core(self, a: np.ndarray) -> np.ndarray:
        return a[None] if self.added else a

    def from_core(self, a: np.ndarray) -> np.ndarray:
        return a[0] if self.added else a


def _cast(a: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    return None if a is None else a.astype(dtype, copy=False)


# --- the three ops of a convolution, in the core's terms ---------------------------------------
# ``keywords`` are the core op's (stride, padding, ...); ``layout`` adapts activations (x, y and
# their gradients), ``filt`` the filter; results are cast to ``dtype``.

# The core op of each kind of ConvCall (its vjp is ``name + "_vjp"``). conv_general gives the
# empty output of a kernel larger than the padded input (JAX's and TensorFlow's model), where
# conv refuses it.
_CONV_OPS = {"conv": (_ops, "conv"), "transpose": (_ops, "conv_transpose"),
             "general": (_general, "conv_general")}


@dataclass(frozen=True)
class ConvCall:
    """y = conv(x, w) + bias (``kind`` 'conv'), its transpose ('transpose') or conv_general
    without bias ('general'); gradients (dx, dw), plus db when the op takes a bias argument
    (``with_bias``; None for an absent bias)."""

    x: np.ndarray
    w: np.ndarray
    keywords: Keywords
    dtype: np.dtype
    bias: np.ndarray | None = None
    with_bias: bool = False
    kind: str = "conv"
    layout: Adapter = IDENTITY
    filt: Adapter = IDENTITY

    def _out(self, y: np.ndarray) -> np.ndarray:
        return self.layout.from_core(y).astype(self.dtype, copy=False)

    def _args(self) -> tuple[np.ndarray, ...]:
        return (self.x, self.w) if self.bias is None else (self.x, self.w, self.bias)

    def forward(self) -> np.ndarray:
        module, name = _CONV_OPS[self.kind]
        return self._out(getattr(module, name)(*self._args(), **self.keywords))

    def vjp(self) -> tuple[np.ndarray, Pullback]:
        module, name = _CONV_OPS[self.kind]
        y, pb = getattr(module, f"{name}_vjp")(*self._args(), **self.keywords)
        out = self._out(y)

        def pullback(dy: object) -> tuple[np.ndarray | None, ...]:
            dx, dw, *db = pb(self.layout.to_core(cotangent(dy, out.shape)))
            grads = (self._out(dx), self.filt.from_core(dw).astype(self.dtype, copy=False))
            return (*grads, _cast(db[0] if db else None, self.dtype)) if self.with_bias else grads

        return out, pullback


@dataclass(frozen=True)
class InputGradCall:
    """dx = conv_input_grad(dy, w) as an op (TensorFlow's ``*_backprop_input`` and
    ``conv*_transpose``, PyTorch's ``conv*d_input``); ``input_shape`` full or spatial. Gradients
    (d_w, d_dy) with ``filter_first``, else (d_dy, d_w)."""

    dy: np.ndarray
    w: np.ndarray
    input_shape: tuple[int, ...]
    keywords: Keywords
    dtype: np.dtype
    filter_first: bool = True
    layout: Adapter = IDENTITY
    filt: Adapter = IDENTITY

    def forward(self) -> np.ndarray:
        # conv_input_grad, not conv_transpose: these ops state the forward conv (its input size,
        # filter and pads), which is conv_input_grad's signature; conv_transpose would have to
        # re-derive that conv from the transposed one's sizes.
        dx = _ops.conv_input_grad(self.dy, self.w, self.input_shape, **self.keywords)
        return self.layout.from_core(dx).astype(self.dtype, copy=False)

    def vjp(self) -> tuple[np.ndarray, Pullback]:
        dx, pb = _ops.conv_input_grad_vjp(self.dy, self.w, self.input_shape, **self.keywords)
        out = self.layout.from_core(dx).astype(self.dtype, copy=False)

        def pullback(g: object) -> tuple[np.ndarray, np.ndarray]:
            d_dy, d_w = pb(self.layout.to_core(cotangent(g, out.shape)))
            d_dy = self.layout.from_core(d_dy).astype(self.dtype, copy=False)
            d_w = self.filt.from_core(d_w).astype(self.dtype, copy=False)
            return (d_w, d_dy) if self.filter_first else (d_dy, d_w)

        return out, pullback


@dataclass(frozen=True)
class FilterGradCall:
    """dw = conv_filter_grad(x, dy) as an op (TensorFlow's ``*_backprop_filter``, PyTorch's
    ``conv*d_weight``); ``filter_shape`` is the core's. Gradients (d_x, d_dy)."""

    x: np.ndarray
    dy: np.ndarray
    filter_shape: tuple[int, ...]
    keywords: Keywords
    dtype: np.dtype
    layout: Adapter = IDENTITY
    filt: Adapter = IDENTITY

    def forward(self) -> np.ndarray:
        dw = _ops.conv_filter_grad(self.x, self.dy, self.filter_shape, **self.keywords)
        return self.filt.from_core(dw).astype(self.dtype, copy=False)

    def vjp(self) -> tuple[np.ndarray, Pullback]:
        dw, pb = _ops.conv_filter_grad_vjp(self.x, self.dy, self.filter_shape, **self.keywords)
        out = self.filt.from_core(dw).astype(self.dtype, copy=False)

        def pullback(g: object) -> tuple[np.ndarray, np.ndarray]:
            d_x, d_dy = pb(self.filt.to_core(cotangent(g, out.shape)))
            return (self.layout.from_core(d_x).astype(self.dtype, copy=False),
                    self.layout.from_core(d_dy).astype(self.dtype, copy=False))

        return out, pullback
