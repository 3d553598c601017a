"""Read and write the NNet text format (ACAS Xu, VerticalCAS): dense fully-connected ReLU networks.

The format (Kyle Julian, Stanford 2016; the ``sisl/NNet`` repository), line by line, each line a list of
comma-separated values that may end with a comma:

1. header lines starting with ``//``;
2. ``numLayers, inputSize, outputSize, maxLayerSize``;
3. the ``numLayers + 1`` layer sizes, input first;
4. a legacy flag (unused);
5. the input minimums; 6. the input maximums;
7. the means: one per input, then one shared by all outputs; 8. the ranges, likewise;
9. for each layer, its weight rows (one line per output neuron), then its biases (one per line).

Hidden layers are ReLU, the last layer is linear. The reference evaluator clips each input to
``[min, max]``, normalises ``(x - mean) / range``, runs the layers and de-normalises the outputs
``y * range_out + mean_out``.

``read_nnet`` folds both normalisations into the first and last affine maps. The clip is not affine: it
becomes the network's ``input_box``. Inside the box the ``Network`` equals the reference evaluator;
outside it the reference evaluator clips and the ``Network`` does not.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .._io import write_atomic
from ..errors import ModelError, ShapeError
from .affine import AffineMap
from .builder import ActivationOp, AffineOp, assemble
from .layers import RELU
from .network import Network

__all__ = ["read_nnet", "write_nnet"]

_SEPARATORS = re.compile(r"[,\s]+")


class _Lines:
    """The value lines of an NNet file, read one at a time with their line numbers (1-based)."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.lines = [
            (number, line) for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("//")
        ]
        self.position = 0

    def error(self, number: int, message: str) -> ModelError:
        return ModelError(f"{self.source}, line {number}: {message}")

    def values(self, what: str, count: int, kind=float, finite: bool = True) -> tuple[int, list]:
        """The next line as ``count`` numbers of type ``kind``; returns (line number, values)."""
        if self.position >= len(self.lines):
            last = self.lines[-1][0] if self.lines else 0
            raise ModelError(f"{self.source}: the file ends after line {last}, before {what}")
        number, line = self.lines[self.position]
        self.position += 1
        tokens = [token for token in _SEPARATORS.split(line.strip()) if token]
        if len(tokens) != count:
            raise self.error(number, f"{what} needs {count} value{'s' * (count != 1)}, found {len(tokens)}")
        try:
            values = [kind(token) for token in tokens]
        except ValueError:
            bad = next(t for t in tokens if not _parses(t, kind))
            raise self.error(number, f"{what}: {bad!r} is not {'an integer' if kind is int else 'a number'}") from None
        if finite and not all(math.isfinite(v) for v in values):
            raise self.error(number, f"{what} contains NaN or infinite values")
        return number, values

    def check_end(self) -> None:
        if self.position < len(self.lines):
            number, _ = self.lines[self.position]
            raise self.error(number, "unexpected content after the last layer")


def _parses(token: str, kind) -> bool:
    try:
        kind(token)
    except ValueError:
        return False
    return True


def read_nnet(path) -> Network:
    """Read an NNet file as a float64 ``Network`` with its input normalisation and output scaling folded in.

    Parameters
    ----------
    path : str or PathLike.

    Returns
    -------
    Network : input shape (inputSize,), hidden layers ReLU and the last identity; ``input_box`` is the
        file's (minimums, maximums), or None when every bound is infinite. ``name`` is the file stem.

    Raises
    ------
    ModelError : unreadable or malformed file (the message gives the line number), a zero input range.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"cannot read NNet file {str(path)!r}: {error}") from error
    lines = _Lines(text, str(path))
    number, (n_layers, n_inputs, n_outputs, _) = lines.values("the counts (layers, inputs, outputs, max size)", 4, int)
    if min(n_layers, n_inputs, n_outputs) <= 0:
        raise lines.error(number, "the numbers of layers, inputs and outputs must be positive")
    number, sizes = lines.values("the layer sizes", n_layers + 1, int)
    if sizes[0] != n_inputs or sizes[-1] != n_outputs or min(sizes) <= 0:
        raise lines.error(number, f"layer sizes {sizes} do not run from {n_inputs} inputs to {n_outputs} outputs")
    lines.values("the legacy flag", 1)
    _, minimums = lines.values("the input minimums", n_inputs, finite=False)
    number, maximums = lines.values("the input maximums", n_inputs, finite=False)
    if any(lo > hi or math.isnan(lo) or math.isnan(hi) for lo, hi in zip(minimums, maximums)):
        raise lines.error(number, "an input maximum is below its minimum (or NaN)")
    _, means = lines.values("the means (inputs, then outputs)", n_inputs + 1)
    number, ranges = lines.values("the ranges (inputs, then outputs)", n_inputs + 1)
    if 0.0 in ranges[:-1]:  # inputs are divided by their range; the output range only multiplies
        raise lines.error(number, f"the range of input {ranges.index(0.0)} is zero")

    means, ranges = np.array(means), np.array(ranges)
    ops = [AffineOp(AffineMap.scaling(1.0 / ranges[:-1], -means[:-1] / ranges[:-1]),
                    (n_inputs,), "input_normalisation", "NNetNormalise")]
    for k in range(n_layers):
        rows = [lines.values(f"row {i} of the weights of layer {k}", sizes[k])[1] for i in range(sizes[k + 1])]
        bias = [lines.values(f"bias {i} of layer {k}", 1)[1][0] for i in range(sizes[k + 1])]
        ops.append(AffineOp(AffineMap(np.array(rows), np.array(bias)), (sizes[k + 1],), f"layer{k}", "Linear"))
        if k < n_layers - 1:
            ops.append(ActivationOp(RELU, f"relu{k}", "ReLU"))
    lines.check_end()
    scaling = AffineMap.scaling(np.full(n_outputs, ranges[-1]), np.full(n_outputs, means[-1]))
    ops.append(AffineOp(scaling, (n_outputs,), "output_scaling", "NNetDenormalise"))
    box = None
    if not (all(v == -math.inf for v in minimums) and all(v == math.inf for v in maximums)):
        box = (np.array(minimums), np.array(maximums))
    return assemble(ops, (n_inputs,), name=path.stem, input_box=box)


# ---------------------------------------------------------------------------------------------------


def _number(value: float) -> str:
    """The shortest text that reads back as exactly ``value`` (``inf`` for infinities)."""
    return repr(float(value))


def _row(values) -> str:
    return ",".join(_number(v) for v in values) + ",\n"


def _file_weights(network: Network, means: np.ndarray, ranges: np.ndarray):
    """Per-layer (W, b) that, between the file's normalisations, compute the same function as ``network``."""
    weights = [np.array(layer.W, dtype=np.float64) for layer in network.layers]
    biases = [np.array(layer.b, dtype=np.float64) for layer in network.layers]
    # x = range * x_norm + mean enters the first layer; the last layer's output is y = range_out * y_norm + mean_out
    biases[0] = biases[0] + weights[0] @ means[:-1]
    weights[0] = weights[0] * ranges[:-1]
    weights[-1] = weights[-1] / ranges[-1]
    biases[-1] = (biases[-1] - means[-1]) / ranges[-1]
    return weights, biases


