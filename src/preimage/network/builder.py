"""Assemble a Network from the primitive operations an importer reads, folding affine chains.

Importers translate a model into a list of three kinds of operation, in order:

- ``AffineOp``: a linear/affine map of the flattened tensor (Linear, Conv2d, BatchNorm, AvgPool, Sub, ...);
- ``ActivationOp``: an elementwise activation (ReLU, LeakyReLU);
- ``ReshapeOp``: a new shape for the same C-order vector (Flatten, Reshape, Squeeze, ...).

``assemble`` composes consecutive affine maps into one (this is where BatchNorm is folded into its
neighbour and an input normalisation into the first layer) and closes a layer at every activation.
``AffineMap.compose`` multiplies the matrices out only where the product is no larger than its factors,
so a layer's map may be a chain (a pooling and the Linear after it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError, ShapeError
from .affine import AffineMap
from .layers import IDENTITY, Activation, Layer

__all__ = ["AffineOp", "ActivationOp", "ReshapeOp", "assemble", "with_params"]


@dataclass(frozen=True)
class AffineOp:
    """An affine map of the flattened tensor; ``output_shape`` is the tensor shape it produces.

    ``params`` is the number of parameters the original operation has in the model (a Linear's weight and
    bias; 0 for a pooling, whose matrix is no parameter); None counts the map's stored values instead.
    """

    affine: AffineMap
    output_shape: tuple[int, ...]
    name: str
    kind: str
    params: int | None = None

    @property
    def n_params(self) -> int:
        return self.params if self.params is not None else self.affine.nnz + self.affine.out_features


@dataclass(frozen=True)
class ActivationOp:
    """An elementwise activation."""

    activation: Activation
    name: str
    kind: str = "ReLU"


@dataclass(frozen=True)
class ReshapeOp:
    """A new shape for the same C-order data (Flatten, Reshape, Squeeze, Unsqueeze)."""

    output_shape: tuple[int, ...]
    name: str
    kind: str = "Flatten"


def with_params(ops: list, count: int) -> list:
    """``ops``, the ops one original operation became, with its ``count`` parameters on the first affine op.

    The other affine ops get 0, so that a layer's parameters add up to the model's.
    """
    out, remaining = [], int(count)
    for op in ops:
        if isinstance(op, AffineOp):
            op = AffineOp(op.affine, op.output_shape, op.name, op.kind, remaining)
            remaining = 0
        out.append(op)
    return out


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def assemble(ops, input_shape, *, name: str = "", input_box=None):
    """Build a ``Network`` from ``ops`` applied to an input of ``input_shape`` (no batch dimension).

    Consecutive affine operations are composed into one affine map; each activation ends a layer; a
    trailing affine map becomes the last layer with the identity activation. Two activations in a row
    get an identity map between them. Each layer's ``params`` is the sum of its operations' ``n_params``.
    """
    from .network import Network

    input_shape = tuple(int(s) for s in input_shape)
    shape = input_shape
    layers: list[Layer] = []
    pending: AffineMap | None = None
    pending_sources: list[str] = []
    pending_names: list[str] = []
    pending_params = 0
    layer_input_shape = shape

    def close(activation: Activation) -> None:
        nonlocal pending, pending_sources, pending_names, pending_params, layer_input_shape
        affine = pending if pending is not None else AffineMap.identity(_size(shape))
        sources = tuple(pending_sources) if pending_sources else ("identity",)
        layer_name = "+".join(pending_names) if pending_names else "identity"
        affine.check_finite(f"layer {len(layers)} ({layer_name})")
        layers.append(Layer(affine, activation, layer_name, sources, layer_input_shape, shape, pending_params))
        pending, pending_sources, pending_names, pending_params = None, [], [], 0
        layer_input_shape = shape

    for op in ops:
        if isinstance(op, AffineOp):
            if op.affine.in_features != _size(shape):
                raise ShapeError(
                    f"node {op.name!r} ({op.kind}) takes {op.affine.in_features} values, "
                    f"but receives a tensor of shape {shape}"
                )
            if _size(op.output_shape) != op.affine.out_features:
                raise ShapeError(f"node {op.name!r} ({op.kind}): output shape {op.output_shape} does not fit its map")
            op.affine.check_finite(f"node {op.name!r} ({op.kind})")
            pending = op.affine if pending is None else op.affine.compose(pending)
            pending_sources.append(f"{op.name}:{op.kind}")
            pending_names.append(op.name)
            pending_params += op.n_params
            shape = tuple(op.output_shape)
        elif isinstance(op, ActivationOp):
            pending_sources.append(f"{op.name}:{op.kind}")
            close(op.activation)
        elif isinstance(op, ReshapeOp):
            if _size(op.output_shape) != _size(shape):
                raise ShapeError(f"node {op.name!r} ({op.kind}) reshapes {shape} to {op.output_shape}")
            shape = tuple(op.output_shape)
            if pending is None:
                layer_input_shape = shape
        else:
            raise ModelError(f"unknown operation {op!r}")
    if pending is not None or not layers:
        close(IDENTITY)
    return Network(layers, input_shape=input_shape, name=name, input_box=input_box)
