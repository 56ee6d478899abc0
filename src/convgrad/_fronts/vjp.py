"""Attach a vector-Jacobian product to a front's op: ``op.vjp(*args, **kwargs) -> (out, pullback)``.

``pullback(dy)`` returns the gradients of the op's array arguments, in the order they appear
in the op's signature, each in that argument's own shape and layout (None for an absent
optional argument such as a bias).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def has_vjp(vjp: Callable[..., tuple[Any, Callable[[Any], Any]]]) -> Callable[[F], F]:
    """Decorator: sets ``op.vjp = vjp``; ``vjp`` takes the op's own arguments."""

    def attach(op: F) -> F:
        op.vjp = vjp  # type: ignore[attr-defined]
        return op

    return attach


def op_with_vjp(resolve: Callable[..., Any]) -> Callable[..., Any]:
    """An op from a resolver: ``resolve(*args, **kwargs)`` checks and translates the framework's
    arguments once into an object with ``forward()`` and ``vjp() -> (out, pullback)``; the op
    runs ``forward()`` and ``op.vjp`` runs ``vjp()``."""

    @functools.wraps(resolve)
    def op(*args: Any, **kwargs: Any) -> Any:
        return resolve(*args, **kwargs).forward()

    def vjp(*args: Any, **kwargs: Any) -> Any:
        return resolve(*args, **kwargs).vjp()

    return has_vjp(vjp)(op)
