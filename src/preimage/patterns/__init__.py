"""Activation patterns: bit-packed storage and statistics at dataset scale."""

from .bernoulli import BernoulliTest, bernoulli_patterns, bernoulli_test
from .clustering import ClusterCurve, cluster_curve, constellations
from .dataset import dataset_patterns, digits, iter_batches, load_patterns, save_patterns
from .first_layer import FoldedNormalFit, folded_normal_fit, hyperplane_distances, zero_one_agreement
from .geodesic import (
    ExactGeodesic, GeodesicPath, conditional_geodesic, exact_geodesic, midpoint_geodesic, path_hamming,
)
from .hamming import activity_distances, hamming_knn, hamming_pairs, pairwise_hamming, random_pair_distances
from .hooks import activation_modules, functional_activations, hook_patterns, hook_preactivations
from .local_maps import (
    GreedyDecomposition, angle_vs_noise, greedy_decomposition, local_map_spectrum, local_maps, map_angles,
)
from .normalisation import VARIANTS, NormalisationStudy, build_mlp, normalisation_study
from .packed import Patterns, pack_bits, popcount, unpack_bits
from .stats import LayerStatistics, checkpoint_statistics, format_statistics, unit_statistics

__all__ = [
    "Patterns", "pack_bits", "unpack_bits", "popcount",
    "dataset_patterns", "digits", "iter_batches", "save_patterns", "load_patterns",
    "activation_modules", "functional_activations", "hook_patterns", "hook_preactivations",
    "LayerStatistics", "unit_statistics", "checkpoint_statistics", "format_statistics",
    "hamming_knn", "hamming_pairs", "pairwise_hamming", "random_pair_distances", "activity_distances",
    "BernoulliTest", "bernoulli_test", "bernoulli_patterns",
    "ClusterCurve", "cluster_curve", "constellations",
    "hyperplane_distances", "FoldedNormalFit", "folded_normal_fit", "zero_one_agreement",
    "local_maps", "local_map_spectrum", "greedy_decomposition", "GreedyDecomposition", "angle_vs_noise",
    "map_angles",
    "VARIANTS", "build_mlp", "NormalisationStudy", "normalisation_study",
    "GeodesicPath", "path_hamming", "conditional_geodesic", "midpoint_geodesic", "ExactGeodesic", "exact_geodesic",
]
