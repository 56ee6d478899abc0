"""The benchmark suite: forward, input gradient and filter gradient, convgrad against the installed
frameworks on the same machine. Used by ``convgrad bench`` and ``benchmarks/bench_core.py``.

Every result is checked against each framework before it is timed. Timings are interleaved (one
timed call of each contestant per round, after a pause and an untimed call), after a warm-up, and
the median of the rounds is reported.
float32; convgrad in channels-last; PyTorch in NCHW and in channels_last memory format (its best
of the two is the one compared), TensorFlow in NHWC (eager), JAX jit-compiled in NCHW. A framework
that cannot run a geometry on the CPU (TensorFlow's missing grouped and dilated backprops) is left
out of that row. Peak memory is convgrad's: the largest traced allocation above the inputs during
one call (tracemalloc sees NumPy's buffers).

A transposed case times ``conv_transpose`` as its forward, its input gradient (a ``conv``) and
its filter gradient; the contestants run the same three maps.
"""

from __future__ import annotations

import datetime
import importlib.util
import math
import os
import platform
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ._geometry import ConvGeometry
from ._ops import conv, conv_filter_grad, conv_input_grad, conv_transpose
from ._plan import make_plan

OPS = ("forward", "input_grad", "filter_grad")
FRAMEWORKS = ("torch", "tf", "jax")
MODULES = {"torch": "torch", "tf": "tensorflow", "jax": "jax"}
# Results must match each framework to this relative error (max |a - b| / max |b|, float32).
RTOL = 1e-4


