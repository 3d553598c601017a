"""Geometry of convolutional layers: operators, cones, nesting states, slice regions, hyperplane distances.

The operator's equality with F.conv2d over every padding mode is tests/test_conv.py's; here the layer
object, its periodic counterpart and the geometry built on them are checked against independent oracles
(least squares, dense matrices, sampling of cone membership, grids).
"""

import numpy as np
import pytest
import torch
from torch import nn

import preimage as pim
from preimage.conv import (
    STATES, ConvLayer, channel_cones, conv_blocks, grid_pattern_count, hyperplane_distances, nesting_over_checkpoints,
    network_nesting, pair_geometry, slice_cones, slice_region_count, state_names,
)
from preimage.conv.experiment import lenet_style, run_experiment, vgg_style
from preimage.errors import ConeError, ModelError, ShapeError
from preimage.viz.conv_plot import plot_experiment

LAYER_CASES = [
    # c_in, c_out, groups, kernel, image, stride, padding, dilation, mode
    (2, 4, 1, (3, 3), (6, 5), 1, 1, 1, "circular"),
    (4, 4, 2, (3, 2), (5, 6), (2, 1), (1, 0), 1, "circular"),
    (1, 3, 1, (3, 3), (7, 7), 1, 2, 2, "circular"),
    (3, 3, 3, (5, 5), (4, 4), 1, 2, 1, "circular"),  # kernel wraps: taps fold onto one pixel
    (2, 2, 1, (3, 3), (5, 5), 2, 1, 1, "reflect"),
    (2, 3, 1, (2, 3), (5, 4), 1, 1, (2, 1), "replicate"),
    (2, 3, 1, (3, 3), (5, 5), 1, 0, 1, "zeros"),  # no padding: every tap reads the input
]


def _layer(case, rng, scale=1.0):
    c_in, c_out, groups, kernel, image, stride, padding, dilation, mode = case
    weight = rng.normal(size=(c_out, c_in // groups, *kernel)) * scale
    bias = rng.normal(size=c_out)
    return ConvLayer(weight, bias, (c_in, *image), stride, padding, dilation, groups, mode)


def _torch_conv(layer: ConvLayer) -> nn.Conv2d:
    conv = nn.Conv2d(layer.input_shape[0], layer.channels, layer.weight.shape[2:], layer.stride, layer.padding,
                     layer.dilation, layer.groups, padding_mode=layer.padding_mode).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(layer.weight))
        conv.bias.copy_(torch.tensor(layer.bias))
    return conv


@pytest.mark.parametrize("case", LAYER_CASES)
def test_layer_preactivation_equals_torch(case):
    rng = np.random.default_rng(0)
    layer = _layer(case, rng)
    X = rng.normal(size=(3, *layer.input_shape))
    expected = _torch_conv(layer)(torch.tensor(X)).detach().numpy()
    assert layer.output_shape == expected.shape[1:]
    assert np.allclose(layer.preactivation(X), expected.reshape(3, -1), atol=1e-12)


@pytest.mark.parametrize("case", [c for c in LAYER_CASES if c[5] == 1])
def test_periodic_counterpart_equals_torch_same_circular(case):
    rng = np.random.default_rng(1)
    layer = _layer(case, rng).periodic()
    conv = nn.Conv2d(layer.input_shape[0], layer.channels, layer.weight.shape[2:], 1, "same", layer.dilation,
                     layer.groups, padding_mode="circular").double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(layer.weight))
        conv.bias.copy_(torch.tensor(layer.bias))
    X = rng.normal(size=(2, *layer.input_shape))
    assert layer.is_circulant
    assert np.allclose(layer.preactivation(X), conv(torch.tensor(X)).detach().numpy().reshape(2, -1), atol=1e-12)


