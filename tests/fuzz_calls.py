"""Random invalid or extreme calls across convgrad's public functions, for tests/test_fuzz.py.

Call ``i`` of seed ``s`` is drawn from ``np.random.default_rng([s, i])`` alone, so any one call can
be rebuilt and replayed by itself::

    python tests/fuzz_calls.py --seed 0 --count 10000 --log calls.jsonl   # the child's job
    python tests/fuzz_calls.py --seed 0 --show 1234                         # print call 1234

A call starts from a valid call of one target (a small random geometry, 1-3 spatial dims, in that
target's layout and spelling) and replaces one to three of its arguments with bad or extreme
values chosen by the argument's kind: ints (0, negatives, 2**31, 2**63, -2**63, floats, NaN,
bools, strings, None), per-dim sequences (wrong length, nested, bad entries), paddings (bogus
strings, wrong pairs), shapes (negative, huge), arrays (None, 0-d, empty, wrong rank or channels,
object/str/complex/bool dtypes, NaN, read-only, non-contiguous, broadcast views of TiBs), option
strings, budgets and dtypes. About one call in twelve keeps the valid baseline, so the success
path is walked too. No test module imports convgrad internals from here: this drives the public
API only.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# --- geometry of the valid baseline -----------------------------------------------------------


@dataclass(frozen=True)
class Geo:
    """A small valid convolution: channels-first shapes, symmetric pads."""

    rank: int
    n: int
    cin: int
    cout: int
    groups: int
    size: tuple[int, ...]
    k: tuple[int, ...]
    s: tuple[int, ...]
    d: tuple[int, ...]
    p: tuple[int, ...]

    @property
    def out(self) -> tuple[int, ...]:
        """Forward output size per dim: (n + 2p - d(k-1) - 1) // s + 1."""
        return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                     for n, k, s, d, p in zip(self.size, self.k, self.s, self.d, self.p))

    @property
    def x(self) -> tuple[int, ...]:
        return (self.n, self.cin, *self.size)

    @property
    def w(self) -> tuple[int, ...]:
        return (self.cout, self.cin // self.groups, *self.k)

    @property
    def y(self) -> tuple[int, ...]:
        return (self.n, self.cout, *self.out)

    @property
    def wt(self) -> tuple[int, ...]:
        """Transposed-conv weight (C_in of the forward output, C_out / groups, *k) as torch has it."""
        return (self.cout, self.cin // self.groups, *self.k)


def draw_geo(rng: np.random.Generator, rank: int | None = None, groups: int | None = None,
             unit: bool = False) -> Geo:
    """``unit``: stride and dilation 1, no pads (the ops whose front has none)."""
    r = int(rng.choice([1, 2, 2, 3])) if rank is None else rank
    g = int(rng.choice([1, 1, 2])) if groups is None else groups
    n = int(rng.choice([0, 1, 1, 2]))
    cin, cout = g * int(rng.integers(1, 3)), g * int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 4, r))
    s = (1,) * r if unit else tuple(int(v) for v in rng.integers(1, 3, r))
    d = (1,) * r if unit else tuple(int(v) for v in rng.integers(1, 3, r))
    p = (0,) * r if unit else tuple(int(v) for v in rng.integers(0, 2, r))
    size = tuple(di * (ki - 1) + 1 + int(rng.integers(0, 4)) for ki, di in zip(k, d))
    return Geo(r, n, cin, cout, g, size, k, s, d, p)


def last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Channels-first (N, C, *S) -> channels-last (N, *S, C)."""
    return (shape[0], *shape[2:], shape[1])


def hwio(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(O, I, *K) -> (*K, I, O)."""
    return (*shape[2:], shape[1], shape[0])


# --- the arrays a call holds, hashed before and after ------------------------------------------


