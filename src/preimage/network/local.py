"""The affine maps a network computes on one activation pattern, by masked matrix products.

On the inputs with a given pattern every layer's pre-activation is one affine map ``z_l = M_l x + c_l``:
``M_{l+1} = W_{l+1} D_l M_l`` with ``D_l`` the slopes of the pattern at layer l (1 where a unit is on, the
activation's slope where it is off). No autograd: the products are exact in float64.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .network import Network

__all__ = ["pattern_slopes", "local_maps"]


def pattern_slopes(net: Network, pattern) -> list[np.ndarray]:
    """The slope of every unit of every layer for an activation pattern.

    pattern : (kinked units,) bool, the concatenation over ``net.hidden`` (bit 1: on). Returns one
    (units,) array per layer: 1 where on (or for a layer without kink), the activation's slope where off.
    """
    bits = np.asarray(pattern, dtype=bool).reshape(-1)
    total = sum(net.layers[i].out_features for i in net.hidden)
    if bits.size != total:
        raise ShapeError(f"a pattern of this network has {total} bits (the units of layers {net.hidden}); "
                         f"got {bits.size}")
    slopes, start = [], 0
    for layer in net.layers:
        units = layer.out_features
        if layer.activation.has_kink:
            slopes.append(np.where(bits[start:start + units], 1.0, layer.activation.slope))
            start += units
        else:
            slopes.append(np.ones(units))
    return slopes


def local_maps(net: Network, slopes) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each layer's pre-activation on a region, ``z_l = M_l x + c_l``: a list of ``(M_l (units, d), c_l)``."""
    maps = []
    M = net.layers[0].affine.dense().astype(np.float64, copy=True)
    c = np.array(net.layers[0].affine.bias, dtype=np.float64)
    for i, layer in enumerate(net.layers):
        if i:
            DM = slopes[i - 1][:, None] * M
            M = np.ascontiguousarray(layer.affine.linear(np.ascontiguousarray(DM.T)).T)
            c = layer.affine((slopes[i - 1] * c)[None, :])[0]
        maps.append((M, c))
    return maps
