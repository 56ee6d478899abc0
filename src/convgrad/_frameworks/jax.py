"""JAX: ``lax.conv_general_dilated`` and ``lax.conv_transpose``; any layout, any rank.

``conv_general_dilated`` takes any (before, after) pads, negative ones cropping, so every
geometry is expressible; ``conv_transpose``'s pairs are the pads of the lhs-dilated conv it
runs (unless ``use_consistent_padding=True``), and it has no groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._formulas import dilate_dim
from ._common import (
    NUMPY_MODES,
    Call,
    Conv,
    PadFirst,
    Translation,
    answer,
    autodiff_routes,
    call_routes,
    conv_from_pads,
    forward,
    letters,
    pairs_text,
    stride_dilation_groups,
    tuple_text,
)

if TYPE_CHECKING:
    from .._geometry import ConvGeometry
    from ..testing import Problem, Route

NAME, TITLE, PIP, IMPORTS = "jax", "JAX", "jax", ("jax",)
LAYOUT = "channels_first"
# JAX's default rhs specs (what convgrad.layouts.filter_layout reports): conv_general_dilated's
# OIHW; lax.conv_transpose with transpose_kernel=True (the setting that matches the other
# frameworks' values) and its default dimension numbers reads TensorFlow's (*K, C_out, C_in).
FILTER_LAYOUTS = {"conv": "OI*", "conv_transpose": "*OI", "depthwise": "OI*"}
# The filters of the calls ``write`` prints, all channels-first like the rest of the JAX block: with
# rhs spec 'OI' + spatial, transpose_kernel=True reads PyTorch's (C_in, C_out, *K) as it is.
WRITTEN_LAYOUTS = {**FILTER_LAYOUTS, "conv_transpose": "IO*"}
# What JAX does with complex values (convgrad explain --dtype complex64/complex128).
COMPLEX = ("complex: jax.vjp and jax.linear_transpose give the transpose A^T dy; the adjoint A^H dy "
           "(PyTorch's) is conj(vjp(conj(dy)))")
PARAMS = {"conv": {"window_strides", "rhs_dilation", "padding", "feature_group_count", "dimension_numbers"},
          "conv_transpose": {"strides", "rhs_dilation", "padding", "use_consistent_padding",
                             "feature_group_count", "dimension_numbers", "transpose_kernel"}}
# lax's op names.
OP_NAMES = {**dict.fromkeys(("conv_general_dilated", "conv_with_general_padding", "conv"), "conv"),
            "conv_transpose": "conv_transpose"}


# --- translate ----------------------------------------------------------------------------------
def read(op: str, size: tuple[int, ...], k: tuple[int, ...], p: dict) -> Conv:
    from ..jax.lax import transpose_padding  # JAX's rule, kept by the front; loaded when a call is read

    rank = len(k)
    if op == "conv_transpose" and p.get("transpose_kernel") is not None and not p["transpose_kernel"]:
        # Without it JAX correlates with the filter as given (no flip): not the transposed conv the
        # other frameworks compute with the same filter.
        raise ValueError("jax conv_transpose: translate reads transpose_kernel=True (the transposed conv "
                         "of the other frameworks, same filter values); with False flip w first")
    s, d, g = stride_dilation_groups(p, rank, ("window_strides" if op == "conv" else "strides")
                                     + " rhs_dilation feature_group_count")
    padding = p.get("padding", "VALID")
    if op == "conv":
        if isinstance(padding, str) and padding not in ("SAME", "SAME_LOWER", "VALID"):
            raise ValueError(f"jax padding={padding!r} is not 'SAME', 'SAME_LOWER' or 'VALID'")
        spec = padding.lower() if isinstance(padding, str) else [tuple(pair) for pair in padding]
        return conv_from_pads(size, k, s, d, spec, g)
    keff = [dilate_dim(ki, di) for ki, di in zip(k, d)]
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"jax conv_transpose padding={padding!r} is not 'SAME' or 'VALID'")
        lo_hi = [transpose_padding(ke, si, padding) for ke, si in zip(keff, s)]
    elif p.get("use_consistent_padding", False):
        lo_hi = [transpose_padding(ke, si, tuple(pair)) for ke, si, pair in zip(keff, s, padding)]
    else:
        lo_hi = [tuple(pair) for pair in padding]
    # The lhs-dilated conv: pads (lo, hi) around the input spread s apart, kernel k_eff.
    n = tuple(dilate_dim(o, si) + lo + hi - ke + 1 for o, si, (lo, hi), ke in zip(size, s, lo_hi, keff))
    if any(v < 1 for v in n):
        raise ValueError(f"jax conv_transpose: output size {n} is not positive")
    before = tuple(ke - 1 - lo for ke, (lo, _) in zip(keff, lo_hi))
    return forward("conv_transpose", n, size, k, s, d, before, g)


def write(c: Conv) -> Translation:
    r, sp = c.rank, letters(c.rank)
    if c.op == "conv":
        kwargs = {"window_strides": c.s, "padding": tuple(zip(c.before, c.after)), "rhs_dilation": c.d,
                  "feature_group_count": c.groups, "dimension_numbers": ("NC" + sp, "OI" + sp, "NC" + sp)}
        return answer("jax.lax.conv_general_dilated", kwargs, "", "", "NC" + sp)
    # The transposed conv's own pads: those of the lhs-dilated conv it is.
    lo_hi = tuple((ke - 1 - b, ni + b - dilate_dim(o, s)) for ke, b, ni, o, s in
                  zip(c.keff, c.before, c.n, c.o, c.s))
    dn = ("NC" + sp, "OI" + sp, "NC" + sp)
    if c.groups == 1:
        kwargs = {"strides": c.s, "padding": lo_hi, "rhs_dilation": c.d, "dimension_numbers": dn,
                  "transpose_kernel": True}
        return answer("jax.lax.conv_transpose", kwargs, "", "", "NC" + sp)
    # w (I, O/G, *K) flipped in space, in and out channels swapped within each group: (O, I/G, *K).
    G, ks = c.groups, tuple(range(2, r + 2))
    code = (f"w_flipped = lax.rev(w, {ks}).reshape({G}, w.shape[0] // {G}, w.shape[1], *w.shape[2:])"
            f".swapaxes(1, 2).reshape({G} * w.shape[1], w.shape[0] // {G}, *w.shape[2:])\n"
            f"y = lax.conv_general_dilated(x, w_flipped, window_strides={(1,) * r}, padding={lo_hi}, "
            f"lhs_dilation={c.s}, rhs_dilation={c.d}, feature_group_count={G}, dimension_numbers={dn})")
    return answer("jax.lax.conv_transpose", None, code, "lax.conv_transpose has no groups", "NC" + sp)


def rhs_layout(dimension_numbers: object, op: str, rank: int) -> str | None:
    """The filter layout (convert_filter's letters) that ``dimension_numbers`` given as three
    strings gives the rhs, or None for JAX's defaults: each spatial letter is named by its place
    among the lhs spec's spatial letters (('NHWC', 'HWIO', 'NHWC') -> 'HWIO', ('NWC', 'WIO', 'NWC')
    -> 'WIO'); ``conv_transpose`` with ``transpose_kernel=True`` reads the rhs spec's I as the
    output channels, so I and O swap."""
    if dimension_numbers is None:
        return None
    if not (isinstance(dimension_numbers, (tuple, list)) and len(dimension_numbers) == 3
            and all(isinstance(v, str) for v in dimension_numbers)):
        raise ValueError(f"translate reads dimension_numbers as three strings such as ('NHWC', 'HWIO', "
                         f"'NHWC'), got {dimension_numbers!r}")
    lhs, rhs, _ = dimension_numbers
    spatial = [ch for ch in lhs if ch not in "NC"]
    if len(lhs) != rank + 2 or sorted(rhs) != sorted("OI" + "".join(spatial)):
        raise ValueError(f"dimension_numbers={dimension_numbers!r} do not name N, C and {rank} spatial dims "
                         "in the lhs and O, I and the same spatial dims in the rhs")
    names = letters(rank)
    layout = "".join(names[spatial.index(ch)] if ch in spatial else ch for ch in rhs)
    return layout.translate(str.maketrans("IO", "OI")) if op == "conv_transpose" else layout


# --- explain ------------------------------------------------------------------------------------
def gradient_calls(g: ConvGeometry) -> dict:
    """Both gradients of ``g`` in JAX (channels-first, its default dimension numbers, any rank)."""
    s, d, G = tuple_text(g.stride), tuple_text(g.rhs_dilation), g.feature_group_count
    conv = (f"lax.conv_general_dilated(x, w, {s}, {pairs_text(g.padding)}, rhs_dilation={d}, "
            f"feature_group_count={G})")
    # w flipped in space, in and out channels swapped within each group: (C_in, C_out / G, *K).
    flip = f"jax.numpy.flip(w, {tuple(range(2, g.rank + 2))})"
    o, i = g.out_channels // G, g.filter_in_channels
    swapped = f"{flip}.swapaxes(0, 1)" if G == 1 else \
        f"{flip}.reshape({G}, {o}, {i}, *w.shape[2:]).swapaxes(1, 2).reshape({G * i}, {o}, *w.shape[2:])"
    return {"input_grad": f"lax.conv_general_dilated(dy, {swapped}, {(1,) * g.rank}, "
                          f"{pairs_text(g.input_grad_padding)}, lhs_dilation={s}, rhs_dilation={d}, "
                          f"feature_group_count={G})",
            "filter_grad": f"jax.vjp(lambda w: {conv}, w)[1](dy)[0]  # or jax.linear_transpose",
            "autodiff": f"jax.vjp(lambda x, w: {conv}, x, w)[1](dy)  # (d_x, d_w)"}


# --- check --------------------------------------------------------------------------------------
def _conv(g: ConvGeometry) -> object:
    from jax import lax

    def conv(x: object, w: object) -> object:
        # Default dimension numbers: channels-first (N, C, *S), (O, I, *K), any rank.
        return lax.conv_general_dilated(x, w, window_strides=g.stride, padding=list(g.padding),
                                        rhs_dilation=g.rhs_dilation,
                                        feature_group_count=g.feature_group_count)

    return conv


def routes(p: Problem) -> list[Route]:
    """``jax.vjp`` and ``jax.linear_transpose`` of ``conv_general_dilated``, in float64."""
    import jax

    g = p.geom
    conv, pf = _conv(g), PadFirst(g.padding, 2, False)

    def f(x: object, w: object, b: np.ndarray) -> object:
        return conv(x, w) + b.reshape((-1,) + (1,) * g.rank)

    def vjp(x: object, w: object, b: np.ndarray, dy: object) -> tuple:
        with jax.enable_x64(True):
            return tuple(map(np.asarray, jax.vjp(f, x, w, b)[1](dy)))

    def linear_transpose(which: str) -> Call:
        def run(x: np.ndarray, w: np.ndarray, b: object, dy: object) -> np.ndarray:
            fn, arg = ((lambda a: conv(a, w)), x) if which == "x" else ((lambda a: conv(x, a)), w)
            with jax.enable_x64(True):
                return np.asarray(jax.linear_transpose(fn, jax.ShapeDtypeStruct(arg.shape, arg.dtype))(dy)[0])

        return run

    # JAX's vjp and linear_transpose of a complex conv are the plain transpose A^T dy.
    return [*autodiff_routes(pf, "", "jax.vjp(lax.conv_general_dilated)", vjp, convention="transpose"),
            *call_routes(pf, "", ("d_x", "jax.linear_transpose(conv in x)", linear_transpose("x")),
                         ("d_w", "jax.linear_transpose(conv in w)", linear_transpose("w")),
                         convention="transpose")]


def mode_pad(x: str, mode: str, sizes: tuple[int, ...], pads: tuple) -> str:
    """``x`` (NC*) extended by ``mode``: ``jnp.pad`` has NumPy's modes."""
    return f"jax.numpy.pad({x}, {[(0, 0), (0, 0), *map(tuple, pads)]}, mode={NUMPY_MODES[mode]!r})"


