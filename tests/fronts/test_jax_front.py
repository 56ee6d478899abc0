"""convgrad.jax.lax against jax.lax itself (float64 via jax_enable_x64, CPU).

Forward values and shapes, and ``op.vjp`` against ``jax.vjp``, on random geometries: any rank
0-3, layouts as strings or permutations, strides, SAME / SAME_LOWER / VALID or pairs (negative
included), input and kernel dilation, feature or batch groups, empty outputs; conv_transpose with
its padding rules, ``transpose_kernel`` and ``use_consistent_padding``. Inputs JAX rejects are
rejected.

Tolerances: float64 results are the same sums in another order (rtol 1e-9); float32 1e-4.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from jax import lax as jlax

from convgrad.jax import lax
from strategies import budget
from tally import checked_against

jax.config.update("jax_enable_x64", True)


def _start_jax_without_llvm_optimisation():
    """Compiling JAX's reference (one XLA program per drawn geometry) dominates these tests, and
    LLVM's optimisation passes roughly double it without changing the conv's arithmetic. XLA
    reads XLA_FLAGS once, when JAX's CPU client starts; the variable is restored afterwards so
    that nothing else in the session (TensorFlow's own XLA) sees it. No effect if JAX already
    started."""
    saved = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = f"{saved or ''} --xla_backend_optimization_level=0".strip()
    try:
        jax.devices()
    finally:
        if saved is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = saved


_start_jax_without_llvm_optimisation()

SPATIAL_CHARS = "HWD"
RTOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}


def assert_close(got, want, dtype):
    want = np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape} != JAX's {want.shape}"
    assert got.dtype == want.dtype, f"dtype {got.dtype} != JAX's {want.dtype}"
    rtol = RTOL[np.dtype(dtype)]
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


# --- strategies ---------------------------------------------------------------------------------
@st.composite
def layouts(draw, rank):
    """(dimension_numbers for convgrad, the same for JAX, axis order of lhs / rhs / out).

    The orders map canonical axes (N, C, *S) / (O, I, *K) / (N, C, *out) to array axes.
    """
    kind = draw(st.sampled_from(["none", "strings", "perms", "jax_perms"]))
    ndim = rank + 2
    if kind == "none":
        iota = tuple(range(ndim))
        return None, None, (iota, iota, iota)
    if kind == "strings":
        sp = list(SPATIAL_CHARS[:rank])
        specs = []
        for pair in (("N", "C"), ("O", "I"), ("N", "C")):
            specs.append("".join(draw(st.permutations([*pair, *sp]))))
        rhs_sp = [c for c in specs[1] if c in sp]  # spatial dim k is the k-th spatial char of rhs
        orders = tuple(
            (spec.index(pair[0]), spec.index(pair[1]), *(spec.index(c) for c in rhs_sp))
            for spec, pair in zip(specs, (("N", "C"), ("O", "I"), ("N", "C")))
        )
        return tuple(specs), tuple(specs), orders
    perms = tuple(tuple(draw(st.permutations(range(ndim)))) for _ in range(3))
    ours = lax.ConvDimensionNumbers(*perms) if kind == "perms" else jlax.ConvDimensionNumbers(*perms)
    return ours, jlax.ConvDimensionNumbers(*perms), perms


def arrange(canonical_shape, order):
    """The array shape whose axis order[i] has the size of canonical axis i."""
    shape = [0] * len(order)
    for i, axis in enumerate(order):
        shape[axis] = canonical_shape[i]
    return tuple(shape)


@st.composite
def general_cases(draw):
    """(args, kwargs, dnums for JAX) of a conv_general_dilated call, most of them valid."""
    rank = draw(st.sampled_from([0, 1, 1, 2, 2, 2, 3]))
    ints = st.integers
    kernel = [draw(ints(1, 3)) for _ in range(rank)]
    strides = [draw(ints(1, 3)) for _ in range(rank)]
    lhs_dil = [draw(st.sampled_from([1, 1, 2, 3])) for _ in range(rank)]
    rhs_dil = [draw(ints(1, 3)) for _ in range(rank)]
    # Mostly inputs the window fits in; sometimes a tiny one (empty or all-zero outputs).
    spatial = [(k - 1) * d + 1 + draw(ints(0, 3 if rank < 3 else 1)) for k, d in zip(kernel, rhs_dil)]
    if rank and draw(ints(0, 9)) == 7:
        spatial[draw(ints(0, rank - 1))] = draw(ints(0, 2))
    if all(v == 1 for v in lhs_dil) and draw(st.booleans()):
        padding = draw(st.sampled_from(["SAME", "SAME_LOWER", "VALID", "same", "Same_Lower"]))
    else:
        padding = [(draw(ints(-2, 3)), draw(ints(-2, 3))) for _ in range(rank)]
    grouping = draw(st.sampled_from(["none", "none", "feature", "batch"]))
    g = draw(ints(2, 3)) if grouping != "none" else 1
    fg, bg = (g, 1) if grouping == "feature" else (1, g) if grouping == "batch" else (1, 1)
    n = bg * (0 if draw(ints(0, 9)) == 7 else draw(ints(1, 2)))  # 7: hypothesis favours 0
    c = fg * draw(ints(1, 2))
    o = g * draw(ints(1, 2))
    i = c // fg
    ours, theirs, (lo, ro, _) = draw(layouts(rank))
    lhs_shape = arrange((n, c, *spatial), lo)
    rhs_shape = arrange((o, i, *kernel), ro)
    kwargs = {"lhs_dilation": draw(st.sampled_from([None, tuple(lhs_dil)])) if lhs_dil == [1] * rank
              else tuple(lhs_dil),
              "rhs_dilation": draw(st.sampled_from([tuple(rhs_dil), list(rhs_dil)])),
              "dimension_numbers": ours, "feature_group_count": fg, "batch_group_count": bg}
    return (lhs_shape, rhs_shape, tuple(strides), padding), kwargs, theirs


def jax_reference(fn, lhs, rhs, rng):
    """(dy, JAX's output, JAX's gradients for dy) of ``fn(lhs, rhs)``, compiled as one program.

    Raises what JAX raises for inputs it rejects.
    """
    out = jax.eval_shape(fn, lhs, rhs)
    dy = rng.standard_normal(out.shape).astype(out.dtype)

    def forward_and_back(a, b, g):
        y, pullback = jax.vjp(fn, a, b)
        return (y, *pullback(g))

    return dy, [np.asarray(v) for v in jax.jit(forward_and_back)(lhs, rhs, dy)]


def compare_vjp(ours, reference, dtype):
    """Forward values and both gradients of ``ours`` = (out, pullback) against JAX's."""
    out, pullback = ours
    dy, (want, *grads) = reference
    assert_close(out, want, dtype)
    for got, expected in zip(pullback(dy), grads):
        assert_close(got, expected, dtype)


# --- forward and gradients ----------------------------------------------------------------------
@budget(110)
@given(general_cases(), st.integers(0, 2**32 - 1), st.sampled_from([np.float64] * 5 + [np.float32]))
@checked_against("jax")
def test_conv_general_dilated_matches_jax(case, seed, dtype):
    (lhs_shape, rhs_shape, strides, padding), kwargs, jax_dnums = case
    rng = np.random.default_rng(seed)
    lhs = rng.standard_normal(lhs_shape).astype(dtype)
    rhs = rng.standard_normal(rhs_shape).astype(dtype)
    kw = dict(kwargs, dimension_numbers=jax_dnums)
    try:
        reference = jax_reference(
            lambda a, b: jlax.conv_general_dilated(a, b, strides, padding, **kw), lhs, rhs, rng
        )
    except (ValueError, TypeError) as e:
        # e.g. a negative pad larger than the dilated input: we must refuse it too.
        with pytest.raises((ValueError, TypeError)):
            lax.conv_general_dilated(lhs, rhs, strides, padding, **kwargs)
        assert "padding" in str(e).lower()
        event("JAX rejects it")
        return
    ours = lax.conv_general_dilated.vjp(lhs, rhs, strides, padding, **kwargs)
    event("empty output" if ours[0].size == 0 else "all-zero output" if not ours[0].any() else "values")
    np.testing.assert_array_equal(ours[0], lax.conv_general_dilated(lhs, rhs, strides, padding, **kwargs))
    compare_vjp(ours, reference, dtype)


@st.composite
def transpose_cases(draw):
    rank = draw(st.integers(1, 2))
    ints = st.integers
    kernel = [draw(ints(1, 4)) for _ in range(rank)]
    strides = [draw(ints(1, 3)) for _ in range(rank)]
    rhs_dil = [draw(ints(1, 2)) for _ in range(rank)]
    consistent = draw(st.booleans())
    kind = draw(st.sampled_from(["SAME", "VALID", "pairs"]))
    if kind == "pairs":
        hi = 2 if consistent else 3
        padding = [(draw(ints(0 if consistent else -1, hi)), draw(ints(0 if consistent else -1, hi)))
                   for _ in range(rank)]
    else:
        padding = kind
    spatial = [draw(ints(1, 5)) for _ in range(rank)]
    n, c, o = draw(ints(1, 2)), draw(ints(1, 3)), draw(ints(1, 3))
    transpose_kernel = draw(st.booleans())
    strings = draw(st.booleans())
    sp = SPATIAL_CHARS[:rank]
    if strings:
        dn = ("N" + sp + "C", sp + "IO", "N" + sp + "C") if draw(st.booleans()) else \
             ("NC" + sp, "OI" + sp, "NC" + sp)
    else:
        dn = None  # JAX's defaults: TensorFlow's layouts
    channels_last = dn is None or dn[0].endswith("C")
    lhs_shape = (n, *spatial, c) if channels_last else (n, c, *spatial)
    # rhs "I" must match lhs channels, after the swap when transpose_kernel.
    i_, o_ = (o, c) if transpose_kernel else (c, o)
    if dn is None or dn[1].endswith("IO"):
        rhs_shape = (*kernel, i_, o_)
    else:
        rhs_shape = (o_, i_, *kernel)
    kwargs = {"rhs_dilation": tuple(rhs_dil), "dimension_numbers": dn,
              "transpose_kernel": transpose_kernel, "use_consistent_padding": consistent}
    return lhs_shape, rhs_shape, tuple(strides), padding, kwargs


@budget(60)
@given(transpose_cases(), st.integers(0, 2**32 - 1))
@checked_against("jax")
def test_conv_transpose_matches_jax(case, seed):
    lhs_shape, rhs_shape, strides, padding, kwargs = case
    rng = np.random.default_rng(seed)
    lhs, rhs = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    jpad = [tuple(p) for p in padding] if isinstance(padding, list) else padding
    try:
        reference = jax_reference(
            lambda a, b: jlax.conv_transpose(a, b, strides, jpad, **kwargs), lhs, rhs, rng
        )
    except (ValueError, TypeError):
        with pytest.raises((ValueError, TypeError)):
            lax.conv_transpose(lhs, rhs, strides, padding, **kwargs)
        return
    compare_vjp(lax.conv_transpose.vjp(lhs, rhs, strides, padding, **kwargs), reference, np.float64)


@budget(30)
@given(st.integers(1, 3), st.integers(0, 2**32 - 1), st.booleans())
@checked_against("jax")
def test_conv_and_conv_with_general_padding_match_jax(rank, seed, general):
    rng = np.random.default_rng(seed)
    kernel = tuple(rng.integers(1, 4, rank))
    spatial = tuple(rng.integers(3, 6, rank))
    strides = tuple(int(s) for s in rng.integers(1, 3, rank))
    lhs = rng.standard_normal((2, 3, *spatial))
    rhs = rng.standard_normal((2, 3, *kernel))
    if general:
        padding = [tuple(int(p) for p in rng.integers(-1, 3, 2)) for _ in range(rank)]
        dil = [tuple(int(d) for d in rng.integers(1, 3, rank)) for _ in range(2)]
        args = (lhs, rhs, strides, padding, *dil)
        op, jop = lax.conv_with_general_padding, jlax.conv_with_general_padding
    else:
        args = (lhs, rhs, strides, str(rng.choice(["SAME", "VALID"])))
        op, jop = lax.conv, jlax.conv
    reference = jax_reference(lambda a, b: jop(a, b, *args[2:]), lhs, rhs, rng)
    compare_vjp(op.vjp(*args), reference, np.float64)


# --- JAX's specific behaviours ------------------------------------------------------------------
def test_kernel_larger_than_input_gives_empty_output_and_zero_gradients():
    lhs, rhs = np.ones((2, 3, 2, 5)), np.ones((4, 3, 3, 2))
    out, pullback = lax.conv.vjp(lhs, rhs, (1, 1), "VALID")
    assert out.shape == np.asarray(jlax.conv(lhs, rhs, (1, 1), "VALID")).shape == (2, 4, 0, 4)
    dl, dr = pullback(np.ones(out.shape))
    assert dl.shape == lhs.shape and dr.shape == rhs.shape
    assert not dl.any() and not dr.any()


def test_windows_that_meet_no_input_sample_give_zeros():
    lhs, rhs = np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 1))
    want = jlax.conv_general_dilated(lhs, rhs, (1,), [(-6, 2)])
    out, pullback = lax.conv_general_dilated.vjp(lhs, rhs, (1,), [(-6, 2)])
    np.testing.assert_array_equal(out, want)
    assert out.shape == (1, 1, 1) and not out.any()
    assert not pullback(np.ones(out.shape))[0].any()


