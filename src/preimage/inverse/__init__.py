"""Inverse sets of neurons: diverse inputs whose activation lies in [z1, z2] (Hada & Carreira-Perpinan).

    I = pim.inverse_set(model, (layer, unit), z1, z2, n, domain=pim.Box(lo, hi))
    I.samples, I.activations, I.in_range, I.diversity, I.time_per_sample, I.plot()

Baselines measured alike (``gradient_ascent``, ``langevin``, ``compare``), and for ReLU networks the exact set
(``exact_inverse_set``) with ``coverage`` of it by any sample. ``preimage.inverse.demo`` draws them on digits.
"""

from .baselines import compare, gradient_ascent, langevin
from .exact import Coverage, coverage, exact_inverse_set, sample_exact
from .lagrangian import inverse_set
from .result import InverseSet, mean_pairwise_distance

__all__ = ["inverse_set", "InverseSet", "mean_pairwise_distance", "gradient_ascent", "langevin", "compare",
           "exact_inverse_set", "sample_exact", "coverage", "Coverage"]
