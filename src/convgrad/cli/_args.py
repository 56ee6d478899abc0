"""The GEOMETRY arguments shared by every subcommand, parsed into the core's own values.

Strings become the values ``convgrad.conv`` takes (shape tuples, ints, (before, after) pairs,
padding strings); the core then validates them, so every rule and message lives in one place.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._dtypes import dtype_named
from .._frameworks._common import layout_names
from .._geometry import ConvGeometry
from .._padding import PADDING_STRINGS
from .._padmode import PadMap
from .._padmode import canonical as canonical_mode

# The seed note's example: a 1x4x4x1 input, a 3x3 filter, VALID, channels-last (TensorFlow's).
SEED_X = {"channels_last": (1, 4, 4, 1), "channels_first": (1, 1, 4, 4)}
SEED_W = {"channels_last": (3, 3, 1, 1), "channels_first": (1, 1, 3, 3)}

# bfloat16: ml_dtypes, imported when named; complex: check compares each route in its convention
DTYPES = ("float64", "float32", "float16", "bfloat16", "complex64", "complex128")
OPS = ("conv", "transpose")
# conv_general's options beyond conv's: with any of them the command checks and explains
# convgrad.conv_general (JAX's lax.conv_general_dilated); --feature-groups is --groups.
GENERAL = ("lhs_dilation", "batch_groups")
FORMAT_ALIASES = {
    **dict.fromkeys(("channels_first", "first", "cf", "ncw", "nchw", "ncdhw"), "channels_first"),
    **dict.fromkeys(("channels_last", "last", "cl", "nwc", "nhwc", "ndhwc"), "channels_last"),
}


class ArgumentError(ValueError):
    """A bad command-line value: printed as one clear line, exit status 2."""


# One separator rule for every shape-like option: values per dim are separated by ',' or 'x' (or
# spaces): --x 1,4,4,1 = --x 1x4x4x1, --stride 2,1 = --stride 2x1; a pad pair is before:after.
DIM_SEPARATORS = r"[,x\s]+"


def _split(text: str) -> list[str]:
    return [p for p in re.split(DIM_SEPARATORS, text.strip().lower()) if p]


def parse_shape(text: str) -> tuple[int, ...]:
    """'1,4,4,1' or '1x4x4x1' -> (1, 4, 4, 1)."""
    try:
        shape = tuple(int(p) for p in _split(text))
    except ValueError:
        shape = ()
    if not shape or any(v < 0 for v in shape):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write non-negative sizes like 1,4,4,1 "
                                         "or 1x4x4x1")
    return shape


def parse_ints(text: str) -> int | tuple[int, ...]:
    """'2' -> 2; '2,1' or '2x1' -> (2, 1): one value for every spatial dim, or one per dim."""
    try:
        values = tuple(int(p) for p in _split(text))
    except ValueError:
        values = ()
    if not values:
        hint = f"; did you mean {','.join(_split(text.replace(':', ',')))}?" if ":" in text else ""
        raise argparse.ArgumentTypeError(f"{text!r} is not an int or one int per dim (2,1 or 2x1){hint}")
    return values[0] if len(values) == 1 else values


def parse_padding_arg(text: str) -> object:
    """'valid' | 'same' | 'same_lower' | 'full' | '1' | '1,2' | '1:2,0:1' (before:after per dim)."""
    t = re.sub(r"\s*:\s*", ":", text.strip())  # '1 : 2' is '1:2'
    if t.lower().replace("-", "_") in PADDING_STRINGS:
        return t.lower().replace("-", "_")
    items: list[object] = []
    for part in _split(t):
        try:
            if ":" in part:
                lo, hi = part.split(":")
                items.append((int(lo), int(hi)))
            else:
                items.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"padding {text!r} not understood; use one of {', '.join(PADDING_STRINGS)}, an int, "
                "one int per dim (1,2 or 1x2) or before:after pairs per dim (1:2,0:1); negative pads "
                "crop (write --padding=-1:0)") from None
    return items[0] if len(items) == 1 and isinstance(items[0], int) else items


def parse_padding_mode(text: str) -> str:
    """What fills the pads, as the core names it: 'zeros', 'reflect', 'symmetric', 'replicate',
    'circular', or a NumPy / PyTorch / TensorFlow spelling ('edge', 'wrap', 'constant', ...), or
    FRAMEWORK:NAME for a framework's own name ('scipy:mirror', 'onnx:edge')."""
    t = text.strip().lower()
    value: object = tuple(v.strip() for v in t.split(":", 1)) if ":" in t else t
    try:
        return canonical_mode(value)
    except (ValueError, TypeError) as e:
        hint = f"; on the command line: --padding-mode scipy:{t}" if "scipy.ndimage name" in str(e) else ""
        raise argparse.ArgumentTypeError(f"{e}{hint}") from None


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