@pytest.mark.parametrize(
    ("dtype", "preferred"),
    [(np.int8, None), (np.int8, np.int32), (np.int32, None), (np.uint8, np.uint16),
     (np.int16, np.float32), (np.float32, np.float64), (np.float16, np.float32), (np.float16, None)],
)
def test_dtypes_and_preferred_element_type_match_jax(dtype, preferred):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind in "iu":
        lhs = rng.integers(0, 100, (1, 2, 6)).astype(dtype)
        rhs = rng.integers(0, 100, (3, 2, 3)).astype(dtype)
    else:
        lhs, rhs = rng.standard_normal((1, 2, 6)).astype(dtype), rng.standard_normal((3, 2, 3)).astype(dtype)
    want = np.asarray(jlax.conv(lhs, rhs, (1,), "SAME", preferred_element_type=preferred))
    got = lax.conv(lhs, rhs, (1,), "SAME", preferred_element_type=preferred)
    assert got.dtype == want.dtype
    if got.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want)  # integers wrap exactly as in JAX
    else:
        rtol = 1e-2 if np.dtype(dtype) == np.float16 else 1e-5
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=rtol)


def test_conv_dimension_numbers_match_jax():
    for dn, shapes in [
        (("NHWC", "HWIO", "NHWC"), ((1, 5, 6, 2), (3, 3, 2, 4))),
        (("NWHC", "OIWH", "CNHW"), ((1, 5, 6, 2), (4, 2, 3, 3))),
        (None, ((1, 2, 5, 6), (4, 2, 3, 3))),
        (("NCH", "HIO", "HNC"), ((1, 2, 5), (3, 2, 4))),
    ]:
        want = jlax.conv_dimension_numbers(*shapes, dn)
        assert tuple(lax.conv_dimension_numbers(*shapes, dn)) == tuple(want)


