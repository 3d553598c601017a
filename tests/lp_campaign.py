"""Random LPs of every kind, answered by the wrapper and by scipy's linprog, compared.

Shared by the suite (a few hundred LPs, seconds) and benchmarks/bench_lp.py (thousands, up to 500
variables). Each case is an LP in the wrapper's convention (free variables unless bounded) with the
outcome it was built to have; linprog's answer is the referee, the built outcome a second check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize

from preimage.errors import Infeasible, SolverError, Unbounded
from preimage.geometry import solve_lp

KINDS = ("feasible", "infeasible", "unbounded", "degenerate", "equality", "badly_scaled")


@dataclass
class Case:
    kind: str
    c: np.ndarray
    A_ub: np.ndarray
    b_ub: np.ndarray
    A_eq: np.ndarray | None = None
    b_eq: np.ndarray | None = None
    lb: np.ndarray | None = None
    ub: np.ndarray | None = None


def random_case(rng: np.random.Generator, kind: str, n: int) -> Case:
    """An LP with ``n`` variables built to be of ``kind`` (one of KINDS)."""
    m = int(rng.integers(n + 1, 3 * n + 3))
    A = rng.standard_normal((m, n))
    x0 = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 3)
    if kind == "feasible":
        # Bounded: rows in every direction around x0, objective random.
        return Case(kind, rng.standard_normal(n), A, A @ x0 + rng.random(m) + 1e-3)
    if kind == "infeasible":
        # A random system with more rows than it can meet: b has no room around any point.
        rows = np.vstack([A, -A[: n + 1] - 0.05 * rng.standard_normal((n + 1, n))])
        rhs = np.concatenate([A @ x0 - rng.random(m) - 1e-2, -(A[: n + 1] @ x0) - rng.random(n + 1) * 1e-3])
        return Case(kind, rng.standard_normal(n), rows, rhs)
    if kind == "unbounded":
        # Feasible rows with a recession direction r (A r <= 0) along which the objective falls.
        r = rng.standard_normal(n)
        A = A - np.maximum(A @ r, 0.0)[:, None] * r / (r @ r) - 0.1 * np.outer(rng.random(m), r) / (r @ r)
        c = -r + 0.01 * rng.standard_normal(n)
        if c @ r >= 0:
            c = -r
        return Case(kind, c, A, A @ x0 + rng.random(m))
    if kind == "degenerate":
        # Many rows through one vertex x0 (tight at the optimum), plus redundant copies.
        tight = A @ x0
        extra = rng.integers(0, m, size=m)
        rows = np.vstack([A, 2.0 * A[extra]])
        rhs = np.concatenate([tight, 2.0 * tight[extra]])
        c = -(rng.random(m) @ A)  # a positive combination of the rows: x0 is optimal
        return Case(kind, c, rows, rhs, lb=np.full(n, -1e6), ub=np.full(n, 1e6))
    if kind == "equality":
        k = max(1, n // 3)
        E = rng.standard_normal((k, n))
        return Case(kind, rng.standard_normal(n), A, A @ x0 + rng.random(m) + 1e-3, E, E @ x0)
    if kind == "badly_scaled":
        # Rows multiplied by factors from 1e-8 to 1e8: the same set, rows of very different sizes.
        factors = 10.0 ** rng.uniform(-8, 8, size=m)
        b = A @ x0 + rng.random(m) + 1e-3
        if rng.random() < 0.5:
            b = b - (rng.random(m) + 2.0) * (rng.random(m) < 0.5)  # often infeasible
        return Case(kind, rng.standard_normal(n), factors[:, None] * A, factors * b)
    raise ValueError(f"unknown kind {kind!r}")


def referee(case: Case) -> tuple[str, float | None]:
    """linprog's outcome ("optimal", "infeasible", "unbounded", "undecided") and optimum.

    linprog's tolerances are absolute, so it is given the same LP with every row divided by its norm
    (by numpy here, independently of the wrapper): on rows of size 1e-8 it would otherwise accept
    points that miss them by far more than the tolerance.
    """
    bounds = list(zip(case.lb, case.ub)) if case.lb is not None else (None, None)
    norms = np.linalg.norm(case.A_ub, axis=1)
    A_eq, b_eq = case.A_eq, case.b_eq
    if A_eq is not None:
        eq_norms = np.linalg.norm(A_eq, axis=1)
        A_eq, b_eq = A_eq / eq_norms[:, None], b_eq / eq_norms
    result = scipy.optimize.linprog(case.c, A_ub=case.A_ub / norms[:, None], b_ub=case.b_ub / norms,
                                    A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    return {0: "optimal", 2: "infeasible", 3: "unbounded"}.get(result.status, "undecided"), (
        float(result.fun) if result.status == 0 else None)


def ours(case: Case) -> tuple[str, float | None]:
    try:
        result = solve_lp(case.c, case.A_ub, case.b_ub, case.A_eq, case.b_eq, case.lb, case.ub)
    except Infeasible:
        return "infeasible", None
    except Unbounded:
        return "unbounded", None
    except SolverError:
        return "solver error", None
    return "optimal", result.value


@dataclass
class Campaign:
    cases: int = 0
    decided: int = 0             # cases linprog decided
    agreed: int = 0              # ... on which the wrapper gave the same outcome (and optimum)
    solver_errors: int = 0       # ... on which the wrapper raised SolverError
    seconds_ours: float = 0.0
    seconds_referee: float = 0.0
    disagreements: list = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.agreed / self.decided if self.decided else 1.0


def run(count: int, seed: int, max_vars: int, min_vars: int = 2) -> Campaign:
    """``count`` random LPs (kinds in turn, ``min_vars`` to ``max_vars`` variables, log-uniform) compared
    with linprog."""
    rng = np.random.default_rng(seed)
    campaign = Campaign()
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        n = int(np.exp(rng.uniform(np.log(min_vars), np.log(max_vars))))
        case = random_case(rng, kind, n)
        start = time.perf_counter()
        expected, expected_value = referee(case)
        campaign.seconds_referee += time.perf_counter() - start
        start = time.perf_counter()
        got, value = ours(case)
        campaign.seconds_ours += time.perf_counter() - start
        campaign.cases += 1
        if expected == "undecided":
            continue
        campaign.decided += 1
        campaign.solver_errors += got == "solver error"
        same = got == expected and (value is None or np.isclose(
            value, expected_value, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(case.c).sum())))
        if same:
            campaign.agreed += 1
        else:
            campaign.disagreements.append((i, kind, n, expected, expected_value, got, value))
    return campaign
