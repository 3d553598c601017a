"""The LP wrapper: optima against an independent solver, every outcome told apart, warm starts."""

from __future__ import annotations

from types import SimpleNamespace

import highspy
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse

from preimage.errors import Infeasible, ShapeError, SolverError, Unbounded
from preimage.geometry import lp as lp_module
from preimage.geometry.lp import LPModel, solve_lp
from preimage.settings import configure

import lp_campaign

STATUS = highspy.HighsModelStatus
INF = np.inf


def random_feasible_bounded_lp(rng, with_equalities):
    """An LP around a known feasible point x0 inside a box of rows (so it is bounded)."""
    n = int(rng.integers(2, 8))
    m = int(rng.integers(1, 10))
    x0 = rng.normal(size=n)
    A = rng.normal(size=(m, n))
    b = A @ x0 + rng.random(m)
    box = np.vstack([np.eye(n), -np.eye(n)])
    A_ub = np.vstack([A, box])
    b_ub = np.concatenate([b, box @ x0 + rng.uniform(0.5, 3.0, 2 * n)])
    problem = dict(c=rng.normal(size=n), A_ub=A_ub, b_ub=b_ub)
    if with_equalities:
        A_eq = rng.normal(size=(int(rng.integers(1, n)), n))
        problem.update(A_eq=A_eq, b_eq=A_eq @ x0)
    return problem


@pytest.mark.parametrize("seed", range(30))
def test_optimum_matches_scipy_linprog(seed):
    rng = np.random.default_rng(seed)
    problem = random_feasible_bounded_lp(rng, with_equalities=seed % 2 == 1)
    maximize = seed % 3 == 0
    result = solve_lp(**problem, maximize=maximize)
    sign = -1.0 if maximize else 1.0
    oracle = scipy.optimize.linprog(sign * problem["c"], A_ub=problem["A_ub"], b_ub=problem["b_ub"],
                                    A_eq=problem.get("A_eq"), b_eq=problem.get("b_eq"),
                                    bounds=(None, None), method="highs")
    assert oracle.status == 0
    assert result.value == pytest.approx(sign * oracle.fun, rel=1e-7, abs=1e-8)
    assert result.value == pytest.approx(problem["c"] @ result.x, rel=1e-9, abs=1e-9)
    assert np.all(problem["A_ub"] @ result.x <= problem["b_ub"] + 1e-8)
    if "A_eq" in problem:
        assert np.allclose(problem["A_eq"] @ result.x, problem["b_eq"], atol=1e-8)


@pytest.mark.parametrize("maximize", [False, True])
def test_known_lp_value_point_and_duals(maximize):
    # min -x - y (or max x + y) on x + 2y <= 4, 3x + y <= 6, x, y >= 0: optimum (1.6, 1.2).
    sign = 1.0 if maximize else -1.0
    result = solve_lp(sign * np.array([1.0, 1.0]), A_ub=[[1, 2], [3, 1]], b_ub=[4, 6], lb=0.0, maximize=maximize)
    assert np.allclose(result.x, [1.6, 1.2])
    assert result.value == pytest.approx(2.8 if maximize else -2.8)
    assert result.iterations >= 1
    # row_duals are d value / d b: check against a finite difference of the optimum.
    step = 1e-4
    for i in range(2):
        b = np.array([4.0, 6.0])
        b[i] += step
        moved = solve_lp(sign * np.array([1.0, 1.0]), A_ub=[[1, 2], [3, 1]], b_ub=b, lb=0.0, maximize=maximize)
        assert (moved.value - result.value) / step == pytest.approx(result.row_duals[i], rel=1e-6)


def test_variables_are_free_by_default():
    # min x + y on x >= -5, y >= -7: scipy's default bounds (x >= 0) would give 0.
    result = solve_lp([1.0, 1.0], A_ub=[[-1, 0], [0, -1]], b_ub=[5, 7])
    assert result.value == pytest.approx(-12.0)
    assert np.allclose(result.x, [-5, -7])


