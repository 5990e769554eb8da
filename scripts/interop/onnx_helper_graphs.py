#!/usr/bin/env python3
"""ONNX graphs built with onnx.helper, covering every op `host import` reads (odd widths, batch
norm kept and folded, both GELU forms, Flatten/Reshape at the input), with onnxruntime's outputs
for a few fixed inputs. host/tests/interop_onnx.rs imports each and compares core's outputs.

    python scripts/interop/onnx_helper_graphs.py OUT_DIR

Writes OUT_DIR/NAME.onnx (matmul_add_batchnorm with its weights in NAME.weights, external data)
and OUT_DIR/NAME.json ({"kind": probabilities | log_probabilities |
logits, "inputs": [...], "outputs": [...]}), and prints the names. Needs onnx, onnxruntime, numpy
(scripts/interop-venv.sh).
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(16)
# The graph saved with its initializers in an external data file.
EXTERNAL = "matmul_add_batchnorm"


def weights(name, *shape):
    return numpy_helper.from_array(rng.normal(0, 0.6, shape).astype(np.float32), name)


def positive(name, n):
    return numpy_helper.from_array(rng.uniform(0.4, 2.0, n).astype(np.float32), name)


def const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.float32), name))


def bn(prefix, n, x, y, eps):
    init = [positive(prefix + ".g", n), weights(prefix + ".b", n), weights(prefix + ".m", n), positive(prefix + ".v", n)]
    node = helper.make_node("BatchNormalization", [x] + [t.name for t in init], [y], epsilon=eps)
    return node, init


def graphs():
    """(name, opset, input shape without batch, nodes, initializers, output kind)."""
    out = []
    # Flatten, Gemm with transB=0 and alpha/beta, Dropout (ratio, training_mode false), Identity, Sigmoid, Softmax(axis=1).
    init = [weights("w1", 6, 5), weights("b1", 1, 5), weights("w2", 4, 5), weights("b2", 4), weights("w3", 3, 4),
            weights("b3", 3), numpy_helper.from_array(np.array(0.25, np.float32), "ratio"),
            numpy_helper.from_array(np.array(False), "training")]
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w1", "b1"], ["h1"], alpha=0.5, beta=2.0, transB=0, name="fc1"),
             helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("Dropout", ["a1", "ratio", "training"], ["d1"], name="drop"),
             helper.make_node("Gemm", ["d1", "w2", "b2"], ["h2"], transB=1),
             helper.make_node("Identity", ["h2"], ["i2"]),
             helper.make_node("Sigmoid", ["i2"], ["a2"]),
             helper.make_node("Gemm", ["a2", "w3", "b3"], ["h3"], transB=1),
             helper.make_node("Softmax", ["h3"], ["y"], axis=1)]
    out.append(("gemm_flatten_dropout", 13, (1, 2, 3), nodes, init, "probabilities"))
    # MatMul + Add (either operand order), batch norm with core's epsilon (kept) and another (folded),
    # Tanh, LeakyRelu, LogSoftmax.
    bn1, i1 = bn("bn1", 5, "s1", "n1", 1e-5)
    bn2, i2 = bn("bn2", 4, "s2", "n2", 1e-3)
    init = [weights("w1", 7, 5), weights("b1", 5), weights("w2", 5, 4), weights("b2", 4), weights("w3", 3, 4),
            weights("b3", 3)] + i1 + i2
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["b1", "m1"], ["s1"]), bn1,
             helper.make_node("Tanh", ["n1"], ["a1"]),
             helper.make_node("MatMul", ["a1", "w2"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["s2"]), bn2,
             helper.make_node("LeakyRelu", ["n2"], ["a2"], alpha=0.2),
             helper.make_node("Gemm", ["a2", "w3", "b3"], ["h3"], transB=1),
             helper.make_node("LogSoftmax", ["h3"], ["y"], axis=-1)]
    out.append(("matmul_add_batchnorm", 15, (7,), nodes, init, "log_probabilities"))
    # Gelu (opset 20's op), Elu, the Erf decomposition of GELU, logits out.
    init = [weights("w1", 5, 5), weights("b1", 5), weights("w2", 3, 5), weights("b2", 3), weights("w3", 4, 3),
            weights("b3", 4), weights("w4", 2, 4), weights("b4", 2)]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], transB=1),
             helper.make_node("Gelu", ["h1"], ["a1"]),
             helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], transB=1),
             helper.make_node("Elu", ["h2"], ["a2"], alpha=0.4),
             helper.make_node("Gemm", ["a2", "w3", "b3"], ["h3"], transB=1),
             const("sqrt2", 1.4142135381698608), helper.make_node("Div", ["h3", "sqrt2"], ["g1"]),
             helper.make_node("Erf", ["g1"], ["g2"]), const("one", 1.0), helper.make_node("Add", ["g2", "one"], ["g3"]),
             helper.make_node("Mul", ["h3", "g3"], ["g4"]), const("half", 0.5),
             helper.make_node("Mul", ["g4", "half"], ["a3"]),
             helper.make_node("Gemm", ["a3", "w4", "b4"], ["y"], transB=1)]
    out.append(("gelu_elu_logits", 20, (5,), nodes, init, "logits"))
    # Reshape at the input, Relu, Softmax (default axis).
    init = [numpy_helper.from_array(np.array([-1, 9], np.int64), "shape"), weights("w1", 3, 9), weights("b1", 3),
            weights("w2", 2, 3), weights("b2", 2)]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Gemm", ["r", "w1", "b1"], ["h1"], transB=1), helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], transB=1), helper.make_node("Softmax", ["h2"], ["y"])]
    out.append(("reshape_relu_softmax", 18, (3, 3), nodes, init, "probabilities"))
    return out


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for name, opset, shape, nodes, init, kind in graphs():
        x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])
        y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", None])
        graph = helper.make_graph(nodes, name, [x_info], [y_info], init)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnx.helper")
        onnx.checker.check_model(model, full_check=True)
        path = os.path.join(out_dir, name + ".onnx")
        if name == EXTERNAL:
            # Weights in a file beside the model, as torch.onnx.export(..., external_data=True) writes.
            onnx.save(model, path, save_as_external_data=True, location=name + ".weights", size_threshold=0)
        else:
            onnx.save(model, path)
        x = rng.normal(0, 1.5, (5, *shape)).astype(np.float32)
        y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        with open(os.path.join(out_dir, name + ".json"), "w") as f:
            json.dump({"kind": kind, "inputs": x.reshape(5, -1).tolist(), "outputs": y.tolist()}, f)
        print(name)


if __name__ == "__main__":
    main()
