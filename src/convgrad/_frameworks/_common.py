"""What the framework modules share: the canonical forward conv that calls are read into and
written from, the spatial letters, and the pad-first workaround in NumPy."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .. import _canon, _layout
from .._formulas import dilate_dim, transpose_size
from .._geometry import ConvGeometry
from .._padding import parse_padding

Pairs = tuple[tuple[int, int], ...]
SPATIAL = {1: "W", 2: "HW", 3: "DHW"}
OPS = ("conv", "conv_transpose")


def letters(rank: int) -> str:
    """The spatial letters of a layout: 'HW' and the like; digits above rank 3 (JAX takes any)."""
    return SPATIAL.get(rank) or "".join(map(str, range(rank)))


def layout_names(fmt: str, rank: int) -> tuple[str, str]:
    """The layouts of x and w in ``fmt``: ('NHWC', 'HWIO') and the like."""
    sp = letters(rank)
    return ("NC" + sp, "OI" + sp) if fmt == "channels_first" else ("N" + sp + "C", sp + "IO")


# --- the canonical form -------------------------------------------------------------------------
@dataclass(frozen=True)
class Conv:
    """The forward conv a call computes or transposes, per spatial axis."""

    op: str  # 'conv' or 'conv_transpose'
    n: tuple[int, ...]  # the forward conv's input size (a transposed conv's output size)
    o: tuple[int, ...]  # the forward conv's output size (a transposed conv's input size)
    k: tuple[int, ...]
    s: tuple[int, ...]
    d: tuple[int, ...]
    before: tuple[int, ...]  # the forward conv's pad before (negative crops)
    after: tuple[int, ...]  # tight: the last window ends on the last padded sample
    groups: int

    @classmethod
    def of(cls, g: ConvGeometry, op: str = "conv") -> Conv:
        """A plain geometry's conv (``op='conv_transpose'``: the transposed conv of dy)."""
        return cls(op, g.in_spatial, g.out_spatial, g.kernel, g.stride, g.rhs_dilation,
                   tuple(lo for lo, _ in g.padding), tuple(hi for _, hi in g.tight_padding),
                   g.feature_group_count)

    @property
    def rank(self) -> int:
        return len(self.k)

    @property
    def keff(self) -> tuple[int, ...]:
        return tuple(dilate_dim(k, d) for k, d in zip(self.k, self.d))

    @property
    def full(self) -> tuple[int, ...]:
        """The transposed conv's output without pads: (o - 1) s + k_eff."""
        return tuple(transpose_size(o, ke, s, 0, 0, 0) for o, ke, s in zip(self.o, self.keff, self.s))

    def after_pads(self, want: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
        """Per axis an after pad that gives the same conv, ``want`` (default: the smallest
        non-negative one), or None where it is out of range: any value from the tight one to
        tight + s - 1 leaves the output unchanged."""
        want = tuple(max(tight, 0) for tight in self.after) if want is None else tuple(want)
        return want if all(t <= a <= t + s - 1 for a, t, s in zip(want, self.after, self.s)) else None


def sizes(name: str, value: object, rank: int) -> tuple[int, ...]:
    return _canon.int_tuple(name, value, rank, minimum=1)


def stride_dilation_groups(p: dict, rank: int, names: str, n_plus_2: bool = False) -> tuple[
        tuple[int, ...], tuple[int, ...], int]:
    """A call's stride, dilation and groups by the framework's ``names`` ('stride dilation
    groups'), 1 where not given; ``n_plus_2``: TensorFlow's channels-last N + 2 form is taken too."""
    stride, dilation, groups = names.split()

    def ints(name: str) -> tuple[int, ...]:
        v = p.get(name)
        v = v[1:-1] if n_plus_2 and isinstance(v, (list, tuple)) and len(v) == rank + 2 else v
        return _canon.int_tuple(name, 1 if v is None else v, rank, minimum=1)

    g = p.get(groups)
    return ints(stride), ints(dilation), _canon.positive_int(groups, 1 if g is None else g)


def forward(op: str, n: tuple[int, ...], o: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...],
            d: tuple[int, ...], before: tuple[int, ...], g: int) -> Conv:
    """The forward conv of input ``n`` and output ``o``, with the tight after pad: the one that
    makes ``transpose_size`` of ``o`` exactly ``n``."""
    tight = tuple(transpose_size(oi, dilate_dim(ki, di), si, b, 0, 0) - ni
                  for oi, ki, di, si, b, ni in zip(o, k, d, s, before, n))
    return Conv(op, n, o, k, s, d, tuple(before), tight, g)


