"""What one task of a blocked conv runs, on a worker: assemble its slice of each operand from
the chunks that hold it, then call the core on that block with the block's own pads and the
engine chosen when the graph was built (so a recomputed block gives the same bits)."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .._dtypes import check_int_sum, result_dtype
from .._geometry import ConvGeometry
from .._ops import _Call, _resolve, conv, conv_filter_grad, conv_input_grad
from ._pinned import Split


@dataclass(frozen=True)
class Gather:
    """A region of ``shape`` made of pieces of chunks, described per axis: ``pieces[axis]`` lists
    ``(start, stop, at)``: the chunk's ``[start, stop)`` lands at ``region[at:at + stop - start]``.
    The task's chunks come in ``itertools.product`` order over the axes' pieces.

    Per axis and in ints, so that interior blocks share one equal ``Gather`` (the graph interns
    them): the scheduler then holds and sends one small object per distinct block, not a slice
    tuple per chunk per task (the client's and scheduler's memory grew with the task count)."""

    shape: tuple[int, ...]
    pieces: tuple[tuple[tuple[int, int, int], ...], ...]

    def __call__(self, chunks: list[np.ndarray]) -> np.ndarray:
        slices = [[(slice(lo, hi), slice(at, at + hi - lo)) for lo, hi, at in axis] for axis in self.pieces]
        combos = list(itertools.product(*slices))
        if len(chunks) == 1:  # one chunk holds the region: a view, no copy
            out = chunks[0][tuple(src for src, _ in combos[0])]
            assert out.shape == self.shape, (out.shape, self.shape)
            return out
        out = np.empty(self.shape, np.result_type(*chunks))
        for chunk, combo in zip(chunks, combos):
            out[tuple(dst for _, dst in combo)] = chunk[tuple(src for src, _ in combo)]
        return out


@dataclass(frozen=True)
class Block:
    """One block's call: ``a`` (and ``b``) gathered, the core's keyword arguments (explicit
    pads, method=engine, workspace_bytes, convention), the block's result shape, the dtype it is
    cast to (the accumulation dtype of a partial filter gradient) and, for a partial, the dtype
    its narrower float operands enter the core in (float32 for float16 and bfloat16: the core
    computes them in float32 and would round its result to their dtype), and for a complex
    block the planner splits, the ``Split`` it runs (chosen when the graph was built)."""

    a: Gather
    b: Gather | None
    kwargs: dict
    shape: tuple[int, ...]
    dtype: np.dtype
    data_format: str = "channels_first"
    compute: np.dtype | None = None
    split: Split | None = None

    def call(self, build: Callable, a_name: str, a: np.ndarray, b_name: str, b: np.ndarray,
             *shape: object) -> tuple[_Call, np.ndarray, np.ndarray]:
        """The core's checked call of a block pinned to a ``split``, as the public op makes it,
        running that split as its plan."""
        call, a, b = _resolve(build, a_name, a, b_name, b, *shape, **self.kwargs)
        return replace(call, plan_for=self.split), a, b


def forward(block: Block, a: list, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """y block = conv(x block, w, bias) with the block's pads."""
    if block.split is None:
        return conv(block.a(a), w, bias, **block.kwargs)
    call, x, w = block.call(ConvGeometry.for_conv, "x", block.a(a), "w", w)
    return call.biased("y", {"x": x, "w": w}, bias)


def input_grad(block: Block, a: list, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """dx block = conv_input_grad(dy block, w, block shape) (+ bias: a transposed conv)."""
    if block.a is None:  # no window reaches this block: its gradient is zero
        dx = np.zeros(block.shape, block.dtype)
    elif block.split is None:
        dx = conv_input_grad(block.a(a), w, block.shape, **block.kwargs)
    else:
        call, dy, w = block.call(ConvGeometry.for_input_grad, "dy", block.a(a), "w", w, block.shape)
        dx = call("x", y=dy, w=call.primal(w))
    return _biased(dx, bias, block.data_format)


def _biased(dx: np.ndarray, bias: np.ndarray | None, fmt: str) -> np.ndarray:
    """dx + bias per channel, in the dtype the core's ``conv_transpose`` returns."""
    if bias is None:
        return dx
    shape = (-1,) + (1,) * (dx.ndim - 2) if fmt == "channels_first" else (-1,)
    return (dx + bias.reshape(shape)).astype(result_dtype(dx, bias)[0], copy=False)


def filter_grad(block: Block, a: list, b: list) -> np.ndarray:
    """This block's share of dw, in the accumulation dtype, never rounded to a float16 or
    bfloat16 result first (the whole-array op rounds its float32 sum once)."""
    x, dy = block.a(a), block.b(b)
    if block.compute is not None and block.compute.kind == "f":
        x, dy = (v.astype(block.compute) if v.dtype.itemsize < block.compute.itemsize else v for v in (x, dy))
    if block.split is None:
        return conv_filter_grad(x, dy, block.shape, **block.kwargs).astype(block.dtype)
    call, x, dy = block.call(ConvGeometry.for_filter_grad, "x", x, "dy", dy, block.shape)
    return call("w", x=call.primal(x), y=dy).astype(block.dtype)


def bias_grad(dy: np.ndarray, axes: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """This block's share of db: dy summed over batch and positions, in ``dtype`` (integers
    bounded first, as the core bounds them)."""
    if dtype.kind == "i":
        check_int_sum(math.prod(dy.shape[a] for a in axes), "N * prod(out) terms per channel in a block",
                      dy=dy)
    return dy.sum(axis=axes, dtype=dtype)


def whole(run: object, arrays: list, kwargs: dict) -> np.ndarray:
    """``run(*arrays, **kwargs)``: one task on whole arrays."""
    return run(*arrays, **kwargs)


def transpose(dy: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, input_shape: tuple, data_format: str,
              **kwargs: object) -> np.ndarray:
    """conv_input_grad(dy, w, input_shape) + bias, on whole arrays."""
    return _biased(conv_input_grad(dy, w, input_shape, data_format=data_format, **kwargs), bias, data_format)


def filter_grad_whole(x: np.ndarray, dy: np.ndarray, *, filter_shape: tuple, **kwargs: object) -> np.ndarray:
    """conv_filter_grad on whole arrays."""
    return conv_filter_grad(x, dy, filter_shape, **kwargs)


def add(*parts: np.ndarray) -> np.ndarray:
    """The partials summed left to right: the order the graph gives, the same on every run.
    Integer sums are checked: each block's core call bounds its own partial, but only the whole
    array's values bound the total, so a sum that wraps int64 raises OverflowError here."""
    return functools.reduce(_checked_add if parts[0].dtype.kind == "i" else np.add, parts)


def _checked_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    total = a + b
    if np.any((a ^ total) & (b ^ total) < 0):  # both addends' signs differ from the sum's: it wrapped
        raise OverflowError("an integer filter or bias gradient passed int64 when its blocks' partials "
                            "were summed; pass float64 (exact to 2**53) or smaller values")
    return total


def cast(total: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The tree's sum in the op's result dtype."""
    return total.astype(dtype)
