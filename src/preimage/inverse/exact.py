"""Ground truth for ReLU networks: the exact inverse set by the preimage engine, and how well samples cover it.

For a piecewise-linear network ``{x in box : z1 <= z_k(x) <= z2}`` is a finite union of polytopes, which
``pim.preimage`` computes with ``NeuronRange`` targets (one per neuron: their intersection). Uniform samples of
it (hit-and-run) are the reference against which a sampler's output is judged: for every exact sample, the
distance to the nearest sample of the sampler, beside the same distance to an independent uniform sample of the
same size. A sampler that covers the set as well as uniform sampling has a ratio near 1; one that leaves parts
of it empty, above 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._rng import as_generator
from ..errors import PreimageError, ShapeError
from ..network import Network
from .neurons import _flat_unit, _neuron_list, _ranges

__all__ = ["Coverage", "coverage", "exact_inverse_set", "sample_exact"]


def exact_inverse_set(net, neuron, z1, z2, domain, *, budget=None, progress: bool | None = False):
    """The exact inverse set ``{x in domain : z1 <= z(x) <= z2}`` of a ReLU network as a ``PreimageSet``.

    net : a ``pim.Network`` (or anything ``pim.load`` reads: a ReLU torch module, .onnx, .nnet); neuron, z1, z2 as
    in :func:`inverse_set` with integer layers (``net.layers``, pre-activations). domain : a Box (or what
    ``pim.preimage`` takes). budget : ``pim.Budget``; when it stops the search the set has ``complete=False`` and
    ``inner`` / ``outer`` bound the truth.
    """
    from ..network.load import load
    from ..preimages import NeuronRange, preimage

    if not isinstance(net, Network):
        net = load(net)
    neurons, _ = _neuron_list(neuron)
    lo, hi, _ = _ranges(z1, z2, len(neurons))
    targets = []
    for position, ((layer, unit), a, b) in enumerate(zip(neurons, lo, hi)):
        if not isinstance(layer, (int, np.integer)) or not 0 <= layer < len(net.layers):
            raise ShapeError(f"neuron {position}: layer {layer!r} is not an index of the network's "
                             f"{len(net.layers)} layers")
        flat = _flat_unit(unit, net.layers[layer].output_shape, f"neuron {position} (layer {layer})")
        targets.append(NeuronRange(int(layer), flat, float(a), float(b)))
    return preimage(net, targets[0] if len(targets) == 1 else targets, domain, budget=budget, progress=progress)


def sample_exact(exact, m: int, rng=None) -> np.ndarray:
    """``m`` points (m, d) uniform over a complete, bounded exact inverse set (``PreimageSet.sample``).

    A set of one full-dimensional piece is sampled by hit-and-run on the piece directly: its volume, which only
    weighs pieces against each other, is not needed.
    """
    if not exact.complete:
        raise PreimageError("the exact inverse set is incomplete (a budget stopped the search): sample exact.inner "
                            "or exact.outer knowingly")
    if len(exact.pieces) == 1:
        return exact.pieces[0].polytope.sample(int(m), rng=as_generator(rng))
    return exact.sample(int(m), rng=as_generator(rng))


def _nearest(points: np.ndarray, to: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(m,) the Euclidean distance from each row of ``points`` (m, d) to its nearest row of ``to`` (n, d)."""
    squares = np.einsum("ij,ij->i", to, to)
    out = np.empty(len(points))
    for start in range(0, len(points), chunk):
        block = points[start:start + chunk]
        distances = np.einsum("ij,ij->i", block, block)[:, None] + squares[None, :] - 2.0 * block @ to.T
        out[start:start + chunk] = np.sqrt(np.maximum(distances.min(axis=1), 0.0))
    return out


@dataclass(frozen=True)
class Coverage:
    """How a sample covers the exact set.

    distances : (m,) from each exact uniform sample to the nearest sample judged. reference : (m,) the same to
    an independent uniform sample of the exact set of the same size. inside : the fraction of the judged samples
    that lie in the exact set (``PreimageSet.contains``).
    """

    distances: np.ndarray
    reference: np.ndarray
    inside: float

    @property
    def median(self) -> float:
        return float(np.median(self.distances))

    @property
    def reference_median(self) -> float:
        return float(np.median(self.reference))

    @property
    def ratio(self) -> float:
        """Median distance to the judged samples over the median distance to uniform samples (1: as uniform)."""
        return self.median / self.reference_median if self.reference_median > 0 else np.inf

    def __repr__(self) -> str:
        return (f"Coverage(median={self.median:.4g}, uniform median={self.reference_median:.4g}, "
                f"ratio={self.ratio:.3g}, inside={self.inside:.3f})")


def coverage(exact, samples, *, m: int = 1000, rng=None, uniform=None) -> Coverage:
    """The coverage of the exact inverse set ``exact`` by ``samples`` (an InverseSet or an (n, ...) array).

    m : exact uniform samples to measure from. uniform : optional (m + n, d) uniform samples of the exact set
    to use (the first m as the probes, the next n as the reference), e.g. to share them between samplers.
    """
    points = np.asarray(getattr(samples, "samples", samples), dtype=np.float64)
    points = points.reshape(len(points), -1)
    n = len(points)
    if n == 0:
        raise ValueError("coverage needs at least one sample")
    if uniform is None:
        uniform = sample_exact(exact, int(m) + n, rng)
    uniform = np.asarray(uniform, dtype=np.float64)
    if uniform.shape[0] < n + 1 or uniform.shape[1] != points.shape[1]:
        raise ShapeError(f"uniform samples must have shape (m + {n}, {points.shape[1]}), m >= 1; got {uniform.shape}")
    probes, reference = uniform[:-n], uniform[-n:]
    inside = float(np.mean(exact.contains(points)))
    return Coverage(_nearest(probes, points), _nearest(probes, reference), inside)
