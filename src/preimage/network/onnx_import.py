"""Import an ONNX model that is a chain of affine operations and (leaky) ReLUs into a ``Network``.

The file is parsed as data (``onnx.load``); nothing in it is executed. The graph is walked in topological
order and every tensor is one of two things:

- a *constant*: an initializer, a Constant node, or the output of a node whose inputs are all constant
  (folded with numpy by ``onnx_fold.ConstantFolder``: Shape, Gather, Unsqueeze, Concat, Reshape, ...);
- the *data path*: the single running tensor that descends from the model's one dynamic input, of known
  static per-sample shape. Each node on it becomes primitive operations (``AffineOp``, ``ActivationOp``,
  ``ReshapeOp``) that ``assemble`` composes into layers.

The batch axis. A graph input whose first dimension is symbolic (or 1, with rank >= 2) is batched: that
axis is dropped and the network maps one sample. ``Shape`` of a data tensor gives its static dimensions and
a placeholder for the batch size (a batch marker of ``onnx_fold``); the placeholder may travel through
Gather/Unsqueeze/Concat/... but is only accepted as the first entry of a Reshape target (the usual
``x.view(x.size(0), -1)``). A literal 1 (or -1 that resolves to 1) as that first entry is read as the batch
too, as in models exported for batch size 1.
An input without a batch axis (e.g. shape ``[4]``) is one sample as it stands.

Floating-point constants are read as float64, and a Cast to any float type keeps float64: the network is
the model evaluated in double precision.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import onnx
import scipy.sparse as sp

from ..errors import ModelError, ShapeError, UnsupportedOperation
from .affine import AffineMap
from .builder import ActivationOp, AffineOp, ReshapeOp, assemble
from .conv import adaptive_avg_pool2d_matrix, avg_pool2d_matrix, conv2d_bias, conv2d_matrix
from .layers import RELU, leaky_relu
from .network import Network
from .onnx_fold import (
    FOLDED_OPS, ConstantFolder, axes_operand, int_list, node_attributes, node_name, normalise_axes,
    optional_input, reshape_target, slice_array, unsqueeze_array,
)

__all__ = ["from_onnx", "SUPPORTED_OPS", "FOLDED_OPS"]

logger = logging.getLogger(__name__)

_DATA = object()  # marks the data-path operand among a node's inputs

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
    array when a single block, else a sparse block matrix.
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
# the graph walk


class _GraphImporter:
    """Walks one graph, folding constants and translating the data path into primitive ops."""

    def __init__(self, model: onnx.ModelProto, input_name: str | None):
        self.graph = model.graph
        self.folder = ConstantFolder(self.graph)
        self.ops: list = []
        self.data_shapes: dict[str, tuple[int, ...]] = {}  # full shape (batch as 1) of each data tensor
        self.needed_tensors: set[str] = set()  # the tensors the graph output depends on; see _needed_nodes
        self._choose_input(input_name)

    # -- set-up -------------------------------------------------------------------------------------
    def _choose_input(self, input_name):
        dynamic = [v for v in self.graph.input if v.name not in self.folder.constants]
        if not dynamic:
            raise ModelError("the graph has no dynamic input (every input is an initializer)")
        if input_name is None:
            chosen = dynamic[0]
        else:
            matches = [v for v in dynamic if v.name == input_name]
            if not matches:
                raise ModelError(f"no dynamic graph input named {input_name!r}; inputs: {[v.name for v in dynamic]}")
            chosen = matches[0]
        self.other_inputs = {v.name for v in dynamic if v is not chosen}
        self.input_name = chosen.name
        tensor_type = chosen.type.tensor_type
        if not tensor_type.HasField("shape"):
            raise ShapeError(f"graph input {chosen.name!r} declares no shape")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim]
        shown = [d or e.dim_param or "?" for d, e in zip(dims, tensor_type.shape.dim)]
        self.batched = bool(dims) and (dims[0] is None or (dims[0] == 1 and len(dims) >= 2))
        per_sample = dims[1:] if self.batched else dims
        if any(d is None for d in per_sample):
            axis = per_sample.index(None) + int(self.batched)
            raise ShapeError(
                f"graph input {chosen.name!r} has shape {shown}: dimension {axis} is dynamic; only the first "
                "(batch) dimension may be"
            )
        self.input_shape = tuple(per_sample)
        self.sample_shape = self.input_shape  # per-sample shape of the data tensor, updated by each op
        self.data_name = chosen.name
        self.data_shapes[chosen.name] = self.full_shape

    @property
    def full_shape(self) -> tuple[int, ...]:
        """The data tensor's shape as ONNX sees it, with the batch size as 1."""
        return (1, *self.sample_shape) if self.batched else self.sample_shape

    @property
    def size(self) -> int:
        """Number of entries of one sample of the data tensor."""
        return math.prod(self.sample_shape)

    def _needed_nodes(self):
        """The nodes the graph output depends on, in topological order (Kahn's algorithm, file order kept)."""
        if len(self.graph.output) != 1:
            raise ModelError(f"the graph has {len(self.graph.output)} outputs; a chain has exactly one")
        producer = {name: node for node in self.graph.node for name in node.output if name}
        needed_tensors, stack, needed_ids = set(), [self.graph.output[0].name], set()
        while stack:
            name = stack.pop()
            if name in needed_tensors:
                continue
            needed_tensors.add(name)
            node = producer.get(name)
            if node is not None:
                needed_ids.add(id(node))
                stack.extend(t for t in node.input if t)
        self.needed_tensors = needed_tensors
        nodes = [node for node in self.graph.node if id(node) in needed_ids]
        available = set(self.folder.constants) | {v.name for v in self.graph.input}
        waiting, consumers = {}, {}
        for index, node in enumerate(nodes):
            inputs = {t for t in node.input if t and t not in available}
            for tensor in inputs:
                if tensor not in producer:
                    raise ModelError(
                        f"node {node_name(node)!r} ({node.op_type}) reads {tensor!r}, which no node produces"
                    )
                consumers.setdefault(tensor, []).append(index)
            waiting[index] = len(inputs)
        ready = [i for i in range(len(nodes)) if waiting[i] == 0]
        order = []
        while ready:
            index = ready.pop(0)
            order.append(nodes[index])
            for tensor in nodes[index].output:
                for consumer in consumers.get(tensor, ()):
                    waiting[consumer] -= 1
                    if waiting[consumer] == 0:
                        ready.append(consumer)
        if len(order) < len(nodes):
            stuck = next(node for i, node in enumerate(nodes) if waiting[i] > 0)
            raise ModelError(f"the graph has a cycle through node {node_name(stuck)!r} ({stuck.op_type})")
        return order

    # -- walk ---------------------------------------------------------------------------------------
    def run(self, name: str) -> Network:
        for node in self._needed_nodes():
            self._visit(node)
        output = self.graph.output[0].name
        if output in self.folder.constants:
            raise ModelError(f"the graph output {output!r} does not depend on the input {self.input_name!r}")
        if output != self.data_name:
            raise ModelError(f"the graph output {output!r} is not the end of the chain ({self.data_name!r})")
        return assemble(self.ops, self.input_shape, name=name)

    def _visit(self, node: onnx.NodeProto) -> None:
        """Fold ``node`` if all its inputs are constant, else translate it as the next op of the data path."""
        op, name = node.op_type, node_name(node)
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOperation(f"{node.domain}.{op}", name, "operator from a custom domain")
        if op == "Shape" and node.input[0] in self.data_shapes:
            self.folder.fold_shape_of_data(node, self.data_shapes[node.input[0]], self.batched)
            return
        roles = [self._role(tensor, node) for tensor in node.input]
        if all(role is not _DATA for role in roles):
            self.folder.fold(node, roles)
            return
        if sum(role is _DATA for role in roles) > 1:
            raise UnsupportedOperation(op, name, "combines the data tensor with itself (a branching graph)")
        handler = _HANDLERS.get(op)
        if handler is None:
            raise UnsupportedOperation(
                op, name, "only affine operations (Gemm, MatMul, Conv, Add, ...), Relu and LeakyRelu can be imported"
            )
        extra = [t for t in node.output[1:] if t and t in self.needed_tensors]
        if extra:
            raise UnsupportedOperation(op, name, f"its secondary outputs {extra} are used")
        for position, tensor in enumerate(node.input):
            if self.folder.depends_on_batch(tensor) and not (op == "Reshape" and position == 1):
                raise UnsupportedOperation(op, name, f"input {tensor!r} depends on the batch size")
        handler(self, node, node_attributes(node), roles)
        self.data_name = node.output[0]
        self.data_shapes[self.data_name] = self.full_shape

    def _role(self, tensor: str, node):
        """None (absent input), a constant array, or _DATA; anything else is an error."""
        if not tensor:
            return None
        if tensor in self.folder.constants:
            return self.folder.constants[tensor]
        if tensor == self.data_name:
            return _DATA
        name = node_name(node)
        if tensor in self.data_shapes:
            raise UnsupportedOperation(
                node.op_type, name,
                f"reads tensor {tensor!r} after another node consumed it: the graph branches (e.g. a residual "
                "connection); only chains are supported",
            )
        if tensor in self.other_inputs:
            raise UnsupportedOperation(node.op_type, name, f"reads graph input {tensor!r}, a second data input")
        raise ModelError(f"node {name!r} ({node.op_type}) reads tensor {tensor!r}, which no node produces")

    # -- emitting ops -----------------------------------------------------------------------------
    def _per_sample(self, node, full_shape) -> tuple[int, ...]:
        """Drop the batch axis of an output shape, refusing an op that moved or grew it."""
        full_shape = tuple(int(s) for s in full_shape)
        if not self.batched:
            return full_shape
        if not full_shape or full_shape[0] != 1:
            raise UnsupportedOperation(node.op_type, node_name(node),
                                       "the operation mixes the batch axis with the sample's axes")
        return full_shape[1:]

    def _check_not_batch_axis(self, node, axes, what="axes"):
        if self.batched and 0 in axes:
            raise UnsupportedOperation(node.op_type, node_name(node), f"{what} include the batch axis 0")

    def _affine(self, node, weight, bias, shape) -> None:
        self._emit(node, AffineMap(weight, bias), shape)

    def _emit(self, node, affine: AffineMap, shape) -> None:
        self.sample_shape = tuple(shape)
        self.ops.append(AffineOp(affine, self.sample_shape, node_name(node), node.op_type))

    def _reshape(self, node, shape) -> None:
        self.sample_shape = tuple(int(s) for s in shape)
        self.ops.append(ReshapeOp(self.sample_shape, node_name(node), node.op_type))

    def _gather(self, node, index: np.ndarray, fill=0.0) -> None:
        """Emit the op whose output entry i is input entry ``index[i]`` (or ``fill`` where it is -1)."""
        shape = self._per_sample(node, index.shape)
        flat = index.reshape(-1)
        if flat.size == self.size and np.array_equal(flat, np.arange(self.size)):
            self._reshape(node, shape)
            return
        bias = np.where(flat >= 0, 0.0, float(fill)) if np.any(flat < 0) else None
        self._affine(node, _selection(flat, self.size), bias, shape)

    def _positions(self) -> np.ndarray:
        """The flat index of each entry of the data tensor, in the data's full shape."""
        return np.arange(self.size).reshape(self.full_shape)

    def _elementwise(self, node, scale, offset) -> None:
        """Emit ``x -> scale * x + offset`` with constants broadcast against the data (numpy rules)."""
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
        shape = self._per_sample(node, out)
        values = np.ones(math.prod(out)) if scale is None else np.broadcast_to(scale, out).reshape(-1)
        bias = None if offset is None else np.broadcast_to(offset, out).reshape(-1)
        if tuple(out) == tuple(self.full_shape):
            self._emit(node, AffineMap.scaling(values, bias), shape)
            return
        source = np.broadcast_to(self._positions(), out).reshape(-1)
        rows = np.arange(source.size)
        weight = sp.csr_matrix((np.asarray(values, dtype=np.float64), (rows, source)), shape=(rows.size, self.size))
        self._affine(node, weight, bias, shape)

    def _matmul(self, node, constant, data_left, addend=None) -> None:
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
        self._affine(node, weight, bias, self._per_sample(node, out))

    def _transpose(self, node, perm) -> None:
        perm = list(range(len(self.full_shape)))[::-1] if perm is None else normalise_axes(perm, len(self.full_shape))
        if self.batched and perm[0] != 0:
            raise UnsupportedOperation(node.op_type, node_name(node), f"permutation {perm} moves the batch axis")
        self._gather(node, np.transpose(self._positions(), perm))

    def _image(self, node, spatial_rank):
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

    def _window(self, node, attributes, kernel, image, spatial_rank, dilation=(1, 1)):
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

    def _image_output(self, spatial_rank, out_shape) -> tuple[int, ...]:
        shape = (out_shape[0], out_shape[2]) if spatial_rank == 1 else tuple(out_shape)
        return shape if self.batched else (1, *shape)


