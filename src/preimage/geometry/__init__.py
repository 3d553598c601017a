"""Geometry of polytopes: the LP wrapper, Polytope and Box, cones, vertices, volume, sampling.

Knows nothing of networks. Inequalities are ``A x <= b`` with unit-norm rows, equalities ``E x = f``.
"""

from .box import Box
from .cones import is_omnidirectional, recession_cone_is_trivial
from .lp import LPModel, LPResult, solve_lp
from .polytope import AffineHull, Polytope, Volume, as_generator

__all__ = [
    "Polytope", "Box", "AffineHull", "Volume",
    "is_omnidirectional", "recession_cone_is_trivial",
    "solve_lp", "LPModel", "LPResult",
    "as_generator",
]