class Arrays:
    """Makes the call's arrays and remembers the buffers they view, to hash them after the call."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.bases: list[np.ndarray] = []

    def keep(self, base: np.ndarray) -> np.ndarray:
        self.bases.append(base)
        return base

    def real(self, shape: tuple[int, ...], dtype: object = np.float64) -> np.ndarray:
        if math.prod(shape) > 2**16:  # a shape grown by an earlier mutation: keep it free
            return self.broadcast(shape, dtype)
        floats = np.dtype(dtype).kind == "f"
        a = self.rng.standard_normal(shape) if floats else self.rng.integers(-3, 4, shape)
        return self.keep(a.astype(dtype))

    def broadcast(self, shape: tuple[int, ...], dtype: object = np.float64) -> np.ndarray:
        """A view of ``shape`` over one element: TiBs that cost nothing until copied."""
        shape = list(shape)
        while math.prod(max(n, 1) for n in shape) > 2**48:  # NumPy's own limit on a view is 2**63 bytes
            shape[int(np.argmax(shape))] //= 2
        return np.broadcast_to(self.keep(np.ones((), dtype)), tuple(shape))

    def digest(self) -> list[str]:
        return [hashlib.sha1(b.tobytes()).hexdigest() + f"{b.shape}{b.strides}{b.flags.writeable}"
                for b in self.bases]


# --- bad values by kind --------------------------------------------------------------------------

HUGE = (2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64, 2**100, -(2**63), -(2**31))
BAD_INTS: tuple[Any, ...] = (0, -1, -2, *HUGE, 1.5, 2.0, float("nan"), float("inf"), -float("inf"), True,
                             False, None, "2", "", "one", np.int64(2), np.int32(-1), np.uint64(2**63),
                             np.float64(2.0), np.float32(1.0), 1j, [], [2], (), np.array(2),
                             np.array([2, 2]), np.array(2.5), b"2", object(), {1: 1}, slice(1))
# No engine that runs compiled kernels is named: with a cold Numba cache its first call compiles
# for a minute (the child runs with set_jit("never"), so "auto" never picks one).
BAD_STRINGS: tuple[Any, ...] = ("bogus", "", " ", "SAME ", "same", "valid", "full", "VALID", "SAME",
                                "Same_Upper", "SAME_UPPER", "SAME_LOWER", "NOTSET", "channels_first",
                                "channels_last", "NCHW", "NHWC", "NCW", "NWC", "NCDHW", "NDHWC",
                                "auto", "measure", "gather", "offset_gemm", "split_kernel", "highest",
                                "HIGHEST", "fill", "symm", "wrap", "direct", "circular", "reflect",
                                "replicate", "zeros", "constant",
                                None, 0, 1, 1.0, True, b"same", ["same"], ("NCHW",), object(), "\x00",
                                "é" * 3, "x" * 10_000)
BAD_WORKSPACE: tuple[Any, ...] = (0, -1, 1, 8, 100, 2**63, 2**70, -(2**63), "1GB", "100", 1.5, 1e12,
                                  float("nan"), True, False, np.int64(4096), np.float64(4096), [],
                                  None)
BAD_DTYPES: tuple[Any, ...] = ("float32", np.float16, np.int8, np.int64, np.uint8, np.bool_, object,
                               "complex128", np.complex64, "U3", "S2", "bogus", None, 3, "datetime64[s]",
                               np.dtype([("a", "f8")]), float, int, complex, "bfloat16")
BAD_FLOATS: tuple[Any, ...] = (0.0, -1.0, float("nan"), float("inf"), 1e308, -1e308, 2**70, 1j, "1",
                               None, [1.0], np.array([1.0, 2.0]), True, object())
BAD_BOOLS: tuple[Any, ...] = ("yes", "", 2, -1, None, np.bool_(True), 1.0, [True], object())


def _bad_int(rng: np.random.Generator) -> Any:
    return BAD_INTS[int(rng.integers(len(BAD_INTS)))]


def _pick(rng: np.random.Generator, pool: tuple[Any, ...]) -> Any:
    return pool[int(rng.integers(len(pool)))]


def bad_ints(rng: np.random.Generator, good: Any, rank: int) -> Any:
    """A per-dim value (stride, dilation, ...): a bad scalar or a sequence with a fault."""
    length = len(good) if isinstance(good, (tuple, list)) else rank
    base = list(good) if isinstance(good, (tuple, list)) else [1] * length
    choice = int(rng.integers(9))
    if choice == 0:
        return _bad_int(rng)
    if choice == 1:
        return [1] * int(rng.choice([0, length + 1, length + 2, max(length - 1, 0)]))
    if choice == 2:
        return tuple((v, v) for v in base)
    if choice == 3:
        try:
            return np.array(base, dtype=_pick(rng, (np.int64, np.float64, np.uint8, object)))
        except (OverflowError, TypeError, ValueError):
            return tuple(base)
    if choice == 4:
        return "".join(str(v) for v in base) or "1"
    if choice == 5:
        return {i: v for i, v in enumerate(base)}
    out = list(base) or [1]
    out[int(rng.integers(len(out)))] = _bad_int(rng)
    return tuple(out) if rng.random() < 0.5 else out


def bad_padding(rng: np.random.Generator, good: Any, rank: int) -> Any:
    choice = int(rng.integers(8))
    if choice == 0:
        return _pick(rng, BAD_STRINGS)
    if choice == 1:
        before = int(rng.choice([-1, -3, 2**62, -(2**40), 2**31, 2**63]))
        return [(before, int(rng.choice([0, 1, -2, 2**63])))] * rank
    if choice == 2:
        return [tuple([1] * int(rng.choice([0, 1, 3])))] * rank
    if choice == 3:
        return [(1, 1)] * int(rng.choice([0, rank + 1, rank + 3]))
    if choice == 4:
        return np.zeros((rank, 2), dtype=_pick(rng, (np.int64, np.float64, object)))
    if choice == 5:
        return [[_bad_int(rng), 0]] * rank
    return bad_ints(rng, good, rank)


def bad_shape(rng: np.random.Generator, good: Any, rank: int) -> Any:
    if not isinstance(good, (tuple, list)):
        return bad_ints(rng, good, rank)
    out = list(good) or [1]
    choice = int(rng.integers(8))
    if choice == 0:
        return out[:-1] if rng.random() < 0.5 else [*out, 1]
    if choice == 1:
        out[int(rng.integers(len(out)))] = int(rng.choice([-1, 0, 2**40, 2**62, 2**63, -(2**63)]))
        return tuple(out)
    if choice == 2:
        return tuple(out[:1] + [2**20] * (len(out) - 1))
    if choice == 3:
        try:
            return np.array(out, dtype=_pick(rng, (np.int64, np.float64, np.int8)))
        except (OverflowError, TypeError, ValueError):
            return np.array(out, dtype=object)
    if choice == 4:
        return None
    out[int(rng.integers(len(out)))] = _bad_int(rng)
    return tuple(out)


def bad_array(rng: np.random.Generator, arrays: Arrays, good: Any, kind: str) -> Any:
    """A fault in an operand: type, dtype, rank, channels, values, memory layout or size."""
    shape = good.shape if isinstance(good, np.ndarray) else (1, 1, 3)
    if math.prod(shape) > 2**16:  # grown by an earlier mutation: start the next one small
        shape = tuple(min(n, 4) for n in shape)
    # an earlier mutation may have left an odd dtype: build the next fault from real numbers
    dtype = good.dtype if isinstance(good, np.ndarray) and good.dtype.kind in "iuf" else np.dtype(np.float64)
    choice = int(rng.integers(22))
    if choice == 0:
        return _pick(rng, (None, "x", 3, 3.0, 1j, b"\x00", object(), {}, [], [[]], [1, [2]]))
    if choice == 1:
        return arrays.keep(np.array(1.5, dtype))
    if choice == 2:  # a zero-size dim somewhere
        if not shape:
            return arrays.keep(np.empty((0,), dtype))
        s = list(shape)
        s[int(rng.integers(len(s)))] = 0
        return arrays.keep(np.empty(s, dtype))
    if choice == 3:
        return arrays.real((*shape, 1), dtype) if rng.random() < 0.5 else arrays.real(shape[1:], dtype)
    if choice == 4:  # channels (either end) off by one or more
        s = list(shape) or [1]
        axis = int(rng.choice([0, 1, -1])) if len(s) > 1 else 0
        s[axis] = s[axis] + int(rng.choice([1, 2, 3]))
        return arrays.real(tuple(s), dtype)
    if choice == 5:
        bad = _pick(rng, (object, "U3", "S2", np.complex128, np.complex64, np.bool_, np.int8, np.uint64,
                          np.float16, "datetime64[s]", np.dtype([("a", "f8")]), np.int64, np.float32))
        try:
            return arrays.keep(np.ones(shape, dtype=bad))
        except (TypeError, ValueError):
            return arrays.keep(np.ones(shape, dtype=object))
    if choice == 6:
        a = arrays.real(shape, dtype)
        if not a.flags.writeable:  # already a broadcast view: keep it
            return a
        if a.dtype.kind in "iu":
            a[...] = _pick(rng, (np.iinfo(a.dtype).max, np.iinfo(a.dtype).min))
        else:
            with np.errstate(over="ignore"):
                a[...] = _pick(rng, (np.nan, np.inf, -np.inf, 1e308, -1e308))
        return a
    if choice == 7:  # read-only
        a = arrays.real(shape, dtype)
        a.flags.writeable = False
        return a
    if choice == 8:  # non-contiguous: every other element of a bigger array, or reversed
        if not shape:
            return arrays.real(shape, dtype)
        big = arrays.real(tuple(2 * n for n in shape), dtype)
        return big[tuple(slice(None, None, 2) for _ in shape)] if rng.random() < 0.5 else big[..., ::-1]
    if choice == 9:
        a = arrays.real(shape, dtype)
        return a if not a.flags.writeable else np.asfortranarray(a)
    if choice == 10:  # the dims scaled up to TiBs, as a free broadcast view
        if not shape:
            return arrays.broadcast((2**40,), dtype)
        s = list(shape)
        # at least 2**37 elements (1 TiB of float64), so that every such call must be refused:
        # a valid call of a few million elements computes for real, which is not the point here
        axis = int(rng.integers(len(s)))
        rest = math.prod(max(n, 1) for i, n in enumerate(s) if i != axis)
        s[axis] = -(-(2 ** int(rng.integers(37, 45))) // rest)
        return arrays.broadcast(tuple(s), dtype)
    if choice == 11:
        return arrays.real(shape, dtype).tolist() if int(np.prod(shape)) < 200 else None
    if choice == 12:
        return arrays.real((), dtype)
    if choice == 13:
        return np.ma.masked_array(arrays.real(shape, dtype))
    if choice == 14:  # rank far off
        return arrays.real((1,) * int(rng.choice([1, 2, 7, 9])), dtype)
    if choice == 15:  # extreme ints in an integer operand
        return arrays.keep(np.full(shape, _pick(rng, (2**31, 2**62, -(2**63))), np.int64))
    if choice == 16:  # a strided view that aliases itself (stride 0 along one axis)
        if not shape:
            return arrays.real(shape, dtype)
        row = arrays.real(shape[1:], dtype)
        return np.broadcast_to(row, shape)
    # the valid operand itself (the other mutation does the damage) or with swapped axes
    if choice == 17 and len(shape) > 1:
        return arrays.real(shape[::-1], dtype)
    return good


# The child's workspace budget: every array an op allocates is held under it, so a request that
# passes validation stays small and fast; an over-budget request must be refused, not attempted.
BUDGET = 64 * 2**20


# --- the targets: valid calls ------------------------------------------------------------------


@dataclass
class Call:
    """``func(**kwargs)``, then ``then`` on its result: ('pullback', cot) calls ``result[1](cot)``,
    ('method', name, kwargs) calls ``getattr(result, name)(**kwargs)``."""

    target: str
    func: Callable[..., Any]
    kwargs: dict[str, Any]
    rank: int
    then: tuple = ()
    kinds: dict[str, str] = field(default_factory=dict)


KINDS = {
    "stride": "ints", "strides": "ints", "dilation": "ints", "dilations": "ints", "window_strides": "ints",
    "lhs_dilation": "ints", "rhs_dilation": "ints", "output_padding": "ints", "kernel_shape": "ints",
    "rate": "ints", "dilation_rate": "ints",
    "padding": "padding", "pads": "padding", "pad": "padding",
    "input_shape": "shape", "filter_shape": "shape", "output_shape": "shape", "x_shape": "shape",
    "w_shape": "shape", "input_size": "shape", "weight_size": "shape", "input_sizes": "shape",
    "filter_sizes": "shape",
    "groups": "int", "group": "int", "feature_group_count": "int", "batch_group_count": "int",
    "seed": "int",
    "data_format": "str", "method": "str", "mode": "str", "boundary": "str", "auto_pad": "str",
    "precision": "str", "dimension_numbers": "str", "padding_mode": "str", "in_channels": "int",
    "out_channels": "int", "kernel_size": "ints", "order": "int", "f": "array", "y_shape": "shape",
    "workspace_bytes": "workspace", "dtype": "dtype", "preferred_element_type": "dtype",
    "eps": "float", "rtol": "float", "fillvalue": "float",
    "transpose_kernel": "bool", "use_consistent_padding": "bool", "raise_on_failure": "bool", "bias": "bool",
}


def _mod(name: str) -> Any:
    return importlib.import_module(name)


def _cg() -> Any:
    return _mod("convgrad")


def _core_fmt(rng: np.random.Generator, a: Arrays, g: Geo) -> tuple[dict, Callable, Callable]:
    """(kwargs, activation layout, filter layout) for the core: channels-first, or channels-last
    arrays and data_format."""
    if rng.random() < 0.3:
        return {"data_format": "channels_last"}, last, hwio
    return {}, lambda s: s, lambda s: s


def _geo_kwargs(g: Geo) -> dict:
    return {"stride": g.s, "padding": g.p, "dilation": g.d, "groups": g.groups}


def core_conv(rng, a, g, vjp=False):
    fmt, lay, wl = _core_fmt(rng, a, g)
    kw = {"x": a.real(lay(g.x)), "w": a.real(wl(g.w)), **_geo_kwargs(g), **fmt}
    if rng.random() < 0.5:
        kw["bias"] = a.real((g.cout,))
    if vjp:
        return "conv_vjp", _cg().conv_vjp, kw, ("pullback", a.real(lay(g.y)))
    return "conv", _cg().conv, kw, ()


def core_input_grad(rng, a, g, vjp=False):
    fmt, lay, wl = _core_fmt(rng, a, g)
    kw = {"dy": a.real(lay(g.y)), "w": a.real(wl(g.w)), "input_shape": g.size, **_geo_kwargs(g), **fmt}
    if vjp:
        return "conv_input_grad_vjp", _cg().conv_input_grad_vjp, kw, ("pullback", a.real(lay(g.x)))
    return "conv_input_grad", _cg().conv_input_grad, kw, ()


def core_filter_grad(rng, a, g, vjp=False):
    fmt, lay, wl = _core_fmt(rng, a, g)
    kw = {"x": a.real(lay(g.x)), "dy": a.real(lay(g.y)), "filter_shape": g.k, **_geo_kwargs(g), **fmt}
    if vjp:
        return "conv_filter_grad_vjp", _cg().conv_filter_grad_vjp, kw, ("pullback", a.real(wl(g.w)))
    return "conv_filter_grad", _cg().conv_filter_grad, kw, ()


def core_bias_grad(rng, a, g):
    fmt, lay, _ = _core_fmt(rng, a, g)
    return "conv_bias_grad", _cg().conv_bias_grad, {"dy": a.real(lay(g.y)), **fmt}, ()


def core_transpose(rng, a, g, vjp=False):
    # The transposed conv maps g.y-shaped x back to g.x: its weight is the forward's (O, I/G, *K).
    fmt, lay, wl = _core_fmt(rng, a, g)
    kw = {"x": a.real(lay(g.y)), "w": a.real(wl(g.w)), **_geo_kwargs(g), **fmt}
    if rng.random() < 0.5:
        kw["output_shape"] = g.size
    if rng.random() < 0.3:
        kw["bias"] = a.real((g.cin,))
    if vjp:
        name = "conv_transpose_vjp"
        cot_shape = (g.n, g.cin, *g.size) if "output_shape" in kw else None
        return name, _cg().conv_transpose_vjp, kw, ("pullback", a.real(lay(cot_shape)) if cot_shape else None)
    return "conv_transpose", _cg().conv_transpose, kw, ()


def core_general(rng, a, g, vjp=False):
    fmt, lay, wl = _core_fmt(rng, a, g)
    lhs_d = tuple(int(v) for v in rng.integers(1, 3, g.rank))
    kw = {"x": a.real(lay(g.x)), "w": a.real(wl(g.w)), "stride": g.s,
          "padding": [(int(p), int(rng.integers(-1, 2))) for p in g.p], "lhs_dilation": lhs_d,
          "rhs_dilation": g.d, "feature_group_count": g.groups, **fmt}
    if vjp:
        return "conv_general_vjp", _cg().conv_general_vjp, kw, ("pullback", None)
    return "conv_general", _cg().conv_general, kw, ()


def core_prepare(rng, a, g):
    kw = {"x_shape": g.x, "w_shape": g.w, "dtype": np.float64, **_geo_kwargs(g)}
    which = int(rng.integers(3))
    then = [("method", "__call__", {"x": a.real(g.x), "w": a.real(g.w)}),
            ("method", "input_grad", {"dy": a.real(g.y), "w": a.real(g.w)}),
            ("method", "filter_grad", {"x": a.real(g.x), "dy": a.real(g.y)})][which]
    return "prepare", _cg().prepare, kw, then


def testing_dot(rng, a, g):
    kw = {"x_shape": g.x, "w_shape": g.w, "raise_on_failure": False, "seed": int(rng.integers(100)),
          **_geo_kwargs(g)}
    return "testing.dot_test", _mod("convgrad.testing").dot_test, kw, ()


def testing_grads(rng, a, g):
    kw = {"x": a.real(g.x), "w": a.real(g.w), "raise_on_failure": False, **_geo_kwargs(g)}
    return "testing.check_grads", _mod("convgrad.testing").check_grads, kw, ()


def core_jvp(rng, a, g):
    fmt, lay, wl = _core_fmt(rng, a, g)
    transpose = rng.random() < 0.4
    xs = lay(g.y) if transpose else lay(g.x)
    kw = {"x": a.real(xs), "w": a.real(wl(g.w)), "x_dot": a.real(xs), "w_dot": a.real(wl(g.w)),
          **_geo_kwargs(g), **fmt}
    if not transpose and rng.random() < 0.3:
        kw["padding_mode"] = str(rng.choice(["zeros", "reflect", "replicate", "circular"]))
    if transpose:
        return "conv_transpose_jvp", _cg().conv_transpose_jvp, kw, ()
    return "conv_jvp", _cg().conv_jvp, kw, ()


def _operator_dot_test(x_shape, y_shape, w, stride, padding, dtype=np.float64, rtol=None, rng=None,
                       raise_on_failure=True):
    """testing.dot_test's operator form on conv in x and its input gradient."""
    cg = _cg()
    return _mod("convgrad.testing").dot_test(
        lambda x: cg.conv(x, w, stride=stride, padding=padding),
        lambda y: cg.conv_input_grad(y, w, x_shape[2:], stride=stride, padding=padding),
        x_shape, y_shape, dtype=dtype, rtol=rtol, rng=rng, raise_on_failure=raise_on_failure)


