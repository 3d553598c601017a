"""Inverse sets on scikit-learn's digits (no download): what the inputs that excite a neuron look like.

An MLP (as a ``pim.Network``) and a small CNN (as a plain torch module) are trained on the 8x8 digits; a small
decoder is trained as the generator. For each case 64 samples are drawn by ``inverse_set`` and written as an
image grid, with a CSV of the measures beside the two baselines at the same time budget:

- an output neuron (a class logit) held high, with and without the decoder as generator;
- a hidden neuron at two activation ranges (moderately and strongly excited);
- the intersection of two class neurons (both logits high);
- the CNN's class neuron and one unit of its convolution.

Run ``python -m preimage.inverse.demo [folder]``; everything is written atomically.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import write_atomic
from ..geometry import Box
from .baselines import gradient_ascent, langevin
from .lagrangian import inverse_set
from .neurons import torch_threads
from .result import InverseSet

__all__ = ["InverseDemo", "run_inverse_demo", "train_digits_cnn", "train_digits_decoder"]


def _digits(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = digits.data.astype(np.float64) / 16.0
    return train_test_split(X, digits.target, test_size=0.2, random_state=seed, stratify=digits.target)


def train_digits_cnn(X_train, y_train, epochs: int = 150, seed: int = 0):
    """A CNN conv(1->8, 3x3) - ReLU - avgpool 2 - flatten - linear(128 -> 10), trained full batch with Adam.

    X_train : (n, 64) pixels in [0, 1]. Returns the model in float64, eval mode.
    """
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    inputs = torch.tensor(X_train, dtype=torch.float32).reshape(-1, 1, 8, 8)
    targets = torch.tensor(y_train)
    for _ in range(epochs):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimiser.step()
    return model.double().eval()


def train_digits_decoder(X_train, latent: int = 8, epochs: int = 400, seed: int = 0):
    """An autoencoder 64 -> 32 -> latent -> 32 -> 64 (sigmoid out) trained full batch; returns the decoder.

    The decoder maps a latent (n, latent) to images (n, 64) in (0, 1): the generator G of ``inverse_set``.
    """
    import torch

    torch.manual_seed(seed)
    encoder = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, latent))
    decoder = torch.nn.Sequential(torch.nn.Linear(latent, 32), torch.nn.ReLU(), torch.nn.Linear(32, 64),
                                  torch.nn.Sigmoid())
    optimiser = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=5e-3)
    inputs = torch.tensor(X_train, dtype=torch.float32)
    for _ in range(epochs):
        optimiser.zero_grad()
        codes = encoder(inputs)
        loss = torch.nn.functional.mse_loss(decoder(codes), inputs) + 1e-3 * (codes ** 2).mean()
        loss.backward()
        optimiser.step()
    return decoder.double().eval()


@dataclass
class InverseDemo:
    """What the demo drew: one row per case (name, the three InverseSets, the figure's path)."""

    cases: list = field(default_factory=list)
    table: Path | None = None
    seconds: float = 0.0


def _figure(out: Path, name: str, results: list[InverseSet], titles: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4.6), squeeze=False)
    for ax, result, title in zip(axes[0], results, titles):
        result.plot(ax, image_shape=(8, 8), limit=64, title=title)
    path = out / f"inverse_{name}.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path


def _title(result: InverseSet) -> str:
    return (f"{result.method}\nin range {100 * result.in_range:.0f} %, diversity {result.diversity:.2f}, "
            f"{1e3 * result.time_per_sample:.2f} ms/sample")


def run_inverse_demo(out: str | os.PathLike = "preimage-inverse-demo", *, n: int = 64, seed: int = 0,
                     epochs: int = 300, echo=print) -> InverseDemo:
    """Train the models, sample every case, write ``inverse_<case>.png`` and ``inverse_sets.csv`` under ``out``.

    epochs : full-batch epochs of the MLP (the CNN gets half as many, the decoder four thirds).

    Torch runs on one thread throughout (the models and batches are small).
    """
    with torch_threads(1):
        return _run(Path(out), n, seed, epochs, echo)


