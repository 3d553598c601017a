"""Sparse convolution and pooling matrices agree with torch's own operators in float64."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from preimage.errors import ModelError, ShapeError
from preimage.network.conv import (
    adaptive_avg_pool2d_matrix,
    avg_pool2d_matrix,
    conv2d_bias,
    conv2d_matrix,
)

RTOL = 1e-12
MODES = ("zeros", "reflect", "replicate", "circular")


def assert_matches(actual: np.ndarray, expected: np.ndarray) -> None:
    """Max-norm relative error of actual against expected is at most RTOL."""
    assert actual.shape == expected.shape
    scale = max(np.max(np.abs(expected), initial=0.0), 1.0)
    assert np.max(np.abs(actual - expected), initial=0.0) <= RTOL * scale


def assert_csr(matrix, rows: int, cols: int) -> None:
    assert isinstance(matrix, sp.csr_matrix)
    assert matrix.dtype == np.float64
    assert matrix.shape == (rows, cols)


def torch_conv(x, weight, stride, padding, dilation, groups, mode):
    """nn.Conv2d's forward pass (one sample), asymmetric 4-tuple padding applied with F.pad first."""
    inputs = torch.from_numpy(x)[None]
    if isinstance(padding, tuple) and len(padding) == 4:
        top, bottom, left, right = padding
        inputs = F.pad(inputs, (left, right, top, bottom), mode="constant" if mode == "zeros" else mode)
        padding = 0
    c_out, c_in_group, k_h, k_w = weight.shape
    conv = torch.nn.Conv2d(
        c_in_group * groups, c_out, (k_h, k_w), stride, padding, dilation, groups,
        bias=False, padding_mode=mode,
    ).double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        return conv, conv(inputs)[0].numpy()


def paddings(padding, kernel, dilation) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of any padding argument, to decide which torch modes accept it."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return (total[0] // 2, total[0] - total[0] // 2, total[1] // 2, total[1] - total[1] // 2)
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return padding


# (C_in, C_out, groups, kernel, (H, W), stride, padding, dilation)
CONV_GRID = [
    pytest.param(3, 5, 1, (3, 3), (8, 8), 1, 1, 1, id="3x3-pad1"),
    pytest.param(2, 4, 1, (3, 3), (9, 7), 2, 0, 1, id="stride2"),
    pytest.param(2, 3, 1, (2, 3), (10, 11), 3, 2, 1, id="stride3-pad2"),
    pytest.param(3, 2, 1, (3, 5), (7, 9), (1, 2), (1, 2), 1, id="stride(1,2)-pad(1,2)"),
    pytest.param(2, 2, 1, (3, 3), (9, 8), 1, 2, 2, id="dilation2"),
    pytest.param(2, 3, 1, (3, 2), (8, 6), (2, 1), 1, (2, 1), id="dilation(2,1)"),
    pytest.param(4, 6, 2, (3, 3), (6, 7), 1, 1, 1, id="groups2"),
    pytest.param(3, 3, 3, (3, 3), (6, 6), 2, 1, 1, id="depthwise"),
    pytest.param(3, 6, 3, (2, 3), (5, 7), 1, (1, 1), 1, id="depthwise-multiplier2"),
    pytest.param(5, 4, 1, (1, 1), (4, 6), 1, 0, 1, id="1x1"),
    pytest.param(4, 2, 2, (1, 1), (5, 6), 2, 1, 1, id="1x1-stride2-pad1-groups2"),
    pytest.param(2, 3, 1, (3, 3), (6, 5), 1, (0, 1, 2, 1), 1, id="asymmetric"),
    pytest.param(2, 2, 1, (2, 3), (7, 6), 2, (1, 0, 0, 2), (1, 2), id="asymmetric-stride2"),
    pytest.param(2, 3, 1, (3, 4), (7, 6), 1, "same", 1, id="same-even-kernel"),
    pytest.param(2, 2, 2, (2, 3), (6, 7), 1, "same", 2, id="same-dilation2"),
    pytest.param(2, 2, 1, (3, 3), (5, 6), 2, "valid", 1, id="valid"),
    pytest.param(2, 3, 1, (6, 5), (4, 3), 1, 1, 1, id="kernel-fills-padded-input"),
    pytest.param(2, 2, 1, (3, 3), (2, 2), 1, 1, 1, id="tiny-image-folding"),
    pytest.param(1, 2, 1, (5, 5), (2, 3), 1, 2, 1, id="kernel-wider-than-image"),
    pytest.param(16, 16, 1, (3, 3), (12, 12), 1, 1, 1, id="16-channels"),
]