# ---------------------------------------------------------------------------------------------------
# data-path handlers: (importer, node, attrs, inputs) with attrs the node's attributes and inputs[i] a
# constant array, _DATA or None


def _constant_input(node, inputs, position, what):
    value = optional_input(inputs, position)
    if value is _DATA:
        raise UnsupportedOperation(node.op_type, node_name(node), f"{what} must be a constant, not the data")
    return value


def _on_gemm(imp, node, attrs, inputs):
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    bias = _constant_input(node, inputs, 2, "C")
    addend = None if bias is None else beta * np.asarray(bias, dtype=np.float64)
    if inputs[0] is _DATA:
        other = _constant_input(node, inputs, 1, "B")
        if attrs.get("transA", 0):
            imp._transpose(node, [1, 0])
        imp._matmul(node, alpha * (other.T if attrs.get("transB", 0) else other), True, addend)
    else:
        other = inputs[0]
        if attrs.get("transB", 0):
            imp._transpose(node, [1, 0])
        imp._matmul(node, alpha * (other.T if attrs.get("transA", 0) else other), False, addend)


def _on_matmul(imp, node, attrs, inputs):
    if inputs[0] is _DATA:
        imp._matmul(node, inputs[1], data_left=True)
    else:
        imp._matmul(node, inputs[0], data_left=False)


