"""The ONNX operators on images: Conv, ConvTranspose, AveragePool, GlobalAveragePool as sparse matrices.

Each handler reads the (C, H, W) image of the data path (1-D operators as H = 1), turns the operator's
attributes into the arguments of ``conv`` and emits its matrix on the flattened image.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError, ShapeError, UnsupportedOperation
from .conv import (
    adaptive_avg_pool2d_matrix, avg_pool2d_matrix, conv2d_bias, conv2d_matrix, conv_transpose2d_matrix,
)
from .onnx_fold import node_name
from .onnx_path import constant_input

__all__ = ["IMAGE_HANDLERS"]

_SAME = ("SAME_UPPER", "SAME_LOWER")


def _same_padding(size, kernel, stride, dilation, mode):
    """(begin, end) padding of one axis under auto_pad SAME_UPPER / SAME_LOWER."""
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + dilation * (kernel - 1) + 1 - size)
    small, large = total // 2, total - total // 2
    return (small, large) if mode == "SAME_UPPER" else (large, small)


def _window(node, attributes, kernel, image, spatial_rank, dilation=(1, 1)):
    """Strides and (top, bottom, left, right) padding from strides/pads/auto_pad (1-D as H = 1)."""
    strides = list(attributes.get("strides", [1] * spatial_rank))
    pads = list(attributes.get("pads", [0] * 2 * spatial_rank))
    auto_pad = attributes.get("auto_pad", "NOTSET")
    if spatial_rank == 1:
        strides, pads = [1, *strides], [0, pads[0], 0, pads[1]]
    if auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad in _SAME:
        (top, bottom), (left, right) = (
            _same_padding(image[1 + axis], kernel[axis], strides[axis], dilation[axis], auto_pad) for axis in (0, 1)
        )
        pads = [top, left, bottom, right]
    elif auto_pad != "NOTSET":
        raise UnsupportedOperation(node.op_type, node_name(node), f"auto_pad {auto_pad!r}")
    return tuple(strides), (pads[0], pads[2], pads[1], pads[3])


def _weights(node, inputs):
    """The weight and bias operands of a Conv or ConvTranspose node, and its spatial rank."""
    weight = constant_input(node, inputs, 1, "the weight")
    bias = constant_input(node, inputs, 2, "the bias")
    if weight is None:
        raise ModelError(f"node {node_name(node)!r} ({node.op_type}) has no weight input")
    return np.asarray(weight, dtype=np.float64), bias, weight.ndim - 2


def _on_conv(path, node, attrs, inputs):
    name = node_name(node)
    weight, bias, spatial_rank = _weights(node, inputs)
    image = path.image(node, spatial_rank)
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != weight.shape[2:]:
        raise ShapeError(f"node {name!r} (Conv): kernel_shape {attrs['kernel_shape']} but weight {weight.shape}")
    dilation = list(attrs.get("dilations", [1] * spatial_rank))
    if spatial_rank == 1:
        weight, dilation = weight[:, :, None, :], [1, *dilation]
    strides, padding = _window(node, attrs, weight.shape[2:], image, spatial_rank, dilation)
    matrix, out_shape = conv2d_matrix(weight, image, stride=strides, padding=padding, dilation=tuple(dilation),
                                      groups=attrs.get("group", 1))
    bias_vector = None if bias is None else conv2d_bias(bias, out_shape)
    path.affine(node, matrix, bias_vector, path.image_output(spatial_rank, out_shape))


def _transposed_padding(node, attrs, sizes, kernel, strides, dilation, extra):
    """(begin, end) crop of each spatial axis of a ConvTranspose, from pads, or output_shape / auto_pad."""
    rank = len(sizes)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID", *_SAME):
        raise UnsupportedOperation(node.op_type, node_name(node), f"auto_pad {auto_pad!r}")
    if "output_shape" not in attrs and auto_pad not in _SAME:
        pads = [0] * 2 * rank if auto_pad == "VALID" else list(attrs.get("pads", [0] * 2 * rank))
        return [(pads[axis], pads[axis + rank]) for axis in range(rank)]
    # the ONNX specification: pads follow from the output shape asked for (by default input * stride)
    wanted = list(attrs["output_shape"])[-rank:] if "output_shape" in attrs else [s * t for s, t in zip(sizes, strides)]
    crops = []
    for size, k, stride, d, e, out in zip(sizes, kernel, strides, dilation, extra, wanted):
        total = stride * (size - 1) + e + (k - 1) * d + 1 - out
        if total < 0:
            raise ShapeError(f"node {node_name(node)!r} (ConvTranspose): output_shape {list(wanted)} is larger "
                             "than the transposed convolution's full output")
        small, large = total // 2, total - total // 2
        crops.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
    return crops


def _on_conv_transpose(path, node, attrs, inputs):
    name = node_name(node)
    weight, bias, spatial_rank = _weights(node, inputs)
    image = path.image(node, spatial_rank)
    kernel = list(weight.shape[2:])
    if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != kernel:
        raise ShapeError(f"node {name!r} (ConvTranspose): kernel_shape {attrs['kernel_shape']} but weight "
                         f"{weight.shape}")
    strides = list(attrs.get("strides", [1] * spatial_rank))
    dilation = list(attrs.get("dilations", [1] * spatial_rank))
    extra = list(attrs.get("output_padding", [0] * spatial_rank))
    sizes = list(image[1:]) if spatial_rank == 2 else [image[2]]
    crops = _transposed_padding(node, attrs, sizes, kernel, strides, dilation, extra)
    if spatial_rank == 1:
        weight = weight[:, :, None, :]
        strides, dilation, extra, crops = [1, *strides], [1, *dilation], [0, *extra], [(0, 0), *crops]
    padding = (crops[0][0], crops[0][1], crops[1][0], crops[1][1])
    matrix, out_shape = conv_transpose2d_matrix(weight, image, tuple(strides), padding, tuple(extra), tuple(dilation),
                                                attrs.get("group", 1))
    bias_vector = None if bias is None else conv2d_bias(bias, out_shape)
    path.affine(node, matrix, bias_vector, path.image_output(spatial_rank, out_shape))


def _on_average_pool(path, node, attrs, inputs):
    name = node_name(node)
    kernel = list(attrs["kernel_shape"])
    spatial_rank = len(kernel)
    image = path.image(node, spatial_rank)
    if any(d != 1 for d in attrs.get("dilations", [])):
        raise UnsupportedOperation("AveragePool", name, "dilations other than 1")
    kernel = [1, *kernel] if spatial_rank == 1 else kernel
    strides, padding = _window(node, attrs, kernel, image, spatial_rank)
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    matrix, out_shape = avg_pool2d_matrix(image, tuple(kernel), stride=strides, padding=padding, ceil_mode=ceil_mode,
                                          count_include_pad=bool(attrs.get("count_include_pad", 0)))
    path.affine(node, matrix, None, path.image_output(spatial_rank, out_shape))


def _on_global_average_pool(path, node, attrs, inputs):
    spatial_rank = len(path.full_shape) - 2
    image = path.image(node, spatial_rank)
    matrix, out_shape = adaptive_avg_pool2d_matrix(image, (1, 1))
    path.affine(node, matrix, None, path.image_output(spatial_rank, out_shape))


IMAGE_HANDLERS = {
    "Conv": _on_conv, "ConvTranspose": _on_conv_transpose, "AveragePool": _on_average_pool,
    "GlobalAveragePool": _on_global_average_pool,
}
"""Handlers of the image operators, by op_type: (path, node, attrs, inputs) -> None."""
