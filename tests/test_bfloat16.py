"""bfloat16 (``ml_dtypes.bfloat16``): computed in float32, returned rounded to nearest bfloat16.

Tolerances, with their sources (ulp: the bfloat16 spacing, 2**(e - 7) for |v| in [2**e, 2**(e+1)),
of the larger of the two values compared; S: the sum of |products| of an output, from the
oracle on |operands|):
* against the exact sum of the same bfloat16 operands (the loop oracle in float64): 0.5 ulp for
  the one rounding to bfloat16, plus 2**-16 * S for float32's accumulation (at most a few
  hundred terms here, each rounding by 2**-24 relative);
* against PyTorch's own bfloat16 conv and autograd (CPU): 1.5 ulp + 2**-15 * S. PyTorch rounds
  differently on the way: measured on 30 random 2-D convs, PyTorch was within 0.625 ulp of the
  exact sum (convgrad within 0.5) and the two within 1.0 ulp of each other;
* against JAX's ``lax.conv_general_dilated`` on bfloat16 (XLA CPU): the same as PyTorch.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

import convgrad
import oracle
from convgrad import _dtypes
from strategies import budget, conv_cases
from tally import checked_against

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)


def ulp(*values):
    """The bfloat16 spacing at the larger magnitude of ``values``, elementwise."""
    big = np.maximum.reduce([np.abs(np.asarray(v, np.float64)) for v in values])
    return 2.0 ** (np.floor(np.log2(np.maximum(big, np.finfo(np.float32).tiny))) - 7)


def assert_bf16_close(got, want, size, ulps, accumulation, what):
    """|got - want| <= ulps * ulp + accumulation * size, elementwise."""
    assert got.dtype == BF16, (what, got.dtype)
    got64, want64 = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got64.shape == want64.shape, (what, got64.shape, want64.shape)
    err = np.abs(got64 - want64)
    tol = ulps * ulp(got64, want64) + accumulation * size
    worst = np.unravel_index(np.argmax(err - tol), err.shape) if err.size else None
    assert (err <= tol).all(), (f"{what}: |{got64[worst]} - {want64[worst]}| = {err[worst]} > {tol[worst]} "
                                f"at {worst}")


def bf16(rng, shape):
    return rng.standard_normal(shape).astype(BF16)


def oracle_ops(case, x, w, dy):
    """(exact result, sum of |products|) per op, in float64 from the bfloat16 operands, in the
    case's layout."""
    fmt, geo = case.data_format, case.geometry
    out = {}
    for absolute in (False, True):
        firsts = oracle.x_to_first(x, fmt), oracle.w_to_first(w, fmt), oracle.x_to_first(dy, fmt)
        xf, wf, dyf = (np.asarray(a, np.float64) for a in firsts)
        if absolute:
            xf, wf, dyf = np.abs(xf), np.abs(wf), np.abs(dyf)
        results = {"forward": oracle.x_from_first(oracle.conv(xf, wf, **geo), fmt),
                   "input_grad": oracle.x_from_first(oracle.input_grad(dyf, wf, xf.shape, **geo), fmt),
                   "filter_grad": oracle.w_from_first(oracle.filter_grad(xf, dyf, wf.shape, **geo), fmt)}
        for op, r in results.items():
            out.setdefault(op, []).append(r)
    return out


def torch_ops(case, x, w, dy):
    """PyTorch's bfloat16 conv and autograd gradients, in the case's layout: the padding (pairs,
    crops) applied with F.pad, then F.conv{1,2,3}d without padding."""
    torch = pytest.importorskip("torch")
    fmt, geo = case.data_format, case.geometry
    xf, wf, dyf = oracle.x_to_first(x, fmt), oracle.w_to_first(w, fmt), oracle.x_to_first(dy, fmt)
    rank = xf.ndim - 2
    pairs = oracle.resolve_padding(geo["padding"], xf.shape[2:], wf.shape[2:], geo["stride"], geo["dilation"])

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(torch.bfloat16).requires_grad_()

    tx, tw = tensor(xf), tensor(wf)
    flat = [p for pair in reversed(pairs) for p in pair]  # F.pad: last dim first
    conv = getattr(torch.nn.functional, f"conv{rank}d")
    ty = conv(torch.nn.functional.pad(tx, flat), tw, stride=geo["stride"], dilation=geo["dilation"],
              groups=geo["groups"])
    ty.backward(torch.from_numpy(np.ascontiguousarray(dyf, np.float32)).to(torch.bfloat16))

    def back(t):
        return t.detach().float().numpy()

    return {"forward": oracle.x_from_first(back(ty), fmt),
            "input_grad": oracle.x_from_first(back(tx.grad), fmt),
            "filter_grad": oracle.w_from_first(back(tw.grad), fmt)}


