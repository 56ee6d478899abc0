"""``convgrad draw``: a picture of the op on a small example, in the spirit of the
convolution-arithmetic animations: the (padded, dilated) input grid, the kernel window at each
step, the output grid.

``.png`` and ``.svg`` give a still (every step as a small multiple, or the overlay of all windows);
``.gif`` an animation, one frame per output cell. The geometry of each picture comes from
``_scene`` (read off the core's ConvGeometry); this module only lays it out and paints it, with
matplotlib's object API on the Agg canvas (no pyplot, no global backend).

The layout is in whole pixels (``Layout``), so a test can find any cell in the decoded image.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass

from . import _console, _scene
from ._args import (
    ArgumentError,
    GeometryArgs,
    add_geometry_arguments,
    dims,
    geometry_of,
    output_file,
    resolve_layout,
    shapes,
)

FORMATS = (".png", ".gif", ".svg")
DPI = 100
COLORS = {_scene.DATA: "#9ecae1", _scene.PAD: "#ffffff", _scene.ZERO: "#e3e3e3", _scene.CROP: "#bdbdbd"}
WINDOW = "#f28e2b"  # the kernel window, the kernel, the output cell being computed
DONE = "#c6dbef"  # output cells already computed
EDGE = "#636363"
LEGEND = {_scene.DATA: "input sample", _scene.PAD: "zero padding", _scene.ZERO: "inserted zero (stride)",
          _scene.CROP: "cropped (negative pad)"}
MAX_CELLS = 48  # per axis: a picture of a small example
MAX_FRAMES = 400
MARGIN, GAP, TITLE, LABEL, FOOT = 20, 44, 56, 24, 34
INSET = 0.25  # where tests sample a cell: clear of its edges and of its centred label
STEP = {"forward": "sum of w · x under the window",  # what each output cell is
        "transpose": "sum of flipped w · dilated x under the window",
        "input-grad": "sum of flipped w · dilated dy under the window",
        "filter-grad": "sum of dy · x under the window (dy's samples stride apart)"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "draw", help="draw the op: padded/dilated input, kernel window at each step, output",
        description="Draw the op on a small example: the padded (and, for gradients and transposed "
        "convolutions, stride-dilated) input grid, the kernel window at each step and the output grid. "
        ".png: a still (all steps as a grid, or the overlay of the windows); .gif: an animation; "
        ".svg: a vector still. For --op transpose, --x and --w are conv_transpose's input and filter "
        "(the filter of the conv it transposes) and --padding that conv's padding. Channels are not "
        "drawn: the picture shows the spatial axes (1-D or 2-D).")
    add_geometry_arguments(p, op=False)
    p.add_argument("--op", choices=_scene.OPS, default="forward", help="default forward")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.png, FILE.gif or FILE.svg")
    p.add_argument("--still", choices=("auto", "grid", "overlay"), default="auto",
                   help="for .png/.svg: every step as a small multiple (grid) or all windows overlaid; "
                   "auto: grid up to 36 steps")
    p.add_argument("--fps", type=float, default=1.5, help="frames per second of a .gif (default 1.5)")
    return p


def run(ns: argparse.Namespace) -> int:
    ext = os.path.splitext(ns.output)[1].lower()
    if ext not in FORMATS:
        raise ArgumentError(f"-o {ns.output!r}: the file name must end in {', '.join(FORMATS)}")
    if not 0.01 <= ns.fps <= 100:
        raise ArgumentError(f"--fps must be between 0.01 and 100, got {ns.fps}")
    output_file("-o", ns.output)
    scene = make_scene(ns)
    _console.require("drawing", "matplotlib", *(["PIL"] if ext == ".gif" else []))
    try:
        result = draw(scene, ns.output, still=ns.still, fps=ns.fps)
    except OSError as e:
        raise ArgumentError(f"-o {ns.output!r}: {e.strerror or e}") from None
    print(f"wrote {ns.output}: {result.width}x{result.height} px, {result.frames} frame"
          f"{'s' if result.frames != 1 else ''} ({scene.op}, {len(scene.steps())} steps; {result.mode})")
    return 0


def make_scene(ns: argparse.Namespace) -> _scene.Scene:
    try:
        resolve_layout(ns)
        if ns.op == "transpose":
            x, w = shapes(ns)
            fmt = ns.data_format
            geom = geometry_of(ns, fmt)
            title = (f"conv_transpose: x {dims(x)} · w {dims(w)} · stride {ns.stride} · padding "
                     f"{ns.padding} → y {dims(geom.x_shape(fmt))}")
        else:
            args = GeometryArgs.from_namespace(ns)
            geom, title = args.geometry, args.title()
        # The grids are built from these sizes: refuse huge ones before allocating them.
        if max((*geom.padded_input, *geom.in_spatial, *geom.out_spatial, *geom.kernel_eff), default=0) \
                > 4 * MAX_CELLS:
            raise ValueError(f"draw needs a small example: this one's padded input is {geom.padded_input} "
                             f"cells (at most {MAX_CELLS} per axis); try --x 1,5,5,1")
        scene = _scene.build(ns.op, geom, title)
    except (ValueError, TypeError) as e:
        raise ArgumentError(str(e)) from None
    big = max(scene.input_shape + scene.output_shape)
    if big > MAX_CELLS:
        raise ArgumentError(f"draw needs a small example: this one has grids of {big} cells along an "
                            f"axis (at most {MAX_CELLS}); try --x 1,5,5,1")
    return scene


# --- layout in pixels --------------------------------------------------------------------------
@dataclass(frozen=True)
class Box:
    """A grid of rows x cols cells of ``cell`` pixels, its top-left corner at (x0, y0)."""

    x0: int
    y0: int
    rows: int
    cols: int
    cell: int

    @property
    def width(self) -> int:
        return self.cols * self.cell

    @property
    def height(self) -> int:
        return self.rows * self.cell

    def sample_point(self, r: int, c: int) -> tuple[int, int]:
        """A pixel inside cell (r, c) clear of its edges and its label: (x, y), image coordinates."""
        off = max(2, round(self.cell * INSET))
        return (self.x0 + c * self.cell + off, self.y0 + r * self.cell + off)


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    panels: dict[str, list[Box]]


def animation_layout(scene: _scene.Scene) -> Layout:
    """Input grid, kernel, output grid side by side; one frame per step."""
    widest = max(scene.input_shape[1] + scene.kernel_shape[1] + scene.output_shape[1], 1)
    tallest = max(scene.input_shape[0], scene.kernel_shape[0], scene.output_shape[0])
    cell = int(max(14, min(40, 900 // widest, 480 // max(tallest, 1))))
    x, boxes = MARGIN, {}
    top = TITLE + LABEL
    for name, (rows, cols) in (("input", scene.input_shape), ("kernel", scene.kernel_shape),
                               ("output", scene.output_shape)):
        boxes[name] = [Box(x, top, rows, cols, cell)]
        x += cols * cell + GAP
    width = max(x - GAP + MARGIN, _min_width(scene))
    height = top + max(b[0].height for b in boxes.values()) + FOOT + MARGIN
    return Layout(int(width), int(height), boxes)


def grid_layout(scene: _scene.Scene) -> Layout:
    """One small multiple per step: the input with its window, and the output with its cell."""
    steps = len(scene.steps())
    ncols = math.ceil(math.sqrt(steps))
    nrows = math.ceil(steps / ncols)
    (ri, ci), (ro, co) = scene.input_shape, scene.output_shape
    cell = int(max(8, min(26, 1100 // max(ncols * (ci + co) + 1, 1), 700 // max(nrows * ri, 1))))
    pw = (ci + co) * cell + 16
    ph = max(ri, ro) * cell + 22
    boxes: dict[str, list[Box]] = {"input": [], "output": []}
    for k in range(steps):
        r, c = divmod(k, ncols)
        x0 = MARGIN + c * (pw + 18)
        y0 = TITLE + r * (ph + 12) + 18
        boxes["input"].append(Box(x0, y0, ri, ci, cell))
        boxes["output"].append(Box(x0 + ci * cell + 16, y0, ro, co, cell))
    width = MARGIN * 2 + ncols * (pw + 18)
    height = TITLE + nrows * (ph + 12) + FOOT + MARGIN
    return Layout(int(max(width, _min_width(scene))), int(height), boxes)


def _min_width(scene: _scene.Scene) -> int:
    """Room for the title (7.6 px a character at 10 pt), the subtitle (6.9 px at 9 pt), the legend."""
    longest = max(len(_subtitle(scene, mode)) for mode in ("frame", "grid", "overlay"))
    return max(600, round(7.6 * len(scene.title)) + 2 * MARGIN, round(6.9 * longest) + 2 * MARGIN)


def _subtitle(scene: _scene.Scene, mode: str, k: int = 0) -> str:
    steps, out = scene.steps(), scene.output_label.split(" =")[0]
    if mode == "frame":
        i, j = steps[k]
        cell = f"[{j}]" if scene.rows.cells == 1 and scene.rows.out_len == 1 else f"[{i}, {j}]"
        return f"{scene.op}, step {k + 1}/{len(steps)}: {out}{cell} = {STEP[scene.op]}"
    if mode == "grid":
        return (f"{scene.op}: {len(steps)} steps; orange: the kernel window on {scene.input_label} "
                f"and the {out} cell it computes")
    return (f"{scene.op}: all {len(steps)} windows overlaid; each input cell shows how many output "
            "cells read it")


# --- painting ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DrawResult:
    width: int
    height: int
    frames: int
    mode: str


def draw(scene: _scene.Scene, path: str, *, still: str = "auto", fps: float = 1.5) -> DrawResult:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        steps = scene.steps()
        if len(steps) > MAX_FRAMES:
            raise ArgumentError(f"{len(steps)} steps is too many frames (at most {MAX_FRAMES}); draw a "
                                "smaller example or a .png still")
        layout = animation_layout(scene)
        images = []
        for k in range(len(steps)):
            fig = _figure(layout)
            _paint_frame(fig, layout, scene, k)
            images.append(_to_image(fig))
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                       disposal=1)
        return DrawResult(layout.width, layout.height, len(images), "animation")
    mode = still if still != "auto" else ("grid" if len(scene.steps()) <= 36 else "overlay")
    layout = grid_layout(scene) if mode == "grid" else animation_layout(scene)
    fig = _figure(layout)
    (_paint_grid if mode == "grid" else _paint_overlay)(fig, layout, scene)
    # Reproducible files: no creation date in an SVG.
    fig.savefig(path, dpi=DPI, format=ext[1:], metadata={"Date": None} if ext == ".svg" else {})
    return DrawResult(layout.width, layout.height, 1, f"{mode} still")


def _figure(layout: Layout) -> object:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(layout.width / DPI, layout.height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _to_image(fig: object) -> object:
    import numpy as np
    from PIL import Image

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return Image.fromarray(rgba[..., :3].copy()).quantize(colors=64, method=Image.Quantize.MEDIANCUT)


def _axes(fig: object, layout: Layout, box: Box) -> object:
    ax = fig.add_axes([box.x0 / layout.width, 1 - (box.y0 + box.height) / layout.height,
                       box.width / layout.width, box.height / layout.height])
    ax.set_xlim(0, box.cols)
    ax.set_ylim(box.rows, 0)
    ax.set_axis_off()
    return ax


def _cells(ax: object, box: Box, color_of: object, hatch_of: object = None, labels: dict | None = None,
           linewidth: float = 0.8) -> None:
    from matplotlib.patches import Rectangle

    fontsize = box.cell * 0.3 * 72 / DPI
    for r in range(box.rows):
        for c in range(box.cols):
            # add_artist, not add_patch: the limits are fixed, and updating them per patch is slow.
            ax.add_artist(Rectangle((c, r), 1, 1, facecolor=color_of(r, c), edgecolor=EDGE,
                                    linewidth=linewidth, hatch=hatch_of(r, c) if hatch_of else None,
                                    clip_on=False))
            if labels and (r, c) in labels and box.cell >= 20:
                ax.text(c + 0.5, r + 0.5, labels[(r, c)], ha="center", va="center",
                        fontsize=fontsize, color="black")


def _hatch(scene: _scene.Scene) -> object:
    return lambda r, c: "///" if scene.kind(r, c) == _scene.CROP else None


def _label(fig: object, layout: Layout, box: Box, text: str, size: float = 10) -> None:
    fig.text(box.x0 / layout.width, 1 - (box.y0 - 6) / layout.height, text, ha="left",
             va="bottom", fontsize=size)


def _title(fig: object, layout: Layout, scene: _scene.Scene, line2: str) -> None:
    fig.text(MARGIN / layout.width, 1 - 8 / layout.height, scene.title, ha="left", va="top",
             fontsize=10, fontweight="bold")
    fig.text(MARGIN / layout.width, 1 - 28 / layout.height, line2, ha="left", va="top", fontsize=9)


def _legend(fig: object, layout: Layout, scene: _scene.Scene) -> None:
    from matplotlib.patches import Rectangle

    kinds = {scene.kind(r, c) for r in range(scene.input_shape[0]) for c in range(scene.input_shape[1])}
    entries = [(COLORS[k], LEGEND[k], "///" if k == _scene.CROP else None) for k in COLORS if k in kinds]
    entries.append((WINDOW, "kernel window / current output", None))
    x, y = MARGIN, layout.height - MARGIN - 14
    for color, text, hatch in entries:
        fig.patches.append(Rectangle((x / layout.width, 1 - (y + 12) / layout.height), 12 / layout.width,
                                     12 / layout.height, transform=fig.transFigure, facecolor=color,
                                     edgecolor=EDGE, linewidth=0.8, hatch=hatch))
        fig.text((x + 16) / layout.width, 1 - (y + 6) / layout.height, text, va="center", fontsize=8)
        x += 28 + 6 * len(text)


def _paint_frame(fig: object, layout: Layout, scene: _scene.Scene, k: int) -> None:
    steps = scene.steps()
    step = steps[k]
    _title(fig, layout, scene, _subtitle(scene, "frame", k))
    _window(fig, layout, layout.panels["input"][0], scene, step)
    order = {s: n for n, s in enumerate(steps)}
    _kernel_and_output(fig, layout, scene,
                       lambda r, c: WINDOW if (r, c) == step else (DONE if order[(r, c)] < k else "white"))


def _window(fig: object, layout: Layout, box: Box, scene: _scene.Scene, step: tuple[int, int],
            linewidth: float = 0.8) -> None:
    """The input grid with the kernel window of ``step`` on it, each cell it covers labelled by its tap."""
    window = {(r, c): label for r, c, label in scene.window(step)}
    ax = _axes(fig, layout, box)
    _cells(ax, box, lambda r, c: WINDOW if (r, c) in window else COLORS[scene.kind(r, c)], _hatch(scene),
           window, linewidth)


def _kernel_and_output(fig: object, layout: Layout, scene: _scene.Scene, output_color: object) -> None:
    """The input's label, the kernel with its tap labels, the output grid, and the legend."""
    _label(fig, layout, layout.panels["input"][0], scene.input_label)
    box = layout.panels["kernel"][0]
    _cells(_axes(fig, layout, box), box, lambda r, c: WINDOW,
           labels={(r, c): scene.tap_label(r, c) for r in range(box.rows) for c in range(box.cols)})
    _label(fig, layout, box, scene.kernel_label)
    box = layout.panels["output"][0]
    _cells(_axes(fig, layout, box), box, output_color)
    _label(fig, layout, box, scene.output_label)
    _legend(fig, layout, scene)


