"""from_torch agrees with torch's own forward pass, keeps convolutions sparse, and refuses what it cannot import."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from preimage.errors import ImportMismatch, ModelError, ShapeError, UnsupportedOperation
from preimage.network import RELU, leaky_relu
from preimage.network import torch_ops
from preimage.network.builder import ActivationOp
from preimage.network.torch_import import from_torch, relative_error

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

TOLERANCE = 1e-9
IMAGE = (3, 9, 10)  # not square, so a swapped H and W shows


# ---------------------------------------------------------------------------------------------------
# the zoo: every supported layer and option


def randomise_batch_norm(model: nn.Module) -> nn.Module:
    """Random running statistics and affine parameters for every BatchNorm, then eval mode."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                if module.affine:
                    module.weight.normal_()
                    module.bias.normal_()
    return model.eval()


def with_head(features: nn.Module, input_shape, outputs: int = 3) -> nn.Sequential:
    """``features``, then Flatten and a Linear sized by running the features once."""
    with torch.no_grad():
        size = features.eval()(torch.zeros(1, *input_shape)).numel()
    return nn.Sequential(features, nn.Flatten(), nn.Linear(size, outputs))


def conv_net(out_channels=6, **options) -> nn.Sequential:
    features = nn.Sequential(nn.Conv2d(IMAGE[0], out_channels, **options), nn.BatchNorm2d(out_channels), nn.ReLU())
    return with_head(features, IMAGE)


def pool_net(pool: nn.Module) -> nn.Sequential:
    features = nn.Sequential(nn.Conv2d(IMAGE[0], 4, 3, padding=1), nn.ReLU(), pool, nn.LeakyReLU(0.5))
    return with_head(features, IMAGE)


class Normalised(nn.Module):
    """A traced custom module: input normalisation, functional layers, a raw parameter, constant arithmetic."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.rand(3, 1, 1))
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.weight = nn.Parameter(torch.randn(5, 4 * 4 * 5))
        self.bias = nn.Parameter(torch.randn(5))
        self.register_buffer("projection", torch.randn(6, 5))
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        x = (x * 2 - 1 - self.mean) / 0.5
        x = F.relu(self.features(x))
        x = F.avg_pool2d(x, 2)
        x = F.dropout(x, 0.2, self.training)
        x = x.view(x.size(0), -1)
        x = F.leaky_relu(F.linear(x, self.weight, self.bias), 0.2)
        x = x.relu() @ self.projection.t()
        x = torch.flatten(2.0 - x, 1)
        return self.out(-x + 1)


class FunctionalMLP(nn.Module):
    """A traced MLP whose first layer is ``F.linear`` of a parameter (its input size is inferred)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 5))
        self.hidden = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(F.linear(x, self.weight))
        x = x.unsqueeze(1).mul(torch.linspace(0.5, 1.5, 8)).squeeze(1)
        return self.hidden(x).sub(0.25, alpha=2.0)


