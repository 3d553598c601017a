"""Where a HiGHS model status becomes a result or a typed error, for :mod:`preimage.geometry.lp`.

An optimum is checked against the rows before it is returned; HiGHS's "unbounded or infeasible" is
decided by feasibility solves of our own; an empty model and an LP without variables are answered in
closed form.
"""

from __future__ import annotations

import highspy
import numpy as np
import scipy.sparse

from ..errors import Infeasible, SolverError, Unbounded
from ..settings import current
from .lp_highs import _apply_options, _new_highs
from .lp_problem import LPResult, _Bounds, _Problem

_INF = highspy.kHighsInf  # equal to numpy.inf; numpy infinities are passed as they are
_STATUS = highspy.HighsModelStatus


def _map_status(highs: highspy.Highs, status, sign: float, n: int, bounds: _Bounds) -> LPResult | None:
    """The one place where a HiGHS model status becomes a result or an error.

    Returns the LPResult of an optimum, raises Infeasible / Unbounded on a proof, and returns None
    for every status that proves nothing (time or iteration limit, interrupt, solve error, unknown, ...),
    which the caller retries.
    """
    if status == _STATUS.kOptimal:
        return _result(highs, sign, bounds.row_scale) if _primal_feasible(highs, bounds) else None
    if status == _STATUS.kInfeasible:
        raise Infeasible("HiGHS: the LP is infeasible")
    if status == _STATUS.kUnbounded:
        raise Unbounded("HiGHS: the LP is unbounded", ray=_primal_ray(highs, n))
    if status == _STATUS.kUnboundedOrInfeasible:
        _decide_unbounded_or_infeasible(highs)
    if status == _STATUS.kModelEmpty:
        return _solve_without_rows(highs, sign)
    return None


def _primal_feasible(highs: highspy.Highs, bounds: _Bounds) -> bool:
    """Whether HiGHS's optimal point meets the rows and bounds to ``feasibility_tol`` relative to its size.

    The violation is measured here, on HiGHS's row activities and column values (rows are unit-norm),
    whatever tolerance HiGHS worked to. A point with coordinates of size |x| cannot be placed more
    precisely than about ``eps |x|``, so the tolerance scales with ``max(1, |x|_inf)``. An "optimal"
    point that fails this is no proof, and the solve is retried.
    """
    solution = highs.getSolution()
    x = np.asarray(solution.col_value, dtype=np.float64)
    activity = np.asarray(solution.row_value, dtype=np.float64)
    violation = 0.0
    for value, lower, upper in ((x, bounds.col_lower, bounds.col_upper),
                                (activity, bounds.row_lower, bounds.row_upper)):
        if value.size:
            violation = max(violation, float(np.max(np.maximum(lower - value, value - upper))))
    scale = max(1.0, float(np.abs(x).max(initial=0.0)))
    return violation <= current().feasibility_tol * scale


def _result(highs: highspy.Highs, sign: float, row_scale: np.ndarray) -> LPResult:
    solution = highs.getSolution()
    info = highs.getInfo()
    iterations = sum(max(0, count) for count in (info.simplex_iteration_count, info.ipm_iteration_count,
                                                 info.crossover_iteration_count))
    duals = sign * row_scale * np.array(solution.row_dual, dtype=np.float64) if solution.dual_valid else None
    return LPResult(x=np.array(solution.col_value, dtype=np.float64),
                    value=float(sign * highs.getObjectiveValue()), row_duals=duals, iterations=int(iterations))


def _primal_ray(highs: highspy.Highs, n: int) -> np.ndarray | None:
    """An improving direction (n,) of the objective as loaded, or None when HiGHS has none."""
    status, exists, ray = highs.getPrimalRay()
    if status == highspy.HighsStatus.kError or not exists:
        return None
    ray = np.asarray(ray, dtype=np.float64)[:n]
    return ray if np.all(np.isfinite(ray)) else None


