"""The data path of the ONNX importer: each node that reads the data tensor as primitive operations.

``onnx_import`` walks the graph, folds the constants and hands every node on the data path to
``translate``, which appends to a ``DataPath`` the primitive operations (``AffineOp``, ``ActivationOp``,
``ReshapeOp``) that the node computes on one sample. Every affine operation is a matrix on the flattened
per-sample tensor: a selection where entries only move (Transpose, Slice, Gather, Pad), a block matrix for
MatMul and Gemm, the sparse matrices of ``conv`` for Conv and pooling, a diagonal for elementwise
arithmetic and BatchNormalization.

Interface
---------
DATA : marks the data-path operand among a node's inputs (the other entries are constant arrays or None).
DataPath(input_shape, batched, folder) : the running data tensor and the operations emitted so far.
HANDLED_OPS : the operators ``translate`` accepts.
translate(path, node, inputs) : append the operations of ``node`` to ``path``.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import scipy.sparse as sp

from ..errors import ModelError, ShapeError, UnsupportedOperation
from .affine import AffineMap
from .builder import ActivationOp, AffineOp, ReshapeOp
from .conv import adaptive_avg_pool2d_matrix, avg_pool2d_matrix, conv2d_bias, conv2d_matrix
from .layers import RELU, leaky_relu
from .onnx_fold import (
    ConstantFolder, axes_operand, int_list, node_attributes, node_name, normalise_axes, optional_input,
    reshape_target, slice_array, unsqueeze_array,
)

__all__ = ["DATA", "DataPath", "HANDLED_OPS", "translate"]

DATA = object()
"""Marks the data-path operand among a node's inputs."""

# defaults of the ONNX operator specification
_LEAKY_RELU_ALPHA = 0.01
_BATCH_NORM_EPSILON = 1e-5


# ---------------------------------------------------------------------------------------------------
# matrices of linear maps on the flattened per-sample tensor


def _selection(index: np.ndarray, size: int) -> sp.csr_matrix:
    """Rows pick input entries: row r reads entry ``index[r]``, or nothing where ``index[r] < 0``."""
    flat = index.reshape(-1)
    rows = np.flatnonzero(flat >= 0)
    return sp.csr_matrix((np.ones(rows.size), (rows, flat[rows])), shape=(flat.size, size))


def _matmul_blocks(data_shape, constant, data_left):
    """The matrix of ``x @ C`` (data_left) or ``C @ x`` on x of shape ``data_shape`` (rank >= 2).

    Broadcasting over the leading axes follows numpy. Returns (matrix, output shape): a dense (m, d)
    array when the product is a single matrix-vector product (one block, and x one row for ``x @ C`` or
    one column for ``C @ x``), else a sparse block matrix. ShapeError (a ValueError) when the contracted
    sizes differ, ValueError when the leading axes do not broadcast.
    """
    lead_x, (rows_x, cols_x) = tuple(data_shape[:-2]), data_shape[-2:]
    lead_c = constant.shape[:-2]
    if (constant.shape[-2] != cols_x) if data_left else (constant.shape[-1] != rows_x):
        raise ShapeError(f"matrix product of data {tuple(data_shape)} and constant {constant.shape}: sizes differ")
    lead = np.broadcast_shapes(lead_x, lead_c)
    source = np.broadcast_to(np.arange(math.prod(lead_x)).reshape(lead_x), lead).reshape(-1)
    blocks = np.broadcast_to(constant, lead + constant.shape[-2:]).reshape(-1, *constant.shape[-2:])
    out_tail = (rows_x, constant.shape[-1]) if data_left else (constant.shape[-2], cols_x)
    out_shape = tuple(lead) + out_tail
    if len(blocks) == 1 and (rows_x if data_left else cols_x) == 1:
        return (blocks[0].T if data_left else blocks[0]).copy(), out_shape
    if data_left:  # (n, k) @ C_o (k, m): the block is kron(I_n, C_o^T), (n*m, n*k)
        parts = [sp.kron(sp.identity(rows_x), block.T) for block in blocks]
    else:  # C_o (p, k) @ (k, m): the block is kron(C_o, I_m), (p*m, k*m)
        parts = [sp.kron(block, sp.identity(cols_x)) for block in blocks]
    in_block, out_block = rows_x * cols_x, math.prod(out_tail)
    coo = [part.tocoo() for part in parts]
    row = np.concatenate([c.row + o * out_block for o, c in enumerate(coo)])
    col = np.concatenate([c.col + source[o] * in_block for o, c in enumerate(coo)])
    data = np.concatenate([c.data for c in coo])
    shape = (math.prod(out_shape), math.prod(data_shape))
    return sp.csr_matrix((data, (row, col)), shape=shape), out_shape


