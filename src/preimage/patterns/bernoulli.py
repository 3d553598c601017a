"""Are a layer's patterns like independent coin flips? Tests against random Bernoulli patterns.

The null hypothesis: the units of a layer are independent Bernoulli(p_u), with p_u the observed per-unit
rates (``p="observed"``), one rate for all (``p=0.5``), or given rates. Two statistics:

``"mean"`` : the mean Hamming distance over ``n_pairs`` disjoint random pairs of inputs. Under the null
    the distance of one pair is a sum of independent Bernoulli(q_u), ``q_u = 2 p_u (1 - p_u)``, so the
    statistic is ``sum_u Binomial(n_pairs, q_u) / n_pairs``; its null law is simulated exactly that way,
    and a normal approximation (mean ``sum q``, variance ``sum q (1 - q) / n_pairs``) is given beside.
    With observed rates the rates are estimated on the inputs not drawn into pairs, so the null holds
    exactly for independent data; the pairs then take at most half of the inputs.
``"nearest"`` : the mean distance of each of ``n_subset`` inputs to its nearest neighbour among them;
    small when the patterns form clusters, whatever the rates. Its null law is simulated with sets of
    ``n_subset`` Bernoulli patterns.

p-values are Monte Carlo, ``(1 + #{null as extreme}) / (1 + n_sim)``: ``p_lower`` for "the data are
closer than chance", ``p_value`` two-sided.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._rng import as_generator
from ..errors import ShapeError
from .hamming import hamming, hamming_knn
from .packed import Patterns, pack_bits


__all__ = ["BernoulliTest", "bernoulli_test", "bernoulli_patterns"]


def _scipy_stats():
    from scipy import stats

    return stats


@dataclass(frozen=True)
class BernoulliTest:
    """One layer's test.

    Attributes
    ----------
    layer : the stored layer's index; statistic : "mean" or "nearest"; rates : "observed" or the rate used.
    observed : the statistic on the data; null : (n_sim,) float64, its simulated null values.
    p_lower, p_value : one-sided (data closer) and two-sided Monte Carlo p-values.
    null_mean, null_std : of the null law (exact moments for "mean", of the simulation for "nearest").
    p_normal : two-sided p-value of the normal approximation ("mean" only; None otherwise).
    """

    layer: int
    statistic: str
    rates: str
    observed: float
    null: np.ndarray
    null_mean: float
    null_std: float
    p_lower: float
    p_value: float
    p_normal: float | None

    def as_dict(self) -> dict:
        return {"layer": self.layer, "statistic": self.statistic, "rates": self.rates, "observed": self.observed,
                "null_mean": self.null_mean, "null_std": self.null_std, "p_lower": self.p_lower,
                "p_value": self.p_value, "p_normal": self.p_normal}


def bernoulli_patterns(rates: np.ndarray, n: int, rng=None) -> np.ndarray:
    """n independent patterns with unit u on with probability rates[u]: (n, units) bool."""
    rates = np.asarray(rates, dtype=np.float64)
    if rates.ndim != 1 or np.any((rates < 0) | (rates > 1)):
        raise ShapeError("rates must be a 1-D array of probabilities in [0, 1]")
    return as_generator(rng).random((n, len(rates))) < rates


def _rates_of(p, bits: np.ndarray, units: int) -> tuple[np.ndarray, str]:
    if isinstance(p, str):
        if p != "observed":
            raise ShapeError(f"p must be 'observed', a probability or an array of rates, got {p!r}")
        return bits.mean(axis=0), "observed"
    rates = np.broadcast_to(np.asarray(p, dtype=np.float64), (units,)).copy()
    if np.any((rates < 0) | (rates > 1)):
        raise ShapeError("Bernoulli rates must lie in [0, 1]")
    return rates, f"{float(p):g}" if np.ndim(p) == 0 else "given"


def _p_values(observed: float, null: np.ndarray) -> tuple[float, float]:
    n_sim = len(null)
    lower = (1 + np.count_nonzero(null <= observed)) / (1 + n_sim)
    upper = (1 + np.count_nonzero(null >= observed)) / (1 + n_sim)
    return float(lower), float(min(1.0, 2.0 * min(lower, upper)))


def _mean_test(layer_bits, p, n_pairs, n_sim, generator):
    n, units = layer_bits.shape
    observed_rates = isinstance(p, str)
    m = min(n_pairs, n // 4 if observed_rates else n // 2)
    if m < 1:
        raise ShapeError(f"the mean-distance test needs at least {4 if observed_rates else 2} patterns, got {n}")
    order = generator.permutation(n)
    drawn, rest = order[:2 * m], order[2 * m:]
    rates, label = _rates_of(p, layer_bits[rest] if isinstance(p, str) else layer_bits, units)
    words = pack_bits(layer_bits[drawn])
    observed = float(hamming(words[:m], words[m:]).mean())
    q = 2.0 * rates * (1.0 - rates)
    null = generator.binomial(m, q, size=(n_sim, units)).sum(axis=1) / m
    mean, std = float(q.sum()), float(np.sqrt((q * (1 - q)).sum() / m))
    p_normal = float(2 * _scipy_stats().norm.sf(abs(observed - mean) / std)) if std > 0 else float(observed != mean)
    return label, observed, null.astype(np.float64), mean, std, p_normal


def _nearest_test(layer_bits, p, n_subset, n_sim, generator):
    n, units = layer_bits.shape
    m = min(n_subset, n)
    if m < 2:
        raise ShapeError("the nearest-neighbour test needs at least 2 patterns")
    rates, label = _rates_of(p, layer_bits, units)
    subset = layer_bits[generator.choice(n, m, replace=False)]
    observed = float(hamming_knn(subset, 1)[1].mean())
    null = np.array([hamming_knn(bernoulli_patterns(rates, m, generator), 1)[1].mean() for _ in range(n_sim)])
    return label, observed, null, float(null.mean()), float(null.std()), None


def bernoulli_test(patterns: Patterns, *, p="observed", statistic: str = "mean", n_pairs: int = 1000,
                   n_subset: int = 1000, n_sim: int = 999, rng=None) -> list[BernoulliTest]:
    """The test of each stored layer (see the module docstring); seeded by ``rng``."""
    if statistic not in ("mean", "nearest"):
        raise ShapeError(f"statistic must be 'mean' or 'nearest', got {statistic!r}")
    if n_sim < 1:
        raise ShapeError(f"n_sim must be at least 1, got {n_sim}")
    generator = as_generator(rng)
    out = []
    for i, layer in enumerate(patterns.layers):
        bits = patterns.layer(i)
        if statistic == "mean":
            result = _mean_test(bits, p, n_pairs, n_sim, generator)
        else:
            result = _nearest_test(bits, p, n_subset, n_sim, generator)
        label, observed, null, mean, std, p_normal = result
        p_lower, p_value = _p_values(observed, null)
        out.append(BernoulliTest(layer, statistic, label, observed, null, mean, std, p_lower, p_value, p_normal))
    return out
