"""load() dispatches on the kind of model, reads weights files safely, and says what went wrong."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import torch.nn as nn

from preimage.errors import ModelError, ShapeError
from preimage.network import IDENTITY, AffineMap, Layer, Network
from preimage.network.load import SUPPORTED_SUFFIXES, load
from preimage.network.torch_import import from_torch


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU())
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.body(x))


def trained_classifier() -> Classifier:
    torch.manual_seed(3)
    model = Classifier()
    with torch.no_grad():
        model.body[1].running_mean.normal_()
        model.body[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def outputs(model: nn.Module, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.double()(torch.from_numpy(X)).numpy()


@pytest.fixture
def fake_importers(monkeypatch):
    """Stand-ins for the ONNX and NNet readers that record what load() hands them."""
    calls = []
    net = Network([Layer(AffineMap(np.eye(3)), IDENTITY)], name="fake")

    def reader(kind):
        def read(source):
            calls.append((kind, source))
            return net
        return read

    for module, function in (("onnx_import", "from_onnx"), ("nnet", "read_nnet")):
        fake = types.ModuleType(f"preimage.network.{module}")
        setattr(fake, function, reader(function))
        monkeypatch.setitem(sys.modules, f"preimage.network.{module}", fake)
    return calls, net


def test_a_network_is_returned_as_is():
    net = from_torch(trained_classifier())
    assert load(net) is net


def test_a_module_goes_through_from_torch(rng):
    model = trained_classifier()
    X = rng.standard_normal((8, 4))
    np.testing.assert_allclose(load(model).forward(X), from_torch(model).forward(X), rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".onnx", ".ONNX", ".nnet"])
def test_onnx_and_nnet_files_go_to_their_readers(tmp_path, fake_importers, suffix):
    calls, net = fake_importers
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"")
    assert load(str(path)) is net
    assert calls == [("read_nnet" if suffix == ".nnet" else "from_onnx", path)]
    with pytest.raises(ShapeError, match="declares the input shape"):
        load(path, input_shape=(1, 3))


def test_an_onnx_model_object_goes_to_from_onnx(fake_importers):
    onnx = pytest.importorskip("onnx")
    calls, net = fake_importers
    proto = onnx.ModelProto()
    assert load(proto) is net
    assert calls == [("from_onnx", proto)]


def test_a_real_onnx_file_round_trips(tmp_path, rng):
    pytest.importorskip("preimage.network.onnx_import")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    W0, b0, W1 = rng.standard_normal((5, 3)), rng.standard_normal(5), rng.standard_normal((2, 5))
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W0", "b0"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "W1t"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", 2])],
        initializer=[numpy_helper.from_array(W0, "W0"), numpy_helper.from_array(b0, "b0"),
                     numpy_helper.from_array(np.ascontiguousarray(W1.T), "W1t")],
    )
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    X = rng.standard_normal((6, 3))
    np.testing.assert_allclose(load(path).forward(X), np.maximum(X @ W0.T + b0, 0) @ W1.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("suffix", "nest"), [(".pt", None), (".pth", None), (".pt", "state_dict"),
                                              (".pth", "model_state_dict")])
def test_a_state_dict_loads_into_the_given_architecture(tmp_path, rng, suffix, nest):
    model = trained_classifier()
    path = tmp_path / f"weights{suffix}"
    state = model.state_dict()
    torch.save(state if nest is None else {nest: state, "epoch": 3}, path)
    torch.manual_seed(11)
    architecture = Classifier()  # other weights, and in training mode, as freshly built
    before = {k: v.clone() for k, v in architecture.state_dict().items()}
    net = load(path, architecture=architecture)
    X = rng.standard_normal((16, 4))
    expected = outputs(model, X)
    assert np.abs(net.forward(X) - expected).max() <= 1e-9 * max(1.0, np.abs(expected).max())
    assert architecture.training
    assert all(torch.equal(v, before[k]) for k, v in architecture.state_dict().items())


def test_a_weights_file_needs_an_architecture(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(trained_classifier().state_dict(), path)
    with pytest.raises(ModelError, match="no architecture.*architecture=MyModel"):
        load(path)
    with pytest.raises(ModelError, match="instance"):
        load(path, architecture=Classifier)


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(nn.Sequential(nn.Linear(4, 2)).state_dict(), path)
    with pytest.raises(ModelError, match="do not fit Classifier"):
        load(path, architecture=Classifier())


def test_a_pickled_module_is_refused_unread(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(trained_classifier(), path)
    with pytest.raises(ModelError, match="unpickling") as caught:
        load(path, architecture=Classifier())
    assert str(path) in str(caught.value)


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "absent.onnx"
    with pytest.raises(FileNotFoundError) as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_an_unknown_suffix_lists_the_supported_ones(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"")
    with pytest.raises(ModelError) as caught:
        load(path)
    assert all(suffix in str(caught.value) for suffix in SUPPORTED_SUFFIXES)


@pytest.mark.parametrize("bad", [42, np.zeros(3), ["model.onnx"]])
def test_other_objects_are_refused(bad):
    with pytest.raises(ModelError, match="cannot load"):
        load(bad)


def test_architecture_is_refused_where_it_means_nothing():
    with pytest.raises(ModelError, match="architecture="):
        load(trained_classifier(), architecture=Classifier())
