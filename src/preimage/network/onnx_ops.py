"""The data path of the ONNX importer: each node that reads the data tensor, as primitive operations.

``onnx_import`` walks the graph, folds the constants and hands every node on the data path to
``translate``, which calls the methods of the ``DataPath`` (``onnx_path``) that append the operations
the node computes on one sample: a selection where entries only move (Transpose, Slice, Gather, Pad,
Concat), a block matrix for MatMul and Gemm, an averaging matrix for ReduceMean, the sparse matrices of
``conv`` for Conv, ConvTranspose and pooling (``onnx_image_ops``), a diagonal for elementwise arithmetic
(Add, Sum, Mean, ...) and BatchNormalization.

Interface
---------
HANDLED_OPS : the operators ``translate`` accepts.
translate(path, node, inputs) : append the operations of ``node`` to ``path``.
unsupported_reason(op) : why an operator outside HANDLED_OPS cannot be imported.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import onnx

from ..errors import ModelError, ShapeError, UnsupportedOperation
from .layers import RELU, leaky_relu
from .onnx_fold import (
    axes_operand, int_list, node_attributes, node_name, normalise_axes, optional_input, reshape_target, slice_array,
    unsqueeze_array,
)
from .onnx_image_ops import IMAGE_HANDLERS
from .onnx_path import DATA, DataPath, constant_input

__all__ = ["HANDLED_OPS", "translate", "unsupported_reason"]

# defaults of the ONNX operator specification
_LEAKY_RELU_ALPHA = 0.01
_BATCH_NORM_EPSILON = 1e-5


# ---------------------------------------------------------------------------------------------------
# the handlers: (path, node, attrs, inputs) with attrs the node's attributes and inputs[i] a constant
# array, DATA or None


def _on_gemm(path, node, attrs, inputs):
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    bias = constant_input(node, inputs, 2, "C")
    addend = None if bias is None else beta * np.asarray(bias, dtype=np.float64)
    if inputs[0] is DATA:
        other = constant_input(node, inputs, 1, "B")
        if attrs.get("transA", 0):
            path.transpose(node, [1, 0])
        path.matmul(node, alpha * (other.T if attrs.get("transB", 0) else other), True, addend)
    else:
        other = inputs[0]
        if attrs.get("transB", 0):
            path.transpose(node, [1, 0])
        path.matmul(node, alpha * (other.T if attrs.get("transA", 0) else other), False, addend)


def _on_matmul(path, node, attrs, inputs):
    if inputs[0] is DATA:
        path.matmul(node, inputs[1], data_left=True)
    else:
        path.matmul(node, inputs[0], data_left=False)


def _on_arithmetic(path, node, attrs, inputs):
    op = node.op_type
    data_first = inputs[0] is DATA
    constant = np.asarray(inputs[1] if data_first else inputs[0], dtype=np.float64)
    if op == "Add":
        path.elementwise(node, None, constant)
    elif op == "Sub" and data_first:
        path.elementwise(node, None, -constant)
    elif op == "Sub":
        path.elementwise(node, -np.ones_like(constant), constant)
    elif op == "Mul":
        path.elementwise(node, constant, None)
    elif not data_first:
        raise UnsupportedOperation(op, node_name(node), "dividing by the data is not affine")
    elif np.any(constant == 0):
        raise ModelError(f"node {node_name(node)!r} (Div): the divisor has zero entries")
    else:
        path.elementwise(node, 1.0 / constant, None)


def _on_neg(path, node, attrs, inputs):
    path.elementwise(node, -1.0, None)


def _on_relu(path, node, attrs, inputs):
    path.activation(node, RELU)


def _on_leaky_relu(path, node, attrs, inputs):
    path.activation(node, leaky_relu(attrs.get("alpha", _LEAKY_RELU_ALPHA)))


def _on_prelu(path, node, attrs, inputs):
    slope = np.asarray(constant_input(node, inputs, 1, "slope"), dtype=np.float64)
    if slope.size == 0 or np.any(slope != slope.reshape(-1)[0]):
        raise UnsupportedOperation("PRelu", node_name(node), "only a single slope shared by all units")
    path.activation(node, leaky_relu(slope.reshape(-1)[0]))


def _on_pass_through(path, node, attrs, inputs):
    if node.op_type == "Cast" and onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]).kind != "f":
        raise UnsupportedOperation("Cast", node_name(node), "casting the data to a non-float type")
    if node.op_type == "Dropout":
        training = optional_input(inputs, 2)
        if training is not None and bool(np.asarray(training).reshape(-1)[0]):
            raise UnsupportedOperation("Dropout", node_name(node), "training_mode is on")


def _on_flatten(path, node, attrs, inputs):
    full = path.full_shape
    axis = attrs.get("axis", 1)
    axis = axis + len(full) if axis < 0 else axis
    if not 0 <= axis <= len(full):
        raise ShapeError(
            f"node {node_name(node)!r} (Flatten): axis {attrs.get('axis')} out of range for rank {len(full)}"
        )
    if path.batched and (axis == 0 or math.prod(full[1:axis]) != 1):
        raise path.mixes_samples(node, f"axis {axis} does not keep the batch axis first")
    path.reshape(node, path.per_sample(node, (math.prod(full[:axis]), math.prod(full[axis:]))))


def _on_reshape(path, node, attrs, inputs):
    name = node_name(node)
    allowzero = attrs.get("allowzero", 0)
    if "shape" in attrs:
        target, target_name = np.asarray(attrs["shape"]), None
    else:
        target, target_name = np.asarray(constant_input(node, inputs, 1, "shape")), node.input[1]
    target = target.astype(np.int64).reshape(-1)
    written = target.tolist()
    leads = path.folder.batch_leads_reshape_target(node, target_name)
    if path.batched and (leads or (target.size and path.fixed_batch > 1 and target[0] == path.fixed_batch)):
        target[0] = 1 if allowzero else 0  # the batch size; 0 copies the data's batch axis
    try:
        resolved = reshape_target(target, path.full_shape, allowzero)
    except ShapeError:
        if path.batched and path.fixed_batch > 1:
            raise path.mixes_samples(node, f"target {written} does not keep the batch axis first") from None
        raise
    if path.batched and (not resolved or resolved[0] != 1):
        raise path.mixes_samples(node, f"target {written} does not keep the batch axis first")
    path.reshape(node, path.per_sample(node, resolved))


def _on_squeeze(path, node, attrs, inputs):
    axes = axes_operand(attrs, inputs)
    full = path.full_shape
    if axes is None:
        axes = [i for i, s in enumerate(full) if s == 1 and not (path.batched and i == 0)]
    axes = normalise_axes(axes, len(full))
    path.check_not_batch_axis(node, axes)
    if any(full[i] != 1 for i in axes):
        raise ShapeError(f"node {node_name(node)!r} (Squeeze): axes {axes} of shape {full} are not all 1")
    path.reshape(node, path.per_sample(node, [s for i, s in enumerate(full) if i not in axes]))


def _on_unsqueeze(path, node, attrs, inputs):
    axes = axes_operand(attrs, inputs)
    if axes is None:
        raise ModelError(f"node {node_name(node)!r} (Unsqueeze) has no axes")
    axes = normalise_axes(axes, len(path.full_shape) + len(axes))
    path.check_not_batch_axis(node, axes)
    path.reshape(node, path.per_sample(node, unsqueeze_array(np.empty(path.full_shape), axes).shape))


def _on_transpose(path, node, attrs, inputs):
    path.transpose(node, attrs.get("perm"))


def _on_slice_data(path, node, attrs, inputs):
    positions, axes = slice_array(path.positions(), attrs, inputs)
    path.check_not_batch_axis(node, axes)
    path.gather(node, positions)


def _on_gather_data(path, node, attrs, inputs):
    axis = normalise_axes([attrs.get("axis", 0)], len(path.full_shape))[0]
    path.check_not_batch_axis(node, [axis], "axis")
    indices = np.asarray(constant_input(node, inputs, 1, "indices"), dtype=np.int64)
    path.gather(node, np.take(path.positions(), indices, axis=axis))


def _on_pad(path, node, attrs, inputs):
    full = path.full_shape
    name = node_name(node)
    mode = attrs.get("mode", "constant")
    if "pads" in attrs:
        pads, value, axes = list(attrs["pads"]), attrs.get("value", 0.0), None
    else:
        pads = int_list(constant_input(node, inputs, 1, "pads"))
        value = constant_input(node, inputs, 2, "constant_value")
        value = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
        axes = optional_input(inputs, 3)
    axes = list(range(len(full))) if axes is None else normalise_axes(int_list(axes), len(full))
    if len(pads) != 2 * len(axes):
        raise ShapeError(f"node {name!r} (Pad): {len(pads)} pads for {len(axes)} axes")
    begin, end = [0] * len(full), [0] * len(full)
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = pads[i], pads[i + len(axes)]
    path.check_not_batch_axis(node, [i for i in range(len(full)) if begin[i] or end[i]], "padded axes")
    crop = tuple(slice(max(0, -b), s - max(0, -e)) for b, e, s in zip(begin, end, full))
    positions = path.positions()[crop]
    widths = [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
    if mode not in ("constant", "reflect", "edge", "wrap"):  # ONNX's modes, named as in np.pad
        raise UnsupportedOperation("Pad", name, f"mode {mode!r}")
    if mode == "constant":
        path.gather(node, np.pad(positions, widths, constant_values=-1), fill=value)
    else:
        path.gather(node, np.pad(positions, widths, mode=mode))


def _on_batch_norm(path, node, attrs, inputs):
    name = node_name(node)
    if attrs.get("training_mode", 0):
        raise UnsupportedOperation("BatchNormalization", name, "training_mode is on")
    scale, offset, mean, variance = (
        np.asarray(constant_input(node, inputs, i, what), dtype=np.float64)
        for i, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))
    )
    full = path.full_shape
    if len(full) < 2:
        raise ShapeError(f"node {name!r} (BatchNormalization) expects (N, C, ...) data, got shape {full}")
    epsilon = attrs.get("epsilon", _BATCH_NORM_EPSILON)
    if np.any(variance + epsilon <= 0):
        index = int(np.argmax((variance + epsilon <= 0).reshape(-1)))
        raise ModelError(f"node {name!r} (BatchNormalization): negative variance {variance.reshape(-1)[index]:g} "
                         f"(entry {index}, epsilon {epsilon:g}); no batch of data has one, the statistics are damaged")
    # per-channel statistics broadcast over the spatial axes; spatial=0 (opset < 9) gives per-element ones
    stats_shape = full[1:] if attrs.get("spatial", 1) == 0 else (full[1],) + (1,) * (len(full) - 2)
    try:
        factor = (scale / np.sqrt(variance + epsilon)).reshape(stats_shape)
        shift = offset.reshape(stats_shape) - mean.reshape(stats_shape) * factor
    except ValueError:
        raise ShapeError(f"node {name!r} (BatchNormalization): statistics do not fit the data {full}") from None
    path.elementwise(node, factor, shift)


def _on_sum_or_mean(path, node, attrs, inputs):
    """Sum / Mean of the data and constants: ``x + sum(c)``, or that divided by the number of inputs."""
    constants = [np.asarray(value, dtype=np.float64) for value in inputs if value is not DATA]
    offset = functools.reduce(np.add, constants) if constants else None
    if node.op_type == "Sum":
        if offset is not None:
            path.elementwise(node, None, offset)
        return
    count = len(inputs)
    path.elementwise(node, np.array(1.0 / count), None if offset is None else offset / count)


def _on_concat(path, node, attrs, inputs):
    if "axis" not in attrs:
        raise ModelError(f"node {node_name(node)!r} (Concat) has no axis")
    path.concat(node, [value for value in inputs if value is not None], attrs["axis"])


def _on_reduce(path, node, attrs, inputs):
    """ReduceSum / ReduceMean: axes as an attribute (older opsets) or the second input (newer ones)."""
    axes = axes_operand(attrs, inputs)
    if axes is not None and len(axes) == 0:
        axes = None
    if axes is None and attrs.get("noop_with_empty_axes", 0):
        return
    path.reduce(node, axes, bool(attrs.get("keepdims", 1)), node.op_type == "ReduceMean")


_HANDLERS = {
    "Gemm": _on_gemm, "MatMul": _on_matmul, "Add": _on_arithmetic, "Sub": _on_arithmetic, "Mul": _on_arithmetic,
    "Div": _on_arithmetic, "Neg": _on_neg, "Relu": _on_relu, "LeakyRelu": _on_leaky_relu, "PRelu": _on_prelu,
    "Identity": _on_pass_through, "Dropout": _on_pass_through, "Cast": _on_pass_through, "Flatten": _on_flatten,
    "Reshape": _on_reshape, "Squeeze": _on_squeeze, "Unsqueeze": _on_unsqueeze, "Transpose": _on_transpose,
    "Slice": _on_slice_data, "Gather": _on_gather_data, "Pad": _on_pad, "BatchNormalization": _on_batch_norm,
    "Sum": _on_sum_or_mean, "Mean": _on_sum_or_mean, "Concat": _on_concat, "ReduceSum": _on_reduce,
    "ReduceMean": _on_reduce, **IMAGE_HANDLERS,
}

HANDLED_OPS = tuple(sorted(_HANDLERS))
"""Operations ``translate`` accepts on the data path."""

_NOT_PIECEWISE_LINEAR = "it is not piecewise linear, so its preimages are not unions of polytopes"
_REASONS = {
    **dict.fromkeys(
        ("MaxPool", "GlobalMaxPool", "MaxRoiPool", "LpPool", "GlobalLpPool"),
        "this pooling is not an affine map followed by an elementwise activation; use AveragePool or a "
        "strided Conv",
    ),
    **dict.fromkeys(
        ("Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Exp", "Log", "Erf", "Gelu", "Elu", "Selu", "Celu",
         "Softplus", "Softsign", "HardSigmoid", "HardSwish", "Mish", "Sqrt", "Pow", "Reciprocal", "Sin", "Cos",
         "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "ReduceSumSquare",
         "LpNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization"),
        _NOT_PIECEWISE_LINEAR,
    ),
    **dict.fromkeys(
        ("Max", "Min", "Clip", "Abs", "ThresholdedRelu", "Shrink"),
        "it is piecewise linear but its kinks are not one ReLU/LeakyReLU kink at 0 per unit; "
        "write max(x, c) as Relu(x - c) + c",
    ),
    **dict.fromkeys(
        ("ReduceMax", "ReduceMin", "ArgMax", "ArgMin", "TopK"),
        "it selects entries by their values, which is not an affine map",
    ),
}


def unsupported_reason(op: str) -> str:
    """Why the operator ``op`` (outside ``HANDLED_OPS``) cannot be on the data path."""
    return _REASONS.get(op, "only affine operations (Gemm, MatMul, Conv, Add, ...), Relu and LeakyRelu can be "
                            "imported")


def translate(path: DataPath, node: onnx.NodeProto, inputs: list) -> None:
    """Append to ``path`` the operations of ``node``, an op of ``HANDLED_OPS`` that reads the data.

    ``inputs[i]`` is DATA for the data tensor (exactly one input), the constant array of input i, or
    None where the input is absent. Pass-through ops (Identity, Dropout, Cast) append nothing. Raises
    UnsupportedOperation, ShapeError or ModelError naming the node when it cannot be represented.
    """
    name = node_name(node)
    try:
        _HANDLERS[node.op_type](path, node, node_attributes(node), inputs)
    except UnsupportedOperation:
        raise
    except (ModelError, ShapeError) as error:
        if str(error).startswith(f"node {name!r}"):
            raise
        raise type(error)(f"node {name!r} ({node.op_type}): {error}") from error