def ours(case, x, w, dy):
    return {"forward": convgrad.conv(x, w, **case.kwargs),
            "input_grad": convgrad.conv_input_grad(dy, w, x.shape, **case.kwargs),
            "filter_grad": convgrad.conv_filter_grad(x, dy, w.shape, **case.kwargs)}


@st.composite
def bf16_cases(draw):
    case = draw(conv_cases(min_batch=1, max_batch=2))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x, w = bf16(rng, case.x_shape), bf16(rng, case.w_shape)
    y = oracle.x_from_first(oracle.conv(oracle.x_to_first(np.zeros(case.x_shape), case.data_format),
                                        oracle.w_to_first(np.zeros(case.w_shape), case.data_format),
                                        **case.geometry), case.data_format)
    return case, x, w, bf16(rng, y.shape)


@budget(64)
@given(bf16_cases(), st.booleans())
@checked_against("oracle", "torch", capability="bfloat16")
def test_every_op_against_the_exact_sum_and_pytorch(drawn, compiled):
    """Forward and both gradients, any rank, strides, dilations, groups, pads and both layouts:
    3 comparisons with PyTorch per example; the casts by ml_dtypes (small arrays) or, with
    ``compiled``, by the compiled passes large arrays take."""
    case, x, w, dy = drawn
    exact = oracle_ops(case, x, w, dy)
    with pytest.MonkeyPatch.context() as mp:
        if compiled:
            mp.setattr(_dtypes, "COMPILED_CASTS_FROM", 0)
        got = ours(case, x, w, dy)
    try:
        theirs = torch_ops(case, x, w, dy)
    except RuntimeError as e:  # PyTorch refused a few bfloat16 geometries on an AVX2 machine
        assert "narrow()" in str(e), e  # ('narrow(): length must be non-negative'): not compared
        reject()
    for op in got:
        want, size = exact[op]
        # plus float32's rounding of the largest sum: the FFT engine's error spreads over the whole
        # output (1.3e-7 where the exact sum was 0, on an AVX2 machine whose lazy plans took the
        # FFT engine, which needs no compiling, for a 32-flop 3-D conv)
        assert_bf16_close(got[op], want, size + 2**-6 * np.max(size, initial=0), 0.5, 2**-16,
                          f"{op} vs the exact sum")
        # PyTorch's own rounding differs by machine (on AVX2, with no bfloat16 dot product, 3 ulps
        # from the exact sum where ours was within half an ulp): its bound is looser, still far
        # below the O(size) a layout or convention error would show.
        assert_bf16_close(got[op], theirs[op], size, 1.5, 2**-8, f"{op} vs PyTorch")


@budget(44)
@given(bf16_cases())
@checked_against("torch", capability="bfloat16")
def test_the_torch_front_takes_bfloat16_arrays_as_pytorch_takes_bfloat16_tensors(drawn):
    """ml_dtypes bfloat16 arrays stand for torch.bfloat16 tensors: the front returns bfloat16."""
    case, x, w, dy = drawn
    from convgrad import torch as ctorch

    fmt, geo = case.data_format, case.geometry
    xf, wf = oracle.x_to_first(x, fmt), oracle.w_to_first(w, fmt)
    rank = xf.ndim - 2
    pairs = oracle.resolve_padding(geo["padding"], xf.shape[2:], wf.shape[2:], geo["stride"], geo["dilation"])
    xp = oracle.pad_or_crop(np.asarray(xf, np.float32), pairs).astype(BF16)
    conv = getattr(ctorch.nn.functional, f"conv{rank}d")
    y = conv(xp, wf, stride=geo["stride"], dilation=geo["dilation"], groups=geo["groups"])
    want = torch_ops(case, x, w, dy)["forward"]
    size = oracle_ops(case, x, w, dy)["forward"][1]
    assert_bf16_close(y, oracle.x_to_first(want, fmt), oracle.x_to_first(size, fmt), 1.5, 2**-15,
                      "convgrad.torch vs PyTorch")


