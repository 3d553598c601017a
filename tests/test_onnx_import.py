"""The ONNX importer agrees with onnxruntime, op by op and on the benchmark networks, and refuses clearly.

References run in float64 (the model converted by ``to_double``) and must agree to ``import_rtol``. Conv,
AveragePool and GlobalAveragePool have no float64 kernel in onnxruntime's CPU provider: models with them
are compared against the float32 session instead. Their synthetic tests use dyadic weights and inputs
(small multiples of 1/8), for which float32 sums are exact, so only pooling divisions round; the tolerance
is ``FLOAT32_RTOL``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from onnx_models import (
    graph_model, needs_float32, ort_forward, relative_error, single_op, tensor, to_double, to_float,
)
from preimage import settings
from preimage.errors import ModelError, ShapeError, UnsupportedOperation
from preimage.network.onnx_import import from_onnx

BENCHMARKS = Path(__file__).parents[2] / "shared" / "benchmarks"
BENCHMARK_FILES = sorted(BENCHMARKS.glob("*/*.onnx"))
FLOAT32_RTOL = 1e-6
N_SAMPLES = 20

def assert_agrees_with_onnxruntime(model: onnx.ModelProto, X: np.ndarray):
    """Import ``model`` (float64 graph) and compare with onnxruntime on the rows of X."""
    net = from_onnx(model)
    if needs_float32(model):
        expected, rtol = ort_forward(to_float(model), X, net.input_shape), FLOAT32_RTOL
    else:
        expected, rtol = ort_forward(model, X, net.input_shape), settings.current().import_rtol
    assert relative_error(net.forward(X), expected) <= rtol
    return net


def dyadic(rng, shape, scale=8):
    """Random multiples of 1/scale in [-2, 2]: float32 arithmetic on them is exact in small sums."""
    return rng.integers(-2 * scale, 2 * scale + 1, size=shape) / scale


# ---------------------------------------------------------------------------------------------------
# benchmark networks


@pytest.mark.skipif(not BENCHMARKS.is_dir(), reason=f"benchmark folder {BENCHMARKS} is absent")
def test_benchmark_folder_holds_every_network():
    counts = {folder: len(list((BENCHMARKS / folder).glob("*.onnx")))
              for folder in ("acasxu", "vcas", "control", "mnistfc", "mnistcnn")}
    assert counts == {"acasxu": 45, "vcas": 9, "control": 5, "mnistfc": 2, "mnistcnn": 1}


@pytest.mark.skipif(not BENCHMARK_FILES, reason=f"no .onnx files under {BENCHMARKS}")
@pytest.mark.parametrize("path", BENCHMARK_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_benchmark_network_matches_onnxruntime(path):
    model = onnx.load(str(path))
    net = from_onnx(path)
    assert net.name == path.stem
    rng = np.random.default_rng(BENCHMARK_FILES.index(path))
    low = 0.0 if path.parent.name.startswith("mnist") else -1.0
    X = rng.uniform(low, 1.0, size=(N_SAMPLES, net.input_dim))
    if needs_float32(model):
        # mnistcnn: Conv has no float64 kernel in onnxruntime; its float32 session is the reference
        expected, rtol = ort_forward(model, X, net.input_shape), 1e-5
    else:
        expected, rtol = ort_forward(to_double(model), X, net.input_shape), settings.current().import_rtol
    assert relative_error(net.forward(X), expected) <= rtol


@pytest.mark.skipif(not (BENCHMARKS / "mnistcnn").is_dir(), reason="mnistcnn benchmark is absent")
def test_mnist_cnn_is_sparse_with_folded_reshape():
    net = from_onnx(BENCHMARKS / "mnistcnn" / "mnist_0.1.onnx")
    assert net.input_shape == (1, 28, 28)
    assert [layer.affine.is_sparse for layer in net.layers] == [True, True, False, False]
    assert net.layers[0].output_shape == (32, 14, 14) and net.layers[2].input_shape == (3136,)


@pytest.mark.skipif(not (BENCHMARKS / "acasxu").is_dir(), reason="acasxu benchmark is absent")
def test_acas_input_normalisation_folds_into_first_layer():
    net = from_onnx(BENCHMARKS / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx")
    assert net.input_shape == (1, 1, 5)
    assert [layer.out_features for layer in net.layers] == [50] * 6 + [5]
    assert net.layers[0].sources[0].endswith(":Sub")


# ---------------------------------------------------------------------------------------------------
# one case per op and attribute form: name -> builder(rng) -> float64 model


def _gemm(rng, shape, *, transA=0, transB=0, alpha=1.0, beta=1.0, c_shape=(3,)):
    k = shape[-1] if not transA else shape[-2]
    b = rng.normal(size=(3, k) if transB else (k, 3))
    return single_op("Gemm", shape, [("B", b), ("C", rng.normal(size=c_shape))],
                     transA=transA, transB=transB, alpha=alpha, beta=beta)


def _conv(rng, shape, w_shape, *, bias=True, **attributes):
    constants = [("W", dyadic(rng, w_shape, 4))] + ([("B", dyadic(rng, w_shape[:1]))] if bias else [])
    return single_op("Conv", shape, constants, **attributes)


def _batch_norm(rng, shape):
    channels = shape[1]
    stats = [("scale", rng.normal(size=channels)), ("bias", rng.normal(size=channels)),
             ("mean", rng.normal(size=channels)), ("var", rng.uniform(0.5, 2.0, size=channels))]
    return single_op("BatchNormalization", shape, stats, epsilon=1e-3)


def _reshape_by_shape_of_data(rng):
    """x.view(x.size(0), -1) as exporters write it: Shape, Gather, Unsqueeze, Concat, then Reshape."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W"], ["y"], transB=1),
    ]
    inits = [tensor("zero", 0, np.int64), tensor("axes", [0], np.int64), tensor("minus_one", [-1], np.int64),
             tensor("W", rng.normal(size=(4, 24)))]
    return graph_model(nodes, ["N", 2, 3, 4], inits)


