"""What every sampler of an inverse set returns, and the measures it is judged by."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import settings as _settings
from ..errors import ShapeError

__all__ = ["InverseSet", "mean_pairwise_distance"]


def mean_pairwise_distance(F, chunk: int = 2048) -> float:
    """The mean Euclidean distance over the pairs ``i != j`` of the rows of ``F`` (n, q); 0 when n < 2."""
    F = np.asarray(F, dtype=np.float64)
    n = len(F)
    if n < 2:
        return 0.0
    F = F.reshape(n, -1)
    squares = np.einsum("ij,ij->i", F, F)
    total = 0.0
    for start in range(0, n, chunk):
        block = F[start:start + chunk]
        distances = squares[start:start + chunk, None] + squares[None, :] - 2.0 * block @ F.T
        total += float(np.sqrt(np.maximum(distances, 0.0)).sum())
    return total / (n * (n - 1))


@dataclass(eq=False)
class InverseSet:
    """Samples of the inverse set ``{x valid : z1 <= f(x) <= z2}`` of one neuron or the intersection of several.

    samples : (n, *input_shape) float64, the inputs x = G(c). codes : (n, *latent_shape) the generator's latents,
    or None without a generator. activations : (n,) the neuron's values, (n, k) for a list of k neurons.
    encoded : (n, q) the samples in the encoder's space (flattened inputs without an encoder).
    z1, z2 : (k,) the ranges. valid : (n,) bool, the sample lies in the domain of valid inputs.
    in_range_mask : (n,) bool, every neuron in its range and the sample valid. seconds : wall time.
    steps : gradient steps taken, summed over the batches (each advances its whole batch once).
    method : "augmented Lagrangian", "gradient ascent", "Langevin". reason : why not every sample is in range
    ("" when all are). neurons : labels of the neurons.
    """

    samples: np.ndarray
    codes: np.ndarray | None
    activations: np.ndarray
    encoded: np.ndarray
    z1: np.ndarray
    z2: np.ndarray
    valid: np.ndarray
    seconds: float
    steps: int
    method: str
    neurons: tuple
    reason: str = ""

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def in_range_mask(self) -> np.ndarray:
        values = self.activations.reshape(self.n, -1)
        return np.all((values >= self.z1) & (values <= self.z2), axis=1) & self.valid

    @property
    def in_range(self) -> float:
        """The fraction of samples with every neuron in its range and a valid input."""
        return float(np.mean(self.in_range_mask)) if self.n else 1.0

    @property
    def diversity(self) -> float:
        """Mean pairwise Euclidean distance of the samples in input space."""
        return mean_pairwise_distance(self.samples.reshape(self.n, -1))

    @property
    def diversity_encoded(self) -> float:
        """Mean pairwise Euclidean distance of the samples in the encoder's space E."""
        return mean_pairwise_distance(self.encoded)

    def diversity_in_range(self) -> float:
        """Mean pairwise distance in input space of the samples that are in range only."""
        mask = self.in_range_mask
        return mean_pairwise_distance(self.samples.reshape(self.n, -1)[mask])

    @property
    def time_per_sample(self) -> float:
        return self.seconds / max(self.n, 1)

    def summary(self) -> str:
        ranges = ", ".join(f"[{a:g}, {b:g}]" for a, b in zip(self.z1, self.z2))
        text = (f"{self.method}: {self.n} samples of neuron(s) {', '.join(self.neurons)} in {ranges}; "
                f"in range {100 * self.in_range:.1f} %, diversity {self.diversity:.4g} (input) / "
                f"{self.diversity_encoded:.4g} (E), {1e3 * self.time_per_sample:.3g} ms per sample, "
                f"{self.steps} steps")
        return text + (f"; {self.reason}" if self.reason else "")

    def __repr__(self) -> str:
        return (f"InverseSet(n={self.n}, method={self.method!r}, in_range={self.in_range:.3f}, "
                f"diversity={self.diversity:.4g})")

    def plot(self, ax=None, *, image_shape=None, columns: int | None = None, limit: int = 64, cmap="gray_r",
             title: str | None = None):
        """The samples as an image grid (see :func:`preimage.viz.plot_image_grid`); returns the axes."""
        from ..viz.inverse_plot import plot_image_grid

        shape = image_shape or _image_shape(self.samples.shape[1:])
        return plot_image_grid(self.samples[:limit].reshape(-1, *shape), ax=ax, columns=columns, cmap=cmap,
                               title=title if title is not None else self.summary().split(";")[0])


def _image_shape(shape: tuple) -> tuple:
    """(h, w) of one sample: its last two axes, or a square for a flat input of square size."""
    if len(shape) >= 2 and int(np.prod(shape[:-2])) == 1:
        return tuple(shape[-2:])
    size = int(np.prod(shape))
    side = int(round(np.sqrt(size)))
    if side * side == size:
        return side, side
    raise ShapeError(f"samples of shape {shape} are not images: pass image_shape=(h, w)")


def finish(problem, X, C, seconds: float, steps: int, method: str, *, single: bool = True,
           reason: str = "") -> InverseSet:
    """The :class:`InverseSet` of inputs ``X`` (n, *input_shape) torch, with codes ``C``, measured in float64."""
    import torch

    with torch.no_grad():
        activations = problem.activations(X).numpy().astype(np.float64)
        encoded = problem.encode(X).numpy().astype(np.float64)
    samples = X.detach().numpy().astype(np.float64)
    flat = samples.reshape(len(samples), -1)
    if problem.domain is None:
        valid = np.all(np.isfinite(flat), axis=1)
    else:
        valid = problem.domain.contains(flat, tol=_settings.current().feasibility_tol)
    codes = None if not problem.has_generator else C.detach().numpy().astype(np.float64)
    values = activations[:, 0] if single else activations
    result = InverseSet(samples, codes, values, encoded, problem.lo.copy(), problem.hi.copy(), valid, seconds,
                        int(steps), method, problem.labels, reason)
    if not reason and result.in_range < 1.0:
        result.reason = f"{int(np.sum(~result.in_range_mask))} of {result.n} samples are not in range"
    return result
