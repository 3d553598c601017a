"""One settings object for every tolerance, budget and solver option.

The active settings are held in a context variable, so a caller overrides them for a block of code
without touching global state of other threads::

    import preimage as pim
    with pim.configure(feasibility_tol=1e-7):
        ...

Library code reads ``current()`` and never hard-codes a tolerance.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from dataclasses import dataclass
from typing import Iterator

__all__ = ["Settings", "current", "configure"]


@dataclass(frozen=True)
class Settings:
    """Tolerances, budgets and solver options (all float64 geometry).

    Attributes
    ----------
    feasibility_tol : a constraint ``a.x <= b`` on a row normalised to ``|a| = 1`` counts as met when
        ``a.x - b <= feasibility_tol``; equalities likewise on ``|a.x - b|``.
    rank_rtol : a singular value ``s`` counts as zero when ``s <= rank_rtol * s_max`` (ranks, null spaces).
    interior_tol : a slack or Chebyshev radius above this is strictly positive (dimension tests).
    activity_tol : an activity entry ``y_j <= activity_tol`` is treated as 0 when a target activity is
        given as data (a unit's pattern bit itself is always exact: 1 iff pre-activation ``> 0``).
    import_rtol : relative agreement demanded between an imported network and the original forward pass.
    lp_time_limit : seconds allowed to one LP solve before ``SolverError``.
    lp_threads : threads HiGHS may use (0: its default).
    lp_retries : how many times a solve that ends in an unclear status is retried with other options
        (interior point, then the simplex without presolve, then the primal simplex).
    lp_solver_tol : the primal feasibility tolerance HiGHS first works to (its default); its optima are
        accepted only when they meet the rows within ``feasibility_tol``, and re-solved at that otherwise.
    lp_small_matrix_value : HiGHS drops constraint-matrix entries of smaller magnitude. The wrapper scales
        every row to unit 2-norm first, so this is relative to the row's own size; HiGHS's default 1e-9 is
        kept (smaller values make its dual simplex end in "unknown" on many infeasible LPs).
    chunk_size : rows per chunk when streaming batches (patterns, bounds).
    max_vertex_dim : largest affine dimension for which vertices are enumerated.
    exact_volume_dim : largest affine dimension for which volume is computed exactly.
    volume_samples : hit-and-run samples per phase of the volume estimator.
    hit_and_run_burn_in, hit_and_run_thin : steps of each hit-and-run chain discarded before its first
        kept point, and steps between kept points (``Polytope.sample``, the volume estimator). None:
        from the dimension ``k`` of the set, ``max(200, 2 * k**2)`` and ``max(10, 2 * k)`` (see
        ``preimage.geometry.sampling.walk_length``).
    hit_and_run_chains : largest number of independent hit-and-run chains advanced side by side.
    """

    feasibility_tol: float = 1e-9
    rank_rtol: float = 1e-10
    interior_tol: float = 1e-9
    activity_tol: float = 0.0
    import_rtol: float = 1e-9
    lp_time_limit: float = 120.0
    lp_threads: int = 0
    lp_retries: int = 3
    lp_solver_tol: float = 1e-7
    lp_small_matrix_value: float = 1e-9
    chunk_size: int = 4096
    max_vertex_dim: int = 8
    exact_volume_dim: int = 6
    volume_samples: int = 4000
    hit_and_run_burn_in: int | None = None
    hit_and_run_thin: int | None = None
    hit_and_run_chains: int = 256

    def replace(self, **changes) -> "Settings":
        """A copy with ``changes`` applied; unknown names raise ``TypeError``."""
        return dataclasses.replace(self, **changes)


_current: contextvars.ContextVar[Settings] = contextvars.ContextVar("preimage_settings", default=Settings())


def current() -> Settings:
    """The settings in force in this context."""
    return _current.get()


@contextlib.contextmanager
def configure(settings: Settings | None = None, **changes) -> Iterator[Settings]:
    """Use ``settings`` (or the current ones with ``changes``) inside a ``with`` block."""
    base = settings if settings is not None else current()
    token = _current.set(base.replace(**changes) if changes else base)
    try:
        yield _current.get()
    finally:
        _current.reset(token)
