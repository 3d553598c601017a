"""The running data tensor of the ONNX importer, and the matrices of the linear maps it is moved by.

``onnx_import`` walks the graph and hands every node that reads the data tensor to ``onnx_ops.translate``,
whose handlers call the methods of a ``DataPath`` below: each appends the primitive operations
(``AffineOp``, ``ActivationOp``, ``ReshapeOp``) that the node computes on one sample. Every affine
operation is a matrix on the flattened per-sample tensor: a selection where entries only move
(Transpose, Slice, Gather, Pad, Concat), a block matrix for MatMul and Gemm, a diagonal for elementwise
arithmetic.

The batch axis. A batched data tensor carries a leading batch axis, of size 1 in ``full_shape``
(the shape ONNX sees, with one sample). The methods refuse every operation that would combine entries of
different samples or move the batch axis (``mixes_samples``); when the graph input has a fixed batch
above 1 (a model exported with an example batch of several samples), the refusal says how to re-export.

Interface
---------
DATA : marks the data-path operand among a node's inputs (the other entries are constant arrays or None).
DataPath(input_shape, batched, folder, fixed_batch) : the running data tensor and the operations so far.
constant_input(node, inputs, position, what) : a node's constant operand, refused when it is the data.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..errors import ShapeError, UnsupportedOperation
from .affine import AffineMap
from .builder import ActivationOp, AffineOp, ReshapeOp
from .onnx_fold import ConstantFolder, node_name, normalise_axes, optional_input

__all__ = ["DATA", "DataPath", "constant_input", "fixed_batch_advice"]

DATA = object()
"""Marks the data-path operand among a node's inputs."""


def constant_input(node, inputs, position, what):
    """``inputs[position]`` (None if absent), refused when it is the data."""
    value = optional_input(inputs, position)
    if value is DATA:
        raise UnsupportedOperation(node.op_type, node_name(node), f"{what} must be a constant, not the data")
    return value


def fixed_batch_advice(batch: int) -> str:
    """What to do with a model whose graph input has the fixed batch ``batch`` > 1."""
    return (f"exported with a fixed batch of {batch}: re-export with batch 1 or a dynamic batch axis "
            "(dynamic_axes in torch.onnx.export)")


# ---------------------------------------------------------------------------------------------------
# matrices of linear maps on the flattened per-sample tensor


def _selection(index: np.ndarray, size: int) -> sp.csr_matrix:
    """Rows pick input entries: row r reads entry ``index[r]``, or nothing where ``index[r] < 0``."""
    flat = index.reshape(-1)
    rows = np.flatnonzero(flat >= 0)
    return sp.csr_matrix((np.ones(rows.size), (rows, flat[rows])), shape=(flat.size, size))


def _matmul_blocks(data_shape, constant, data_left):
    """The matrix of ``x @ C`` (data_left) or ``C @ x`` on x of shape ``data_shape`` (rank >= 2).

    Broadcasting over the leading axes follows numpy. Returns (matrix, output shape): a dense (m, d)
    array when the product is a single matrix-vector product (one block, and x one row for ``x @ C`` or
    one column for ``C @ x``), else a sparse block matrix. ShapeError (a ValueError) when the contracted
    sizes differ, ValueError when the leading axes do not broadcast.
    """
    lead_x, (rows_x, cols_x) = tuple(data_shape[:-2]), data_shape[-2:]
    lead_c = constant.shape[:-2]
    if (constant.shape[-2] != cols_x) if data_left else (constant.shape[-1] != rows_x):
        raise ShapeError(f"matrix product of data {tuple(data_shape)} and constant {constant.shape}: sizes differ")
    lead = np.broadcast_shapes(lead_x, lead_c)
    source = np.broadcast_to(np.arange(math.prod(lead_x)).reshape(lead_x), lead).reshape(-1)
    blocks = np.broadcast_to(constant, lead + constant.shape[-2:]).reshape(-1, *constant.shape[-2:])
    out_tail = (rows_x, constant.shape[-1]) if data_left else (constant.shape[-2], cols_x)
    out_shape = tuple(lead) + out_tail
    if len(blocks) == 1 and (rows_x if data_left else cols_x) == 1:
        return (blocks[0].T if data_left else blocks[0]).copy(), out_shape
    if data_left:  # (n, k) @ C_o (k, m): the block is kron(I_n, C_o^T), (n*m, n*k)
        parts = [sp.kron(sp.identity(rows_x), block.T) for block in blocks]
    else:  # C_o (p, k) @ (k, m): the block is kron(C_o, I_m), (p*m, k*m)
        parts = [sp.kron(block, sp.identity(cols_x)) for block in blocks]
    in_block, out_block = rows_x * cols_x, math.prod(out_tail)
    coo = [part.tocoo() for part in parts]
    row = np.concatenate([c.row + o * out_block for o, c in enumerate(coo)])
    col = np.concatenate([c.col + source[o] * in_block for o, c in enumerate(coo)])
    data = np.concatenate([c.data for c in coo])
    shape = (math.prod(out_shape), math.prod(data_shape))
    return sp.csr_matrix((data, (row, col)), shape=shape), out_shape