def mode_limit(mode: str) -> str:
    return "lax.conv_general_dilated takes no padding mode: jnp.pad first (the jax.vjp row)"


def mode_routes(p: Problem) -> list[Route]:
    """``jax.vjp`` of ``jnp.pad(x, mode=...)`` then a VALID ``conv_general_dilated``: JAX's own
    derivative of its pad folds the border back."""
    import jax

    from .._padmode import PadMap

    g, mode = p.geom, p.padding_mode
    conv = _conv(PadMap.build(mode, g).valid)
    pads = [(0, 0), (0, 0), *g.padding]

    def f(x: object, w: object, b: np.ndarray) -> object:
        xp = jax.numpy.pad(x, pads, mode=NUMPY_MODES[mode])
        return conv(xp, w) + b.reshape((-1,) + (1,) * g.rank)

    def vjp(x: object, w: object, b: np.ndarray, dy: object) -> tuple:
        with jax.enable_x64(True):
            return tuple(map(np.asarray, jax.vjp(f, x, w, b)[1](dy)))

    method = f"jax.vjp(lax.conv_general_dilated) of jnp.pad(x, mode={NUMPY_MODES[mode]!r})"
    return autodiff_routes(PadFirst(g.padding, 2, False), "", method, vjp, convention="transpose")


