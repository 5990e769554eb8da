#!/usr/bin/env python3
"""ONNX fixtures from the real producer, torch.onnx.export, for interop/tests/onnx_fixtures.rs.

Run once with a torch venv (never in CI: torch is a multi-GB download):

    /work/venvs/torch/bin/python scripts/interop/make_torch_fixtures.py

Generated with torch 2.15.0, onnx 1.23.2, onnxscript 0.7.2 (the script prints the versions it
ran with into each expected-output file). Each model NAME is written as
interop/tests/fixtures/onnx/NAME.onnx (tiny widths: a few KB) and NAME.json: torch's own outputs
(eval mode) for a few fixed inputs, which the Rust tests compare core's forward pass with.
Both exporters: the default (dynamo=True, opset 18+) and the TorchScript one (dynamo=False).
"""
import json
import os
import sys

import onnx
import onnxscript
import torch
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "interop", "tests", "fixtures", "onnx")


def bn(n):
    """BatchNorm1d with non-trivial eval statistics (a fresh one has mean 0, var 1)."""
    b = nn.BatchNorm1d(n)
    with torch.no_grad():
        b.running_mean.uniform_(-0.5, 0.5)
        b.running_var.uniform_(0.5, 2.0)
        b.weight.uniform_(0.5, 1.5)
        b.bias.uniform_(-0.3, 0.3)
    return b


def models():
    """(name, input shape without batch, model, exporter kwargs)."""
    return [
        # Flatten at the input, ReLU, Dropout, Softmax: the tutorial shape, both exporters.
        ("relu_softmax_dynamo", (1, 3, 3), nn.Sequential(nn.Flatten(), nn.Linear(9, 7), nn.ReLU(), nn.Dropout(0.2),
                                                         nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3), nn.Softmax(dim=1)), dict(dynamo=True)),
        ("relu_softmax_legacy", (1, 3, 3), nn.Sequential(nn.Flatten(), nn.Linear(9, 7), nn.ReLU(), nn.Dropout(0.2),
                                                         nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3), nn.Softmax(dim=1)), dict(dynamo=False, opset_version=13)),
        # Every other activation, logits at the end (no softmax).
        ("activations_logits_dynamo", (6,), nn.Sequential(nn.Linear(6, 7), nn.Sigmoid(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 5),
                                                          nn.LeakyReLU(0.03), nn.Linear(5, 4), nn.ELU(0.7), nn.Linear(4, 4), nn.GELU(),
                                                          nn.Linear(4, 3)), dict(dynamo=True)),
        ("activations_logits_legacy", (6,), nn.Sequential(nn.Linear(6, 7), nn.Sigmoid(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 5),
                                                          nn.LeakyReLU(0.03), nn.Linear(5, 4), nn.ELU(0.7), nn.Linear(4, 4), nn.GELU(),
                                                          nn.Linear(4, 3)), dict(dynamo=False, opset_version=17)),
        # BatchNorm1d in eval mode and LogSoftmax at the end.
        ("batchnorm_logsoftmax_dynamo", (8,), nn.Sequential(nn.Linear(8, 7), bn(7), nn.ReLU(), nn.Linear(7, 5), bn(5), nn.Tanh(),
                                                            nn.Linear(5, 3), nn.LogSoftmax(dim=1)), dict(dynamo=True)),
        ("batchnorm_logsoftmax_legacy", (8,), nn.Sequential(nn.Linear(8, 7), bn(7), nn.ReLU(), nn.Linear(7, 5), bn(5), nn.Tanh(),
                                                            nn.Linear(5, 3), nn.LogSoftmax(dim=1)), dict(dynamo=False, opset_version=14)),
    ]


def main():
    torch.manual_seed(16)
    os.makedirs(OUT, exist_ok=True)
    versions = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
                "python": sys.version.split()[0]}
    for name, shape, model, kwargs in models():
        model.eval()
        x = torch.randn(4, *shape)
        with torch.no_grad():
            y = model(x)
        path = os.path.join(OUT, name + ".onnx")
        dynamic = ({0: torch.export.Dim("batch")},) if kwargs["dynamo"] else None
        if kwargs["dynamo"]:
            torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["y"], dynamic_shapes=dynamic,
                              external_data=False, **kwargs)
        else:
            torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, **kwargs)
        m = onnx.load(path)
        ops = [n.op_type for n in m.graph.node]
        opset = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")][0]
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump({"generated_by": "scripts/interop/make_torch_fixtures.py", "versions": versions,
                       "exporter": "dynamo" if kwargs["dynamo"] else "torchscript", "opset": opset, "ops": ops,
                       "input_shape": list(x.shape), "inputs": x.flatten(1).tolist(), "outputs": y.tolist()}, f, indent=1)
        print(f"{name}: {os.path.getsize(path)} bytes, opset {opset}, ops {ops}")


if __name__ == "__main__":
    main()
