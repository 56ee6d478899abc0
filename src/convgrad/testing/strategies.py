"""Hypothesis strategies for random valid conv geometries, in convgrad's convention or in a
framework's (PyTorch, TensorFlow, JAX, ONNX), with arrays to match.

``conv_examples(convention, op)`` draws a ``ConvExample``: the positional arguments and keywords
of that framework's call (``torch.nn.functional.convNd``, ``torch.nn.grad.convNd_input`` /
``convNd_weight``, ``tf.nn.convolution``, ``tf.compat.v1.nn.conv2d_backprop_input`` / ``_filter``,
``jax.lax.conv_general_dilated``, ONNX ``Conv``'s inputs and attributes, or convgrad's own),
with NumPy arrays, and ``expected()``: convgrad's result. Only geometries the framework accepts
are drawn (TensorFlow: string padding, no groups, no stride with dilation, no dilated gradients;
ONNX: pads >= 0; PyTorch: symmetric pads, 'same' at stride 1). The building blocks (``windows``, ``paddings``,
``channels``, ``spelled``) are the ones convgrad's own tests draw their geometries with.

Sizes stay small (a few samples per dim, up to 3 channels per group) so that a loop reference is
quick. Needs hypothesis: ``pip install "convgrad[testing]"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

try:
    from hypothesis import assume
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - exercised without the extra
    raise ImportError('convgrad.testing.strategies needs hypothesis: pip install "convgrad[testing]"') \
        from None

from .._geometry import ConvGeometry
from .._ops import conv, conv_filter_grad, conv_input_grad

__all__ = ["CONVENTIONS", "OPS", "PADDING_KINDS", "ConvExample", "channels", "conv_examples",
           "general_channels", "paddings", "spelled", "windows"]
__dir__ = __all__.copy  # dir() lists the API only

CONVENTIONS = ("convgrad", "torch", "tf", "jax", "onnx")
OPS = ("conv", "input_grad", "filter_grad")
PADDING_KINDS = ("int", "per_dim", "pairs", "valid", "same", "same_lower", "full")
_GRAD_CONVENTIONS = ("convgrad", "torch", "tf")


def spelled(draw, values: tuple[int, ...]):
    """An int when every dim agrees (sometimes), else a tuple or a list: the spellings users write."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return draw(st.sampled_from([tuple, list]))(values)


def _string(draw, kind: str) -> str:
    return draw(st.sampled_from([kind, kind.upper(), kind.capitalize()]))


def _k_eff(k: int, d: int) -> int:
    return (k - 1) * d + 1


@st.composite
def windows(draw, rank: int, max_kernel: int = 4, max_stride: int = 3, max_dilation: int = 3):
    """(kernel, stride, dilation), one int per dim each."""
    ints = st.integers
    kernel = tuple(draw(ints(1, max_kernel)) for _ in range(rank))
    stride = tuple(draw(ints(1, max_stride)) for _ in range(rank))
    dilation = tuple(draw(ints(1, max_dilation)) for _ in range(rank))
    return kernel, stride, dilation


@st.composite
def paddings(draw, kernel, dilation, kinds=PADDING_KINDS, min_pad: int = -2, max_pad: int = 3):
    """(padding as a convgrad user spells it, the smallest input size per dim it accepts).

    Kinds: 'int', 'per_dim' (one int per dim), 'pairs' ((before, after) per dim, in
    [min_pad, max_pad]: negative crops), 'valid', 'same', 'same_lower', 'full'.
    """
    rank = len(kernel)
    keff = [_k_eff(k, d) for k, d in zip(kernel, dilation)]
    kind = draw(st.sampled_from(kinds))
    if kind in ("same", "same_lower", "full"):
        return _string(draw, kind), [1] * rank
    if kind == "valid":
        return _string(draw, kind), keff
    if kind == "int":
        p = draw(st.integers(0, 2))
        return p, [max(1, ke - 2 * p) for ke in keff]
    if kind == "per_dim":
        ps = tuple(draw(st.integers(0, 2)) for _ in range(rank))
        return draw(st.sampled_from([tuple, list]))(ps), [max(1, ke - 2 * p) for ke, p in zip(keff, ps)]
    entries, minimum = [], []
    for ke in keff:
        before, after = draw(st.integers(min_pad, max_pad)), draw(st.integers(min_pad, max_pad))
        if before == after and draw(st.booleans()):
            entries.append(before)  # an int entry among pairs: symmetric pad (or crop)
        else:
            entries.append((before, after))
        minimum.append(max(1, ke - before - after))  # a crop may reach into the other pad
    return entries, minimum


@st.composite
def channels(draw, max_groups: int = 3, grouped: bool = True):
    """(C_in, C_out, groups): plain, grouped, or depthwise with a channel multiplier."""
    mode = draw(st.sampled_from(["plain", "grouped", "depthwise"] if grouped else ["plain"]))
    if mode == "plain":
        return draw(st.integers(1, 3)), draw(st.integers(1, 3)), 1
    if mode == "grouped":
        g = draw(st.integers(2, max_groups))
        return g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2)), g
    c = draw(st.integers(1, 3))
    return c, c * draw(st.integers(1, 2)), c


