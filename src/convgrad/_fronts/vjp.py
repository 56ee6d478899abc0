"""Attach a vector-Jacobian product to a front's op: ``op.vjp(*args, **kwargs) -> (out, pullback)``.

``pullback(dy)`` returns the gradients of the op's array arguments, in the order they appear
in the op's signature, each in that argument's own shape and layout (None for an absent
optional argument such as a bias).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def has_vjp(vjp: Callable[..., tuple[Any, Callable[[Any], Any]]]) -> Callable[[F], F]:
    """Decorator: sets ``op.vjp = vjp``; ``vjp`` takes the op's own arguments."""

    def attach(op: F) -> F:
        op.vjp = vjp  # type: ignore[attr-defined]
        return op

    return attach
