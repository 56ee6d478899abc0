"""The GEOMETRY arguments shared by every subcommand, parsed into the core's own values.

Strings become the values ``convgrad.conv`` takes (shape tuples, ints, (before, after) pairs,
padding strings); the core then validates them, so every rule and message lives in one place.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._frameworks._common import layout_names
from .._geometry import ConvGeometry
from .._padding import PADDING_STRINGS

# The seed note's example: a 1x4x4x1 input, a 3x3 filter, VALID, channels-last (TensorFlow's).
SEED_X = {"channels_last": (1, 4, 4, 1), "channels_first": (1, 1, 4, 4)}
SEED_W = {"channels_last": (3, 3, 1, 1), "channels_first": (1, 1, 3, 3)}

DTYPES = ("float64", "float32", "float16")
FORMAT_ALIASES = {
    **dict.fromkeys(("channels_first", "first", "cf", "ncw", "nchw", "ncdhw"), "channels_first"),
    **dict.fromkeys(("channels_last", "last", "cl", "nwc", "nhwc", "ndhwc"), "channels_last"),
}


class ArgumentError(ValueError):
    """A bad command-line value: printed as one clear line, exit status 2."""


def parse_shape(text: str) -> tuple[int, ...]:
    """'1,4,4,1' or '1x4x4x1' -> (1, 4, 4, 1)."""
    try:
        shape = tuple(int(p) for p in re.split(r"[,x\s]+", text.strip()) if p)
    except ValueError:
        shape = ()
    if not shape or any(v < 0 for v in shape):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write non-negative sizes like 1,4,4,1")
    return shape


def parse_ints(text: str) -> int | tuple[int, ...]:
    """'2' -> 2; '2,1' -> (2, 1): one value for every spatial dim, or one per dim."""
    try:
        values = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not an int or a comma-separated list of ints")
    return values[0] if len(values) == 1 else values


def parse_padding_arg(text: str) -> object:
    """'valid' | 'same' | 'same_lower' | 'full' | '1' | '1,2' | '1:2,0:1' (before:after per dim)."""
    t = text.strip()
    if t.lower().replace("-", "_") in PADDING_STRINGS:
        return t.lower().replace("-", "_")
    items: list[object] = []
    for part in (p.strip() for p in t.split(",")):
        try:
            if ":" in part:
                lo, hi = part.split(":")
                items.append((int(lo), int(hi)))
            else:
                items.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"padding {text!r} not understood; use one of {', '.join(PADDING_STRINGS)}, an int, "
                "one int per dim (1,2) or before:after pairs per dim (1:2,0:1); negative pads crop "
                "(write --padding=-1:0)") from None
    return items[0] if len(items) == 1 and isinstance(items[0], int) else items


def parse_format(text: str) -> str:
    try:
        return FORMAT_ALIASES[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown data format {text!r}; use channels_first (NCHW, "
                                         "PyTorch/ONNX/JAX) or channels_last (NHWC, TensorFlow)") from None


def count(low: int, high: int) -> Any:
    """An argparse type: an int in [low, high] (high keeps a typo from running for days)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an int") from None
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high:,}, got {v}")
        return v

    parse.__name__ = "count"
    return parse


def output_file(option: str, path: str) -> None:
    """Refuse ``path`` for ``option`` before any work when its folder is missing or not writable."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise ArgumentError(f"{option} {path!r}: no such directory {folder!r}")
    if os.path.isdir(path) or not os.access(folder, os.W_OK):
        raise ArgumentError(f"{option} {path!r}: cannot write this file")


def add_geometry_arguments(parser: argparse.ArgumentParser) -> None:
    """The GEOMETRY options; without --x and --w, the seed note's example."""
    g = parser.add_argument_group(
        "geometry", "the convolution y = conv(x, w); without --x and --w, the seed note's example "
        "(x 1,4,4,1, w 3,3,1,1, VALID, channels-last)")
    g.add_argument("--x", "--input-shape", dest="x", type=parse_shape, metavar="SHAPE",
                   help="input shape, (N,C,*S) channels-first or (N,*S,C) channels-last, e.g. 1,4,4,1")
    g.add_argument("--w", "--filter-shape", dest="w", type=parse_shape, metavar="SHAPE",
                   help="filter shape, (O,C/groups,*K) channels-first or (*K,C/groups,O) channels-last; "
                   "default with --x: 3 taps per dim, C/groups in, C out")
    g.add_argument("--stride", type=parse_ints, default=1, metavar="S", help="int or one per dim (2,1)")
    g.add_argument("--padding", type=parse_padding_arg, default="valid", metavar="P",
                   help="valid | same | same_lower | full | int | one int per dim (1,2) | "
                   "before:after per dim (1:2,0:1); negative pads crop (--padding=-1:0). Default valid")
    g.add_argument("--dilation", type=parse_ints, default=1, metavar="D",
                   help="kernel dilation, int or one per dim")
    g.add_argument("--groups", type=int, default=1, metavar="G", help="channel groups (C for depthwise)")
    g.add_argument("--data-format", "--layout", dest="data_format", type=parse_format,
                   default="channels_last", metavar="FMT",
                   help="channels_last (NHWC, the default, as the seed note) or channels_first (NCHW)")
    g.add_argument("--dtype", choices=DTYPES, default="float64", help="default float64")
    g.add_argument("--seed", type=count(0, 2**63 - 1), default=0,
                   help="random seed of the example arrays (default 0)")


