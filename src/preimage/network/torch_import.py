"""Import a PyTorch model as a ``Network``: ``nn.Sequential`` or any ``torch.fx``-traceable ``nn.Module``.

The model is traced with ``torch.fx`` (nested ``Sequential`` containers and custom submodules are
inlined; ``torch.nn`` layers stay whole, named by their module path such as ``"features.0"``) and read
as a *chain*: one input, and every operation consumes the result of the operation before it. While the
chain is read it is also run once, in float64, on a small seeded batch, so every operation sees the
shapes torch itself produces: reshapes (``Flatten``, ``view``, ``reshape``) need no argument parsing,
and the output shape computed for a convolution or pooling is checked against torch's.

Each operation becomes primitive ops of ``builder.assemble``: Linear a dense affine map; Conv2d,
AvgPool2d, AdaptiveAvgPool2d sparse CSR matrices (``conv.py``); BatchNorm (running statistics) and
constant arithmetic (``x * c``, ``x - c``, ...) sparse diagonal maps, which ``assemble`` folds into their
neighbours. With ``check=True`` the result is compared with the model's own forward pass.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .. import settings as _settings
from ..errors import ImportMismatch, ModelError, ShapeError, UnsupportedOperation
from .affine import AffineMap
from .builder import ActivationOp, AffineOp, ReshapeOp, assemble
from .conv import adaptive_avg_pool2d_matrix, avg_pool2d_matrix, conv2d_bias, conv2d_matrix
from .layers import RELU, leaky_relu
from .network import Network

__all__ = ["from_torch", "relative_error"]

#: samples in the batch the chain is run on while it is read (more than one, so the batch axis is visible)
_PROBE_SAMPLES = 3
#: random inputs on which ``check=True`` compares the import with the torch forward pass
_CHECK_SAMPLES = 16
_SEED = 0

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
    padding_mode, with or without bias), BatchNorm1d/2d (eval mode, running statistics), AvgPool2d,
    AdaptiveAvgPool2d, Flatten, Unflatten, Dropout/Dropout1d/2d/3d/AlphaDropout/FeatureAlphaDropout and
    Identity (identity at inference), ReLU, LeakyReLU; functions and methods relu, leaky_relu, linear,
    conv2d, avg_pool2d, adaptive_avg_pool2d and dropout (with constant weights), flatten, view, reshape,
    squeeze, unsqueeze, contiguous, matmul by a constant matrix, and ``+ - * /`` and negation with Python
    or tensor constants. Constants may be computed from parameters and buffers (``self.w.t()``).

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
    reference = copy.deepcopy(module).to(device="cpu", dtype=torch.float64).eval()
    graph, root = _trace(reference, name)
    if input_shape is None:
        input_shape = _infer_input_shape(graph, root, name)
        inferred = True
    else:
        input_shape = _as_shape(input_shape)
        inferred = False
    ops = _ChainReader(root, training, name).read(graph, input_shape, inferred)
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
        if not _is_shape_agnostic(node, root):
            first = node
            break
    start = f"its first operation, {_kind(first, root)} at {_where(first, root)!r}," if first else "it"
    raise ShapeError(
        f"cannot infer the input shape of {name}: {start} does not fix it. Pass input_shape, the shape of one "
        "sample without the batch axis, e.g. input_shape=(C, H, W) for an image model."
    )


def _linear_in_features(node: fx.Node, root: nn.Module) -> int | None:
    if node.op == "call_module" and type(root.get_submodule(node.target)) is nn.Linear:
        return root.get_submodule(node.target).in_features
    if node.op == "call_function" and node.target is F.linear:
        weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
        if isinstance(weight, fx.Node) and weight.op == "get_attr":
            return int(_fetch(root, weight.target).shape[-1])
    return None


def _is_shape_agnostic(node: fx.Node, root: nn.Module) -> bool:
    """Operations that run on a flat sample as well as on any other shape (for input-shape inference)."""
    if node.op == "call_module":
        return type(root.get_submodule(node.target)) in _IDENTITY_MODULES + (nn.ReLU, nn.LeakyReLU, nn.Flatten)
    if node.op == "call_method":
        return node.target in ("relu", "flatten", "view", "reshape", "contiguous")
    if node.target in _ARITHMETIC:
        return all(isinstance(a, (int, float)) for a in node.args if not isinstance(a, fx.Node))
    return node.target in (F.relu, torch.relu, F.leaky_relu, torch.flatten, torch.reshape) + _DROPOUT_FUNCTIONS


def _is_shape_query(node: fx.Node) -> bool:
    """``x.size()``, ``x.dim()``, ``x.shape``: values read from a tensor's shape, not its data."""
    if node.op == "call_method":
        return node.target in ("size", "dim", "numel")
    return node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim")