@pytest.mark.parametrize("case", LAYER_CASES)
def test_apex_formula_solves_the_layer_on_the_identity_line(case):
    """t = -b / sum(w) agrees with least squares on (M 1) t = -b channel by channel, residual zero."""
    rng = np.random.default_rng(2)
    layer = _layer(case, rng)
    if case[-1] == "zeros" and case[6] != 0:
        pytest.skip("zero padding has no apex")
    cones = layer.cones()
    column = layer.matrix @ np.ones(layer.matrix.shape[1])
    per_channel = column.reshape(layer.channels, -1)
    targets = -layer.bias_vector.reshape(layer.channels, -1)
    for c in range(layer.channels):
        t, *_ = np.linalg.lstsq(per_channel[c][:, None], targets[c], rcond=None)
        assert np.isclose(t[0], cones.apex[c], rtol=1e-10, atol=1e-12)
    apex_values = layer.preactivation(cones.apex_points.reshape(layer.channels, -1))
    for c in range(layer.channels):
        channel_rows = apex_values[c].reshape(layer.channels, -1)[c]
        assert np.abs(channel_rows).max() <= 1e-10 * (1 + abs(cones.apex[c]))
    assert np.all(layer.apex_residual() <= 1e-12)
    assert set(np.unique(cones.direction)) <= {-1, 1}
    assert np.all((cones.opening >= 0) & (cones.opening <= np.pi / 2))
    # every facet of a circulant layer makes the same angle with the identity line
    if layer.is_circulant:
        rows = layer.matrix.toarray()
        n = rows.shape[1]
        angles = np.arcsin(np.abs(rows.sum(axis=1)) / (np.linalg.norm(rows, axis=1) * np.sqrt(n)))
        assert np.allclose(angles.reshape(layer.channels, -1), cones.opening[:, None], atol=1e-12)


def test_cones_of_an_imported_network_layer():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(3 * 25, 2)).eval()
    model[1].running_mean.uniform_(-1, 1)
    layer = pim.load(model, input_shape=(2, 5, 5)).layers[0]
    cones = channel_cones(layer.W, layer.b, layer.output_shape[0])
    expected = conv_blocks(model, (2, 5, 5))[0][0].cones()
    assert np.allclose(cones.apex, expected.apex) and np.allclose(cones.opening, expected.opening)
    assert np.all(hyperplane_distances(layer, np.zeros((1, 50)), per_channel=True) >= 0)


def test_zero_padding_has_no_apex_but_its_periodic_counterpart_has():
    rng = np.random.default_rng(3)
    layer = ConvLayer(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), (1, 5, 5), padding=1)
    with pytest.raises(ConeError, match="not periodic"):
        layer.cones()
    with pytest.raises(ConeError, match="not circulant"):
        slice_cones(layer)
    periodic = layer.periodic()
    assert np.allclose(periodic.cones().apex, -layer.bias / layer.weight.sum(axis=(1, 2, 3)))
    assert np.allclose(slice_cones(periodic).apex, periodic.cones().apex)


def _single_channel_layer(rng, image, kernel, channels):
    weight = rng.normal(size=(channels, 1, *kernel))
    return ConvLayer(weight, rng.normal(size=channels), (1, *image), padding=(0, kernel[0] - 1, 0, kernel[1] - 1),
                     padding_mode="circular")


def _sampled_containment(M_inner, b_inner, M_outer, b_outer, rng, samples=3000):
    """Do points of {M_inner x + b_inner >= 0} (apex + M_inner^-1 y, y >= 0 heavy-tailed, sparse) all lie
    in {M_outer x + b_outer >= 0}?"""
    n = M_inner.shape[0]
    apex = np.linalg.solve(M_inner, -b_inner)
    Y = rng.exponential(size=(samples, n)) * (rng.random((samples, n)) < 0.5)
    Y *= 10.0 ** rng.uniform(-2, 6, size=(samples, 1))
    X = apex + np.linalg.solve(M_inner, Y.T).T
    return bool(np.all(X @ M_outer.T + b_outer >= -1e-7 * (1 + np.abs(X).max(axis=1, keepdims=True))))


@pytest.mark.parametrize("image, kernel", [((1, 2), (1, 2)), ((1, 3), (1, 3)), ((2, 2), (2, 2)), ((1, 4), (1, 2)),
                                           ((2, 3), (2, 2))])