def front_routes(p: Problem) -> list[Route]:
    """The same call through ``convgrad.jax``."""
    from ..jax import lax

    g = p.geom

    def vjp(x: np.ndarray, w: np.ndarray, b: object, dy: np.ndarray) -> tuple:
        return lax.conv_general_dilated.vjp(x, w, g.stride, list(g.padding), rhs_dilation=g.rhs_dilation,
                                            feature_group_count=g.feature_group_count)[1](dy)

    return autodiff_routes(PadFirst(g.padding, 2, False), "", "convgrad.jax lax.conv_general_dilated.vjp",
                           vjp, gradients=("d_x", "d_w"), convention="transpose")


# --- bench --------------------------------------------------------------------------------------
def contestants(g: ConvGeometry, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> dict[str, list]:
    """{op: [('jax', fn)]} for the benchmark: jit-compiled, NCHW. x, w and dy are channels-first;
    each fn returns a channels-first NumPy result."""
    import jax

    f = _conv(g)
    fwd = jax.jit(f)
    gin = jax.jit(lambda b, d: jax.vjp(lambda a: f(a, b), jax.numpy.zeros(x.shape, x.dtype))[1](d)[0])
    gw = jax.jit(lambda a, d: jax.vjp(lambda b: f(a, b), jax.numpy.zeros(w.shape, w.dtype))[1](d)[0])
    jx, jw, jdy = (jax.device_put(a) for a in (x, w, dy))
    return {
        "forward": [("jax", lambda: np.asarray(fwd(jx, jw).block_until_ready()))],
        "input_grad": [("jax", lambda: np.asarray(gin(jw, jdy).block_until_ready()))],
        "filter_grad": [("jax", lambda: np.asarray(gw(jx, jdy).block_until_ready()))],
    }
