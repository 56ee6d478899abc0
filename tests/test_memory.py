"""The workspace budget: absurd sizes fail clearly before allocating, small budgets still work."""

from __future__ import annotations

import math

import numpy as np
import pytest

import convgrad
import oracle as O
from checks import assert_close, finishes_within

TOO_BIG = r"needs [\d,]+ bytes, more than the workspace budget of [\d,]+ bytes"
GUARD = 10  # seconds; every call below should take milliseconds


def test_huge_padding_is_a_value_error():
    x, w = np.ones((1, 1, 4)), np.ones((1, 1, 3))
    message = r"the result \(1, 1, 2199023255554\) needs 17,592,186,044,432 bytes"
    with finishes_within(GUARD), pytest.raises(ValueError, match=message):
        convgrad.conv(x, w, padding=2**40)
    with finishes_within(GUARD), pytest.raises(ValueError, match=TOO_BIG):
        convgrad.conv(x, w, padding=[(2**40, 0)], data_format="channels_first")
    with finishes_within(GUARD), pytest.raises(ValueError, match=TOO_BIG):
        convgrad.conv_general(x, w, padding=[(0, 2**40)])
    with finishes_within(GUARD), pytest.raises(ValueError, match=TOO_BIG):
        convgrad.conv_general(x, w, lhs_dilation=2**40)


def test_huge_output_shape_is_a_value_error():
    x, w = np.ones((1, 1, 3)), np.ones((1, 1, 3))
    s = 2**40
    with finishes_within(GUARD), pytest.raises(ValueError, match=TOO_BIG):
        convgrad.conv_transpose(x, w, stride=s, output_shape=(2 * s + 3,))
    with finishes_within(GUARD), pytest.raises(ValueError, match=TOO_BIG):
        convgrad.conv_transpose(x, w, stride=s)
    with finishes_within(GUARD), pytest.raises(ValueError, match=TOO_BIG):
        convgrad.conv_input_grad(x, w, (2 * s + 3,), stride=s)


def test_huge_padding_with_a_small_output_is_zero_or_a_value_error():
    # One output window, in a padded input 2**41 samples long: it reads only padding.
    x, w = np.ones((1, 1, 4)), np.ones((1, 1, 1))
    try:
        with finishes_within(GUARD):
            y = convgrad.conv(x, w, padding=2**40, stride=2**42)
    except ValueError as e:
        assert "workspace budget" in str(e)
    else:
        assert_close(y, np.zeros((1, 1, 1)))


def test_huge_stride_on_a_small_input_is_immediate():
    """A stride far past the input leaves one window per dim: small results, computed at once
    (nothing may loop over the stride's value)."""
    x = np.arange(1.0, 5.0).reshape(1, 1, 4)
    w = np.full((1, 1, 1), 2.0)
    s = 2**40
    with finishes_within(GUARD):
        assert_close(convgrad.conv(x, w, stride=s), [[[2.0]]])
    with finishes_within(GUARD):
        assert_close(convgrad.conv_input_grad(np.ones((1, 1, 1)), w, (4,), stride=s), [[[2.0, 0, 0, 0]]])
    with finishes_within(GUARD):
        assert_close(convgrad.conv_filter_grad(x, np.ones((1, 1, 1)), (1,), stride=s), [[[1.0]]])
    with finishes_within(GUARD):
        assert_close(convgrad.conv_transpose(np.ones((1, 1, 1)), w, stride=s), [[[2.0]]])


def test_workspace_bytes_too_small():
    x, w = np.ones((2, 3, 16)), np.ones((4, 3, 3))
    with pytest.raises(ValueError, match=r"the result \(2, 4, 14\) needs 896 bytes, more than the "
                                         r"workspace budget of 100 bytes; raise it with workspace_bytes="):
        convgrad.conv(x, w, workspace_bytes=100)
    for fn, args in [(convgrad.conv_input_grad, (np.ones((2, 4, 14)), w, x.shape)),
                     (convgrad.conv_filter_grad, (x, np.ones((2, 4, 14)), w.shape)),
                     (convgrad.conv_transpose, (np.ones((2, 4, 14)), w))]:
        with pytest.raises(ValueError, match=r"workspace budget of 100 bytes"):
            fn(*args, workspace_bytes=100)


