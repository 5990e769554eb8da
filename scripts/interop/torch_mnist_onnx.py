#!/usr/bin/env python3
"""The PyTorch half of the PyTorch -> ONNX -> host flow (scripts/interop/torch-mnist-onnx.sh):
trains the tutorial MLP (Flatten, Linear(784, 256), ReLU, Linear(256, 10); Adam 1e-3, batch
256, inputs pixels / 255 as torchvision's ToTensor) on MNIST, exports it with both of
torch.onnx.export's exporters to OUT_DIR/dynamo.onnx and OUT_DIR/legacy.onnx, and prints
torch's own test result as JSON on its last line.

    python scripts/interop/torch_mnist_onnx.py MNIST_DIR OUT_DIR [EPOCHS]

Needs torch (and onnxscript for the default dynamo exporter); not run in CI.
"""
import gzip
import json
import os
import sys

import numpy as np
import torch
from torch import nn


def idx(mnist_dir, name):
    path = os.path.join(mnist_dir, name)
    data = open(path, "rb").read() if os.path.exists(path) else gzip.open(path + ".gz").read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def images(mnist_dir, split):
    x = torch.from_numpy(idx(mnist_dir, f"{split}-images-idx3-ubyte").astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(idx(mnist_dir, f"{split}-labels-idx1-ubyte").astype(np.int64))
    return x, y


def main():
    mnist_dir, out = sys.argv[1], sys.argv[2]
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    torch.manual_seed(0)
    (x, y), (xt, yt) = images(mnist_dir, "train"), images(mnist_dir, "t10k")
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 256):
            b = perm[i:i + 256]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        correct = int((model(xt).argmax(1) == yt).sum())
    sample = xt[:2]
    torch.onnx.export(model, (sample,), os.path.join(out, "dynamo.onnx"), dynamo=True, external_data=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.onnx.export(model, (sample,), os.path.join(out, "legacy.onnx"), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    print(json.dumps({"torch": torch.__version__, "epochs": epochs, "correct": correct, "samples": len(yt)}))


if __name__ == "__main__":
    main()
