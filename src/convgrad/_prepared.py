"""A conv prepared once and called many times: shapes, dtype and geometry fixed, plans made.

For training loops and iterative solvers, where the same conv runs thousands of times and the
validation, geometry and planning of ``convgrad.conv`` would cost more than a small conv itself.
"""

from __future__ import annotations

import numpy as np

from . import _canon
from ._budget import contiguous, workspace_limit
from ._dtypes import as_array, check_int_sum, conj, convention_of, dtype_named, int_terms, result_dtype
from ._geometry import ConvGeometry
from ._layout import w_first_axes, w_last_axes, x_first_axes, x_last_axes
from ._padmode import PadMap
from ._plan import ConvPlan, make_plan
from .engines import Op


class PreparedConv:
    """``conv`` with its shapes, dtype, geometry, method and budget fixed (see ``prepare``).

    ``self(x, w)`` returns ``conv(x, w, **geometry)``; ``input_grad(dy, w)`` and
    ``filter_grad(x, dy)`` its gradients (planned on first use; adjoints, or plain transposes with
    ``convention='transpose'``, as ``conv_input_grad``). Operands must have the prepared
    shapes, in the prepared layout; they are computed in ``dtype`` (float16 in float32, integers
    in int64) and returned in ``result_dtype``.
    """

    def __init__(self, geometry: ConvGeometry, dtype: np.dtype, data_format: str, method: str,
                 limit: int, pad_map: PadMap | None = None, convention: str = "adjoint") -> None:
        self.geometry, self.data_format = geometry, data_format
        self.convention = convention_of(convention)
        # A padding mode: the plans run VALID on x padded by the map (channels-last, axis 1 on).
        self._pad_map = pad_map
        self._run_geometry = geometry if pad_map is None else pad_map.valid
        self.result_dtype, self.dtype = result_dtype(np.empty(0, dtype))
        self._method, self._limit = method, limit
        self._plans: dict[str, ConvPlan] = {}
        self._shapes = {"x": geometry.x_shape(data_format), "w": geometry.w_shape(data_format),
                        "dy": geometry.y_shape(data_format)}
        n = geometry.rank + 2
        first = data_format == "channels_first"
        # The plans are costed for the caller's layout; a padding mode pads channels-last.
        self._layout = data_format if pad_map is None else "channels_last"
        # Channels-last views of the caller's arrays and back, kept for the calls to come (where
        # the plan's engine does not take channels-first operands itself).
        self._x_last = x_last_axes(n) if first else None
        self._x_back = x_first_axes(n) if first else None
        self._w_last = w_last_axes(n) if first else None
        self._w_back = w_first_axes(n) if first else None
        self.plan("forward")

    def plan(self, op: Op) -> ConvPlan:
        """The plan of ``op`` ('forward', 'input_grad' or 'filter_grad'), made on first use."""
        plan = self._plans.get(op)
        if plan is None:
            plan = self._plans[op] = make_plan(op, self._run_geometry, self.dtype, self._method, self._limit,
                                               self._layout)
        return plan

    def _native(self, op: Op, a_name: str, a: object, b_name: str, b: object) -> np.ndarray | None:
        """The op on the caller's channels-first arrays as they are, where the plan's engine
        takes them (None otherwise)."""
        plan = self.plan(op)
        if plan.takes != "channels_first":
            return None
        a, b = self._last(a_name, a, None), self._last(b_name, b, None)
        self._ints(op, **{a_name: a, b_name: b})
        return self._back(plan(a, b), None)

    def _ints(self, op: Op, **operands: np.ndarray) -> None:
        """Integers: OverflowError before the op where a result could pass int64 (as ``conv``)."""
        if self.dtype.kind == "i":
            folds = self._pad_map.pads if op == "input_grad" and self._pad_map is not None else ()
            check_int_sum(*int_terms(op, self._run_geometry, folds), **operands)

    def _last(self, name: str, a: object, axes: tuple[int, ...] | None) -> np.ndarray:
        a = as_array(name, a)  # lists too; object or str dtypes refused as by conv
        if a.shape != self._shapes[name]:
            raise ValueError(f"{name}.shape={a.shape} is not the prepared {self._shapes[name]}")
        if self.dtype.kind != "c" and a.dtype.kind == "c":  # a cast would drop the imaginary part
            raise TypeError(f"{name} has complex dtype {a.dtype}, but the conv was prepared for "
                            f"{self.result_dtype}")
        return contiguous(name, a if axes is None else a.transpose(axes), self.dtype, self._limit)

    def __call__(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """y ``(N, O, *out)`` (channels-last ``(N, *out, O)``) of x and w in the prepared shapes."""
        y = self._native("forward", "x", x, "w", w)
        if y is not None:
            return y
        x_last, w_last = self._last("x", x, self._x_last), self._last("w", w, self._w_last)
        self._ints("forward", x=x_last, w=w_last)
        y = self._plans["forward"](self._padded(x_last), w_last)
        return self._back(y, self._x_back)

    def input_grad(self, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
        """dx, in x's prepared shape."""
        w = self._primal(as_array("w", w))  # the adjoint conjugates a complex w
        dx = self._native("input_grad", "dy", dy, "w", w)
        if dx is not None:
            return dx
        dy_last, w_last = self._last("dy", dy, self._x_last), self._last("w", w, self._w_last)
        self._ints("input_grad", dy=dy_last, w=w_last)
        dx = self.plan("input_grad")(dy_last, w_last)
        return self._back(dx if self._pad_map is None else self._pad_map.fold(dx, 1), self._x_back)

    def filter_grad(self, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """dw, in w's prepared shape."""
        x = self._primal(as_array("x", x))  # the adjoint conjugates a complex x
        dw = self._native("filter_grad", "x", x, "dy", dy)
        if dw is not None:
            return dw
        x_last, dy_last = self._last("x", x, self._x_last), self._last("dy", dy, self._x_last)
        self._ints("filter_grad", x=x_last, dy=dy_last)
        dw = self.plan("filter_grad")(self._padded(x_last), dy_last)
        return self._back(dw, self._w_back)

    def _primal(self, a: np.ndarray) -> np.ndarray:
        return conj(a) if self.convention == "adjoint" else a

    def _padded(self, x_last: np.ndarray) -> np.ndarray:
        return x_last if self._pad_map is None else self._pad_map.pad(x_last, 1, self._limit)

    def _back(self, a: np.ndarray, axes: tuple[int, ...] | None) -> np.ndarray:
        """The channels-last result in the caller's layout and result dtype."""
        a = np.ascontiguousarray(a if axes is None else a.transpose(axes))
        return a.astype(self.result_dtype, copy=False)


def prepare(x_shape: object, w_shape: object, dtype: object = np.float64, *, stride: object = 1,
            padding: object = 0, dilation: object = 1, groups: int = 1, padding_mode: object = "zeros",
            data_format: str = "channels_first", method: str = "auto",
            workspace_bytes: int | None = None, convention: str = "adjoint") -> PreparedConv:
    """Prepare ``conv`` for operands of these shapes and dtype, to call it many times.

    Parameters
    ----------
    x_shape : (N, C, *S) or, channels-last, (N, *S, C)
    w_shape : (O, C / groups, *K) or, channels-last, (*K, C / groups, O)
    dtype : the operands' dtype, or 'bfloat16' (float16 and bfloat16 compute in float32, integers
        in int64, complex64 and complex128 in themselves)
    stride, padding, dilation, groups, padding_mode, data_format, method, workspace_bytes : as in
        ``conv``
    convention : of the complex gradients, 'adjoint' (default) or 'transpose', as ``conv_vjp``

    Returns
    -------
    PreparedConv : ``p(x, w)`` is ``conv(x, w, ...)``; ``p.input_grad(dy, w)`` and
        ``p.filter_grad(x, dy)`` are its gradients. Validation and planning happen here, once.

    Examples
    --------
    >>> import numpy as np, convgrad
    >>> p = convgrad.prepare((1, 1, 5), (1, 1, 3), padding=1)
    >>> p(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 3)))
    array([[[1., 3., 6., 9., 7.]]])
    """
    fmt = _canon.data_format(data_format)
    geom = ConvGeometry.for_conv(_canon.shape_tuple("x_shape", x_shape),
                                 _canon.shape_tuple("w_shape", w_shape), stride=stride, padding=padding,
                                 dilation=dilation, groups=groups, data_format=fmt)
    return PreparedConv(geom, dtype_named("dtype", dtype), fmt, method, workspace_limit(workspace_bytes),
                        PadMap.build(padding_mode, geom), convention)
