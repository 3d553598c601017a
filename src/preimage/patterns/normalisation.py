"""The normalisation study (Swiniarski, Bruna & Cho, sec. 3) as one reproducible experiment.

The same MLP on scikit-learn's digits (embedded, no download), in six variants: no normalisation
(PyTorch's default initialisation), BatchNorm or LayerNorm before every ReLU, weight normalisation of
every hidden Linear, SELU instead of ReLU (LeCun-normal initialisation, as SELU asks), and Xavier-normal
initialisation with zero biases. Each is trained with Adam on minibatches, seeded; the per-unit
activation probabilities of every hidden layer on the test set are read with forward hooks (the input of
each ReLU / SELU, after the normalisation) at epoch 0 and after training, beside the test accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ShapeError
from .dataset import digits
from .hooks import hook_patterns
from .stats import LayerStatistics, unit_statistics

__all__ = ["VARIANTS", "build_mlp", "NormalisationRun", "NormalisationStudy", "normalisation_study"]

VARIANTS = ("none", "batchnorm", "layernorm", "weightnorm", "selu", "xavier")


def build_mlp(variant: str, sizes: Sequence[int], seed: int = 0):
    """The MLP ``sizes[0] -> ... -> sizes[-1]`` of one variant (see the module docstring), seeded."""
    import torch
    from torch import nn

    if variant not in VARIANTS:
        raise ShapeError(f"unknown variant {variant!r}; the variants are {VARIANTS}")
    torch.manual_seed(seed)
    modules: list = []
    for i, (a, b) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        linear = nn.Linear(a, b)
        if variant == "xavier":
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)
        if variant == "selu":
            nn.init.normal_(linear.weight, std=1.0 / np.sqrt(a))
            nn.init.zeros_(linear.bias)
        if variant == "weightnorm":
            linear = nn.utils.parametrizations.weight_norm(linear)
        modules.append(linear)
        if variant == "batchnorm":
            modules.append(nn.BatchNorm1d(b))
        if variant == "layernorm":
            modules.append(nn.LayerNorm(b))
        modules.append(nn.SELU() if variant == "selu" else nn.ReLU())
    modules.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*modules)


@dataclass(frozen=True)
class NormalisationRun:
    """One variant: statistics of each hidden layer at epoch 0 and after training, and accuracies."""

    variant: str
    initial: list[LayerStatistics]
    trained: list[LayerStatistics]
    accuracy_initial: float
    accuracy: float


@dataclass(frozen=True)
class NormalisationStudy:
    runs: dict[str, NormalisationRun]
    hidden: tuple[int, ...]
    epochs: int
    seed: int
    n_test: int = field(default=0)

    def table(self) -> list[dict]:
        """One row per variant and layer: accuracy, dead, always on, saturated, before and after training."""
        rows = []
        for name, run in self.runs.items():
            for before, after in zip(run.initial, run.trained):
                rows.append({"variant": name, "layer": before.layer, "accuracy": run.accuracy,
                             "saturated_initial": before.saturated, "saturated_trained": after.saturated,
                             "dead_initial": len(before.dead), "dead_trained": len(after.dead),
                             "always_on_trained": len(after.always_on)})
        return rows


def _accuracy(model, X, y) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return float((model(X).argmax(1) == y).float().mean())


def normalisation_study(variants: Sequence[str] = VARIANTS, *, hidden: Sequence[int] = (64, 64, 64),
                        epochs: int = 30, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                        bins: int = 20, saturation: float = 0.05) -> NormalisationStudy:
    """Train each variant on digits (80 / 20 stratified split, seeded) and compare their patterns.

    The defaults (3 x 64 units, 30 epochs) run in seconds: torch uses one thread meanwhile (its
    thread pool costs more than it gives on batches this small), restored afterwards.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _study(variants, hidden, epochs, batch_size, lr, seed, bins, saturation)
    finally:
        torch.set_num_threads(threads)


def _study(variants, hidden, epochs, batch_size, lr, seed, bins, saturation) -> NormalisationStudy:
    import torch
    from sklearn.model_selection import train_test_split

    X, y = digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    X_train, X_test = (torch.tensor(v, dtype=torch.float32) for v in (X_train, X_test))
    y_train, y_test = torch.tensor(y_train), torch.tensor(y_test)
    sizes = (X.shape[1], *hidden, 10)
    runs = {}
    for variant in variants:
        model = build_mlp(variant, sizes, seed)
        initial = unit_statistics(hook_patterns(model, [X_test]), bins=bins, saturation=saturation)
        accuracy_initial = _accuracy(model, X_test, y_test)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(X_train), generator=generator)
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                if len(rows) < 2:
                    continue
                optimiser.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(X_train[rows]), y_train[rows])
                loss.backward()
                optimiser.step()
        trained = unit_statistics(hook_patterns(model, [X_test]), bins=bins, saturation=saturation)
        runs[variant] = NormalisationRun(variant, initial, trained, accuracy_initial, _accuracy(model, X_test, y_test))
    return NormalisationStudy(runs, tuple(hidden), epochs, seed, len(X_test))
