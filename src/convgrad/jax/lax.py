"""``jax.lax`` convolutions over NumPy: the same names, arguments, layouts and numbers.

JAX's shape model: per spatial dim the input is dilated to ``(n - 1) * lhs_dilation + 1``, padded
by ``(low, high)`` (negative crops), and windows of ``(k - 1) * rhs_dilation + 1`` taps advance by
the window stride, giving ``max(0, (padded - k_eff) // stride + 1)`` outputs: a kernel larger
than the padded input gives an empty output, not an error.

The gradients (``op.vjp``) are JAX's transposition rules, as ``convgrad.conv_general_vjp`` runs
them (``convgrad._transpose``), each a convolution: the input gradient convolves ``dy`` with the
flipped kernel (stride and input dilation swapped, feature or batch groups folded into the
kernel's output channels); the filter gradient convolves ``lhs`` (batch and channels swapped)
with ``dy`` as the kernel, feature groups becoming batch groups and back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .._budget import contiguous, workspace_limit
from .._canon import MAX_NDIM, as_int, bounded_list, positive_int
from .._dtypes import as_array, is_bfloat16
from .._formulas import dilate_dim
from .._fronts.kit import CoreCall, int_seq, op_with_vjp
from .._geometry import ConvGeometry

__all__ = [
    "ConvDimensionNumbers",
    "conv",
    "conv_dimension_numbers",
    "conv_general_dilated",
    "conv_transpose",
    "conv_with_general_padding",
]
__dir__ = __all__.copy  # dir() lists the API only

_STRING_PADDINGS = {"VALID": "valid", "SAME": "same", "SAME_LOWER": "same_lower"}


class ConvDimensionNumbers(NamedTuple):
    """Axis permutations: ``lhs_spec`` = (batch, feature, *spatial) axes of lhs, ``rhs_spec`` =
    (out feature, in feature, *spatial) axes of rhs, ``out_spec`` = (batch, feature, *spatial)
    axes of the output. Spatial dims pair up in order; ``window_strides[i]`` is for the i-th."""

    lhs_spec: tuple[int, ...]
    rhs_spec: tuple[int, ...]
    out_spec: tuple[int, ...]


def transpose_padding(k_eff: int, s: int, padding: object) -> tuple[int, int]:
    """JAX's pads of the lhs-dilated conv that transposes a forward conv with ``padding``.

    'SAME': total k_eff + s - 2, low = k_eff - 1 if s > k_eff - 1 else ceil(total / 2);
    'VALID': total k_eff + s - 2 + max(k_eff - s, 0), low = k_eff - 1;
    a forward pair (lo, hi): (k_eff - 1 - lo, k_eff - 1 - hi).
    """
    kind = padding if isinstance(padding, str) else None  # an array would compare elementwise
    if kind == "SAME":
        total = k_eff + s - 2
        low = k_eff - 1 if s > k_eff - 1 else -(-total // 2)
    elif kind == "VALID":
        total = k_eff + s - 2 + max(k_eff - s, 0)
        low = k_eff - 1
    elif not isinstance(padding, (str, bytes)) and hasattr(padding, "__len__") and len(padding) == 2:
        lo, hi = (as_int("padding", p) for p in padding)
        low, total = k_eff - 1 - lo, 2 * (k_eff - 1) - lo - hi
    else:
        raise ValueError(f"Invalid padding mode: {padding!r}")
    return low, total - low


# --- dimension numbers --------------------------------------------------------------------------
def _spec_permutations(specs: Sequence[str]) -> tuple[tuple[int, ...], ...]:
    """Layout strings -> permutations; spatial axes of lhs and out follow their order in rhs."""
    rhs_spec = specs[1]
    charpairs = (("N", "C"), ("O", "I"), ("N", "C"))
    for i, (a, b) in enumerate(charpairs):
        if not specs[i].count(a) == specs[i].count(b) == 1:
            raise TypeError(
                f"convolution dimension_numbers[{i}] must contain the characters '{a}' and '{b}' "
                f"exactly once, got {specs[i]}."
            )
        if len(specs[i]) != len(set(specs[i])):
            raise TypeError(
                f"convolution dimension_numbers[{i}] cannot have duplicate characters, got {specs[i]}."
            )
    spatial_sets = [set(spec) - set(pair) for spec, pair in zip(specs, charpairs)]
    if not spatial_sets[0] == spatial_sets[1] == spatial_sets[2]:
        raise TypeError(
            f"convolution dimension_numbers elements must each have the same set of spatial "
            f"characters, got {tuple(specs)}."
        )

    def perm(spec: str, pair: tuple[str, str]) -> tuple[int, ...]:
        spatial = [i for i, c in enumerate(spec) if c not in pair]
        if spec is not rhs_spec:
            spatial.sort(key=lambda i: rhs_spec.index(spec[i]))
        return (spec.index(pair[0]), spec.index(pair[1]), *spatial)

    return tuple(perm(spec, pair) for spec, pair in zip(specs, charpairs))


def conv_dimension_numbers(
    lhs_shape: Sequence[int], rhs_shape: Sequence[int], dimension_numbers: object
) -> ConvDimensionNumbers:
    """``dimension_numbers`` (None, three layout strings such as ``('NHWC', 'HWIO', 'NHWC')``, or a
    ``ConvDimensionNumbers`` of permutations, JAX's included) as a ``ConvDimensionNumbers``.

    None means ``('NCHW', 'OIHW', 'NCHW')`` in any rank (identity permutations).
    """
    ndim = len(lhs_shape)
    if getattr(dimension_numbers, "_fields", None) == ConvDimensionNumbers._fields:  # JAX's too
        dn: Any = dimension_numbers
        specs = tuple(tuple(as_int("dimension_numbers", v) for v in s) for s in dn)
        for name, spec in zip(ConvDimensionNumbers._fields, specs):
            if sorted(spec) != list(range(ndim)):
                raise ValueError(
                    f"dimension_numbers.{name}={spec} must be a permutation of range({ndim})"
                )
        return ConvDimensionNumbers(*specs)
    if len(lhs_shape) != len(rhs_shape):
        raise TypeError(
            f"convolution requires lhs and rhs ndim to be equal, got {len(lhs_shape)} and {len(rhs_shape)}."
        )
    if dimension_numbers is None:
        iota = tuple(range(ndim))
        return ConvDimensionNumbers(iota, iota, iota)
    if isinstance(dimension_numbers, (list, tuple)):
        if len(dimension_numbers) != 3:
            raise TypeError(
                f"convolution dimension_numbers list/tuple must be length 3, got {len(dimension_numbers)}."
            )
        if not all(isinstance(s, str) for s in dimension_numbers):
            raise TypeError(
                "convolution dimension_numbers elements must be strings, got "
                f"{tuple(type(s) for s in dimension_numbers)}."
            )
        for i, s in enumerate(dimension_numbers):
            if len(s) != ndim:
                raise TypeError(
                    f"convolution dimension_numbers[{i}] must have len equal to the ndim of lhs and "
                    f"rhs, got {len(s)} for lhs and rhs shapes {tuple(lhs_shape)} and {tuple(rhs_shape)}."
                )
        return ConvDimensionNumbers(*_spec_permutations(dimension_numbers))
    raise TypeError(
        f"convolution dimension_numbers must be tuple/list or None, got {type(dimension_numbers)}."
    )


# --- canonicalisation ---------------------------------------------------------------------------
_INT_SEQ_MESSAGES = {
    "type": "{name} must be a sequence of {count} ints, got {value!r}",
    "size": "{name}={value!r} must have one entry per spatial dim ({count}), got {length}",
    "minimum": "{name} must be positive in every dim, got {value!r}",
}


def _int_seq(name: str, value: object, rank: int, *, default: int | None = None) -> tuple[int, ...]:
    return int_seq(name, value, rank, minimum=1, messages=_INT_SEQ_MESSAGES, default=default)


def _result_dtype(dtype: np.dtype, preferred: object) -> np.dtype:
    """The output dtype: the operands' dtype, or ``preferred_element_type`` checked as JAX does."""
    if preferred is None:
        return dtype
    pref = np.dtype(preferred)
    kind, pref_kind = ("f" if is_bfloat16(d) else d.kind for d in (dtype, pref))  # jnp.bfloat16 floats
    if pref_kind not in "iuf":
        raise TypeError(f"preferred_element_type={pref} is not supported; use an integer or float dtype")
    if not (kind in "iu" and pref_kind == "f"):
        if (kind in "iu") != (pref_kind in "iu"):
            raise TypeError(
                "Input type is incompatible with `preferred_element_type`. The compatible "
                "combinations of (input_type, preferred_element_type) are (integral, integral), "
                f"(integral, floating), (floating, floating); got ({dtype}, {pref})."
            )
        if kind == "i" and pref_kind != "i":
            raise TypeError("`preferred_element_type` must have the same signedness as the original type.")
    if pref.itemsize < dtype.itemsize:
        raise TypeError(
            f"`preferred_element_type` must not be narrower than the original type: {pref} < {dtype}."
        )
    return pref


@dataclass(frozen=True)
class _Spec:
    """JAX's layout ``spec`` (an axis permutation) <-> the core's (N, C, *S) or (O, I, *K);
    ``squeeze``: no spatial dims (the core computes with one of size 1); ``flip`` (transpose_kernel:
    rhs was flipped and its I and O axes swapped; the axes to flip, the pair to swap): flipping and
    swapping is its own inverse and adjoint, so d_rhs goes back the same way."""

    spec: tuple[int, ...]
    squeeze: bool
    flip: tuple[tuple[slice, ...], tuple[int, int]] | None = None

    def to_core(self, a: np.ndarray) -> np.ndarray:
        return a.transpose(self.spec)[..., None] if self.squeeze else a.transpose(self.spec)

    def from_core(self, a: np.ndarray) -> np.ndarray:
        a = (a[..., 0] if self.squeeze else a).transpose(np.argsort(self.spec))
        return np.ascontiguousarray(a if self.flip is None else a[self.flip[0]].swapaxes(*self.flip[1]))


def _arrays(lhs: object, rhs: object) -> tuple[np.ndarray, np.ndarray]:
    lhs_a, rhs_a = as_array("lhs", lhs), as_array("rhs", rhs)
    if lhs_a.ndim != rhs_a.ndim or lhs_a.ndim < 2:
        raise ValueError(
            f"lhs and rhs must have the same number of dims (at least 2), got lhs.shape={lhs_a.shape}, "
            f"rhs.shape={rhs_a.shape}"
        )
    return lhs_a, rhs_a


def _check_groups(lhs_nc: tuple[int, ...], rhs_oi: tuple[int, ...], fg: int, bg: int) -> None:
    """JAX's checks of feature and batch groups against lhs (N, C) and rhs (O, I)."""
    (n, c), (o, i) = lhs_nc, rhs_oi
    if c % fg:
        raise ValueError(f"feature_group_count={fg} must divide the lhs feature dimension size {c}")
    if c // fg != i:
        raise ValueError(
            f"lhs feature dimension size divided by feature_group_count must equal the rhs input "
            f"feature dimension size, but {c} // {fg} != {i}"
        )
    if o % fg:
        raise ValueError(
            f"rhs output feature dimension size {o} is not a multiple of feature_group_count={fg}"
        )
    if n % bg:
        raise ValueError(f"batch_group_count={bg} must divide the lhs batch dimension size {n}")
    if o % bg:
        raise ValueError(f"rhs output feature dimension size {o} is not a multiple of batch_group_count={bg}")
    if fg > 1 and bg > 1:
        raise ValueError(
            f"at most one of batch_group_count={bg} and feature_group_count={fg} may be > 1"
        )


def _padding(padding: object, spatial: tuple[int, ...], ld: tuple[int, ...]) -> object:
    """'VALID' / 'SAME' / 'SAME_LOWER' (any case) as the core's string, or (low, high) pairs
    checked as JAX does; ``spatial`` is lhs's before its dilation ``ld``."""
    rank = len(spatial)
    if isinstance(padding, str):
        kind = _STRING_PADDINGS.get(padding.upper())
        if kind is None:
            raise ValueError(
                f"Unrecognized padding type: expected 'VALID', 'SAME', or 'SAME_LOWER', got {padding}."
            )
        if any(v != 1 for v in ld):
            raise ValueError(
                "String padding is not implemented for transposed convolution using this op. "
                "Please either exactly specify the required padding or use conv_transpose."
            )
        return kind
    if isinstance(padding, bytes) or not hasattr(padding, "__iter__"):
        raise ValueError(f"padding must be a string or a sequence of (low, high) pairs, got {padding!r}")
    items = bounded_list("padding", padding, MAX_NDIM)
    if len(items) != rank or any(
        isinstance(p, (str, bytes)) or not hasattr(p, "__len__") or len(p) != 2 for p in items
    ):
        raise ValueError(
            f"padding must be a string or {rank} (low, high) integer pairs, got {padding!r}"
        )
    pads = tuple((as_int("padding", lo), as_int("padding", hi)) for lo, hi in items)
    for dim, (n_i, (lo, hi), ldi) in enumerate(zip(spatial, pads, ld)):
        if dilate_dim(n_i, ldi) + lo + hi < 0:
            raise ValueError(
                f"Negative padding is larger than the size of the corresponding dimension: "
                f"padding {(lo, hi)} for the dilated lhs size {dilate_dim(n_i, ldi)} in spatial dim {dim}"
            )
    return pads


# What jax.lax.canonicalize_precision accepts: Precision's string aliases, and the names of
# DotAlgorithmPreset (which match case exactly: "HIGHEST" is neither).
_PRECISION_STRINGS = ("highest", "float32", "high", "bfloat16_3x", "tensorfloat32", "default", "bfloat16",
                      "fastest")
_PRESET_NAMES = ("DEFAULT", "ANY_F8_ANY_F8_F32", "ANY_F8_ANY_F8_F32_FAST_ACCUM", "ANY_F8_ANY_F8_ANY",
                 "ANY_F8_ANY_F8_ANY_FAST_ACCUM", "F16_F16_F16", "F16_F16_F32", "BF16_BF16_BF16",
                 "BF16_BF16_F32", "BF16_BF16_F32_X3", "BF16_BF16_F32_X6", "BF16_BF16_F32_X9",
                 "TF32_TF32_F32", "TF32_TF32_F32_X3", "F32_F32_F32", "F64_F64_F64")


def _is_jax(value: object, *kinds: str) -> bool:
    """value is an instance of one of jax.lax's ``kinds`` (checked by name: jax is optional)."""
    return type(value).__name__ in kinds and type(value).__module__.startswith("jax")


def _check_precision(precision: object) -> None:
    """JAX's rules for ``precision``, which only picks a backend accumulation: checked, then
    ignored (NumPy computes in the result dtype)."""
    pair = isinstance(precision, (list, tuple)) and len(precision) == 2
    if (precision is None or _is_jax(precision, "Precision", "DotAlgorithm", "DotAlgorithmPreset")
            or (isinstance(precision, str) and precision in _PRECISION_STRINGS + _PRESET_NAMES)
            or (pair and all(_is_jax(p, "Precision") for p in precision))
            or (pair and all(isinstance(p, str) and p in _PRECISION_STRINGS for p in precision))):
        return
    raise ValueError(
        "Precision argument must be one of:\n- None,\n"
        f"- a string in {[*_PRECISION_STRINGS, None]},\n- a lax.Precision value,\n"
        "- a tuple of two lax.Precision values or strings,\n"
        "- a lax.DotAlgorithmPreset or the name of one of these presets, or\n"
        f"- a lax.DotAlgorithm value;\nbut got {precision}."
    )


def _resolve(
    lhs: object, rhs: object, window_strides: object, padding: object, lhs_dilation: object,
    rhs_dilation: object, dimension_numbers: object, feature_group_count: object,
    batch_group_count: object, precision: object, preferred_element_type: object,
) -> CoreCall:
    """Check everything as JAX does; the conv on canonical views of lhs and rhs."""
    lhs_a, rhs_a = _arrays(lhs, rhs)
    if lhs_a.dtype != rhs_a.dtype:
        raise TypeError(
            "lax.conv_general_dilated requires arguments to have the same dtypes, got "
            f"{lhs_a.dtype}, {rhs_a.dtype}."
        )
    _check_precision(precision)
    out_dtype = _result_dtype(lhs_a.dtype, preferred_element_type)
    dnums = conv_dimension_numbers(lhs_a.shape, rhs_a.shape, dimension_numbers)
    rank, squeeze = lhs_a.ndim - 2, lhs_a.ndim == 2
    lhs, rhs, out = (_Spec(spec, squeeze) for spec in dnums)
    # Float results are computed in their own dtype; integer ones exactly (int64 in the core), then wrapped.
    comp = out_dtype if out_dtype.kind == "f" else lhs_a.dtype
    # A cast copies (at full size for a broadcast view): budgeted before it is made.
    lhs_c, rhs_c = (a if a.dtype == comp else contiguous(name, a, comp, workspace_limit())
                    for name, a in (("lhs", lhs.to_core(lhs_a)), ("rhs", rhs.to_core(rhs_a))))
    strides = _int_seq("window_strides", window_strides, rank)
    ld = _int_seq("lhs_dilation", lhs_dilation, rank, default=1)
    rd = _int_seq("rhs_dilation", rhs_dilation, rank, default=1)
    fg = positive_int("feature_group_count", feature_group_count)
    bg = positive_int("batch_group_count", batch_group_count)
    _check_groups(lhs_c.shape[:2], rhs_c.shape[:2], fg, bg)
    kernel = rhs_c.shape[2:rank + 2]
    if 0 in kernel:
        raise ValueError(f"the window (rhs spatial dims {kernel}) must have positive sizes")
    pads = _padding(padding, lhs_c.shape[2:rank + 2], ld)
    if squeeze:
        strides, pads, ld, rd = (1,), ((0, 0),), (1,), (1,)
    geom = ConvGeometry.for_general(lhs_c.shape, rhs_c.shape, stride=strides, padding=pads, lhs_dilation=ld,
                                    rhs_dilation=rd, feature_group_count=fg, batch_group_count=bg)
    # jax.vjp of a complex conv is the plain transpose (no conjugation in JAX's transpose rules).
    return CoreCall(geom, "y", {"x": lhs_c, "w": rhs_c}, out_dtype, layout=lhs, filt=rhs, out=out,
                    grad_dtype=lhs_a.dtype, convention="transpose")


# --- public ops ---------------------------------------------------------------------------------
@op_with_vjp
def conv_general_dilated(
    lhs: Any, rhs: Any, window_strides: Sequence[int], padding: Any,
    lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None, feature_group_count: int = 1, batch_group_count: int = 1,
    precision: Any = None, preferred_element_type: Any = None,
) -> CoreCall:
    """General dilated convolution (cross-correlation), as ``jax.lax.conv_general_dilated``, with
    the module's shape model.

    Parameters
    ----------
    lhs : rank n + 2 array, (N, C, *S) in the layout of ``dimension_numbers[0]``
    rhs : rank n + 2 array, (O, C / feature_group_count, *K) in the layout of ``dimension_numbers[1]``
    window_strides : n ints
    padding : 'SAME', 'SAME_LOWER', 'VALID' (any case) or n (low, high) pairs
    lhs_dilation, rhs_dilation : n ints or None
    dimension_numbers : None (``('NCHW', 'OIHW', 'NCHW')``), three layout strings such as
        ``('NHWC', 'HWIO', 'NHWC')``, or a ``ConvDimensionNumbers`` of permutations
    feature_group_count, batch_group_count : int
    precision : accepted and ignored (NumPy computes in the result dtype)
    preferred_element_type : dtype of the result (and of the accumulation), or None

    Returns
    -------
    out : (N / batch_group_count, O, *out) in the layout of ``dimension_numbers[2]``; the dtype
        of lhs and rhs (which must match), or ``preferred_element_type``. Integers wrap as in JAX.

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad.jax import lax
    >>> lax.conv_general_dilated(np.arange(4.0).reshape(1, 1, 4), np.ones((1, 1, 2)), (1,), [(1, -1)])
    array([[[0., 1., 3.]]])
    """
    return _resolve(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type,
    )


@op_with_vjp
def conv(
    lhs: Any, rhs: Any, window_strides: Sequence[int], padding: Any, precision: Any = None,
    preferred_element_type: Any = None,
) -> CoreCall:
    """``jax.lax.conv``: ``conv_general_dilated`` in the default layouts ``('NCHW', 'OIHW', 'NCHW')``,
    ``padding`` 'SAME' (``ceil(n / stride)`` outputs, odd pad at the end) or 'VALID'."""
    return _resolve(lhs, rhs, window_strides, padding, None, None, None, 1, 1, precision,
                    preferred_element_type)


@op_with_vjp
def conv_with_general_padding(
    lhs: Any, rhs: Any, window_strides: Sequence[int], padding: Any,
    lhs_dilation: Sequence[int] | None, rhs_dilation: Sequence[int] | None, precision: Any = None,
    preferred_element_type: Any = None,
) -> CoreCall:
    """``jax.lax.conv_with_general_padding``: default layouts, explicit pads and both dilations."""
    return _resolve(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, None, 1, 1,
                    precision, preferred_element_type)


_TRANSPOSE_DEFAULT_LAYOUTS = {
    2: ("NC", "IO", "NC"),
    3: ("NHC", "HIO", "NHC"),
    4: ("NHWC", "HWIO", "NHWC"),
    5: ("NHWDC", "HWDIO", "NHWDC"),
}


def _conv_transpose(
    lhs: Any, rhs: Any, strides: Sequence[int], padding: Any, rhs_dilation: Sequence[int] | None,
    dimension_numbers: Any, transpose_kernel: bool, precision: Any, preferred_element_type: Any,
    use_consistent_padding: bool,
) -> CoreCall:
    """The conv_general_dilated call JAX makes."""
    lhs_a, rhs_a = _arrays(lhs, rhs)
    if dimension_numbers is None:
        if lhs_a.ndim not in _TRANSPOSE_DEFAULT_LAYOUTS:
            raise ValueError("No 4+ dimensional dimension_number defaults.")
        dimension_numbers = _TRANSPOSE_DEFAULT_LAYOUTS[lhs_a.ndim]
    dn = conv_dimension_numbers(lhs_a.shape, rhs_a.shape, dimension_numbers)
    rank = lhs_a.ndim - 2
    s = _int_seq("strides", strides, rank)
    rd = _int_seq("rhs_dilation", rhs_dilation, rank, default=1)
    kernel = [rhs_a.shape[a] for a in dn.rhs_spec[2:]]
    if use_consistent_padding or (isinstance(padding, str) and padding in ("SAME", "VALID")):
        per_dim = [padding] * rank if isinstance(padding, str) else bounded_list("padding", padding, MAX_NDIM)
        if len(per_dim) != rank:
            raise ValueError(f"padding={padding!r} must have one (low, high) pair per spatial dim ({rank})")
        pads: Any = tuple(
            transpose_padding(dilate_dim(k, d), si, p) for k, d, si, p in zip(kernel, rd, s, per_dim)
        )
    else:
        pads = padding
    flip = [slice(None)] * rhs_a.ndim
    for a in dn.rhs_spec[2:]:
        flip[a] = slice(None, None, -1)
    swap = (dn.rhs_spec[0], dn.rhs_spec[1])
    if transpose_kernel:
        rhs_a = rhs_a[tuple(flip)].swapaxes(*swap)
    conv = _resolve(lhs_a, rhs_a, (1,) * rank, pads, s, rd, dn, 1, 1, precision, preferred_element_type)
    if not transpose_kernel:
        return conv
    return dataclasses.replace(conv, filt=dataclasses.replace(conv.filt, flip=(tuple(flip), swap)))


@op_with_vjp
def conv_transpose(
    lhs: Any, rhs: Any, strides: Sequence[int], padding: Any,
    rhs_dilation: Sequence[int] | None = None, dimension_numbers: Any = None,
    transpose_kernel: bool = False, precision: Any = None, preferred_element_type: Any = None,
    use_consistent_padding: bool = False,
) -> CoreCall:
    """``jax.lax.conv_transpose``: a stride-1 conv over lhs dilated by ``strides``.

    Shape model: with 'SAME' the output is ``n * stride``; with 'VALID'
    ``n * stride + max(k_eff - stride, 0)``; pairs are the transposed conv's own pads
    (``(n - 1) * stride + 1 + low + high - k_eff + 1``), or, with ``use_consistent_padding``,
    the forward conv's pads (PyTorch's meaning). Default layouts are TensorFlow's
    (``('NHWC', 'HWIO', 'NHWC')`` and the other ranks alike); the kernel is not flipped unless
    ``transpose_kernel=True``, which flips it and swaps its I and O axes (Keras / TF / PyTorch).

    Examples
    --------
    >>> import numpy as np
    >>> from convgrad.jax import lax
    >>> lax.conv_transpose(np.ones((1, 2, 1)), np.ones((3, 1, 1)), (2,), "VALID")[..., 0]
    array([[1., 1., 2., 1., 1.]])
    """
    return _conv_transpose(lhs, rhs, strides, padding, rhs_dilation, dimension_numbers, transpose_kernel,
                           precision, preferred_element_type, use_consistent_padding)
