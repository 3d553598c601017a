"""Import a PyTorch model as a ``Network``: ``nn.Sequential`` or any ``torch.fx``-traceable ``nn.Module``.

The model is traced with ``torch.fx`` (nested ``Sequential`` containers and custom submodules are
inlined; ``torch.nn`` layers stay whole, named by their module path such as ``"features.0"``) and read
as a *chain*: one input, and every operation consumes the result of the operation before it. While the
chain is read it is also run once, in float64, on a small seeded batch, so every operation sees the
shapes torch itself produces: reshapes (``Flatten``, ``view``, ``reshape``) need no argument parsing,
and the output shape of each translated operation is checked against torch's.

``torch_ops`` translates each operation into primitive ops of ``builder.assemble``, which folds the
affine ones together. With ``check=True`` the result is compared with the model's own forward pass.

Reparametrised layers. Weight normalisation and spectral normalisation (``nn.utils.parametrizations``
and the older hook-based ``nn.utils.weight_norm`` / ``spectral_norm``) compute a plain weight from
their parameters at each forward pass; at inference (eval mode: no power iteration) the layer is a
plain Linear or Conv2d with that weight, which is what the probe run leaves in ``module.weight``.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .. import settings as _settings
from ..errors import ImportMismatch, ModelError, ShapeError, UnsupportedOperation
from .builder import ActivationOp, assemble, with_params
from .network import Network
from .torch_ops import DATA, DROPOUT_FUNCTIONS, Step, is_shape_agnostic, layer_type, translate

__all__ = ["from_torch", "relative_error", "inference_copy"]

#: samples in the batch the chain is run on while it is read (more than one, so the batch axis is visible)
_PROBE_SAMPLES = 3
#: random inputs on which ``check=True`` compares the import with the torch forward pass
_CHECK_SAMPLES = 16
#: seeds of the probe batch and of the check's inputs
_PROBE_SEED = 0
_CHECK_SEED = 1

_CALLS = ("call_module", "call_function", "call_method")


def from_torch(module: nn.Module, input_shape=None, *, check: bool = True, name: str | None = None) -> Network:
    """The ``Network`` computing the same function as the torch ``module`` (in eval mode), in float64.

    Parameters
    ----------
    module : an ``nn.Sequential`` or an ``nn.Module`` that ``torch.fx.symbolic_trace`` can trace, whose
        forward pass is a chain of supported operations (see below). It is not modified: the import
        works on a float64 deep copy in eval mode.
    input_shape : the shape of one input sample without the batch axis, e.g. ``(784,)`` or ``(1, 28, 28)``.
        When omitted it is inferred as ``(in_features,)`` if the first operation that depends on the shape
        is a Linear (possibly after Flatten, Dropout or activations); otherwise a ``ShapeError`` asks for it.
    check : compare the network with the module's forward pass on 16 seeded standard-normal inputs of
        shape ``(16, *input_shape)``; raise ``ImportMismatch`` if ``relative_error`` exceeds
        ``settings.current().import_rtol``.
    name : the network's name; defaults to the module's class name.

    Supported: modules Linear, Conv2d (any stride, padding incl. "same"/"valid", dilation, groups,
    padding_mode, with or without bias), ConvTranspose2d (zero padding; output_size read off the probe run),
    BatchNorm1d/2d (eval mode, running statistics), AvgPool2d,
    AdaptiveAvgPool2d, Flatten, Unflatten, Dropout/Dropout1d/2d/3d/AlphaDropout/FeatureAlphaDropout and
    Identity (identity at inference), ReLU, LeakyReLU; functions and methods relu, leaky_relu, linear,
    conv2d, conv_transpose2d, avg_pool2d and adaptive_avg_pool2d (with constant weights), dropout, flatten, view, reshape,
    squeeze, unsqueeze, contiguous, matmul by a constant matrix, and ``+ - * /`` and negation with Python
    or tensor constants. Constants may be computed from parameters and buffers (``self.w.t()``).
    Weight-normalised and spectral-normalised layers are read as the plain layers they are at inference.
    Each layer's ``params`` counts the model's parameters (those of its modules, and ``nn.Parameter``
    arguments of functions), not the entries of the sparse matrices that stand for convolutions and pooling.

    Raises
    ------
    UnsupportedOperation : an operation outside that list (naming its type and module path or fx node),
        or a graph that is not a chain (a residual ``x + f(x)``, a concatenation, a branch).
    ModelError : BatchNorm that normalises with batch statistics (training mode, no running statistics),
        NaN/inf weights, a module fx cannot trace, more than one input or output.
    ShapeError : no input_shape and none can be inferred; a model that fails on inputs of input_shape.
    ImportMismatch : ``check=True`` and the network disagrees with the module.
    """
    if not isinstance(module, nn.Module):
        raise ModelError(f"from_torch needs a torch.nn.Module, got {type(module).__name__}")
    name = type(module).__name__ if name is None else name
    training = {path: sub.training for path, sub in module.named_modules()}
    reference = inference_copy(module).to(device="cpu", dtype=torch.float64)
    graph, root = _trace(reference, name)
    if input_shape is None:
        input_shape = _infer_input_shape(graph, root, name)
        inferred = True
    else:
        input_shape = _as_shape(input_shape)
        inferred = False
    ops = _ChainReader(root, training, name, input_shape, inferred).read(graph)
    net = assemble(ops, input_shape, name=name)
    if check:
        _check(reference, net)
    return net


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """The import error measure: ``max_i max_j |got_ij - expected_ij| / max(1, max_j |expected_ij|)``.

    got, expected : (n, outputs). Each sample's error is measured in the infinity norm and divided by
    that sample's largest output magnitude, floored at 1: relative for large outputs, absolute for
    outputs of order one or less (whose round-off follows the size of the intermediate activations,
    not their own). Any NaN gives ``inf``.
    """
    got = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    expected = np.asarray(expected, dtype=np.float64).reshape(len(expected), -1)
    if got.size == 0:
        return 0.0
    scale = np.maximum(1.0, np.abs(expected).max(axis=1))
    error = np.abs(got - expected).max(axis=1) / scale
    return float(np.inf) if np.isnan(error).any() else float(error.max())


# ---------------------------------------------------------------------------------------------------
# copies for inference


def inference_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in eval mode, ``module`` itself unchanged.

    ``nn.utils.weight_norm`` (the hook-based one) keeps its computed weight as a plain tensor attribute
    that is not a leaf of the autograd graph, which ``copy.deepcopy`` refuses; the copy gets a detached
    clone of it (the hook recomputes it at every forward pass anyway).
    """
    memo = {}
    for sub in module.modules():
        for value in vars(sub).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(module, memo).eval()


