"""PyTorch: ``F.conv{1,2,3}d``, ``F.conv_transpose{1,2,3}d``, ``torch.nn.grad``; channels-first.

PyTorch's ``padding`` pads both ends of a dim alike and never crops; a transposed conv starts
from ``(n - 1) * s + k_eff``, removes ``padding`` on both sides and adds ``output_padding`` at the
end. Other pads are the pad-first workaround: ``F.pad`` (negative values crop), last dim first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _canon
from ._common import (
    Conv,
    PadFirst,
    Pairs,
    Translation,
    answer,
    autodiff_routes,
    call_routes,
    conv_from_pads,
    kwargs_text,
    letters,
    mode_indices,
    refuses_complex,
    stride_dilation_groups,
    transpose_of,
    unused,
)

if TYPE_CHECKING:
    from .._geometry import ConvGeometry
    from ..testing import Problem, Route

NAME, TITLE, PIP, IMPORTS = "torch", "PyTorch", "torch", ("torch",)
LAYOUT = "channels_first"
MAX_RANK, RANK_LIMIT = 3, "PyTorch has conv1d/2d/3d only"
FILTER_LAYOUTS = {"conv": "OI*", "conv_transpose": "IO*", "depthwise": "OI*"}
# What PyTorch does with complex values (convgrad explain --dtype complex64/complex128).
COMPLEX = ("complex: autograd (torch.func.vjp, .backward) gives the adjoint A^H dy; "
           "torch.nn.grad.conv*d_input/_weight have no complex CPU kernels (NotImplementedError); "
           "F.conv_transpose*d conjugates nothing")
PARAMS = {"conv": {"stride", "dilation", "padding", "groups"},
          "conv_transpose": {"stride", "dilation", "padding", "output_padding", "groups"}}
OP_NAMES = {**{f"conv{r}d": "conv" for r in (1, 2, 3)},
            **{f"conv_transpose{r}d": "conv_transpose" for r in (1, 2, 3)}}


def symmetric_pads(c: Conv) -> tuple[int, ...] | None:
    """PyTorch's ``padding``: the before pads when they are non-negative and also work as the after
    pads (the output is the same for any after pad from the tight one to tight + s - 1), else None."""
    if all(b >= 0 for b in c.before) and c.after_pads(c.before) is not None:
        return c.before
    return None


def pad_list(pairs: object) -> list[int]:
    """F.pad's order: last dim first, (before, after) each; negative values crop."""
    return [v for lo, hi in reversed(list(pairs)) for v in (lo, hi)]


# --- translate ----------------------------------------------------------------------------------
def read(op: str, size: tuple[int, ...], k: tuple[int, ...], p: dict) -> Conv:
    rank = len(k)
    s, d, g = stride_dilation_groups(p, rank, "stride dilation groups")
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
        return conv_from_pads(size, k, s, d, spec, g)
    pads = _canon.int_tuple("padding", padding, rank, minimum=0)
    return transpose_of(size, k, s, d, pads, g, output_padding=p.get("output_padding", 0))


def pad_code(expr: str, pairs: list[tuple[int, int]]) -> str:
    """``F.pad`` of ``expr`` by per-axis (before, after) pads, negative ones cropping. The pads go
    first and the crops second, so that no crop is larger than the tensor it applies to."""
    flat = pad_list(pairs)
    for stage in ([max(v, 0) for v in flat], [min(v, 0) for v in flat]):
        if any(stage):
            expr = f"F.pad({expr}, {stage})"
    return expr


