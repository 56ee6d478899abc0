"""The explanation of one convolution: what ``convgrad explain`` prints, as data.

Every number is read from the core: ``ConvGeometry`` (shapes, pads, both gradient geometries,
FLOPs), ``make_plan`` and the engines (choice, reason, estimated time, workspace), and each
framework's spelling from ``convgrad._frameworks``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from . import _frameworks
from ._frameworks._common import SPATIAL, Conv, layout_names, pairs_text, tuple_text, unused
from ._geometry import ConvGeometry


@dataclass(frozen=True)
class Explanation:
    """One conv explained: per-axis sizes, shapes, each gradient as a convolution, costs and the
    planner's choice per op, and the calls of each framework. Plain JSON values throughout."""

    dims: list[dict]
    shapes: dict[str, list[int]]
    gradients: dict[str, dict]
    costs: dict
    frameworks: dict[str, dict]
    notes: list[str] = dataclasses.field(default_factory=list)  # what the dtype changes

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def explain(g: ConvGeometry, data_format: str = "channels_first", dtype: object = np.float64,
            *frameworks: str, padding_mode: str = "zeros") -> Explanation:
    """Explain ``g`` for arrays in ``data_format`` of ``dtype``, with ``frameworks``' calls (default:
    every framework with a writer); ``padding_mode`` (canonical name) fills the pads: each
    framework's calls become its spelling of the mode around a VALID conv, and autodiff through it."""
    fmt = data_format
    sizes = g.input_size_range()
    left = unused(g)
    dims = [{"axis": name, "input": g.in_spatial[i], "kernel": g.kernel[i], "dilation": g.rhs_dilation[i],
             "kernel_eff": g.kernel_eff[i], "stride": g.stride[i], "padding": list(g.padding[i]),
             "padded_input": g.padded_input[i], "output": g.out_spatial[i],
             "tight_padding": list(g.tight_padding[i]), "unused_input": left[i],
             "transpose_output_sizes": list(sizes[i])}
            for i, name in enumerate(SPATIAL.get(g.rank) or [f"d{i}" for i in range(g.rank)])]
    x, w, y = list(g.x_shape(fmt)), list(g.w_shape(fmt)), list(g.y_shape(fmt))
    b = [g.out_channels]
    shapes = {"x": x, "w": w, "y": y, "b": b, "dy": y, "d_x": x, "d_w": w, "d_b": b}
    spelled = {name: spelling(name, g, fmt) for name in frameworks or _frameworks.with_("write")}
    notes = []
    grads = gradients(g, fmt)
    if padding_mode != "zeros":  # the gradients of the VALID conv of the extended x, then the fold
        from ._padmode import PadMap

        notes.append(mode_note(g, fmt, padding_mode))
        grads = gradients(PadMap.build(padding_mode, g).valid, fmt)
        for name in spelled:
            spelled[name] = mode_spelling(name, g, padding_mode, spelled[name])
    if np.dtype(dtype).kind == "c":
        notes.append(COMPLEX_NOTE)
        for name, calls in spelled.items():
            calls["limitations"] = [*calls.get("limitations", []), _frameworks.module(name).COMPLEX]
    return Explanation(dims, shapes, grads, costs(g, fmt, dtype), spelled, notes)


COMPLEX_NOTE = (
    "complex values: the formulas above conjugate nothing, so they give the transpose A^T dy "
    "(jax.vjp; convgrad's convention='transpose'); the adjoint A^H dy (PyTorch's autograd, convgrad's "
    "default) is the same convs with w conjugated for d_x and x conjugated for d_w (= conj of the "
    "transpose's of conj(dy)); d_b = sum of dy in both")


def _geom_dict(h: ConvGeometry) -> dict:
    return {**dataclasses.asdict(h), "out_spatial": h.out_spatial}