def testing_operator_dot(rng, a, g):
    g = replace(g, groups=1, cin=g.cin, cout=g.cout, d=(1,) * g.rank)
    kw = {"x_shape": g.x, "y_shape": g.y, "w": a.real((g.cout, g.cin, *g.k)), "stride": g.s, "padding": g.p,
          "raise_on_failure": False}
    return "testing.dot_test(op)", _operator_dot_test, kw, ()


def _function_check_grads(f, args, order=1, modes=None, jvp=None, dtype=None, eps=None, rtol=None,
                          rng=None, raise_on_failure=True):
    """testing.check_grads's function form (told apart by a positional callable)."""
    return _mod("convgrad.testing").check_grads(f, args, order, modes, jvp=jvp, dtype=dtype, eps=eps,
                                                 rtol=rtol, rng=rng, raise_on_failure=raise_on_failure)


def testing_function_grads(rng, a, g):
    kw = {"f": _cg().conv_vjp, "args": (a.real(g.x), a.real(g.w)), "order": int(rng.choice([1, 2])),
          "raise_on_failure": False}
    return "testing.check_grads(f)", _function_check_grads, kw, ()


def _torch_layer(rank, input, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=None):
    """Build ``convgrad.torch.nn.Conv{rank}d`` and call it on ``input``."""
    layer = getattr(_mod("convgrad.torch.nn"), f"Conv{rank}d")(
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
        groups=groups, bias=bias, padding_mode=padding_mode, dtype=dtype)
    return layer(input)