def conv_from_pads(n: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], d: tuple[int, ...],
                   padding: object, g: int) -> Conv:
    """A conv of input ``n`` with a padding spec ('same', pairs, ...)."""
    pads = parse_padding(padding, len(k)).resolve(n, k, s, d)
    return Conv.of(ConvGeometry(1, g, g, n, k, s, pads, (1,) * len(k), d, g).require_nonempty())


def transpose_of(o: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], d: tuple[int, ...],
                 padding: object, g: int, output_padding: object = 0,
                 output_shape: tuple[int, ...] | None = None) -> Conv:
    """A transposed conv of input ``o`` with the forward conv's ``padding``, as
    ``convgrad.conv_transpose`` sizes it (``output_padding`` or ``output_shape``): the core
    checks the sizes, with its messages."""
    geom = ConvGeometry.for_transpose((1, g, *o), (g, 1, *k), stride=s, padding=padding, dilation=d, groups=g,
                                      output_padding=output_padding,
                                      output_shape=None if output_shape is None else (1, g, *output_shape))
    if 0 in geom.in_spatial:  # convgrad gives an empty result; the frameworks refuse it
        raise ValueError(f"the transposed conv's output size {geom.in_spatial} is not positive")
    return Conv.of(geom, "conv_transpose")


# --- the answer ---------------------------------------------------------------------------------
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
    arg_text : mapping
        Keywords whose printed value is source code in ``x`` and ``w`` rather than ``kwargs``' value
        (TensorFlow's transposed ``output_shape``: ``[x.shape[0], *spatial, w.shape[-2]]``).
    code : str
        Python source of the call where it is not ``target(x, w, **kwargs)``: ONNX's, a list
        ``nodes`` built with ``onnx.helper`` from the graph inputs 'x' and 'w' to the output 'y'.
    """

    target: str
    kwargs: Mapping[str, Any] | None = field(hash=False)
    expressible: bool
    workaround: str
    reason: str
    filter_layout: tuple[str, str]
    input_layout: str
    arg_text: Mapping[str, str] = field(default_factory=dict, hash=False)
    code: str = ""

    def call(self) -> str:
        """The call, or the reason and the workaround, without the layout note."""
        if self.kwargs is not None:
            return self.code or f"{self.target}(x, w, {kwargs_text(self.kwargs, self.arg_text)})"
        return f"# {self.target} cannot express this directly: {self.reason}\n{self.workaround}"

    def __str__(self) -> str:
        note = f"  # x: {self.input_layout}; w: convert_filter(w, {self.filter_layout[0]!r}, " \
               f"{self.filter_layout[1]!r})"
        return f"{self.call()}\n{note}"


def answer(target: str, kwargs: dict | None, workaround: str, reason: str, input_layout: str,
           arg_text: Mapping[str, str] | None = None, code: str = "") -> Translation:
    return Translation(target, None if kwargs is None else MappingProxyType(kwargs), kwargs is not None,
                       workaround, reason, ("", ""), input_layout, MappingProxyType(dict(arg_text or {})),
                       code)


def kwargs_text(kwargs: Mapping[str, Any], arg_text: Mapping[str, str] | None = None) -> str:
    """``k=v`` for each keyword, ``arg_text[k]`` (Python source in x and w) in place of ``repr(v)``."""
    text = arg_text or {}
    return ", ".join(f"{k}={text.get(k, repr(v))}" for k, v in kwargs.items())


def tuple_text(v: Iterable[int]) -> str:
    """(1, 2) and (1,): a sequence of ints as Python writes a tuple."""
    return str(tuple(map(int, v)))


def pairs_text(pairs: Iterable[Iterable[int]]) -> str:
    """[(1, 2), (0, 0)]: (before, after) pairs as Python writes a list of tuples."""
    return str([tuple(map(int, p)) for p in pairs])


def unused(g: ConvGeometry) -> tuple[int, ...]:
    """Per dim, padded samples past the last window (after - tight after; fewer than the stride):
    the transposed conv's ``output_padding`` restores them, so its output has x's size."""
    return tuple(hi - tight for (_, hi), (_, tight) in zip(g.padding, g.tight_padding))


# --- the pad-first workaround in NumPy ----------------------------------------------------------
def pad_or_crop(a: np.ndarray, pairs: Iterable[tuple[int, int]], first_axis: int) -> np.ndarray:
    """Zero-pad (positive) or crop (negative) the spatial axes by (before, after): channels-last
    (``first_axis`` 1) or channels-first (2) arrays."""
    if first_axis == 1:
        return _layout.pad_or_crop(a, tuple(pairs))
    return np.moveaxis(_layout.pad_or_crop(np.moveaxis(a, 1, -1), tuple(pairs)), -1, 1)


def zero_insert(a: np.ndarray, factors: tuple[int, ...], first_axis: int) -> np.ndarray:
    """Spread the samples of the axes from ``first_axis`` on ``factors`` apart (f - 1 zeros between)."""
    shape = list(a.shape)
    for i, f in enumerate(factors):
        shape[first_axis + i] = dilate_dim(a.shape[first_axis + i], f)
    out = np.zeros(shape, dtype=a.dtype)
    index = [slice(None)] * a.ndim
    for i, f in enumerate(factors):
        index[first_axis + i] = slice(None, None, f)
    out[tuple(index)] = a
    return out


@dataclass(frozen=True)
class PadFirst:
    """The workaround for pads a framework cannot take: a conv of x with pads (before, after) is
    a VALID conv of ``pad_or_crop(x, pads)``, so its input gradient is the VALID conv's input
    gradient (for the padded size) cropped back by the negated pads, the adjoint of padding.

    ``active`` False: the framework takes the pads itself and both maps are the identity.
    ``axis`` is the first spatial axis of the arrays (2 channels-first, 1 channels-last).
    """

    pads: Pairs
    axis: int
    active: bool

    def x(self, a: np.ndarray) -> np.ndarray:
        return pad_or_crop(a, self.pads, self.axis) if self.active else a

    def back(self, da: np.ndarray) -> np.ndarray:
        return pad_or_crop(da, [(-lo, -hi) for lo, hi in self.pads], self.axis) if self.active else da


Call = Callable[[Any, Any, Any, Any], Any]


def call_routes(pf: PadFirst, note: str, *calls: tuple[str, str, Call], convention: str = "adjoint") -> list:
    """Routes (gradient, method, ``fn(x, w, b, dy)``): ``fn`` takes the problem's arrays in the
    framework's layout (channels-last when ``pf.axis`` is 1), x padded first where ``pf`` says, and
    returns that gradient in the same layout (d_x is cropped back). d_b has no pad-first note:
    padding x leaves it alone. ``convention``: the complex gradient the calls compute ('adjoint'
    A^H dy or 'transpose' A^T dy)."""
    from ..testing import Route

    def route(gradient: str, fn: Call) -> Callable[[Any], np.ndarray]:
        def run(q: Any) -> np.ndarray:
            fmt = "channels_last" if pf.axis == 1 else "channels_first"
            a = fn(pf.x(q.view("x", fmt)), q.view("w", fmt), q.b, q.view("dy", fmt))
            if str(getattr(a, "dtype", "")) == "torch.bfloat16":  # NumPy has no torch.bfloat16
                a = a.float().numpy().astype(q.dtype)
            a = np.asarray(a)
            return q.back("x", pf.back(a), fmt) if gradient == "d_x" else \
                q.back("w", a, fmt) if gradient == "d_w" else a

        return run

    return [Route(d, method, route(d, fn), "" if d == "d_b" else note, convention=convention)
            for d, method, fn in calls]


def autodiff_routes(pf: PadFirst, note: str, method: str, fn: Call,
                    gradients: tuple[str, ...] = ("d_x", "d_w", "d_b"), convention: str = "adjoint") -> list:
    """``call_routes`` of one autodiff call ``fn(x, w, b, dy) -> (d_x, d_w[, d_b])``, run once for
    all of them (the routes are made for one problem)."""
    cache: list[tuple] = []

    def part(i: int) -> Call:
        def run(*arrays: Any) -> Any:
            cache[:] = cache or [fn(*arrays)]
            return cache[0][i]

        return run

    return call_routes(pf, note, *((d, method, part(i)) for i, d in enumerate(gradients)),
                       convention=convention)


def refuses_complex(routes: list, framework: str) -> list:
    """``routes`` of calls whose framework has no complex kernels: on complex values each runs,
    and its refusal becomes an 'n/a' row quoting the framework's own message (should the
    framework learn complex, the route is compared like any other)."""
    import dataclasses

    from ..testing import RouteRefused

    def guard(compute: Callable) -> Callable:
        def run(q: Any) -> np.ndarray:
            if q.dtype.kind != "c":
                return compute(q)
            try:
                return compute(q)
            except Exception as e:
                first = (str(e).strip().splitlines() or [""])[0][:160]
                raise RouteRefused(f"{framework} refuses complex: {type(e).__name__}: {first}") from e

        return run

    return [r if r.compute is None else dataclasses.replace(r, compute=guard(r.compute)) for r in routes]


# --- padding modes: x extended by a mode's copies, around a VALID conv ---------------------------
# Each framework's spelling of the canonical modes (convgrad._padmode.MODES but 'zeros').
NUMPY_MODES = {"reflect": "reflect", "symmetric": "symmetric", "replicate": "edge", "circular": "wrap"}
# scipy.ndimage's names: its 'reflect' is NumPy's 'symmetric' and its 'mirror' NumPy's 'reflect';
# 'grid-wrap' is the periodic extension ('wrap' is not, in map_coordinates).
SCIPY_MODES = {"reflect": "mirror", "symmetric": "reflect", "replicate": "nearest", "circular": "grid-wrap"}


@dataclass(frozen=True)
class ModePad:
    """A padding mode as an index map, made by a framework's own pad (``np.pad``,
    ``scipy.ndimage.map_coordinates``) applied to the flat indices of x's spatial samples: the
    conv with the mode is a VALID conv of ``pad(x)``, and its input gradient is the VALID conv's
    input gradient with each padded sample's value added onto the sample it copies (``fold``).

    ``index`` has the padded spatial shape; each entry is the flat index in x's spatial shape of
    the sample it holds. ``axis`` is the first spatial axis (2 channels-first, 1 channels-last).
    """

    index: np.ndarray
    sizes: tuple[int, ...]
    axis: int

    @classmethod
    def build(cls, pad: Callable[[np.ndarray], np.ndarray], sizes: tuple[int, ...], axis: int) -> ModePad:
        index = np.asarray(pad(np.arange(int(np.prod(sizes))).reshape(sizes)))
        return cls(index.astype(np.int64), sizes, axis)

    def _first(self, a: np.ndarray) -> np.ndarray:
        return a if self.axis == 2 else np.moveaxis(a, -1, 1)

    def _back(self, a: np.ndarray) -> np.ndarray:
        return a if self.axis == 2 else np.moveaxis(a, 1, -1)

    def x(self, a: np.ndarray) -> np.ndarray:
        a = self._first(a)
        flat = a.reshape(*a.shape[:2], -1)[:, :, self.index.ravel()]
        return self._back(flat.reshape(*a.shape[:2], *self.index.shape))

    def back(self, da: np.ndarray) -> np.ndarray:
        da = self._first(np.asarray(da))
        out = np.zeros((*da.shape[:2], int(np.prod(self.sizes))), da.dtype)
        np.add.at(out, (slice(None), slice(None), self.index.ravel()), da.reshape(*da.shape[:2], -1))
        return self._back(out.reshape(*da.shape[:2], *self.sizes))


def mode_indices(mode: str, sizes: tuple[int, ...], pads: Pairs) -> list[list[int]]:
    """Per spatial axis, the input sample each position of the extended axis copies (``np.pad``
    of the positions): what a gather spells where a framework has no such mode."""
    return [np.pad(np.arange(n), tuple(p), mode=NUMPY_MODES[mode]).tolist() for n, p in zip(sizes, pads)]


def numpy_pad(mode: str, pads: Pairs) -> Callable[[np.ndarray], np.ndarray]:
    """``np.pad`` of the spatial array by ``pads`` in ``mode`` (canonical name)."""
    return lambda a: np.pad(a, [tuple(p) for p in pads], mode=NUMPY_MODES[mode])


def scipy_pad(mode: str, pads: Pairs) -> Callable[[np.ndarray], np.ndarray]:
    """The same extension by ``scipy.ndimage.map_coordinates`` (nearest sample, SciPy's name of
    ``mode``), evaluated at the padded positions."""

    def pad(a: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        grid = np.meshgrid(*(np.arange(-lo, n + hi) for n, (lo, hi) in zip(a.shape, pads)), indexing="ij")
        return ndimage.map_coordinates(a.astype(np.float64), grid, order=0, mode=SCIPY_MODES[mode])

    return pad


def padded_problem(p: Any, mp: ModePad) -> Any:
    """The VALID conv of ``p``'s x extended by ``mp``: the same w, b and dy, no pads, no mode."""
    import dataclasses

    kwargs = {k: v for k, v in p.kwargs.items() if k != "padding_mode"}
    kwargs["padding"] = [(0, 0)] * p.geom.rank
    return dataclasses.replace(p, x=mp.x(p.x), kwargs=kwargs)


def on_padded(p: Any, mp: ModePad, routes: list, label: str) -> list:
    """``routes`` made for ``padded_problem(p, mp)``, run on it and their d_x folded back: routes
    of ``p``'s conv with its padding mode. ``label`` names the pad in the method."""
    import dataclasses

    q = padded_problem(p, mp)

    def wrap(r: Any) -> Any:
        def run(_: Any) -> np.ndarray:
            a = r.compute(q)
            return mp.back(a) if r.gradient == "d_x" else a

        return dataclasses.replace(r, method=f"{r.method} on {label}", compute=run)

    return [r if r.compute is None else wrap(r) for r in routes]
