"""Uniform sampling by hit-and-run (`Polytope.sample`) from 5-D to 50-D: goodness of fit, effective size, speed.

Two bodies whose uniform law is known: the simplex ``{x >= 0, sum x <= 1}``, where ``sum x`` is
Beta(k, 1) and crowds against the facet opposite the Chebyshev centre the chains start from, and a
box of sides 1 to 10 turned at random, whose Chebyshev centre sits at one end of every long side.
"""

from __future__ import annotations

import numpy as np
from common import table, timed
from scipy import stats
from threadpoolctl import threadpool_limits

import preimage as pim
from preimage.geometry.sampling import effective_sample_size, walk_length


def simplex(k: int):
    """The simplex and the statistic ``sum x`` with its law: (polytope, statistic, cdf, coordinates)."""
    polytope = pim.Polytope(np.vstack([-np.eye(k), np.ones((1, k))]), np.concatenate([np.zeros(k), [1.0]]))
    return polytope, lambda X: X.sum(axis=1), stats.beta(k, 1).cdf, lambda X: X


def rotated_box(k: int, aspect: float = 10.0, seed: int = 0):
    """The turned box and its longest side's unit coordinate, uniform on [0, 1]: as :func:`simplex`."""
    rotation = np.linalg.qr(np.random.default_rng(seed).standard_normal((k, k)))[0]
    sides = np.geomspace(1.0, aspect, k)
    polytope = pim.Polytope(np.vstack([np.eye(k), -np.eye(k)]) @ rotation.T, np.concatenate([sides, np.zeros(k)]))

    def unit(X):
        return (X @ rotation) / sides

    return polytope, lambda X: unit(X)[:, -1], stats.uniform.cdf, unit


def run(n: int = 2048, dims=(5, 15, 30, 50), repeat: int = 3) -> str:
    chains = pim.current().hit_and_run_chains
    if n % chains:
        raise ValueError(f"n = {n} must be a multiple of hit_and_run_chains = {chains} to split it into chains")
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for k in dims:
            for name, body in (("simplex", simplex), ("box 1-10, turned", rotated_box)):
                polytope, statistic, cdf, coordinates = body(k)
                polytope.sample(1)  # the affine hull, the Chebyshev ball, the compiled kernels: not timed
                seconds, points = timed(lambda: polytope.sample(n, rng=1), repeat=repeat)
                test = stats.kstest(statistic(points), cdf)
                by_chain = np.concatenate([coordinates(points), statistic(points)[:, None]], axis=1)
                ess = effective_sample_size(by_chain.reshape(n // chains, chains, -1))
                with pim.configure(hit_and_run_burn_in=200, hit_and_run_thin=10):
                    fixed = stats.kstest(statistic(polytope.sample(n, rng=1)), cdf)
                burn_in, thin = walk_length(k)
                worst = min(float(ess[:-1].min()), float(ess[-1]))
                at_ess = stats.kstwobign.sf(np.sqrt(ess[-1]) * test.statistic)
                rows.append([name, k, f"{burn_in} / {thin}", f"{test.statistic:.4f}", f"{test.pvalue:.3g}",
                             f"{at_ess:.3g}", f"{fixed.pvalue:.2g}", f"{ess[-1]:.0f}", f"{ess[:-1].min():.0f}",
                             f"{seconds:.3f} s", f"{worst / seconds:,.0f}"])
    return ("## Uniform sampling: hit-and-run from 5-D to 50-D\n\n"
            f"`Polytope.sample({n}, rng=1)` with the default walk length (`walk_length`: burn-in max(200, 2 k^2) "
            f"steps, thinning max(10, 2 k)), {chains} chains of {n // chains} points each, started at the Chebyshev "
            "centre; one BLAS thread. Simplex `{x >= 0, sum x <= 1}`: statistic `sum x`, Beta(k, 1). Box of sides "
            "1 to 10 (geometric), turned by a random rotation: statistic the unit coordinate of the longest side, "
            "uniform. KS: Kolmogorov-Smirnov test of the statistic against its law, D and p as if the points "
            "were independent; *p at n = ESS*: the asymptotic p of the same D for a sample of the statistic's "
            "effective size, the fairer reading when points of one chain are correlated; *fixed 200 / 10*: the "
            "p of the first test with the former fixed walk length. ESS: `effective_sample_size` of the "
            "statistic and the smallest over the coordinates (x for the simplex, the turned-back unit coordinates "
            f"for the box). ESS/s: the smaller ESS over the median time of {repeat} calls.\n\n"
            + table(["body", "k", "burn-in / thin", "KS D", "KS p", "KS p at n = ESS", "KS p, fixed 200 / 10",
                     "ESS statistic", "ESS worst coordinate", "time", "ESS/s"], rows)
            + "\n")


if __name__ == "__main__":
    print(run())
