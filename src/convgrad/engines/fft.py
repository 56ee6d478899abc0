"""FFT convolution: all three ops as products of spectra, summed over channels per frequency.

Per spatial axis, with the tight padded input length P, the forward is a correlation of x with
the kernel dilated by d (zeros inserted), evaluated at stride-1 lags and then sampled every s;
the input gradient is the full convolution of dy, spread s apart, with the dilated kernel; the
filter gradient correlates x with the spread dy at lags t * d. Every result lies within P samples,
so circular transforms of length next_fast_len(P) are exact (no wrap-around reaches them).
Channels mix per frequency, a small complex matrix product each: (N, C) @ (C, O).
Cost is nearly independent of the kernel size, which is what makes it win for large kernels.

Transforms, mixing and correlation are in _spectra: small transforms as DFT-matrix GEMMs,
larger ones by pocketfft.

A long first spatial axis is cut into blocks (overlap-save for the forward and the filter
gradient, overlap-add for the input gradient): the blocks become a larger batch of a shorter
convolution, so the kernel's spectrum is taken at the short length (with 32 x 32 filters the
kernel has more channels to transform than the signal) and the per-frequency GEMMs grow taller.
The block length is the one the cost model likes best, the whole axis included.

Channels-first operands (unblocked) are read in place: the first transform stage takes the NCHW
arrays as channels-last views, the last inverse stage writes the NCHW result, and the filter
gradient correlates with dy's channels as rows so that its lags come out in the (O, Cg) order of
an OIHW filter. Blocked, the forward and the filter gradient cut their blocks from the NCHW arrays
as runs along the first axis, (N, blocks, C, segment), read the same way (pads on the first axis
only); the blocked input gradient's inverse transforms (pocketfft's) read the mixed spectra as a
channels-first view and write each block's dx channels-first, overlap-added in runs.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import numpy as np
import scipy.fft

from .._budget import check_fits
from .._engine import OPS, Op, Planner, Prepared, Refusal
from .._formulas import dilate_dim, stride_dim, transpose_size
from .._geometry import ConvGeometry
from .._layout import pad_or_crop, w_to_last, x_to_last
from . import _kernels, _spectra
from ._common import no_complex, plain, unpad
from ._machine import figures
from ._scratch import copied, scratch

# The cost model (figures in calibration.json, the transforms' and mixing's rates in _spectra's):
# the transforms, the mixing, the blocks' copies and the planning of the transforms and NumPy calls
# around them, times the fitted factor per op.

_MIXES_TAPS = "its transform mixes every tap: one inf or NaN makes every output NaN"


class FFT:
    name = "fft"
    nonfinite_skips = tuple((op, _MIXES_TAPS) for op in OPS)

    def prepare(self, op: Op, geom: ConvGeometry, dtype: np.dtype, limit: int,
                planner: Planner) -> Prepared | Refusal:
        fig = figures("fft")
        why_not = no_complex(dtype) or (
            "integer results would not be exact" if dtype.kind != "f" else plain(geom))
        if why_not:
            return Refusal(self.name, why_not)
        b = self._block(geom, op, dtype)
        seconds = self._blocked_cost(geom, op, dtype, b) * fig.FITTED[op]
        if _kernels.NUMBA:  # the mixing kernel's load time, until it is loaded
            seconds += planner.load_seconds(dtype, _kernels.spectral_mix)
        first = first_workspace = None
        if b is None:
            workspace, lengths = self._workspace(geom, dtype, limit), self._lengths(geom)
            run = partial({"forward": self._forward, "input_grad": self._input_grad,
                           "filter_grad": self._filter_grad}[op], geom, lengths)
            # The forward's filter in (C/G, O, *K) order: a copy of runs of prod(K) taps.
            wc = math.prod(geom.w_shape()) * dtype.itemsize if op == "forward" else 0
            first_workspace = workspace + wc
            if first_workspace <= limit:
                first = partial(_FIRST[op], self, geom, lengths)
        else:
            bg = _block_geometry(geom, b)
            segments = bg.batch * math.prod(bg.tight_padded) * max(geom.in_channels, geom.out_channels)
            workspace = self._workspace(bg, dtype, limit) + 2 * segments * dtype.itemsize
            check_fits(f"the FFT blocks of {geom.x_shape('channels_last')}", workspace, limit)
            lengths = self._lengths(bg)
            run = partial(self._blocked, op, geom, b, lengths)
            # Channels-first (the first axis's pads only): the blocks are cut from the NCHW
            # operands and y's joined (dx's overlap-added) in runs along the axis.
            if not any(lo or hi for lo, hi in geom.tight_padding[1:]):
                y_blocks = bg.batch * b * math.prod(geom.out_spatial[1:]) * geom.out_channels
                extra = y_blocks + math.prod(geom.w_shape()) if op == "forward" else 0  # and w's copy
                first_workspace = workspace + extra * dtype.itemsize
                if first_workspace <= limit:
                    first = partial(self._blocked_first, op, geom, b, lengths)
        # Channels-first: the transforms read the NCHW operands (or blocks cut from them) and
        # write the result in place of the transpositions around a channels-last run (_FIRST).
        return Prepared(self.name, seconds, workspace, run, {"block": b, "lengths": lengths},
                        run_first=first, first_workspace=first_workspace)

    def _lengths(self, geom: ConvGeometry) -> tuple[int, ...]:
        out = []
        for n_c, (*_, lo_c), p, ke, o, s in zip(_kept(geom), geom.reach, geom.tight_padded,
                                         geom.kernel_eff, geom.out_spatial, geom.stride):
            # ke: the taps land on distinct samples; dilate_dim(o, s): the spread dy fits.
            need = max(n_c + lo_c, p - lo_c, ke, dilate_dim(o, s), 1)
            out.append(scipy.fft.next_fast_len(need, real=True))
        return tuple(out)

    def _block(self, geom: ConvGeometry, op: Op, dtype: np.dtype) -> int | None:
        """Outputs per block along the first spatial axis, or None to transform it whole.

        When blocking is cheaper than the whole axis, the shortest block length whose estimate is
        within BLOCK_TIE of the cheapest wins: it needs the least memory, and the estimates cannot
        tell such lengths apart.
        """
        if geom.rank == 0 or math.prod(geom.out_spatial) == 0:
            return None
        options: list[tuple[int | None, float]] = []
        ke, s, out = geom.kernel_eff[0], geom.stride[0], geom.out_spatial[0]
        whole = self._lengths(geom)[0]
        n = 1 << max(4, (2 * ke - 1).bit_length())  # at least twice the kernel: overlap <= 1/2
        while n < whole:
            b = stride_dim(n, ke, s)  # outputs whose windows fit in n samples
            if 1 <= b < out:
                options.append((b, self._blocked_cost(geom, op, dtype, b)))
            n *= 2
        whole_cost = self._raw_cost(geom, op, dtype)
        best = min((c for _, c in options), default=whole_cost)
        if best >= whole_cost:
            return None
        return next(b for b, c in options if c <= best * BLOCK_TIE)

    def _blocked_cost(self, geom: ConvGeometry, op: Op, dtype: np.dtype, b: int | None) -> float:
        fig = figures("fft")
        if b is None:
            return self._raw_cost(geom, op, dtype)
        bg = _block_geometry(geom, b)
        moved = bg.batch * math.prod(bg.tight_padded) * max(geom.in_channels, geom.out_channels)
        return self._raw_cost(bg, op, dtype) + 2 * moved * np.dtype(dtype).itemsize / fig.COPY_BYTES_PER_S

    def _raw_cost(self, geom: ConvGeometry, op: Op, dtype: np.dtype) -> float:
        fig = figures("fft")
        lengths = self._lengths(geom)
        freqs = math.prod(_spectra.freqs(lengths))
        g, cg, og, _ = geom.group_dims
        n = geom.batch
        # Every op transforms x's side, y's side (dy or the output) and the kernel's (its taps, or
        # the filter gradient's lags), and mixes or correlates the spectra.
        transforms = (_spectra.transform_seconds(_kept(geom), lengths, n * geom.in_channels)
                      + _spectra.transform_seconds(geom.out_spatial, lengths, n * geom.out_channels)
                      + _spectra.transform_seconds(geom.kernel, lengths, cg * og * g))
        return transforms + _spectra.mix_seconds(freqs, n, cg, og, g) + fig.CALL_SECONDS

    def _workspace(self, geom: ConvGeometry, dtype: np.dtype, limit: int) -> int:
        lengths = self._lengths(geom)
        freqs = math.prod(_spectra.freqs(lengths))
        g, cg, og, _ = geom.group_dims
        citem = 2 * np.dtype(dtype).itemsize
        spectra = freqs * (geom.batch * (geom.in_channels + geom.out_channels) + cg * og * g) * citem
        real = math.prod(lengths) * geom.batch * max(geom.in_channels, geom.out_channels)
        # The DFT GEMMs' first stages (the taps of the other axes, the halved axis's frequencies)
        # and the input gradient's transposed filter.
        half = _spectra.freqs(lengths)[-1]
        firsts = (math.prod(geom.kernel[:-1]) * cg * og * g + geom.batch * math.prod(_kept(geom)[:-1])
                  * geom.in_channels + geom.batch * math.prod(geom.out_spatial[:-1]) * geom.out_channels)
        stages = (firsts * half * citem + math.prod(geom.kernel) * cg * og * g * np.dtype(dtype).itemsize)
        total = spectra + 2 * real * np.dtype(dtype).itemsize + stages
        check_fits(f"the FFT spectra of {geom.x_shape('channels_last')}", total, limit)
        return total

    def _blocked(self, op: Op, geom: ConvGeometry, b: int, lengths: tuple[int, ...],
                 a: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``op`` on the blocks of ``b`` outputs along the first axis, as a batch of segments."""
        bg, nb = _block_geometry(geom, b), _block_count(geom, b)
        if op == "filter_grad":
            return self._filter_grad(bg, lengths, _segments(a, geom, b), _dy_blocks(c, b, nb))
        if op == "forward":
            y = self._forward(bg, lengths, _segments(a, geom, b), c)  # (N * nb, b, ...)
            return np.ascontiguousarray(y.reshape(geom.batch, nb * b, *y.shape[2:])[:, : geom.out_spatial[0]])
        dxs = self._input_grad(bg, lengths, _dy_blocks(a, b, nb), c)  # (N * nb, seg, ...): overlap-add them
        seg, step = dxs.shape[1], b * geom.stride[0]
        dxs = dxs.reshape(geom.batch, nb, *dxs.shape[1:])
        dxe = np.zeros((geom.batch, (nb - 1) * step + seg, *geom.tight_padded[1:], geom.in_channels), a.dtype)
        for j in range(nb):
            dxe[:, j * step : j * step + seg] += dxs[:, j]
        return unpad(dxe[:, : geom.tight_padded[0]], geom)

    def _blocked_first(self, op: Op, geom: ConvGeometry, b: int, lengths: tuple[int, ...],
                       a: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The forward (x, w) or filter gradient (x, dy) of channels-first operands by blocks: x's
        segments and dy's blocks are cut in runs along the first axis as ``(N, nb, C, seg, *rest)``,
        which the transforms read as channels-last views, as the unblocked ops read NCHW; the
        forward writes its blocks of y the same way and joins them in runs; dw comes out OIHW."""
        bg, nb = _block_geometry(geom, b), _block_count(geom, b)
        if op == "input_grad":
            dxs = self._input_grad_blocks_first(bg, lengths, _dy_blocks_first(a, b, nb), c)
            return _overlap_add_first(dxs, geom, b)
        segments = _last_view(_segments_first(a, geom, b))
        if op == "filter_grad":
            dw = np.empty(geom.w_shape("channels_first"), dtype=a.dtype)
            return self._filter_grad(bg, lengths, segments, _last_view(_dy_blocks_first(c, b, nb)), out=dw)
        n, o, out = geom.batch, geom.out_channels, geom.out_spatial
        yb = scratch("fft.yb", (n, nb, o, b, *out[1:]), a.dtype)
        wc = copied("fft.wc", c.swapaxes(0, 1))  # as _forward_first
        wl = w_to_last(wc.swapaxes(0, 1), "channels_first")
        self._forward(bg, lengths, segments, wl, out=_last_view(yb))
        y = np.empty(geom.y_shape("channels_first"), dtype=a.dtype)
        for j in range(nb):  # the last block's outputs past y's end are dropped
            y[:, :, j * b : (j + 1) * b] = yb[:, j, :, : out[0] - j * b]
        return y

    def _input_grad_blocks_first(self, bg: ConvGeometry, lengths: tuple[int, ...], blocks: np.ndarray,
                                 w: np.ndarray) -> np.ndarray:
        """dx of each block, ``(N, nb, C, seg, *rest)``, from dy's blocks ``(N, nb, O, b, *rest)``
        and w ``(O, Cg, *K)``: by pocketfft on channels-first spectra (the transforms along the
        runs of samples, the mixing writing the spectra channels-first), or where a DFT GEMM
        transforms a side, ``_input_grad`` on channels-last views of the blocks."""
        n, nb = blocks.shape[:2]
        g, cg, _, _ = bg.group_dims
        dy = blocks.reshape(n * nb, *blocks.shape[2:])
        keep = _kept(bg)
        shape = (n, nb, bg.in_channels, *keep)
        wl, dyl = w_to_last(w, "channels_first"), x_to_last(dy, "channels_first")  # views
        if (cg == 0 or dy.size == 0 or _spectra.use_signal_dft(dyl.shape, lengths)
                or _spectra.use_signal_dft((n * nb, *keep, bg.in_channels), lengths)):
            dxs = scratch("fft.dxb", shape, dy.dtype)
            self._input_grad(bg, lengths, dyl, wl, out=_last_view(dxs))
            return dxs
        dys = _spectra.spectrum(dyl, lengths, bg.stride, "fft.dy")
        ws = _spectra.kernel_spectrum(_adjoint_filter(bg, wl, True), lengths, _tap_positions(bg, lengths))
        return _spectra.samples_first(dys, ws, g, lengths, keep).reshape(shape)

    # --- the three ops on whole axes -------------------------------------------------------------
    def _forward(self, geom: ConvGeometry, lengths: tuple[int, ...],
                 x: np.ndarray, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        g, cg, _, _ = geom.group_dims
        shape = (geom.batch, *geom.out_spatial, geom.out_channels)
        if math.prod(shape) == 0 or cg == 0:
            return _zeros(out, shape, x.dtype)
        xs = _spectra.spectrum(_cropped(x, geom, out is not None), lengths, (1,) * geom.rank, "fft.x")
        # Correlation with w is convolution with w flipped, tap t at -t * d; shifted by the
        # leading pad, output p sits at sample p * s of the circular convolution.
        ws = _spectra.kernel_spectrum(w, lengths, _tap_positions(geom, lengths, flipped=True))
        outputs = [range(0, o * s, s) for o, s in zip(geom.out_spatial, geom.stride)]
        return _spectra.samples(xs, ws, g, lengths, outputs, out=out)

    def _input_grad(self, geom: ConvGeometry, lengths: tuple[int, ...],
                    dy: np.ndarray, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        g, cg, _, _ = geom.group_dims
        kept = _kept(geom)
        inside = None if out is None else _cropped(out, geom, True)  # zeros where x was cropped
        if inside is not None and inside.size < out.size:
            out[...] = 0
        if dy.size == 0 or cg == 0:
            dx = _zeros(out, (geom.batch, *kept, geom.in_channels), dy.dtype)
        else:
            dys = _spectra.spectrum(dy, lengths, geom.stride, "fft.dy")  # dy spread s apart
            # Tap t at t * d, shifted back by the leading pad: sample i is x's sample i.
            ws = _spectra.kernel_spectrum(_adjoint_filter(geom, w, out is not None), lengths,
                                          _tap_positions(geom, lengths))
            dx = _spectra.samples(dys, ws, g, lengths, [range(k) for k in kept], out=inside)
        if out is not None:
            return out
        return pad_or_crop(dx, tuple((-lo, -hi) for lo, hi in _crops(geom)))  # zeros where x was cropped

    def _filter_grad(self, geom: ConvGeometry, lengths: tuple[int, ...],
                     x: np.ndarray, dy: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """dw ``(*K, Cg, O)``, or with ``out`` (a channels-first ``(O, Cg, *K)``) written there."""
        g, cg, og, _ = geom.group_dims
        if dy.size == 0 or cg == 0:
            return _zeros(out, (*geom.kernel, cg, geom.out_channels), x.dtype)
        xs = _spectra.spectrum(_cropped(x, geom, out is not None), lengths, (1,) * geom.rank, "fft.x")
        dys = _spectra.spectrum(dy, lengths, geom.stride, "fft.dy")
        # Lag t * d of the padded x is lag t * d - lo of x itself.
        taps = _tap_positions(geom, lengths)
        if out is not None:  # (O, Cg, *K) seen as (*K, O * Cg), its channels T apart
            seen = out.reshape(out.shape[0] * cg, -1).T.reshape(*geom.kernel, -1)
            assert np.shares_memory(seen, out)
            _spectra.lags(xs, dys, g, lengths, taps, out=seen)
            return out
        lags = _spectra.lags(xs, dys, g, lengths, taps)
        return np.moveaxis(lags, geom.rank, -2).reshape(*geom.kernel, cg, g * og)  # (*K, G, Cg, Og)

    # --- channels-first: the same ops on channels-last views of the NCHW operands ----------------
    def _forward_first(self, geom: ConvGeometry, lengths: tuple[int, ...], x: np.ndarray,
                       w: np.ndarray) -> np.ndarray:
        """y ``(N, O, *out)`` of x ``(N, C, *S)`` and w ``(O, Cg, *K)``."""
        y = np.empty(geom.y_shape("channels_first"), dtype=x.dtype)
        # The kernel's transforms want its taps first and its (Cg, O) pairs as one axis: swapping
        # the two channel axes copies runs of prod(K) taps, after which (*K, Cg, O) is a view.
        wc = copied("fft.wc", w.swapaxes(0, 1))
        self._forward(geom, lengths, x_to_last(x, "channels_first"),
                      w_to_last(wc.swapaxes(0, 1), "channels_first"), out=x_to_last(y, "channels_first"))
        return y

    def _input_grad_first(self, geom: ConvGeometry, lengths: tuple[int, ...], dy: np.ndarray,
                          w: np.ndarray) -> np.ndarray:
        """dx ``(N, C, *S)`` of dy ``(N, O, *out)`` and w ``(O, Cg, *K)``."""
        dx = np.empty(geom.x_shape("channels_first"), dtype=dy.dtype)
        self._input_grad(geom, lengths, x_to_last(dy, "channels_first"), w_to_last(w, "channels_first"),
                         out=x_to_last(dx, "channels_first"))
        return dx

    def _filter_grad_first(self, geom: ConvGeometry, lengths: tuple[int, ...], x: np.ndarray,
                           dy: np.ndarray) -> np.ndarray:
        """dw ``(O, Cg, *K)`` of x ``(N, C, *S)`` and dy ``(N, O, *out)``."""
        dw = np.empty(geom.w_shape("channels_first"), dtype=x.dtype)
        return self._filter_grad(geom, lengths, x_to_last(x, "channels_first"),
                                 x_to_last(dy, "channels_first"), out=dw)


# The channels-first runs of the unblocked ops: the transforms read channels-last views of the
# NCHW operands (BLAS takes their rows C apart as transposed matrices) and the last inverse stage
# writes the NCHW result, so no array is transposed (with 32 x 32 channels of 31 x 31, the
# transpositions around a channels-last run cost 1.3 ms of 6.5 on one thread, the filter
# gradient's 4 of 8.9).
_FIRST = {"forward": FFT._forward_first, "input_grad": FFT._input_grad_first,
          "filter_grad": FFT._filter_grad_first}


def _adjoint_filter(geom: ConvGeometry, w: np.ndarray, first: bool) -> np.ndarray:
    """The input gradient's filter: w ``(*K, Cg, O)`` with its channel axes swapped within each
    group, ``(*K, Og, G * Cg)`` (the adjoint mixes with each frequency's matrix transposed).
    Channels-last with one group the swap is a view, which the GEMMs read 2.6x slower: copied;
    ``first`` (w a channels-first filter seen channels-last) with one group it is the filter as it
    is, (O, Cg, *K), taps first: a view."""
    g, cg, og, _ = geom.group_dims
    wt = w.reshape(*geom.kernel, cg, g, og).swapaxes(-3, -1).reshape(*geom.kernel, og, g * cg)
    return wt if first and g == 1 else copied("fft.wt", wt)


def _overlap_add_first(dxs: np.ndarray, geom: ConvGeometry, b: int) -> np.ndarray:
    """dx ``(N, C, *S)`` of the blocks' dx ``(N, nb, C, seg, *rest)``: block j's samples start at
    j * b * s of the padded first axis, and overlap the next block's. Each run of dx is written by
    the first block that reaches it and added to by the ones after (in block order, as the
    channels-last overlap-add sums them), zero where none does (the tight pads' crops)."""
    nb, seg, step = dxs.shape[1], dxs.shape[3], b * geom.stride[0]
    lo = geom.tight_padding[0][0]
    stop = min(geom.in_spatial[0], geom.tight_padded[0] - lo)  # past it: no window, no gradient
    dx = np.empty(geom.x_shape("channels_first"), dtype=dxs.dtype)
    written = 0
    for j in range(nb):
        start = j * step - lo  # block j's first sample, in x's coordinates
        a0, a1 = max(start, 0), min(start + seg, stop)
        if a1 <= a0:
            continue
        if a0 > written:
            dx[:, :, written:a0] = 0
            written = a0
        m = min(a1, written)
        if m > a0:
            dx[:, :, a0:m] += dxs[:, j, :, a0 - start : m - start]
        if a1 > m:
            dx[:, :, m:a1] = dxs[:, j, :, m - start : a1 - start]
            written = a1
    dx[:, :, written:] = 0
    return dx


def _zeros(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``out`` zeroed, or without one a new array of zeros."""
    if out is None:
        return np.zeros(shape, dtype=dtype)
    out[...] = 0
    return out


def _cropped(x: np.ndarray, geom: ConvGeometry, view: bool) -> np.ndarray:
    """x ``(N, *S, C)`` cropped to what the windows reach: a view with ``view`` (x may be a
    channels-first array seen channels-last), else C-contiguous (``pad_or_crop``)."""
    if not view:
        return pad_or_crop(x, _crops(geom))
    return x[(slice(None), *(slice(start, stop) for start, stop, _ in geom.reach))]


# Block lengths whose estimates are this close count as a tie (measured: k=255 at 1024 and 2048
# estimated 36 and 34 ms, ran 79-85 and 91-94 ms).
BLOCK_TIE = 1.1


def _block_count(geom: ConvGeometry, b: int) -> int:
    return -(-geom.out_spatial[0] // b)


def _segment(geom: ConvGeometry, b: int) -> int:
    """Input samples the windows of ``b`` consecutive outputs read along the first axis."""
    return transpose_size(b, geom.kernel_eff[0], geom.stride[0], 0, 0, 0)


def _block_geometry(geom: ConvGeometry, b: int) -> ConvGeometry:
    """One block of ``b`` outputs along the first axis, as a batch of unpadded segments."""
    return dataclasses.replace(geom, batch=geom.batch * _block_count(geom, b), padding=((0, 0),) * geom.rank,
                               in_spatial=(_segment(geom, b), *geom.tight_padded[1:]))


def _segments(x: np.ndarray, geom: ConvGeometry, b: int) -> np.ndarray:
    """The overlapping input segments of the blocks: ``(N * nb, seg, *rest, C)``, zero where a
    segment reaches into the padding (filled block by block, without a padded copy of x)."""
    nb, s, seg = _block_count(geom, b), geom.stride[0], _segment(geom, b)
    (lo, _), *others = geom.tight_padding
    xo = pad_or_crop(x, ((0, 0), *others))
    n0 = xo.shape[1]
    out = np.zeros((xo.shape[0], nb, seg, *xo.shape[2:]), dtype=x.dtype)
    for j in range(nb):
        start = j * b * s - lo
        a0, a1 = max(start, 0), min(start + seg, n0)
        if a1 > a0:
            out[:, j, a0 - start : a1 - start] = xo[:, a0:a1]
    return out.reshape(-1, seg, *xo.shape[2:])


def _segments_first(x: np.ndarray, geom: ConvGeometry, b: int) -> np.ndarray:
    """_segments of channels-first x ``(N, C, *S)`` (pads on the first axis only):
    ``(N, nb, C, seg, *rest)``, each (image, block, channel) a run of x along the first axis."""
    nb, s, seg = _block_count(geom, b), geom.stride[0], _segment(geom, b)
    lo = geom.tight_padding[0][0]
    n0 = x.shape[2]
    out = np.zeros((x.shape[0], nb, x.shape[1], seg, *x.shape[3:]), dtype=x.dtype)
    for j in range(nb):
        start = j * b * s - lo
        a0, a1 = max(start, 0), min(start + seg, n0)
        if a1 > a0:
            out[:, j, :, a0 - start : a1 - start] = x[:, :, a0:a1]
    return out


def _dy_blocks_first(dy: np.ndarray, b: int, nb: int) -> np.ndarray:
    """Channels-first dy ``(N, O, *out)`` zero-extended to nb * b outputs along the first axis and
    cut into ``(N, nb, O, b, *rest)``."""
    out = np.empty((dy.shape[0], nb, dy.shape[1], b, *dy.shape[3:]), dtype=dy.dtype)
    for j in range(nb):
        part = dy[:, :, j * b : (j + 1) * b]
        out[:, j, :, : part.shape[2]] = part
        out[:, j, :, part.shape[2]:] = 0
    return out


def _last_view(blocks: np.ndarray) -> np.ndarray:
    """``(N, nb, C, L, *rest)`` blocks as the channels-last view ``(N * nb, L, *rest, C)``."""
    return x_to_last(blocks.reshape(-1, *blocks.shape[2:]), "channels_first")


def _dy_blocks(dy: np.ndarray, b: int, nb: int) -> np.ndarray:
    """dy zero-extended to nb * b outputs along the first axis: ``(N * nb, b, *rest, O)``."""
    pad = nb * b - dy.shape[1]
    dye = pad_or_crop(dy, ((0, pad),) + ((0, 0),) * (dy.ndim - 3))
    return dye.reshape(dy.shape[0] * nb, b, *dy.shape[2:])


def _crops(geom: ConvGeometry) -> tuple[tuple[int, int], ...]:
    """The negative parts of the tight pads: x is cropped by these (to what the windows reach),
    never padded."""
    return tuple((-start, stop - n) for (start, stop, _), n in zip(geom.reach, geom.in_spatial))


def _kept(geom: ConvGeometry) -> tuple[int, ...]:
    """The length of x after the crops, per axis."""
    return tuple(stop - start for start, stop, _ in geom.reach)


def _tap_positions(geom: ConvGeometry, lengths: tuple[int, ...], flipped: bool = False) -> list[list[int]]:
    """Where tap t of each axis sits in the circular signal of that axis's length: at t * d, less
    the leading pad (x starts at sample 0 instead of being padded); ``flipped`` (the forward's
    correlation as a convolution): at -(t * d - lead)."""
    sign = -1 if flipped else 1
    return [[sign * (t * d - lo) % n for t in range(k)] for k, d, lo, n in
            zip(geom.kernel, geom.rhs_dilation, (lead for *_, lead in geom.reach), lengths)]