def test_exact_containment_agrees_with_sampling(image, kernel):
    rng = np.random.default_rng(4)
    seen = set()
    n = image[0] * image[1]
    for _ in range(6):
        inner_layer = _single_channel_layer(rng, image, kernel, 3)
        outer_layer = _single_channel_layer(rng, image, kernel, 3)
        geometry = pair_geometry(slice_cones(outer_layer), slice_cones(inner_layer))
        M_in, b_in = inner_layer.matrix.toarray(), inner_layer.bias_vector
        M_out, b_out = outer_layer.matrix.toarray(), outer_layer.bias_vector
        for o in range(3):
            for c in range(3):
                rows_o, rows_c = slice(o * n, (o + 1) * n), slice(c * n, (c + 1) * n)
                out_in_in = _sampled_containment(M_out[rows_o], b_out[rows_o], M_in[rows_c], b_in[rows_c], rng)
                in_in_out = _sampled_containment(M_in[rows_c], b_in[rows_c], M_out[rows_o], b_out[rows_o], rng)
                assert geometry.out_in_in[o, c] == out_in_in
                assert geometry.in_in_out[o, c] == in_in_out
                seen.add((out_in_in, in_in_out))
    assert (False, False) in seen and len(seen) >= 2


def test_pair_states_agree_with_sampling_on_two_pixel_images():
    """On 2-pixel images cones are wedges symmetric about the identity line, where the rule is exact."""
    rng = np.random.default_rng(5)
    found = set()
    for _ in range(20):
        inner_layer = _single_channel_layer(rng, (1, 2), (1, 2), 4)
        outer_layer = _single_channel_layer(rng, (1, 2), (1, 2), 4)
        geometry = pair_geometry(slice_cones(outer_layer), slice_cones(inner_layer))
        M_in, b_in = inner_layer.matrix.toarray(), inner_layer.bias_vector
        M_out, b_out = outer_layer.matrix.toarray(), outer_layer.bias_vector
        for o in range(4):
            for c in range(4):
                ro, rc = slice(2 * o, 2 * o + 2), slice(2 * c, 2 * c + 2)
                out_in_in = _sampled_containment(M_out[ro], b_out[ro], M_in[rc], b_in[rc], rng)
                in_in_out = _sampled_containment(M_in[rc], b_in[rc], M_out[ro], b_out[ro], rng)
                state = state_names(geometry.pair_state[o, c])
                expected = "OUT_FULL_IN" if out_in_in else "IN_FULL_OUT" if in_in_out else "PARTIAL"
                assert state == expected or (expected == "PARTIAL" and state.endswith("PARTIAL_IN")
                                             or expected == "PARTIAL" and state.endswith("PARTIAL_OUT"))
                found.add(str(state))
    assert {"OUT_FULL_IN", "IN_FULL_OUT"} <= found


def test_pair_states_are_exact_for_cones_without_rotation():
    """Filters with the same part across the identity line (rotation 0): the rule agrees with containment."""
    rng = np.random.default_rng(13)
    seen = set()
    for _ in range(200):
        kernel = rng.normal(size=(2, 3))
        other = (kernel - kernel.mean()) * rng.uniform(0.2, 2.0) + rng.normal()
        layers = [ConvLayer(k[None, None], [rng.normal()], (1, 2, 3), padding=(0, 1, 0, 2), padding_mode="circular")
                  for k in (kernel, other)]
        geometry = pair_geometry(slice_cones(layers[1]), slice_cones(layers[0]))
        assert geometry.rotation[0, 0] < 1e-6
        state = str(state_names(geometry.pair_state[0, 0]))
        if geometry.out_in_in[0, 0] == 1:
            assert state == "OUT_FULL_IN"
        elif geometry.in_in_out[0, 0] == 1:
            assert state == "IN_FULL_OUT"
        else:
            assert state.endswith(("PARTIAL_IN", "PARTIAL_OUT"))
        seen.add(state)
    assert {"OUT_FULL_IN", "IN_FULL_OUT"} <= seen


