"""How many random geometries the property tests checked against an independent reference.

A property test marks itself with ``@checked_against("oracle")`` (innermost, under ``@given``):
each example that passes adds one to ``counts["oracle"]``, so a failing or rejected example is
never counted. An example compared with several references names them all
(``@checked_against("oracle", "torch")``); a test of one of issue 15's capabilities names it
(``capability="complex"``), and its examples count in ``by_capability[capability][reference]``
too. conftest.py prints the counts and holds a whole run to its floors.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict

counts: Counter[str] = Counter()
by_capability: defaultdict[str, Counter[str]] = defaultdict(Counter)

# Per whole "ci" run, the random geometries each capability must be checked on against each
# reference (issue 15's targets; complex and jvp forward and vjp in each example, padding modes
# against torch.nn.ConvNd(padding_mode=...) with autograd, non-finite under every engine).
CAPABILITY_FLOORS = {
    "complex": {"torch": 200, "jax": 200},
    "bfloat16": {"torch": 100},
    "padding_mode": {"torch": 300, "scipy": 100},
    "jvp": {"jax": 100},
    "nonfinite": {"oracle": 200},
}


def checked_against(*references: str, capability: str | None = None):
    """Decorator: count one geometry against each of ``references`` (and under ``capability``,
    one of ``CAPABILITY_FLOORS``'s keys or a new one) per example that returns normally."""
    if not references:
        raise TypeError("checked_against needs at least one reference")

    def decorate(test):
        @functools.wraps(test)  # hypothesis and pytest read the wrapped test's signature
        def counted(*args, **kwargs):
            test(*args, **kwargs)
            for reference in references:
                counts[reference] += 1
                if capability is not None:
                    by_capability[capability][reference] += 1

        return counted

    return decorate


def short_of_floors(scale: float) -> list[str]:
    """The (capability, reference) counts below ``CAPABILITY_FLOORS`` x ``scale``, as lines."""
    return [f"{cap} vs {ref}: {by_capability[cap][ref]} < {round(floor * scale)}"
            for cap, floors in CAPABILITY_FLOORS.items() for ref, floor in floors.items()
            if by_capability[cap][ref] < round(floor * scale)]
