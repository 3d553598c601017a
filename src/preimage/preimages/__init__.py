"""Preimages: of one layer's activity (closed form and classification)."""

from .layer import (
    ConeForm, LayerClassification, LayerPreimage, SingletonTest, classify_layer, layer_preimage, layer_preimages,
    singleton_test,
)

__all__ = [
    "ConeForm", "LayerClassification", "LayerPreimage", "SingletonTest", "classify_layer", "layer_preimage",
    "layer_preimages", "singleton_test",
]
