"""The one LP wrapper of the library: HiGHS through highspy, every model status mapped.

An LP is::

    minimise (or maximise)  c . x
    subject to              A_ub x <= b_ub,   A_eq x = b_eq,   lb <= x <= ub

with variables FREE by default (``lb = -inf``, ``ub = +inf``), unlike ``scipy.optimize.linprog``.

Each solve ends in exactly one of: an :class:`LPResult` (proven optimum), :class:`~preimage.errors.Infeasible`,
:class:`~preimage.errors.Unbounded` (the LP is feasible and its objective unbounded), or
:class:`~preimage.errors.SolverError` (no proof, after bounded retries with other options). A status is
never guessed: HiGHS's "unbounded or infeasible" is decided by feasibility solves of our own, and an
"optimal" point that misses the rows by more than ``feasibility_tol`` (relative to its size) is retried.

:func:`solve_lp` answers one LP; :class:`LPModel` keeps one HiGHS model alive and answers many LPs
that differ in objective or in a few rows, warm-started from the previous basis.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse

from ..errors import ShapeError, SolverError
from ..settings import Settings, current
from .lp_highs import _apply_options, _new_highs, _pass_model
from .lp_problem import LPResult, _as_csr, _Bounds, _Problem, _unit_rows, _vector
from .lp_status import _STATUS, _map_status, _primal_feasible, _solve_without_variables

__all__ = ["LPResult", "LPModel", "solve_lp"]

_log = logging.getLogger(__name__)

# Options of each attempt, applied on top of the base options; attempt 0 is HiGHS's default strategy.
# On random infeasible systems the dual simplex may end in "unknown" where the interior-point method
# (with crossover) proves infeasibility, so it is the first retry; then presolve off, then primal simplex.
_ATTEMPTS: tuple[dict, ...] = (
    {},
    {"solver": "ipm"},
    {"presolve": "off"},
    {"presolve": "off", "solver": "simplex", "simplex_strategy": 4},  # primal simplex
)


def solve_lp(c, A_ub=None, b_ub=None, A_eq=None, b_eq=None, lb=None, ub=None, *,
             maximize: bool = False, ipm_first: bool = False) -> LPResult:
    """Solve one LP with HiGHS.

    Parameters
    ----------
    c : (n,) objective.
    A_ub : (m, n) dense array or scipy.sparse matrix, with b_ub : (m,); ``b_ub`` may hold ``+inf``
        (a row with no bound). None: no such rows.
    A_eq : (p, n) dense or sparse, with b_eq : (p,). None: no such rows.
    lb, ub : (n,) bounds or scalars; None means ``-inf`` / ``+inf`` (free variables).
    maximize : maximise ``c . x`` instead of minimising it.
    ipm_first : start with the interior-point method (then HiGHS's default strategy, ...): for LPs with
        thousands of columns on two rows each (a least max-norm point), where the dual simplex stalls.

    Returns
    -------
    LPResult.

    Raises
    ------
    Infeasible, Unbounded (``ray``: an improving direction (n,) when HiGHS gives one), SolverError
    (after ``lp_retries`` retries; carries the HiGHS status), ShapeError / ValueError on bad input.
    """
    problem = _Problem.build(c, A_ub, b_ub, A_eq, b_eq, lb, ub)
    sign = -1.0 if maximize else 1.0
    if problem.n == 0:
        return _solve_without_variables(problem)
    highs = _new_highs()
    _pass_model(highs, problem, sign * problem.c)
    return _solve(highs, sign, problem.n, problem.bounds, ipm_first=ipm_first)


class LPModel:
    """A persistent HiGHS model with fixed variables and rows, answering many LPs warm-started.

    Rows are the ``A_ub`` rows (``-inf <= a.x <= b_ub``) followed by the ``A_eq`` rows
    (``b_eq <= a.x <= b_eq``), then rows appended by :meth:`add_rows`; row indices follow HiGHS's
    order, and :meth:`delete_rows` shifts the later ones down as ``numpy.delete`` would.

    Changing the objective (:meth:`minimize`, :meth:`maximize`) or a row bound keeps the last basis,
    so a sequence of related LPs costs a few simplex iterations each.

    Parameters
    ----------
    n : number of variables; ``A_ub, b_ub, A_eq, b_eq, lb, ub`` as in :func:`solve_lp` (construction
        raises Infeasible where :func:`solve_lp` would without a solve, e.g. ``lb > ub``).
    """

    def __init__(self, n: int, A_ub=None, b_ub=None, A_eq=None, b_eq=None, lb=None, ub=None):
        n = int(n)
        if n < 0:
            raise ShapeError(f"LPModel needs n >= 0 variables, got {n}")
        problem = _Problem.build(np.zeros(n), A_ub, b_ub, A_eq, b_eq, lb, ub)
        self._n = n
        self._lower = problem.row_lower.copy()
        self._upper = problem.row_upper.copy()
        self._original_lower = self._lower.copy()
        self._original_upper = self._upper.copy()
        self._scale = problem.row_scale.copy()
        self._col_lower, self._col_upper = problem.col_lower, problem.col_upper
        self._highs = _new_highs()
        _pass_model(self._highs, problem, problem.c)

    @property
    def n_vars(self) -> int:
        """Number of variables."""
        return self._n

    @property
    def n_rows(self) -> int:
        """Number of rows now in the model."""
        return self._lower.size

    def minimize(self, c) -> LPResult:
        """Minimise ``c . x`` (c: (n,)) over the current rows; the previous basis is the start."""
        return self._optimise(c, 1.0)

    def maximize(self, c) -> LPResult:
        """Maximise ``c . x`` (c: (n,)) over the current rows; the previous basis is the start."""
        return self._optimise(c, -1.0)

    def set_row_upper(self, i: int, value: float) -> None:
        """Set the upper bound of row ``i`` to ``value`` (``+inf`` relaxes it); the lower bound stays."""
        i = self._row_index(i)
        value = float(value)
        if np.isnan(value):
            raise ValueError(f"row {i}: upper bound is NaN")
        with np.errstate(over="ignore"):
            value = value * self._scale[i]
        if self._lower[i] == self._upper[i] and not np.isfinite(value):
            raise ValueError(f"row {i}: upper bound {value!r} of an equality row overflows float64 once scaled")
        self._upper[i] = value
        self._highs.changeRowBounds(i, self._lower[i], value)

    def restore_row(self, i: int) -> None:
        """Give row ``i`` back the bounds it had when it entered the model."""
        i = self._row_index(i)
        self._lower[i] = self._original_lower[i]
        self._upper[i] = self._original_upper[i]
        self._highs.changeRowBounds(i, self._lower[i], self._upper[i])

    def add_rows(self, A, lo, hi) -> np.ndarray:
        """Append rows ``lo <= A x <= hi``; A: (r, n) dense or sparse, lo/hi: (r,) (``-inf``/``+inf`` allowed).

        Returns the (r,) indices of the new rows.
        """
        matrix = _as_csr(A, self._n, "A")
        r = matrix.shape[0]
        lo = _vector(lo, r, "lo", allow=(-np.inf,))
        hi = _vector(hi, r, "hi", allow=(np.inf,))
        matrix, lo, hi, scale = _unit_rows(matrix, lo, hi)
        start = self.n_rows
        self._highs.addRows(r, lo, hi, matrix.nnz,
                            matrix.indptr[:-1].astype(np.int32), matrix.indices.astype(np.int32),
                            matrix.data)
        self._lower = np.concatenate([self._lower, lo])
        self._upper = np.concatenate([self._upper, hi])
        self._original_lower = np.concatenate([self._original_lower, lo])
        self._original_upper = np.concatenate([self._original_upper, hi])
        self._scale = np.concatenate([self._scale, scale])
        return np.arange(start, start + r)

    def delete_rows(self, idx) -> None:
        """Remove the rows ``idx`` (array of indices); later rows move down to fill the gaps."""
        idx = np.unique(np.asarray(idx, dtype=np.int64).ravel())
        if idx.size == 0:
            return
        if idx[0] < 0 or idx[-1] >= self.n_rows:
            raise IndexError(f"row indices must lie in [0, {self.n_rows}), got {idx.tolist()}")
        self._highs.deleteRows(idx.size, idx.astype(np.int32))
        self._lower = np.delete(self._lower, idx)
        self._upper = np.delete(self._upper, idx)
        self._original_lower = np.delete(self._original_lower, idx)
        self._original_upper = np.delete(self._original_upper, idx)
        self._scale = np.delete(self._scale, idx)

    def __repr__(self) -> str:
        return f"LPModel(n_vars={self._n}, n_rows={self.n_rows})"

    def _optimise(self, c, sign: float) -> LPResult:
        c = _vector(c, self._n, "c")
        if self._n == 0:
            return _solve_without_variables(_Problem(np.zeros(0), scipy.sparse.csc_matrix((self.n_rows, 0)),
                                                     self._lower, self._upper, np.zeros(0), np.zeros(0),
                                                     self._scale))
        self._highs.changeColsCost(self._n, np.arange(self._n, dtype=np.int32), sign * c)
        bounds = _Bounds(self._col_lower, self._col_upper, self._lower, self._upper, self._scale)
        return _solve(self._highs, sign, self._n, bounds)

    def _row_index(self, i) -> int:
        i = int(i)
        if not 0 <= i < self.n_rows:
            raise IndexError(f"row index {i} out of range [0, {self.n_rows})")
        return i


def _solve(highs: highspy.Highs, sign: float, n: int, bounds: _Bounds, *, ipm_first: bool = False) -> LPResult:
    """Run the loaded model (objective already multiplied by ``sign``) with bounded retries.

    ``bounds``: the loaded model's bounds and row scale factors (to check points and unscale duals).

    Attempt ``i`` uses ``_ATTEMPTS[i]``; at most ``lp_retries`` retries follow the first attempt, all
    sharing one time budget of ``lp_time_limit`` seconds. Returns or raises as :func:`solve_lp`.
    """
    settings = current()
    deadline = time.monotonic() + settings.lp_time_limit
    order = (_ATTEMPTS[1], _ATTEMPTS[0]) + _ATTEMPTS[2:] if ipm_first else _ATTEMPTS
    attempts = order[: 1 + max(0, min(settings.lp_retries, len(order) - 1))]
    unclear = []
    for number, options in enumerate(attempts):
        time_left = deadline - time.monotonic() if number else settings.lp_time_limit
        if time_left <= 0.0:
            break
        if number > 0:
            highs.clearSolver()  # a retry must not start from the basis that led to trouble
        status, run_status = _run_to_tolerance(highs, options, settings, time_left, deadline, bounds)
        outcome = _map_status(highs, status, sign, n, bounds)
        if outcome is not None:
            return outcome
        unclear.append(f"{highs.modelStatusToString(status)} (run returned {run_status.name}, max primal "
                       f"infeasibility {highs.getInfo().max_primal_infeasibility:.3g}; "
                       f"{options or 'default options'})")
        _log.debug("LP attempt %d ended in %s; retrying", number, unclear[-1])
    raise SolverError(f"HiGHS gave no proven answer within {settings.lp_time_limit} s and "
                      f"{len(unclear)} attempt(s): {'; '.join(unclear)}")


def _run_to_tolerance(highs: highspy.Highs, options: dict, settings: Settings, time_left: float,
                      deadline: float, bounds: _Bounds):
    """Run one attempt, first at HiGHS's working tolerance ``lp_solver_tol``, then at ``feasibility_tol``.

    The simplex method can stall for minutes on degenerate LPs when its primal tolerance is far below
    its default, so the first run uses the looser ``lp_solver_tol``. Its proof of infeasibility holds
    at the tighter tolerance too (no point meets the rows even within the looser one). An optimum is kept
    when the point meets the rows within ``feasibility_tol`` (which it nearly always does: a vertex is
    found to round-off); otherwise, and for an unbounded verdict (a ray from a point that may be only
    loosely feasible), the attempt is re-run from the same basis at ``feasibility_tol``.
    Returns (model status, run status) of the last run.
    """
    loose = max(settings.lp_solver_tol, settings.feasibility_tol)
    _apply_options(highs, options, settings, time_left, primal_tol=loose)
    run_status = highs.run()
    status = highs.getModelStatus()
    if loose == settings.feasibility_tol or status == _STATUS.kInfeasible:
        return status, run_status
    if status == _STATUS.kOptimal and _primal_feasible(highs, bounds):
        return status, run_status
    time_left = deadline - time.monotonic()
    if time_left <= 0.0:
        return status, run_status
    _apply_options(highs, options, settings, time_left)
    run_status = highs.run()
    return highs.getModelStatus(), run_status
