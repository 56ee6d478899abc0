"""The routes ``convgrad check`` compares: every way of computing d_x, d_w and d_b.

A route is a name and a function of the example arrays, compared with the vector-Jacobian product
by ``convgrad.testing.check_routes``; the frameworks' routes are in ``convgrad._frameworks``.

The explicit routes spell the transposition identities out in NumPy, independently of
``convgrad.identities`` (which runs them through ``conv_general``).
"""

from __future__ import annotations

import numpy as np

from .. import identities
from .._budget import workspace_limit
from .._dtypes import result_dtype
from .._frameworks._common import (
    NUMPY_MODES,
    ModePad,
    numpy_pad,
    on_padded,
    pad_or_crop,
    zero_insert,
)
from .._ops import conv, conv_bias_grad, conv_filter_grad, conv_input_grad, conv_transpose
from .._padmode import PadMap
from .._plan import Planner, make_plan
from ..engines import engine_names
from ..testing import Problem, Route, not_available
from ._args import GeometryArgs

CF = "channels_first"


def make_problem(args: GeometryArgs, values: str = "int") -> Problem:
    """Random x, w, bias and dy: integers in [0, 10) as in the seed note, or standard normal;
    complex dtypes draw the imaginary part too (else the two conventions would agree)."""
    rng = np.random.default_rng(args.seed)
    g, fmt, dt = args.geometry, args.data_format, args.dtype

    def part(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(10, size=shape) if values == "int" else rng.standard_normal(shape)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        a = part(shape) + 1j * part(shape) if dt.kind == "c" else part(shape)
        return a.astype(dt)

    return Problem(draw(g.x_shape(fmt)), draw(g.w_shape(fmt)), draw((g.out_channels,)), draw(g.y_shape(fmt)),
                   args.kwargs, args.seed)


def flip_swap(w: np.ndarray, groups: int) -> np.ndarray:
    """Channels-first (O, C/G, *K) -> (C, O/G, *K), flipped in space, in/out swapped per group."""
    o, cg, *k = w.shape
    grouped = w.reshape(groups, o // groups, cg, *k).swapaxes(1, 2)  # (G, C/G, O/G, *K)
    flipped = grouped[(Ellipsis, *(slice(None, None, -1),) * len(k))]
    return flipped.reshape(groups * cg, o // groups, *k)


# --- the explicit NumPy routes ----------------------------------------------------------------
def dx_explicit(p: Problem) -> np.ndarray:
    """dy zero-inserted by the stride (s - 1 zeros between samples), padded by
    ``input_grad_padding`` (negative pads crop), correlated with w flipped in space, its in and
    out channels swapped within each group, at the forward's kernel dilation and stride 1."""
    g = p.geom
    dy = zero_insert(p.view("dy", CF), g.stride, 2)
    dy = pad_or_crop(dy, g.input_grad_padding, 2)
    w = flip_swap(p.view("w", CF), g.feature_group_count)
    dx = conv(dy, w, padding="valid", dilation=g.rhs_dilation, groups=g.feature_group_count)
    return p.back("x", dx, CF)


def dw_explicit(p: Problem) -> np.ndarray:
    """x padded by ``filter_grad_padding``, batch and channels swapped in x and dy, correlated
    with dy as the kernel: dy dilated by the stride, windows the kernel dilation apart; per group."""
    g = p.geom
    x = pad_or_crop(p.view("x", CF), g.filter_grad_padding, 2)
    dy = p.view("dy", CF)
    G, cg, og = g.feature_group_count, g.filter_in_channels, g.out_channels // g.feature_group_count
    blocks = []
    for i in range(G):
        xt = x[:, i * cg:(i + 1) * cg].swapaxes(0, 1)  # (C/G, N, *S)
        dyt = dy[:, i * og:(i + 1) * og].swapaxes(0, 1)  # (O/G, N, *out): a filter
        r = conv(xt, dyt, stride=g.rhs_dilation, dilation=g.stride, padding="valid")  # (C/G, O/G, *K)
        blocks.append(r.swapaxes(0, 1))
    return p.back("w", np.concatenate(blocks, axis=0), CF)


class _Recorder(Planner):
    """The default policy's planner, noting every compiled kernel a plan asks about."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[np.dtype, tuple]] = []

    def load_seconds(self, dtype: np.dtype, *kernels: object) -> float:
        self.asked.append((np.dtype(dtype), kernels))
        return super().load_seconds(dtype, *kernels)


def unbuilt(op: str, geom: object, comp: np.dtype, engine: str, layout: str) -> tuple[str, ...]:
    """The Numba kernels ``engine`` would compile before running this op (of every variant it
    weighs) because they are not built on this machine yet: their names, none when all are."""
    from ..engines import _kernels

    rec = _Recorder()
    rec.plan(op, geom, comp, engine, workspace_limit(None), layout)
    names = (k.py_func.__name__ for dt, ks in rec.asked for k in _kernels.unbuilt(dt, *ks))
    return tuple(dict.fromkeys(names))


def core_routes(p: Problem, compiled: bool = False) -> list[Route]:
    """Every convgrad route: the explicit identities, convgrad.identities, each engine (refused
    ones with the plan's reason; without ``compiled``, those whose Numba kernels are not built
    on this machine yet), the transpose, the bias gradient. With a padding mode the identities
    run on x extended by ``np.pad`` (their d_x folded back), the engines and the transpose take
    ``padding_mode`` themselves."""
    _, comp = result_dtype(p.x, p.w)
    mode = p.padding_mode
    routes = _identity_routes()
    if mode != "zeros":  # the identities hold for the VALID conv of x extended by np.pad
        mp = ModePad.build(numpy_pad(mode, p.geom.padding), p.geom.in_spatial, 2 if p.fmt == CF else 1)
        routes = on_padded(p, mp, routes, f"np.pad(x, mode={NUMPY_MODES[mode]!r})")
    engines = {
        "d_x": ("input_grad", "conv_input_grad",
                lambda q, m: conv_input_grad(q.dy, q.w, q.x.shape, method=m, **q.kwargs)),
        "d_w": ("filter_grad", "conv_filter_grad",
                lambda q, m: conv_filter_grad(q.x, q.dy, q.w.shape, method=m, **q.kwargs)),
    }
    # With a padding mode the engines run a VALID conv of the extended x: that is the plan.
    geom = p.geom if mode == "zeros" else PadMap.build(mode, p.geom).valid
    for gradient, (op, fn, run) in engines.items():
        plan = make_plan(op, geom, comp, "auto", workspace_limit(None), p.fmt)
        verdicts = plan.verdicts()  # every engine's: refused (why) or prepared
        for name in engine_names():
            method, v = f"{fn}(method={name!r})", verdicts[name]
            build = () if compiled or not v["eligible"] else unbuilt(op, geom, comp, name, p.fmt)
            if not v["eligible"]:
                routes.append(not_available(gradient, method, f"engine: {v['reason']}"))
            elif build:
                why = f"its Numba kernels ({', '.join(build)}) are not built on this machine yet"
                routes.append(not_available(gradient, method, why + ": --compile builds them, once"))
            else:
                routes.append(Route(gradient, method, lambda q, m=name, run=run: run(q, m),
                                    "planner's choice" if name == plan.engine.name else ""))
    # check_routes orders the routes by gradient, keeping this order within each.
    return [*routes, Route("d_x", "conv_transpose(dy, w, output_shape=x.shape)", lambda q: conv_transpose(
                q.dy, q.w, output_shape=q.x.shape, **q.kwargs), convention="transpose"),
            Route("d_b", "conv_bias_grad(dy)", lambda q: conv_bias_grad(q.dy, data_format=q.fmt)),
            Route("d_b", "NumPy: dy summed over batch and positions",
                  lambda q: q.view("dy", CF).sum(axis=(0, *range(2, q.dy.ndim))))]


def _identity_routes() -> list[Route]:
    """The identities, explicit and through ``convgrad.identities``; they conjugate nothing: for
    complex values they are the transpose A^T dy."""
    return [
        Route("d_x", "NumPy: dy dilated, padded, conv with flipped w", dx_explicit, convention="transpose"),
        Route("d_x", "identities.input_grad_via_conv", lambda q: identities.input_grad_via_conv(
            q.dy, q.w, q.x.shape, **q.kwargs), convention="transpose"),
        Route("d_w", "NumPy: conv of x with dy as kernel (N <-> C)", dw_explicit, convention="transpose"),
        Route("d_w", "identities.filter_grad_via_conv", lambda q: identities.filter_grad_via_conv(
            q.x, q.dy, q.w.shape, **q.kwargs), convention="transpose"),
    ]
