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
MAX_CELLS = 48  # per axis: a picture of a small example
MAX_FRAMES = 400
MARGIN, GAP, TITLE, LABEL = 20, 44, 56, 24
LEGEND_LINE = 18  # px per line of the legend, which wraps at the figure's width
INSET = 0.25  # where tests sample a cell: clear of its edges and of its centred label
MIN_LABELLED = 20  # px: a cell smaller than this has no room for its tap label
ZOOM_CELL, ZOOM_MAX = 36, 12  # the zoomed window: big enough cells for every tap label, at most 12 a side
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


def zoom_extent(scene: _scene.Scene) -> tuple[int, int]:
    """Rows x cols of the zoomed window: the window's extent (dilation gaps included), at most ZOOM_MAX."""
    return tuple(min(ZOOM_MAX, axis.windows[0][-1] - axis.windows[0][0] + 1)
                 for axis in (scene.rows, scene.cols))


def animation_layout(scene: _scene.Scene, mode: str = "frame") -> Layout:
    """Input grid, kernel, output grid and the zoomed window side by side: a frame of the animation
    (``mode='frame'``) or the overlay still (``mode='overlay'``)."""
    widest = max(scene.input_shape[1] + scene.kernel_shape[1] + scene.output_shape[1], 1)
    tallest = max(scene.input_shape[0], scene.kernel_shape[0], scene.output_shape[0])
    cell = int(max(14, min(40, 900 // widest, 480 // max(tallest, 1))))
    # The kernel's taps are labelled: its cells get room for the labels where the grids do not.
    kcell = max(cell, min(28, 360 // max(scene.kernel_shape)))
    x, boxes = MARGIN, {}
    top = TITLE + LABEL
    panels = (("input", scene.input_shape, cell), ("kernel", scene.kernel_shape, kcell),
              ("output", scene.output_shape, cell), ("zoom", zoom_extent(scene), ZOOM_CELL))
    for name, (rows, cols), size in panels:
        boxes[name] = [Box(x, top, rows, cols, size)]
        x += cols * size + GAP
    width = max(x - GAP + MARGIN, _min_width(scene), boxes["zoom"][0].x0 + _zoom_label_width(scene) + MARGIN)
    height = top + max(b[0].height for b in boxes.values()) + _foot(scene, mode, width) + MARGIN
    return Layout(int(width), int(height), boxes)


def grid_layout(scene: _scene.Scene) -> Layout:
    """One small multiple per step: the input with its window, and the output with its cell; below
    them the middle step's window, zoomed, with every tap labelled."""
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
    zoom_top = TITLE + nrows * (ph + 12) + LABEL
    boxes["zoom"] = [Box(MARGIN, zoom_top, *zoom_extent(scene), ZOOM_CELL)]
    width = int(max(MARGIN * 2 + ncols * (pw + 18), _min_width(scene)))
    height = zoom_top + boxes["zoom"][0].height + 12 + _foot(scene, "grid", width) + MARGIN
    return Layout(width, int(height), boxes)


def _zoom_label(scene: _scene.Scene, k: int) -> str:
    rows, cols = zoom_extent(scene)
    whole = (rows, cols) == tuple(a.windows[0][-1] - a.windows[0][0] + 1 for a in (scene.rows, scene.cols))
    part = "" if whole else f" (its first {rows}x{cols} cells)"
    tap = "dy sample" if scene.op == "filter-grad" else "w[i, j]"
    return f"step {k + 1}, zoomed{part}: which {tap} multiplies each cell"


def _zoom_label_width(scene: _scene.Scene) -> int:
    return _text_width(_zoom_label(scene, len(scene.steps()) - 1), 9)


def _text_width(text: str, size: float, bold: bool = False) -> int:
    """Pixels that ``text`` takes at ``size`` points (measured with matplotlib's own font metrics)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    props = FontProperties(size=size, weight="bold" if bold else "normal")
    points = TextToPath().get_text_width_height_descent(text, props, ismath=False)[0]
    return math.ceil(points * DPI / 72)


def _min_width(scene: _scene.Scene) -> int:
    """Room for the title and the longest subtitle."""
    longest = max(_text_width(_subtitle(scene, mode), 9) for mode in ("frame", "grid", "overlay"))
    return max(600, _text_width(scene.title, 10, bold=True) + 2 * MARGIN, longest + 2 * MARGIN)


def _legend_rows(labels: list[str], width: int) -> list[list[tuple[int, str]]]:
    """The legend's entries as lines of (x, label) that fit in ``width`` pixels."""
    rows: list[list[tuple[int, str]]] = [[]]
    x = MARGIN
    for label in labels:
        advance = 16 + _text_width(label, 8) + 14
        if rows[-1] and x + advance > width - MARGIN:
            rows.append([])
            x = MARGIN
        rows[-1].append((x, label))
        x += advance
    return rows


def _foot(scene: _scene.Scene, mode: str, width: int) -> int:
    """Height below the panels: room for every legend entry ``mode`` may draw."""
    return 12 + LEGEND_LINE * len(_legend_rows([s.label for s in _styles(scene, mode).values()], width))


def _subtitle(scene: _scene.Scene, mode: str, k: int = 0) -> str:
    steps, out = scene.steps(), scene.output_name
    if mode == "frame":
        i, j = steps[k]
        cell = f"[{j}]" if scene.rows.cells == 1 and scene.rows.out_len == 1 else f"[{i}, {j}]"
        return f"{scene.op}, step {k + 1}/{len(steps)}: {out}{cell} = {STEP[scene.op]}"
    if mode == "grid":
        return (f"{scene.op}: {len(steps)} steps; orange: the window of {scene.kernel_name} on "
                f"{scene.input_label} and the {out} cell it computes")
    return (f"{scene.op}: all {len(steps)} windows overlaid; each input cell shows how many output "
            "cells read it")


# --- painting ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DrawResult:
    width: int
    height: int
    frames: int
    mode: str


@dataclass(frozen=True)
class Style:
    """How a cell is painted and what the legend calls it."""

    face: str
    edge: str
    hatch: str | None
    label: str
    linewidth: float = 0.8


def _styles(scene: _scene.Scene, mode: str) -> dict[str, Style]:
    """Every style ``mode`` may paint, by key: the grid's kinds, then the window and output cells.
    The legend shows the ones a picture used, so it cannot name a colour that is not drawn."""
    out, kernel = scene.output_name, scene.kernel_name
    tap = "dy sample" if scene.op == "filter-grad" else "tap of w"
    names = {_scene.DATA: scene.sample_label, _scene.PAD: "zero padding",
             _scene.ZERO: "inserted zero (input dilation)" if scene.op in ("forward", "filter-grad")
             else "inserted zero (stride)", _scene.CROP: "cropped (negative pad)"}
    styles = {k: Style(COLORS[k], EDGE, "///" if k == _scene.CROP else None, names[k]) for k in COLORS}
    if mode == "overlay":
        styles["reads"] = Style(WINDOW, "none", None, "windows reading the cell (square size; count)")
        styles["window"] = Style(WINDOW, EDGE, None, f"{kernel}, its taps labelled")
        styles["done"] = Style(DONE, EDGE, None, f"{out}: every cell computed")
    else:
        styles["window"] = Style(WINDOW, EDGE, None, f"window of {kernel} / the {out} cell it computes")
        if mode == "frame":
            styles["done"] = Style(DONE, EDGE, None, f"{out} cells computed")
        todo = "to compute" if mode == "frame" else "of other steps"
        styles["todo"] = Style("#ffffff", EDGE, None, f"{out} cells {todo}")
    styles["tap"] = Style("none", WINDOW, None, f"zoomed: the {tap} that multiplies the cell", 2.0)
    return styles


class _Painter:
    """One figure: paints cells in named styles and keeps which it used, for the legend."""

    def __init__(self, scene: _scene.Scene, layout: Layout, mode: str):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.scene, self.layout, self.mode = scene, layout, mode
        self.styles = _styles(scene, mode)
        self.used: dict[str, None] = {}
        self.fig = Figure(figsize=(layout.width / DPI, layout.height / DPI), dpi=DPI, facecolor="white")
        FigureCanvasAgg(self.fig)

    def axes(self, box: Box, name: str) -> object:
        fig, layout = self.fig, self.layout
        ax = fig.add_axes([box.x0 / layout.width, 1 - (box.y0 + box.height) / layout.height,
                           box.width / layout.width, box.height / layout.height], label=name)
        ax.set_xlim(0, box.cols)
        ax.set_ylim(box.rows, 0)
        ax.set_axis_off()
        return ax

    def rect(self, ax: object, key: str, x: float, y: float, w: float = 1, h: float = 1,
             linewidth: float | None = None) -> None:
        from matplotlib.patches import Rectangle

        st = self.styles[key]
        self.used[key] = None
        # add_artist, not add_patch: the limits are fixed, and updating them per patch is slow.
        ax.add_artist(Rectangle((x, y), w, h, facecolor=st.face, edgecolor=st.edge, hatch=st.hatch,
                                linewidth=st.linewidth if linewidth is None else linewidth, clip_on=False))

    def cells(self, ax: object, box: Box, key_of: object, labels: dict | None = None,
              linewidth: float = 0.8) -> None:
        fontsize = box.cell * 0.3 * 72 / DPI
        for r in range(box.rows):
            for c in range(box.cols):
                self.rect(ax, key_of(r, c), c, r, linewidth=linewidth)
                if labels and (r, c) in labels and box.cell >= MIN_LABELLED:
                    ax.text(c + 0.5, r + 0.5, labels[(r, c)], ha="center", va="center",
                            fontsize=fontsize, color="black")

    def label(self, box: Box, text: str, size: float = 10) -> None:
        self.fig.text(box.x0 / self.layout.width, 1 - (box.y0 - 6) / self.layout.height, text, ha="left",
                      va="bottom", fontsize=size)

    def title(self, line2: str) -> None:
        fig, layout = self.fig, self.layout
        fig.text(MARGIN / layout.width, 1 - 8 / layout.height, self.scene.title, ha="left", va="top",
                 fontsize=10, fontweight="bold")
        fig.text(MARGIN / layout.width, 1 - 28 / layout.height, line2, ha="left", va="top", fontsize=9)

    def zoom(self, step: tuple[int, int], k: int) -> None:
        """The window of ``step`` magnified: each cell's kind, and on each tap the index of the kernel
        element (or dy sample) that multiplies it: w[2,2] on the top left shows the flip."""
        scene, box = self.scene, self.layout.panels["zoom"][0]
        window = scene.window(step)
        r0, c0 = min(r for r, _, _ in window), min(c for _, c, _ in window)
        taps = {(r - r0, c - c0): label for r, c, label in window
                if r - r0 < box.rows and c - c0 < box.cols}
        ax = self.axes(box, "zoom")
        self.cells(ax, box, lambda r, c: scene.kind(r + r0, c + c0), taps)
        for r, c in taps:
            self.rect(ax, "tap", c + 0.08, r + 0.08, 0.84, 0.84)
        self.label(box, _zoom_label(scene, k), size=9)

    def legend(self) -> None:
        from matplotlib.patches import Rectangle

        fig, layout = self.fig, self.layout
        keys = [key for key in self.styles if key in self.used]
        rows = _legend_rows([self.styles[key].label for key in keys], layout.width)
        y = layout.height - MARGIN - LEGEND_LINE * len(rows) + 4
        it = iter(keys)
        for row in rows:
            for x, text in row:
                st = self.styles[next(it)]
                fig.patches.append(Rectangle((x / layout.width, 1 - (y + 12) / layout.height),
                                             12 / layout.width, 12 / layout.height, transform=fig.transFigure,
                                             facecolor=st.face, edgecolor=st.edge, linewidth=st.linewidth,
                                             hatch=st.hatch, gid="legend"))
                fig.text((x + 16) / layout.width, 1 - (y + 6) / layout.height, text, va="center", fontsize=8,
                         gid="legend")
            y += LEGEND_LINE


def figure(scene: _scene.Scene, mode: str, k: int = 0) -> object:
    """The matplotlib Figure of one picture: ``mode`` 'grid' or 'overlay' (a still), or 'frame'
    (frame ``k`` of the animation), on an Agg canvas."""
    layout = grid_layout(scene) if mode == "grid" else animation_layout(scene, mode)
    painter = _Painter(scene, layout, mode)
    {"grid": _paint_grid, "overlay": _paint_overlay, "frame": lambda p: _paint_frame(p, k)}[mode](painter)
    painter.legend()
    return painter.fig


def still_mode(scene: _scene.Scene, still: str = "auto") -> str:
    return still if still != "auto" else ("grid" if len(scene.steps()) <= 36 else "overlay")


def draw(scene: _scene.Scene, path: str, *, still: str = "auto", fps: float = 1.5) -> DrawResult:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        steps = scene.steps()
        if len(steps) > MAX_FRAMES:
            raise ArgumentError(f"{len(steps)} steps is too many frames (at most {MAX_FRAMES}); draw a "
                                "smaller example or a .png still")
        layout = animation_layout(scene)
        images = [_to_image(figure(scene, "frame", k)) for k in range(len(steps))]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                       disposal=1)
        return DrawResult(layout.width, layout.height, len(images), "animation")
    mode = still_mode(scene, still)
    fig = figure(scene, mode)
    # Reproducible files: no creation date in an SVG, no software/date chunks in a PNG.
    fig.savefig(path, dpi=DPI, format=ext[1:],
                metadata={"Date": None} if ext == ".svg" else {"Software": None})
    width, height = (round(v) for v in fig.get_size_inches() * DPI)
    return DrawResult(width, height, 1, f"{mode} still")


def _to_image(fig: object) -> object:
    import numpy as np
    from PIL import Image

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return Image.fromarray(rgba[..., :3].copy()).quantize(colors=64, method=Image.Quantize.MEDIANCUT)


def _window(p: _Painter, box: Box, step: tuple[int, int], linewidth: float = 0.8) -> None:
    """The input grid with the kernel window of ``step`` on it, each cell it covers labelled by its tap
    where the cells are big enough."""
    window = {(r, c): label for r, c, label in p.scene.window(step)}
    p.cells(p.axes(box, "input"), box, lambda r, c: "window" if (r, c) in window else p.scene.kind(r, c),
            window, linewidth)


def _kernel_and_output(p: _Painter, output_key: object) -> None:
    """The input's label, the kernel with its tap labels, the output grid."""
    scene, panels = p.scene, p.layout.panels
    p.label(panels["input"][0], scene.input_label)
    box = panels["kernel"][0]
    p.cells(p.axes(box, "kernel"), box, lambda r, c: "window",
            labels={(r, c): scene.tap_label(r, c) for r in range(box.rows) for c in range(box.cols)})
    p.label(box, scene.kernel_label)
    box = panels["output"][0]
    p.cells(p.axes(box, "output"), box, output_key)
    p.label(box, scene.output_label)


def _paint_frame(p: _Painter, k: int) -> None:
    steps = p.scene.steps()
    step = steps[k]
    p.title(_subtitle(p.scene, "frame", k))
    _window(p, p.layout.panels["input"][0], step)
    order = {s: n for n, s in enumerate(steps)}
    _kernel_and_output(p, lambda r, c: "window" if (r, c) == step else "done" if order[r, c] < k else "todo")
    p.zoom(step, k)


def _paint_grid(p: _Painter) -> None:
    steps = p.scene.steps()
    p.title(_subtitle(p.scene, "grid"))
    for k, step in enumerate(steps):
        _window(p, p.layout.panels["input"][k], step, linewidth=0.5)
        p.label(p.layout.panels["input"][k], f"step {k + 1}", size=7)
        box = p.layout.panels["output"][k]
        p.cells(p.axes(box, "output"), box, lambda r, c, s=step: "window" if (r, c) == s else "todo",
                linewidth=0.5)
    middle = p.scene.telling_step()
    p.zoom(middle, steps.index(middle))


def _paint_overlay(p: _Painter) -> None:
    """All windows at once: each input cell keeps its own colour, with an orange square inside whose
    size grows with how many windows read the cell (the count written on it)."""
    scene = p.scene
    steps = scene.steps()
    count: dict[tuple[int, int], int] = {}
    for step in steps:
        for r, c, _ in scene.window(step):
            count[(r, c)] = count.get((r, c), 0) + 1
    top = max(count.values(), default=1)
    p.title(_subtitle(scene, "overlay"))
    box = p.layout.panels["input"][0]
    ax = p.axes(box, "input")
    p.cells(ax, box, scene.kind)
    fontsize = box.cell * 0.3 * 72 / DPI
    for (r, c), n in count.items():
        side = 0.25 + 0.45 * math.sqrt(n / top)  # the cell's own colour stays visible
        p.rect(ax, "reads", c + (1 - side) / 2, r + (1 - side) / 2, side, side)
        if box.cell >= MIN_LABELLED:
            ax.text(c + 0.5, r + 0.5, str(n), ha="center", va="center", fontsize=fontsize, color="black")
    _kernel_and_output(p, lambda r, c: "done")
    middle = scene.telling_step()
    p.zoom(middle, steps.index(middle))
