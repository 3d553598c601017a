"""The main job: a small network on scikit-learn's digits and the first things a researcher asks of it.

1. Train a seeded MLP on the 8x8 digits (no download) and import it (checked against torch).
2. Per-layer activation probabilities of the test set (dead and always-on units).
3. For every test image and every hidden layer, the preimage of its activity: a single point, or an
   infinite set of which dimension; Behrmann et al.'s singleton test beside the direct classification.
4. Carlsson et al.'s Figure 1 (left): a 2-D layer, its hyperplanes, the basis e_i, and the preimages
   of activities in different sign sectors (a point, a ray, a cone).
5. Carlsson et al.'s Figure 1 (right): a 2-D input network of three ReLU layers of two units; the exact
   preimages (``pim.preimage``) of chosen activities at every level drawn in the input plane, the set
   irreversibly mapped to (0, 0) among them.
6. The exact ArgMax regions of the digits MLP on the plane through three test images (the MLP composed
   with the plane's affine map is a 2-input network, searched by the same engine).

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
from .geometry import Box
from .network.affine import AffineMap
from .network.layers import RELU, Layer
from .network.load import load
from .network.network import Network
from .preimages.engine import preimage
from .preimages.layer import layer_preimage, layer_preimages, singleton_test
from .preimages.preimage_set import PreimageSet
from .preimages.targets import Activity, ArgMax
from .regions.partition import plane_network

__all__ = ["DemoResult", "LevelPreimage", "PlaneRegions", "carlsson_network", "level_preimages", "plane_regions",
           "run_demo", "train_digits_mlp"]

# Carlsson et al.'s Figure 1 (right): (W, b) of three ReLU layers 2 -> 2 -> 2 -> 2, the inputs whose activities
# are followed through the levels, and the window drawn.
_CARLSSON_LAYERS = (
    (((0.04, -1.59), (1.41, 1.57)), (0.15, -0.14)),
    (((-1.31, 1.65), (0.42, 0.41)), (-0.31, -0.52)),
    (((-0.15, 1.2), (-1.44, 0.01)), (-0.21, -0.45)),
)
_CARLSSON_POINTS = ((1.7, -1.1), (2.1, 0.0))
_CARLSSON_VIEW = Box(np.array([-3.0, -3.0]), np.array([3.0, 3.0]))


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
    levels: list = field(default_factory=list)
    plane: "PlaneRegions | None" = None


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


def carlsson_network(layers=_CARLSSON_LAYERS) -> Network:
    """The 2-D input network of Carlsson et al.'s Figure 1 (right): three ReLU layers of two units.

    layers : three ``(W (2, 2), b (2,))`` pairs; the default is the fixed network the demo draws.
    """
    return Network([Layer(AffineMap(np.array(W, dtype=np.float64), np.array(b, dtype=np.float64)), RELU,
                          f"level {k + 1}") for k, (W, b) in enumerate(layers)], name="Carlsson 2-2-2-2")


@dataclass(frozen=True, eq=False)
class LevelPreimage:
    """The exact preimage of one activity ``y`` (units,) at one level (``net.layers[level]``).

    label : its legend text. point : the index of the chosen input whose activity ``y`` is, or None for
    ``y = 0``. whole : the preimage in the whole input plane (``domain=None``; may be unbounded).
    shown : the preimage within the window drawn (a bounded domain: it can be sampled).
    """

    level: int
    y: np.ndarray
    label: str
    point: int | None
    whole: PreimageSet
    shown: PreimageSet

    @property
    def zero(self) -> bool:
        return self.point is None


def level_preimages(net: Network, points, view: Box) -> list[list[LevelPreimage]]:
    """At every layer of a 2-input network: the exact preimages of the chosen inputs' activities and of 0.

    points : (k, 2) inputs. view : the window (a Box) within which each preimage is also computed.
    Returns one list per layer: the k activities' preimages, then the preimage of the zero activity (the
    inputs irreversibly mapped to 0 there).
    """
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    activities = net.activations(points)
    levels = []
    for level, layer in enumerate(net.layers):
        wanted = [(activities[level][k], f"$a^{level + 1}(x_{k + 1})$", k) for k in range(len(points))]
        wanted.append((np.zeros(layer.out_features), "$a^{%d} = 0$" % (level + 1), None))
        entries = []
        for y, label, k in wanted:
            target = Activity(level, y)
            text = f"{label} = ({', '.join(f'{v:.2f}' for v in y)})" if k is not None else label
            entries.append(LevelPreimage(level, y, text, k, preimage(net, target, None),
                                         preimage(net, target, view)))
        levels.append(entries)
    return levels


def _level_figure(out: Path, levels, points, view: Box):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .viz.preimage_plot import plot_level_preimages

    fig, axes = plt.subplots(1, len(levels), figsize=(5.2 * len(levels), 5.0), squeeze=False)
    bounds = (view.lo[0], view.hi[0], view.lo[1], view.hi[1])
    plot_level_preimages([[(e.label, e.whole, e.shown, e.zero) for e in entries] for entries in levels],
                         bounds=bounds, points=points, axes=axes[0])
    fig.suptitle("Exact preimages through a 2-2-2-2 ReLU network, level by level "
                 "(Carlsson et al., Fig. 1 right)")
    path = out / "network_preimages_2d.png"
    _save_figure(fig, path)
    plt.close(fig)
    return path


@dataclass(frozen=True, eq=False)
class PlaneRegions:
    """The exact ArgMax regions of a classifier on the plane ``origin + s u + t v``, (s, t) in ``box``.

    images : (3, d) the inputs the plane goes through, at (s, t) = (0, 0), (1, 0), (0, 1). labels : (3,)
    their true classes. planar : the 2-input network ``(s, t) -> net(origin + s u + t v)``.
    sets : one PreimageSet per class c, ``pim.preimage(planar, ArgMax(c), box)``.
    """

    images: np.ndarray
    labels: np.ndarray
    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    box: Box
    planar: Network
    sets: list

    def to_input(self, st) -> np.ndarray:
        """Plane coordinates (n, 2) -> inputs (n, d)."""
        st = np.atleast_2d(np.asarray(st, dtype=np.float64))
        return self.origin + st[:, :1] * self.u + st[:, 1:2] * self.v


def plane_regions(net: Network, images, labels, margin: float = 0.25) -> PlaneRegions:
    """The exact ArgMax set of every class of ``net`` on the plane through three inputs.

    images : (3, d). labels : (3,). The plane's window is (s, t) in [-margin, 1 + margin]^2.
    """
    images = np.asarray(images, dtype=np.float64).reshape(3, -1)
    origin, u, v = images[0], images[1] - images[0], images[2] - images[0]
    planar = plane_network(net, origin, u, v)
    box = Box(np.full(2, -float(margin)), np.full(2, 1.0 + float(margin)))
    sets = [preimage(planar, ArgMax(c), box) for c in range(net.output_dim)]
    return PlaneRegions(images, np.asarray(labels), origin, u, v, box, planar, sets)


def _plane_images(y: np.ndarray) -> np.ndarray:
    """The indices of the first test images of the first three distinct labels."""
    _, first = np.unique(y, return_index=True)
    return np.sort(first)[:3]


def _plane_figure(out: Path, plane: PlaneRegions, predicted):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .viz.preimage_plot import plot_argmax_regions

    fig, ax = plt.subplots(figsize=(7, 7))
    marks = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = [f"image {k + 1}: a {int(a)} (net: {int(b)})" for k, (a, b) in
              enumerate(zip(plane.labels, predicted))]
    box = plane.box
    plot_argmax_regions(plane.sets, bounds=(box.lo[0], box.hi[0], box.lo[1], box.hi[1]), marks=marks,
                        mark_labels=labels, ax=ax)
    ax.set_title("Exact ArgMax regions of the digits MLP on the plane through three test images")
    path = out / "plane_argmax_regions.png"
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
    X_full, y_full = X_test, y_test
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
    carlsson = carlsson_network()
    levels = level_preimages(carlsson, _CARLSSON_POINTS, _CARLSSON_VIEW)
    figures.append(_level_figure(out, levels, np.array(_CARLSSON_POINTS), _CARLSSON_VIEW))
    echo("exact preimages through a 2-2-2-2 ReLU network (Carlsson et al., Fig. 1 right):")
    for entries in levels:
        zero = entries[-1]
        echo(f"  level {zero.level + 1}: " + "; ".join(
            f"{'y = 0' if e.zero else f'y = a(x{e.point + 1})'} -> {e.whole.kind} (dim {e.whole.dim}, "
            f"{len(e.whole)} pieces)" for e in entries))
    chosen = _plane_images(y_full)
    plane = plane_regions(network, X_full[chosen], y_full[chosen])
    predicted = network.forward(plane.images).argmax(axis=1)
    figures.append(_plane_figure(out, plane, predicted))
    won = [(c, s) for c, s in enumerate(plane.sets) if len(s)]
    echo(f"exact ArgMax regions on the plane through test images {', '.join(str(i) for i in chosen)} "
         f"(labels {', '.join(str(int(v)) for v in plane.labels)}): " + ", ".join(
             f"class {c} {len(s)} pieces {s.fraction().value:.1%}" for c, s in won))
    echo("")
    echo(f"wrote {table_path}, " + ", ".join(str(p) for p in figures))
    echo(f"done in {time.perf_counter() - started:.1f} s")
    return DemoResult(network, accuracy, probabilities, rows, figures, agreement, checked, levels, plane)