def shapes(ns: argparse.Namespace) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(x shape, w shape): the seed's without --x; without --w, a 3-tap kernel in every spatial
    dim taking C/groups channels to C."""
    fmt = ns.data_format
    if ns.x is None:
        if ns.w is not None:
            raise ArgumentError("--w needs --x (give both, only --x, or neither for the seed note's example)")
        return SEED_X[fmt], SEED_W[fmt]
    if ns.w is not None:
        return ns.x, ns.w
    x = ns.x
    if len(x) < 3:
        raise ArgumentError(f"--x {','.join(map(str, x))} needs at least 3 dims (batch, channels, spatial)")
    c = x[1] if fmt == "channels_first" else x[-1]
    g = ns.groups if ns.groups and ns.groups > 0 and c % ns.groups == 0 else 1
    k = (3,) * (len(x) - 2)
    return x, ((c, c // g, *k) if fmt == "channels_first" else (*k, c // g, c))


@dataclass(frozen=True)
class GeometryArgs:
    """The parsed GEOMETRY options, validated by building the core's ConvGeometry; ``kwargs`` are
    the keyword arguments of convgrad.conv and its gradients."""

    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    kwargs: dict[str, Any]
    dtype: np.dtype
    seed: int
    geometry: ConvGeometry

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> GeometryArgs:
        x_shape, w_shape = shapes(ns)
        kwargs = {"stride": ns.stride, "padding": ns.padding, "dilation": ns.dilation,
                  "groups": ns.groups, "data_format": ns.data_format}
        try:
            geom = ConvGeometry.for_conv(x_shape, w_shape, **kwargs)
        except (ValueError, TypeError) as e:
            raise ArgumentError(str(e)) from None
        return cls(x_shape, w_shape, kwargs, np.dtype(ns.dtype), ns.seed, geom)

    @property
    def data_format(self) -> str:
        return self.kwargs["data_format"]

    @property
    def layouts(self) -> tuple[str, str]:
        """('NHWC', 'HWIO') and the like."""
        return layout_names(self.data_format, self.geometry.rank)

    def title(self) -> str:
        """One line: shapes, layouts, stride, padding, dilation, groups, dtype -> y."""
        g, kw = self.geometry, self.kwargs
        xl, wl = self.layouts
        parts = [f"x {dims(self.x_shape)} {xl}", f"w {dims(self.w_shape)} {wl}",
                 f"stride {_compact(kw['stride'])}", f"padding {_compact(kw['padding'])}"]
        if g.rhs_dilation != (1,) * g.rank:
            parts.append(f"dilation {_compact(kw['dilation'])}")
        if kw["groups"] != 1:
            parts.append(f"groups {kw['groups']}")
        return " · ".join(parts) + f" → y {dims(g.y_shape(self.data_format))}; {self.dtype}"


def dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def _compact(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v[0]}:{v[1]}" if isinstance(v, tuple) else str(v) for v in value)
    return str(value).upper() if isinstance(value, str) else str(value)


def geometry_dict(args: GeometryArgs) -> dict[str, object]:
    """The resolved geometry as plain JSON values (pads as [before, after] per spatial dim)."""
    g, fmt = args.geometry, args.data_format
    return {
        "x_shape": list(args.x_shape), "w_shape": list(args.w_shape), "y_shape": list(g.y_shape(fmt)),
        "data_format": fmt, "layouts": list(args.layouts), "dtype": str(args.dtype),
        "stride": list(g.stride), "dilation": list(g.rhs_dilation), "groups": g.feature_group_count,
        "padding_spec": args.kwargs["padding"],  # as given (print_json writes tuples as lists)
        "padding": [list(p) for p in g.padding], "seed": args.seed,
    }
