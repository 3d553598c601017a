"""Bit-packed patterns: packing is lossless, counts and probabilities agree with the bools."""

import numpy as np
import pytest

from preimage.errors import ShapeError
from preimage.patterns import Patterns, pack_bits, popcount, unpack_bits


@pytest.mark.parametrize("units", [1, 7, 63, 64, 65, 130, 3500])
def test_pack_unpack_round_trip(rng, units):
    bits = rng.random((37, units)) < 0.3
    words = pack_bits(bits)
    assert words.dtype == np.dtype("<u8") and words.shape == (37, -(-units // 64))
    assert np.array_equal(unpack_bits(words, units), bits)
    assert np.array_equal(popcount(words), bits.sum(axis=1))


def test_bit_layout_is_unit_j_in_word_j_div_64():
    bits = np.zeros((1, 130), dtype=bool)
    bits[0, [0, 65, 129]] = True
    words = pack_bits(bits)
    assert words[0, 0] == 1 and words[0, 1] == 2 and words[0, 2] == 2


def test_patterns_container(rng):
    a, b = rng.random((50, 10)) < 0.5, rng.random((50, 70)) < 0.2
    p = Patterns.from_bits([a, b], layers=[0, 2])
    assert len(p) == 50 and p.units == (10, 70) and p.layers == (0, 2) and p.n_units == 80
    assert np.array_equal(p.bits(), np.concatenate([a, b], axis=1))
    probs = p.activation_probabilities()
    assert np.allclose(probs[0], a.mean(0)) and np.allclose(probs[1], b.mean(0))
    assert np.array_equal(p.active_counts(), np.stack([a.sum(1), b.sum(1)], 1))
    assert p[3].layer(1).shape == (1, 70)
    assert p[np.arange(50) % 2 == 0] == Patterns.from_bits([a[::2], b[::2]])
    assert Patterns.concatenate([p[:20], p[20:]]) == p
    assert p.packed().shape == (50, 1 + 2)


def test_patterns_refuse_inconsistent_parts(rng):
    with pytest.raises(ShapeError):
        Patterns([np.zeros((3, 1), "<u8"), np.zeros((4, 1), "<u8")], [5, 5])
    with pytest.raises(ShapeError):
        Patterns([np.zeros((3, 1), "<u8")], [65])
    with pytest.raises(ShapeError):
        Patterns.concatenate([Patterns.from_bits([np.zeros((2, 3))]), Patterns.from_bits([np.zeros((2, 4))])])
