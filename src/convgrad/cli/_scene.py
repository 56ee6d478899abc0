"""What ``convgrad draw`` shows, as plain data: grids of cells, and the kernel window at each step.

One spatial axis at a time (``Axis``); a 2-D picture is the product of two axes (a 1-D one gets a
unit height). Every position comes from the core's geometry: the pads, the input-gradient pads,
the stride and the dilation; nothing here is drawn yet.

Grid cells are indexed from the first cell drawn: padding before the input, or, where a
negative pad crops, the cropped input samples (drawn, hatched, so the crop is visible).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from .._formulas import dilate_dim
from .._geometry import ConvGeometry

DATA, PAD, ZERO, CROP = "data", "pad", "zero", "crop"
OPS = ("forward", "transpose", "input-grad", "filter-grad")


@dataclass(frozen=True)
class Axis:
    """One spatial axis: the input grid's cells, and per output index the grid cell of each tap."""

    kinds: tuple[str, ...]
    windows: tuple[tuple[int, ...], ...]  # windows[out_index][tap] -> grid cell
    tap_labels: tuple[str, ...]

    @property
    def cells(self) -> int:
        return len(self.kinds)

    @property
    def out_len(self) -> int:
        return len(self.windows)

    @property
    def taps(self) -> int:
        return len(self.tap_labels)


def _grid(length: int, before: int, after: int, kind_of: Callable[[int], str]) -> tuple[list[str], int]:
    """Cells covering both the sequence [0, length) and its padded range [-before, length + after);
    returns (kinds, offset) with offset the sequence index of grid cell 0."""
    start = min(0, -before)
    kinds = [CROP if not -before <= i < length + after else kind_of(i) if 0 <= i < length else PAD
             for i in range(start, max(length, length + after))]
    return kinds, start


def _axis(op: str, n: int, k: int, s: int, d: int, pads: tuple[int, int], o: int, lhs: int = 1) -> Axis:
    """One axis of ``op``'s picture. 'forward': x (dilated by ``lhs``: lhs - 1 zeros between
    samples) padded by ``pads``, output i reads padded positions i*s + t*d. 'filter-grad': x
    dilated and padded likewise, d_w tap t reads t*d + j*s, one per dy sample j. 'input-grad' and
    'transpose': dy dilated by the stride, padded by the input-gradient pads, under the flipped
    kernel: output i reads i + t*d with tap t = w[k - 1 - t]."""
    lo, hi = pads
    if op in ("input-grad", "transpose"):
        kinds, start = _grid(dilate_dim(o, s), lo, hi, lambda j: DATA if j % s == 0 else ZERO)
        windows = [[i + t * d for t in range(k)] for i in range(n)]
        labels = [k - 1 - t for t in range(k)]
    else:
        kinds, start = _grid(dilate_dim(n, lhs), lo, hi, lambda i: DATA if i % lhs == 0 else ZERO)
        if op == "forward":
            windows, labels = [[i * s + t * d for t in range(k)] for i in range(o)], list(range(k))
        else:
            windows, labels = [[t * d + j * s for j in range(o)] for t in range(k)], list(range(o))
    cells = tuple(tuple(v - lo - start for v in w) for w in windows)
    return Axis(tuple(kinds), cells, tuple(map(str, labels)))


@dataclass(frozen=True)
class Scene:
    """A 2-D picture: input grid rows x cols, the kernel, the output grid, the steps."""

    op: str
    rows: Axis
    cols: Axis
    input_label: str
    kernel_label: str
    output_label: str
    title: str

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.rows.cells, self.cols.cells)

    @property
    def kernel_shape(self) -> tuple[int, int]:
        return (self.rows.taps, self.cols.taps)

    @property
    def output_shape(self) -> tuple[int, int]:
        return (self.rows.out_len, self.cols.out_len)

    def kind(self, r: int, c: int) -> str:
        pair = (self.rows.kinds[r], self.cols.kinds[c])
        return next((k for k in (CROP, PAD, ZERO) if k in pair), DATA)

    def steps(self) -> list[tuple[int, int]]:
        """Output cells in row-major order: one step each."""
        return list(itertools.product(range(self.rows.out_len), range(self.cols.out_len)))

    def tap_label(self, tr: int, tc: int) -> str:
        """'2,1' for a 2-D tap; '1' in 1-D (its unit height has an empty label)."""
        rl, cl = self.rows.tap_labels[tr], self.cols.tap_labels[tc]
        return f"{rl},{cl}" if rl else cl

    @property
    def sample_label(self) -> str:
        """What a data cell of the input grid holds: 'dy sample' for the input gradient."""
        return "dy sample" if self.op == "input-grad" else "x sample"

    @property
    def kernel_name(self) -> str:
        """What slides over the grid: w, w flipped, or dy (the filter gradient's window)."""
        return {"forward": "w", "filter-grad": "dy"}.get(self.op, "flipped w")

    @property
    def output_name(self) -> str:
        return self.output_label.split(" =")[0]

    def telling_step(self) -> tuple[int, int]:
        """The step a still zooms into: the one whose window covers the most data cells (the most
        taps that meet a sample), the middle one among equals."""
        middle = (self.rows.out_len // 2, self.cols.out_len // 2)
        return max(self.steps(), key=lambda s: (
            sum(self.kind(r, c) == DATA for r, c, _ in self.window(s)),
            -abs(s[0] - middle[0]) - abs(s[1] - middle[1])))

    def window(self, step: tuple[int, int]) -> list[tuple[int, int, str]]:
        """(row, col, kernel label) of every tap of the window at ``step``."""
        i, j = step
        return [(r, c, self.tap_label(tr, tc)) for (tr, r), (tc, c) in
                itertools.product(enumerate(self.rows.windows[i]), enumerate(self.cols.windows[j]))]


def build(op: str, g: ConvGeometry, title: str) -> Scene:
    """The scene of ``op`` for a 1-D or 2-D geometry (the forward conv's geometry; for
    'transpose', that of the conv the transposed conv is the adjoint of)."""
    if g.rank > 2:
        raise ValueError(f"draw shows 1-D and 2-D convolutions; this one has {g.rank} spatial dims")
    if op in ("transpose", "input-grad") and any(v != 1 for v in g.lhs_dilation):
        # d_x is then the gradient of the dilated input read at the samples only: not one window
        # picture; the forward and filter-grad pictures show the zeros the dilation inserts.
        raise ValueError(f"draw shows --lhs-dilation {','.join(map(str, g.lhs_dilation))} for --op forward "
                         f"and --op filter-grad, not --op {op}")
    pads = g.input_grad_padding if op in ("transpose", "input-grad") else g.padding
    axes = [_axis(op, n, k, s, d, p, o, lhs) for n, k, s, d, p, o, lhs in
            zip(g.in_spatial, g.kernel, g.stride, g.rhs_dilation, pads, g.out_spatial, g.lhs_dilation)]
    if len(axes) == 1:
        axes.insert(0, Axis((DATA,), ((0,),), ("",)))
    dilated = any(v != 1 for v in g.lhs_dilation)
    labels = {
        "forward": ("x, dilated and padded" if dilated else "x, padded", "w", "y = conv(x, w)"),
        "transpose": ("x, stride-dilated and padded", "w flipped", "y = conv_transpose(x, w)"),
        "input-grad": ("dy, stride-dilated and padded", "w flipped (rot180)", "d_x"),
        "filter-grad": ("x, dilated and padded" if dilated else "x, padded", "dy, stride-dilated", "d_w"),
    }[op]
    return Scene(op, axes[0], axes[1], *labels, title)