def _same_padding(size, kernel, stride, dilation, mode):
    """(begin, end) padding of one axis under auto_pad SAME_UPPER / SAME_LOWER."""
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + dilation * (kernel - 1) + 1 - size)
    small, large = total // 2, total - total // 2
    return (small, large) if mode == "SAME_UPPER" else (large, small)


# ---------------------------------------------------------------------------------------------------
# the running data tensor


class DataPath:
    """The data tensor of a graph walk, of static per-sample shape, and the operations that produced it.

    Parameters
    ----------
    input_shape : the per-sample shape of the graph input. batched : whether the data carries a batch
        axis (first, of size 1 in ``full_shape``), which is not part of ``sample_shape``.
    folder : the graph's ConstantFolder; a Reshape reads the batch markers of its target there.

    Attributes
    ----------
    sample_shape : tuple of int, the per-sample shape of the data tensor, updated by every operation.
    ops : list of AffineOp / ActivationOp / ReshapeOp, in order, for ``builder.assemble``.

    The methods below emit operations for the handlers; each names the ONNX node in its errors.
    """

    def __init__(self, input_shape: tuple[int, ...], batched: bool, folder: ConstantFolder):
        self.sample_shape = tuple(input_shape)
        self.batched = batched
        self.folder = folder
        self.ops: list = []

    @property
    def full_shape(self) -> tuple[int, ...]:
        """The data tensor's shape as ONNX sees it, with the batch size as 1."""
        return (1, *self.sample_shape) if self.batched else self.sample_shape

    @property
    def size(self) -> int:
        """Number of entries of one sample of the data tensor."""
        return math.prod(self.sample_shape)

    def per_sample(self, node, full_shape) -> tuple[int, ...]:
        """Drop the batch axis of an output shape, refusing an op that moved or grew it."""
        full_shape = tuple(int(s) for s in full_shape)
        if not self.batched:
            return full_shape
        if not full_shape or full_shape[0] != 1:
            raise UnsupportedOperation(node.op_type, node_name(node),
                                       "the operation mixes the batch axis with the sample's axes")
        return full_shape[1:]

    def check_not_batch_axis(self, node, axes, what="axes") -> None:
        """Refuse an op whose ``axes`` (of the full shape) include the batch axis."""
        if self.batched and 0 in axes:
            raise UnsupportedOperation(node.op_type, node_name(node), f"{what} include the batch axis 0")

    def positions(self) -> np.ndarray:
        """The flat index of each entry of the data tensor, in the data's full shape."""
        return np.arange(self.size).reshape(self.full_shape)

    def activation(self, node, activation) -> None:
        """Emit an elementwise activation."""
        self.ops.append(ActivationOp(activation, node_name(node), node.op_type))

    def affine(self, node, weight, bias, shape) -> None:
        """Emit ``x -> weight x + bias`` (bias None: no offset), giving the data the per-sample ``shape``."""
        self._emit(node, AffineMap(weight, bias), shape)

    def _emit(self, node, affine: AffineMap, shape) -> None:
        self.sample_shape = tuple(shape)
        self.ops.append(AffineOp(affine, self.sample_shape, node_name(node), node.op_type))

    def reshape(self, node, shape) -> None:
        """Emit a new per-sample shape for the same C-order data."""
        self.sample_shape = tuple(int(s) for s in shape)
        self.ops.append(ReshapeOp(self.sample_shape, node_name(node), node.op_type))

    def gather(self, node, index: np.ndarray, fill=0.0) -> None:
        """Emit the op whose output entry i is input entry ``index[i]`` (or ``fill`` where it is negative).

        ``index`` has the output's full shape; a plain renumbering in order becomes a reshape.
        """
        shape = self.per_sample(node, index.shape)
        flat = index.reshape(-1)
        if flat.size == self.size and np.array_equal(flat, np.arange(self.size)):
            self.reshape(node, shape)
            return
        bias = np.where(flat >= 0, 0.0, float(fill)) if np.any(flat < 0) else None
        self.affine(node, _selection(flat, self.size), bias, shape)

    def elementwise(self, node, scale, offset) -> None:
        """Emit ``x -> scale * x + offset`` with constants broadcast against the data (numpy rules).

        ``scale`` None means 1, ``offset`` None means no offset.
        """
        shapes = [np.shape(c) for c in (scale, offset) if c is not None]
        try:
            out = np.broadcast_shapes(self.full_shape, *shapes)
        except ValueError:
            raise ShapeError(
                f"node {node_name(node)!r} ({node.op_type}): constant of shape {shapes} does not broadcast "
                f"against the data {self.full_shape}"
            ) from None
        if self.batched and len(out) != len(self.full_shape):
            raise UnsupportedOperation(node.op_type, node_name(node), "broadcasting moves the batch axis")
        shape = self.per_sample(node, out)
        values = np.ones(math.prod(out)) if scale is None else np.broadcast_to(scale, out).reshape(-1)
        bias = None if offset is None else np.broadcast_to(offset, out).reshape(-1)
        if tuple(out) == tuple(self.full_shape):
            self._emit(node, AffineMap.scaling(values, bias), shape)
            return
        source = np.broadcast_to(self.positions(), out).reshape(-1)
        rows = np.arange(source.size)
        weight = sp.csr_matrix((np.asarray(values, dtype=np.float64), (rows, source)), shape=(rows.size, self.size))
        self.affine(node, weight, bias, shape)

    def matmul(self, node, constant, data_left, addend=None) -> None:
        """Emit ``x @ constant`` (data_left) or ``constant @ x``, plus ``addend`` broadcast to the result."""
        constant = np.asarray(constant, dtype=np.float64)
        full = self.full_shape
        name = node_name(node)
        if not data_left and self.batched and len(full) == 2:
            raise UnsupportedOperation(node.op_type, name, "the constant would contract over the batch axis")
        if constant.ndim == 0 or len(full) == 0:
            raise ShapeError(f"node {name!r} ({node.op_type}): MatMul needs operands of rank >= 1")
        squeeze = []
        data_shape, matrix = list(full), constant
        if len(full) == 1:  # numpy promotes a vector to a row (left) or a column (right)
            data_shape = [1, full[0]] if data_left else [full[0], 1]
            squeeze.append(-2 if data_left else -1)
        if constant.ndim == 1:
            matrix = constant[:, None] if data_left else constant[None, :]
            squeeze.append(-1 if data_left else -2)
        try:
            weight, out = _matmul_blocks(tuple(data_shape), matrix, data_left)
        except ValueError as error:  # ShapeError included
            raise ShapeError(f"node {name!r} ({node.op_type}): {error}") from None
        if self.batched and len(out) != len(data_shape):
            raise UnsupportedOperation(node.op_type, name, "broadcasting the constant moves the batch axis")
        out = tuple(s for i, s in enumerate(out) if i - len(out) not in squeeze)
        bias = None
        if addend is not None:
            try:
                bias = np.broadcast_to(addend, out).reshape(-1)
            except ValueError:
                raise ShapeError(f"node {name!r} ({node.op_type}): C of shape {np.shape(addend)} does not "
                                 f"broadcast to the product's shape {out}") from None
        self.affine(node, weight, bias, self.per_sample(node, out))

    def transpose(self, node, perm) -> None:
        """Emit ONNX Transpose with ``perm`` (None: reverse the axes), which must keep the batch axis first."""
        perm = list(range(len(self.full_shape)))[::-1] if perm is None else normalise_axes(perm, len(self.full_shape))
        if self.batched and perm[0] != 0:
            raise UnsupportedOperation(node.op_type, node_name(node), f"permutation {perm} moves the batch axis")
        self.gather(node, np.transpose(self.positions(), perm))

    def image(self, node, spatial_rank) -> tuple[int, int, int]:
        """The (C, H, W) image a 1-D or 2-D Conv/pool sees (1-D as H = 1), checking the data's rank."""
        full = self.full_shape
        name = node_name(node)
        if spatial_rank not in (1, 2):
            raise UnsupportedOperation(node.op_type, name, f"only 1-D and 2-D are supported, not {spatial_rank}-D")
        if len(full) != spatial_rank + 2:
            raise ShapeError(f"node {name!r} ({node.op_type}) expects (N, C, spatial...) data, got shape {full}")
        if full[0] != 1:
            raise UnsupportedOperation(node.op_type, name, f"input of shape {full} holds several images")
        return (full[1], 1, full[2]) if spatial_rank == 1 else tuple(full[1:])

    def image_output(self, spatial_rank, out_shape) -> tuple[int, ...]:
        """The per-sample shape of a Conv/pool output of (C, H, W) ``out_shape`` (1-D: H = 1 dropped)."""
        shape = (out_shape[0], out_shape[2]) if spatial_rank == 1 else tuple(out_shape)
        return shape if self.batched else (1, *shape)


