"""Settings for the framework-front tests, which run the real libraries.

TensorFlow is made quiet before anything imports it; PyTorch's notice that ``padding='same'``
with an even kernel may copy the input (a performance note, not a result change) is not an
error here, although the suite turns warnings into errors.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    config.addinivalue_line(
        "filterwarnings", "ignore:Using padding='same' with even kernel lengths:UserWarning"
    )