def _fetch(root: nn.Module, target: str):
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
    if node.op == "call_module":
        return type(root.get_submodule(node.target)).__name__
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


# ---------------------------------------------------------------------------------------------------
# reading the chain


_DATA = object()  # stands for the data tensor in a step's arguments
_MISSING = object()


@dataclass
class _Step:
    """One operation of the chain, with its probe input ``x`` and output ``y`` (batch axis first)."""

    where: str
    kind: str
    module: nn.Module | None
    args: tuple
    kwargs: dict
    x: torch.Tensor
    y: torch.Tensor
    was_training: bool = False

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.y.shape[1:])

    def arg(self, index: int, keyword: str, default=_MISSING):
        """The argument at position ``index`` or named ``keyword``."""
        if index < len(self.args):
            return self.args[index]
        if keyword in self.kwargs:
            return self.kwargs[keyword]
        if default is _MISSING:
            raise UnsupportedOperation(self.kind, self.where, f"argument {keyword!r} is missing")
        return default


class _ChainReader:
    """Walks an fx graph as a chain, running it on a probe batch and translating each operation."""

    def __init__(self, root: nn.Module, training: dict[str, bool], name: str):
        self.root = root
        self.training = training
        self.name = name

    def read(self, graph: fx.Graph, input_shape: tuple[int, ...], inferred: bool) -> list:
        generator = torch.Generator().manual_seed(_SEED)
        probe = torch.randn((_PROBE_SAMPLES, *input_shape), generator=generator, dtype=torch.float64)
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
                    env[node] = self._run(node, env, input_shape, inferred)
                    continue
                self._check_chain(node, data, current)
                step = self._step(node, env, current, input_shape, inferred)
                ops.extend(self._translate(node, step))
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

    def _run(self, node: fx.Node, env: dict, input_shape, inferred: bool):
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), env.__getitem__)
        try:
            with torch.no_grad():
                return self._evaluate(node, args, kwargs)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            origin = " (inferred from the first Linear)" if inferred else ""
            raise ShapeError(
                f"{self.name}: {_kind(node, self.root)} at {_where(node, self.root)!r} fails on a batch of inputs of "
                f"shape {input_shape}{origin}: {exc}. Pass the shape of one sample as input_shape."
            ) from exc

    def _step(self, node: fx.Node, env: dict, current: fx.Node, input_shape, inferred: bool) -> _Step:
        x = env[current]
        if not isinstance(x, torch.Tensor):
            raise ModelError(f"{self.name}: {current.name!r} is not a tensor")
        kind, where = _kind(node, self.root), _where(node, self.root)
        if node.op != "call_module" and node.target in _IDENTITY_FUNCTIONS:
            y = x  # dropout is the identity at inference, whatever its ``training`` argument says
        else:
            before = x.clone()
            y = self._run(node, env, input_shape, inferred)
            x = before  # an in-place operation (relu_, inplace=True) must not hide its input
            if not isinstance(y, torch.Tensor):
                raise UnsupportedOperation(kind, where, f"it returns {type(y).__name__}, not one tensor")
        args, kwargs = fx.node.map_arg(
            (node.args, node.kwargs), lambda n: _DATA if n is current else env[n]
        )
        module = self.root.get_submodule(node.target) if node.op == "call_module" else None
        was_training = self.training.get(node.target, False) if module is not None else False
        return _Step(where, kind, module, args, kwargs, x, y, was_training)

    def _translate(self, node: fx.Node, step: _Step) -> list:
        if step.y.shape[:1] != step.x.shape[:1]:
            raise UnsupportedOperation(
                step.kind, step.where, f"it changes the batch axis (shape {tuple(step.x.shape)} -> {tuple(step.y.shape)})"
            )
        if node.op == "call_module":
            translate = _MODULE_RULES.get(type(step.module))
            supported = "supported modules: " + ", ".join(sorted(t.__name__ for t in _MODULE_RULES))
        elif node.op == "call_method":
            translate = _METHOD_RULES.get(node.target)
            supported = "supported tensor methods: " + ", ".join(sorted(_METHOD_RULES))
        else:
            translate = _FUNCTION_RULES.get(node.target)
            supported = "supported functions: " + ", ".join(sorted({_name(f) for f in _FUNCTION_RULES}))
        if translate is None:
            raise UnsupportedOperation(step.kind, step.where, _UNSUPPORTED_REASONS.get(step.kind, supported))
        if translate not in _EITHER_OPERAND and step.arg(0, "input", None) is not _DATA:
            raise UnsupportedOperation(step.kind, step.where, "it takes the data as an argument other than its input")
        try:
            ops = translate(step)
        except UnsupportedOperation:
            raise
        except (ModelError, ShapeError) as exc:
            raise type(exc)(f"{step.kind} at {step.where!r}: {exc}") from exc
        shape = step.in_shape
        for op in ops:
            if not isinstance(op, ActivationOp):
                shape = tuple(op.output_shape)
        if shape != step.out_shape:
            raise ShapeError(
                f"{step.kind} at {step.where!r}: translated to output shape {shape}, but torch gives {step.out_shape}"
            )
        return ops


