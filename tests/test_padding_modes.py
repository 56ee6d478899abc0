"""Padding modes (``padding_mode=``): conv, both gradients, the vjps, conv_transpose and prepare
against NumPy's ``np.pad`` + the loop oracle, real PyTorch ``nn.Conv1d/2d/3d(padding_mode=...)``
with autograd, and ``scipy.ndimage.correlate`` in each of its modes; the adjoint identity for
every mode; the refusals."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import ndimage

import convgrad
import convgrad.testing as cgt
import oracle
import tally
from convgrad import _plan
from convgrad import torch as ctorch
from convgrad._geometry import ConvGeometry
from convgrad._padmode import PadMap
from padmode_cases import MAX_PAD, NP_MODE, mode_cases
from strategies import budget, channels, seeds, windows


def _padded(x, pairs, mode):
    return np.pad(x, [(0, 0), (0, 0), *pairs], mode=NP_MODE[mode])


def oracle_grads(x, w, dy, kw, mode, pairs):
    """(y, dx, dw) channels-first by np.pad + the loop oracle; dx sums each padded sample's
    gradient onto its source, found by padding the array of x's flat indices with np.pad."""
    geo = {"stride": kw["stride"], "dilation": kw["dilation"], "groups": kw["groups"]}
    xp = _padded(x, pairs, mode)
    y = oracle.conv(xp, w, **geo)
    if dy is None:
        return y, None, None
    dxp = oracle.input_grad(dy, w, xp.shape, **geo)
    if mode == "zeros":
        dx = oracle.pad_or_crop(dxp, [(-lo, -hi) for lo, hi in pairs])
    else:
        src = _padded(np.arange(x.size).reshape(x.shape), pairs, mode)
        dx = np.bincount(src.ravel(), weights=dxp.ravel(), minlength=x.size).reshape(x.shape)
    return y, dx, oracle.filter_grad(xp, dy, w.shape, **geo)


def _first(x_shape, w_shape, fmt, rng):
    """Random x, w in the case's layout and their channels-first views."""
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    return x, w, oracle.x_to_first(x, fmt), oracle.w_to_first(w, fmt)


