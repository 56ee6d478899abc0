"""How each framework spells one ConvGeometry: the values ``explain`` prints and ``check`` runs.

Everything here is read off the core's geometry (pads, tight pads); nothing is re-derived.
"""

from __future__ import annotations

from .._geometry import ConvGeometry

Pairs = tuple[tuple[int, int], ...]


def symmetric_pads(g: ConvGeometry) -> tuple[int, ...] | None:
    """One non-negative pad per dim when before == after everywhere (PyTorch's model), else None."""
    if all(lo == hi >= 0 for lo, hi in g.padding):
        return tuple(lo for lo, _ in g.padding)
    return None


def torch_pad_list(pairs: Pairs) -> list[int]:
    """F.pad's order: last dim first, (before, after) each; negative values crop."""
    return [v for lo, hi in reversed(pairs) for v in (lo, hi)]


def leftover(g: ConvGeometry) -> tuple[int, ...]:
    """Per dim, padded samples past the last window (after - tight after; fewer than the stride).

    The transposed conv's ``output_padding``: it restores them, so the output has x's size.
    """
    return tuple(hi - tight for (_, hi), (_, tight) in zip(g.padding, g.tight_padding))


def is_valid(g: ConvGeometry) -> bool:
    return all(lo == 0 and hi == 0 for lo, hi in g.padding)


def is_same(g: ConvGeometry, *, lower: bool = False) -> bool:
    """Whether the pads are TF / ONNX SAME (SAME_UPPER; SAME_LOWER with ``lower``)."""
    same = ConvGeometry.for_conv(g.x_shape(), g.w_shape(), stride=g.stride,
                                 padding="same_lower" if lower else "same",
                                 dilation=g.rhs_dilation, groups=g.feature_group_count)
    return same.padding == g.padding


def tf_padding(g: ConvGeometry) -> str | list[list[int]] | None:
    """'VALID', 'SAME', an explicit list (2-D only, pads >= 0), or None: not expressible."""
    if is_valid(g):
        return "VALID"
    if is_same(g):
        return "SAME"
    if g.rank == 2 and all(lo >= 0 and hi >= 0 for lo, hi in g.padding):
        return [[0, 0], *([lo, hi] for lo, hi in g.padding), [0, 0]]
    return None


def onnx_pads(pairs: Pairs) -> list[int] | None:
    """ONNX's [x1_begin, x2_begin, ..., x1_end, x2_end, ...], or None when a pad is negative."""
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        return None
    return [lo for lo, _ in pairs] + [hi for _, hi in pairs]


def onnx_auto_pad(g: ConvGeometry) -> str | None:
    if is_valid(g):
        return "VALID"
    if is_same(g):
        return "SAME_UPPER"
    if is_same(g, lower=True):
        return "SAME_LOWER"
    return None
