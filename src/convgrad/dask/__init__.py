"""convgrad on dask arrays: the core's ops, block by block, returning lazy dask arrays.

Install the extra: ``pip install convgrad[dask]``. The functions take the core's names,
arguments and semantics (every padding kind, stride, dilation, groups, both layouts, the core's
dtypes), and dask or NumPy arrays. Batch and spatial axes may be chunked; the channel axis is
one chunk (rechunked, with a ``PerformanceWarning``). Each result block is one task that reads
the chunks under its windows (the halo comes from ``ConvGeometry``); filter and bias gradients
are one partial per block, summed by a tree of fan-in ``split_every`` in float64 for float32
inputs, in an order the graph fixes (bitwise reproducible). Each block's engine is chosen when
the graph is built and passed as ``method=`` (a complex block the planner splits carries the split
and its real engine), so a recomputed block gives the same bits.

Extras beside the core's arguments: ``block_bytes`` (the peak memory one block may use; default
half a worker thread's share of its ``memory_limit`` under a distributed Client, else the
core's workspace budget): a chunking whose blocks would exceed it is refused before the graph
is built, with one that fits. ``split_every`` (the tree's fan-in, 8). See docs/dask.md.

Once this module is imported, ``convgrad.conv`` and the other core ops route dask arrays here.
"""

from __future__ import annotations

from ._ops import (
    conv,
    conv_bias_grad,
    conv_filter_grad,
    conv_input_grad,
    conv_jvp,
    conv_transpose,
    conv_transpose_jvp,
    conv_transpose_vjp,
    conv_vjp,
)
from ._workers import setup

__all__ = ["conv", "conv_bias_grad", "conv_filter_grad", "conv_input_grad", "conv_jvp", "conv_transpose",
           "conv_transpose_jvp", "conv_transpose_vjp", "conv_vjp", "setup"]
