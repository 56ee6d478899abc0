"""The benchmark suite: forward, input gradient and filter gradient, convgrad against the installed
frameworks on the same machine (their ``contestants`` in ``convgrad._frameworks``). Used by
``convgrad bench`` and ``benchmarks/bench_core.py``; the method is ``report.METHOD``.

float32; convgrad in both layouts: channels-last (``convgrad``, against every framework) and
channels-first on NCHW arrays, the default a PyTorch user calls (``convgrad_cf``, against PyTorch
NCHW and channels_last); PyTorch in NCHW and in channels_last memory format, TensorFlow in NHWC
(eager), JAX jit-compiled in NCHW. The headline is the steady state (``steady``: calls back to
back, as a training loop or a solver makes them); the paused timing (``timeit``) is the second
column. The contention run (``contend=True``) repeats the steady state beside one competing busy
process (``busy_process``) the suite starts itself. A transposed case times ``conv_transpose`` as its
forward, its input gradient (a ``conv``) and its filter gradient; the contestants run the same
three maps.
"""
from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ... import _frameworks, _tolerance
from ..._geometry import ConvGeometry
from ..._layout import w_to_last, x_to_last

OPS = ("forward", "input_grad", "filter_grad")
FRAMEWORKS = _frameworks.with_("contestants")
# Results must match each framework to float32's relative error (max |a - b| / max |b|).
RTOL = _tolerance.RTOL["float32"]


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


def get_cases(names: Iterable[str] | None = None) -> list[Case]:
    """The named cases (all of CASES when None); unknown names are a ValueError listing the valid ones."""
    by_name = {c.name: c for c in (*CASES, *EXTRA_CASES)}
    bad = [name for name in names or () if name not in by_name]
    if bad:
        raise ValueError(f"unknown case {bad[0]!r}; choose from {', '.join(by_name)}")
    return list(CASES) if names is None else [by_name[name] for name in names]


# OpenBLAS's worker threads keep spinning for 0.1-0.15 s after each call (measured here). On 2
# cores a spinning thread takes a core from whoever runs next: Numba's tiled kernel ran 3.3x
# slower right after a NumPy GEMM, PyTorch's 1x1 input gradient 1.9x. Each timed call waits this
# long first, so no contestant pays for another's.
SETTLE_SECONDS = 0.2


# Steady state: timed calls back to back in this many interleaved rounds per contestant, each
# round after one untimed call (the first call after another library pays for its threads).
STEADY_ROUNDS = 3
CONTESTANTS = ("convgrad", "convgrad_cf")  # channels-last, channels-first


