"""Flat box domains (``lo == hi`` on some coordinates): the search on the free coordinates, lifted back.

Invariants: every piece carries the fixed coordinates as equality rows and contains its witness, which meets
the target through the original network; ``verify`` on the flat box finds no disagreement off the band; the
fraction, measured within the box's affine hull, equals the sampled fraction and the one the general path
gives for the same set written as a polytope with equalities; the affine map of a one-pattern piece is the
original network's map over all inputs.
"""

import numpy as np
import pytest

from preimage.geometry import Box, Polytope
from preimage.preimages.engine import preimage
from preimage.preimages.subspace import flat_coordinates
from preimage.preimages.targets import ArgMax, NeuronRange, compile_target, satisfies

from test_preimage_engine import random_net


def flat_box(d, fixed, values, r=2.0):
    lo, hi = -r * np.ones(d), r * np.ones(d)
    lo[fixed] = hi[fixed] = values
    return Box(lo, hi)


@pytest.mark.parametrize("seed, sizes, fixed", [(0, [3, 6, 4, 3], [1]), (1, [4, 5, 5, 2], [0, 2]),
                                                 (2, [5, 8, 6, 3], [3])])
@pytest.mark.parametrize("target", [ArgMax(0), NeuronRange(1, 0, -0.5, 0.5)], ids=["argmax", "neuron_range"])
def test_flat_box_pieces_meet_the_target_and_the_fraction_is_relative(seed, sizes, fixed, target):
    net = random_net(seed, sizes)
    d = sizes[0]
    values = np.random.default_rng(seed).uniform(-1, 1, len(fixed))
    box = flat_box(d, fixed, values)
    result = preimage(net, target, box)
    assert result.complete
    conj = compile_target(target, net)
    for piece in result.pieces:
        P = piece.polytope
        assert P.dim == d - len(fixed)
        assert P.contains(piece.witness)
        np.testing.assert_array_equal(piece.witness[fixed], values)
        assert piece.checked and satisfies(conj, net, piece.witness[None, :])[0]
    check = result.verify(3000, rng=seed)
    assert check.ok, check
    X = box.sample(20_000, rng=seed + 1)
    p = satisfies(conj, net, X).mean()
    stderr = np.sqrt(max(p * (1 - p), 1e-12) / X.shape[0])
    fraction = result.fraction()
    assert abs(fraction.value - p) <= 4 * stderr + 1e-9
    # The same set as a polytope with equalities takes the general path (no substitution).
    E = np.eye(d)[fixed]
    general = Polytope(np.vstack([np.eye(d), -np.eye(d)]), 2.0 * np.ones(2 * d), E, values)
    other = preimage(net, target, general)
    assert other.complete
    assert np.isclose(sum(pc.polytope.volume(relative=True).value for pc in other.pieces
                          if pc.polytope.dim == d - len(fixed)), fraction.value * 4.0 ** (d - len(fixed)),
                      rtol=1e-6, atol=1e-9)


def test_one_pattern_pieces_carry_the_full_affine_map():
    net = random_net(3, [4, 6, 5, 2])
    box = flat_box(4, [1, 3], np.array([0.25, -0.5]))
    result = preimage(net, ArgMax(1), box, one_pattern_per_piece=True)
    assert result.complete and result.pieces
    for piece in result.pieces:
        x = piece.witness
        np.testing.assert_allclose(piece.affine(x[None, :])[0], net.forward(x[None, :])[0], atol=1e-9)
        # Over all inputs: a small move along a fixed coordinate, inside the region, follows the map too.
        step = np.zeros(4)
        step[1] = 1e-7
        np.testing.assert_allclose(piece.affine((x + step)[None, :])[0], net.forward((x + step)[None, :])[0],
                                   atol=1e-9)


def test_which_domains_are_substituted():
    d = 3
    lo, hi = np.zeros(d), np.ones(d)
    assert flat_coordinates([(lo, hi, np.zeros((0, d)), np.zeros(0))], d) is None
    lo2 = lo.copy()
    hi2 = hi.copy()
    hi2[1] = lo2[1] = 0.5
    flat = flat_coordinates([(lo2, hi2, np.zeros((0, d)), np.zeros(0))], d)
    assert flat is not None and list(flat.fixed) == [1] and list(flat.free) == [0, 2]
    point = np.full(d, 0.5)
    assert flat_coordinates([(point, point, np.zeros((0, d)), np.zeros(0))], d) is None
    other = hi2.copy()
    other[1] = lo2[1] = 0.5
    lo3, hi3 = lo2.copy(), hi2.copy()
    lo3[1] = hi3[1] = 0.75
    assert flat_coordinates([(lo2, hi2, np.zeros((0, d)), np.zeros(0)), (lo3, hi3, np.zeros((0, d)), np.zeros(0))],
                            d) is None