def gradients(g: ConvGeometry, fmt: str) -> dict:
    """Each gradient as a convolution of this geometry, step by step; every size is read off the
    gradients' own geometries."""
    G, wl = g.feature_group_count, layout_names(fmt, g.rank)[1]
    ig, fg = g.input_grad_geometry(), g.filter_grad_geometry()
    igp, fgp = g.input_grad_padding, g.filter_grad_padding
    t = tuple_text
    crop, crop_w = (" (negative: crop)" if any(v < 0 for p in pads for v in p) else "" for pads in (igp, fgp))
    groups = f", within each of the {G} groups" if G > 1 else ""
    og = g.out_channels // G
    flip_shape = (g.in_channels, og, *g.kernel) if fmt == "channels_first" else (*g.kernel, og, g.in_channels)
    d_x = {
        "formula": "d_x = conv(pad(dilate(dy, stride), input_grad_padding), flip(w) with in/out "
                   "channels swapped; kernel dilation d, stride 1)",
        "steps": [
            f"dilate dy {t(g.y_shape(fmt))} by the stride {t(g.stride)}: s - 1 zeros between "
            f"samples, spatial {t(g.out_spatial)} -> {t(ig.dilated_input)}",
            f"pad by (b' = k_eff - 1 - before, n + k_eff - 1 - o_dilated - b') = {pairs_text(igp)}{crop} "
            f"-> {t(ig.padded_input)}",
            f"correlate with w flipped along every spatial axis, its in and out channels swapped"
            f"{groups}: {t(flip_shape)} {wl}, kernel dilation {t(g.rhs_dilation)}, stride 1 "
            f"-> d_x {t(g.x_shape(fmt))}",
        ],
        "input_grad_padding": [list(p) for p in igp],
        "as_conv_general": _geom_dict(ig),
        "call": f"convgrad.conv_general(dy, {_flip_swap(g, fmt)}, lhs_dilation={t(g.stride)}, "
                f"rhs_dilation={t(g.rhs_dilation)}, padding={pairs_text(igp)}, feature_group_count={G}"
                f"{_fmt_kw(fmt)})",
    }
    # Batch and channels swapped: channels-last, x (C, *S, N), dy (*out, N, O) and back (*K, C/G, O).
    xs, dys, prefix, suffix = ("x.swapaxes(0, 1)", "dy.swapaxes(0, 1)", "", ".swapaxes(0, 1)") \
        if fmt == "channels_first" else \
        ("x.swapaxes(0, -1)", "np.moveaxis(dy, 0, -2)", "np.moveaxis(", ", 0, -2)")
    d_w = {
        "formula": "d_w = conv(x with batch <-> channels, padded by filter_grad_padding; kernel dy "
                   "with batch <-> channels, dilated by the stride; window stride = kernel dilation)",
        "steps": [
            f"swap batch and channels of x {t(g.x_shape(fmt))}: C = {g.in_channels} images of "
            f"N = {g.batch} channels; pad by (before, o_dilated - n + k_eff - 1 - before) = "
            f"{pairs_text(fgp)}{crop_w} -> {t(fg.padded_input)}",
            f"dy {t(g.y_shape(fmt))} with batch and channels swapped is the kernel: spatial "
            f"{t(g.out_spatial)}, dilated by the stride {t(g.stride)} -> {t(fg.kernel_eff)}",
            f"window stride = the forward's kernel dilation {t(g.rhs_dilation)} -> spatial "
            f"{t(fg.out_spatial)} = the kernel"
            + (f"; the {G} channel groups become {G} batch groups" if G > 1 else ""),
            f"read the ({g.filter_in_channels}, {g.out_channels}, *K) result as w's layout {wl}: "
            f"d_w {t(g.w_shape(fmt))}",
        ],
        "filter_grad_padding": [list(p) for p in fgp],
        "as_conv_general": _geom_dict(fg),
        "call": (f"{prefix}convgrad.conv_general({xs}, {dys}, stride={t(g.rhs_dilation)}, "
                 f"rhs_dilation={t(g.stride)}, padding={pairs_text(fgp)}, batch_group_count={G}"
                 f"{_fmt_kw(fmt)}){suffix}"),
    }
    axes = "batch and every spatial position"
    d_b = {"formula": f"d_b[o] = sum of dy[..., o] over {axes}",
           "steps": [f"sum dy {t(g.y_shape(fmt))} over {axes} -> d_b ({g.out_channels},)"],
           "call": f"convgrad.conv_bias_grad(dy, data_format={fmt!r})"}
    return {"d_x": d_x, "d_w": d_w, "d_b": d_b}


def _fmt_kw(fmt: str) -> str:
    return "" if fmt == "channels_first" else f", data_format={fmt!r}"