def steady(fns: dict[str, Callable[[], object]], calls: int,
           rounds: int = STEADY_ROUNDS) -> dict[str, list[float]]:
    """Seconds of at least ``calls`` timed calls per contestant, back to back with no pause: in
    each of ``rounds`` interleaved rounds (each starting one contestant later) a contestant makes
    one untimed call, then ``ceil(calls / rounds)`` timed ones."""
    burst = -(-calls // rounds)
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            f = fns[k]
            f()
            for _ in range(burst):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return times


# The competitor in the contention run: one process that keeps one core busy (pure Python, no
# memory traffic), as a notebook's or a worker's computation beside the caller's.
BUSY_CODE = "while True:\n    pass"


@contextlib.contextmanager
def busy_process(settle: float = 0.3):
    """One competing CPU-bound process for the duration of the block (killed after it); ``settle``
    seconds for it to start spinning first."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_CODE], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def contention(quiet: dict[str, list[float]], busy: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per contestant, from its quiet and contended steady-state seconds: ``degradation`` (contended
    median / quiet median) and ``worst`` (the slowest contended call / the contended median)."""
    out = {}
    for k, v in busy.items():
        med = float(np.median(v))
        out[k] = {"degradation": med / float(np.median(quiet[k])), "worst": max(v) / med,
                  "contended_ms": med * 1e3}
    return out


def summary(samples: list[float]) -> dict[str, float]:
    """Median, quartiles, extremes of ``samples`` in ms, and the spread: (q3 - q1) / median."""
    q1, med, q3 = (float(v) * 1e3 for v in np.percentile(samples, (25, 50, 75)))
    return {"median": med, "q1": q1, "q3": q3, "min": min(samples) * 1e3, "max": max(samples) * 1e3,
            "spread": (q3 - q1) / med if med else 0.0, "calls": len(samples)}


def timeit(fns: dict[str, Callable[[], object]], repeats: int,
           settle: float = SETTLE_SECONDS) -> dict[str, float]:
    """Median seconds per contestant over ``repeats`` interleaved rounds, after one warm-up call each;
    each timed call follows a pause of ``settle`` seconds and one untimed call of the same contestant
    (the steady state of a loop that calls it, not the tail of another library)."""
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


def run_case(case: Case, repeats: int, frameworks: Iterable[str] = ("torch",),
             step: Callable[[str], None] = lambda _: None, calls: int = 15,
             contend: bool = False) -> list[dict]:
    """One row per op: each contestant's steady-state time (``ms``, median of ``calls``
    back-to-back calls, with ``spread``) and paused time (``paused_ms``, median of ``repeats``);
    the ratios convgrad channels-last / (each framework's best variant) (``ratio``, paused:
    ``paused_ratio``), convgrad channels-first / each PyTorch variant (``ratio_cf``) and
    channels-first / channels-last (``cf_cl``, paused: ``paused_cf_cl``); with ``contend``, the
    steady state again beside one busy process (``contention``: per contestant its degradation and
    worst call, see ``contention``). Raises AssertionError when results differ."""
    from ..._budget import workspace_limit
    from ..._ops import conv, conv_filter_grad, conv_input_grad, conv_transpose
    from ..._plan import make_plan
    from ...engines import warm_up

    # The frameworks are imported before convgrad's kernels start their pool, as a PyTorch user's
    # script does: Numba's loops then run on PyTorch's GNU OpenMP, whose threads spin ~8 ms after
    # each loop (its default policy; measured: 7.5-8.6 ms of CPU in a 30 ms sleep after a loop,
    # none without PyTorch), so both are timed with PyTorch's wait policy, not convgrad's passive one.
    for name in frameworks:
        if _frameworks.installed(name):
            importlib.import_module(_frameworks.module(name).IMPORTS[0])
    warm_up(("float32",))  # the frameworks are warmed up (JIT-compiled) too before timing
    rng = np.random.default_rng(0)
    geom = case.geometry()
    x = rng.standard_normal(geom.x_shape(), dtype=np.float32)
    w = rng.standard_normal(geom.w_shape(), dtype=np.float32)
    dy = rng.standard_normal(geom.y_shape(), dtype=np.float32)
    # convgrad in channels-last: x (N, *S, C), w (*K, C/G, O).
    xl, dyl = (np.ascontiguousarray(x_to_last(a, "channels_first")) for a in (x, dy))
    wl = np.ascontiguousarray(w_to_last(w, "channels_first"))
    kw = {**case.kwargs, "data_format": "channels_last"}
    # The transposed conv's input is the forward conv's dy and its output gradient the forward's x:
    # conv_transpose is the input gradient, its input gradient a conv, its filter gradient the
    # forward's with the roles of x and dy exchanged.
    relabel = {"forward": "input_grad", "input_grad": "forward"} if case.transpose else {}
    d_x = (lambda: conv_transpose(dyl, wl, **kw)) if case.transpose else \
        (lambda: conv_input_grad(dyl, wl, xl.shape, **kw))
    maps = {  # channels-first results, as the contestants give them
        "forward": lambda: np.moveaxis(conv(xl, wl, **kw), -1, 1),
        "input_grad": lambda: np.moveaxis(d_x(), -1, 1),
        "filter_grad": lambda: np.moveaxis(conv_filter_grad(xl, dyl, wl.shape, **kw), (-1, -2), (0, 1)),
    }
    ours = {op: maps[relabel.get(op, op)] for op in OPS}
    # convgrad channels-first on the C-contiguous NCHW arrays, as a PyTorch user calls it.
    kf = case.kwargs
    d_x_first = (lambda: conv_transpose(dy, w, **kf)) if case.transpose else \
        (lambda: conv_input_grad(dy, w, x.shape, **kf))
    maps_first = {"forward": lambda: conv(x, w, **kf), "input_grad": d_x_first,
                  "filter_grad": lambda: conv_filter_grad(x, dy, w.shape, **kf)}
    ours_first = {op: maps_first[relabel.get(op, op)] for op in OPS}
    theirs: dict[str, list[tuple[str, Callable[[], np.ndarray]]]] = {op: [] for op in OPS}
    for name in frameworks:
        if _frameworks.installed(name):
            for op, fns in _frameworks.module(name).contestants(geom, x, w, dy).items():
                theirs[op].extend(fns)
    rows = []
    for op in OPS:
        step(f"{case.name} {op}")
        mine = ours[op]()
        errors, runnable = {}, []
        for name, fn in (("convgrad_cf", ours_first[op]), *theirs[relabel.get(op, op)]):
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
        fns = {"convgrad": ours[op], **dict(runnable)}
        quiet = steady(fns, calls)
        stats = {k: summary(v) for k, v in quiet.items()}
        paused = timeit(fns, repeats)
        t = {k: v["median"] for k, v in stats.items()}
        p = {k: v * 1e3 for k, v in paused.items()}
        plan = make_plan(relabel.get(op, op), geom, np.dtype(np.float32), "auto", workspace_limit(None))
        row = {"case": case.name, "op": op, "engine": plan.engine.name,
               "gflops": geom.flops / t["convgrad"] / 1e6, "max_rel_err": max(errors.values(), default=0.0),
               "peak_mib": _peak_bytes(ours[op]) / 2**20, "ms": t, "paused_ms": p,
               "spread": {k: v["spread"] for k, v in stats.items()}, "steady": stats,
               "ratio": _best_ratios(t), "paused_ratio": _best_ratios(p),
               "ratio_cf": {k: t["convgrad_cf"] / t[k] for k in ("torch", "torch_cl") if k in t},
               "cf_cl": t["convgrad_cf"] / t["convgrad"], "paused_cf_cl": p["convgrad_cf"] / p["convgrad"]}
        if contend:
            with busy_process():
                row["contention"] = contention(quiet, steady(fns, calls))
        rows.append(row)
    return rows


def _best_ratios(t: dict[str, float]) -> dict[str, float]:
    """convgrad channels-last / each framework's best variant."""
    out = {}
    for fw in FRAMEWORKS:
        best = [v for k, v in t.items() if k == fw or k.startswith(fw + "_")]
        if best:
            out[fw] = t["convgrad"] / min(best)
    return out


def _peak_bytes(fn: Callable[[], object]) -> int:
    """Largest traced allocation above the starting point during one call, the engines' scratch
    memory included (freed first, so the call allocates it again)."""
    from ...engines import _scratch

    _scratch.release()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def gemm_peak(repeats: int) -> float:
    """NumPy float32 GEMM 2048^3 in GFLOP/s: the machine's reference speed."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    t = timeit({"gemm": lambda: a @ a}, repeats)["gemm"]
    return 2 * 2048**3 / t / 1e9
