"""Inverse sets of neurons: 500 samples of a hidden neuron of the digits MLP, against two baselines at the same
time budget, and the coverage of the exact inverse set where the preimage engine can compute it.

No public implementation of Hada & Carreira-Perpinan's sampler exists and feature-visualisation libraries only
maximise a unit, so the figures beside ours are the two baselines of ``preimage.inverse``: gradient ascent from
random starts stopped in the range, and a Langevin sampler of the range, each given our median wall time.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from common import table

import preimage as pim
from preimage.demo import train_digits_mlp
from preimage.inverse import coverage, exact_inverse_set, gradient_ascent, langevin, sample_exact
from preimage.inverse.neurons import torch_threads


def _hidden_case(net, X, layer, low=0.7, high=0.95):
    z = net.preactivations(X)[layer]
    unit = int(np.argmax(z.std(axis=0)))
    z1, z2 = (float(v) for v in np.quantile(z[:, unit], [low, high]))
    return (layer, unit), z1, z2


def _rows(results, budget_label):
    rows = []
    ours = results[0]
    for result, label in zip(results, budget_label):
        rows.append([result.method, label, f"{100 * result.in_range:.1f} %", f"{result.diversity:.3f}",
                     f"{result.diversity_in_range():.3f}", f"{result.diversity / ours.diversity:.2f}",
                     f"{1e3 * result.time_per_sample:.3f} ms"])
    return rows


def _samplers(net, neuron, z1, z2, n, box, repeat):
    times, runs = [], []
    for seed in range(repeat):
        start = time.perf_counter()
        runs.append(pim.inverse_set(net, neuron, z1, z2, n, box, rng=seed))
        times.append(time.perf_counter() - start)
    ours = runs[int(np.argsort(times)[len(times) // 2])]
    budget = statistics.median(times)
    results = [ours]
    labels = [f"{budget:.2f} s (median of {repeat})"]
    for factor in (1, 10):
        results.append(gradient_ascent(net, neuron, z1, z2, n, box, rng=0, seconds=factor * budget))
        results.append(langevin(net, neuron, z1, z2, n, box, rng=0, seconds=factor * budget))
        labels += [f"{factor} x ours"] * 2
    return budget, results, labels


def _coverage_rows(exact, results, m, rng):
    uniform = sample_exact(exact, m + results[0].n, rng=rng)
    rows = []
    for result in results:
        measured = coverage(exact, result, uniform=uniform)
        rows.append([result.method, f"{measured.median:.4f}", f"{measured.reference_median:.4f}",
                     f"{measured.ratio:.2f}", f"{100 * measured.inside:.1f} %"])
    return rows


def _plane_net(d: int, seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 1))
    return pim.load(model)


def run(n: int = 500, repeat: int = 3, m: int = 1000, exact_seconds: float = 30.0) -> str:
    with torch_threads(1):
        model, X_train, *_ = train_digits_mlp(seed=0)
        net = pim.load(model)
        box = pim.Box(np.zeros(64), np.ones(64))
        text = ["## Inverse sets of neurons (Hada & Carreira-Perpinan)\n\n",
                f"`pim.inverse_set(net, neuron, z1, z2, {n}, box)` on the digits MLP of `preimage demo` (64 -> 96 -> 48 "
                "-> 10, ReLU, inputs in [0, 1]^64), torch on one thread; the neuron of each layer with the largest "
                "spread of pre-activations on the training images, [z1, z2] its 70 % and 95 % quantiles there. "
                "Diversity: mean pairwise Euclidean distance of the samples (64 pixels; uniform random images give "
                "about 3.27); *in range*: the samples whose neuron lies in [z1, z2] by a float64 forward pass. The "
                "baselines (gradient ascent from random starts stopped in the range; Langevin chains on "
                "exp(-1000 * violation^2)) run for our median time and for ten times it. *ratio*: diversity over "
                "ours.\n"]
        cases = {}
        for layer in (1, 0):
            neuron, z1, z2 = _hidden_case(net, X_train, layer)
            budget, results, labels = _samplers(net, neuron, z1, z2, n, box, repeat)
            cases[layer] = (neuron, z1, z2, results)
            text.append(f"\n### Hidden neuron {neuron} (layer {layer}), range [{z1:.3f}, {z2:.3f}]: {n} samples in "
                        f"{budget:.2f} s\n\n")
            text.append(table(["sampler", "time budget", "in range", "diversity", "diversity of in-range",
                               "ratio", "time per sample"], _rows(results, labels)) + "\n")
        text.append("\n### The exact inverse set (preimage engine, `NeuronRange`) and its coverage\n\n"
                    f"Coverage: for {m} uniform samples of the exact set (hit-and-run), the distance to the nearest "
                    f"sample of each sampler (median), beside the distance to {n} other uniform samples of it; "
                    "*ratio* 1 covers like uniform sampling, above 1 leaves parts of the set farther away; "
                    "*inside*: the sampler's samples that lie in the exact set. Samplers as above at 1 x ours.\n")
        neuron, z1, z2, results = cases[0]
        start = time.perf_counter()
        exact = exact_inverse_set(net, neuron, z1, z2, box)
        seconds = time.perf_counter() - start
        text.append(f"\n**Digits MLP, neuron {neuron}** (first layer: the slab z1 <= w.x + b <= z2 in the cube): "
                    f"{len(exact)} piece(s), complete {exact.complete}, dim {exact.dim}, in {seconds:.2f} s.\n\n")
        text.append(table(["sampler", "median distance", "uniform median", "ratio", "inside"],
                          _coverage_rows(exact, results[:3], m, 1)) + "\n")
        neuron, z1, z2, _ = cases[1]
        start = time.perf_counter()
        deep = exact_inverse_set(net, neuron, z1, z2, box, budget=pim.Budget(seconds=exact_seconds))
        seconds = time.perf_counter() - start
        text.append(f"\n**Digits MLP, neuron {neuron}** (second layer): the search stopped by its budget of "
                    f"{exact_seconds:g} s with {len(deep)} pieces proven (inner) and {len(deep.undecided)} subdomains "
                    f"undecided (outer), complete {deep.complete}, {deep.stats.get('lps', 0)} LPs, {seconds:.1f} s: the "
                    "exact set of a deep unit over 64 inputs is out of reach here, so its coverage is measured on "
                    "low-dimensional nets below.\n")
        for d in (2, 4):
            plane = _plane_net(d)
            square = pim.Box(-np.ones(d), np.ones(d))
            neuron, z1, z2 = _hidden_case(plane, square.sample(5000, rng=0), 1, 0.6, 0.9)
            start = time.perf_counter()
            exact = exact_inverse_set(plane, neuron, z1, z2, square)
            seconds = time.perf_counter() - start
            _, results, _ = _samplers(plane, neuron, z1, z2, n, square, 1)
            text.append(f"\n**{d}-D net** {d} -> 16 -> 16 -> 1 (seeded, inputs in [-1, 1]^{d}), neuron {neuron}, range "
                        f"[{z1:.3f}, {z2:.3f}]: {len(exact)} pieces, complete {exact.complete}, in {seconds:.1f} s; "
                        f"{n} samples each.\n\n")
            text.append(table(["sampler", "in range", "diversity", "median distance", "uniform median", "ratio",
                               "inside"],
                              [[r.method, f"{100 * r.in_range:.1f} %", f"{r.diversity:.3f}", *row[1:]]
                               for r, row in zip(results[:3], _coverage_rows(exact, results[:3], m, 1))]) + "\n")
    return "".join(text)


if __name__ == "__main__":
    from common import ROOT, machine

    from preimage._io import write_atomic

    section = run()
    write_atomic(ROOT / "benchmarks" / "results" / "inverse.md", f"Machine: {machine()}\n\n{section}")
    print(section)