def _normalised_mlp(rng):
    """(x - mean) / std, Gemm, BatchNorm, LeakyRelu, Gemm, Relu: everything affine folds into two layers."""
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
        helper.make_node("Gemm", ["scaled", "W1", "b1"], ["h"], transB=1),
        helper.make_node("BatchNormalization", ["h", "s", "o", "m", "v"], ["bn"]),
        helper.make_node("LeakyRelu", ["bn"], ["a"], alpha=0.1),
        helper.make_node("Dropout", ["a"], ["d"]),
        helper.make_node("MatMul", ["d", "W2"], ["z"]),
        helper.make_node("Relu", ["z"], ["y"]),
    ]
    inits = [tensor("mean", rng.normal(size=4)), tensor("std", rng.uniform(0.5, 2, size=4)),
             tensor("W1", rng.normal(size=(6, 4))), tensor("b1", rng.normal(size=6)),
             tensor("s", rng.normal(size=6)), tensor("o", rng.normal(size=6)), tensor("m", rng.normal(size=6)),
             tensor("v", rng.uniform(0.5, 2, size=6)), tensor("W2", rng.normal(size=(6, 3)))]
    return graph_model(nodes, ["N", 4], inits)


def _folded_constant_subgraph(rng):
    """A constant built by Constant, Shape, ConstantOfShape, Range, Cast, Mul and Concat, added to the data."""
    nodes = [
        helper.make_node("Constant", [], ["c"], value=tensor("c_value", rng.normal(size=(2, 3)))),
        helper.make_node("Shape", ["c"], ["c_shape"]),
        helper.make_node("ConstantOfShape", ["c_shape"], ["twos"], value=tensor("two", [2.0])),
        helper.make_node("Range", ["start", "limit", "delta"], ["steps"]),
        helper.make_node("Cast", ["steps"], ["steps_float"], to=onnx.TensorProto.DOUBLE),
        helper.make_node("Mul", ["twos", "steps_float"], ["scaled"]),
        helper.make_node("Concat", ["scaled", "c"], ["offset"], axis=0),
        helper.make_node("Cast", ["x"], ["x_double"], to=onnx.TensorProto.DOUBLE),
        helper.make_node("Add", ["x_double", "offset"], ["y"]),
    ]
    inits = [tensor("start", 0, np.int64), tensor("limit", 3, np.int64), tensor("delta", 1, np.int64)]
    return graph_model(nodes, ["N", 4, 3], inits)


def _normalised_cnn(rng):
    """(x - mean) / std, Conv, BatchNorm, Relu, AveragePool, Flatten, Gemm: the affine chain stays sparse."""
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
        helper.make_node("Conv", ["scaled", "W", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv", "s", "o", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W2"], ["y"], transB=1),
    ]
    inits = [tensor("mean", dyadic(rng, (2, 1, 1))), tensor("std", [[[2.0]], [[0.5]]]),
             tensor("W", dyadic(rng, (3, 2, 3, 3), 4)), tensor("b", dyadic(rng, 3)),
             tensor("s", dyadic(rng, 3)), tensor("o", dyadic(rng, 3)), tensor("m", dyadic(rng, 3)),
             tensor("v", [0.75, 1.75, 3.75]), tensor("W2", dyadic(rng, (4, 18)))]
    return graph_model(nodes, ["N", 2, 4, 6], inits)


