"""The linear region of a point: its pattern, polytope, local affine maps and their singular values.

On the region of x (the inputs with x's activation pattern) every layer's pre-activation is one affine
map ``z_l = M_l x + c_l``, got by masked matrix products (``M_{l+1} = W_{l+1} D_l M_l`` with ``D_l`` the
slopes of the pattern), never by autograd. The rows of ``M_l`` with ``c_l`` are the neurons'
classification hyperplanes on the region (Swiniarski et al. sec. 6); the region is the polytope of the
sign conditions they carry. The singular values of the prefix Jacobians ``D_l M_l`` measure how stable
the inverse is along the network (Behrmann et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .. import settings as _settings
from .._rng import as_generator
from ..errors import Infeasible, ShapeError, Unbounded
from ..geometry import Box, Polytope, solve_lp
from ..network import AffineMap, Network
from ..network.local import local_maps, pattern_slopes

__all__ = ["Region", "StabilityProfile", "RowRemovalBounds", "region", "local_maps", "pattern_slopes",
           "region_rows", "row_removal_bounds"]


def region_rows(net: Network, maps, slopes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sign conditions of a pattern as ``A x <= b`` and which rows are strict (``z > 0`` units).

    Returns ``(A (k, d), b (k,), strict (k,) bool)``: an on unit gives ``-M_i x <= c_i`` (its closure
    ``z >= 0``, strict in the pattern), an off unit ``M_i x <= -c_i``.
    """
    A, b, strict = [], [], []
    for i in net.hidden:
        M, c = maps[i]
        on = slopes[i] == 1.0
        sign = np.where(on, -1.0, 1.0)
        A.append(sign[:, None] * M)
        b.append(np.where(on, c, -c))
        strict.append(on)
    d = net.input_dim
    if not A:
        return np.zeros((0, d)), np.zeros(0), np.zeros(0, dtype=bool)
    return np.vstack(A), np.concatenate(b), np.concatenate(strict)


def _domain_rows(domain, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    if domain is None:
        return np.zeros((0, d)), np.zeros(0), None, None
    if isinstance(domain, Box):
        if domain.dim != d:
            raise ShapeError(f"domain box has {domain.dim} coordinates; the network takes {d} inputs")
        domain = domain.to_polytope()
    if not isinstance(domain, Polytope):
        raise TypeError(f"domain must be a Box, a Polytope or None, got {type(domain).__name__}")
    if domain.dim_ambient != d:
        raise ShapeError(f"domain polytope lives in R^{domain.dim_ambient}; the network takes {d} inputs")
    E, f = (domain.E, domain.f) if domain.n_eq else (None, None)
    return np.array(domain.A), np.array(domain.b), E, f


@dataclass(frozen=True)
class StabilityProfile:
    """Singular values of the prefix Jacobians along the network, layer 0 first.

    sigma_max, sigma_min : (layers,) largest and smallest of the ``min(units_l, d)`` singular values of
    ``J_l = D_l M_l``, the Jacobian of layer l's output on the region. condition : sigma_max / sigma_min
    (inf where sigma_min is 0). rank : (layers,) numerical ranks (``rank_rtol``).
    """

    sigma_max: np.ndarray
    sigma_min: np.ndarray
    condition: np.ndarray
    rank: np.ndarray


@dataclass(frozen=True)
class RowRemovalBounds:
    """What removing rows ``I`` from ``A`` (m, n) does to its extreme singular values.

    Behrmann et al. (2018) bound the effect of the rows a ReLU switches off by Rayleigh quotients on A's
    extreme right singular vectors ``v_1``, ``v_n``: with ``A_-`` the matrix without the rows ``a_j``,
    j in I,

    - ``sigma_n(A_-)^2 <= sigma_n(A)^2 - sum_I <a_j, v_n>^2`` (``min_upper``): removing rows correlated
      with ``v_n`` lowers the smallest singular value, weakly correlated rows leave it nearly unchanged;
    - ``sigma_n(A_-)^2 >= sigma_n(A)^2 - ||A_I||_2^2`` (``min_lower``, Weyl);
    - ``sigma_1(A_-)^2 >= sigma_1(A)^2 - sum_I <a_j, v_1>^2`` (``max_lower``).

    sigma, sigma_removed : the singular values of A and of A_- (exact, for comparison).
    """

    sigma: np.ndarray
    sigma_removed: np.ndarray
    min_upper: float
    min_lower: float
    max_lower: float

    @property
    def holds(self) -> bool:
        """The exact smallest / largest singular values after removal obey the three bounds."""
        n = self.sigma.size
        tol = np.sqrt(np.finfo(np.float64).eps) * (1.0 + (self.sigma[0] if n else 0.0))
        smin = self.sigma_removed[n - 1] if self.sigma_removed.size >= n else 0.0
        smax = self.sigma_removed[0] if self.sigma_removed.size else 0.0
        return bool(smin <= self.min_upper + tol and smin >= self.min_lower - tol and smax >= self.max_lower - tol)


def row_removal_bounds(A, removed) -> RowRemovalBounds:
    """The bounds of :class:`RowRemovalBounds` for ``A`` (m, n) with m >= n and the rows ``removed``."""
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] < A.shape[1]:
        raise ShapeError(f"row_removal_bounds takes a tall matrix (m >= n), got shape {A.shape}")
    removed = np.zeros(A.shape[0], dtype=bool) if removed is None else np.asarray(removed)
    mask = np.zeros(A.shape[0], dtype=bool)
    mask[removed] = True
    _, sigma, Vt = np.linalg.svd(A, full_matrices=False)
    kept = A[~mask]
    sigma_removed = np.linalg.svd(kept, compute_uv=False) if kept.size else np.zeros(0)
    gone = A[mask]
    on_min = float(np.sum((gone @ Vt[-1]) ** 2))
    on_max = float(np.sum((gone @ Vt[0]) ** 2))
    norm_gone = float(np.linalg.norm(gone, 2)) if gone.size else 0.0
    return RowRemovalBounds(sigma, sigma_removed, float(np.sqrt(max(0.0, sigma[-1] ** 2 - on_min))),
                            float(np.sqrt(max(0.0, sigma[-1] ** 2 - norm_gone ** 2))),
                            float(np.sqrt(max(0.0, sigma[0] ** 2 - on_max))))