def _flip_swap(g: ConvGeometry, fmt: str) -> str:
    """w flipped along every spatial axis, its in and out channels swapped within each group, as
    NumPy code: (O, C/G, *K) -> (C, O/G, *K), or (*K, C/G, O) -> (*K, O/G, C) channels-last."""
    G, r, cg = g.feature_group_count, g.rank, g.filter_in_channels
    og = g.out_channels // G
    if fmt == "channels_first":
        flip = f"np.flip(w, {tuple(range(2, r + 2))})"
        return f"{flip}.swapaxes(0, 1)" if G == 1 else \
            (f"{flip}.reshape({G}, {og}, {cg}, *w.shape[2:]).swapaxes(1, 2)"
             f".reshape({G * cg}, {og}, *w.shape[2:])")
    flip = f"np.flip(w, {tuple(range(r))})"
    ks = ", ".join(map(str, range(r)))
    return f"{flip}.swapaxes(-1, -2)" if G == 1 else \
        (f"{flip}.reshape(*w.shape[:-2], {cg}, {G}, {og}).transpose({ks}, {r + 2}, {r + 1}, {r})"
         f".reshape(*w.shape[:-2], {og}, {G * cg})")


def _compute_only(op: str, g: ConvGeometry, dtype: np.dtype, limit: int,
                  layout: str) -> dict[str, tuple[float, dict]]:
    """Each eligible engine's estimate and choices without the one-time load of its compiled
    kernels: planned by a planner of its own that charges no load."""
    from ._plan import _Loaded

    plan = _Loaded().plan(op, g, dtype, "auto", limit, layout)
    verdicts = plan.verdicts().items()
    return {name: (v["estimated_seconds"], v["choices"]) for name, v in verdicts if v["eligible"]}


def costs(g: ConvGeometry, fmt: str, dtype: object) -> dict:
    """FLOPs, memory and the planner's choice for each op, with every engine's verdict (the plan's
    candidates: estimate, workspace and choices, or why not); each estimate also split into its
    compute and the one-time load of compiled kernels it charges (0 once they are loaded)."""
    from ._budget import workspace_limit
    from ._dtypes import result_dtype
    from ._plan import LOAD_SPREAD_CALLS, make_plan
    from .engines import OPS

    _, comp = result_dtype(np.zeros(0, dtype))
    limit = workspace_limit(None)
    item = np.dtype(dtype).itemsize
    sizes = {"x": math.prod(g.x_shape(fmt)), "w": math.prod(g.w_shape(fmt)), "y": math.prod(g.y_shape(fmt))}
    io = {"forward": (("x", "w"), "y"), "input_grad": (("y", "w"), "x"), "filter_grad": (("x", "y"), "w")}
    as_conv = {"forward": g.flops, "input_grad": g.input_grad_geometry().flops,
               "filter_grad": g.filter_grad_geometry().flops}
    ops = {}
    for op in OPS:
        plan = make_plan(op, g, comp, "auto", limit, fmt)  # the caller's layout: its engines and costs
        ins, out = io[op]
        compute = _compute_only(op, g, comp, limit, fmt)
        verdicts = plan.verdicts()
        for name, v in verdicts.items():
            if not v["eligible"]:
                continue
            # Without load the engine may prepare another variant (a compiled one): then the
            # variant it prepares here needs no load.
            seconds, choices = compute.get(name, (v["estimated_seconds"], v["choices"]))
            same = choices == v["choices"]
            v["compute_seconds"] = seconds if same else v["estimated_seconds"]
            # The estimate carries the load spread over LOAD_SPREAD_CALLS calls: shown whole.
            spread = max(v["estimated_seconds"] - seconds, 0.0)
            v["load_seconds"] = spread * LOAD_SPREAD_CALLS if same else 0.0
        chosen = verdicts[plan.engine.name]
        ops[op] = {
            "flops": g.flops, "flops_as_plain_conv": as_conv[op],
            "input_bytes": sum(sizes[n] for n in ins) * item, "output_bytes": sizes[out] * item,
            "engine": plan.engine.name, "reason": plan.reason, "estimated_seconds": plan.estimated_seconds,
            "compute_seconds": chosen.get("compute_seconds", plan.estimated_seconds),
            "load_seconds": chosen.get("load_seconds", 0.0),
            "workspace_bytes": plan.workspace_bytes, "engines": verdicts,
        }
    return {"dtype": str(np.dtype(dtype)), "compute_dtype": str(comp), "workspace_limit": limit,
            "load_spread_calls": LOAD_SPREAD_CALLS, "ops": ops}


