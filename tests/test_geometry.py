"""ConvGeometry: every shape and pad it derives, against the oracle's formulas; and the plan."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given

import convgrad
import oracle as O
from strategies import budget, conv_cases, transpose_cases


def _first(case):
    fmt = case.data_format
    x = O.x_to_first(np.empty(case.x_shape), fmt).shape
    w = O.w_to_first(np.empty(case.w_shape), fmt).shape
    return x, w


@budget(80)
@given(conv_cases())
def test_conv_geometry_matches_oracle(case):
    geom = convgrad.ConvGeometry.for_conv(case.x_shape, case.w_shape, **case.kwargs)
    (n, _, *spatial), (o, _, *kernel) = _first(case)
    geo = case.geometry
    pairs = O.resolve_padding(geo["padding"], spatial, kernel, geo["stride"], geo["dilation"])
    assert geom.padding == pairs
    out = tuple(O.out_size(s, k, st, d, lo, hi) for s, k, st, d, (lo, hi) in zip(
        spatial, kernel, O.per_dim(geo["stride"], len(kernel)), O.per_dim(geo["dilation"], len(kernel)),
        pairs))
    assert geom.out_spatial == out
    y_first = (n, o, *out)
    assert geom.y_shape("channels_first") == y_first
    assert geom.y_shape(case.data_format) == O.x_from_first(np.empty(y_first), case.data_format).shape
    assert geom.x_shape(case.data_format) == case.x_shape
    assert geom.w_shape(case.data_format) == case.w_shape
    # The conv of any size in input_size_range gives the same output size.
    for dim, (lo, hi) in enumerate(geom.input_size_range()):
        st = O.per_dim(geo["stride"], len(kernel))[dim]
        d = O.per_dim(geo["dilation"], len(kernel))[dim]
        b, a = pairs[dim]
        assert lo <= spatial[dim] <= hi
        for size in range(max(lo, 1), hi + 1):
            assert O.out_size(size, kernel[dim], st, d, b, a) == out[dim]
        assert O.out_size(hi + 1, kernel[dim], st, d, b, a) == out[dim] + 1
    # The two gradient convs map dy back to x's and w's spatial sizes.
    assert geom.input_grad_geometry().out_spatial == tuple(spatial)
    assert geom.filter_grad_geometry().out_spatial == tuple(kernel)


@budget(60)
@given(transpose_cases())
def test_transpose_geometry_output_size(case):
    geom = convgrad.ConvGeometry.for_transpose(case.x_shape, case.w_shape, **case.kwargs)
    assert geom.in_spatial == case.out_spatial
    assert tuple(lo for lo, _ in geom.padding) == case.before
    assert geom.y_shape(case.data_format) == case.x_shape


def test_geometry_is_frozen_and_hashable():
    geom = convgrad.ConvGeometry.for_conv((1, 2, 5), (3, 2, 3), padding="same")
    with pytest.raises(dataclasses.FrozenInstanceError):
        geom.stride = (2,)  # type: ignore[misc]
    assert geom == convgrad.ConvGeometry.for_conv((1, 2, 5), (3, 2, 3), padding=[(1, 1)])
    assert hash(geom) == hash(convgrad.ConvGeometry.for_conv((1, 2, 5), (3, 2, 3), padding=1))


def test_geometry_built_once_per_arguments_and_their_types():
    """for_conv keeps the geometries it built: the same arguments give the same object, but an
    argument equal in value and of another type is checked anew (True is refused as a stride
    after 1 was accepted), and unhashable arguments are still read."""
    G = convgrad.ConvGeometry
    first = G.for_conv((1, 2, 7, 6), (3, 2, 3, 3), stride=1, padding=[(1, 0), (2, 1)])
    assert G.for_conv((1, 2, 7, 6), (3, 2, 3, 3), stride=1, padding=[(1, 0), (2, 1)]) is first
    assert G.for_conv((1, 2, 7, 6), (3, 2, 3, 3), stride=1, padding=((1, 0), (2, 1))) == first
    for bad in (True, 1.0):
        with pytest.raises(TypeError, match="stride"):
            G.for_conv((1, 2, 7, 6), (3, 2, 3, 3), stride=bad, padding=[(1, 0), (2, 1)])
    with pytest.raises(TypeError, match="stride"):  # and again, after the error
        G.for_conv((1, 2, 7, 6), (3, 2, 3, 3), stride=True, padding=[(1, 0), (2, 1)])
    arr = G.for_conv((1, 2, 7, 6), (3, 2, 3, 3), padding=np.array([1, 2]))
    assert arr.padding == ((1, 1), (2, 2))


@pytest.mark.parametrize("method", convgrad.engine_names())
def test_named_method_runs_or_says_why_not(method):
    rng = np.random.default_rng(0)
    cases = [((2, 3, 8, 7), (4, 3, 3, 3), {"padding": 1}),
             ((1, 4, 9, 6), (8, 1, 3, 3), {"groups": 4, "stride": 2}),
             ((2, 2, 11), (3, 2, 5), {"dilation": 2, "padding": "same"})]
    ran = 0
    for x_shape, w_shape, kw in cases:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        try:
            y = convgrad.conv(x, w, method=method, **kw)
        except ValueError as e:
            assert str(e).startswith(f"method={method!r} cannot run this forward: ")
            continue
        np.testing.assert_allclose(y, O.conv(x, w, **kw), rtol=1e-10, atol=1e-12)
        ran += 1
    if method == "im2col":
        assert ran == len(cases)  # the general engine runs every geometry


def test_plan_explains_its_choice():
    geom = convgrad.ConvGeometry.for_conv((2, 3, 8, 8), (4, 3, 3, 3), padding=1)
    plan = convgrad.make_plan("forward", geom, np.dtype(np.float64), "auto", 2**30)
    assert isinstance(plan, convgrad.ConvPlan)
    assert plan.engine.name in convgrad.engine_names()
    text = str(plan)
    assert plan.engine.name in text and "forward" in text
    forced = convgrad.make_plan("forward", geom, np.dtype(np.float64), "im2col", 2**30)
    assert forced.engine.name == "im2col"
