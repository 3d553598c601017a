"""Sets of local maps (Swiniarski, Bruna & Cho, sec. 6).

On the linear region of an input x the network up to layer a is affine; ``W_{a,x}`` is its linear part,
the (units_a, d) Jacobian of layer a's pre-activations at x:
``W_{a,x} = W_a D_{a-1}(x) W_{a-1} ... D_0(x) W_0`` with ``D_l(x)`` the diagonal of activation slopes.

* ``local_map_spectrum``: singular values and numerical rank of the (n, units_a * d) matrix whose rows
  are the flattened maps of n inputs: how many independent maps a dataset visits.
* ``greedy_decomposition``: orthogonal matching pursuit of one map over a dictionary of maps (those of
  the training set), with the norm of the remainder after each step.
* ``angle_vs_noise``: the angle between ``W_{a,x}`` and ``W_{a,x+eps}`` for Gaussian noise of each level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import settings as _settings
from .._rng import as_generator
from ..errors import ShapeError

__all__ = ["local_maps", "local_map_spectrum", "greedy_decomposition", "GreedyDecomposition", "angle_vs_noise",
           "map_angles"]


def local_maps(net, X, layer: int) -> np.ndarray:
    """The local linear maps of layer ``layer``'s pre-activations: X (n, d) -> (n, units_layer, d) float64."""
    X, _ = net.as_batch(X)
    if not -len(net.layers) <= layer < len(net.layers):
        raise ShapeError(f"layer {layer} out of range for a network of {len(net.layers)} layers")
    layer = layer % len(net.layers)
    n, d = X.shape
    J = np.broadcast_to(net.layers[0].affine.dense(), (n, net.layers[0].out_features, d)).copy()
    h = X
    for i in range(layer):
        current = net.layers[i]
        z = current.preactivation(h)
        h = current.activation(z)
        slopes = np.where(z > 0, 1.0, current.activation.slope)
        J *= slopes[:, :, None]
        J = np.einsum("uv,nvd->nud", net.layers[i + 1].affine.dense(), J, optimize=True)
    return J


def local_map_spectrum(maps: np.ndarray) -> dict:
    """Singular values of the stack of maps (n, units, d) as an (n, units * d) matrix.

    Returns {"singular_values": (min(n, units*d),) descending, "rank": numerical rank
    (``s > rank_rtol * s_max``), "distinct": number of distinct maps (rows equal to float64 precision)}.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ShapeError(f"maps must be (n, units, d), got shape {maps.shape}")
    M = maps.reshape(len(maps), -1)
    s = np.linalg.svd(M, compute_uv=False)
    rank = int(np.sum(s > _settings.current().rank_rtol * s[0])) if len(s) and s[0] > 0 else 0
    return {"singular_values": s, "rank": rank, "distinct": len(np.unique(M, axis=0))}


@dataclass(frozen=True)
class GreedyDecomposition:
    """``target ~ sum_i coefficients[i] * dictionary[chosen[i]]``.

    remainders : (steps + 1,) the Frobenius norm of the remainder before the first and after each step,
    relative to the target's norm (1.0 first, non-increasing).
    """

    chosen: np.ndarray
    coefficients: np.ndarray
    remainders: np.ndarray


def greedy_decomposition(target: np.ndarray, dictionary: np.ndarray, steps: int = 10) -> GreedyDecomposition:
    """Orthogonal matching pursuit of one map (units, d) over a dictionary of maps (m, units, d).

    Each step picks the dictionary map of largest |cosine| with the remainder and re-fits all chosen
    coefficients by least squares.
    """
    t = np.asarray(target, dtype=np.float64).ravel()
    D = np.asarray(dictionary, dtype=np.float64).reshape(len(dictionary), -1)
    if D.shape[1] != t.size:
        raise ShapeError(f"dictionary maps of {D.shape[1]} entries cannot decompose a map of {t.size}")
    norm_t = np.linalg.norm(t)
    if norm_t == 0:
        return GreedyDecomposition(np.zeros(0, np.int64), np.zeros(0), np.array([0.0]))
    norms = np.linalg.norm(D, axis=1)
    usable = norms > 0
    unit = np.where(usable[:, None], D / np.where(usable, norms, 1.0)[:, None], 0.0)
    chosen: list[int] = []
    coefficients = np.zeros(0)
    residual = t.copy()
    remainders = [1.0]
    tol = _settings.current().rank_rtol
    for _ in range(min(steps, int(usable.sum()))):
        scores = np.abs(unit @ residual)
        scores[chosen] = -1.0
        best = int(np.argmax(scores))
        if scores[best] <= tol * np.linalg.norm(residual):
            break
        chosen.append(best)
        coefficients, *_ = np.linalg.lstsq(D[chosen].T, t, rcond=None)
        residual = t - D[chosen].T @ coefficients
        remainders.append(float(np.linalg.norm(residual) / norm_t))
    return GreedyDecomposition(np.array(chosen, dtype=np.int64), coefficients, np.minimum.accumulate(remainders))


def map_angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Angles in radians between maps, pairwise row by row: A, B (n, units, d) -> (n,)."""
    A = np.asarray(A, np.float64).reshape(len(A), -1)
    B = np.asarray(B, np.float64).reshape(len(B), -1)
    norm_a = np.linalg.norm(A, axis=1, keepdims=True)
    norm_b = np.linalg.norm(B, axis=1, keepdims=True)
    a = np.divide(A, norm_a, out=np.zeros_like(A), where=norm_a > 0)
    b = np.divide(B, norm_b, out=np.zeros_like(B), where=norm_b > 0)
    # 2 atan2(|a - b|, |a + b|) keeps its accuracy near 0 and pi, where arccos of the cosine does not
    return 2.0 * np.arctan2(np.linalg.norm(a - b, axis=1), np.linalg.norm(a + b, axis=1))


def angle_vs_noise(net, X, layer: int, noise_levels, *, draws: int = 4, rng=None) -> dict:
    """The angle between ``W_{a,x}`` and ``W_{a,x+eps}``, eps ~ N(0, sigma^2 I), for each sigma.

    Returns {"noise": (L,), "mean_angle": (L,) radians, "std_angle": (L,), "same_pattern": (L,) fraction
    of noisy inputs whose pattern up to layer a equals x's (angle 0 then)}.
    """
    generator = as_generator(rng)
    X, _ = net.as_batch(X)
    levels = np.asarray(noise_levels, dtype=np.float64).ravel()
    if np.any(levels < 0):
        raise ShapeError("noise levels must be non-negative")
    base = local_maps(net, X, layer)
    hidden = [i for i in net.hidden if i < layer % len(net.layers)]
    base_bits = [z > 0 for i, z in enumerate(net.preactivations(X)) if i in hidden]
    mean, std, same = [], [], []
    for sigma in levels:
        angles, equal = [], []
        for _ in range(draws):
            noisy = X + sigma * generator.standard_normal(X.shape)
            angles.append(map_angles(base, local_maps(net, noisy, layer)))
            noisy_bits = [z > 0 for i, z in enumerate(net.preactivations(noisy)) if i in hidden]
            equal.append(np.all([np.all(a == b, axis=1) for a, b in zip(base_bits, noisy_bits)], axis=0)
                         if hidden else np.ones(len(X), bool))
        angles = np.concatenate(angles)
        mean.append(angles.mean())
        std.append(angles.std())
        same.append(np.concatenate(equal).mean())
    return {"noise": levels, "mean_angle": np.array(mean), "std_angle": np.array(std), "same_pattern": np.array(same)}