def _decide_unbounded_or_infeasible(highs: highspy.Highs) -> None:
    """Decide HiGHS's "unbounded or infeasible" for sure; always raises.

    Unbounded needs two facts, each settled by an LP with zero objective (which cannot be unbounded)
    and presolve off: the rows are feasible, and an improving ray exists (a direction r of the
    recession cone with ``cost . r <= -1``). Infeasible rows give Infeasible; feasible rows and a ray
    give Unbounded with that ray; anything else (an unclear status, or feasible rows with no ray,
    which would contradict HiGHS) gives SolverError, never a guess.
    """
    lp = highs.getLp()
    cost = np.array(lp.col_cost_, dtype=np.float64)  # a copy: highspy arrays may share memory
    lp.col_cost_ = np.zeros(lp.num_col_)
    if _feasibility_status(lp, None) == _STATUS.kInfeasible:
        raise Infeasible("HiGHS: the LP is infeasible (decided after 'unbounded or infeasible')")
    # The recession cone: each finite bound of a row or variable becomes a bound at 0.
    for name in ("row_lower_", "row_upper_", "col_lower_", "col_upper_"):
        bounds = np.array(getattr(lp, name), dtype=np.float64)
        setattr(lp, name, np.where(np.isfinite(bounds), 0.0, bounds))
    status, ray = _feasibility_status(lp, cost)
    if status == _STATUS.kOptimal:
        raise Unbounded("HiGHS: the LP is feasible and has an improving ray, so it is unbounded", ray=ray)
    raise SolverError("HiGHS said 'unbounded or infeasible', the rows are feasible, and the search for an "
                      f"improving ray ended in {highs.modelStatusToString(status)}")


def _feasibility_status(lp: highspy.HighsLp, ray_cost: np.ndarray | None):
    """Solve ``lp`` (zero objective) with presolve off, plus the row ``ray_cost . x <= -1`` if given.

    Without ``ray_cost``: returns kInfeasible, or raises SolverError unless the status is kOptimal.
    With it: returns (status, x) with x the (n,) point when optimal, else None.
    """
    check = _new_highs()
    if check.passModel(lp) == highspy.HighsStatus.kError:
        raise SolverError("HiGHS refused the model of a feasibility check")
    if ray_cost is not None:
        support = np.flatnonzero(ray_cost).astype(np.int32)
        check.addRow(-_INF, -1.0, support.size, support, ray_cost[support])
    settings = current()
    _apply_options(check, {"presolve": "off"}, settings, settings.lp_time_limit)
    check.run()
    status = check.getModelStatus()
    if ray_cost is not None:
        x = np.array(check.getSolution().col_value, dtype=np.float64) if status == _STATUS.kOptimal else None
        return status, x
    if status not in (_STATUS.kInfeasible, _STATUS.kOptimal):
        raise SolverError("HiGHS said 'unbounded or infeasible' and the feasibility check ended in "
                          f"{check.modelStatusToString(status)}")
    return status


def _solve_without_rows(highs: highspy.Highs, sign: float) -> LPResult:
    """The LP loaded in ``highs`` when HiGHS reports an empty model: solved coordinate by coordinate."""
    lp = highs.getLp()
    if lp.num_row_ > 0 and lp.num_col_ > 0:
        raise SolverError("HiGHS reported an empty model for an LP with rows and columns")
    if lp.num_col_ == 0:
        return _solve_without_variables(_Problem(np.zeros(0), scipy.sparse.csc_matrix((lp.num_row_, 0)),
                                                 np.array(lp.row_lower_), np.array(lp.row_upper_),
                                                 np.zeros(0), np.zeros(0), np.ones(lp.num_row_)))
    cost = np.array(lp.col_cost_, dtype=np.float64)
    lower = np.array(lp.col_lower_, dtype=np.float64)
    upper = np.array(lp.col_upper_, dtype=np.float64)
    # Each coordinate is minimised on its own interval; zero-cost ones sit at a finite bound, or 0.
    falling = (cost < 0) & (upper == np.inf)
    rising = (cost > 0) & (lower == -np.inf)
    if np.any(falling | rising):
        ray = np.where(falling, 1.0, 0.0) - np.where(rising, 1.0, 0.0)
        raise Unbounded("the LP has no rows and its objective falls without bound along a free variable",
                        ray=ray)
    x = np.where(cost > 0, lower, np.where(cost < 0, upper, np.clip(0.0, lower, upper)))
    return LPResult(x=x, value=float(sign * cost @ x), row_duals=np.zeros(0), iterations=0)


def _solve_without_variables(problem: _Problem) -> LPResult:
    """An LP with n = 0: feasible iff every row bound admits the value 0 (within feasibility_tol)."""
    tol = current().feasibility_tol
    violated = np.flatnonzero((problem.row_lower > tol) | (problem.row_upper < -tol))
    if violated.size:
        raise Infeasible(f"the LP has no variables and row {int(violated[0])} excludes 0")
    return LPResult(x=np.zeros(0), value=0.0, row_duals=np.zeros(problem.row_lower.size), iterations=0)