def _on_arithmetic(imp, node, attrs, inputs):
    op = node.op_type
    data_first = inputs[0] is _DATA
    constant = np.asarray(inputs[1] if data_first else inputs[0], dtype=np.float64)
    if op == "Add":
        imp._elementwise(node, None, constant)
    elif op == "Sub" and data_first:
        imp._elementwise(node, None, -constant)
    elif op == "Sub":
        imp._elementwise(node, -np.ones_like(constant), constant)
    elif op == "Mul":
        imp._elementwise(node, constant, None)
    elif not data_first:
        raise UnsupportedOperation(op, node_name(node), "dividing by the data is not affine")
    elif np.any(constant == 0):
        raise ModelError(f"node {node_name(node)!r} (Div): the divisor has zero entries")
    else:
        imp._elementwise(node, 1.0 / constant, None)


def _on_neg(imp, node, attrs, inputs):
    imp._elementwise(node, -1.0, None)


def _on_relu(imp, node, attrs, inputs):
    imp.ops.append(ActivationOp(RELU, node_name(node), "Relu"))


def _on_leaky_relu(imp, node, attrs, inputs):
    imp.ops.append(ActivationOp(leaky_relu(attrs.get("alpha", _LEAKY_RELU_ALPHA)), node_name(node), "LeakyRelu"))