# ---------------------------------------------------------------------------------------------------
# tracing and input shape


def _trace(reference: nn.Module, name: str) -> tuple[fx.Graph, nn.Module]:
    """The fx graph of ``reference`` and the module its targets are resolved against."""
    if fx.Tracer().is_leaf_module(reference, ""):
        # a lone torch.nn layer: a one-node graph calling the root itself keeps it a module
        graph = fx.Graph()
        graph.output(graph.call_module("", (graph.placeholder("input"),)))
        return graph, reference
    try:
        traced = fx.symbolic_trace(reference)
    except Exception as exc:  # user forward code can fail under tracing in any way; report it as such
        raise ModelError(
            f"{name}: torch.fx cannot trace this module ({type(exc).__name__}: {exc}); its forward pass must "
            "not branch on tensor values. Rewrite it as an nn.Sequential or a traceable chain."
        ) from exc
    return traced.graph, traced


def _as_shape(input_shape) -> tuple[int, ...]:
    if isinstance(input_shape, (int, np.integer)):
        input_shape = (input_shape,)
    try:
        shape = tuple(operator.index(s) for s in input_shape)
    except TypeError:
        raise ShapeError(f"input_shape must be a tuple of ints, got {input_shape!r}") from None
    if not shape or min(shape) <= 0:
        raise ShapeError(f"input_shape must be positive sizes without the batch axis, got {input_shape!r}")
    return shape


def _infer_input_shape(graph: fx.Graph, root: nn.Module, name: str) -> tuple[int, ...]:
    """``(in_features,)`` of a first Linear that only shape-agnostic operations precede, else ShapeError."""
    dependent: set[fx.Node] = set()
    first = None
    for node in graph.nodes:
        if node.op == "placeholder" and not dependent:
            dependent.add(node)
            continue
        if node.op not in _CALLS or not dependent.intersection(node.all_input_nodes) or _is_shape_query(node):
            continue
        dependent.add(node)
        in_features = _linear_in_features(node, root)
        if in_features is not None:
            return (in_features,)
        if not is_shape_agnostic(node, root):
            first = node
            break
    start = f"its first operation, {_kind(first, root)} at {_where(first, root)!r}," if first else "it"
    raise ShapeError(
        f"cannot infer the input shape of {name}: {start} does not fix it. Pass input_shape, the shape of one "
        "sample without the batch axis, e.g. input_shape=(C, H, W) for an image model."
    )