def _window(node, attributes, kernel, image, spatial_rank, dilation=(1, 1)):
    """Strides and (top, bottom, left, right) padding from strides/pads/auto_pad (1-D as H = 1)."""
    strides = list(attributes.get("strides", [1] * spatial_rank))
    pads = list(attributes.get("pads", [0] * 2 * spatial_rank))
    auto_pad = attributes.get("auto_pad", "NOTSET")
    if spatial_rank == 1:
        strides, pads = [1, *strides], [0, pads[0], 0, pads[1]]
    if auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        (top, bottom), (left, right) = (
            _same_padding(image[1 + axis], kernel[axis], strides[axis], dilation[axis], auto_pad) for axis in (0, 1)
        )
        pads = [top, left, bottom, right]
    elif auto_pad != "NOTSET":
        raise UnsupportedOperation(node.op_type, node_name(node), f"auto_pad {auto_pad!r}")
    return tuple(strides), (pads[0], pads[2], pads[1], pads[3])


# ---------------------------------------------------------------------------------------------------
# the handlers: (path, node, attrs, inputs) with attrs the node's attributes and inputs[i] a constant
# array, DATA or None


def _constant_input(node, inputs, position, what):
    """``inputs[position]`` (None if absent), refused when it is the data."""
    value = optional_input(inputs, position)
    if value is DATA:
        raise UnsupportedOperation(node.op_type, node_name(node), f"{what} must be a constant, not the data")
    return value


