"""Inverse sets of neurons: every sample in range and valid (checked by an independent forward pass), diversity
from the objective, intersections, generator and encoder, baselines measured alike, exact ground truth."""

import numpy as np
import pytest
import torch

import preimage as pim
from preimage.inverse import (
    InverseSet, compare, coverage, exact_inverse_set, gradient_ascent, langevin, mean_pairwise_distance, sample_exact,
)
from preimage.viz import plot_image_grid


def _mlp(sizes, activation=torch.nn.ReLU, seed=0):
    torch.manual_seed(seed)
    modules = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        modules += [torch.nn.Linear(a, b), activation()]
    return torch.nn.Sequential(*modules[:-1]).double()


@pytest.fixture(scope="module")
def relu_model():
    return _mlp((16, 24, 12, 3))


@pytest.fixture(scope="module")
def relu_net(relu_model):
    return pim.load(relu_model)


@pytest.fixture(scope="module")
def box16():
    return pim.Box(np.zeros(16), np.ones(16))


def _range(values, low=0.55, high=0.85):
    return tuple(float(q) for q in np.quantile(values, [low, high]))


def _module_values(model, name, X, unit, shape=None):
    """An independent forward pass: the output of submodule ``name`` at unit ``unit`` (flat)."""
    captured = {}
    handle = dict(model.named_modules())[name].register_forward_hook(lambda m, i, o: captured.update(out=o))
    with torch.no_grad():
        model(torch.tensor(X.reshape(len(X), *(shape or X.shape[1:])), dtype=torch.float64))
    handle.remove()
    return captured["out"].reshape(len(X), -1)[:, unit].numpy()


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_network_samples_in_range_and_valid(relu_net, box16, layer):
    z = relu_net.preactivations(box16.sample(4000, rng=1))[layer][:, 1]
    z1, z2 = _range(z)
    result = pim.inverse_set(relu_net, (layer, 1), z1, z2, 120, domain=box16, rng=3, first=40)
    assert isinstance(result, InverseSet) and result.samples.shape == (120, 16)
    assert result.in_range == 1.0 and result.reason == ""
    values = relu_net.preactivations(result.samples)[layer][:, 1]
    assert np.allclose(values, result.activations, rtol=0, atol=1e-12)
    assert np.all((values >= z1) & (values <= z2))
    assert np.all((result.samples >= 0) & (result.samples <= 1))
    assert result.diversity > 0 and result.time_per_sample > 0 and result.steps > 0
    assert result.diversity == pytest.approx(result.diversity_encoded)


@pytest.mark.parametrize("activation", [torch.nn.Tanh, torch.nn.Sigmoid])
def test_torch_module_any_activation(activation, box16):
    model = _mlp((16, 20, 10, 2), activation, seed=4)
    X = box16.sample(3000, rng=2)
    z1, z2 = _range(_module_values(model, "2", X, 5), 0.8, 0.95)
    result = pim.inverse_set(model, ("2", 5), z1, z2, 80, domain=box16, rng=0)
    values = _module_values(model, "2", result.samples, 5)
    assert result.in_range == 1.0
    assert np.all((values >= z1) & (values <= z2)) and np.all((result.samples >= 0) & (result.samples <= 1))


def test_conv_unit_indexed_by_channel_and_pixel():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(256, 3)).double()
    box = pim.Box(np.zeros(64), np.ones(64))
    X = box.sample(2000, rng=0)
    flat = int(np.ravel_multi_index((2, 3, 4), (4, 8, 8)))
    z1, z2 = _range(_module_values(model, "0", X, flat, (1, 8, 8)), 0.9, 0.99)
    result = pim.inverse_set(model, ("0", (2, 3, 4)), z1, z2, 60, domain=box, input_shape=(1, 8, 8), rng=0)
    assert result.samples.shape == (60, 1, 8, 8) and result.in_range == 1.0
    values = _module_values(model, "0", result.samples, flat)
    assert np.all((values >= z1) & (values <= z2))
    net = pim.load(model, input_shape=(1, 8, 8))
    assert net.layers[0].affine.is_sparse
    imported = pim.inverse_set(net, (0, (2, 3, 4)), z1, z2, 40, domain=box, rng=1)
    assert imported.samples.shape == (40, 1, 8, 8) and imported.in_range == 1.0
    assert np.allclose(_module_values(model, "0", imported.samples, flat), imported.activations, atol=1e-10)


