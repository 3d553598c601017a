"""NNet files: the imported Network equals the format's reference evaluator inside the input box, write/read
round trips exactly, malformed files are reported with their line number, and writing is atomic."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from preimage import settings
from preimage.errors import ModelError, ShapeError
from preimage.network import nnet
from preimage.network.affine import AffineMap
from preimage.network.layers import IDENTITY, RELU, Layer, leaky_relu
from preimage.network.network import Network
from preimage.network.nnet import read_nnet, write_nnet

BENCHMARKS = Path(__file__).parents[2] / "shared" / "benchmarks"
VCAS_FILES = sorted((BENCHMARKS / "vcas").glob("*.nnet"))


def reference_parse(path):
    """An independent reading of the format description: numbers line by line, trailing commas dropped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.startswith("//"):
            rows.append([float(v) for v in line.strip().rstrip(",").split(",")])
    n_layers, n_inputs = int(rows[0][0]), int(rows[0][1])
    sizes = [int(v) for v in rows[1]]
    minimums, maximums, means, ranges = (np.array(r) for r in rows[3:7])
    layers, at = [], 7
    for k in range(n_layers):
        weight = np.array(rows[at:at + sizes[k + 1]])
        at += sizes[k + 1]
        bias = np.array([r[0] for r in rows[at:at + sizes[k + 1]]])
        at += sizes[k + 1]
        layers.append((weight, bias))
    assert at == len(rows) and minimums.size == n_inputs
    return minimums, maximums, means, ranges, layers


def reference_evaluate(parsed, X):
    """The NNet reference evaluator: clip, normalise, ReLU layers, linear last layer, de-normalise."""
    minimums, maximums, means, ranges, layers = parsed
    h = (np.clip(X, minimums, maximums) - means[:-1]) / ranges[:-1]
    for weight, bias in layers[:-1]:
        h = np.maximum(h @ weight.T + bias, 0.0)
    weight, bias = layers[-1]
    return (h @ weight.T + bias) * ranges[-1] + means[-1]


def max_relative_error(actual, expected):
    return np.max(np.abs(actual - expected)) / np.max(np.abs(expected))


def _layer(weight, bias, activation):
    return Layer(AffineMap(weight, bias), activation)


def dense_network(rng, sizes, *, box=True, name="random"):
    """A dense fully-connected ReLU network with random weights and biases (last layer linear)."""
    layers = [
        _layer(rng.normal(size=(sizes[k + 1], sizes[k])), rng.normal(size=sizes[k + 1]),
               RELU if k < len(sizes) - 2 else IDENTITY)
        for k in range(len(sizes) - 1)
    ]
    lo = rng.uniform(-2, 0, size=sizes[0])
    return Network(layers, name=name, input_box=(lo, lo + rng.uniform(0.5, 2, size=sizes[0])) if box else None)


def assert_same_network(a: Network, b: Network):
    assert len(a.layers) == len(b.layers)
    for left, right in zip(a.layers, b.layers):
        np.testing.assert_array_equal(left.affine.dense(), right.affine.dense())
        np.testing.assert_array_equal(left.b, right.b)
        assert left.activation == right.activation
    if a.input_box is None or b.input_box is None:
        assert a.input_box is None and b.input_box is None
    else:
        np.testing.assert_array_equal(a.input_box[0], b.input_box[0])
        np.testing.assert_array_equal(a.input_box[1], b.input_box[1])


# ---------------------------------------------------------------------------------------------------
# the VerticalCAS files


@pytest.mark.skipif(not VCAS_FILES, reason=f"no .nnet files under {BENCHMARKS / 'vcas'}")
@pytest.mark.parametrize("path", VCAS_FILES, ids=lambda p: p.stem)
def test_vcas_file_matches_reference_evaluator(path):
    net = read_nnet(path)
    parsed = reference_parse(path)
    minimums, maximums = parsed[0], parsed[1]
    np.testing.assert_array_equal(net.input_box[0], minimums)
    np.testing.assert_array_equal(net.input_box[1], maximums)
    assert net.name == path.stem and net.input_shape == (4,)
    assert [layer.out_features for layer in net.layers] == [45] * 6 + [9]
    rng = np.random.default_rng(VCAS_FILES.index(path))
    X = rng.uniform(minimums, maximums, size=(50, minimums.size))
    assert max_relative_error(net.forward(X), reference_evaluate(parsed, X)) <= settings.current().import_rtol


@pytest.mark.skipif(not VCAS_FILES, reason=f"no .nnet files under {BENCHMARKS / 'vcas'}")
def test_outside_the_box_the_reference_clips_and_the_network_does_not():
    path = VCAS_FILES[0]
    net, parsed = read_nnet(path), reference_parse(path)
    x = parsed[1] + 1000.0  # beyond every maximum
    np.testing.assert_allclose(reference_evaluate(parsed, x[None]), reference_evaluate(parsed, parsed[1][None]))
    assert not np.allclose(net.forward(x), net.forward(parsed[1]))