def _on_gemm(path, node, attrs, inputs):
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    bias = _constant_input(node, inputs, 2, "C")
    addend = None if bias is None else beta * np.asarray(bias, dtype=np.float64)
    if inputs[0] is DATA:
        other = _constant_input(node, inputs, 1, "B")
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
    slope = np.asarray(_constant_input(node, inputs, 1, "slope"), dtype=np.float64)
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
        raise UnsupportedOperation("Flatten", node_name(node), f"axis {axis} does not keep the batch axis first")
    path.reshape(node, path.per_sample(node, (math.prod(full[:axis]), math.prod(full[axis:]))))


def _on_reshape(path, node, attrs, inputs):
    name = node_name(node)
    allowzero = attrs.get("allowzero", 0)
    if "shape" in attrs:
        target, target_name = np.asarray(attrs["shape"]), None
    else:
        target, target_name = np.asarray(_constant_input(node, inputs, 1, "shape")), node.input[1]
    target = target.astype(np.int64).reshape(-1)
    if path.folder.batch_leads_reshape_target(node, target_name):
        target[0] = 1 if allowzero else 0  # the batch size; 0 copies the data's batch axis
    resolved = reshape_target(target, path.full_shape, allowzero)
    if path.batched and (not resolved or resolved[0] != 1):
        raise UnsupportedOperation("Reshape", name, f"target {target.tolist()} does not keep the batch axis first")
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
    indices = np.asarray(_constant_input(node, inputs, 1, "indices"), dtype=np.int64)
    path.gather(node, np.take(path.positions(), indices, axis=axis))


