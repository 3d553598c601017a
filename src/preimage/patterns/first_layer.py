"""Modelling the first layer (Swiniarski, Bruna & Cho, sec. 4).

* The distance of each unit's hyperplane ``{x : w_j . x + b_j = 0}`` to the origin, ``|b_j| / |w_j|``
  (Figure 25, at initialisation: PyTorch's default uniform initialisation puts every hyperplane close).
* The folded-normal fit of the positive activations of a layer (Figure 26).
* The 0/1 approximation: replace a layer's activity ``h`` by its pattern (times one scale per unit) and
  ask how often each unit of the next layer stays on the same side of its hyperplane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError


__all__ = ["hyperplane_distances", "FoldedNormalFit", "folded_normal_fit", "zero_one_agreement"]


def _scipy_stats():
    from scipy import stats

    return stats


def _weights(layer) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(layer, tuple) and len(layer) == 2:
        W, b = (np.asarray(v, dtype=np.float64) for v in layer)
    elif hasattr(layer, "affine"):
        W, b = layer.affine.dense(), np.asarray(layer.b, dtype=np.float64)
    elif hasattr(layer, "weight") and hasattr(layer, "bias"):
        W = layer.weight.detach().cpu().double().numpy()
        b = np.zeros(W.shape[0]) if layer.bias is None else layer.bias.detach().cpu().double().numpy()
    else:
        raise ShapeError(f"need a Layer, a (W, b) pair or an nn.Linear, got {type(layer).__name__}")
    if W.ndim != 2 or b.shape != (W.shape[0],):
        raise ShapeError(f"weights {W.shape} and bias {b.shape} do not form a layer")
    return W, b


def hyperplane_distances(layer) -> np.ndarray:
    """(units,) float64 distances ``|b_j| / |w_j|`` of the unit hyperplanes to the origin (inf for w_j = 0).

    layer : a network ``Layer``, a ``(W, b)`` pair (W (units, d)) or a torch ``nn.Linear``.
    """
    W, b = _weights(layer)
    norms = np.linalg.norm(W, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(norms > 0, np.abs(b) / np.where(norms > 0, norms, 1.0), np.inf)


@dataclass(frozen=True)
class FoldedNormalFit:
    """``scipy.stats.foldnorm(c, loc=0, scale)`` fitted to positive values; ks: the Kolmogorov-Smirnov D
    and p of the fit; n: values fitted."""

    c: float
    scale: float
    ks_statistic: float
    ks_pvalue: float
    n: int

    @property
    def mu(self) -> float:
        """The mean of the normal that was folded."""
        return self.c * self.scale

    @property
    def sigma(self) -> float:
        return self.scale

    def pdf(self, x: np.ndarray) -> np.ndarray:
        return _scipy_stats().foldnorm.pdf(x, self.c, loc=0.0, scale=self.scale)


def folded_normal_fit(values: np.ndarray, *, max_values: int = 200000, rng=None) -> FoldedNormalFit:
    """Fit a folded normal (location 0) to the strictly positive entries of ``values`` (any shape).

    At most ``max_values`` of them are used (a seeded random subset) to keep the fit fast.
    """
    from .._rng import as_generator

    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[x > 0]
    if len(x) < 2:
        raise ShapeError("the folded-normal fit needs at least 2 positive values")
    if len(x) > max_values:
        x = as_generator(rng).choice(x, max_values, replace=False)
    c, _, scale = _scipy_stats().foldnorm.fit(x, floc=0.0)
    test = _scipy_stats().kstest(x, "foldnorm", args=(c, 0.0, scale))
    return FoldedNormalFit(float(c), float(scale), float(test.statistic), float(test.pvalue), len(x))


def zero_one_agreement(net, X, layer: int = 0, *, scale: str = "mean") -> dict:
    """How often the next layer sees the 0/1 approximation of layer ``layer``'s activity on the same side.

    With ``h`` the activity of ``layer`` (n, units) and ``a = (h > 0) * s`` its approximation, where ``s``
    is the mean positive activity of each unit (``scale="mean"``) or 1 (``scale="one"``), the units of
    layer ``layer + 1`` agree when ``W h + b > 0`` iff ``W a + b > 0``.

    Returns {"agreement": fraction over inputs and units, "per_unit": (units_next,), "scale": (units,)}.
    """
    if scale not in ("mean", "one"):
        raise ShapeError(f"scale must be 'mean' or 'one', got {scale!r}")
    if not 0 <= layer < len(net.layers) - 1:
        raise ShapeError(f"layer {layer} has no next layer in a network of {len(net.layers)} layers")
    h = net.activations(X)[layer]
    if h.ndim == 1:
        h = h[None]
    on = h > 0
    if scale == "mean":
        counts = on.sum(axis=0)
        s = np.where(counts > 0, np.where(on, h, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.0)
    else:
        s = np.ones(h.shape[1])
    following = net.layers[layer + 1]
    true_side = following.preactivation(h) > 0
    approx_side = following.preactivation(on * s) > 0
    same = true_side == approx_side
    return {"agreement": float(same.mean()), "per_unit": same.mean(axis=0), "scale": s}
