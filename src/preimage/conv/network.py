"""Nesting statistics of a whole CNN: every pair of consecutive convolutions in a block, net-wise and
block-wise, for one model or a list of training checkpoints.

The convolutions of a torch model are found by running it once on a zero image with forward hooks (so
their order is the order of execution and each one's input shape is known). Two convolutions executed one
after the other form a *layer pair* when only elementwise modules run between them (ReLU, LeakyReLU,
BatchNorm2d, Dropout, Identity) and both keep the image size at stride 1; anything else (a pooling, a
strided or shrinking convolution) ends a *block*, as pooling does in the seed study. A BatchNorm2d right
after a convolution is folded into it (eval statistics) before its cones are taken.

An imported ``pim.Network`` (an ONNX file, say) keeps no kernels, only each layer's matrix. A layer made of
one convolution and elementwise operations (BatchNorm, the activation) that keeps the image size is read
back from its matrix: the row of the centre pixel of each output channel, channel-summed, is the kernel on
the torus of the layer's circular counterpart (shifting a kernel leaves its cone as it is), once the rows of
the neighbouring pixels are checked to be its exact shifts, i.e. the centre window lies inside the image
and the stride is 1. Groups are read from which input channels the rows touch. The importer folds a
pooling into the next convolution's layer; such a layer, and any other that holds more than a convolution
and elementwise operations, ends a block and is listed in ``NetworkNesting.unmeasured``.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import ConeError, ModelError, ShapeError
from ..settings import current
from .layer import ConvLayer
from .nesting import STATES, PairGeometry, SliceCones, pair_geometry, slice_cones

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
    """The nesting of every layer pair of a network, in order; ``label`` names the model or checkpoint.

    unmeasured : for an imported ``pim.Network``, the layers holding a convolution together with an operation
        that is not elementwise (a folded pooling): they end a block and enter no pair (module docstring).
    """

    pairs: tuple[LayerPairNesting, ...]
    label: str = ""
    unmeasured: tuple[str, ...] = ()

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


_CONV_KINDS = ("Conv2d", "Conv")
_LAYER_ELEMENTWISE = (*_ELEMENTWISE, "Relu", "LeakyRelu", "BatchNormalization", "identity")


def _kinds(layer) -> list[str]:
    return [source.rsplit(":", 1)[-1] for source in layer.sources]


def _is_block_conv(layer) -> bool:
    """A Network layer of one size-keeping convolution and elementwise operations only."""
    kinds = _kinds(layer)
    return (sum(kind in _CONV_KINDS for kind in kinds) == 1
            and all(kind in _CONV_KINDS or kind in _LAYER_ELEMENTWISE for kind in kinds)
            and len(layer.input_shape) == 3 and len(layer.output_shape) == 3
            and layer.input_shape[1:] == layer.output_shape[1:])


def _pixel_rows(matrix, channels: int, pixel: int, pixels: int) -> sp.coo_matrix:
    return matrix[np.arange(channels) * pixels + pixel].tocoo()


def _network_slice_cones(layer) -> SliceCones:
    """The slice cones of the circular counterpart of a Network conv layer, read from its matrix."""
    settings = current()
    name = layer.name or "a layer"
    c_in, height, width = layer.input_shape
    c_out = layer.output_shape[0]
    pixels = height * width
    matrix = sp.csr_matrix(layer.W, dtype=np.float64)
    bias = np.asarray(layer.b, dtype=np.float64).reshape(c_out, pixels)
    if np.any(np.ptp(bias, axis=1) > settings.feasibility_tol * np.maximum(np.abs(bias).max(axis=1), 1.0)):
        raise ConeError(f"{name}: the bias is not constant on each channel, so it is not a convolution's")
    row, col = height // 2, width // 2
    centre = _pixel_rows(matrix, c_out, row * width + col, pixels)
    scale = max(float(np.abs(centre.data).max(initial=0.0)), 1.0)
    # the rows one pixel left and one pixel up, moved back by that pixel, must equal the centre row
    for d_row, d_col in ((0, -1), (-1, 0)):
        if row + d_row < 0 or col + d_col < 0:
            continue
        moved = _pixel_rows(matrix, c_out, (row + d_row) * width + col + d_col, pixels)
        channel, rest = np.divmod(moved.col, pixels)
        r, c = np.divmod(rest, width)
        back = channel * pixels + ((r - d_row) % height) * width + (c - d_col) % width
        shifted = sp.csr_matrix((moved.data, (moved.row, back)), shape=moved.shape)
        if abs(shifted - centre.tocsr()).max() > settings.feasibility_tol * scale:
            raise ConeError(
                f"{name}: the rows of neighbouring pixels are not shifts of each other (a stride other than 1, "
                "or windows reaching the border everywhere), so its kernels cannot be read from its matrix")
    channel, pixel = np.divmod(centre.col, pixels)
    kernels = np.zeros((c_out, pixels))
    np.add.at(kernels, (centre.row, pixel), centre.data)
    reads = np.zeros((c_out, c_in), dtype=bool)
    reads[centre.row[centre.data != 0], channel[centre.data != 0]] = True
    groups = next(g for g in range(math.gcd(c_in, c_out), 0, -1) if c_in % g == 0 and c_out % g == 0 and not np.any(
        reads & ((np.arange(c_out)[:, None] // (c_out // g)) != (np.arange(c_in)[None, :] // (c_in // g)))))
    return SliceCones.from_kernels(kernels.reshape(c_out, height, width), bias[:, 0], groups, layer.name)


def _network_pairs(net, label: str) -> NetworkNesting:
    blocks: list[list] = []
    unmeasured = []
    for layer in net.layers:
        if _is_block_conv(layer):
            if blocks and blocks[-1] and blocks[-1][-1].output_shape == layer.input_shape:
                blocks[-1].append(layer)
            else:
                blocks.append([layer])
        else:
            if any(kind in _CONV_KINDS for kind in _kinds(layer)):
                unmeasured.append(layer.name)
            if blocks and blocks[-1]:
                blocks.append([])
    pairs = []
    for block_index, block in enumerate(b for b in blocks if b):
        cones = [_network_slice_cones(layer) for layer in block] if len(block) > 1 else []
        for inner, outer in zip(cones[:-1], cones[1:]):
            pairs.append(LayerPairNesting(block_index, inner.name, outer.name, pair_geometry(outer, inner)))
    return NetworkNesting(tuple(pairs), label, tuple(unmeasured))


def network_nesting(model, input_shape=None, label: str = "") -> NetworkNesting:
    """Nesting states of all layer pairs of a CNN, on the circular counterpart of each convolution.

    model : a torch ``nn.Module`` (input_shape (C, H, W) required) or an imported ``pim.Network`` (its own
        input shape; the kernels are read from the layers' matrices, module docstring).
    A layer that is not circular already (zero padding, as most CNNs) is compared through its periodic
    counterpart (same filters, circular padding), the cones the seed study measures.
    """
    from ..network import Network

    if isinstance(model, Network):
        if input_shape is not None and tuple(input_shape) != tuple(model.input_shape):
            raise ShapeError(f"the network takes inputs of shape {model.input_shape}, not {tuple(input_shape)}")
        return _network_pairs(model, label)
    if input_shape is None:
        raise ShapeError("input_shape (C, H, W) is needed for a torch model")
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