def _check(reference: nn.Module, net: Network) -> None:
    """Raise ``ImportMismatch`` unless ``net`` agrees with ``reference`` (float64, eval) on seeded inputs."""
    generator = torch.Generator().manual_seed(_SEED + 1)
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


# ---------------------------------------------------------------------------------------------------
# translation rules: one step -> primitive ops of builder.assemble


def _array(value) -> np.ndarray:
    """A tensor, array or number as a float64 numpy array."""
    return torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64).numpy()


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _affine(step: _Step, weight, bias, output_shape) -> AffineOp:
    return AffineOp(AffineMap(weight, bias), tuple(output_shape), step.where, step.kind)


def _diagonal(step: _Step, scale, shift) -> AffineOp:
    """``x -> scale * x + shift`` elementwise on the flattened sample; scale, shift scalars or (d,)."""
    d = _size(step.in_shape)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (d,))
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (d,))
    return AffineOp(AffineMap.scaling(scale, shift), tuple(step.in_shape), step.where, step.kind)


def _identity(step: _Step) -> list:
    return []


def _relu(step: _Step) -> list:
    return [ActivationOp(RELU, step.where, step.kind)]


def _leaky_relu_module(step: _Step) -> list:
    return [ActivationOp(leaky_relu(step.module.negative_slope), step.where, step.kind)]


def _leaky_relu_function(step: _Step) -> list:
    return [ActivationOp(leaky_relu(step.arg(1, "negative_slope", 0.01)), step.where, step.kind)]


def _reshape(step: _Step) -> list:
    """A view of the same C-order data (Flatten, view, reshape, squeeze, ...), judged by its probe run."""
    batch = step.x.shape[0]
    before, after = step.x.reshape(batch, -1), step.y.reshape(batch, -1)
    if before.shape != after.shape or not bool(((before == after) | (before.isnan() & after.isnan())).all()):
        raise UnsupportedOperation(
            step.kind, step.where, "it moves values between samples or reorders them; only reshapes that keep "
            "the batch axis first and the C order of each sample are supported"
        )
    return [] if step.out_shape == step.in_shape else [ReshapeOp(step.out_shape, step.where, step.kind)]


def _last_axis_linear(step: _Step, weight, bias) -> list:
    """``x @ weight.T + bias`` along the last axis of the sample: weight (out, in), bias (out,) or None.

    On a flat sample this is one dense map; on a sample of shape (..., in) it is the same map on every
    row, a block-diagonal matrix stored sparse.
    """
    weight = _array(weight)
    if weight.ndim != 2 or not step.in_shape or step.in_shape[-1] != weight.shape[1]:
        raise ShapeError(f"a weight of shape {weight.shape} does not fit samples of shape {step.in_shape}")
    bias = None if bias is None else _array(bias)
    *lead, _ = step.in_shape
    out_features = weight.shape[0]
    copies = _size(lead)
    if copies > 1:
        weight = sp.kron(sp.identity(copies, format="csr"), sp.csr_matrix(weight), format="csr")
        bias = None if bias is None else np.tile(bias, copies)
    return [_affine(step, weight, bias, (*lead, out_features))]


def _linear_module(step: _Step) -> list:
    return _last_axis_linear(step, step.module.weight, step.module.bias)


def _linear_function(step: _Step) -> list:
    return _last_axis_linear(step, step.arg(1, "weight"), step.arg(2, "bias", None))


def _matmul(step: _Step) -> list:
    matrix = _array(step.arg(1, "other"))
    if matrix.ndim != 2:
        raise UnsupportedOperation(step.kind, step.where, "only a product with a constant 2-D matrix is supported")
    return _last_axis_linear(step, matrix.T, None)


