"""A griffe extension for the docs build: the ops that fronts make with factories
(``conv2d = _conv_op(2)``: name, signature and docstring set when the module loads) are invisible
to griffe's static reading; this adds each name of such a module's ``__all__`` that the static
reading missed, as griffe's inspection of the imported module finds it."""

from __future__ import annotations

import importlib

import griffe

MODULES = ("convgrad.torch.nn.functional", "convgrad.torch.nn.grad")


class FactoryOps(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:
        for path in MODULES:
            if not path.startswith(pkg.path + "."):
                continue
            static = pkg[path.removeprefix(pkg.path + ".")]
            inspected = griffe.inspect(path)
            for name in importlib.import_module(path).__all__:
                if name not in static.members:
                    static.set_member(name, inspected[name])