def _on_pad(path, node, attrs, inputs):
    full = path.full_shape
    name = node_name(node)
    mode = attrs.get("mode", "constant")
    if "pads" in attrs:
        pads, value, axes = list(attrs["pads"]), attrs.get("value", 0.0), None
    else:
        pads = int_list(_constant_input(node, inputs, 1, "pads"))
        value = _constant_input(node, inputs, 2, "constant_value")
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


def _on_conv(path, node, attrs, inputs):
    name = node_name(node)
    weight = _constant_input(node, inputs, 1, "the weight")
    bias = _constant_input(node, inputs, 2, "the bias")
    if weight is None:
        raise ModelError(f"node {name!r} (Conv) has no weight input")
    spatial_rank = weight.ndim - 2
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


def _on_batch_norm(path, node, attrs, inputs):
    name = node_name(node)
    if attrs.get("training_mode", 0):
        raise UnsupportedOperation("BatchNormalization", name, "training_mode is on")
    scale, offset, mean, variance = (
        np.asarray(_constant_input(node, inputs, i, what), dtype=np.float64)
        for i, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))
    )
    full = path.full_shape
    if len(full) < 2:
        raise ShapeError(f"node {name!r} (BatchNormalization) expects (N, C, ...) data, got shape {full}")
    # per-channel statistics broadcast over the spatial axes; spatial=0 (opset < 9) gives per-element ones
    stats_shape = full[1:] if attrs.get("spatial", 1) == 0 else (full[1],) + (1,) * (len(full) - 2)
    try:
        factor = (scale / np.sqrt(variance + attrs.get("epsilon", _BATCH_NORM_EPSILON))).reshape(stats_shape)
        shift = offset.reshape(stats_shape) - mean.reshape(stats_shape) * factor
    except ValueError:
        raise ShapeError(f"node {name!r} (BatchNormalization): statistics do not fit the data {full}") from None
    path.elementwise(node, factor, shift)


_HANDLERS = {
    "Gemm": _on_gemm, "MatMul": _on_matmul, "Add": _on_arithmetic, "Sub": _on_arithmetic, "Mul": _on_arithmetic,
    "Div": _on_arithmetic, "Neg": _on_neg, "Relu": _on_relu, "LeakyRelu": _on_leaky_relu, "PRelu": _on_prelu,
    "Identity": _on_pass_through, "Dropout": _on_pass_through, "Cast": _on_pass_through, "Flatten": _on_flatten,
    "Reshape": _on_reshape, "Squeeze": _on_squeeze, "Unsqueeze": _on_unsqueeze, "Transpose": _on_transpose,
    "Slice": _on_slice_data, "Gather": _on_gather_data, "Pad": _on_pad, "Conv": _on_conv,
    "AveragePool": _on_average_pool, "GlobalAveragePool": _on_global_average_pool,
    "BatchNormalization": _on_batch_norm,
}

HANDLED_OPS = tuple(sorted(_HANDLERS))
"""Operations ``translate`` accepts on the data path."""


def translate(path: DataPath, node: onnx.NodeProto, inputs: list) -> None:
    """Append to ``path`` the operations of ``node``, an op of ``HANDLED_OPS`` that reads the data.

    ``inputs[i]`` is DATA for the data tensor (exactly one input), the constant array of input i, or
    None where the input is absent. Pass-through ops (Identity, Dropout, Cast) append nothing. Raises
    UnsupportedOperation, ShapeError or ModelError naming the node when it cannot be represented.
    """
    _HANDLERS[node.op_type](path, node, node_attributes(node), inputs)