# ---------------------------------------------------------------------------------------------------
# writing


@pytest.mark.parametrize("sizes", [(3, 2), (4, 8, 3), (5, 7, 6, 2), (2, 16, 16, 16, 4)])
@pytest.mark.parametrize("box", [True, False])
def test_write_then_read_gives_the_same_network(tmp_path, sizes, box):
    rng = np.random.default_rng(len(sizes) * 10 + box)
    net = dense_network(rng, sizes, box=box)
    path = tmp_path / "net.nnet"
    write_nnet(net, path)
    back = read_nnet(path)
    assert_same_network(net, back)
    assert back.name == "net"


@pytest.mark.parametrize("sizes", [(3, 2), (4, 8, 3), (5, 7, 6, 2)])
def test_written_normalisation_keeps_the_function(tmp_path, sizes):
    rng = np.random.default_rng(sum(sizes))
    net = dense_network(rng, sizes)
    means = rng.normal(size=sizes[0] + 1)
    ranges = rng.uniform(0.5, 3.0, size=sizes[0] + 1)
    path = tmp_path / "normalised.nnet"
    write_nnet(net, path, means=means, ranges=ranges)
    parsed = reference_parse(path)
    np.testing.assert_array_equal(parsed[2], means)
    np.testing.assert_array_equal(parsed[3], ranges)
    X = rng.uniform(*net.input_box, size=(50, sizes[0]))
    expected = net.forward(X)
    assert max_relative_error(reference_evaluate(parsed, X), expected) <= 1e-12
    assert max_relative_error(read_nnet(path).forward(X), expected) <= 1e-12


def test_explicit_input_box_overrides_the_network_box(tmp_path):
    rng = np.random.default_rng(7)
    net = dense_network(rng, (3, 4, 2))
    box = (np.array([-1.0, -2.0, -3.0]), np.array([1.0, 2.0, 3.0]))
    write_nnet(net, tmp_path / "boxed.nnet", input_box=box)
    back = read_nnet(tmp_path / "boxed.nnet")
    np.testing.assert_array_equal(back.input_box[0], box[0])
    np.testing.assert_array_equal(back.input_box[1], box[1])


@pytest.mark.skipif(not VCAS_FILES, reason=f"no .nnet files under {BENCHMARKS / 'vcas'}")
def test_vcas_file_survives_write_and_read(tmp_path):
    net = read_nnet(VCAS_FILES[0])
    write_nnet(net, tmp_path / "copy.nnet")
    assert_same_network(net, read_nnet(tmp_path / "copy.nnet"))


@pytest.mark.parametrize("make, message", [
    (lambda rng: Network([_layer(rng.normal(size=(3, 2)), None, leaky_relu(0.1)),
                          _layer(rng.normal(size=(1, 3)), None, IDENTITY)]), "leaky_relu"),
    (lambda rng: Network([_layer(rng.normal(size=(3, 2)), None, RELU)]), "last NNet layer is linear"),
    (lambda rng: Network([_layer(rng.normal(size=(3, 2)), None, IDENTITY),
                          _layer(rng.normal(size=(1, 3)), None, IDENTITY)]), "hidden layers are ReLU"),
    (lambda rng: Network([_layer(sp.random(3, 2, density=0.5, random_state=0), None, RELU),
                          _layer(rng.normal(size=(1, 3)), None, IDENTITY)]), "sparse"),
])
def test_networks_nnet_cannot_hold_are_refused(tmp_path, make, message):
    net = make(np.random.default_rng(0))
    with pytest.raises(ModelError, match=message):
        write_nnet(net, tmp_path / "refused.nnet")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argument, value", [("means", np.zeros(2)), ("ranges", np.ones(5)),
                                             ("input_box", (np.zeros(2), np.ones(2)))])
def test_wrong_sized_normalisation_is_refused(tmp_path, argument, value):
    net = dense_network(np.random.default_rng(1), (3, 2))
    with pytest.raises(ShapeError):
        write_nnet(net, tmp_path / "x.nnet", **{argument: value})


def test_zero_range_is_refused(tmp_path):
    net = dense_network(np.random.default_rng(1), (3, 2))
    with pytest.raises(ModelError, match="ranges"):
        write_nnet(net, tmp_path / "x.nnet", ranges=[1.0, 0.0, 1.0, 1.0])