def _on_prelu(imp, node, attrs, inputs):
    slope = np.asarray(_constant_input(node, inputs, 1, "slope"), dtype=np.float64)
    if slope.size == 0 or np.any(slope != slope.reshape(-1)[0]):
        raise UnsupportedOperation("PRelu", node_name(node), "only a single slope shared by all units")
    imp.ops.append(ActivationOp(leaky_relu(slope.reshape(-1)[0]), node_name(node), "PRelu"))


def _on_pass_through(imp, node, attrs, inputs):
    if node.op_type == "Cast" and onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]).kind != "f":
        raise UnsupportedOperation("Cast", node_name(node), "casting the data to a non-float type")
    if node.op_type == "Dropout":
        training = optional_input(inputs, 2)
        if training is not None and bool(np.asarray(training).reshape(-1)[0]):
            raise UnsupportedOperation("Dropout", node_name(node), "training_mode is on")


def _on_flatten(imp, node, attrs, inputs):
    full = imp.full_shape
    axis = attrs.get("axis", 1)
    axis = axis + len(full) if axis < 0 else axis
    if not 0 <= axis <= len(full):
        raise ShapeError(
            f"node {node_name(node)!r} (Flatten): axis {attrs.get('axis')} out of range for rank {len(full)}"
        )
    if imp.batched and (axis == 0 or math.prod(full[1:axis]) != 1):
        raise UnsupportedOperation("Flatten", node_name(node), f"axis {axis} does not keep the batch axis first")
    imp._reshape(node, imp._per_sample(node, (math.prod(full[:axis]), math.prod(full[axis:]))))


