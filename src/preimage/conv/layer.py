"""One convolutional layer as geometry: its exact matrix, the hyperplane of every unit, and its cones.

A Conv2d with weight ``w`` (C_out, C_in / groups, kH, kW) and bias ``b`` acting on one image of shape
(C_in, H, W) is the affine map ``x -> M x + b`` on the flattened image, ``M`` the sparse Toeplitz operator
of :func:`preimage.network.conv.conv2d_matrix`. Unit ``j`` (one output channel at one output pixel) cuts
the input space with the hyperplane ``{x : m_j . x + b_j = 0}`` and is on where ``m_j . x + b_j > 0``.

Cones (Gamba et al.). When every row of channel c sums the whole filter, ``M 1 = s_c 1`` on that channel
(``s_c`` the sum of all the filter's weights), so every hyperplane of the channel passes through the point
``t_c 1`` of the identity line with ``t_c = -b_c / s_c``: the apex, in closed form. This holds for every
padding that reads an input pixel at each tap (circular, reflect, replicate, or no padding at all), for any
kernel, stride, dilation and groups. The channel's on-set ``{x : M_c x + b_c >= 0}`` is then a polyhedral
cone with that apex; it contains the ray ``t_c 1 + r sign(s_c) 1`` (r >= 0) and opens along the identity
line in the direction ``sign(s_c)``. The angle between a facet (a hyperplane with normal ``m_j``) and the
identity line is ``arcsin(|m_j . 1| / (|m_j| sqrt(n)))``, n the input dimension: pi/2 for a facet normal to
the line (a flat filter), 0 for a filter summing to zero (the facet contains the line; no apex). For a
circular convolution with stride 1 the operator is circulant and every facet has the same angle, the
channel's opening; otherwise the opening reported is the smallest facet angle of the channel.

Rotation about the identity line. The opening sees only a facet normal's part along the line; its part
``m_perp = m - (m . 1 / n) 1`` orthogonal to the line tells how the cone is turned about it. The reference is
the cone of the identity filter with the same apex and direction, the orthant ``{x : sign(s_c)(x - t_c 1)
>= 0}``, whose facets have the inward normals ``sign(s_c) e_i``. A facet's rotation is the smallest angle
between ``sign(s_c) m_perp`` and the orthogonal part ``e_i - 1 / n`` of an axis,

    cos(rotation_j) = (max_i sign(s_c) m_ji - sign(s_c) m_j . 1 / n) / (|m_perp| sqrt(1 - 1 / n)),

in [0, pi/2); a channel's rotation is its facets' smallest. It is 0 for the identity filter, for a flat
filter (normal to the line: nothing to turn) and in R^1; NaN for a filter summing to zero (no apex, no
reference). The authors (magamba/cones, ``linalg.py``) measure rotation only between two cones, after
shearing the wider one to the other's opening; here it is taken against the orthant, with the parts along
the line dropped rather than sheared away (``nesting.pair_geometry``'s rotation against a layer whose kernel
is one tap of weight ``sign(s_c)`` is exactly this value). It depends only on the direction of each row, so
a positive rescaling of the filter and its bias leaves it unchanged; for a circulant layer every facet is a
circular shift of one filter (a permutation of the axes), so all facets share one rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ..errors import ConeError, ModelError, ShapeError
from ..network.conv import PADDING_MODES, _as_float64, conv2d_bias, conv2d_matrix
from ..settings import current

__all__ = ["ConvLayer", "LayerCones", "Hyperplanes", "channel_cones", "facet_rotations"]


def _float64(values, name: str) -> np.ndarray:
    """A read-only float64 copy of an array or tensor (NaN or inf is a ModelError)."""
    array = np.array(_as_float64(values, name))
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class Hyperplanes:
    """The hyperplanes ``{x : normals[j] . x + offsets[j] = 0}`` of a layer's units, normals of unit length.

    normals : csr_matrix (m, d) float64, unit rows (a row that is exactly zero stays zero: that unit is
        constant and cuts nothing). offsets : (m,) float64. scale : (m,) the norm each row was divided by.
    """

    normals: sp.csr_matrix
    offsets: np.ndarray
    scale: np.ndarray


@dataclass(frozen=True)
class LayerCones:
    """The cones of the C_out channels of a layer, in its input space R^n (n = C_in * H * W).

    apex : (C_out,) the level t of each apex ``t * 1`` (NaN where the filter sums to zero).
    direction : (C_out,) +1 or -1, the way each cone opens along the identity line (0: no apex).
    opening : (C_out,) radians in [0, pi/2], the smallest angle between a facet of the channel and the
        identity line.
    rotation : (C_out,) radians in [0, pi/2), the smallest angle about the identity line between a facet
        of the channel and a facet of its reference orthant (module docstring; NaN where no apex).
    filter_sum : (C_out,) ``s_c``, the sum of all weights of the filter. dimension : n.
    """

    apex: np.ndarray
    direction: np.ndarray
    opening: np.ndarray
    rotation: np.ndarray
    filter_sum: np.ndarray
    dimension: int

    @property
    def apex_points(self) -> np.ndarray:
        """(C_out, n) the apices as points of the input space."""
        return self.apex[:, None] * np.ones(self.dimension)[None, :]

    @property
    def degenerate(self) -> np.ndarray:
        """(C_out,) bool, filters that sum to zero: the cone has no apex on the identity line."""
        return self.direction == 0


def _channel_rows(values: np.ndarray, channels: int) -> np.ndarray:
    return values.reshape(channels, -1)


def facet_rotations(matrix, direction) -> np.ndarray:
    """The rotation of each facet about the identity line against its reference orthant (module docstring).

    matrix : (m, n) dense or sparse, one facet normal per row. direction : (m,) the direction (+1, -1; 0 for
    no apex) of the cone each row belongs to. Returns (m,) radians, NaN where the direction is 0.
    The angle is ``2 atan2(|a - e|, |a + e|)`` for the unit vectors a (the row's orthogonal part) and e (the
    nearest axis' part), with ``a - e`` formed entry by entry, so that a small rotation keeps its digits.
    """
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    matrix.sum_duplicates()
    direction = np.asarray(direction)
    m, n = matrix.shape
    if n == 1:
        return np.where(direction == 0, np.nan, 0.0)
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(m), counts)
    signed = matrix.data * np.where(direction < 0, -1.0, 1.0)[rows]
    sums = np.bincount(rows, signed, minlength=m)
    squares = np.bincount(rows, signed * signed, minlength=m)
    perp = np.sqrt(np.maximum(squares - sums ** 2 / n, 0.0))
    turned = perp > current().rank_rtol * np.sqrt(squares)
    # the nearest axis is at the largest entry of the signed row, or at an implicit zero where that is larger
    largest = np.zeros(m)
    filled = counts > 0
    largest[filled] = np.maximum.reduceat(signed, matrix.indptr[:-1][filled])
    implicit = (counts < n) & (largest < 0)
    axis = 1.0 / np.sqrt(1.0 - 1.0 / n)
    scale = 1.0 / np.where(turned, perp, 1.0)
    # entry k of a - e, the row's orthogonal part minus the axis' (both of unit length), is term_k, less
    # ``axis`` at the nearest axis; summing the squares term by term keeps a small rotation's digits
    constant = -sums / n * scale + axis / n
    terms = signed * scale[rows] + constant[rows]
    ties = (signed == largest[rows]) & ~implicit[rows]
    others = np.bincount(rows, np.where(ties, 0.0, terms * terms), minlength=m)
    top = largest * scale + constant
    tie_count = np.maximum(np.bincount(rows, ties, minlength=m) - 1, 0)
    gap = others + (n - counts - implicit) * constant ** 2 + np.where(
        implicit, (constant - axis) ** 2, tie_count * top ** 2 + (top - axis) ** 2)
    rotation = 2.0 * np.arctan2(np.sqrt(gap), np.sqrt(np.maximum(4.0 - gap, 0.0)))
    return np.where(direction == 0, np.nan, np.where(turned, rotation, 0.0))


def channel_cones(matrix, bias_vector, channels: int, name: str = "the layer") -> LayerCones:
    """The cones of a layer whose units are ``channels`` equal blocks of rows (one channel each).

    matrix : (channels * P, n) dense or sparse, rows ordered channel by channel (P units per channel).
    bias_vector : (channels * P,), constant on each channel.
    Works for any affine layer laid out so, e.g. the conv layers of an imported ``pim.Network``.
    Raises ConeError when a channel's rows do not all sum to one value or its bias is not constant.
    """
    settings = current()
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    bias_vector = np.asarray(bias_vector, dtype=np.float64)
    if matrix.shape[0] % channels or bias_vector.shape != (matrix.shape[0],):
        raise ShapeError(f"{name}: {matrix.shape[0]} rows and bias {bias_vector.shape} do not split into "
                         f"{channels} channels")
    sums = _channel_rows(np.asarray(matrix.sum(axis=1)).ravel(), channels)
    scale = np.maximum(_channel_rows(np.asarray(abs(matrix).sum(axis=1)).ravel(), channels).max(axis=1), 1.0)
    norms = _channel_rows(np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel()), channels)
    bias = _channel_rows(bias_vector, channels)
    uneven = np.flatnonzero(np.ptp(sums, axis=1) > settings.feasibility_tol * scale)
    if uneven.size:
        raise ConeError(
            f"{name} is not periodic: the rows of channel {int(uneven[0])} do not all sum to one value, so its "
            "hyperplanes meet the identity line at different points; use .periodic() for the circular "
            "counterpart")
    if np.any(np.ptp(bias, axis=1) > settings.feasibility_tol * np.maximum(np.abs(bias).max(axis=1), 1.0)):
        raise ConeError(f"{name}: the bias is not constant on each channel, so the channel has no single apex")
    filter_sum = sums.mean(axis=1)
    dimension = matrix.shape[1]
    flat = np.abs(filter_sum) <= settings.rank_rtol * scale
    direction = np.where(flat, 0, np.sign(filter_sum)).astype(np.int8)
    with np.errstate(divide="ignore", invalid="ignore"):
        apex = np.where(flat, np.nan, -bias[:, 0] / np.where(flat, 1.0, filter_sum))
        cosine = np.abs(sums) / (np.where(norms > 0, norms, 1.0) * np.sqrt(dimension))
    opening = np.where(flat, 0.0, np.arcsin(np.clip(cosine, 0.0, 1.0)).min(axis=1))
    rows_direction = np.repeat(direction, matrix.shape[0] // channels)
    rotation = _channel_rows(facet_rotations(matrix, rows_direction), channels).min(axis=1)
    return LayerCones(apex, direction, opening, rotation, filter_sum, dimension)


@dataclass(frozen=True, eq=False)
class ConvLayer:
    """A 2-D convolution with bias on one image, float64.

    Attributes
    ----------
    weight : (C_out, C_in / groups, kH, kW). bias : (C_out,).
    input_shape : (C_in, H, W). stride, padding, dilation, groups, padding_mode : as ``nn.Conv2d``
        (padding as accepted by :func:`preimage.network.conv.conv2d_matrix`).
    name : a readable name (the module's name in the model).
    """

    weight: np.ndarray
    bias: np.ndarray
    input_shape: tuple[int, int, int]
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    padding_mode: str = "zeros"
    name: str = ""

    def __post_init__(self):
        weight = _float64(self.weight, "weight")
        if weight.ndim != 4:
            raise ShapeError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {weight.shape}")
        bias = np.zeros(weight.shape[0]) if self.bias is None else _float64(self.bias, "bias")
        if bias.shape != (weight.shape[0],):
            raise ShapeError(f"bias must have shape ({weight.shape[0]},), got {bias.shape}")
        if self.padding_mode not in PADDING_MODES:
            raise ShapeError(f"padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", bias)
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        self.output_shape  # the operator is built once here, so a bad argument fails at construction

    @classmethod
    def from_module(cls, conv, input_shape, name: str = "") -> "ConvLayer":
        """The layer of a ``torch.nn.Conv2d`` acting on images of shape input_shape (C_in, H, W)."""
        if type(conv).__name__ != "Conv2d":
            raise ModelError(f"{name or 'module'} is a {type(conv).__name__}, not a Conv2d")
        return cls(conv.weight, conv.bias, tuple(input_shape), conv.stride, conv.padding, conv.dilation,
                   conv.groups, conv.padding_mode, name)

    @cached_property
    def _operator(self):
        return conv2d_matrix(self.weight, self.input_shape, self.stride, self.padding, self.dilation,
                             self.groups, self.padding_mode)

    @property
    def matrix(self) -> sp.csr_matrix:
        """The exact operator M, (C_out * H_out * W_out, C_in * H * W) sparse."""
        return self._operator[0]

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(C_out, H_out, W_out)."""
        return self._operator[1]

    @cached_property
    def bias_vector(self) -> np.ndarray:
        """(C_out * H_out * W_out,) each channel's bias repeated over its pixels."""
        return conv2d_bias(self.bias, self.output_shape)

    @property
    def channels(self) -> int:
        return self.weight.shape[0]

    def preactivation(self, X) -> np.ndarray:
        """``X M^T + b`` for X (n, C_in * H * W) or (n, C_in, H, W) -> (n, C_out * H_out * W_out)."""
        X = np.asarray(X, dtype=np.float64)
        X = X.reshape(X.shape[0], -1) if X.ndim > 2 else X
        if X.shape[1] != self.matrix.shape[1]:
            raise ShapeError(f"inputs of {self.name or 'the layer'} have {self.matrix.shape[1]} values, got "
                             f"{X.shape[1]}")
        return np.asarray((self.matrix @ X.T).T) + self.bias_vector[None, :]

    @cached_property
    def _row_norms(self) -> np.ndarray:
        return np.sqrt(np.asarray(self.matrix.multiply(self.matrix).sum(axis=1)).ravel())

    def hyperplanes(self) -> Hyperplanes:
        """The hyperplane of every unit, normals scaled to unit length."""
        norms = self._row_norms
        scale = np.where(norms > 0, norms, 1.0)
        normals = sp.diags(1.0 / scale) @ self.matrix
        return Hyperplanes(normals.tocsr(), self.bias_vector / scale, norms)

    def periodic(self) -> "ConvLayer":
        """The circular counterpart: the same filters, stride and dilation with circular padding that keeps
        the image size at stride 1 (``dilation * (k - 1)`` in total per axis, the larger half at the
        bottom/right as torch's ``padding="same"``), as the cones of Gamba et al. are taken."""
        kernel = self.weight.shape[2:]
        dilation = (self.dilation,) * 2 if np.ndim(self.dilation) == 0 else tuple(self.dilation)
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        padding = (totals[0] // 2, totals[0] - totals[0] // 2, totals[1] // 2, totals[1] - totals[1] // 2)
        return ConvLayer(self.weight, self.bias, self.input_shape, self.stride, padding, dilation,
                         self.groups, "circular", self.name)

    @property
    def is_circulant(self) -> bool:
        """True when M is a block of circulant operators: circular padding, stride 1, output size = input size."""
        stride = (self.stride,) * 2 if np.ndim(self.stride) == 0 else tuple(self.stride)
        return (self.padding_mode == "circular" and stride == (1, 1)
                and self.output_shape[1:] == self.input_shape[1:])

    def cones(self) -> LayerCones:
        """The cone of each output channel (module docstring); vectorised over the rows of M.

        Raises ConeError when some channel's rows do not all sum to the same value (zero padding that a
        window reads at the border): its hyperplanes meet the identity line at different points and the
        channel has no apex. ``periodic()`` gives the circular counterpart that has one.
        """
        return channel_cones(self.matrix, self.bias_vector, self.channels,
                             f"{self.name or 'the layer'} ({self.padding_mode} padding {self.padding})")

    def facet_rotations(self) -> np.ndarray:
        """(C_out, H_out * W_out) the rotation of every facet about the identity line (module docstring);
        the channel's ``cones().rotation`` is the smallest of its row. Raises ConeError as ``cones``."""
        cones = self.cones()
        rows = np.repeat(cones.direction, self.matrix.shape[0] // self.channels)
        return _channel_rows(facet_rotations(self.matrix, rows), self.channels)

    def apex_residual(self) -> np.ndarray:
        """(C_out,) the largest ``|M x + b|`` over each channel's rows at its apex x = t 1, divided by the
        largest row norm (0 up to round-off for a periodic layer; NaN for a filter summing to zero)."""
        cones = self.cones()
        ones = np.ones(self.matrix.shape[1])
        rows = _channel_rows(self.matrix @ ones, self.channels) * cones.apex[:, None] \
            + self.bias[:, None]
        scale = _channel_rows(self._row_norms, self.channels).max(axis=1)
        return np.abs(rows).max(axis=1) / np.where(scale > 0, scale, 1.0)