def test_environment_variable_sets_the_default_budget(monkeypatch):
    x, w = np.ones((2, 3, 16)), np.ones((4, 3, 3))
    monkeypatch.setenv(convgrad.WORKSPACE_ENV, "100")
    assert convgrad.WORKSPACE_ENV == "CONVGRAD_WORKSPACE_BYTES"
    with pytest.raises(ValueError, match=r"workspace budget of 100 bytes.*\$CONVGRAD_WORKSPACE_BYTES"):
        convgrad.conv(x, w)
    # The keyword wins over the environment.
    assert_close(convgrad.conv(x, w, workspace_bytes=10**6), O.conv(x, w))
    monkeypatch.setenv(convgrad.WORKSPACE_ENV, "lots")
    with pytest.raises(ValueError, match=r"CONVGRAD_WORKSPACE_BYTES='lots' is not an integer"):
        convgrad.conv(x, w)
    monkeypatch.setenv(convgrad.WORKSPACE_ENV, "0")
    with pytest.raises(ValueError, match=r"CONVGRAD_WORKSPACE_BYTES must be positive, got 0"):
        convgrad.conv(x, w)
    monkeypatch.delenv(convgrad.WORKSPACE_ENV)
    assert convgrad.DEFAULT_WORKSPACE_BYTES == 2 * 1024**3
    assert_close(convgrad.conv(x, w), O.conv(x, w))


def _smallest_budget(fn):
    """The smallest workspace_bytes with which ``fn(workspace_bytes=...)`` runs, by bisection;
    every refusal on the way must be the budget's ValueError."""
    lo, hi = 1, 2**31
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            fn(workspace_bytes=mid)
        except ValueError as e:
            assert "workspace budget" in str(e), str(e)
            lo = mid + 1
        else:
            hi = mid
    return lo


X_SHAPE, W_SHAPE = (2, 3, 20, 20), (4, 3, 5, 5)


@pytest.mark.parametrize("op", ["forward", "input_grad", "filter_grad"])
@pytest.mark.parametrize("stride", [1, 2])
def test_small_budget_blocks_the_work_and_stays_correct(op, stride):
    """im2col packs a few rows at a time: the smallest budget it needs is far below the full
    packed matrix, and the result at that budget is still right."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(X_SHAPE), rng.standard_normal(W_SHAPE)
    y = O.conv(x, w, stride=stride, padding=1)
    dy = rng.standard_normal(y.shape)
    calls = {
        "forward": (lambda **kw: convgrad.conv(x, w, stride=stride, padding=1, method="im2col", **kw), y),
        "input_grad": (lambda **kw: convgrad.conv_input_grad(dy, w, x.shape, stride=stride, padding=1,
                                                             method="im2col", **kw),
                       O.input_grad(dy, w, x.shape, stride=stride, padding=1)),
        "filter_grad": (lambda **kw: convgrad.conv_filter_grad(x, dy, w.shape, stride=stride, padding=1,
                                                               method="im2col", **kw),
                        O.filter_grad(x, dy, w.shape, stride=stride, padding=1)),
    }
    fn, want = calls[op]
    smallest = _smallest_budget(fn)
    packed = math.prod(y.shape[:1] + y.shape[2:]) * math.prod(W_SHAPE[1:]) * 8
    assert smallest < packed / 2, (smallest, packed)
    assert_close(fn(workspace_bytes=smallest), want)
    with pytest.raises(ValueError, match="workspace budget"):
        fn(workspace_bytes=smallest - 1)


@pytest.mark.parametrize("method", convgrad.engine_names())
def test_every_engine_is_correct_at_its_smallest_budget(method):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((4, 1, 3, 3))
    kw = {"padding": 1, "groups": 4, "method": method}
    try:
        want = convgrad.conv(x, w, **kw)
    except ValueError as e:
        assert f"method={method!r} cannot run" in str(e)
        return
    assert_close(want, O.conv(x, w, padding=1, groups=4))
    smallest = _smallest_budget(lambda **b: convgrad.conv(x, w, **kw, **b))
    assert_close(convgrad.conv(x, w, workspace_bytes=smallest, **kw), want)
