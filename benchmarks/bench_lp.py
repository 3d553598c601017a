"""The LP wrapper against scipy's linprog on thousands of random LPs (tests/lp_campaign.py at full size).

Kinds in turn: feasible, infeasible, unbounded, degenerate, with equalities, rows scaled from 1e-8 to
1e8; 2 to 500 variables, log-uniform in two tiers. linprog (HiGHS through scipy, rows normalised by numpy) is the
referee; a case counts as agreed when the wrapper gives the same outcome and the same optimum. Also
the defect's own family: 100 random 60 x 20 systems whose emptiness ``Polytope.is_empty`` decides.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import lp_campaign  # noqa: E402
from preimage import Polytope  # noqa: E402
from preimage.errors import SolverError  # noqa: E402


def _emptiness(count: int = 100) -> tuple[int, int, int, float]:
    """(cases, decided as linprog decides, solver errors, seconds) on random 60 x 20 systems."""
    import scipy.optimize

    rng = np.random.default_rng(5)
    agreed = errors = 0
    start = time.perf_counter()
    for _ in range(count):
        A, b = rng.standard_normal((60, 20)), rng.standard_normal(60)
        truth = scipy.optimize.linprog(np.zeros(20), A_ub=A, b_ub=b, bounds=(None, None), method="highs").status
        try:
            empty = Polytope(A, b).is_empty()
        except SolverError:
            errors += 1
            continue
        agreed += empty == (truth == 2)
    return count, agreed, errors, time.perf_counter() - start


# (LPs, fewest variables, most variables): many small and middle-sized LPs, fewer large ones.
TIERS = ((2000, 2, 100), (150, 100, 500))


def run(tiers=TIERS, seed: int = 2026) -> str:
    lines = ["## LP wrapper against linprog", "",
             f"Random LPs, kinds in turn ({', '.join(lp_campaign.KINDS)}), variables log-uniform in each "
             f"tier, seed {seed}. Agreed: same outcome and, when optimal, the same optimum.", "",
             "| LPs | variables | decided by linprog | agreed | agreement | SolverError | wrapper s | linprog s |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    disagreements = Counter()
    for count, low, high in tiers:
        campaign = lp_campaign.run(count=count, seed=seed, max_vars=high, min_vars=low)
        disagreements.update(entry[1] for entry in campaign.disagreements)
        lines.append(f"| {campaign.cases} | {low}-{high} | {campaign.decided} | {campaign.agreed} | "
                     f"{100 * campaign.agreement:.2f} % | {campaign.solver_errors} | "
                     f"{campaign.seconds_ours:.1f} | {campaign.seconds_referee:.1f} |")
    lines.append("")
    if disagreements:
        lines += ["Disagreements by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(disagreements.items())), ""]
    cases, agreed, errors, seconds = _emptiness()
    lines += [f"Emptiness of {cases} random 60 x 20 systems (`Polytope.is_empty`, seed 5): {agreed} agree with "
              f"linprog, {errors} SolverError, {seconds:.2f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each tier's LPs to run")
    args = parser.parse_args()
    print(run(tuple((max(1, round(count * args.scale)), low, high) for count, low, high in TIERS)))
