"""Nesting statistics of a whole CNN: every pair of consecutive convolutions in a block, net-wise and
block-wise, for one model or a list of training checkpoints.

The convolutions of a torch model are found by running it once on a zero image with forward hooks (so
their order is the order of execution and each one's input shape is known). Two convolutions executed one
after the other form a *layer pair* when only elementwise modules run between them (ReLU, LeakyReLU,
BatchNorm2d, Dropout, Identity) and both keep the image size at stride 1; anything else (a pooling, a
strided or shrinking convolution) ends a *block*, as pooling does in the seed study. A BatchNorm2d right
after a convolution is folded into it (eval statistics) before its cones are taken.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError, ShapeError
from .layer import ConvLayer
from .nesting import STATES, PairGeometry, pair_geometry, slice_cones

__all__ = ["LayerPairNesting", "NetworkNesting", "conv_blocks", "network_nesting", "nesting_over_checkpoints"]

_ELEMENTWISE = ("ReLU", "LeakyReLU", "BatchNorm2d", "Dropout", "Dropout2d", "Identity")
_STATE_KEYS = (*STATES, "UNDEFINED")


@dataclass(frozen=True)
class LayerPairNesting:
    """One pair of consecutive convolutions: ``inner`` (layer l) feeding ``outer`` (layer l+1)."""

    block: int
    inner: str
    outer: str
    geometry: PairGeometry

    def counts(self) -> dict[str, int]:
        return self.geometry.counts()


def _add(total: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    return {key: total.get(key, 0) + counts[key] for key in _STATE_KEYS}


def _fractions(counts: dict[str, int]) -> dict[str, float]:
    defined = sum(counts[key] for key in STATES)
    return {key: (counts[key] / defined if defined else float("nan")) for key in STATES}


@dataclass(frozen=True)
class NetworkNesting:
    """The nesting of every layer pair of a network, in order; ``label`` names the model or checkpoint."""

    pairs: tuple[LayerPairNesting, ...]
    label: str = ""

    def counts(self) -> dict[str, int]:
        """Net-wise: out channels in each state over all layer pairs."""
        total = dict.fromkeys(_STATE_KEYS, 0)
        for pair in self.pairs:
            total = _add(total, pair.counts())
        return total

    def fractions(self) -> dict[str, float]:
        """Net-wise fractions of the four states (channels with a state only)."""
        return _fractions(self.counts())

    def block_counts(self) -> dict[int, dict[str, int]]:
        """Block-wise: block index -> out channels in each state over the block's layer pairs."""
        blocks: dict[int, dict[str, int]] = {}
        for pair in self.pairs:
            blocks[pair.block] = _add(blocks.get(pair.block, dict.fromkeys(_STATE_KEYS, 0)), pair.counts())
        return blocks

    def block_fractions(self) -> dict[int, dict[str, float]]:
        return {block: _fractions(counts) for block, counts in self.block_counts().items()}

    def summary(self) -> dict[str, np.ndarray]:
        """Per layer pair, the mean |signed apex distance|, |opening difference| and rotation over its
        connected pairs with apices (the authors average absolute values per channel): arrays (pairs,)."""
        def mean_abs(values):
            return float(np.nanmean(np.abs(values))) if np.isfinite(values).any() else float("nan")

        return {
            "distance": np.array([mean_abs(p.geometry.distance) for p in self.pairs]),
            "opening_difference": np.array([mean_abs(p.geometry.opening_difference) for p in self.pairs]),
            "rotation": np.array([mean_abs(p.geometry.rotation) for p in self.pairs]),
        }

    def containment(self) -> np.ndarray:
        """(pairs, 3): per layer pair, the fraction of connected channel pairs whose cones nest exactly
        out-in-in, in-in-out, and whose containment is decided at all (``PairGeometry.out_in_in``)."""
        rows = []
        for pair in self.pairs:
            g = pair.geometry
            connected = max(int(g.connected.sum()), 1)
            decided = (g.out_in_in >= 0) & (g.in_in_out >= 0) & g.connected
            rows.append([np.sum((g.out_in_in == 1) & g.connected) / connected,
                         np.sum((g.in_in_out == 1) & g.connected) / connected, decided.sum() / connected])
        return np.array(rows).reshape(len(self.pairs), 3)

    def to_markdown(self) -> str:
        """A table: one row per layer pair with the fraction of out channels in each state, and the fraction
        of channel pairs nested exactly either way."""
        lines = ["| block | pair | " + " | ".join(STATES) + " | undefined | pairs out ⊆ in | pairs in ⊆ out |",
                 "|" + "---|" * (len(STATES) + 5)]
        for pair, exact in zip(self.pairs, self.containment()):
            counts = pair.counts()
            fractions = _fractions(counts)
            cells = " | ".join(f"{fractions[key]:.2f}" for key in STATES)
            lines.append(f"| {pair.block} | {pair.inner} -> {pair.outer} | {cells} | {counts['UNDEFINED']} | "
                         f"{exact[0]:.3f} | {exact[1]:.3f} |")
        return "\n".join(lines)


