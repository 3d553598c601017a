"""Affine maps ``x -> W x + b`` with a dense or sparse ``W``, applied to whole batches.

A convolution stays a scipy.sparse CSR matrix from import to bound propagation; nothing here densifies
it unless ``dense()`` is asked for.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ..errors import ModelError, ShapeError

__all__ = ["AffineMap"]

def _as_weight(weight) -> np.ndarray | sp.csr_matrix:
    if sp.issparse(weight):
        matrix = weight if weight.format == "csr" and weight.dtype == np.float64 else sp.csr_matrix(
            weight, dtype=np.float64)
        if not matrix.has_canonical_format:
            matrix.sum_duplicates()
        return matrix
    matrix = np.array(weight, dtype=np.float64)
    if matrix.ndim != 2:
        raise ShapeError(f"weight must be 2-D (outputs, inputs); got shape {matrix.shape}")
    return matrix


def _diagonal_of(weight) -> np.ndarray | None:
    """The diagonal of a sparse square W holding exactly one entry per row, on the diagonal; else None.

    Normalisations, BatchNorm and bias additions are such maps; composing with them is a row or column
    scaling, which ``compose`` does without a sparse product.
    """
    if not sp.issparse(weight) or weight.shape[0] != weight.shape[1]:
        return None
    n = weight.shape[0]
    if weight.nnz != n or not np.array_equal(weight.indptr, np.arange(n + 1)):
        return None
    if not np.array_equal(weight.indices, np.arange(n)):
        return None
    return weight.data.copy()


class AffineMap:
    """The map ``x -> W x + b``.

    Parameters
    ----------
    weight : (m, d) ndarray or scipy.sparse matrix (stored as CSR), float64.
    bias : (m,) array or None (zeros).

    Attributes
    ----------
    diagonal : (m,) the diagonal when W is a sparse diagonal matrix (m = d), else None.
    """

    def __init__(self, weight, bias=None):
        self.weight = _as_weight(weight)
        m = self.weight.shape[0]
        self.bias = np.zeros(m) if bias is None else np.array(bias, dtype=np.float64).reshape(-1)
        if self.bias.shape != (m,):
            raise ShapeError(f"bias has {self.bias.size} entries; weight has {m} rows")
        if not self.is_sparse:
            self.weight.setflags(write=False)
        self.bias.setflags(write=False)
        self.diagonal = _diagonal_of(self.weight)

    @classmethod
    def identity(cls, d: int) -> "AffineMap":
        """The identity of R^d (sparse)."""
        return cls.scaling(np.ones(d))

    @classmethod
    def scaling(cls, scale, bias=None) -> "AffineMap":
        """``x -> scale * x + bias`` elementwise: a sparse diagonal W (normalisations, BatchNorm, bias adds)."""
        scale = np.array(scale, dtype=np.float64).reshape(-1)
        n = scale.size
        index = np.arange(n + 1, dtype=np.int32 if n < 2**31 - 1 else np.int64)
        return cls(sp.csr_matrix((scale, index[:-1], index), shape=(n, n)), bias)

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.weight)

    @property
    def shape(self) -> tuple[int, int]:
        """(m, d): outputs, inputs."""
        return self.weight.shape

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def nnz(self) -> int:
        """Stored weights (non-zeros of a sparse W, every entry of a dense one)."""
        return self.weight.nnz if self.is_sparse else self.weight.size

    def check_finite(self, where: str) -> None:
        """Raise ``ModelError`` naming ``where`` if a weight or bias is NaN or infinite."""
        values = self.weight.data if self.is_sparse else self.weight
        if not np.all(np.isfinite(values)):
            raise ModelError(f"{where}: weight contains NaN or infinite values")
        if not np.all(np.isfinite(self.bias)):
            raise ModelError(f"{where}: bias contains NaN or infinite values")

    def linear(self, X: np.ndarray) -> np.ndarray:
        """``X W^T`` for X (n, d) -> (n, m), without the bias."""
        if self.is_sparse:
            return np.asarray((self.weight @ X.T).T)
        return X @ self.weight.T

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """``X W^T + b`` for X (n, d) -> (n, m)."""
        out = self.linear(X)
        out += self.bias
        return out

    def transpose_apply(self, L: np.ndarray) -> np.ndarray:
        """``L W`` for L (..., m) -> (..., d): the backward (transposed) map of bound propagation."""
        L = np.asarray(L, dtype=np.float64)
        flat = L.reshape(-1, L.shape[-1])
        if self.is_sparse:
            out = np.asarray((self.weight.T @ flat.T).T)
        else:
            out = flat @ self.weight
        return out.reshape(*L.shape[:-1], self.in_features)

    @cached_property
    def abs_weight(self) -> np.ndarray | sp.csr_matrix:
        """``|W|`` elementwise, same storage as W (interval arithmetic)."""
        return abs(self.weight)

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of ``W x + b`` over boxes ``lo <= x <= hi``; lo, hi (n, d) -> two (n, m) arrays."""
        centre = 0.5 * (lo + hi)
        radius = 0.5 * (hi - lo)
        mid = self(centre)
        if self.is_sparse:
            spread = np.asarray((self.abs_weight @ radius.T).T)
        else:
            spread = radius @ self.abs_weight.T
        return mid - spread, mid + spread

    def dense(self) -> np.ndarray:
        """W as a dense (m, d) array (a copy for sparse W)."""
        return self.weight.toarray() if self.is_sparse else self.weight

    def rows(self, index) -> "AffineMap":
        """The map restricted to the outputs ``index`` (a boolean mask or integer indices)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return AffineMap(self.weight[index], self.bias[index])

    def compose(self, inner: "AffineMap") -> "AffineMap":
        """``self o inner``: x -> W (W_in x + b_in) + b; sparse stays sparse when both are."""
        if inner.out_features != self.in_features:
            raise ShapeError(
                f"cannot compose: inner map has {inner.out_features} outputs, outer takes {self.in_features}"
            )
        if self.diagonal is not None and not inner.is_sparse:
            weight = self.diagonal[:, None] * inner.weight
        elif inner.diagonal is not None and not self.is_sparse:
            weight = self.weight * inner.diagonal[None, :]
        elif self.is_sparse and inner.is_sparse:
            weight = (self.weight @ inner.weight).tocsr()
        elif self.is_sparse:
            weight = np.asarray(self.weight @ inner.weight)
        elif inner.is_sparse:
            weight = np.asarray((inner.weight.T @ self.weight.T).T)
        else:
            weight = self.weight @ inner.weight
        bias = self.linear(inner.bias[None, :])[0] + self.bias
        return AffineMap(weight, bias)

    def __repr__(self) -> str:
        storage = f"sparse, nnz={self.nnz}" if self.is_sparse else "dense"
        return f"AffineMap({self.out_features}x{self.in_features}, {storage})"
