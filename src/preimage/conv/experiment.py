"""The seed study's experiment at laptop scale: cone nesting of a LeNet-style and a VGG-style CNN at
initialisation and over training, on the scikit-learn digits upsampled to 16 x 16.

Both models use circular padding, so the cones measured are those of the trained networks themselves
(not of a periodic counterpart). ``lenet_style``: two blocks of two 5 x 5 convolutions (6 and 16 channels)
with 2 x 2 max pooling, then three linear layers (LeNet's widths); ``vgg_style``: eight 3 x 3 convolutions
in blocks of 3, 3 and 2 (16, 32, 64 channels), each block followed by 2 x 2 max pooling, then one linear
layer: nine layers with weights. Layer pairs are the consecutive convolutions inside a block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ShapeError
from .network import NetworkNesting, network_nesting

__all__ = ["lenet_style", "vgg_style", "digits_images", "train_with_checkpoints", "ExperimentResult",
           "run_experiment"]


def lenet_style(channels: int = 1, classes: int = 10, size: int = 16):
    """LeNet-style CNN with circular 5 x 5 convolutions, two per block; input (channels, size, size)."""
    from torch import nn

    if size % 4:
        raise ShapeError(f"size must be a multiple of 4 (two 2 x 2 poolings), got {size}")

    def conv(c_in, c_out):
        return nn.Conv2d(c_in, c_out, 5, padding=2, padding_mode="circular")

    return nn.Sequential(
        conv(channels, 6), nn.ReLU(), conv(6, 6), nn.ReLU(), nn.MaxPool2d(2),
        conv(6, 16), nn.ReLU(), conv(16, 16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * (size // 4) ** 2, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, classes),
    )


def vgg_style(channels: int = 1, classes: int = 10, size: int = 16, widths=(16, 32, 64)):
    """VGG-style 9-layer CNN: 3 x 3 circular convolutions in blocks of 3, 3, 2, max pooling, one Linear."""
    from torch import nn

    if size % 8:
        raise ShapeError(f"size must be a multiple of 8 (three 2 x 2 poolings), got {size}")
    layers: list = []
    c_in = channels
    for width, depth in zip(widths, (3, 3, 2)):
        for _ in range(depth):
            layers += [nn.Conv2d(c_in, width, 3, padding=1, padding_mode="circular"), nn.ReLU()]
            c_in = width
        layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(c_in * (size // 8) ** 2, classes)]
    return nn.Sequential(*layers)


def digits_images(size: int = 16, seed: int = 0, test_fraction: float = 0.25):
    """The scikit-learn digits (1797 images 8 x 8, scaled to [0, 1]) upsampled bilinearly to size x size.

    Returns (X_train, y_train, X_test, y_test): float32 tensors (n, 1, size, size) and int64 labels,
    split at random with ``seed``.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.tensor(np.random.default_rng(seed).permutation(len(labels)))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


def _accuracy(model, X, y) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return float((model(X).argmax(dim=1) == y).float().mean())


def train_with_checkpoints(model, data, epochs: int = 5, seed: int = 0, lr: float = 1e-3, batch: int = 64):
    """Train with Adam on cross-entropy; return the state dicts at init and after each epoch, and the
    test accuracy at each of them. data : (X_train, y_train, X_test, y_test) as from ``digits_images``."""
    import copy

    import torch

    X_train, y_train, X_test, y_test = data
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    loss = torch.nn.CrossEntropyLoss()
    states = [copy.deepcopy(model.state_dict())]
    accuracy = [_accuracy(model, X_test, y_test)]
    for _ in range(int(epochs)):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        for start in range(0, len(order), batch):
            index = order[start:start + batch]
            optimiser.zero_grad()
            loss(model(X_train[index]), y_train[index]).backward()
            optimiser.step()
        states.append(copy.deepcopy(model.state_dict()))
        accuracy.append(_accuracy(model, X_test, y_test))
    return states, accuracy


@dataclass
class ExperimentResult:
    """Per model name: the nesting at each checkpoint (epoch 0 = init) and the test accuracy there."""

    nesting: dict[str, list[NetworkNesting]] = field(default_factory=dict)
    accuracy: dict[str, list[float]] = field(default_factory=dict)
    input_shape: tuple[int, int, int] = (1, 16, 16)

    def to_markdown(self) -> str:
        """Net-wise state fractions at init and after training, with test accuracy."""
        from .nesting import STATES

        lines = ["| model | checkpoint | test accuracy | " + " | ".join(STATES) + " |",
                 "|" + "---|" * (len(STATES) + 3)]
        for name, runs in self.nesting.items():
            for index in (0, len(runs) - 1):
                fractions = runs[index].fractions()
                cells = " | ".join(f"{fractions[s]:.2f}" for s in STATES)
                lines.append(f"| {name} | {runs[index].label} | {self.accuracy[name][index]:.3f} | {cells} |")
        return "\n".join(lines)


def run_experiment(epochs: int = 5, seed: int = 0, size: int = 16, models=None) -> ExperimentResult:
    """Train each model on the digits and measure the nesting of its cones at every checkpoint.

    models : name -> a function building an untrained model (default: LeNet-style and VGG-style).
    """
    import torch

    builders = models or {"lenet_style": lenet_style, "vgg_style": vgg_style}
    data = digits_images(size, seed)
    result = ExperimentResult(input_shape=(1, size, size))
    for name, build in builders.items():
        torch.manual_seed(seed)
        model = build(size=size)
        states, accuracy = train_with_checkpoints(model, data, epochs, seed)
        runs = []
        for epoch, state in enumerate(states):
            model.load_state_dict(state)
            runs.append(network_nesting(model, result.input_shape, "init" if epoch == 0 else f"epoch {epoch}"))
        result.nesting[name] = runs
        result.accuracy[name] = accuracy
    return result
