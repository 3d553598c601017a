"""The main job: a small network on scikit-learn's digits and the first things a researcher asks of it.

1. Train a seeded MLP on the 8x8 digits (no download) and import it (checked against torch).
2. Per-layer activation probabilities of the test set (dead and always-on units).
3. For every test image and every hidden layer, the preimage of its activity: a single point, or an
   infinite set of which dimension; Behrmann et al.'s singleton test beside the direct classification.
4. Carlsson et al.'s Figure 1 (left): a 2-D layer, its hyperplanes, the basis e_i, and the preimages
   of activities in different sign sectors (a point, a ray, a cone).

Everything is written to an output folder (PNG figures, a CSV of every test image) atomically.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import write_atomic
from .network.load import load
from .network.network import Network
from .preimages.layer import layer_preimage, layer_preimages, singleton_test

__all__ = ["DemoResult", "run_demo", "train_digits_mlp"]



def _save_figure(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    write_atomic(path, buffer.getvalue())


def train_digits_mlp(hidden=(96, 48), epochs: int = 300, seed: int = 0):
    """A ReLU MLP 64 -> hidden -> 10 trained full-batch with Adam on scikit-learn's digits.

    Returns (model, X_train, y_train, X_test, y_test, test_accuracy); pixels are scaled to [0, 1].
    """
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = digits.data.astype(np.float64) / 16.0
    y = digits.target
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    torch.manual_seed(seed)
    sizes = (X.shape[1], *hidden)
    modules = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        modules += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*modules, torch.nn.Linear(sizes[-1], 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    inputs = torch.tensor(X_train, dtype=torch.float32)
    targets = torch.tensor(y_train)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.tensor(X_test, dtype=torch.float32)).argmax(1).numpy()
    return model, X_train, y_train, X_test, y_test, float(np.mean(predicted == y_test))


@dataclass
class DemoResult:
    """What the demo computed (also returned to tests)."""

    network: Network
    accuracy: float
    activation_probabilities: list
    table: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    agreement: int = 0
    checked: int = 0


def _probability_lines(network: Network, probabilities) -> list[str]:
    lines = ["per-layer activation probabilities on the test set:",
             "  layer  units  mean P(on)  dead (P=0)  always on (P=1)  P in (0.1, 0.9)"]
    for index, p in zip(network.hidden, probabilities):
        middle = np.count_nonzero((p > 0.1) & (p < 0.9))
        lines.append(f"  {index:<5}  {p.size:<5}  {p.mean():<10.3f}  {np.count_nonzero(p == 0):<10}  "
                     f"{np.count_nonzero(p == 1):<15}  {middle}")
    return lines


def _classify_all(network: Network, X: np.ndarray, labels: np.ndarray):
    """For each hidden layer and test image: kind and dimension of the preimage of its activity."""
    rows = []
    agreement = checked = 0
    layer_inputs = X
    for index, layer in enumerate(network.layers):
        if not layer.activation.has_kink:
            break
        for image, (x, pre) in enumerate(zip(layer_inputs, layer_preimages(layer, layer_inputs))):
            test = singleton_test(layer, x)
            by_lp = layer_preimage(layer, pre.y)
            checked += 1
            agreement += int(test.singleton == pre.is_singleton and (by_lp.kind, by_lp.dim) == (pre.kind, pre.dim))
            rows.append({
                "image": image, "label": int(labels[image]), "layer": index,
                "active": int(pre.active.sum()), "kind": pre.kind, "dim": pre.dim,
                "singleton_test": bool(test.singleton), "lp_kind": by_lp.kind, "lp_dim": by_lp.dim,
            })
        layer_inputs = layer(layer_inputs)
    return rows, agreement, checked


def _table_lines(network: Network, rows, n_images: int) -> list[str]:
    lines = [f"preimage of each test image's activity ({n_images} images), in the manner of Behrmann et al.:",
             "  layer  input dim  single point  infinite  dim of infinite (min / median / max)  "
             "active units (median)"]
    for index in network.hidden:
        layer_rows = [r for r in rows if r["layer"] == index]
        if not layer_rows:
            continue
        points = sum(r["kind"] == "point" for r in layer_rows)
        dims = [r["dim"] for r in layer_rows if r["kind"] != "point"]
        spread = f"{min(dims)} / {int(np.median(dims))} / {max(dims)}" if dims else "-"
        active = int(np.median([r["active"] for r in layer_rows]))
        lines.append(f"  {index:<5}  {network.layers[index].in_features:<9}  {points:<12}  "
                     f"{len(layer_rows) - points:<8}  {spread:<38}  {active}")
    return lines


def _carlsson_figure(out: Path, seed: int):
    """A 2x2 ReLU layer with its basis and the preimages of a point, a ray and a cone."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .network.affine import AffineMap
    from .network.layers import RELU, Layer
    from .viz.layer_plot import plot_layer_preimages

    rng = np.random.default_rng(seed)
    W = np.array([[1.0, 0.4], [-0.3, 1.0]]) + 0.1 * rng.standard_normal((2, 2))
    layer = Layer(AffineMap(W, np.array([0.3, -0.2])), RELU, "carlsson")
    activities = np.array([[1.2, 0.8], [1.5, 0.0], [0.0, 1.0], [0.0, 0.0]])
    labels = ["y=(1.2, 0.8)", "y=(1.5, 0)", "y=(0, 1)", "y=(0, 0)"]
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    plot_layer_preimages(layer, activities, ax=ax, labels=labels, bounds=((-3, 3), (-3, 3)))
    ax.set_title("Preimages of one ReLU layer (Carlsson et al., Fig. 1 left)")
    path = out / "layer_preimages_2d.png"
    _save_figure(fig, path)
    plt.close(fig)
    return path


