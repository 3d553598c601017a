"""Convolution and average pooling as sparse matrices on flattened images.

One sample, no batch dimension: an image of shape ``(C, H, W)`` is the vector ``x.reshape(-1)`` in C
order, and every operator here returns a ``scipy.sparse.csr_matrix`` ``M`` with::

    M @ x.reshape(-1) == F.conv2d(x[None], weight, ...)[0].reshape(-1)      (to float64 round-off)

and likewise for ``F.conv_transpose2d``, ``F.avg_pool2d`` and ``F.adaptive_avg_pool2d``. Every padding mode of ``nn.Conv2d``
(zeros, reflect, replicate, circular) is a map from padded coordinates to input coordinates, so each
operator is linear and its matrix is built by index arithmetic over all taps at once; no dense matrix
is ever formed.

Padding given as a 4-tuple is ``(top, bottom, left, right)``.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..errors import ModelError, ShapeError

__all__ = [
    "conv2d_matrix",
    "conv_transpose2d_matrix",
    "conv2d_bias",
    "avg_pool2d_matrix",
    "adaptive_avg_pool2d_matrix",
]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

_INT32_MAX = np.iinfo(np.int32).max


# ---------------------------------------------------------------------------------------------------
# argument parsing


def _as_int(value, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ShapeError(f"{name} must be an integer, got {value!r}") from None


def _ints(value, name: str) -> tuple[int, ...]:
    """An int -> (int,); a sequence of ints -> the tuple of them."""
    try:
        return (operator.index(value),)
    except TypeError:
        pass
    try:
        return tuple(_as_int(item, name) for item in value)
    except TypeError:
        raise ShapeError(f"{name} must be an int or a tuple of ints, got {value!r}") from None


def _pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints -> (along H, along W)."""
    items = _ints(value, name)
    if len(items) == 1:
        return items[0], items[0]
    if len(items) != 2:
        raise ShapeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return items


def _positive_pair(value, name: str) -> tuple[int, int]:
    pair = _pair(value, name)
    if min(pair) <= 0:
        raise ShapeError(f"{name} must be positive, got {value!r}")
    return pair


def _padding4(padding, name: str = "padding") -> tuple[int, int, int, int]:
    """An int, a pair (pad_h, pad_w) or a 4-tuple (top, bottom, left, right) -> the 4-tuple."""
    pads = _ints(padding, name)
    if len(pads) in (1, 2):
        pad_h, pad_w = _pair(padding, name)
        pads = (pad_h, pad_h, pad_w, pad_w)
    elif len(pads) != 4:
        raise ShapeError(f"{name} must be an int, a pair or (top, bottom, left, right), got {padding!r}")
    if min(pads) < 0:
        raise ShapeError(f"{name} must be non-negative, got {padding!r}")
    return pads


def _image_shape(input_shape) -> tuple[int, int, int]:
    try:
        dims = tuple(_as_int(d, "input_shape") for d in input_shape)
    except TypeError:
        raise ShapeError(f"input_shape must be (C, H, W), got {input_shape!r}") from None
    if len(dims) != 3 or min(dims) <= 0:
        raise ShapeError(f"input_shape must be three positive sizes (C, H, W), got {input_shape!r}")
    return dims


def _as_float64(array, name: str) -> np.ndarray:
    """A numpy array or torch tensor -> float64 numpy array; NaN or inf is a ModelError."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    values = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ModelError(f"{name} contains NaN or inf")
    return values


# ---------------------------------------------------------------------------------------------------
# tap tables: for each output position along one axis and each kernel tap, the input index it reads
# (-1 where it reads zero padding)


def _padded_to_input(coord: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Map coordinates of the padded axis (``-pad_lo <= coord < size + pad_hi``) to input indices.

    coord : int64 array, any shape. Returns the same shape; -1 marks a zero-padding position.
    """
    if mode == "zeros":
        return np.where((coord >= 0) & (coord < size), coord, -1)
    if mode == "reflect":
        # one reflection suffices because the padding is smaller than the axis (checked by the caller)
        return np.where(coord < 0, -coord, np.where(coord >= size, 2 * (size - 1) - coord, coord))
    if mode == "replicate":
        return np.clip(coord, 0, size - 1)
    return np.mod(coord, size)  # circular