def torch_accepts(mode, kernel, image, padding, dilation) -> bool:
    """torch refuses reflect padding as large as the input and circular padding that wraps twice."""
    dilation_pair = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    top, bottom, left, right = paddings(padding, kernel, dilation_pair)
    height, width = image
    if mode == "reflect":
        return max(top, bottom) < height and max(left, right) < width
    if mode == "circular":
        return max(top, bottom) <= height and max(left, right) <= width
    return True


CONV_CASES = [
    pytest.param(*case.values, mode, id=f"{case.id}-{mode}")
    for case in CONV_GRID
    for mode in MODES
    if torch_accepts(mode, case.values[3], case.values[4], case.values[6], case.values[7])
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("c_in, c_out, groups, kernel, image, stride, padding, dilation, mode", CONV_CASES)
def test_conv2d_matrix_equals_torch(c_in, c_out, groups, kernel, image, stride, padding, dilation, mode):
    height, width = image
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((c_out, c_in // groups, *kernel))
    x = rng.standard_normal((c_in, height, width))
    conv, expected = torch_conv(x, weight, stride, padding, dilation, groups, mode)

    # the module's own parameter tensor is accepted as the weight
    matrix, output_shape = conv2d_matrix(
        conv.weight, (c_in, height, width), stride, padding, dilation, groups, mode
    )

    assert output_shape == expected.shape
    assert_csr(matrix, expected.size, x.size)
    assert matrix.nnz <= expected.size * (c_in // groups) * kernel[0] * kernel[1]
    assert_matches(matrix @ x.ravel(), expected.ravel())


def test_conv2d_bias_completes_the_affine_map():
    rng = np.random.default_rng(7)
    conv = torch.nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=1).double()
    x = rng.standard_normal((3, 7, 6))
    with torch.no_grad():
        expected = conv(torch.from_numpy(x)[None])[0].numpy()
    matrix, output_shape = conv2d_matrix(conv.weight, x.shape, stride=(2, 1), padding=1)
    assert_matches(matrix @ x.ravel() + conv2d_bias(conv.bias, output_shape), expected.ravel())


@pytest.mark.parametrize("divisor_override", [None, 5])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("padding", [0, 1, (1, 0)])
@pytest.mark.parametrize("stride", [None, 1, 2, (2, 1)])
@pytest.mark.parametrize("kernel_size", [2, 3, (2, 3)])
def test_avg_pool2d_matrix_equals_torch(
    kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 7, 10))
    options = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    expected = F.avg_pool2d(torch.from_numpy(x)[None], *options)[0].numpy()
    matrix, output_shape = avg_pool2d_matrix(x.shape, *options)
    assert output_shape == expected.shape
    assert_csr(matrix, expected.size, x.size)
    assert_matches(matrix @ x.ravel(), expected.ravel())


@pytest.mark.parametrize("padding", [(0, 1, 1, 0), (1, 1, 0, 2)])
def test_avg_pool2d_asymmetric_padding_equals_zero_padded_input(padding):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 6, 7))
    top, bottom, left, right = padding
    padded = F.pad(torch.from_numpy(x)[None], (left, right, top, bottom))
    expected = F.avg_pool2d(padded, 3, 2)[0].numpy()
    matrix, output_shape = avg_pool2d_matrix(x.shape, 3, 2, padding)
    assert output_shape == expected.shape
    assert_matches(matrix @ x.ravel(), expected.ravel())