def _conv2d(step: _Step, weight, bias, stride, padding, dilation, groups, padding_mode="zeros") -> list:
    matrix, shape = conv2d_matrix(_array(weight), step.in_shape, stride, padding, dilation, groups, padding_mode)
    offset = None if bias is None else conv2d_bias(_array(bias), shape)
    return [_affine(step, matrix, offset, shape)]


def _conv2d_module(step: _Step) -> list:
    m = step.module
    return _conv2d(step, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups, m.padding_mode)


def _conv2d_function(step: _Step) -> list:
    return _conv2d(
        step, step.arg(1, "weight"), step.arg(2, "bias", None), step.arg(3, "stride", 1),
        step.arg(4, "padding", 0), step.arg(5, "dilation", 1), step.arg(6, "groups", 1),
    )


def _avg_pool2d(step: _Step, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override) -> list:
    if stride is not None and not isinstance(stride, int) and len(stride) == 0:
        stride = None  # torch reads an empty stride as the kernel size
    matrix, shape = avg_pool2d_matrix(
        step.in_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    return [_affine(step, matrix, None, shape)]


def _avg_pool2d_module(step: _Step) -> list:
    m = step.module
    return _avg_pool2d(step, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)


def _avg_pool2d_function(step: _Step) -> list:
    return _avg_pool2d(
        step, step.arg(1, "kernel_size"), step.arg(2, "stride", None), step.arg(3, "padding", 0),
        step.arg(4, "ceil_mode", False), step.arg(5, "count_include_pad", True), step.arg(6, "divisor_override", None),
    )


def _adaptive_avg_pool2d(step: _Step) -> list:
    output_size = step.module.output_size if step.module is not None else step.arg(1, "output_size")
    matrix, shape = adaptive_avg_pool2d_matrix(step.in_shape, output_size)
    return [_affine(step, matrix, None, shape)]


def _batch_norm(step: _Step) -> list:
    """Eval-mode BatchNorm: ``(x - mean) / sqrt(var + eps) * gamma + beta`` per channel (axis 0 of a sample)."""
    m = step.module
    if step.was_training:
        raise ModelError(
            "it is in training mode, where it normalises each batch by that batch's own statistics, which is "
            "not a fixed map; call model.eval() before importing"
        )
    if m.running_mean is None or m.running_var is None:
        raise ModelError(
            "it keeps no running statistics (track_running_stats=False), so it normalises each batch by that "
            "batch's own statistics even in eval mode, which is not a fixed map"
        )
    if not step.in_shape or step.in_shape[0] != m.num_features:
        raise ShapeError(f"it normalises {m.num_features} channels, but receives samples of shape {step.in_shape}")
    scale = 1.0 / np.sqrt(_array(m.running_var) + m.eps)
    shift = -_array(m.running_mean) * scale
    if m.weight is not None:
        gamma = _array(m.weight)
        scale, shift = scale * gamma, shift * gamma + _array(m.bias)
    per_channel = _size(step.in_shape[1:])
    return [_diagonal(step, np.repeat(scale, per_channel), np.repeat(shift, per_channel))]


def _constant_operand(step: _Step) -> tuple[bool, np.ndarray]:
    """Whether the data is the first operand, and the other (constant) operand broadcast to a sample: (d,)."""
    data_first = step.arg(0, "input") is _DATA
    value = step.arg(1, "other") if data_first else step.arg(0, "input")
    tensor = torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64)
    extra = tensor.ndim - len(step.in_shape)
    if extra > 0:
        if any(s != 1 for s in tensor.shape[:extra]):
            raise UnsupportedOperation(
                step.kind, step.where, f"its constant of shape {tuple(tensor.shape)} differs between samples"
            )
        tensor = tensor.reshape(tensor.shape[extra:])
    try:
        tensor = torch.broadcast_to(tensor, step.in_shape)
    except RuntimeError:
        raise ShapeError(
            f"its constant of shape {tuple(tensor.shape)} does not broadcast to the sample shape {step.in_shape}"
        ) from None
    return data_first, tensor.reshape(-1).numpy()


def _add(step: _Step) -> list:
    data_first, constant = _constant_operand(step)
    alpha = float(step.kwargs.get("alpha", 1.0))
    return [_diagonal(step, 1.0, alpha * constant) if data_first else _diagonal(step, alpha, constant)]


def _sub(step: _Step) -> list:
    data_first, constant = _constant_operand(step)
    alpha = float(step.kwargs.get("alpha", 1.0))
    return [_diagonal(step, 1.0, -alpha * constant) if data_first else _diagonal(step, -alpha, constant)]