@budget(70)
@given(mode_cases(), seeds)
@tally.checked_against("oracle", capability="padding_mode")
def test_conv_and_both_gradients_match_np_pad_and_the_oracle(case, seed):
    x_shape, w_shape, kw, mode, pairs = case
    fmt, rng = kw["data_format"], np.random.default_rng(seed)
    x, w, xf, wf = _first(x_shape, w_shape, fmt, rng)
    b = rng.standard_normal(wf.shape[0])
    y_ref = oracle_grads(xf, wf, None, kw, mode, pairs)[0] + b.reshape((-1,) + (1,) * (xf.ndim - 2))
    dy = oracle.x_from_first(rng.standard_normal(y_ref.shape), fmt)
    _, dx_ref, dw_ref = oracle_grads(xf, wf, oracle.x_to_first(dy, fmt), kw, mode, pairs)
    x0, w0 = x.copy(), w.copy()
    y, pullback = convgrad.conv_vjp(x, w, b, **kw)
    dx, dw, db = pullback(dy)
    np.testing.assert_allclose(oracle.x_to_first(y, fmt), y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(oracle.x_to_first(dx, fmt), dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(oracle.w_to_first(dw, fmt), dw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, oracle.bias_grad(oracle.x_to_first(dy, fmt)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(convgrad.conv_input_grad(dy, w, x.shape, **kw), dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(convgrad.conv_filter_grad(x, dy, w.shape, **kw), dw, rtol=1e-12, atol=1e-12)
    assert np.array_equal(x, x0) and np.array_equal(w, w0)  # inputs never written
    p = convgrad.prepare(x.shape, w.shape, **kw)
    np.testing.assert_allclose(p(x, w), convgrad.conv(x, w, **kw), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.input_grad(dy, w), dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.filter_grad(x, dy), dw, rtol=1e-12, atol=1e-12)


@budget(60)
@given(mode_cases(), seeds)
def test_adjoint_identity_for_every_mode(case, seed):
    """<conv(x, w), dy> == <x, input_grad(dy)> == <w, filter_grad(x, dy)>, and conv_transpose
    with the mode is the adjoint of the conv with the mode: <conv(x, w), y> == <x, conv_transpose(y, w)>."""
    x_shape, w_shape, kw, _, _ = case
    result = cgt.dot_test(x_shape, w_shape, seed=seed, **kw)
    assert result.passed, str(result)
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y = rng.standard_normal(convgrad.conv(x, w, **kw).shape)
    tkw = {**kw, "output_shape": x_shape}
    xt, pullback = convgrad.conv_transpose_vjp(y, w, **tkw)
    np.testing.assert_allclose(xt, convgrad.conv_transpose(y, w, **tkw), rtol=1e-12, atol=1e-12)
    lhs = np.vdot(convgrad.conv(x, w, **kw), y)
    scale = np.linalg.norm(x) * np.linalg.norm(w) * np.linalg.norm(y) + 1.0
    assert abs(lhs - np.vdot(x, xt)) <= 1e-12 * scale
    d_y, d_w, _ = pullback(x)  # the transpose's pullback: the conv of x, and the filter gradient
    assert abs(np.vdot(d_y, y) - np.vdot(x, xt)) <= 1e-12 * scale
    assert abs(np.vdot(d_w, w) - np.vdot(x, xt)) <= 1e-12 * scale


@budget(30)
@given(mode_cases(ranks=(1, 2)), seeds)
def test_second_order_pullbacks_with_a_mode_are_adjoints(case, seed):
    """conv_input_grad_vjp and conv_filter_grad_vjp under a mode: each pullback is the adjoint
    of the map it pulls back (checked by inner products)."""
    x_shape, w_shape, kw, _, _ = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(convgrad.conv(x, w, **kw).shape)
    dx, pb = convgrad.conv_input_grad_vjp(dy, w, x_shape, **kw)
    g = rng.standard_normal(dx.shape)
    d_dy, d_w = pb(g)
    scale = np.linalg.norm(g) * np.linalg.norm(w) * np.linalg.norm(dy) + 1.0
    assert abs(np.vdot(dx, g) - np.vdot(d_dy, dy)) <= 1e-12 * scale
    assert abs(np.vdot(dx, g) - np.vdot(d_w, w)) <= 1e-12 * scale
    dw, pb = convgrad.conv_filter_grad_vjp(x, dy, w_shape, **kw)
    g = rng.standard_normal(dw.shape)
    d_x, d_dy = pb(g)
    scale = np.linalg.norm(g) * np.linalg.norm(x) * np.linalg.norm(dy) + 1.0
    assert abs(np.vdot(dw, g) - np.vdot(d_x, x)) <= 1e-12 * scale
    assert abs(np.vdot(dw, g) - np.vdot(d_dy, dy)) <= 1e-12 * scale


# --- real PyTorch: nn.Conv1d/2d/3d(padding_mode=...) with autograd -----------------------------
TORCH_MODES = ("zeros", "reflect", "replicate", "circular")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny convs: a second intra-op thread only waits (x1000 slower on a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@st.composite
def torch_cases(draw):
    mode = draw(st.sampled_from(TORCH_MODES))
    rank = draw(st.sampled_from((1, 2, 3)))
    small = rank == 3
    kernel, stride, dilation = draw(windows(rank, max_kernel=3 if small else 4,
                                            max_dilation=2 if small else 3))
    keff = [oracle.k_eff(k, d) for k, d in zip(kernel, dilation)]
    spatial = tuple(draw(st.integers(max(1, -(-(k + 2) // 3)), k + 2 - small)) for k in keff)
    kind = draw(st.sampled_from(["int", "per_dim", "same", "valid"]))
    if kind == "same":
        stride = (1,) * rank  # PyTorch refuses 'same' with a stride
    padding = {"same": "same", "valid": "valid",
               "int": draw(st.integers(0, 3)),
               "per_dim": tuple(draw(st.integers(0, 3)) for _ in range(rank))}[kind]
    pairs = oracle.resolve_padding(padding, spatial, kernel, stride, dilation)
    assume(all(lo <= MAX_PAD[mode](n) and hi <= MAX_PAD[mode](n) for n, (lo, hi) in zip(spatial, pairs)))
    assume(all(n + lo + hi >= k for n, (lo, hi), k in zip(spatial, pairs, keff)))
    c, o, g = draw(channels())
    return {"mode": mode, "spatial": spatial, "kernel": kernel, "stride": stride, "dilation": dilation,
            "padding": padding, "channels": (c, o, g), "batch": draw(st.integers(1, 2)),
            "bias": draw(st.booleans()), "fmt": draw(st.sampled_from(["channels_first", "channels_last"]))}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
@budget(320)
@given(torch_cases(), seeds)
@tally.checked_against("torch", capability="padding_mode")
def test_matches_pytorch_conv_modules_with_autograd(case, seed):
    """Forward, input and weight (and bias) gradients of ``nn.ConvNd(padding_mode=...)``."""
    c, o, g = case["channels"]
    rank, fmt = len(case["kernel"]), case["fmt"]
    module = getattr(torch.nn, f"Conv{rank}d")(
        c, o, case["kernel"], stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
        groups=g, bias=case["bias"], padding_mode=case["mode"], dtype=torch.float64)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((case["batch"], c, *case["spatial"]))
    xt = torch.tensor(x, requires_grad=True)
    y_ref = module(xt)
    dy = rng.standard_normal(tuple(y_ref.shape))
    y_ref.backward(torch.tensor(dy))
    w = module.weight.detach().numpy()
    b = module.bias.detach().numpy() if case["bias"] else None
    kw = {"stride": case["stride"], "padding": case["padding"], "dilation": case["dilation"], "groups": g,
          "padding_mode": case["mode"], "data_format": fmt}
    y, pullback = convgrad.conv_vjp(oracle.x_from_first(x, fmt), oracle.w_from_first(w, fmt), b, **kw)
    dx, dw, db = pullback(oracle.x_from_first(dy, fmt))
    np.testing.assert_allclose(oracle.x_to_first(y, fmt), y_ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(oracle.x_to_first(dx, fmt), xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(oracle.w_to_first(dw, fmt), module.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
    if case["bias"]:
        np.testing.assert_allclose(db, module.bias.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
@budget(40)
@given(torch_cases(), seeds, st.booleans())
@tally.checked_against("torch", capability="padding_mode")
def test_torch_front_conv_layers_match_pytorch_layers(case, seed, unbatched):
    """convgrad.torch.nn.Conv1d/2d/3d with torch's weights: forward and ``.vjp`` against the real
    layer's output and autograd gradients."""
    c, o, g = case["channels"]
    rank = len(case["kernel"])
    kw = {"stride": case["stride"], "padding": case["padding"], "dilation": case["dilation"], "groups": g,
          "bias": case["bias"], "padding_mode": case["mode"]}
    real = getattr(torch.nn, f"Conv{rank}d")(c, o, case["kernel"], dtype=torch.float64, **kw)
    ours = getattr(ctorch.nn, f"Conv{rank}d")(c, o, case["kernel"], dtype=np.float64, **kw)
    assert ours.weight.shape == tuple(real.weight.shape) and repr(ours) == repr(real)
    ours.weight = real.weight.detach().numpy()
    ours.bias = real.bias.detach().numpy() if case["bias"] else None
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c, *case["spatial"]) if unbatched else (case["batch"], c, *case["spatial"]))
    xt = torch.tensor(x, requires_grad=True)
    y_ref = real(xt)
    dy = rng.standard_normal(tuple(y_ref.shape))
    y_ref.backward(torch.tensor(dy))
    np.testing.assert_allclose(ours(x), y_ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    y, pullback = ours.vjp(x)
    dx, dw, db = pullback(dy)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, real.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
    if case["bias"]:
        np.testing.assert_allclose(db, real.bias.grad.numpy(), rtol=1e-10, atol=1e-10)
    else:
        assert db is None


@pytest.mark.parametrize("kwargs, message", [
    ({"padding_mode": "symmetric"}, r"padding_mode must be one of \['zeros', 'reflect', 'replicate', "
                                    r"'circular'\]"),
    ({"groups": 2}, r"in_channels must be divisible by groups"),
    ({"padding": "same", "stride": 2}, r"padding='same' is not supported for strided convolutions"),
    ({"padding": "full"}, r"Invalid padding string 'full'"),
])
def test_torch_front_conv_layer_refusals(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ctorch.nn.Conv2d(3, 4, 3, **kwargs)


def test_torch_front_layer_weights_follow_torchs_initial_distribution():
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in / groups * prod(K), as nn.Conv2d's."""
    m = ctorch.nn.Conv2d(8, 6, (3, 2), groups=2)
    bound = 1 / np.sqrt(4 * 3 * 2)
    assert m.weight.dtype == np.float32 and m.weight.shape == (6, 4, 3, 2)
    assert np.abs(m.weight).max() <= bound and np.abs(m.bias).max() <= bound
    assert np.abs(m.weight).max() > bound / 2  # spread over the range, not clustered at 0


# --- scipy.ndimage.correlate in each of its modes ------------------------------------------------
NDIMAGE_MODES = ("reflect", "constant", "nearest", "mirror", "wrap", "grid-constant", "grid-mirror",
                 "grid-wrap")


@budget(110)
@given(st.sampled_from(NDIMAGE_MODES), st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data(), seeds)
@tally.checked_against("scipy", capability="padding_mode")
def test_matches_scipy_ndimage_correlate(mode, kernel, data, seed):
    """ndimage centres the kernel on sample k // 2 (origin 0): pads (k // 2, k - 1 - k // 2), one
    channel, stride 1, the mode spelled as SciPy spells it."""
    spatial = [data.draw(st.integers(k, k + 3)) for k in kernel]  # ndimage reflects past the edge again
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(spatial), rng.standard_normal(kernel)
    ref = ndimage.correlate(x, w, mode=mode)
    pads = [(k // 2, k - 1 - k // 2) for k in kernel]
    y = convgrad.conv(x[None, None], w[None, None], padding=pads, padding_mode=("scipy", mode))
    np.testing.assert_allclose(y[0, 0], ref, rtol=1e-12, atol=1e-12)


# --- names and refusals ------------------------------------------------------------------------
def test_the_reflect_trap_scipy_reflect_is_symmetric():
    """Plain 'reflect' is NumPy's / PyTorch's / TF's; SciPy's 'reflect' (half-sample) only when
    qualified, and SciPy-only names are refused with the qualified spelling in the message."""
    x, w = np.arange(4.0).reshape(1, 1, 4), np.array([[[1.0, 0.0, 0.0]]])
    y_plain = convgrad.conv(x, w, padding=[(2, 0)], padding_mode="reflect")
    assert np.array_equal(y_plain[0, 0], np.pad(x[0, 0], (2, 0), mode="reflect")[:4])
    y_scipy = convgrad.conv(x, w, padding=[(2, 0)], padding_mode=("scipy", "reflect"))
    assert np.array_equal(y_scipy[0, 0], np.pad(x[0, 0], (2, 0), mode="symmetric")[:4])
    for name in ("mirror", "nearest", "grid-wrap"):
        with pytest.raises(ValueError, match=rf"padding_mode='{name}'.*\('scipy', '{name}'\)"):
            convgrad.conv(x, w, padding=1, padding_mode=name)


X3, W3 = np.ones((1, 1, 3)), np.ones((1, 1, 3))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"padding": 3, "padding_mode": "reflect"}, ValueError, r"'reflect' needs each pad smaller.*\(3, 3\)"),
    ({"padding": 4, "padding_mode": "circular"}, ValueError, r"'circular' needs each pad at most.*\(4, 4\)"),
    ({"padding": 4, "padding_mode": "SYMMETRIC"}, ValueError, r"'symmetric' needs each pad at most"),
    ({"padding": [(-1, 2)], "padding_mode": "edge"}, ValueError, r"'replicate' cannot crop.*\(-1, 2\)"),
    ({"padding": 1, "padding_mode": "zero"}, ValueError, r"unknown padding_mode='zero'"),
    ({"padding": 1, "padding_mode": ("torch", "symmetric")}, ValueError, r"torch has no mode 'symmetric'"),
    ({"padding": 1, "padding_mode": ("keras", "reflect")}, ValueError, r"unknown framework 'keras'"),
    ({"padding": 1, "padding_mode": 0}, TypeError, r"padding_mode must be a string"),
    ({"padding": 1, "padding_mode": None}, TypeError, r"padding_mode must be a string"),
])
def test_refusals_name_the_parameter_and_its_value(kwargs, error, message):
    dy = np.ones(convgrad.conv(X3, W3, padding=kwargs["padding"]).shape)
    for call in (lambda: convgrad.conv(X3, W3, **kwargs),
                 lambda: convgrad.conv_input_grad(dy, W3, (3,), **kwargs),
                 lambda: convgrad.conv_filter_grad(X3, dy, (3,), **kwargs),
                 lambda: convgrad.prepare(X3.shape, W3.shape, **kwargs)):
        with pytest.raises(error, match=message):
            call()


def test_empty_axis_cannot_be_padded_by_copies():
    with pytest.raises(ValueError, match="no sample to copy"):
        convgrad.conv(np.ones((1, 1, 0)), np.ones((1, 1, 1)), padding=1, padding_mode="replicate")


def test_zero_pads_and_zeros_mode_are_the_plain_conv():
    """A mode with nothing to fill changes nothing (same values as padding_mode='zeros')."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3))
    plain = convgrad.conv(x, w)
    for mode in ("reflect", "symmetric", "replicate", "circular"):
        assert np.array_equal(convgrad.conv(x, w, padding_mode=mode), plain)


def test_the_padded_copy_is_checked_against_the_budget():
    x, w = np.ones((1, 1, 64, 64)), np.ones((1, 1, 3, 3))
    need = math.prod((1, 1, 66, 66)) * 8
    with pytest.raises(ValueError, match=r"reflect-padded x \(1, 1, 66, 66\) needs"):
        convgrad.conv(x, w, padding=1, padding_mode="reflect", workspace_bytes=need - 1)


@st.composite
def pad_maps(draw):
    """(PadMap, x shape, first spatial axis, dtype, mode): pads up to the size the mode allows
    (replicate past it), ranks 1-3, strides that leave the last samples unread (a ``valid``
    shorter than x padded), either layout."""
    mode = draw(st.sampled_from(["reflect", "symmetric", "replicate", "circular"]))
    rank = draw(st.integers(1, 3))
    spatial = [draw(st.integers(1 if mode != "reflect" else 2, 6)) for _ in range(rank)]
    top = {"replicate": lambda n: 2 * n + 1}.get(mode, MAX_PAD[mode])
    pairs = [(draw(st.integers(0, top(n))), draw(st.integers(0, top(n)))) for n in spatial]
    kernel = [draw(st.integers(1, n + lo + hi)) for n, (lo, hi) in zip(spatial, pairs)]
    stride = [draw(st.integers(1, 3)) for _ in range(rank)]
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    geom = ConvGeometry.for_conv((n, c, *spatial), (1, c, *kernel), stride=stride, padding=pairs)
    assume(any(p != (0, 0) for p in pairs))
    first = draw(st.sampled_from([1, 2]))
    shape = (n, c, *spatial) if first == 2 else (n, *spatial, c)
    dtype = draw(st.sampled_from([np.float64, np.float32, np.complex128]))
    return PadMap.build(mode, geom), shape, first, dtype, mode


@budget(60)
@given(pad_maps(), seeds)
@tally.checked_against("oracle", capability="padding_mode")
def test_compiled_and_numpy_pad_and_fold_match_np_pad_and_the_index_sums(case, seed):
    """Both paths of ``PadMap.pad`` (the compiled gather of engines/_kernels/padmode.py and
    NumPy's copies) are np.pad cropped to the VALID conv's input, bitwise; both folds are the
    sum of each padded position's value onto the sample np.pad copied there (a bincount over
    np.pad of x's flat indices); the compiled fold's bits do not depend on its thread count."""
    pad_map, shape, first, dtype, mode = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    rank = len(pad_map.sizes)
    crop = (slice(None),) * first + tuple(slice(0, v) for v in pad_map.valid.in_spatial)
    width = [(0, 0)] * len(shape)
    width[first:first + rank] = pad_map.pads
    want = np.pad(x, width, mode=NP_MODE[mode])[crop]
    src = np.pad(np.arange(x.size).reshape(shape), width, mode=NP_MODE[mode])[crop]
    g = rng.standard_normal(want.shape).astype(dtype)
    total = np.bincount(src.ravel(), weights=g.real.ravel(), minlength=x.size).reshape(shape)
    if g.dtype.kind == "c":
        total = total + 1j * np.bincount(src.ravel(), weights=g.imag.ravel(), minlength=x.size).reshape(shape)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    x0, g0 = x.copy(), g.copy()
    with pytest.MonkeyPatch.context() as m:  # the compiled passes, loaded whatever their size
        m.setattr(_plan, "_DEFAULT", _plan.Planner("eager"))
        assert pad_map._compiled_pad(x, first) is not None and pad_map._compiled_fold(g, first) is not None
        padded, folded = pad_map.pad(x, first, 2**30), pad_map.fold(g, first)
        numba.set_num_threads(1)
        try:
            one = pad_map.fold(g, first)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        assert np.array_equal(one, folded)
    assert np.array_equal(x, x0) and np.array_equal(g, g0)  # the compiled passes write neither
    with pytest.MonkeyPatch.context() as m:  # NumPy's copies
        m.setattr(PadMap, "_compiled_pad", lambda self, x, first: None)
        m.setattr(PadMap, "_compiled_fold", lambda self, g, first: None)
        padded_np, folded_np = pad_map.pad(x, first, 2**30), pad_map.fold(g.copy(), first)
    for got in (padded, padded_np):
        assert got.shape == want.shape and np.array_equal(got, want)
    for got in (folded, folded_np):
        assert got.shape == shape and got.dtype == dtype
        np.testing.assert_allclose(got, total, rtol=tol, atol=tol * np.abs(g).sum(initial=1))
