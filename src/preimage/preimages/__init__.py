"""Preimages: of one layer's activity (closed form and classification), and exact multi-layer preimages of any
target (branch and prune, ``engine``) as certified unions of polytopes (``preimage_set``)."""

from .engine import Budget, preimage
from .layer import (
    ConeForm, LayerClassification, LayerPreimage, SingletonTest, classify_layer, layer_preimage, layer_preimages,
    singleton_test,
)
from .preimage_set import Piece, PreimageSet, Verification
from .targets import (
    Activity, AnyOf, ArgMax, InputPolytope, NeuronRange, OutputPolytope, Pattern, compile_target, satisfies,
)
from .vnnlib import read_vnnlib

__all__ = [
    "ConeForm", "LayerClassification", "LayerPreimage", "SingletonTest", "classify_layer", "layer_preimage",
    "layer_preimages", "singleton_test",
    "preimage", "Budget", "PreimageSet", "Piece", "Verification",
    "Activity", "AnyOf", "ArgMax", "InputPolytope", "NeuronRange", "OutputPolytope", "Pattern", "compile_target",
    "satisfies", "read_vnnlib",
]