CASES = {
    "gemm_transB_alpha_beta": lambda r: _gemm(r, ["N", 5], transB=1, alpha=0.5, beta=2.0),
    "gemm_plain_row_bias": lambda r: _gemm(r, [1, 5], c_shape=(1, 3)),
    "gemm_no_bias": lambda r: single_op("Gemm", ["N", 5], [("B", r.normal(size=(5, 3)))]),
    "gemm_transA_unbatched": lambda r: _gemm(r, [5, 2], transA=1, c_shape=(2, 3)),
    "gemm_data_as_B_unbatched": lambda r: single_op(
        "Gemm", [4, 2], [("A", r.normal(size=(3, 4))), ("C", r.normal(size=(3, 1)))], data_position=1),
    "gemm_data_as_B_transB_unbatched": lambda r: single_op(
        "Gemm", [2, 4], [("A", r.normal(size=(4, 3))), ("C", r.normal(size=2))], data_position=1,
        transA=1, transB=1, alpha=-1.5),
    "matmul_data_left": lambda r: single_op("MatMul", ["N", 3, 4], [("C", r.normal(size=(4, 2)))]),
    "matmul_data_right": lambda r: single_op("MatMul", ["N", 4, 3], [("C", r.normal(size=(2, 4)))],
                                             data_position=1),
    "matmul_vector_unbatched": lambda r: single_op("MatMul", [4], [("C", r.normal(size=(7, 4)))],
                                                   data_position=1),
    "matmul_broadcast_rank3": lambda r: single_op("MatMul", ["N", 2, 3, 4], [("C", r.normal(size=(2, 4, 5)))]),
    "matmul_constant_vector": lambda r: single_op("MatMul", ["N", 4], [("C", r.normal(size=4))]),
    "add_broadcast": lambda r: single_op("Add", ["N", 2, 3], [("c", r.normal(size=3))]),
    "add_constant_first": lambda r: single_op("Add", ["N", 2, 3], [("c", r.normal(size=(2, 1)))],
                                              data_position=1),
    "add_replicates_data": lambda r: single_op("Add", ["N", 1, 3], [("c", r.normal(size=(4, 3)))]),
    "sub_data_first": lambda r: single_op("Sub", ["N", 3], [("c", r.normal(size=3))]),
    "sub_constant_first": lambda r: single_op("Sub", ["N", 3], [("c", r.normal(size=3))], data_position=1),
    "mul_broadcast": lambda r: single_op("Mul", ["N", 2, 3], [("c", r.normal(size=(2, 1)))]),
    "div": lambda r: single_op("Div", ["N", 2, 3], [("c", r.uniform(0.5, 2, size=3))]),
    "neg": lambda r: single_op("Neg", ["N", 3]),
    "relu": lambda r: single_op("Relu", ["N", 3]),
    "leaky_relu": lambda r: single_op("LeakyRelu", ["N", 3], alpha=0.2),
    "prelu_scalar": lambda r: single_op("PRelu", ["N", 3], [("slope", [0.3])]),
    "identity": lambda r: single_op("Identity", ["N", 3]),
    "dropout": lambda r: single_op("Dropout", ["N", 3]),
    "flatten_axis1": lambda r: single_op("Flatten", ["N", 2, 3, 4]),
    "flatten_axis2_unit": lambda r: single_op("Flatten", ["N", 1, 3, 4], axis=2),
    "flatten_axis_unbatched": lambda r: single_op("Flatten", [2, 3, 4], axis=-1),
    "reshape_zero_minus_one": lambda r: single_op("Reshape", ["N", 2, 3, 4], [("s", np.array([0, -1, 4]))]),
    "reshape_minus_one_first": lambda r: single_op("Reshape", ["N", 2, 3, 4], [("s", np.array([-1, 24]))]),
    "reshape_opset1_attribute": lambda r: single_op("Reshape", [1, 2, 6], opset=1, shape=[1, 3, 4]),
    "reshape_shape_of_data": _reshape_by_shape_of_data,
    "transpose": lambda r: single_op("Transpose", ["N", 2, 3, 4], perm=[0, 2, 3, 1]),
    "transpose_unbatched_default": lambda r: single_op("Transpose", [2, 3]),
    "squeeze_opset11": lambda r: single_op("Squeeze", ["N", 3, 1, 2], opset=11, axes=[2]),
    "squeeze_opset13": lambda r: single_op("Squeeze", ["N", 3, 1, 2], [("axes", np.array([-2]))]),
    "unsqueeze_opset11": lambda r: single_op("Unsqueeze", ["N", 3], opset=11, axes=[1, 3]),
    "unsqueeze_opset13": lambda r: single_op("Unsqueeze", ["N", 3], [("axes", np.array([2]))]),
    "slice_opset9": lambda r: single_op("Slice", ["N", 6, 4], opset=9, starts=[1], ends=[5], axes=[1]),
    "slice_steps": lambda r: single_op("Slice", ["N", 6, 4], [("s", np.array([5, 0])), ("e", np.array([0, 4])),
                                                             ("a", np.array([1, 2])), ("t", np.array([-2, 3]))]),
    "gather": lambda r: single_op("Gather", ["N", 3, 5], [("i", np.array([4, 0, -1]))], axis=2),
    "pad_constant_and_crop": lambda r: single_op(
        "Pad", ["N", 3, 4], [("p", np.array([0, 1, -1, 0, 2, 1])), ("v", np.array(0.5))]),
    "pad_reflect": lambda r: single_op("Pad", ["N", 3, 4], [("p", np.array([0, 1, 2, 0, 2, 1]))], mode="reflect"),
    "pad_edge_opset2": lambda r: single_op("Pad", ["N", 3, 4], opset=2, pads=[0, 1, 1, 0, 2, 0], mode="edge"),
    "pad_axes_opset18": lambda r: single_op("Pad", ["N", 3, 4], [("p", np.array([2, 1])), None,
                                                                 ("a", np.array([-1]))], opset=18),
    "squeeze_all_unit_axes": lambda r: single_op("Squeeze", [1, 3, 1, 2]),
    "reshape_allowzero": lambda r: single_op("Reshape", ["N", 2, 3], [("s", np.array([1, 3, 2]))], allowzero=1),
    "batch_norm_image": lambda r: _batch_norm(r, ["N", 3, 4, 4]),
    "batch_norm_vector": lambda r: _batch_norm(r, ["N", 3]),
    "conv_stride_pads": lambda r: _conv(r, ["N", 2, 7, 6], (3, 2, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
    "conv_groups_dilation": lambda r: _conv(r, ["N", 4, 8, 8], (6, 2, 3, 2), group=2, dilations=[2, 3]),
    "conv_asymmetric_pads_no_bias": lambda r: _conv(r, ["N", 2, 5, 6], (3, 2, 3, 3), bias=False,
                                                    pads=[0, 2, 1, 1]),
    "conv_same_upper": lambda r: _conv(r, ["N", 2, 7, 6], (3, 2, 4, 3), strides=[2, 2], auto_pad="SAME_UPPER"),
    "conv_same_lower": lambda r: _conv(r, ["N", 2, 7, 6], (3, 2, 4, 3), strides=[2, 1], auto_pad="SAME_LOWER"),
    "conv_valid": lambda r: _conv(r, ["N", 2, 7, 6], (3, 2, 3, 3), auto_pad="VALID"),
    "conv_1d": lambda r: _conv(r, ["N", 2, 9], (3, 2, 3), strides=[2], pads=[1, 2]),
    "conv_static_batch_of_one": lambda r: _conv(r, [1, 2, 5, 5], (2, 2, 2, 2)),
    "avgpool_stride": lambda r: single_op("AveragePool", ["N", 2, 6, 6], kernel_shape=[2, 2], strides=[2, 2]),
    "avgpool_pads_exclude": lambda r: single_op("AveragePool", ["N", 2, 7, 6], kernel_shape=[3, 3],
                                                strides=[2, 2], pads=[1, 1, 1, 1]),
    "avgpool_pads_include": lambda r: single_op("AveragePool", ["N", 2, 7, 6], kernel_shape=[3, 3],
                                                strides=[2, 2], pads=[1, 0, 1, 2], count_include_pad=1),
    "avgpool_ceil": lambda r: single_op("AveragePool", ["N", 2, 6, 7], kernel_shape=[3, 2], strides=[2, 2],
                                        ceil_mode=1),
    "avgpool_ceil_pads_include": lambda r: single_op("AveragePool", ["N", 1, 6, 6], kernel_shape=[3, 3],
                                                     strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                                                     count_include_pad=1),
    "avgpool_same_upper": lambda r: single_op("AveragePool", ["N", 2, 7, 6], kernel_shape=[3, 3],
                                              strides=[2, 2], auto_pad="SAME_UPPER"),
    "avgpool_1d": lambda r: single_op("AveragePool", ["N", 3, 9], kernel_shape=[3], strides=[2]),
    "global_avgpool": lambda r: single_op("GlobalAveragePool", ["N", 3, 5, 4]),
    "normalised_mlp": _normalised_mlp,
    "normalised_cnn": _normalised_cnn,
    "folded_constant_subgraph": _folded_constant_subgraph,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_operation_matches_onnxruntime(case):
    rng = np.random.default_rng(sorted(CASES).index(case))
    model = CASES[case](rng)
    net = from_onnx(model)
    X = dyadic(rng, (N_SAMPLES, net.input_dim))
    assert_agrees_with_onnxruntime(model, X)


def test_affine_operations_fold_between_activations():
    net = from_onnx(_normalised_mlp(np.random.default_rng(0)))
    assert len(net.layers) == 2
    assert [str(layer.activation) for layer in net.layers] == ["leaky_relu(0.1)", "relu"]
    assert [s.split(":")[1] for s in net.layers[0].sources] == [
        "Sub", "Div", "Gemm", "BatchNormalization", "LeakyRelu"]


def test_convolution_stays_sparse():
    net = from_onnx(CASES["conv_stride_pads"](np.random.default_rng(0)))
    assert net.layers[0].affine.is_sparse
    assert net.layers[0].input_shape == (2, 7, 6) and net.layers[0].output_shape == (3, 4, 3)


def test_normalisation_and_batch_norm_fold_into_a_sparse_convolution():
    net = from_onnx(_normalised_cnn(np.random.default_rng(0)))
    assert len(net.layers) == 2
    assert net.layers[0].affine.is_sparse and net.layers[0].output_shape == (3, 4, 6)
    assert [s.split(":")[1] for s in net.layers[0].sources] == ["Sub", "Div", "Conv", "BatchNormalization", "Relu"]
    assert [s.split(":")[1] for s in net.layers[1].sources] == ["AveragePool", "Gemm"]  # a Flatten moves no data


def test_network_is_named_after_the_file(tmp_path):
    model = single_op("Relu", ["N", 3])
    onnx.save(model, tmp_path / "tiny_net.onnx")
    assert from_onnx(tmp_path / "tiny_net.onnx").name == "tiny_net"
    assert from_onnx(str(tmp_path / "tiny_net.onnx")).name == "tiny_net"
    assert from_onnx(model).name == "g"


def test_float32_model_is_read_in_float64():
    rng = np.random.default_rng(3)
    weight = rng.normal(size=(5, 3)).astype(np.float32)
    model = single_op("MatMul", ["N", 5], [("W", weight)], elem_type=onnx.TensorProto.FLOAT)
    net = from_onnx(model)
    assert net.layers[0].W.dtype == np.float64
    np.testing.assert_array_equal(net.layers[0].W, weight.astype(np.float64).T)


def test_input_name_selects_the_data_input():
    rng = np.random.default_rng(4)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["b"], ["y"])], "two_inputs",
        [helper.make_tensor_value_info(n, onnx.TensorProto.DOUBLE, ["N", 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    net = from_onnx(model, input_name="b")
    X = rng.normal(size=(5, 3))
    np.testing.assert_array_equal(net.forward(X), np.maximum(X, 0))
    with pytest.raises(UnsupportedOperation, match="second data input"):
        from_onnx(model)
    with pytest.raises(ModelError, match="no dynamic graph input named 'c'"):
        from_onnx(model, input_name="c")


# ---------------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize("op_type, attributes", [
    ("MaxPool", {"kernel_shape": [2, 2]}), ("Sigmoid", {}), ("Tanh", {}), ("Softmax", {}),
])
def test_unsupported_operation_names_op_and_node(op_type, attributes):
    model = single_op(op_type, ["N", 2, 4, 4], **attributes)
    with pytest.raises(UnsupportedOperation) as error:
        from_onnx(model)
    assert error.value.op == op_type and error.value.node == f"the_{op_type.lower()}"
    assert op_type in str(error.value) and f"the_{op_type.lower()}" in str(error.value)


def test_unnamed_node_is_named_by_its_output():
    model = graph_model([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Sigmoid", ["h"], ["y"])],
                        ["N", 3])
    with pytest.raises(UnsupportedOperation, match="'Sigmoid' at node 'y'"):
        from_onnx(model)


@pytest.mark.parametrize("order", ["data_first", "skip_first"])
def test_residual_graph_is_refused(order):
    rng = np.random.default_rng(5)
    add_inputs = ["z", "x"] if order == "data_first" else ["x", "z"]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["z"]),
             helper.make_node("Add", add_inputs, ["y"], name="skip")]
    model = graph_model(nodes, ["N", 3], [tensor("W", rng.normal(size=(3, 3)))])
    with pytest.raises(UnsupportedOperation, match="'Add' at node 'skip'.*branches"):
        from_onnx(model)


@pytest.mark.parametrize("op_type, constants", [
    ("Gemm", [("B", [[1.0, np.nan], [0.0, 1.0]])]),
    ("Add", [("c", [0.0, np.inf])]),
    ("Conv", [("W", np.full((1, 1, 1, 1), np.nan))]),
])
def test_nan_weights_are_refused(op_type, constants):
    shape = ["N", 1, 2, 2] if op_type == "Conv" else ["N", 2]
    with pytest.raises(ModelError, match="NaN"):
        from_onnx(single_op(op_type, shape, constants))


@pytest.mark.parametrize("shape, axis", [(["N", "C", 4], 1), ([1, 3, "H", "W"], 2), (["N", 3, 0], 2)])
def test_dynamic_non_batch_dimension_is_refused(shape, axis):
    with pytest.raises(ShapeError, match=f"dimension {axis} is dynamic"):
        from_onnx(single_op("Relu", shape))


@pytest.mark.parametrize("op_type, shape, constants, attributes", [
    ("Flatten", ["N", 2, 3], [], {"axis": 0}),
    ("Flatten", ["N", 2, 3], [], {"axis": 2}),
    ("Reshape", ["N", 2, 3], [("s", np.array([-1, 3]))], {}),
    ("Transpose", ["N", 2, 3], [], {"perm": [1, 0, 2]}),
    ("Squeeze", [1, 3], [("a", np.array([0]))], {}),
    ("Add", ["N", 3], [("c", np.ones((2, 3)))], {}),
    ("MatMul", ["N", 3], [("C", np.ones((4, 1)))], {"data_position": 1}),
])
def test_operation_mixing_samples_is_refused(op_type, shape, constants, attributes):
    position = attributes.pop("data_position", 0)
    with pytest.raises(UnsupportedOperation, match="batch"):
        from_onnx(single_op(op_type, shape, constants, data_position=position, **attributes))


def test_reshape_computed_from_batch_size_is_refused():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Mul", ["n", "two"], ["n2"]),
        helper.make_node("Unsqueeze", ["n2", "axes"], ["n3"]),
        helper.make_node("Concat", ["n3", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="bad_reshape"),
    ]
    inits = [tensor("zero", 0, np.int64), tensor("two", 2, np.int64), tensor("axes", [0], np.int64),
             tensor("minus_one", [-1], np.int64)]
    with pytest.raises(UnsupportedOperation, match="bad_reshape.*batch size"):
        from_onnx(graph_model(nodes, ["N", 2, 4], inits))


def test_static_dimension_from_shape_folds_as_a_constant():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["c"], axis=0),
        helper.make_node("Unsqueeze", ["c", "axes"], ["c1"]),
        helper.make_node("Concat", ["zero", "c1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [tensor("one", 1, np.int64), tensor("axes", [0], np.int64), tensor("zero", [0], np.int64),
             tensor("minus_one", [-1], np.int64)]
    net = from_onnx(graph_model(nodes, ["N", 2, 6], inits))
    assert net.layers[0].output_shape == (2, 6)


@pytest.mark.parametrize("content", [b"", b"not a protobuf \x00\xff\xfe"])
def test_unreadable_file_is_a_model_error(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError):
        from_onnx(path)


def test_missing_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no ONNX file"):
        from_onnx(tmp_path / "absent.onnx")


def test_output_independent_of_input_is_refused():
    model = graph_model([helper.make_node("Identity", ["c"], ["y"])], ["N", 3], [tensor("c", [1.0, 2.0])])
    with pytest.raises(ModelError, match="does not depend on the input"):
        from_onnx(model)


def test_divide_by_data_is_refused():
    with pytest.raises(UnsupportedOperation, match="dividing by the data"):
        from_onnx(single_op("Div", ["N", 3], [("c", [1.0, 2.0, 3.0])], data_position=1))