def test_sparse_and_dense_matrices_agree():
    rng = np.random.default_rng(3)
    problem = random_feasible_bounded_lp(rng, with_equalities=True)
    dense = solve_lp(**problem)
    sparse = solve_lp(problem["c"], A_ub=scipy.sparse.csr_matrix(problem["A_ub"]), b_ub=problem["b_ub"],
                      A_eq=scipy.sparse.coo_matrix(problem["A_eq"]), b_eq=problem["b_eq"])
    assert sparse.value == pytest.approx(dense.value, rel=1e-9, abs=1e-12)


def test_infinite_row_bound_means_no_row():
    result = solve_lp([1.0], A_ub=[[-1.0], [1.0]], b_ub=[2.0, INF])
    assert result.value == pytest.approx(-2.0)


# Each case: (LP, expected outcome). Which status HiGHS reaches first ("unbounded or infeasible" or a
# direct answer) depends on its version; the outcome must not.
OUTCOME_CASES = {
    "contradictory rows": (dict(c=[1.0], A_ub=[[1.0], [-1.0]], b_ub=[-1.0, -1.0]), Infeasible),
    "contradictory bounds": (dict(c=[1.0], lb=[1.0], ub=[0.0]), Infeasible),
    "row bound -inf": (dict(c=[1.0], A_ub=[[1.0]], b_ub=[-INF]), Infeasible),
    "free objective direction": (dict(c=[-1.0, 0.0], A_ub=[[0.0, 1.0]], b_ub=[1.0]), Unbounded),
    "no rows, free variable": (dict(c=[1.0, 0.0]), Unbounded),
    # Infeasible (0 <= -2) while -x decreases without bound: presolve cannot tell which.
    "zero row infeasible, objective unbounded":
        (dict(c=[-1.0], A_ub=[[-2.0], [-1.0], [0.0]], b_ub=[2.0, -1.0, -2.0]), Infeasible),
    # x <= -1 and x >= -1/2 contradict; y has an unbounded improving direction.
    "infeasible x, unbounded y":
        (dict(c=[-2.0, -2.0], A_ub=[[0, -1.0], [1, 0], [-1, 0], [-2, 0]], b_ub=[-2.0, -1, 2, 1], ub=[1, INF]),
         Infeasible),
    "feasible cone, unbounded": (dict(c=[-1.0, 0.0], A_ub=[[1.0, -1.0]], b_ub=[0.0]), Unbounded),
    "feasible box, unbounded free column":
        (dict(c=[0.0, -1.0], A_ub=[[1.0, 0.0], [-1.0, 0.0]], b_ub=[1.0, 1.0]), Unbounded),
}


def _signed(problem, maximize):
    return dict(problem, c=(-1.0 if maximize else 1.0) * np.asarray(problem["c"], dtype=np.float64))


def _check_ray(problem, maximize, error):
    if error.ray is None:
        return
    sign = -1.0 if maximize else 1.0
    assert sign * np.asarray(problem["c"]) @ error.ray < 0  # improves the objective
    if "A_ub" in problem:
        assert np.all(np.asarray(problem["A_ub"]) @ error.ray <= 1e-9)  # stays feasible


@pytest.mark.parametrize("name", OUTCOME_CASES)
@pytest.mark.parametrize("maximize", [False, True])
def test_infeasible_and_unbounded_told_apart(name, maximize):
    problem, expected = OUTCOME_CASES[name]
    problem = _signed(problem, maximize)
    with pytest.raises(expected) as caught:
        solve_lp(**problem, maximize=maximize)
    if expected is Unbounded:
        _check_ray(problem, maximize, caught.value)


DECIDABLE_CASES = [name for name, (problem, _) in OUTCOME_CASES.items()
                   if "A_ub" in problem and np.all(np.isfinite(problem["b_ub"]))]


