"""The seed study's experiment at laptop scale: cone nesting of a LeNet-style and a VGG-style CNN at
initialisation and over training, on the scikit-learn digits upsampled to 16 x 16, or on CIFAR-10 read from
a local copy (``cifar10_images``; nothing is downloaded).

Both models use circular padding, so the cones measured are those of the trained networks themselves
(not of a periodic counterpart). ``lenet_style``: two blocks of two 5 x 5 convolutions (6 and 16 channels)
with 2 x 2 max pooling, then three linear layers (LeNet's widths); ``vgg_style``: eight 3 x 3 convolutions
in blocks of 3, 3 and 2 (16, 32, 64 channels), each block followed by 2 x 2 max pooling, then one linear
layer: nine layers with weights. Layer pairs are the consecutive convolutions inside a block.
"""

from __future__ import annotations

import errno
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, ShapeError
from .network import NetworkNesting, network_nesting

__all__ = ["lenet_style", "vgg_style", "digits_images", "cifar10_images", "train_with_checkpoints",
           "ExperimentResult", "run_experiment", "ARCHITECTURES"]

_CIFAR_PIXELS = 3 * 32 * 32
_CIFAR_RECORD = 1 + _CIFAR_PIXELS
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)
_CIFAR_FOLDERS = {"bin": "cifar-10-batches-bin", "py": "cifar-10-batches-py"}


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


def _numpy_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy < 2
        from numpy.core import multiarray
    import _codecs

    # protocol 2 writes a bytes object of Python 3 (an array's buffer) as _codecs.encode(text, "latin1")
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _codecs.encode}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # NumPy 1 and 2 write either name
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for module in ("builtins", "__builtin__"):  # a Python 2 pickle names the builtins so
        for kind in (list, dict, tuple, set, frozenset, bytes, bytearray, str, int, float, complex, bool):
            allowed[(module, kind.__name__)] = kind
    return allowed


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers only: any other global is refused before it is imported,
    so a file that would run code fails here instead."""

    allowed = _numpy_globals()

    def __init__(self, handle, source: Path):
        super().__init__(handle, encoding="bytes")
        self.source = source

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise DataError(f"{self.source} names the global {module}.{name}: a CIFAR-10 batch holds NumPy arrays "
                            "and lists only, so the file is not loaded") from None


def _cifar_folder(path) -> tuple[Path, str]:
    """(folder holding the batches, "bin" or "py") for a batches folder or one that holds it (binary first)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no CIFAR-10 folder at this path", str(root))
    for folder in (root, *(root / name for name in _CIFAR_FOLDERS.values())):
        for kind, suffix in (("bin", ".bin"), ("py", "")):
            if (folder / f"{_CIFAR_TEST[0]}{suffix}").is_file():
                return folder, kind
    raise FileNotFoundError(errno.ENOENT, "no CIFAR-10 batches here (expected test_batch.bin in "
                            "cifar-10-batches-bin, or test_batch in cifar-10-batches-py, or that folder itself)",
                            str(root))


