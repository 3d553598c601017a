"""Typed errors of the library; every one says what was wrong and where."""

from __future__ import annotations

__all__ = [
    "PreimageError",
    "ModelError",
    "UnsupportedOperation",
    "ShapeError",
    "ImportMismatch",
    "EmptyDomainError",
    "LPError",
    "Infeasible",
    "Unbounded",
    "SolverError",
    "ConeError",
    "DataError",
]


class PreimageError(Exception):
    """Base class of every error raised on purpose by preimage."""


class ModelError(PreimageError, ValueError):
    """A network cannot be used as given (NaN/inf weights, a graph that is not a chain, ...)."""


class UnsupportedOperation(ModelError):
    """An operation or layer the importer does not handle; names the op and the node."""

    def __init__(self, op: str, node: str, detail: str = ""):
        self.op = op
        self.node = node
        message = f"unsupported operation {op!r} at node {node!r}"
        super().__init__(f"{message}: {detail}" if detail else message)


class ShapeError(PreimageError, ValueError):
    """An array or layer has a shape that does not fit where it is used."""


class ImportMismatch(ModelError):
    """An imported network disagrees with the original model's own forward pass."""


class EmptyDomainError(PreimageError, ValueError):
    """A domain (box, polytope) that must be non-empty is empty."""


class LPError(PreimageError):
    """Base of the LP outcomes that are not an optimum."""


class Infeasible(LPError):
    """The LP has no feasible point."""


class Unbounded(LPError):
    """The LP is feasible and its objective is unbounded; ``ray`` is an improving direction if known."""

    def __init__(self, message: str, ray=None):
        super().__init__(message)
        self.ray = ray


class SolverError(LPError):
    """The solver stopped without a proven answer (time limit, numerical trouble); carries its message."""


class ConeError(PreimageError, ValueError):
    """A layer has no cone of the kind asked: a convolution that is not periodic, or layers whose
    cones live in spaces that cannot be identified (different image sizes)."""


class DataError(PreimageError, ValueError):
    """A data file cannot be read as the format it is taken for: truncated, damaged, or holding something else."""
