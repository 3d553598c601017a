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

import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse

from ..errors import Infeasible, ShapeError, SolverError, Unbounded
from ..settings import Settings, current

__all__ = ["LPResult", "LPModel", "solve_lp"]

_log = logging.getLogger(__name__)

_INF = highspy.kHighsInf  # equal to numpy.inf; numpy infinities are passed as they are
_STATUS = highspy.HighsModelStatus

# Options of each attempt, applied on top of the base options; attempt 0 is HiGHS's default strategy.
# On random infeasible systems the dual simplex may end in "unknown" where the interior-point method
# (with crossover) proves infeasibility, so it is the first retry; then presolve off, then primal simplex.
_ATTEMPTS: tuple[dict, ...] = (
    {},
    {"solver": "ipm"},
    {"presolve": "off"},
    {"presolve": "off", "solver": "simplex", "simplex_strategy": 4},  # primal simplex
)

# Options reset before every attempt, so that one attempt's changes never leak into the next solve.
_DEFAULTS = {"presolve": "choose", "solver": "choose", "simplex_strategy": 1}

# The thread count HiGHS's global scheduler was last restarted with (None: never restarted by us).
_scheduler_threads: int | None = None

# HiGHS writes its banner straight to file descriptor 1 when the first instance of a process is made
# (1.16 at construction, earlier releases at the first solve), before any option can turn it off.
_first_instance_lock = threading.Lock()
_first_instance_made = False


@dataclass(frozen=True)
class LPResult:
    """A proven optimum.

    Attributes
    ----------
    x : (n,) float64, an optimal point.
    value : float, the optimal objective ``c . x`` (in the sense asked: the maximum when maximising).
    row_duals : (m_ub + m_eq,) float64 or None. ``d value / d (row bound)``, the rows of ``A_ub``
        first, then those of ``A_eq`` (for an ``LPModel``: its rows in their current order). None when
        the solver has no valid dual solution.
    iterations : int, simplex + interior-point + crossover iterations of the successful solve.
    """

    x: np.ndarray
    value: float
    row_duals: np.ndarray | None
    iterations: int


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


@dataclass(frozen=True)
class _Bounds:
    """What the status mapping needs of a loaded LP besides HiGHS: its bounds, and each row's scale factor."""

    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    row_scale: np.ndarray  # (m,) each loaded row and its bounds is the caller's row times this


@dataclass(frozen=True)
class _Problem:
    """An LP in HiGHS's form: ``row_lower <= M x <= row_upper``, ``col_lower <= x <= col_upper``."""

    c: np.ndarray
    matrix: scipy.sparse.csc_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_scale: np.ndarray  # (m,) each row of ``matrix`` and its bounds is the caller's row times this

    @property
    def n(self) -> int:
        return self.c.size

    @property
    def bounds(self) -> _Bounds:
        return _Bounds(self.col_lower, self.col_upper, self.row_lower, self.row_upper, self.row_scale)

    @classmethod
    def build(cls, c, A_ub, b_ub, A_eq, b_eq, lb, ub) -> "_Problem":
        """Validate the arguments of :func:`solve_lp` and stack them into one row-bounded matrix.

        Bounds that no point meets (``b_ub = -inf``, ``lb > ub``, ``lb = +inf``, ``ub = -inf``) raise
        Infeasible here: the answer is certain and HiGHS need not see them. An infinite ``b_eq`` is refused.
        """
        c = _vector(c, None, "c")
        n = c.size
        parts, lower, upper = [], [], []
        for name, A, rhs, equality in (("A_ub", A_ub, b_ub, False), ("A_eq", A_eq, b_eq, True)):
            rhs_name = "b_eq" if equality else "b_ub"
            if A is None and rhs is None:
                continue
            if A is None or rhs is None:
                raise ShapeError(f"{name} and {rhs_name} must be given together")
            matrix = _as_csr(A, n, name)
            rhs = _vector(rhs, matrix.shape[0], rhs_name, allow=() if equality else (np.inf, -np.inf))
            if np.any(rhs == -np.inf):
                raise Infeasible(f"row {int(np.argmax(rhs == -np.inf))} of A_ub has bound -inf")
            parts.append(matrix)
            lower.append(rhs if equality else np.full(rhs.size, -np.inf))
            upper.append(rhs)
        matrix = (scipy.sparse.vstack(parts, format="csr") if parts
                  else scipy.sparse.csr_matrix((0, n)))
        matrix.eliminate_zeros()
        col_lower = _bound(lb, n, "lb", -np.inf)
        col_upper = _bound(ub, n, "ub", np.inf)
        bad = np.flatnonzero((col_lower > col_upper) | (col_lower == np.inf) | (col_upper == -np.inf))
        if bad.size:
            j = int(bad[0])
            raise Infeasible(f"variable {j} has bounds lb = {col_lower[j]!r} > ub = {col_upper[j]!r}")
        matrix, row_lower, row_upper, row_scale = _unit_rows(
            matrix, np.concatenate(lower) if lower else np.zeros(0),
            np.concatenate(upper) if upper else np.zeros(0))
        return cls(c, matrix.tocsc(), row_lower, row_upper, col_lower, col_upper, row_scale)


