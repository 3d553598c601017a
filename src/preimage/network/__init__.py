"""The network IR (a chain of affine maps and activations, float64) and its importers."""

from .affine import AffineMap
from .builder import ActivationOp, AffineOp, ReshapeOp, assemble
from .layers import IDENTITY, RELU, Activation, Layer, leaky_relu
from .network import Network

__all__ = [
    "AffineMap", "Activation", "Layer", "Network", "RELU", "IDENTITY", "leaky_relu",
    "AffineOp", "ActivationOp", "ReshapeOp", "assemble",
]