def spelling(name: str, g: ConvGeometry, fmt: str) -> dict:
    """Framework ``name``'s calls for ``g``: the forward and the transposed conv as
    ``convgrad.translate`` writes them (with the layout of x each expects and the ``convert_filter``
    from ``fmt``'s filter), and both gradients."""
    fw = _frameworks.module(name)
    out: dict = {"framework": name, "layout": fw.LAYOUT}
    if g.rank > getattr(fw, "MAX_RANK", g.rank):
        return {**out, "expressible": False, "reason": f"{fw.RANK_LIMIT}, not {g.rank}-D",
                "workaround": "use convgrad"}
    w = layout_names(fmt, g.rank)[1]
    forward, transpose = (
        dataclasses.replace(fw.write(Conv.of(g, op)), filter_layout=(
            src, _frameworks.written_layout(name, op, g.rank)))
        # The transposed conv's filter is the forward's, its channel letters swapped.
        for op, src in (("conv", w), ("conv_transpose", w.translate(str.maketrans("OI", "IO")))))
    calls = {"forward": str(forward), "transpose": str(transpose), **fw.gradient_calls(g)}
    calls.setdefault("input_grad", calls["transpose"])  # ONNX's input gradient is its ConvTranspose
    return {**out, "expressible": forward.expressible, "reason": forward.reason, **calls}


# --- padding modes ---------------------------------------------------------------------------------
def mode_note(g: ConvGeometry, fmt: str, mode: str) -> str:
    """NumPy's and SciPy's names of ``mode``, the SciPy trap, and the NumPy line (runnable)."""
    from ._frameworks._common import NUMPY_MODES, SCIPY_MODES

    sp = 2 if fmt == "channels_first" else 1
    pads = [(0, 0)] * sp + [tuple(p) for p in g.padding] + [(0, 0)] * (2 - sp)
    return (f"padding_mode {mode!r}: x extended by copies of its own samples, then a VALID conv (the "
            f"formulas above take that extended x for x; their d_x is then folded back, each copy's "
            f"gradient added onto the sample it copies). NumPy: np.pad(x, {pads}, "
            f"mode={NUMPY_MODES[mode]!r}); scipy.ndimage: mode={SCIPY_MODES[mode]!r} (SciPy's 'reflect' is "
            f"NumPy's 'symmetric' and its 'mirror' NumPy's 'reflect'); convgrad: padding_mode={mode!r}")


def mode_spelling(name: str, g: ConvGeometry, mode: str, calls: dict) -> dict:
    """Framework ``name``'s ``calls`` with ``mode`` filling the pads: the forward is the VALID conv
    of x extended by the framework's pad (or a gather of each axis's indices where it has no such
    mode), the gradients autodiff through it; the direct gradient and transposed-conv calls (which
    know zero pads only) are dropped, with a note."""
    from ._padmode import PadMap

    fw = _frameworks.module(name)
    if "forward" not in calls:  # beyond the framework's ranks
        return calls
    valid = PadMap.build(mode, g).valid
    note = calls["forward"].splitlines()[-1]  # the layout note: the same arrays as the forward's
    keep = {k: v for k, v in calls.items() if k in ("framework", "layout", "limitations")}
    dropped = "the gradient and transposed-conv calls take zero pads only: autodiff through the pad"
    keep["limitations"] = [*calls.get("limitations", []), f"padding_mode {mode!r}: {dropped}"]
    forward = fw.write(Conv.of(valid))
    if name == "onnx":
        nodes, xp = fw.mode_nodes("x", mode, g.in_spatial, g.padding)
        code = forward.code.replace("['x', 'w']", f"[{xp!r}, 'w']", 1)
        code = code.replace("nodes = [\n", "nodes = [\n" + "".join(f"    {n},\n" for n in nodes), 1)
        return {**keep, "expressible": True, "reason": "", "forward": f"{code}\n{note}",
                "autodiff": calls.get("autodiff", "")}
    if not forward.expressible:
        return {**keep, "expressible": False, "reason": forward.reason,
                "forward": f"# the VALID conv of the extended x: {forward.reason}"}
    call = forward.call().replace("(x, ", f"({fw.mode_pad('x', mode, g.in_spatial, g.padding)}, ", 1)
    if name == "tf":
        autodiff = ("with tf.GradientTape() as tape:\n    tape.watch([x, w])\n"
                    f"    y = {call}\nd_x, d_w = tape.gradient(y, [x, w], output_gradients=dy)")
    elif name == "torch":
        autodiff = f"torch.func.vjp(lambda x, w: {call}, x, w)[1](dy)  # (d_x, d_w)"
    else:
        autodiff = f"jax.vjp(lambda x, w: {call}, x, w)[1](dy)  # (d_x, d_w)"
    return {**keep, "expressible": True, "reason": "", "forward": f"{call}\n{note}", "autodiff": autodiff}