@st.composite
def general_channels(draw, min_batch: int = 1):
    """(N, C_in, C_out, C_in / feature groups, feature groups, batch groups) for conv_general:
    feature groups, or batch groups (N a multiple of them), never both."""
    if draw(st.booleans()):
        fg = draw(st.integers(1, 3))
        c, o, n = fg * draw(st.integers(1, 2)), fg * draw(st.integers(1, 2)), draw(st.integers(min_batch, 2))
        return n, c, o, c // fg, fg, 1
    bg = draw(st.integers(1, 3))
    c, o, n = draw(st.integers(1, 2)), bg * draw(st.integers(1, 2)), bg * draw(st.integers(min_batch, 2))
    return n, c, o, c, 1, bg


@dataclass(frozen=True)
class ConvExample:
    """One drawn call: ``fn(*args, **kwargs)`` in ``convention``'s spelling should give
    ``expected()``. ``core`` holds convgrad's keywords for the same geometry (``x_shape``,
    ``w_shape`` and the call's keywords, in ``core['data_format']``)."""

    convention: str
    op: str
    args: tuple
    kwargs: dict
    core: dict = field(repr=False)
    arrays: dict = field(repr=False)  # x, w, dy in the convention's layout

    def expected(self) -> np.ndarray:
        """convgrad's result for this call."""
        kw = {k: v for k, v in self.core.items() if k not in ("x_shape", "w_shape", "general")}
        a = self.arrays
        if self.core.get("general"):
            from .._general import conv_general

            return conv_general(a["x"], a["w"], **kw)
        if self.op == "input_grad":
            return conv_input_grad(a["dy"], a["w"], self.core["x_shape"], **kw)
        if self.op == "filter_grad":
            return conv_filter_grad(a["x"], a["dy"], self.core["w_shape"], **kw)
        return conv(a["x"], a["w"], **kw)

    def describe(self) -> str:
        """The call, with shapes for arrays: what to paste into a bug report."""
        def show(v: object) -> str:
            return f"array{np.shape(v)}" if isinstance(v, np.ndarray) else repr(v)

        args = [show(a) for a in self.args] + [f"{k}={show(v)}" for k, v in self.kwargs.items()]
        return f"{self.convention} {self.op}({', '.join(args)})"


def _ranks(convention: str, op: str, ranks) -> tuple[int, ...]:
    if convention == "tf" and op != "conv":
        return (2,)  # tf.nn.conv2d_backprop_input / _filter
    return tuple(ranks) if ranks is not None else (1, 2, 3)


def _kinds(convention: str, op: str, stride: tuple[int, ...]) -> tuple[str, ...]:
    if convention == "torch":
        if op != "conv":
            return ("int", "per_dim")
        return ("int", "per_dim", "valid", "same") if set(stride) == {1} else ("int", "per_dim", "valid")
    if convention == "tf":
        return ("valid", "same")
    if convention == "onnx":
        return ("int", "per_dim", "pairs", "valid", "same", "same_lower")
    return PADDING_KINDS


