"""``convgrad draw``: pictures generated, decoded, and the kernel window found where it belongs."""

from __future__ import annotations

import builtins
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from convgrad.cli import _scene, draw  # noqa: E402
from convgrad.cli import main as cli_main  # noqa: E402
from convgrad.cli._args import ArgumentError  # noqa: E402

WINDOW = (0xF2, 0x8E, 0x2B)
DATA = (0x9E, 0xCA, 0xE1)
PAD = (0xFF, 0xFF, 0xFF)
ZERO = (0xE3, 0xE3, 0xE3)


def close(pixel, color, tol=24) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel[:3], color))


def scene_for(argv: list[str]) -> _scene.Scene:
    parser = __import__("convgrad.cli", fromlist=["build_parser"]).build_parser()
    return draw.make_scene(parser.parse_args(["draw", *argv, "-o", "unused.png"]))


def rgb(path, frame: int = 0) -> np.ndarray:
    with Image.open(path) as im:
        im.seek(frame)
        return np.asarray(im.convert("RGB"))


def frames_and_size(path) -> tuple[int, tuple[int, int]]:
    with Image.open(path) as im:
        return getattr(im, "n_frames", 1), im.size


def test_seed_forward_png_grid_of_steps(cli, tmp_path):
    path = tmp_path / "forward.png"
    res = cli("draw", "-o", str(path))
    assert res.code == 0, res.err
    assert f"wrote {path}" in res.out and "4 steps; grid still" in res.out
    scene = scene_for([])
    layout = draw.grid_layout(scene)
    img = rgb(path)
    assert img.shape == (layout.height, layout.width, 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10  # not blank
    # Step k: the 3x3 window at output (i, j) covers input rows i..i+2, cols j..j+2; the output
    # cell (i, j) is lit; the input cells outside the window keep the data colour.
    for k, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        box = layout.panels["input"][k]
        for r in range(4):
            for c in range(4):
                x, y = box.sample_point(r, c)
                inside = i <= r < i + 3 and j <= c < j + 3
                assert close(img[y, x], WINDOW if inside else DATA), (k, r, c, img[y, x])
        out = layout.panels["output"][k]
        for r in range(2):
            for c in range(2):
                x, y = out.sample_point(r, c)
                assert close(img[y, x], WINDOW if (r, c) == (i, j) else PAD), (k, r, c)


def test_input_grad_gif_frames_and_windows(cli, tmp_path):
    """d_x of a stride-2 conv: dy dilated by 2 (zeros between samples), padded by the input-gradient
    pads, under the flipped kernel; one frame per d_x cell."""
    argv = ["--layout", "NHWC", "--x", "1,5,5,1", "--stride", "2", "--padding", "1", "--op", "input-grad"]
    path = tmp_path / "ig.gif"
    res = cli("draw", *argv, "-o", str(path))
    assert res.code == 0, res.err
    scene = scene_for(argv)
    assert scene.input_shape == (7, 7) and scene.output_shape == (5, 5)
    layout = draw.animation_layout(scene)
    assert frames_and_size(path) == (25, (layout.width, layout.height))
    box, out = layout.panels["input"][0], layout.panels["output"][0]
    # The dilated, padded dy: pads of 1 (k_eff - 1 - before = 3 - 1 - 1), samples on odd cells.
    kinds = {(r, c): scene.kind(r, c) for r in range(7) for c in range(7)}
    assert kinds[(1, 1)] == kinds[(3, 5)] == _scene.DATA
    assert kinds[(2, 1)] == kinds[(1, 2)] == _scene.ZERO
    assert kinds[(0, 3)] == kinds[(6, 6)] == _scene.PAD
    for frame in (0, 7, 24):
        i, j = divmod(frame, 5)
        img = rgb(path, frame)
        for r in range(7):
            for c in range(7):
                x, y = box.sample_point(r, c)
                if i <= r < i + 3 and j <= c < j + 3:
                    expected = WINDOW
                else:
                    expected = {"data": DATA, "zero": ZERO, "pad": PAD}[kinds[(r, c)]]
                assert close(img[y, x], expected), (frame, r, c, img[y, x])
        x, y = out.sample_point(i, j)
        assert close(img[y, x], WINDOW)
    # The kernel panel labels the taps flipped: the top-left tap is w[2, 2].
    assert scene.tap_label(0, 0) == "2,2" and scene.window((0, 0))[0] == (0, 0, "2,2")


def test_transpose_png_and_window_positions(cli, tmp_path):
    argv = ["--layout", "NHWC", "--x", "1,2,2,1", "--stride", "2", "--op", "transpose"]
    path = tmp_path / "t.png"
    assert cli("draw", *argv, "-o", str(path)).code == 0
    scene = scene_for(argv)
    # conv_transpose of a 2x2 input, 3x3 kernel, stride 2: dilated to 3x3, padded by 2 -> 7x7, out 5x5.
    assert scene.input_shape == (7, 7) and scene.output_shape == (5, 5)
    assert [(r, c) for r in range(7) for c in range(7) if scene.kind(r, c) == _scene.DATA] == [
        (2, 2), (2, 4), (4, 2), (4, 4)]
    img = rgb(path)
    layout = draw.grid_layout(scene)
    x, y = layout.panels["input"][6].sample_point(1, 1)  # step 7 = output (1, 1): window rows/cols 1..3
    assert close(img[y, x], WINDOW)
    x, y = layout.panels["input"][6].sample_point(0, 0)
    assert close(img[y, x], PAD)


def test_filter_grad_svg_and_negative_pads(cli, tmp_path):
    argv = ["--layout", "NHWC", "--x", "1,5,5,1", "--stride", "2", "--padding=-1:1,1:0",
            "--op", "filter-grad"]
    path = tmp_path / "fg.svg"
    res = cli("draw", *argv, "-o", str(path))
    assert res.code == 0, res.err
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert len(list(root.iter())) > 200  # a vector drawing of the cells, not an embedded bitmap
    assert not any(el.tag.endswith("image") for el in root.iter())
    scene = scene_for(argv)
    # Row 0 is the cropped input row; column 0 is padding; d_w tap (0, 0) reads padded
    # positions 0 and 2 in each axis.
    assert scene.kind(0, 2) == _scene.CROP and scene.kind(2, 0) == _scene.PAD
    assert {(r, c) for r, c, _ in scene.window((0, 0))} == {(1, 0), (1, 2), (3, 0), (3, 2)}
    assert scene.output_shape == (3, 3) and len(scene.steps()) == 9


def test_overlay_and_1d(cli, tmp_path):
    path = tmp_path / "o.png"
    res = cli("draw", "--layout", "NHWC", "--x", "1,7,7,1", "--dilation", "2", "--padding", "1",
              "--still", "overlay", "-o", str(path))
    assert res.code == 0 and "overlay still" in res.out
    img = rgb(path)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10
    path = tmp_path / "one.gif"
    res = cli("draw", "--layout", "NWC", "--x", "1,9,1", "--stride", "2", "--padding", "same",
              "-o", str(path))
    assert res.code == 0
    assert frames_and_size(path)[0] == 5


@pytest.mark.parametrize(("argv", "message"), [
    (["-o", "picture.jpg"], "must end in .png, .gif, .svg"),
    (["--x", "1,3,3,3,1", "-o", "p.png"], "1-D and 2-D"),
    (["--x", "1,60,60,1", "-o", "p.png"], "small example"),
    (["--op", "sideways", "-o", "p.png"], "invalid choice"),
    ([], "the following arguments are required: -o/--output"),
    (["-o", "no/such/dir/x.png"], "-o 'no/such/dir/x.png': no such directory 'no/such/dir'"),
    (["--fps", "0", "-o", "p.gif"], "--fps must be between 0.01 and 100"),
    (["--fps", "1e-300", "-o", "p.gif"], "--fps must be between 0.01 and 100"),
    (["--padding", "99999999999", "-o", "p.gif"], "small example"),
    (["--x", f"1,{2**40},1", "-o", "p.png"], "small example"),
])
def test_draw_bad_arguments(cli, argv, message):
    res = cli("draw", *argv)
    assert res.code == 2 and message in res.err and "Traceback" not in res.err


def test_an_unwritable_file_is_named(cli, tmp_path):
    """A folder in place of the file passes the directory check but fails to open: still no traceback."""
    res = cli("draw", "--x", "1,4,4,1", "-o", str(tmp_path))
    assert res.code == 2 and "Traceback" not in res.err
    target = tmp_path / "x.png"
    target.mkdir()
    res = cli("draw", "--x", "1,4,4,1", "-o", str(target))
    assert res.code == 2 and f"-o {str(target)!r}: cannot write" in res.err


def test_without_matplotlib_says_what_to_install(cli, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    res = cli("draw", "-o", str(tmp_path / "x.png"))
    assert res.code == 2
    assert "pip install 'convgrad[draw]'" in res.err
    assert not (tmp_path / "x.png").exists()


def test_too_many_frames_is_an_argument_error():
    scene = scene_for(["--layout", "NHWC", "--x", "1,25,25,1", "--padding", "same", "--w", "1,1,1,1"])
    with pytest.raises(ArgumentError, match="too many frames"):
        draw.draw(scene, "many.gif")


def test_entry_point_draw(tmp_path):
    assert cli_main(["draw", "--op", "forward", "-o", str(tmp_path / "a.png")]) == 0


# --- at a realistic size: every tap labelled, a legend that matches the picture -----------------
REALISTIC = ["--layout", "NCHW", "--x", "1,1,8,8", "--w", "1,1,3,3", "--stride", "2", "--padding", "1"]
MODES = ("grid", "overlay", "frame")



def cases(extra: tuple = ((),)) -> list[tuple[str, tuple, str]]:
    """(op, extra argv, mode); a grid of more than 36 small multiples is left out: auto draws the
    overlay then, and building hundreds of panels costs seconds."""
    return [(op, e, mode) for op in _scene.OPS for e in extra for mode in MODES
            if mode != "grid" or draw.still_mode(scene_for([*REALISTIC, "--op", op, *e])) == "grid"]


def zoom_texts(fig) -> dict[tuple[float, float], object]:
    (ax,) = [ax for ax in fig.axes if ax.get_label() == "zoom"]
    return {t.get_position(): t for t in ax.texts}


@pytest.mark.parametrize(("op", "extra", "mode"), cases())
def test_every_tap_is_labelled_at_a_realistic_size(op, extra, mode):
    """8x8 input, 3x3 kernel, stride 2 (64 or 225 steps for the gradients): the zoomed window labels
    every tap, large enough to read, where the small cells of the grids have no room."""
    scene = scene_for([*REALISTIC, "--op", op])
    fig = draw.figure(scene, mode, k=len(scene.steps()) // 2)
    texts = zoom_texts(fig)
    # The window's taps: the 3x3 kernel's, or for the filter gradient dy's 4x4 = ((8+2-3)//2+1)^2.
    n = 4 if op == "filter-grad" else 3
    expected = sorted(f"{i},{j}" for i in range(n) for j in range(n))
    assert sorted(t.get_text() for t in texts.values()) == expected
    assert min(t.get_fontsize() for t in texts.values()) >= 7
    # Tap (a, b) of the window sits at zoom cell (a*s_eff, b*s_eff): 1 apart for a kernel, the stride
    # apart for dy; the gradient's and the transpose's kernel is rot180(w), so w[2,2] is top left.
    gap = 2 if op == "filter-grad" else 1
    for a in range(n):
        for b in range(n):
            i, j = (n - 1 - a, n - 1 - b) if op in ("input-grad", "transpose") else (a, b)
            assert texts[(b * gap + 0.5, a * gap + 0.5)].get_text() == f"{i},{j}", (a, b)


def styles(patches) -> set:
    from matplotlib.colors import to_rgba

    return {(to_rgba(p.get_facecolor()), to_rgba(p.get_edgecolor()), p.get_hatch()) for p in patches}


@pytest.mark.parametrize(("op", "extra", "mode"), cases(((), ("--padding=-1:1,1:0",), ("--dilation", "2"))))
def test_the_legend_shows_exactly_the_styles_drawn(op, extra, mode):
    """Every fill/edge/hatch painted in a panel has a legend entry, and every legend entry is painted."""
    scene = scene_for([*REALISTIC, "--op", op, *extra])
    fig = draw.figure(scene, mode)
    drawn = styles(p for ax in fig.axes for p in ax.patches)
    legend = [p for p in fig.patches if p.get_gid() == "legend"]
    assert styles(legend) == drawn
    labels = [t.get_text() for t in fig.texts if t.get_gid() == "legend"]
    assert len(labels) == len(legend) == len(set(labels))


@pytest.mark.parametrize("mode", ("still", "frame"))
def test_legend_names_the_samples_of_the_grid(mode):
    """The input gradient's grid holds dy's samples; the forward's x's."""
    for op, sample in (("input-grad", "dy sample"), ("forward", "x sample"), ("filter-grad", "x sample")):
        scene = scene_for([*REALISTIC, "--op", op])
        fig = draw.figure(scene, draw.still_mode(scene) if mode == "still" else mode)
        labels = {t.get_text() for t in fig.texts if t.get_gid() == "legend"}
        assert sample in labels and "input sample" not in labels, (op, labels)


def dilated(x: np.ndarray, lhs: int) -> np.ndarray:
    """x (1-D) with lhs - 1 zeros between samples."""
    xd = np.zeros((len(x) - 1) * lhs + 1)
    xd[::lhs] = x
    return xd


@pytest.mark.parametrize("lhs, stride, dilation, padding", [
    (2, 1, 1, "0"), (3, 2, 1, "1:2"), (2, 1, 2, "2:0"), (2, 2, 1, "-1:1")])
def test_input_dilation_pictures_read_the_cells_the_conv_reads(cli, tmp_path, lhs, stride, dilation, padding):
    """--lhs-dilation: the forward and filter-grad pictures' windows, read on x's samples placed
    on the picture's DATA cells (zeros elsewhere; grid cell c is dilated position c - the pad
    before, as _scene's docstring says), give the conv's results by a loop here over x dilated
    and padded by hand; inserted zeros are drawn and named so in the legend; the gradient ops
    refuse --lhs-dilation with a message, not a traceback."""
    rng = np.random.default_rng(lhs * 10 + stride)
    x, w = rng.standard_normal(5), rng.standard_normal(3)
    argv = ["--x", "1,1,5", "--w", "1,1,3", "--lhs-dilation", str(lhs), "--stride", str(stride),
            "--dilation", str(dilation), f"--padding={padding}"]
    lo, hi = (int(v) for v in padding.split(":")) if ":" in padding else (int(padding),) * 2
    xd = dilated(x, lhs)
    xp = np.concatenate([np.zeros(max(lo, 0)), xd, np.zeros(max(hi, 0))])[max(-lo, 0):]
    xp = xp[:len(xp) - max(-hi, 0)]
    k_eff = (len(w) - 1) * dilation + 1
    y = np.array([sum(xp[i * stride + t * dilation] * w[t] for t in range(3))
                  for i in range((len(xp) - k_eff) // stride + 1)])
    dy = rng.standard_normal(len(y))
    d_w = np.array([sum(xp[t * dilation + j * stride] * dy[j] for j in range(len(y))) for t in range(3)])
    for op, want, weights in (("forward", y, w), ("filter-grad", d_w, dy)):
        scene = scene_for([*argv, "--op", op])
        cells = scene.input_shape[1]
        kinds = [scene.kind(0, c) for c in range(cells)]
        values = np.array([xd[c - max(lo, 0)] if kinds[c] == _scene.DATA else 0.0 for c in range(cells)])
        assert {_scene.DATA, _scene.ZERO} <= set(kinds)
        assert all(xd[c - max(lo, 0)] == 0 for c in range(cells) if kinds[c] == _scene.ZERO)
        got = [sum(values[c] * weights[int(label)] for _, c, label in scene.window(step))
               for step in scene.steps()]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        fig = draw.figure(scene, "grid")
        labels = {t.get_text() for t in fig.texts if t.get_gid() == "legend"}
        assert "inserted zero (input dilation)" in labels and "inserted zero (stride)" not in labels, labels
    for op in ("input-grad", "transpose"):
        res = cli("draw", *argv, "--op", op, "-o", str(tmp_path / "p.png"))
        assert res.code == 2 and "--lhs-dilation" in res.err and "Traceback" not in res.err