def write(c: Conv) -> Translation:
    r = c.rank
    common = {"stride": c.s, "dilation": c.d, "groups": c.groups}
    layout = "NC" + letters(r)
    if c.op == "conv":
        target = f"torch.nn.functional.conv{r}d"
        pairs = list(zip(c.before, c.after))
        torch_same = [((ke - 1) // 2, ke - 1 - (ke - 1) // 2) for ke in c.keff]
        same = "same" if all(v == 1 for v in c.s) and pairs == torch_same else None
        padding = c.before if symmetric_pads(c) is not None else same
        if padding is not None:
            return answer(target, {"stride": c.s, "padding": padding, "dilation": c.d, "groups": c.groups},
                          "", "", layout)
        code = f"y = F.conv{r}d({pad_code('x', pairs)}, w, {kwargs_text(common)})"
        why = f"pads {tuple(pairs)} are not symmetric: PyTorch's padding pads both ends alike"
        return answer(target, None, code, why, layout)
    target = f"torch.nn.functional.conv_transpose{r}d"
    op_ = tuple(ni - (f - 2 * b) for ni, f, b in zip(c.n, c.full, c.before))
    if all(b >= 0 for b in c.before) and all(0 <= q < max(s, d) for q, s, d in zip(op_, c.s, c.d)):
        return answer(target, {"stride": c.s, "padding": c.before, "output_padding": op_,
                               "groups": c.groups, "dilation": c.d}, "", "", layout)
    crop = [(-b, ni - (f - b)) for b, ni, f in zip(c.before, c.n, c.full)]
    code = f"y = {pad_code(f'F.conv_transpose{r}d(x, w, {kwargs_text(common)})', crop)}"
    reason = (f"it would need padding={c.before} and output_padding={op_}: PyTorch crops `padding` "
              "from both ends, and output_padding must be in [0, max(stride, dilation))")
    return answer(target, None, code, reason, layout)


# --- explain ------------------------------------------------------------------------------------
def gradient_calls(g: ConvGeometry) -> dict:
    """Both gradients of ``g`` as ``torch.nn.grad`` calls (x padded first where ``padding`` cannot
    say its pads), and autograd."""
    r = g.rank
    kw, pf, out_pad = _conv_args(g)
    k, xin = kwargs_text(kw), pad_code("x", list(g.padding)) if pf.active else "x"
    dx = f"torch.nn.grad.conv{r}d_input({xin}.shape, w, dy, {k})"
    return {"kwargs": kw, "pre_pad": pad_list(g.padding) if pf.active else None, "output_padding": out_pad,
            "input_grad": pad_code(dx, [(-lo, -hi) for lo, hi in g.padding]) if pf.active else dx,
            "filter_grad": f"torch.nn.grad.conv{r}d_weight({xin}, w.shape, dy, {k})",
            "autodiff": f"torch.func.vjp(lambda x, w: F.conv{r}d({xin}, w, {k}), x, w)[1](dy)  # (d_x, d_w)"}


# --- check --------------------------------------------------------------------------------------
def _conv_args(g: ConvGeometry) -> tuple[dict, PadFirst, tuple[int, ...]]:
    """The keywords every PyTorch conv call of ``g`` takes, the pad-first workaround where they
    cannot say its pads, and the transposed conv's ``output_padding`` (what the pads reach past
    the last window, fewer than the stride: it gives back x's size)."""
    c = Conv.of(g)
    sym = symmetric_pads(c)
    kw = {"stride": g.stride, "padding": sym or (0,) * g.rank, "dilation": g.rhs_dilation,
          "groups": g.feature_group_count}
    out_pad = unused(g) if sym is None else tuple(p - tight for p, tight in zip(sym, c.after))
    return kw, PadFirst(g.padding, 2, sym is None), out_pad


def _calls(p: Problem, F: Any, grad: Any, names: tuple[str, str], t: Callable) -> list[Route]:
    """``grad.conv_input``, ``grad.conv_weight`` and ``F.conv_transpose`` as routes; ``t`` turns a
    NumPy array into the call's argument."""
    g, r = p.geom, p.geom.rank
    kw, pf, out_pad = _conv_args(g)
    (grad_name, label), gi, gw = names, getattr(grad, f"conv{r}d_input"), getattr(grad, f"conv{r}d_weight")
    ft = getattr(F, f"conv_transpose{r}d")  # output (o - 1) * s - 2 * pad + k_eff + output_padding
    # torch.nn.grad has no complex kernels; the transposed conv does not conjugate w: A^T dy.
    return [*refuses_complex(call_routes(
                pf, _note(pf),
                ("d_x", f"{grad_name}.conv{r}d_input", lambda x, w, b, dy: gi(x.shape, t(w), t(dy), **kw)),
                ("d_w", f"{grad_name}.conv{r}d_weight", lambda x, w, b, dy: gw(t(x), w.shape, t(dy), **kw))),
                "PyTorch" if label == "torch" else label),
            *call_routes(pf, _note(pf), ("d_x", f"{label} conv_transpose{r}d", lambda x, w, b, dy: ft(
                t(dy), t(w), stride=g.stride, padding=kw["padding"], output_padding=out_pad,
                groups=g.feature_group_count, dilation=g.rhs_dilation)), convention="transpose")]


def _note(pf: PadFirst) -> str:
    return "asymmetric/negative pads: x padded first (F.pad)" if pf.active else ""


def routes(p: Problem) -> list[Route]:
    """autograd, ``torch.nn.grad`` and ``F.conv_transpose``, in the problem's dtype."""
    from ..testing import not_available

    g, r = p.geom, p.geom.rank
    if r > MAX_RANK:
        return [not_available("d_x", "torch: every route", f"{RANK_LIMIT}, not {r}-D (workaround: convgrad)")]
    import torch

    tdt = getattr(torch, p.dtype.name)
    kw, pf, _ = _conv_args(g)

    def t(a: np.ndarray) -> torch.Tensor:  # NumPy's bfloat16 (ml_dtypes) is not torch's: via float32
        via = np.float32 if tdt == torch.bfloat16 else None
        return torch.from_numpy(np.ascontiguousarray(a, via)).to(tdt)

    def autograd(*arrays: np.ndarray) -> tuple:
        x, w, b, dy = map(t, arrays)
        for a in (x, w, b):
            a.requires_grad_()
        getattr(torch.nn.functional, f"conv{r}d")(x, w, b, **kw).backward(dy)
        return x.grad, w.grad, b.grad

    return [*autodiff_routes(pf, _note(pf), "torch autograd", autograd),
            *_calls(p, torch.nn.functional, torch.nn.grad, ("torch.nn.grad", "torch"), t)]


# PyTorch fills pads by nn.ConvNd(padding_mode=...) and F.pad(mode=...): no 'symmetric'.
MODES = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def mode_pad(x: str, mode: str, sizes: tuple[int, ...], pads: Pairs) -> str:
    """``x`` (NC*) extended by ``mode``, as PyTorch code: ``F.pad``, or an index per axis for
    'symmetric', which F.pad lacks (indexing is differentiable)."""
    if mode in MODES:
        return f"F.pad({x}, {pad_list(pads)}, mode={MODES[mode]!r})"
    for i, idx in enumerate(mode_indices(mode, sizes, pads)):
        x = f"{x}[{':, ' * (2 + i)}{idx}]"
    return x


def mode_limit(mode: str) -> str:
    """Why the other routes cannot fill the pads with ``mode``."""
    if mode not in MODES:
        return (f"PyTorch has no {mode!r} mode (nn.ConvNd and F.pad: zeros/constant, reflect, replicate, "
                "circular)")
    return ("F.conv*d, torch.nn.grad and F.conv_transpose*d take no padding mode (nn.ConvNd's padding_mode "
            "and F.pad do: the autograd row)")


def mode_routes(p: Problem) -> list[Route]:
    """Autograd of ``nn.ConvNd(padding_mode=...)`` (pads alike at both ends) or of ``F.pad(x,
    mode=...)`` then a VALID conv (other pads); none for 'symmetric', which PyTorch lacks."""
    from .._padmode import PadMap

    g, r, mode = p.geom, p.geom.rank, p.padding_mode
    if r > MAX_RANK or mode not in MODES:
        return []
    import torch

    tdt = getattr(torch, p.dtype.name)
    valid = PadMap.build(mode, g).valid
    alike = all(lo == hi for lo, hi in g.padding)

    def t(a: np.ndarray) -> torch.Tensor:
        via = np.float32 if tdt == torch.bfloat16 else None
        return torch.from_numpy(np.ascontiguousarray(a, via)).to(tdt)

    def autograd(*arrays: np.ndarray) -> tuple:
        x, w, b, dy = map(t, arrays)
        if alike:  # the layer, its weight and bias set to w and b
            layer = getattr(torch.nn, f"Conv{r}d")(
                g.in_channels, g.out_channels, g.kernel, stride=g.stride, dilation=g.rhs_dilation,
                padding=tuple(lo for lo, _ in g.padding), groups=g.feature_group_count,
                padding_mode=MODES[mode], dtype=tdt)
            with torch.no_grad():
                layer.weight.copy_(w)
                layer.bias.copy_(b)
            x.requires_grad_()
            layer(x).backward(dy)
            return x.grad, layer.weight.grad, layer.bias.grad
        for a in (x, w, b):
            a.requires_grad_()
        xp = torch.nn.functional.pad(x, pad_list(g.padding), mode=MODES[mode])
        getattr(torch.nn.functional, f"conv{r}d")(xp, w, b, stride=valid.stride, dilation=valid.rhs_dilation,
                                                  groups=valid.feature_group_count).backward(dy)
        return x.grad, w.grad, b.grad

    method = (f"torch nn.Conv{r}d(padding_mode={MODES[mode]!r}) autograd" if alike else
              f"torch autograd of F.pad(x, mode={MODES[mode]!r}) + conv{r}d")
    return autodiff_routes(PadFirst(g.padding, 2, False), "", method, autograd)


def front_routes(p: Problem) -> list[Route]:
    """The same calls through ``convgrad.torch``: PyTorch's convention, answered by convgrad."""
    from ..torch import nn

    g, r = p.geom, p.geom.rank
    if r > MAX_RANK:
        return []
    kw, pf, _ = _conv_args(g)

    def vjp(x: np.ndarray, w: np.ndarray, b: np.ndarray, dy: np.ndarray) -> tuple:
        return getattr(nn.functional, f"conv{r}d").vjp(x, w, b, **kw)[1](dy)

    return [*autodiff_routes(pf, _note(pf), f"convgrad.torch conv{r}d.vjp", vjp),
            *_calls(p, nn.functional, nn.grad, ("convgrad.torch nn.grad", "convgrad.torch"), np.asarray)]


# --- bench --------------------------------------------------------------------------------------
def contestants(g: ConvGeometry, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> dict[str, list]:
    """{op: [(variant, fn)]} for the benchmark: NCHW and the channels_last memory format. x, w and
    dy are channels-first; each fn returns a channels-first NumPy result."""
    out: dict[str, list] = {"forward": [], "input_grad": [], "filter_grad": []}
    kw, pf, _ = _conv_args(g)
    r = g.rank
    if pf.active or r > 3:  # timed as PyTorch runs them: no workaround around the call
        return out
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    fwd = getattr(torch.nn.functional, f"conv{r}d")
    gin = getattr(torch.nn.grad, f"conv{r}d_input")
    gw = getattr(torch.nn.grad, f"conv{r}d_weight")
    tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))
    variants = [("torch", (tx, tw, tdy))]
    if r in (2, 3):
        fmt = torch.channels_last if r == 2 else torch.channels_last_3d
        variants.append(("torch_cl", tuple(t.contiguous(memory_format=fmt) for t in (tx, tw, tdy))))
    for name, (a, b, g) in variants:
        out["forward"].append((name, lambda a=a, b=b: fwd(a, b, **kw).numpy()))
        out["input_grad"].append((name, lambda a=a, b=b, g=g: gin(a.shape, b, g, **kw).numpy()))
        out["filter_grad"].append((name, lambda a=a, b=b, g=g: gw(a, b.shape, g, **kw).numpy()))
    return out
