"""Import an ONNX model that is a chain of affine operations and (leaky) ReLUs into a ``Network``.

The file is parsed as data (``onnx.load``); nothing in it is executed. The graph is walked in topological
order and every tensor is one of two things:

- a *constant*: an initializer, a Constant node, or the output of a node whose inputs are all constant
  (folded here with numpy: Shape, Gather, Unsqueeze, Concat, Reshape, arithmetic, ...);
- the *data path*: the single running tensor that descends from the model's one dynamic input, of known
  static per-sample shape. Each node on it becomes primitive operations (``AffineOp``, ``ActivationOp``,
  ``ReshapeOp``) that ``assemble`` composes into layers.

The batch axis. A graph input whose first dimension is symbolic (or 1, with rank >= 2) is batched: that
axis is dropped and the network maps one sample. ``Shape`` of a data tensor gives its static dimensions and
a placeholder for the batch size; the placeholder may travel through Gather/Unsqueeze/Concat/... but is only
accepted as the first entry of a Reshape target (the usual ``x.view(x.size(0), -1)``). A literal 1 (or -1
that resolves to 1) as that first entry is read as the batch too, as in models exported for batch size 1.
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
from onnx import numpy_helper

from ..errors import ModelError, ShapeError, UnsupportedOperation
from .affine import AffineMap
from .builder import ActivationOp, AffineOp, ReshapeOp, assemble
from .conv import adaptive_avg_pool2d_matrix, avg_pool2d_matrix, conv2d_bias, conv2d_matrix
from .layers import RELU, leaky_relu
from .network import Network

__all__ = ["from_onnx", "SUPPORTED_OPS", "FOLDED_OPS"]

logger = logging.getLogger(__name__)

_DATA = object()  # marks the data-path operand among a node's inputs

# batch tags of constants computed from Shape(data): 1 = exactly the batch size, 2 = derived from it
_BATCH, _DERIVED = 1, 2


def _node_name(node: onnx.NodeProto) -> str:
    """The node's name, or its first output's name when the file leaves the name empty."""
    return node.name or (node.output[0] if node.output else node.op_type)


def _attributes(node: onnx.NodeProto) -> dict:
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
}


def _tensor_to_numpy(tensor: onnx.TensorProto) -> np.ndarray:
    """A TensorProto as a numpy array; floating-point types become float64."""
    array = numpy_helper.to_array(tensor)
    if array.dtype.kind == "f" or tensor.data_type in _FLOAT_TYPES:
        return np.array(array, dtype=np.float64)
    return np.array(array)


def _ints(value) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


# ---------------------------------------------------------------------------------------------------
# constant folding: each function maps (attributes, input arrays) to the output arrays


def _optional(values, position):
    return values[position] if len(values) > position else None


def _axes(attributes, values, position=1):
    """Axes given as an attribute (older opsets) or as an input (opset 13 on); None if absent."""
    if "axes" in attributes:
        return list(attributes["axes"])
    axes = _optional(values, position)
    return None if axes is None else _ints(axes)


def _normalise_axes(axes, rank, what="axis"):
    out = []
    for axis in axes:
        if not -rank <= axis < rank:
            raise ShapeError(f"{what} {axis} is out of range for a tensor of rank {rank}")
        out.append(axis % rank)
    return out


def _reshape_target(target, shape, allowzero=False) -> tuple[int, ...]:
    """Resolve ONNX Reshape's 0 (copy the input dimension) and -1 (infer) against ``shape``."""
    target = _ints(target)
    resolved = [shape[i] if t == 0 and not allowzero and i < len(shape) else t for i, t in enumerate(target)]
    if resolved.count(-1) > 1:
        raise ShapeError(f"reshape target {target} has more than one -1")
    total = math.prod(shape)
    if -1 in resolved:
        known = math.prod(t for t in resolved if t != -1)
        if known == 0 or total % known:
            raise ShapeError(f"cannot reshape a tensor of shape {tuple(shape)} to {target}")
        resolved[resolved.index(-1)] = total // known
    if math.prod(resolved) != total or min(resolved, default=0) < 0:
        raise ShapeError(f"cannot reshape a tensor of shape {tuple(shape)} to {target}")
    return tuple(resolved)