class Region:
    """The linear region of an input: the inputs (in ``domain``) with its activation pattern.

    Attributes
    ----------
    net : the Network. point : (d,) the input (None for a region given by its pattern).
    pattern : (kinked units,) bool over ``net.hidden`` (bit 1: pre-activation > 0).
    slopes : one (units,) array per layer (see :func:`pattern_slopes`). domain : a Box, a Polytope or None.
    polytope : the region's minimal H-form when already known (an enumeration has it); else made on demand.
    """

    def __init__(self, net: Network, pattern, *, point=None, domain=None, polytope: Polytope | None = None):
        self.net = net
        self.pattern = np.asarray(pattern, dtype=bool).reshape(-1)
        self.slopes = pattern_slopes(net, self.pattern)
        self.point = None if point is None else np.asarray(point, dtype=np.float64)
        self.domain = domain
        if polytope is not None:
            self.__dict__["polytope"] = polytope

    @cached_property
    def maps(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(M_l, c_l)`` of every layer's pre-activation on the region (see :func:`local_maps`)."""
        return local_maps(self.net, self.slopes)

    @property
    def affine(self) -> AffineMap:
        """The map the network computes on the region: x (d,) -> output, ``W x + b`` with W (outputs, d)."""
        M, c = self.maps[-1]
        s = self.slopes[-1]
        return AffineMap(s[:, None] * M, s * c)

    def hyperplane(self, layer: int, unit: int) -> tuple[np.ndarray, float]:
        """The classification hyperplane of a neuron on the region: ``(w (d,), c)``, pre-activation ``w.x + c``."""
        layer = _layer(self.net, layer)
        M, c = self.maps[layer]
        if not 0 <= unit < M.shape[0]:
            raise ShapeError(f"layer {layer} has {M.shape[0]} units; no unit {unit}")
        return M[unit].copy(), float(c[unit])

    def jacobian(self, layer: int = -1) -> np.ndarray:
        """The Jacobian (units_l, d) of layer ``layer``'s output (after its activation) on the region."""
        layer = _layer(self.net, layer)
        M, _ = self.maps[layer]
        return self.slopes[layer][:, None] * M

    def singular_values(self, layer: int = -1) -> np.ndarray:
        """Singular values (descending, ``min(units_l, d)`` of them) of the Jacobian of a layer prefix."""
        return np.linalg.svd(self.jacobian(layer), compute_uv=False)

    def stability(self) -> StabilityProfile:
        """Largest and smallest singular values and condition numbers of every prefix Jacobian."""
        rtol = _settings.current().rank_rtol
        smax, smin, rank = [], [], []
        for i in range(len(self.net.layers)):
            s = self.singular_values(i)
            smax.append(s[0] if s.size else 0.0)
            smin.append(s[-1] if s.size else 0.0)
            rank.append(int(np.sum(s > rtol * s[0])) if s.size and s[0] > 0 else 0)
        smax, smin = np.array(smax), np.array(smin)
        with np.errstate(divide="ignore", invalid="ignore"):
            condition = np.where(smin > 0, smax / np.where(smin > 0, smin, 1.0), np.inf)
        return StabilityProfile(smax, smin, condition, np.array(rank))

    def removal_bounds(self, layer: int) -> RowRemovalBounds:
        """Behrmann et al.'s row-removal bounds for layer ``layer``: the rows its off units remove.

        A is the pre-activation Jacobian ``M_l`` (units, d) on the region (units >= d needed); the removed
        rows are the units the pattern switches off.
        """
        layer = _layer(self.net, layer)
        M, _ = self.maps[layer]
        return row_removal_bounds(M, np.flatnonzero(self.slopes[layer] != 1.0))

    @property
    def lipschitz(self) -> float:
        """The local Lipschitz constant (2-norm): the largest singular value of the region's affine map."""
        W = self.affine.dense()
        return float(np.linalg.norm(W, 2)) if W.size else 0.0

    # -- the polytope --------------------------------------------------------------------------------
    @cached_property
    def halfspaces(self) -> Polytope:
        """The region as the polytope of its sign conditions and the domain's rows (not reduced)."""
        A, b, _ = region_rows(self.net, self.maps, self.slopes)
        DA, Db, E, f = _domain_rows(self.domain, self.net.input_dim)
        return Polytope(np.vstack([A, DA]), np.concatenate([b, Db]), E, f)

    @cached_property
    def polytope(self) -> Polytope:
        """The region in minimal H-form (the closure: on units ``z >= 0``), within the domain if given."""
        return self.halfspaces.minimal()

    def inscribed_ball(self) -> tuple[np.ndarray, float]:
        """The largest ball inside the region: centre (d,) and radius (inf if unbounded that way)."""
        return self.polytope.chebyshev()

    def widths(self, n: int = 16, rng=None) -> tuple[np.ndarray, np.ndarray]:
        """Widths ``max u.x - min u.x`` over the region along n random unit directions: (U (n, d), widths (n,)).

        Exact, two LPs per direction; inf along a direction in which the region is unbounded.
        """
        generator = as_generator(rng)
        d = self.net.input_dim
        U = generator.standard_normal((int(n), d))
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        P = self.polytope
        E, f = (P.E, P.f) if P.n_eq else (None, None)
        out = np.empty(len(U))
        for k, u in enumerate(U):
            try:
                high = solve_lp(u, P.A, P.b, E, f, maximize=True).value
                low = solve_lp(u, P.A, P.b, E, f).value
                out[k] = high - low
            except Unbounded:
                out[k] = np.inf
        return U, out

    def volume(self, rng=None):
        """The region's volume (a ``Volume``: exact in low dimension, estimated with its error above)."""
        return self.polytope.volume(rng=rng)

    def sample(self, n: int, rng=None) -> np.ndarray:
        """n points (n, d) uniform in the (bounded) region, by hit-and-run."""
        return self.polytope.sample(n, rng=rng)

    def __repr__(self) -> str:
        return f"Region({int(self.pattern.sum())}/{self.pattern.size} units on, d={self.net.input_dim})"


def _layer(net: Network, layer: int) -> int:
    n = len(net.layers)
    if not -n <= int(layer) < n:
        raise ShapeError(f"the network has {n} layers; no layer {layer}")
    return int(layer) % n


def _as_network(net) -> Network:
    if isinstance(net, Network):
        return net
    from ..network.load import load

    return load(net)


def region(net, x, domain=None) -> Region:
    """The linear region of input ``x`` ((d,) or input_shape): its pattern, polytope, local maps.

    domain : optional Box or Polytope the region is cut to.
    """
    net = _as_network(net)
    X, batched = net.as_batch(x)
    if batched and X.shape[0] != 1:
        raise ShapeError(f"region takes one input, got a batch of {X.shape[0]}")
    pattern = net.patterns(X).bits()[0]
    return Region(net, pattern, point=X[0], domain=domain)


@dataclass(frozen=True)
class PatternPoint:
    """The answer to "is there an input with this pattern?".

    found : True when ``point`` has the pattern. point : (d,) or None. margin : the smallest
    pre-activation of the on units at ``point`` (> 0 when found). certificate : when not found, a
    Motzkin (Farkas) vector y >= 0 over ``rows`` with ``y^T A = 0``, ``y^T b <= 0`` and
    ``sum_strict y - y^T b = 1`` (either ``y^T b < 0`` or weight on a strict row): no x meets ``A x <= b``
    with the strict rows strict. rows : ``(A, b, strict)``.
    """

    found: bool
    point: np.ndarray | None
    margin: float
    certificate: np.ndarray | None
    rows: tuple

    def check_certificate(self, tol: float | None = None) -> bool:
        """The certificate proves infeasibility: ``y >= 0``, ``|A^T y|`` and ``b^T y`` within ``tol``."""
        if self.certificate is None:
            return False
        tol = np.sqrt(_settings.current().feasibility_tol) if tol is None else tol
        A, b, strict = self.rows
        y = self.certificate
        return bool(np.all(y >= -tol) and np.linalg.norm(A.T @ y) <= tol and b @ y <= tol
                    and y[strict].sum() - b @ y >= 1.0 - tol)


def point_with_pattern(net, pattern, domain=None) -> PatternPoint:
    """An input with the given pattern (on units ``z > 0``, off units ``z <= 0``), or an LP proof of none.

    An LP maximises the margin t of every unit (``z_i >= t`` on, ``z_i <= -t`` off, t <= 1), then of the
    on units only; t > 0 and the forward pass confirming the pattern give the point. Otherwise
    a second LP finds y >= 0 with ``y^T A = 0``, ``y^T b <= 0`` and ``sum_strict y - y^T b = 1``
    (Motzkin's transposition theorem), the certificate that the strict system has no solution.
    """
    net = _as_network(net)
    slopes = pattern_slopes(net, pattern)
    maps = local_maps(net, slopes)
    A, b, strict = region_rows(net, maps, slopes)
    DA, Db, E, f = _domain_rows(domain, net.input_dim)
    if E is not None:
        DA, Db = np.vstack([DA, E, -E]), np.concatenate([Db, f, -f])
    A = np.vstack([A, DA])
    b = np.concatenate([b, Db])
    strict = np.concatenate([strict, np.zeros(DA.shape[0], dtype=bool)])
    norms = np.linalg.norm(A, axis=1)
    scale = np.where(norms > 0, norms, 1.0)        # a zero row 0 <= b_i stays as it is
    A, b = A / scale[:, None], b / scale
    d = net.input_dim
    tol = _settings.current().interior_tol
    units = A.shape[0] - DA.shape[0]
    cost = np.zeros(d + 1)
    cost[-1] = 1.0
    upper = np.concatenate([np.full(d, np.inf), [1.0]])
    lower = np.concatenate([np.full(d, -np.inf), [-1.0]])
    margin = -np.inf
    wanted = np.asarray(pattern, dtype=bool).reshape(-1)
    # First a margin on every unit (a point clear of all zero sets), then on the on units only.
    for lifted_rows in (np.arange(A.shape[0]) < units, strict):
        lifted = np.hstack([A, lifted_rows[:, None].astype(np.float64)])
        try:
            result = solve_lp(cost, lifted, b, lb=lower, ub=upper, maximize=True)
        except Infeasible:
            break
        margin = max(margin, float(result.x[-1]))
        x = result.x[:d]
        if result.x[-1] > tol and np.array_equal(net.patterns(x[None]).bits()[0], wanted):
            return PatternPoint(True, x, float(result.x[-1]), None, (A, b, strict))
    m = A.shape[0]
    try:
        proof = solve_lp(np.zeros(m), A_ub=b[None, :], b_ub=np.zeros(1),
                         A_eq=np.vstack([A.T, strict[None, :].astype(np.float64) - b[None, :]]),
                         b_eq=np.concatenate([np.zeros(d), [1.0]]), lb=np.zeros(m))
        y = proof.x
    except Infeasible:
        y = None
    return PatternPoint(False, None, margin, y, (A, b, strict))
