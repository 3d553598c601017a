"""The objective of an inverse set as torch functions: neurons of a model, its input, generator and encoder.

A *neuron* is ``(layer, unit)``. For a :class:`~preimage.network.Network`, ``layer`` indexes ``net.layers``
and the neuron's value is that unit's pre-activation (as in ``NeuronRange``). For a torch module, ``layer``
names a submodule as ``named_modules`` does (``"4"``, ``"features.2"``; ``""`` is the whole model) and the
value is that submodule's output. ``unit`` is an index into the flattened output of one sample, or a tuple
indexing its shape (a channel and a pixel of a convolution).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import numpy as np

from ..errors import EmptyDomainError, ModelError, ShapeError
from ..geometry import Box
from ..network import Network

__all__ = ["Problem", "build_problem", "torch_threads"]


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run a block with torch limited to ``threads`` intra-op threads (None: as it is), restored afterwards.

    The batches of an inverse set are small: one thread is fastest, and a thread pool on a busy machine waits
    on its slowest member at every operation.
    """
    import torch

    if threads is None:
        yield
        return
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(eq=False)
class Problem:
    """One inverse-set problem in torch float64.

    code_shape : the shape of one optimised variable c (the latent of the generator, else the input).
    input_shape : the shape of one input x = G(c).
    activations(X) : X (n, *input_shape) -> (n, k) the values of the k neurons.
    generate(C) : C (n, *code_shape) -> X (n, *input_shape); the identity without a generator.
    encode(X) : X (n, *input_shape) -> (n, q) the features diversity is measured in; flattened X without an encoder.
    lo, hi : (k,) the range of each neuron (one side may be infinite).
    scale : (k,) the unit in which violations of each range are measured.
    domain : the Box of valid inputs x (flattened), or None.
    code_box : the Box the codes are kept in by projection (the domain without a generator), or None.
    """

    code_shape: tuple
    input_shape: tuple
    activations: object
    generate: object
    encode: object
    lo: np.ndarray
    hi: np.ndarray
    scale: np.ndarray
    domain: Box | None
    code_box: Box | None
    labels: tuple
    has_generator: bool

    @property
    def code_dim(self) -> int:
        return int(np.prod(self.code_shape))

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.input_shape))