def _on_reshape(imp, node, attrs, inputs):
    name = node_name(node)
    allowzero = attrs.get("allowzero", 0)
    if "shape" in attrs:
        target, target_name = np.asarray(attrs["shape"]), None
    else:
        target, target_name = np.asarray(_constant_input(node, inputs, 1, "shape")), node.input[1]
    target = target.astype(np.int64).reshape(-1)
    if imp.folder.batch_leads_reshape_target(node, target_name):
        target[0] = 1 if allowzero else 0  # the batch size; 0 copies the data's batch axis
    resolved = reshape_target(target, imp.full_shape, allowzero)
    if imp.batched and (not resolved or resolved[0] != 1):
        raise UnsupportedOperation("Reshape", name, f"target {target.tolist()} does not keep the batch axis first")
    imp._reshape(node, imp._per_sample(node, resolved))


def _on_squeeze(imp, node, attrs, inputs):
    axes = axes_operand(attrs, inputs)
    full = imp.full_shape
    if axes is None:
        axes = [i for i, s in enumerate(full) if s == 1 and not (imp.batched and i == 0)]
    axes = normalise_axes(axes, len(full))
    imp._check_not_batch_axis(node, axes)
    if any(full[i] != 1 for i in axes):
        raise ShapeError(f"node {node_name(node)!r} (Squeeze): axes {axes} of shape {full} are not all 1")
    imp._reshape(node, imp._per_sample(node, [s for i, s in enumerate(full) if i not in axes]))


def _on_unsqueeze(imp, node, attrs, inputs):
    axes = axes_operand(attrs, inputs)
    if axes is None:
        raise ModelError(f"node {node_name(node)!r} (Unsqueeze) has no axes")
    axes = normalise_axes(axes, len(imp.full_shape) + len(axes))
    imp._check_not_batch_axis(node, axes)
    imp._reshape(node, imp._per_sample(node, unsqueeze_array(np.empty(imp.full_shape), axes).shape))


def _on_transpose(imp, node, attrs, inputs):
    imp._transpose(node, attrs.get("perm"))


def _on_slice_data(imp, node, attrs, inputs):
    positions, axes = slice_array(imp._positions(), attrs, inputs)
    imp._check_not_batch_axis(node, axes)
    imp._gather(node, positions)