def _read_batch(file: Path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 3, 32, 32) uint8, labels (n,) int64) of one batch file."""
    if not file.is_file():
        raise FileNotFoundError(errno.ENOENT, "CIFAR-10 batch file missing", str(file))
    raw = file.read_bytes()
    if kind == "bin":
        if not raw or len(raw) % _CIFAR_RECORD:
            raise DataError(f"{file}: {len(raw)} bytes is not a whole number of {_CIFAR_RECORD}-byte records "
                            "(1 label byte, 3072 pixel bytes): truncated or not a CIFAR-10 binary batch")
        records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
        labels, pixels = records[:, 0].astype(np.int64), records[:, 1:]
    else:
        try:
            batch = _BatchUnpickler(io.BytesIO(raw), file).load()
        except DataError:
            raise
        except Exception as error:  # a damaged pickle fails in the unpickler or in NumPy's reconstruction
            raise DataError(f"{file} is not a readable CIFAR-10 python batch (truncated or damaged?): "
                            f"{type(error).__name__}: {error}") from None
        if not isinstance(batch, dict):
            raise DataError(f"{file} holds a {type(batch).__name__}, not a CIFAR-10 batch (a dict)")
        pixels = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 \
                or pixels.shape[1] != _CIFAR_PIXELS or labels is None:
            raise DataError(f"{file}: a CIFAR-10 batch holds 'data', a (n, {_CIFAR_PIXELS}) uint8 array, and "
                            "'labels'; this one does not")
        try:
            labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise DataError(f"{file}: the labels are not integers") from None
        if labels.shape != (len(pixels),):
            raise DataError(f"{file}: {len(labels)} labels for {len(pixels)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{file}: labels must lie in 0..9, found {int(labels.min())}..{int(labels.max())}")
    return pixels.reshape(-1, 3, 32, 32), labels


def _cifar_split(folder: Path, kind: str, names, limit):
    suffix = ".bin" if kind == "bin" else ""
    images, labels, count = [], [], 0
    for name in names:
        if limit is not None and count >= limit:
            break
        pixels, classes = _read_batch(folder / f"{name}{suffix}", kind)
        images.append(pixels)
        labels.append(classes)
        count += len(classes)
    images, labels = np.concatenate(images), np.concatenate(labels)
    return (images, labels) if limit is None else (images[:limit], labels[:limit])


def cifar10_images(path, size: int = 32, n_train: int | None = None, n_test: int | None = None):
    """The CIFAR-10 images of a local copy, scaled to [0, 1] and resized bilinearly to size x size.

    path : the folder ``cifar-10-batches-bin`` (the binary version: ``data_batch_1.bin`` ...
        ``data_batch_5.bin`` and ``test_batch.bin``, each a run of 3073-byte records, one label byte then the
        1024 red, green and blue bytes of a 32 x 32 image row by row) or ``cifar-10-batches-py`` (the python
        version: the pickles ``data_batch_1`` ... ``test_batch``, each a dict with ``data`` (n, 3072) uint8
        and ``labels``), or a folder holding one of them (the binary one first). A pickle is read by an
        unpickler that admits NumPy arrays and plain containers only.
    n_train, n_test : keep the first so many images of each split (None: all); only the batches needed are read.
    Returns (X_train, y_train, X_test, y_test) as ``digits_images``: float32 (n, 3, size, size), int64 labels.
    Raises FileNotFoundError for a missing folder or batch file, DataError for a truncated or foreign file.
    """
    import torch
    import torch.nn.functional as F

    for name, value in (("size", size), ("n_train", n_train), ("n_test", n_test)):
        if value is not None and int(value) < 1:
            raise ShapeError(f"{name} must be a positive integer, got {value!r}")
    folder, kind = _cifar_folder(path)
    data = []
    for names, limit in ((_CIFAR_TRAIN, n_train), (_CIFAR_TEST, n_test)):
        pixels, labels = _cifar_split(folder, kind, names, limit)
        images = torch.tensor(pixels, dtype=torch.float32) / 255.0
        if int(size) != 32:
            images = F.interpolate(images, size=(int(size), int(size)), mode="bilinear", align_corners=False)
        data += [images, torch.tensor(labels, dtype=torch.int64)]
    return tuple(data)


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
    """Per model name: the nesting at each checkpoint (epoch 0 = init), the test accuracy there, and the
    trained weights (the last state dict). dataset : "digits" or the CIFAR-10 folder read."""

    nesting: dict[str, list[NetworkNesting]] = field(default_factory=dict)
    accuracy: dict[str, list[float]] = field(default_factory=dict)
    input_shape: tuple[int, int, int] = (1, 16, 16)
    weights: dict[str, dict] = field(default_factory=dict)
    dataset: str = "digits"

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


#: the experiment's models by name: functions of (channels, classes, size) building an untrained CNN
ARCHITECTURES = {"lenet_style": lenet_style, "vgg_style": vgg_style}


def run_experiment(epochs: int = 5, seed: int = 0, size: int | None = None, models=None, cifar=None,
                   n_train: int | None = None, n_test: int | None = None) -> ExperimentResult:
    """Train each model and measure the nesting of its cones at every checkpoint.

    models : name -> a function ``build(channels=, size=)`` of an untrained model (default: ``ARCHITECTURES``).
    cifar : None for the digits (1 channel, size 16 by default), or the path of a local CIFAR-10 copy
        (``cifar10_images``; 3 channels, size 32 by default); n_train, n_test then keep the first images of
        each split (the digits use all 1797, split at random with ``seed``).
    """
    import torch

    builders = models or ARCHITECTURES
    if cifar is None:
        size = 16 if size is None else int(size)
        data, channels, dataset = digits_images(size, seed), 1, "digits"
    else:
        size = 32 if size is None else int(size)
        data, channels, dataset = cifar10_images(cifar, size, n_train, n_test), 3, str(cifar)
    result = ExperimentResult(input_shape=(channels, size, size), dataset=dataset)
    for name, build in builders.items():
        torch.manual_seed(seed)
        model = build(channels=channels, size=size)
        states, accuracy = train_with_checkpoints(model, data, epochs, seed)
        runs = []
        for epoch, state in enumerate(states):
            model.load_state_dict(state)
            runs.append(network_nesting(model, result.input_shape, "init" if epoch == 0 else f"epoch {epoch}"))
        result.nesting[name] = runs
        result.accuracy[name] = accuracy
        result.weights[name] = states[-1]
    return result
