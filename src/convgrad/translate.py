"""The same convolution in another framework's terms: ``translate(src, dst, op, ...)``.

Give a conv or transposed conv as one framework writes it (its own parameter names and padding
rules, spatial sizes only); get the equivalent call in another framework, or, where no
arguments of that call express it, ``expressible=False`` and a workaround: an explicit pad or
crop around a call that does exist. The classic case: TensorFlow's SAME transposed conv puts the
odd pad sample at the end, and PyTorch's symmetric ``padding`` with ``output_padding`` (which
only adds at the end) cannot say that; the answer is a transposed conv without padding, then
``F.pad`` with negative pads to crop it.

Every conv is read as the forward conv it is or transposes: per axis an input size, a kernel
size ``k``, a stride ``s``, a dilation ``d`` and the forward conv's (before, after) pads. The
parameters each framework takes (spatial values; strides and dilations as an int or one per
axis):

=========  =============================================================================
tf         ``strides``, ``dilations``, ``padding`` ('SAME', 'VALID' or (before, after) pairs),
           ``output_shape`` (transposed; the spatial sizes), ``groups``
torch      ``stride``, ``dilation``, ``padding`` (int, ints, 'same', 'valid'),
           ``output_padding`` (transposed), ``groups``
onnx       ``strides``, ``dilations``, ``pads`` ([b1.., e1..]), ``auto_pad``,
           ``output_padding``, ``output_shape`` (transposed), ``group``
jax        ``window_strides`` (conv) or ``strides`` (conv_transpose), ``rhs_dilation``,
           ``padding`` ('SAME', 'SAME_LOWER', 'VALID' or pairs; for ``conv_transpose`` pairs
           are the transposed conv's own pads unless ``use_consistent_padding=True``),
           ``feature_group_count``
=========  =============================================================================

The answer's ``filter_layout`` is the ``(src, dst)`` pair for ``convgrad.layouts.convert_filter``
and ``input_layout`` the data layout the target call expects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import _canon
from ._formulas import dilate_dim, same_total_pad, transpose_size
from ._geometry import ConvGeometry
from ._padding import parse_padding
from .layouts import filter_layout

__all__ = ["FRAMEWORKS", "Translation", "translate"]

FRAMEWORKS = ("tf", "torch", "onnx", "jax")
OPS = ("conv", "conv_transpose")
_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}

_PARAMS = {
    ("tf", "conv"): {"strides", "dilations", "padding", "groups"},
    ("tf", "conv_transpose"): {"strides", "dilations", "padding", "output_shape", "groups"},
    ("torch", "conv"): {"stride", "dilation", "padding", "groups"},
    ("torch", "conv_transpose"): {"stride", "dilation", "padding", "output_padding", "groups"},
    ("onnx", "conv"): {"strides", "dilations", "pads", "auto_pad", "group"},
    ("onnx", "conv_transpose"): {"strides", "dilations", "pads", "auto_pad", "output_padding",
                                 "output_shape", "group"},
    ("jax", "conv"): {"window_strides", "rhs_dilation", "padding", "feature_group_count"},
    ("jax", "conv_transpose"): {"strides", "rhs_dilation", "padding", "use_consistent_padding",
                                "feature_group_count"},
}


@dataclass(frozen=True)
class Translation:
    """The target call: ``target(x, w, **kwargs)``, or ``expressible=False`` with ``workaround``.

    Attributes
    ----------
    target : str
        The function (or ONNX operator) that computes the conv in the destination framework.
    kwargs : mapping or None
        Its keyword arguments, None when no arguments express the conv directly. For
        TensorFlow's transposed convs ``output_shape`` holds the spatial sizes (``conv2d_transpose``
        takes them as they are; 1-d and 3-d want ``[N, *spatial, C_out]``).
    expressible : bool
    workaround : str
        Empty when expressible; otherwise Python code (for tf, torch and jax; names ``x``, ``w``,
        ``tf``, ``F`` = torch.nn.functional, ``lax`` = jax.lax) or, for ONNX, the nodes to add.
    reason : str
        Why the call's own arguments cannot express it ('' when they can).
    filter_layout : (str, str)
        ``convert_filter(w, *filter_layout)`` turns the source filter into the target's.
    input_layout : str
        The layout of x the target call expects.
    """

    target: str
    kwargs: Mapping[str, Any] | None = field(hash=False)
    expressible: bool
    workaround: str
    reason: str
    filter_layout: tuple[str, str]
    input_layout: str

    def __str__(self) -> str:
        note = f"  # x: {self.input_layout}; w: convert_filter(w, {self.filter_layout[0]!r}, " \
               f"{self.filter_layout[1]!r})"
        if self.kwargs is not None:
            args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
            return f"{self.target}(x, w, {args})\n{note}"
        return f"# {self.target} cannot express this directly: {self.reason}\n{self.workaround}\n{note}"


@dataclass(frozen=True)
class _Conv:
    """Canonical form: the forward conv (for a transposed conv, the one it transposes)."""

    op: str
    n: tuple[int, ...]  # the forward conv's input size (a transposed conv's output size)
    o: tuple[int, ...]  # the forward conv's output size (a transposed conv's input size)
    k: tuple[int, ...]
    s: tuple[int, ...]
    d: tuple[int, ...]
    before: tuple[int, ...]  # the forward conv's pad before (negative crops)
    after: tuple[int, ...]  # tight: the last window ends on the last padded sample
    groups: int

    @property
    def rank(self) -> int:
        return len(self.k)

    @property
    def keff(self) -> tuple[int, ...]:
        return tuple(dilate_dim(k, d) for k, d in zip(self.k, self.d))


def translate(src: str, dst: str, op: str = "conv", *, input_size: object, kernel_size: object,
              **params: Any) -> Translation:
    """The conv ``src`` describes, as ``dst`` calls it.

    Parameters
    ----------
    src, dst : 'tf', 'torch', 'onnx' or 'jax'
    op : 'conv' or 'conv_transpose'
    input_size : int or one per spatial dim
        Spatial size of the op's input (for a transposed conv, its input, the smaller one).
    kernel_size : int or one per spatial dim
    **params : the source framework's own parameters (see the module docstring)

    Examples
    --------
    >>> t = translate("tf", "torch", "conv_transpose", input_size=(4, 4), kernel_size=3,
    ...               strides=2, padding="SAME", output_shape=(8, 8))
    >>> t.expressible
    False
    >>> print(t.workaround)
    y = F.pad(F.conv_transpose2d(x, w, stride=(2, 2), dilation=(1, 1), groups=1), [0, -1, 0, -1])
    """
    for name, value in (("src", src), ("dst", dst)):
        if value not in FRAMEWORKS:
            raise ValueError(f"unknown {name}={value!r}; expected one of {FRAMEWORKS}")
    if op not in OPS:
        raise ValueError(f"unknown op={op!r}; expected one of {OPS}")
    unknown = set(params) - _PARAMS[src, op]
    if unknown:
        raise TypeError(
            f"{src} {op} takes {sorted(_PARAMS[src, op])}, not {sorted(unknown)}"
        )
    ranks = [len(v) for v in (input_size, kernel_size) if hasattr(v, "__len__")]  # type: ignore[arg-type]
    rank = ranks[0] if ranks else 1
    if rank not in (1, 2, 3):
        raise ValueError(f"input_size={input_size!r}: 1 to 3 spatial dims")
    k = _sizes("kernel_size", kernel_size, rank)
    conv = _READERS[src](op, _sizes("input_size", input_size, rank), k, params)
    answer = _WRITERS[dst](conv)
    layouts = (filter_layout(src, op, conv.rank), filter_layout(dst, op, conv.rank))
    return dataclasses.replace(answer, filter_layout=layouts)


# --- reading each framework ---------------------------------------------------------------------
def _sizes(name: str, value: object, rank: int) -> tuple[int, ...]:
    return _canon.int_tuple(name, value, rank, minimum=1)


def _ints(name: str, value: object, rank: int, default: int = 1) -> tuple[int, ...]:
    return _canon.int_tuple(name, default if value is None else value, rank, minimum=1)


def _groups(value: object) -> int:
    return _canon.positive_int("groups", 1 if value is None else value)


def _forward(op: str, n: tuple[int, ...], o: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...],
             d: tuple[int, ...], before: tuple[int, ...], groups: int) -> _Conv:
    after = tuple((oi - 1) * si + dilate_dim(ki, di) - ni - b
                  for oi, si, ki, di, ni, b in zip(o, s, k, d, n, before))
    return _Conv(op, n, o, k, s, d, tuple(before), after, groups)


def _conv_from_pads(n: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], d: tuple[int, ...],
                    padding: object, groups: int) -> _Conv:
    pads = parse_padding(padding, len(k)).resolve(n, k, s, d)
    geom = ConvGeometry(1, groups, groups, n, k, s, pads, (1,) * len(k), d, groups).require_nonempty()
    return _forward("conv", n, geom.out_spatial, k, s, d, tuple(p[0] for p in pads), groups)


def _transpose_from_output(o: tuple[int, ...], n: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...],
                           d: tuple[int, ...], padding: object, groups: int, who: str) -> _Conv:
    """A transposed conv of input ``o`` whose output ``n`` is given, with the forward conv's
    padding spec: check that the forward conv maps ``n`` back to ``o``."""
    spec = parse_padding(padding, len(k))
    for i, (size, (lo, hi)) in enumerate(zip(n, spec.input_size_range(o, k, s, d))):
        if not lo <= size <= hi:
            raise ValueError(
                f"{who}: output size {size} in dim {i} is unreachable: the forward conv maps "
                f"{lo}..{hi} to {o[i]}"
            )
    before = tuple(p[0] for p in spec.resolve(n, k, s, d))
    return _forward("conv_transpose", n, o, k, s, d, before, groups)


def _read_tf(op: str, size: tuple[int, ...], k: tuple[int, ...], p: dict) -> _Conv:
    rank = len(k)
    s, d = _tf_seq("strides", p.get("strides"), rank), _tf_seq("dilations", p.get("dilations"), rank)
    padding = p.get("padding", "VALID")
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"tf padding must be 'SAME', 'VALID' or pairs, got {padding!r}")
        spec: object = padding.lower()
    else:
        pairs = [list(pair) for pair in padding]
        if len(pairs) == rank + 2:  # channels-last N + 2 form: drop batch and channels
            if any(pairs[0]) or any(pairs[-1]):
                raise ValueError(f"tf padding={padding}: batch and channel pads must be zero")
            pairs = pairs[1:-1]
        if any(v < 0 for pair in pairs for v in pair):
            raise ValueError(f"tf padding={padding}: TensorFlow's explicit pads are non-negative")
        spec = pairs
    g = _groups(p.get("groups"))
    if op == "conv":
        return _conv_from_pads(size, k, s, d, spec, g)
    out = p.get("output_shape")
    if out is None:
        raise TypeError("tf conv_transpose needs output_shape (its spatial sizes)")
    return _transpose_from_output(size, _sizes("output_shape", out, rank), k, s, d, spec, g, "tf")


def _tf_seq(name: str, value: object, rank: int) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)) and len(value) == rank + 2 and rank + 2 != 1:
        value = value[1:-1]  # channels-last N + 2 form
    return _ints(name, value, rank)


def _read_torch(op: str, size: tuple[int, ...], k: tuple[int, ...], p: dict) -> _Conv:
    rank = len(k)
    s, d = _ints("stride", p.get("stride"), rank), _ints("dilation", p.get("dilation"), rank)
    g = _groups(p.get("groups"))
    padding = p.get("padding", 0)
    if op == "conv":
        if padding == "same":
            if any(v != 1 for v in s):
                raise ValueError("torch padding='same' is not supported for strided convolutions")
            spec: object = "same"  # stride 1: total d (k - 1), extra on the right, as TF's SAME
        elif padding == "valid":
            spec = "valid"
        else:
            spec = _canon.int_tuple("padding", padding, rank, minimum=0)
        return _conv_from_pads(size, k, s, d, spec, g)
    pads = _canon.int_tuple("padding", padding, rank, minimum=0)
    op_ = _canon.int_tuple("output_padding", p.get("output_padding", 0), rank, minimum=0)
    if any(a >= max(b, c) for a, b, c in zip(op_, s, d)):
        raise ValueError(f"torch output_padding={op_} must be smaller than max(stride, dilation)")
    n = tuple(transpose_size(o, dilate_dim(ki, di), si, pi, pi, q)
              for o, ki, di, si, pi, q in zip(size, k, d, s, pads, op_))
    if any(v < 1 for v in n):
        raise ValueError(f"torch conv_transpose: output size {n} is too small")
    return _forward("conv_transpose", n, size, k, s, d, pads, g)


def _read_onnx(op: str, size: tuple[int, ...], k: tuple[int, ...], p: dict) -> _Conv:
    rank = len(k)
    s, d = _ints("strides", p.get("strides"), rank), _ints("dilations", p.get("dilations"), rank)
    g = _groups(p.get("group"))
    auto_pad = p.get("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ValueError(f"onnx auto_pad={auto_pad!r} is not NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    pads = p.get("pads")
    if pads is not None and auto_pad != "NOTSET":
        raise ValueError(f"onnx: pads={pads} cannot be used with auto_pad={auto_pad!r}")
    flat = [0] * (2 * rank) if pads is None else [_canon.as_int("pads", v) for v in pads]
    if len(flat) != 2 * rank or any(v < 0 for v in flat):
        raise ValueError(f"onnx pads={pads} must be {2 * rank} non-negative ints [b1.., e1..]")
    keff = tuple(dilate_dim(ki, di) for ki, di in zip(k, d))
    if op == "conv":
        spec: object = {"SAME_UPPER": "same", "SAME_LOWER": "same_lower", "VALID": "valid"}.get(
            auto_pad, list(zip(flat[:rank], flat[rank:]))
        )
        return _conv_from_pads(size, k, s, d, spec, g)
    op_ = _canon.int_tuple("output_padding", p.get("output_padding", 0), rank, minimum=0)
    out = p.get("output_shape")
    if out is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # The spec's auto-generated pads: total = s (i - 1) + output_padding + k_eff - out,
        # the odd sample at the end for SAME_UPPER, at the start otherwise.
        n = _sizes("output_shape", out, rank) if out is not None else tuple(o * si for o, si in zip(size, s))
        total = [si * (o - 1) + q + ke - ni for si, o, q, ke, ni in zip(s, size, op_, keff, n)]
        before = tuple(t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total)
        return _forward("conv_transpose", n, size, k, s, d, before, g)
    before, end = flat[:rank], flat[rank:]
    n = tuple(transpose_size(o, ke, si, b, e, q)
              for o, ke, si, b, e, q in zip(size, keff, s, before, end, op_))
    if any(v < 1 for v in n):
        raise ValueError(f"onnx ConvTranspose: output size {n} is not positive")
    return _forward("conv_transpose", n, size, k, s, d, tuple(before), g)


def _read_jax(op: str, size: tuple[int, ...], k: tuple[int, ...], p: dict) -> _Conv:
    rank = len(k)
    s = _ints("strides", p.get("window_strides" if op == "conv" else "strides"), rank)
    d = _ints("rhs_dilation", p.get("rhs_dilation"), rank)
    g = _groups(p.get("feature_group_count"))
    padding = p.get("padding", "VALID")
    if op == "conv":
        if isinstance(padding, str) and padding not in ("SAME", "SAME_LOWER", "VALID"):
            raise ValueError(f"jax padding={padding!r} is not 'SAME', 'SAME_LOWER' or 'VALID'")
        spec = padding.lower() if isinstance(padding, str) else [tuple(pair) for pair in padding]
        return _conv_from_pads(size, k, s, d, spec, g)
    keff = [dilate_dim(ki, di) for ki, di in zip(k, d)]
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"jax conv_transpose padding={padding!r} is not 'SAME' or 'VALID'")
        lo_hi = [_jax_transpose_padding(ke, si, padding) for ke, si in zip(keff, s)]
    elif p.get("use_consistent_padding", False):
        lo_hi = [(ke - 1 - a, ke - 1 - b) for ke, (a, b) in zip(keff, padding)]
    else:
        lo_hi = [tuple(pair) for pair in padding]
    # The lhs-dilated conv: pads (lo, hi) around the input spread s apart, kernel k_eff.
    n = tuple(dilate_dim(o, si) + lo + hi - ke + 1 for o, si, (lo, hi), ke in zip(size, s, lo_hi, keff))
    if any(v < 1 for v in n):
        raise ValueError(f"jax conv_transpose: output size {n} is not positive")
    before = tuple(ke - 1 - lo for ke, (lo, _) in zip(keff, lo_hi))
    return _forward("conv_transpose", n, size, k, s, d, before, g)


def _jax_transpose_padding(keff: int, s: int, padding: str) -> tuple[int, int]:
    """jax.lax's _conv_transpose_padding for 'SAME' / 'VALID' (the forward conv's padding)."""
    if padding == "SAME":
        total = keff + s - 2
        lo = keff - 1 if s > keff - 1 else -(-total // 2)
    else:
        total = keff + s - 2 + max(keff - s, 0)
        lo = keff - 1
    return lo, total - lo


_READERS = {"tf": _read_tf, "torch": _read_torch, "onnx": _read_onnx, "jax": _read_jax}


# --- writing each framework ---------------------------------------------------------------------
# A forward conv's after pad may be anything from the tight value (the last window ends on the
# last padded sample) to tight + s - 1 without changing it: each writer picks one in that range.
def _after(
    c: _Conv, want: tuple[int, ...] | None = None, *, non_negative: bool = False
) -> tuple[int, ...] | None:
    """Per axis: ``want`` if it is in range, else the smallest (non-negative) one; None if none."""
    out = []
    for i, (tight, s) in enumerate(zip(c.after, c.s)):
        if want is not None:
            if not tight <= want[i] <= tight + s - 1:
                return None
            out.append(want[i])
        else:
            a = max(tight, 0) if non_negative else tight
            if a > tight + s - 1:
                return None
            out.append(a)
    return tuple(out)


def _answer(target: str, kwargs: dict | None, workaround: str, reason: str, input_layout: str) -> Translation:
    return Translation(target, None if kwargs is None else MappingProxyType(kwargs), kwargs is not None,
                       workaround, reason, ("", ""), input_layout)


def _torch_pad(expr: str, pairs: list[tuple[int, int]]) -> str:
    """``F.pad`` of ``expr`` by per-axis (before, after) pads, negative ones cropping. F.pad's list
    runs last dim first; the pads go first and the crops second, so that no crop is larger than
    the tensor it applies to."""
    flat = [v for pair in reversed(pairs) for v in pair]
    for stage in ([max(v, 0) for v in flat], [min(v, 0) for v in flat]):
        if any(stage):
            expr = f"F.pad({expr}, {stage})"
    return expr


def _call(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _write_torch(c: _Conv) -> Translation:
    r = c.rank
    common = {"stride": c.s, "dilation": c.d, "groups": c.groups}
    layout = "NC" + _SPATIAL[r]
    if c.op == "conv":
        target = f"torch.nn.functional.conv{r}d"
        if all(b >= 0 for b in c.before) and _after(c, c.before) is not None:
            return _answer(target, {"stride": c.s, "padding": c.before, "dilation": c.d, "groups": c.groups},
                           "", "", layout)
        torch_same = [((ke - 1) // 2, ke - 1 - (ke - 1) // 2) for ke in c.keff]
        if all(v == 1 for v in c.s) and list(zip(c.before, c.after)) == torch_same:
            return _answer(target, {"stride": c.s, "padding": "same", "dilation": c.d, "groups": c.groups},
                           "", "", layout)
        pairs = list(zip(c.before, c.after))
        code = f"y = F.conv{r}d({_torch_pad('x', pairs)}, w, {_call(common)})"
        why = f"pads {tuple(pairs)} are not symmetric: PyTorch's padding pads both ends alike"
        return _answer(target, None, code, why, layout)
    target = f"torch.nn.functional.conv_transpose{r}d"
    full = [transpose_size(o, ke, s, 0, 0, 0) for o, ke, s in zip(c.o, c.keff, c.s)]
    op_ = tuple(ni - (f - 2 * b) for ni, f, b in zip(c.n, full, c.before))
    if all(b >= 0 for b in c.before) and all(0 <= q < max(s, d) for q, s, d in zip(op_, c.s, c.d)):
        return _answer(target, {"stride": c.s, "padding": c.before, "output_padding": op_,
                                "groups": c.groups, "dilation": c.d}, "", "", layout)
    crop = [(-b, ni - (f - b)) for b, ni, f in zip(c.before, c.n, full)]
    code = f"y = {_torch_pad(f'F.conv_transpose{r}d(x, w, {_call(common)})', crop)}"
    reason = (f"it would need padding={c.before} and output_padding={op_}: PyTorch crops `padding` "
              "from both ends, and output_padding must be in [0, max(stride, dilation))")
    return _answer(target, None, code, reason, layout)


def _write_tf(c: _Conv) -> Translation:
    r = c.rank
    layout = "N" + _SPATIAL[r] + "C"
    raw = r == 3  # Conv3D's raw op wants N + 2 values
    strides = [1, *c.s, 1] if raw else list(c.s)
    dilations = [1, *c.d, 1] if raw else list(c.d)
    same = all(b == same_total_pad(n, ke, s) // 2 and o == -(-n // s)
               for b, n, ke, s, o in zip(c.before, c.n, c.keff, c.s, c.o))
    valid = all(b == 0 for b in c.before) and _after(c, (0,) * r) is not None
    explicit = _after(c, non_negative=True) if r == 2 and all(b >= 0 for b in c.before) else None
    padding: object = "SAME" if same else "VALID" if valid else None
    if padding is None and explicit is not None:
        padding = [[0, 0], *[[b, a] for b, a in zip(c.before, explicit)], [0, 0]]
    why = f"the forward conv's pads (before {c.before}) are neither SAME nor VALID" + (
        " and only the 2-d ops take explicit pads" if r != 2 else " and explicit pads are non-negative"
    )
    if c.op == "conv":
        target = f"tf.nn.conv{r}d"
        stride_name = "stride" if r == 1 else "strides"
        if padding is not None:
            return _answer(target, {stride_name: strides, "padding": padding, "dilations": dilations},
                           "", "", layout)
        pairs = list(zip(c.before, c.after))
        crop = ", ".join(f"{max(-a, 0)}:{n - max(-b, 0)}" for (a, b), n in zip(pairs, c.n))
        tf_pads = [[0, 0], *[[max(a, 0), max(b, 0)] for a, b in pairs], [0, 0]]
        code = (f"y = tf.nn.conv{r}d(tf.pad(x[:, {crop}, :], {tf_pads}), w, {stride_name}={strides}, "
                f"padding='VALID', dilations={dilations})")
        return _answer(target, None, code, why, layout)
    target = f"tf.nn.conv{r}d_transpose"
    if padding is not None:
        return _answer(target, {"output_shape": c.n, "strides": strides, "padding": padding,
                                "dilations": dilations}, "", "", layout)
    full = [transpose_size(o, ke, s, 0, 0, 0) for o, ke, s in zip(c.o, c.keff, c.s)]
    # Sample j of the result is sample j + before of the full output, zero outside it.
    pads = [(max(-b, 0), max(b + ni - f, 0)) for b, ni, f in zip(c.before, c.n, full)]
    pad_end = [[0, 0], *[list(p) for p in pads], [0, 0]]
    crop = ", ".join(f"{b + lo}:{b + lo + ni}" for b, ni, (lo, _) in zip(c.before, c.n, pads))
    code = (f"y = tf.nn.conv{r}d_transpose(x, w, output_shape=[x.shape[0], {', '.join(map(str, full))}, "
            f"w.shape[-2]], strides={strides}, padding='VALID', dilations={dilations})\n"
            f"y = tf.pad(y, {pad_end})[:, {crop}, :]")
    return _answer(target, None, code, why, layout)


def _write_onnx(c: _Conv) -> Translation:
    r = c.rank
    layout = "NC" + _SPATIAL[r]
    common = {"kernel_shape": list(c.k), "strides": list(c.s), "dilations": list(c.d), "group": c.groups}
    if c.op == "conv":
        after = _after(c, non_negative=True)
        if all(b >= 0 for b in c.before) and after is not None:
            return _answer("onnx Conv", {**common, "pads": [*c.before, *after]}, "", "", layout)
        pads = (*c.before, *c.after)
        return _answer("onnx Conv", None,
                       f"Slice the input by {[max(-v, 0) for v in pads]} (starts, then ends), then Conv "
                       f"with pads={[max(v, 0) for v in pads]}", "ONNX pads are non-negative", layout)
    full = [transpose_size(o, ke, s, 0, 0, 0) for o, ke, s in zip(c.o, c.keff, c.s)]
    rest = [ni - (f - b) for ni, f, b in zip(c.n, full, c.before)]  # > 0: output_padding, < 0: end pad
    ends, op_ = [max(-v, 0) for v in rest], [max(v, 0) for v in rest]
    # The spec says output_padding is below "stride/dilation"; onnxruntime requires below stride.
    if all(b >= 0 for b in c.before) and all(q < s for q, s in zip(op_, c.s)):
        return _answer("onnx ConvTranspose", {**common, "pads": [*c.before, *ends], "output_padding": op_},
                       "", "", layout)
    return _answer("onnx ConvTranspose", None,
                   f"ConvTranspose with pads={[0] * 2 * r}, then Pad/Slice its output to start at "
                   f"{list(c.before)} with sizes {list(c.n)}",
                   "ONNX pads are non-negative and output_padding is below the stride", layout)


def _write_jax(c: _Conv) -> Translation:
    r = c.rank
    sp = _SPATIAL[r]
    if c.op == "conv":
        kwargs = {"window_strides": c.s, "padding": tuple(zip(c.before, c.after)), "rhs_dilation": c.d,
                  "feature_group_count": c.groups, "dimension_numbers": ("NC" + sp, "OI" + sp, "NC" + sp)}
        return _answer("jax.lax.conv_general_dilated", kwargs, "", "", "NC" + sp)
    # The transposed conv's own pads: those of the lhs-dilated conv it is.
    lo_hi = tuple((ke - 1 - b, ni + b - dilate_dim(o, s)) for ke, b, ni, o, s in
                  zip(c.keff, c.before, c.n, c.o, c.s))
    if c.groups == 1:
        kwargs = {"strides": c.s, "padding": lo_hi, "rhs_dilation": c.d, "transpose_kernel": True}
        return _answer("jax.lax.conv_transpose", kwargs, "", "", "N" + sp + "C")
    code = (f"y = lax.conv_general_dilated(x, w_flipped, window_strides={(1,) * r}, padding={lo_hi}, "
            f"lhs_dilation={c.s}, rhs_dilation={c.d}, feature_group_count={c.groups}, "
            f"dimension_numbers=('N{sp}C', '{sp}IO', 'N{sp}C'))  # w_flipped: w flipped in space, "
            "its in/out channels swapped within each group")
    return _answer("jax.lax.conv_transpose", None, code, "lax.conv_transpose has no groups", "N" + sp + "C")


_WRITERS = {"tf": _write_tf, "torch": _write_torch, "onnx": _write_onnx, "jax": _write_jax}