def test_states_invariant_to_positive_rescaling_of_filters():
    rng = np.random.default_rng(6)
    inner = ConvLayer(rng.normal(size=(6, 3, 3, 3)), rng.normal(size=6), (3, 8, 8), padding=1, padding_mode="circular")
    outer = ConvLayer(rng.normal(size=(5, 6, 3, 3)), rng.normal(size=5), (6, 8, 8), padding=1, padding_mode="circular")
    base = pair_geometry(slice_cones(outer), slice_cones(inner))

    def rescaled(layer):
        scale = 10.0 ** rng.uniform(-3, 3, size=layer.channels)
        return ConvLayer(layer.weight * scale[:, None, None, None], layer.bias * scale, layer.input_shape,
                         layer.stride, layer.padding, layer.dilation, layer.groups, layer.padding_mode)

    other = pair_geometry(slice_cones(rescaled(outer)), slice_cones(rescaled(inner)))
    assert np.array_equal(base.state, other.state)
    assert np.array_equal(base.pair_state, other.pair_state)
    assert np.array_equal(base.out_in_in, other.out_in_in) and np.array_equal(base.in_in_out, other.in_in_out)
    for name in ("distance", "opening_difference", "rotation"):
        assert np.allclose(getattr(base, name), getattr(other, name), rtol=1e-9, atol=1e-9)
    assert sum(base.counts().values()) == outer.channels


def test_rotation_and_differences_vanish_for_a_shifted_copy():
    rng = np.random.default_rng(7)
    weight = rng.normal(size=(1, 1, 3, 3))
    weight[..., 2] = 0.0  # so that rolling the kernel by one column is a shift of the image it acts on
    bias = rng.normal(size=1)
    inner = ConvLayer(weight, bias, (1, 6, 6), padding=1, padding_mode="circular")
    shifted = ConvLayer(np.roll(weight, 1, axis=3), bias, (1, 6, 6), padding=1, padding_mode="circular")
    geometry = pair_geometry(slice_cones(shifted), slice_cones(inner))
    assert abs(geometry.distance[0, 0]) < 1e-12 and abs(geometry.opening_difference[0, 0]) < 1e-12
    assert geometry.rotation[0, 0] < 1e-6
    assert geometry.out_in_in[0, 0] == 1 and geometry.in_in_out[0, 0] == 1
    other = ConvLayer(rng.normal(size=(1, 1, 3, 3)), bias, (1, 6, 6), padding=1, padding_mode="circular")
    there = pair_geometry(slice_cones(other), slice_cones(inner)).rotation[0, 0]
    back = pair_geometry(slice_cones(inner), slice_cones(other)).rotation[0, 0]
    assert 0 < there <= np.pi and np.isclose(there, back)


