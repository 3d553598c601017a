"""Affine maps ``x -> W x + b`` with a dense or sparse ``W``, or ``W`` a chain of such matrices.

A convolution stays a scipy.sparse CSR matrix from import to bound propagation; nothing here densifies
it unless ``dense()`` or ``weight`` is asked for.

Composition. ``compose`` multiplies two maps' matrices only when the product stores no more values than
the two factors together (a diagonal scaling always; a Linear after a convolution usually). Otherwise the
map keeps both as a *chain* ``W = W_k ... W_1`` and applies them one after the other: a global average
pooling followed by ``Linear(512, 1000)`` stays 512 x 1000 + 25088 stored values instead of a dense
1000 x 25088 product.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import ModelError, ShapeError

__all__ = ["AffineMap"]


def _as_weight(weight, *, owned: bool = False) -> np.ndarray | sp.csr_matrix:
    """A weight as a float64 CSR matrix or a read-only float64 array (copied unless ``owned``)."""
    if sp.issparse(weight):
        matrix = weight if weight.format == "csr" and weight.dtype == np.float64 else sp.csr_matrix(
            weight, dtype=np.float64)
        if not matrix.has_canonical_format:
            matrix.sum_duplicates()
        return matrix
    matrix = np.asarray(weight, dtype=np.float64) if owned else np.array(weight, dtype=np.float64)
    if matrix.ndim != 2:
        raise ShapeError(f"weight must be 2-D (outputs, inputs); got shape {matrix.shape}")
    matrix.setflags(write=False)
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


def _stored(matrix) -> int:
    return matrix.nnz if sp.issparse(matrix) else matrix.size


def _apply(matrix, X: np.ndarray) -> np.ndarray:
    """``X matrix^T`` for X (n, d)."""
    if sp.issparse(matrix):
        return np.asarray((matrix @ X.T).T)
    return X @ matrix.T


def _product_size(outer, inner) -> int:
    """The number of values ``outer @ inner`` would store, or an upper bound of it for two sparse factors."""
    if _diagonal_of(outer) is not None:
        return _stored(inner)
    if _diagonal_of(inner) is not None:
        return _stored(outer)
    if sp.issparse(outer) and sp.issparse(inner):
        # entry (i, j) exists only through some k with outer[i, k] and inner[k, j] stored
        column_counts = np.bincount(outer.indices, minlength=outer.shape[1])
        return int(np.dot(column_counts.astype(np.int64), np.diff(inner.indptr).astype(np.int64)))
    return outer.shape[0] * inner.shape[1]


def _multiply(outer, inner) -> np.ndarray | sp.csr_matrix:
    """``outer @ inner``: sparse when both are, a row or column scaling when one is diagonal."""
    outer_diagonal, inner_diagonal = _diagonal_of(outer), _diagonal_of(inner)
    if outer_diagonal is not None and not sp.issparse(inner):
        return outer_diagonal[:, None] * inner
    if inner_diagonal is not None and not sp.issparse(outer):
        return outer * inner_diagonal[None, :]
    if sp.issparse(outer) and sp.issparse(inner):
        return (outer @ inner).tocsr()
    if sp.issparse(outer):
        return np.asarray(outer @ inner)
    if sp.issparse(inner):
        return np.asarray((inner.T @ outer.T).T)
    return outer @ inner


def _merged(factors) -> list:
    """``factors`` (inner first) with neighbours multiplied wherever the product is no larger than the pair."""
    kept: list = []
    for factor in factors:
        while kept and _product_size(factor, kept[-1]) <= _stored(factor) + _stored(kept[-1]):
            factor = _as_weight(_multiply(factor, kept.pop()), owned=True)
        kept.append(factor)
    return kept


def _first_bad(values) -> tuple:
    """The index of the first NaN or infinite entry of a dense array."""
    return tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])


class AffineMap:
    """The map ``x -> W x + b``.

    Parameters
    ----------
    weight : (m, d) ndarray or scipy.sparse matrix (stored as CSR), float64.
    bias : (m,) array or None (zeros).

    ``AffineMap.chain(factors, bias)`` builds ``W = W_k ... W_1`` from its factors without multiplying
    them out (see the module docstring); every method works on either form.

    Attributes
    ----------
    factors : the matrices of W, innermost (applied first) first; one matrix unless W is a chain.
    bias : (m,) float64, read-only.
    diagonal : (m,) the diagonal when W is a sparse diagonal matrix (m = d), else None.
    """

    def __init__(self, weight, bias=None):
        self._set((_as_weight(weight),), bias)

    @classmethod
    def chain(cls, factors, bias=None) -> "AffineMap":
        """``x -> W_k (... (W_1 x)) + b`` for ``factors = [W_1, ..., W_k]`` (innermost first).

        Neighbouring factors are multiplied where the product stores no more values than the pair.
        """
        factors = [_as_weight(factor) for factor in factors]
        if not factors:
            raise ShapeError("a chain needs at least one matrix")
        for i in range(1, len(factors)):
            if factors[i].shape[1] != factors[i - 1].shape[0]:
                raise ShapeError(
                    f"cannot chain: matrix {i - 1} has {factors[i - 1].shape[0]} outputs, matrix {i} takes "
                    f"{factors[i].shape[1]}"
                )
        return cls._of_factors(factors, bias)

    @classmethod
    def _of_factors(cls, factors, bias) -> "AffineMap":
        """The chain of already converted, chaining ``factors``, neighbours merged (see ``chain``)."""
        affine = cls.__new__(cls)
        affine._set(tuple(_merged(factors)), bias)
        return affine

    def _set(self, factors: tuple, bias) -> None:
        self.factors = factors
        m = factors[-1].shape[0]
        self.bias = np.zeros(m) if bias is None else np.array(bias, dtype=np.float64).reshape(-1)
        if self.bias.shape != (m,):
            raise ShapeError(f"bias has {self.bias.size} entries; weight has {m} rows")
        self.bias.setflags(write=False)
        self.diagonal = _diagonal_of(factors[0]) if len(factors) == 1 else None

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

    # -- storage ---------------------------------------------------------------------------------
    @property
    def is_chain(self) -> bool:
        """True when W is kept as a product of several matrices."""
        return len(self.factors) > 1

    @property
    def is_sparse(self) -> bool:
        """True when W is (or, for a chain, would be) a sparse matrix: every factor is sparse."""
        return all(sp.issparse(factor) for factor in self.factors)

    @property
    def weight(self) -> np.ndarray | sp.csr_matrix:
        """W, (m, d): the stored matrix, or for a chain the product of its factors, computed on each access.

        For a chain prefer ``linear``, ``transpose_apply``, ``rows`` (then ``dense()`` of the few rows
        needed), which never form the product.
        """
        weight = self.factors[0]
        for factor in self.factors[1:]:
            weight = _multiply(factor, weight)
        return weight

    @property
    def shape(self) -> tuple[int, int]:
        """(m, d): outputs, inputs."""
        return self.factors[-1].shape[0], self.factors[0].shape[1]

    @property
    def in_features(self) -> int:
        return self.factors[0].shape[1]

    @property
    def out_features(self) -> int:
        return self.factors[-1].shape[0]

    @property
    def nnz(self) -> int:
        """Stored weights: the non-zeros of sparse factors and every entry of dense ones, over all factors."""
        return sum(_stored(factor) for factor in self.factors)

    @property
    def storage(self) -> str:
        """How W is stored, for summaries: ``"dense"``, ``"sparse 1,234 nz"``, or a chain of those."""
        def one(factor):
            return f"sparse {factor.nnz:,} nz" if sp.issparse(factor) else "dense"

        if not self.is_chain:
            return one(self.factors[0])
        return "chain: " + " * ".join(
            f"{one(f)} {f.shape[0]}x{f.shape[1]}" for f in reversed(self.factors))

    def check_finite(self, where: str) -> None:
        """Raise ``ModelError`` naming ``where`` and the entry if a weight (W) or bias (b) is NaN or infinite."""
        for position, factor in enumerate(self.factors):
            values = factor.data if sp.issparse(factor) else factor
            if np.all(np.isfinite(values)):
                continue
            if sp.issparse(factor):
                row = int(np.searchsorted(factor.indptr, np.argmax(~np.isfinite(values)), side="right") - 1)
                bad = (row, int(factor.indices[np.argmax(~np.isfinite(values))]))
            else:
                bad = _first_bad(values)
            part = f" (factor {position} of its chain)" if self.is_chain else ""
            raise ModelError(f"{where}: W{part} contains NaN or infinite values: W[{bad[0]}, {bad[1]}] = "
                             f"{factor[bad]:g}")
        if not np.all(np.isfinite(self.bias)):
            index = _first_bad(self.bias)[0]
            raise ModelError(f"{where}: b contains NaN or infinite values: b[{index}] = {self.bias[index]:g}")

    # -- evaluation ------------------------------------------------------------------------------
    def linear(self, X: np.ndarray) -> np.ndarray:
        """``X W^T`` for X (n, d) -> (n, m), without the bias."""
        for factor in self.factors:
            X = _apply(factor, X)
        return X

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """``X W^T + b`` for X (n, d) -> (n, m)."""
        out = self.linear(X)
        out += self.bias
        return out

    def transpose_apply(self, L: np.ndarray) -> np.ndarray:
        """``L W`` for L (..., m) -> (..., d): the backward (transposed) map of bound propagation."""
        L = np.asarray(L, dtype=np.float64)
        flat = L.reshape(-1, L.shape[-1])
        for factor in reversed(self.factors):
            flat = np.asarray((factor.T @ flat.T).T) if sp.issparse(factor) else flat @ factor
        return flat.reshape(*L.shape[:-1], self.in_features)

    @cached_property
    def abs_weight(self):
        """``|W|`` elementwise, same storage as W; for a chain the operator ``|W_k| ... |W_1|``.

        The chain's operator (a scipy ``LinearOperator``, applied with ``@``) bounds ``|W|`` entrywise from
        above: it gives sound interval bounds, and the scale of the round-off of evaluating the chain.
        """
        if not self.is_chain:
            return abs(self.factors[0])
        magnitudes = [abs(factor) for factor in self.factors]

        def forward(v):
            for magnitude in magnitudes:
                v = magnitude @ v
            return np.asarray(v)

        def backward(v):
            for magnitude in reversed(magnitudes):
                v = magnitude.T @ v
            return np.asarray(v)

        return spla.LinearOperator(self.shape, matvec=forward, rmatvec=backward, matmat=forward,
                                   rmatmat=backward, dtype=np.float64)

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of ``W x + b`` over boxes ``lo <= x <= hi``; lo, hi (n, d) -> two (n, m) arrays.

        A chain is bounded factor by factor (interval arithmetic): sound, and as tight as the product
        wherever no input reaches an output along paths of opposite sign (selections, pooling windows that
        do not overlap, nonnegative factors).
        """
        centre = 0.5 * (lo + hi)
        radius = 0.5 * (hi - lo)
        mid = self(centre)
        if self.is_chain:
            spread = np.asarray(self.abs_weight @ radius.T).T
        elif self.is_sparse:
            spread = np.asarray((self.abs_weight @ radius.T).T)
        else:
            spread = radius @ self.abs_weight.T
        return mid - spread, mid + spread

    def dense(self) -> np.ndarray:
        """W as a dense (m, d) array (a copy for sparse W; the product for a chain)."""
        weight = self.weight
        return weight.toarray() if sp.issparse(weight) else weight

    # -- derived maps ----------------------------------------------------------------------------
    def rows(self, index) -> "AffineMap":
        """The map restricted to the outputs ``index`` (a boolean mask or integer indices)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        *inner, last = self.factors
        return AffineMap._of_factors([*inner, _as_weight(last[index], owned=True)], self.bias[index])

    def compose(self, inner: "AffineMap") -> "AffineMap":
        """``self o inner``: x -> W (W_in x + b_in) + b, multiplied out only where that stores no more values."""
        if inner.out_features != self.in_features:
            raise ShapeError(
                f"cannot compose: inner map has {inner.out_features} outputs, outer takes {self.in_features}"
            )
        bias = self.linear(inner.bias[None, :])[0] + self.bias
        return AffineMap._of_factors([*inner.factors, *self.factors], bias)

    def __repr__(self) -> str:
        m, d = self.shape
        return f"AffineMap({m}x{d}, {self.storage})"
