"""HiGHS instances as the LP wrapper uses them: silent, with only true infinities infinite, loaded from
a validated problem, with the options of one solve attempt applied.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import highspy
import numpy as np

from ..errors import SolverError
from ..settings import Settings
from .lp_problem import _Problem

# Options reset before every attempt, so that one attempt's changes never leak into the next solve.
_DEFAULTS = {"presolve": "choose", "solver": "choose", "simplex_strategy": 1}

# The thread count HiGHS's global scheduler was last restarted with (None: never restarted by us).
_scheduler_threads: int | None = None

# HiGHS writes its banner straight to file descriptor 1 when the first instance of a process is made
# (1.16 at construction, earlier releases at the first solve), before any option can turn it off.
_first_instance_lock = threading.Lock()
_first_instance_made = False


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
        # solves (lp_status._decide_unbounded_or_infeasible), rather than by HiGHS's internal re-solve,
        # which was seen to end in kSolveError on small infeasible LPs (HiGHS 1.15).
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
