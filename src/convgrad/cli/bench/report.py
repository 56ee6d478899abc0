"""The benchmark report: a markdown table with geometric means, the environment paragraph, the
method, and a ratio chart (matplotlib, imported when drawn)."""

from __future__ import annotations

import datetime
import math
import os
import platform
import sys

import numpy as np

from ... import _frameworks
from .suite import FRAMEWORKS, OPS, RTOL, SETTLE_SECONDS, STEADY_ROUNDS


def ratio_frameworks(rows: list[dict]) -> list[str]:
    return [fw for fw in FRAMEWORKS if any(fw in r["ratio"] for r in rows)]


VARIANT_TITLES = {"convgrad_cf": "convgrad channels-first", "torch": "torch NCHW",
                  "torch_cl": "torch channels_last", "tf": "tf NHWC", "jax": "jax (jit)"}
# Channels-first convgrad's ratios (row keys): to each PyTorch variant, and to itself channels-last.
CF_RATIOS = (("ratio_cf", "torch", "CF / torch NCHW"), ("ratio_cf", "torch_cl", "CF / torch channels_last"),
             ("cf_cl", None, "CF / CL"))


def rate(v: float) -> str:
    """GFLOP/s: whole numbers from 100, three digits below."""
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def _gmean(values: list[float]) -> float:
    return math.exp(float(np.mean(np.log(values))))


def geometric_means(rows: list[dict], key: str = "ratio") -> dict[tuple[str, str], float]:
    """(op, framework) -> geometric mean of the ratios ``row[key]`` over cases."""
    out = {}
    for op in OPS:
        for fw in ratio_frameworks(rows):
            ratios = [r[key][fw] for r in rows if r["op"] == op and fw in r.get(key, {})]
            if ratios:
                out[(op, fw)] = _gmean(ratios)
    return out


def cf_value(row: dict, key: str, variant: str | None) -> float | None:
    """One channels-first ratio of ``row`` (see CF_RATIOS), None where the row lacks it."""
    v = row.get(key)
    return v.get(variant) if isinstance(v, dict) else v


def cf_means(rows: list[dict]) -> dict[tuple[str, str], float]:
    """(op, CF_RATIOS title) -> geometric mean over the cases that have it."""
    out = {}
    for op in OPS:
        for key, variant, title in CF_RATIOS:
            vals = [v for r in rows if r["op"] == op and (v := cf_value(r, key, variant)) is not None]
            if vals:
                out[(op, title)] = _gmean(vals)
    return out


