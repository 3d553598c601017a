"""preimage: exact preimages of ReLU networks, and the geometry that follows.

    import preimage as pim
    net = pim.load("model.onnx")               # or an nn.Module, a .nnet file
    pre = pim.layer_preimage(net.layers[0], y)  # {x : relu(W x + b) = y}
    pre.kind, pre.dim, pre.polytope.sample(100)
    S = pim.preimage(net, pim.ArgMax(0), pim.Box(lo, hi))  # every input the net classifies as 0
"""

from . import conv, errors
from .errors import (
    EmptyDomainError, ImportMismatch, Infeasible, ModelError, PreimageError, ShapeError, SolverError,
    Unbounded, UnsupportedOperation, ConeError, DataError,
)
from .geometry import Box, Polytope, is_omnidirectional, solve_lp
from .inverse import InverseSet, inverse_set
from .network import Activation, AffineMap, Layer, Network
from .network.load import load
from .patterns import Patterns
from .patterns import (
    bernoulli_test, constellations, dataset_patterns, exact_geodesic, hamming_knn, hook_patterns,
    random_pair_distances, unit_statistics,
)
from .preimages import (
    Activity, AnyOf, ArgMax, Budget, ConeForm, InputPolytope, LayerClassification, LayerPreimage, NeuronRange,
    OutputPolytope, Pattern, Piece, PreimageSet, Verification, classify_layer, layer_preimage, layer_preimages,
    preimage, read_vnnlib, singleton_test,
)
from .regions import (
    Region, RegionGraph, Slice2D, count_regions, line, plane_through, point_with_pattern, region, region_statistics,
    regions, serra_bound, slice2d, plane_network,
)
from .settings import Settings, configure, current
from .conv import ConvLayer, nesting_over_checkpoints, network_nesting, slice_region_count

__version__ = "0.1.0"

__all__ = [
    "load", "Network", "Layer", "AffineMap", "Activation", "Patterns",
    "Polytope", "Box", "is_omnidirectional", "solve_lp",
    "layer_preimage", "layer_preimages", "classify_layer", "LayerPreimage", "LayerClassification", "ConeForm",
    "singleton_test",
    "preimage", "Budget", "PreimageSet", "Piece", "Verification", "read_vnnlib",
    "Activity", "Pattern", "ArgMax", "OutputPolytope", "NeuronRange", "InputPolytope", "AnyOf",
    "inverse_set", "InverseSet",
    "region", "Region", "line", "slice2d", "plane_through", "Slice2D", "regions", "RegionGraph", "count_regions",
    "serra_bound", "point_with_pattern", "region_statistics", "plane_network",
    "Settings", "configure", "current",
    "hamming_knn", "dataset_patterns", "hook_patterns", "unit_statistics", "random_pair_distances",
    "bernoulli_test", "constellations", "exact_geodesic",
    "errors", "PreimageError", "ModelError", "UnsupportedOperation", "ShapeError", "ImportMismatch",
    "EmptyDomainError", "Infeasible", "Unbounded", "SolverError",
    "conv", "ConvLayer", "network_nesting", "nesting_over_checkpoints", "slice_region_count", "ConeError",
    "DataError",
]