def test_groups_connect_only_channels_of_the_same_group():
    rng = np.random.default_rng(8)
    inner = ConvLayer(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4), (2, 6, 6), padding=1, padding_mode="circular")
    outer = ConvLayer(rng.normal(size=(6, 2, 3, 3)), rng.normal(size=6), (4, 6, 6), padding=1, groups=2,
                      padding_mode="circular")
    geometry = pair_geometry(slice_cones(outer), slice_cones(inner))
    expected = (np.arange(6)[:, None] // 3) == (np.arange(4)[None, :] // 2)
    assert np.array_equal(geometry.connected, expected)
    assert np.all(np.isnan(geometry.distance[~expected])) and np.all(np.isfinite(geometry.distance[expected]))


def test_network_nesting_pairs_blocks_and_checkpoints():
    torch.manual_seed(0)
    vgg = vgg_style(size=16)
    result = network_nesting(vgg, (1, 16, 16))
    assert [p.block for p in result.pairs] == [0, 0, 1, 1, 2]
    widths = [16, 16, 32, 32, 64]
    assert [sum(p.counts().values()) for p in result.pairs] == widths
    assert sum(result.counts().values()) == sum(widths)
    assert sum(result.block_counts()[1].values()) == 64
    assert np.isclose(sum(result.fractions().values()), 1.0)
    assert result.to_markdown().count("\n") == 1 + len(result.pairs)
    exact = result.containment()
    assert exact.shape == (5, 3) and np.all((exact >= 0) & (exact <= 1))
    for row, pair in zip(exact, result.pairs):
        g = pair.geometry
        assert np.isclose(row[0], np.sum(g.out_in_in == 1) / g.connected.sum())
    assert len(network_nesting(lenet_style(size=16), (1, 16, 16)).pairs) == 2
    states = [vgg.state_dict(), {k: v * 2 for k, v in vgg.state_dict().items()}]
    before = {k: v.clone() for k, v in vgg.state_dict().items()}
    runs = nesting_over_checkpoints(vgg, states, (1, 16, 16), labels=["a", "b"])
    assert [r.label for r in runs] == ["a", "b"]
    # doubling every weight and bias scales each filter positively: the states do not change
    for first, second in zip(runs[0].pairs, runs[1].pairs):
        assert np.array_equal(first.geometry.state, second.geometry.state)
    assert all(torch.equal(before[k], vgg.state_dict()[k]) for k in before)
    with pytest.raises(ModelError, match="does not fit"):
        nesting_over_checkpoints(vgg, [{"nope": torch.zeros(1)}], (1, 16, 16))


def test_batch_norm_is_folded_and_zero_padding_uses_the_periodic_counterpart():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 3, padding=1))
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model.eval()
    blocks = conv_blocks(model, (1, 6, 6))
    assert len(blocks) == 1 and len(blocks[0]) == 2
    folded = blocks[0][0]
    X = torch.randn(4, 1, 6, 6, dtype=torch.float32)
    with torch.no_grad():
        expected = model[1](model[0](X)).double().numpy().reshape(4, -1)
    assert np.allclose(folded.preactivation(X.double().numpy()), expected, atol=1e-5)
    result = network_nesting(model, (1, 6, 6))
    assert len(result.pairs) == 1 and sum(result.counts().values()) == 2


def test_strided_and_shrinking_convolutions_end_blocks():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(3, 3, 3), nn.ReLU(), nn.Conv2d(3, 3, 1))
    blocks = conv_blocks(model, (1, 8, 8))
    assert [[layer.name for layer in block] for block in blocks] == [["0", "2"], ["4"], ["6"], ["8"], ["10"]]
    result = network_nesting(model, (1, 8, 8))
    assert [(p.inner, p.outer) for p in result.pairs] == [("0", "2")]


def test_slice_region_count_equals_the_arrangement_formula_and_grid():
    rng = np.random.default_rng(9)
    W, b = rng.normal(size=(8, 2)), rng.normal(size=8) * 0.4
    layer = pim.Layer(pim.AffineMap(W, b), pim.Activation("relu"))
    origin, u, v = np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0])
    # general position: 1 + (lines meeting the window) + (crossings inside it)
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]])
    values = corners @ W.T + b
    meeting = (values.min(axis=0) < 0) & (values.max(axis=0) > 0)
    crossings = 0
    for i in range(8):
        for j in range(i + 1, 8):
            if meeting[i] and meeting[j]:
                point = np.linalg.solve(W[[i, j]], -b[[i, j]])
                crossings += bool(np.all(np.abs(point) < 1))
    exact = slice_region_count(layer, origin, u, v)
    assert exact == 1 + meeting.sum() + crossings
    assert grid_pattern_count(layer, origin, u, v, resolution=1500) == exact
    # eight lines through one point: 16 sectors
    concurrent = pim.Layer(pim.AffineMap(W, -W @ np.array([0.2, -0.3])), pim.Activation("relu"))
    assert slice_region_count(concurrent, origin, u, v) == 16
    assert grid_pattern_count(concurrent, origin, u, v, resolution=600) == 16
    # duplicated units cut nothing new
    doubled = pim.Layer(pim.AffineMap(np.vstack([W, 3 * W]), np.concatenate([b, 3 * b])), pim.Activation("relu"))
    assert slice_region_count(doubled, origin, u, v) == exact


def test_slice_region_count_of_a_conv_layer_bounds_the_grid():
    rng = np.random.default_rng(10)
    layer = ConvLayer(rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2), (1, 3, 3), padding=(0, 1, 0, 1),
                      padding_mode="circular")
    data = rng.normal(size=(3, 9))
    exact = slice_region_count(layer, data[0], data[1] - data[0], data[2] - data[0], ((-2, 2), (-2, 2)))
    coarse = grid_pattern_count(layer, data[0], data[1] - data[0], data[2] - data[0], ((-2, 2), (-2, 2)), 50)
    fine = grid_pattern_count(layer, data[0], data[1] - data[0], data[2] - data[0], ((-2, 2), (-2, 2)), 1000)
    assert coarse < fine <= exact and exact - fine <= exact // 50


