"""The front kit: what every framework front (``convgrad.tf``, ``torch``, ``jax``, ``onnx``,
``scipy``) shares.

A front checks a call with its framework's rules and resolves it into a *call object* with
``forward() -> out`` and ``vjp() -> (out, pullback)``; ``op_with_vjp`` turns the resolver into
the public op (one signature per op) with ``op.vjp``. ``pullback(dy)`` returns the gradients of
the op's array arguments in signature order, each in that argument's own shape and layout
(None for an absent optional argument such as a bias).

``CoreCall`` runs any of the three ops of a convolution on a geometry the front built once
with a ``ConvGeometry`` constructor; an ``Adapter`` maps a framework's array to the core's
layout and back (the identity where they agree). ``Linear`` is any other op, from its forward
and its gradients.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol

import numpy as np

from .. import _general, _ops
from .._canon import MAX_NDIM, as_int, bounded_list
from .._dtypes import cotangent  # the one check of a pullback's dy, shared with the core
from .._geometry import ConvGeometry

Pullback = Callable[[object], tuple[Any, ...]]
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
    op.__signature__ = signature.replace(return_annotation="np.ndarray")
    vjp.__signature__ = signature.replace(return_annotation="tuple[np.ndarray, Pullback]")
    vjp.__name__, vjp.__qualname__ = "vjp", f"{resolve.__qualname__}.vjp"
    vjp.__doc__ = (f"``(out, pullback)`` of ``{resolve.__name__}`` with the same arguments; "
                   "``pullback(dy)`` returns the gradients of its array arguments.")
    op.vjp = vjp
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
    items = tuple(as_int(f"{name}[{i}]", v) for i, v in enumerate(bounded_list(name, value, MAX_NDIM)))
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


@dataclass(frozen=True)
class Linear:
    """A call from its two halves: ``forward() -> out``, and ``grads(dy)`` for a dy of out's
    shape (checked here), the gradients of the op's array arguments."""

    forward: Callable[[], np.ndarray]
    grads: Callable[[np.ndarray], tuple[Any, ...]]

    def vjp(self) -> tuple[np.ndarray, Pullback]:
        out = self.forward()
        return out, lambda dy: self.grads(cotangent(dy, out.shape))


@dataclass(frozen=True)
class CoreCall:
    """The array of ``role`` on a built geometry: 'y' (conv, plus ``bias``), 'x' (its input
    gradient, or a transposed conv, plus ``bias``) or 'w' (its filter gradient), from
    ``arrays``, the other two by role in the op's argument order, in the core's layout ``fmt``.
    Gradients come in that order, plus db when the op takes a bias argument (``with_bias``; None
    for an absent bias). ``layout`` adapts activations (x, y), ``filt`` the filter, ``out`` (where
    given) the result; the result is cast to ``dtype``, gradients to ``grad_dtype`` (default
    ``dtype``). The geometry may have input dilation or batch groups (``_general.GeneralCall``).
    ``convention``: the framework's gradient of a complex op, 'adjoint' (PyTorch's autograd) or
    'transpose' (JAX's ``vjp``)."""

    geom: ConvGeometry
    role: str
    arrays: Mapping[str, np.ndarray]
    dtype: np.dtype
    bias: np.ndarray | None = None
    with_bias: bool = False
    layout: Adapter = IDENTITY
    filt: Adapter = IDENTITY
    fmt: str = "channels_first"
    out: Adapter | None = None
    grad_dtype: np.dtype | None = None
    convention: str = "adjoint"

    def _adapter(self, role: str) -> Adapter:
        if role == self.role and self.out is not None:
            return self.out
        return self.filt if role == "w" else self.layout

    def _out(self, role: str, a: np.ndarray) -> np.ndarray:
        dtype = self.dtype if role == self.role or self.grad_dtype is None else self.grad_dtype
        return self._adapter(role).from_core(a.astype(dtype, copy=False))

    def forward(self) -> np.ndarray:
        call = _general.GeneralCall(self.geom, self.fmt)
        return self._out(self.role, call.biased(self.role, dict(self.arrays), self.bias))

    def vjp(self) -> tuple[np.ndarray, Pullback]:
        call = _general.GeneralCall(self.geom, self.fmt, convention=self.convention)
        y, pb = call.biased_vjp(self.role, dict(self.arrays), self.bias)
        out = self._out(self.role, y)

        def pullback(dy: object) -> tuple[np.ndarray | None, ...]:
            *grads, db = pb(self._adapter(self.role).to_core(cotangent(dy, out.shape)))
            by_role = dict(zip(_ops._FROM[self.role], grads))
            grads = [self._out(r, by_role[r]) for r in self.arrays]
            if not self.with_bias:
                return tuple(grads)
            return (*grads, None if db is None else db.astype(self.dtype, copy=False))

        return out, pullback
