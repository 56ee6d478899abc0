"""Every invalid input of samples.error_cases() is refused with its exception and message."""

from __future__ import annotations

import pytest

import convgrad
from samples import error_cases


def _call(case):
    """``func`` names a convgrad callable; ``"f:vjp"`` calls f on all but the last argument and
    then the returned vjp on the last."""
    name, _, then = case.func.partition(":")
    fn = getattr(convgrad, name)
    if then == "vjp":
        _, vjp = fn(*case.args[:-1], **case.kwargs)
        return vjp(case.args[-1])
    return fn(*case.args, **case.kwargs)


@pytest.mark.parametrize("case", list(error_cases()), ids=str)
def test_error_case(case):
    with pytest.raises(case.exc, match=case.match):
        _call(case)


def test_error_case_names_are_unique():
    names = [c.name for c in error_cases()]
    assert len(names) == len(set(names))


def test_unknown_method_lists_every_engine():
    import numpy as np

    with pytest.raises(ValueError, match=r"unknown method='nope'") as info:
        convgrad.conv(np.ones((1, 1, 4)), np.ones((1, 1, 2)), method="nope")
    for name in convgrad.engine_names():
        assert repr(name) in str(info.value)
