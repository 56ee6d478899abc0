"""Filter layouts of every framework, and conversion between them.

A layout is a string with one letter per axis of the filter:

* ``O`` and ``I``: the output and input channels of the op the filter belongs to. For a conv,
  ``I`` has ``C_in / groups`` entries; for a transposed conv the letters name the transposed
  conv's own channels: TensorFlow's ``(*K, C_out, C_in)`` is ``"HWOI"``, PyTorch's and ONNX's
  ``(C_in, C_out / groups, *K)`` is ``"IOHW"``.
* ``M``: the channel multiplier of a depthwise filter. TensorFlow's depthwise filter
  ``(kh, kw, C_in, multiplier)`` is ``"HWIM"``; its output channel ``c * multiplier + m`` reads
  input channel ``c``. Converting it to a layout with ``O`` gives the grouped form
  (``groups = C_in``) that PyTorch, ONNX and JAX use: ``(C_in * multiplier, 1, kh, kw)`` in
  ``"OIHW"``. The way back needs ``in_channels`` (or ``multiplier``): the grouped form does not
  say how ``O`` splits.
* any other letters: spatial axes, matched by name between the two layouts (``"DHW"``,
  ``"HW"``, ``"W"`` or any other letters, for any spatial rank).

Converting is a transpose (and, for depthwise, a reshape): never a flip. The transposed conv's
filter is the filter of the forward conv it transposes, viewed with its channel roles swapped,
which is why ``convert_filter(w, "HWOI", "IOHW")`` is the same transpose as
``convert_filter(w, "HWIO", "OIHW")``.

``filter_layout(framework, op, rank)`` names each framework's layout.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _frameworks
from ._frameworks._common import SPATIAL

__all__ = ["FRAMEWORKS", "OPS", "convert_filter", "filter_layout"]
__dir__ = __all__.copy  # dir() lists the API only

# The frameworks with filter layouts, each module's FILTER_LAYOUTS: (op -> template), "*"
# standing for the spatial letters.
FRAMEWORKS = _frameworks.with_("FILTER_LAYOUTS")
OPS = ("conv", "conv_transpose", "depthwise")
_CHANNEL_LETTERS = frozenset("OIM")


def filter_layout(framework: str, op: str = "conv", rank: int = 2) -> str:
    """The filter layout string of ``framework``'s ``op`` in ``rank`` spatial dims.

    Parameters
    ----------
    framework : 'tf', 'torch', 'onnx' or 'jax'
    op : 'conv', 'conv_transpose' or 'depthwise'
    rank : 1, 2 or 3

    Examples
    --------
    >>> filter_layout("tf", "conv", 2), filter_layout("torch", "conv_transpose", 3)
    ('HWIO', 'IODHW')
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework={framework!r}; expected one of {FRAMEWORKS}")
    if op not in OPS:
        raise ValueError(f"unknown op={op!r}; expected one of {OPS}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank not in SPATIAL:
        raise ValueError(f"rank={rank!r} must be 1, 2 or 3 (give a layout string for other ranks)")
    return _frameworks.module(framework).FILTER_LAYOUTS[op].replace("*", SPATIAL[rank])


def _parse(name: str, layout: object, ndim: int) -> str:
    if not isinstance(layout, str):
        raise TypeError(f"{name} must be a layout string such as 'HWIO', got {layout!r}")
    if len(set(layout)) != len(layout):
        raise ValueError(f"{name}={layout!r} repeats a letter")
    if not layout.isalnum() or not layout.isascii():
        raise ValueError(f"{name}={layout!r} must be letters or digits, one per axis")
    if "I" not in layout or ("O" in layout) == ("M" in layout):
        raise ValueError(f"{name}={layout!r} needs 'I' and exactly one of 'O' (a conv or transposed-conv "
                         "filter) or 'M' (a depthwise filter's channel multiplier)")
    if len(layout) < 3:
        raise ValueError(f"{name}={layout!r} has no spatial letter")
    if len(layout) != ndim:
        raise ValueError(f"{name}={layout!r} has {len(layout)} letters but the filter has {ndim} dims")
    return layout


def convert_filter(
    w: object, src: str = "HWIO", dst: str = "OIHW", *, in_channels: int | None = None,
    multiplier: int | None = None,
) -> np.ndarray:
    """The filter ``w`` in layout ``src`` rearranged into layout ``dst``.

    Parameters
    ----------
    w : array with one axis per letter of ``src``
    src, dst : layout strings (see the module docstring): the same spatial letters, ``O``/``I``
        or ``I``/``M`` (depthwise)
    in_channels, multiplier : int, optional
        For grouped -> depthwise (``O`` in ``src``, ``M`` in ``dst``): how ``O`` splits into
        ``in_channels * multiplier``. Give one.

    Returns
    -------
    The same numbers in the ``dst`` layout (a view where NumPy can give one).

    Examples
    --------
    >>> import numpy as np
    >>> convert_filter(np.zeros((3, 5, 2, 4)), "HWIO", "OIHW").shape
    (4, 2, 3, 5)
    >>> convert_filter(np.zeros((3, 3, 8, 2)), "HWIM", "OIHW").shape
    (16, 1, 3, 3)
    >>> convert_filter(np.zeros((16, 1, 3, 3)), "OIHW", "HWIM", in_channels=8).shape
    (3, 3, 8, 2)
    """
    a = np.asarray(w)
    src = _parse("src", src, a.ndim)
    dst = _parse("dst", dst, a.ndim)
    spatial_src = [c for c in src if c not in _CHANNEL_LETTERS]
    spatial_dst = [c for c in dst if c not in _CHANNEL_LETTERS]
    if sorted(spatial_src) != sorted(spatial_dst):
        raise ValueError(f"src={src!r} and dst={dst!r} name different spatial axes: "
                         f"{''.join(spatial_src)!r} vs {''.join(spatial_dst)!r}")
    if in_channels is not None and multiplier is not None:
        raise ValueError("give in_channels or multiplier, not both")
    if ("M" in src) == ("M" in dst):
        if in_channels is not None or multiplier is not None:
            raise ValueError("in_channels and multiplier only apply between depthwise and grouped layouts")
        return a.transpose([src.index(c) for c in dst])
    if "M" in src:  # I and M merge into O = I * M (channel c * M + m); the grouped filter's I is 1
        return _rechannel(a, src, dst, "IM", lambda i, m: (1, i * m), "IO")
    if a.shape[src.index("I")] != 1:
        raise ValueError(f"a depthwise filter in the grouped layout {src!r} has I = 1 (groups = "
                         f"in_channels); got w.shape={a.shape}")
    o = a.shape[src.index("O")]
    if in_channels is None and multiplier is None:
        raise ValueError(f"converting {src!r} to the depthwise layout {dst!r} needs in_channels= or "
                         f"multiplier=: O={o} does not say how it splits into in_channels * multiplier")
    split = in_channels if in_channels is not None else multiplier
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)) or split < 1 or o % split:
        raise ValueError(f"in_channels={in_channels}, multiplier={multiplier} must be a positive divisor of "
                         f"O={o}")
    c, m = (split, o // split) if in_channels is not None else (o // split, split)
    # O = c * m + m_index: channel-major, as TensorFlow orders it.
    return _rechannel(a, src, dst, "IO", lambda _i, _o: (c, m), "IM")


def _rechannel(a: np.ndarray, src: str, dst: str, channels: str, sizes: Callable[[int, int], tuple[int, int]],
               out: str) -> np.ndarray:
    """``a`` with its spatial axes first and the channel axes ``channels`` (two letters of ``src``)
    last, those two reshaped to ``sizes(m, n)`` and read as the letters ``out``, in ``dst``'s order."""
    spatial = [c for c in src if c not in _CHANNEL_LETTERS]
    moved = a.transpose([src.index(c) for c in [*spatial, *channels]])
    inter = "".join(spatial) + out
    m, n = moved.shape[-2:]
    return moved.reshape(*moved.shape[:-2], *sizes(m, n)).transpose([inter.index(c) for c in dst])