# ---------------------------------------------------------------------------------------------------
# the running data tensor


class DataPath:
    """The data tensor of a graph walk, of static per-sample shape, and the operations that produced it.

    Parameters
    ----------
    input_shape : the per-sample shape of the graph input. batched : whether the data carries a batch
        axis (first, of size 1 in ``full_shape``), which is not part of ``sample_shape``.
    folder : the graph's ConstantFolder; a Reshape reads the batch markers of its target there.
    fixed_batch : the size of the graph input's first axis when it is static (1 for a dynamic batch). A
        batched path reads a Reshape target that starts with it as keeping the batch axis, and a refusal
        because an op mixes samples says how to re-export when it is above 1.

    Attributes
    ----------
    sample_shape : tuple of int, the per-sample shape of the data tensor, updated by every operation.
    ops : list of AffineOp / ActivationOp / ReshapeOp, in order, for ``builder.assemble``.

    The methods below emit operations for the handlers; each names the ONNX node in its errors.
    """

    def __init__(self, input_shape: tuple[int, ...], batched: bool, folder: ConstantFolder, fixed_batch: int = 1):
        self.sample_shape = tuple(input_shape)
        self.batched = batched
        self.folder = folder
        self.fixed_batch = int(fixed_batch)
        self.ops: list = []

    @property
    def full_shape(self) -> tuple[int, ...]:
        """The data tensor's shape as ONNX sees it, with the batch size as 1."""
        return (1, *self.sample_shape) if self.batched else self.sample_shape

    @property
    def size(self) -> int:
        """Number of entries of one sample of the data tensor."""
        return math.prod(self.sample_shape)

    def mixes_samples(self, node, detail: str) -> UnsupportedOperation:
        """The refusal of an op that combines samples or moves the batch axis (with re-export advice)."""
        if self.fixed_batch > 1:
            detail = (f"{detail}; the graph's ops must act on each sample of its first axis: the model looks "
                      f"{fixed_batch_advice(self.fixed_batch)}, or import it with batched=False if that whole "
                      "tensor is one sample")
        return UnsupportedOperation(node.op_type, node_name(node), detail)

    def per_sample(self, node, full_shape) -> tuple[int, ...]:
        """Drop the batch axis of an output shape, refusing an op that moved or grew it."""
        full_shape = tuple(int(s) for s in full_shape)
        if not self.batched:
            return full_shape
        if not full_shape or full_shape[0] != 1:
            raise self.mixes_samples(node, "the operation mixes the batch axis with the sample's axes")
        return full_shape[1:]

    def check_not_batch_axis(self, node, axes, what="axes") -> None:
        """Refuse an op whose ``axes`` (of the full shape) include the batch axis."""
        if self.batched and 0 in axes:
            raise self.mixes_samples(node, f"{what} include the batch axis 0")

    def per_sample_constant(self, node, value: np.ndarray) -> np.ndarray:
        """A constant operand of full rank with the fixed batch on its first axis, reduced to one sample.

        An exporter that traced a batch of N samples may store a constant once per sample; when all N
        copies are equal it acts on each sample alike and one copy is kept, else it is refused.
        """
        value = np.asarray(value)
        if not (self.batched and self.fixed_batch > 1 and value.ndim == len(self.full_shape)
                and value.shape[0] == self.fixed_batch):
            return value
        if not np.all(value == value[:1]):
            raise self.mixes_samples(node, f"its constant of shape {value.shape} differs between the samples")
        return value[:1]

    def positions(self) -> np.ndarray:
        """The flat index of each entry of the data tensor, in the data's full shape."""
        return np.arange(self.size).reshape(self.full_shape)

    # -- emitting operations ---------------------------------------------------------------------
    def activation(self, node, activation) -> None:
        """Emit an elementwise activation."""
        self.ops.append(ActivationOp(activation, node_name(node), node.op_type))

    def affine(self, node, weight, bias, shape) -> None:
        """Emit ``x -> weight x + bias`` (bias None: no offset), giving the data the per-sample ``shape``."""
        self._emit(node, AffineMap(weight, bias), shape)

    def _emit(self, node, affine: AffineMap, shape) -> None:
        self.sample_shape = tuple(shape)
        self.ops.append(AffineOp(affine, self.sample_shape, node_name(node), node.op_type))

    def reshape(self, node, shape) -> None:
        """Emit a new per-sample shape for the same C-order data."""
        self.sample_shape = tuple(int(s) for s in shape)
        self.ops.append(ReshapeOp(self.sample_shape, node_name(node), node.op_type))

    def gather(self, node, index: np.ndarray, fill=0.0) -> None:
        """Emit the op whose output entry i is input entry ``index[i]``, or ``fill`` where it is negative.

        ``index`` has the output's full shape; ``fill`` is a scalar or an array of that shape. A plain
        renumbering in order becomes a reshape.
        """
        shape = self.per_sample(node, index.shape)
        flat = index.reshape(-1)
        if flat.size == self.size and np.array_equal(flat, np.arange(self.size)):
            self.reshape(node, shape)
            return
        bias = None
        if np.any(flat < 0):
            values = np.broadcast_to(np.asarray(fill, dtype=np.float64), index.shape).reshape(-1)
            bias = np.where(flat >= 0, 0.0, values)
        self.affine(node, _selection(flat, self.size), bias, shape)

    def elementwise(self, node, scale, offset) -> None:
        """Emit ``x -> scale * x + offset`` with constants broadcast against the data (numpy rules).

        ``scale`` None means 1, ``offset`` None means no offset.
        """
        scale, offset = (None if c is None else self.per_sample_constant(node, c) for c in (scale, offset))
        shapes = [np.shape(c) for c in (scale, offset) if c is not None]
        try:
            out = np.broadcast_shapes(self.full_shape, *shapes)
        except ValueError:
            raise ShapeError(
                f"node {node_name(node)!r} ({node.op_type}): constant of shape {shapes} does not broadcast "
                f"against the data {self.full_shape}"
            ) from None
        if self.batched and len(out) != len(self.full_shape):
            raise self.mixes_samples(node, "broadcasting moves the batch axis")
        shape = self.per_sample(node, out)
        values = np.ones(math.prod(out)) if scale is None else np.broadcast_to(scale, out).reshape(-1)
        bias = None if offset is None else np.broadcast_to(offset, out).reshape(-1)
        if tuple(out) == tuple(self.full_shape):
            self._emit(node, AffineMap.scaling(values, bias), shape)
            return
        source = np.broadcast_to(self.positions(), out).reshape(-1)
        rows = np.arange(source.size)
        weight = sp.csr_matrix((np.asarray(values, dtype=np.float64), (rows, source)), shape=(rows.size, self.size))
        self.affine(node, weight, bias, shape)

    def matmul(self, node, constant, data_left, addend=None) -> None:
        """Emit ``x @ constant`` (data_left) or ``constant @ x``, plus ``addend`` broadcast to the result."""
        constant = np.asarray(constant, dtype=np.float64)
        full = self.full_shape
        name = node_name(node)
        if not data_left and self.batched and len(full) == 2:
            raise self.mixes_samples(node, "the constant would contract over the batch axis")
        if constant.ndim == 0 or len(full) == 0:
            raise ShapeError(f"node {name!r} ({node.op_type}): MatMul needs operands of rank >= 1")
        squeeze = []
        data_shape, matrix = list(full), constant
        if len(full) == 1:  # numpy promotes a vector to a row (left) or a column (right)
            data_shape = [1, full[0]] if data_left else [full[0], 1]
            squeeze.append(-2 if data_left else -1)
        if constant.ndim == 1:
            matrix = constant[:, None] if data_left else constant[None, :]
            squeeze.append(-1 if data_left else -2)
        try:
            weight, out = _matmul_blocks(tuple(data_shape), matrix, data_left)
        except ValueError as error:  # ShapeError included
            raise ShapeError(f"node {name!r} ({node.op_type}): {error}") from None
        if self.batched and len(out) != len(data_shape):
            raise self.mixes_samples(node, "broadcasting the constant moves the batch axis")
        out = tuple(s for i, s in enumerate(out) if i - len(out) not in squeeze)
        bias = None
        if addend is not None:
            try:
                bias = np.broadcast_to(addend, out).reshape(-1)
            except ValueError:
                raise ShapeError(f"node {name!r} ({node.op_type}): C of shape {np.shape(addend)} does not "
                                 f"broadcast to the product's shape {out}") from None
        self.affine(node, weight, bias, self.per_sample(node, out))

    def transpose(self, node, perm) -> None:
        """Emit ONNX Transpose with ``perm`` (None: reverse the axes), which must keep the batch axis first."""
        perm = list(range(len(self.full_shape)))[::-1] if perm is None else normalise_axes(perm, len(self.full_shape))
        if self.batched and perm[0] != 0:
            raise self.mixes_samples(node, f"permutation {perm} moves the batch axis")
        self.gather(node, np.transpose(self.positions(), perm))

    def concat(self, node, inputs, axis) -> None:
        """Emit ONNX Concat of the data with constants (``inputs``: DATA once, arrays) along ``axis``."""
        full = self.full_shape
        axis = normalise_axes([axis], len(full))[0]
        self.check_not_batch_axis(node, [axis], "the concatenation axis")
        pieces, fills = [], []
        for value in inputs:
            if value is DATA:
                pieces.append(self.positions())
                fills.append(np.zeros(full))
                continue
            value = self.per_sample_constant(node, np.asarray(value, dtype=np.float64))
            if value.ndim != len(full) or any(s != t for i, (s, t) in enumerate(zip(value.shape, full)) if i != axis):
                raise ShapeError(f"node {node_name(node)!r} (Concat): a constant of shape {value.shape} does not "
                                 f"fit the data {full} along axis {axis}")
            pieces.append(np.full(value.shape, -1))
            fills.append(value)
        self.gather(node, np.concatenate(pieces, axis=axis), fill=np.concatenate(fills, axis=axis))

    def reduce(self, node, axes, keepdims: bool, mean: bool) -> None:
        """Emit ONNX ReduceSum / ReduceMean over ``axes`` of the full shape (None: every axis)."""
        full = self.full_shape
        axes = list(range(len(full))) if axes is None else normalise_axes(axes, len(full))
        self.check_not_batch_axis(node, axes, "the reduced axes")
        kept = tuple(1 if i in axes else s for i, s in enumerate(full))
        coordinates = np.indices(full).reshape(len(full), -1)
        coordinates[axes] = 0
        rows = np.ravel_multi_index(coordinates, kept)
        count = math.prod(full[i] for i in axes)
        value = 1.0 / count if mean else 1.0
        weight = sp.csr_matrix((np.full(rows.size, value), (rows, np.arange(rows.size))), shape=(math.prod(kept), rows.size))
        out = kept if keepdims else tuple(s for i, s in enumerate(full) if i not in axes)
        self.affine(node, weight, None, self.per_sample(node, out))

    # -- images ----------------------------------------------------------------------------------
    def image(self, node, spatial_rank) -> tuple[int, int, int]:
        """The (C, H, W) image a 1-D or 2-D Conv/pool sees (1-D as H = 1), checking the data's rank."""
        full = self.full_shape
        name = node_name(node)
        if spatial_rank not in (1, 2):
            raise UnsupportedOperation(node.op_type, name, f"only 1-D and 2-D are supported, not {spatial_rank}-D")
        if len(full) != spatial_rank + 2:
            raise ShapeError(f"node {name!r} ({node.op_type}) expects (N, C, spatial...) data, got shape {full}")
        if full[0] != 1:
            raise UnsupportedOperation(
                node.op_type, name, f"input of shape {full} holds several images: if the model was "
                f"{fixed_batch_advice(full[0])}, or import it with its first axis as the batch (batched=None)"
            )
        return (full[1], 1, full[2]) if spatial_rank == 1 else tuple(full[1:])

    def image_output(self, spatial_rank, out_shape) -> tuple[int, ...]:
        """The per-sample shape of a Conv/pool output of (C, H, W) ``out_shape`` (1-D: H = 1 dropped)."""
        shape = (out_shape[0], out_shape[2]) if spatial_rank == 1 else tuple(out_shape)
        return shape if self.batched else (1, *shape)
