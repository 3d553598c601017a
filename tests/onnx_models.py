"""Small ONNX graphs built with ``onnx.helper``, a float64 copy of any model, and onnxruntime references."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, DOUBLE = TensorProto.FLOAT, TensorProto.DOUBLE

# onnxruntime's CPU provider has no float64 kernel for these: references run them in float32
FLOAT32_ONLY_OPS = frozenset({"Conv", "AveragePool", "GlobalAveragePool"})

IR_VERSION = 8  # read by every onnxruntime release this project supports


def tensor(name: str, value, dtype=np.float64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def graph_model(nodes, input_shape, initializers=(), *, opset=17, elem_type=DOUBLE, input_name="x",
                output_name="y", name="g") -> onnx.ModelProto:
    """A model with one input ``x`` of ``input_shape`` (str entries are symbolic) and one output ``y``."""
    graph = helper.make_graph(
        list(nodes), name,
        [helper.make_tensor_value_info(input_name, elem_type, list(input_shape))],
        [helper.make_tensor_value_info(output_name, elem_type, None)],
        initializer=list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)


def single_op(op_type, input_shape, constants=(), *, data_position=0, opset=17, elem_type=DOUBLE, **attributes):
    """One node ``op_type`` reading the data at ``data_position`` among the named constant inputs.

    constants : sequence of (name, array) pairs, or None for an absent optional input.
    """
    names, initializers = [], []
    for entry in constants:
        if entry is None:
            names.append("")
            continue
        name, value = entry
        value = np.asarray(value)
        dtype = value.dtype if value.dtype.kind in "iub" else (np.float64 if elem_type == DOUBLE else np.float32)
        initializers.append(tensor(name, value, dtype))
        names.append(name)
    names.insert(data_position, "x")
    node = helper.make_node(op_type, names, ["y"], name=f"the_{op_type.lower()}", **attributes)
    return graph_model([node], input_shape, initializers, opset=opset, elem_type=elem_type)


def to_double(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` computing in float64: float initializers, constants, casts and I/O become double."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for index, init in enumerate(graph.initializer):
        if init.data_type == FLOAT:
            graph.initializer[index].CopyFrom(tensor(init.name, numpy_helper.to_array(init)))
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == FLOAT:
                attribute.t.CopyFrom(tensor(attribute.t.name, numpy_helper.to_array(attribute.t)))
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == FLOAT:
                attribute.i = DOUBLE
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == FLOAT:
            value.type.tensor_type.elem_type = DOUBLE
    return model


def to_float(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a float64 model computing in float32 (for ops onnxruntime lacks in double)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for index, init in enumerate(graph.initializer):
        if init.data_type == DOUBLE:
            graph.initializer[index].CopyFrom(tensor(init.name, numpy_helper.to_array(init), np.float32))
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == DOUBLE:
            value.type.tensor_type.elem_type = FLOAT
    return model


def needs_float32(model: onnx.ModelProto) -> bool:
    return any(node.op_type in FLOAT32_ONLY_OPS for node in model.graph.node)


def ort_forward(model: onnx.ModelProto, X: np.ndarray, per_sample_shape) -> np.ndarray:
    """Run ``model`` on each row of X (n, d) with onnxruntime, one sample at a time; returns (n, outputs).

    The sample is fed with a leading batch axis of 1 when the graph input has one more axis than
    ``per_sample_shape``. The feed dtype follows the graph input's element type.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # unused initializers in benchmark files are reported as warnings
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (feed,) = [i for i in session.get_inputs() if i.name not in {t.name for t in model.graph.initializer}]
    dtype = np.float64 if feed.type == "tensor(double)" else np.float32
    shape = tuple(per_sample_shape)
    if len(feed.shape) == len(shape) + 1:
        shape = (1, *shape)
    outputs = [session.run(None, {feed.name: x.reshape(shape).astype(dtype)})[0].reshape(-1) for x in X]
    return np.array(outputs, dtype=np.float64)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Max-norm error of ``actual`` relative to the largest entry of ``expected`` (at least 1e-300)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))
