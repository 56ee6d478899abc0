"""ONNX: the ``Conv`` and ``ConvTranspose`` operators, run by onnxruntime and onnx.reference;
channels-first.

``pads`` are [x1_begin, x2_begin, ..., x1_end, x2_end, ...], non-negative; ``auto_pad`` SAME_UPPER
puts the odd pad sample at the end, SAME_LOWER at the start. ONNX has no filter-gradient op.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .. import _canon
from .._formulas import dilate_dim
from .._tolerance import RTOL
from ._common import (
    Call,
    Conv,
    PadFirst,
    Pairs,
    Translation,
    answer,
    call_routes,
    conv_from_pads,
    forward,
    letters,
    mode_indices,
    sizes,
    stride_dilation_groups,
    transpose_of,
    unused,
)

if TYPE_CHECKING:
    from .._geometry import ConvGeometry
    from ..testing import Problem, Route

NAME, TITLE, PIP, IMPORTS = "onnx", "ONNX", "onnx onnxruntime", ("onnx", "onnxruntime")
LAYOUT = "channels_first"
FILTER_LAYOUTS = {"conv": "OI*", "conv_transpose": "IO*", "depthwise": "OI*"}
OP_NAMES = {"Conv": "conv", "ConvTranspose": "conv_transpose"}
# What ONNX does with complex values (convgrad explain --dtype complex64/complex128).
COMPLEX = "complex: ONNX Conv and ConvTranspose take bfloat16, float16, float and double only"
PARAMS = {"conv": {"strides", "dilations", "pads", "auto_pad", "group", "kernel_shape"},
          "conv_transpose": {"strides", "dilations", "pads", "auto_pad", "output_padding", "output_shape",
                             "group", "kernel_shape"}}


def flat_pads(pairs: Pairs) -> list[int] | None:
    """ONNX's [x1_begin, x2_begin, ..., x1_end, x2_end, ...], or None when a pad is negative."""
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        return None
    return [lo for lo, _ in pairs] + [hi for _, hi in pairs]


def conv_pads(c: Conv) -> tuple[list[int] | None, list[int]]:
    """The ``pads`` of the Conv that computes ``c`` (each end pad the smallest non-negative one that
    gives the same output; None when a pad would be negative), and the ``output_padding`` of the
    ConvTranspose that transposes it: what the end pads reach past the last window."""
    after = c.after_pads()
    own = None if after is None else flat_pads(tuple(zip(c.before, after)))
    return own, [0] * c.rank if own is None else [e - tight for e, tight in zip(own[c.rank:], c.after)]