def _slice(x, attributes, values):
    if "starts" in attributes:
        starts, ends = attributes["starts"], attributes["ends"]
        axes, steps = attributes.get("axes"), None
    else:
        starts, ends = _ints(values[1]), _ints(values[2])
        axes = None if _optional(values, 3) is None else _ints(values[3])
        steps = None if _optional(values, 4) is None else _ints(values[4])
    axes = list(range(len(starts))) if axes is None else _normalise_axes(axes, x.ndim)
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step == 0:
            raise ShapeError("Slice step must not be zero")
        index[axis] = slice(int(start), int(end), int(step))
    return x[tuple(index)], axes


def _squeeze(x, axes):
    if axes is None:
        return x.reshape(tuple(s for s in x.shape if s != 1))
    axes = _normalise_axes(axes, x.ndim)
    if any(x.shape[a] != 1 for a in axes):
        raise ShapeError(f"cannot squeeze axes {axes} of a tensor of shape {x.shape}")
    return np.squeeze(x, axis=tuple(axes))


def _unsqueeze(x, axes):
    axes = sorted(_normalise_axes(axes, x.ndim + len(axes)))
    for axis in axes:
        x = np.expand_dims(x, axis)
    return x


def _integer_aware(function):
    """Elementwise arithmetic that keeps integer tensors integer (shape computations)."""
    def apply(a, b):
        result = function(a, b)
        if a.dtype.kind in "iu" and b.dtype.kind in "iu":
            return np.trunc(result).astype(np.result_type(a, b))
        return result
    return apply


def _cast(x, attributes):
    dtype = onnx.helper.tensor_dtype_to_np_dtype(attributes["to"])
    return x.astype(np.float64 if dtype.kind == "f" else dtype)


def _constant(attributes):
    for key, value in attributes.items():
        if key == "value":
            return _tensor_to_numpy(value)
        if key in ("value_float", "value_floats"):
            return np.array(value, dtype=np.float64)
        if key in ("value_int", "value_ints"):
            return np.array(value, dtype=np.int64)
    raise ModelError(f"Constant with attributes {sorted(attributes)} holds no numeric tensor")


def _constant_of_shape(values, attributes):
    fill = _tensor_to_numpy(attributes["value"]).reshape(-1) if "value" in attributes else np.zeros(1)
    return np.full(tuple(_ints(values[0])), fill[0], dtype=fill.dtype)


_FOLD = {
    "Constant": lambda a, v: _constant(a),
    "Identity": lambda a, v: v[0],
    "Cast": lambda a, v: _cast(v[0], a),
    "Shape": lambda a, v: np.array(v[0].shape, dtype=np.int64)[a.get("start", 0):a.get("end")],
    "Size": lambda a, v: np.array(v[0].size, dtype=np.int64),
    "Gather": lambda a, v: np.take(v[0], v[1].astype(np.int64), axis=a.get("axis", 0)),
    "Unsqueeze": lambda a, v: _unsqueeze(v[0], _axes(a, v)),
    "Squeeze": lambda a, v: _squeeze(v[0], _axes(a, v)),
    "Concat": lambda a, v: np.concatenate([np.atleast_1d(x) for x in v if x is not None], axis=a["axis"]),
    "Slice": lambda a, v: _slice(v[0], a, v)[0],
    "Reshape": lambda a, v: v[0].reshape(
        _reshape_target(a["shape"] if "shape" in a else v[1], v[0].shape, a.get("allowzero", 0))),
    "Transpose": lambda a, v: np.transpose(v[0], a.get("perm")),
    "Flatten": lambda a, v: v[0].reshape(math.prod(v[0].shape[:a.get("axis", 1)]), -1),
    "Expand": lambda a, v: np.array(np.broadcast_to(v[0], np.broadcast_shapes(v[0].shape, tuple(_ints(v[1]))))),
    "Add": lambda a, v: np.add(v[0], v[1]),
    "Sub": lambda a, v: np.subtract(v[0], v[1]),
    "Mul": lambda a, v: np.multiply(v[0], v[1]),
    "Div": lambda a, v: _integer_aware(np.true_divide)(v[0], v[1]),
    "Neg": lambda a, v: np.negative(v[0]),
    "Sqrt": lambda a, v: np.sqrt(v[0]),
    "Reciprocal": lambda a, v: np.reciprocal(v[0]),
    "Relu": lambda a, v: np.maximum(v[0], 0),
    "ConstantOfShape": lambda a, v: _constant_of_shape(v, a),
    "Range": lambda a, v: np.arange(v[0], v[1], v[2]).astype(v[0].dtype),
}

