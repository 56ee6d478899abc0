"""Random convs whose pads a padding mode can fill, for the padding-mode and forward-mode tests."""

from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

import oracle
from strategies import channels, windows

# canonical mode -> np.pad's name: the oracle pads with NumPy, never with convgrad.
NP_MODE = {"zeros": "constant", "reflect": "reflect", "symmetric": "symmetric", "replicate": "edge",
           "circular": "wrap"}
# Ways to ask for each mode: plain names of NumPy, PyTorch and TF, and (framework, name) pairs.
SPELLINGS = {
    "zeros": ["zeros", "constant", "CONSTANT", ("torch", "zeros"), ("scipy", "constant")],
    "reflect": ["reflect", "REFLECT", ("numpy", "reflect"), ("scipy", "mirror"), ("onnx", "reflect")],
    "symmetric": ["symmetric", "SYMMETRIC", ("scipy", "reflect"), ("tf", "SYMMETRIC"),
                  ("scipy", "grid-mirror")],
    "replicate": ["replicate", "edge", ("scipy", "nearest"), ("onnx", "edge"), ("numpy", "edge")],
    "circular": ["circular", "wrap", ("scipy", "grid-wrap"), ("scipy", "wrap"), ("torch", "circular")],
}
# The largest pad each mode fills on an axis of n samples (reflect needs pad < n, as PyTorch).
MAX_PAD = {"zeros": lambda n: 3, "replicate": lambda n: 3, "reflect": lambda n: n - 1,
           "symmetric": lambda n: n, "circular": lambda n: n}


@st.composite
def mode_cases(draw, modes=tuple(NP_MODE), ranks=(1, 2, 3), min_batch=0, max_batch=2):
    """(x_shape, w_shape, kwargs, canonical mode, (before, after) pads): a conv whose pads the
    mode can fill; kwargs spell the mode any accepted way."""
    mode = draw(st.sampled_from(modes))
    rank = draw(st.sampled_from(ranks))
    small = rank == 3
    kernel, stride, dilation = draw(windows(rank, max_kernel=3 if small else 4,
                                            max_dilation=2 if small else 3))
    keff = [oracle.k_eff(k, d) for k, d in zip(kernel, dilation)]
    spatial = tuple(draw(st.integers(max(1, -(-(k + 2) // 3)), k + 2 - small)) for k in keff)
    if draw(st.booleans()):
        padding = draw(st.sampled_from(["same", "same_lower", "SAME"]))
    else:
        padding = [tuple(draw(st.integers(0, min(3, MAX_PAD[mode](n)))) for _ in "lh") for n in spatial]
    pairs = oracle.resolve_padding(padding, spatial, kernel, stride, dilation)
    assume(all(lo <= MAX_PAD[mode](n) and hi <= MAX_PAD[mode](n) for n, (lo, hi) in zip(spatial, pairs)))
    assume(all(n + lo + hi >= k for n, (lo, hi), k in zip(spatial, pairs, keff)))
    c, o, g = draw(channels())
    n = draw(st.integers(min_batch, max_batch))
    fmt = draw(st.sampled_from(["channels_first", "channels_last"]))
    x_shape, w_shape = (n, c, *spatial), (o, c // g, *kernel)
    if fmt == "channels_last":
        x_shape, w_shape = (n, *spatial, c), (*kernel, c // g, o)
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": g, "data_format": fmt,
              "padding_mode": draw(st.sampled_from(SPELLINGS[mode]))}
    return x_shape, w_shape, kwargs, mode, pairs