def _on_gather_data(imp, node, attrs, inputs):
    axis = normalise_axes([attrs.get("axis", 0)], len(imp.full_shape))[0]
    imp._check_not_batch_axis(node, [axis], "axis")
    indices = np.asarray(_constant_input(node, inputs, 1, "indices"), dtype=np.int64)
    imp._gather(node, np.take(imp._positions(), indices, axis=axis))


def _on_pad(imp, node, attrs, inputs):
    full = imp.full_shape
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
    imp._check_not_batch_axis(node, [i for i in range(len(full)) if begin[i] or end[i]], "padded axes")
    crop = tuple(slice(max(0, -b), s - max(0, -e)) for b, e, s in zip(begin, end, full))
    positions = imp._positions()[crop]
    widths = [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
    if mode not in ("constant", "reflect", "edge", "wrap"):  # ONNX's modes, named as in np.pad
        raise UnsupportedOperation("Pad", name, f"mode {mode!r}")
    if mode == "constant":
        imp._gather(node, np.pad(positions, widths, constant_values=-1), fill=value)
    else:
        imp._gather(node, np.pad(positions, widths, mode=mode))


def _on_conv(imp, node, attrs, inputs):
    name = node_name(node)
    weight = _constant_input(node, inputs, 1, "the weight")
    bias = _constant_input(node, inputs, 2, "the bias")
    spatial_rank = weight.ndim - 2
    image = imp._image(node, spatial_rank)
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != weight.shape[2:]:
        raise ShapeError(f"node {name!r} (Conv): kernel_shape {attrs['kernel_shape']} but weight {weight.shape}")
    dilation = list(attrs.get("dilations", [1] * spatial_rank))
    if spatial_rank == 1:
        weight, dilation = weight[:, :, None, :], [1, *dilation]
    strides, padding = imp._window(node, attrs, weight.shape[2:], image, spatial_rank, dilation)
    matrix, out_shape = conv2d_matrix(weight, image, stride=strides, padding=padding, dilation=tuple(dilation),
                                      groups=attrs.get("group", 1))
    bias_vector = None if bias is None else conv2d_bias(bias, out_shape)
    imp._affine(node, matrix, bias_vector, imp._image_output(spatial_rank, out_shape))


def _on_average_pool(imp, node, attrs, inputs):
    name = node_name(node)
    kernel = list(attrs["kernel_shape"])
    spatial_rank = len(kernel)
    image = imp._image(node, spatial_rank)
    if any(d != 1 for d in attrs.get("dilations", [])):
        raise UnsupportedOperation("AveragePool", name, "dilations other than 1")
    kernel = [1, *kernel] if spatial_rank == 1 else kernel
    strides, padding = imp._window(node, attrs, kernel, image, spatial_rank)
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    matrix, out_shape = avg_pool2d_matrix(image, tuple(kernel), stride=strides, padding=padding, ceil_mode=ceil_mode,
                                          count_include_pad=bool(attrs.get("count_include_pad", 0)))
    imp._affine(node, matrix, None, imp._image_output(spatial_rank, out_shape))


def _on_global_average_pool(imp, node, attrs, inputs):
    spatial_rank = len(imp.full_shape) - 2
    image = imp._image(node, spatial_rank)
    matrix, out_shape = adaptive_avg_pool2d_matrix(image, (1, 1))
    imp._affine(node, matrix, None, imp._image_output(spatial_rank, out_shape))


def _on_batch_norm(imp, node, attrs, inputs):
    name = node_name(node)
    if attrs.get("training_mode", 0):
        raise UnsupportedOperation("BatchNormalization", name, "training_mode is on")
    scale, offset, mean, variance = (
        np.asarray(_constant_input(node, inputs, i, what), dtype=np.float64)
        for i, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))
    )
    full = imp.full_shape
    if len(full) < 2:
        raise ShapeError(f"node {name!r} (BatchNormalization) expects (N, C, ...) data, got shape {full}")
    # per-channel statistics broadcast over the spatial axes; spatial=0 (opset < 9) gives per-element ones
    stats_shape = full[1:] if attrs.get("spatial", 1) == 0 else (full[1],) + (1,) * (len(full) - 2)
    try:
        factor = (scale / np.sqrt(variance + attrs.get("epsilon", _BATCH_NORM_EPSILON))).reshape(stats_shape)
        shift = offset.reshape(stats_shape) - mean.reshape(stats_shape) * factor
    except ValueError:
        raise ShapeError(f"node {name!r} (BatchNormalization): statistics do not fit the data {full}") from None
    imp._elementwise(node, factor, shift)


