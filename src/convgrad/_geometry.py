"""ConvGeometry: the one frozen object from which every shape and padding of a convolution derives.

The parameter model is JAX's ``conv_general_dilated``: per spatial axis an input size ``n``, a
kernel size ``k``, a window stride ``s``, an input (lhs) dilation, a kernel (rhs) dilation ``d``
and explicit (before, after) pads that may be negative (crop); over channels, feature groups and
batch groups. That model is closed under transposition, which is why both gradients are
themselves convolutions of this kind (the rules are in ``_transpose``).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from . import _canon, _transpose
from ._formulas import dilate_dim, stride_dim, tight_after, transpose_size
from ._padding import PaddingSpec, Pairs, parse_padding

_BUILT: dict[tuple, ConvGeometry] = {}


def _typed_key(value: object) -> tuple | None:
    """A hashable key of ``value`` that tells apart equal values of different types (1, 1.0,
    True; a list and a tuple), or None where some part cannot be hashed."""
    t = type(value)
    if t in _PLAIN:
        return (t, value)
    if t is tuple or t is list:
        parts = []
        for v in value:  # one loop, ints as they are (a key of anything else is a tuple): 11 -> 4 us
            if type(v) is int:
                parts.append(v)
                continue
            part = _typed_key(v)
            if part is None:
                return None
            parts.append(part)
        return (t, tuple(parts))
    try:
        hash(value)
    except TypeError:
        return None
    return (t, value)


_PLAIN = {int, str, float, bool, type(None)}  # hashable, and told apart by their type


def _memo(build: Callable[..., ConvGeometry]) -> classmethod:
    """A constructor that remembers the geometries it built. Checking and resolving the arguments
    took 85 us, a third of a small conv's call, and a training loop asks for the same geometry at
    every step. Keys keep the arguments' types (True is not 1 here: one is refused, the other is
    a stride); refusals are not remembered."""

    @functools.wraps(build)
    def memo(cls: type[ConvGeometry], *args: object, **kwargs: object) -> ConvGeometry:
        typed = _typed_key((args, tuple(kwargs.values())))
        key = (cls, build.__name__, tuple(kwargs), typed)
        geom = _BUILT.get(key) if typed is not None else None
        if geom is None:
            geom = build(cls, *args, **kwargs)
            if typed is not None:
                if len(_BUILT) >= 1024:  # bounded: forget old geometries
                    _BUILT.clear()
                _BUILT[key] = geom
        return geom

    return classmethod(memo)


def _check_channels(what: str, c: int, groups_name: str, g: int) -> None:
    if c % g:
        raise ValueError(f"{groups_name}={g} does not divide {what}={c}")


@dataclass(frozen=True)
class ConvParams:
    """The window parameters of ``conv`` for one spatial rank, canonical: a stride and a dilation
    per dim, the padding spec (resolved once the input size is known), groups and the layout."""

    stride: tuple[int, ...]
    padding: PaddingSpec
    dilation: tuple[int, ...]
    groups: int
    data_format: str

    @classmethod
    def parse(cls, rank: int, stride: object = 1, padding: object = 0, dilation: object = 1,
              groups: object = 1, data_format: object = "channels_first") -> ConvParams:
        """The user's values checked (TypeError / ValueError naming the parameter) and made canonical."""
        return cls(_canon.int_tuple("stride", stride, rank, minimum=1), parse_padding(padding, rank),
                   _canon.int_tuple("dilation", dilation, rank, minimum=1),
                   _canon.positive_int("groups", groups), _canon.data_format(data_format))

    def pads(self, spatial: Sequence[int], kernel: Sequence[int]) -> Pairs:
        """Explicit (before, after) pads for input sizes ``spatial``."""
        return self.padding.resolve(spatial, kernel, self.stride, self.dilation)


