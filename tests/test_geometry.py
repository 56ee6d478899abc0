"""ConvGeometry: every shape and pad it derives, against the oracle's formulas; and the plan."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import given

import convgrad
import oracle as O
from strategies import budget, conv_cases, general_cases, transpose_cases


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


@budget(80)
@given(general_cases())
def test_derived_sizes_match_their_definitions(case):
    """tight_padded, reach and group_dims against the oracle's pad / crop of x, per axis."""
    geom = convgrad.ConvGeometry.for_general(case.x_shape, case.w_shape, **case.kwargs)
    g, cg, og, taps = geom.group_dims
    assert (g * cg, g * og, taps) == (geom.in_channels, geom.out_channels, int(np.prod(geom.kernel)))
    for axis, (n, pair) in enumerate(zip(geom.dilated_input, geom.tight_padding)):
        signal = np.arange(1.0, n + 1).reshape(1, 1, n)
        padded = O.pad_or_crop(signal, [pair])[0, 0]
        o, s, k = geom.out_spatial[axis], geom.stride[axis], geom.kernel_eff[axis]
        # Tight: the last window ends on the last padded sample.
        assert geom.tight_padded[axis] == len(padded) == (o - 1) * s + k
        start, stop, lead = geom.reach[axis]
        assert 0 <= start <= stop <= n
        want = [signal[0, 0, start + i - lead] if 0 <= i - lead < stop - start else 0.0
                for i in range(len(padded))]
        np.testing.assert_array_equal(padded, want)


def test_input_grad_and_transpose_state_the_same_valid_range():
    """One validation of the map from x's size to dy's, whichever function was called."""
    dy, w = np.ones((1, 1, 3)), np.ones((1, 1, 3))
    tail = (r"in spatial dim 0 \(array axis 2[^)]*\) the forward conv maps sizes 7\.\.8 to 3, not 10; "
            r"valid spatial \w+ sizes are \[\(7, 8\)\]")
    with pytest.raises(ValueError, match=tail):
        convgrad.conv_input_grad(dy, w, (1, 1, 10), stride=2)
    with pytest.raises(ValueError, match=tail):
        convgrad.conv_transpose(dy, w, stride=2, output_shape=(10,))
    for n in (7, 8):  # and both accept the range they state
        assert convgrad.conv_input_grad(dy, w, (n,), stride=2).shape == (1, 1, n)


def test_conv_params_are_canonical_and_checked():
    from convgrad._geometry import ConvParams

    p = ConvParams.parse(2, stride=[2, 1], padding="SAME", dilation=2, groups=3, data_format="Channels_Last")
    assert (p.stride, p.dilation, p.groups, p.data_format) == ((2, 1), (2, 2), 3, "channels_last")
    assert p.pads((5, 4), (3, 3)) == ((2, 2), (2, 2))  # SAME totals: (3 - 1) * 2 + 5 - 5, (4 - 1) * 1 + 5 - 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.groups = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"stride must have one value per spatial dim \(2\), got 3"):
        ConvParams.parse(2, stride=(1, 1, 1))
    with pytest.raises(TypeError, match=r"groups must be an integer, got 1\.5"):
        ConvParams.parse(1, groups=1.5)


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


def test_geometry_represents_empty_outputs_and_conv_refuses_them():
    """out = max(0, (padded - k_eff) // s + 1), as JAX's stride_dim: 0 where the kernel is larger
    than the padded input; for_conv (conv and its gradients) refuses it with the sizes."""
    G = convgrad.ConvGeometry
    geom = G(2, 3, 4, (5, 2), (3, 3), (1, 2), ((0, 0), (0, 0)), (1, 1), (1, 1))
    assert geom.out_spatial == (3, 0) and geom.empty and geom.y_shape() == (2, 4, 3, 0)
    assert not G(2, 3, 4, (5, 3), (3, 3), (1, 2), ((0, 0), (0, 0)), (1, 1), (1, 1)).empty
    message = (r"larger than the padded input in "
               r"spatial dim 1 \(array axis 3[^)]*\): effective kernel size 3 .* > padded input size 2 ")
    with pytest.raises(ValueError, match=message):
        geom.require_nonempty()
    with pytest.raises(ValueError, match=message):
        G.for_conv((2, 3, 5, 2), (4, 3, 3, 3), stride=(1, 2))
    assert G.for_general((2, 3, 5, 2), (4, 3, 3, 3), stride=(1, 2)) == geom