def test_diversity_grows_with_the_objective(relu_net, box16):
    z1, z2 = _range(relu_net.preactivations(box16.sample(4000, rng=1))[1][:, 4])
    off = pim.inverse_set(relu_net, (1, 4), z1, z2, 100, domain=box16, diversity_weight=0.0, rng=5)
    on = pim.inverse_set(relu_net, (1, 4), z1, z2, 100, domain=box16, diversity_weight=1.0, rng=5)
    assert off.in_range == on.in_range == 1.0
    assert on.diversity > 1.15 * off.diversity
    assert on.diversity == pytest.approx(mean_pairwise_distance(on.samples))
    brute = np.linalg.norm(on.samples[:, None] - on.samples[None], axis=2)
    assert on.diversity == pytest.approx(brute.sum() / (100 * 99), rel=1e-8)
    assert mean_pairwise_distance(np.zeros((0, 16))) == mean_pairwise_distance(np.ones((1, 16))) == 0.0


def test_intersection_meets_every_range(relu_net, box16):
    Z = relu_net.preactivations(box16.sample(4000, rng=1))[2]
    neurons = [(2, 0), (2, 2)]
    z1 = [float(np.quantile(Z[:, 0], 0.6)), float(np.quantile(Z[:, 2], 0.6))]
    result = pim.inverse_set(relu_net, neurons, z1, np.inf, 90, domain=box16, rng=2)
    assert result.activations.shape == (90, 2) and result.in_range == 1.0
    out = relu_net.forward(result.samples)
    assert np.all(out[:, 0] >= z1[0]) and np.all(out[:, 2] >= z1[1])


def test_generator_and_encoder(relu_model, box16):
    torch.manual_seed(3)
    decoder = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Sigmoid()).double()
    encoder = torch.nn.Linear(16, 5).double()
    net = pim.load(relu_model)
    z1, z2 = _range(net.preactivations(box16.sample(4000, rng=1))[0][:, 2], 0.3, 0.7)
    result = pim.inverse_set(net, (0, 2), z1, z2, 60, domain=box16, generator=decoder, encoder=encoder, rng=0)
    assert result.codes.shape == (60, 4) and result.encoded.shape == (60, 5) and result.in_range == 1.0
    with torch.no_grad():
        made = decoder(torch.tensor(result.codes)).numpy()
        features = encoder(torch.tensor(made)).numpy()
    assert np.allclose(made, result.samples, atol=1e-12) and np.allclose(features, result.encoded, atol=1e-10)
    values = net.preactivations(made)[0][:, 2]
    assert np.all((values >= z1) & (values <= z2))


def test_reproducible_with_a_seed(relu_net, box16):
    a = pim.inverse_set(relu_net, (0, 3), 0.0, 0.5, 30, domain=box16, rng=7)
    b = pim.inverse_set(relu_net, (0, 3), 0.0, 0.5, 30, domain=box16, rng=7)
    assert np.array_equal(a.samples, b.samples)