def _unit_rows(matrix: scipy.sparse.csr_matrix, lower: np.ndarray, upper: np.ndarray):
    """Rows ``lower <= M x <= upper`` rescaled to unit 2-norm, and the (m,) factor each row was multiplied by.

    The solver's tolerances (feasibility, small matrix entries) are absolute, so they mean the same on
    every row only once the rows have one size: a row and its bounds multiplied by 1e-170 or 1e160 is the
    same constraint and is solved as such. The norm is taken after division by the row's largest entry,
    so it neither under- nor overflows; an all-zero row keeps factor 1. A bound whose rescaled value
    overflows cannot be met by (lower) or cannot cut (upper) any finite point, and becomes infinite, except
    on an equality row, which is refused.
    """
    matrix = matrix.tocsr(copy=True)
    m = matrix.shape[0]
    rows = np.repeat(np.arange(m), np.diff(matrix.indptr))
    largest = np.zeros(m)
    np.maximum.at(largest, rows, np.abs(matrix.data))
    safe = np.where(largest > 0.0, largest, 1.0)
    data = matrix.data / safe[rows]
    norm = np.sqrt(np.bincount(rows, weights=data * data, minlength=m))
    norm = np.where(norm > 0.0, norm, 1.0)
    matrix.data = data / norm[rows]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scaled_lower = lower / safe / norm
        scaled_upper = upper / safe / norm
    equality = lower == upper
    overflow = np.flatnonzero(equality & ~np.isfinite(scaled_upper))
    if overflow.size:
        i = int(overflow[0])
        raise ValueError(f"equality row {i}: bound {upper[i]!r} over the row's largest entry {largest[i]!r} "
                         "overflows float64")
    with np.errstate(over="ignore"):
        factor = 1.0 / safe / norm
    return matrix, scaled_lower, scaled_upper, factor


def _vector(value, size: int | None, name: str, allow: tuple = ()) -> np.ndarray:
    """``value`` as a (size,) float64 array, refusing NaN and infinities other than those in ``allow``."""
    array = np.array(value, dtype=np.float64, copy=True)
    if array.ndim != 1 or (size is not None and array.size != size):
        expected = "(n,)" if size is None else f"({size},)"
        raise ShapeError(f"{name} must have shape {expected}, got {array.shape}")
    if np.any(np.isnan(array)):
        raise ValueError(f"{name} contains NaN at index {int(np.argmax(np.isnan(array)))}")
    infinite = np.isinf(array) & ~np.isin(array, allow)
    if np.any(infinite):
        raise ValueError(f"{name} contains {array[infinite][0]!r} at index {int(np.argmax(infinite))}")
    return array


def _bound(value, n: int, name: str, default: float) -> np.ndarray:
    """Variable bounds as an (n,) array: None -> ``default``; a scalar broadcasts."""
    if value is None:
        return np.full(n, default)
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(n, float(array))
    return _vector(array, n, name, allow=(np.inf, -np.inf))