def _linear_in_features(node: fx.Node, root: nn.Module) -> int | None:
    if node.op == "call_module" and layer_type(root.get_submodule(node.target)) is nn.Linear:
        return root.get_submodule(node.target).in_features
    if node.op == "call_function" and node.target is F.linear:
        weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
        if isinstance(weight, fx.Node) and weight.op == "get_attr":
            return int(_fetch(root, weight.target).shape[-1])
    return None


def _is_shape_query(node: fx.Node) -> bool:
    """``x.size()``, ``x.dim()``, ``x.shape``: values read from a tensor's shape, not its data."""
    if node.op == "call_method":
        return node.target in ("size", "dim", "numel")
    return node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim")


def _fetch(root: nn.Module, target: str):
    """The attribute at the dotted path ``target`` of ``root`` (a parameter, buffer or constant)."""
    value = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _where(node: fx.Node, root: nn.Module) -> str:
    """A readable location: the module path of a layer, the fx node name of a function or method."""
    if node.op == "call_module":
        return node.target or type(root).__name__
    return node.name


def _kind(node: fx.Node, root: nn.Module) -> str:
    """The operation's type for messages: the layer's class, the method or the function name."""
    if node.op == "call_module":
        return type(root.get_submodule(node.target)).__name__
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


# ---------------------------------------------------------------------------------------------------
# reading the chain


class _ChainReader:
    """Walks an fx graph as a chain, running it on a probe batch and translating each operation.

    root : the module the graph's targets are resolved against. training : the ``training`` flag of each
    submodule of the model as given, by module path (the graph runs on an eval-mode copy). input_shape :
    one sample's shape; inferred : whether it was inferred rather than passed (for error messages).
    """

    def __init__(self, root: nn.Module, training: dict[str, bool], name: str, input_shape: tuple[int, ...],
                 inferred: bool):
        self.root = root
        self.training = training
        self.name = name
        self.input_shape = input_shape
        self.inferred = inferred
        self._counted: set[int] = set()  # ids of the parameters already counted (a module may be reused)

    def read(self, graph: fx.Graph) -> list:
        """The primitive ops of the chain ``graph``, in order."""
        generator = torch.Generator().manual_seed(_PROBE_SEED)
        probe = torch.randn((_PROBE_SAMPLES, *self.input_shape), generator=generator, dtype=torch.float64)
        env: dict[fx.Node, Any] = {}
        current: fx.Node | None = None
        chain: set[fx.Node] = set()  # the input and every operation on it so far
        ops: list = []
        for node in graph.nodes:
            if node.op == "placeholder":
                if current is None:
                    env[node], current = probe, node
                    chain.add(node)
                elif node.args:
                    env[node] = node.args[0]  # an optional argument keeps its default
                else:
                    raise ModelError(
                        f"{self.name} takes more than one input ({current.name!r}, {node.name!r}); "
                        "only a model with a single input tensor can be imported"
                    )
            elif node.op == "get_attr":
                env[node] = _fetch(self.root, node.target)
            elif node.op == "output":
                if current is None:
                    raise ModelError(f"{self.name} takes no input")
                self._check_output(node, current)
            else:
                data: list[fx.Node] = []
                fx.node.map_arg((node.args, node.kwargs), lambda n: data.append(n) if n in chain else None)
                if not data or _is_shape_query(node):
                    env[node] = self._run(node, env)
                    continue
                self._check_chain(node, data, current)
                step = self._step(node, env, current)
                ops.extend(self._translate(step))
                env[node], current = step.y, node
                chain.add(node)
        return ops

    def _check_chain(self, node: fx.Node, data: list[fx.Node], current: fx.Node) -> None:
        kind, where = _kind(node, self.root), _where(node, self.root)
        if len(data) > 1:
            raise UnsupportedOperation(
                kind, where,
                "it combines two tensors computed from the input (a residual connection, a concatenation or a "
                "product); only a chain, in which every operation takes the previous result, can be imported",
            )
        if data[0] is not current:
            raise UnsupportedOperation(
                kind, where,
                f"it reads {data[0].name!r}, which {current.name!r} also uses: the graph branches; only a chain, "
                "in which every operation takes the previous result, can be imported",
            )

    def _check_output(self, node: fx.Node, current: fx.Node) -> None:
        result = node.args[0]
        if not isinstance(result, fx.Node):
            raise ModelError(f"{self.name} returns {type(result).__name__}; only a single output tensor can be imported")
        if result is not current:
            raise UnsupportedOperation(
                _kind(result, self.root) if result.op in _CALLS else result.op, result.name,
                f"the model returns {result.name!r}, not the result of its last operation {current.name!r}: "
                "the graph is not a chain",
            )

    def _evaluate(self, node: fx.Node, args: tuple, kwargs: dict):
        if node.op == "call_module":
            return self.root.get_submodule(node.target)(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        return node.target(*args, **kwargs)

    def _run(self, node: fx.Node, env: dict):
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), env.__getitem__)
        try:
            with torch.no_grad():
                return self._evaluate(node, args, kwargs)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            origin = " (inferred from the first Linear)" if self.inferred else ""
            raise ShapeError(
                f"{self.name}: {_kind(node, self.root)} at {_where(node, self.root)!r} fails on a batch of inputs of "
                f"shape {self.input_shape}{origin}: {exc}. Pass the shape of one sample as input_shape."
            ) from exc

    def _step(self, node: fx.Node, env: dict, current: fx.Node) -> Step:
        x = env[current]
        if not isinstance(x, torch.Tensor):
            raise ModelError(f"{self.name}: {current.name!r} is not a tensor")
        kind, where = _kind(node, self.root), _where(node, self.root)
        if node.op != "call_module" and node.target in DROPOUT_FUNCTIONS:
            y = x  # dropout is the identity at inference, whatever its ``training`` argument says
        else:
            before = x.clone()
            y = self._run(node, env)
            x = before  # an in-place operation (relu_, inplace=True) must not hide its input
            if not isinstance(y, torch.Tensor):
                raise UnsupportedOperation(kind, where, f"it returns {type(y).__name__}, not one tensor")
        args, kwargs = fx.node.map_arg(
            (node.args, node.kwargs), lambda n: DATA if n is current else env[n]
        )
        module = self.root.get_submodule(node.target) if node.op == "call_module" else None
        was_training = self.training.get(node.target, False) if module is not None else False
        return Step(node.op, node.target, where, kind, module, args, kwargs, x, y, was_training)

    def _translate(self, step: Step) -> list:
        """``translate(step)``, checked against the probe run: the batch axis kept, the output shape torch's."""
        if step.y.shape[:1] != step.x.shape[:1]:
            shapes = f"{tuple(step.x.shape)} -> {tuple(step.y.shape)}"
            raise UnsupportedOperation(step.kind, step.where, f"it changes the batch axis (shape {shapes})")
        ops = with_params(translate(step), self._params(step))
        shape = step.in_shape
        for op in ops:
            if not isinstance(op, ActivationOp):
                shape = tuple(op.output_shape)
        if shape != step.out_shape:
            raise ShapeError(
                f"{step.kind} at {step.where!r}: translated to output shape {shape}, but torch gives {step.out_shape}"
            )
        return ops

    def _params(self, step: Step) -> int:
        """Parameters of the model that ``step`` uses and no earlier step counted."""
        if step.module is not None:
            candidates = list(step.module.parameters())
        else:
            candidates = []
            fx.node.map_aggregate((step.args, step.kwargs),
                                  lambda v: candidates.append(v) if isinstance(v, nn.Parameter) else None)
        fresh = [p for p in candidates if id(p) not in self._counted]
        self._counted.update(id(p) for p in fresh)
        return sum(p.numel() for p in fresh)