def spatial_dim(i: int) -> str:
    """Spatial dim ``i`` with its array axes, for messages: a bare "dim 0" reads as the batch axis."""
    return f"spatial dim {i} (array axis {i + 2} channels-first, {i + 1} channels-last)"


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of one convolution in canonical form.

    Parameters
    ----------
    batch, in_channels : int
        ``N`` and ``C`` of the input ``x``.
    out_channels : int
        ``O``, the number of filters.
    in_spatial, kernel : tuple of int
        Spatial sizes of ``x`` (before input dilation) and of the kernel.
    stride, lhs_dilation, rhs_dilation : tuple of int
        Window stride, input dilation and kernel dilation per axis; 1 means none.
    padding : tuple of (int, int)
        Explicit (before, after) pads of the input-dilated ``x``; negative values crop.
    feature_group_count, batch_group_count : int
        Channel groups (``groups``; ``== C`` is depthwise) and batch groups (used by the filter
        gradient of a grouped convolution). At most one may exceed 1.

    Notes
    -----
    The filter has ``C // feature_group_count`` input channels; with batch groups, the output
    batch is ``N // batch_group_count`` and output channel block ``b`` sees batch block ``b``.
    """

    batch: int
    in_channels: int
    out_channels: int
    in_spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: Pairs
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]
    feature_group_count: int = 1
    batch_group_count: int = 1

    def __post_init__(self) -> None:
        r = len(self.kernel)
        if r < 1:
            raise ValueError("a convolution needs at least one spatial dim; kernel=()")
        for name in ("in_spatial", "stride", "padding", "lhs_dilation", "rhs_dilation"):
            if len(getattr(self, name)) != r:
                raise ValueError(
                    f"{name}={getattr(self, name)} has {len(getattr(self, name))} entries "
                    f"but the kernel {self.kernel} has {r} spatial dims"
                )
        for name in ("stride", "lhs_dilation", "rhs_dilation"):
            if any(v < 1 for v in getattr(self, name)):
                raise ValueError(f"{name} must be >= 1 in every dim, got {getattr(self, name)}")
        if any(k < 1 for k in self.kernel):
            raise ValueError(f"kernel sizes must be >= 1, got zero-size kernel {self.kernel}")
        for name in ("batch", "in_channels", "out_channels"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        fg, bg = self.feature_group_count, self.batch_group_count
        if fg < 1 or bg < 1:
            raise ValueError(f"feature_group_count={fg} and batch_group_count={bg} must be positive integers")
        if fg > 1 and bg > 1:
            raise ValueError(f"at most one of feature_group_count={fg} and batch_group_count={bg} may be > 1")
        _check_channels("in_channels", self.in_channels, "feature_group_count", fg)
        _check_channels("out_channels", self.out_channels, "feature_group_count", fg)
        _check_channels("batch", self.batch, "batch_group_count", bg)
        _check_channels("out_channels", self.out_channels, "batch_group_count", bg)
        for i, (n, (lo, hi)) in enumerate(zip(self.dilated_input, self.padding)):
            # A crop may eat into the other side's padding; only the padded size must exist.
            if n + lo + hi < 0:
                raise ValueError(f"negative padding {(lo, hi)} in {spatial_dim(i)} crops more than the "
                                 f"input size {n}")
            if n + lo + hi > _canon.INT64_MAX:
                raise ValueError(f"padding {(lo, hi)} in {spatial_dim(i)} gives a padded input size "
                                 f"{n + lo + hi} outside the int64 range")

    @property
    def empty(self) -> bool:
        """True when an output spatial size is 0: a kernel larger than the padded input (as in
        JAX, where ``conv_general_dilated`` then returns an empty result)."""
        return 0 in self.out_spatial

    def require_nonempty(self) -> ConvGeometry:
        """self, or the ValueError of ``conv`` and its gradients, which refuse empty outputs."""
        for i, (p, k) in enumerate(zip(self.padded_input, self.kernel_eff)):
            if p < k:
                raise ValueError(
                    f"kernel larger than the padded input in {spatial_dim(i)}: effective kernel size "
                    f"{k} (kernel {self.kernel[i]}, dilation {self.rhs_dilation[i]}) > padded input "
                    f"size {p} (input {self.in_spatial[i]}, padding {self.padding[i]})"
                )
        return self

    # --- constructors from user-facing arguments ------------------------------------------------
    @_memo
    def for_conv(
        cls, x_shape: Sequence[int], w_shape: Sequence[int], *, stride: object = 1,
        padding: object = 0, dilation: object = 1, groups: object = 1,
        data_format: str = "channels_first", names: tuple[tuple[str, str], ...] = (),
    ) -> ConvGeometry:
        """Geometry of ``conv(x, w)``.

        Parameters
        ----------
        x_shape : (N, C, *S) or, channels-last, (N, *S, C)
        w_shape : (O, C / groups, *K) or, channels-last, (*K, C / groups, O)
        stride, padding, dilation, groups, data_format : as in ``convgrad.conv``
        names : (core name, caller's name) pairs for the messages, e.g. ``(("x", "input"),)``

        Returns
        -------
        ConvGeometry with explicit pads; ValueError if an output size would be 0.

        Examples
        --------
        >>> import convgrad
        >>> g = convgrad.ConvGeometry.for_conv((1, 3, 8, 8), (4, 3, 3, 3), stride=2, padding="same")
        >>> g.padding, g.y_shape()  # SAME: the odd pad goes after
        (((0, 1), (0, 1)), (1, 4, 4, 4))
        """
        said = _names(names)
        x_shape, w_shape, rank = _shapes(x_shape, w_shape, said)
        p = ConvParams.parse(rank, stride, padding, dilation, groups, data_format)
        n, c, spatial = _split_x(x_shape, p.data_format)
        o, cw, kernel = _split_w(w_shape, p.data_format)
        x, w = said["x"], said["w"]
        if c != p.groups * cw:
            raise ValueError(f"{x} has {c} channels but groups * {w} in_channels = {p.groups} * {cw} = "
                             f"{p.groups * cw}")
        _check_channels(f"{w} out_channels", o, "groups", p.groups)
        _check_kernel(kernel, w_shape, w)
        return cls(n, c, o, spatial, kernel, p.stride, p.pads(spatial, kernel), (1,) * rank,
                   p.dilation, p.groups, 1).require_nonempty()

    @_memo
    def for_transpose(
        cls, x_shape: Sequence[int], w_shape: Sequence[int], *, stride: object = 1,
        padding: object = 0, output_padding: object = 0, output_shape: Sequence[int] | None = None,
        dilation: object = 1, groups: object = 1, data_format: str = "channels_first",
    ) -> ConvGeometry:
        """Geometry of the forward conv whose adjoint is ``conv_transpose(x, w)``.

        The forward conv maps the transposed conv's output back to ``x``: its input is the
        result ``y``, its output is ``x``, its filter is ``w`` (same layout as ``for_conv``) and
        ``padding`` is its padding. Pads are made tight (the last window ends on the last padded
        sample) so the adjoint is defined for every reachable output size.

        Parameters
        ----------
        x_shape : (N, C_in, *S) or (N, *S, C_in), the transposed conv's input
        w_shape : (C_in, C_out / groups, *K) or (*K, C_out / groups, C_in)
        stride, padding, output_padding, output_shape, dilation, groups, data_format :
            as in ``convgrad.conv_transpose``

        Returns
        -------
        ConvGeometry of the forward conv: ``x_shape()`` is the result's, ``y_shape()`` x's.

        Examples
        --------
        >>> import convgrad
        >>> g = convgrad.ConvGeometry.for_transpose((1, 4, 4), (4, 3, 3), stride=2, padding=1,
        ...                                         output_padding=1)
        >>> g.x_shape(), g.y_shape(), g.padding  # (4 - 1) * 2 - 2 + 3 + 1 = 8; after pad tight
        ((1, 3, 8), (1, 4, 4), ((1, 0),))
        """
        x_shape, w_shape, rank = _shapes(x_shape, w_shape)
        p = ConvParams.parse(rank, stride, padding, dilation, groups, data_format)
        n, c, o_sp = _split_x(x_shape, p.data_format)
        o, cw, kernel = _split_w(w_shape, p.data_format)
        if c != o:
            raise ValueError(
                f"x has {c} channels but w (shape {w_shape}) expects {o}: conv_transpose takes w in "
                f"the layout of the forward conv it transposes, "
                + ("(C_in, C_out/groups, *K)" if p.data_format == "channels_first"
                   else "(*K, C_out/groups, C_in)")
            )
        _check_channels("x channels", c, "groups", p.groups)
        _check_kernel(kernel, w_shape)
        if any(v < 1 for v in o_sp):
            raise ValueError(f"conv_transpose needs a non-empty spatial input, got x.shape={x_shape}")
        op = _canon.int_tuple("output_padding", output_padding, rank, minimum=0)
        if output_shape is None:
            spatial = _transposed_size(p, o_sp, kernel, op, padding)
        else:
            if any(op):
                raise ValueError(f"give output_shape={output_shape!r} or output_padding={op}, not both")
            spatial = _output_spatial(output_shape, rank, n, cw * p.groups, p.data_format)
            unreachable = _unreachable(p.padding, o_sp, spatial, kernel, p.stride, p.dilation, "output")
            if unreachable:
                raise ValueError(f"output_shape={tuple(output_shape)} is unreachable: {unreachable}")
        tight = tuple(
            (lo, tight_after(oi, si, dilate_dim(ki, di), ni, lo))
            for (lo, _), oi, si, ki, di, ni in zip(p.pads(spatial, kernel), o_sp, p.stride, kernel,
                                                    p.dilation, spatial)
        )
        return cls(n, cw * p.groups, c, spatial, kernel, p.stride, tight, (1,) * rank, p.dilation,
                   p.groups, 1)

    @_memo
    def for_general(
        cls, x_shape: Sequence[int], w_shape: Sequence[int], *, stride: object = 1,
        padding: object = 0, lhs_dilation: object = 1, rhs_dilation: object = 1,
        feature_group_count: object = 1, batch_group_count: object = 1,
        data_format: str = "channels_first",
    ) -> ConvGeometry:
        """Geometry of ``conv_general(x, w)``; empty outputs are allowed (as in JAX).

        Parameters
        ----------
        x_shape : (N, C, *S) or (N, *S, C)
        w_shape : (O, C_w, *K) or (*K, C_w, O); ``C_w = C / feature_group_count``, or ``C``
            with batch groups
        stride, padding, lhs_dilation, rhs_dilation, feature_group_count, batch_group_count,
        data_format : as in ``convgrad.conv_general``

        Returns
        -------
        ConvGeometry

        Examples
        --------
        >>> import convgrad
        >>> g = convgrad.ConvGeometry.for_general((4, 2, 5), (6, 2, 3), batch_group_count=2)
        >>> g.y_shape()  # batch block b meets output-channel block b
        (2, 6, 3)
        """
        x_shape, w_shape, rank = _shapes(x_shape, w_shape)
        fmt = _canon.data_format(data_format)
        n, c, spatial = _split_x(x_shape, fmt)
        o, cw, kernel = _split_w(w_shape, fmt)
        s = _canon.int_tuple("stride", stride, rank, minimum=1)
        ld = _canon.int_tuple("lhs_dilation", lhs_dilation, rank, minimum=1)
        rd = _canon.int_tuple("rhs_dilation", rhs_dilation, rank, minimum=1)
        fg = _canon.positive_int("feature_group_count", feature_group_count)
        bg = _canon.positive_int("batch_group_count", batch_group_count)
        spec = parse_padding(padding, rank)
        if spec.kind != "explicit" and any(v != 1 for v in ld):
            raise ValueError(
                f"string padding={padding!r} is not defined with lhs_dilation={ld}; give explicit pads"
            )
        if fg > 1 and bg > 1:  # checked first: the channel message below assumes one kind
            raise ValueError(f"at most one of feature_group_count={fg} and batch_group_count={bg} may be > 1")
        if bg > 1 and cw != c:  # batch groups split the batch, not the channels
            raise ValueError(
                f"x has {c} channels; with batch_group_count={bg} the filter needs all {c} input "
                f"channels, but w.shape={w_shape} has {cw}"
            )
        if c % fg:
            raise ValueError(f"feature_group_count={fg} must divide x's {c} channels")
        if bg == 1 and c // fg != cw:
            raise ValueError(
                f"x has {c} channels; with feature_group_count={fg} the filter needs "
                f"{c}/{fg} input channels, but w.shape={w_shape} has {cw}"
            )
        pads = spec.resolve([dilate_dim(m, d) for m, d in zip(spatial, ld)], kernel, s, rd)
        return cls(n, c, o, spatial, kernel, s, pads, ld, rd, fg, bg)

    @_memo
    def for_input_grad(
        cls, dy_shape: Sequence[int], w_shape: Sequence[int], input_shape: object, *,
        stride: object = 1, padding: object = 0, dilation: object = 1, groups: object = 1,
        data_format: str = "channels_first", names: tuple[tuple[str, str], ...] = (),
    ) -> ConvGeometry:
        """Geometry of the conv whose input gradient maps dy to x of ``input_shape``.

        A stride makes the input size ambiguous; a size the conv does not map to dy's is refused
        with the valid range, as ``for_transpose`` refuses an unreachable ``output_shape``.

        Parameters
        ----------
        dy_shape : (N, O, *out) or (N, *out, O)
        w_shape : (O, C / groups, *K) or (*K, C / groups, O)
        input_shape : x's shape, full or spatial only (batch from dy, channels from w and groups)
        stride, padding, dilation, groups, data_format : as in ``convgrad.conv``
        names : (core name, caller's name) pairs for the messages, e.g. ``(("dy", "grad_output"),)``

        Returns
        -------
        ConvGeometry of the forward conv of x and w

        Examples
        --------
        >>> import convgrad
        >>> g = convgrad.ConvGeometry.for_input_grad((1, 4, 3), (4, 2, 3), (8,), stride=2)
        >>> g.x_shape(), g.input_size_range()  # sizes 7 and 8 both give 3 outputs
        ((1, 2, 8), ((7, 8),))
        """
        fmt, n = _canon.data_format(data_format), _names(names)
        dy_shape = _canon.shape_tuple(f"{n['dy']}.shape", dy_shape)
        w_shape = _canon.shape_tuple(f"{n['w']}.shape", w_shape)

        def full(spatial: tuple[int, ...]) -> tuple[int, ...]:
            c = _split_w(w_shape, fmt)[1] * _canon.positive_int("groups", groups)
            return _join(dy_shape[0], c, spatial, fmt)

        shape = _given_shape(n["input_shape"], input_shape, "spatial", f"{n['w']}.shape", w_shape, dy_shape,
                             full)
        geom = cls.for_conv(shape, w_shape, stride=stride, padding=padding, dilation=dilation,
                            groups=groups, data_format=fmt, names=(("x", n["input_shape"]), ("w", n["w"])))
        why = ""
        if len(dy_shape) == len(shape) and _split_x(dy_shape, fmt)[:2] == geom.y_shape()[:2]:
            why = ": " + _unreachable(parse_padding(padding, geom.rank), _split_x(dy_shape, fmt)[2],
                                      geom.in_spatial, geom.kernel, geom.stride, geom.rhs_dilation, "input")
        return geom._check_dy(dy_shape, fmt, f"{n['input_shape']} {shape} with {n['w']}.shape {w_shape}", why,
                              n["dy"])

    @_memo
    def for_filter_grad(
        cls, x_shape: Sequence[int], dy_shape: Sequence[int], filter_shape: object, *,
        stride: object = 1, padding: object = 0, dilation: object = 1, groups: object = 1,
        data_format: str = "channels_first", names: tuple[tuple[str, str], ...] = (),
    ) -> ConvGeometry:
        """Geometry of the conv whose filter gradient maps x and dy to a filter of ``filter_shape``.

        Parameters
        ----------
        x_shape : (N, C, *S) or (N, *S, C)
        dy_shape : (N, O, *out) or (N, *out, O)
        filter_shape : w's shape, full or the kernel sizes only (channels from x, dy and groups)
        stride, padding, dilation, groups, data_format : as in ``convgrad.conv``
        names : (core name, caller's name) pairs for the messages, as in ``for_input_grad``

        Returns
        -------
        ConvGeometry of the forward conv of x and w

        Examples
        --------
        >>> import convgrad
        >>> convgrad.ConvGeometry.for_filter_grad((1, 4, 7), (1, 6, 3), (3,), stride=2, groups=2).w_shape()
        (6, 2, 3)
        """
        fmt, n = _canon.data_format(data_format), _names(names)
        x_shape = _canon.shape_tuple(f"{n['x']}.shape", x_shape)
        dy_shape = _canon.shape_tuple(f"{n['dy']}.shape", dy_shape)

        def full(kernel: tuple[int, ...]) -> tuple[int, ...]:
            g, c = _canon.positive_int("groups", groups), _split_x(x_shape, fmt)[1]
            _check_channels("x channels", c, "groups", g)
            return _join_w(_split_x(dy_shape, fmt)[1], c // g, kernel, fmt)

        shape = _given_shape(n["filter_shape"], filter_shape, "kernel", f"{n['x']}.shape", x_shape, dy_shape,
                             full)
        geom = cls.for_conv(x_shape, shape, stride=stride, padding=padding, dilation=dilation,
                            groups=groups, data_format=fmt, names=(("x", n["x"]), ("w", n["filter_shape"])))
        return geom._check_dy(dy_shape, fmt, f"{n['x']}.shape {x_shape} with {n['filter_shape']} {shape}",
                              dy=n["dy"])

    def _check_dy(self, dy_shape: tuple[int, ...], fmt: str, conv: str, why: str = "",
                  dy: str = "dy") -> ConvGeometry:
        """self, or the ValueError of a gradient whose dy (called ``dy`` by the caller) does not
        have this conv's output shape."""
        if dy_shape != self.y_shape(fmt):
            raise ValueError(f"{dy}.shape={dy_shape} does not match the output shape {self.y_shape(fmt)} "
                             f"of a conv of {conv}{why}")
        return self

    # --- derived sizes --------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return len(self.kernel)

    @cached_property  # the geometry is frozen; the planner asks for these often
    def dilated_input(self) -> tuple[int, ...]:
        """dilate_dim(n, lhs_dilation) per axis."""
        return tuple(dilate_dim(n, d) for n, d in zip(self.in_spatial, self.lhs_dilation))

    @cached_property
    def kernel_eff(self) -> tuple[int, ...]:
        """Effective kernel size (k - 1) * d + 1 per axis."""
        return tuple(dilate_dim(k, d) for k, d in zip(self.kernel, self.rhs_dilation))

    @cached_property
    def padded_input(self) -> tuple[int, ...]:
        """Dilated input size plus both pads, per axis."""
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.dilated_input, self.padding))

    @cached_property
    def out_spatial(self) -> tuple[int, ...]:
        """stride_dim(padded, k_eff, s) per axis."""
        return tuple(
            stride_dim(p, k, s) for p, k, s in zip(self.padded_input, self.kernel_eff, self.stride)
        )

    @property
    def out_batch(self) -> int:
        return self.batch // self.batch_group_count

    @property
    def filter_in_channels(self) -> int:
        """C // feature_group_count: the filter's input-channel dim."""
        return self.in_channels // self.feature_group_count

    @cached_property
    def tight_padding(self) -> Pairs:
        """Pads with the same output whose last window ends exactly on the last padded sample:
        (before, tight_after(o, s, k_eff, n_dilated, before)); samples past it get no gradient."""
        return tuple(
            (lo, tight_after(o, s, k, n, lo))
            for (lo, _), o, s, k, n in zip(
                self.padding, self.out_spatial, self.stride, self.kernel_eff, self.dilated_input
            )
        )

    @cached_property
    def tight_padded(self) -> tuple[int, ...]:
        """Size of the dilated input after the tight pads, per axis: exactly what the windows read."""
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.dilated_input, self.tight_padding))

    @cached_property
    def reach(self) -> tuple[tuple[int, int, int], ...]:
        """Per axis ``(start, stop, lead)``: the windows read only ``x[start:stop]`` of the dilated
        input (the negative parts of the tight pads crop it, to nothing where the crops meet), and
        sample ``start`` sits at ``lead = max(before, 0)`` in the padded input: an engine can
        offset its taps by ``lead`` instead of materialising the padding."""
        out = []
        for n, (lo, hi) in zip(self.dilated_input, self.tight_padding):
            start = min(max(-lo, 0), n)
            out.append((start, max(start, n + min(hi, 0)), max(lo, 0)))
        return tuple(out)

    @property
    def group_dims(self) -> tuple[int, int, int, int]:
        """(G, C/G, O/G, prod(K)) over the feature groups."""
        g = self.feature_group_count
        return g, self.in_channels // g, self.out_channels // g, math.prod(self.kernel)

    @cached_property
    def flops(self) -> int:
        """2 * N_out * O * prod(out) * (C / groups) * prod(k): multiply-adds of the forward."""
        return (
            2 * self.out_batch * self.out_channels * math.prod(self.out_spatial)
            * self.filter_in_channels * math.prod(self.kernel)
        )

    def x_shape(self, data_format: str = "channels_first") -> tuple[int, ...]:
        return _join(self.batch, self.in_channels, self.in_spatial, _canon.data_format(data_format))

    def w_shape(self, data_format: str = "channels_first") -> tuple[int, ...]:
        return _join_w(self.out_channels, self.filter_in_channels, self.kernel,
                       _canon.data_format(data_format))

    def y_shape(self, data_format: str = "channels_first") -> tuple[int, ...]:
        return _join(self.out_batch, self.out_channels, self.out_spatial, _canon.data_format(data_format))

    def input_size_range(self) -> tuple[tuple[int, int], ...]:
        """Per axis, the input sizes [lo, hi] that these explicit pads map to ``out_spatial``:
        the valid output sizes of the transposed conv (``PaddingSpec.input_size_range``)."""
        if any(ld != 1 for ld in self.lhs_dilation):
            raise ValueError("input_size_range needs lhs_dilation == 1")
        return PaddingSpec("explicit", self.padding).input_size_range(
            self.out_spatial, self.kernel, self.stride, self.rhs_dilation)

    # --- the transposition rules (see _transpose) -------------------------------------------------
    @property
    def input_grad_padding(self) -> Pairs:
        """before = k_eff - 1 - pad_before; after = n_dil + k_eff - 1 - o_dil - before."""
        out = []
        for (lo, _), n, k, o, s in zip(
            self.padding, self.dilated_input, self.kernel_eff, self.out_spatial, self.stride
        ):
            before = k - 1 - lo
            out.append((before, n + k - 1 - dilate_dim(o, s) - before))
        return tuple(out)

    @property
    def filter_grad_padding(self) -> Pairs:
        """before = pad_before; after = o_dil - n_dil + k_eff - 1 - pad_before."""
        return tuple(
            (lo, dilate_dim(o, s) - n + k - 1 - lo)
            for (lo, _), n, k, o, s in zip(
                self.padding, self.dilated_input, self.kernel_eff, self.out_spatial, self.stride
            )
        )

    def input_grad_geometry(self) -> ConvGeometry:
        """The conv that computes dx from dy (``_transpose.input_grad``)."""
        return _transpose.input_grad(self).geometry

    def filter_grad_geometry(self) -> ConvGeometry:
        """The conv that computes dw from x and dy (``_transpose.filter_grad``)."""
        return _transpose.filter_grad(self).geometry

    # --- blocks: one piece of the conv along a spatial axis (convgrad.dask) ----------------------
    # A blocked conv splits each spatial axis of the output (forward, filter gradient) or of the
    # input (input gradient, transposed conv) into ranges; each block is itself a conv of this
    # kind, on a slice of the other side and with explicit pads of its own (negative: a crop), so
    # the blocks reproduce the whole array's windows exactly. Output j reads the padded input
    # [j * s, j * s + k_eff), i.e. x[j * s - before, j * s - before + k_eff).

    def _axis(self, axis: int) -> tuple[int, int, int, int, int]:
        """(n, before, k_eff, s, o) of spatial ``axis``; blocks need lhs_dilation == 1."""
        if self.lhs_dilation[axis] != 1:
            raise ValueError(f"blocks need lhs_dilation == 1, got {self.lhs_dilation}")
        return (self.in_spatial[axis], self.padding[axis][0], self.kernel_eff[axis], self.stride[axis],
                self.out_spatial[axis])

    def anchor(self, axis: int) -> int:
        """clip(before, 0, k_eff - 1): the offset in a window of the input sample that owns it
        (the centre for 'same', the start for 'valid', the end for 'full')."""
        _, lo, k, _, _ = self._axis(axis)
        return min(max(lo, 0), k - 1)

    def halos(self, axis: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((x_before, x_after), (dy_before, dy_after)) of spatial ``axis``: how far a block's
        windows reach past the x (or dy) samples it owns. x: (a, max(0, k_eff - s - a));
        dy: (floor((k_eff - 1 - a) / s), ceil(a / s)), with ``a = anchor(axis)``."""
        _, _, k, s, _ = self._axis(axis)
        a = self.anchor(axis)
        return (a, max(0, k - s - a)), ((k - 1 - a) // s, -(-a // s))

    def forward_block(self, axis: int, j0: int, j1: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The x range ``(start, stop)`` and the pads ``(before, after)`` of the conv that gives
        outputs ``[j0, j1)`` of spatial ``axis``: start = clip(j0 * s - before, 0, n - 1) and
        stop = clip((j1 - 1) * s - before + k_eff, start + 1, n); pads = the rest of the windows'
        span (negative where the one sample kept lies outside it)."""
        n, lo, k, s, o = self._axis(axis)
        if not 0 <= j0 < j1 <= o:
            raise ValueError(f"output block [{j0}, {j1}) is not inside [0, {o}) in {spatial_dim(axis)}")
        first, end = j0 * s - lo, (j1 - 1) * s - lo + k  # the windows' span in x's coordinates
        start = min(max(first, 0), n - 1)  # at least one sample: an all-padding block crops it
        stop = min(max(end, start + 1), n)
        return (start, stop), (start - first, end - stop)

    def input_grad_block(self, axis: int, p0: int, p1: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The dy range ``(j0, j1)`` that reaches x samples ``[p0, p1)`` of spatial ``axis``, and
        the pads ``(before, after)`` of the conv of x[p0:p1] whose outputs are dy[j0:j1]:
        j0 = max(0, ceil((p0 + before - k_eff + 1) / s)), j1 = min(o, floor((p1 - 1 + before) / s) + 1);
        j0 >= j1 where no window reaches the block (its gradient is zero)."""
        n, lo, k, s, o = self._axis(axis)
        if not 0 <= p0 < p1 <= n:
            raise ValueError(f"input block [{p0}, {p1}) is not inside [0, {n}) in {spatial_dim(axis)}")
        j0 = max(0, -(-(p0 + lo - k + 1) // s))
        j1 = min(o, (p1 - 1 + lo) // s + 1)
        return (j0, j1), (p0 + lo - j0 * s, (j1 - 1) * s - lo + k - p1)

    def output_bounds(self, axis: int, x_bounds: Sequence[int]) -> tuple[int, ...]:
        """The output block boundaries of spatial ``axis`` for x chunk boundaries ``x_bounds``
        (0, ..., n): x chunk i owns the outputs whose anchor ``j * s - before + a`` lies in it,
        from ``ceil((b_i + before - a) / s)`` (clipped to [0, o]; anchors in the pads belong to
        the first and last chunks). Chunks shorter than the larger
        x halo are merged into a neighbour first, and chunks that own no output vanish."""
        n, lo, _, s, o = self._axis(axis)
        a = self.anchor(axis)
        kept = _merged(x_bounds, n, max(1, *self.halos(axis)[0]))
        return _distinct((0, *(min(max(-(-(b + lo - a) // s), 0), o) for b in kept[1:-1]), o))

    def input_bounds(self, axis: int, y_bounds: Sequence[int]) -> tuple[int, ...]:
        """The x block boundaries of spatial ``axis`` for dy chunk boundaries ``y_bounds``
        (0, ..., o): the inverse of ``output_bounds``, ``b = J * s - before + a`` clipped to
        [0, n]. dy chunks shorter than the larger dy halo are merged into a neighbour first."""
        n, lo, _, s, o = self._axis(axis)
        a = self.anchor(axis)
        kept = _merged(y_bounds, o, max(1, *self.halos(axis)[1]))
        return _distinct((0, *(min(max(j * s - lo + a, 0), n) for j in kept[1:-1]), n))

    def describe(self) -> str:
        """A few lines for people: shapes, pads, output."""
        return (
            f"x (N={self.batch}, C={self.in_channels}, spatial={self.in_spatial}) * "
            f"w (O={self.out_channels}, C/groups={self.filter_in_channels}, kernel={self.kernel})\n"
            f"stride={self.stride} padding={self.padding} lhs_dilation={self.lhs_dilation} "
            f"rhs_dilation={self.rhs_dilation} groups={self.feature_group_count} "
            f"batch_groups={self.batch_group_count}\n"
            f"-> y (N={self.out_batch}, O={self.out_channels}, spatial={self.out_spatial}), "
            f"{self.flops} flops"
        )


def _merged(bounds: Sequence[int], size: int, least: int) -> tuple[int, ...]:
    """Boundaries 0 = b_0 < ... < b_m = ``size`` with interior ones dropped until every piece but
    a lone one is at least ``least`` long."""
    bounds = tuple(bounds)
    if not bounds or bounds[0] != 0 or bounds[-1] != size or any(b > c for b, c in
                                                                  itertools.pairwise(bounds)):
        raise ValueError(f"chunk boundaries {bounds} must rise from 0 to {size}")
    kept = [0]
    for b in bounds[1:-1]:
        if b - kept[-1] >= least and size - b >= least:
            kept.append(b)
    return (*kept, size)


def _distinct(values: object) -> tuple[int, ...]:
    """The rising values without repeats (boundaries of blocks that own nothing collapse)."""
    out: list[int] = []
    for v in values:
        if not out or v > out[-1]:
            out.append(v)
    return tuple(out)


def _shapes(x_shape: object, w_shape: object, names: dict[str, str] | None = None
            ) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Both shapes as tuples of ints, and their spatial rank; ``names`` as ``_names``."""
    n = names or _names(())
    x, w = n["x"], n["w"]
    x_shape = _canon.shape_tuple(f"{x}.shape", x_shape)
    w_shape = _canon.shape_tuple(f"{w}.shape", w_shape)
    if len(w_shape) < 3:
        raise ValueError(f"{w} must have at least 3 dims (out, in, *kernel), got {w}.shape={w_shape}")
    if len(x_shape) != len(w_shape):
        raise ValueError(
            f"{x} and {w} must have the same number of dims: {x}.shape={x_shape} "
            f"({len(x_shape)} dims), {w}.shape={w_shape} ({len(w_shape)} dims)"
        )
    return x_shape, w_shape, len(w_shape) - 2


def _check_kernel(kernel: tuple[int, ...], w_shape: tuple[int, ...], w: str = "w") -> None:
    if any(k < 1 for k in kernel):
        raise ValueError(f"{w} has a zero-size kernel {kernel} ({w}.shape={w_shape})")


def _transposed_size(p: ConvParams, o_sp: Sequence[int], kernel: Sequence[int],
                     output_padding: tuple[int, ...], padding: object) -> tuple[int, ...]:
    """conv_transpose's output size without output_shape: ``n * s`` for SAME, else
    ``transpose_size`` with the explicit pads and output_padding (< max(stride, dilation))."""
    for i, (op, s, d) in enumerate(zip(output_padding, p.stride, p.dilation)):
        if op >= max(s, d):
            raise ValueError(
                f"output_padding={output_padding} must be smaller than max(stride, dilation) in "
                f"every dim; {spatial_dim(i)}: output_padding {op}, stride {s}, dilation {d}"
            )
    if p.padding.kind in ("same", "same_lower"):
        if any(output_padding):
            raise ValueError(
                f"output_padding={output_padding} needs explicit padding; with padding={padding!r} "
                "choose the size with output_shape instead"
            )
        return tuple(oi * si for oi, si in zip(o_sp, p.stride))
    spatial = tuple(
        transpose_size(oi, dilate_dim(ki, di), si, lo, hi, op)
        for oi, ki, di, si, (lo, hi), op in zip(o_sp, kernel, p.dilation, p.stride,
                                                p.pads((0,) * len(kernel), kernel), output_padding)
    )
    if any(v < 0 for v in spatial):
        raise ValueError(f"padding={padding!r} crops more than the transposed output: sizes {spatial}")
    return spatial


def _split_x(shape: tuple[int, ...], fmt: str) -> tuple[int, int, tuple[int, ...]]:
    """(N, C, spatial) of an x (or y) shape in ``fmt``."""
    return (shape[0], shape[1], shape[2:]) if fmt == "channels_first" else (shape[0], shape[-1], shape[1:-1])


def _split_w(shape: tuple[int, ...], fmt: str) -> tuple[int, int, tuple[int, ...]]:
    """(O, C / groups, kernel) of a filter shape in ``fmt``."""
    return (shape[0], shape[1], shape[2:]) if fmt == "channels_first" else (shape[-1], shape[-2], shape[:-2])


def _join(n: int, c: int, spatial: Sequence[int], fmt: str) -> tuple[int, ...]:
    """The inverse of ``_split_x``: a full x (or y) shape in ``fmt``."""
    return (n, c, *spatial) if fmt == "channels_first" else (n, *spatial, c)


def _join_w(o: int, cw: int, kernel: Sequence[int], fmt: str) -> tuple[int, ...]:
    """The inverse of ``_split_w``: a full filter shape in ``fmt``."""
    return (o, cw, *kernel) if fmt == "channels_first" else (*kernel, cw, o)


def _unreachable(spec: PaddingSpec, o_sp: Sequence[int], sizes: Sequence[int], kernel: Sequence[int],
                 s: Sequence[int], d: Sequence[int], what: str) -> str:
    """Why the input sizes ``sizes`` do not all map to ``o_sp`` ('' when they do): the one
    statement of the valid range, for conv_transpose's output_shape and conv_input_grad's
    input_shape alike."""
    ranges = spec.input_size_range(o_sp, kernel, s, d)
    for i, (size, (lo, hi)) in enumerate(zip(sizes, ranges)):
        if not lo <= size <= hi:
            maps = f"maps sizes {lo}..{hi}" if lo <= hi else "maps no size"
            return (f"in {spatial_dim(i)} the forward conv {maps} to {o_sp[i]}, not {size}; valid "
                    f"spatial {what} sizes are {[(a, b) for a, b in ranges]}")
    return ""


def _names(names: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The core's names of a gradient's operands, renamed as the caller (a front) spells them."""
    return {"x": "x", "w": "w", "dy": "dy", "input_shape": "input_shape", "filter_shape": "filter_shape",
            **dict(names)}


def _given_shape(name: str, given: object, part: str, ref_name: str, ref: tuple[int, ...],
                 dy_shape: tuple[int, ...], complete: Callable[[tuple[int, ...]], tuple[int, ...]]
                 ) -> tuple[int, ...]:
    """A gradient's result shape ``given`` in full (``ref``'s rank), or its ``part`` only, which
    ``complete`` makes full."""
    shape = _canon.shape_tuple(name, given)
    if len(ref) >= 3 and len(shape) == len(ref) - 2 and len(dy_shape) == len(ref):
        return complete(shape)
    if len(shape) != len(ref):
        raise ValueError(f"{name}={shape} must have {len(ref)} (full) or {len(ref) - 2} ({part}) "
                         f"entries for {ref_name}={ref}")
    return shape


def _output_spatial(
    output_shape: object, rank: int, n: int, c_out: int, fmt: str
) -> tuple[int, ...]:
    shape = _canon.shape_tuple("output_shape", output_shape)
    if len(shape) == rank:
        return shape
    if len(shape) == rank + 2:
        batch, chan, spatial = _split_x(shape, fmt)
        if batch != n or chan != c_out:
            raise ValueError(f"output_shape={shape} does not match batch {n} and output channels {c_out}")
        return spatial
    raise ValueError(f"output_shape must have {rank} (spatial) or {rank + 2} (full) entries, got {shape}")

