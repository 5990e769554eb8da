#!/usr/bin/env python3
"""Runs an ONNX model `host export --format onnx` wrote on the 10,000 MNIST test images with
onnxruntime, normalizing the pixels as the file's metadata says (x * mlp.input_scale +
mlp.input_offset, float32).

    python scripts/interop/onnx_mnist.py MODEL.onnx MNIST_DIR LOGITS_OUT

Writes the "logits" output (10000 x classes, float32 little-endian) to LOGITS_OUT and prints
one JSON object: correct (argmax of "probabilities" against the labels), confusion
(rows: true class, columns: predicted) and predictions. Needs onnx, onnxruntime, numpy.
"""
import gzip
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def idx(mnist_dir, name):
    """An IDX file, raw or gzipped, as a numpy array."""
    path = os.path.join(mnist_dir, name)
    data = open(path, "rb").read() if os.path.exists(path) else gzip.open(path + ".gz").read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    model_path, mnist_dir, logits_out = sys.argv[1:4]
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)  # a valid ONNX model, shapes inferred
    meta = {p.key: p.value for p in model.metadata_props}
    scale = np.array(json.loads(meta["mlp.input_scale"]), np.float32)
    offset = np.array(json.loads(meta["mlp.input_offset"]), np.float32)
    images = idx(mnist_dir, "t10k-images-idx3-ubyte").reshape(-1, 784).astype(np.float32)
    labels = idx(mnist_dir, "t10k-labels-idx1-ubyte").astype(np.int64)
    x = images * scale + offset
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(["logits", "probabilities"], {"input": x})
    logits.astype("<f4").tofile(logits_out)
    predictions = probabilities.argmax(axis=1)
    classes = probabilities.shape[1]
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    print(json.dumps({"correct": int((predictions == labels).sum()), "confusion": confusion.tolist(),
                      "predictions": predictions.tolist()}))


if __name__ == "__main__":
    main()
