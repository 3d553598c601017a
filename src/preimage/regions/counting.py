"""Counting linear regions: exact, estimated with error bars, bounded below by samples and above by theory.

- exact: the enumeration (:func:`regions`) where it is feasible (low input dimension, small nets).
- estimate: ``N = vol(D) * E_x[1 / vol(R(x) cap D)]`` for x uniform in the box D is exact in expectation
  (each region contributes ``vol(R cap D) * 1 / vol(R cap D) = 1``); the sample mean with its standard
  error, each region's volume from its polytope. Regions of tiny volume make the estimator heavy-tailed:
  the error bar says how far to trust it.
- random lines and planes through the domain: exact counts of the pieces they cross (``line``,
  ``slice2d``), mean and standard error over the draws.
- lower bound: the distinct patterns among uniform samples.
- theory: one layer of n units in general position in R^r has ``sum_{i<=r} C(n, i)`` regions (Zaslavsky),
  which satisfies ``R(n, r) = R(n - 1, r) + R(n - 1, r - 1)`` (Swiniarski et al. sec. 7.1); deep networks
  have at most Serra et al.'s (2018, Theorem 1) bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb

import numpy as np

from .._rng import as_generator
from ..errors import ShapeError
from ..geometry import Box
from .local import Region, _as_network
from .partition import line, slice2d

__all__ = ["one_layer_regions", "one_layer_recursion", "serra_bound", "RegionCount", "count_regions",
           "RegionStatistics", "region_statistics"]


def one_layer_regions(n: int, r: int) -> int:
    """Regions of n hyperplanes in general position in R^r: ``sum_{i=0}^{r} C(n, i)`` (exact integer)."""
    n, r = int(n), int(r)
    if n < 0 or r < 0:
        raise ValueError(f"n and r must be nonnegative, got n={n}, r={r}")
    return sum(comb(n, i) for i in range(min(n, r) + 1))


def one_layer_recursion(n: int, r: int) -> int:
    """The same count by the recursion ``R(n, r) = R(n-1, r) + R(n-1, r-1)``, ``R(0, r) = R(n, 0) = 1``."""
    n, r = int(n), int(r)
    row = [1] * (r + 1)                      # R(0, k) = 1 for k = 0..r
    for _ in range(n):
        row = [1] + [row[k] + row[k - 1] for k in range(1, r + 1)]
    return row[r]


def serra_bound(widths, input_dim: int) -> int:
    """Serra, Tjandraatmadja and Ramalingam's upper bound on the regions of a ReLU net (Theorem 1, 2018).

    ``sum over (j_1..j_L) in J of prod_l C(n_l, j_l)`` with ``J = {0 <= j_l <= min(n_0, n_1 - j_1, ...,
    n_{l-1} - j_{l-1}, n_l)}``; widths = (n_1, ..., n_L) of the ReLU layers, n_0 = input_dim. Exact integer.
    """
    widths = [int(w) for w in widths]
    if input_dim < 1 or any(w < 1 for w in widths):
        raise ValueError(f"input dimension and widths must be positive, got {input_dim}, {widths}")
    states = {int(input_dim): 1}            # the running min(n_0, n_k - j_k, ...) -> summed products
    for n in widths:
        nxt: dict[int, int] = {}
        for cap, weight in states.items():
            for j in range(min(cap, n) + 1):
                key = min(cap, n - j)
                nxt[key] = nxt.get(key, 0) + weight * comb(n, j)
        states = nxt
    return sum(states.values())


@dataclass(frozen=True)
class RegionCount:
    """What is known of the number of regions in a box.

    exact : the enumerated count, or None. estimate, stderr : the volume-weighted Monte Carlo estimate.
    lower_bound : distinct patterns among ``samples`` uniform inputs. lines, planes : (mean, stderr) of
    the exact piece counts on random lines / planes through the box (None when not drawn).
    one_layer : the general-position count of the first layer; upper_bound : Serra et al.'s bound.
    """

    exact: int | None
    estimate: float
    stderr: float
    lower_bound: int
    samples: int
    lines: tuple | None = None
    planes: tuple | None = None
    one_layer: int = 0
    upper_bound: int = 0
    notes: dict = field(default_factory=dict)


def _mean_err(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    err = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), err


def _random_chord(box: Box, generator) -> tuple[np.ndarray, np.ndarray]:
    """A random line through a uniform point of the box, cut to the box: its two end points."""
    d = box.dim
    x = box.lo + generator.random(d) * (box.hi - box.lo)
    u = generator.standard_normal(d)
    u /= np.linalg.norm(u)
    with np.errstate(divide="ignore"):
        t_hi = np.where(u > 0, (box.hi - x) / u, np.where(u < 0, (box.lo - x) / u, np.inf))
        t_lo = np.where(u > 0, (box.lo - x) / u, np.where(u < 0, (box.hi - x) / u, -np.inf))
    return x + t_lo.max() * u, x + t_hi.min() * u


def count_regions(net, box: Box, *, samples: int = 256, lines: int = 0, planes: int = 0, exact: bool = False,
                  budget=None, rng=None) -> RegionCount:
    """Count the linear regions in ``box``: every estimate of the module docstring.

    samples : uniform inputs for the lower bound and the volume-weighted estimate. lines, planes : random
    lines / planes (through a uniform point, random orthonormal directions, the plane cut to a square of
    the box's half-diagonal) counted exactly. exact : also enumerate (small problems; ``budget`` bounds it).
    """
    from .enumeration import regions

    net = _as_network(net)
    if not isinstance(box, Box):
        raise TypeError(f"count_regions takes a Box, got {type(box).__name__}")
    if box.dim != net.input_dim:
        raise ShapeError(f"box has {box.dim} coordinates; the network takes {net.input_dim} inputs")
    generator = as_generator(rng)
    X = box.sample(int(samples), rng=generator)
    bits = net.patterns(X).bits()
    keys, first = np.unique(np.packbits(bits, axis=1), axis=0, return_index=True)
    volumes = {}
    inverse = []
    for key, i in zip(map(bytes, keys), first):
        volumes[key] = Region(net, bits[i], point=X[i], domain=box).volume(rng=generator).value
    for row in np.packbits(bits, axis=1):
        inverse.append(1.0 / volumes[bytes(row)])
    estimate, stderr = _mean_err(np.asarray(inverse) * box.volume())
    line_stats = plane_stats = None
    if lines:
        counts = [len(line(net, *_random_chord(box, generator))) for _ in range(int(lines))]
        line_stats = _mean_err(counts)
    if planes:
        counts = []
        half = 0.5 * float(np.linalg.norm(box.hi - box.lo))
        for _ in range(int(planes)):
            centre = box.lo + generator.random(box.dim) * (box.hi - box.lo)
            frame = np.linalg.qr(generator.standard_normal((box.dim, 2)))[0]
            counts.append(len(slice2d(net, centre, frame[:, 0], frame[:, 1], ((-half, half), (-half, half)))))
        plane_stats = _mean_err(counts)
    widths = [net.layers[i].out_features for i in net.hidden]
    exact_count = None
    if exact:
        graph = regions(net, box, budget=budget)
        exact_count = len(graph) if graph.complete else None
    return RegionCount(exact_count, estimate, stderr, int(len(keys)), int(samples), line_stats, plane_stats,
                       one_layer_regions(widths[0], net.input_dim), serra_bound(widths, net.input_dim))


@dataclass(frozen=True)
class RegionStatistics:
    """Per input of a dataset, its region's geometry: (n,) arrays.

    radius : the inscribed ball's radius. mean_width : the mean width over random directions. volume :
    the volume (within the domain; inf when unbounded). facets : the facets of the minimal H-form.
    lipschitz : the local Lipschitz constant. distinct : how many distinct regions the inputs fall in.
    """

    radius: np.ndarray
    mean_width: np.ndarray
    volume: np.ndarray
    facets: np.ndarray
    lipschitz: np.ndarray
    distinct: int


def region_statistics(net, X, domain=None, *, directions: int = 8, volume: bool = True,
                      rng=None) -> RegionStatistics:
    """The distribution over a dataset's inputs X (n, d) of their regions' radius, widths, volume, facets.

    Inputs sharing a region are measured once. volume=False skips the volumes (costly in high dimension).
    """
    net = _as_network(net)
    X, _ = net.as_batch(X)
    generator = as_generator(rng)
    bits = net.patterns(X).bits()
    keys, first, inverse = np.unique(np.packbits(bits, axis=1), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    rows = []
    for i in first:
        reg = Region(net, bits[i], point=X[i], domain=domain)
        _, radius = reg.inscribed_ball()
        _, widths = reg.widths(directions, rng=generator)
        vol = reg.volume(rng=generator).value if volume else np.nan
        rows.append((radius, float(np.mean(widths)), vol, reg.polytope.n_ineq, reg.lipschitz))
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)[inverse]
    return RegionStatistics(table[:, 0], table[:, 1], table[:, 2], table[:, 3].astype(np.int64), table[:, 4],
                            int(len(keys)))