@pytest.mark.parametrize("seed", range(2))
def test_the_jax_front_against_jax_bfloat16(seed):
    jax = pytest.importorskip("jax")
    from convgrad import jax as cjax

    rng = np.random.default_rng(seed)
    x, w = bf16(rng, (2, 3, 9, 7)), bf16(rng, (4, 3, 3, 2))
    stride, padding, dilation = (1 + seed, 1), [(1, 0), (2, 1)], (1, 2 + seed)
    kwargs = {"window_strides": stride, "padding": padding, "rhs_dilation": dilation}
    want, vjp = jax.vjp(lambda a, b: jax.lax.conv_general_dilated(a, b, **kwargs), x, w)
    got, our_vjp = cjax.lax.conv_general_dilated.vjp(x, w, **kwargs)
    x64, w64 = np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64))
    size = oracle.conv_general(x64, w64, stride, padding, 1, dilation)
    assert np.asarray(want).dtype == BF16
    assert_bf16_close(got, np.asarray(want), size, 1.5, 2**-15, "convgrad.jax vs JAX")
    dy = bf16(rng, got.shape)
    (dx_want, dw_want), (dx, dw) = vjp(dy), our_vjp(dy)[:2]
    dy64 = np.abs(dy.astype(np.float64))
    dx_size = oracle.input_grad(dy64, w64, x.shape, stride, padding, dilation)
    dw_size = oracle.filter_grad(x64, dy64, w.shape, stride, padding, dilation)
    assert_bf16_close(dx, np.asarray(dx_want), dx_size, 1.5, 2**-15, "convgrad.jax vjp dx vs JAX")
    assert_bf16_close(dw, np.asarray(dw_want), dw_size, 1.5, 2**-15, "convgrad.jax vjp dw vs JAX")


# Float32 bit patterns whose rounding is in doubt: the low half just under, at and over the tie
# (with the kept half's last bit 0 or 1 from the high halves), zero and all ones.
LOW_HALVES = (0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF)


def every_float32_class(rng):
    """Every bfloat16 value (all 65,536 high halves: zeros, subnormals, normals, the largest
    finite ones that round over to inf, inf, NaNs with payloads, both signs) under each of
    LOW_HALVES and a random low half, then 2**18 random float32 bit patterns."""
    high = np.arange(2**16, dtype=np.uint32) << 16
    lows = np.array([*LOW_HALVES, *rng.integers(0, 2**16, 4)], np.uint32)
    bits = np.concatenate([(high[:, None] | lows).reshape(-1),
                           rng.integers(0, 2**32, 2**18, dtype=np.uint64).astype(np.uint32)])
    return bits.view(np.float32)


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced"])
def test_the_compiled_rounding_is_ml_dtypes_bit_for_bit(monkeypatch, layout):
    """_dtypes.rounded (the compiled pass large results take) against ml_dtypes' own cast, bit
    for bit, on every class of float32, from a C-contiguous array, a channels-last result seen
    channels-first, and a strided slice."""
    monkeypatch.setattr(_dtypes, "COMPILED_CASTS_FROM", 0)
    a = every_float32_class(np.random.default_rng(0))
    view = {"contiguous": a,
            "transposed": a[: a.size // 64 * 64].reshape(4, -1, 16).transpose(0, 2, 1),
            "sliced": a[::3]}[layout]
    with np.errstate(invalid="ignore"):  # ml_dtypes warns on NaN
        want = view.astype(BF16)
    got = _dtypes.rounded(view, BF16)
    assert got.dtype == BF16 and got.flags.c_contiguous and got.shape == view.shape
    differ = got.view(np.uint16) != want.view(np.uint16)
    assert not differ.any(), [hex(v) for v in view[differ][:5].view(np.uint32)]


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_the_compiled_widening_is_ml_dtypes_bit_for_bit(monkeypatch, layout):
    """_dtypes.widened against ml_dtypes' cast to float32: all 65,536 bfloat16 values, NaN
    payloads kept, from a C-contiguous array and from a channels-first array seen channels-last."""
    monkeypatch.setattr(_dtypes, "COMPILED_CASTS_FROM", 0)
    a = np.arange(2**16, dtype=np.uint16).view(BF16)
    view = a if layout == "contiguous" else a.reshape(4, 16, -1).transpose(0, 2, 1)
    got = _dtypes.widened(view)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got.view(np.uint32), view.astype(np.float32).view(np.uint32))