def _frozen_double(module):
    """A float64 copy of a torch module in eval mode whose parameters need no gradient."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}")
    module = copy.deepcopy(module).double().eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def _network_layers(net: Network):
    """Each layer of ``net`` as (factors as torch tensors, bias tensor, slope) for a differentiable forward pass."""
    import scipy.sparse as sp
    import torch

    layers = []
    for layer in net.layers:
        factors = []
        for factor in layer.affine.factors:
            if sp.issparse(factor):
                coo = factor.tocoo()
                index = torch.as_tensor(np.vstack([coo.row, coo.col]).astype(np.int64))
                factors.append(torch.sparse_coo_tensor(index, torch.as_tensor(coo.data), coo.shape,
                                                       check_invariants=True).coalesce())
            else:
                factors.append(torch.tensor(np.asarray(factor, dtype=np.float64)))
        layers.append((factors, torch.as_tensor(np.array(layer.affine.bias)), layer.activation.slope))
    return layers


def _network_activations(net: Network, neurons):
    """``X (n, *input_shape) -> (n, k)``: the pre-activations of ``neurons`` of a Network, in torch."""
    import torch

    for position, (layer, unit) in enumerate(neurons):
        if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool):
            raise ShapeError(f"neuron {position}: the layer of a Network neuron is an index into net.layers, "
                             f"got {layer!r}")
        if not 0 <= layer < len(net.layers):
            raise ShapeError(f"neuron {position}: layer {layer} out of range; the network has "
                             f"{len(net.layers)} layers (0 .. {len(net.layers) - 1})")
    units = [_flat_unit(unit, net.layers[layer].output_shape, f"neuron {position} (layer {layer})")
             for position, (layer, unit) in enumerate(neurons)]
    layers = _network_layers(net)
    deepest = max(layer for layer, _ in neurons)
    d = net.input_dim

    def activations(X):
        H = X.reshape(X.shape[0], d)
        values = {}
        for index in range(deepest + 1):
            factors, bias, slope = layers[index]
            for factor in factors:
                H = torch.sparse.mm(factor, H.T).T if factor.is_sparse else H @ factor.T
            Z = H + bias
            values[index] = Z
            H = Z if slope == 1.0 else torch.where(Z > 0, Z, slope * Z)
        return torch.stack([values[layer][:, unit] for (layer, _), unit in zip(neurons, units)], dim=1)

    return activations


def _flat_unit(unit, shape, where: str) -> int:
    """The flat index of ``unit`` (an int, or a tuple indexing ``shape``) in an output of ``shape``."""
    size = int(np.prod(shape))
    if isinstance(unit, (tuple, list)):
        if len(unit) != len(shape) or any(not 0 <= int(u) < s for u, s in zip(unit, shape)):
            raise ShapeError(f"{where}: unit {tuple(unit)} does not index an output of shape {tuple(shape)}")
        return int(np.ravel_multi_index(tuple(int(u) for u in unit), tuple(shape)))
    if not isinstance(unit, (int, np.integer)) or isinstance(unit, bool):
        raise ShapeError(f"{where}: unit must be an int or a tuple of ints, got {unit!r}")
    if not 0 <= int(unit) < size:
        raise ShapeError(f"{where}: unit {unit} out of range; the output has {size} units (0 .. {size - 1})")
    return int(unit)


def _module_activations(model, neurons, input_shape):
    """``X (n, *input_shape) -> (n, k)``: outputs of named submodules of a torch module, by forward hooks."""
    import torch

    model = _frozen_double(model)
    named = dict(model.named_modules())
    for position, (layer, _) in enumerate(neurons):
        if not isinstance(layer, str):
            layer = str(layer)
        if layer not in named:
            choices = ", ".join(repr(name) for name in list(named)[:12])
            raise ShapeError(f"neuron {position}: the model has no submodule {layer!r}; named_modules gives "
                             f"{choices}{', ...' if len(named) > 12 else ''}")
    names = [str(layer) for layer, _ in neurons]
    captured: dict = {}

    def hook_for(name):
        def hook(module, inputs, output):
            captured[name] = output

        return hook

    for name in set(names):
        named[name].register_forward_hook(hook_for(name))
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=torch.float64))
    except RuntimeError as error:
        raise ShapeError(f"the model does not accept inputs of shape {tuple(input_shape)}: {error}") from error
    units = []
    for position, (name, (_, unit)) in enumerate(zip(names, neurons)):
        output = captured[name]
        if not isinstance(output, torch.Tensor):
            raise ModelError(f"neuron {position}: submodule {name!r} does not return one tensor")
        units.append(_flat_unit(unit, tuple(output.shape[1:]), f"neuron {position} (submodule {name!r})"))

    def activations(X):
        captured.clear()
        model(X)
        return torch.stack([captured[name].reshape(X.shape[0], -1)[:, unit] for name, unit in zip(names, units)],
                           dim=1)

    return activations


def _neuron_list(neuron) -> tuple[list, bool]:
    """``neuron`` as a list of (layer, unit) pairs, and whether one neuron was given."""
    if isinstance(neuron, tuple) and len(neuron) == 2 and not isinstance(neuron[0], tuple):
        return [neuron], True
    if isinstance(neuron, (list, tuple)) and neuron and all(
            isinstance(item, (tuple, list)) and len(item) == 2 for item in neuron):
        return [tuple(item) for item in neuron], False
    raise ShapeError(f"neuron must be a (layer, unit) pair or a non-empty list of them, got {neuron!r}")


def _ranges(z1, z2, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (k,) lower and upper bounds and the (k,) unit of violation of each range."""
    lo, hi = (np.array(np.broadcast_to(np.asarray(z, dtype=np.float64), (k,)) if np.ndim(z) == 0 else z,
                       dtype=np.float64).reshape(-1) for z in (z1, z2))
    if lo.shape != (k,) or hi.shape != (k,):
        raise ShapeError(f"z1 and z2 must be scalars or hold one value per neuron ({k}); got {lo.size} and {hi.size}")
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        raise ShapeError("z1 and z2 must not be NaN")
    for j in range(k):
        if lo[j] >= hi[j] or lo[j] == np.inf or hi[j] == -np.inf:
            raise EmptyDomainError(
                f"neuron {j}: the range [z1, z2] = [{lo[j]!r}, {hi[j]!r}] is empty or a single level; the "
                "optimisation needs z1 < z2 (an exact level set is pim.preimage with NeuronRange(layer, unit, z, z))")
    finite = np.isfinite(lo) & np.isfinite(hi)
    one_side = np.where(np.isfinite(lo), np.abs(lo), np.abs(hi))
    scale = np.where(finite, hi - lo, np.maximum(1.0, np.where(np.isfinite(one_side), one_side, 1.0)))
    return lo, hi, scale


