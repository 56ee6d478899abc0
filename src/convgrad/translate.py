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
tf         ``strides``, ``dilations`` (or TF1's ``rate``, ``dilation_rate``), ``padding`` ('SAME',
           'VALID' or (before, after) pairs), ``output_shape`` or ``input_sizes`` (transposed;
           the spatial sizes or the whole shape), ``data_format`` ('NHWC' or 'NCHW', ...: which
           entries of the N + 2 forms are spatial), ``groups``; ``depthwise_conv2d`` and
           ``depthwise_conv2d_native`` take ``in_channels`` (the C of the (kh, kw, C, M) filter)
           for the groups, the filter read as ``'HWIM'``
torch      ``stride``, ``dilation``, ``padding`` (int, ints, 'same', 'valid'),
           ``output_padding`` (transposed), ``groups``
onnx       ``strides``, ``dilations``, ``pads`` ([b1.., e1..]), ``auto_pad``,
           ``output_padding``, ``output_shape`` (transposed), ``group``
jax        ``window_strides`` (conv) or ``strides`` (conv_transpose), ``rhs_dilation``,
           ``padding`` ('SAME', 'SAME_LOWER', 'VALID' or pairs; for ``conv_transpose`` pairs
           are the transposed conv's own pads unless ``use_consistent_padding=True``),
           ``feature_group_count``, ``lhs_dilation`` (conv: JAX's call, or x zero-inserted then
           the conv elsewhere; ONNX refused); ``dimension_numbers`` (three strings) give the
           source filter's layout (``filter_layout[0]``) and do not change the sizes;
           ``conv_transpose`` is read with ``transpose_kernel=True``
=========  =============================================================================

Every source also takes ``padding_mode`` (a conv's, in the source's spelling: PyTorch's
``padding_mode``, TensorFlow's ``tf.pad`` modes, ONNX's ``Pad`` modes, NumPy's for JAX): the answer
extends x by the destination's pad in that mode (a gather of each axis's indices where it has no
such mode) before a VALID conv, as runnable ``workaround`` code.

The answer's ``filter_layout`` is the ``(src, dst)`` pair for ``convgrad.layouts.convert_filter``
and ``input_layout`` the data layout the target call expects.
"""

from __future__ import annotations

import dataclasses
import re
from types import MappingProxyType
from typing import Any

from . import _frameworks
from ._frameworks._common import OPS, Translation, sizes
from .layouts import filter_layout

__all__ = ["FRAMEWORKS", "Translation", "translate"]
__dir__ = __all__.copy  # dir() lists the API only

FRAMEWORKS = _frameworks.with_("write")


def translate(src: str, dst: str, op: str = "conv", *, input_size: object, kernel_size: object,
              **params: Any) -> Translation:
    """The conv ``src`` describes, as ``dst`` calls it.

    Parameters
    ----------
    src, dst : 'tf', 'torch', 'onnx' or 'jax'
    op : 'conv' or 'conv_transpose', or the source's own op name ('conv2d', 'conv2d_transpose',
        'atrous_conv2d', 'conv2d_backprop_input', 'conv_transpose1d', 'conv_general_dilated',
        'ConvTranspose', ...)
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
    reader = _frameworks.module(src)
    names = getattr(reader, "OP_NAMES", {})
    if op not in OPS and op not in names:
        raise ValueError(f"unknown op={op!r}; expected one of {OPS} or {src}'s {sorted(names)}")
    depthwise = op in getattr(reader, "DEPTHWISE_OPS", ())
    if depthwise:  # the conv grouped by the input channels, which the sizes do not say
        if "groups" in params or params.get("in_channels") is None:
            raise TypeError(f"{src} {op}: give in_channels (the C of its (kh, kw, C, M) filter), not groups")
        channels = params.pop("in_channels")
        params["groups"] = channels
    op = names.get(op, op)
    mode = _mode(src, op, params.pop("padding_mode", None))
    lhs = params.pop("lhs_dilation", None) if (src, op) == ("jax", "conv") else None
    unknown = set(params) - reader.PARAMS[op]
    if unknown:
        raise TypeError(f"{src} {op} takes {sorted(reader.PARAMS[op])}, not {sorted(unknown)}")
    ranks = [len(v) for v in (input_size, kernel_size) if hasattr(v, "__len__")]
    rank = ranks[0] if ranks else 1
    if rank not in (1, 2, 3):
        raise ValueError(f"input_size={input_size!r}: 1 to 3 spatial dims")
    k = sizes("kernel_size", kernel_size, rank)
    n = sizes("input_size", input_size, rank)
    spread = sizes("lhs_dilation", 1 if lhs is None else lhs, rank)
    if any(v != 1 for v in spread):  # JAX pads the input-dilated x: read the conv of that size
        if mode != "zeros":
            raise ValueError("padding_mode is not defined with lhs_dilation")
        conv = reader.read(op, tuple((ni - 1) * v + 1 for ni, v in zip(n, spread)), k, params)
        answer = _with_lhs_dilation(dst, conv, spread)
    else:
        conv = reader.read(op, n, k, params)
        answer = _frameworks.module(dst).write(conv) if mode == "zeros" else _with_mode(dst, conv, mode)
    # the source's filter as its framework's defaults lay it out; the target's as the call written
    given = reader.rhs_layout(params.get("dimension_numbers"), op, conv.rank) if src == "jax" else None
    given = filter_layout(src, "depthwise", conv.rank) if depthwise else given
    layouts = (given or filter_layout(src, op, conv.rank), _frameworks.written_layout(dst, op, conv.rank))
    return dataclasses.replace(answer, filter_layout=layouts)


