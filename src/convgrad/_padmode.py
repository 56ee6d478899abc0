"""Padding modes: what fills a conv's pads, and the adjoint that folds them back.

A conv with ``padding_mode`` other than zeros is a gather followed by a VALID conv: each spatial
axis of x is extended by an index map (the input sample each pad sample copies), then the conv
runs on the padded array with no pads. Its input gradient is the VALID conv's input gradient
folded back through the same map: each pad sample's gradient is added onto the sample it copied
(the transpose of a gather is a scatter-add). The pads themselves are the zero-padding
geometry's, so 'same' and explicit pads mean what they mean for ``padding_mode='zeros'``.

Names. Plain strings are the names NumPy, PyTorch and TensorFlow agree on; SciPy's ``ndimage``
uses 'reflect' for the half-sample mirror (NumPy's 'symmetric') and 'mirror' for NumPy's
'reflect', so its names are accepted only qualified: ``("scipy", "reflect")``. A pair
``(framework, name)`` reads ``name`` as that framework spells it (``ALIASES``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ._budget import check_fits, workspace_limit
from ._geometry import spatial_dim
from ._padding import Pairs, parse_padding

if TYPE_CHECKING:
    from ._geometry import ConvGeometry

# The canonical names, and what the pad before ``a b c d`` holds (two samples):
#   zeros     0 0 | a b c d      reflect    c b | a b c d  (mirror about the edge sample)
#   symmetric b a | a b c d      replicate  a a | a b c d  (edge)       circular   c d | a b c d
MODES = ("zeros", "reflect", "symmetric", "replicate", "circular")

# framework -> its spelling (lowercase) -> canonical name.
ALIASES: dict[str, dict[str, str]] = {
    "torch": {"zeros": "zeros", "reflect": "reflect", "replicate": "replicate", "circular": "circular"},
    "tf": {"constant": "zeros", "reflect": "reflect", "symmetric": "symmetric"},
    "numpy": {"constant": "zeros", "reflect": "reflect", "symmetric": "symmetric", "edge": "replicate",
              "wrap": "circular"},
    "scipy": {"constant": "zeros", "grid-constant": "zeros", "mirror": "reflect", "grid-mirror": "symmetric",
              "reflect": "symmetric", "nearest": "replicate", "wrap": "circular", "grid-wrap": "circular"},
    "onnx": {"constant": "zeros", "reflect": "reflect", "edge": "replicate", "wrap": "circular"},
}
# Plain strings: the canonical names and the NumPy / PyTorch / TensorFlow spellings (no two of
# them name different modes with one word).
PLAIN = {**{m: m for m in MODES}, **ALIASES["torch"], **ALIASES["tf"], **ALIASES["numpy"]}


def canonical(padding_mode: object) -> str:
    """The canonical name (one of ``MODES``) of ``padding_mode``: a plain name
    (case-insensitive) or a ``(framework, name)`` pair, framework one of ``ALIASES``."""
    if isinstance(padding_mode, str):
        name = padding_mode.lower()
        if name in PLAIN:
            return PLAIN[name]
        if name in ALIASES["scipy"]:
            raise ValueError(
                f"padding_mode={padding_mode!r} is a scipy.ndimage name; write ('scipy', {padding_mode!r}) "
                f"(scipy's 'reflect' is NumPy's 'symmetric', its 'mirror' NumPy's 'reflect'), or one of "
                f"{sorted(PLAIN)}"
            )
        raise ValueError(f"unknown padding_mode={padding_mode!r}; expected one of {sorted(PLAIN)} or a "
                         f"(framework, name) pair with framework in {sorted(ALIASES)}")
    pair = isinstance(padding_mode, tuple) and len(padding_mode) == 2
    if pair and all(isinstance(v, str) for v in padding_mode):
        framework, name = padding_mode[0].lower(), padding_mode[1].lower()
        if framework not in ALIASES:
            raise ValueError(f"padding_mode={padding_mode!r}: unknown framework {padding_mode[0]!r}; "
                             f"expected one of {sorted(ALIASES)}")
        if name not in ALIASES[framework]:
            raise ValueError(f"padding_mode={padding_mode!r}: {framework} has no mode {padding_mode[1]!r}; "
                             f"its modes are {sorted(ALIASES[framework])}")
        return ALIASES[framework][name]
    raise TypeError(
        f"padding_mode must be a string or a (framework, name) pair of strings, got {padding_mode!r}"
    )


def source(mode: str, n: int, p: np.ndarray) -> np.ndarray:
    """The input sample (0 .. n - 1) that padded position ``p`` (< 0 or >= n) copies."""
    if mode == "reflect":
        return np.where(p < 0, -p, 2 * (n - 1) - p)
    if mode == "symmetric":
        return np.where(p < 0, -p - 1, 2 * n - 1 - p)
    if mode == "replicate":
        return np.clip(p, 0, n - 1)
    return p % n  # circular


def _check(mode: str, n: int, lo: int, hi: int, i: int) -> None:
    """ValueError where ``mode`` cannot fill pads (lo, hi) of an axis of n samples (PyTorch's
    limits for reflect and circular, TensorFlow's for symmetric)."""
    where = f"padding {(lo, hi)} in {spatial_dim(i)} of size {n}"
    if lo < 0 or hi < 0:
        raise ValueError(f"padding_mode={mode!r} cannot crop: negative {where}")
    if n == 0:
        raise ValueError(f"padding_mode={mode!r} has no sample to copy into the {where}")
    if mode == "reflect" and max(lo, hi) >= n:
        raise ValueError(f"padding_mode='reflect' needs each pad smaller than the input size, got {where}")
    if mode in ("symmetric", "circular") and max(lo, hi) > n:
        raise ValueError(f"padding_mode={mode!r} needs each pad at most the input size, got {where}")


def _run_of(src: np.ndarray) -> slice | np.ndarray:
    """``src`` as a slice where it is a run of consecutive positions, up or down (reflect,
    symmetric, circular), else ``src`` itself. A slice is a view to add into: the fold of a
    resnet_3x3 input gradient (8 x 64 x 58 x 58 float32) took 0.4 ms so, 12.6-24 ms by
    ``np.add.at`` on the index arrays (loaded, load 12)."""
    if src.size == 1:
        return slice(int(src[0]), int(src[0]) + 1)
    step = int(src[1] - src[0])
    if step not in (1, -1) or not np.array_equal(np.diff(src), np.full(src.size - 1, step)):
        return src
    stop = int(src[-1]) + step
    return slice(int(src[0]), None if stop < 0 else stop, step)


# Copies of fewer bytes run on the calling thread: 0.1-0.2 ms at one thread's 5-10 GB/s, of
# which a second thread saves at most half, while one stall at a parallel loop's barrier on a
# shared machine costs milliseconds (engines/_threads.py).
SERIAL_BYTES = 2**20


@dataclass(frozen=True)
class PadMap:
    """A non-zero padding mode on one geometry: x extended by ``pads``, filled by ``mode``.

    ``valid`` is the geometry of the conv that runs on the padded x (no pads). It may be shorter
    than x padded by ``pads``: a transposed conv's geometry ends its pads where the last window
    ends, and the samples past it are read by no window. ``borders[i]`` holds, for spatial axis
    i, the (pad sample positions, input samples they copy) of each side, both as positions in
    the padded axis.
    """

    mode: str
    sizes: tuple[int, ...]
    pads: Pairs
    valid: ConvGeometry
    borders: tuple[tuple[tuple[slice, np.ndarray], ...], ...]

    @classmethod
    def build(cls, padding_mode: object, geom: ConvGeometry, padding: object = None,
              limit: int | None = None) -> PadMap | None:
        """The map of ``padding_mode`` on the pads ``padding`` (as the user gave them; default
        ``geom.padding``); None where nothing is filled by copies (zeros, or no pads). ``limit``:
        the workspace budget (default: ``workspace_limit()``) the index arrays are held to."""
        mode = canonical(padding_mode)
        if mode == "zeros":
            return None
        assert all(d == 1 for d in geom.lhs_dilation) and geom.batch_group_count == 1, geom
        pads = geom.padding
        if padding is not None:
            pads = parse_padding(padding, geom.rank).resolve(geom.in_spatial, geom.kernel, geom.stride,
                                                             geom.rhs_dilation)
        if all(p == (0, 0) for p in pads):
            return None
        borders = []
        for i, (n, (lo, hi)) in enumerate(zip(geom.in_spatial, pads)):
            _check(mode, n, lo, hi, i)
            # two int64 indices per pad sample, before making them: 'replicate' allows pads of
            # 2**31 (a 32 GiB hang here before the padded x's own check)
            check_fits(f"the {mode} pad indices of spatial axis {i} ({lo} + {hi})", 16 * (lo + hi),
                       workspace_limit() if limit is None else limit)
            sides = ((slice(0, lo), np.arange(-lo, 0)), (slice(lo + n, lo + n + hi), np.arange(n, n + hi)))
            borders.append(tuple((where, lo + source(mode, n, p)) for where, p in sides if p.size))
        valid = replace(geom, in_spatial=geom.padded_input, padding=((0, 0),) * geom.rank)
        return cls(mode, geom.in_spatial, pads, valid, tuple(borders))

    def _inner(self) -> list[slice]:
        return [slice(lo, lo + n) for n, (lo, _) in zip(self.sizes, self.pads)]

    def _full(self) -> tuple[int, ...]:
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.sizes, self.pads))

    def pad(self, x: np.ndarray, first: int, limit: int) -> np.ndarray:
        """x padded by the mode, to ``valid``'s input size; its spatial axes start at axis
        ``first`` (2 channels-first, 1 channels-last). The padded copy is checked against the
        budget ``limit`` first."""
        shape = list(x.shape)
        shape[first:first + len(self.sizes)] = self._full()
        check_fits(f"the {self.mode}-padded x {tuple(shape)}", math.prod(shape) * x.itemsize, limit)
        compiled = self._compiled_pad(x, first)
        if compiled is not None:
            return compiled
        out = np.empty(shape, x.dtype)
        lead, inner = (slice(None),) * first, self._inner()
        out[(*lead, *inner)] = x
        # Axis by axis: the border of axis i copies from its interior, over the full extent of
        # the axes already padded and the interior of those still to come, so every sample is
        # written once, from a sample already written.
        for i, sides in enumerate(self.borders):
            for where, src in sides:
                copied = out[(*lead, *self._extent(i, _run_of(src), inner))]
                out[(*lead, *self._extent(i, where, inner))] = copied
        if self._full() != self.valid.in_spatial:
            out = out[(*lead, *(slice(0, v) for v in self.valid.in_spatial))]
        return out

    def fold(self, g: np.ndarray, first: int) -> np.ndarray:
        """The adjoint of ``pad``: g (``valid``'s input shape; overwritten) with each pad
        sample's value added onto the sample it copies, cropped to x's shape."""
        compiled = self._compiled_fold(g, first)
        if compiled is not None:
            return compiled
        lead, inner = (slice(None),) * first, self._inner()
        if self._full() != self.valid.in_spatial:  # the samples no window read get no gradient
            shape = list(g.shape)
            shape[first:first + len(self.sizes)] = self._full()
            full = np.zeros(shape, g.dtype)
            full[(*lead, *(slice(0, v) for v in self.valid.in_spatial))] = g
            g = full
        for i in reversed(range(len(self.borders))):  # the steps of ``pad`` in reverse
            for where, src in self.borders[i]:
                pads = g[(*lead, *self._extent(i, where, inner))]
                run = _run_of(src)
                if isinstance(run, slice):  # one pad sample per input sample: a strided view
                    g[(*lead, *self._extent(i, run, inner))] += pads
                elif (src == src[0]).all():  # all copy the edge (replicate): their sum onto it
                    edge = slice(int(src[0]), int(src[0]) + 1)
                    g[(*lead, *self._extent(i, edge, inner))] += pads.sum(axis=first + i, keepdims=True)
                else:
                    np.add.at(g, (*lead, *self._extent(i, src, inner)), pads)
        return np.ascontiguousarray(g[(*lead, *inner)])

    @cached_property
    def _maps(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
        """Per spatial axis of ``valid``'s input, led by unit axes to three: (the sample each
        position copies, and the positions copying each sample as CSR: ``at`` (n + 1) into
        ``positions``, in index order)."""
        unit = (np.zeros(1, np.int64), np.array([0, 1], np.int64), np.zeros(1, np.int64))
        maps = [unit] * (3 - len(self.sizes))
        for n, (lo, _), size in zip(self.sizes, self.pads, self.valid.in_spatial):
            p = np.arange(size, dtype=np.int64) - lo
            inside = (p >= 0) & (p < n)
            src = np.where(inside, p, source(self.mode, n, np.where(inside, -1, p))).astype(np.int64)
            positions = np.argsort(src, kind="stable").astype(np.int64)
            at = np.searchsorted(src[positions], np.arange(n + 1)).astype(np.int64)
            maps.append((src, at, positions))
        return tuple(maps)

    def _blocks(self, shape: tuple[int, ...], first: int, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """``shape`` as the compiled passes' (L, D, H, W, T)."""
        unit = (1,) * (3 - len(spatial))
        return (math.prod(shape[:first]), *unit, *spatial, math.prod(shape[first + len(spatial):]))

    def _usable(self, a: np.ndarray, kernel: object, view: np.dtype) -> bool:
        """Whether the compiled pass ``kernel`` runs on ``a`` (seen as ``view``): C-contiguous,
        writeable and aligned (other arrays would compile another signature), at most three
        spatial axes, and, under the planner's JIT policy, loaded or worth loading against NumPy's
        copies."""
        from ._plan import default_planner
        from .engines import _machine

        flags = a.flags
        if len(self.sizes) > 3 or a.size == 0 or not (flags.c_contiguous and flags.writeable
                                                      and flags.aligned):
            return False
        numpy_seconds = 2 * a.nbytes / _machine.figures("_padmode").NUMPY_COPY_BYTES_PER_S
        return default_planner().load_seconds(view, kernel) <= numpy_seconds

    def _compiled_pad(self, x: np.ndarray, first: int) -> np.ndarray | None:
        """``pad`` by the compiled gather (None where it does not run): values copied as
        unsigned integers of their itemsize (complex128 as pairs)."""
        from .engines._kernels import padmode

        words = {4: np.uint32, 8: np.uint64, 16: np.uint64}.get(x.itemsize)
        if words is None or not self._usable(x, padmode.pad_gather, np.dtype(words)):
            return None
        shape = list(x.shape)
        shape[first:first + len(self.sizes)] = self.valid.in_spatial
        out = np.empty(shape, x.dtype)
        (src0, _, _), (src1, _, _), (src2, _, _) = self._maps
        self._threads(out.nbytes)
        inside = x.reshape(self._blocks(x.shape, first, self.sizes)).view(words)
        padded = out.reshape(self._blocks(out.shape, first, self.valid.in_spatial)).view(words)
        padmode.pad_gather(inside, src0, src1, src2, self.pads[-1][0], padded)
        return out

    def _compiled_fold(self, g: np.ndarray, first: int) -> np.ndarray | None:
        """``fold`` by the compiled pass (None where it does not run): float32 and float64, complex
        values as real pairs."""
        from .engines._kernels import padmode

        real = {"float32": np.float32, "float64": np.float64, "complex64": np.float32,
                "complex128": np.float64}.get(g.dtype.name)
        if real is None or not self._usable(g, padmode.fold_gather, np.dtype(real)):
            return None
        shape = list(g.shape)
        shape[first:first + len(self.sizes)] = self.sizes
        dx = np.empty(shape, g.dtype)
        (_, at0, from0), (_, at1, from1), (src2, _, _) = self._maps
        self._threads(g.nbytes)
        padmode.fold_gather(g.reshape(self._blocks(g.shape, first, self.valid.in_spatial)).view(real),
                            at0, from0, at1, from1, src2, self.pads[-1][0],
                            dx.reshape(self._blocks(dx.shape, first, self.sizes)).view(real))
        return dx

    @staticmethod
    def _threads(nbytes: int) -> None:
        """Numba's threads for a pass over ``nbytes``: the engines' count (``_threads.for_numba``),
        one below SERIAL_BYTES."""
        from .engines import _threads

        with _threads.serial_under(_threads.SERIAL_FLOPS if nbytes >= SERIAL_BYTES else 0):
            _threads.for_numba()

    @staticmethod
    def _extent(i: int, along: slice | np.ndarray, inner: list[slice]) -> tuple[object, ...]:
        return (*(slice(None),) * i, along, *inner[i + 1:])

    def through(self, run: Callable[..., np.ndarray], role: str, arrays: dict[str, np.ndarray], fmt: str,
                limit: int) -> np.ndarray:
        """``role``'s array ('y', 'x' or 'w') of the padded conv, by ``run(role, **arrays)`` on the
        VALID geometry: x is padded on the way in; x's gradient is folded on the way out."""
        first = 2 if fmt == "channels_first" else 1
        if role == "x":
            return self.fold(run("x", **arrays), first)
        return run(role, **{**arrays, "x": self.pad(arrays["x"], first, limit)})