def test_prepare_names_bfloat16_and_computes_in_float32():
    rng = np.random.default_rng(0)
    x, w = bf16(rng, (1, 2, 6, 6)), bf16(rng, (3, 2, 3, 3))
    p = convgrad.prepare(x.shape, w.shape, "bfloat16", padding=1)
    assert (p.dtype, p.result_dtype) == (np.dtype(np.float32), BF16)
    want = convgrad.conv(x.astype(np.float32), w.astype(np.float32), padding=1).astype(BF16)
    np.testing.assert_array_equal(np.asarray(p(x, w), np.float32), np.asarray(want, np.float32))
    assert convgrad.conv(x, w.astype(np.float32)).dtype == np.float32  # NumPy's (ml_dtypes') promotion
    assert convgrad.conv(x, w.astype(np.float16)).dtype == np.float32


def test_bfloat16_without_ml_dtypes_is_a_clear_type_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes raises ImportError
    with pytest.raises(TypeError, match=r"dtype='bfloat16' needs the ml_dtypes package"):
        convgrad.prepare((1, 1, 4), (1, 1, 2), "bfloat16")


def test_other_ml_dtypes_are_refused():
    f8 = np.ones((1, 1, 4), ml_dtypes.float8_e4m3fn)
    with pytest.raises(TypeError, match="x has dtype float8_e4m3fn"):
        convgrad.conv(f8, np.ones((1, 1, 2)))
    with pytest.raises(TypeError, match=r"dtype=float8_e4m3fn is not an integer, floating, complex"):
        convgrad.prepare((1, 1, 4), (1, 1, 2), ml_dtypes.float8_e4m3fn)


def test_the_tf_front_takes_tf_bfloat16_as_tf_does():
    tf = pytest.importorskip("tensorflow")
    from convgrad import tf as ctf

    rng = np.random.default_rng(5)
    x, w = bf16(rng, (2, 7, 6, 3)), bf16(rng, (3, 2, 3, 4))
    want = tf.nn.conv2d(tf.constant(x, tf.bfloat16), tf.constant(w, tf.bfloat16), 2, "SAME").numpy()
    got = ctf.nn.conv2d(x, w, 2, "SAME")
    size = convgrad.conv(np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64)), stride=2, padding="same",
                         data_format="channels_last")
    assert want.dtype == BF16
    assert_bf16_close(got, want, size, 1.5, 2**-15, "convgrad.tf vs TensorFlow")


def test_the_command_checks_and_explains_bfloat16(capsys):
    """`convgrad check --dtype bfloat16`: every route (convgrad's engines and fronts, PyTorch)
    agrees within bfloat16's tolerance; `explain` plans in float32."""
    from convgrad.cli import main

    argv = ["--dtype", "bfloat16", "--x", "1,5,5,2", "--stride", "2", "--padding", "same"]
    assert main(["check", *argv, "--values", "normal", "--frameworks", "torch"]) == 0
    assert "agree" in capsys.readouterr().out
    assert main(["explain", *argv]) == 0
    assert "cost (bfloat16, computed in float32)" in capsys.readouterr().out


def test_the_torch_layers_spell_torch_bfloat16_as_bfloat16():
    """nn.Conv2d(..., dtype=torch.bfloat16) is spelled dtype="bfloat16" (NumPy has no torch dtypes)."""
    from convgrad import torch as ctorch

    layer = ctorch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype="bfloat16")
    assert layer.weight.dtype == BF16 and layer.bias.dtype == BF16
    x = bf16(np.random.default_rng(7), (1, 2, 5, 5))
    want = ctorch.nn.functional.conv2d(np.pad(x.astype(np.float32), ((0, 0), (0, 0), (1, 1), (1, 1)),
                                              mode="reflect").astype(BF16), layer.weight, layer.bias)
    np.testing.assert_array_equal(np.asarray(layer(x), np.float32), np.asarray(want, np.float32))


MANTISSA_BITS = {"bfloat16": 7, "float16": 10}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("op, padding_mode", [("conv", "zeros"), ("conv", "reflect"), ("conv_vjp", "zeros"),
                                              ("conv_vjp", "reflect"), ("conv_transpose", "zeros"),
                                              ("conv_transpose_vjp", "zeros")])
