"""Preimages: of one layer's activity (closed form and classification)."""

from .layer import ConeForm, LayerPreimage, SingletonTest, layer_preimage, layer_preimages, singleton_test

__all__ = ["ConeForm", "LayerPreimage", "SingletonTest", "layer_preimage", "layer_preimages", "singleton_test"]
