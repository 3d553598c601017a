"""Import an ONNX model that is a chain of affine operations and (leaky) ReLUs into a ``Network``.

The file is parsed as data (``onnx.load``); nothing in it is executed. The graph is walked in topological
order and every tensor is one of two things:

- a *constant*: an initializer, a Constant node, or the output of a node whose inputs are all constant
  (folded with numpy by ``onnx_fold.ConstantFolder``: Shape, Gather, Unsqueeze, Concat, Reshape, ...);
- the *data path*: the single running tensor that descends from the model's one dynamic input, of known
  static per-sample shape (an ``onnx_ops.DataPath``). ``onnx_ops.translate`` turns each node on it into
  primitive operations (``AffineOp``, ``ActivationOp``, ``ReshapeOp``) that ``assemble`` composes into layers.

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
from pathlib import Path

import onnx

from ..errors import ModelError, ShapeError, UnsupportedOperation
from .builder import assemble
from .network import Network
from .onnx_fold import ConstantFolder, default_opset, node_name
from .onnx_ops import HANDLED_OPS, translate, unsupported_reason
from .onnx_path import DATA, DataPath

__all__ = ["from_onnx", "SUPPORTED_OPS"]

logger = logging.getLogger(__name__)

SUPPORTED_OPS = tuple(sorted({*HANDLED_OPS, "Shape"}))
"""Operations accepted on the data path (Shape reads only its static shape)."""


# ---------------------------------------------------------------------------------------------------
# the graph walk


class _GraphImporter:
    """Walks one graph, folding constants and translating the data path into primitive ops."""

    def __init__(self, model: onnx.ModelProto, input_name: str | None, batched: bool | None):
        self.graph = model.graph
        if not len(self.graph.input) and not len(self.graph.node):
            raise ModelError("the model is empty: its graph has no inputs and no nodes")
        self.folder = ConstantFolder(self.graph, default_opset(model))
        self._check_single_writers()
        self.batched_request = batched
        self.data_shapes: dict[str, tuple[int, ...]] = {}  # full shape (batch as 1) of each data tensor
        self.needed_tensors: set[str] = set()  # the tensors the graph output depends on; see _needed_nodes
        self._choose_input(input_name)

    # -- set-up -------------------------------------------------------------------------------------
    def _check_single_writers(self):
        """Refuse a graph where two nodes (or a node and an initializer) write one tensor, as ONNX does."""
        writer = {name: "an initializer" for name in self.folder.constants}
        writer.update({v.name: "a graph input" for v in self.graph.input if v.name not in writer})
        for node in self.graph.node:
            for name in node.output:
                if not name:
                    continue
                if name in writer:
                    raise ModelError(
                        f"tensor {name!r} is written by node {node_name(node)!r} ({node.op_type}) and by "
                        f"{writer[name]}: in ONNX every tensor has one producer"
                    )
                writer[name] = f"node {node_name(node)!r} ({node.op_type})"

    def _choose_input(self, input_name):
        """Pick the graph input that carries the data and start the data path (``self.path``) there."""
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
        fixed_batch = 1
        if self.batched_request is None:
            batched = bool(dims) and (dims[0] is None or (dims[0] == 1 and len(dims) >= 2))
            if len(dims) >= 2 and dims[0] is not None and dims[0] > 1:
                batched, fixed_batch = True, dims[0]  # a model exported with an example batch of several samples
        else:
            batched = bool(self.batched_request)
            if batched and not dims:
                raise ShapeError(f"graph input {chosen.name!r} is a scalar: it has no batch axis")
            if batched and dims[0] is not None:
                fixed_batch = dims[0]
        per_sample = dims[1:] if batched else dims
        if any(d is None for d in per_sample):
            axis = per_sample.index(None) + int(batched)
            raise ShapeError(
                f"graph input {chosen.name!r} has shape {shown}: dimension {axis} is dynamic; only the first "
                "(batch) dimension may be"
            )
        self.input_shape = tuple(per_sample)
        self.path = DataPath(self.input_shape, batched, self.folder, fixed_batch)
        self.data_name = chosen.name
        self.data_shapes[chosen.name] = self.path.full_shape

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
        return assemble(self.path.ops, self.input_shape, name=name)

    def _visit(self, node: onnx.NodeProto) -> None:
        """Fold ``node`` if all its inputs are constant, else translate it as the next op of the data path."""
        op, name = node.op_type, node_name(node)
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOperation(f"{node.domain}.{op}", name, "operator from a custom domain")
        if op == "Shape" and node.input[0] in self.data_shapes:
            self.folder.fold_shape_of_data(node, self.data_shapes[node.input[0]], self.path.batched)
            return
        roles = [self._role(tensor, node) for tensor in node.input]
        if all(role is not DATA for role in roles):
            self.folder.fold(node, roles)
            return
        if sum(role is DATA for role in roles) > 1:
            raise UnsupportedOperation(op, name, "combines the data tensor with itself (a branching graph)")
        if op not in HANDLED_OPS:
            raise UnsupportedOperation(op, name, unsupported_reason(op))
        extra = [t for t in node.output[1:] if t and t in self.needed_tensors]
        if extra:
            raise UnsupportedOperation(op, name, f"its secondary outputs {extra} are used")
        for position, tensor in enumerate(node.input):
            if self.folder.depends_on_batch(tensor) and not (op == "Reshape" and position == 1):
                raise UnsupportedOperation(op, name, f"input {tensor!r} depends on the batch size")
        translate(self.path, node, roles)
        self.data_name = node.output[0]
        self.data_shapes[self.data_name] = self.path.full_shape

    def _role(self, tensor: str, node):
        """None (absent input), a constant array, or DATA; anything else is an error."""
        if not tensor:
            return None
        if tensor in self.folder.constants:
            return self.folder.constants[tensor]
        if tensor == self.data_name:
            return DATA
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


# ---------------------------------------------------------------------------------------------------


def from_onnx(model_or_path, *, input_name: str | None = None, batched: bool | None = None) -> Network:
    """Import an ONNX model (a path or an ``onnx.ModelProto``) as a float64 ``Network``.

    Parameters
    ----------
    model_or_path : str, PathLike or onnx.ModelProto. A file is parsed with ``onnx.load`` (as data).
    input_name : the graph input to treat as the data; by default the first input that is not an
        initializer. Any other dynamic input that the output depends on is refused.
    batched : whether the input's first axis is the batch. By default it is when it is symbolic, or static
        with rank >= 2: a model exported with a fixed batch of N samples is read per sample (its ops must act
        on each sample alike, else the refusal says how to re-export). False reads the whole input tensor as
        one sample.

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
    importer = _GraphImporter(model, input_name, batched)
    try:
        network = importer.run(name)
    except (UnsupportedOperation, ShapeError) as error:
        if batched is not None or importer.path.fixed_batch == 1:
            raise
        # a static first axis above 1 read as a batch, but the graph mixes it with the others: that whole
        # tensor is one sample; when it is not either, the per-sample refusal (with its advice) stands
        try:
            network = _GraphImporter(model, input_name, False).run(name)
        except (UnsupportedOperation, ShapeError, ModelError):
            raise error from None
    logger.debug("imported %s: %s", name, network)
    return network
