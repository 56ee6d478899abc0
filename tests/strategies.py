"""Hypothesis strategies for random valid geometries, and the example budgets.

Geometries are built constructively (kernel, stride, dilation and padding first, then input sizes
large enough for the kernel to fit the padded input), with ``assume`` only for the rare
leftovers. Sizes stay small so that the oracle's loops are quick. The building blocks (windows,
paddings, channels, spellings) are the exported ``convgrad.testing.strategies``; what is checked
against the oracle (``resolve_padding``, the shapes) stays here.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import assume, settings
from hypothesis import strategies as st

import oracle
from convgrad.testing.strategies import PADDING_KINDS, _string, channels, general_channels, paddings, windows
from convgrad.testing.strategies import spelled as _spelling
from samples import Case

DATA_FORMATS = ("channels_first", "channels_last")
BASE_EXAMPLES = 100  # the "ci" profile's max_examples: budgets below are scaled by profile / this


def budget(n: int) -> settings:
    """``settings(max_examples=n)`` scaled by the loaded profile (x1 for "ci", x10 for "thorough")."""
    scale = settings.default.max_examples / BASE_EXAMPLES
    return settings(max_examples=max(1, round(n * scale)))


def _shapes(n, c, o, g, spatial, kernel, fmt):
    if fmt == "channels_first":
        return (n, c, *spatial), (o, c // g, *kernel)
    return (n, *spatial, c), (*kernel, c // g, o)


@st.composite
def conv_cases(draw, ranks=(1, 2, 3), data_formats=DATA_FORMATS, kinds=PADDING_KINDS,
               min_batch: int = 0, max_batch: int = 3):
    """A valid ``Case`` for conv and its gradients, in either data format."""
    rank = draw(st.sampled_from(ranks))
    small = rank >= 3
    kernel, stride, dilation = draw(windows(rank, max_kernel=3 if small else 4,
                                            max_dilation=2 if small else 3))
    padding, minimum = draw(paddings(kernel, dilation, kinds))
    extra = 2 if small else 3
    spatial = tuple(m + draw(st.integers(0, extra)) for m in minimum)
    pairs = oracle.resolve_padding(padding, spatial, kernel, stride, dilation)
    assume(all(n + lo + hi >= oracle.k_eff(k, d)
               for n, (lo, hi), k, d in zip(spatial, pairs, kernel, dilation)))
    c, o, g = draw(channels())
    n = draw(st.integers(min_batch, max_batch))
    fmt = draw(st.sampled_from(data_formats))
    x_shape, w_shape = _shapes(n, c, o, g, spatial, kernel, fmt)
    kwargs = {"stride": _spelling(draw, stride), "padding": padding,
              "dilation": _spelling(draw, dilation), "groups": g, "data_format": fmt}
    return Case("drawn", x_shape, w_shape, kwargs)


@dataclass(frozen=True)
class TransposeCase:
    """conv_transpose(x, w, **kwargs) has spatial size ``out_spatial``; ``before`` are the pads
    of the forward conv (that maps the output back to x) before each dim."""

    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    kwargs: dict
    out_spatial: tuple[int, ...]
    before: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]

    @property
    def data_format(self) -> str:
        return self.kwargs["data_format"]

    @property
    def out_channels(self) -> int:
        cg = self.w_shape[1] if self.data_format == "channels_first" else self.w_shape[-2]
        return cg * self.kwargs["groups"]

    def oracle(self, x, w, bias=None):
        """The oracle's scatter loop, in the case's data format."""
        fmt, kw = self.data_format, self.kwargs
        y = oracle.conv_transpose(oracle.x_to_first(x, fmt), oracle.w_to_first(w, fmt),
                                  kw["stride"], self.before, kw["dilation"], kw["groups"],
                                  self.out_spatial)
        if bias is not None:
            y = y + bias.reshape((-1,) + (1,) * len(self.out_spatial))
        return oracle.x_from_first(y, fmt)


@st.composite
def transpose_cases(draw, ranks=(1, 2, 3), kinds=PADDING_KINDS, sizes=("default", "spatial", "full"),
                    min_batch: int = 0):
    """A valid transposed conv: padding, then output_padding or an output_shape in range."""
    rank = draw(st.sampled_from(ranks))
    small = rank >= 3
    kernel, stride, dilation = draw(windows(rank, max_kernel=2 if small else 4,
                                            max_dilation=2 if small else 3))
    padding, _ = draw(paddings(kernel, dilation, kinds))
    n_in = tuple(draw(st.integers(1, 2 if small else 4)) for _ in range(rank))
    mode = draw(st.sampled_from(sizes))
    is_same = isinstance(padding, str) and padding.lower() in ("same", "same_lower")
    extra: dict = {}
    if mode == "default":
        op = (0,) * rank
        if not is_same and draw(st.booleans()):
            op = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
            extra["output_padding"] = _spelling(draw, op)
        out = oracle.transpose_out_spatial(n_in, kernel, stride, padding, dilation, op)
    else:
        ranges = oracle.transpose_size_range(n_in, kernel, stride, padding, dilation)
        assume(all(hi >= max(lo, 1) for lo, hi in ranges))
        out = tuple(draw(st.integers(max(lo, 1), hi)) for lo, hi in ranges)
    assume(all(v >= 1 for v in out))
    pairs = oracle.resolve_padding(padding, out, kernel, stride, dilation)
    assume(all(v + lo + hi >= 0 for v, (lo, hi) in zip(out, pairs)))
    c_x, c_out, g = draw(channels())  # c_x: channels of x (the forward conv's outputs)
    n = draw(st.integers(min_batch, 3))
    fmt = draw(st.sampled_from(DATA_FORMATS))
    # The filter of the forward conv: (c_x, c_out / g, *K), i.e. PyTorch's transposed layout.
    if fmt == "channels_first":
        x_shape, w_shape = (n, c_x, *n_in), (c_x, c_out // g, *kernel)
        full = (n, c_out, *out)
    else:
        x_shape, w_shape = (n, *n_in, c_x), (*kernel, c_out // g, c_x)
        full = (n, *out, c_out)
    if mode == "spatial":
        extra["output_shape"] = draw(st.sampled_from([tuple, list]))(out)
    elif mode == "full":
        extra["output_shape"] = full
    kwargs = {"stride": _spelling(draw, stride), "padding": padding,
              "dilation": _spelling(draw, dilation), "groups": g, "data_format": fmt, **extra}
    return TransposeCase(x_shape, w_shape, kwargs, tuple(out), tuple(lo for lo, _ in pairs), pairs)


@dataclass(frozen=True)
class GeneralCase:
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    kwargs: dict

    @property
    def data_format(self) -> str:
        return self.kwargs["data_format"]

    @property
    def geometry(self) -> dict:
        return {k: v for k, v in self.kwargs.items() if k != "data_format"}


@st.composite
def general_cases(draw, ranks=(1, 2, 3), min_batch: int = 0):
    """conv_general: lhs and rhs dilation, stride, pads (negative included), feature or batch
    groups; string padding only without lhs dilation."""
    rank = draw(st.sampled_from(ranks))
    small = rank >= 3
    kernel, stride, rhs = draw(windows(rank, max_kernel=2 if small else 3,
                                       max_dilation=2 if small else 3))
    lhs = tuple(draw(st.integers(1, 2 if small else 3)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 3 if small else 5)) for _ in range(rank))
    dilated = [(n - 1) * f + 1 for n, f in zip(spatial, lhs)]
    if all(v == 1 for v in lhs) and draw(st.booleans()):
        padding = _string(draw, draw(st.sampled_from(["valid", "same", "same_lower", "full"])))
    else:
        padding = [(draw(st.integers(-3, 3)), draw(st.integers(-3, 3))) for _ in range(rank)]
    pairs = oracle.resolve_padding(padding, dilated, kernel, stride, rhs)
    assume(all(n + lo + hi >= oracle.k_eff(k, d)
               for n, (lo, hi), k, d in zip(dilated, pairs, kernel, rhs)))
    n, c, o, cw, fg, bg = draw(general_channels(min_batch=min_batch))
    fmt = draw(st.sampled_from(DATA_FORMATS))
    if fmt == "channels_first":
        x_shape, w_shape = (n, c, *spatial), (o, cw, *kernel)
    else:
        x_shape, w_shape = (n, *spatial, c), (*kernel, cw, o)
    kwargs = {"stride": _spelling(draw, stride), "padding": padding,
              "lhs_dilation": _spelling(draw, lhs), "rhs_dilation": _spelling(draw, rhs),
              "feature_group_count": fg, "batch_group_count": bg, "data_format": fmt}
    return GeneralCase(x_shape, w_shape, kwargs)


seeds = st.integers(0, 2**32 - 1)



@st.composite
def filter_grad_cases(draw, channels, outputs):
    """(x_shape, w_shape, kwargs, data_format) of a groups-1 conv for the filter-gradient
    kernels: random rank 1-3, kernel, stride (often longer than the kernel), dilation, explicit
    pads from -1 to 2 (negative ones crop); input channels from ``channels``, output channels
    from ``outputs`` (strategies)."""
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3 if rank == 3 else 5)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    pads = tuple((draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(rank))
    reach = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    spatial = tuple(max(1, r - lo - hi) + draw(st.integers(0, 4 if rank < 3 else 2))
                    for r, (lo, hi) in zip(reach, pads))
    c, o, n = draw(channels), draw(outputs), draw(st.integers(1, 2))
    fmt = draw(st.sampled_from(["channels_first", "channels_last"]))
    kwargs = {"stride": stride, "padding": pads, "dilation": dilation}
    return (*_shapes(n, c, o, 1, spatial, kernel, fmt), kwargs, fmt)
