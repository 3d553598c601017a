"""Activation-pattern statistics at dataset scale: every figure's numbers against an independent count."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402
from scipy.cluster.hierarchy import fcluster  # noqa: E402
from torch import nn  # noqa: E402

import preimage as pim  # noqa: E402
from preimage import patterns as pat  # noqa: E402
from preimage import viz  # noqa: E402
from preimage.cli import main  # noqa: E402
from preimage.errors import ModelError, ShapeError  # noqa: E402


def _brute_knn(bits: np.ndarray, k: int):
    D = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    np.fill_diagonal(D, np.iinfo(np.int64).max)
    order = np.lexsort((np.broadcast_to(np.arange(len(bits)), D.shape), D), axis=1)[:, :k]
    return order, np.take_along_axis(D, order, 1)


def _clustered(rng, n, bits, centres=5, flip=0.05):
    middle = rng.random((centres, bits)) < 0.5
    return middle[rng.integers(0, centres, n)] ^ (rng.random((n, bits)) < flip)


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(64, 40), nn.ReLU(), nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 10)).double()
    return model.eval(), pim.load(model)


@pytest.mark.parametrize("n, bits, k, kind", [(300, 70, 7, "rates"), (700, 768, 10, "rates"), (600, 5, 4, "ties"),
                                              (520, 130, 3, "clusters"), (2, 9, 1, "rates")])
def test_knn_equals_brute_force(rng, n, bits, k, kind):
    if kind == "clusters":
        B = _clustered(rng, n, bits, flip=0.01)
    else:
        B = rng.random((n, bits)) < rng.random(bits)
    idx, dist = pim.hamming_knn(B, k)
    expected_idx, expected_dist = _brute_knn(B, k)
    assert np.array_equal(idx, expected_idx) and np.array_equal(dist, expected_dist)
    assert not np.any(idx == np.arange(n)[:, None])
    P = pat.Patterns.from_bits([B[:, : bits // 2], B[:, bits // 2:]])
    assert np.array_equal(pim.hamming_knn(P, k)[1], expected_dist)


def test_knn_of_one_layer_and_bad_k(rng):
    a, b = rng.random((200, 30)) < 0.4, rng.random((200, 90)) < 0.7
    P = pat.Patterns.from_bits([a, b])
    assert np.array_equal(pim.hamming_knn(P, 5, layer=1)[1], _brute_knn(b, 5)[1])
    for k in (0, 200, 2.5, True):
        with pytest.raises(ShapeError):
            pim.hamming_knn(P, k)
    with pytest.raises(ShapeError):
        pim.hamming_knn(np.full((5, 3), 2), 1)


def test_distances_equal_direct_counts(rng):
    B = rng.random((60, 150)) < 0.3
    P = pat.Patterns.from_bits([B[:, :100], B[:, 100:]])
    direct = (B[:, None] != B[None]).sum(-1)
    assert np.array_equal(pat.pairwise_hamming(P), direct)
    subset = [5, 1, 40]
    assert np.array_equal(pat.pairwise_hamming(B, subset), direct[np.ix_(subset, subset)])
    pairs = rng.integers(0, 60, (30, 2))
    assert np.array_equal(pat.hamming_pairs(P, pairs), direct[pairs[:, 0], pairs[:, 1]])
    per_layer = pat.random_pair_distances(P, 500, rng=1)
    assert len(per_layer) == 2 and all(len(d) == 500 for d in per_layer)
    assert np.all(per_layer[0] <= 100) and np.all(per_layer[1] <= 50)
    assert np.array_equal(per_layer[0], pat.random_pair_distances(P, 500, rng=1)[0])
    acts = rng.standard_normal((60, 4))
    idx, _ = pim.hamming_knn(P, 3)
    assert np.allclose(pat.activity_distances(acts, idx)[:, 2], np.linalg.norm(acts - acts[idx[:, 2]], axis=1))


def test_dataset_patterns_equal_preactivation_signs(mlp, tmp_path):
    model, net = mlp
    X = np.random.default_rng(0).random((1000, 64))
    expected = [z > 0 for z in net.preactivations(X)[:2]]
    in_memory = pim.dataset_patterns(net, X, batch_size=128)
    assert in_memory.layers == (0, 1)
    assert all(np.array_equal(in_memory.layer(i), expected[i]) for i in range(2))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(X), torch.zeros(1000)),
                                         batch_size=100)
    assert pim.dataset_patterns(net, loader) == in_memory
    on_disk = pim.dataset_patterns(net, X, batch_size=300, out=tmp_path / "p")
    assert on_disk == in_memory and isinstance(on_disk.words[0].base, np.memmap)
    pat.save_patterns(in_memory[:10], tmp_path / "q")
    assert pat.load_patterns(tmp_path / "q", mmap=False) == in_memory[:10]
    hooked = pim.dataset_patterns(model, X, batch_size=256)
    assert all(np.array_equal(hooked.layer(i), expected[i]) for i in range(2))
    only = pim.dataset_patterns(net, "digits", layers=[1])
    assert len(only) == 1797 and only.layers == (1,)
    with pytest.raises(ShapeError):
        pim.dataset_patterns(net, X, layers=[2])


def test_hook_patterns_of_modules_the_ir_refuses():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.LayerNorm(12), nn.SELU(), nn.Linear(12, 8), nn.GELU(), nn.Linear(8, 2))
    X = torch.randn(300, 6)
    assert pat.activation_modules(model) == ["2", "4"]
    P = pim.hook_patterns(model, [X[:100], X[100:]])
    with torch.no_grad():
        z0 = model[1](model[0](X))
        z1 = model[3](model[2](z0))
    assert np.array_equal(P.layer(0), (z0 > 0).numpy()) and np.array_equal(P.layer(1), (z1 > 0).numpy())
    named = pim.hook_patterns(model, [X], layers=["0"])
    with torch.no_grad():
        assert np.array_equal(named.layer(0), (model[0](X) > 0).numpy())
    with pytest.raises(ModelError):
        pim.hook_patterns(model, [X], layers=["nope"])
    with pytest.raises(ModelError):
        pim.hook_patterns(nn.Linear(3, 2), [torch.zeros(1, 3)])


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(5, 9), nn.Linear(9, 7), nn.Linear(7, 2)

    def forward(self, x):
        return self.c(torch.nn.functional.selu(self.b(torch.relu(self.a(x)))))


def test_fx_patterns_of_functional_activations():
    torch.manual_seed(1)
    model = _Functional()
    X = torch.randn(200, 5)
    assert pat.functional_activations(model) == ["relu", "selu"]
    P = pim.hook_patterns(model, [X[:50], X[50:]])
    with torch.no_grad():
        z0 = model.a(X)
        z1 = model.b(torch.relu(z0))
    assert P.units == (9, 7)
    assert np.array_equal(P.layer(0), (z0 > 0).numpy()) and np.array_equal(P.layer(1), (z1 > 0).numpy())
    assert np.array_equal(pim.hook_patterns(model, [X], layers=["b"]).layer(0), (z1 > 0).numpy())


def test_unit_statistics_are_consistent(rng):
    rates = np.concatenate([np.zeros(5), np.ones(3), rng.uniform(0.2, 0.8, 40), [0.01, 0.99]])
    B = rng.random((2000, len(rates))) < rates
    (s,) = pim.unit_statistics(pat.Patterns.from_bits([B]), bins=10, saturation=0.05)
    p = B.mean(0)
    assert np.allclose(s.probabilities, p) and s.histogram.sum() == len(rates)
    assert np.array_equal(s.dead, np.flatnonzero(p == 0)) and np.array_equal(s.always_on, np.flatnonzero(p == 1))
    assert s.saturated == pytest.approx(np.mean((p <= 0.05) | (p >= 0.95)))
    assert set(range(5)) <= set(s.dead) and {5, 6, 7} <= set(s.always_on)
    assert "saturated" in pat.format_statistics([s])


def test_bernoulli_p_values_uniform_under_the_null_and_tiny_with_structure(rng):
    rates = rng.uniform(0.05, 0.95, 60)
    p_observed, p_half = [], []
    for seed in range(120):
        generator = np.random.default_rng(seed)
        B = pat.bernoulli_patterns(rates, 800, generator)
        p_observed.append(pim.bernoulli_test(pat.Patterns.from_bits([B]), n_pairs=200, n_sim=199, rng=seed)[0].p_value)
        half = pat.Patterns.from_bits([generator.random((400, 60)) < 0.5])
        p_half.append(pim.bernoulli_test(half, p=0.5, n_pairs=200, n_sim=199, rng=seed)[0].p_value)
    assert stats.kstest(p_observed, "uniform").pvalue > 0.01
    assert stats.kstest(p_half, "uniform").pvalue > 0.01
    clustered = pat.Patterns.from_bits([_clustered(rng, 1000, 100)])
    nearest = pim.bernoulli_test(clustered, statistic="nearest", n_subset=300, n_sim=49, rng=0)[0]
    assert nearest.p_lower == pytest.approx(1 / 50) and nearest.observed < nearest.null.min()
    half = pim.bernoulli_test(clustered, p=0.5, n_sim=199, rng=0)[0]
    assert half.p_value <= 2 / 200 and half.p_normal < 1e-10


def test_cluster_curves_monotone_and_equal_fcluster(rng):
    B = _clustered(rng, 200, 64, centres=4)
    curve = pat.cluster_curve(B)
    assert np.all(np.diff(curve.counts) <= 0) and curve.counts[-1] == 1
    assert curve.counts[0] == len(np.unique(B, axis=0))
    for t in (0, 3, 10, 30):
        assert curve.counts[t] == fcluster(curve.linkage, t, criterion="distance").max()
    assert 0 <= curve.score <= 1
    result = pim.constellations(pat.Patterns.from_bits([B]), n_subset=150, rng=0)
    assert result["data"].score < result["random"].score and len(result["subset"]) == 150
    with pytest.raises(ShapeError):
        pat.cluster_curve(B, method="centroid")


def test_first_layer_modelling(mlp, rng):
    _, net = mlp
    d = pat.hyperplane_distances(net.layers[0])
    W, b = net.layers[0].affine.dense(), net.layers[0].b
    foot = -(b / (W * W).sum(1))[:, None] * W
    assert np.allclose(np.abs((foot * W).sum(1) + b), 0) and np.allclose(np.linalg.norm(foot, axis=1), d)
    fit = pat.folded_normal_fit(np.abs(rng.normal(1.0, 2.0, 20000)))
    assert fit.mu == pytest.approx(1.0, abs=0.1) and fit.sigma == pytest.approx(2.0, rel=0.05)
    X = rng.random((500, 64))
    result = pat.zero_one_agreement(net, X, layer=0)
    h = net.activations(X)[0]
    approx = (h > 0) * result["scale"]
    same = (net.layers[1].preactivation(h) > 0) == (net.layers[1].preactivation(approx) > 0)
    assert result["agreement"] == pytest.approx(same.mean()) and 0.5 < result["agreement"] <= 1


def test_local_maps_are_the_jacobians(mlp, rng):
    model, net = mlp
    X = rng.random((20, 64))
    maps = pat.local_maps(net, X, 2)
    jac = np.stack([torch.autograd.functional.jacobian(model, torch.tensor(x)).numpy() for x in X])
    assert np.allclose(maps, jac)
    spectrum = pat.local_map_spectrum(maps)
    assert spectrum["rank"] <= min(spectrum["distinct"], 10 * 64)
    greedy = pat.greedy_decomposition(maps[3], maps[np.arange(20) != 3], steps=6)
    assert np.all(np.diff(greedy.remainders) <= 0) and greedy.remainders[0] == 1.0
    exact = pat.greedy_decomposition(2.0 * maps[3], maps, steps=3)
    assert exact.chosen[0] == 3 and exact.remainders[1] == pytest.approx(0, abs=1e-12)
    noise = pat.angle_vs_noise(net, X[:5], 2, [0.0, 0.5], rng=0)
    assert noise["mean_angle"][0] == 0 and noise["same_pattern"][0] == 1 and noise["mean_angle"][1] > 0


def test_geodesics_join_the_given_inputs(mlp, rng):
    _, net = mlp
    data = rng.random((150, 64))
    x0, x1 = rng.random(64), rng.random(64)
    direct = int(pat.path_hamming(net, np.vstack([x0, x1]))[0])
    for path in (pat.conditional_geodesic(net, x0, x1, data, k=5),
                 pat.midpoint_geodesic(net, x0, x1, depth=6),
                 pat.midpoint_geodesic(net, x0, x1, variant="data", data=data)):
        assert np.array_equal(path.points[0], x0) and np.array_equal(path.points[-1], x1)
        assert np.array_equal(path.steps, pat.path_hamming(net, path.points))
        assert path.length >= direct
    complete = pat.conditional_geodesic(net, x0, x1, data, k=151)
    assert complete.length == direct
    linear = pat.midpoint_geodesic(net, x0, x1, depth=12)
    assert linear.steps.max() <= 1
    geodesic = pat.conditional_geodesic(net, x0, x1, data, k=5)
    inner = geodesic.data_index[1:-1]
    assert np.all(inner >= 0) and np.allclose(geodesic.points[1:-1], data[inner])


def test_normalisation_study_small():
    study = pat.normalisation_study(["none", "layernorm", "selu"], hidden=(16, 16), epochs=3)
    assert set(study.runs) == {"none", "layernorm", "selu"}
    for run in study.runs.values():
        assert len(run.initial) == 2 and all(len(s.probabilities) == 16 for s in run.trained)
        assert 0 <= run.accuracy <= 1
    assert len(study.table()) == 6
    assert [type(m).__name__ for m in pat.build_mlp("batchnorm", (4, 3, 2))] == ["Linear", "BatchNorm1d", "ReLU",
                                                                                 "Linear"]


def test_plots_draw(mlp, rng):
    _, net = mlp
    X = rng.random((300, 64))
    P = pim.dataset_patterns(net, X)
    s = pim.unit_statistics(P)
    idx, _ = pim.hamming_knn(P, 4)
    axes = [viz.plot_activation_histograms(s), viz.plot_hamming_distributions(pim.random_pair_distances(P), P.units),
            viz.plot_bernoulli_test(pim.bernoulli_test(P, n_sim=20)[0]), viz.plot_cluster_curves(pim.constellations(P)),
            viz.plot_hyperplane_distances(pat.hyperplane_distances(net.layers[0])),
            viz.plot_folded_normal(X, pat.folded_normal_fit(X)),
            viz.plot_local_map_spectrum(pat.local_map_spectrum(pat.local_maps(net, X[:10], 1))),
            viz.plot_angle_vs_noise(pat.angle_vs_noise(net, X[:3], 1, [0.0, 0.1])),
            viz.plot_geodesic({"line": pat.midpoint_geodesic(net, X[0], X[1])})]
    figures = [viz.plot_nearest_neighbours(X, idx, neighbours=3)]
    assert all(ax.has_data() for ax in axes) and all(f.axes for f in figures)
    plt.close("all")


def test_cli_patterns(tmp_path, capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 10)).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, torch.zeros(1, 64), str(path), dynamo=False)
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).random((400, 64)))
    assert main(["patterns", str(path), "--data", str(x), "--knn", "3", "--clusters", "200", "-q",
                 "--out", str(tmp_path / "p"), "--plot", str(tmp_path / "h.png")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("400 inputs") and "3-nearest" in printed and "Bernoulli" in printed
    assert len(pat.load_patterns(tmp_path / "p")) == 400 and (tmp_path / "h.png").stat().st_size > 0