# ops that only move entries around: a batch tag follows its entry (operand positions listed)
_STRUCTURAL = {
    "Identity": (0,), "Cast": (0,), "Gather": (0,), "Unsqueeze": (0,), "Squeeze": (0,), "Slice": (0,),
    "Reshape": (0,), "Transpose": (0,), "Flatten": (0,), "Expand": (0,), "Concat": None,
}
_ARITHMETIC = {"Add", "Sub", "Mul", "Div", "Neg"}


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
        self.constants: dict[str, np.ndarray] = {}
        self.tags: dict[str, np.ndarray] = {}
        for tensor in self.graph.initializer:
            self.constants[tensor.name] = _tensor_to_numpy(tensor)
        if len(self.graph.sparse_initializer):
            raise ModelError("sparse initializers are not supported")
        self.ops: list = []
        self.data_shapes: dict[str, tuple[int, ...]] = {}  # full shape (batch as 1) of each data tensor
        self._choose_input(input_name)

    # -- set-up -------------------------------------------------------------------------------------
    def _choose_input(self, input_name):
        dynamic = [v for v in self.graph.input if v.name not in self.constants]
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
        self.shape = self.input_shape
        self.data_name = chosen.name
        self.data_shapes[chosen.name] = self.full_shape

    @property
    def full_shape(self) -> tuple[int, ...]:
        """The data tensor's shape as ONNX sees it, with the batch size as 1."""
        return (1, *self.shape) if self.batched else self.shape

    @property
    def size(self) -> int:
        return math.prod(self.shape)

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
        available = set(self.constants) | {v.name for v in self.graph.input}
        waiting, consumers = {}, {}
        for index, node in enumerate(nodes):
            inputs = {t for t in node.input if t and t not in available}
            for tensor in inputs:
                if tensor not in producer:
                    raise ModelError(
                        f"node {_node_name(node)!r} ({node.op_type}) reads {tensor!r}, which no node produces"
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
            raise ModelError(f"the graph has a cycle through node {_node_name(stuck)!r} ({stuck.op_type})")
        return order

    # -- walk ---------------------------------------------------------------------------------------
    def run(self, name: str) -> Network:
        for node in self._needed_nodes():
            self._visit(node)
        output = self.graph.output[0].name
        if output in self.constants:
            raise ModelError(f"the graph output {output!r} does not depend on the input {self.input_name!r}")
        if output != self.data_name:
            raise ModelError(f"the graph output {output!r} is not the end of the chain ({self.data_name!r})")
        return assemble(self.ops, self.input_shape, name=name)

    def _visit(self, node: onnx.NodeProto) -> None:
        op, name = node.op_type, _node_name(node)
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOperation(f"{node.domain}.{op}", name, "operator from a custom domain")
        if op == "Shape" and node.input[0] in self.data_shapes:
            self._shape_of_data(node)
            return
        roles = [self._role(tensor, node) for tensor in node.input]
        if all(role is not _DATA for role in roles):
            self._fold(node, roles)
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
            if tensor in self.tags and not (op == "Reshape" and position == 1):
                raise UnsupportedOperation(op, name, f"input {tensor!r} depends on the batch size")
        handler(self, node, _attributes(node), roles)
        self.data_name = node.output[0]
        self.data_shapes[self.data_name] = self.full_shape

    def _role(self, tensor: str, node):
        """None (absent input), a constant array, or _DATA; anything else is an error."""
        if not tensor:
            return None
        if tensor in self.constants:
            return self.constants[tensor]
        if tensor == self.data_name:
            return _DATA
        name = _node_name(node)
        if tensor in self.data_shapes:
            raise UnsupportedOperation(
                node.op_type, name,
                f"reads tensor {tensor!r} after another node consumed it: the graph branches (e.g. a residual "
                "connection); only chains are supported",
            )
        if tensor in self.other_inputs:
            raise UnsupportedOperation(node.op_type, name, f"reads graph input {tensor!r}, a second data input")
        raise ModelError(f"node {name!r} ({node.op_type}) reads tensor {tensor!r}, which no node produces")

    def _fold(self, node, values) -> None:
        op, name = node.op_type, _node_name(node)
        folder = _FOLD.get(op)
        if folder is None:
            raise UnsupportedOperation(op, name, "constant folding of this operation is not supported")
        attributes = _attributes(node)
        try:
            with np.errstate(all="ignore"):
                result = folder(attributes, values)
        except ShapeError as error:
            raise ShapeError(f"node {name!r} ({op}): {error}") from error
        except (ValueError, IndexError, KeyError, TypeError) as error:
            raise ModelError(f"node {name!r} ({op}): cannot evaluate on constant inputs: {error}") from error
        self.constants[node.output[0]] = result
        tagged = [i for i, t in enumerate(node.input) if t in self.tags]
        if tagged and op not in ("Shape", "Size"):  # these read the shape only, never the tagged values
            self._store_tags(node.output[0], self._fold_tags(node, attributes, values, tagged, result))

    def _store_tags(self, tensor: str, tags: np.ndarray) -> None:
        if np.any(tags):
            self.tags[tensor] = tags

    def _fold_tags(self, node, attributes, values, tagged, result) -> np.ndarray:
        """The batch tags of a folded output whose inputs carry tags."""
        op = node.op_type
        if op in _ARITHMETIC:
            return np.full(np.shape(result), _DERIVED, dtype=np.int8)
        if op == "Cast":
            return self.tags[node.input[0]]
        operands = _STRUCTURAL.get(op, ())
        if op not in _STRUCTURAL or (operands is not None and any(i not in operands for i in tagged)):
            raise UnsupportedOperation(
                op, _node_name(node), "computes with the batch size (from Shape of the data), which a per-sample "
                "network cannot represent",
            )
        tag_values = list(values)
        for i, tensor in enumerate(node.input):
            if operands is None or i in operands:
                tag_values[i] = self.tags.get(tensor, np.zeros(np.shape(values[i]), dtype=np.int8))
        return np.asarray(_FOLD[op](attributes, tag_values), dtype=np.int8)

    def _shape_of_data(self, node) -> None:
        attributes = _attributes(node)
        full = self.data_shapes[node.input[0]]
        start, end = attributes.get("start", 0), attributes.get("end")
        tags = np.zeros(len(full), dtype=np.int8)
        if self.batched:
            tags[0] = _BATCH
        self.constants[node.output[0]] = np.array(full, dtype=np.int64)[start:end]
        self._store_tags(node.output[0], tags[start:end])

    # -- emitting ops -----------------------------------------------------------------------------
    def _per_sample(self, node, full_shape) -> tuple[int, ...]:
        """Drop the batch axis of an output shape, refusing an op that moved or grew it."""
        full_shape = tuple(int(s) for s in full_shape)
        if not self.batched:
            return full_shape
        if not full_shape or full_shape[0] != 1:
            raise UnsupportedOperation(node.op_type, _node_name(node),
                                       "the operation mixes the batch axis with the sample's axes")
        return full_shape[1:]

    def _check_not_batch_axis(self, node, axes, what="axes"):
        if self.batched and 0 in axes:
            raise UnsupportedOperation(node.op_type, _node_name(node), f"{what} include the batch axis 0")

    def _affine(self, node, weight, bias, shape) -> None:
        self.ops.append(AffineOp(AffineMap(weight, bias), tuple(shape), _node_name(node), node.op_type))
        self.shape = tuple(shape)

    def _reshape(self, node, shape) -> None:
        self.ops.append(ReshapeOp(tuple(int(s) for s in shape), _node_name(node), node.op_type))
        self.shape = tuple(int(s) for s in shape)

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
        return np.arange(self.size).reshape(self.full_shape)

    def _elementwise(self, node, scale, offset) -> None:
        """Emit ``x -> scale * x + offset`` with constants broadcast against the data (numpy rules)."""
        shapes = [np.shape(c) for c in (scale, offset) if c is not None]
        try:
            out = np.broadcast_shapes(self.full_shape, *shapes)
        except ValueError:
            raise ShapeError(
                f"node {_node_name(node)!r} ({node.op_type}): constant of shape {shapes} does not broadcast "
                f"against the data {self.full_shape}"
            ) from None
        if self.batched and len(out) != len(self.full_shape):
            raise UnsupportedOperation(node.op_type, _node_name(node), "broadcasting moves the batch axis")
        shape = self._per_sample(node, out)
        source = np.broadcast_to(self._positions(), out).reshape(-1)
        rows = np.arange(source.size)
        values = np.ones(source.size) if scale is None else np.broadcast_to(scale, out).reshape(-1)
        weight = sp.csr_matrix((np.asarray(values, dtype=np.float64), (rows, source)), shape=(rows.size, self.size))
        bias = None if offset is None else np.broadcast_to(offset, out).reshape(-1)
        self._affine(node, weight, bias, shape)

    def _matmul(self, node, constant, data_left, addend=None) -> None:
        """Emit ``x @ constant`` (data_left) or ``constant @ x``, plus ``addend`` broadcast to the result."""
        constant = np.asarray(constant, dtype=np.float64)
        full = self.full_shape
        name = _node_name(node)
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
        except (ShapeError, ValueError) as error:
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
        perm = list(range(len(self.full_shape)))[::-1] if perm is None else _normalise_axes(perm, len(self.full_shape))
        if self.batched and perm[0] != 0:
            raise UnsupportedOperation(node.op_type, _node_name(node), f"permutation {perm} moves the batch axis")
        self._gather(node, np.transpose(self._positions(), perm))

    def _image(self, node, spatial_rank):
        """The (C, H, W) image a 1-D or 2-D Conv/pool sees (1-D as H = 1), checking the data's rank."""
        full = self.full_shape
        name = _node_name(node)
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
            raise UnsupportedOperation(node.op_type, _node_name(node), f"auto_pad {auto_pad!r}")
        return tuple(strides), (pads[0], pads[2], pads[1], pads[3])

    def _image_output(self, spatial_rank, out_shape) -> tuple[int, ...]:
        shape = (out_shape[0], out_shape[2]) if spatial_rank == 1 else tuple(out_shape)
        return shape if self.batched else (1, *shape)


# ---------------------------------------------------------------------------------------------------
# data-path handlers: (importer, node, attributes, inputs) with inputs[i] a constant array, _DATA or None


def _constant_input(node, inputs, position, what):
    value = _optional(inputs, position)
    if value is _DATA:
        raise UnsupportedOperation(node.op_type, _node_name(node), f"{what} must be a constant, not the data")
    return value


def _on_gemm(imp, node, a, inputs):
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    bias = _constant_input(node, inputs, 2, "C")
    addend = None if bias is None else beta * np.asarray(bias, dtype=np.float64)
    if inputs[0] is _DATA:
        other = _constant_input(node, inputs, 1, "B")
        if a.get("transA", 0):
            imp._transpose(node, [1, 0])
        imp._matmul(node, alpha * (other.T if a.get("transB", 0) else other), True, addend)
    else:
        other = inputs[0]
        if a.get("transB", 0):
            imp._transpose(node, [1, 0])
        imp._matmul(node, alpha * (other.T if a.get("transA", 0) else other), False, addend)


def _on_matmul(imp, node, a, inputs):
    if inputs[0] is _DATA:
        imp._matmul(node, inputs[1], data_left=True)
    else:
        imp._matmul(node, inputs[0], data_left=False)


def _on_arithmetic(imp, node, a, inputs):
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
        raise UnsupportedOperation(op, _node_name(node), "dividing by the data is not affine")
    elif np.any(constant == 0):
        raise ModelError(f"node {_node_name(node)!r} (Div): the divisor has zero entries")
    else:
        imp._elementwise(node, 1.0 / constant, None)


def _on_neg(imp, node, a, inputs):
    imp._elementwise(node, -1.0, None)


def _on_relu(imp, node, a, inputs):
    imp.ops.append(ActivationOp(RELU, _node_name(node), "Relu"))


def _on_leaky_relu(imp, node, a, inputs):
    imp.ops.append(ActivationOp(leaky_relu(a.get("alpha", 0.01)), _node_name(node), "LeakyRelu"))


def _on_prelu(imp, node, a, inputs):
    slope = np.asarray(_constant_input(node, inputs, 1, "slope"), dtype=np.float64)
    if slope.size == 0 or np.any(slope != slope.reshape(-1)[0]):
        raise UnsupportedOperation("PRelu", _node_name(node), "only a single slope shared by all units")
    imp.ops.append(ActivationOp(leaky_relu(slope.reshape(-1)[0]), _node_name(node), "PRelu"))


def _on_pass_through(imp, node, a, inputs):
    if node.op_type == "Cast" and onnx.helper.tensor_dtype_to_np_dtype(a["to"]).kind != "f":
        raise UnsupportedOperation("Cast", _node_name(node), "casting the data to a non-float type")
    if node.op_type == "Dropout":
        training = _optional(inputs, 2)
        if training is not None and bool(np.asarray(training).reshape(-1)[0]):
            raise UnsupportedOperation("Dropout", _node_name(node), "training_mode is on")


def _on_flatten(imp, node, a, inputs):
    full = imp.full_shape
    axis = a.get("axis", 1)
    axis = axis + len(full) if axis < 0 else axis
    if not 0 <= axis <= len(full):
        raise ShapeError(f"node {_node_name(node)!r} (Flatten): axis {a.get('axis')} out of range for rank {len(full)}")
    if imp.batched and (axis == 0 or math.prod(full[1:axis]) != 1):
        raise UnsupportedOperation("Flatten", _node_name(node), f"axis {axis} does not keep the batch axis first")
    imp._reshape(node, imp._per_sample(node, (math.prod(full[:axis]), math.prod(full[axis:]))))


def _on_reshape(imp, node, a, inputs):
    target_name = node.input[1] if "shape" not in a else None
    target = np.asarray(a["shape"] if "shape" in a else _constant_input(node, inputs, 1, "shape"))
    target = target.astype(np.int64).reshape(-1)
    tags = imp.tags.get(target_name, np.zeros(target.size, dtype=np.int8)) if target_name else np.zeros(target.size)
    name = _node_name(node)
    if np.any(tags[1:] != 0) or (tags.size and tags[0] == _DERIVED):
        raise UnsupportedOperation("Reshape", name, "the target shape depends on the batch size beyond axis 0")
    if tags.size and tags[0] == _BATCH:
        target = target.copy()
        target[0] = 0 if not a.get("allowzero", 0) else 1
    resolved = _reshape_target(target, imp.full_shape, a.get("allowzero", 0))
    if imp.batched and (not resolved or resolved[0] != 1):
        raise UnsupportedOperation("Reshape", name, f"target {target.tolist()} does not keep the batch axis first")
    imp._reshape(node, imp._per_sample(node, resolved))


def _on_squeeze(imp, node, a, inputs):
    axes = _axes(a, inputs)
    full = imp.full_shape
    if axes is None:
        axes = [i for i, s in enumerate(full) if s == 1 and not (imp.batched and i == 0)]
    axes = _normalise_axes(axes, len(full))
    imp._check_not_batch_axis(node, axes)
    if any(full[i] != 1 for i in axes):
        raise ShapeError(f"node {_node_name(node)!r} (Squeeze): axes {axes} of shape {full} are not all 1")
    imp._reshape(node, imp._per_sample(node, [s for i, s in enumerate(full) if i not in axes]))


def _on_unsqueeze(imp, node, a, inputs):
    axes = _axes(a, inputs)
    if axes is None:
        raise ModelError(f"node {_node_name(node)!r} (Unsqueeze) has no axes")
    axes = _normalise_axes(axes, len(imp.full_shape) + len(axes))
    imp._check_not_batch_axis(node, axes)
    imp._reshape(node, imp._per_sample(node, _unsqueeze(np.empty(imp.full_shape), axes).shape))


def _on_transpose(imp, node, a, inputs):
    imp._transpose(node, a.get("perm"))


def _on_slice_data(imp, node, a, inputs):
    positions, axes = _slice(imp._positions(), a, inputs)
    imp._check_not_batch_axis(node, axes)
    imp._gather(node, positions)


def _on_gather_data(imp, node, a, inputs):
    axis = _normalise_axes([a.get("axis", 0)], len(imp.full_shape))[0]
    imp._check_not_batch_axis(node, [axis], "axis")
    indices = np.asarray(_constant_input(node, inputs, 1, "indices"), dtype=np.int64)
    imp._gather(node, np.take(imp._positions(), indices, axis=axis))


def _on_pad(imp, node, a, inputs):
    full = imp.full_shape
    name = _node_name(node)
    mode = a.get("mode", "constant")
    if "pads" in a:
        pads, value, axes = list(a["pads"]), a.get("value", 0.0), None
    else:
        pads = _ints(_constant_input(node, inputs, 1, "pads"))
        value = _constant_input(node, inputs, 2, "constant_value")
        value = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
        axes = _optional(inputs, 3)
    axes = list(range(len(full))) if axes is None else _normalise_axes(_ints(axes), len(full))
    if len(pads) != 2 * len(axes):
        raise ShapeError(f"node {name!r} (Pad): {len(pads)} pads for {len(axes)} axes")
    begin, end = [0] * len(full), [0] * len(full)
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = pads[i], pads[i + len(axes)]
    imp._check_not_batch_axis(node, [i for i in range(len(full)) if begin[i] or end[i]], "padded axes")
    crop = tuple(slice(max(0, -b), s - max(0, -e)) for b, e, s in zip(begin, end, full))
    positions = imp._positions()[crop]
    widths = [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
    numpy_mode = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}.get(mode)
    if numpy_mode is None:
        raise UnsupportedOperation("Pad", name, f"mode {mode!r}")
    if numpy_mode == "constant":
        imp._gather(node, np.pad(positions, widths, constant_values=-1), fill=value)
    else:
        imp._gather(node, np.pad(positions, widths, mode=numpy_mode))


def _on_conv(imp, node, a, inputs):
    name = _node_name(node)
    weight = _constant_input(node, inputs, 1, "the weight")
    bias = _constant_input(node, inputs, 2, "the bias")
    spatial_rank = weight.ndim - 2
    image = imp._image(node, spatial_rank)
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != weight.shape[2:]:
        raise ShapeError(f"node {name!r} (Conv): kernel_shape {a['kernel_shape']} but weight {weight.shape}")
    dilation = list(a.get("dilations", [1] * spatial_rank))
    if spatial_rank == 1:
        weight, dilation = weight[:, :, None, :], [1, *dilation]
    strides, padding = imp._window(node, a, weight.shape[2:], image, spatial_rank, dilation)
    matrix, out_shape = conv2d_matrix(weight, image, stride=strides, padding=padding, dilation=tuple(dilation),
                                      groups=a.get("group", 1))
    bias_vector = None if bias is None else conv2d_bias(bias, out_shape)
    imp._affine(node, matrix, bias_vector, imp._image_output(spatial_rank, out_shape))


def _on_average_pool(imp, node, a, inputs):
    name = _node_name(node)
    kernel = list(a["kernel_shape"])
    spatial_rank = len(kernel)
    image = imp._image(node, spatial_rank)
    if any(d != 1 for d in a.get("dilations", [])):
        raise UnsupportedOperation("AveragePool", name, "dilations other than 1")
    kernel = [1, *kernel] if spatial_rank == 1 else kernel
    strides, padding = imp._window(node, a, kernel, image, spatial_rank)
    ceil_mode = bool(a.get("ceil_mode", 0))
    matrix, out_shape = avg_pool2d_matrix(image, tuple(kernel), stride=strides, padding=padding, ceil_mode=ceil_mode,
                                          count_include_pad=bool(a.get("count_include_pad", 0)))
    imp._affine(node, matrix, None, imp._image_output(spatial_rank, out_shape))


def _on_global_average_pool(imp, node, a, inputs):
    spatial_rank = len(imp.full_shape) - 2
    image = imp._image(node, spatial_rank)
    matrix, out_shape = adaptive_avg_pool2d_matrix(image, (1, 1))
    imp._affine(node, matrix, None, imp._image_output(spatial_rank, out_shape))


def _on_batch_norm(imp, node, a, inputs):
    name = _node_name(node)
    if a.get("training_mode", 0):
        raise UnsupportedOperation("BatchNormalization", name, "training_mode is on")
    scale, offset, mean, variance = (
        np.asarray(_constant_input(node, inputs, i, what), dtype=np.float64)
        for i, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var"))
    )
    full = imp.full_shape
    if len(full) < 2:
        raise ShapeError(f"node {name!r} (BatchNormalization) expects (N, C, ...) data, got shape {full}")
    # per-channel statistics broadcast over the spatial axes; spatial=0 (opset < 9) gives per-element ones
    stats_shape = full[1:] if a.get("spatial", 1) == 0 else (full[1],) + (1,) * (len(full) - 2)
    try:
        factor = (scale / np.sqrt(variance + a.get("epsilon", 1e-5))).reshape(stats_shape)
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
FOLDED_OPS = tuple(sorted(_FOLD))
"""Operations evaluated when all their inputs are constant."""


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