def _as_csr(A, n: int, name: str) -> scipy.sparse.csr_matrix:
    """A dense or sparse (r, n) matrix as CSR float64, refusing NaN and infinities."""
    matrix = scipy.sparse.csr_matrix(A, dtype=np.float64) if scipy.sparse.issparse(A) \
        else scipy.sparse.csr_matrix(_dense_2d(A, name))
    if matrix.shape[1] != n:
        raise ShapeError(f"{name} must have {n} columns (one per variable), got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return matrix


def _dense_2d(A, name: str) -> np.ndarray:
    array = np.asarray(A, dtype=np.float64)
    if array.ndim != 2:
        raise ShapeError(f"{name} must be a 2-D matrix, got shape {array.shape}")
    return array


def _new_highs() -> highspy.Highs:
    """A silent HiGHS instance in which only a true infinity is infinite.

    By default HiGHS reads any bound >= 1e20 (and cost >= 1e20) as infinite, so ``x <= 1e25`` would
    silently vanish; these options must be set before a model is passed to take effect. The first
    instance of the process is made, and solves a one-variable LP, with the standard streams sent to
    the null device, so that the banner HiGHS prints once per process never reaches the user.
    """
    global _first_instance_made
    if not _first_instance_made:
        with _first_instance_lock:
            if not _first_instance_made:
                with _silenced_standard_streams():
                    _configured(highspy.Highs()).run()
                _first_instance_made = True
    return _configured(highspy.Highs())


@contextlib.contextmanager
def _silenced_standard_streams():
    """Send file descriptors 1 and 2 to the null device for the block (Python's own streams flushed first).

    Where the descriptors cannot be duplicated (a closed stdout, say), the block runs as it is.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _configured(highs: highspy.Highs) -> highspy.Highs:
    """``highs`` with output off and only true infinities infinite; SolverError if HiGHS refuses."""
    for name, value in (("output_flag", False), ("infinite_bound", np.inf), ("infinite_cost", np.inf)):
        if highs.setOptionValue(name, value) == highspy.HighsStatus.kError:
            raise SolverError(f"HiGHS refused option {name} = {value!r}")
    return highs


def _pass_model(highs: highspy.Highs, problem: _Problem, cost: np.ndarray) -> None:
    """Load ``problem`` (with objective ``cost``, minimised) into ``highs`` as one CSC HighsLp."""
    lp = highspy.HighsLp()
    lp.num_col_ = problem.n
    lp.num_row_ = problem.matrix.shape[0]
    lp.col_cost_ = np.asarray(cost, dtype=np.float64)
    lp.col_lower_ = problem.col_lower
    lp.col_upper_ = problem.col_upper
    lp.row_lower_ = problem.row_lower
    lp.row_upper_ = problem.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_ = problem.n
    lp.a_matrix_.num_row_ = problem.matrix.shape[0]
    lp.a_matrix_.start_ = problem.matrix.indptr.astype(np.int32)
    lp.a_matrix_.index_ = problem.matrix.indices.astype(np.int32)
    lp.a_matrix_.value_ = problem.matrix.data
    status = highs.passModel(lp)
    if status == highspy.HighsStatus.kError:
        largest = float(np.abs(problem.matrix.data).max(initial=0.0))
        raise SolverError(f"HiGHS refused the model ({problem.matrix.shape[0]} rows, {problem.n} columns, "
                          f"largest |matrix entry| {largest:.3g}; HiGHS refuses entries above "
                          f"{highs.getOptionValue('large_matrix_value')[1]:.3g})")


def _apply_options(highs: highspy.Highs, options: dict, settings: Settings, time_left: float,
                   primal_tol: float | None = None) -> None:
    """Set the base options from ``settings``, then one attempt's ``options``.

    ``primal_tol``: the primal feasibility tolerance HiGHS works to (default ``feasibility_tol``).
    """
    base = {
        **_DEFAULTS,
        "time_limit": max(time_left, 0.0),
        "primal_feasibility_tolerance": settings.feasibility_tol if primal_tol is None else primal_tol,
        "dual_feasibility_tolerance": settings.feasibility_tol,
        "small_matrix_value": settings.lp_small_matrix_value,
        # "Unbounded or infeasible" is returned to us and decided by our own feasibility and ray
        # solves (_decide_unbounded_or_infeasible), rather than by HiGHS's internal re-solve, which
        # was seen to end in kSolveError on small infeasible LPs (HiGHS 1.15).
        "allow_unbounded_or_infeasible": True,
    }
    if settings.lp_threads > 0:
        base["threads"] = int(settings.lp_threads)
        _use_scheduler_threads(int(settings.lp_threads))
    for name, value in {**base, **options}.items():
        if highs.setOptionValue(name, value) == highspy.HighsStatus.kError:
            raise ValueError(f"HiGHS refused option {name} = {value!r} (check the settings)")


def _use_scheduler_threads(threads: int) -> None:
    """Restart HiGHS's process-wide task scheduler when ``lp_threads`` asks for another thread count.

    HiGHS starts one scheduler per process with the thread count of the first solve and refuses to run
    (status "Not Set") under a different ``threads`` option until the scheduler is reset. The reset
    is process-wide: do not change ``lp_threads`` while another thread is solving an LP.
    """
    global _scheduler_threads
    if threads != _scheduler_threads:
        highspy.Highs.resetGlobalScheduler(True)
        _scheduler_threads = threads


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
