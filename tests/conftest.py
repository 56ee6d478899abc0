"""Hypothesis profiles, chosen with $HYPOTHESIS_PROFILE (default "ci").

"ci" is deterministic (derandomize, no database) and sized so that the property tests together
draw well over 500 examples per run: each test asks for its share through ``strategies.budget``,
which scales with the profile's max_examples (100 for "ci"). "dev" explores new examples on each
run at the same size; "thorough" draws ten times as many.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# The shared test helpers (oracle, samples, strategies) are plain modules beside this file.
sys.path.insert(0, str(Path(__file__).parent))

_common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, **_common)
settings.register_profile("dev", max_examples=100, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
