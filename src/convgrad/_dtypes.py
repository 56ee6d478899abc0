"""Array coercion and the dtype rules.

float16 and bfloat16 (``ml_dtypes.bfloat16``, JAX's and TensorFlow's; imported only when a
dtype is named "bfloat16") are computed in float32 and returned in their own dtype, rounded to
nearest even; integers give exact int64 results, or an OverflowError before any work where a
sum could pass int64 (``check_int_sum``); complex64 and complex128 are computed in their own
dtype; mixed inputs promote as NumPy does. bool, object, strings and other complex widths are
refused.

A gradient of a complex conv follows one of two ``CONVENTIONS``: 'adjoint', the conjugate
transpose ``A^H dy`` (PyTorch's autograd, the complex dot test ``<Ax, y> = <x, A^H y>``), or
'transpose', the plain transpose ``A^T dy`` (JAX's ``vjp``). The ops are bilinear with real
coefficients, so the adjoint is the transpose run on the conjugated primal operands.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import _lazy

if TYPE_CHECKING:
    from ._geometry import ConvGeometry

INT64_MAX = 2**63 - 1


def as_array(name: str, value: object) -> np.ndarray:
    """``value`` as an ndarray (never copied or written to), or TypeError for unsupported dtypes
    and for dask arrays (``np.asarray`` would compute all of one in this process)."""
    if _lazy.any_dask(value):  # the ops convgrad.dask blocks route there before reaching this
        raise TypeError(f"{name} is a dask array, which this function would compute whole in this "
                        f"process; convgrad.dask blocks {', '.join(_lazy.BLOCKED)} (lazy, block by "
                        f"block); for anything else compute the operands first if they fit in memory")
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} must be an array of numbers: {e}") from None
    kind = a.dtype.kind
    if is_bfloat16(a.dtype):
        return a
    if kind == "b":
        raise TypeError(f"{name} has dtype bool; convert it to an integer or float dtype")
    if kind == "c" and a.dtype not in (np.complex64, np.complex128):
        raise TypeError(f"{name} has dtype {a.dtype}; complex operands must be complex64 or complex128")
    if kind not in "iufc":
        raise TypeError(f"{name} has dtype {a.dtype}; expected an integer or floating dtype")
    return a


CONVENTIONS = ("adjoint", "transpose")


def convention_of(convention: object) -> str:
    """``convention`` checked: one of ``CONVENTIONS``."""
    if not isinstance(convention, str) or convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r}; expected 'adjoint' (conjugate transpose, "
                         "PyTorch's gradients) or 'transpose' (plain transpose, JAX's vjp)")
    return convention


def conj(a: np.ndarray) -> np.ndarray:
    """The complex conjugate of ``a`` (a copy), or ``a`` itself when it is real."""
    return np.conj(a) if a.dtype.kind == "c" else a


def is_bfloat16(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is ml_dtypes' bfloat16 (told by name: ml_dtypes need not be imported)."""
    return dtype.kind == "V" and dtype.name == "bfloat16"


def dtype_named(name: str, value: object) -> np.dtype:
    """The dtype the caller's ``name`` argument names, ``value`` a NumPy dtype or its name, or
    "bfloat16" (ml_dtypes, imported here); TypeError for others and when ml_dtypes is absent."""
    if isinstance(value, str) and value == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise TypeError(f"{name}='bfloat16' needs the ml_dtypes package (pip install ml_dtypes), "
                            f"which is not installed") from None
        return np.dtype(ml_dtypes.bfloat16)
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(f"{name}={value!r} is not a NumPy dtype or 'bfloat16'") from None
    if dt.kind not in "iuf" and dt not in (np.complex64, np.complex128) and not is_bfloat16(dt):
        raise TypeError(f"{name}={dt} is not an integer, floating, complex64 or complex128 dtype "
                        f"(or 'bfloat16')")
    return dt


# Below this many elements ml_dtypes' casts are as quick as the compiled passes and need no
# Numba kernel loaded (tens of ms from its disk cache, once per process; seconds to compile).
COMPILED_CASTS_FROM = 2**16


def _compiled_casts(a: np.ndarray) -> bool:
    from .engines._kernels import _numba

    return _numba.NUMBA and a.size >= COMPILED_CASTS_FROM


def widened(a: np.ndarray) -> np.ndarray:
    """A bfloat16 array ``a`` (any strides) as a C-contiguous float32 array: a 2-byte copy where
    ``a`` is not C-contiguous, then a compiled widening (a 16-bit shift, exact); the caller
    checks the budget. ml_dtypes' cast from a transposed view ran 1.2-1.6x NumPy's float32
    transposing copy (8 x 64 x 56 x 56, load 9)."""
    if not _compiled_casts(a):
        return np.ascontiguousarray(a, dtype=np.float32)
    from .engines._kernels import bf16

    bits = np.ascontiguousarray(a.view(np.uint16))
    out = np.empty(a.shape, np.float32)
    bf16.widen_flat(bits.reshape(-1), out.view(np.uint32).reshape(-1))
    return out


