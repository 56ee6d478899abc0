"""Relative tolerances per dtype, for the dot test and for routes compared with ``conv_vjp``
(exported as ``convgrad.testing.RTOL``; here so the command line's help can read it without
loading an engine).

float64 rounding on sums of thousands of terms stays near 1e-13, float32 near 1e-6, float16
(computed in float32 by convgrad, natively by the frameworks) near 1e-3; complex128 and complex64
(each computed in itself) round as float64 and float32; bfloat16 (8 bits, not 11: rounding alone
is 2**-9 = 2e-3 relative) near 1e-2.
"""

from __future__ import annotations

import numpy as np

RTOL = {"float64": 1e-10, "float32": 1e-4, "float16": 1e-2, "complex128": 1e-10, "complex64": 1e-4,
        "bfloat16": 5e-2}


def tolerance(dtype: object) -> float:
    """``RTOL`` of ``dtype`` (float16's for any other)."""
    return RTOL.get(np.dtype(dtype).name, RTOL["float16"])