class FunctionalConv(nn.Module):
    """A traced convnet of functional calls: conv2d and adaptive pooling of parameters, BatchNorm1d on (C, L)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.bias = nn.Parameter(torch.randn(4))
        self.norm = nn.BatchNorm1d(4)
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        x = F.conv2d(x, self.weight, self.bias, stride=2, padding=1)
        x = F.adaptive_avg_pool2d(torch.relu_(x), (2, 2))
        x = self.norm(x.reshape(-1, 4, 4))
        return self.out(x.view(-1, 16).contiguous())


def mlp(bias=True):
    return nn.Sequential(nn.Linear(6, 10, bias=bias), nn.ReLU(), nn.Linear(10, 7, bias=bias), nn.ReLU(),
                         nn.Linear(7, 3, bias=bias))


ZOO = [
    pytest.param(mlp, None, id="mlp"),
    pytest.param(lambda: mlp(bias=False), None, id="mlp-no-bias"),
    pytest.param(lambda: nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)), None,
                 id="batchnorm1d-after-linear"),
    pytest.param(lambda: nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8, affine=False), nn.ReLU(), nn.Linear(8, 3)),
                 None, id="batchnorm1d-after-linear-no-affine"),
    pytest.param(lambda: nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), (6,),
                 id="batchnorm1d-before-linear"),
    pytest.param(lambda: nn.Sequential(nn.BatchNorm1d(6, affine=False), nn.Linear(6, 8), nn.ReLU(),
                                       nn.BatchNorm1d(8), nn.Linear(8, 3)), (6,),
                 id="batchnorm1d-both-sides-no-affine"),
    pytest.param(lambda: nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.05), nn.Linear(8, 5), nn.LeakyReLU(0.3),
                                       nn.Linear(5, 2)), None, id="leaky-relu"),
    pytest.param(lambda: nn.Sequential(nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 2)), None,
                 id="activation-first-and-twice"),
    pytest.param(lambda: nn.Sequential(
        nn.Sequential(nn.Linear(6, 9), nn.Dropout(0.5)),
        nn.Sequential(nn.ReLU(), nn.AlphaDropout(0.3), nn.Identity(), nn.Sequential(nn.Linear(9, 4))),
        nn.FeatureAlphaDropout(0.1), nn.Linear(4, 2)), None, id="nested-sequential-dropout"),
    pytest.param(lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2)), None,
                 id="flatten-then-linear"),
    pytest.param(lambda: nn.Sequential(nn.Linear(6, 12), nn.Unflatten(1, (3, 4)), nn.Dropout1d(0.2),
                                       nn.Linear(4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(15, 2)), None,
                 id="linear-on-rows"),
    pytest.param(lambda: nn.Linear(6, 3), None, id="lone-linear"),
    pytest.param(lambda: nn.Conv2d(3, 2, 3, stride=2, padding=1), IMAGE, id="lone-conv2d"),
    pytest.param(FunctionalMLP, None, id="fx-functional-mlp"),
    pytest.param(Normalised, (3, 8, 10), id="fx-normalised-convnet"),
    pytest.param(FunctionalConv, IMAGE, id="fx-functional-convnet"),
    pytest.param(nn.Identity, (2, 3), id="identity"),
    pytest.param(lambda: with_head(nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=False), nn.ReLU(), nn.Dropout2d(0.3),
        nn.BatchNorm2d(4), nn.Conv2d(4, 2, 2, stride=2), nn.ReLU()), IMAGE), IMAGE, id="batchnorm2d-both-sides"),
]

CONV_OPTIONS = [
    dict(kernel_size=3),
    dict(kernel_size=3, bias=False),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0)),
    dict(kernel_size=3, padding="valid"),
    dict(kernel_size=3, padding="same", dilation=2),
    dict(kernel_size=4, padding="same"),
    dict(kernel_size=3, padding=2, dilation=(2, 1)),
    dict(kernel_size=3, padding=1, groups=3),
    dict(kernel_size=1, groups=3, out_channels=3, bias=False),
    dict(kernel_size=3, padding=2, padding_mode="reflect"),
    dict(kernel_size=4, padding="same", padding_mode="reflect"),
    dict(kernel_size=3, stride=2, padding=1, padding_mode="replicate"),
    dict(kernel_size=3, padding=(1, 2), padding_mode="circular"),
    dict(kernel_size=3, stride=(1, 2), padding=2, dilation=2, groups=3, padding_mode="circular"),
]

POOLS = [
    nn.AvgPool2d(2),
    nn.AvgPool2d(3, stride=2, padding=1),
    nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
    nn.AvgPool2d((2, 3), stride=2, ceil_mode=True),
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    nn.AvgPool2d(2, stride=(1, 2), divisor_override=3),
    nn.AdaptiveAvgPool2d(1),
    nn.AdaptiveAvgPool2d((4, 3)),
    nn.AdaptiveAvgPool2d((None, 2)),
]

ZOO += [pytest.param(lambda o=o: conv_net(**o), IMAGE, id="conv-" + "-".join(f"{k}={v}" for k, v in o.items()))
        for o in CONV_OPTIONS]
ZOO += [pytest.param(lambda p=p: pool_net(copy.deepcopy(p)), IMAGE, id=f"pool-{p!r}") for p in POOLS]


def build(factory) -> nn.Module:
    torch.manual_seed(7)
    return randomise_batch_norm(factory())


def torch_outputs(model: nn.Module, X: np.ndarray) -> np.ndarray:
    reference = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return reference(torch.from_numpy(X)).reshape(len(X), -1).numpy()


def error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize(("factory", "input_shape"), ZOO)
def test_import_agrees_with_torch_forward(factory, input_shape, rng):
    model = build(factory)
    net = from_torch(model, input_shape)
    X = rng.standard_normal((32, *net.input_shape))
    assert error(net.forward(X), torch_outputs(model, X)) <= TOLERANCE
    assert error(net.forward(X.reshape(32, -1)), torch_outputs(model, X)) <= TOLERANCE


@pytest.mark.parametrize("options", CONV_OPTIONS, ids=[str(i) for i in range(len(CONV_OPTIONS))])
def test_conv_layers_are_sparse(options):
    net = from_torch(build(lambda: conv_net(**options)), IMAGE)
    conv = net.layers[0]
    assert conv.affine.is_sparse
    assert conv.sources[0].endswith(":Conv2d") and conv.sources[1].endswith(":BatchNorm2d")
    taps = (IMAGE[0] // options.get("groups", 1)) * np.prod(np.broadcast_to(options["kernel_size"], 2))
    assert conv.affine.nnz <= conv.out_features * taps


@pytest.mark.parametrize("pool", POOLS, ids=repr)
def test_pool_layers_are_sparse(pool):
    net = from_torch(build(lambda: pool_net(copy.deepcopy(pool))), IMAGE)
    assert net.layers[0].affine.is_sparse
    pooled = net.layers[1]
    assert pooled.sources == (f"0.2:{type(pool).__name__}", "0.3:LeakyReLU")
    assert pooled.affine.is_sparse
    assert pooled.affine.nnz <= pooled.in_features * np.prod(np.broadcast_to(getattr(pool, "kernel_size", 9), 2))


def test_input_shape_is_inferred_from_the_first_linear():
    assert from_torch(build(mlp)).input_shape == (6,)
    assert from_torch(build(FunctionalMLP)).input_shape == (5,)
    assert from_torch(nn.Sequential(nn.Dropout(), nn.Flatten(), nn.Linear(12, 2))).input_shape == (12,)


def test_layers_are_named_by_module_path_and_batchnorm_folds():
    model = build(lambda: nn.Sequential(nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU()),
                                        nn.LeakyReLU(0.1), nn.BatchNorm1d(8), nn.Linear(8, 2)))
    net = from_torch(model)
    assert net.name == "Sequential"
    assert [layer.name for layer in net.layers] == ["0.0+0.1", "identity", "2+3"]
    assert [layer.activation for layer in net.layers] == [RELU, leaky_relu(0.1), net.layers[2].activation]
    assert net.layers[2].sources == ("2:BatchNorm1d", "3:Linear")
    assert from_torch(model, name="folded").name == "folded"


def test_the_users_module_is_left_unchanged():
    model = build(lambda: nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Dropout(), nn.Linear(4, 2)))
    model[2].train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    from_torch(model)
    assert [m.training for m in model] == [False, False, True, False]
    assert all(v.dtype == before[k].dtype and torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------------
# what is refused, and how


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.fc(x)


class Concatenation(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.cat([self.fc(x), x], dim=1)


class Branch(nn.Module):
    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        y = self.left(x)
        self.right(x)
        return y


class Square(nn.Module):
    def forward(self, x):
        return torch.relu(x) * x


class Sigmoidal(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


@pytest.mark.parametrize(("model", "input_shape", "op", "node"), [
    (nn.Sequential(nn.Sequential(nn.Conv2d(3, 2, 3), nn.MaxPool2d(2)), nn.Flatten()), IMAGE, "MaxPool2d", "0.1"),
    (nn.Sequential(nn.Linear(4, 4), nn.Sigmoid()), None, "Sigmoid", "1"),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU6()), None, "ReLU6", "1"),
    (nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), None, "LayerNorm", "1"),
    (nn.Sequential(nn.Unflatten(1, (1, 4)), nn.Conv1d(1, 2, 2)), (4,), "Conv1d", "1"),
    (Sigmoidal(), None, "sigmoid", "sigmoid"),
    (Residual(), None, "add", "add"),
    (Concatenation(), None, "cat", "cat"),
    (Branch(), None, "Linear", "right"),
    (Square(), (4,), "mul", "mul"),
], ids=["maxpool", "sigmoid", "relu6", "layernorm", "conv1d", "torch.sigmoid", "residual", "cat", "branch", "square"])
def test_unsupported_operations_name_their_type_and_node(model, input_shape, op, node):
    with pytest.raises(UnsupportedOperation) as caught:
        from_torch(model.eval(), input_shape)
    assert (caught.value.op, caught.value.node) == (op, node)
    assert op in str(caught.value) and node in str(caught.value)


def test_batchnorm_with_batch_statistics_is_refused():
    model = randomise_batch_norm(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)))
    with pytest.raises(ModelError, match=r"BatchNorm1d at '1'.*training mode.*eval"):
        from_torch(model.train())
    untracked = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False)).eval()
    with pytest.raises(ModelError, match="running statistics"):
        from_torch(untracked)


@pytest.mark.parametrize(("model", "input_shape", "where"), [
    (nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), None, "'2'"),
    (nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()), IMAGE, "'0'"),
    (nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)), None, "'1'"),
], ids=["linear", "conv2d", "batchnorm"])
def test_nan_weights_are_refused(model, input_shape, where):
    with torch.no_grad():
        next(p for p in model[-1 if where != "'0'" else 0].parameters()).view(-1)[0] = float("nan")
    with pytest.raises(ModelError, match=f"{where}.*NaN"):
        from_torch(model.eval(), input_shape)


def test_conv_model_without_input_shape_asks_for_it():
    with pytest.raises(ShapeError, match=r"Conv2d at '0.0'.*input_shape=\(C, H, W\)"):
        from_torch(conv_net(kernel_size=3))


def test_wrong_input_shape_is_a_shape_error():
    with pytest.raises(ShapeError, match="input_shape"):
        from_torch(build(mlp), (5,))
    net = from_torch(build(mlp))
    with pytest.raises(ShapeError):
        net.forward(np.zeros((2, 5)))


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return x


class TwoOutputs(nn.Module):
    def forward(self, x):
        return x, x


class DataDependent(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


class BatchMixing(nn.Module):
    def forward(self, x):
        return x.view(-1)


class ZeroDivisor(nn.Module):
    def forward(self, x):
        return x / torch.tensor([1.0, 0.0])


@pytest.mark.parametrize(("model", "error", "pattern"), [
    (TwoInputs(), ModelError, "more than one input"),
    (TwoOutputs(), ModelError, "single output"),
    (DataDependent(), ModelError, "cannot trace"),
    (BatchMixing(), UnsupportedOperation, "batch axis"),
    (ZeroDivisor(), ModelError, "zero"),
    (nn.Tanh(), UnsupportedOperation, "not piecewise linear"),
])
def test_models_that_are_not_chains_of_affine_maps_are_refused(model, error, pattern):
    with pytest.raises(error, match=pattern):
        from_torch(model, (2,))


def test_check_catches_a_wrong_translation(monkeypatch):
    model = build(mlp)
    wrong = lambda step: [ActivationOp(leaky_relu(0.5), step.where, step.kind)]  # noqa: E731
    monkeypatch.setitem(torch_ops.MODULE_RULES, nn.ReLU, wrong)
    with pytest.raises(ImportMismatch, match="differs from the torch forward pass") as caught:
        from_torch(model)
    assert caught.value.error > 1e-3
    assert from_torch(model, check=False).layers[0].activation == leaky_relu(0.5)


@pytest.mark.parametrize(("got", "expected", "value"), [
    ([[1.0, 2.0]], [[1.0, 2.5]], 0.5 / 2.5),
    ([[1e-3]], [[2e-3]], 1e-3),
    ([[100.0, 0.0], [0.0, 0.1]], [[101.0, 0.0], [0.0, 0.0]], 0.1),
    ([[np.nan]], [[1.0]], np.inf),
])
def test_relative_error_is_per_sample_and_floored_at_one(got, expected, value):
    assert relative_error(np.array(got), np.array(expected)) == pytest.approx(value)


def test_functional_dropout_in_training_mode_is_refused():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return F.dropout(torch.relu(self.fc(x)), 0.5)

    with pytest.raises(ModelError, match="training=True"):
        from_torch(Noisy())
