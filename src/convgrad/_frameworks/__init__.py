"""Everything convgrad knows about each framework, one module per framework.

Each module (``torch``, ``tf``, ``jax``, ``onnx``, ``scipy``) holds that framework's names,
layouts and rank limit (``MAX_RANK``, ``RANK_LIMIT``) and, where the framework has them:
``read(op, size, k, params) -> Conv``, its call read as the forward conv (``convgrad.translate``);
``write(c) -> Translation`` and ``gradient_calls(g)``, a geometry spelled as its calls
(``translate`` and ``convgrad explain``); ``routes(p)`` and ``front_routes(p)``, the real
framework's gradients and convgrad's front for it as routes for ``convgrad.testing.check_routes``
(``_common.PadFirst`` where its pads cannot say the geometry's); ``contestants(g, x, w, dy)``,
its timed calls for the benchmark suite.

The frameworks themselves are imported inside the functions that run them, so nothing here
needs one installed until it runs. Adding a framework means adding one module here.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..testing import Problem, Route

# The one list of frameworks, in the order the command line shows them.
FRAMEWORKS = ("torch", "tf", "jax", "onnx", "scipy")
ALIASES = {"tensorflow": "tf", "pytorch": "torch", "onnxruntime": "onnx", "ort": "onnx"}


def module(name: str) -> ModuleType:
    """The module of framework ``name``."""
    if name not in FRAMEWORKS:
        raise ValueError(f"unknown framework={name!r}; expected one of {FRAMEWORKS}")
    return importlib.import_module(f"{__name__}.{name}")


def with_(attribute: str) -> tuple[str, ...]:
    """The frameworks whose module has ``attribute`` ('write', 'contestants', ...)."""
    return tuple(n for n in FRAMEWORKS if hasattr(module(n), attribute))


def written_layout(name: str, op: str, rank: int) -> str:
    """The filter layout of the calls framework ``name``'s ``write`` prints for ``op``: its
    ``WRITTEN_LAYOUTS`` where they differ from the framework's defaults (``FILTER_LAYOUTS``)."""
    from ._common import letters

    fw = module(name)
    return getattr(fw, "WRITTEN_LAYOUTS", fw.FILTER_LAYOUTS)[op].replace("*", letters(rank))


def installed(name: str) -> bool:
    """Whether every package framework ``name`` needs can be imported (without importing it)."""
    return all(importlib.util.find_spec(m) is not None for m in module(name).IMPORTS)


def parse(text: str, choices: tuple[str, ...] = FRAMEWORKS) -> tuple[str, ...]:
    """'torch,tf' -> ('torch', 'tf'); 'all' -> ``choices``; 'none' or '' -> ().

    Raises ValueError naming the unknown ones and the valid choices.
    """
    names = [ALIASES.get(n, n) for n in (n.strip().lower() for n in text.split(",")) if n]
    if names in (["none"], []):
        return ()
    if names == ["all"]:
        return choices
    bad = [n for n in names if n not in choices]
    if bad:
        raise ValueError(f"unknown framework(s) {bad}; choose from {', '.join(choices)}, all, none")
    return tuple(dict.fromkeys(names))


def routes(name: str, p: Problem) -> list[Route]:
    """Framework ``name``'s gradient routes for the problem ``p``; one 'not available' route, not
    an exception, when it is not installed or fails to load."""
    from ..testing import not_available

    fw = module(name)
    if not installed(name):
        return [not_available("d_x", f"{name}: every route", f"not installed (pip install {fw.PIP})")]
    try:
        if p.padding_mode == "zeros":
            return fw.routes(p)
        # A padding mode: the routes that can fill the pads run (mode_routes), the others are
        # listed with the framework's reason.
        return _with_mode(fw.routes(p), fw.mode_routes(p) if hasattr(fw, "mode_routes") else [],
                          fw.mode_limit(p.padding_mode) if hasattr(fw, "mode_limit") else
                          f"{fw.TITLE} has no padding modes")
    except Exception as e:  # an installed but broken framework is reported, not a traceback
        first = (str(e).strip().splitlines() or [""])[0][:160]
        return [not_available("d_x", f"{name}: every route", f"failed to load: {type(e).__name__}: {first}")]


def front_routes(p: Problem) -> list[Route]:
    """The same calls through convgrad's own fronts (``convgrad.torch``, ``convgrad.tf``,
    ``convgrad.jax``): each framework's convention, answered by convgrad."""
    routes = [route for name in with_("front_routes") for route in module(name).front_routes(p)]
    if p.padding_mode == "zeros":
        return routes
    return _with_mode(routes, [], "convgrad's fronts mirror the frameworks' functional ops, which take no "
                      "padding mode (convgrad.torch.nn.Conv*d layers do, as PyTorch's)")


def _with_mode(routes: list[Route], capable: list[Route], why: str) -> list[Route]:
    """``capable`` (routes that run the padding mode), then each of ``routes`` not among them as
    'not available' with ``why``."""
    from ..testing import not_available

    ran = {(r.gradient, r.method.split(" on ")[0]) for r in capable}
    return [*capable, *(not_available(r.gradient, r.method, why) for r in routes
                        if (r.gradient, r.method) not in ran)]
