"""Padding specifications, resolved per axis into explicit (before, after) pairs.

A spec is kept unresolved until the input size is known, because SAME depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._canon import MAX_NDIM, as_int, bounded_list
from ._formulas import dilate_dim, same_total_pad, transpose_size

PADDING_STRINGS = ("valid", "same", "same_lower", "full")

Pairs = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PaddingSpec:
    """``kind`` is one of PADDING_STRINGS or 'explicit' (then ``pairs`` holds the pads)."""

    kind: str
    pairs: Pairs = ()

    def resolve(self, n: Sequence[int], k: Sequence[int], s: Sequence[int], d: Sequence[int]) -> Pairs:
        """The (before, after) pads of each axis for input sizes ``n``."""
        if self.kind == "explicit":
            return self.pairs
        out = []
        for n_i, k_i, s_i, d_i in zip(n, k, s, d):
            k_eff = dilate_dim(k_i, d_i)
            if self.kind == "valid":
                out.append((0, 0))
            elif self.kind == "full":
                out.append((k_eff - 1, k_eff - 1))
            else:
                total = same_total_pad(n_i, k_eff, s_i)
                small, big = total // 2, total - total // 2
                out.append((small, big) if self.kind == "same" else (big, small))
        return tuple(out)

    def input_size_range(
        self, o: Sequence[int], k: Sequence[int], s: Sequence[int], d: Sequence[int]
    ) -> tuple[tuple[int, int], ...]:
        """Per axis, the inclusive range [lo, hi] of input sizes whose forward output is ``o``: the
        transposed conv's output sizes with output_padding 0 .. s - 1 (never below 0)."""
        if self.kind in ("same", "same_lower"):  # SAME always gives ceil(n / s) outputs
            return tuple(((o_i - 1) * s_i + 1, o_i * s_i) for o_i, s_i in zip(o, s))
        out = []  # the other kinds' pads do not depend on the input size
        for o_i, k_i, s_i, d_i, (lo, hi) in zip(o, k, s, d, self.resolve((0,) * len(o), k, s, d)):
            k_eff = dilate_dim(k_i, d_i)
            out.append((max(transpose_size(o_i, k_eff, s_i, lo, hi, 0), 0),
                        transpose_size(o_i, k_eff, s_i, lo, hi, s_i - 1)))
        return tuple(out)


def parse_padding(padding: object, rank: int) -> PaddingSpec:
    """An int, one int per dim, one (before, after) pair per dim, or a string in PADDING_STRINGS."""
    if isinstance(padding, str):
        kind = padding.lower()
        if kind not in PADDING_STRINGS:
            raise ValueError(
                f"unknown padding={padding!r}; expected one of {PADDING_STRINGS}, an int, "
                f"{rank} ints or {rank} (before, after) pairs"
            )
        return PaddingSpec(kind)
    if isinstance(padding, bytes) or padding is None:
        raise TypeError(f"padding must be a string, an int or a sequence, got {padding!r}")
    if not hasattr(padding, "__iter__"):
        p = as_int("padding", padding)
        return PaddingSpec("explicit", ((p, p),) * rank)
    items = bounded_list("padding", padding, MAX_NDIM)
    if len(items) != rank:
        raise ValueError(
            f"padding must have one entry per spatial dim ({rank}), got {len(items)}: {padding!r}"
        )
    pairs = []
    for i, item in enumerate(items):
        if isinstance(item, (str, bytes)):
            raise TypeError(f"padding[{i}] must be an int or a (before, after) pair, got {item!r}")
        if hasattr(item, "__iter__"):
            pair = bounded_list(f"padding[{i}]", item, MAX_NDIM)
            if len(pair) != 2:
                raise ValueError(
                    f"padding[{i}] must be an int or a (before, after) pair, got {item!r}"
                )
            pairs.append((as_int(f"padding[{i}][0]", pair[0]), as_int(f"padding[{i}][1]", pair[1])))
        else:
            p = as_int(f"padding[{i}]", item)
            pairs.append((p, p))
    return PaddingSpec("explicit", tuple(pairs))
