"""Random invalid or extreme calls across the core and every front, each interpreter in a child.

tests/fuzz_calls.py draws the calls (seeded, so call ``i`` replays alone with
``python tests/fuzz_calls.py --seed SEED --show i``) and runs them in a child process, one JSON
line per call, so a crash or a hang is caught and named instead of ending the test run. The
children run under ``python`` and ``python -O`` (validation must not hang on ``assert``) side by
side, with the workspace budget at ``fuzz_calls.BUDGET``. Required of every call: it returns or
raises ValueError/TypeError (no subclass that is also an IndexError, KeyError, ArithmeticError,
MemoryError or AssertionError; convgrad documents no NotImplementedError; the one documented
AssertionError is convgrad.testing's report of a failed check), within 2 s of CPU, without
growing the process's memory by more than a few budgets, and leaves its arguments as they were.

Calls: 10,000 under each interpreter by default, 100,000 each when $CONVGRAD_TEST_PROFILE is
"nightly" (the seed stays: the nightly run extends the default one). Run with ``-s`` to see
the summary (calls, exception types, slowest call, time); it is also written to
fuzz-summary.json in the test's tmp directory.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import convgrad
import fuzz_calls

SEED = 20261206
NIGHTLY = os.environ.get("CONVGRAD_TEST_PROFILE", "").lower() == "nightly"
COUNTS = {name: 100_000 if NIGHTLY else 10_000 for name in ("python", "python -O")}
FLAGS = {"python": [], "python -O": ["-O"]}
SLOW_S = 2.0  # no call may take longer
PEAK_BUDGETS = 4
HANG_S = 20.0  # the child dumps its stack and exits when one call takes this long
TIMEOUT_S = 120 + max(COUNTS.values()) // 100  # the whole child, imports included (~20 s per 10,000)
ALLOWED = ("ValueError", "TypeError")
FORBIDDEN_BASES = {"IndexError", "KeyError", "LookupError", "ArithmeticError", "OverflowError",
                   "ZeroDivisionError", "MemoryError", "AssertionError", "NotImplementedError"}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(convgrad.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env[convgrad.WORKSPACE_ENV] = str(fuzz_calls.BUDGET)
    return env


@pytest.fixture(scope="module")
def fuzz_runs(tmp_path_factory):
    """Both children, started together; {interpreter: (records, stderr, returncode, seconds)}."""
    tmp = tmp_path_factory.mktemp("fuzz")
    script = Path(fuzz_calls.__file__).resolve()
    procs = {}
    start = time.perf_counter()
    for name, flags in FLAGS.items():
        log = tmp / f"{name.replace(' ', '')}.jsonl"
        err = open(tmp / f"{name.replace(' ', '')}.stderr", "w+")
        cmd = [sys.executable, *flags, str(script), "--seed", str(SEED), "--count", str(COUNTS[name]),
               "--log", str(log), "--hang", str(HANG_S)]
        procs[name] = (subprocess.Popen(cmd, stdout=err, stderr=err, env=_child_env()), log, err)
    runs = {}
    for name, (proc, log, err) in procs.items():
        try:
            proc.wait(timeout=max(1.0, TIMEOUT_S - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.seek(0)
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        runs[name] = (records, err.read(), proc.returncode, time.perf_counter() - start)
        err.close()
    summary = {name: _summary(name, *run) for name, run in runs.items()}
    (tmp / "fuzz-summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nfuzz summary ({tmp / 'fuzz-summary.json'}):\n{json.dumps(summary, indent=1)}")
    return runs


def _calls(records: list[dict]) -> list[dict]:
    return [r for r in records if "i" in r]


def _summary(name: str, records: list[dict], stderr: str, returncode: int, seconds: float) -> dict:
    calls = _calls(records)
    slowest = max(calls, key=lambda r: r["cpu"], default=None)
    head = records[0] if records else {}
    return {
        "interpreter": name, "seed": SEED, "calls": len(calls), "returncode": returncode,
        "wall_s": round(seconds, 1), "calls_s": round(sum(r["s"] for r in calls), 2),
        "outcomes": dict(collections.Counter(r["outcome"].split("|")[0] for r in calls).most_common()),
        "slowest": slowest and {k: slowest[k] for k in ("i", "target", "s", "cpu", "outcome")},
        "rss_kept_mib": (calls[-1]["rss"] - head["rss"]) >> 20 if calls else None,
        "rss_start_mib": head.get("rss", 0) >> 20,
        "peak_growth_mib": (max((r["peak"] for r in calls), default=0) - head.get("peak", 0)) >> 20,
        "targets": len({r["target"] for r in calls}),
    }


def _replay(i: int) -> str:
    call, _, _ = fuzz_calls.make_call(SEED, i)
    return f"call {i}: {fuzz_calls.describe(call)}"


@pytest.mark.parametrize("name", list(FLAGS))
def test_every_call_finishes(fuzz_runs, name):
    """No crash, no hang: the child logs every call and exits 0."""
    records, stderr, returncode, _ = fuzz_runs[name]
    calls = _calls(records)
    if returncode != 0 or len(calls) != COUNTS[name]:
        last = calls[-1]["i"] if calls else -1
        pytest.fail(f"{name}: the child ended with status {returncode} after {len(calls)} of "
                    f"{COUNTS[name]} calls; the next was\n{_replay(last + 1)}\n{stderr[-3000:]}")


def _documented(r: dict) -> bool:
    """convgrad.testing's checks raise AssertionError when the identity fails, as documented
    (with NaN, inf or 1e308 operands a fuzz call can make it fail), and dot_test's operator form
    when the operator under test returns another shape than the one it was given. Integer convs
    raise OverflowError before any work where a result could pass int64, as documented (README)."""
    if r["outcome"].startswith("builtins.OverflowError"):
        message = r["message"]
        return message.startswith("an integer result could pass int64") or "past int64 (max" in message
    return (r["target"].startswith("testing.") and r["outcome"].startswith("builtins.AssertionError")
            and r["message"].startswith(("gradient check failed", "dot test failed", "op(x) has shape",
                                         "adjoint(y) has shape")))


@pytest.mark.parametrize("name", list(FLAGS))
def test_only_value_and_type_errors(fuzz_runs, name):
    bad = []
    for r in _calls(fuzz_runs[name][0]):
        outcome, _, bases = r["outcome"].partition("|")
        if outcome == "ok" or _documented(r):
            continue
        mro = set(bases.split(","))
        if not mro & set(ALLOWED) or mro & FORBIDDEN_BASES:
            bad.append(f"{outcome}: {r['message'][:200]}\n  {_replay(r['i'])}")
    assert not bad, f"{len(bad)} calls raised other exceptions:\n" + "\n".join(bad[:20])


@pytest.mark.parametrize("name", list(FLAGS))
def test_no_call_is_slow(fuzz_runs, name):
    """Measured in the child's CPU time: the machine is shared, and a busy neighbour stretches
    the wall clock (a call that sleeps or hangs past HANG_S ends the child instead)."""
    slow = [r for r in _calls(fuzz_runs[name][0]) if r["cpu"] > SLOW_S]
    assert not slow, "\n".join(f"{r['cpu']:.2f} s CPU ({r['s']:.2f} s wall): {_replay(r['i'])}"
                                for r in slow[:20])


@pytest.mark.parametrize("name", list(FLAGS))
def test_memory_stays_within_the_budget(fuzz_runs, name):
    """Every large request is refused before allocating. The budget bounds each temporary alone
    (an operand's copy, an engine's workspace, the result), and a call holds a few at once, so
    the peak may grow by PEAK_BUDGETS budgets."""
    records = fuzz_runs[name][0]
    calls = _calls(records)
    assert calls
    over = [r for r in calls if r["peak"] - records[0]["peak"] > PEAK_BUDGETS * fuzz_calls.BUDGET]
    assert not over, (f"peak RSS grew by {(over[0]['peak'] - records[0]['peak']) >> 20} MiB (budget "
                      f"{fuzz_calls.BUDGET >> 20} MiB) at\n{_replay(over[0]['i'])}")


@pytest.mark.parametrize("name", list(FLAGS))
def test_inputs_are_not_modified(fuzz_runs, name):
    changed = [r for r in _calls(fuzz_runs[name][0]) if r["mutated_input"] or r["mutated_args"]]
    assert not changed, "\n".join(_replay(r["i"]) for r in changed[:20])


def test_the_fuzz_reaches_every_target_and_both_outcomes(fuzz_runs):
    """A fuzz that only ever hits one early check proves little: every target is called, and
    valid calls succeed as well as invalid ones fail."""
    calls = _calls(fuzz_runs["python"][0])
    targets = collections.Counter(r["target"] for r in calls)
    assert len(targets) >= 60, sorted(targets)
    outcomes = collections.Counter(r["outcome"].split("|")[0] for r in calls)
    assert outcomes["ok"] > len(calls) // 10 and outcomes["builtins.ValueError"] > len(calls) // 10
