"""Every invalid input of samples.error_cases() is refused with its exception and message."""

from __future__ import annotations

import time

import numpy as np
import pytest

import convgrad
from convgrad import testing
from samples import error_cases


def _call(case):
    """``func`` names a convgrad callable; ``"f:vjp"`` calls f on all but the last argument and
    then the returned vjp on the last."""
    name, _, then = case.func.partition(":")
    fn = getattr(convgrad, name)
    if then == "vjp":
        _, vjp = fn(*case.args[:-1], **case.kwargs)
        return vjp(case.args[-1])
    return fn(*case.args, **case.kwargs)


@pytest.mark.parametrize("case", list(error_cases()), ids=str)
def test_error_case(case):
    with pytest.raises(case.exc, match=case.match):
        _call(case)


def test_error_case_names_are_unique():
    names = [c.name for c in error_cases()]
    assert len(names) == len(set(names))


def test_unknown_method_lists_every_engine():
    with pytest.raises(ValueError, match=r"unknown method='nope'") as info:
        convgrad.conv(np.ones((1, 1, 4)), np.ones((1, 1, 2)), method="nope")
    for name in convgrad.engine_names():
        assert repr(name) in str(info.value)


# --- holes found by the fuzz (tests/test_fuzz.py); "seed S call i" replays the original with
# ``python tests/fuzz_calls.py --seed S --show i`` as the generator stood when it was found.
GUARD_S = 5.0  # each of these is refused or done in milliseconds


def _huge(shape):
    """A broadcast view of TiBs that costs nothing until something copies it."""
    return np.broadcast_to(np.ones(()), shape)


