"""Two baselines for inverse sets, measured like :func:`inverse_set`: gradient ascent and a Langevin sampler.

``gradient_ascent``: from random starts in the domain, each sample climbs (or descends) its neuron's gradient,
normalised, clipped into the domain, and stops once it is in range: what feature-visualisation tools do, held
at the range. A sample whose gradient vanishes restarts at a new random point.

``langevin``: unadjusted Langevin dynamics on the density ``exp(-beta * sum max(0, g)^2)`` (g the violations of
the range in units of its width) restricted to the domain by clipping; the chains' last states are the samples.

Both run until every sample is in range or a time budget (``seconds``) or step limit is spent, so that a
comparison at the same time budget is one call each.
"""

from __future__ import annotations

import time

import numpy as np

from .._rng import as_generator
from .lagrangian import _Constraints, _Sampler
from .neurons import build_problem, torch_threads
from .result import InverseSet, finish

__all__ = ["compare", "gradient_ascent", "langevin"]


def _setup(model, neuron, z1, z2, n, domain, generator, encoder, rng, input_shape, latent_shape, lr, margin):
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    problem, single = build_problem(model, neuron, z1, z2, domain=domain, generator=generator, encoder=encoder,
                                    input_shape=input_shape, latent_shape=latent_shape)
    sampler = _Sampler(problem, as_generator(rng), weight=0.0, lr=lr, margin=margin, jitter=0.0, inner=1,
                       restarts=0)
    return problem, single, sampler


def _limits(seconds, max_steps):
    if seconds is None and max_steps is None:
        raise ValueError("give a time budget (seconds=) or a step limit (max_steps=)")
    if seconds is not None and not (np.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    return (np.inf if seconds is None else float(seconds)), (np.iinfo(np.int64).max if max_steps is None
                                                                 else int(max_steps))


def gradient_ascent(model, neuron, z1, z2, n: int, domain=None, generator=None, encoder=None, rng=None, *,
                    seconds: float | None = None, max_steps: int | None = None, lr: float | None = None,
                    margin: float = 0.01, input_shape=None, latent_shape=None,
                    threads: int | None = 1) -> InverseSet:
    """``n`` samples by normalised gradient steps on the violation from random starts, each stopped once in range.

    Arguments as :func:`inverse_set`; ``seconds`` / ``max_steps`` bound the run (one of them is needed);
    lr : the length of a step per coordinate (default 2 % of the domain's mean width).
    """
    import torch

    limit, steps_left = _limits(seconds, max_steps)
    with torch_threads(threads):
        started = time.perf_counter()
        problem, single, sampler = _setup(model, neuron, z1, z2, n, domain, generator, encoder, rng, input_shape,
                                          latent_shape, lr, margin)
        constraints: _Constraints = sampler.constraints
        C = sampler.initial(int(n))
        steps = 0
        while steps < steps_left and time.perf_counter() - started < limit:
            C = C.detach().requires_grad_(True)
            X, Z, g, _ = constraints(C)
            out = ~constraints.in_range(X.detach(), Z.detach())
            if not bool(out.any()):
                break
            grad, = torch.autograd.grad(torch.clamp(g, min=0).sum(), C)
            with torch.no_grad():
                flat = grad.reshape(len(grad), -1)
                norm = flat.norm(dim=1).view((-1,) + (1,) * (C.dim() - 1))
                dead = out & (norm.reshape(-1) == 0)
                step = sampler.lr * np.sqrt(flat.shape[1]) * grad / norm.clamp(min=np.finfo(np.float64).tiny)
                C = torch.where(out.view(norm.shape), sampler.project(C - step), C)
                if bool(dead.any()):
                    C[dead] = sampler.initial(int(dead.sum()))
            steps += 1
        C = C.detach()
        with torch.no_grad():
            X = problem.generate(C)
        return finish(problem, X, C, time.perf_counter() - started, steps, "gradient ascent", single=single)


def langevin(model, neuron, z1, z2, n: int, domain=None, generator=None, encoder=None, rng=None, *,
             seconds: float | None = None, max_steps: int | None = None, beta: float = 1e3,
             step: float | None = None, input_shape=None, latent_shape=None,
             threads: int | None = 1) -> InverseSet:
    """``n`` parallel Langevin chains ``c <- clip(c - eta grad U + sqrt(2 eta) xi)``, U = beta sum max(0, g)^2.

    Arguments as :func:`inverse_set`; ``seconds`` / ``max_steps`` bound the run (one of them is needed); beta :
    the inverse temperature of the violation; step : eta (default ``(1e-2 * mean width)^2 / 2``, a noise of 1 %
    of the domain per step).
    """
    import torch

    limit, steps_left = _limits(seconds, max_steps)
    with torch_threads(threads):
        started = time.perf_counter()
        problem, single, sampler = _setup(model, neuron, z1, z2, n, domain, generator, encoder, rng, input_shape,
                                          latent_shape, None, 0.0)
        box = problem.code_box
        width = float(np.mean(box.hi - box.lo)) if box is not None else 1.0
        eta = float(step) if step is not None else 0.5 * (1e-2 * width) ** 2
        noise_scale = float(np.sqrt(2 * eta))
        constraints: _Constraints = sampler.constraints
        C = sampler.initial(int(n))
        steps = 0
        while steps < steps_left and time.perf_counter() - started < limit:
            C = C.detach().requires_grad_(True)
            g = constraints(C)[2]
            grad, = torch.autograd.grad(beta * (torch.clamp(g, min=0) ** 2).sum(), C)
            with torch.no_grad():
                noise = torch.randn(C.shape, generator=sampler.torch_generator, dtype=torch.float64)
                C = sampler.project(C - eta * grad + noise_scale * noise)
            steps += 1
        C = C.detach()
        with torch.no_grad():
            X = problem.generate(C)
        return finish(problem, X, C, time.perf_counter() - started, steps, "Langevin", single=single)


def compare(model, neuron, z1, z2, n: int, domain=None, rng=None, **options) -> list[InverseSet]:
    """:func:`inverse_set`, then both baselines with its wall time as their budget: three InverseSets."""
    from .lagrangian import inverse_set

    ours = inverse_set(model, neuron, z1, z2, n, domain, rng=rng, **options)
    budget = max(ours.seconds, 1e-3)
    shared = {key: options[key] for key in ("input_shape", "latent_shape", "generator", "encoder", "threads")
              if key in options}
    return [ours, gradient_ascent(model, neuron, z1, z2, n, domain, rng=rng, seconds=budget, **shared),
            langevin(model, neuron, z1, z2, n, domain, rng=rng, seconds=budget, **shared)]