def markdown_table(rows: list[dict]) -> str:
    """Steady-state milliseconds of every contestant (convgrad channels-last first), convgrad's
    spread, then the ratios: convgrad channels-first (CF) to PyTorch and to convgrad channels-last
    (CL), CL to each framework's best variant, and the same two from the paused timing."""
    vs = list(dict.fromkeys(k for r in rows for k in r["ms"] if k != "convgrad"))  # first seen first
    fws = ratio_frameworks(rows)
    cfs = [c for c in CF_RATIOS if any(cf_value(r, c[0], c[1]) is not None for r in rows)]
    paused = [fw for fw in fws if any(fw in r.get("paused_ratio", {}) for r in rows)]
    paused_cf = any("paused_cf_cl" in r for r in rows)
    spread = any("spread" in r for r in rows)
    head = (["case", "op", "engine", "convgrad ms"] + [f"{VARIANT_TITLES.get(v, v)} ms" for v in vs]
            + ["convgrad spread"] * spread + ["convgrad GFLOP/s", "convgrad peak MiB"]
            + [title for *_, title in cfs] + [f"convgrad / best {fw}" for fw in fws]
            + ["paused CF / CL"] * paused_cf + [f"paused convgrad / best {fw}" for fw in paused])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]

    def ratio(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"

    for r in rows:
        cells = [r["case"], r["op"], r["engine"], f"{r['ms']['convgrad']:.2f}"]
        cells += [f"{r['ms'][v]:.2f}" if v in r["ms"] else "—" for v in vs]
        if spread:
            cells.append(f"{100 * r['spread']['convgrad']:.0f}%" if "spread" in r else "—")
        cells.append(rate(r["gflops"]))
        cells.append(f"{r['peak_mib']:.1f}" if "peak_mib" in r else "—")
        cells += [ratio(cf_value(r, key, variant)) for key, variant, _ in cfs]
        cells += [ratio(r["ratio"].get(fw)) for fw in fws]
        if paused_cf:
            cells.append(ratio(r.get("paused_cf_cl")))
        cells += [ratio(r.get("paused_ratio", {}).get(fw)) for fw in paused]
        lines.append("| " + " | ".join(cells) + " |")
    means, cmeans = geometric_means(rows), cf_means(rows)
    pmeans = geometric_means(rows, "paused_ratio")
    for op in OPS:
        if any((op, fw) in means for fw in fws) or any((op, c[2]) in cmeans for c in cfs):
            cells = ["geometric mean", op, "", ""] + [""] * len(vs) + [""] * spread + ["", ""]
            cells += [ratio(cmeans.get((op, title))) for *_, title in cfs]
            cells += [ratio(means.get((op, fw))) for fw in fws]
            if paused_cf:
                cells.append(ratio(_gmean([r["paused_cf_cl"] for r in rows if r["op"] == op])))
            cells += [ratio(pmeans.get((op, fw))) for fw in paused]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The contention run's targets (issue 19): a row's median may degrade at most this many times
# PyTorch's own degradation, and no single call may take more than WORST_LIMIT x its row's median.
DEGRADATION_LIMIT = 1.5
WORST_LIMIT = 5.0


def framework_degradation(row: dict, fw: str) -> float | None:
    """The framework's best contended median / its best quiet median (each the fastest variant)."""
    keys = [k for k in row["contention"] if k == fw or k.startswith(fw + "_")]
    if not keys:
        return None
    return min(row["contention"][k]["contended_ms"] for k in keys) / min(row["ms"][k] for k in keys)


def contention_table(rows: list[dict]) -> str:
    """Beside one busy process: convgrad's steady-state medians in both layouts and each one's
    degradation (contended median / quiet median) against the framework's best variant's, and the
    slowest single call / its row's median; '' when no row was run contended."""
    rows = [r for r in rows if "contention" in r]
    if not rows:
        return ""
    fws = [fw for fw in ratio_frameworks(rows) if any(framework_degradation(r, fw) for r in rows)]
    head = (["case", "op", "convgrad ms quiet", "contended", "CF ms quiet", "CF contended",
             "convgrad degradation", "CF degradation"] + [f"{fw} degradation" for fw in fws]
            + [f"convgrad / {fw} degradation" for fw in fws] + [f"CF / {fw} degradation" for fw in fws]
            + ["worst call / median (CL, CF)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        c = r["contention"]
        cells = [r["case"], r["op"], f"{r['ms']['convgrad']:.2f}", f"{c['convgrad']['contended_ms']:.2f}",
                 f"{r['ms']['convgrad_cf']:.2f}" if "convgrad_cf" in c else "—",
                 f"{c['convgrad_cf']['contended_ms']:.2f}" if "convgrad_cf" in c else "—",
                 f"{c['convgrad']['degradation']:.2f}",
                 f"{c['convgrad_cf']['degradation']:.2f}" if "convgrad_cf" in c else "—"]
        theirs = [framework_degradation(r, fw) for fw in fws]
        cells += [f"{d:.2f}" if d else "—" for d in theirs]
        for k in ("convgrad", "convgrad_cf"):
            cells += [f"{c[k]['degradation'] / d:.2f}" if d and k in c else "—" for d in theirs]
        cells.append(" / ".join(f"{c[k]['worst']:.1f}" for k in ("convgrad", "convgrad_cf") if k in c))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def contention_summary(rows: list[dict]) -> str:
    """The rows that miss the contention targets (DEGRADATION_LIMIT, WORST_LIMIT)."""
    rows = [r for r in rows if "contention" in r]
    over, worst = [], []
    for r in rows:
        d = framework_degradation(r, "torch")
        for k, name in (("convgrad", "CL"), ("convgrad_cf", "CF")):
            c = r["contention"].get(k)
            if c and d and c["degradation"] > DEGRADATION_LIMIT * d:
                over.append(f"{r['case']} {r['op']} {name} ({c['degradation']:.2f} vs torch {d:.2f})")
            if c and c["worst"] > WORST_LIMIT:
                worst.append(f"{r['case']} {r['op']} {name} ({c['worst']:.1f}x)")
    return (f"- rows degrading more than {DEGRADATION_LIMIT:g}x PyTorch's own degradation: "
            + (", ".join(over) or "none")
            + f"\n- single calls over {WORST_LIMIT:g}x their row's contended median: "
            + (", ".join(worst) or "none"))


def load_average() -> str:
    """The 1, 5 and 15-minute load averages (other work on the machine), or 'unknown'."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):  # not on this platform
        return "unknown"


def environment(repeats: int, peak: float | None, calls: int | None = None) -> str:
    """One paragraph: date, machine, versions, method."""
    import scipy

    from ... import __version__
    from ...engines import _machine  # not at import: `convgrad --help` loads no engine

    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}",
                f"SciPy {scipy.__version__}"]
    for fw in map(_frameworks.module, FRAMEWORKS):  # the ones this run imported
        if fw.IMPORTS[0] in sys.modules:
            versions.append(f"{fw.TITLE} {getattr(sys.modules[fw.IMPORTS[0]], '__version__', '?')}")
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    text = (f"Measured {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores "
            f"({_machine.cpu()}); {', '.join(versions)}, convgrad {__version__}. "
            + (f"float32; steady state: median of {calls} back-to-back calls per contestant "
               f"({STEADY_ROUNDS} interleaved rounds); paused: " if calls else "float32, ")
            + f"median of {repeats} interleaved rounds after a warm-up. OpenBLAS environment: {env}. "
            f"Load average (1 / 5 / 15 min) when the table was made: {load_average()}.")
    if peak is not None:
        text += f" NumPy SGEMM 2048^3 reference: {peak:.0f} GFLOP/s."
    return text


METHOD = (
    "Every convgrad result, in both layouts, is checked against every framework before it is timed "
    f"(relative error <= {RTOL:g}). convgrad runs channels-last (CL: x (N, *S, C), the engines' "
    "own layout) and channels-first (CF: the default, on the NCHW arrays PyTorch gets). Ratios are "
    "convgrad CL time / the framework's best variant (PyTorch: the faster of NCHW and "
    "channels_last), CF time / each PyTorch variant and CF / CL, measured in the same process; "
    "below 1 convgrad is faster. The headline (ms, ratios) is the steady state: calls back to back "
    "with no pause, as a training loop or a solver makes them, in rounds that each start with one "
    "untimed call; spread: the interquartile range / the median. The paused columns keep the "
    "earlier timing: rounds are "
    "interleaved and each round starts one contestant later. Each timed call follows a pause "
    f"of {SETTLE_SECONDS:g} s and one untimed call of the same contestant: on a small machine one "
    "library's spinning worker threads (OpenBLAS's spin for 0.1-0.15 s after a call) slow whoever "
    "runs next, up to 3x. A dash: the framework has no CPU kernel for that geometry (TensorFlow's dilated "
    "backprops) or no such layout (channels_last in 1-D). Peak MiB: convgrad's largest traced "
    "allocation during one call. Compiled kernels are warmed up before timing, as the frameworks' "
    "JIT is. Compare ratios within one run, not milliseconds across runs: a VM's speed can drift."
)


def highlights(rows: list[dict]) -> str:
    """Rows slower than 2x PyTorch, and how much faster than the fastest framework the
    large-kernel cases are."""
    slow = [f"{r['case']} {r['op']} ({r['ratio']['torch']:.2f}x)" for r in rows
            if r["ratio"].get("torch", 0) > 2]
    lines = ["- rows slower than 2x PyTorch: " + (", ".join(slow) if slow else "none")]
    far = [f"{r['case']} {r['op']} ({r['cf_cl']:.2f}x)" for r in rows if r.get("cf_cl", 0) > 1.1]
    if any("cf_cl" in r for r in rows):
        lines.append("- rows where channels-first takes over 1.1x channels-last: "
                     + (", ".join(far) if far else "none"))
    for r in rows:
        if r["case"] in ("large_kernel_31", "conv1d_k255") and r["ratio"]:
            # ratio = convgrad time / framework time: the fastest framework has the largest ratio.
            name, ratio = max(r["ratio"].items(), key=lambda kv: kv[1])
            verdict = (f"{1 / ratio:.1f}x faster than" if ratio <= 1
                       else f"{ratio:.2f}x the time of (slower than)")
            lines.append(f"- {r['case']} {r['op']}: {verdict} the fastest framework ({name})")
    return "\n".join(lines)


BEGIN, END = "<!-- bench_core: begin -->", "<!-- bench_core: end -->"


def replace_section(document: str, section: str) -> str:
    """``document`` with the suite's section (between the BEGIN and END markers) replaced by
    ``section``, or ``section`` appended: the other sections of a results file (complex, dask,
    padding modes...) are kept."""
    block = f"{BEGIN}\n{section.strip()}\n{END}"
    if BEGIN in document and END in document.split(BEGIN, 1)[1]:
        head, rest = document.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return (document.rstrip() + "\n\n" if document.strip() else "") + block + "\n"


CONTENTION_METHOD = (
    "Contention: after a row's quiet steady state, the suite starts one competing busy process "
    "(a Python loop that keeps one core busy) and times the same calls back to back again; "
    "degradation = contended median / quiet median (a framework: its fastest variant in each), "
    "worst call = the slowest contended call / the contended median.")


def report(rows: list[dict], repeats: int, peak: float | None, calls: int | None = None) -> str:
    text = (environment(repeats, peak, calls) + "\n\n" + markdown_table(rows) + "\n\n"
            + highlights(rows) + "\n")
    table = contention_table(rows)
    if table:
        text += ("\n### Beside one competing busy process\n\n" + CONTENTION_METHOD + "\n\n" + table
                 + "\n\n" + contention_summary(rows) + "\n")
    return text


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