def test_unreachable_range_says_why(relu_net, box16):
    result = pim.inverse_set(relu_net, (1, 0), 1e6, 2e6, 20, domain=box16, max_steps=30, repair_steps=30, rng=0)
    assert result.in_range == 0.0 and "not in range" in result.reason and "unreachable" in result.reason


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(neuron=(1, 0), z1=2.0, z2=1.0), pim.EmptyDomainError, "empty"),
    (dict(neuron=(1, 12), z1=0.0, z2=1.0), pim.ShapeError, "out of range"),
    (dict(neuron=(5, 0), z1=0.0, z2=1.0), pim.ShapeError, "layer 5"),
    (dict(neuron=[(0, 0), (1, 0)], z1=[0.0, 1.0, 2.0], z2=3.0), pim.ShapeError, "one value per neuron"),
    (dict(neuron="unit 3", z1=0.0, z2=1.0), pim.ShapeError, "(layer, unit)"),
])
def test_bad_arguments_raise_clearly(relu_net, box16, kwargs, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        pim.inverse_set(relu_net, n=10, domain=box16, **kwargs)


def test_bad_arguments_of_torch_modules(relu_model, box16):
    with pytest.raises(pim.ShapeError, match="no submodule 'nine'"):
        pim.inverse_set(relu_model, ("nine", 0), 0.0, 1.0, 5, domain=box16)
    with pytest.raises(pim.ShapeError, match="input shape"):
        pim.inverse_set(relu_model, ("0", 0), 0.0, 1.0, 5)
    with pytest.raises(pim.ShapeError, match="out of range"):
        pim.inverse_set(relu_model, ("2", 12), 0.0, 1.0, 5, domain=box16)
    with pytest.raises(pim.ShapeError, match="coordinates"):
        pim.inverse_set(relu_model, ("0", 0), 0.0, 1.0, 5, domain=pim.Box(np.zeros(3), np.ones(3)),
                        input_shape=(16,))
    with pytest.raises(ValueError, match="positive integer"):
        pim.inverse_set(relu_model, ("0", 0), 0.0, 1.0, 0, domain=box16)
    with pytest.raises(ValueError, match="budget"):
        gradient_ascent(relu_model, ("0", 0), 0.0, 1.0, 5, domain=box16)


def test_baselines_measured_alike(relu_net, box16):
    z1, z2 = _range(relu_net.preactivations(box16.sample(4000, rng=1))[1][:, 4])
    ours, ascent, chain = compare(relu_net, (1, 4), z1, z2, 100, box16, rng=1)
    assert [r.method for r in (ours, ascent, chain)] == ["augmented Lagrangian", "gradient ascent", "Langevin"]
    for result in (ours, ascent, chain):
        values = relu_net.preactivations(result.samples)[1][:, 4]
        assert np.array_equal(result.in_range_mask, (values >= z1) & (values <= z2))
        assert result.seconds <= ours.seconds + 0.5 and 0.0 <= result.in_range <= 1.0
        assert np.all((result.samples >= 0) & (result.samples <= 1))
    limited = langevin(relu_net, (1, 4), z1, z2, 50, box16, max_steps=7, rng=0)
    assert limited.steps == 7 and limited.samples.shape == (50, 16)


@pytest.fixture(scope="module")
def plane_case():
    model = _mlp((2, 16, 16, 1), seed=0)
    net = pim.load(model)
    box = pim.Box(-np.ones(2), np.ones(2))
    z1, z2 = _range(net.preactivations(box.sample(5000, rng=0))[1][:, 3], 0.6, 0.9)
    return net, box, z1, z2, exact_inverse_set(net, (1, 3), z1, z2, box)


def test_exact_inverse_set_is_ground_truth(plane_case):
    net, box, z1, z2, exact = plane_case
    assert exact.complete and len(exact) > 1
    uniform = sample_exact(exact, 600, rng=4)
    values = net.preactivations(uniform)[1][:, 3]
    tol = 1e3 * pim.current().feasibility_tol
    assert np.all(exact.contains(uniform)) and np.all((values >= z1 - tol) & (values <= z2 + tol))
    assert exact.verify(3000, rng=5).ok
    result = pim.inverse_set(net, (1, 3), z1, z2, 200, domain=box, rng=0)
    measured = coverage(exact, result, uniform=uniform)
    assert measured.inside == 1.0 and measured.distances.shape == (400,)
    assert 0 < measured.reference_median and np.isfinite(measured.ratio)
    assert np.all(measured.distances >= 0)
    brute = np.min(np.linalg.norm(uniform[:400, None, :] - result.samples[None, :, :], axis=2), axis=1)
    assert np.allclose(measured.distances, brute, atol=1e-9)


def test_exact_intersection_and_errors(plane_case):
    net, box, z1, z2, exact = plane_case
    both = exact_inverse_set(net, [(1, 3), (2, 0)], [z1, -np.inf], [z2, 0.0], box)
    points = sample_exact(both, 200, rng=0) if len(both) else np.zeros((0, 2))
    assert np.all(net.forward(points)[:, 0] <= 1e-7) and np.all(exact.contains(points))
    with pytest.raises(pim.ShapeError, match="not an index"):
        exact_inverse_set(net, ("1", 3), z1, z2, box)
    with pytest.raises(pim.EmptyDomainError):
        exact_inverse_set(net, (1, 3), z2, z1, box)


def test_plots_are_image_grids(relu_net, box16, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = pim.inverse_set(relu_net, (0, 0), 0.0, 0.3, 20, domain=box16, rng=0)
    ax = result.plot()
    assert ax.images and ax.images[0].get_array().shape == (4 * 5 - 1, 5 * 5 - 1)
    plt.gcf().savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    plt.close("all")
    with pytest.raises(pim.ShapeError):
        plot_image_grid(np.zeros((3, 4)))


def test_digits_demo_writes_grids_and_measures(tmp_path):
    from preimage.inverse.demo import run_inverse_demo

    lines = []
    demo = run_inverse_demo(tmp_path, n=12, epochs=60, echo=lines.append)
    assert len(demo.cases) == 7 and demo.table.exists()
    for name, results, path in demo.cases:
        assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000
        assert [r.method for r in results] == ["augmented Lagrangian", "gradient ascent", "Langevin"]
        assert results[0].in_range == 1.0, (name, results[0].reason)
    rows = demo.table.read_text().splitlines()
    assert len(rows) == 1 + 3 * 7 and "diversity_in_range" in rows[0]
    assert not list(tmp_path.glob(".*.tmp"))