def _within(seconds, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    assert time.perf_counter() - start < seconds
    return out


def test_empty_batch_with_huge_padding_is_immediate():
    """seed 1 call 6710: the gather engine built its (P, T) index grid of one batch even for an
    empty batch; with 2**31 pads that was 16 GiB (a hang, then the OOM killer)."""
    x, w = np.ones((0, 2, 3)), np.ones((1, 2, 1))
    y = _within(GUARD_S, convgrad.conv, x, w, padding=[(2**31, 0)])
    assert y.shape == (0, 1, 2**31 + 3)
    result = _within(GUARD_S, testing.check_grads, x, w, padding=[(2**31, 0)])
    assert result.passed


def test_a_huge_dilation_with_an_empty_batch_is_empty():
    """seed 41 call 8497 (check_grads' first conv): the gather engine's int64 index arithmetic
    overflowed (OverflowError) for a dilation of 2**62 with 'same' padding."""
    x, w = np.ones((0, 1, 6, 4)), np.ones((2, 1, 2, 2))
    y = _within(GUARD_S, convgrad.conv, x, w, stride=(2, 1), padding="same", dilation=2**62)
    assert y.shape == (0, 2, 3, 4)


def test_no_channels_with_a_huge_kernel_is_immediate():
    """seed 12 call 5133: the vjp's transposed convs have no channels and a kernel of 2**30 taps;
    the gather engine's index grid ignored the empty channel axis."""
    x, w = np.ones((0, 5, 2)), np.ones((3, 2, 2))
    y, pullback = convgrad.conv_general_vjp(x, w, padding=[(2**31, 0)], lhs_dilation=2, rhs_dilation=2,
                                            data_format="channels_last")
    dx, dw = _within(GUARD_S, pullback, np.ones(y.shape))
    assert dx.shape == x.shape and dw.shape == w.shape and not dw.any()


@pytest.mark.parametrize("call, exc, match", [
    # seed 1 call 1816: ZeroDivisionError
    (lambda: testing.check_grads(np.ones((1, 1, 4)), np.ones((1, 1, 2)), eps=0.0), ValueError,
     r"^eps must be positive and finite, got 0.0"),
    (lambda: testing.check_grads(np.ones((1, 1, 4)), np.ones((1, 1, 2)), rtol=None), TypeError,
     r"^rtol must"),
    # seed 11 call 3608: NumPy's "float() argument must be ... not 'dict'"
    (lambda: testing.check_grads(np.ones((1, 1, 4)), {}), TypeError, r"^w has dtype object"),
    # seed 1 calls 4464 and 5220: a negative or NaN rtol failed every check (AssertionError)
    (lambda: testing.dot_test((1, 2, 3), (2, 1, 1), groups=2, rtol=-1.0), ValueError,
     r"^rtol must be non-negative, got -1.0"),
    (lambda: testing.dot_test((1, 2, 3), (2, 2, 1), rtol=float("nan")), ValueError, r"^rtol must"),
    (lambda: testing.dot_test((1, 2, 3), (2, 2, 1), raise_on_failure=1.0), TypeError,
     r"^raise_on_failure must be True or False, got 1.0"),
    (lambda: testing.dot_test((1, 2, 3), (2, 2, 1), seed=-1), ValueError, r"^seed must be None or"),
    # seed 1 call 2715: AttributeError: 'float' object has no attribute 'astype'
    (lambda: testing.dot_test(None, (4, 2, 3)), TypeError, r"^x_shape must be a sequence of ints, got None"),
    # seed 1 call 1706: MemoryError drawing 16 TiB of random numbers
    (lambda: testing.dot_test((2, 2**20, 2**20), (1, 2**20, 1)), ValueError,
     r"\(2, 1048576, 1048576\) needs 17,592,186,044,416 bytes, more than the workspace budget"),
    # seed 13 call 5175: MemoryError for the (O,) result of an empty batch
    (lambda: convgrad.conv_bias_grad(_huge((0, 45812984491, 3))), ValueError,
     r"^the result \(45812984491,\) needs 366,503,875,928 bytes, more than the workspace budget"),
    # seed 15 call 2710: MemoryError listing a (2, 2**38) array given as padding
    (lambda: convgrad.conv_input_grad(np.ones((0, 2, 4, 3)), np.ones((2, 1, 1, 2)), (4, 3),
                                      padding=_huge((2, 2**38))), ValueError,
     r"^padding\[0\] must have at most 64 entries, got 274877906944"),
    # seed 14 call 2077: a hang reading a 2**40-entry array given as output_shape
    (lambda: convgrad.conv_transpose(np.ones((1, 2, 2)), np.ones((2, 1, 2)), output_shape=_huge((2**40,))),
     ValueError, r"^output_shape must have at most 64 entries, got 1099511627776"),
    (lambda: convgrad.conv(np.ones((1, 1, 4)), np.ones((1, 1, 2)), stride=_huge((2**40,))), ValueError,
     r"^stride must have at most 64 entries, got 1099511627776"),
    # seed 21 calls 1096 and 1805: the operator form drew 144 GiB of random x (MemoryError)
    (lambda: testing.dot_test(lambda x: x, lambda y: y, (2**31, 1, 3, 3), (2**31, 1, 3, 3)), ValueError,
     r"^the random x \(2147483648, 1, 3, 3\) needs 154,618,822,656 bytes, more than the workspace"),
    # seed 22 call 996: a negative rtol failed the check (AssertionError)
    (lambda: testing.dot_test(lambda x: x, lambda y: y, (3,), (3,), rtol=-1), ValueError,
     r"^rtol must be non-negative, got -1"),
    # seeds 21, 22: float()'s TypeError for rtol=[...]; NumPy's "truth value ... ambiguous" for
    # an array order; "inhomogeneous shape" and DTypePromotionError for odd args
    (lambda: testing.check_grads(convgrad.conv_vjp, (np.ones((1, 1, 3)), np.ones((1, 1, 2))), rtol=[1.0]),
     TypeError, r"^rtol must be a real number"),
    (lambda: testing.check_grads(convgrad.conv_vjp, (np.ones((1, 1, 3)), np.ones((1, 1, 2))), np.ones(2)),
     TypeError, r"^order must be an integer"),
    (lambda: testing.check_grads(convgrad.conv_vjp, (np.ones((1, 1, 3)), [[1.0], [1.0, 2.0]])),
     TypeError, r"^args\[1\] must be an array of numbers"),
    (lambda: testing.check_grads(convgrad.conv_vjp, (np.ones((1, 1, 3)), np.ones(2, [("a", "f8")]))),
     TypeError, r"^args\[1\] has dtype \[\('a', '<f8'\)\]; expected numbers"),
    # seed 31 call 2742: 'replicate' pads of 2**31 built 32 GiB of index arrays (a hang)
    (lambda: convgrad.conv_jvp(np.ones((1, 2, 4, 3, 1)), np.ones((1, 2, 1, 3, 1)), np.ones((1, 2, 4, 3, 1)),
                               padding=[(2**31, 1)] * 3, padding_mode="replicate"), ValueError,
     r"^the replicate pad indices of spatial axis 0 \(2147483648 \+ 1\) needs 34,359,738,384 bytes"),
    (lambda: convgrad.conv(np.ones((1, 1, 4)), np.ones((1, 1, 2)), padding=2**31, padding_mode="circular"),
     ValueError, r"padding_mode='circular' needs each pad at most the input size"),
    # nightly seed call 94788: a budget raised to 2**70 let a 16 TiB copy reach NumPy (MemoryError)
    (lambda: convgrad.conv_bias_grad(_huge((1, 2, 1, 2**39, 2))[..., ::-1], workspace_bytes=2**70),
     ValueError, r"^a contiguous copy of dy \(1, 1, 549755813888, 2, 2\) needs 17,592,186,044,416 bytes, "
                 r"within the workspace budget"),
    # PreparedConv: NumPy's AttributeError for a list; complex silently lost its imaginary part
    (lambda: convgrad.prepare((1, 2, 4), (1, 2, 2))(np.ones((1, 2, 4)), np.ones((1, 2, 2), complex)),
     TypeError, r"^w has complex dtype"),
], ids=["eps_zero", "rtol_none", "w_dict", "dot_rtol_negative", "dot_rtol_nan", "dot_flag", "dot_seed",
        "dot_x_shape_none", "dot_huge", "bias_grad_result", "huge_padding_array", "huge_output_shape",
        "huge_stride_array", "operator_dot_huge", "operator_dot_rtol", "function_grads_rtol",
        "function_grads_order", "function_grads_ragged", "function_grads_struct", "replicate_huge_pads",
        "circular_huge_pads", "budget_past_memory", "prepared_complex"])
def test_fuzz_findings_are_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        _within(GUARD_S, call)


def test_empty_geometry_result_is_budgeted():
    """seed 14 call 2077: an empty conv_general's pullback returned np.zeros of a broadcast w's
    8 TiB shape (MemoryError) without the budget check every other result gets."""
    x, w = np.ones((0, 8, 4, 3, 1)), _huge((366503875926, 3, 1, 1, 1))
    y, pullback = convgrad.conv_general_vjp(x, w, stride=(2, 1, 2), padding=[(0, -1), (1, 0), (1, -1)],
                                            lhs_dilation=(2, 1, 1), rhs_dilation=(2, 1, 1),
                                            data_format="channels_last")
    with pytest.raises(ValueError, match=r"^the result \(366503875926, 3, 1, 1, 1\) needs [\d,]+ bytes"):
        pullback(np.ones(y.shape))


def test_prepared_conv_takes_lists_as_conv_does():
    """seed 20261206 call 8125: AttributeError: 'list' object has no attribute 'transpose'."""
    x, w = np.arange(8.0).reshape(1, 2, 4), [[[1.0, 2.0], [3.0, 4.0]]]
    np.testing.assert_array_equal(convgrad.prepare((1, 2, 4), (1, 2, 2))(x, w), convgrad.conv(x, np.array(w)))


@pytest.mark.parametrize("method", ["auto", "subpixel", "im2col"])
def test_empty_batch_with_unrepresentable_extents_is_refused_by_name(method):
    """An empty batch whose other extents multiply past 2**63 bytes: NumPy cannot make the result
    (nor the engines' padded scratch: 'array is too big' from inside an engine, before); the op
    names the result shape. One extent less, the empty result comes back without any engine."""
    dy = np.zeros((0, 1, 2**29, 2**29))
    w = np.ones((1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"the result \(0, 1, 1073741824, 1073741824\) of float64 cannot "
                                         r"be a NumPy array"):
        convgrad.conv_input_grad(dy, w, (0, 1, 2**30, 2**30), stride=2, padding=1, method=method)
    with pytest.raises(ValueError, match="cannot be a NumPy array"):
        convgrad.conv_transpose(dy, w, stride=2, padding=1, method=method)
    dx = convgrad.conv_input_grad(dy.astype(np.float32), w.astype(np.float32), (0, 1, 2**30, 2**30),
                                  stride=2, padding=1, method=method)
    assert dx.shape == (0, 1, 2**30, 2**30) and dx.dtype == np.float32