def _check(reference: nn.Module, net: Network) -> None:
    """Raise ``ImportMismatch`` unless ``net`` agrees with ``reference`` (float64, eval) on seeded inputs."""
    generator = torch.Generator().manual_seed(_CHECK_SEED)
    inputs = torch.randn((_CHECK_SAMPLES, *net.input_shape), generator=generator, dtype=torch.float64)
    try:
        with torch.no_grad():
            expected = reference(inputs)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ImportMismatch(
            f"{net.name}: the torch module fails on a batch of {_CHECK_SAMPLES} inputs of shape {net.input_shape} "
            f"({exc}), so the import cannot be checked; it may depend on the batch size"
        ) from exc
    expected = expected.detach().reshape(_CHECK_SAMPLES, -1).numpy()
    got = net.forward(inputs.numpy())
    if got.shape != expected.shape:
        raise ImportMismatch(
            f"{net.name}: the imported network gives {got.shape[1]} outputs per sample, the torch module "
            f"{expected.shape[1]}"
        )
    error = relative_error(got, expected)
    tolerance = _settings.current().import_rtol
    if not error <= tolerance:
        mismatch = ImportMismatch(
            f"{net.name}: the imported network differs from the torch forward pass by {error:.3g} on "
            f"{_CHECK_SAMPLES} random inputs (relative error: max over samples of max |difference| / "
            f"max(1, max |output|)); import_rtol is {tolerance:g}"
        )
        mismatch.error = error
        raise mismatch