@st.composite
def conv_examples(draw, convention: str = "torch", op: str = "conv", ranks=None, dtype: object = np.float64):
    """A ``ConvExample`` of ``op`` ('conv', 'input_grad', 'filter_grad') in ``convention``
    ('convgrad', 'torch', 'tf', 'jax', 'onnx'; gradients: convgrad, torch, tf) for spatial ranks
    in ``ranks`` (default 1-3; TensorFlow's gradients are 2-D), arrays standard normal of ``dtype``.

    Examples
    --------
    >>> ex = conv_examples("torch").example()  # doctest: +SKIP
    >>> ex.describe()  # doctest: +SKIP
    'torch conv(array(2, 3, 7), array(2, 3, 2), stride=(2,), padding=(1,), dilation=(1,), groups=1)'
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r}; expected one of {CONVENTIONS}")
    if op not in OPS:
        raise ValueError(f"op={op!r}; expected one of {OPS}")
    if op != "conv" and convention not in _GRAD_CONVENTIONS:
        raise ValueError(f"op={op!r} has no call of its own in convention={convention!r}; "
                         f"gradients are drawn for {_GRAD_CONVENTIONS}")
    dt = np.dtype(dtype)
    rank = draw(st.sampled_from(_ranks(convention, op, ranks)))
    if convention == "jax":
        return draw(_jax_example(rank, dt))
    small = rank >= 3
    kernel, stride, dilation = draw(windows(rank, max_kernel=3 if small else 4,
                                            max_dilation=2 if small else 3))
    if convention == "tf" and op != "conv":
        dilation = (1,) * rank  # TensorFlow's CPU backprop ops refuse dilations
    if convention == "tf" and max(dilation) > 1:
        stride = (1,) * rank  # TensorFlow refuses a stride with a dilation
    padding, minimum = draw(paddings(kernel, dilation, _kinds(convention, op, stride),
                                     min_pad=0 if convention == "onnx" else -2))
    spatial = tuple(m + draw(st.integers(0, 2 if small else 3)) for m in minimum)
    c, o, g = draw(channels(grouped=convention != "tf"))
    n = draw(st.integers(1, 2))
    last = convention == "tf" or (convention == "convgrad" and draw(st.booleans()))
    fmt = "channels_last" if last else "channels_first"
    x_shape = (n, *spatial, c) if last else (n, c, *spatial)
    w_shape = (*kernel, c // g, o) if last else (o, c // g, *kernel)
    try:
        geom = ConvGeometry.for_conv(x_shape, w_shape, stride=stride, padding=padding, dilation=dilation,
                                     groups=g, data_format=fmt)
    except ValueError:  # a crop larger than the input: rare, rejected
        assume(False)
    pairs = geom.padding
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x, w = (rng.standard_normal(s).astype(dt) for s in (x_shape, w_shape))
    dy = rng.standard_normal(geom.y_shape(fmt)).astype(dt)
    core = {"x_shape": x_shape, "w_shape": w_shape, "stride": stride, "padding": pairs,
            "dilation": dilation, "groups": g, "data_format": fmt}
    arrays = {"x": x, "w": w, "dy": dy}
    kind = padding.lower() if isinstance(padding, str) else None

    if convention == "convgrad":
        kw = {"stride": spelled(draw, stride), "padding": padding, "dilation": spelled(draw, dilation),
              "groups": g, "data_format": fmt}
        args = {"conv": (x, w), "input_grad": (dy, w, x_shape), "filter_grad": (x, dy, w_shape)}[op]
        return ConvExample(convention, op, args, kw, core, arrays)
    if convention == "torch":
        kw = {"stride": stride, "padding": kind or tuple(p for p, _ in pairs), "dilation": dilation,
              "groups": g}
        args = {"conv": (x, w), "input_grad": (x_shape, w, dy), "filter_grad": (x, w_shape, dy)}[op]
        return ConvExample(convention, op, args, kw, core, arrays)
    if convention == "tf":
        kw = {"strides": list(stride), "padding": kind.upper(), "dilations": list(dilation)}
        args = {"conv": (x, w), "input_grad": (list(x_shape), w, dy),
                "filter_grad": (x, list(w_shape), dy)}[op]
        return ConvExample(convention, op, args, kw, core, arrays)
    # ONNX Conv: pads are all the begins, then all the ends; SAME_* and VALID are auto_pad.
    kw = {"kernel_shape": list(kernel), "strides": list(stride), "dilations": list(dilation), "group": g}
    if kind:
        kw["auto_pad"] = {"valid": "VALID", "same": "SAME_UPPER", "same_lower": "SAME_LOWER"}[kind]
    else:
        kw["pads"] = [lo for lo, _ in pairs] + [hi for _, hi in pairs]
    return ConvExample(convention, op, (x, w), kw, core, arrays)


@st.composite
def _jax_example(draw, rank: int, dt: np.dtype):
    """lax.conv_general_dilated: input and kernel dilation, stride, pads (negative included),
    feature or batch groups; string padding only without input dilation. NCHW / OIHW."""
    small = rank >= 3
    kernel, stride, rhs = draw(windows(rank, max_kernel=2 if small else 3, max_dilation=2 if small else 3))
    lhs = tuple(draw(st.integers(1, 2 if small else 3)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 3 if small else 5)) for _ in range(rank))
    if all(v == 1 for v in lhs) and draw(st.booleans()):
        padding = draw(st.sampled_from(["VALID", "SAME", "SAME_LOWER"]))
    else:
        padding = [(draw(st.integers(-3, 3)), draw(st.integers(-3, 3))) for _ in range(rank)]
    n, c, o, cw, fg, bg = draw(general_channels())
    x_shape, w_shape = (n, c, *spatial), (o, cw, *kernel)
    core = {"x_shape": x_shape, "w_shape": w_shape, "stride": stride, "padding": padding,
            "lhs_dilation": lhs, "rhs_dilation": rhs, "feature_group_count": fg, "batch_group_count": bg,
            "general": True}
    try:
        geom = ConvGeometry.for_general(x_shape, w_shape, **{k: v for k, v in core.items()
                                                               if k not in ("x_shape", "w_shape", "general")})
    except ValueError:
        assume(False)
    assume(not geom.empty)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x, w = (rng.standard_normal(s).astype(dt) for s in (x_shape, w_shape))
    kw = {"window_strides": stride, "padding": padding, "lhs_dilation": lhs, "rhs_dilation": rhs,
          "feature_group_count": fg, "batch_group_count": bg}
    return ConvExample("jax", "conv", (x, w), kw, core, {"x": x, "w": w})
