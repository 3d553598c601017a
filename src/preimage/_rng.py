"""The one rule for random generators: every random answer of the library is reproducible."""

from __future__ import annotations

import numpy as np

__all__ = ["as_generator"]


def as_generator(rng) -> np.random.Generator:
    """A numpy Generator from ``rng``: a Generator (used as is), an int seed, or None (seed 0).

    None means seed 0, not fresh entropy: every random answer of the library is reproducible.
    """
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")
