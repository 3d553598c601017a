"""Bit-packed activation patterns.

Unit ``j`` of a layer is bit ``j % 64`` of the little-endian word ``j // 64``; bit 1 means the unit's
pre-activation is strictly positive. Words are what Hamming distances and equality tests run on.
This module knows nothing of networks: it stores and reads bits.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ShapeError

__all__ = ["Patterns", "pack_bits", "unpack_bits", "popcount"]

_WORD = 64


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean (n, units) array into (n, ceil(units / 64)) uint64 words."""
    bits = np.asarray(bits, dtype=bool)
    n, units = bits.shape
    n_words = -(-units // _WORD)
    padded = np.zeros((n, n_words * _WORD), dtype=bool)
    padded[:, :units] = bits
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").reshape(n, n_words)


def unpack_bits(words: np.ndarray, units: int) -> np.ndarray:
    """Inverse of ``pack_bits``: (n, w) uint64 -> (n, units) bool."""
    words = np.ascontiguousarray(words, dtype="<u8")
    as_bytes = words.view(np.uint8).reshape(words.shape[0], -1)
    return np.unpackbits(as_bytes, axis=1, count=units, bitorder="little").astype(bool)


_BYTE_COUNTS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits per row of a (n, w) uint64 array -> (n,) int64."""
    words = np.ascontiguousarray(words, dtype="<u8")
    as_bytes = words.view(np.uint8).reshape(words.shape[0], -1)
    return _BYTE_COUNTS[as_bytes].sum(axis=1, dtype=np.int64)


class Patterns:
    """Activation patterns of ``n`` inputs over the layers of a network that have a kink.

    Parameters
    ----------
    words : one (n, ceil(units_l / 64)) uint64 array per layer.
    units : the number of units of each layer.
    layers : the index in the network of each of those layers.
    """

    def __init__(self, words: Sequence[np.ndarray], units: Sequence[int], layers: Sequence[int] | None = None):
        if len(words) != len(units):
            raise ShapeError(f"{len(words)} word arrays for {len(units)} layers")
        self.words = tuple(np.ascontiguousarray(w, dtype="<u8") for w in words)
        self.units = tuple(int(u) for u in units)
        self.layers = tuple(range(len(units))) if layers is None else tuple(int(i) for i in layers)
        sizes = {w.shape[0] for w in self.words}
        if len(sizes) > 1:
            raise ShapeError(f"layers hold different numbers of patterns: {sorted(sizes)}")
        for w, u in zip(self.words, self.units):
            if w.ndim != 2 or w.shape[1] != -(-u // _WORD):
                raise ShapeError(f"words of shape {w.shape} cannot hold {u} units")
        for w in self.words:
            w.setflags(write=False)

    @classmethod
    def from_bits(cls, bits: Sequence[np.ndarray], layers: Sequence[int] | None = None) -> "Patterns":
        """From one boolean (n, units_l) array per layer."""
        bits = [np.asarray(b, dtype=bool) for b in bits]
        return cls([pack_bits(b) for b in bits], [b.shape[1] for b in bits], layers)

    @classmethod
    def concatenate(cls, parts: Sequence["Patterns"]) -> "Patterns":
        """Stack patterns of the same layers computed on consecutive batches."""
        if not parts:
            raise ShapeError("no patterns to concatenate")
        first = parts[0]
        for part in parts[1:]:
            if part.units != first.units:
                raise ShapeError(f"cannot concatenate patterns of units {part.units} and {first.units}")
        words = [np.concatenate([p.words[i] for p in parts]) for i in range(len(first.units))]
        return cls(words, first.units, first.layers)

    def __len__(self) -> int:
        return self.words[0].shape[0] if self.words else 0

    @property
    def n_units(self) -> int:
        """Units over all layers."""
        return sum(self.units)

    def __getitem__(self, rows) -> "Patterns":
        """The patterns of the inputs ``rows`` (an index, slice, indices or mask); always 2-D words."""
        if isinstance(rows, (int, np.integer)):
            rows = [rows]
        return Patterns([w[rows] for w in self.words], self.units, self.layers)

    def layer(self, i: int) -> np.ndarray:
        """The patterns of the ``i``-th stored layer as a (n, units_i) bool array."""
        return unpack_bits(self.words[i], self.units[i])

    def bits(self) -> np.ndarray:
        """All layers side by side, (n, n_units) bool."""
        if not self.units:
            return np.zeros((len(self), 0), dtype=bool)
        return np.concatenate([self.layer(i) for i in range(len(self.units))], axis=1)

    def packed(self) -> np.ndarray:
        """All layers' words side by side, (n, total words) uint64 (each layer padded to whole words)."""
        return np.concatenate(self.words, axis=1)

    def active_counts(self) -> np.ndarray:
        """Active units per input and layer, (n, n_layers) int64."""
        return np.stack([popcount(w) for w in self.words], axis=1)

    def activation_probabilities(self) -> list[np.ndarray]:
        """Per layer, the fraction of inputs on which each unit is active, (units_l,) float64."""
        out = []
        n = max(len(self), 1)
        for i in range(len(self.units)):
            counts = np.zeros(self.units[i], dtype=np.int64)
            step = 65536
            for start in range(0, len(self), step):
                counts += unpack_bits(self.words[i][start:start + step], self.units[i]).sum(axis=0)
            out.append(counts / n)
        return out

    def __eq__(self, other) -> bool:
        if not isinstance(other, Patterns):
            return NotImplemented
        return (
            self.units == other.units
            and len(self) == len(other)
            and all(np.array_equal(a, b) for a, b in zip(self.words, other.words))
        )

    __hash__ = None

    def __repr__(self) -> str:
        return f"Patterns(n={len(self)}, units={self.units})"