@pytest.mark.parametrize("name", DECIDABLE_CASES)
@pytest.mark.parametrize("maximize", [False, True])
def test_unbounded_or_infeasible_status_decided_by_the_wrapper(name, maximize):
    """The decision after HiGHS's "unbounded or infeasible", fed that status whatever HiGHS would say."""
    problem, expected = OUTCOME_CASES[name]
    problem = _signed(problem, maximize)
    sign = -1.0 if maximize else 1.0
    built = lp_module._Problem.build(problem["c"], problem["A_ub"], problem["b_ub"], None, None,
                                     problem.get("lb"), problem.get("ub"))
    highs = lp_module._new_highs()
    lp_module._pass_model(highs, built, sign * built.c)
    with pytest.raises(expected) as caught:
        lp_module._map_status(highs, STATUS.kUnboundedOrInfeasible, sign, built.n, built.bounds)
    if expected is Unbounded:
        assert caught.value.ray is not None  # the wrapper's own ray solve always gives one
        _check_ray(problem, maximize, caught.value)


def test_unbounded_ray_is_certificate():
    with pytest.raises(Unbounded) as caught:
        solve_lp([-1.0, 0.0], A_ub=[[1.0, -1.0]], b_ub=[0.0])
    ray = caught.value.ray
    assert ray is not None
    assert ray[0] > 0 and ray[0] - ray[1] <= 1e-9


@pytest.mark.parametrize("c, lb, ub, expected", [
    ([1.0, -1.0], [0.0, -3.0], [2.0, 5.0], -5.0),
    ([0.0, 0.0], None, None, 0.0),
    ([2.0, 0.0], [-1.0, -INF], [1.0, INF], -2.0),
])
def test_lp_without_rows(c, lb, ub, expected):
    result = solve_lp(c, lb=lb, ub=ub)
    assert result.value == pytest.approx(expected)
    assert result.value == pytest.approx(np.dot(c, result.x))


@pytest.mark.parametrize("b_ub, feasible", [([1.0, 0.0], True), ([1.0, -1.0], False)])
def test_lp_without_variables(b_ub, feasible):
    # With n = 0 each row reads 0 <= b_i; HiGHS calls such a model "empty" whatever the rows say.
    A = np.zeros((2, 0))
    if feasible:
        assert solve_lp(np.zeros(0), A_ub=A, b_ub=b_ub).value == 0.0
    else:
        with pytest.raises(Infeasible):
            solve_lp(np.zeros(0), A_ub=A, b_ub=b_ub)


@pytest.mark.parametrize("c, lb, ub", [
    ([1.0, -1.0], [0.0, -3.0], [2.0, 5.0]),
    ([-1.0, 0.0], [0.0, 0.0], [INF, 1.0]),
    ([0.0, 3.0], [-INF, -2.0], [INF, 1.0]),
])
def test_model_empty_status_solved_in_closed_form(c, lb, ub):
    """HiGHS's kModelEmpty is answered coordinate by coordinate, as a real solve would."""
    problem = lp_module._Problem.build(c, None, None, None, None, lb, ub)
    highs = lp_module._new_highs()
    lp_module._pass_model(highs, problem, problem.c)
    try:
        expected = solve_lp(c, lb=lb, ub=ub).value
    except Unbounded:
        with pytest.raises(Unbounded):
            lp_module._map_status(highs, STATUS.kModelEmpty, 1.0, len(c), problem.bounds)
        return
    result = lp_module._map_status(highs, STATUS.kModelEmpty, 1.0, len(c), problem.bounds)
    assert result.value == pytest.approx(expected)
    assert np.all(result.x >= np.asarray(lb)) and np.all(result.x <= np.asarray(ub))


def test_time_limit_gives_solver_error():
    rng = np.random.default_rng(0)
    m, n = 1200, 600
    A = rng.normal(size=(m, n))
    with configure(lp_time_limit=1e-3):
        with pytest.raises(SolverError, match="within 0.001 s"):
            solve_lp(rng.normal(size=n), A_ub=A, b_ub=rng.random(m) + 1.0, lb=-10.0, ub=10.0)