def test_hyperplane_distances_are_distances_to_projections():
    rng = np.random.default_rng(11)
    layer = ConvLayer(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), (2, 5, 5), padding=1, padding_mode="reflect")
    X = rng.normal(size=(4, 2, 5, 5))
    distances = hyperplane_distances(layer, X)
    M = layer.matrix.toarray()
    flat = X.reshape(4, -1)
    for j in (0, 7, 40, M.shape[0] - 1):
        z = flat @ M[j] + layer.bias_vector[j]
        projected = flat - (z / (M[j] @ M[j]))[:, None] * M[j][None, :]
        assert np.allclose(projected @ M[j] + layer.bias_vector[j], 0, atol=1e-10)
        assert np.allclose(np.linalg.norm(flat - projected, axis=1), distances[:, j])
    planes = layer.hyperplanes()
    assert np.allclose(np.abs(flat @ planes.normals.toarray().T + planes.offsets), distances)
    nearest = hyperplane_distances(layer, X, per_channel=True)
    assert nearest.shape == (4, 3)
    assert np.array_equal(nearest, distances.reshape(4, 3, -1).min(axis=2))


@pytest.mark.parametrize("build, error, match", [
    (lambda: ConvLayer(np.full((1, 1, 2, 2), np.nan), [0.0], (1, 3, 3)), ModelError, "NaN"),
    (lambda: ConvLayer(np.ones((2, 1, 2, 2)), [0.0], (1, 3, 3)), ShapeError, "bias"),
    (lambda: ConvLayer(np.ones((2, 1, 2)), [0.0, 0.0], (1, 3, 3)), ShapeError, "4-D"),
    (lambda: ConvLayer(np.ones((2, 1, 2, 2)), [0.0, 0.0], (1, 3, 3), padding_mode="wrap"), ShapeError, "padding_mode"),
    (lambda: ConvLayer(np.ones((2, 2, 2, 2)), [0.0, 0.0], (1, 3, 3)), ShapeError, "input_shape"),
    (lambda: ConvLayer.from_module(nn.Linear(2, 2), (1, 2, 1)), ModelError, "not a Conv2d"),
    (lambda: pair_geometry(slice_cones(ConvLayer(np.ones((1, 1, 3, 3)), [1.0], (1, 4, 4), padding=1,
                                                 padding_mode="circular")),
                           slice_cones(ConvLayer(np.ones((1, 1, 3, 3)), [1.0], (1, 5, 5), padding=1,
                                                 padding_mode="circular"))), ConeError, "different spaces"),
    (lambda: slice_region_count(ConvLayer(np.ones((1, 1, 2, 2)), [1.0], (1, 2, 2)), np.zeros(4), np.ones(4),
                                np.ones(4), ((1, 0), (0, 1))), ShapeError, "bounds"),
    (lambda: grid_pattern_count(ConvLayer(np.ones((1, 1, 2, 2)), [1.0], (1, 2, 2)), np.zeros(4), np.ones(4),
                                np.ones(4), resolution=0), ShapeError, "resolution"),
    (lambda: hyperplane_distances(ConvLayer(np.ones((1, 1, 2, 2)), [1.0], (1, 2, 2)), np.zeros((2, 5))),
     ShapeError, "4 values"),
    (lambda: conv_blocks(nn.Sequential(nn.Conv2d(1, 1, 3)), (1, 5)), ShapeError, "input_shape"),
])
def test_bad_input_is_named(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_filter_summing_to_zero_has_no_apex_and_no_state():
    weight = np.zeros((2, 1, 3, 3))
    weight[0, 0, 0, 0], weight[0, 0, 1, 1] = 1.0, -1.0  # sums to zero
    weight[1, 0, 1, 1] = 2.0
    layer = ConvLayer(weight, [0.5, -1.0], (1, 5, 5), padding=1, padding_mode="circular")
    cones = layer.cones()
    assert cones.degenerate.tolist() == [True, False] and np.isnan(cones.apex[0]) and cones.apex[1] == 0.5
    geometry = pair_geometry(slice_cones(layer), slice_cones(layer))
    assert state_names(geometry.state)[0] == "UNDEFINED" and geometry.counts()["UNDEFINED"] == 1
    assert np.all(np.isnan(geometry.distance[0])) and np.all(geometry.out_in_in[0] == -1)


def test_experiment_runs_end_to_end_and_plots(tmp_path, one_torch_thread):
    def tiny(channels, size):
        return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                             nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * size * size, 10))

    result = run_experiment(epochs=1, size=8, models={"tiny": tiny})
    runs = result.nesting["tiny"]
    assert [r.label for r in runs] == ["init", "epoch 1"]
    assert result.accuracy["tiny"][1] > result.accuracy["tiny"][0]
    table = result.to_markdown()
    assert "| tiny | init |" in table and "| tiny | epoch 1 |" in table and all(s in table for s in STATES)
    path = tmp_path / "nesting.png"
    plot_experiment(result, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_slice_region_count_agrees_with_regioncam():
    regioncam = pytest.importorskip("regioncam")
    rng = np.random.default_rng(12)
    W, b = rng.normal(size=(150, 2)), rng.normal(size=150) * 0.5
    layer = pim.Layer(pim.AffineMap(W, b), pim.Activation("relu"))
    cam = regioncam.Regioncam(1.0)
    cam.linear(np.ascontiguousarray(W.T, dtype=np.float32), b.astype(np.float32))
    cam.relu()
    assert slice_region_count(layer, np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0])) == cam.num_faces


