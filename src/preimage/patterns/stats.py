"""Per-unit statistics of activation patterns (Swiniarski, Bruna & Cho, Figure 1).

For each layer: the activation probability of every unit (the fraction of inputs on which it is on),
its histogram, the dead units (never on), the always-on units, and the fraction of *saturated* units,
those on for at most ``saturation`` or at least ``1 - saturation`` of the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ShapeError
from .packed import Patterns

__all__ = ["LayerStatistics", "unit_statistics", "checkpoint_statistics", "format_statistics"]


@dataclass(frozen=True)
class LayerStatistics:
    """Statistics of one layer over n inputs.

    Attributes
    ----------
    layer : the layer's index (as stored in the patterns).
    probabilities : (units,) float64, per-unit activation probability.
    histogram : (bins,) int64 counts of the probabilities over ``edges`` (bins + 1,) in [0, 1].
    dead : (d,) int64 indices of the units never on; always_on : likewise for units always on.
    saturated : fraction of units with probability <= s or >= 1 - s.
    mean_active : mean fraction of the layer's units on per input.
    """

    layer: int
    n: int
    probabilities: np.ndarray
    histogram: np.ndarray
    edges: np.ndarray
    dead: np.ndarray
    always_on: np.ndarray
    saturated: float
    mean_active: float

    def as_dict(self) -> dict:
        return {
            "layer": self.layer, "n": self.n, "units": len(self.probabilities), "dead": len(self.dead),
            "always_on": len(self.always_on), "saturated": self.saturated, "mean_active": self.mean_active,
        }


def unit_statistics(patterns: Patterns, *, bins: int = 20, saturation: float = 0.05) -> list[LayerStatistics]:
    """One ``LayerStatistics`` per stored layer of ``patterns`` (n >= 1 inputs)."""
    if len(patterns) == 0:
        raise ShapeError("statistics of no patterns")
    if not 0.0 <= saturation < 0.5:
        raise ShapeError(f"saturation must lie in [0, 0.5), got {saturation}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    n = len(patterns)
    for layer, p in zip(patterns.layers, patterns.activation_probabilities()):
        counts = np.rint(p * n).astype(np.int64)
        out.append(LayerStatistics(
            layer=layer, n=n, probabilities=p, histogram=np.histogram(p, bins=edges)[0].astype(np.int64),
            edges=edges, dead=np.flatnonzero(counts == 0), always_on=np.flatnonzero(counts == n),
            saturated=float(np.mean((p <= saturation) | (p >= 1.0 - saturation))) if len(p) else 0.0,
            mean_active=float(p.mean()) if len(p) else 0.0,
        ))
    return out


def checkpoint_statistics(checkpoints: Sequence[Patterns], **options) -> list[list[LayerStatistics]]:
    """``unit_statistics`` of the patterns of the same data at several training checkpoints."""
    return [unit_statistics(p, **options) for p in checkpoints]


def format_statistics(stats: Sequence[LayerStatistics]) -> str:
    """A plain-text table: layer, units, dead, always on, saturated fraction, mean active fraction."""
    lines = [f"{'layer':>5}  {'units':>6}  {'dead':>5}  {'always on':>9}  {'saturated':>9}  {'mean on':>7}"]
    for s in stats:
        lines.append(f"{s.layer:>5}  {len(s.probabilities):>6}  {len(s.dead):>5}  {len(s.always_on):>9}  "
                     f"{s.saturated:>9.3f}  {s.mean_active:>7.3f}")
    return "\n".join(lines)
