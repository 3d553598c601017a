"""Activation patterns: bit-packed storage and statistics."""

from .packed import Patterns, pack_bits, popcount, unpack_bits

__all__ = ["Patterns", "pack_bits", "unpack_bits", "popcount"]