@pytest.mark.parametrize("retries", [0, 1, 2, 3])
def test_unclear_status_retried_then_solver_error(monkeypatch, retries):
    calls = []

    def never_clear(highs, status, sign, n, bounds):
        calls.append(status)

    monkeypatch.setattr(lp_module, "_map_status", never_clear)
    with configure(lp_retries=retries):
        with pytest.raises(SolverError, match="Optimal"):
            solve_lp([1.0], A_ub=[[-1.0]], b_ub=[1.0])
    assert len(calls) == retries + 1


def test_retry_recovers_from_one_unclear_status(monkeypatch):
    original = lp_module._map_status
    calls = []

    def first_unclear(highs, status, sign, n, bounds):
        calls.append(status)
        return None if len(calls) == 1 else original(highs, status, sign, n, bounds)

    monkeypatch.setattr(lp_module, "_map_status", first_unclear)
    assert solve_lp([1.0], A_ub=[[-1.0]], b_ub=[1.0]).value == pytest.approx(-1.0)
    assert len(calls) == 2


def test_thread_count_setting_is_honoured():
    for threads in (1, 2, 1):
        with configure(lp_threads=threads):
            assert solve_lp([1.0], A_ub=[[-1.0]], b_ub=[3.0]).value == pytest.approx(-3.0)


@pytest.mark.parametrize("kwargs, error", [
    (dict(c=[1.0, np.nan]), ValueError),
    (dict(c=[1.0], A_ub=[[np.nan]], b_ub=[1.0]), ValueError),
    (dict(c=[1.0], A_ub=[[1.0, 2.0]], b_ub=[1.0]), ShapeError),
    (dict(c=[1.0], A_ub=[[1.0]], b_ub=[1.0, 2.0]), ShapeError),
    (dict(c=[1.0], A_ub=[[1.0]]), ShapeError),
    (dict(c=[1.0], A_eq=[[1.0]], b_eq=[INF]), ValueError),
    (dict(c=[[1.0]]), ShapeError),
])
def test_bad_input_refused(kwargs, error):
    with pytest.raises(error):
        solve_lp(**kwargs)


def test_lp_model_warm_start_matches_fresh_solves():
    rng = np.random.default_rng(11)
    n, m = 6, 40
    A = rng.normal(size=(m, n))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    b = rng.uniform(0.5, 1.5, m)  # a random polytope around the origin, bounded for m >> n
    A_eq = rng.normal(size=(1, n))
    model = LPModel(n, A_ub=A, b_ub=b, A_eq=A_eq, b_eq=[0.0])
    warm_iterations = fresh_iterations = 0
    for j in range(50):
        c = rng.normal(size=n)
        maximize = j % 2 == 0
        warm = model.maximize(c) if maximize else model.minimize(c)
        fresh = solve_lp(c, A_ub=A, b_ub=b, A_eq=A_eq, b_eq=[0.0], maximize=maximize)
        assert warm.value == pytest.approx(fresh.value, rel=1e-8, abs=1e-10)
        assert np.all(A @ warm.x <= b + 1e-9)
        warm_iterations += warm.iterations
        fresh_iterations += fresh.iterations
    assert model.n_rows == m + 1
    assert warm_iterations < fresh_iterations  # the basis is kept between objectives


