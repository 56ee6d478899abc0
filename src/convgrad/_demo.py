"""The seed note's example, every route: a 1x4x4x1 input, a 3x3 filter, VALID, channels-last.

d_x is computed five ways and d_w four, plus SciPy's 2-D routines on the squeezed arrays, and
every route is compared with the vector-Jacobian product.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.signal

from . import identities
from ._ops import conv, conv_filter_grad, conv_input_grad, conv_transpose, conv_vjp

FMT = "channels_last"


def _rot180(w: np.ndarray) -> np.ndarray:
    return w[::-1, ::-1]


def _scipy_conv2d(a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    """The seed's helper: scipy's convolve2d with the kernel rotated, i.e. a correlation."""
    return scipy.signal.convolve2d(a, _rot180(b), mode=mode)


def seed_routes(seed: int = 0) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Every route of the seed note on its own example; returns (routes, arrays)."""
    rng = np.random.default_rng(seed)
    k = 3
    x = rng.integers(10, size=(1, 4, 4, 1)).astype(np.float64)  # NHWC
    w = rng.integers(10, size=(k, k, 1, 1)).astype(np.float64)  # HWIO
    dy = rng.integers(10, size=(1, 2, 2, 1)).astype(np.float64)  # the seed's out_scale
    geometry = {"padding": "valid", "data_format": FMT}

    y, vjp = conv_vjp(x, w, **geometry)
    dx_vjp, dw_vjp, _ = vjp(dy)
    # The manual route: VALID conv of dy padded by k - 1 with the filter rotated 180 degrees and
    # its in/out channels swapped (HWIO -> HWOI).
    dy_full = np.pad(dy, [(0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0)])
    dx_manual = conv(dy_full, _rot180(w).transpose(0, 1, 3, 2), **geometry)
    # The filter gradient with transposed layouts: batch and channels swap roles (NHWC -> CHWN
    # for x, NHWC -> HWNC used as an HWIO filter for dy), and the result CHWO is read as HWIO.
    dw_manual = conv(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), **geometry)
    dw_manual = dw_manual.transpose(1, 2, 0, 3)
    d_x = {
        "conv_vjp (autodiff)": dx_vjp,
        "full conv of padded dy with rot180(w)": dx_manual,
        "conv_input_grad": conv_input_grad(dy, w, x.shape, **geometry),
        "conv_transpose(dy, w, output_shape=x.shape)": conv_transpose(
            dy, w, output_shape=x.shape, **geometry
        ),
        "identities.input_grad_via_conv": identities.input_grad_via_conv(dy, w, x.shape, **geometry),
        "scipy convolve2d(dy, w, 'full')": _scipy_conv2d(
            dy[0, :, :, 0], _rot180(w[:, :, 0, 0]), "full"
        )[None, :, :, None],
    }
    d_w = {
        "conv_vjp (autodiff)": dw_vjp,
        "conv with transposed layouts": dw_manual,
        "conv_filter_grad": conv_filter_grad(x, dy, w.shape, **geometry),
        "identities.filter_grad_via_conv": identities.filter_grad_via_conv(x, dy, w.shape, **geometry),
        "scipy convolve2d(x, dy, 'valid')": _scipy_conv2d(
            x[0, :, :, 0], dy[0, :, :, 0], "valid"
        )[:, :, None, None],
    }
    return {"d_x": d_x, "d_w": d_w}, {"x": x, "w": w, "y": y, "dy": dy}


def main(print_: Callable[[str], None] = print) -> int:
    routes, arrays = seed_routes()
    print_("convgrad: the seed example (x 1x4x4x1 NHWC, w 3x3x1x1 HWIO, VALID, stride 1)")
    print_(f"x[0, :, :, 0] =\n{arrays['x'][0, :, :, 0]}\nw[:, :, 0, 0] =\n{arrays['w'][:, :, 0, 0]}")
    print_(f"dy[0, :, :, 0] =\n{arrays['dy'][0, :, :, 0]}")
    ok = True
    for name, results in routes.items():
        ref_name, ref = next(iter(results.items()))
        shown = ref[:, :, 0, 0] if name == "d_w" else ref[0, :, :, 0]
        print_(f"\n{name} (squeezed) =\n{shown}")
        print_(f"{'route':<48} {'max |diff| vs ' + ref_name:>34}  agrees")
        for route, value in results.items():
            err = float(np.max(np.abs(value - ref)))
            agrees = value.shape == ref.shape and err <= 1e-12
            ok &= agrees
            print_(f"{route:<48} {err:>34.3g}  {'yes' if agrees else 'NO'}")
    print_("\nall routes agree" if ok else "\nSOME ROUTES DISAGREE")
    return 0 if ok else 1