def rounded(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The float32 array ``a`` (any strides) as a C-contiguous array of ``dtype``, rounded to
    nearest even. bfloat16: rounded in ``a``'s own memory order by a compiled pass, then laid
    out C-contiguous as 2-byte elements (the channels-first result of a channels-last engine:
    0.95 ms against 3.7-6.1 for NumPy's transposing copy then ml_dtypes' cast, 8 x 64 x 56 x 56,
    load 10); other dtypes by NumPy in one pass."""
    if not (is_bfloat16(dtype) and a.dtype == np.float32 and _compiled_casts(a)):
        return a.astype(dtype, order="C", copy=False)
    from .engines._kernels import bf16

    order = np.argsort(a.strides, kind="stable")[::-1]  # a.transpose(order): a's memory order
    inner = a.transpose(order)
    if not inner.flags.c_contiguous:  # a slice or a broadcast: one copy first
        inner = np.ascontiguousarray(inner)
    bits = np.empty(inner.shape, np.uint16)
    bf16.round_flat(inner.view(np.uint32).reshape(-1), bits.reshape(-1))
    return np.ascontiguousarray(bits.transpose(np.argsort(order))).view(dtype)


def all_finite(a: np.ndarray, load: bool = False) -> bool:
    """No inf and no NaN in ``a`` (always true of integers): one compiled pass where loaded, or
    with ``load`` (``engines._kernels.finite``: C-contiguous float32 / float64; the plans load it
    when it pays, ``_plan.checked_finite``), else its min and max, no temporary."""
    if a.dtype.kind not in "fc" or a.size == 0:
        return True
    from .engines._kernels import finite  # here, not at import: the engines import this module

    fast = finite.all_finite(a, load)
    if fast is not None:
        return fast
    if a.dtype.kind == "c":
        return bool(np.isfinite(a).all())
    return bool(np.isfinite(a.min()) and np.isfinite(a.max()))  # NaN propagates through both


def int_peak(a: np.ndarray) -> int:
    """max |a| of an integer array, as a Python int (``abs`` of int64's minimum would wrap)."""
    return 0 if a.size == 0 else max(-int(a.min()), int(a.max()))


def int_terms(op: str, geom: ConvGeometry, folds: tuple[tuple[int, int], ...] = ()) -> tuple[int, str]:
    """How many products one result of ``op`` sums at most, and that count's formula. ``folds``:
    the (before, after) pads of a padding mode whose gradients fold back onto the samples they
    copy, at most 1 + before + after of them onto one sample per dim."""
    if op == "forward":
        return geom.filter_in_channels * math.prod(geom.kernel), "C/groups * prod(K)"
    if op == "input_grad":
        fold = math.prod(1 + lo + hi for lo, hi in folds)
        return (geom.out_channels // geom.feature_group_count * math.prod(geom.kernel) * fold,
                "O/groups * prod(K)" + (" * prod(1 + pads), folded" if folds else ""))
    return geom.batch * math.prod(geom.out_spatial), "N * prod(out)"


def check_int_sum(terms: int, what: str, **operands: np.ndarray) -> None:
    """OverflowError, before any work, unless every sum of ``terms`` products of the integer
    ``operands`` (one factor from each) fits int64: max|a| * max|b| * terms <= 2**63 - 1. Under
    that bound int64 arithmetic is exact (partial sums stay under it too); past it, a result
    could wrap. ``what`` says where ``terms`` comes from."""
    peaks = {name: int_peak(a) for name, a in operands.items()}
    for name, peak in peaks.items():
        if peak > INT64_MAX:
            raise OverflowError(f"{name} holds {peak}, past int64 (max {INT64_MAX}): it cannot be "
                                f"computed in int64; pass it as float64 (exact to 2**53) or smaller")
    bound = math.prod(peaks.values()) * terms
    if bound > INT64_MAX:
        factors = " * ".join(f"max|{name}|={peak}" for name, peak in peaks.items())
        raise OverflowError(f"an integer result could pass int64: the bound {factors} * {terms} "
                            f"({what}) = {bound} > 2**63 - 1 = {INT64_MAX}; nothing was computed. "
                            f"Pass float64 (exact to 2**53) or smaller values")


def cotangent(g: object, expected: tuple[int, ...], name: str = "dy", result: np.dtype | None = None
              ) -> np.ndarray:
    """The cotangent ``g`` of a pullback as an array of its result's shape ``expected``: the one
    check of every pullback, in the core and the fronts. A complex cotangent of a real
    ``result`` is refused (TypeError), as JAX's vjp and PyTorch's autograd refuse it: the
    gradient of a real conv is real, and a complex one would pass on silently."""
    a = as_array(name, g)
    if a.shape != expected:
        raise ValueError(f"{name}.shape={a.shape} does not match the output shape {expected}")
    if result is not None and a.dtype.kind == "c" and np.dtype(result).kind != "c":
        raise TypeError(f"{name} has dtype {a.dtype} but the result it is the cotangent of is real "
                        f"({np.dtype(result)}): a real conv's pullback takes a real cotangent; pass "
                        f"{name}.real, or complex operands (conv_input_grad and conv_filter_grad "
                        f"take a complex dy with real operands, as plain convolutions)")
    return a


def result_dtype(*arrays: np.ndarray | None) -> tuple[np.dtype, np.dtype]:
    """(dtype returned, dtype computed in) for the given operands."""
    dtypes = [a.dtype for a in arrays if a is not None]
    if all(d.kind in "iu" for d in dtypes):
        return np.dtype(np.int64), np.dtype(np.int64)
    res = np.result_type(*dtypes)  # ml_dtypes' rules for bfloat16: with float16, float32
    if res == np.float16 or is_bfloat16(res):
        return res, np.dtype(np.float32)
    return res, res
