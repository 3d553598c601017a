"""Patterns of torch modules the exact IR does not take (LayerNorm, SELU, ...), read with forward hooks.

The pattern of a unit is the sign of its pre-activation: bit 1 iff the value is ``> 0``. A chosen
activation module (ReLU, SELU, ELU, GELU, Tanh, ...) contributes the sign of its *input*; any other chosen
submodule (a Linear, a LayerNorm) the sign of its *output*. Without a choice, every activation module
is read, in the order of ``named_modules``.

Activations called as functions (``F.relu(x)``, ``x.relu()``) have no module to hook: a module without
activation submodules is traced with ``torch.fx`` instead, and the inputs of its activation calls are
read (``functional_activations`` names them, e.g. ``"relu"``, ``"relu_1"``); ``layers`` may also name any
node of that graph (its output is read).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Sequence

import numpy as np

from ..errors import ModelError, ShapeError
from .packed import Patterns, pack_bits

__all__ = ["ACTIVATION_TYPES", "activation_modules", "functional_activations", "hook_patterns",
           "hook_preactivations"]

#: module classes whose input is the pre-activation of the units they act on
ACTIVATION_TYPES = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "SELU", "ELU", "CELU", "GELU", "SiLU",
                    "Mish", "Softplus", "Tanh", "Sigmoid", "Hardtanh", "Hardswish", "Hardsigmoid", "Softsign")


#: functions and tensor methods whose first argument is the pre-activation
_FUNCTIONAL = {name.lower() for name in ACTIVATION_TYPES} | {"relu_", "leaky_relu", "leaky_relu_", "hardswish"}


def _is_activation(module) -> bool:
    return type(module).__name__ in ACTIVATION_TYPES


def activation_modules(module) -> list[str]:
    """Names (as in ``named_modules``) of the activation submodules of ``module``, in order."""
    return [name for name, sub in module.named_modules() if name and _is_activation(sub)]


def _traced(module):
    import torch.fx

    try:
        return torch.fx.symbolic_trace(module)
    except Exception as error:  # fx raises many types on untraceable code; each becomes one clear error
        raise ModelError(f"{type(module).__name__} has no activation submodule and torch.fx cannot trace it "
                         f"({type(error).__name__}: {error}); name submodules with layers=[...]") from error


def _is_functional_activation(node) -> bool:
    if node.op == "call_function":
        return getattr(node.target, "__name__", "").lower() in _FUNCTIONAL
    return node.op == "call_method" and str(node.target).lower() in _FUNCTIONAL


def functional_activations(module) -> list[str]:
    """Names of the ``torch.fx`` graph nodes of ``module`` that call an activation function, in order."""
    return [node.name for node in _traced(module).graph.nodes if _is_functional_activation(node)]


def _uses_fx(module, layers) -> bool:
    if layers is None:
        return not activation_modules(module)
    named = dict(module.named_modules())
    return any(str(name) not in named for name in layers)


def _fx_preactivations(module, x, layers) -> list:
    import torch.fx

    graph_module = _traced(module)
    nodes = {node.name: node for node in graph_module.graph.nodes}
    names = [node for node in nodes if _is_functional_activation(nodes[node])] if layers is None else list(layers)
    if not names:
        raise ModelError(f"{type(module).__name__} calls no activation, as a module or as a function")
    missing = [name for name in names if name not in nodes]
    if missing:
        raise ModelError(f"no submodule or graph node named {missing[0]!r} in {type(module).__name__}; graph "
                         f"nodes: {', '.join(nodes)}")
    wanted = set(names)
    values: dict = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if node.name in wanted:
                values[node.name] = self.fetch_args_kwargs_from_env(node)[0][0] if _is_functional_activation(node) \
                    else result
            return result

    Recorder(graph_module).run(x)
    return [values.get(name) for name in names], names


def _chosen(module, layers: Sequence[str] | None) -> list[tuple[str, object]]:
    named = dict(module.named_modules())
    names = activation_modules(module) if layers is None else [str(name) for name in layers]
    if not names:
        raise ModelError(f"{type(module).__name__} has no activation submodule to read patterns from; "
                         "name the submodules with layers=[...]")
    missing = [name for name in names if name not in named]
    if missing:
        raise ModelError(f"no submodule named {missing[0]!r} in {type(module).__name__}; "
                         f"available: {', '.join(n for n in named if n)}")
    return [(name, named[name]) for name in names]


@contextlib.contextmanager
def _eval_mode(module, eval: bool):
    modes = {sub: sub.training for sub in module.modules()}
    if eval:
        module.eval()
    try:
        yield
    finally:
        for sub, training in modes.items():
            sub.training = training


def _as_tensor(batch, dtype):
    import torch

    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        batch = torch.as_tensor(np.asarray(batch))
    return batch.to(dtype)


def _as_array(name: str, value) -> np.ndarray:
    import torch

    if not isinstance(value, torch.Tensor):
        raise ModelError(f"{name!r} gives a {type(value).__name__}, not a tensor (or was not reached)")
    return value.detach().reshape(value.shape[0], -1).to(torch.float64).cpu().numpy()


def hook_preactivations(module, batch, layers: Sequence[str] | None = None, *, eval: bool = True) -> list[np.ndarray]:
    """The pre-activations of the chosen units on one batch: one (n, units_l) float64 array per layer.

    module : a torch ``nn.Module``; batch : an (n, ...) tensor or array (or an (inputs, targets) pair);
    layers : submodule (or fx graph node) names (see the module docstring); eval : run in eval mode (BatchNorm on running
    statistics, no dropout), restoring every submodule's mode afterwards.
    """
    import torch

    parameter = next(iter(module.parameters()), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    if _uses_fx(module, layers):
        with _eval_mode(module, eval), torch.no_grad():
            found, names = _fx_preactivations(module, _as_tensor(batch, dtype), layers)
        return [_as_array(name, value) for name, value in zip(names, found)]
    chosen = _chosen(module, layers)
    values: dict[str, np.ndarray] = {}

    def reader(name, activation):
        def hook(_module, inputs, output):
            values[name] = _as_array(name, inputs[0] if activation else output)
        return hook

    handles = [sub.register_forward_hook(reader(name, _is_activation(sub))) for name, sub in chosen]
    try:
        with _eval_mode(module, eval), torch.no_grad():
            module(_as_tensor(batch, dtype))
    finally:
        for handle in handles:
            handle.remove()
    unread = [name for name, _ in chosen if name not in values]
    if unread:
        raise ModelError(f"submodule {unread[0]!r} was not called by the forward pass")
    return [values[name] for name, _ in chosen]


def hook_patterns(module, batches: Iterable, layers: Sequence[str] | None = None, *, eval: bool = True) -> Patterns:
    """Bit-packed patterns (bit 1: pre-activation > 0) of a torch module over an iterable of batches.

    Layer ``i`` of the result is the ``i``-th of ``layers`` (default: ``activation_modules(module)``).
    """
    parts = []
    for batch in batches:
        values = hook_preactivations(module, batch, layers, eval=eval)
        parts.append(Patterns([pack_bits(v > 0) for v in values], [v.shape[1] for v in values]))
    if not parts:
        raise ShapeError("no batches to read patterns from")
    return Patterns.concatenate(parts)