def _paint_grid(fig: object, layout: Layout, scene: _scene.Scene) -> None:
    steps = scene.steps()
    _title(fig, layout, scene, _subtitle(scene, "grid"))
    for k, step in enumerate(steps):
        _window(fig, layout, layout.panels["input"][k], scene, step, linewidth=0.5)
        _label(fig, layout, layout.panels["input"][k], f"step {k + 1}", size=7)
        box = layout.panels["output"][k]
        _cells(_axes(fig, layout, box), box, lambda r, c, s=step: WINDOW if (r, c) == s else "white",
               linewidth=0.5)
    _legend(fig, layout, scene)


def _paint_overlay(fig: object, layout: Layout, scene: _scene.Scene) -> None:
    """All windows at once: each input cell shaded by how many windows read it (the count written)."""
    from matplotlib.colors import to_rgb

    steps = scene.steps()
    count: dict[tuple[int, int], int] = {}
    for step in steps:
        for r, c, _ in scene.window(step):
            count[(r, c)] = count.get((r, c), 0) + 1
    top = max(count.values(), default=1)
    win = to_rgb(WINDOW)

    def color(r: int, c: int) -> object:
        # The cell's own colour (sample, padding, inserted zero) blended towards the window's.
        base = to_rgb(COLORS[scene.kind(r, c)])
        n = count.get((r, c), 0)
        t = 0 if n == 0 else 0.25 + 0.65 * n / top
        return tuple((1 - t) * b + t * w for b, w in zip(base, win))

    _title(fig, layout, scene, _subtitle(scene, "overlay"))
    box = layout.panels["input"][0]
    _cells(_axes(fig, layout, box), box, color, _hatch(scene), {rc: str(n) for rc, n in count.items()})
    _kernel_and_output(fig, layout, scene, lambda r, c: DONE)