def _mul(step: _Step) -> list:
    return [_diagonal(step, _constant_operand(step)[1], 0.0)]


def _div(step: _Step) -> list:
    if step.kwargs.get("rounding_mode") is not None:
        raise UnsupportedOperation(step.kind, step.where, "division with rounding is not affine")
    data_first, constant = _constant_operand(step)
    if not data_first:
        raise UnsupportedOperation(step.kind, step.where, "dividing by the data is not affine")
    if np.any(constant == 0):
        raise ModelError("it divides by a constant with zero entries")
    return [_diagonal(step, 1.0 / constant, 0.0)]


def _neg(step: _Step) -> list:
    return [_diagonal(step, -1.0, 0.0)]


_IDENTITY_MODULES = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)
_DROPOUT_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout)
#: functions whose probe output is taken to be their input (dropout at inference)
_IDENTITY_FUNCTIONS = _DROPOUT_FUNCTIONS

_MODULE_RULES: dict[type, Callable[[_Step], list]] = {
    nn.Linear: _linear_module,
    nn.Conv2d: _conv2d_module,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.AvgPool2d: _avg_pool2d_module,
    nn.AdaptiveAvgPool2d: _adaptive_avg_pool2d,
    nn.Flatten: _reshape,
    nn.Unflatten: _reshape,
    nn.ReLU: _relu,
    nn.LeakyReLU: _leaky_relu_module,
    **{module_type: _identity for module_type in _IDENTITY_MODULES},
}

_ARITHMETIC: dict[Callable, Callable[[_Step], list]] = {
    operator.add: _add, torch.add: _add,
    operator.sub: _sub, torch.sub: _sub, torch.subtract: _sub,
    operator.mul: _mul, torch.mul: _mul, torch.multiply: _mul,
    operator.truediv: _div, torch.div: _div, torch.divide: _div, torch.true_divide: _div,
    operator.neg: _neg, torch.neg: _neg, torch.negative: _neg,
}

_FUNCTION_RULES: dict[Callable, Callable[[_Step], list]] = {
    F.relu: _relu, torch.relu: _relu, torch.relu_: _relu,
    F.leaky_relu: _leaky_relu_function,
    F.linear: _linear_function,
    operator.matmul: _matmul, torch.matmul: _matmul,
    F.conv2d: _conv2d_function,
    F.avg_pool2d: _avg_pool2d_function,
    F.adaptive_avg_pool2d: _adaptive_avg_pool2d,
    torch.flatten: _reshape, torch.reshape: _reshape, torch.squeeze: _reshape, torch.unsqueeze: _reshape,
    **_ARITHMETIC,
    **{function: _identity for function in _DROPOUT_FUNCTIONS},
}

_METHOD_RULES: dict[str, Callable[[_Step], list]] = {
    "relu": _relu, "relu_": _relu,
    "matmul": _matmul,
    "add": _add, "sub": _sub, "mul": _mul, "div": _div, "neg": _neg,
    **{method: _reshape for method in ("view", "reshape", "flatten", "squeeze", "unsqueeze", "contiguous")},
}

#: rules that accept the data as either operand; every other rule needs it as the first argument
_EITHER_OPERAND = frozenset({_add, _sub, _mul, _div})


def _name(function) -> str:
    return getattr(function, "__name__", repr(function))


_UNSUPPORTED_REASONS = {
    **dict.fromkeys(
        ("ReLU6", "Hardtanh", "relu6", "hardtanh"),
        "it clips at two thresholds (two kinks); only ReLU and LeakyReLU, with one kink at 0, are imported",
    ),
    **dict.fromkeys(
        ("MaxPool2d", "MaxPool1d", "AdaptiveMaxPool2d", "max_pool2d", "adaptive_max_pool2d"),
        "max pooling is piecewise linear but not an affine map followed by an elementwise activation; "
        "use AvgPool2d or a strided convolution",
    ),
    **dict.fromkeys(
        ("Sigmoid", "Tanh", "GELU", "SiLU", "ELU", "Softplus", "Softmax", "LogSoftmax", "Mish",
         "sigmoid", "tanh", "gelu", "silu", "elu", "softplus", "softmax", "log_softmax"),
        "it is not piecewise linear, so its preimages are not unions of polytopes",
    ),
    **dict.fromkeys(
        ("Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"),
        "only 2-D convolutions (Conv2d) are imported",
    ),
}