def _fold_batch_norm(layer: ConvLayer, norm) -> ConvLayer:
    scale = (norm.weight.detach().double().numpy() if norm.affine else np.ones(norm.num_features)) / np.sqrt(
        norm.running_var.detach().double().numpy() + norm.eps)
    shift = (norm.bias.detach().double().numpy() if norm.affine else 0.0) \
        - norm.running_mean.detach().double().numpy() * scale
    return ConvLayer(layer.weight * scale[:, None, None, None], layer.bias * scale + shift, layer.input_shape,
                     layer.stride, layer.padding, layer.dilation, layer.groups, layer.padding_mode, layer.name)


def conv_blocks(model, input_shape) -> list[list[ConvLayer]]:
    """The convolutions of a torch model grouped into blocks of layers that feed each other directly.

    model : a torch ``nn.Module`` taking one batch of images. input_shape : (C, H, W) of one image.
    Returns the blocks in order of execution, each a list of ConvLayer (BatchNorm folded).
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ShapeError(f"input_shape must be (C, H, W), got {input_shape!r}")
    names = {module: name for name, module in model.named_modules()}
    trace: list[tuple[object, tuple]] = []

    def record(module, inputs, output):
        trace.append((module, tuple(inputs[0].shape[1:]) if inputs and hasattr(inputs[0], "shape") else ()))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            dtype = next((p.dtype for p in model.parameters()), torch.float32)
            model(torch.zeros((1, *shape), dtype=dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    blocks: list[list[ConvLayer]] = []
    current_block: list[ConvLayer] = []
    last_open = False  # the last executed convolution can still be paired with the next one
    previous = ""
    for module, in_shape in trace:
        kind = type(module).__name__
        if kind == "Conv2d":
            layer = ConvLayer.from_module(module, in_shape, names.get(module, ""))
            keeps_size = layer.output_shape[1:] == layer.input_shape[1:] and tuple(module.stride) == (1, 1)
            if not (last_open and keeps_size and current_block[-1].output_shape == layer.input_shape):
                if current_block:
                    blocks.append(current_block)
                current_block = []
            current_block.append(layer)
            last_open = keeps_size
        elif kind == "BatchNorm2d" and previous == "Conv2d" and current_block[-1].output_shape == in_shape:
            current_block[-1] = _fold_batch_norm(current_block[-1], module)
        elif kind not in _ELEMENTWISE:
            last_open = False
        previous = kind
    if current_block:
        blocks.append(current_block)
    return blocks


def network_nesting(model, input_shape, label: str = "") -> NetworkNesting:
    """Nesting states of all layer pairs of a torch CNN, on the circular counterpart of each convolution.

    model : torch ``nn.Module``. input_shape : (C, H, W).
    A layer that is not circular already (zero padding, as most CNNs) is compared through its periodic
    counterpart (same filters, circular padding), the cones the seed study measures.
    """
    pairs = []
    for block_index, block in enumerate(conv_blocks(model, input_shape)):
        if len(block) < 2:
            continue
        cones = []
        for layer in block:
            periodic = layer if layer.is_circulant else layer.periodic()
            cones.append(slice_cones(periodic))
        for inner, outer in zip(cones[:-1], cones[1:]):
            pairs.append(LayerPairNesting(block_index, inner.name, outer.name, pair_geometry(outer, inner)))
    return NetworkNesting(tuple(pairs), label)


def nesting_over_checkpoints(model, checkpoints, input_shape, labels=None) -> list[NetworkNesting]:
    """``network_nesting`` of the model with each checkpoint's weights loaded, in order.

    checkpoints : a list of state dicts or paths to files saved with ``torch.save(model.state_dict())``
        (read with ``weights_only=True``). labels : optional names (default: the path or the index).
    The model itself is left unchanged (a copy takes each checkpoint's weights).
    """
    import torch

    checkpoints = list(checkpoints)
    if labels is not None and len(labels) != len(checkpoints):
        raise ShapeError(f"{len(labels)} labels for {len(checkpoints)} checkpoints")
    work = copy.deepcopy(model)
    results = []
    for index, checkpoint in enumerate(checkpoints):
        if isinstance(checkpoint, (str, os.PathLike)):
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            default = str(checkpoint)
        else:
            state, default = checkpoint, str(index)
        try:
            work.load_state_dict(state)
        except (RuntimeError, KeyError) as error:
            raise ModelError(f"checkpoint {default} does not fit the model: {error}") from None
        results.append(network_nesting(work, input_shape, labels[index] if labels is not None else default))
    return results
