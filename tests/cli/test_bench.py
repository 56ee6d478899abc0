"""``convgrad bench`` on one tiny case, and the suite module it shares with benchmarks/bench_core.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

import convgrad
from convgrad import _frameworks
from convgrad.cli.bench import report, suite


def test_bench_tiny_case_report_and_chart(cli, tmp_path):
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    report, chart = tmp_path / "report.md", tmp_path / "ratios.png"
    frameworks = "torch" if _frameworks.installed("torch") else "none"
    res = cli("bench", "--cases", "tiny_3x3", "--repeats", "1", "--frameworks", frameworks, "--no-peak",
              "-o", str(report), "--plot", str(chart))
    assert res.code == 0, res.err
    assert "tiny_3x3" in res.out and "filter_grad" in res.out and f"wrote {report}, {chart}" in res.out
    text = report.read_text()
    assert text.startswith("# Benchmarks: convgrad against the frameworks (CPU)")
    assert "| tiny_3x3 | forward |" in text and "| tiny_3x3 | input_grad |" in text
    if frameworks == "torch":
        assert "convgrad / best torch" in text and "| geometric mean | forward |" in text
    with Image.open(chart) as im:
        assert im.size[0] > 300 and im.size[1] > 200
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 10


def test_bench_json(cli):
    res = cli("bench", "--cases", "tiny_3x3", "--repeats", "1", "--frameworks", "none", "--no-peak", "--json")
    assert res.code == 0
    data = json.loads(res.out)
    assert [r["op"] for r in data["rows"]] == list(suite.OPS)
    assert all(r["ms"]["convgrad"] > 0 and r["ratio"] == {} for r in data["rows"])


@pytest.mark.parametrize(("argv", "message"), [
    (["--cases", "nope"], "unknown case 'nope'"),
    (["--frameworks", "caffe"], "unknown framework"),
    (["--repeats", "0"], "argument --repeats: must be between 1 and 10,000, got 0"),
    (["--repeats", str(10**12)], "argument --repeats: must be between 1 and 10,000"),
    (["-o", "no/such/dir/r.md"], "-o 'no/such/dir/r.md': no such directory 'no/such/dir'"),
    (["--plot", "no/such/dir/r.png"], "--plot 'no/such/dir/r.png': no such directory"),
    (["--plot", "chart.txt"], "must end in .png"),
])
def test_bench_bad_arguments(cli, argv, message):
    res = cli("bench", *argv)
    assert res.code == 2 and message in res.err


def test_a_mismatch_fails_the_run(cli, monkeypatch):
    """Results are checked against each framework before timing: a disagreement is exit 1."""
    def wrong(g, x, w, dy):
        return {op: [("torch", lambda: np.zeros(1))] for op in suite.OPS}

    monkeypatch.setattr(_frameworks.module("torch"), "contestants", wrong)
    monkeypatch.setattr(_frameworks, "installed", lambda name: True)
    res = cli("bench", "--cases", "tiny_3x3", "--repeats", "1", "--frameworks", "torch", "--no-peak")
    assert res.code == 1 and "convgrad and torch differ" in res.err


def test_markdown_table_and_means():
    rows = [{"case": "a", "op": op, "engine": "im2col", "gflops": 1.0, "max_rel_err": 0.0,
             "ms": {"convgrad": 2.0, "torch": 1.0, "torch_cl": 4.0}, "ratio": {"torch": 2.0}}
            for op in suite.OPS]
    rows += [{**r, "case": "b", "ratio": {"torch": 0.5}} for r in rows]
    means = report.geometric_means(rows)
    assert means[("forward", "torch")] == pytest.approx(1.0)
    table = report.markdown_table(rows)
    assert "| torch NCHW ms | torch channels_last ms |" in table
    assert "| geometric mean | forward |" in table and table.splitlines()[-1].endswith("| 1.00 |")


@pytest.mark.parametrize("name", ["torch", "tf", "jax"])
@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), [
    ((2, 3, 20), (4, 3, 5), {"padding": 2}),
    ((1, 2, 6, 7, 5), (3, 2, 3, 3, 3), {"padding": 1}),
    ((1, 4, 9, 9), (4, 1, 3, 3), {"padding": 1, "groups": 4}),
    ((1, 3, 9, 9), (2, 3, 3, 3), {"padding": (2, 1), "stride": 2}),
])
def test_each_frameworks_contestants_compute_the_three_maps(name, x_shape, w_shape, kw):
    """The timed calls of each framework (1-D lifted, 3-D, depthwise, explicit pads) compute the
    forward and both gradients: each against convgrad, an implementation of its own."""
    if not _frameworks.installed(name):
        pytest.skip(f"{name} is not installed")
    g = convgrad.ConvGeometry.for_conv(x_shape, w_shape, **kw)
    rng = np.random.default_rng(0)
    x, w, dy = (rng.standard_normal(s).astype(np.float32) for s in (g.x_shape(), g.w_shape(), g.y_shape()))
    ref = {"forward": convgrad.conv(x, w, **kw), "input_grad": convgrad.conv_input_grad(dy, w, x.shape, **kw),
           "filter_grad": convgrad.conv_filter_grad(x, dy, w.shape, **kw)}
    calls = _frameworks.module(name).contestants(g, x, w, dy)
    assert all(calls[op] for op in suite.OPS)
    for op, variants in calls.items():
        for variant, fn in variants:
            np.testing.assert_allclose(fn(), ref[op], rtol=1e-4, atol=1e-4 * np.abs(ref[op]).max(),
                                       err_msg=f"{variant} {op}")


def test_run_case_times_both_layouts_steady_and_paused():
    """Each row holds convgrad channels-first beside channels-last (its result checked against
    channels-last first), the steady state over the asked number of back-to-back calls, the paused
    median, and the ratio CF / CL computed from those two times; the report shows both."""
    rows = suite.run_case(suite.get_cases(["tiny_3x3"])[0], 1, (), calls=4)
    assert [r["op"] for r in rows] == list(suite.OPS)
    for r in rows:
        assert set(r["ms"]) == set(r["paused_ms"]) == {"convgrad", "convgrad_cf"}
        assert all(s["calls"] >= 4 and s["min"] <= s["median"] <= s["max"] for s in r["steady"].values())
        assert r["cf_cl"] == pytest.approx(r["ms"]["convgrad_cf"] / r["ms"]["convgrad"])
        assert r["paused_cf_cl"] == pytest.approx(r["paused_ms"]["convgrad_cf"] / r["paused_ms"]["convgrad"])
    table = report.markdown_table(rows)
    assert "| convgrad channels-first ms |" in table and "| CF / CL |" in table
    assert "| paused CF / CL |" in table and table.count("| geometric mean |") == 3


def test_steady_calls_back_to_back_in_rounds():
    calls = []
    times = suite.steady({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 5, rounds=2)
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 6}
    # Each round: one untimed call then three timed ones per contestant, the second round starting with b.
    assert "".join(calls) == "aaaa" "bbbb" "bbbb" "aaaa"


def test_highlights_say_slower_when_convgrad_is_slower():
    """The large-kernel line printed "0.5x faster than the fastest framework" for a ratio of 2."""
    rows = [{"case": "large_kernel_31", "op": "forward", "ratio": {"torch": 2.0, "tf": 0.5}},
            {"case": "conv1d_k255", "op": "forward", "ratio": {"torch": 0.25, "jax": 0.1}}]
    text = report.highlights(rows)
    assert "large_kernel_31 forward: 2.00x the time of (slower than) the fastest framework (torch)" in text
    assert "conv1d_k255 forward: 4.0x faster than the fastest framework (torch)" in text


def test_writing_the_report_keeps_the_other_sections():
    """bench_core.py --write rewrote the whole results file, dropping the complex, dask and
    padding-mode sections written by other scripts; it replaces its own section only."""
    doc = "# Benchmarks\n\n## complex64\nrow\n"
    first = report.replace_section(doc, "## suite, run 1\n| a |\n")
    assert first.startswith(doc.rstrip()) and "run 1" in first
    second = report.replace_section(first + "\n## dask\nkept\n", "## suite, run 2\n| b |\n")
    assert "run 1" not in second and "run 2" in second
    assert "## complex64\nrow" in second and "## dask\nkept" in second
    assert second.count(report.BEGIN) == second.count(report.END) == 1


def test_the_written_command_names_the_cases_of_a_partial_run():
    """bench_core.py --cases A B --write wrote the whole suite's command over a table of two rows."""
    import argparse
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_core.py"
    spec = importlib.util.spec_from_file_location("bench_core", path)
    bench_core = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_core)
    every = [c.name for c in suite.CASES]
    args = argparse.Namespace(cases=every, repeats=3, calls=9, contention=True, write="B.md")
    assert bench_core.command(args, ["torch"]) == (
        "python benchmarks/bench_core.py --frameworks torch --repeats 3 --calls 9 --contention --write B.md")
    args.cases = ["depthwise_3x3", "dilated_3x3_d2"]
    assert " --cases depthwise_3x3 dilated_3x3_d2 --contention" in bench_core.command(args, ["torch"])