def test_a_bias_is_added_before_the_one_rounding(op, padding_mode, dtype):
    """conv + bias in bfloat16 or float16 is the float32 sum rounded once: against the exact sum
    of the same operands (the loop oracle in float64), within 0.5 ulp + 2**-16 * S (see the
    module docstring). The bias is the negated first output of each channel, rounded to the
    dtype: there the exact result is the small rest of that output, which a first rounding (of
    the conv, before the bias) wipes out: an error of up to 0.5 ulp of the output itself."""
    dt = BF16 if dtype == "bfloat16" else np.dtype(np.float16)
    rng = np.random.default_rng(3)
    transposed = op.startswith("conv_transpose")
    kw = {"stride": 1, "padding": 1, "dilation": 1, "groups": 1}
    w_shape = (6, 4, 3, 3) if transposed else (4, 6, 3, 3)  # the transposed conv maps 6 -> 4 channels
    x, w = rng.standard_normal((2, 6, 7, 5)).astype(dt), rng.standard_normal(w_shape).astype(dt)
    exact, size = {}, {}
    for absolute in (False, True):
        x64, w64 = (np.asarray(a, np.float64) for a in (x, w))
        x64, w64 = (np.abs(x64), np.abs(w64)) if absolute else (x64, w64)
        reflect = padding_mode == "reflect"
        xp = np.pad(x64, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect") if reflect else x64
        pad = 0 if reflect else 1
        if transposed:  # the transposed conv of x: the input gradient of the conv with w
            r = oracle.input_grad(x64, w64, (2, 4, 7, 5), **{**kw, "padding": 1})
        else:
            r = oracle.conv(xp, w64, **{**kw, "padding": pad})
        (size if absolute else exact)["r"] = r
    bias = (-exact["r"][0, :, 0, 0]).astype(dt)
    want = exact["r"] + np.asarray(bias, np.float64)[:, None, None]
    call = getattr(convgrad, op)
    out = call(x, w, bias, **kw, padding_mode=padding_mode)
    got = out[0] if op.endswith("_vjp") else out
    assert got.dtype == dt
    got64 = np.asarray(got, np.float64)
    step = 2.0 ** (np.floor(np.log2(np.maximum(np.maximum(abs(got64), abs(want)), 2.0**-60)))
                   - MANTISSA_BITS[dtype])
    tol = 0.5 * step + 2.0**-16 * size["r"]
    err = np.abs(got64 - want)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert (err <= tol).all(), f"|{got64[worst]} - {want[worst]}| = {err[worst]} > {tol[worst]} at {worst}"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("op", ["conv_jvp", "conv_transpose_jvp"])
def test_a_tangent_is_summed_before_the_one_rounding(op, dtype):
    """conv_jvp's y_dot = conv(x_dot, w) + conv(x, w_dot) + bias_dot in bfloat16 or float16 is the
    float32 sum rounded once: within 0.5 ulp + 2**-16 * S of the exact sum (module docstring).
    w_dot is -w with one tap zeroed, so the two terms cancel but for that tap: rounding each
    term first errs by half an ulp of the term, far more than the small result's."""
    dt = BF16 if dtype == "bfloat16" else np.dtype(np.float16)
    rng = np.random.default_rng(5)
    transposed = op == "conv_transpose_jvp"
    w_shape = (6, 4, 3, 3) if transposed else (4, 6, 3, 3)
    x, w = rng.standard_normal((2, 6, 7, 5)).astype(dt), rng.standard_normal(w_shape).astype(dt)
    w_dot = -w
    w_dot[:, :, 0, 0] = 0
    bias, bias_dot = rng.standard_normal(4).astype(dt), rng.standard_normal(4).astype(dt)

    def exact(xa, wa):  # the op on float64 operands, by the loop oracle
        if transposed:
            return oracle.input_grad(xa, wa, (2, 4, 7, 5), stride=1, padding=1, dilation=1, groups=1)
        return oracle.conv(xa, wa, stride=1, padding=1, dilation=1, groups=1)

    x64, w64, wd64 = (np.asarray(a, np.float64) for a in (x, w, w_dot))
    want = exact(x64, w64) + exact(x64, wd64) + np.asarray(bias_dot, np.float64)[:, None, None]
    size = 2 * exact(abs(x64), abs(w64)) + abs(np.asarray(bias_dot, np.float64))[:, None, None]
    _, got = getattr(convgrad, op)(x, w, x, w_dot, bias, bias_dot, padding=1)
    assert got.dtype == dt
    got64 = np.asarray(got, np.float64)
    step = 2.0 ** (np.floor(np.log2(np.maximum(np.maximum(abs(got64), abs(want)), 2.0**-60)))
                   - MANTISSA_BITS[dtype])
    tol = 0.5 * step + 2.0**-16 * size
    err = np.abs(got64 - want)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert (err <= tol).all(), f"|{got64[worst]} - {want[worst]}| = {err[worst]} > {tol[worst]} at {worst}"
