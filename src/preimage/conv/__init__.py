"""Geometry of convolutional layers (Gamba et al.): filter hyperplanes, polyhedral cones, nesting."""

from .arrangement import grid_pattern_count, hyperplane_distances, slice_lines, slice_region_count
from .layer import ConvLayer, Hyperplanes, LayerCones, channel_cones, facet_rotations
from .nesting import STATES, UNDEFINED, PairGeometry, SliceCones, pair_geometry, slice_cones, state_names
from .network import LayerPairNesting, NetworkNesting, conv_blocks, nesting_over_checkpoints, network_nesting

__all__ = [
    "ConvLayer", "Hyperplanes", "LayerCones", "channel_cones", "facet_rotations",
    "STATES", "UNDEFINED", "SliceCones", "PairGeometry", "slice_cones", "pair_geometry", "state_names",
    "LayerPairNesting", "NetworkNesting", "conv_blocks", "network_nesting", "nesting_over_checkpoints",
    "hyperplane_distances", "slice_lines", "slice_region_count", "grid_pattern_count",
]
