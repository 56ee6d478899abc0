"""What one task of a blocked conv runs, on a worker: assemble its slice of each operand from
the chunks that hold it, then call the core on that block with the block's own pads and the
engine chosen when the graph was built (so a recomputed block gives the same bits)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .._dtypes import result_dtype
from .._ops import conv, conv_filter_grad, conv_input_grad


@dataclass(frozen=True)
class Gather:
    """A region of ``shape`` made of pieces of chunks: for chunk ``i`` (in the task's key list),
    ``region[dst[i]] = chunk[src[i]]``."""

    shape: tuple[int, ...]
    src: tuple[tuple[slice, ...], ...]
    dst: tuple[tuple[slice, ...], ...]

    def __call__(self, chunks: list[np.ndarray]) -> np.ndarray:
        if len(chunks) == 1:  # one chunk holds the region: a view, no copy
            out = chunks[0][self.src[0]]
            assert out.shape == self.shape, (out.shape, self.shape)
            return out
        out = np.empty(self.shape, np.result_type(*chunks))
        for chunk, src, dst in zip(chunks, self.src, self.dst):
            out[dst] = chunk[src]
        return out


@dataclass(frozen=True)
class Block:
    """One block's call: ``a`` (and ``b``) gathered, the core's keyword arguments (explicit
    pads, method=engine, workspace_bytes), the block's result shape and the dtype it is cast to
    (the accumulation dtype of a partial filter gradient)."""

    a: Gather
    b: Gather | None
    kwargs: dict
    shape: tuple[int, ...]
    dtype: np.dtype
    data_format: str = "channels_first"


def forward(block: Block, a: list, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """y block = conv(x block, w, bias) with the block's pads."""
    return conv(block.a(a), w, bias, **block.kwargs)


def input_grad(block: Block, a: list, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """dx block = conv_input_grad(dy block, w, block shape) (+ bias: a transposed conv)."""
    if block.a is None:  # no window reaches this block: its gradient is zero
        dx = np.zeros(block.shape, block.dtype)
    else:
        dx = conv_input_grad(block.a(a), w, block.shape, **block.kwargs)
    return _biased(dx, bias, block.data_format)


def _biased(dx: np.ndarray, bias: np.ndarray | None, fmt: str) -> np.ndarray:
    """dx + bias per channel, in the dtype the core's ``conv_transpose`` returns."""
    if bias is None:
        return dx
    shape = (-1,) + (1,) * (dx.ndim - 2) if fmt == "channels_first" else (-1,)
    return (dx + bias.reshape(shape)).astype(result_dtype(dx, bias)[0], copy=False)


def filter_grad(block: Block, a: list, b: list) -> np.ndarray:
    """This block's share of dw, in the accumulation dtype."""
    return conv_filter_grad(block.a(a), block.b(b), block.shape, **block.kwargs).astype(block.dtype)


def bias_grad(dy: np.ndarray, axes: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """This block's share of db: dy summed over batch and positions, in ``dtype``."""
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
    """The partials summed left to right: the order the graph gives, the same on every run."""
    return functools.reduce(np.add, parts)


def cast(total: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The tree's sum in the op's result dtype."""
    return total.astype(dtype)
