"""The network IR: a chain of affine maps and elementwise activations in float64."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from .. import settings as _settings
from ..errors import ModelError, ShapeError
from ..patterns.packed import Patterns, pack_bits
from .layers import Layer

__all__ = ["Network"]


class Network:
    """``x -> L_{k-1}( ... L_1(L_0(x)))`` with ``L_i(x) = activation_i(W_i x + b_i)``.

    Parameters
    ----------
    layers : the layers in order; the sizes must chain.
    input_shape : the input tensor shape without batch, e.g. ``(5,)`` or ``(1, 28, 28)``; defaults to
        ``(layers[0].in_features,)``.
    name : a label (file name, module class).
    input_box : optional ``(lo, hi)`` pair of (d,) arrays, the input domain the model declares
        (NNet files carry one).

    Inputs to every method may be (n, d), (n, *input_shape), or one input (d,) / input_shape, in which
    case the result has no batch axis either. Everything is float64.
    """

    def __init__(self, layers: Sequence[Layer], input_shape=None, *, name: str = "", input_box=None):
        self.layers: tuple[Layer, ...] = tuple(layers)
        if not self.layers:
            raise ModelError("a network needs at least one layer")
        for i in range(1, len(self.layers)):
            if self.layers[i].in_features != self.layers[i - 1].out_features:
                raise ShapeError(
                    f"layer {i} ({self.layers[i].name}) takes {self.layers[i].in_features} inputs but layer "
                    f"{i - 1} gives {self.layers[i - 1].out_features}"
                )
        d = self.layers[0].in_features
        self.input_shape = (d,) if input_shape is None else tuple(int(s) for s in input_shape)
        if int(np.prod(self.input_shape)) != d:
            raise ShapeError(f"input shape {self.input_shape} has {int(np.prod(self.input_shape))} values; "
                             f"the first layer takes {d}")
        self.name = name
        self.input_box = None
        if input_box is not None:
            lo, hi = (np.array(v, dtype=np.float64).reshape(-1) for v in input_box)
            if lo.shape != (d,) or hi.shape != (d,):
                raise ShapeError(f"input box bounds must have {d} entries")
            if np.any(lo > hi):
                raise ModelError(f"input box is empty at coordinate {int(np.argmax(lo > hi))}")
            self.input_box = (lo, hi)

    # -- shape ---------------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return self.layers[0].in_features

    @property
    def output_dim(self) -> int:
        return self.layers[-1].out_features

    @property
    def hidden(self) -> tuple[int, ...]:
        """Indices of the layers whose activation has a kink (ReLU, LeakyReLU): those with patterns."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.activation.has_kink)

    @property
    def n_params(self) -> int:
        """Parameters as the model has them (see ``Layer.n_params``)."""
        return sum(layer.n_params for layer in self.layers)

    @property
    def stored(self) -> int:
        """Values the network holds in memory (see ``Layer.stored``)."""
        return sum(layer.stored for layer in self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            sub = self.layers[index]
            return Network(sub, sub[0].input_shape, name=self.name)
        return self.layers[index]

    def as_batch(self, X) -> tuple[np.ndarray, bool]:
        """``X`` as a finite float64 (n, d) array, and whether a batch axis was given."""
        if hasattr(X, "detach"):
            X = X.detach().cpu().numpy()
        X = np.asarray(X, dtype=np.float64)
        d = self.input_dim
        if X.shape == self.input_shape or (X.ndim == 1 and X.shape[0] == d):
            batched, X = False, X.reshape(1, d)
        elif X.ndim >= 2 and int(np.prod(X.shape[1:])) == d and (
            X.ndim == 2 or tuple(X.shape[1:]) == self.input_shape
        ):
            batched, X = True, X.reshape(X.shape[0], d)
        else:
            raise ShapeError(
                f"input of shape {X.shape} does not fit the network: expected (n, {d}) or "
                f"(n, {', '.join(map(str, self.input_shape))})"
            )
        if not np.all(np.isfinite(X)):
            raise ShapeError("input contains NaN or infinite values")
        return X, batched

    # -- evaluation ------------------------------------------------------------------------------
    def forward(self, X) -> np.ndarray:
        """The network's output: X (n, d) -> (n, outputs)."""
        X, batched = self.as_batch(X)
        for layer in self.layers:
            X = layer(X)
        return X if batched else X[0]

    __call__ = forward

    def preactivations(self, X) -> list[np.ndarray]:
        """One (n, units) array per layer, layer 0 first: ``W_i h_{i-1} + b_i``."""
        X, batched = self.as_batch(X)
        out = []
        for layer in self.layers:
            Z = layer.preactivation(X)
            out.append(Z if batched else Z[0])
            X = layer.activation(Z)
        return out

    def activations(self, X) -> list[np.ndarray]:
        """One (n, units) array per layer: the layer outputs after the activation."""
        X, batched = self.as_batch(X)
        out = []
        for layer in self.layers:
            X = layer(X)
            out.append(X if batched else X[0])
        return out

    def patterns(self, X, *, chunk_size: int | None = None, progress: bool = False) -> Patterns:
        """Bit-packed activation patterns of the kinked layers (bit 1: pre-activation > 0).

        ``X`` is an array (n, d) or (n, *input_shape) - a memory map works, it is read ``chunk_size``
        rows at a time - or an iterable of such batches. Memory grows with n * units / 8 bytes only.
        ``progress`` shows a progress bar over the chunks (on stderr).
        """
        chunk = chunk_size or _settings.current().chunk_size
        total = None
        if hasattr(X, "shape") and hasattr(X, "__getitem__"):
            if tuple(X.shape) == self.input_shape or len(X.shape) == 1:
                return self._patterns_of(X)
            n = X.shape[0]
            batches = (X[start:start + chunk] for start in range(0, n, chunk)) if n else [X]
            total = max(1, -(-n // chunk))
        else:
            batches = X
        if progress:
            batches = tqdm(batches, total=total, desc="patterns", unit="chunk")
        return Patterns.concatenate([self._patterns_of(batch) for batch in batches])

    def _patterns_of(self, X) -> Patterns:
        X, _ = self.as_batch(X)
        hidden = self.hidden
        bits = []
        for i, layer in enumerate(self.layers[: hidden[-1] + 1] if hidden else ()):
            Z = layer.preactivation(X)
            if layer.activation.has_kink:
                bits.append(pack_bits(Z > 0))
            X = layer.activation(Z)
        return Patterns(bits, [self.layers[i].out_features for i in hidden], hidden)

    def interval_bounds(self, lo, hi) -> list[tuple[np.ndarray, np.ndarray]]:
        """Interval bounds of every layer's pre-activations over a batch of input boxes.

        lo, hi : (n, d) (or (d,)) with lo <= hi. Returns one ``(lower, upper)`` pair of (n, units) arrays
        per layer. Sparse (convolutional) layers stay sparse.
        """
        lo, batched = self.as_batch(lo)
        hi, _ = self.as_batch(hi)
        if lo.shape != hi.shape:
            raise ShapeError(f"lower bounds {lo.shape} and upper bounds {hi.shape} differ in shape")
        if np.any(lo > hi):
            row, col = np.argwhere(lo > hi)[0]
            raise ShapeError(f"empty box: lower bound exceeds upper bound at input {row}, coordinate {col}")
        out = []
        for layer in self.layers:
            zl, zu = layer.affine.interval(lo, hi)
            out.append((zl, zu) if batched else (zl[0], zu[0]))
            lo, hi = layer.activation(zl), layer.activation(zu)
        return out

    # -- description -------------------------------------------------------------------------------
    def summary(self) -> str:
        """A table of the layers: index, name, shapes, activation, parameters, stored values and W's storage."""
        rows = [("#", "layer", "input", "output", "activation", "params", "stored", "W")]
        for i, layer in enumerate(self.layers):
            rows.append((
                str(i), layer.name, "x".join(map(str, layer.input_shape)), "x".join(map(str, layer.output_shape)),
                str(layer.activation), f"{layer.n_params:,}", f"{layer.stored:,}", layer.affine.storage,
            ))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = [f"{self.name or 'network'}: input {'x'.join(map(str, self.input_shape))}, "
                 f"{len(self.layers)} layers, {self.n_params:,} parameters, {self.stored:,} values stored"]
        for r in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if self.input_box is not None:
            lo, hi = self.input_box
            lines.append(f"input box: [{', '.join(f'{a:g}' for a in lo)}] .. [{', '.join(f'{b:g}' for b in hi)}]")
        return "\n".join(lines)

    def __repr__(self) -> str:
        sizes = " -> ".join([str(self.input_dim)] + [str(layer.out_features) for layer in self.layers])
        return f"Network({self.name + ': ' if self.name else ''}{sizes})"
