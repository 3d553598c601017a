"""Inverse sets of neurons: diverse inputs whose activation lies in [z1, z2] (Hada & Carreira-Perpinan)."""

from .lagrangian import inverse_set
from .result import InverseSet, mean_pairwise_distance

__all__ = ["inverse_set", "InverseSet", "mean_pairwise_distance"]
