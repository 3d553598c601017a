"""Uniform sampling of a bounded full-dimensional polytope ``{w : A w <= b}`` by hit-and-run.

Many chains advance side by side as one ``(chains, k)`` array: each step draws a random direction per
chain, intersects the line through the chain's point with every halfspace (and, optionally, with a
ball) and moves to a uniform point of that chord. The uniform law on the polytope is stationary for
this walk (Smith 1984). Half the directions follow the covariance of the chains as learnt in the
burn-in, which rounds a long thin polytope on the fly (see :func:`_walk`).

A move is refused when rounding would put the new point outside (a draw at a chord end), and every
point returned is checked to meet ``A w <= b + feasibility_tol``; in practice it misses by rounding only.

How long to walk depends on the dimension ``k`` (:func:`walk_length`): from one start point the chains
need of the order of ``k**2`` steps to forget it, and successive points of a chain stay correlated over
``k`` to ``k**2`` steps, depending on the statistic. :func:`effective_sample_size` measures what a run
achieved.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import scipy.fft

from .._rng import as_generator
from ..errors import ShapeError
from ..settings import current

__all__ = ["check_halfspaces", "effective_sample_size", "hit_and_run", "hit_and_run_chains", "walk_length"]

# The walk-length rule's floors: the fixed lengths used before the rule, which low-dimensional sets
# that need their rounding learnt (a 1000:1 box) rely on.
_MIN_BURN_IN = 200
_MIN_THIN = 10


def check_halfspaces(A, b) -> tuple[np.ndarray, np.ndarray]:
    """Validate a system ``A w <= b`` with unit-norm rows and return it as float64 arrays.

    Parameters
    ----------
    A : (m, k) array_like, each row of Euclidean norm 1 (within ``feasibility_tol``).
    b : (m,) array_like.

    Returns
    -------
    A : (m, k) float64, b : (m,) float64.

    Raises
    ------
    ShapeError : shapes do not fit; ValueError : non-finite entries or rows that are not unit-norm.
    """
    A = np.ascontiguousarray(A, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if A.ndim != 2 or b.ndim != 1 or A.shape[0] != b.shape[0]:
        raise ShapeError(f"halfspaces need A of shape (m, k) and b of shape (m,); "
                         f"got {A.shape} and {b.shape}")
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
        raise ValueError("halfspaces A w <= b contain NaN or infinite entries")
    norms = np.linalg.norm(A, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > current().feasibility_tol)
    if bad.size:
        raise ValueError(f"rows of A must have unit norm; row {bad[0]} has norm {norms[bad[0]]!r}")
    return A, b


def walk_length(k: int) -> tuple[int, int]:
    """The burn-in and thinning of hit-and-run on a ``k``-dimensional polytope.

    Parameters
    ----------
    k : dimension of the polytope (the number of columns of its ``A``).

    Returns
    -------
    (burn_in, thin), ints: ``hit_and_run_burn_in`` and ``hit_and_run_thin`` of the settings, or where
    these are None, ``max(200, 2 * k**2)`` and ``max(10, 2 * k)``.

    Notes
    -----
    Hit-and-run mixes in a number of steps polynomial in ``k``: ``O*(k**2 R**2 / r**2)`` from a warm
    start on a body between balls of radii ``r`` and ``R`` (Lovász and Vempala 2006), and in practice
    about ``k**2`` once the body is rounded, which the covariance learnt in :func:`_walk` does. The
    rule rests on measurements from the Chebyshev centre, 512 independent chains:

    - a box of sides 1 to 10, turned at random (its centre lies at one end of every long side): the
      coordinates along the sides are uniform after ``2 k**2`` steps up to 50-D, not after ``k**2``
      in 20-D (Kolmogorov-Smirnov p = 1e-4); sides 1 to 100 in 50-D also pass at ``2 k**2``;
    - the simplex ``{x >= 0, sum x <= 1}``: ``sum x`` has its law ``Beta(k, 1)`` after ``k**2`` steps
      for ``k`` from 5 to 50. Along a chain its autocorrelation is about 0.3 at lag ``k`` and 0.1 at
      lag ``2 k``, while a single coordinate's decays over about ``k**2 / 2`` steps.

    The thinning ``2 k`` makes kept points nearly independent in the fast statistics only: in the
    slow ones the ``draws`` points of one chain count for fewer (the chains themselves are
    independent). A call costs ``burn_in + thin * draws`` steps of ``m k`` operations per chain.
    """
    settings = current()
    k = int(k)
    burn_in = settings.hit_and_run_burn_in
    thin = settings.hit_and_run_thin
    return (max(_MIN_BURN_IN, 2 * k * k) if burn_in is None else int(burn_in),
            max(_MIN_THIN, 2 * k) if thin is None else int(thin))


def effective_sample_size(samples_by_chain) -> np.ndarray | float:
    """The effective sample size of Markov chain output, per coordinate.

    Geyer's (1992) initial positive sequence estimator, applied to the autocorrelation pooled over
    the chains: with ``gamma(t)`` the lag-``t`` autocovariance of the draws about the mean of all
    draws, averaged over the chains (divided by ``draws``, the biased form), and
    ``rho_t = gamma(t) / gamma(0)``, the sums of successive pairs ``rho_2j + rho_2j+1`` are kept up to
    the first that is not positive and made non-increasing; with ``tau = -1 + 2 * sum`` of them, the
    effective size is ``draws * chains / tau``. As in Stan, ``tau`` is not taken below
    ``1 / log10(draws * chains)``.

    Centring at the mean of all draws rather than at each chain's own mean (as Stan does, Vehtari et
    al. 2021) suits many short chains of one walk: a chain's own mean takes ``1 / draws`` of its
    variance with it, which makes eight iid draws per chain look anticorrelated and the size about
    30 % too large, while chains that disagree still raise every ``rho_t`` and lower the size.

    Parameters
    ----------
    samples_by_chain : (draws, chains, s) or (draws, chains) array_like, finite; ``[d, c]`` is the
        ``d``-th draw of chain ``c`` (the layout of :func:`hit_and_run_chains`). The ``s`` coordinates
        may be the points themselves or any statistics of them (``sum x``, an indicator, ...).

    Returns
    -------
    (s,) float64, or a float for 2-D input: the number of independent draws that would estimate
    each coordinate's mean as well, about ``draws * chains`` for independent draws; NaN for a
    coordinate that never varies. With one draw per chain no autocorrelation is measurable and the
    chains count as independent: the result is ``chains``.

    Raises
    ------
    ShapeError : not a 2-D or 3-D array; ValueError : fewer than 2 draws in all, or non-finite entries.
    """
    samples = np.asarray(samples_by_chain, dtype=np.float64)
    if samples.ndim not in (2, 3):
        raise ShapeError(f"samples_by_chain must have shape (draws, chains, s) or (draws, chains); "
                         f"got {samples.shape}")
    scalar = samples.ndim == 2
    if scalar:
        samples = samples[..., None]
    draws, chains, _ = samples.shape
    total = draws * chains
    if total < 2:
        raise ValueError(f"the effective sample size needs at least 2 draws in all, got {draws} draws "
                         f"of {chains} chains")
    if not np.all(np.isfinite(samples)):
        raise ValueError("samples_by_chain contains NaN or infinite entries")
    centred = samples - samples.mean(axis=(0, 1))
    size = scipy.fft.next_fast_len(2 * draws, real=True)
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    power = spectrum.real**2 + spectrum.imag**2
    autocovariance = np.fft.irfft(power, n=size, axis=0)[:draws].mean(axis=1) / draws  # (draws, s)
    variance = autocovariance[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = autocovariance / variance
    if draws % 2:
        rho = np.vstack([rho, np.zeros_like(rho[:1])])
    pairs = rho[0::2] + rho[1::2]
    initial = np.cumprod(pairs > 0.0, axis=0).astype(bool)
    monotone = np.minimum.accumulate(np.where(initial, pairs, 0.0), axis=0)
    tau = np.maximum(-1.0 + 2.0 * monotone.sum(axis=0), 1.0 / math.log10(total))
    ess = np.where(variance > 0.0, total / tau, np.nan)
    return float(ess[0]) if scalar else ess


def hit_and_run(A, b, start, n: int, rng=None, burn_in: int | None = None, thin: int | None = None,
                *, ball=None, chains: int | None = None) -> np.ndarray:
    """``n`` points of a bounded full-dimensional polytope, approximately uniform, by hit-and-run.

    Parameters
    ----------
    A : (m, k) float64 with unit-norm rows; b : (m,) float64. The polytope is ``{w : A w <= b}``.
    start : (k,) or (chains, k) float64, strictly inside (every slack above ``interior_tol``, and
        inside ``ball`` when one is given).
    n : number of points returned.
    rng : ``numpy.random.Generator``, an int seed, or None (seed 0).
    burn_in, thin : steps discarded before the first point and steps between kept points of each
        chain; when None, those of :func:`walk_length` for the dimension ``k`` (the settings'
        ``hit_and_run_burn_in`` and ``hit_and_run_thin``, or the rule from ``k``).
    ball : optional ``(centre, radius)``, centre ``(k,)``: sample ``P ∩ B(centre, radius)`` instead.
    chains : number of independent chains; ``min(n, hit_and_run_chains)`` when None (or the number
        of rows of a 2-D ``start``).

    Returns
    -------
    (n, k) float64. Rows are ordered draw by draw across the chains, so any prefix mixes all chains.

    Raises
    ------
    ValueError : ``start`` is not strictly inside, or a chord is infinite (the polytope is unbounded).
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"number of samples must be >= 0, got {n}")
    start = np.asarray(start, dtype=np.float64)
    if chains is None:
        chains = start.shape[0] if start.ndim == 2 else max(1, min(n, current().hit_and_run_chains))
    chains = int(chains)
    if chains < 1:
        raise ValueError(f"number of chains must be >= 1, got {chains}")
    draws = -(-n // chains)
    walks = hit_and_run_chains(A, b, start, draws, chains, rng, burn_in, thin, ball=ball)
    return walks.reshape(draws * chains, walks.shape[2])[:n]


def hit_and_run_chains(A, b, start, draws: int, chains: int, rng=None, burn_in: int | None = None,
                       thin: int | None = None, *, ball=None) -> np.ndarray:
    """Run ``chains`` independent hit-and-run chains and keep ``draws`` points of each.

    The chain structure is kept so that a caller can measure autocorrelation (batch means over chains).
    After the burn-in the chains are independent given the direction law they learnt together.

    Parameters
    ----------
    A, b, rng, burn_in, thin, ball : as in :func:`hit_and_run`.
    start : (k,) float64 shared by every chain, or (chains, k) float64, one start per chain.
    draws : points kept per chain, every ``thin`` steps after ``burn_in`` steps.
    chains : number of chains.

    Returns
    -------
    (draws, chains, k) float64; ``[d, c]`` is the ``d``-th kept point of chain ``c``.
    """
    A, b = check_halfspaces(A, b)
    k = A.shape[1]
    settings = current()
    default_burn_in, default_thin = walk_length(k)
    burn_in = default_burn_in if burn_in is None else int(burn_in)
    thin = default_thin if thin is None else int(thin)
    draws, chains = int(draws), int(chains)
    if burn_in < 0 or thin < 1 or draws < 0 or chains < 1:
        raise ValueError(f"need burn_in >= 0, thin >= 1, draws >= 0, chains >= 1; got "
                         f"{burn_in}, {thin}, {draws}, {chains}")
    start = np.asarray(start, dtype=np.float64)
    if start.shape not in ((k,), (chains, k)):
        raise ShapeError(f"start must have shape ({k},) or ({chains}, {k}); got {start.shape}")
    points = np.array(np.broadcast_to(start, (chains, k)))
    if ball is not None:
        centre = np.ascontiguousarray(ball[0], dtype=np.float64)
        radius = float(ball[1])
        if centre.shape != (k,) or not np.all(np.isfinite(centre)) or not 0 < radius < np.inf:
            raise ValueError(f"ball must be (centre of shape ({k},), finite radius > 0); "
                             f"got {centre.shape}, {radius}")
        ball = (centre, radius)
    _check_strictly_inside(A, b, points, ball, settings.interior_tol)
    walks = np.empty((draws, chains, k))
    if k == 0 or draws == 0:
        return walks
    _walk(A, b, points, burn_in, thin, walks, as_generator(rng), ball)
    return walks


def _check_strictly_inside(A, b, points, ball, interior_tol):
    """Raise ValueError unless every row of ``points`` (c, k) has all slacks above ``interior_tol``."""
    if not np.all(np.isfinite(points)):
        raise ValueError("hit-and-run start contains NaN or infinite coordinates")
    worst = (b - points @ A.T).min(axis=1, initial=np.inf)
    if np.any(worst <= interior_tol):
        chain = int(np.argmin(worst))
        raise ValueError(f"hit-and-run start must be strictly inside the polytope: start {chain} has "
                         f"smallest slack {worst[chain]!r} (need > interior_tol = {interior_tol!r})")
    if ball is not None:
        centre, radius = ball
        gap = radius - np.linalg.norm(points - centre, axis=1)
        if np.any(gap <= interior_tol):
            chain = int(np.argmin(gap))
            raise ValueError(f"hit-and-run start must be strictly inside the ball: start {chain} lies "
                             f"{-gap[chain]!r} outside the sphere of radius {radius!r}")


def _walk(A, b, points, burn_in, thin, walks, generator, ball):
    """Advance the chains ``points`` (c, k) in place and fill ``walks`` (draws, c, k).

    Directions are isotropic at even steps. Once the burn-in has spread the chains, the odd steps
    draw them from a Gaussian with the covariance of the chains (re-estimated after 1, 2, 4, 8, ...
    steps and every ``max(1, k // 4)`` steps of the burn-in, then frozen): on a long thin polytope
    these chords run along it, which is what rounding the polytope would do. The spread along a long
    axis grows with each re-estimate, so frequent ones round a thin polytope in fewer steps.

    Each half of the chains draws its directions from the covariance of the other half. A covariance
    that holds a chain's own position tilts that chain's directions towards the line from the mean
    through it, on which it moves inwards more often than not; the volume estimator, which counts
    every step from the end of the burn-in, then came out 2-6 % low on the 15-D simplex, against
    within 1 % with the halves (16 seeds). Either direction law is symmetric and, after the burn-in,
    fixed, so each kind of step keeps the uniform law stationary (a line through two points is as
    likely chosen from either end); the isotropic steps keep every direction open.

    The slacks are carried along from step to step by :func:`_move` and recomputed exactly at every
    kept point, which is checked against ``feasibility_tol`` there.
    """
    chains, k = points.shape
    centre, radius = ball if ball is not None else (np.zeros(k), np.inf)
    tol = current().feasibility_tol
    slack = np.empty((chains, A.shape[0]))
    _slacks(A, b, points, slack)
    np.maximum(slack, 0.0, out=slack)
    half = chains // 2
    groups = (slice(0, half), slice(half, chains))
    shapes = (None, None)  # shapes[g]: the direction factor of group g, learnt from the other group
    period = max(1, k // 4)
    for step in range(burn_in + len(walks) * thin):
        if step % 2 and any(shape is not None for shape in shapes):
            directions = np.vstack([_gaussian(generator, group.stop - group.start, k, shape)
                                    for group, shape in zip(groups, shapes)])
        else:
            directions = generator.standard_normal((chains, k))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        unbounded = _move(A, points, slack, directions, generator.random(chains), centre, radius**2)
        if unbounded >= 0:
            raise ValueError(f"the polytope is unbounded: the line through {points[unbounded].tolist()} "
                             f"along {directions[unbounded].tolist()} never leaves it; hit-and-run needs "
                             "a bounded polytope")
        if step < burn_in and half >= 2 and ((step + 1) & step == 0 or (step + 1) % period == 0):
            shapes = (_population_shape(points[groups[1]]), _population_shape(points[groups[0]]))
        kept, offset = divmod(step + 1 - burn_in, thin)
        if step + 1 > burn_in and offset == 0:
            walks[kept - 1] = points
            worst = _slacks(A, b, points, slack)
            if worst < -tol:
                raise RuntimeError(f"hit-and-run drifted {-worst!r} outside the polytope (more than "
                                   f"feasibility_tol = {tol!r}); please report this")
            np.maximum(slack, 0.0, out=slack)


def _gaussian(generator, rows: int, k: int, shape) -> np.ndarray:
    """``rows`` Gaussian vectors (rows, k): covariance ``shape.T @ shape``, or the identity if None."""
    if shape is None:
        return generator.standard_normal((rows, k))
    return generator.standard_normal((rows, len(shape))) @ shape


def _population_shape(points) -> np.ndarray | None:
    """A square root ``F`` (r, k) of the covariance of ``points`` (c, k): ``F.T @ F = cov``; None if 0.

    ``F`` is the transposed Cholesky factor (k, k) when there are more points than coordinates and
    they span every direction, else the scaled deviations themselves (c, k). Both avoid an SVD, which
    a threaded LAPACK on a busy machine can slow a thousandfold at ``k = 50``.
    """
    c, k = points.shape
    deviations = (points - points.mean(axis=0)) / math.sqrt(c - 1)
    if not np.any(deviations):
        return None
    if c > k:
        covariance = np.empty((k, k))
        _gram(np.ascontiguousarray(deviations.T), covariance)
        try:
            return np.linalg.cholesky(covariance).T
        except np.linalg.LinAlgError:
            pass  # the points lie in a subspace: their deviations span it
    return deviations


# The kernels below are compiled loops rather than BLAS calls: the products are small, and a
# threaded BLAS on a busy machine spends far longer waking its threads than multiplying.

@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _products(A, x, out):
    """``out`` (m,) = ``A`` (m, k) @ ``x`` (k,), in whatever summation order vectorises best."""
    m, k = A.shape
    for i in range(m):
        total = 0.0
        for j in range(k):
            total += A[i, j] * x[j]
        out[i] = total


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _gram(columns, out):
    """``out`` (k, k) = ``columns @ columns.T`` for ``columns`` (k, c), C-contiguous."""
    k, c = columns.shape
    for i in range(k):
        for j in range(i + 1):
            total = 0.0
            for r in range(c):
                total += columns[i, r] * columns[j, r]
            out[i, j] = total
            out[j, i] = total


@numba.njit(cache=True)
def _slacks(A, b, points, out):
    """``out`` (c, m) = ``b - points @ A.T`` for ``points`` (c, k); returns the smallest entry."""
    worst = np.inf
    for c in range(points.shape[0]):
        _products(A, points[c], out[c])
        for i in range(A.shape[0]):
            out[c, i] = b[i] - out[c, i]
            worst = min(worst, out[c, i])
    return worst


@numba.njit(cache=True, error_model="numpy")
def _move(A, points, slack, directions, uniforms, centre, radius_sq):
    """One move of every chain, in place; returns a chain whose chord is infinite, or -1.

    A : (m, k); points, directions : (c, k), unit directions; slack : (c, m), ``b - A w`` of each
    chain, updated along; uniforms : (c,) in [0, 1); the ball ``|w - centre|^2 <= radius_sq``
    (``radius_sq = inf``: no ball). A move whose point fails a constraint through rounding (a draw
    at a chord end) is refused: the chain stays.
    """
    chains, k = points.shape
    m = A.shape[0]
    rates = np.empty(m)  # d/dt of A (w + t u): the chord ends where slack / rate is smallest
    for c in range(chains):
        _products(A, directions[c], rates)
        t_lo = -np.inf
        t_hi = np.inf
        for i in range(m):
            # Selects rather than branches: the signs of the rates are random and mispredict.
            reach = slack[c, i] / rates[i]
            t_hi = min(t_hi, reach if rates[i] > 0.0 else np.inf)
            t_lo = max(t_lo, reach if rates[i] < 0.0 else -np.inf)
        along = 0.0
        offset_sq = 0.0
        for j in range(k):
            offset = points[c, j] - centre[j]
            along += directions[c, j] * offset
            offset_sq += offset * offset
        # |offset + t u|^2 <= radius_sq: a quadratic in t with roots -along -+ half_width.
        half_width = math.sqrt(max(along * along + radius_sq - offset_sq, 0.0))
        t_hi = min(t_hi, half_width - along)
        t_lo = max(t_lo, -half_width - along)
        if not (math.isfinite(t_lo) and math.isfinite(t_hi)):
            return c
        t = t_lo + uniforms[c] * (t_hi - t_lo)
        accept = True
        for i in range(m):
            if slack[c, i] - t * rates[i] < 0.0:
                accept = False
                break
        if accept and radius_sq < np.inf:
            moved_sq = 0.0
            for j in range(k):
                moved = points[c, j] + t * directions[c, j] - centre[j]
                moved_sq += moved * moved
            accept = moved_sq <= radius_sq
        if accept:
            for i in range(m):
                slack[c, i] -= t * rates[i]
            for j in range(k):
                points[c, j] += t * directions[c, j]
    return -1