@dataclass(frozen=True)
class Case:
    name: str
    n: int
    c: int
    o: int
    spatial: tuple[int, ...]
    k: int
    stride: int
    pad: int
    dilation: int = 1
    groups: int = 1
    # A transposed conv from c to o channels: the forward conv it transposes maps o to c, and
    # ``spatial`` is the size of the transposed conv's input.
    transpose: bool = False

    @property
    def kwargs(self) -> dict[str, int]:
        return {"stride": self.stride, "padding": self.pad, "dilation": self.dilation, "groups": self.groups}

    def geometry(self) -> ConvGeometry:
        """The forward conv (for a transposed case, the conv it transposes)."""
        r = len(self.spatial)
        if self.transpose:
            g = ConvGeometry.for_transpose((self.n, self.c, *self.spatial),
                                           (self.c, self.o // self.groups, *(self.k,) * r), **self.kwargs)
            return ConvGeometry.for_conv(g.x_shape(), g.w_shape(), **self.kwargs)
        return ConvGeometry.for_conv((self.n, self.c, *self.spatial),
                                     (self.o, self.c // self.groups, *(self.k,) * r), **self.kwargs)

    def describe(self) -> str:
        sp = "x".join(map(str, self.spatial))
        extra = "".join(f", {k} {v}" for k, v in (("dilation", self.dilation), ("groups", self.groups))
                        if v != 1)
        kind = "conv_transpose " if self.transpose else ""
        return (f"{kind}N {self.n}, C {self.c} -> O {self.o}, {sp}, k {self.k}, stride {self.stride}, "
                f"pad {self.pad}{extra}")


CASES = (
    Case("resnet_3x3", 8, 64, 64, (56, 56), 3, 1, 1),
    Case("resnet_3x3_deep", 8, 256, 256, (14, 14), 3, 1, 1),
    Case("resnet_1x1", 8, 256, 64, (56, 56), 1, 1, 0),
    Case("stem_7x7_s2", 8, 3, 64, (224, 224), 7, 2, 3),
    Case("strided_3x3_s2", 8, 128, 128, (56, 56), 3, 2, 1),
    Case("depthwise_3x3", 8, 128, 128, (56, 56), 3, 1, 1, 1, 128),
    Case("dilated_3x3_d2", 8, 64, 64, (32, 32), 3, 1, 2, 2),
    Case("large_kernel_31", 4, 32, 32, (32, 32), 31, 1, 15),
    Case("conv1d_k255", 8, 32, 32, (16000,), 255, 1, 127),
    Case("conv3d_3x3x3", 2, 16, 16, (32, 32, 32), 3, 1, 1),
    Case("transposed_k4_s2", 8, 64, 32, (28, 28), 4, 2, 1, transpose=True),
)
# Small cases for a quick look (and the tests); not in the default suite.
EXTRA_CASES = (
    Case("tiny_3x3", 1, 4, 4, (8, 8), 3, 1, 1),
    Case("small_3x3_s2", 2, 16, 16, (16, 16), 3, 2, 1),
    Case("small_depthwise", 2, 16, 16, (16, 16), 3, 1, 1, 1, 16),
)


def case_names() -> tuple[str, ...]:
    return tuple(c.name for c in (*CASES, *EXTRA_CASES))


def get_cases(names: Iterable[str] | None = None) -> list[Case]:
    """The named cases (all of CASES when None); unknown names are a ValueError listing the valid ones."""
    if names is None:
        return list(CASES)
    by_name = {c.name: c for c in (*CASES, *EXTRA_CASES)}
    out = []
    for name in names:
        if name not in by_name:
            raise ValueError(f"unknown case {name!r}; choose from {', '.join(by_name)}")
        out.append(by_name[name])
    return out


def installed(name: str) -> bool:
    return importlib.util.find_spec(MODULES[name]) is not None


# OpenBLAS's worker threads keep spinning for 0.1-0.15 s after each call (measured here). On 2
# cores a spinning thread takes a core from whoever runs next: Numba's tiled kernel ran 3.3x
# slower right after a NumPy GEMM, PyTorch's 1x1 input gradient 1.9x. Each timed call waits this
# long first, so no contestant pays for another's.
SETTLE_SECONDS = 0.2


def timeit(fns: dict[str, Callable[[], object]], repeats: int,
           settle: float = SETTLE_SECONDS) -> dict[str, float]:
    """Median seconds per contestant over ``repeats`` interleaved rounds, after one warm-up call each.

    Each timed call follows a pause of ``settle`` seconds, for the worker threads of whoever ran
    before to fall asleep, and one untimed call of the same contestant, which wakes its own
    threads and caches: the steady state of a loop that calls it, not the tail of another
    library. Each round also starts one contestant later, so every library follows every other
    equally often.
    """
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            f = fns[k]
            time.sleep(settle)
            f()
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


# --- contestants: each returns {op: (variant name, fn returning a channels-first NumPy result)} ------
Contestant = dict[str, list[tuple[str, Callable[[], np.ndarray]]]]


def _torch(case: Case, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Contestant:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    r = len(case.spatial)
    fwd = getattr(torch.nn.functional, f"conv{r}d")
    gin = getattr(torch.nn.grad, f"conv{r}d_input")
    gw = getattr(torch.nn.grad, f"conv{r}d_weight")
    kw = case.kwargs
    tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy))
    fmt = torch.channels_last if r == 2 else torch.channels_last_3d
    out: Contestant = {op: [] for op in OPS}
    variants = [("torch", (tx, tw, tdy))]
    if r in (2, 3):
        variants.append(("torch_cl", tuple(t.contiguous(memory_format=fmt) for t in (tx, tw, tdy))))
    for name, (a, b, g) in variants:
        out["forward"].append((name, lambda a=a, b=b: fwd(a, b, **kw).numpy()))
        out["input_grad"].append((name, lambda a=a, b=b, g=g: gin(a.shape, b, g, **kw).numpy()))
        out["filter_grad"].append((name, lambda a=a, b=b, g=g: gw(a, b.shape, g, **kw).numpy()))
    return out


def _tf(case: Case, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Contestant:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    r = len(case.spatial)
    if r == 1:  # tf.nn.conv1d is Conv2D over a height of 1
        x, w, dy = x[:, :, None], w[:, :, None], dy[:, :, None]
        r, squeeze = 2, True
    else:
        squeeze = False
    depthwise = case.groups == case.c and case.o == case.c and case.groups > 1
    if case.groups != 1 and not depthwise:
        return {op: [] for op in OPS}  # no grouped CPU kernels
    xl = tf.constant(np.moveaxis(x, 1, -1))
    wl = tf.constant(np.moveaxis(w, (0, 1), (-1, -2)))
    dyl = tf.constant(np.moveaxis(dy, 1, -1))
    strides = [1, *(case.stride,) * r, 1]
    pads = [0, 0, *([0, 0] if squeeze else []), *(case.pad,) * (2 * r - (2 if squeeze else 0)), 0, 0]
    dil = {"dilations": [1, *(case.dilation,) * r, 1]}
    if depthwise:
        pad = {"padding": "EXPLICIT", "explicit_paddings": pads}
        wl = tf.constant(np.transpose(w[:, 0], (1, 2, 0))[..., None])  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        bi = tf.raw_ops.DepthwiseConv2dNativeBackpropInput
        bf = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter
        f = tf.raw_ops.DepthwiseConv2dNative
    elif r == 2:
        pad = {"padding": "EXPLICIT", "explicit_paddings": pads}
        bi, bf, f = tf.raw_ops.Conv2DBackpropInput, tf.raw_ops.Conv2DBackpropFilter, tf.raw_ops.Conv2D
    else:  # Conv3D*V2 take 'SAME' or 'VALID' only
        if case.pad == 0:
            pad = {"padding": "VALID"}
        elif case.stride == 1 and case.k % 2 == 1 and case.pad == (case.k - 1) // 2:
            pad = {"padding": "SAME"}
        else:
            return {op: [] for op in OPS}
        bi, bf, f = tf.raw_ops.Conv3DBackpropInputV2, tf.raw_ops.Conv3DBackpropFilterV2, tf.raw_ops.Conv3D

    def cf(t: object, filt: bool = False) -> np.ndarray:
        a = t.numpy()  # type: ignore[attr-defined]
        if filt and depthwise:
            a = a.reshape(*a.shape[:2], 1, case.c)
        a = np.moveaxis(a, (-1, -2), (0, 1)) if filt else np.moveaxis(a, -1, 1)
        return a[:, :, 0] if squeeze else a

    return {
        "forward": [("tf", lambda: cf(f(input=xl, filter=wl, strides=strides, **pad, **dil)))],
        "input_grad": [("tf", lambda: cf(bi(input_sizes=list(xl.shape), filter=wl, out_backprop=dyl,
                                            strides=strides, **pad, **dil)))],
        "filter_grad": [("tf", lambda: cf(bf(input=xl, filter_sizes=list(wl.shape), out_backprop=dyl,
                                             strides=strides, **pad, **dil), True))],
    }


def _jax(case: Case, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Contestant:
    import jax
    from jax import lax

    r = len(case.spatial)
    kw = {"window_strides": (case.stride,) * r, "padding": [(case.pad, case.pad)] * r,
          "rhs_dilation": (case.dilation,) * r, "feature_group_count": case.groups}

    def f(a: object, b: object) -> object:
        return lax.conv_general_dilated(a, b, **kw)

    fwd = jax.jit(f)
    gin = jax.jit(lambda b, g: jax.vjp(lambda a: f(a, b), jax.numpy.zeros(x.shape, x.dtype))[1](g)[0])
    gw = jax.jit(lambda a, g: jax.vjp(lambda b: f(a, b), jax.numpy.zeros(w.shape, w.dtype))[1](g)[0])
    jx, jw, jdy = (jax.device_put(a) for a in (x, w, dy))
    return {
        "forward": [("jax", lambda: np.asarray(fwd(jx, jw).block_until_ready()))],
        "input_grad": [("jax", lambda: np.asarray(gin(jw, jdy).block_until_ready()))],
        "filter_grad": [("jax", lambda: np.asarray(gw(jx, jdy).block_until_ready()))],
    }


CONTESTANTS = {"torch": _torch, "tf": _tf, "jax": _jax}


def run_case(case: Case, repeats: int, frameworks: Iterable[str] = ("torch",),
             step: Callable[[str], None] = lambda _: None) -> list[dict]:
    """One row per op: convgrad's time, each framework variant's time, and the ratios
    convgrad / (that framework's best variant). Raises AssertionError when results differ."""
    from .engines import warm_up

    warm_up(("float32",))  # the frameworks are warmed up (JIT-compiled) too before timing
    rng = np.random.default_rng(0)
    geom = case.geometry()
    x = rng.standard_normal(geom.x_shape(), dtype=np.float32)
    w = rng.standard_normal(geom.w_shape(), dtype=np.float32)
    dy = rng.standard_normal(geom.y_shape(), dtype=np.float32)
    # convgrad in channels-last: x (N, *S, C), w (*K, C/G, O).
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    wl = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2)))
    dyl = np.ascontiguousarray(np.moveaxis(dy, 1, -1))
    kw = {**case.kwargs, "data_format": "channels_last"}
    if case.transpose:
        # The transposed conv's input is the forward conv's dy, its output gradient the forward's
        # x: conv_transpose = input gradient, its input gradient = conv, its filter gradient =
        # the forward's filter gradient with the roles of x and dy exchanged.
        ours = {
            "forward": lambda: np.moveaxis(conv_transpose(dyl, wl, **kw), -1, 1),
            "input_grad": lambda: np.moveaxis(conv(xl, wl, **kw), -1, 1),
            "filter_grad": lambda: np.moveaxis(conv_filter_grad(xl, dyl, wl.shape, **kw), (-1, -2), (0, 1)),
        }
        relabel = {"forward": "input_grad", "input_grad": "forward", "filter_grad": "filter_grad"}
    else:
        ours = {
            "forward": lambda: np.moveaxis(conv(xl, wl, **kw), -1, 1),
            "input_grad": lambda: np.moveaxis(conv_input_grad(dyl, wl, xl.shape, **kw), -1, 1),
            "filter_grad": lambda: np.moveaxis(conv_filter_grad(xl, dyl, wl.shape, **kw), (-1, -2), (0, 1)),
        }
        relabel = {op: op for op in OPS}
    theirs: Contestant = {op: [] for op in OPS}
    for name in frameworks:
        if installed(name):
            for op, fns in CONTESTANTS[name](case, x, w, dy).items():
                theirs[op].extend(fns)
    rows = []
    for op in OPS:
        step(f"{case.name} {op}")
        mine = ours[op]()
        errors, runnable = {}, []
        for name, fn in theirs[relabel[op]]:
            try:
                ref = fn()
            except Exception:  # a framework that cannot run this geometry on the CPU
                continue
            scale = float(np.abs(ref).max()) or 1.0
            errors[name] = float(np.abs(mine - ref).max()) / scale
            if errors[name] > RTOL:
                raise AssertionError(f"{case.name} {op}: convgrad and {name} differ by {errors[name]:.2e} "
                                     f"(relative; tolerance {RTOL:g})")
            runnable.append((name, fn))
        t = timeit({"convgrad": ours[op], **dict(runnable)}, repeats)
        plan = make_plan(relabel[op], geom, np.dtype(np.float32), "auto", _limit())
        row = {"case": case.name, "op": op, "engine": plan.engine.name,
               "gflops": geom.flops / t["convgrad"] / 1e9, "max_rel_err": max(errors.values(), default=0.0),
               "peak_mib": _peak_bytes(ours[op]) / 2**20,
               "ms": {k: v * 1e3 for k, v in t.items()}, "ratio": {}}
        for fw in FRAMEWORKS:
            best = [v for k, v in t.items() if k == fw or k.startswith(fw + "_")]
            if best:
                row["ratio"][fw] = t["convgrad"] / min(best)
        rows.append(row)
    return rows


def _peak_bytes(fn: Callable[[], object]) -> int:
    """Largest traced allocation above the starting point during one call, the engines' scratch
    memory included (freed first, so the call allocates it again)."""
    from .engines import _scratch

    _scratch.release()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _limit() -> int:
    from ._budget import workspace_limit

    return workspace_limit(None)


def gemm_peak(repeats: int) -> float:
    """NumPy float32 GEMM 2048^3 in GFLOP/s: the machine's reference speed."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    t = timeit({"gemm": lambda: a @ a}, repeats)["gemm"]
    return 2 * 2048**3 / t / 1e9


def variants(rows: list[dict]) -> list[str]:
    """Every timed contestant other than convgrad, in first-seen order."""
    seen: dict[str, None] = {}
    for r in rows:
        for k in r["ms"]:
            if k != "convgrad":
                seen.setdefault(k)
    return list(seen)


def ratio_frameworks(rows: list[dict]) -> list[str]:
    return [fw for fw in FRAMEWORKS if any(fw in r["ratio"] for r in rows)]


VARIANT_TITLES = {"torch": "torch NCHW", "torch_cl": "torch channels_last", "tf": "tf NHWC",
                  "jax": "jax (jit)"}


def geometric_means(rows: list[dict]) -> dict[tuple[str, str], float]:
    """(op, framework) -> geometric mean of the ratios over cases."""
    out = {}
    for op in OPS:
        for fw in ratio_frameworks(rows):
            ratios = [r["ratio"][fw] for r in rows if r["op"] == op and fw in r["ratio"]]
            if ratios:
                out[(op, fw)] = math.exp(float(np.mean(np.log(ratios))))
    return out


def markdown_table(rows: list[dict]) -> str:
    vs = variants(rows)
    fws = ratio_frameworks(rows)
    head = (["case", "op", "engine", "convgrad ms"] + [f"{VARIANT_TITLES.get(v, v)} ms" for v in vs]
            + ["convgrad GFLOP/s", "convgrad peak MiB"] + [f"convgrad / best {fw}" for fw in fws])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    for r in rows:
        cells = [r["case"], r["op"], r["engine"], f"{r['ms']['convgrad']:.2f}"]
        cells += [f"{r['ms'][v]:.2f}" if v in r["ms"] else "—" for v in vs]
        cells.append(f"{r['gflops']:.0f}" if r["gflops"] >= 100 else f"{r['gflops']:.3g}")
        cells.append(f"{r['peak_mib']:.1f}" if "peak_mib" in r else "—")
        cells += [f"{r['ratio'][fw]:.2f}" if fw in r["ratio"] else "—" for fw in fws]
        lines.append("| " + " | ".join(cells) + " |")
    means = geometric_means(rows)
    for op in OPS:
        if any((op, fw) in means for fw in fws):
            cells = ["geometric mean", op, "", ""] + [""] * len(vs) + ["", ""]
            cells += [f"{means[(op, fw)]:.2f}" if (op, fw) in means else "—" for fw in fws]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment(repeats: int, peak: float | None) -> str:
    """One paragraph: date, machine, versions, method."""
    import scipy

    from . import __version__

    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}",
                f"SciPy {scipy.__version__}"]
    for name, module in (("PyTorch", "torch"), ("TensorFlow", "tensorflow"), ("JAX", "jax")):
        if importlib.util.find_spec(module) is not None:
            import sys

            mod = sys.modules.get(module)
            if mod is not None:
                versions.append(f"{name} {getattr(mod, '__version__', '?')}")
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    text = (f"Measured {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores "
            f"({platform.processor() or 'unknown CPU'}); {', '.join(versions)}, convgrad {__version__}. "
            f"float32, median of {repeats} interleaved rounds after a warm-up. OpenBLAS environment: {env}.")
    if peak is not None:
        text += f" NumPy SGEMM 2048^3 reference: {peak:.0f} GFLOP/s."
    return text


METHOD = (
    "Every convgrad result is checked against every framework before it is timed (relative error "
    f"<= {RTOL:g}). Ratios are convgrad time / the framework's best variant (PyTorch: the faster of "
    "NCHW and channels_last), measured in the same process; below 1 convgrad is faster. Rounds are "
    "interleaved and each round starts one contestant later. Each timed call follows a pause "
    f"of {SETTLE_SECONDS:g} s and one untimed call of the same contestant: on a small machine one "
    "library's spinning worker threads (OpenBLAS's spin for 0.1-0.15 s after a call) slow whoever "
    "runs next, up to 3x. A dash: the framework has no CPU kernel for that geometry (TensorFlow's dilated "
    "backprops) or no such layout (channels_last in 1-D). Peak MiB: convgrad's largest traced "
    "allocation during one call. Compiled kernels are warmed up before timing, as the frameworks' "
    "JIT is. Compare ratios within one run, not milliseconds across runs: a VM's speed can drift."
)


def targets(rows: list[dict]) -> str:
    """The speed issue's targets, read off this run: rows worse than 2x PyTorch and how much
    faster than the fastest framework the large-kernel cases are."""
    lines = []
    slow = [f"{r['case']} {r['op']} ({r['ratio']['torch']:.2f}x)" for r in rows
            if r["ratio"].get("torch", 0) > 2]
    lines.append("- rows slower than 2x PyTorch: " + (", ".join(slow) if slow else "none"))
    for r in rows:
        if r["case"] in ("large_kernel_31", "conv1d_k255") and r["ratio"]:
            best = max(r["ratio"].items(), key=lambda kv: kv[1])
            lines.append(f"- {r['case']} {r['op']}: {1 / best[1]:.1f}x faster than the fastest framework "
                         f"({best[0]})")
    return "\n".join(lines)


def report(rows: list[dict], repeats: int, peak: float | None) -> str:
    return (environment(repeats, peak) + "\n\n" + markdown_table(rows) + "\n\n"
            + targets(rows) + "\n")


def ratio_chart(rows: list[dict], path: str) -> None:
    """Bars of convgrad / framework time per case and op (log scale), the line at 1 marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fws = ratio_frameworks(rows)
    labels = [f"{r['case']}\n{r['op']}" for r in rows]
    fig = Figure(figsize=(min(16.0, max(6.0, 0.3 * len(rows) * max(len(fws), 1) + 2.5)), 4.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(fws), 1)
    colors = {"torch": "#e15759", "tf": "#f28e2b", "jax": "#4e79a7"}
    for i, fw in enumerate(fws):
        xs = [j + (i - (len(fws) - 1) / 2) * width for j, r in enumerate(rows) if fw in r["ratio"]]
        ys = [r["ratio"][fw] for r in rows if fw in r["ratio"]]
        # Bars grow from the parity line: up where convgrad is slower, down where it is faster.
        ax.bar(xs, [y - 1 for y in ys], bottom=1, width=width, label=f"convgrad / {fw}", color=colors.get(fw))
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1.2, label="parity (1)")
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=7, rotation=45, ha="right")
    ax.set_ylabel("time ratio (below 1: convgrad faster)")
    ax.set_title("convgrad time / framework time, per case and op")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
