"""Importer defects found by adversarial probing, each pinned by a test: fixed export batches, constant
folding of any standard op, damaged weight files, reparametrised layers, clear messages, pooling chains."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import helper

from onnx_models import graph_model, ort_forward, relative_error, tensor
from preimage.errors import ModelError, UnsupportedOperation
from preimage.network import AffineMap, Layer, Network
from preimage.network.layers import RELU
from preimage.network.load import load
from preimage.network.nnet import read_nnet
from preimage.network.onnx_import import from_onnx
from preimage.network.torch_import import from_torch


def _export(module, example, path, **kwargs):
    torch.onnx.export(module, example, str(path), dynamo=False, **kwargs)
    return path


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).double().eval()


# ---------------------------------------------------------------------------------------------------
# 8: NaN and infinite weights are refused, naming the layer and W or b


def test_nan_weight_names_layer_and_w():
    W = np.ones((2, 3))
    W[1, 2] = np.nan
    with pytest.raises(ModelError, match=r"layer 'fc1'.*W\[1, 2\]"):
        Layer(AffineMap(W, np.zeros(2)), RELU, "fc1")


def test_infinite_bias_is_refused_at_import():
    model = _mlp()
    with torch.no_grad():
        model[0].bias[3] = float("inf")
    with pytest.raises(ModelError, match=r"b\[3\]"):
        from_torch(model, check=False)


# ---------------------------------------------------------------------------------------------------
# 9: a model exported with a fixed batch above 1 is read per sample


def test_fixed_export_batch_is_read_per_sample(tmp_path):
    mlp = _mlp()
    path = _export(mlp.float(), torch.randn(8, 5), tmp_path / "mlp8.onnx")
    net = from_onnx(path)
    assert net.input_shape == (5,) and net.output_dim == 3
    X = np.random.default_rng(0).standard_normal((4, 5))
    expected = mlp.double()(torch.from_numpy(X)).detach().numpy()
    assert relative_error(net.forward(X), expected) <= 1e-6


def test_fixed_export_batch_of_a_cnn_is_read_per_sample(tmp_path):
    torch.manual_seed(1)
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    path = _export(cnn, torch.randn(4, 1, 6, 6), tmp_path / "cnn4.onnx")
    net = from_onnx(path)
    assert net.input_shape == (1, 6, 6)
    X = np.random.default_rng(1).standard_normal((3, 1, 6, 6))
    expected = cnn.double()(torch.from_numpy(X)).detach().numpy()
    assert relative_error(net.forward(X.reshape(3, -1)), expected) <= 1e-5


def test_fixed_batch_that_mixes_samples_is_refused_with_the_fix():
    # a Transpose moves the first axis: read per sample it is refused, so the whole tensor is one sample
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
             helper.make_node("Relu", ["t"], ["y"])]
    model = graph_model(nodes, [8, 5])
    net = from_onnx(model)  # read as one sample of shape (8, 5)
    assert net.input_shape == (8, 5)
    with pytest.raises(UnsupportedOperation, match="fixed batch of 8: re-export with batch 1"):
        from_onnx(model, batched=True)


# ---------------------------------------------------------------------------------------------------
# 10: constant folding with onnx's reference evaluator (Mod from nn.Unflatten, any elementwise op)


@pytest.mark.parametrize("opset", [13, 17])
def test_unflatten_exports_fold(tmp_path, opset):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.Unflatten(1, (2, 4)), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8, 2)).eval()
    path = _export(model, torch.randn(1, 6), tmp_path / "unflatten.onnx", opset_version=opset,
                   input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    net = from_onnx(path)
    X = np.random.default_rng(2).standard_normal((5, 6))
    assert relative_error(net.forward(X), model.double()(torch.from_numpy(X)).detach().numpy()) <= 1e-6


def test_constants_fold_through_uncommon_ops():
    nodes = [
        helper.make_node("Mod", ["a", "b"], ["m"], fmod=0),
        helper.make_node("Cast", ["m"], ["mf"], to=onnx.TensorProto.DOUBLE),
        helper.make_node("Where", ["c", "mf", "a_f"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["y"]),
    ]
    inits = [tensor("a", np.array([7, 8, 9], dtype=np.int64), np.int64),
             tensor("b", np.array([4, 3, 5], dtype=np.int64), np.int64),
             tensor("c", np.array([True, False, True]), np.bool_),
             tensor("a_f", np.array([7.0, 8.0, 9.0]))]
    net = from_onnx(graph_model(nodes, [3], inits))
    assert np.allclose(net.forward(np.ones((1, 3))), [[3.0, 8.0, 4.0]])


# ---------------------------------------------------------------------------------------------------
# 11: a damaged weights file is a ModelError naming the file


def test_truncated_weights_file_is_a_model_error(tmp_path):
    model = _mlp()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    failures = 0
    for cut in np.linspace(1, len(data) - 1, 25).astype(int):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(data[:cut])
        try:
            load(path, architecture=_mlp())
        except ModelError as error:
            assert str(path) in str(error)
            failures += 1
    assert failures >= 20


# ---------------------------------------------------------------------------------------------------
# 12: weight-normalised and spectral-normalised layers


@pytest.mark.parametrize("wrap", ["parametrize_weight_norm", "parametrize_spectral_norm", "old_weight_norm"])
def test_reparametrised_layers_import(wrap):
    torch.manual_seed(3)
    linear, conv = nn.Linear(2 * 4 * 4, 3), nn.Conv2d(1, 2, 3)
    if wrap == "parametrize_weight_norm":
        linear, conv = nn.utils.parametrizations.weight_norm(linear), nn.utils.parametrizations.weight_norm(conv)
    elif wrap == "parametrize_spectral_norm":
        linear, conv = nn.utils.parametrizations.spectral_norm(linear), nn.utils.parametrizations.spectral_norm(conv)
    else:
        with pytest.warns(FutureWarning):
            linear, conv = nn.utils.weight_norm(linear), nn.utils.weight_norm(conv)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), linear).eval()
    net = from_torch(model, (1, 6, 6))
    X = np.random.default_rng(3).standard_normal((4, 36))
    with torch.no_grad():
        expected = model.double()(torch.from_numpy(X).reshape(4, 1, 6, 6)).numpy()
    assert relative_error(net.forward(X), expected) <= 1e-9


# ---------------------------------------------------------------------------------------------------
# 13: messages, and affine ops that used to be refused


def test_empty_onnx_file_says_empty(tmp_path):
    path = tmp_path / "empty.onnx"
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [])), str(path))
    with pytest.raises(ModelError, match="empty"):
        from_onnx(path)


def test_two_writers_of_one_tensor_are_refused():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])]
    with pytest.raises(ModelError, match="'y' is written by"):
        from_onnx(graph_model(nodes, [1, 3]))


def _ort_check(model, shape, n=5, rtol=1e-9):
    net = from_onnx(model)
    X = np.random.default_rng(4).standard_normal((n, int(np.prod(shape))))
    assert relative_error(net.forward(X), ort_forward(model, X, net.input_shape)) <= rtol
    return net


def test_reduce_mean_over_spatial_axes_imports():
    nodes = [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)]
    _ort_check(graph_model(nodes, [1, 2, 3, 3], opset=13), (2, 3, 3))


def test_sum_and_concat_with_a_constant_import():
    nodes = [helper.make_node("Concat", ["x", "k"], ["c"], axis=1),
             helper.make_node("Sum", ["c", "k2"], ["y"])]
    inits = [tensor("k", np.array([[1.0, -2.0]])), tensor("k2", np.arange(5.0).reshape(1, 5))]
    _ort_check(graph_model(nodes, [1, 3], inits), (3,))


def test_conv_transpose_imports(tmp_path):
    torch.manual_seed(5)
    model = nn.Sequential(nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), nn.ReLU()).eval()
    path = _export(model, torch.randn(1, 2, 4, 4), tmp_path / "convt.onnx",
                   input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    net = from_onnx(path)
    X = np.random.default_rng(5).standard_normal((3, 2, 4, 4))
    expected = model.double()(torch.from_numpy(X)).detach().numpy().reshape(3, -1)
    assert relative_error(net.forward(X.reshape(3, -1)), expected) <= 1e-6


def test_batch_norm_with_negative_variance_says_so():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU()).eval()
    with torch.no_grad():
        model[1].running_var[2] = -1.0
    with pytest.raises(ModelError, match="negative"):
        from_torch(model, check=False)


def test_nan_in_an_onnx_conv_names_the_node():
    W = np.ones((2, 1, 3, 3))
    W[0, 0, 1, 1] = np.nan
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"], name="the_conv")]
    with pytest.raises(ModelError, match="the_conv"):
        from_onnx(graph_model(nodes, [1, 1, 5, 5], [tensor("W", W)]))


def test_nnet_with_zero_output_range_is_read(tmp_path):
    lines = ["// a 2-2-1 network", "2,2,1,2,", "2,2,1,", "0,", "-1,-1,", "1,1,", "0,0,0,", "1,1,0,",
             "1,0,", "0,1,", "0,", "0,", "1,1,", "0,"]
    path = tmp_path / "zero_range.nnet"
    path.write_text("\n".join(lines) + "\n")
    net = read_nnet(path)  # outputs are y * range + mean: a zero range makes a constant output
    assert np.allclose(net.forward(np.array([[0.5, 0.25], [-1.0, 1.0]])), [[0.0], [0.0]])
    lines[7] = "0,1,0,"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelError, match="range of input 0 is zero"):
        read_nnet(path)


# ---------------------------------------------------------------------------------------------------
# 14: pooling before a dense Linear stays a chain; parameters are the model's


def test_global_pooling_then_linear_stays_small():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(64, 100)).eval()
    net = from_torch(model, (3, 14, 14))
    assert net.n_params == sum(p.numel() for p in model.parameters())
    last = net.layers[-1]
    assert last.stored < 64 * 14 * 14 * 100 // 4  # not one dense 100 x 12544 matrix
    X = np.random.default_rng(6).standard_normal((3, 3 * 14 * 14))
    with torch.no_grad():
        expected = model.double()(torch.from_numpy(X).reshape(3, 3, 14, 14)).numpy()
    assert relative_error(net.forward(X), expected) <= 1e-9