def _probability_figure(out: Path, network: Network, probabilities):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(probabilities), figsize=(4 * len(probabilities), 3), squeeze=False)
    for ax, index, p in zip(axes[0], network.hidden, probabilities):
        ax.hist(p, bins=20, range=(0, 1), color="tab:blue")
        ax.set_title(f"layer {index}: {p.size} units")
        ax.set_xlabel("P(unit on)")
    axes[0][0].set_ylabel("units")
    path = out / "activation_probabilities.png"
    _save_figure(fig, path)
    plt.close(fig)
    return path


def run_demo(out: str | os.PathLike = "preimage-demo", *, epochs: int = 300, n_test: int | None = None,
             seed: int = 0, echo=print) -> DemoResult:
    """Run the demo, writing figures and a CSV under ``out``; ``echo`` receives each printed line."""
    out = Path(out)
    started = time.perf_counter()
    model, _, _, X_test, y_test, accuracy = train_digits_mlp(epochs=epochs, seed=seed)
    network = load(model)
    network.name = "digits MLP"
    if n_test is not None:
        X_test, y_test = X_test[:n_test], y_test[:n_test]
    echo(network.summary())
    echo(f"test accuracy: {accuracy:.3f} (imported network agrees with torch to the import tolerance)")
    echo("")
    probabilities = network.patterns(X_test).activation_probabilities()
    for line in _probability_lines(network, probabilities):
        echo(line)
    echo("")
    rows, agreement, checked = _classify_all(network, X_test, y_test)
    for line in _table_lines(network, rows, len(X_test)):
        echo(line)
    echo(f"  geometric classification, Behrmann et al.'s singleton test and the LP classification agree on "
         f"{agreement} of {checked} preimages")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    table_path = out / "layer_preimages.csv"
    write_atomic(table_path, buffer.getvalue().encode())
    figures = [_probability_figure(out, network, probabilities), _carlsson_figure(out, seed)]
    echo("")
    echo(f"wrote {table_path}, " + ", ".join(str(p) for p in figures))
    echo(f"done in {time.perf_counter() - started:.1f} s")
    return DemoResult(network, accuracy, probabilities, rows, figures, agreement, checked)