@budget(60)
@given(conv_cases(ranks=(1, 2)))
def test_input_grad_accepts_exactly_the_sizes_it_states(case):
    """conv_input_grad's input_shape: every size the forward conv maps to dy's size is accepted,
    every other is refused, and the refusal states the accepted range."""
    geom = convgrad.ConvGeometry.for_conv(case.x_shape, case.w_shape, **case.kwargs)
    geo, fmt = case.geometry, case.data_format
    kernel, rank = geom.kernel, geom.rank
    stride, dilation = O.per_dim(geo["stride"], rank), O.per_dim(geo["dilation"], rank)
    dy_shape = geom.y_shape(fmt)
    accepted, stated = [], set()
    for m in range(0, geom.in_spatial[0] + 2 * stride[0] + 2):
        sizes = (m, *geom.in_spatial[1:])
        pairs = O.resolve_padding(geo["padding"], sizes, kernel, stride, dilation)
        maps = O.out_size(m, kernel[0], stride[0], dilation[0], *pairs[0]) == geom.out_spatial[0]
        try:
            convgrad.ConvGeometry.for_input_grad(dy_shape, case.w_shape, sizes, **case.kwargs)
        except ValueError as e:
            assert not maps, (m, str(e))
            found = re.search(r"in spatial dim 0 \(array axis 2[^)]*\) the forward conv maps sizes "
                              r"(\d+)\.\.(\d+) to", str(e))
            if found:
                stated.add((int(found[1]), int(found[2])))
            continue
        assert maps, m
        accepted.append(m)
    assert geom.in_spatial[0] in accepted
    assert len(stated) <= 1
    for lo, hi in stated:
        assert accepted == list(range(lo, hi + 1))


ConvGeometry = convgrad.ConvGeometry


@pytest.mark.parametrize(("build", "args", "kwargs"), [
    (ConvGeometry.for_conv, ((2, 3, 9), (4, 3, 3)), {"stride": 2, "padding": "same"}),
    (ConvGeometry.for_general, ((2, 3, 9), (4, 3, 3)), {"lhs_dilation": [2], "padding": [(1, 0)]}),
    (ConvGeometry.for_transpose, ((2, 4, 5), (4, 3, 3)), {"stride": 2, "output_padding": 1}),
    (ConvGeometry.for_input_grad, ((2, 4, 5), (4, 3, 3), (10,)), {"stride": 2, "padding": 1}),
    (ConvGeometry.for_filter_grad, ((2, 3, 10), (2, 4, 5), (3,)), {"stride": 2, "padding": 1}),
])
def test_every_constructor_remembers_its_geometries_by_typed_arguments(build, args, kwargs):
    """A repeated call returns the geometry built the first time; an argument equal in value but
    of another type (the bool True for the stride 1) is checked afresh, and refused."""
    first = build(*args, **kwargs)
    assert build(*args, **kwargs) is first
    with pytest.raises(TypeError, match="stride must be an integer, got True"):
        build(*args, **{**kwargs, "stride": True})


@pytest.mark.parametrize(("name", "first", "then"), [
    ("stride", 1, True), ("stride", 1, 1.0), ("stride", (1, 2), [1, 2]), ("stride", (1, 2), (True, 2)),
    ("padding", 1, True), ("padding", ((1, 0), (0, 1)), ((1, 0), (0, True))), ("padding", "same", ("same",)),
    ("dilation", (2, 1), (2.0, 1)), ("groups", 1, True),
])
def test_remembered_geometries_tell_apart_equal_arguments_of_other_types(name, first, then):
    """Geometries are remembered by their arguments (the memo's key), which must not confuse
    values that compare equal but mean something else or are refused (1 and True, 1.0, a list and
    a tuple): after ``first`` is remembered, ``then`` gives what a fresh build gives."""
    build = ConvGeometry.for_conv.__func__.__wrapped__

    def outcome(call):
        try:
            return call()
        except (TypeError, ValueError) as e:
            return type(e), str(e)

    shapes = ((1, 2, 9, 9), (4, 2, 3, 3))
    ConvGeometry.for_conv(*shapes, **{name: first})  # remembered
    fresh = outcome(lambda: build(ConvGeometry, *shapes, **{name: then}))
    assert outcome(lambda: ConvGeometry.for_conv(*shapes, **{name: then})) == fresh
