"""Hypothesis profiles, and the count of random geometries checked against the loop oracle.

The profile is chosen with $HYPOTHESIS_PROFILE, or else $CONVGRAD_TEST_PROFILE (default "ci"):

* "ci": deterministic (derandomize, no database); the property tests draw their share through
  ``strategies.budget``, scaled by the profile's max_examples (100 for "ci"): a whole run checks
  at least ``ORACLE_FLOOR`` random geometries against the loop oracle (tests/oracle.py).
* "dev": new examples on each run, at the ci size.
* "nightly" (and its older name "thorough"): ten times as many examples, new ones each run, so a
  whole run checks at least 10 x ``ORACLE_FLOOR``; a failure prints the blob that reproduces it.

The property tests that compare with the oracle are marked ``@tally.checked_against("oracle")``
(those that compare with a real framework, with its name; issue 15's capabilities also with
``capability=``); the terminal summary prints the counts, per capability too, and a whole-suite
run (no file, -k, -m or deselection) below the profile's oracle floor or a capability's floor
(``tally.CAPABILITY_FLOORS``) fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The shared test helpers (oracle, samples, strategies) are plain modules beside this file.
TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

import tally  # noqa: E402  (found through the path set just above)

_common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, **_common)
settings.register_profile("dev", max_examples=100, **_common)
settings.register_profile("nightly", max_examples=1000, database=None, print_blob=True, **_common)
settings.register_profile("thorough", settings.get_profile("nightly"))
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or os.environ.get("CONVGRAD_TEST_PROFILE") or "ci"
settings.load_profile(PROFILE)

ORACLE_FLOOR = 2000  # random geometries against the oracle per whole "ci" run (issue 17)


def _scale() -> float:
    return settings.default.max_examples / 100


def _floor() -> int:
    return ORACLE_FLOOR * settings.default.max_examples // 100


def pytest_configure(config):
    config._convgrad_deselected = 0


def pytest_deselected(items):
    # config is not passed here; the count is read back from the first item's session.
    if items:
        items[0].config._convgrad_deselected += len(items)


def _whole_suite(session) -> bool:
    """Every test file ran: no path narrower than tests/, no -k / -m, nothing deselected."""
    config = session.config
    paths = [Path(str(a).split("::")[0]).resolve() for a in config.args]
    return (all(p == TESTS.resolve() for p in paths) and not config.getoption("collectonly")
            and not config.getoption("keyword") and not config.getoption("markexpr")
            and not config._convgrad_deselected and not session.shouldstop)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    short = tally.counts["oracle"] < _floor() or tally.short_of_floors(_scale())
    if exitstatus == 0 and _whole_suite(session) and short:
        session.config._convgrad_short = True
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.getoption("collectonly"):
        return
    n = tally.counts["oracle"]
    terminalreporter.write_line(
        f"random geometries checked against the loop oracle: {n} (profile {PROFILE!r})")
    real = {k: v for k, v in sorted(tally.counts.items()) if k != "oracle"}
    if real:
        terminalreporter.write_line("random geometries checked against the real frameworks: "
                                    + ", ".join(f"{k} {v}" for k, v in real.items()))
    if tally.by_capability:
        terminalreporter.write_line("per capability (random geometries against each reference):")
    for cap, refs in sorted(tally.by_capability.items()):
        floors = tally.CAPABILITY_FLOORS.get(cap, {})
        terminalreporter.write_line(f"  {cap}: " + ", ".join(
            f"{ref} {n}" + (f" (floor {round(floors[ref] * _scale())})" if ref in floors else "")
            for ref, n in sorted(refs.items())))
    if getattr(config, "_convgrad_short", False):
        terminalreporter.write_line(
            f"FAILED: a whole run must check at least {_floor()} random geometries against the oracle "
            f"and each capability's floor: {tally.short_of_floors(_scale()) or 'oracle short'}", red=True)