def _run(out: Path, n: int, seed: int, epochs: int, echo) -> InverseDemo:
    from ..demo import train_digits_mlp
    from ..network.load import load

    started = time.perf_counter()
    model, X_train, y_train, _, _, accuracy = train_digits_mlp(epochs=epochs, seed=seed)
    net = load(model)
    X_all = np.asarray(X_train)
    cnn = train_digits_cnn(X_all, y_train, epochs=max(1, epochs // 2), seed=seed)
    decoder = train_digits_decoder(X_all, epochs=max(1, 4 * epochs // 3), seed=seed)
    echo(f"digits MLP (test accuracy {accuracy:.3f}), CNN and an 8-D decoder trained in "
         f"{time.perf_counter() - started:.1f} s")
    box = Box(np.zeros(64), np.ones(64))
    logits = net.forward(X_all)
    hidden = net.preactivations(X_all)[1]
    unit = int(np.argmax(hidden.std(axis=0)))
    high = float(np.quantile(logits[:, 3], 0.9))
    h_mid = tuple(np.quantile(hidden[:, unit], [0.5, 0.75]))
    h_top = tuple(np.quantile(hidden[:, unit], [0.95, 1.0]))
    inter = [float(np.quantile(logits[:, 3], 0.8)), float(np.quantile(logits[:, 8], 0.8))]
    import torch

    with torch.no_grad():
        cnn_inputs = torch.tensor(X_all).reshape(-1, 1, 8, 8)
        cnn_logits = cnn(cnn_inputs).numpy()
        conv = cnn[0](cnn_inputs).numpy()
    cnn_high = float(np.quantile(cnn_logits[:, 3], 0.9))
    conv_unit = (2, 4, 4)
    conv_high = float(np.quantile(conv[:, 2, 4, 4], 0.95))
    cases = [
        ("mlp_class3", dict(model=net, neuron=(2, 3), z1=high, z2=np.inf), f"MLP logit 3 >= {high:.2f}"),
        ("mlp_class3_decoder", dict(model=net, neuron=(2, 3), z1=high, z2=np.inf, generator=decoder),
         f"MLP logit 3 >= {high:.2f}, through the decoder"),
        ("mlp_hidden_mid", dict(model=net, neuron=(1, unit), z1=h_mid[0], z2=h_mid[1]),
         f"MLP hidden unit (1, {unit}) in [{h_mid[0]:.2f}, {h_mid[1]:.2f}]"),
        ("mlp_hidden_top", dict(model=net, neuron=(1, unit), z1=h_top[0], z2=h_top[1]),
         f"MLP hidden unit (1, {unit}) in [{h_top[0]:.2f}, {h_top[1]:.2f}]"),
        ("mlp_class3_and_8", dict(model=net, neuron=[(2, 3), (2, 8)], z1=inter, z2=np.inf),
         f"MLP logits 3 >= {inter[0]:.2f} and 8 >= {inter[1]:.2f}"),
        ("cnn_class3", dict(model=cnn, neuron=("4", 3), z1=cnn_high, z2=np.inf, input_shape=(1, 8, 8)),
         f"CNN logit 3 >= {cnn_high:.2f}"),
        ("cnn_conv_unit", dict(model=cnn, neuron=("0", conv_unit), z1=conv_high, z2=np.inf, input_shape=(1, 8, 8)),
         f"CNN conv channel 2 at pixel (4, 4) >= {conv_high:.2f}"),
    ]
    demo = InverseDemo()
    rows = []
    for name, arguments, label in cases:
        arguments = dict(arguments)
        model_, neuron, z1, z2 = (arguments.pop(key) for key in ("model", "neuron", "z1", "z2"))
        ours = inverse_set(model_, neuron, z1, z2, n, box, rng=seed, **arguments)
        budget = max(ours.seconds, 1e-3)
        shared = {key: arguments[key] for key in ("generator", "input_shape") if key in arguments}
        results = [ours, gradient_ascent(model_, neuron, z1, z2, n, box, rng=seed, seconds=budget, **shared),
                   langevin(model_, neuron, z1, z2, n, box, rng=seed, seconds=budget, **shared)]
        path = _figure(out, name, results, [f"{label}\n{_title(r)}" if i == 0 else _title(r)
                                            for i, r in enumerate(results)])
        demo.cases.append((name, results, path))
        for result in results:
            rows.append({"case": name, "description": label, "method": result.method, "n": result.n,
                         "in_range": f"{result.in_range:.4f}", "diversity": f"{result.diversity:.4f}",
                         "diversity_in_range": f"{result.diversity_in_range():.4f}",
                         "ms_per_sample": f"{1e3 * result.time_per_sample:.3f}", "steps": result.steps})
        echo(f"{label}: " + "; ".join(f"{r.method} {100 * r.in_range:.0f} % in range, diversity {r.diversity:.2f}"
                                       for r in results))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    demo.table = write_atomic(out / "inverse_sets.csv", buffer.getvalue())
    demo.seconds = time.perf_counter() - started
    echo(f"wrote {len(demo.cases)} image grids and {demo.table} in {demo.seconds:.1f} s")
    return demo


if __name__ == "__main__":
    import sys

    run_inverse_demo(sys.argv[1] if len(sys.argv) > 1 else "preimage-inverse-demo")
