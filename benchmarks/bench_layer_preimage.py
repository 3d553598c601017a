"""Layer-preimage classification at both layers of a 784 -> 3500 -> 784 ReLU MLP (Behrmann et al.'s MNIST net).

Per input and layer: is the preimage of the input's activity a single point, and if not, of which
dimension and is it bounded. Compared with the obvious implementation (numpy's SVD rank of the active
rows, which decides only point / not point) and with the library's own LP route (no witness).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from common import SHARED, ms, table
from threadpoolctl import threadpool_limits

import preimage as pim
from preimage.preimages import layer_preimage


def mnist_like_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n`` inputs in [0, 1]^784: the 100 MNIST test images of the benchmark folder with seeded noise."""
    rng = np.random.default_rng(seed)
    path = SHARED / "mnistcnn" / "mnist_test.csv"
    if path.is_file():
        images = np.loadtxt(path, delimiter=",")[:, 1:] / 255.0
        picks = images[np.arange(n) % len(images)]
        noise = rng.normal(0.0, 0.05, size=picks.shape) * (np.arange(n) >= len(images))[:, None]
        return np.clip(picks + noise, 0.0, 1.0), "the 100 MNIST test images, then noisy copies (sigma 0.05)"
    return rng.random((n, 784)), "uniform random images"


def behrmann_network(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 3500), torch.nn.ReLU(), torch.nn.Linear(3500, 784), torch.nn.ReLU())
    return pim.load(model)


def _time_each(fn, items):
    times, results = [], []
    for item in items:
        start = time.perf_counter()
        results.append(fn(item))
        times.append(time.perf_counter() - start)
    return times, results


def run(n_inputs: int = 1000, n_baseline: int = 100, n_lp: int = 5) -> str:
    net = behrmann_network()
    X, source = mnist_like_inputs(n_inputs)
    rows = []
    layer_inputs = X
    for index, layer in enumerate(net.layers):
        start = time.perf_counter()
        classified = pim.classify_layer(layer, layer_inputs)
        throughput = (time.perf_counter() - start) / n_inputs
        with threadpool_limits(limits=1, user_api="blas"):
            latency, single = _time_each(
                lambda x: (lambda p: (p.kind, p.dim))(layer_preimage(layer, layer(x[None])[0], witness=x)),
                layer_inputs[:n_baseline])
        assert single == list(zip(classified.kind[:n_baseline], classified.dim[:n_baseline]))
        W = layer.affine.dense()
        Z = layer_inputs @ W.T + layer.b
        baseline, ranks = _time_each(lambda z: np.linalg.matrix_rank(W[z > 0]), Z[:n_baseline])
        assert all((rank == layer.in_features) == (kind == "point")
                   for rank, kind in zip(ranks, classified.kind)), "baseline and ours disagree on point / not point"
        lp, lp_results = _time_each(lambda x: (lambda p: (p.kind, p.dim))(layer_preimage(layer, layer(x[None])[0])),
                                    layer_inputs[:n_lp])
        assert lp_results == single[:n_lp], "the LP route and the geometric route disagree"
        counts = ", ".join(f"{k} {v}" for k, v in classified.counts().items())
        rows.append([f"{index} ({layer.in_features} -> {layer.out_features})", ms(throughput),
                     ms(statistics.median(latency)), ms(float(np.percentile(latency, 90))),
                     ms(statistics.median(baseline)), f"{statistics.median(baseline) / throughput:.1f}x",
                     ms(statistics.median(lp)), f"{counts}; median dim {int(np.median(classified.dim))}"])
        layer_inputs = layer(layer_inputs)
    return ("## Layer preimages: 784 -> 3500 -> 784 ReLU MLP\n\n"
            f"{n_inputs} inputs ({source}); weights: PyTorch's default initialisation, seed 0. Per input and layer: "
            "build the preimage of the input's activity and classify it (kind and affine dimension) with the "
            "input as witness: certified rank of the active rows (Gram + shifted Cholesky, SVD fallback), tight "
            "rows, omnidirectionality. *Ours, all inputs*: `pim.classify_layer` over all inputs, wall time / "
            f"inputs (both cores, one BLAS thread per worker). *Ours, one input*: latency of one classification "
            f"(one BLAS thread), first {n_baseline} inputs. Baseline: `numpy.linalg.matrix_rank` of the active "
            f"rows, one input at a time with numpy's default threads (it decides only point / not point), first "
            f"{n_baseline} inputs. LP route: the same classification from the activity alone by HiGHS (no "
            f"witness), first {n_lp} inputs; it agrees with the geometric route. Goal: under 200 ms per input "
            "and layer.\n\n"
            + table(["layer", "ours, all inputs (per input)", "ours, one input: median", "p90",
                     "numpy rank median", "numpy / ours", "LP route median", "classification"], rows)
            + "\n")


if __name__ == "__main__":
    print(run())