def _check_writable(network: Network) -> None:
    for i, layer in enumerate(network.layers):
        where = f"layer {i} ({layer.name})"
        if layer.affine.is_sparse:
            raise ModelError(f"{where} has a sparse weight (a convolution or pooling); NNet holds dense "
                             "fully-connected layers only")
        last = i == len(network.layers) - 1
        if last and layer.activation.kind != "identity":
            raise ModelError(f"{where} ends with {layer.activation}; the last NNet layer is linear")
        if not last and layer.activation.kind != "relu":
            raise ModelError(f"{where} has activation {layer.activation}; NNet hidden layers are ReLU")


def _vector(value, default: float, size: int, what: str) -> np.ndarray:
    array = np.full(size, default) if value is None else np.array(value, dtype=np.float64).reshape(-1)
    if array.shape != (size,):
        raise ShapeError(f"{what} must have {size} entries, got {array.size}")
    return array


def write_nnet(network: Network, path, input_box=None, means=None, ranges=None) -> None:
    """Write a dense fully-connected ReLU network as an NNet file, atomically.

    Parameters
    ----------
    network : hidden layers ReLU with dense weights, last layer identity. The input is flattened.
    path : destination; the text is written to a temporary file in the same folder, then moved over
        ``path``, so an existing file is replaced only by a complete one.
    input_box : (minimums, maximums), each (d,); defaults to ``network.input_box``, else infinite bounds.
    means, ranges : (d + 1,) normalisation the file declares (inputs, then one for the outputs); default
        zeros and ones. The weights written are rescaled so that the file's reference evaluator computes
        ``network`` (inside the box); ``read_nnet(path)`` gives it back exactly with the defaults, to
        round-off otherwise.

    Raises
    ------
    ModelError : a layer that NNet cannot hold (sparse weight, non-ReLU hidden activation, non-linear
        last layer), a zero or non-finite range.
    ShapeError : box, means or ranges of the wrong size.
    """
    _check_writable(network)
    d = network.input_dim
    if input_box is None:
        input_box = network.input_box
    lower = _vector(None if input_box is None else input_box[0], -math.inf, d, "input_box minimums")
    upper = _vector(None if input_box is None else input_box[1], math.inf, d, "input_box maximums")
    means = _vector(means, 0.0, d + 1, "means")
    ranges = _vector(ranges, 1.0, d + 1, "ranges")
    if not np.all(np.isfinite(means)) or not np.all(np.isfinite(ranges)) or np.any(ranges == 0):
        raise ModelError("means must be finite and ranges finite and non-zero")
    weights, biases = _file_weights(network, means, ranges)
    sizes = [d] + [w.shape[0] for w in weights]

    def lines():
        yield "// Neural Network File Format by Kyle Julian, Stanford 2016\n"
        yield f"// written by preimage{': ' + network.name if network.name else ''}\n"
        yield f"{len(weights)},{d},{sizes[-1]},{max(sizes)},\n"
        yield ",".join(str(s) for s in sizes) + ",\n"
        yield "0,\n"
        for values in (lower, upper, means, ranges):
            yield _row(values)
        for weight, bias in zip(weights, biases):
            for row in weight:
                yield _row(row)
            for value in bias:
                yield _row([value])

    write_atomic(path, "".join(lines()))