ERROR_CASES = [
    # (description, op name, lhs shape, rhs shape, positional args, kwargs)
    ("mixed dtypes", "conv", (1, 1, 5), (1, 1, 3), ((1,), "VALID"), {"_rhs_dtype": np.float32}),
    ("negative pads beyond the input", "conv_general_dilated", (1, 1, 5), (1, 1, 3), ((1,), [(-7, 1)]), {}),
    ("unknown padding string", "conv", (1, 1, 5), (1, 1, 3), ((1,), "FULL"), {}),
    ("string padding with lhs dilation", "conv_general_dilated", (1, 1, 5), (1, 1, 3), ((1,), "SAME"),
     {"lhs_dilation": (2,)}),
    ("window_strides of the wrong length", "conv", (1, 1, 5), (1, 1, 3), ((1, 1), "VALID"), {}),
    ("pads of the wrong length", "conv_general_dilated", (1, 1, 5), (1, 1, 3), ((1,), [(1, 1), (1, 1)]), {}),
    ("zero feature groups", "conv_general_dilated", (1, 1, 5), (1, 1, 3), ((1,), "VALID"),
     {"feature_group_count": 0}),
    ("groups not dividing channels", "conv_general_dilated", (1, 3, 5), (2, 1, 3), ((1,), "VALID"),
     {"feature_group_count": 2}),
    ("channel mismatch", "conv", (1, 2, 5), (1, 3, 3), ((1,), "VALID"), {}),
    ("batch groups not dividing batch", "conv_general_dilated", (3, 2, 5), (4, 2, 3), ((1,), "VALID"),
     {"batch_group_count": 2}),
    ("both group counts", "conv_general_dilated", (2, 2, 5), (4, 1, 3), ((1,), "VALID"),
     {"batch_group_count": 2, "feature_group_count": 2}),
    ("zero rhs dilation", "conv_general_dilated", (1, 1, 5), (1, 1, 3), ((1,), "VALID"),
     {"rhs_dilation": (0,)}),
    ("zero lhs dilation", "conv_general_dilated", (1, 1, 5), (1, 1, 3), ((1,), [(0, 0)]),
     {"lhs_dilation": (0,)}),
    ("permutation dimension numbers as a plain tuple", "conv_general_dilated", (1, 1, 5), (1, 1, 3),
     ((1,), "VALID"), {"dimension_numbers": ((0, 1, 2), (0, 1, 2), (0, 1, 2))}),
    ("mismatched spatial characters", "conv_general_dilated", (1, 1, 5), (1, 1, 3), ((1,), "VALID"),
     {"dimension_numbers": ("NCH", "OIW", "NCH")}),
    ("rank mismatch", "conv", (1, 1, 5), (1, 1, 3, 3), ((1,), "VALID"), {}),
    ("zero-size window", "conv", (1, 1, 5), (1, 1, 0), ((1,), "VALID"), {}),
    ("conv_transpose SAME_LOWER with stride", "conv_transpose", (1, 5, 1), (3, 1, 1),
     ((2,), "SAME_LOWER"), {}),
    ("conv_transpose rank without default layouts", "conv_transpose", (1, 1, 2, 2, 2, 2), (1, 1, 1, 1, 1, 1),
     ((1, 1, 1, 1), "VALID"), {}),
]