def add_geometry_arguments(parser: argparse.ArgumentParser, op: bool = True) -> None:
    """The GEOMETRY options; without --x and --w, the seed note's example. ``op``: add ``--op``
    (conv or transpose; draw has its own)."""
    g = parser.add_argument_group(
        "geometry", "the convolution y = conv(x, w); without --x and --w, the seed note's example "
        "(x 1,4,4,1, w 3,3,1,1, VALID, channels-last)")
    if op:
        g.add_argument("--op", choices=OPS, default="conv",
                       help="conv (default) or transpose: conv_transpose(x, w), checked and explained as the "
                       "input gradient of the conv it transposes")
    g.add_argument("--x", "--input-shape", dest="x", type=parse_shape, metavar="SHAPE",
                   help="input shape, (N,C,*S) channels-first or (N,*S,C) channels-last, e.g. 1,4,4,1")
    g.add_argument("--w", "--filter-shape", dest="w", type=parse_shape, metavar="SHAPE",
                   help="filter shape, (O,C/groups,*K) channels-first or (*K,C/groups,O) channels-last; "
                   "default with --x: 3 taps per dim, C/groups in, C out")
    g.add_argument("--stride", type=parse_ints, default=1, metavar="S", help="int or one per dim (2,1)")
    g.add_argument("--padding", type=parse_padding_arg, default="valid", metavar="P",
                   help="valid | same | same_lower | full | int | one int per dim (1,2) | "
                   "before:after per dim (1:2,0:1); negative pads crop (--padding=-1:0). Default valid")
    g.add_argument("--padding-mode", type=parse_padding_mode, default="zeros", metavar="MODE",
                   help="what fills the pads: zeros (default) | reflect | symmetric | replicate | circular; "
                   "also NumPy's edge, wrap, and FRAMEWORK:NAME such as scipy:mirror (SciPy's 'reflect' "
                   "is symmetric, its 'mirror' reflect)")
    g.add_argument("--dilation", type=parse_ints, default=1, metavar="D",
                   help="kernel dilation, int or one per dim")
    g.add_argument("--groups", "--feature-groups", dest="groups", type=int, default=1, metavar="G",
                   help="channel groups (C for depthwise); conv_general's feature_group_count is the same")
    g.add_argument("--lhs-dilation", type=parse_ints, default=1, metavar="D",
                   help="input dilation (conv_general's lhs_dilation: D - 1 zeros between input samples), "
                   "int or one per dim; with it pads must be explicit")
    g.add_argument("--batch-groups", type=int, default=1, metavar="B",
                   help="conv_general's batch_group_count: batch block b meets output-channel block b "
                   "(w takes all C channels; O divisible by B)")
    g.add_argument("--data-format", "--layout", dest="data_format", type=parse_format,
                   default=None, metavar="FMT",
                   help="channels_first (NCHW, PyTorch/ONNX/JAX) or channels_last (NHWC, TensorFlow). "
                   "Default: the layout the shapes fit; where both fit, channels_first (the library's "
                   "default) with a warning; the seed note's example is channels_last")
    g.add_argument("--output-padding", type=parse_ints, default=None, metavar="P",
                   help="--op transpose: samples added at the end of each dim, int or one per dim")
    g.add_argument("--output-shape", type=parse_shape, default=None, metavar="SHAPE",
                   help="--op transpose: the output's shape (spatial sizes, or the whole shape)")
    g.add_argument("--bias", action=argparse.BooleanOptionalAction, default=True,
                   help="y = conv(x, w) + b: check d_b and show b (default); --no-bias leaves b out")
    g.add_argument("--dtype", choices=DTYPES, default="float64", help="default float64")
    g.add_argument("--seed", type=count(0, 2**63 - 1), default=0,
                   help="random seed of the example arrays (default 0)")