_HANDLERS = {
    "Gemm": _on_gemm, "MatMul": _on_matmul, "Add": _on_arithmetic, "Sub": _on_arithmetic, "Mul": _on_arithmetic,
    "Div": _on_arithmetic, "Neg": _on_neg, "Relu": _on_relu, "LeakyRelu": _on_leaky_relu, "PRelu": _on_prelu,
    "Identity": _on_pass_through, "Dropout": _on_pass_through, "Cast": _on_pass_through, "Flatten": _on_flatten,
    "Reshape": _on_reshape, "Squeeze": _on_squeeze, "Unsqueeze": _on_unsqueeze, "Transpose": _on_transpose,
    "Slice": _on_slice_data, "Gather": _on_gather_data, "Pad": _on_pad, "Conv": _on_conv,
    "AveragePool": _on_average_pool, "GlobalAveragePool": _on_global_average_pool,
    "BatchNormalization": _on_batch_norm,
}

SUPPORTED_OPS = tuple(sorted({*_HANDLERS, "Shape"}))
"""Operations accepted on the data path (Shape reads only its static shape)."""


# ---------------------------------------------------------------------------------------------------


def from_onnx(model_or_path, *, input_name: str | None = None) -> Network:
    """Import an ONNX model (a path or an ``onnx.ModelProto``) as a float64 ``Network``.

    Parameters
    ----------
    model_or_path : str, PathLike or onnx.ModelProto. A file is parsed with ``onnx.load`` (as data).
    input_name : the graph input to treat as the data; by default the first input that is not an
        initializer. Any other dynamic input that the output depends on is refused.

    The graph must be a chain from that input to the single output. The batch axis (a symbolic or unit first
    dimension) is dropped; the other dimensions must be static. Data-path ops: Gemm, MatMul (either side
    constant), Add/Sub/Mul/Div by constants (broadcast), Neg, Relu, LeakyRelu, PRelu (one slope), Flatten,
    Reshape, Squeeze, Unsqueeze, Transpose, Slice, Gather, Pad (constant/reflect/edge/wrap), Identity,
    Dropout, Cast, Conv (1-D/2-D; groups, strides, dilations, pads, auto_pad) and AveragePool /
    GlobalAveragePool as sparse matrices, BatchNormalization (inference) as a per-channel diagonal.

    Returns
    -------
    Network with ``input_shape`` the per-sample input shape and ``name`` the file stem (or graph name).

    Raises
    ------
    UnsupportedOperation : an op that is not piecewise-linear in this sense (MaxPool, Sigmoid, ...), a
        branching graph, a second data input; the message names the op and the node.
    ShapeError : dynamic non-batch dimensions, shapes that do not fit.
    ModelError : unreadable file, NaN/inf weights, a graph that is not a chain.
    """
    if isinstance(model_or_path, onnx.ModelProto):
        model, name = model_or_path, model_or_path.graph.name or "onnx"
    else:
        path = Path(model_or_path)
        if not path.is_file():
            raise ModelError(f"no ONNX file at {str(path)!r}")
        try:
            model = onnx.load(str(path))
        except Exception as error:  # protobuf raises its own DecodeError family; report them all the same way
            raise ModelError(f"cannot parse {str(path)!r} as an ONNX model: {error}") from error
        name = path.stem
    network = _GraphImporter(model, input_name).run(name)
    logger.debug("imported %s: %s", name, network)
    return network