@pytest.mark.parametrize(("what", "op", "lhs_shape", "rhs_shape", "args", "kwargs"), ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_inputs_jax_rejects_are_rejected(what, op, lhs_shape, rhs_shape, args, kwargs):
    kwargs = dict(kwargs)
    rhs_dtype = kwargs.pop("_rhs_dtype", np.float64)
    lhs, rhs = np.ones(lhs_shape), np.ones(rhs_shape, dtype=rhs_dtype)
    with pytest.raises(Exception):  # noqa: B017 - JAX raises ValueError, TypeError or a lowering error
        np.asarray(getattr(jlax, op)(lhs, rhs, *args, **kwargs))
    with pytest.raises((ValueError, TypeError)):
        getattr(lax, op)(lhs, rhs, *args, **kwargs)
    with pytest.raises((ValueError, TypeError)):
        getattr(lax, op).vjp(lhs, rhs, *args, **kwargs)


def test_pullback_checks_dy_shape():
    _, pullback = lax.conv.vjp(np.ones((1, 1, 5)), np.ones((1, 1, 3)), (1,), "VALID")
    with pytest.raises(ValueError, match=r"dy\.shape"):
        pullback(np.ones((1, 1, 4)))


PRECISIONS = [
    None, "highest", "float32", "high", "bfloat16_3x", "tensorfloat32", "default", "bfloat16", "fastest",
    "DEFAULT", "F32_F32_F32", "BF16_BF16_F32", "HIGHEST", "High", "bogus", "", 3, 2.0, ("high",),
    ("high", "default"), ["fastest", "float32"], ("high", "HIGHEST"), ("high", "F32_F32_F32"),
    jlax.Precision.HIGH, (jlax.Precision.HIGH, jlax.Precision.DEFAULT), (jlax.Precision.HIGH, "high"),
    jlax.DotAlgorithmPreset.F32_F32_F32, jlax.Precision, (None, None),
]


@pytest.mark.parametrize("precision", PRECISIONS, ids=repr)
def test_precision_is_accepted_exactly_when_jax_accepts_it(precision):
    x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 2, 2), np.float32)
    try:
        expected = np.asarray(jlax.conv_general_dilated(x, w, (1, 1), "VALID", precision=precision))
    except (ValueError, TypeError):
        with pytest.raises(ValueError, match=r"Precision argument must be one of"):
            lax.conv_general_dilated(x, w, (1, 1), "VALID", precision=precision)
    else:
        got = lax.conv_general_dilated(x, w, (1, 1), "VALID", precision=precision)
        np.testing.assert_array_equal(got, expected)