def torch_layer(rng, a, g):
    kw = {"input": a.real(g.x, np.float32), "in_channels": g.cin, "out_channels": g.cout,
          "kernel_size": g.k, "stride": g.s, "padding": g.p, "dilation": g.d, "groups": g.groups,
          "bias": bool(rng.random() < 0.5),
          "padding_mode": str(rng.choice(["zeros", "reflect", "replicate", "circular"]))}
    return f"torch.nn.Conv{g.rank}d", functools.partial(_torch_layer, g.rank), kw, ()


# fronts --------------------------------------------------------------------------------------


def torch_conv(rng, a, g, vjp=False):
    F = _mod("convgrad.torch.nn.functional")
    fn = getattr(F, f"conv{g.rank}d")
    kw = {"input": a.real(g.x), "weight": a.real(g.w), "stride": g.s, "padding": g.p, "dilation": g.d,
          "groups": g.groups}
    if rng.random() < 0.5:
        kw["bias"] = a.real((g.cout,))
    cot = g.y
    if rng.random() < 0.2:
        kw["padding"], cot = "same" if all(s == 1 for s in g.s) else "valid", None
    return _front(f"torch.conv{g.rank}d", fn, kw, vjp, a, cot)


def _front(name, fn, kw, vjp, a, cot_shape):
    if vjp:
        return name + ".vjp", fn.vjp, kw, ("pullback", a.real(cot_shape) if cot_shape else None)
    return name, fn, kw, ()