def _conv_taps(size, kernel, stride, dilation, pad_lo, pad_hi, mode) -> np.ndarray:
    """Input index read by each (output position, kernel tap) of one axis: (out, kernel) int64."""
    out = (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1
    coord = (
        np.arange(out, dtype=np.int64)[:, None] * stride
        + np.arange(kernel, dtype=np.int64)[None, :] * dilation
        - pad_lo
    )
    return _padded_to_input(coord, size, mode)


class _SpatialTaps(NamedTuple):
    """The non-zero pattern of a single-channel operator, taps reading the same pixel merged.

    counts : (P,) entries in each output pixel's row, P = H_out * W_out.
    pixel : (U,) input pixel (ih * W + iw) of each entry, entries sorted by (output pixel, input pixel).
    taps : (V,) flat kernel tap (kh * kW + kw) of every tap that reads the input, sorted by entry.
    starts : (U,) index into ``taps`` of each entry's first tap.
    multiplicity : (U,) how many taps each entry sums (above 1 only where padding other than zeros
        folds several taps of one window onto the same input pixel).
    """

    counts: np.ndarray
    pixel: np.ndarray
    taps: np.ndarray
    starts: np.ndarray
    multiplicity: np.ndarray


def _spatial_taps(rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> _SpatialTaps:
    """Combine the per-axis tap tables rows (H_out, kH) and cols (W_out, kW) into a 2-D pattern."""
    height_out, kernel_h = rows.shape
    width_out, kernel_w = cols.shape
    n_pixels_out = height_out * width_out
    n_pixels_in = height * width
    valid = (rows[:, None, :, None] >= 0) & (cols[None, :, None, :] >= 0)
    pixel = rows[:, None, :, None] * width + cols[None, :, None, :]
    out_pixel = np.arange(n_pixels_out, dtype=np.int64).reshape(height_out, width_out, 1, 1)
    valid = valid.reshape(n_pixels_out, kernel_h * kernel_w)
    key = (out_pixel * n_pixels_in + pixel).reshape(n_pixels_out, kernel_h * kernel_w)[valid]
    taps = np.nonzero(valid)[1]
    # zero padding keeps keys strictly increasing; the other modes may reorder or repeat pixels
    if key.size > 1 and not np.all(key[1:] > key[:-1]):
        order = np.argsort(key, kind="stable")
        key, taps = key[order], taps[order]
    new_entry = np.ones(key.size, dtype=bool)
    new_entry[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(new_entry)
    entry_key = key[starts]
    counts = np.bincount(entry_key // n_pixels_in, minlength=n_pixels_out)
    multiplicity = np.diff(np.append(starts, key.size))
    return _SpatialTaps(counts, entry_key % n_pixels_in, taps, starts, multiplicity)


def _index_dtype(*bounds: int):
    return np.int32 if max(bounds) <= _INT32_MAX else np.int64


def _row_pointer(row_lengths: np.ndarray, dtype) -> np.ndarray:
    indptr = np.zeros(row_lengths.size + 1, dtype=dtype)
    np.cumsum(row_lengths, out=indptr[1:])
    return indptr


# ---------------------------------------------------------------------------------------------------
# convolution


def _conv_padding(padding, kernel, dilation, stride) -> tuple[int, int, int, int]:
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if max(stride) > 1:
                raise ShapeError(f"padding='same' is not supported with stride {stride} > 1 (as in torch)")
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            return (total[0] // 2, total[0] - total[0] // 2, total[1] // 2, total[1] - total[1] // 2)
        raise ShapeError(f"padding must be an int, a pair, a 4-tuple, 'valid' or 'same', got {padding!r}")
    return _padding4(padding)


def conv2d_matrix(
    weight,
    input_shape,
    stride=1,
    padding=0,
    dilation=1,
    groups=1,
    padding_mode="zeros",
) -> tuple[sp.csr_matrix, tuple[int, int, int]]:
    """The matrix of a 2-D convolution without bias, acting on one flattened image.

    Parameters
    ----------
    weight : (C_out, C_in / groups, kH, kW) array or torch tensor; converted to float64.
    input_shape : (C_in, H, W).
    stride, dilation : int or (along H, along W), positive.
    padding : int, (pad_h, pad_w) for symmetric padding, (top, bottom, left, right), or the strings
        ``"valid"`` (none) and ``"same"`` (torch's rule: ``dilation * (k - 1)`` in total per axis,
        ``total // 2`` at top/left and the rest at bottom/right; stride must be 1).
    groups : C_in and C_out are split into this many groups, each convolved on its own.
    padding_mode : ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``, as in ``nn.Conv2d``.

    Returns
    -------
    M : csr_matrix, (C_out * H_out * W_out, C_in * H * W) float64, with
        ``M @ x.reshape(-1) == F.conv2d(x[None], weight, ...)[0].reshape(-1)`` for ``x`` of shape
        input_shape, up to float64 round-off (several taps folded onto one pixel are summed first).
    output_shape : (C_out, H_out, W_out).

    Raises
    ------
    ShapeError : weight not 4-D, channels that do not fit input_shape or groups, non-positive stride or
        dilation, negative padding, reflect padding not smaller than the input, an unknown padding_mode,
        or a kernel larger than the padded input.
    ModelError : weight contains NaN or inf.
    """
    weights = _as_float64(weight, "weight")
    if weights.ndim != 4 or min(weights.shape) == 0:
        raise ShapeError(
            f"weight must be a non-empty 4-D array (C_out, C_in/groups, kH, kW), got shape {weights.shape}"
        )
    channels_in, height, width = _image_shape(input_shape)
    channels_out, group_channels_in, kernel_h, kernel_w = weights.shape
    groups = _as_int(groups, "groups")
    if groups <= 0:
        raise ShapeError(f"groups must be positive, got {groups}")
    if channels_in % groups:
        raise ShapeError(f"input_shape[0] = {channels_in} channels is not divisible by groups = {groups}")
    if channels_out % groups:
        raise ShapeError(f"weight.shape[0] = {channels_out} channels is not divisible by groups = {groups}")
    if group_channels_in * groups != channels_in:
        raise ShapeError(
            f"weight.shape[1] * groups = {group_channels_in} * {groups} does not match "
            f"input_shape[0] = {channels_in} input channels"
        )
    stride = _positive_pair(stride, "stride")
    dilation = _positive_pair(dilation, "dilation")
    if padding_mode not in PADDING_MODES:
        raise ShapeError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    top, bottom, left, right = _conv_padding(padding, (kernel_h, kernel_w), dilation, stride)
    if padding_mode == "reflect" and (max(top, bottom) >= height or max(left, right) >= width):
        raise ShapeError(
            f"reflect padding ({top}, {bottom}, {left}, {right}) must be smaller than the input "
            f"({height}, {width}) along each axis"
        )
    for axis, size, pad, kernel, dil in (
        ("H", height, top + bottom, kernel_h, dilation[0]),
        ("W", width, left + right, kernel_w, dilation[1]),
    ):
        if dil * (kernel - 1) + 1 > size + pad:
            raise ShapeError(
                f"the kernel of weight ({kernel} taps along {axis}, dilation {dil}) spans more than the "
                f"padded input ({size} + padding {pad}); the output would be empty"
            )

    rows = _conv_taps(height, kernel_h, stride[0], dilation[0], top, bottom, padding_mode)
    cols = _conv_taps(width, kernel_w, stride[1], dilation[1], left, right, padding_mode)
    pattern = _spatial_taps(rows, cols, height, width)
    output_shape = (channels_out, rows.shape[0], cols.shape[0])
    shape = (int(np.prod(output_shape)), channels_in * height * width)
    matrix = _grouped_matrix(weights, pattern, groups, height * width, shape)
    return matrix, output_shape


def _grouped_matrix(weights, pattern: _SpatialTaps, groups, n_pixels_in, shape) -> sp.csr_matrix:
    """Assemble the CSR matrix of a grouped convolution from its single-channel pattern.

    Each row (c_out, p) holds, for every input channel of c_out's group in turn, the entries of the
    output pixel p; this order makes every row's column indices strictly increasing.
    """
    channels_out, group_channels_in, kernel_h, kernel_w = weights.shape
    n_taps = kernel_h * kernel_w
    n_entries = pattern.pixel.size
    block = group_channels_in * n_entries  # entries per output channel
    dtype = _index_dtype(channels_out * block, shape[0], shape[1])

    # position of the entry (c_in, j) inside its output channel's stretch of the CSR arrays
    entry_row = np.repeat(np.arange(pattern.counts.size), pattern.counts)
    row_first = (np.cumsum(pattern.counts) - pattern.counts)[entry_row]
    channel = np.arange(group_channels_in, dtype=np.int64)[:, None]
    position = (
        group_channels_in * row_first[None, :]
        + channel * pattern.counts[entry_row][None, :]
        + (np.arange(n_entries) - row_first)[None, :]
    )
    source = np.empty(block, dtype=np.int64)
    source[position.ravel()] = np.arange(block)

    local_columns = (channel * n_pixels_in + pattern.pixel[None, :]).ravel()[source].astype(dtype)
    group_size = channels_out // groups
    column_offset = (np.arange(channels_out) // group_size * group_channels_in * n_pixels_in).astype(dtype)
    indices = (local_columns[None, :] + column_offset[:, None]).ravel()

    flat_weights = weights.reshape(channels_out, group_channels_in, n_taps)
    first_tap = (channel * n_taps + pattern.taps[pattern.starts][None, :]).ravel()[source]
    data = np.take(flat_weights.reshape(channels_out, group_channels_in * n_taps), first_tap, axis=1)
    # taps folded onto an entry already holding one: one pass per rank, over the few entries concerned
    for rank in range(1, int(pattern.multiplicity.max(initial=1))):
        entries = np.flatnonzero(pattern.multiplicity > rank)
        folded = np.take(flat_weights, pattern.taps[pattern.starts[entries] + rank], axis=2)
        data[:, position[:, entries].ravel()] += folded.reshape(channels_out, -1)
    data = data.ravel()

    indptr = _row_pointer(np.tile(group_channels_in * pattern.counts, channels_out), dtype)
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def conv_transpose2d_matrix(
    weight,
    input_shape,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    groups=1,
) -> tuple[sp.csr_matrix, tuple[int, int, int]]:
    """The matrix of a 2-D transposed convolution without bias (``F.conv_transpose2d``) on one flattened image.

    A transposed convolution is the adjoint of the convolution with the same weight, stride, padding,
    dilation and groups that maps its output back to its input: its matrix is that convolution's matrix
    transposed, restricted to the input's pixels (``output_padding`` >= stride makes the convolution see
    more pixels than the input has).

    Parameters
    ----------
    weight : (C_in, C_out / groups, kH, kW) array or torch tensor (torch's and ONNX's layout).
    input_shape : (C_in, H, W).
    stride, dilation : int or pair, positive.
    padding : int, pair or (top, bottom, left, right): rows and columns cropped from the full output.
    output_padding : int or pair, non-negative: rows and columns added at the bottom and right.

    Returns
    -------
    M : csr_matrix, (C_out * H_out * W_out, C_in * H * W) float64 with
        ``H_out = (H - 1) * stride - top - bottom + dilation * (kH - 1) + output_padding + 1`` (W likewise).
    output_shape : (C_out, H_out, W_out).
    """
    weights = _as_float64(weight, "weight")
    if weights.ndim != 4 or min(weights.shape) == 0:
        raise ShapeError(
            f"weight must be a non-empty 4-D array (C_in, C_out/groups, kH, kW), got shape {weights.shape}"
        )
    channels_in, height, width = _image_shape(input_shape)
    groups = _as_int(groups, "groups")
    if groups <= 0:
        raise ShapeError(f"groups must be positive, got {groups}")
    if weights.shape[0] != channels_in:
        raise ShapeError(f"weight.shape[0] = {weights.shape[0]} does not match input_shape[0] = {channels_in}")
    stride = _positive_pair(stride, "stride")
    dilation = _positive_pair(dilation, "dilation")
    top, bottom, left, right = _padding4(padding)
    extra = _pair(output_padding, "output_padding")
    if min(extra) < 0:
        raise ShapeError(f"output_padding must be non-negative, got {output_padding!r}")
    kernel_h, kernel_w = weights.shape[2:]
    height_out = (height - 1) * stride[0] - top - bottom + dilation[0] * (kernel_h - 1) + extra[0] + 1
    width_out = (width - 1) * stride[1] - left - right + dilation[1] * (kernel_w - 1) + extra[1] + 1
    if height_out <= 0 or width_out <= 0:
        raise ShapeError(f"padding ({top}, {bottom}, {left}, {right}) crops the whole output "
                         f"({height_out} x {width_out})")
    channels_out = weights.shape[1] * groups
    adjoint, (_, seen_h, seen_w) = conv2d_matrix(
        weights, (channels_out, height_out, width_out), stride, (top, bottom, left, right), dilation, groups)
    if (seen_h, seen_w) != (height, width):
        keep = np.arange(channels_in * seen_h * seen_w).reshape(channels_in, seen_h, seen_w)[:, :height, :width]
        adjoint = adjoint[keep.reshape(-1)]
    return adjoint.T.tocsr(), (channels_out, height_out, width_out)


def conv2d_bias(bias, output_shape) -> np.ndarray:
    """The bias of a convolution as a vector on the flattened output.

    bias : (C_out,) array or torch tensor. output_shape : (C_out, H_out, W_out).
    Returns (C_out * H_out * W_out,) float64, each channel's bias repeated over its pixels.
    """
    values = _as_float64(bias, "bias")
    channels_out, height_out, width_out = _image_shape(output_shape)
    if values.shape != (channels_out,):
        raise ShapeError(f"bias must have shape ({channels_out},) to match output_shape, got {values.shape}")
    return np.repeat(values, height_out * width_out)


# ---------------------------------------------------------------------------------------------------
# pooling


def _channelwise_matrix(rows, cols, divisor, input_shape, output_hw) -> sp.csr_matrix:
    """The block-diagonal matrix applying one spatial averaging operator to every channel.

    rows : (H_out, kH), cols : (W_out, kW) tap tables (-1: not read). divisor : (H_out * W_out,) the
    number each output pixel's sum is divided by (ignored on pixels that read nothing).
    """
    channels, height, width = input_shape
    pattern = _spatial_taps(rows, cols, height, width)
    n_pixels_in = height * width
    entry_row = np.repeat(np.arange(pattern.counts.size), pattern.counts)
    local_data = 1.0 / divisor[entry_row]
    block = pattern.pixel.size
    shape = (channels * output_hw[0] * output_hw[1], channels * n_pixels_in)
    dtype = _index_dtype(channels * block, shape[0], shape[1])
    offsets = np.arange(channels, dtype=dtype)[:, None] * n_pixels_in
    indices = (pattern.pixel.astype(dtype)[None, :] + offsets).ravel()
    data = np.tile(local_data, channels)
    indptr = _row_pointer(np.tile(pattern.counts, channels), dtype)
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def _pool_axis(size, kernel, stride, pad_lo, pad_hi, ceil_mode, count_include_pad, axis):
    """Tap table (out, kernel) of one avg-pool axis and the window sizes torch divides by (out,)."""
    if size + pad_lo + pad_hi < kernel:
        raise ShapeError(
            f"kernel_size {kernel} along {axis} is larger than the padded input ({size} + padding "
            f"{pad_lo + pad_hi}); the output would be empty"
        )
    out = (size + pad_lo + pad_hi - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    # torch: with ceil_mode the last window must start inside the input or its top/left padding
    if ceil_mode and (out - 1) * stride >= size + pad_lo:
        out -= 1
    start = np.arange(out, dtype=np.int64) * stride - pad_lo
    coord = start[:, None] + np.arange(kernel, dtype=np.int64)[None, :]
    taps = _padded_to_input(coord, size, "zeros")
    if count_include_pad:
        window = np.minimum(start + kernel, size + pad_hi) - start
    else:
        window = np.count_nonzero(taps >= 0, axis=1)
    return taps, window


def avg_pool2d_matrix(
    input_shape,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
) -> tuple[sp.csr_matrix, tuple[int, int, int]]:
    """The matrix of ``nn.AvgPool2d`` on one flattened image.

    Parameters
    ----------
    input_shape : (C, H, W).
    kernel_size : int or (kH, kW), positive.
    stride : int or pair, positive; None means kernel_size.
    padding : int, (pad_h, pad_w) or (top, bottom, left, right); padding is read as zeros.
    ceil_mode : round the output size up, keeping only windows that start inside the input or the
        top/left padding (torch's rule).
    count_include_pad : divide by the window size including padding (clipped to the padded input)
        rather than by the number of input pixels the window covers.
    divisor_override : a non-zero int that every window's sum is divided by instead.

    Returns
    -------
    M : csr_matrix, (C * H_out * W_out, C * H * W) float64, equal to ``F.avg_pool2d`` on ``x[None]``.
        A window that covers no input pixel gives a zero row, as in torch.
    output_shape : (C, H_out, W_out).
    """
    shape = _image_shape(input_shape)
    kernel = _positive_pair(kernel_size, "kernel_size")
    strides = kernel if stride is None else _positive_pair(stride, "stride")
    top, bottom, left, right = _padding4(padding)
    if divisor_override is not None:
        divisor_override = _as_int(divisor_override, "divisor_override")
        if divisor_override == 0:
            raise ShapeError("divisor_override must not be zero")
    rows, window_h = _pool_axis(
        shape[1], kernel[0], strides[0], top, bottom, ceil_mode, count_include_pad, "H"
    )
    cols, window_w = _pool_axis(
        shape[2], kernel[1], strides[1], left, right, ceil_mode, count_include_pad, "W"
    )
    if divisor_override is not None:
        divisor = np.full(window_h.size * window_w.size, float(divisor_override))
    else:
        divisor = np.outer(window_h, window_w).ravel().astype(np.float64)
    output_hw = (rows.shape[0], cols.shape[0])
    # a window with no input pixel has divisor 0 when padding is excluded; its row is empty anyway
    divisor[divisor == 0] = 1.0
    matrix = _channelwise_matrix(rows, cols, divisor, shape, output_hw)
    return matrix, (shape[0], *output_hw)


def _adaptive_axis(size, out) -> tuple[np.ndarray, np.ndarray]:
    """Tap table (out, widest window) and window sizes (out,) of one adaptive-pool axis."""
    index = np.arange(out, dtype=np.int64)
    start = index * size // out
    end = -((-(index + 1) * size) // out)  # ceil((i + 1) * size / out)
    window = end - start
    coord = start[:, None] + np.arange(int(window.max()), dtype=np.int64)[None, :]
    taps = np.where(coord < end[:, None], coord, -1)
    return taps, window


def adaptive_avg_pool2d_matrix(input_shape, output_size) -> tuple[sp.csr_matrix, tuple[int, int, int]]:
    """The matrix of ``nn.AdaptiveAvgPool2d`` on one flattened image.

    Output pixel i along an axis of input size H averages the inputs ``floor(i * H / out)`` up to
    ``ceil((i + 1) * H / out)`` (exclusive), as torch does.

    Parameters
    ----------
    input_shape : (C, H, W).
    output_size : int or (H_out, W_out), positive; a None entry keeps that axis's input size.

    Returns
    -------
    M : csr_matrix, (C * H_out * W_out, C * H * W) float64. output_shape : (C, H_out, W_out).
    """
    shape = _image_shape(input_shape)
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ShapeError(f"output_size must be an int or a pair, got {output_size!r}")
        sizes = tuple(shape[1 + axis] if s is None else s for axis, s in enumerate(output_size))
    else:
        sizes = output_size
    output_hw = _positive_pair(sizes, "output_size")
    rows, window_h = _adaptive_axis(shape[1], output_hw[0])
    cols, window_w = _adaptive_axis(shape[2], output_hw[1])
    divisor = np.outer(window_h, window_w).ravel().astype(np.float64)
    matrix = _channelwise_matrix(rows, cols, divisor, shape, output_hw)
    return matrix, (shape[0], *output_hw)
