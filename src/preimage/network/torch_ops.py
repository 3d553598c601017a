"""Translate one operation of a torch chain into primitive ops of ``builder.assemble``.

``torch_import`` reads a traced model as a chain and runs it once on a probe batch; each operation
reaches this module as a ``Step``: what was called, its arguments with the data tensor replaced by
``DATA``, and the probe input ``x`` and output ``y``. ``translate(step)`` returns its ops: Linear (and
``F.linear``, ``@`` a constant matrix) a dense affine map, block-diagonal sparse when it acts on the last
axis of a larger sample; Conv2d, ConvTranspose2d, AvgPool2d, AdaptiveAvgPool2d sparse CSR matrices
(``conv.py``);
BatchNorm (running statistics) and constant arithmetic (``x * c``, ``x - c``, ...) sparse diagonal maps,
which ``assemble`` folds into their neighbours; reshapes a ``ReshapeOp``, accepted only if the probe run
shows the data kept in C order; ReLU and LeakyReLU an ``ActivationOp``; Dropout and Identity nothing.

Interface used by ``torch_import``:

- ``DATA``, ``Step``: the description of one operation;
- ``translate(step)``: its ops, or an ``UnsupportedOperation``, ``ModelError`` or ``ShapeError`` that
  names the operation and where it is;
- ``DROPOUT_FUNCTIONS``: functions that are the identity at inference (the chain reader does not run them);
- ``is_shape_agnostic(node, root)``: for inferring the input shape.

A new operation is supported by adding its translator to ``MODULE_RULES`` (by ``nn.Module`` type),
``FUNCTION_RULES`` (by function) or ``METHOD_RULES`` (by tensor method name).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from ..errors import ModelError, ShapeError, UnsupportedOperation
from .affine import AffineMap
from .builder import ActivationOp, AffineOp, ReshapeOp
from .conv import (
    adaptive_avg_pool2d_matrix, avg_pool2d_matrix, conv2d_bias, conv2d_matrix, conv_transpose2d_matrix,
)
from .layers import RELU, leaky_relu

__all__ = [
    "DATA", "Step", "translate", "is_shape_agnostic", "layer_type", "DROPOUT_FUNCTIONS",
    "MODULE_RULES", "FUNCTION_RULES", "METHOD_RULES",
]

DATA = object()  # stands for the data tensor in a step's arguments
_MISSING = object()

#: ``F.leaky_relu``'s default ``negative_slope``
_TORCH_LEAKY_RELU_SLOPE = 0.01


@dataclass(frozen=True)
class Step:
    """One operation of the chain, with its probe input ``x`` and output ``y`` (batch axis first).

    op : the fx node's ``op``: ``"call_module"``, ``"call_function"`` or ``"call_method"``.
    target : the module path, the function, or the method name that is called.
    where, kind : the operation's location (module path or fx node name) and type name, for messages.
    module : the called ``nn.Module`` for ``"call_module"``, else None.
    args, kwargs : the call's arguments, the data tensor replaced by ``DATA``, constants evaluated.
    x, y : probe input and output, ``(batch, *in_shape)`` and ``(batch, *out_shape)`` float64; ``x`` is
        a copy taken before the call, so an in-place operation does not hide its input.
    was_training : the module was in training mode before the import put a copy in eval mode.
    """

    op: str
    target: Any
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
        """The argument at position ``index`` or named ``keyword``; ``default`` if given and it is absent."""
        if index < len(self.args):
            return self.args[index]
        if keyword in self.kwargs:
            return self.kwargs[keyword]
        if default is _MISSING:
            raise UnsupportedOperation(self.kind, self.where, f"argument {keyword!r} is missing")
        return default


#: a translator: one step -> its list of primitive ops
Translator = Callable[[Step], list]


def translate(step: Step) -> list:
    """The ``AffineOp``/``ActivationOp``/``ReshapeOp`` list computing ``step`` on one flattened sample.

    Raises ``UnsupportedOperation`` for an operation without a translator (with the reason, or the list
    of supported ones) or one that takes the data in an unsupported position; a ``ModelError`` or
    ``ShapeError`` of a translator is raised again with the operation's kind and location prefixed.
    """
    if step.op == "call_module":
        translator = MODULE_RULES.get(layer_type(step.module))
        supported = "supported modules: " + ", ".join(sorted(t.__name__ for t in MODULE_RULES))
    elif step.op == "call_method":
        translator = METHOD_RULES.get(step.target)
        supported = "supported tensor methods: " + ", ".join(sorted(METHOD_RULES))
    else:
        translator = FUNCTION_RULES.get(step.target)
        supported = "supported functions: " + ", ".join(sorted({f.__name__ for f in FUNCTION_RULES}))
    if translator is None:
        raise UnsupportedOperation(step.kind, step.where, _UNSUPPORTED_REASONS.get(step.kind, supported))
    if translator not in _EITHER_OPERAND and step.arg(0, "input", None) is not DATA:
        raise UnsupportedOperation(step.kind, step.where, "it takes the data as an argument other than its input")
    try:
        return translator(step)
    except UnsupportedOperation:
        raise
    except (ModelError, ShapeError) as exc:
        raise type(exc)(f"{step.kind} at {step.where!r}: {exc}") from exc


def layer_type(module: nn.Module) -> type:
    """The module's class; for a parametrized one (weight_norm, spectral_norm) the class it was made from.

    ``torch.nn.utils.parametrize`` swaps the module's class for a subclass ``Parametrized<Class>``
    whose ``weight`` is computed; the layer is still a ``<Class>``.
    """
    kind = type(module)
    return kind.__bases__[0] if parametrize.is_parametrized(module) else kind


def is_shape_agnostic(node: fx.Node, root: nn.Module) -> bool:
    """Whether ``node`` runs on a flat sample as well as on any other shape (for input-shape inference).

    ``root`` is the module that ``node``'s module path is resolved against.
    """
    if node.op == "call_module":
        return layer_type(root.get_submodule(node.target)) in _IDENTITY_MODULES + (nn.ReLU, nn.LeakyReLU, nn.Flatten)
    if node.op == "call_method":
        return node.target in ("relu", "flatten", "view", "reshape", "contiguous")
    if node.target in _ARITHMETIC:
        return all(isinstance(a, (int, float)) for a in node.args if not isinstance(a, fx.Node))
    return node.target in (F.relu, torch.relu, F.leaky_relu, torch.flatten, torch.reshape) + DROPOUT_FUNCTIONS


# ---------------------------------------------------------------------------------------------------
# translators: one step -> primitive ops


def _tensor(value) -> torch.Tensor:
    """A tensor, array or number as a detached float64 CPU tensor."""
    return torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64)


def _array(value) -> np.ndarray:
    """A tensor, array or number as a float64 numpy array."""
    return _tensor(value).numpy()


def _affine(step: Step, weight, bias, output_shape) -> AffineOp:
    return AffineOp(AffineMap(weight, bias), tuple(output_shape), step.where, step.kind)


def _diagonal(step: Step, scale, shift) -> AffineOp:
    """``x -> scale * x + shift`` elementwise on the flattened sample; scale, shift scalars or (d,)."""
    d = math.prod(step.in_shape)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (d,))
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (d,))
    return AffineOp(AffineMap.scaling(scale, shift), tuple(step.in_shape), step.where, step.kind)


def _identity(step: Step) -> list:
    return []


def _dropout_function(step: Step) -> list:
    """Functional dropout is the identity only when called with ``training=False``."""
    training_by_default = step.target in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d)
    if step.arg(2, "training", training_by_default):
        raise ModelError(f"{step.where}: {step.target.__name__} is called with training=True, which drops "
                         "random units; pass training=self.training and import the model in eval mode")
    return []


def _relu(step: Step) -> list:
    return [ActivationOp(RELU, step.where, step.kind)]


def _leaky_relu_module(step: Step) -> list:
    return [ActivationOp(leaky_relu(step.module.negative_slope), step.where, step.kind)]


def _leaky_relu_function(step: Step) -> list:
    slope = step.arg(1, "negative_slope", _TORCH_LEAKY_RELU_SLOPE)
    return [ActivationOp(leaky_relu(slope), step.where, step.kind)]


def _reshape(step: Step) -> list:
    """A view of the same C-order data (Flatten, view, reshape, squeeze, ...), judged by its probe run."""
    batch = step.x.shape[0]
    before, after = step.x.reshape(batch, -1), step.y.reshape(batch, -1)
    if before.shape != after.shape or not bool(((before == after) | (before.isnan() & after.isnan())).all()):
        raise UnsupportedOperation(
            step.kind, step.where, "it moves values between samples or reorders them; only reshapes that keep "
            "the batch axis first and the C order of each sample are supported"
        )
    return [] if step.out_shape == step.in_shape else [ReshapeOp(step.out_shape, step.where, step.kind)]


def _last_axis_linear(step: Step, weight, bias) -> list:
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
    copies = math.prod(lead)
    if copies > 1:
        weight = sp.kron(sp.identity(copies, format="csr"), sp.csr_matrix(weight), format="csr")
        bias = None if bias is None else np.tile(bias, copies)
    return [_affine(step, weight, bias, (*lead, out_features))]


def _linear_module(step: Step) -> list:
    return _last_axis_linear(step, step.module.weight, step.module.bias)


def _linear_function(step: Step) -> list:
    return _last_axis_linear(step, step.arg(1, "weight"), step.arg(2, "bias", None))


def _matmul(step: Step) -> list:
    matrix = _array(step.arg(1, "other"))
    if matrix.ndim != 2:
        raise UnsupportedOperation(step.kind, step.where, "only a product with a constant 2-D matrix is supported")
    return _last_axis_linear(step, matrix.T, None)


def _conv2d(step: Step, weight, bias, stride, padding, dilation, groups, padding_mode="zeros") -> list:
    matrix, shape = conv2d_matrix(_array(weight), step.in_shape, stride, padding, dilation, groups, padding_mode)
    offset = None if bias is None else conv2d_bias(_array(bias), shape)
    return [_affine(step, matrix, offset, shape)]


def _conv2d_module(step: Step) -> list:
    m = step.module
    return _conv2d(step, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups, m.padding_mode)


def _conv2d_function(step: Step) -> list:
    return _conv2d(
        step, step.arg(1, "weight"), step.arg(2, "bias", None), step.arg(3, "stride", 1),
        step.arg(4, "padding", 0), step.arg(5, "dilation", 1), step.arg(6, "groups", 1),
    )


def _conv_transpose2d(step: Step, weight, bias, stride, padding, dilation, groups) -> list:
    """A transposed convolution; its output padding is read off the probe run (it may come from ``output_size``)."""
    weight = _array(weight)
    stride, padding, dilation = (np.broadcast_to(v, 2).tolist() for v in (stride, padding, dilation))
    if not step.in_shape or len(step.in_shape) != 3 or weight.ndim != 4:
        raise ShapeError(f"a weight of shape {weight.shape} does not fit samples of shape {step.in_shape}")
    full = [(size - 1) * s - 2 * p + d * (k - 1) + 1
            for size, s, p, d, k in zip(step.in_shape[1:], stride, padding, dilation, weight.shape[2:])]
    output_padding = [out - f for out, f in zip(step.out_shape[1:], full)] if len(step.out_shape) == 3 else [0, 0]
    matrix, shape = conv_transpose2d_matrix(weight, step.in_shape, stride, [padding[0]] * 2 + [padding[1]] * 2,
                                            output_padding, dilation, groups)
    offset = None if bias is None else conv2d_bias(_array(bias), shape)
    return [_affine(step, matrix, offset, shape)]


def _conv_transpose2d_module(step: Step) -> list:
    m = step.module
    if m.padding_mode != "zeros":
        raise UnsupportedOperation(step.kind, step.where, f"padding_mode {m.padding_mode!r} (torch allows only zeros)")
    return _conv_transpose2d(step, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


def _conv_transpose2d_function(step: Step) -> list:
    return _conv_transpose2d(
        step, step.arg(1, "weight"), step.arg(2, "bias", None), step.arg(3, "stride", 1),
        step.arg(4, "padding", 0), step.arg(7, "dilation", 1), step.arg(6, "groups", 1),
    )


def _avg_pool2d(step: Step, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override) -> list:
    if stride is not None and not isinstance(stride, int) and len(stride) == 0:
        stride = None  # torch reads an empty stride as the kernel size
    matrix, shape = avg_pool2d_matrix(
        step.in_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    )
    return [_affine(step, matrix, None, shape)]


def _avg_pool2d_module(step: Step) -> list:
    m = step.module
    return _avg_pool2d(step, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)


def _avg_pool2d_function(step: Step) -> list:
    return _avg_pool2d(
        step, step.arg(1, "kernel_size"), step.arg(2, "stride", None), step.arg(3, "padding", 0),
        step.arg(4, "ceil_mode", False), step.arg(5, "count_include_pad", True), step.arg(6, "divisor_override", None),
    )


def _adaptive_avg_pool2d(step: Step) -> list:
    output_size = step.module.output_size if step.module is not None else step.arg(1, "output_size")
    matrix, shape = adaptive_avg_pool2d_matrix(step.in_shape, output_size)
    return [_affine(step, matrix, None, shape)]


def _batch_norm(step: Step) -> list:
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
    variance = _array(m.running_var)
    if np.any(variance + m.eps <= 0):
        channel = int(np.argmax(variance + m.eps <= 0))
        raise ModelError(f"its running variance is negative (channel {channel}: {variance[channel]:g}, eps "
                         f"{m.eps:g}), which no batch of data can give; the statistics are damaged")
    scale = 1.0 / np.sqrt(variance + m.eps)
    shift = -_array(m.running_mean) * scale
    if m.weight is not None:
        gamma = _array(m.weight)
        scale, shift = scale * gamma, shift * gamma + _array(m.bias)
    per_channel = math.prod(step.in_shape[1:])
    return [_diagonal(step, np.repeat(scale, per_channel), np.repeat(shift, per_channel))]


def _constant_operand(step: Step) -> tuple[bool, np.ndarray]:
    """Whether the data is the first operand, and the other (constant) operand broadcast to a sample: (d,)."""
    data_first = step.arg(0, "input") is DATA
    value = step.arg(1, "other") if data_first else step.arg(0, "input")
    tensor = _tensor(value)
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


def _add(step: Step) -> list:
    data_first, constant = _constant_operand(step)
    alpha = float(step.kwargs.get("alpha", 1.0))
    return [_diagonal(step, 1.0, alpha * constant) if data_first else _diagonal(step, alpha, constant)]


def _sub(step: Step) -> list:
    data_first, constant = _constant_operand(step)
    alpha = float(step.kwargs.get("alpha", 1.0))
    return [_diagonal(step, 1.0, -alpha * constant) if data_first else _diagonal(step, -alpha, constant)]


def _mul(step: Step) -> list:
    return [_diagonal(step, _constant_operand(step)[1], 0.0)]


def _div(step: Step) -> list:
    if step.kwargs.get("rounding_mode") is not None:
        raise UnsupportedOperation(step.kind, step.where, "division with rounding is not affine")
    data_first, constant = _constant_operand(step)
    if not data_first:
        raise UnsupportedOperation(step.kind, step.where, "dividing by the data is not affine")
    if np.any(constant == 0):
        raise ModelError("it divides by a constant with zero entries")
    return [_diagonal(step, 1.0 / constant, 0.0)]


def _neg(step: Step) -> list:
    return [_diagonal(step, -1.0, 0.0)]


_IDENTITY_MODULES = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)
#: the identity at inference, whatever their ``training`` argument says; the chain reader does not run them
DROPOUT_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout)

MODULE_RULES: dict[type, Translator] = {
    nn.Linear: _linear_module,
    nn.Conv2d: _conv2d_module,
    nn.ConvTranspose2d: _conv_transpose2d_module,
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

_ARITHMETIC: dict[Callable, Translator] = {
    operator.add: _add, torch.add: _add,
    operator.sub: _sub, torch.sub: _sub, torch.subtract: _sub,
    operator.mul: _mul, torch.mul: _mul, torch.multiply: _mul,
    operator.truediv: _div, torch.div: _div, torch.divide: _div, torch.true_divide: _div,
    operator.neg: _neg, torch.neg: _neg, torch.negative: _neg,
}

FUNCTION_RULES: dict[Callable, Translator] = {
    F.relu: _relu, torch.relu: _relu, torch.relu_: _relu,
    F.leaky_relu: _leaky_relu_function,
    F.linear: _linear_function,
    operator.matmul: _matmul, torch.matmul: _matmul,
    F.conv2d: _conv2d_function,
    F.conv_transpose2d: _conv_transpose2d_function,
    F.avg_pool2d: _avg_pool2d_function,
    F.adaptive_avg_pool2d: _adaptive_avg_pool2d,
    torch.flatten: _reshape, torch.reshape: _reshape, torch.squeeze: _reshape, torch.unsqueeze: _reshape,
    **_ARITHMETIC,
    **{function: _dropout_function for function in DROPOUT_FUNCTIONS},
}

METHOD_RULES: dict[str, Translator] = {
    "relu": _relu, "relu_": _relu,
    "matmul": _matmul,
    "add": _add, "sub": _sub, "mul": _mul, "div": _div, "neg": _neg,
    **{method: _reshape for method in ("view", "reshape", "flatten", "squeeze", "unsqueeze", "contiguous")},
}

#: translators that accept the data as either operand; every other one needs it as the first argument
_EITHER_OPERAND = frozenset({_add, _sub, _mul, _div})


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
        ("Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose3d"),
        "only 2-D convolutions (Conv2d, ConvTranspose2d) are imported",
    ),
}