def test_lp_model_row_edits_match_fresh_solves():
    rng = np.random.default_rng(12)
    n, m = 4, 20
    A = rng.normal(size=(m, n))
    b = rng.uniform(0.5, 1.5, m)
    model = LPModel(n, A_ub=A, b_ub=b)
    c = rng.normal(size=n)

    def fresh(rows_A, rows_b):
        return solve_lp(c, A_ub=rows_A, b_ub=rows_b, maximize=True).value

    assert model.maximize(c).value == pytest.approx(fresh(A, b))
    i = int(np.argmax(model.maximize(c).row_duals))  # a binding row
    model.set_row_upper(i, b[i] + 0.25)
    relaxed = b.copy()
    relaxed[i] += 0.25
    assert model.maximize(c).value == pytest.approx(fresh(A, relaxed))
    model.restore_row(i)
    assert model.maximize(c).value == pytest.approx(fresh(A, b))
    new_rows = rng.normal(size=(3, n))
    added = model.add_rows(new_rows, np.full(3, -INF), np.full(3, 0.2))
    assert added.tolist() == [m, m + 1, m + 2]
    A2, b2 = np.vstack([A, new_rows]), np.concatenate([b, np.full(3, 0.2)])
    assert model.maximize(c).value == pytest.approx(fresh(A2, b2))
    model.delete_rows([0, m + 1])
    A3, b3 = np.delete(A2, [0, m + 1], axis=0), np.delete(b2, [0, m + 1])
    assert model.n_rows == m + 1
    assert model.maximize(c).value == pytest.approx(fresh(A3, b3))
    model.set_row_upper(model.n_rows - 1, INF)  # the last added row, now relaxed
    assert model.maximize(c).value == pytest.approx(fresh(A3[:-1], b3[:-1]))


def test_lp_model_statuses_match_solve_lp():
    model = LPModel(2, A_ub=[[1.0, 0.0], [-1.0, 0.0]], b_ub=[1.0, 1.0])
    with pytest.raises(Unbounded):
        model.maximize([0.0, 1.0])
    assert model.maximize([1.0, 0.0]).value == pytest.approx(1.0)
    model.set_row_upper(0, -2.0)  # x <= -2 and x >= -1
    with pytest.raises(Infeasible):
        model.minimize([1.0, 0.0])
    model.restore_row(0)
    assert model.minimize([1.0, 0.0]).value == pytest.approx(-1.0)


@pytest.mark.parametrize("bound", [1e19, 1e25, 1e100])
def test_huge_finite_bounds_stay_bounds(bound):
    # HiGHS by default reads bounds >= 1e20 as infinite; here only a true infinity is.
    result = solve_lp([-1.0, 0.0], A_ub=np.eye(2), b_ub=[bound, 1.0])
    assert result.value == -bound
    assert solve_lp([1.0], lb=-bound).value == -bound


@pytest.mark.parametrize("violation, size, trusted", [
    (1e-3, 1.0, False),  # "optimal" yet a row missed by far more than feasibility_tol
    (1e-12, 1.0, True),
    (1e-7, 1e9, True),  # at |x| ~ 1e9 float64 cannot place a point closer than this
])
def test_optimal_point_must_be_feasible(violation, size, trusted):
    # One row x_1 <= 1 met with activity 1 + violation: measured by the wrapper, whatever HiGHS's tolerance.
    fake = SimpleNamespace(getSolution=lambda: SimpleNamespace(col_value=[size, 0.0], row_value=[1.0 + violation]))
    bounds = lp_module._Bounds(np.full(2, -INF), np.full(2, INF), np.array([-INF]), np.array([1.0]), np.ones(1))
    assert lp_module._primal_feasible(fake, bounds) is trusted


# ------------------------------------------------------------------ random campaign against linprog

def test_random_campaign_agrees_with_linprog():
    """Hundreds of random LPs of every kind (feasible, infeasible, unbounded, degenerate, equalities, rows
    scaled by 1e-8..1e8): the wrapper gives linprog's outcome and optimum on every LP linprog decides,
    and never a SolverError. The full campaign (thousands, up to 500 variables) is benchmarks/bench_lp.py."""
    campaign = lp_campaign.run(count=240, seed=11, max_vars=40)
    assert campaign.decided >= 230
    assert campaign.solver_errors == 0
    assert campaign.disagreements == []


def test_random_infeasible_systems_are_proven_infeasible():
    # 60 x 20 random systems: HiGHS's dual simplex with tiny small_matrix_value ended in "unknown" here.
    rng = np.random.default_rng(5)
    for _ in range(60):
        A, b = rng.standard_normal((60, 20)), rng.standard_normal(60)
        expected = scipy.optimize.linprog(np.zeros(20), A_ub=A, b_ub=b, bounds=(None, None), method="highs")
        if expected.status == 2:
            with pytest.raises(Infeasible):
                solve_lp(np.zeros(20), A_ub=A, b_ub=b)
        else:
            assert np.all(A @ solve_lp(np.zeros(20), A_ub=A, b_ub=b).x <= b + 1e-8)