def _fail_after(calls: int, function):
    """``function`` that raises KeyboardInterrupt from its (calls + 1)-th call on."""
    count = {"n": 0}

    def failing(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt("interrupted while writing")
        return function(*args, **kwargs)

    return failing


@pytest.mark.parametrize("target", ["formatting", "syncing"])
def test_interrupted_write_leaves_the_existing_file_untouched(tmp_path, monkeypatch, target):
    rng = np.random.default_rng(2)
    path = tmp_path / "model.nnet"
    write_nnet(dense_network(rng, (4, 8, 3)), path)
    before = path.read_bytes()
    if target == "formatting":  # well into the weights of the first layer
        monkeypatch.setattr(nnet, "_number", _fail_after(30, nnet._number))
    else:  # the new text is in the temporary file, not yet moved over the old one
        monkeypatch.setattr(os, "fsync", _fail_after(0, os.fsync))
    with pytest.raises(KeyboardInterrupt):
        write_nnet(dense_network(rng, (4, 8, 3)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.nnet"]


# ---------------------------------------------------------------------------------------------------
# malformed files

GOOD = """// a tiny network
// second header line
2,2,1,3,
2,3,1,
0,
-1.0,-1.0,
1.0,1.0,
0.0,0.0,0.0,
1.0,1.0,1.0,
1.0,2.0,
3.0,4.0,
5.0,6.0,
0.1,
0.2,
0.3,
7.0,8.0,9.0,
0.5,
"""


def _with_line(text: str, number: int, replacement: str | None) -> str:
    lines = text.splitlines()
    if replacement is None:
        del lines[number - 1]
    else:
        lines[number - 1] = replacement
    return "\n".join(lines) + "\n"


def test_tiny_network_reads_with_blank_lines_and_spaces(tmp_path):
    text = GOOD.replace("3.0,4.0,", " 3.0 , 4.0 ,\n\n").replace("0.5,", "0.5")
    path = tmp_path / "tiny.nnet"
    path.write_text(text)
    net = read_nnet(path)
    np.testing.assert_array_equal(net.layers[0].W, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(net.layers[1].b, [0.5])
    x = np.array([0.5, -0.25])
    hidden = np.maximum(np.array([[1, 2], [3, 4], [5, 6]]) @ x + [0.1, 0.2, 0.3], 0)
    np.testing.assert_allclose(net.forward(x), [np.dot([7, 8, 9], hidden) + 0.5], rtol=1e-15)


@pytest.mark.parametrize("number, replacement, message", [
    (3, "2,2,1,", "line 3: the counts .* needs 4 values, found 3"),
    (4, "2,3,2,", "line 4: layer sizes"),
    (6, "-1.0,", "line 6: the input minimums needs 2 values, found 1"),
    (7, "1.0,-2.0,", "line 7: an input maximum is below"),
    (9, "1.0,0.0,1.0,", "line 9: the range of input 1 is zero"),
    (11, "3.0,4.0,5.0,", r"line 11: row 1 of the weights of layer 0 needs 2 values, found 3"),
    (12, "5.0,", r"line 12: row 2 of the weights of layer 0 needs 2 values, found 1"),
    (14, "0.2,0.3,", r"line 14: bias 1 of layer 0 needs 1 value, found 2"),
    (16, "7.0,eight,9.0,", r"line 16: row 0 of the weights of layer 1: 'eight' is not a number"),
    (16, "7.0,nan,9.0,", r"line 16: .* NaN"),
    (3, "2.5,2,1,3,", r"line 3: .*'2.5' is not an integer"),
])
def test_malformed_line_is_reported_with_its_number(tmp_path, number, replacement, message):
    path = tmp_path / "bad.nnet"
    path.write_text(_with_line(GOOD, number, replacement))
    with pytest.raises(ModelError, match=message):
        read_nnet(path)


@pytest.mark.parametrize("number", [16, 17])
def test_truncated_file_is_reported(tmp_path, number):
    path = tmp_path / "short.nnet"
    path.write_text("\n".join(GOOD.splitlines()[:number - 1]) + "\n")
    with pytest.raises(ModelError, match=f"ends after line {number - 1}"):
        read_nnet(path)


@pytest.mark.parametrize("number, message", [
    (5, "line 5: the legacy flag needs 1 value, found 2"),  # the minimums are read as the flag
    (10, "line 12: row 2 of the weights of layer 0 needs 2 values, found 1"),  # a bias is read as a row
])
def test_missing_line_is_reported_where_the_count_breaks(tmp_path, number, message):
    path = tmp_path / "missing.nnet"
    path.write_text(_with_line(GOOD, number, None))
    with pytest.raises(ModelError, match=message):
        read_nnet(path)


def test_extra_content_is_reported(tmp_path):
    path = tmp_path / "long.nnet"
    path.write_text(GOOD + "1.0,\n")
    with pytest.raises(ModelError, match="line 18: unexpected content after the last layer"):
        read_nnet(path)


def test_missing_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot read"):
        read_nnet(tmp_path / "absent.nnet")