# --- translate ----------------------------------------------------------------------------------
def read(op: str, size: tuple[int, ...], k: tuple[int, ...], p: dict) -> Conv:
    rank = len(k)
    s, d, g = stride_dilation_groups(p, rank, "strides dilations group")
    auto = p.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ValueError(f"onnx auto_pad={auto!r} is not NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    given = p.get("pads")
    if given is not None and auto != "NOTSET":
        raise ValueError(f"onnx: pads={given} cannot be used with auto_pad={auto!r}")
    flat = [0] * (2 * rank) if given is None else [_canon.as_int("pads", v) for v in given]
    if len(flat) != 2 * rank or any(v < 0 for v in flat):
        raise ValueError(f"onnx pads={given} must be {2 * rank} non-negative ints [b1.., e1..]")
    keff = tuple(dilate_dim(ki, di) for ki, di in zip(k, d))
    if op == "conv":
        spec: object = {"SAME_UPPER": "same", "SAME_LOWER": "same_lower", "VALID": "valid"}.get(
            auto, list(zip(flat[:rank], flat[rank:])))
        return conv_from_pads(size, k, s, d, spec, g)
    op_ = _canon.int_tuple("output_padding", p.get("output_padding", 0), rank, minimum=0)
    out = p.get("output_shape")
    if out is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        # The spec's auto-generated pads: total = s (i - 1) + output_padding + k_eff - out,
        # the odd sample at the end for SAME_UPPER, at the start otherwise.
        n = sizes("output_shape", out, rank) if out is not None else tuple(o * si for o, si in zip(size, s))
        total = [si * (o - 1) + q + ke - ni for si, o, q, ke, ni in zip(s, size, op_, keff, n)]
        before = tuple(t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total)
        return forward("conv_transpose", n, size, k, s, d, before, g)
    return transpose_of(size, k, s, d, list(zip(flat[:rank], flat[rank:])), g, output_padding=op_)


def _node(op: str, inputs: list[str], output: str | list[str], **attrs: object) -> str:
    """``helper.make_node`` of ``op`` as source code."""
    extra = "".join(f", {k}={v!r}" for k, v in attrs.items())
    outputs = output if isinstance(output, list) else [output]
    return f"helper.make_node({op!r}, {inputs!r}, {outputs!r}{extra})"


def _pad_slice(src: str, dst: str, rank: int, pads: list[tuple[int, int]], start: list[int],
               size: list[int], full: list[int]) -> tuple[list[str], str]:
    """Nodes that zero-pad the spatial axes of the channels-first tensor ``src`` (spatial sizes
    ``full``) by ``pads`` (before, after), then keep ``size`` samples from ``start``: ``dst`` (or
    ``src`` itself where both are no-ops). The Pad and Slice values are Constant nodes."""
    nodes, cur = [], src
    if any(v for p in pads for v in p):
        nodes += [_node("Constant", [], f"{dst}_pads", value_ints=[0, 0, *(lo for lo, _ in pads), 0, 0,
                                                                   *(hi for _, hi in pads)]),
                  _node("Pad", [cur, f"{dst}_pads"], f"{dst}_padded")]
        cur = f"{dst}_padded"
    padded = [f + lo + hi for f, (lo, hi) in zip(full, pads)]
    if list(start) != [0] * rank or list(size) != padded:
        nodes += [_node("Constant", [], f"{dst}_starts", value_ints=list(start)),
                  _node("Constant", [], f"{dst}_ends", value_ints=[b + n for b, n in zip(start, size)]),
                  _node("Constant", [], f"{dst}_axes", value_ints=list(range(2, rank + 2))),
                  _node("Slice", [cur, f"{dst}_starts", f"{dst}_ends", f"{dst}_axes"], dst)]
        cur = dst
    return nodes, cur


def nodes_text(nodes: list[str]) -> str:
    """``nodes = [...]``, one node a line."""
    return "nodes = [\n" + "".join(f"    {n},\n" for n in nodes) + "]"


def conv_nodes(c: Conv, x: str = "x", w: str = "w", y: str = "y") -> tuple[list[str], dict | None]:
    """The nodes that compute ``c`` from the channels-first graph inputs ``x`` and ``w`` into ``y``,
    and the Conv's or ConvTranspose's attributes when that one node does it all (else None): a
    Slice of x first for negative pads, a Pad and Slice of the full transposed output for pads a
    ConvTranspose cannot take."""
    r = c.rank
    common = {"kernel_shape": list(c.k), "strides": list(c.s), "dilations": list(c.d), "group": c.groups}
    if c.op == "conv":
        own, _ = conv_pads(c)
        if own is not None:
            return [_node("Conv", [x, w], y, **common, pads=own)], {**common, "pads": own}
        pairs = list(zip(c.before, c.after))
        crop = [max(-b, 0) for b, _ in pairs]
        nodes, xin = _pad_slice(x, f"{x}_cropped", r, [(0, 0)] * r, crop,
                                [n - lo - max(-a, 0) for n, lo, (_, a) in zip(c.n, crop, pairs)], list(c.n))
        pads = [max(v, 0) for side in zip(*pairs) for v in side]
        return [*nodes, _node("Conv", [xin, w], y, **common, pads=pads)], None
    rest = [ni - (f - b) for ni, f, b in zip(c.n, c.full, c.before)]  # > 0: output_padding, < 0: end pad
    ends, op_ = [max(-v, 0) for v in rest], [max(v, 0) for v in rest]
    # The spec says output_padding is below "stride/dilation"; onnxruntime requires below stride.
    if all(b >= 0 for b in c.before) and all(q < s for q, s in zip(op_, c.s)):
        attrs = {**common, "pads": [*c.before, *ends], "output_padding": op_}
        return [_node("ConvTranspose", [x, w], y, **attrs)], attrs
    # Sample j of the result is sample j + before of the full output, zero outside it.
    pads = [(max(-b, 0), max(b + n - f, 0)) for b, n, f in zip(c.before, c.n, c.full)]
    start = [b + lo for b, (lo, _) in zip(c.before, pads)]
    nodes, out = _pad_slice(f"{y}_full", y, r, pads, start, list(c.n), list(c.full))
    if out != y:  # the padded full output is the result
        nodes.append(_node("Identity", [out], y))
    return [_node("ConvTranspose", [x, w], f"{y}_full", **common), *nodes], None


def write(c: Conv) -> Translation:
    layout = "NC" + letters(c.rank)
    nodes, attrs = conv_nodes(c)
    target = "onnx Conv" if c.op == "conv" else "onnx ConvTranspose"
    if attrs is not None:
        return answer(target, attrs, "", "", layout, code=nodes_text(nodes))
    why = "ONNX pads are non-negative" if c.op == "conv" else \
        "ONNX pads are non-negative and output_padding is below the stride"
    return answer(target, None, nodes_text(nodes), why, layout)


# --- explain ------------------------------------------------------------------------------------
def gradient_calls(g: ConvGeometry) -> dict:
    """Both gradients of ``g`` as ONNX nodes: the input gradient is a ConvTranspose of dy; ONNX
    has no filter-gradient op, so the filter gradient is a Conv of x with dy as the kernel, batch
    and channels transposed, one per group (Split and Concat)."""
    d_x, _ = conv_nodes(Conv.of(g, "conv_transpose"), "dy", "w", "d_x")
    G, r = g.feature_group_count, g.rank
    perm = [1, 0, *range(2, r + 2)]
    fgp = g.filter_grad_padding
    nodes = []
    xs, dys = ["x"], ["dy"]
    if G > 1:
        xs, dys = [f"x_{i}" for i in range(G)], [f"dy_{i}" for i in range(G)]
        nodes += [_node("Split", [a], parts, axis=1, num_outputs=G) for a, parts in (("x", xs), ("dy", dys))]
    parts = []
    for i, (xi, dyi) in enumerate(zip(xs, dys)):
        nodes += [_node("Transpose", [xi], f"xt_{i}", perm=perm),
                  _node("Transpose", [dyi], f"dyt_{i}", perm=perm)]
        crop = [max(-b, 0) for b, _ in fgp]
        cropped, xin = _pad_slice(f"xt_{i}", f"xt_{i}_cropped", r, [(0, 0)] * r, crop,
                                  [n - lo - max(-a, 0) for n, lo, (_, a) in zip(g.in_spatial, crop, fgp)],
                                  list(g.in_spatial))
        out = "d_w" if G == 1 else f"d_w_{i}"
        nodes += [*cropped,
                  _node("Conv", [xin, f"dyt_{i}"], f"dwt_{i}", strides=list(g.rhs_dilation),
                        dilations=list(g.stride), pads=[max(v, 0) for p in zip(*fgp) for v in p]),
                  _node("Transpose", [f"dwt_{i}"], out, perm=perm)]
        parts.append(out)
    if G > 1:
        nodes.append(_node("Concat", parts, "d_w", axis=0))
    why = "# ONNX has no filter-gradient op: a Conv of x with dy as the kernel, batch and channels " \
          "swapped" + (f", one per group ({G})" if G > 1 else "")
    return {"input_grad": nodes_text(d_x), "filter_grad": f"{why}\n{nodes_text(nodes)}",
            "autodiff": "# none in the ONNX standard (onnxruntime-training builds a gradient graph)"}


def mode_nodes(x: str, mode: str, sizes: tuple[int, ...], pads: tuple) -> tuple[list[str], str]:
    """Nodes extending ``x`` (NC*) by ``mode`` into the returned name: a Gather of each axis's
    indices (Pad's modes stop at reflect, edge and, from opset 19, wrap; Gather takes any)."""
    nodes = []
    for i, idx in enumerate(mode_indices(mode, sizes, pads)):
        nodes += [_node("Constant", [], f"{x}_index_{i}", value_ints=idx),
                  _node("Gather", [x, f"{x}_index_{i}"], f"{x}_{i}", axis=2 + i)]
        x = f"{x}_{i}"
    return nodes, x


# --- check --------------------------------------------------------------------------------------
def mode_limit(mode: str) -> str:
    return ("ONNX Conv has no padding mode (a Pad node with mode reflect/edge/wrap before a VALID Conv "
            "computes the forward; the standard has no gradient ops)")


def routes(p: Problem) -> list[Route]:
    """ConvTranspose (d_x) and the transposed-layout Conv (d_w), by onnxruntime and onnx.reference."""
    import onnx
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    g, r, dt = p.geom, p.geom.rank, p.dtype
    if dt.name == "bfloat16":
        from ..testing import not_available

        why = "ONNX Conv and ConvTranspose take no bfloat16 at opset 17"
        return [not_available("d_x", "onnx ConvTranspose", why), not_available("d_w", "onnx Conv", why)]
    if dt.kind == "c":  # the operators' own type constraint says it
        from ..testing import not_available

        types = {op: ", ".join(onnx.defs.get_schema(op).type_constraints[0].allowed_type_strs)
                 for op in ("ConvTranspose", "Conv")}
        why = "; ".join(f"ONNX {op}'s T is one of {t}: no complex" for op, t in types.items())
        return [not_available("d_x", "onnx ConvTranspose", why), not_available("d_w", "onnx Conv", why)]
    G = g.feature_group_count
    ort_dt = np.dtype(np.float32) if dt == np.float64 else dt
    ort_note = "run in float32: onnxruntime has no float64 Conv kernels" if dt == np.float64 else ""
    ort_rtol = RTOL["float32"] if dt == np.float64 else None
    own, out_pad = conv_pads(Conv.of(g))
    pf = PadFirst(g.padding, 2, own is None)
    pre_note = "negative pads: ONNX pads must be >= 0, x cropped first" if pf.active else ""

    def model(nodes: list, feeds: dict[str, np.ndarray], out_shape: tuple[int, ...]) -> bytes:
        tp = {np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.float32): TensorProto.FLOAT,
              np.dtype(np.float16): TensorProto.FLOAT16}[next(iter(feeds.values())).dtype]
        graph = helper.make_graph(nodes, "convgrad_check",
                                  [helper.make_tensor_value_info(n, tp, a.shape) for n, a in feeds.items()],
                                  [helper.make_tensor_value_info("Y", tp, out_shape)])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m.SerializeToString()

    # d_x: ConvTranspose of dy with w (ONNX's W is (C_in, C_out/group, *K): the forward's w), in
    # `calls` calls of G / calls groups each.
    def d_x(evaluate: Callable, np_dt: np.dtype, calls: int) -> Call:
        node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"], strides=list(g.stride),
                                dilations=list(g.rhs_dilation), group=G // calls, pads=own or [0] * 2 * r,
                                output_padding=list(unused(g)) if pf.active else out_pad)

        def run(x: np.ndarray, w: np.ndarray, b: object, dy: np.ndarray) -> np.ndarray:
            og, shape = g.out_channels // calls, (g.batch, g.in_channels // calls, *x.shape[2:])
            feeds = [{"X": dy[:, i * og:(i + 1) * og].astype(np_dt),
                      "W": w[i * og:(i + 1) * og].astype(np_dt)} for i in range(calls)]
            return np.concatenate([evaluate(model([node], f, shape), f) for f in feeds], axis=1)

        return run

    # d_w: ONNX has no filter-gradient op; the transposed-layout Conv, one per group.
    fg = PadFirst(g.filter_grad_padding, 2, flat_pads(g.filter_grad_padding) is None)
    conv = helper.make_node("Conv", ["X", "DY"], ["Y"], strides=list(g.rhs_dilation),
                            dilations=list(g.stride), pads=flat_pads(g.filter_grad_padding) or [0] * 2 * r)

    def d_w(evaluate: Callable, np_dt: np.dtype) -> Call:
        def run(x: np.ndarray, w: np.ndarray, b: object, dy: np.ndarray) -> np.ndarray:
            # Batch and channels swapped: C/G images of N channels, O/G kernels of N channels.
            cg, og = g.filter_in_channels, g.out_channels // G
            feeds = [{"X": np.ascontiguousarray(x[:, i * cg:(i + 1) * cg].swapaxes(0, 1), np_dt),
                      "DY": np.ascontiguousarray(dy[:, i * og:(i + 1) * og].swapaxes(0, 1), np_dt)}
                     for i in range(G)]
            return np.concatenate([evaluate(model([conv], f, (cg, og, *g.kernel)), f).swapaxes(0, 1)
                                   for f in feeds])

        return run

    def ort(m: bytes, feeds: dict) -> np.ndarray:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.log_severity_level = 3
        sess = onnxruntime.InferenceSession(m, opts, providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)[0]

    def reference(m: bytes, feeds: dict) -> np.ndarray:
        return ReferenceEvaluator(onnx.load_from_string(m)).run(None, feeds)[0]

    def ort_route(route: Route) -> Route:
        return dataclasses.replace(route, rtol=ort_rtol, dtype=str(ort_dt))

    def notes(*n: str) -> str:
        return "; ".join(filter(None, n))

    ref_note = f"one ConvTranspose per group ({G}): onnx.reference mishandles group > 1" if G > 1 else ""
    w_note = "ONNX has no filter-gradient op: Conv of x with dy as the kernel, batch <-> channels" + (
        f", one per group ({G})" if G > 1 else "")
    return [
        *map(ort_route, call_routes(pf, notes(pre_note, ort_note),
                                    ("d_x", "onnxruntime ConvTranspose", d_x(ort, ort_dt, 1)))),
        *call_routes(pf, notes(pre_note, ref_note),
                     ("d_x", "onnx.reference ConvTranspose", d_x(reference, dt, G))),
        *map(ort_route, call_routes(fg, notes(w_note, ort_note),
                                    ("d_w", "onnxruntime Conv (transposed layouts)", d_w(ort, ort_dt)))),
        *call_routes(fg, w_note, ("d_w", "onnx.reference Conv (transposed layouts)", d_w(reference, dt))),
    ]
