"""Sampling an inverse set by the augmented Lagrangian method (Hada & Carreira-Perpinan).

The samples c_1..c_n maximise the diversity ``sum_{i,j} ||E(G(c_i)) - E(G(c_j))||^2`` subject to
``z1 <= f(G(c_i)) <= z2`` and ``G(c_i)`` a valid input. With inequality constraints ``g(c) <= 0`` (measured in
units of the range's width) the augmented Lagrangian is

    L(c, lambda; mu) = -w D(c) / q + sum_{i, r} [ mu/2 max(0, g_ir + lambda_ir / mu)^2 - lambda_ir^2 / (2 mu) ],

minimised over c by Adam steps, with ``lambda <- max(0, lambda + mu g)`` every few steps and ``mu`` doubled
while the largest violation does not halve. Without a generator the box of valid inputs is kept by projection
(exact); with one, its rows are constraints of L as well. The paper's two speed-ups: the first K samples are
optimised until they are feasible (and ``min_steps`` have passed); the rest are made K at a time from the
previous batch, jittered, with one step each, repelled from every earlier sample: the gradient of D for a new
sample is ``4 (e_i - mean of all samples so far)``. A last repair phase descends the violation alone for any
sample still out of range, restarting a sample whose gradient vanishes (a dead ReLU region) or that stalls
from a jittered copy of a feasible one.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from tqdm.auto import tqdm

from .._rng import as_generator
from .neurons import Problem, build_problem, torch_threads
from .result import InverseSet, finish

__all__ = ["inverse_set"]

log = logging.getLogger(__name__)

_MU_MAX = 1e6


class _Adam:
    """Adam on a (b, ...) tensor whose rows can be held still (a mask), so a row at rest keeps no momentum."""

    def __init__(self, shape, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        import torch

        self.lr, self.betas, self.eps = float(lr), betas, eps
        self.m = torch.zeros(shape, dtype=torch.float64)
        self.v = torch.zeros(shape, dtype=torch.float64)
        self.t = torch.zeros(shape[0], dtype=torch.float64)

    def step(self, C, grad, rows=None):
        """C - the Adam step of ``grad`` on the rows ``rows`` ((b,) bool; all when None)."""
        import torch

        rows = torch.ones(C.shape[0], dtype=torch.bool) if rows is None else rows
        b1, b2 = self.betas
        shape = (-1,) + (1,) * (C.dim() - 1)
        self.t = self.t + rows.double()
        self.m = torch.where(rows.view(shape), b1 * self.m + (1 - b1) * grad, self.m)
        self.v = torch.where(rows.view(shape), b2 * self.v + (1 - b2) * grad * grad, self.v)
        t = self.t.clamp(min=1).view(shape)
        update = self.lr * (self.m / (1 - b1 ** t)) / (torch.sqrt(self.v / (1 - b2 ** t)) + self.eps)
        return torch.where(rows.view(shape), C - update, C)


class _Constraints:
    """``g(C) <= 0`` of a problem: (b, r) rows in units of each range (lower sides, upper sides, box rows)."""

    def __init__(self, problem: Problem, margin: float):
        import torch

        self.problem = problem
        lo = problem.lo + margin * problem.scale
        hi = problem.hi - margin * problem.scale
        middle = 0.5 * (problem.lo + problem.hi)
        finite_both = np.isfinite(problem.lo) & np.isfinite(problem.hi)
        lo = np.where(finite_both & (lo > hi), middle, lo)
        hi = np.where(finite_both & (lo > hi), middle, hi)
        self.lower = torch.tensor(np.flatnonzero(np.isfinite(problem.lo)))
        self.upper = torch.tensor(np.flatnonzero(np.isfinite(problem.hi)))
        self.lo = torch.tensor(lo[np.isfinite(lo)])
        self.hi = torch.tensor(hi[np.isfinite(hi)])
        scale = torch.tensor(problem.scale)
        self.lo_scale, self.hi_scale = scale[self.lower], scale[self.upper]
        self.box = problem.has_generator and problem.domain is not None
        if self.box:
            width = np.maximum(problem.domain.hi - problem.domain.lo, 1.0)
            self.box_lo = torch.tensor(problem.domain.lo)
            self.box_hi = torch.tensor(problem.domain.hi)
            self.box_width = torch.tensor(width)

    def __call__(self, C):
        """(X, activations (b, k), g (b, r), features (b, q)) at codes C."""
        import torch

        X = self.problem.generate(C)
        Z = self.problem.activations(X)
        parts = [(self.lo - Z[:, self.lower]) / self.lo_scale, (Z[:, self.upper] - self.hi) / self.hi_scale]
        if self.box:
            flat = X.reshape(X.shape[0], -1)
            parts += [(self.box_lo - flat) / self.box_width, (flat - self.box_hi) / self.box_width]
        return X, Z, torch.cat(parts, dim=1), self.problem.encode(X)

    def in_range(self, X, Z):
        """(b,) bool: every neuron in its exact range and X valid (the samples the result will count)."""
        import torch

        lo, hi = torch.tensor(self.problem.lo), torch.tensor(self.problem.hi)
        ok = torch.all((Z >= lo) & (Z <= hi), dim=1)
        domain = self.problem.domain
        if domain is not None:
            flat = X.reshape(X.shape[0], -1)
            ok &= torch.all((flat >= torch.tensor(domain.lo)) & (flat <= torch.tensor(domain.hi)), dim=1)
        return ok


def _diversity(F, earlier):
    """``sum_{i in B} sum_{j in B u P} ||f_i - f_j||^2 / (|B| + |P|)`` (pairs within B once, across B, P twice).

    F : (b, q) the batch; earlier : (m, S (q,), Q) count, sum and sum of squared norms of the earlier samples.
    """
    b = F.shape[0]
    m, S, Q = earlier
    norms = (F * F).sum()
    total = F.sum(dim=0)
    within = 2 * b * norms - 2 * (total * total).sum()
    cross = m * norms - 2 * (total * S).sum() + b * Q
    return (within + 2 * cross) / (b + m)


class _Sampler:
    def __init__(self, problem: Problem, generator, *, weight, lr, margin, jitter, inner, restarts):
        import torch

        self.problem = problem
        self.constraints = _Constraints(problem, margin)
        self.generator = generator
        self.torch_generator = torch.Generator().manual_seed(int(generator.integers(2**62)))
        self.weight, self.jitter, self.inner, self.restarts = weight, jitter, inner, restarts
        box = problem.code_box
        self.width = torch.tensor(box.hi - box.lo).reshape(problem.code_shape) if box is not None else 1.0
        mean_width = float(np.mean(box.hi - box.lo)) if box is not None else 1.0
        self.lr = lr if lr is not None else 0.02 * (mean_width if mean_width > 0 else 1.0)
        self.steps = 0
        self.restarted = 0

    def initial(self, b: int):
        """b codes: uniform in the code box, else standard normal."""
        import torch

        box = self.problem.code_box
        if box is not None:
            U = torch.rand((b, self.problem.code_dim), generator=self.torch_generator, dtype=torch.float64)
            return (torch.tensor(box.lo) + U * torch.tensor(box.hi - box.lo)).reshape(b, *self.problem.code_shape)
        return torch.randn((b, *self.problem.code_shape), generator=self.torch_generator, dtype=torch.float64)

    def project(self, C):
        import torch

        box = self.problem.code_box
        if box is None:
            return C
        shape = self.problem.code_shape
        return torch.clamp(C, torch.tensor(box.lo).reshape(shape), torch.tensor(box.hi).reshape(shape))

    def jittered(self, C):
        import torch

        noise = torch.randn(C.shape, generator=self.torch_generator, dtype=torch.float64)
        return self.project(C + self.jitter * self.width * noise)

    def _lagrangian(self, C, lam, mu, earlier):
        import torch

        X, Z, g, F = self.constraints(C)
        penalty = (mu / 2) * torch.clamp(g + lam / mu, min=0) ** 2 - lam ** 2 / (2 * mu)
        loss = penalty.sum()
        if self.weight:
            loss = loss - self.weight * _diversity(F, earlier) / F.shape[1]
        return loss, X, Z, g

    def optimise(self, C, lam, mu, earlier, *, min_steps: int, max_steps: int, stall: int):
        """Augmented Lagrangian steps on a batch until it is in range (after ``min_steps``) or ``max_steps``.

        lam : (b, r) the multipliers; mu : (b, 1) each sample's penalty, doubled while its largest violation does
        not halve (one stubborn sample does not stiffen the others). It also stops after ``min_steps`` once
        ``stall`` steps have passed without more samples in range (the rest are left to the repair).
        Returns (C, lam, mu, steps taken).
        """
        import torch

        adam = _Adam(C.shape, self.lr)
        worst = torch.full((len(C), 1), np.inf, dtype=torch.float64)
        taken = 0
        best, best_step = -1, 0
        for step in range(max_steps):
            C = C.detach().requires_grad_(True)
            loss, X, Z, g = self._lagrangian(C, lam, mu, earlier)
            grad, = torch.autograd.grad(loss, C)
            inside = int(self.constraints.in_range(X.detach(), Z.detach()).sum())
            if inside > best:
                best, best_step = inside, step
            if step >= min_steps and (inside == len(C) or step - best_step >= stall):
                break
            with torch.no_grad():
                C = self.project(adam.step(C, grad))
            taken += 1
            if (step + 1) % self.inner == 0:
                with torch.no_grad():
                    g = self.constraints(C)[2]
                    lam = torch.clamp(lam + mu * g, min=0)
                    violation = torch.clamp(g, min=0).amax(dim=1, keepdim=True)
                    mu = torch.where(violation > 0.5 * worst, torch.clamp(2 * mu, max=_MU_MAX), mu)
                    worst = violation
        self.steps += taken
        return C.detach(), lam.detach(), mu, taken

    def repair(self, C, max_steps: int, patience: int):
        """Descend the violation of the samples out of range.

        A row whose gradient vanishes (a dead ReLU region, a saturated generator), or that is still out of range
        after ``patience`` steps, restarts from a jittered copy of a row in range (a fresh start when none is).
        """
        import torch

        adam = _Adam(C.shape, self.lr)
        for _ in range(max_steps):
            C = C.detach().requires_grad_(True)
            X, Z, g, _ = self.constraints(C)
            out = ~self.constraints.in_range(X.detach(), Z.detach())
            if not bool(out.any()):
                break
            grad, = torch.autograd.grad((torch.clamp(g, min=0) ** 2).sum(), C)
            with torch.no_grad():
                C = self.project(adam.step(C, grad, out))
                flat = grad.reshape(grad.shape[0], -1)
                stuck = out & ((flat.abs().amax(dim=1) == 0) | (adam.t >= patience))
                if bool(stuck.any()) and self.restarted < self.restarts:
                    inside = torch.nonzero(~out).flatten()
                    count = int(stuck.sum())
                    if len(inside):
                        pick = inside[torch.randint(len(inside), (count,), generator=self.torch_generator)]
                        C[stuck] = self.jittered(C[pick])
                    else:
                        C[stuck] = self.initial(count)
                    adam.m[stuck] = 0
                    adam.v[stuck] = 0
                    adam.t[stuck] = 0
                    self.restarted += count
            self.steps += 1
        return C.detach()


def inverse_set(model, neuron, z1, z2, n: int, domain=None, generator=None, encoder=None, rng=None, *,
                input_shape=None, latent_shape=None, diversity_weight: float = 1.0, first: int = 50,
                batch: int | None = None, steps_per_batch: int = 1, min_steps: int = 100, max_steps: int = 2000,
                repair_steps: int = 1000, lr: float | None = None, jitter: float = 0.1, margin: float = 0.01,
                mu: float = 10.0, inner: int = 10, restarts: int = 10_000, progress: bool = False,
                threads: int | None = 1) -> InverseSet:
    """``n`` diverse samples of ``{x valid : z1 <= f(x) <= z2}`` for a neuron f, by the augmented Lagrangian.

    Parameters
    ----------
    model : a ``pim.Network``, any ``torch.nn.Module``, or anything ``pim.load`` reads.
    neuron : ``(layer, unit)``, or a list of them for the intersection of their inverse sets. For a Network the
        layer indexes ``net.layers`` and the value is the unit's pre-activation; for a torch module the layer
        names a submodule (``named_modules``) and the value is its output; a unit is a flat index into one
        sample's output or a tuple indexing its shape.
    z1, z2 : the range, scalars or one per neuron; ``z1 < z2``; one side may be infinite.
    n : the number of samples.
    domain : the Box of valid inputs (flattened), a ``(lo, hi)`` pair, or None (a Network's own input box, else
        unconstrained).
    generator : a torch module c -> x (a decoder); the codes c are optimised and x = G(c) must be valid.
    encoder : a torch module x -> features in which diversity is measured (default: the input itself).
    rng : numpy Generator, int seed or None (seed 0).
    input_shape : the shape of one input of a torch module (default: ``(domain.dim,)``).
    latent_shape : the shape of one code of the generator (default: its first Linear's inputs).
    diversity_weight : w above; 0 switches the diversity objective off.
    first, batch : K, the samples optimised together first, and the size of each later batch (default K).
    steps_per_batch : augmented Lagrangian steps of each later batch (the paper takes one).
    min_steps, max_steps : steps of the first batch before it may stop at feasibility, and at most; it also
        stops when ``min_steps`` steps pass without one more sample in range.
    repair_steps : steps of the final descent of the violation, per batch; a sample still out of range after a
        quarter of them restarts from a jittered copy of one in range.
    lr : Adam's step (default 2 % of the mean width of the domain). jitter : noise of a new batch, as a fraction
        of the domain's widths. margin : the optimisation aims at ``[z1 + margin s, z2 - margin s]``, s the width.
    mu, inner : the first penalty of every sample and the steps between multiplier updates. restarts : most restarts of
        samples in the repair, over the whole run. progress : a progress bar over the batches. threads : torch's threads
        during the call (None: leave torch's setting).

    Returns
    -------
    InverseSet with ``samples`` (n, *input_shape), ``activations``, ``in_range`` (fraction; 1.0 unless
    ``reason`` says why), ``diversity`` (input space), ``diversity_encoded``, ``time_per_sample``.
    """
    import torch

    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    for name, value in (("first", first), ("steps_per_batch", steps_per_batch), ("max_steps", max_steps)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if batch is not None and (int(batch) != batch or batch < 1):
        raise ValueError(f"batch must be a positive integer or None, got {batch!r}")
    if not np.isfinite(diversity_weight) or diversity_weight < 0:
        raise ValueError(f"diversity_weight must be a finite number >= 0, got {diversity_weight!r}")
    n = int(n)
    with torch_threads(threads):
        started = time.perf_counter()
        problem, single = build_problem(model, neuron, z1, z2, domain=domain, generator=generator, encoder=encoder,
                                        input_shape=input_shape, latent_shape=latent_shape)
        sampler = _Sampler(problem, as_generator(rng), weight=float(diversity_weight), lr=lr, margin=float(margin),
                           jitter=float(jitter), inner=int(inner), restarts=int(restarts))
        first = min(int(first), n)
        batch = int(batch) if batch is not None else first
        with torch.no_grad():
            q = problem.encode(problem.generate(sampler.initial(1))).shape[1]
        earlier = (0, torch.zeros(q, dtype=torch.float64), torch.zeros((), dtype=torch.float64))
        rows = sampler.constraints(sampler.initial(1))[2].shape[1]
        C = sampler.initial(first)
        lam = torch.zeros((first, rows), dtype=torch.float64)
        penalty = torch.full((first, 1), float(mu), dtype=torch.float64)
        done = []
        bar = tqdm(total=n, desc="inverse set", unit="sample", disable=not progress)
        while True:
            if not done:
                C, lam, penalty, _ = sampler.optimise(C, lam, penalty, earlier, min_steps=int(min_steps),
                                                      max_steps=int(max_steps), stall=max(int(min_steps), 1))
            else:
                C, lam, penalty, _ = sampler.optimise(C, lam, penalty, earlier, min_steps=int(steps_per_batch),
                                                      max_steps=int(steps_per_batch), stall=int(steps_per_batch))
            C = sampler.repair(C, int(repair_steps), max(1, int(repair_steps) // 4))
            done.append(C)
            bar.update(len(C))
            with torch.no_grad():
                F = problem.encode(problem.generate(C))
            earlier = (earlier[0] + len(F), earlier[1] + F.sum(dim=0), earlier[2] + (F * F).sum())
            count = sum(len(part) for part in done)
            if count >= n:
                break
            size = min(batch, n - count)
            source = np.resize(np.arange(len(C)), size)
            C = sampler.jittered(C[source])
            lam, penalty = lam[source], penalty[source]
        bar.close()
        codes = torch.cat(done)[:n]
        with torch.no_grad():
            X = problem.generate(codes)
        result = finish(problem, X, codes, time.perf_counter() - started, sampler.steps, "augmented Lagrangian",
                        single=single)
        if result.in_range < 1.0:
            result.reason += (f" after {max_steps} augmented Lagrangian and {repair_steps} repair steps per batch "
                              "(the range may be unreachable in the domain, or reached only on a thin set)")
        log.debug("%s", result.summary())
        return result