def _with_lhs_dilation(dst: str, c: Any, spread: tuple[int, ...]) -> Translation:
    """JAX's conv of x spread ``spread`` apart (``lhs_dilation``), ``c`` the conv of the spread x,
    in ``dst``: JAX's own call, or x zero-inserted then the conv (no other framework's conv takes
    input dilation; with unit strides it is also a transposed conv of the kernel flipped in space,
    in and out swapped, which no filter layout conversion spells)."""
    fw = _frameworks.module(dst)
    forward = fw.write(c)
    if dst == "jax":  # the call as written, its pads those of the spread x (as JAX reads them)
        kwargs = {**forward.kwargs, "lhs_dilation": spread}
        return dataclasses.replace(forward, kwargs=MappingProxyType(kwargs))
    if dst == "onnx":
        raise ValueError(f"lhs_dilation={spread}: ONNX's Conv has no input dilation; with unit strides it is "
                         "ConvTranspose(strides=lhs_dilation) of the kernel flipped in space, in and out "
                         "swapped (not written here)")
    r = c.rank
    sizes_ = ", ".join(f"(x.shape[{i + 2}] - 1) * {v} + 1" for i, v in enumerate(spread))
    if dst == "torch":  # NC*: a slice assignment into zeros
        holes = ", ".join(f"::{v}" for v in spread)
        insert = (f"xd = x.new_zeros((*x.shape[:2], {sizes_}))\n"
                  f"xd[:, :, {holes}] = x  # lhs_dilation: zeros between samples\n")
    else:  # tf, N*C: a transposed conv of a one-tap identity kernel spreads x
        sizes_ = ", ".join(f"(x.shape[{i + 1}] - 1) * {v} + 1" for i, v in enumerate(spread))
        insert = (f"eye = tf.reshape(tf.eye(x.shape[-1], dtype=x.dtype), {[1] * r} + [x.shape[-1]] * 2)\n"
                  f"xd = tf.nn.conv_transpose(x, eye, [x.shape[0], {sizes_}, x.shape[-1]], "
                  f"strides={list(spread)}, padding='VALID')  # lhs_dilation: zeros between samples\n")
    body = f"y = {forward.call()}" if forward.expressible else forward.workaround
    body = re.sub(r"(?<![\w.'\"])x(?![\w'\"])", "xd", body)  # the variable x, not 'x' or x.shape
    why = f"{fw.TITLE}'s conv has no input dilation (lhs_dilation={spread}): x zero-inserted first"
    return dataclasses.replace(forward, kwargs=None, expressible=False, workaround=insert + body, reason=why,
                               code="")


def _mode(src: str, op: str, padding_mode: object) -> str:
    """The canonical name of ``padding_mode`` as ``src`` spells it (JAX: NumPy's names)."""
    from ._padmode import ALIASES, canonical

    if padding_mode is None:
        return "zeros"
    if not isinstance(padding_mode, str):
        raise TypeError(f"padding_mode must be a string, got {padding_mode!r}")
    mode = canonical((src if src in ALIASES else "numpy", padding_mode))
    if mode != "zeros" and op != "conv":
        raise ValueError(f"padding_mode={padding_mode!r}: translate takes padding modes for convs only")
    return mode


def _with_mode(dst: str, c: Any, mode: str) -> Translation:
    """The conv ``c`` with ``mode`` filling its pads, in ``dst``: x extended by ``dst``'s pad, then
    the VALID conv of the extended x."""
    from ._frameworks._common import Conv
    from ._geometry import ConvGeometry
    from ._padmode import PadMap

    r, g = c.rank, c.groups
    pads = tuple(zip(c.before, c.after))
    geom = ConvGeometry(1, g, g, c.n, c.k, c.s, pads, (1,) * r, c.d, g)
    PadMap.build(mode, geom)  # the mode's limits (reflect: each pad below the input size, ...)
    n = tuple(ni + lo + hi for ni, (lo, hi) in zip(c.n, pads))
    valid = Conv("conv", n, c.o, c.k, c.s, c.d, (0,) * r, (0,) * r, g)
    fw = _frameworks.module(dst)
    forward = fw.write(valid)
    why = f"{fw.TITLE}'s conv takes no padding mode: x extended first"
    if dst == "onnx":
        nodes, xp = fw.mode_nodes("x", mode, c.n, pads)
        code = forward.code.replace("['x', 'w']", f"[{xp!r}, 'w']", 1)
        code = code.replace("nodes = [\n", "nodes = [\n" + "".join(f"    {v},\n" for v in nodes), 1)
        return dataclasses.replace(forward, kwargs=None, expressible=False, workaround=code, reason=why,
                                   code="")
    call = forward.call().replace("(x, ", f"({fw.mode_pad('x', mode, c.n, pads)}, ", 1)
    return dataclasses.replace(forward, kwargs=None, expressible=False, workaround=f"y = {call}", reason=why)
