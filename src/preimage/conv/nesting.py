"""How the cones of two consecutive periodic convolutions nest (Gamba et al.), for every pair of channels at once.

The space the cones are compared in. A channel of layer l+1 reads the C_l channels of layer l's output; a
channel of layer l reads the C_{l-1} channels of its input. On channel-constant images (the same H x W
image y in every channel, a slice of either space that contains the identity line and both apices) a
circular convolution at stride 1 acts as the single-channel circulant operator of its channel-summed
kernel ``k_c = sum_i w[c, i]``: the channel's cone becomes the cone ``{y in R^(H W) : K_c y + b_c >= 0}``,
with the same apex level ``t_c = -b_c / s_c`` as in the full space. Both layers' cones then live in the
same R^(H W) (the layers keep the image size), which is how the seed study compares them; for filters
that read one channel each (its models) the slice is the whole space and nothing changes.

Per pair (channel o of layer l+1, channel c of layer l that o reads; "out" and "in"):

- signed apex distance ``d = sign(s_c) (t_o - t_c) sqrt(H W)``: the distance between the apices, positive
  when the out-apex lies inside the in-cone (the authors' sign, which takes every cone to open along +1;
  ``sign(s_c)`` makes it hold for cones opening either way);
- opening difference ``alpha_o - alpha_c`` of the slice cones (radians), alpha the angle between a facet
  and the identity line;
- rotation: the angle about the identity line between the two cones' closest facet normals, their parts
  along the identity line removed (so it does not see the opening), minimised over all circular shifts.
  The authors shear the wider cone to the other's opening and take the smallest angle between facet
  normals; removing the parallel part measures the same rotation without a shear.

A channel's state (the authors' rule): from the largest signed apex distance d* and the smallest
opening difference a* over its input cones: d* >= 0 and a* <= 0: OUT_FULL_IN; d* >= 0 and a* > 0:
OUT_PARTIAL_IN; d* < 0 and a* >= 0: IN_FULL_OUT; d* < 0 and a* < 0: IN_PARTIAL_OUT. It summarises many
input cones and so is no containment statement. The state of one pair alone (``pair_state``) uses the
same rule, except that two cones opening in opposite directions cannot be fully nested and get the
partial state of their apex side; so taken, the rule treats cones as round about the identity line and
is exact for 2-pixel images (cones are wedges symmetric about the line) and for cones that differ by no
rotation. ``contains`` decides containment exactly: ``C_o ⊆ C_c`` iff the apex
of C_o lies in C_c and ``K_c K_o^{-1}`` (a circulant, computed by FFT) has no negative entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConeError, ShapeError
from ..settings import current
from .layer import ConvLayer

__all__ = ["STATES", "UNDEFINED", "SliceCones", "PairGeometry", "slice_cones", "pair_geometry", "state_names"]

STATES = ("OUT_FULL_IN", "OUT_PARTIAL_IN", "IN_FULL_OUT", "IN_PARTIAL_OUT")
OUT_FULL_IN, OUT_PARTIAL_IN, IN_FULL_OUT, IN_PARTIAL_OUT = range(4)
UNDEFINED = -1  # the out-cone, or every input cone, sums to zero: no apex to compare

# largest number of complex values held at once by the pairwise FFT products
_CHUNK_VALUES = 1 << 23


@dataclass(frozen=True)
class SliceCones:
    """The cones of a layer's channels on channel-constant images, in R^(H W).

    kernels : (C, H, W) each channel-summed kernel placed on the H x W torus (taps that wrap onto the
        same pixel summed), i.e. one row of the slice operator as an image.
    bias : (C,). groups : the layer's groups (channel c reads input group ``c // (C / groups)``).
    apex : (C,) apex levels (NaN where the kernel sums to zero). direction : (C,) +1, -1 or 0.
    opening : (C,) radians. name : the layer's name.
    """

    kernels: np.ndarray
    bias: np.ndarray
    groups: int
    apex: np.ndarray
    direction: np.ndarray
    opening: np.ndarray
    name: str = ""

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.kernels.shape[1:]

    @property
    def sums(self) -> np.ndarray:
        return self.kernels.sum(axis=(1, 2))

    @classmethod
    def from_kernels(cls, kernels, bias, groups: int = 1, name: str = "") -> "SliceCones":
        """The slice cones of the circulant operators whose rows are the circular shifts of ``kernels``.

        kernels : (C, H, W), each channel-summed kernel on the H x W torus at any placement (shifting a
        kernel permutes the rows of its operator, which leaves its cone as it is). bias : (C,).
        """
        kernels = np.asarray(kernels, dtype=np.float64)
        bias = np.asarray(bias, dtype=np.float64)
        if kernels.ndim != 3 or bias.shape != kernels.shape[:1]:
            raise ShapeError(f"kernels must be (C, H, W) with a bias (C,), got {kernels.shape} and {bias.shape}")
        height, width = kernels.shape[1:]
        settings = current()
        sums = kernels.sum(axis=(1, 2))
        scale = np.abs(kernels).sum(axis=(1, 2))
        flat = np.abs(sums) <= settings.rank_rtol * np.maximum(scale, np.finfo(float).tiny)
        norms = np.sqrt((kernels ** 2).sum(axis=(1, 2)))
        with np.errstate(divide="ignore", invalid="ignore"):
            apex = np.where(flat, np.nan, -bias / np.where(flat, 1.0, sums))
            cosine = np.abs(sums) / (np.where(norms > 0, norms, 1.0) * np.sqrt(height * width))
        opening = np.where(flat, 0.0, np.arcsin(np.clip(cosine, 0.0, 1.0)))
        direction = np.where(flat, 0, np.sign(sums)).astype(np.int8)
        return cls(kernels, bias.copy(), int(groups), apex, direction, opening, name)


def slice_cones(layer: ConvLayer) -> SliceCones:
    """The slice cones of a circulant layer (circular padding, stride 1, same image size).

    Raises ConeError for any other layer; ``layer.periodic()`` is its circulant counterpart.
    """
    if not layer.is_circulant:
        raise ConeError(
            f"{layer.name or 'the layer'} is not circulant (padding_mode {layer.padding_mode!r}, stride "
            f"{layer.stride}, {layer.input_shape[1:]} -> {layer.output_shape[1:]}); use layer.periodic()")
    _, height, width = layer.input_shape
    channels, _, kernel_h, kernel_w = layer.weight.shape
    dilation = (layer.dilation,) * 2 if np.ndim(layer.dilation) == 0 else tuple(layer.dilation)
    rows = (np.arange(kernel_h) * dilation[0]) % height
    cols = (np.arange(kernel_w) * dilation[1]) % width
    kernels = np.zeros((channels, height, width))
    summed = layer.weight.sum(axis=1)
    np.add.at(kernels, (slice(None), rows[:, None], cols[None, :]), summed)
    return SliceCones.from_kernels(kernels, layer.bias, layer.groups, layer.name)


@dataclass(frozen=True)
class PairGeometry:
    """Every (out channel o, in channel c) pair of two consecutive layers; (C_out, C_in) arrays.

    connected : o reads c (same group). distance, opening_difference, rotation : module docstring
        (NaN where not connected or a cone has no apex). aligned : the two cones open the same way.
    out_in_in, in_in_out : exact containment ``C_o ⊆ C_c`` and ``C_c ⊆ C_o`` on the slice: 1 true,
        0 false, -1 undecided (the inner cone's operator is singular, or no apex).
    pair_state : (C_out, C_in) the state of each pair alone. state : (C_out,) each out channel's state.
    """

    connected: np.ndarray
    distance: np.ndarray
    opening_difference: np.ndarray
    rotation: np.ndarray
    aligned: np.ndarray
    out_in_in: np.ndarray
    in_in_out: np.ndarray
    pair_state: np.ndarray
    state: np.ndarray

    def counts(self) -> dict[str, int]:
        """How many out channels are in each state (and ``UNDEFINED``)."""
        values = np.bincount(self.state + 1, minlength=len(STATES) + 1)
        counts = {name: int(values[i + 1]) for i, name in enumerate(STATES)}
        counts["UNDEFINED"] = int(values[0])
        return counts


def state_names(states) -> np.ndarray:
    """State codes (any shape) -> their names (``UNDEFINED`` for -1)."""
    names = np.array((*STATES, "UNDEFINED"), dtype=object)
    return names[np.asarray(states)]


def _rule(distance, opening_difference, aligned) -> np.ndarray:
    """The authors' rule on (d, a), any shape; pairs not aligned get the partial state of their apex side."""
    outward = distance >= 0
    state = np.where(outward, np.where(opening_difference > 0, OUT_PARTIAL_IN, OUT_FULL_IN),
                     np.where(opening_difference >= 0, IN_FULL_OUT, IN_PARTIAL_OUT))
    partial = np.where(outward, OUT_PARTIAL_IN, IN_PARTIAL_OUT)
    return np.where(aligned, state, partial).astype(np.int8)


def _connections(out: SliceCones, inn: SliceCones) -> np.ndarray:
    c_out, c_in = out.kernels.shape[0], inn.kernels.shape[0]
    if c_in % out.groups:
        raise ShapeError(f"{out.name or 'layer l+1'} has {out.groups} groups, which do not divide the "
                         f"{c_in} channels of {inn.name or 'layer l'}")
    group_of_out = np.arange(c_out) // (c_out // out.groups)
    group_of_in = np.arange(c_in) // (c_in // out.groups)
    return group_of_out[:, None] == group_of_in[None, :]


def _spectral_pairs(out: SliceCones, inn: SliceCones):
    """Rotation (C_out, C_in) and exact containment both ways, by FFT over all pairs in chunks."""
    settings = current()
    height, width = out.image_shape
    n = height * width
    spec_out = np.fft.rfft2(out.kernels)
    spec_in = np.fft.rfft2(inn.kernels)
    sums_out, sums_in = out.sums, inn.sums
    perp_out = np.sqrt(np.maximum((out.kernels ** 2).sum(axis=(1, 2)) - sums_out ** 2 / n, 0.0))
    perp_in = np.sqrt(np.maximum((inn.kernels ** 2).sum(axis=(1, 2)) - sums_in ** 2 / n, 0.0))
    magnitude_out = np.abs(spec_out).reshape(len(spec_out), -1)
    magnitude_in = np.abs(spec_in).reshape(len(spec_in), -1)
    invertible_out = magnitude_out.min(axis=1) > settings.rank_rtol * magnitude_out.max(axis=1)
    invertible_in = magnitude_in.min(axis=1) > settings.rank_rtol * magnitude_in.max(axis=1)
    c_out, c_in = len(spec_out), len(spec_in)
    rotation = np.empty((c_out, c_in))
    ratio_out_in = np.zeros((c_out, c_in), dtype=bool)  # K_c K_o^{-1} >= 0
    ratio_in_out = np.zeros((c_out, c_in), dtype=bool)  # K_o K_c^{-1} >= 0
    step = max(1, _CHUNK_VALUES // max(1, c_in * spec_out[0].size))
    safe_out = np.where(np.abs(spec_out) > 0, spec_out, 1.0)
    safe_in = np.where(np.abs(spec_in) > 0, spec_in, 1.0)
    for start in range(0, c_out, step):
        block = slice(start, start + step)
        product = spec_out[block, None] * np.conj(spec_in[None])
        correlation = np.fft.irfft2(product, s=(height, width)).reshape(product.shape[0], c_in, -1)
        inner = correlation.max(axis=2) - np.outer(sums_out[block], sums_in) / n
        denominator = np.outer(perp_out[block], perp_in)
        with np.errstate(divide="ignore", invalid="ignore"):
            cosine = np.where(denominator > 0, inner / denominator, 1.0)
        rotation[block] = np.arccos(np.clip(cosine, -1.0, 1.0))
        for target, numerator, denominator_spec in (
            (ratio_out_in, spec_in[None], safe_out[block, None]),
            (ratio_in_out, spec_out[block, None], safe_in[None]),
        ):
            entries = np.fft.irfft2(numerator / denominator_spec, s=(height, width)).reshape(
                product.shape[0], c_in, -1)
            floor = -settings.feasibility_tol * np.abs(entries).max(axis=2)
            target[block] = entries.min(axis=2) >= floor
    return rotation, ratio_out_in, ratio_in_out, invertible_out, invertible_in


def _apex_inside(apex_point, cones: SliceCones, n: int) -> np.ndarray:
    """(len(apex_point), C) whether each apex level t (a point t 1) lies in each cone of ``cones``."""
    settings = current()
    norms = np.sqrt((cones.kernels ** 2).sum(axis=(1, 2)))
    value = (apex_point[:, None] * cones.sums[None, :] + cones.bias[None, :]) / np.where(norms > 0, norms, 1.0)
    slack = settings.feasibility_tol * (1.0 + np.abs(apex_point)[:, None] * np.sqrt(n))
    return value >= -slack


def pair_geometry(out: SliceCones, inn: SliceCones) -> PairGeometry:
    """The nesting of the cones of layer l+1 (``out``) against those of layer l (``inn``).

    Raises ConeError when the two layers' images differ in size (their slices cannot be identified).
    """
    if out.image_shape != inn.image_shape:
        raise ConeError(f"{out.name or 'layer l+1'} acts on {out.image_shape} images and "
                        f"{inn.name or 'layer l'} on {inn.image_shape}: their cones live in different spaces")
    height, width = out.image_shape
    n = height * width
    connected = _connections(out, inn)
    defined = connected & (out.direction != 0)[:, None] & (inn.direction != 0)[None, :]
    with np.errstate(invalid="ignore"):
        distance = inn.direction[None, :] * (out.apex[:, None] - inn.apex[None, :]) * np.sqrt(n)
    opening_difference = out.opening[:, None] - inn.opening[None, :]
    aligned = out.direction[:, None] == inn.direction[None, :]
    rotation, ratio_out_in, ratio_in_out, invertible_out, invertible_in = _spectral_pairs(out, inn)

    apex_out_in = _apex_inside(np.nan_to_num(out.apex), inn, n)
    apex_in_out = _apex_inside(np.nan_to_num(inn.apex), out, n).T
    out_in_in = np.where(defined & invertible_out[:, None], (apex_out_in & ratio_out_in).astype(np.int8), -1)
    in_in_out = np.where(defined & invertible_in[None, :], (apex_in_out & ratio_in_out).astype(np.int8), -1)

    pair_state = np.where(defined, _rule(np.nan_to_num(distance), opening_difference, aligned), UNDEFINED)
    masked_distance = np.where(defined, distance, -np.inf)
    masked_opening = np.where(defined, opening_difference, np.inf)
    any_defined = defined.any(axis=1)
    state = _rule(masked_distance.max(axis=1), masked_opening.min(axis=1), np.ones(len(defined), dtype=bool))
    state = np.where(any_defined, state, UNDEFINED).astype(np.int8)

    nan = np.nan
    return PairGeometry(
        connected=connected,
        distance=np.where(defined, distance, nan),
        opening_difference=np.where(defined, opening_difference, nan),
        rotation=np.where(defined, rotation, nan),
        aligned=aligned & defined,
        out_in_in=out_in_in.astype(np.int8),
        in_in_out=in_in_out.astype(np.int8),
        pair_state=pair_state.astype(np.int8),
        state=state,
    )