def torch_transpose(rng, a, g, vjp=False):
    F = _mod("convgrad.torch.nn.functional")
    fn = getattr(F, f"conv_transpose{g.rank}d")
    kw = {"input": a.real(g.y), "weight": a.real(g.w), "stride": g.s, "padding": g.p, "dilation": g.d,
          "groups": g.groups}
    if rng.random() < 0.3:
        kw["output_padding"] = tuple(int(rng.integers(0, s)) for s in g.s)
    return _front(f"torch.conv_transpose{g.rank}d", fn, kw, vjp, a, None)


def torch_pad(rng, a, g, vjp=False):
    F = _mod("convgrad.torch.nn.functional")
    pad = tuple(int(v) for v in rng.integers(0, 3, 2 * g.rank))
    mode = str(rng.choice(["constant", "reflect", "replicate", "circular"]))
    kw = {"input": a.real(g.x), "pad": pad, "mode": mode}
    if mode == "constant" and rng.random() < 0.5:
        kw["value"] = 1.5
    return _front("torch.pad", F.pad, kw, vjp, a, None)


def torch_grad(rng, a, g, vjp=False):
    G = _mod("convgrad.torch.nn.grad")
    geo = {"stride": g.s, "padding": g.p, "dilation": g.d, "groups": g.groups}
    if rng.random() < 0.5:
        fn = getattr(G, f"conv{g.rank}d_input")
        kw = {"input_size": g.x, "weight": a.real(g.w), "grad_output": a.real(g.y), **geo}
        return _front(f"torch.grad.conv{g.rank}d_input", fn, kw, vjp, a, g.x)
    fn = getattr(G, f"conv{g.rank}d_weight")
    kw = {"input": a.real(g.x), "weight_size": g.w, "grad_output": a.real(g.y), **geo}
    return _front(f"torch.grad.conv{g.rank}d_weight", fn, kw, vjp, a, g.w)


def _tf_pad(g: Geo) -> Any:
    # explicit pads in TF's full-rank spelling, or a string the baseline geometry allows
    return [[0, 0], *[[p, p] for p in g.p], [0, 0]]


def tf_conv(rng, a, g, vjp=False):
    nn = _mod("convgrad.tf.nn")
    fn = {1: nn.conv1d, 2: nn.conv2d, 3: nn.conv3d}[g.rank]
    padding = _tf_pad(g) if g.rank == 2 and rng.random() < 0.5 else str(rng.choice(["SAME", "VALID"]))
    kw = {"input": a.real(last(g.x)), "filters": a.real(hwio(g.w)), "padding": padding}
    if g.rank == 1:
        kw["stride"] = g.s[0]
    else:
        kw["strides"] = [1, *g.s, 1]
    if all(s == 1 for s in g.s):
        kw["dilations"] = [1, *g.d, 1] if g.rank > 1 else g.d[0]
    return _front(f"tf.conv{g.rank}d", fn, kw, vjp, a, None)


def tf_convolution(rng, a, g, vjp=False):
    nn = _mod("convgrad.tf.nn")
    kw = {"input": a.real(last(g.x)), "filters": a.real(hwio(g.w)), "strides": g.s,
          "padding": str(rng.choice(["SAME", "VALID"]))}
    return _front("tf.convolution", nn.convolution, kw, vjp, a, None)