def _as_domain(domain, d: int, where: str) -> Box | None:
    if domain is None:
        return None
    if isinstance(domain, tuple) and len(domain) == 2:
        domain = Box(np.broadcast_to(np.asarray(domain[0], float), (d,)), np.broadcast_to(np.asarray(domain[1], float), (d,)))
    if not isinstance(domain, Box):
        raise TypeError(f"domain must be a pim.Box of valid inputs, a (lo, hi) pair or None; got {type(domain).__name__}")
    if domain.dim != d:
        raise ShapeError(f"domain has {domain.dim} coordinates; {where} has {d}")
    return domain


def build_problem(model, neuron, z1, z2, *, domain=None, generator=None, encoder=None, input_shape=None,
                  latent_shape=None) -> tuple[Problem, bool]:
    """The :class:`Problem` of ``inverse_set`` and whether one neuron (not a list) was given."""
    import torch

    from ..network.load import load

    neurons, single = _neuron_list(neuron)
    if isinstance(model, Network):
        net = model
        if input_shape is not None and int(np.prod(input_shape)) != net.input_dim:
            raise ShapeError(f"input_shape {tuple(input_shape)} does not fit the network's {net.input_dim} inputs")
        shape = net.input_shape
        activations = _network_activations(net, neurons)
        if domain is None and net.input_box is not None:
            domain = Box(*net.input_box)
    elif isinstance(model, torch.nn.Module):
        if input_shape is None:
            if isinstance(domain, Box):
                input_shape = (domain.dim,)
            else:
                raise ShapeError("a torch module does not say its input shape: pass input_shape= or a Box domain")
        shape = tuple(int(s) for s in np.atleast_1d(input_shape))
        activations = _module_activations(model, neurons, shape)
    else:
        net = load(model)
        return build_problem(net, neuron, z1, z2, domain=domain, generator=generator, encoder=encoder,
                             input_shape=input_shape, latent_shape=latent_shape)
    d = int(np.prod(shape))
    domain = _as_domain(domain, d, "the model's input")
    lo, hi, scale = _ranges(z1, z2, len(neurons))
    if generator is None:
        code_shape, code_box = shape, domain

        def generate(C):
            return C
    else:
        generator = _frozen_double(generator)
        if latent_shape is None:
            first = next((m for m in generator.modules() if isinstance(m, torch.nn.Linear)), None)
            if first is None:
                raise ShapeError("cannot tell the generator's latent shape: pass latent_shape=")
            latent_shape = (first.in_features,)
        code_shape = tuple(int(s) for s in np.atleast_1d(latent_shape))
        code_box = None
        with torch.no_grad():
            produced = generator(torch.zeros((1, *code_shape), dtype=torch.float64))
        if int(np.prod(produced.shape[1:])) != d:
            raise ShapeError(f"the generator makes inputs of {int(np.prod(produced.shape[1:]))} values from a latent "
                             f"of shape {code_shape}; the model takes {d} ({tuple(shape)})")

        def generate(C, _generator=generator):
            return _generator(C).reshape(C.shape[0], *shape)
    if encoder is None:
        def encode(X):
            return X.reshape(X.shape[0], -1)
    else:
        encoder = _frozen_double(encoder)

        def encode(X, _encoder=encoder):
            return _encoder(X).reshape(X.shape[0], -1)
    labels = tuple(f"({layer!r}, {unit!r})" for layer, unit in neurons)
    problem = Problem(code_shape, tuple(shape), activations, generate, encode, lo, hi, scale, domain, code_box,
                      labels, generator is not None)
    return problem, single
