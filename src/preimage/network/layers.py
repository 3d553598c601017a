"""A layer: one affine map followed by one elementwise activation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError
from .affine import AffineMap

__all__ = ["Activation", "RELU", "IDENTITY", "leaky_relu", "Layer"]


@dataclass(frozen=True)
class Activation:
    """An elementwise piecewise-linear activation ``z -> z if z > 0 else slope * z``.

    ``kind`` is ``"relu"`` (slope 0), ``"leaky_relu"`` (slope in (0, 1)) or ``"identity"`` (slope 1).
    A unit is *on* when its pre-activation is strictly positive (ReLU(0) = 0 is off).
    """

    kind: str
    slope: float = 0.0

    def __post_init__(self):
        expected = {"relu": 0.0, "identity": 1.0}
        if self.kind in expected and self.slope != expected[self.kind]:
            raise ModelError(f"{self.kind} has slope {expected[self.kind]}, not {self.slope}")
        if self.kind == "leaky_relu" and not np.isfinite(self.slope):
            raise ModelError(f"leaky_relu slope must be finite, got {self.slope}")
        if self.kind not in ("relu", "leaky_relu", "identity"):
            raise ModelError(f"unknown activation {self.kind!r}")

    @property
    def has_kink(self) -> bool:
        """True when the activation is not affine (it defines an activation pattern)."""
        return self.kind != "identity" and self.slope != 1.0

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        if self.kind == "identity":
            return Z
        if self.slope == 0.0:
            return np.maximum(Z, 0.0)
        return np.where(Z > 0, Z, self.slope * Z)

    def __str__(self) -> str:
        return f"leaky_relu({self.slope:g})" if self.kind == "leaky_relu" else self.kind


RELU = Activation("relu")
IDENTITY = Activation("identity", 1.0)


def leaky_relu(slope: float) -> Activation:
    """LeakyReLU with negative-side ``slope``."""
    return Activation("leaky_relu", float(slope))


@dataclass(frozen=True, eq=False)
class Layer:
    """``x -> activation(W x + b)``.

    Attributes
    ----------
    affine : the map ``W x + b``; W (m, d) dense or sparse CSR, b (m,).
    activation : the elementwise activation applied to the m pre-activations.
    name : a readable name (the original modules/nodes joined by ``+``).
    sources : the original operations folded into this layer, e.g. ``("conv1:Conv2d", "bn1:BatchNorm2d")``.
    input_shape, output_shape : the tensor shapes (without batch) at the input and at the pre-activations.
    params : the number of parameters of the original operations (an importer counts the model's own
        weights, biases and statistics); None counts the stored values of W and b instead.

    A NaN or infinite entry of W or b is refused when the layer is built (``ModelError`` naming the
    layer and the entry).
    """

    affine: AffineMap
    activation: Activation
    name: str = ""
    sources: tuple[str, ...] = ()
    input_shape: tuple[int, ...] = field(default=())
    output_shape: tuple[int, ...] = field(default=())
    params: int | None = None

    def __post_init__(self):
        self.affine.check_finite(f"layer {self.name!r}" if self.name else "layer")
        if not self.input_shape:
            object.__setattr__(self, "input_shape", (self.affine.in_features,))
        if not self.output_shape:
            object.__setattr__(self, "output_shape", (self.affine.out_features,))
        if int(np.prod(self.input_shape)) != self.affine.in_features:
            raise ModelError(f"layer {self.name!r}: input shape {self.input_shape} does not match W")
        if int(np.prod(self.output_shape)) != self.affine.out_features:
            raise ModelError(f"layer {self.name!r}: output shape {self.output_shape} does not match W")

    @property
    def W(self):
        """The weight, (m, d) ndarray or scipy.sparse CSR."""
        return self.affine.weight

    @property
    def b(self) -> np.ndarray:
        """The bias, (m,)."""
        return self.affine.bias

    @property
    def in_features(self) -> int:
        return self.affine.in_features

    @property
    def out_features(self) -> int:
        return self.affine.out_features

    @property
    def n_params(self) -> int:
        """Parameters as the model has them (``params``), else the stored values of W and b."""
        return self.params if self.params is not None else self.stored

    @property
    def stored(self) -> int:
        """Values this layer holds in memory: the stored entries of W (every factor of a chain) and b."""
        return self.affine.nnz + self.affine.out_features

    def preactivation(self, X: np.ndarray) -> np.ndarray:
        """``X W^T + b``: X (n, d) -> (n, m)."""
        return self.affine(X)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """``activation(X W^T + b)``: X (n, d) -> (n, m)."""
        return self.activation(self.affine(X))

    def __repr__(self) -> str:
        return (
            f"Layer({self.name!r}, {self.in_features} -> {self.out_features}, {self.activation}, "
            f"{self.affine.storage})"
        )
