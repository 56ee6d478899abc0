"""The public namespace: __all__ is exactly the public callables and constants."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import convgrad


def test_every_name_in_all_exists():
    missing = [name for name in convgrad.__all__ if not hasattr(convgrad, name)]
    assert not missing
    assert len(set(convgrad.__all__)) == len(convgrad.__all__)


def test_every_public_callable_is_in_all():
    public = {
        name for name, value in vars(convgrad).items()
        if not name.startswith("_") and callable(value) and not inspect.ismodule(value)
    }
    assert public <= set(convgrad.__all__), sorted(public - set(convgrad.__all__))


def test_version():
    assert isinstance(convgrad.__version__, str) and convgrad.__version__.count(".") >= 2


def test_engine_names_is_a_nonempty_tuple_of_strings():
    names = convgrad.engine_names()
    assert isinstance(names, tuple) and names and all(isinstance(n, str) for n in names)
    assert "im2col" in names


@pytest.mark.parametrize("module", ["_ops", "_general", "_geometry", "_transpose", "identities"])
def test_docstring_examples_run(module):
    """The Examples sections print what they show."""
    mod = importlib.import_module(f"convgrad.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_second_order_vjps_are_exported():
    assert {"conv_input_grad_vjp", "conv_filter_grad_vjp"} <= set(convgrad.__all__)