def tf_backprop(rng, a, g, vjp=False):
    nn = _mod("convgrad.tf.nn")
    r = max(g.rank, 2)
    g = replace(draw_geo(rng, rank=r), d=(1,) * r, p=(0,) * r)
    pre = "conv2d" if g.rank == 2 else "conv3d"
    suffix = "" if g.rank == 2 else "_v2"
    strides = [1, *g.s, 1]
    if rng.random() < 0.5:
        fn = getattr(nn, f"{pre}_backprop_input{suffix}")
        kw = {"input_sizes": last(g.x), "filter": a.real(hwio(g.w)), "out_backprop": a.real(last(g.y)),
              "strides": strides, "padding": "VALID"}
        return _front(f"tf.{pre}_backprop_input", fn, kw, vjp, a, last(g.x))
    fn = getattr(nn, f"{pre}_backprop_filter{suffix}")
    kw = {"input": a.real(last(g.x)), "filter_sizes": hwio(g.w), "out_backprop": a.real(last(g.y)),
          "strides": strides, "padding": "VALID"}
    return _front(f"tf.{pre}_backprop_filter", fn, kw, vjp, a, hwio(g.w))


def tf_transpose(rng, a, g, vjp=False):
    nn = _mod("convgrad.tf.nn")
    fn = {1: nn.conv1d_transpose, 2: nn.conv2d_transpose, 3: nn.conv3d_transpose}[g.rank]
    g = replace(g, groups=1, d=(1,) * g.rank, p=(0,) * g.rank)
    if rng.random() < 0.2:
        fn = nn.conv_transpose
    # TF's transposed filter is the forward conv's: spatial + [C_out, C_in] with C_in = g.cout
    kw = {"input": a.real(last(g.y)), "filters": a.real((*g.k, g.cin, g.cout)), "output_shape": last(g.x),
          "strides": [1, *g.s, 1], "padding": "VALID"}
    return _front(f"tf.{fn.__name__}", fn, kw, vjp, a, last(g.x))


def tf_depthwise(rng, a, g, vjp=False):
    nn = _mod("convgrad.tf.nn")
    h = draw_geo(rng, rank=2, groups=1)
    c, m = h.cin, int(rng.integers(1, 3))
    g = replace(h, cout=c * m, groups=c, s=(h.s[0],) * 2, d=(1, 1), p=(0, 0))
    strides = [1, g.s[0], g.s[0], 1]
    kind = int(rng.integers(3))
    if kind == 0:
        kw = {"input": a.real(last(g.x)), "filter": a.real((*g.k, c, m)), "strides": strides,
              "padding": "VALID"}
        return _front("tf.depthwise_conv2d", nn.depthwise_conv2d, kw, vjp, a, last(g.y))
    if kind == 1:
        kw = {"input_sizes": last(g.x), "filter": a.real((*g.k, c, m)), "out_backprop": a.real(last(g.y)),
              "strides": strides, "padding": "VALID"}
        return _front("tf.depthwise_conv2d_backprop_input", nn.depthwise_conv2d_backprop_input, kw, vjp, a,
                      last(g.x))
    kw = {"input": a.real(last(g.x)), "filter_sizes": (*g.k, c, m), "out_backprop": a.real(last(g.y)),
          "strides": strides, "padding": "VALID"}
    return _front("tf.depthwise_conv2d_backprop_filter", nn.depthwise_conv2d_backprop_filter, kw, vjp, a,
                  (*g.k, c, m))


def tf_bias_add(rng, a, g, vjp=False):
    nn = _mod("convgrad.tf.nn")
    kw = {"value": a.real(last(g.x)), "bias": a.real((g.cin,))}
    return _front("tf.bias_add", nn.bias_add, kw, vjp, a, last(g.x))


def tf_atrous(rng, a, g, vjp=False):
    nn = _mod("convgrad.tf.nn")
    g = draw_geo(rng, rank=2, groups=1, unit=True)
    x, w, y = (g.n, *g.size, g.cin), (*g.k, g.cin, g.cout), (g.n, *g.size, g.cout)  # SAME, stride 1
    rate = int(rng.integers(1, 4))
    if rng.random() < 0.5:
        kw = {"value": a.real(x), "filters": a.real(w), "rate": rate, "padding": "SAME"}
        return _front("tf.atrous_conv2d", nn.atrous_conv2d, kw, vjp, a, y)
    kw = {"value": a.real(y), "filters": a.real(w), "output_shape": x, "rate": rate, "padding": "SAME"}
    return _front("tf.atrous_conv2d_transpose", nn.atrous_conv2d_transpose, kw, vjp, a, x)


def tf_separable(rng, a, g, vjp=False):
    nn = _mod("convgrad.tf.nn")
    g = draw_geo(rng, rank=2, groups=1, unit=True)
    c, m = g.cin, int(rng.integers(1, 3))
    x, dw = a.real((g.n, *g.size, c)), a.real((*g.k, c, m))
    if rng.random() < 0.5:
        kw = {"input": x, "depthwise_filter": dw, "pointwise_filter": a.real((1, 1, c * m, g.cout)),
              "strides": [1, 1, 1, 1], "padding": "SAME"}
        return _front("tf.separable_conv2d", nn.separable_conv2d, kw, vjp, a, (g.n, *g.size, g.cout))
    kw = {"input": x, "filter": dw, "strides": [1, 1, 1, 1], "padding": "SAME"}
    return _front("tf.depthwise_conv2d_native", nn.depthwise_conv2d_native, kw, vjp, a, (g.n, *g.size, c * m))


