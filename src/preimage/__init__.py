"""preimage: exact preimages of ReLU networks, and the geometry that follows."""

from . import errors
from .errors import (
    EmptyDomainError, ImportMismatch, Infeasible, ModelError, PreimageError, ShapeError, SolverError,
    Unbounded, UnsupportedOperation,
)
from .network import Activation, AffineMap, Layer, Network
from .patterns import Patterns
from .settings import Settings, configure, current

__version__ = "0.1.0"

__all__ = [
    "Network", "Layer", "AffineMap", "Activation", "Patterns",
    "Settings", "configure", "current",
    "errors", "PreimageError", "ModelError", "UnsupportedOperation", "ShapeError", "ImportMismatch",
    "EmptyDomainError", "Infeasible", "Unbounded", "SolverError",
]
