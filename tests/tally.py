"""How many random geometries the property tests checked against an independent reference.

A property test marks itself with ``@checked_against("oracle")`` (innermost, under ``@given``):
each example that passes adds one to ``counts["oracle"]``, so a failing or rejected example is
never counted. conftest.py prints the counts and holds a whole run to its floor.
"""

from __future__ import annotations

import functools
from collections import Counter

counts: Counter[str] = Counter()


def checked_against(reference: str):
    """Decorator: count one geometry against ``reference`` per example that returns normally."""

    def decorate(test):
        @functools.wraps(test)  # hypothesis and pytest read the wrapped test's signature
        def counted(*args, **kwargs):
            test(*args, **kwargs)
            counts[reference] += 1

        return counted

    return decorate