def jax_conv(rng, a, g, vjp=False):
    lax = _mod("convgrad.jax.lax")
    pads = [(p, p) for p in g.p]
    kind = int(rng.integers(3))
    if kind == 0:
        kw = {"lhs": a.real(g.x), "rhs": a.real(g.w), "window_strides": g.s, "padding": pads,
              "rhs_dilation": g.d, "feature_group_count": g.groups}
        if rng.random() < 0.3:
            kw["lhs_dilation"] = tuple(int(v) for v in rng.integers(1, 3, g.rank))
        if rng.random() < 0.3:
            kw["precision"] = str(rng.choice(["highest", "default", "float32"]))
        return _front("jax.conv_general_dilated", lax.conv_general_dilated, kw, vjp, a, None)
    if kind == 1:
        kw = {"lhs": a.real(g.x), "rhs": a.real((g.cout, g.cin, *g.k)), "window_strides": g.s,
              "padding": str(rng.choice(["SAME", "VALID"]))}
        return _front("jax.conv", lax.conv, kw, vjp, a, None)
    kw = {"lhs": a.real(last(g.x)), "rhs": a.real((*g.k, g.cin, g.cout)), "strides": g.s,
          "padding": str(rng.choice(["SAME", "VALID"])) if rng.random() < 0.5 else pads}
    return _front("jax.conv_transpose", lax.conv_transpose, kw, vjp, a, None)


