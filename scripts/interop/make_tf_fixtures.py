#!/usr/bin/env python3
"""Regenerates interop/tests/fixtures/tflite/: small Keras MLPs converted to int8 .tflite by
the TF converter (the real producer), and LiteRT's outputs for fixed inputs.

    /work/venvs/tf/bin/python scripts/interop/make_tf_fixtures.py   # tensorflow + ai-edge-litert

Each NAME.tflite comes with NAME.txt, one line per sample:
    raw <u8 values>      the raw sample (x = raw * float32(1/255), our --normalization scale)
    input <i8 values>    the int8 input of the first FULLY_CONNECTED as LiteRT computed it
    logits <i8 values>   the int8 output of the last FULLY_CONNECTED (before any SOFTMAX)
LiteRT runs with the reference kernels (OpResolverType.BUILTIN_REF, what TFLite Micro
follows) and experimental_preserve_all_tensors, so intermediate tensors can be read.
For int8-input models, LiteRT is fed round(x / scale) + zero_point (rounding half away
from zero, as TfLiteRound), clamped, computed here in numpy float32.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import keras
import ai_edge_litert
from ai_edge_litert.interpreter import Interpreter, OpResolverType

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "interop", "tests", "fixtures", "tflite")
SAMPLES = 40


def build(shape, layers, seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape=shape, batch_size=1)
    x = inp
    if len(shape) > 1:
        x = keras.layers.Flatten()(x)
    for units, act in layers:
        x = keras.layers.Dense(units, activation=act)(x)
    model = keras.Model(inp, x)
    rng = np.random.default_rng(seed)
    # Non-zero biases so the int32 bias path is exercised.
    for layer in model.layers:
        w = layer.get_weights()
        if len(w) == 2:
            layer.set_weights([w[0], rng.normal(0, 0.3, w[1].shape).astype(np.float32)])
    return model


def convert(model, shape, int8_io, per_tensor, seed):
    rng = np.random.default_rng(seed + 1)

    def representative():
        for _ in range(100):
            raw = rng.integers(0, 256, (1,) + shape)
            yield [(raw.astype(np.float32) * np.float32(1 / 255)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    conv._experimental_disable_per_channel_quantization_for_dense_layers = per_tensor
    return conv.convert()


def tfl_round(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def run(content, shape, seed):
    it = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    ops = it._get_ops_details()
    fcs = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    first_in, last_out = fcs[0]["inputs"][0], fcs[-1]["outputs"][0]
    inp = it.get_input_details()[0]
    rng = np.random.default_rng(seed + 2)
    lines = []
    for s in range(SAMPLES):
        raw = rng.integers(0, 256, (1,) + shape)
        if s == 0:
            raw[:] = 0
        if s == 1:
            raw[:] = 255
        x = raw.astype(np.float32) * np.float32(1 / 255)
        if inp["dtype"] == np.int8:
            scale, zp = inp["quantization"]
            x = np.clip(tfl_round(x / np.float32(scale)) + zp, -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], x)
        it.invoke()
        q_in = it.get_tensor(first_in).reshape(-1)
        logits = it.get_tensor(last_out).reshape(-1)
        lines.append("raw " + " ".join(str(v) for v in raw.reshape(-1)))
        lines.append("input " + " ".join(str(v) for v in q_in))
        lines.append("logits " + " ".join(str(v) for v in logits))
    return ops, "\n".join(lines) + "\n"


# name: (input shape, [(units, activation)], int8 I/O, per-tensor dense weights)
FIXTURES = {
    "relu_per_channel_float_io": ((7,), [(5, "relu"), (3, None)], False, False),
    "relu_per_tensor_float_io": ((7,), [(5, "relu"), (3, None)], False, True),
    "softmax_per_channel_int8_io": ((3, 4), [(9, "relu"), (6, "relu"), (4, "softmax")], True, False),
    "softmax_per_tensor_int8_io": ((3, 4), [(9, "relu"), (6, "relu"), (4, "softmax")], True, True),
    "softmax_per_channel_float_io": ((13,), [(11, "relu"), (5, "softmax")], False, False),
    # Not importable: LOGISTIC after a FULLY_CONNECTED (the tests check the message).
    "sigmoid_hidden": ((5,), [(4, "sigmoid"), (2, None)], True, False),
    # Not importable: nine layers, one more than core's int8 models hold.
    "nine_layers": ((3,), [(3, "relu")] * 8 + [(2, None)], True, False),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    versions = f"tensorflow {tf.__version__}, keras {keras.__version__}, ai-edge-litert {ai_edge_litert.__version__ if hasattr(ai_edge_litert, '__version__') else '2.3.0'}, numpy {np.__version__}"
    print(versions)
    for i, (name, (shape, layers, int8_io, per_tensor)) in enumerate(FIXTURES.items()):
        seed = 100 + i
        model = build(shape, layers, seed)
        content = convert(model, shape, int8_io, per_tensor, seed)
        with open(os.path.join(OUT, name + ".tflite"), "wb") as f:
            f.write(content)
        ops, text = run(content, shape, seed)
        with open(os.path.join(OUT, name + ".txt"), "w") as f:
            f.write(f"# {name}: {versions}; LiteRT BUILTIN_REF outputs\n")
            f.write(text)
        print(name, len(content), "bytes:", " ".join(op["op_name"] for op in ops))
    # A convolution, for the unsupported-operator error.
    keras.utils.set_random_seed(7)
    inp = keras.Input(shape=(4, 4, 1), batch_size=1)
    x = keras.layers.Conv2D(2, 3)(inp)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(3)(x)
    conv_model = keras.Model(inp, x)
    content = convert(conv_model, (4, 4, 1), True, False, 7)
    with open(os.path.join(OUT, "conv2d.tflite"), "wb") as f:
        f.write(content)
    print("conv2d", len(content), "bytes")


if __name__ == "__main__":
    sys.exit(main())