@pytest.mark.parametrize(
    "output_size",
    [(1, 1), 1, (7, 5), (7, 10), (3, 4), 4, (4, None), (None, 3), (9, 12)],
    ids=["1x1", "int1", "divides", "identity", "not-dividing", "int4", "keep-W", "keep-H", "upsampling"],
)
def test_adaptive_avg_pool2d_matrix_equals_torch(output_size):
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 7, 10))
    expected = F.adaptive_avg_pool2d(torch.from_numpy(x)[None], output_size)[0].numpy()
    matrix, output_shape = adaptive_avg_pool2d_matrix(x.shape, output_size)
    assert output_shape == expected.shape
    assert_csr(matrix, expected.size, x.size)
    assert_matches(matrix @ x.ravel(), expected.ravel())


def conv_of(weight_shape=(2, 1, 3, 3), input_shape=(1, 5, 5), fill=1.0, **options):
    """conv2d_matrix on a constant weight, for the argument checks."""
    return conv2d_matrix(np.full(weight_shape, fill), input_shape, **options)


@pytest.mark.parametrize(
    "build, error, argument",
    [
        pytest.param(lambda: conv_of((2, 3, 3), (3, 5, 5)), ShapeError, "weight", id="weight-3d"),
        pytest.param(lambda: conv_of((2, 1, 3, 3), (3, 5, 5), groups=2), ShapeError, "groups", id="c_in-groups"),
        pytest.param(lambda: conv_of((2, 3, 3, 3), (4, 5, 5)), ShapeError, "weight.shape[1]", id="c_in-mismatch"),
        pytest.param(lambda: conv_of((3, 1, 3, 3), (2, 5, 5), groups=2), ShapeError, "groups", id="c_out-groups"),
        pytest.param(lambda: conv_of((2, 1, 7, 3)), ShapeError, "weight", id="kernel-too-large"),
        pytest.param(lambda: conv_of(dilation=3), ShapeError, "weight", id="dilated-kernel-too-large"),
        pytest.param(lambda: conv_of(stride=0), ShapeError, "stride", id="stride"),
        pytest.param(lambda: conv_of(dilation=(1, -1)), ShapeError, "dilation", id="dilation"),
        pytest.param(lambda: conv_of(padding=-1), ShapeError, "padding", id="padding"),
        pytest.param(lambda: conv_of(padding=(0, 1, -1, 0)), ShapeError, "padding", id="padding-4-tuple"),
        pytest.param(lambda: conv_of(padding="full"), ShapeError, "padding", id="padding-string"),
        pytest.param(lambda: conv_of(stride=2, padding="same"), ShapeError, "stride", id="same-stride2"),
        pytest.param(
            lambda: conv_of(input_shape=(1, 3, 5), padding=3, padding_mode="reflect"),
            ShapeError,
            "padding",
            id="reflect-too-wide",
        ),
        pytest.param(lambda: conv_of(padding_mode="mirror"), ShapeError, "padding_mode", id="padding_mode"),
        pytest.param(lambda: conv_of(input_shape=(1, 5)), ShapeError, "input_shape", id="input_shape"),
        pytest.param(lambda: conv_of(fill=np.nan), ModelError, "weight", id="nan-weight"),
        pytest.param(lambda: conv_of(fill=-np.inf), ModelError, "weight", id="inf-weight"),
        pytest.param(lambda: conv2d_bias(np.ones(3), (2, 4, 4)), ShapeError, "bias", id="bias"),
        pytest.param(lambda: avg_pool2d_matrix((1, 5, 5), 0), ShapeError, "kernel_size", id="pool-kernel"),
        pytest.param(lambda: avg_pool2d_matrix((1, 5, 5), 6), ShapeError, "kernel_size", id="pool-too-large"),
        pytest.param(lambda: avg_pool2d_matrix((1, 5, 5), 2, stride=(1, 0)), ShapeError, "stride", id="pool-stride"),
        pytest.param(lambda: avg_pool2d_matrix((1, 5, 5), 2, padding=-1), ShapeError, "padding", id="pool-padding"),
        pytest.param(
            lambda: avg_pool2d_matrix((1, 5, 5), 2, divisor_override=0),
            ShapeError,
            "divisor_override",
            id="divisor_override",
        ),
        pytest.param(
            lambda: adaptive_avg_pool2d_matrix((1, 5, 5), (0, 2)), ShapeError, "output_size", id="output_size"
        ),
    ],
)
def test_bad_arguments_are_named(build, error, argument):
    with pytest.raises(error, match=re.escape(argument)):
        build()