def shapes(ns: argparse.Namespace, fmt: str | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(x shape, w shape) in ``fmt`` (default: the resolved layout): the seed's without --x;
    without --w, a 3-tap kernel in every spatial dim taking C/groups channels to C."""
    fmt = fmt or ns.data_format
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
    b = getattr(ns, "batch_groups", 1)
    o = c * b if isinstance(b, int) and b > 1 else c  # batch groups: O divisible by B
    k = (3,) * (len(x) - 2)
    return x, ((o, c // g, *k) if fmt == "channels_first" else (*k, c // g, o))


def geometry_of(ns: argparse.Namespace, fmt: str) -> ConvGeometry:
    """The conv the options describe in layout ``fmt``: for --op transpose, the forward conv whose
    input gradient conv_transpose(x, w) is."""
    x, w = shapes(ns, fmt)
    kw = {"stride": ns.stride, "padding": ns.padding, "dilation": ns.dilation, "groups": ns.groups,
          "data_format": fmt}
    transpose = getattr(ns, "op", "conv") == "transpose"
    for name in ("output_padding", "output_shape"):
        if getattr(ns, name, None) is not None and not transpose:
            raise ArgumentError(f"--{name.replace('_', '-')} is for --op transpose")
    if is_general(ns):
        if transpose:
            raise ArgumentError("--lhs-dilation and --batch-groups are conv_general's: for --op conv "
                                "(a transposed conv is --lhs-dilation with stride 1)")
        if getattr(ns, "padding_mode", "zeros") != "zeros":
            raise ArgumentError("--padding-mode is not defined with --lhs-dilation or --batch-groups")
        if ns.groups != 1 and ns.batch_groups != 1:  # before the channel checks, which assume one
            raise ArgumentError(f"--feature-groups={ns.groups} and --batch-groups={ns.batch_groups}: at most "
                                "one may be > 1 (as in conv_general and JAX)")
        try:
            g = ConvGeometry.for_general(  # VALID: no pads, also with input dilation (as JAX)
                x, w, stride=ns.stride, padding=0 if ns.padding == "valid" else ns.padding,
                lhs_dilation=ns.lhs_dilation,
                rhs_dilation=ns.dilation, feature_group_count=ns.groups,
                batch_group_count=ns.batch_groups, data_format=fmt)
        except (ValueError, TypeError) as e:  # the core's names -> the options'
            hint = "; write pads such as --padding 1 or --padding 1:1,0:2" if "string padding" in str(e) \
                else ""
            raise ArgumentError(_option_names(str(e)) + hint) from None
        if 0 in g.out_spatial:
            raise ArgumentError(f"the output {dims(g.y_shape(fmt))} is empty: the kernel spans more than "
                                "the padded, input-dilated x")
        return g
    if not transpose:
        return ConvGeometry.for_conv(x, w, **kw)
    out = ns.output_shape
    if out is not None and len(out) == len(x) - 2:  # spatial sizes: add batch and channels
        c = (w[1] if fmt == "channels_first" else w[-2]) * ns.groups
        out = (x[0], c, *out) if fmt == "channels_first" else (x[0], *out, c)
    g = ConvGeometry.for_transpose(x, w, output_padding=ns.output_padding or 0, output_shape=out, **kw)
    if 0 in g.in_spatial:
        raise ArgumentError(f"the transposed conv's output {dims(g.x_shape(fmt))} is empty")
    return g


def is_general(ns: argparse.Namespace) -> bool:
    """Whether conv_general's own options (input dilation, batch groups) are set."""
    lhs = getattr(ns, "lhs_dilation", 1)
    return any(v != 1 for v in (lhs if isinstance(lhs, tuple) else (lhs,))) or getattr(
        ns, "batch_groups", 1) != 1


# The core's parameter names in its messages, as the command spells them.
OPTION_NAMES = {"lhs_dilation": "--lhs-dilation", "rhs_dilation": "--dilation",
                "feature_group_count": "--feature-groups", "batch_group_count": "--batch-groups"}


def _option_names(message: str) -> str:
    for name, option in OPTION_NAMES.items():
        message = re.sub(rf"\b{name}\b", option, message)
    return message


def _channels_match(ns: argparse.Namespace, fmt: str) -> bool:
    """Whether x's and w's channel counts agree when read in ``fmt`` (which reading an error is about)."""
    x, w = shapes(ns, fmt)
    if len(x) != len(w) or len(x) < 3:
        return False
    first = fmt == "channels_first"
    if getattr(ns, "op", "conv") == "transpose":
        return x[1 if first else -1] == w[0 if first else -1]
    return x[1 if first else -1] == w[1 if first else -2] * (ns.groups or 1)


def resolve_layout(ns: argparse.Namespace) -> None:
    """Set ``ns.data_format`` where --layout was not given, and ``ns.layout_source`` (why that one):
    the seed's example is channels-last; otherwise the layout the shapes fit; where both fit,
    channels_first, the library's default, with a warning on stderr."""
    if getattr(ns, "layout_source", None):
        return
    if ns.data_format is not None:
        ns.layout_source = "given by --layout"
        return
    if ns.x is None:
        ns.data_format, ns.layout_source = "channels_last", "the seed note's example"
        return

    def fits(fmt: str) -> bool:
        try:
            geometry_of(ns, fmt)
        except (ValueError, TypeError):
            return False
        return True

    fit = [fmt for fmt in ("channels_first", "channels_last") if fits(fmt)]
    if len(fit) == 1:
        ns.data_format, ns.layout_source = fit[0], "the only layout these shapes fit"
    elif fit:
        ns.data_format = "channels_first"
        ns.layout_source = "both layouts fit these shapes: channels_first, the library's default"
        rank = len(ns.x) - 2
        given = f"--x {dims(ns.x)}" + (f" and --w {dims(ns.w)}" if ns.w is not None else "")
        first, last = (layout_names(fmt, rank)[0] for fmt in ("channels_first", "channels_last"))
        print(f"convgrad {getattr(ns, 'command', '') or ''}: warning: {given} fit both layouts; read as "
              f"channels_first ({first}, the library's default); pass --layout channels_last to read them "
              f"as {last}", file=sys.stderr)
    else:  # no reading works: report the one whose channels agree (its error is about the rest)
        ns.data_format = "channels_last" if _channels_match(ns, "channels_last") and not _channels_match(
            ns, "channels_first") else "channels_first"
        ns.layout_source = "neither layout fits"


def padding_hint(ns: argparse.Namespace, rank: int) -> str:
    """For pads whose count does not match the rank, the spelling the user likely meant: '1,2:0,1'
    (',' and ':' swapped) -> '1:2,0:1'."""
    if not isinstance(ns.padding, list) or len(ns.padding) == rank:
        return ""
    text = _compact(ns.padding)
    if ":" not in text:
        return ""
    swapped = text.translate(str.maketrans(",:", ":,"))
    try:
        pads = parse_padding_arg(swapped)
    except argparse.ArgumentTypeError:
        return ""
    if isinstance(pads, list) and len(pads) == rank and all(isinstance(p, tuple) for p in pads):
        return f"; did you mean --padding={swapped} (before:after per dim, dims separated by ',')?"
    return ""


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
    op: str = "conv"
    bias: bool = True
    layout_source: str = ""
    given_x_shape: tuple[int, ...] = ()  # --op transpose: conv_transpose's own x (the conv's dy)
    spec: dict[str, Any] = field(default_factory=dict)  # stride, padding, ... as the user gave them

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> GeometryArgs:
        resolve_layout(ns)
        fmt = ns.data_format
        try:
            geom = geometry_of(ns, fmt)
        except (ValueError, TypeError) as e:
            raise ArgumentError(f"{e}{padding_hint(ns, len(shapes(ns)[0]) - 2)}") from None
        op = "general" if is_general(ns) else getattr(ns, "op", "conv")
        x_shape, w_shape = shapes(ns)
        kwargs = {"stride": ns.stride, "padding": ns.padding, "dilation": ns.dilation,
                  "groups": ns.groups, "data_format": fmt}
        if op == "general":  # y = conv_general(x, w): no bias
            kwargs.update(lhs_dilation=ns.lhs_dilation, batch_groups=ns.batch_groups)
            ns.bias = False
        given, spec = (), dict(kwargs)
        if op == "transpose":  # the forward conv: x is the transposed conv's output, its pads explicit
            given, x_shape = x_shape, geom.x_shape(fmt)
            kwargs = {**kwargs, "stride": geom.stride, "padding": list(geom.padding)}
        mode = getattr(ns, "padding_mode", "zeros")
        if mode != "zeros":  # the core's limits (reflect: each pad below the axis size, ...)
            try:
                PadMap.build(mode, geom)
            except ValueError as e:
                raise ArgumentError(f"--padding-mode {mode}: {e}") from None
            kwargs["padding_mode"] = mode
        try:
            dtype = dtype_named("--dtype", ns.dtype)
        except TypeError as e:  # bfloat16 without ml_dtypes
            raise ArgumentError(str(e)) from None
        return cls(x_shape, w_shape, kwargs, dtype, ns.seed, geom, op, ns.bias,
                   ns.layout_source, given, spec)

    @property
    def data_format(self) -> str:
        return self.kwargs["data_format"]

    @property
    def padding_mode(self) -> str:
        return self.kwargs.get("padding_mode", "zeros")

    @property
    def layouts(self) -> tuple[str, str]:
        """('NHWC', 'HWIO') and the like."""
        return layout_names(self.data_format, self.geometry.rank)

    def title(self) -> str:
        """One line: shapes, layouts, stride, padding, dilation, groups, dtype -> y, and which layout
        was assumed (and why)."""
        g, kw = self.geometry, self.spec or self.kwargs
        xl, wl = self.layouts
        transpose = self.op == "transpose"
        x = self.given_x_shape if transpose else self.x_shape
        parts = [f"x {dims(x)} {xl}", f"w {dims(self.w_shape)} {wl}",
                 f"stride {_compact(kw['stride'])}", f"padding {_compact(kw['padding'])}"]
        if g.rhs_dilation != (1,) * g.rank:
            parts.append(f"dilation {_compact(kw['dilation'])}")
        if kw["groups"] != 1:
            parts.append(f"groups {kw['groups']}")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode {self.padding_mode}")
        if self.op == "general":
            parts += [f"lhs_dilation {_compact(kw['lhs_dilation'])}", f"batch_groups {kw['batch_groups']}"]
        y = self.x_shape if transpose else g.y_shape(self.data_format)
        text = {"transpose": "conv_transpose: ", "general": "conv_general: "}.get(self.op, "") \
            + " · ".join(parts) + f" → y {dims(y)}; {self.dtype}"
        if transpose:
            text += f" (the input gradient of the conv of x {dims(self.x_shape)} → {dims(x)} below)"
        return text + (f" [{self.data_format}: {self.layout_source}]" if self.layout_source else "")


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
        "padding": [list(p) for p in g.padding], "padding_mode": args.padding_mode,
        "seed": args.seed, "op": args.op, "bias": args.bias,
        "layout_source": args.layout_source,
        **({"transpose_x_shape": list(args.given_x_shape)} if args.op == "transpose" else {}),
        **({"lhs_dilation": list(g.lhs_dilation), "batch_groups": g.batch_group_count}
           if args.op == "general" else {}),
    }
