#!/usr/bin/env python3
"""Trains a Keras MLP on MNIST, converts it to an int8 .tflite with the TF converter
(representative dataset: training images), and prints LiteRT's test accuracy with the
reference kernels (OpResolverType.BUILTIN_REF). For scripts/import-keras.sh.

    keras_mnist_tflite.py MNIST_DIR OUT.tflite [EPOCHS]

Inputs are pixels * float32(1/255), what `host import --normalization scale` assumes. The
model is 784-128-10 (Dense relu, Dense softmax); the converter writes QUANTIZE,
FULLY_CONNECTED x2, SOFTMAX, DEQUANTIZE. Prints two LiteRT accuracies: the argmax of its
softmax output (int8 probabilities, ties go to the first class) and the argmax of the last
FULLY_CONNECTED's int8 logits, which is what host eval computes on the imported file.
"""
import gzip
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import keras
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main(mnist, out, epochs="3"):
    x_train = idx(os.path.join(mnist, "train-images-idx3-ubyte.gz")).reshape(-1, 784)
    y_train = idx(os.path.join(mnist, "train-labels-idx1-ubyte.gz"))
    x_test = idx(os.path.join(mnist, "t10k-images-idx3-ubyte.gz")).reshape(-1, 784)
    y_test = idx(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz"))
    scale = np.float32(1 / 255)
    f_train, f_test = x_train.astype(np.float32) * scale, x_test.astype(np.float32) * scale

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input(shape=(784,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(f_train, y_train, batch_size=128, epochs=int(epochs), verbose=2)
    _, keras_acc = model.evaluate(f_test, y_test, verbose=0)

    def representative():
        for i in range(0, 1000, 10):
            yield [f_train[i : i + 10]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    content = conv.convert()
    with open(out, "wb") as f:
        f.write(content)

    it = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], [len(f_test), 784])
    it.allocate_tensors()
    it.set_tensor(inp["index"], f_test)
    it.invoke()
    probs = it.get_tensor(it.get_output_details()[0]["index"])
    last_fc = [op for op in it._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"][-1]
    logits = it.get_tensor(last_fc["outputs"][0])
    ops = " ".join(op["op_name"] for op in it._get_ops_details())
    print(f"Keras f32 test accuracy: {100 * keras_acc:.2f}%")
    print(f"Wrote {out} ({len(content)} bytes): {ops}")
    print(f"LiteRT (BUILTIN_REF) test accuracy, argmax of its softmax output: {100 * np.mean(probs.argmax(1) == y_test):.2f}%")
    print(f"LiteRT (BUILTIN_REF) test accuracy, argmax of its int8 logits: {100 * np.mean(logits.argmax(1) == y_test):.2f}%")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