@pytest.mark.parametrize("scale", [1e-170, 1e-8, 1.0, 1e8, 1e160])
def test_rows_of_any_size_mean_the_same_constraint(scale):
    # x <= 1 and -x <= 1 written with rows of size `scale`: the optimum and the duals (d value / d b) agree.
    A = scale * np.array([[1.0, 0.5], [-1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
    b = scale * np.array([1.0, 1.0, 1.0, 1.0])
    result = solve_lp([-1.0, -1.0], A_ub=A, b_ub=b)
    reference = solve_lp([-1.0, -1.0], A_ub=A / scale, b_ub=b / scale)
    assert result.value == pytest.approx(reference.value, rel=1e-12)
    assert result.row_duals * scale == pytest.approx(reference.row_duals, rel=1e-9, abs=1e-12)
    with pytest.raises(Infeasible):
        solve_lp([0.0, 0.0], A_ub=np.vstack([A, -A[:1]]), b_ub=np.concatenate([b, -2.0 * b[:1]]))


def test_degenerate_lp_does_not_stall():
    # Many rows through one vertex and copies of them: the simplex at a 1e-9 primal tolerance stalled
    # for minutes on such LPs; the wrapper solves at HiGHS's tolerance and checks the point at 1e-9.
    rng = np.random.default_rng(3)
    n = 120
    A = rng.standard_normal((300, n))
    x0 = rng.standard_normal(n) * 100.0
    rows = np.vstack([A, 2.0 * A[rng.integers(0, 300, size=300)]])
    rhs = rows @ x0
    c = -(rng.random(300) @ A)
    with configure(lp_time_limit=30.0):
        result = solve_lp(c, A_ub=rows, b_ub=rhs, lb=-1e6, ub=1e6)
    assert result.value == pytest.approx(c @ x0, rel=1e-9)
    assert np.max(rows @ result.x - rhs) <= 1e-9 * np.linalg.norm(rows, axis=1).max() * max(1.0, np.abs(result.x).max())


def test_lp_model_rows_keep_their_scale():
    # Rows added, rebounded and deleted at very different sizes answer as their unit-norm versions.
    model = LPModel(2, A_ub=1e-9 * np.eye(2), b_ub=1e-9 * np.ones(2), lb=-5.0, ub=5.0)
    assert model.maximize([1.0, 1.0]).value == pytest.approx(2.0)
    (row,) = model.add_rows(1e9 * np.array([[1.0, 1.0]]), [-np.inf], [1e9])
    assert model.maximize([1.0, 1.0]).value == pytest.approx(1.0)
    model.set_row_upper(row, 1.5e9)
    result = model.maximize([1.0, 1.0])
    assert result.value == pytest.approx(1.5)
    assert result.row_duals[row] == pytest.approx(1e-9)
    model.restore_row(row)
    assert model.maximize([1.0, 1.0]).value == pytest.approx(1.0)
    model.delete_rows([0])
    assert model.maximize([1.0, 0.0]).value == pytest.approx(5.0)


def test_ipm_first_gives_the_same_answers():
    def outcome(case, **options):
        try:
            return "optimal", solve_lp(case.c, case.A_ub, case.b_ub, **options).value
        except Infeasible:
            return "infeasible", None
        except Unbounded:
            return "unbounded", None

    rng = np.random.default_rng(21)
    for kind in ("feasible", "infeasible", "unbounded") * 6:
        case = lp_campaign.random_case(rng, kind, 12)
        (first, value), (second, value_ipm) = outcome(case), outcome(case, ipm_first=True)
        assert first == second
        if value is not None:
            assert value_ipm == pytest.approx(value, rel=1e-7, abs=1e-7)