PERIODIC_CASES = [c for c in LAYER_CASES if not (c[-1] == "zeros" and c[6] != 0)]


def _orthogonal_basis(n):
    """(n, n - 1) an orthonormal basis of the complement of the identity line, from a QR factorisation."""
    q, _ = np.linalg.qr(np.column_stack([np.ones(n), np.eye(n)[:, : n - 1]]))
    return q[:, 1:]


@pytest.mark.parametrize("case", PERIODIC_CASES)
def test_rotation_agrees_with_dense_angles_in_the_orthogonal_complement(case):
    """Facet normals and the reference orthant's normals written in a basis of the complement of 1:
    the smallest angle between them is each facet's rotation; the channel's is the smallest of its facets."""
    rng = np.random.default_rng(14)
    layer = _layer(case, rng)
    cones = layer.cones()
    M = layer.matrix.toarray()
    n = M.shape[1]
    basis = _orthogonal_basis(n)
    sign = np.repeat(cones.direction, M.shape[0] // layer.channels).astype(float)
    normals = (sign[:, None] * M) @ basis
    axes = basis  # row i: e_i written in the basis
    cosine = (normals @ axes.T) / (np.linalg.norm(normals, axis=1, keepdims=True)
                                   * np.linalg.norm(axes, axis=1)[None, :])
    expected = np.arccos(np.clip(cosine.max(axis=1), -1, 1)).reshape(layer.channels, -1)
    assert np.allclose(layer.facet_rotations(), expected, atol=1e-7)
    assert np.allclose(cones.rotation, expected.min(axis=1), atol=1e-7)
    assert np.all((cones.rotation >= 0) & (cones.rotation < np.pi / 2))
    if layer.is_circulant:
        assert np.allclose(layer.facet_rotations(), cones.rotation[:, None], atol=1e-12)


@pytest.mark.parametrize("case", PERIODIC_CASES)
def test_rotation_is_invariant_to_positive_rescaling_and_to_reflection(case):
    rng = np.random.default_rng(15)
    layer = _layer(case, rng)
    scale = 10.0 ** rng.uniform(-3, 3, size=layer.channels)
    c_in, _, groups, _, _, stride, padding, dilation, mode = case
    rescaled = ConvLayer(layer.weight * scale[:, None, None, None], layer.bias * scale, layer.input_shape, stride,
                         padding, dilation, groups, mode)
    assert np.allclose(rescaled.cones().rotation, layer.cones().rotation, rtol=1e-10, atol=1e-12)
    # (w, b) -> (-w, b) is the cone's image under x -> -x, which maps each reference orthant to the other's
    reflected = ConvLayer(-layer.weight, layer.bias, layer.input_shape, stride, padding, dilation, groups, mode)
    assert np.array_equal(reflected.cones().direction, -layer.cones().direction)
    assert np.allclose(reflected.cones().rotation, layer.cones().rotation, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("phi", [0.0, 0.3, -0.7, 1.0, np.pi / 3, 2.0, 3.0, -2.5])
def test_rotation_of_a_circulant_cone_in_three_dimensions_is_known_in_closed_form(phi):
    """In R^3 the orthant's facet normals lie 2 pi / 3 apart about the identity line; the circulant cone
    of the kernel c 1 + cos(phi) u + sin(phi) v (u the first axis' part orthogonal to 1, v completing the
    plane) is turned by phi, so its rotation is the distance from phi to the nearest multiple of 2 pi / 3.
    Adding a constant to every tap moves the opening and leaves the rotation."""
    basis = _orthogonal_basis(3)
    u = np.array([2.0, -1.0, -1.0]) / np.sqrt(6.0)
    v = np.cross(np.ones(3) / np.sqrt(3.0), u)
    assert np.allclose(basis @ basis.T @ u, u) and np.allclose(basis @ basis.T @ v, v)
    expected = abs((phi + np.pi / 3) % (2 * np.pi / 3) - np.pi / 3)
    openings = []
    for level in (0.2, 1.0, 5.0):
        kernel = level + np.cos(phi) * u + np.sin(phi) * v
        layer = ConvLayer(kernel[None, None, None], [0.4], (1, 1, 3), padding=(0, 0, 0, 2), padding_mode="circular")
        assert layer.is_circulant
        cones = layer.cones()
        assert np.isclose(cones.rotation[0], expected, atol=1e-9)
        assert np.allclose(layer.facet_rotations(), expected, atol=1e-9)
        openings.append(cones.opening[0])
    assert openings[0] < openings[1] < openings[2]


def test_rotation_of_two_equal_taps_and_of_the_identity_filter():
    """Two equal taps on n pixels: cos(rotation) = sqrt((n - 2) / (2 (n - 1))); one tap: 0; a filter summing
    to zero: NaN; against a one-tap layer of its sign, the pairwise rotation of nesting is the same angle."""
    weight = np.zeros((3, 1, 1, 2))
    weight[0, 0, 0] = [1.0, 1.0]
    weight[1, 0, 0] = [0.0, -2.0]
    weight[2, 0, 0] = [1.0, -1.0]
    layer = ConvLayer(weight, [0.1, 0.2, 0.3], (1, 4, 5), padding=(0, 0, 0, 1), padding_mode="circular")
    rotation = layer.cones().rotation
    assert np.isclose(rotation[0], np.arccos(np.sqrt(18 / 38)), atol=1e-12)
    assert abs(rotation[1]) < 1e-14 and np.isnan(rotation[2])

    rng = np.random.default_rng(16)
    weight = rng.normal(size=(6, 1, 3, 3))
    weight[:, 0, 1, 1] += 2.0 * np.where(np.arange(6) % 2, 1.0, -1.0)  # cones opening either way
    cones_layer = ConvLayer(weight, rng.normal(size=6), (1, 6, 6), padding=1, padding_mode="circular")
    cones = cones_layer.cones()
    assert set(cones.direction.tolist()) == {-1, 1}
    for sign in (-1.0, 1.0):
        tap = np.zeros((1, 1, 3, 3))
        tap[0, 0, 0, 0] = sign
        identity = ConvLayer(tap, [0.0], (1, 6, 6), padding=1, padding_mode="circular")
        pairwise = pair_geometry(slice_cones(cones_layer), slice_cones(identity)).rotation[:, 0]
        mine = cones.direction == sign
        assert np.allclose(pairwise[mine], cones.rotation[mine], atol=1e-7)
