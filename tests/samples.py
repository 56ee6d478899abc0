"""Shared, table-driven cases (PyTorch OpInfo style): one place for geometries, one for errors.

``sample_cases()`` yields named ``Case`` objects with shapes in the case's own data format;
``error_cases()`` yields ``ErrorCase`` objects naming a public callable, its arguments, the
exception and a regex over its message (the parameter's name and the echoed values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

import oracle


@dataclass(frozen=True)
class Case:
    name: str
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    kwargs: dict = field(default_factory=dict)

    @property
    def data_format(self) -> str:
        return self.kwargs.get("data_format", "channels_first")

    @property
    def geometry(self) -> dict:
        """stride, padding, dilation, groups: what the oracle takes."""
        return {k: v for k, v in self.kwargs.items() if k != "data_format"}

    def arrays(self, seed: int = 0, dtype=np.float64):
        """Random x, w and dy (dy of the oracle's output shape), in the case's data format."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape).astype(dtype)
        w = rng.standard_normal(self.w_shape).astype(dtype)
        y = oracle.conv(oracle.x_to_first(x, self.data_format),
                        oracle.w_to_first(w, self.data_format), **self.geometry)
        dy = oracle.x_from_first(rng.standard_normal(y.shape), self.data_format).astype(dtype)
        return x, w, np.ascontiguousarray(dy)

    def oracle_grads(self, x, w, dy):
        """(dx, dw) from the oracle's adjoint loops, in the case's data format."""
        fmt, geo = self.data_format, self.geometry
        xf, wf, dyf = oracle.x_to_first(x, fmt), oracle.w_to_first(w, fmt), oracle.x_to_first(dy, fmt)
        dx = oracle.input_grad(dyf, wf, xf.shape, **geo)
        dw = oracle.filter_grad(xf, dyf, wf.shape, **geo)
        return oracle.x_from_first(dx, fmt), oracle.w_from_first(dw, fmt)

    def __str__(self) -> str:
        return self.name


CL = "channels_last"


def sample_cases():
    """Geometries that each stress one convention, plus the products where bugs cluster."""
    yield Case("1d_plain", (2, 3, 8), (4, 3, 3))
    yield Case("1d_stride2_pad1", (2, 2, 9), (3, 2, 3), {"stride": 2, "padding": 1})
    yield Case("1d_even_kernel_same", (1, 2, 7), (2, 2, 4), {"padding": "same"})
    yield Case("1d_even_kernel_same_lower_stride2", (1, 2, 8), (2, 2, 4),
               {"padding": "same_lower", "stride": 2})
    yield Case("1d_same_uppercase_stride3", (2, 1, 10), (1, 1, 3), {"padding": "SAME", "stride": 3})
    yield Case("1d_full_dilated", (1, 2, 5), (2, 2, 3), {"padding": "full", "dilation": 2})
    yield Case("1d_valid_stride3_dilation2", (2, 1, 13), (2, 1, 3),
               {"padding": "valid", "stride": 3, "dilation": 2})
    yield Case("1d_stride_dilation_product", (1, 2, 17), (2, 2, 4),
               {"padding": [(2, 1)], "stride": 3, "dilation": 3})
    yield Case("1d_asymmetric_pads", (2, 2, 6), (3, 2, 3), {"padding": [(2, 0)]})
    yield Case("1d_negative_pads", (1, 2, 9), (2, 2, 2), {"padding": [(-1, -2)], "stride": 2})
    yield Case("1d_pad_and_crop", (1, 1, 8), (1, 1, 3), {"padding": [(3, -1)]})
    yield Case("1d_kernel_fills_padded_input", (1, 1, 3), (1, 1, 5), {"padding": 1})
    yield Case("1d_trailing_input_unread", (1, 1, 10), (1, 1, 3), {"stride": 4})
    yield Case("2d_plain", (2, 3, 5, 6), (4, 3, 3, 2))
    yield Case("2d_depthwise_multiplier2", (2, 3, 6, 5), (6, 1, 3, 3), {"groups": 3, "padding": 1})
    yield Case("2d_groups2", (1, 4, 6, 5), (6, 2, 2, 3), {"groups": 2, "stride": (2, 1)})
    yield Case("2d_asymmetric_per_dim", (2, 2, 6, 7), (2, 2, 3, 2),
               {"padding": [(0, 1), (2, 1)], "stride": (2, 1), "dilation": (1, 2)})
    yield Case("2d_mixed_int_and_pair_pads", (1, 2, 5, 5), (2, 2, 3, 3), {"padding": [1, (0, 2)]})
    yield Case("2d_same_stride_dilation", (1, 2, 9, 8), (3, 2, 3, 2),
               {"padding": "same", "stride": (2, 3), "dilation": (3, 2)})
    yield Case("2d_zero_batch", (0, 2, 5, 5), (3, 2, 3, 3), {"padding": 1})
    yield Case("2d_zero_out_channels", (2, 2, 5, 4), (0, 2, 3, 3))
    yield Case("2d_channels_last_same_stride2", (2, 6, 5, 3), (3, 2, 3, 4),
               {"padding": "same", "stride": 2, "data_format": CL})
    yield Case("2d_channels_last_depthwise", (1, 5, 6, 4), (3, 3, 1, 8),
               {"groups": 4, "padding": "same_lower", "data_format": CL})
    yield Case("2d_channels_last_grouped_negative", (2, 7, 6, 6), (2, 2, 3, 4),
               {"groups": 2, "padding": [(-1, 0), (1, -1)], "stride": 2, "data_format": CL})
    yield Case("3d_plain", (1, 2, 4, 5, 3), (2, 2, 2, 3, 2), {"padding": 1, "stride": (1, 2, 1)})
    yield Case("3d_same_stride2_dilation2", (2, 1, 5, 4, 6), (2, 1, 2, 3, 2),
               {"padding": "same", "stride": 2, "dilation": (2, 1, 2)})
    yield Case("3d_channels_last_groups", (1, 4, 3, 5, 4), (2, 3, 2, 2, 4),
               {"groups": 2, "padding": "full", "data_format": CL})
    yield Case("4d", (1, 2, 3, 4, 3, 3), (2, 1, 2, 2, 1, 2),
               {"groups": 2, "padding": [1, (0, 1), 0, (1, 0)], "stride": (1, 2, 1, 1)})


@dataclass(frozen=True)
class ErrorCase:
    name: str
    func: str
    args: tuple
    kwargs: dict
    exc: type
    match: str

    def __str__(self) -> str:
        return self.name


def error_cases():
    """Every invalid input the public API must refuse, with the message it must give."""
    for family in (_stride_dilation_errors, _group_errors, _padding_errors, _shape_errors, _bias_errors,
                   _gradient_shape_errors, _transpose_size_errors, _dtype_errors, _budget_and_method_errors):
        yield from family()


E = ErrorCase


def _arrays():
    """The arrays most cases share: a 1-d conv with groups=2 (C = 2 * 2), its dy, and the keywords."""
    return np.ones((2, 4, 7)), np.ones((6, 2, 3)), np.ones((2, 6, 5)), {"groups": 2}


def _stride_dilation_errors():
    """stride and dilation (and conv_general's lhs/rhs dilation): non-positive, non-integer, wrong length."""
    x, w, _, g2 = _arrays()
    x2, w2 = np.ones((2, 1, 5, 5)), np.ones((2, 1, 2, 2))
    q = re.escape
    for name in ("stride", "dilation"):
        for bad in (0, -1):
            yield E(f"{name}={bad}", "conv", (x, w), {**g2, name: bad}, ValueError,
                    rf"{name} must be >= 1 .*got {bad}")
        yield E(f"{name}_per_dim_zero", "conv", (x2, w2), {name: (1, 0)},
                ValueError, rf"{name} must be >= 1 .*got \(1, 0\)")
        for bad, text in ((2.0, "2.0"), (True, "True"), ("2", "'2'"), (None, "None")):
            yield E(f"{name}={text}", "conv", (x, w), {**g2, name: bad}, TypeError,
                    rf"{name} must be an int.*got {q(text)}")
        yield E(f"{name}_item_float", "conv", (x2, w2), {name: (1, 1.5)},
                TypeError, rf"{name}\[1\] must be an integer, got 1\.5")
        yield E(f"{name}_wrong_length", "conv", (x, w), {**g2, name: (1, 1)}, ValueError,
                rf"{name} must have one value per spatial dim \(1\), got 2: \(1, 1\)")
        # Past int64 NumPy and Numba overflow inside an engine, naming no parameter.
        for func in ("conv", "conv_transpose", "conv_general"):
            key, kw = (name, g2) if func != "conv_general" else (
                "stride" if name == "stride" else "rhs_dilation", {"feature_group_count": 2})
            yield E(f"{func}_{key}=2**63", func, (x, w), {**kw, key: 2**63}, ValueError,
                    rf"{key}=9223372036854775808 is outside the int64 range")
        yield E(f"{name}_item_2**70", "conv", (x2, w2), {name: (1, 2**70)}, ValueError,
                rf"{name}\[1\]=1180591620717411303424 is outside the int64 range")
    yield E("conv_general_lhs_dilation=0", "conv_general", (x, np.ones((6, 4, 3))),
            {"lhs_dilation": 0}, ValueError, r"lhs_dilation must be >= 1 .*got 0")
    yield E("conv_general_rhs_dilation_float", "conv_general", (x, np.ones((6, 4, 3))),
            {"rhs_dilation": 1.0}, TypeError, r"rhs_dilation must be an integer, got 1\.0")
    yield E("dilated_kernel_larger_than_padded_input", "conv", (x, w), {**g2, "dilation": 4},
            ValueError, r"effective kernel size 9 \(kernel 3, dilation 4\) > padded input size 7")


def _group_errors():
    """groups, feature and batch group counts, and the channel counts they must divide."""
    x, w, dy, g2 = _arrays()
    q = re.escape
    for bad in (0, -2):
        yield E(f"groups={bad}", "conv", (x, w), {"groups": bad}, ValueError,
                rf"groups must be a positive integer, got {bad}")
    for bad, text in ((2.0, "2.0"), (True, "True"), ("2", "'2'"), (None, "None")):
        yield E(f"groups={text}", "conv", (x, w), {"groups": bad}, TypeError,
                rf"groups must be an integer, got {q(text)}")
    yield E("conv_general_feature_group_count=0", "conv_general", (x, w),
            {"feature_group_count": 0}, ValueError, r"feature_group_count must be a positive integer, got 0")
    yield E("conv_general_batch_group_count=0", "conv_general", (x, np.ones((6, 4, 3))),
            {"batch_group_count": 0}, ValueError, r"batch_group_count must be a positive integer, got 0")
    yield E("channels_not_groups_times_w_in", "conv", (x, w), {"groups": 3}, ValueError,
            r"x has 4 channels but groups \* w in_channels = 3 \* 2 = 6")
    yield E("channels_last_channels_mismatch", "conv", (np.ones((2, 7, 3)), np.ones((3, 2, 5))),
            {"data_format": "channels_last"}, ValueError,
            r"x has 3 channels but groups \* w in_channels = 1 \* 2")
    yield E("out_channels_not_divisible", "conv", (x, np.ones((5, 2, 3))), g2, ValueError,
            r"groups=2 does not divide w out_channels=5")
    yield E("filter_grad_groups_not_dividing", "conv_filter_grad", (x, dy, (3,)), {"groups": 3},
            ValueError, r"groups=3 does not divide x channels=4")
    yield E("both_group_counts", "conv_general", (x, np.ones((6, 4, 3))),
            {"feature_group_count": 2, "batch_group_count": 2}, ValueError,
            r"at most one of feature_group_count=2 and batch_group_count=2 may be > 1")
    yield E("batch_groups_not_dividing_batch", "conv_general", (x, np.ones((6, 4, 3))),
            {"batch_group_count": 4}, ValueError, r"batch_group_count=4 does not divide batch=2")
    yield E("batch_groups_not_dividing_out", "conv_general", (np.ones((4, 4, 7)), np.ones((6, 4, 3))),
            {"batch_group_count": 4}, ValueError,
            r"batch_group_count=4 does not divide out_channels=6")
    yield E("feature_groups_filter_channels", "conv_general", (x, w), {"feature_group_count": 1},
            ValueError, r"x has 4 channels; with feature_group_count=1 the filter needs 4/1 input "
            r"channels, but w\.shape=\(6, 2, 3\) has 2")
    yield E("transpose_w_channels", "conv_transpose", (x, w), g2, ValueError,
            r"x has 4 channels but w \(shape \(6, 2, 3\)\) expects 6")


def _padding_errors():
    """padding: malformed values, unknown strings, crops larger than the input."""
    x, w, _, g2 = _arrays()
    yield E("padding_wrong_length", "conv", (x, w), {**g2, "padding": [1, 1]}, ValueError,
            r"padding must have one entry per spatial dim \(1\), got 2: \[1, 1\]")
    yield E("padding_3_tuple", "conv", (x, w), {**g2, "padding": [(1, 2, 3)]}, ValueError,
            r"padding\[0\] must be an int or a \(before, after\) pair, got \(1, 2, 3\)")
    yield E("padding_too_deep", "conv", (x, w), {**g2, "padding": [[(1, 2)]]}, ValueError,
            r"padding\[0\] must be an int or a \(before, after\) pair, got \[\(1, 2\)\]")
    yield E("padding_pair_of_pairs", "conv", (x, w), {**g2, "padding": [((1, 2), (3, 4))]},
            TypeError, r"padding\[0\]\[0\] must be an integer, got \(1, 2\)")
    yield E("padding_string_in_pair", "conv", (x, w), {**g2, "padding": [("a", 1)]}, TypeError,
            r"padding\[0\]\[0\] must be an integer, got 'a'")
    yield E("padding_string_in_list", "conv", (x, w), {**g2, "padding": ["same"]}, TypeError,
            r"padding\[0\] must be an int or a \(before, after\) pair, got 'same'")
    yield E("padding_float", "conv", (x, w), {**g2, "padding": 1.5}, TypeError,
            r"padding must be an integer, got 1\.5")
    yield E("padding_None", "conv", (x, w), {**g2, "padding": None}, TypeError,
            r"padding must be a string, an int or a sequence, got None")
    yield E("padding_unknown_string", "conv", (x, w), {**g2, "padding": "samee"}, ValueError,
            r"unknown padding='samee'; expected one of \('valid', 'same', 'same_lower', 'full'\)")
    yield E("padding_string_with_lhs_dilation", "conv_general", (x, np.ones((6, 4, 3))),
            {"lhs_dilation": 2, "padding": "same"}, ValueError,
            r"string padding='same' is not defined with lhs_dilation=\(2,\)")
    yield E("negative_crop_larger_than_input", "conv", (x, w), {**g2, "padding": [(-4, -4)]},
            ValueError, r"negative padding \(-4, -4\) in "
                r"spatial dim 0 \(array axis 2[^)]*\) crops more than the input size 7")
    yield E("negative_crop_past_the_other_pad", "conv", (x, w), {**g2, "padding": [(-9, 1)]},
            ValueError, r"negative padding \(-9, 1\) in "
                r"spatial dim 0 \(array axis 2[^)]*\) crops more than the input size 7")


def _shape_errors():
    """array ranks, kernel sizes and data_format."""
    x, w, dy, g2 = _arrays()
    yield E("rank_mismatch", "conv", (x, np.ones((6, 2, 3, 3))), g2, ValueError,
            r"x and w must have the same number of dims: x\.shape=\(2, 4, 7\) \(3 dims\), "
            r"w\.shape=\(6, 2, 3, 3\) \(4 dims\)")
    yield E("w_two_dims", "conv", (x, np.ones((6, 2))), g2, ValueError,
            r"w must have at least 3 dims .*w\.shape=\(6, 2\)")
    yield E("conv_general_rank_mismatch", "conv_general", (x, np.ones((6, 4, 3, 3))), {},
            ValueError, r"same number of dims: x\.shape=\(2, 4, 7\) \(3 dims\), w\.shape=\(6, 4, 3, 3\)")
    yield E("kernel_larger_than_padded_input", "conv", (x, np.ones((6, 2, 8))), g2, ValueError,
            r"kernel larger than the padded input in "
                r"spatial dim 0 \(array axis 2[^)]*\): effective kernel size 8 .* > padded "
            r"input size 7")
    yield E("zero_size_kernel", "conv", (x, np.ones((6, 2, 0))), g2, ValueError,
            r"zero-size kernel \(0,\)")
    yield E("transpose_zero_size_kernel", "conv_transpose", (dy, np.ones((6, 2, 0))), g2,
            ValueError, r"zero-size kernel \(0,\)")
    yield E("filter_grad_zero_size_kernel", "conv_filter_grad", (x, dy, (0,)), g2, ValueError,
            r"zero-size kernel \(0,\)")
    yield E("data_format_unknown", "conv", (x, w), {**g2, "data_format": "NCHW"}, ValueError,
            r"unknown data_format='NCHW'; expected one of \('channels_first', 'channels_last'\)")
    yield E("data_format_None", "conv", (x, w), {**g2, "data_format": None}, TypeError,
            r"data_format must be a string.*got None")


def _bias_errors():
    """bias shapes, and conv_bias_grad's dy."""
    x, w, dy, g2 = _arrays()
    yield E("bias_wrong_shape", "conv", (x, w, np.ones(5)), g2, ValueError,
            r"bias must have shape \(6,\).*got \(5,\)")
    yield E("bias_2d", "conv", (x, w, np.ones((6, 1))), g2, ValueError,
            r"bias must have shape \(6,\).*got \(6, 1\)")
    yield E("transpose_bias_wrong_shape", "conv_transpose", (dy, w, np.ones(6)), g2, ValueError,
            r"bias must have shape \(4,\).*got \(6,\)")
    yield E("bias_grad_two_dims", "conv_bias_grad", (np.ones((2, 3)),), {}, ValueError,
            r"dy must have at least 3 dims .*dy\.shape=\(2, 3\)")


def _gradient_shape_errors():
    """the gradients' given shapes (input_shape, filter_shape) and the pullbacks' cotangents."""
    x, w, dy, g2 = _arrays()
    yield E("input_shape_inconsistent_with_dy", "conv_input_grad", (dy, w, (2, 4, 9)), g2,
            ValueError, r"dy\.shape=\(2, 6, 5\) does not match the output shape \(2, 6, 7\) of a "
            r"conv of input_shape \(2, 4, 9\)")
    yield E("input_shape_unreachable_stride", "conv_input_grad",
            (np.ones((1, 1, 3)), np.ones((1, 1, 3)), (1, 1, 10)), {"stride": 2}, ValueError,
            r"dy\.shape=\(1, 1, 3\) does not match the output shape \(1, 1, 4\).*: in "
                r"spatial dim 0 \(array axis 2[^)]*\) the "
            r"forward conv maps sizes 7\.\.8 to 3, not 10; valid spatial input sizes are \[\(7, 8\)\]")
    yield E("input_shape_unreachable_same", "conv_input_grad_vjp", (dy, w, (11,)),
            {**g2, "stride": 2, "padding": "same"}, ValueError,
            r"maps sizes 9\.\.10 to 5, not 11; valid spatial input sizes are \[\(9, 10\)\]")
    yield E("input_shape_no_size_maps", "conv_input_grad", (dy, w, (7,)), {**g2, "padding": 9},
            ValueError, r"in spatial dim 0 \(array axis 2[^)]*\) the forward conv maps no size to 5, not 7")
    yield E("input_shape_wrong_batch", "conv_input_grad", (dy, w, (3, 4, 7)), g2, ValueError,
            r"dy\.shape=\(2, 6, 5\) does not match the output shape \(3, 6, 5\)")
    yield E("input_shape_wrong_channels", "conv_input_grad", (dy, w, (2, 6, 7)), g2, ValueError,
            r"input_shape has 6 channels but groups \* w in_channels = 2 \* 2 = 4")
    yield E("input_shape_wrong_length", "conv_input_grad", (dy, w, (2, 4)), g2, ValueError,
            r"input_shape=\(2, 4\) must have 3 \(full\) or 1 \(spatial\) entries")
    yield E("input_shape_negative", "conv_input_grad", (dy, w, (2, 4, -7)), g2, ValueError,
            r"input_shape must not contain negative sizes, got \(2, 4, -7\)")
    yield E("input_shape_not_a_sequence", "conv_input_grad", (dy, w, 7), g2, TypeError,
            r"input_shape must be a sequence of ints, got 7")
    yield E("input_shape_float_entry", "conv_input_grad", (dy, w, (7.0,)), g2, TypeError,
            r"input_shape\[0\] must be an integer, got 7\.0")
    yield E("filter_shape_inconsistent_with_dy", "conv_filter_grad", (x, dy, (6, 2, 4)), g2,
            ValueError, r"dy\.shape=\(2, 6, 5\) does not match the output shape \(2, 6, 4\) of a "
            r"conv of x\.shape \(2, 4, 7\) with filter_shape \(6, 2, 4\)")
    yield E("filter_shape_wrong_length", "conv_filter_grad", (x, dy, (6, 2)), g2, ValueError,
            r"filter_shape=\(6, 2\) must have 3 \(full\) or 1 \(kernel\) entries")
    yield E("filter_shape_kernel_only_wrong_dy", "conv_filter_grad", (x, np.ones((2, 6, 4)), (3,)),
            g2, ValueError, r"dy\.shape=\(2, 6, 4\) does not match the output shape \(2, 6, 5\)")
    yield E("input_grad_vjp_cotangent_shape", "conv_input_grad_vjp:vjp", (dy, w, (7,), np.ones((2, 4, 6))),
            g2, ValueError, r"g\.shape=\(2, 4, 6\) does not match the output shape \(2, 4, 7\)")
    yield E("filter_grad_vjp_cotangent_shape", "conv_filter_grad_vjp:vjp",
            (x, dy, (3,), np.ones((6, 2, 2))), g2, ValueError,
            r"g\.shape=\(6, 2, 2\) does not match the output shape \(6, 2, 3\)")
    yield E("vjp_dy_wrong_shape", "conv_vjp:vjp", (x, w, np.ones((2, 6, 4))), g2, ValueError,
            r"dy\.shape=\(2, 6, 4\) does not match the output shape \(2, 6, 5\)")
    yield E("transpose_vjp_dy_wrong_shape", "conv_transpose_vjp:vjp", (dy, w, np.ones((2, 4, 6))),
            g2, ValueError, r"dy\.shape=\(2, 4, 6\) does not match the output shape \(2, 4, 7\)")
    yield E("vjp_unknown_keyword", "conv_vjp", (x, w), {**g2, "output_padding": 1}, TypeError,
            r"conv_vjp\(\) got an unexpected keyword argument 'output_padding'")


def _transpose_size_errors():
    """conv_transpose's output_shape and output_padding."""
    _, w, dy, g2 = _arrays()
    yield E("output_shape_unreachable", "conv_transpose", (dy, w), {**g2, "output_shape": (12,)},
            ValueError, r"output_shape=\(12,\) is unreachable: in "
                r"spatial dim 0 \(array axis 2[^)]*\) the forward conv maps sizes "
            r"7\.\.7 to 5, not 12; valid spatial output sizes are \[\(7, 7\)\]")
    yield E("output_shape_unreachable_stride", "conv_transpose", (dy, w),
            {**g2, "stride": 3, "output_shape": (20,)}, ValueError,
            r"output_shape=\(20,\) is unreachable.*sizes 15\.\.17 to 5.*\[\(15, 17\)\]")
    yield E("output_shape_same_unreachable", "conv_transpose", (dy, w),
            {**g2, "stride": 2, "padding": "same", "output_shape": (11,)}, ValueError,
            r"output_shape=\(11,\) is unreachable.*sizes 9\.\.10 to 5")
    yield E("output_shape_full_wrong_channels", "conv_transpose", (dy, w),
            {**g2, "output_shape": (2, 5, 7)}, ValueError,
            r"output_shape=\(2, 5, 7\) does not match batch 2 and output channels 4")
    yield E("output_shape_wrong_length", "conv_transpose", (dy, w), {**g2, "output_shape": (2, 7)},
            ValueError, r"output_shape must have 1 \(spatial\) or 3 \(full\) entries, got \(2, 7\)")
    yield E("output_padding_too_large_stride1", "conv_transpose", (dy, w),
            {**g2, "output_padding": 1}, ValueError,
            r"output_padding=\(1,\) must be smaller than max\(stride, dilation\).*output_padding 1, "
            r"stride 1, dilation 1")
    yield E("output_padding_too_large_stride2", "conv_transpose", (dy, w),
            {**g2, "stride": 2, "dilation": 2, "output_padding": 2}, ValueError,
            r"output_padding=\(2,\) must be smaller.*stride 2, dilation 2")
    yield E("output_padding_negative", "conv_transpose", (dy, w),
            {**g2, "stride": 2, "output_padding": -1}, ValueError, r"output_padding must be >= 0")
    yield E("output_padding_with_output_shape", "conv_transpose", (dy, w),
            {**g2, "stride": 2, "output_padding": 1, "output_shape": (10,)}, ValueError,
            r"give output_shape=\(10,\) or output_padding=\(1,\), not both")
    yield E("output_padding_with_same", "conv_transpose", (dy, w),
            {**g2, "stride": 2, "padding": "same", "output_padding": 1}, ValueError,
            r"output_padding=\(1,\) needs explicit padding; with padding='same'")
    yield E("transpose_padding_crops_everything", "conv_transpose", (dy, w), {**g2, "padding": 9},
            ValueError, r"padding=9 crops more than the transposed output: sizes \(-11,\)")


def _dtype_errors():
    """dtypes: bool, complex wider than complex128, object, strings, ragged lists."""
    x, w, dy, g2 = _arrays()
    yield E("x_bool", "conv", (x.astype(bool), w), g2, TypeError, r"x has dtype bool")
    yield E("w_clongdouble", "conv", (x, w.astype(np.clongdouble)), g2, TypeError,
            r"w has dtype complex\d+; complex operands must be complex64 or complex128")
    yield E("x_object", "conv", (x.astype(object), w), g2, TypeError, r"x has dtype object")
    yield E("x_str", "conv", (x.astype(str), w), g2, TypeError, r"x has dtype <U\d+")
    yield E("dy_bool_input_grad", "conv_input_grad", (dy.astype(bool), w, (7,)), g2, TypeError,
            r"dy has dtype bool")
    yield E("dy_clongdouble_filter_grad", "conv_filter_grad", (x, dy.astype(np.clongdouble), (3,)), g2,
            TypeError, r"dy has dtype complex\d+; complex operands must be complex64 or complex128")
    yield E("convention_unknown", "conv_input_grad", (dy, w, (7,)), {**g2, "convention": "conjugate"},
            ValueError, r"convention='conjugate'; expected 'adjoint' .* or 'transpose'")
    yield E("bias_bool", "conv", (x, w, np.ones(6, dtype=bool)), g2, TypeError, r"bias has dtype bool")
    yield E("conv_general_x_clongdouble", "conv_general", (x.astype(np.clongdouble), np.ones((6, 4, 3))),
            {}, TypeError, r"x has dtype complex\d+; complex operands")
    yield E("ragged_x", "conv", ([[[1.0, 2.0], [3.0]]], w), {}, TypeError, r"x must be an array of numbers")


def _budget_and_method_errors():
    """the workspace budget and method."""
    x, w, dy, g2 = _arrays()
    yield E("padding_2**40", "conv", (x, w), {**g2, "padding": 2**40}, ValueError,
            r"the result \(2, 6, 2199023255557\) needs 211,106,232,533,472 bytes, more than the "
            r"workspace budget of 2,147,483,648 bytes")
    yield E("padding_and_stride_2**62", "conv", (x, w), {**g2, "padding": 2**62, "stride": 2**62},
            ValueError, r"padded input size 9223372036854775815 outside the int64 range")
    # Broadcast views of tens of GiB cost nothing until copied: the copy is budgeted first.
    big = np.broadcast_to(np.ones(()), (1, 1, 2**17, 2**16))
    copy = r"a contiguous copy of {} \(1, 131072, 65536, 1\) needs 68,719,476,736 bytes, more than the"
    for func in ("conv", "conv_general"):
        yield E(f"{func}_broadcast_x_strided", func, (big, np.ones((1, 1, 1, 1))), {"stride": 1024},
                ValueError, copy.format("x"))
    yield E("conv_filter_grad_broadcast_x", "conv_filter_grad", (big, np.ones((1, 1, 128, 64)), (1, 1, 1, 1)),
            {"stride": 1024}, ValueError, copy.format("x"))
    big_dy = np.broadcast_to(np.ones(()), (4, 8, 2**15, 2**13))
    yield E("conv_bias_grad_broadcast_dy", "conv_bias_grad", (big_dy,), {}, ValueError,
            r"a contiguous copy of dy \(4, 32768, 8192, 8\) needs 68,719,476,736 bytes")
    yield E("padding_2**40_input_grad", "conv_input_grad", (dy, w, (7,)), {**g2, "padding": 2**40},
            ValueError, r"dy\.shape=\(2, 6, 5\) does not match the output shape \(2, 6, 2199023255557\)")
    yield E("workspace_too_small", "conv", (x, w), {**g2, "workspace_bytes": 64}, ValueError,
            r"the result \(2, 6, 5\) needs 480 bytes, more than the workspace budget of 64 bytes")
    yield E("workspace_zero", "conv", (x, w), {**g2, "workspace_bytes": 0}, ValueError,
            r"workspace_bytes must be positive, got 0")
    yield E("workspace_float", "conv", (x, w), {**g2, "workspace_bytes": 1.5}, TypeError,
            r"workspace_bytes must be an int, got 1\.5")
    yield E("method_unknown", "conv", (x, w), {**g2, "method": "nope"}, ValueError,
            r"unknown method='nope'; expected 'auto' or one of \(.*'im2col'.*\)")
    yield E("method_None", "conv", (x, w), {**g2, "method": None}, TypeError,
            r"method must be a string.*got None")