def onnx_conv(rng, a, g, vjp=False):
    onnx = _mod("convgrad.onnx")
    kind = int(rng.integers(3))
    attrs = {"strides": list(g.s), "dilations": list(g.d), "pads": [*g.p, *g.p], "group": g.groups}
    if rng.random() < 0.3:
        del attrs["pads"]
        attrs["auto_pad"] = str(rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET"]))
    if kind == 0:
        kw = {"X": a.real(g.x), "W": a.real(g.w), **attrs}
        if rng.random() < 0.5:
            kw["B"] = a.real((g.cout,))
        return _front("onnx.conv", onnx.conv, kw, vjp, a, None)
    if kind == 1:
        kw = {"X": a.real(g.y), "W": a.real((g.cout, g.cin // g.groups, *g.k)), **attrs}
        if rng.random() < 0.3:
            kw["output_shape"] = list(g.size)
        return _front("onnx.conv_transpose", onnx.conv_transpose, kw, vjp, a, None)
    kw = {"x": a.real(g.x, np.uint8), "w": a.real(g.w, np.uint8), **attrs}
    if rng.random() < 0.5:
        kw["x_zero_point"] = np.uint8(int(rng.integers(0, 4)))
    return _front("onnx.conv_integer", onnx.conv_integer, kw, vjp, a, None)


def scipy_signal(rng, a, g, vjp=False):
    sig = _mod("convgrad.scipy.signal")
    name = str(rng.choice(["convolve", "correlate", "convolve2d", "correlate2d"]))
    fn = getattr(sig, name)
    rank = 2 if name.endswith("2d") else g.rank
    kw = {"in1": a.real(tuple(int(v) for v in rng.integers(1, 6, rank))),
          "in2": a.real(tuple(int(v) for v in rng.integers(1, 4, rank))),
          "mode": str(rng.choice(["full", "same", "valid"]))}
    if name.endswith("2d"):
        kw["boundary"] = str(rng.choice(["fill", "wrap", "symm"]))
        if rng.random() < 0.3:
            kw["fillvalue"] = 1.5
    else:
        kw["method"] = str(rng.choice(["auto", "direct", "fft"]))
    return _front(f"scipy.{name}", fn, kw, vjp, a, None)


def _vjp(builder):
    return lambda rng, a, g: builder(rng, a, g, vjp=True)


TARGETS: tuple[Callable, ...] = (
    core_conv, _vjp(core_conv), core_input_grad, _vjp(core_input_grad), core_filter_grad,
    _vjp(core_filter_grad), core_bias_grad, core_transpose, _vjp(core_transpose), core_general,
    _vjp(core_general), core_prepare, testing_dot, testing_grads, core_jvp, testing_operator_dot,
    testing_function_grads, torch_layer,
    torch_conv, _vjp(torch_conv), torch_transpose, _vjp(torch_transpose), torch_pad, _vjp(torch_pad),
    torch_grad, _vjp(torch_grad),
    tf_conv, _vjp(tf_conv), tf_convolution, tf_backprop, _vjp(tf_backprop), tf_transpose, _vjp(tf_transpose),
    tf_depthwise, _vjp(tf_depthwise), tf_bias_add, _vjp(tf_bias_add),
    tf_atrous, _vjp(tf_atrous), tf_separable, _vjp(tf_separable),
    jax_conv, _vjp(jax_conv), onnx_conv, _vjp(onnx_conv), scipy_signal, _vjp(scipy_signal),
)


# --- one call ------------------------------------------------------------------------------------


def _mutate(rng: np.random.Generator, arrays: Arrays, name: str, value: Any, rank: int) -> Any:
    if name == "args" and isinstance(value, tuple) and value:  # check_grads(f, args): one operand
        i = int(rng.integers(len(value)))
        return (*value[:i], bad_array(rng, arrays, value[i], name), *value[i + 1:])
    kind = "array" if isinstance(value, np.ndarray) else KINDS.get(name)
    if kind is None:
        kind = "ints" if isinstance(value, (tuple, list)) else "int" if isinstance(value, int) else "array"
    if kind == "array":
        return bad_array(rng, arrays, value, name)
    if kind == "int":
        return _bad_int(rng)
    if kind == "ints":
        return bad_ints(rng, value, rank)
    if kind == "padding":
        return bad_padding(rng, value, rank)
    if kind == "shape":
        return bad_shape(rng, value, rank)
    if kind == "str":
        return _pick(rng, BAD_STRINGS)
    if kind == "workspace":
        return _pick(rng, BAD_WORKSPACE)
    if kind == "dtype":
        return _pick(rng, BAD_DTYPES)
    if kind == "float":
        return _pick(rng, BAD_FLOATS)
    return _pick(rng, BAD_BOOLS)


# Optional arguments a mutation may add to a call that left them out.
EXTRA = {"workspace_bytes", "method", "data_format", "bias", "output_padding", "output_shape", "dilations",
         "kernel_shape", "precision", "preferred_element_type", "dimension_numbers", "batch_group_count",
         "lhs_dilation", "B", "x_zero_point", "w_zero_point", "transpose_kernel", "use_consistent_padding",
         "fillvalue", "value", "rtol", "eps", "padding_mode", "x_dot", "w_dot", "bias_dot"}


def make_call(seed: int, i: int, mutate: bool = True) -> tuple[Call, Arrays, int]:
    """Call ``i`` of ``seed``, its arrays, and how many arguments were mutated (0: the baseline)."""
    rng = np.random.default_rng([seed, i])
    arrays = Arrays(rng)
    builder = TARGETS[int(rng.integers(len(TARGETS)))]
    g = draw_geo(rng)
    target, func, kwargs, then = builder(rng, arrays, g)
    call = Call(target, func, kwargs, g.rank, then)
    n = int(rng.choice([0, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 1])) if mutate else 0
    import inspect

    try:
        params = [p for p in inspect.signature(func).parameters if p not in ("name", "use_cudnn_on_gpu")]
    except (TypeError, ValueError):
        params = list(kwargs)
    names = list(kwargs) + [p for p in params if p in EXTRA and p not in kwargs]
    if then and then[0] == "pullback":
        names.append("@cot")
    elif then and then[0] == "method":
        names += [f"@{k}" for k in then[2]]
    for _ in range(n):
        name = names[int(rng.integers(len(names)))]
        if name == "@cot":
            call.then = ("pullback", _mutate(rng, arrays, "cot", then[1], g.rank))
        elif name.startswith("@"):
            inner = dict(call.then[2])
            inner[name[1:]] = _mutate(rng, arrays, name[1:], inner[name[1:]], g.rank)
            call.then = ("method", call.then[1], inner)
        else:
            call.kwargs[name] = _mutate(rng, arrays, name, call.kwargs.get(name), g.rank)
    if n and rng.random() < 0.02:
        call.kwargs["bogus_keyword"] = 1
    return call, arrays, n


def _short(v: Any, limit: int = 120) -> str:
    if isinstance(v, np.ndarray):
        kind = "view" if v.base is not None else "array"
        flags = "" if v.flags.writeable else " read-only"
        flags += "" if v.flags.c_contiguous else " non-contiguous"
        return f"<{kind} {v.shape} {v.dtype}{flags}>"
    if isinstance(v, (tuple, list)) and any(isinstance(e, np.ndarray) for e in v):
        return "(" + ", ".join(_short(e) for e in v) + ")"
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."


def describe(call: Call) -> str:
    args = ", ".join(f"{k}={_short(v)}" for k, v in call.kwargs.items())
    text = f"{call.target}({args})"
    if call.then and call.then[0] == "pullback":
        text += f" then pullback({_short(call.then[1])})"
    elif call.then:
        text += f" then .{call.then[1]}({', '.join(f'{k}={_short(v)}' for k, v in call.then[2].items())})"
    return text


def run_call(call: Call) -> Any:
    result = call.func(**call.kwargs)
    if call.then and call.then[0] == "pullback":
        cot = call.then[1]
        if cot is None:  # the baseline cotangent: ones shaped as the output
            y = result[0]
            cot = np.ones(y.shape, y.dtype)
        return result[1](cot)
    if call.then:
        return getattr(result, call.then[1])(**call.then[2])
    return result


def _snapshot(call: Call) -> str:
    """Non-array arguments as text (lists may be mutated in place too)."""
    return repr([(k, v) for k, v in call.kwargs.items() if not isinstance(v, np.ndarray)])


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(seed: int, count: int, log_path: str, hang_s: float) -> None:
    """The child: every call, one JSON line each, flushed (a crash leaves the calls before it)."""
    import faulthandler
    import warnings

    faulthandler.enable()
    os.environ.setdefault("CONVGRAD_WORKSPACE_BYTES", str(BUDGET))
    cg = _cg()
    cg.set_jit("never")  # never compile kernels behind a call: a cold Numba cache takes minutes
    for mod in ("convgrad.testing", "convgrad.torch.nn.functional", "convgrad.torch.nn.grad",
                "convgrad.tf.nn", "convgrad.jax.lax", "convgrad.onnx", "convgrad.scipy.signal"):
        _mod(mod)
    # warm every lazy import and engine module with one valid call of each target
    for i in range(len(TARGETS) * 4):
        call, _, _ = make_call(seed + 1, i, mutate=False)
        try:
            run_call(call)
        except Exception:
            pass
    base_rss, base_peak = rss_bytes(), peak_rss_bytes()
    with open(log_path, "w") as log:
        head = {"start": True, "rss": base_rss, "peak": base_peak, "optimize": sys.flags.optimize}
        log.write(json.dumps(head) + "\n")
        log.flush()
        for i in range(count):
            call, arrays, n = make_call(seed, i)
            before, text_before = arrays.digest(), _snapshot(call)
            faulthandler.dump_traceback_later(hang_s, exit=True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    run_call(call)
                    outcome, message = "ok", ""
                except BaseException as e:
                    outcome, message = f"{type(e).__module__}.{type(e).__qualname__}", str(e)[:300]
                    bases = [c.__name__ for c in type(e).__mro__]
                    outcome += "|" + ",".join(bases)
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            faulthandler.cancel_dump_traceback_later()
            record = {"i": i, "target": call.target, "n": n, "outcome": outcome, "message": message,
                      "s": round(elapsed, 5), "cpu": round(cpu, 5), "rss": rss_bytes(),
                      "peak": peak_rss_bytes(),
                      "mutated_input": before != arrays.digest(),
                      "mutated_args": text_before != _snapshot(call),
                      "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:80]}" for w in caught})}
            log.write(json.dumps(record) + "\n")
            log.flush()
        log.write(json.dumps({"done": True}) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--log", default="fuzz.jsonl")
    p.add_argument("--hang", type=float, default=20.0, help="seconds before a call counts as a hang")
    p.add_argument("--show", type=int, nargs="*", help="print these calls and run them")
    args = p.parse_args(argv)
    if args.show is not None:
        for i in args.show:
            call, _, _ = make_call(args.seed, i)
            print(f"{i}: {describe(call)}")
            try:
                print("   ->", type(run_call(call)).__name__)
            except Exception as e:
                print(f"   -> {type(e).__name__}: {e}")
        return 0
    run(args.seed, args.count, args.log, args.hang)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
