#!/usr/bin/env python3
"""Writes the safetensors fixtures of interop/tests/safetensors_torch.rs with the real
producer: `safetensors.torch.save_file` of a few nn.Sequential state_dicts (odd widths,
BatchNorm1d with trained running statistics, prefixed names, Flatten and Dropout shifting the
indices, F16 tensors, with and without metadata), and torch's own outputs for fixed inputs.

Run once, commit the output (a few KB):
    /work/venvs/torch/bin/python scripts/interop/make_torch_safetensors.py
Any torch with safetensors works; the versions used are recorded in expected.json.
"""
import json
import os
import sys

import safetensors
import torch
from safetensors.torch import save_file
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "interop", "tests", "fixtures", "safetensors")


class Wrapped(nn.Module):
    """A Sequential inside a module: its state_dict names carry the attribute's prefix
    (only its state_dict is used; the Sequential itself computes the outputs)."""

    def __init__(self, attr, seq):
        super().__init__()
        parts = attr.split(".")
        holder = self
        for p in parts[:-1]:
            setattr(holder, p, nn.Module())
            holder = getattr(holder, p)
        setattr(holder, parts[-1], seq)


def train_batch_norm(model, inputs):
    """A few train-mode passes so the running statistics are not the initial 0 and 1."""
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(inputs * 2.0 + 0.5)
    model.eval()


def main():
    torch.manual_seed(16)
    os.makedirs(OUT, exist_ok=True)
    cases = []

    # Odd widths, ReLU, no metadata: our reader assumes relu and says so.
    relu = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 4))
    cases.append(("relu_odd_widths", relu, relu.state_dict(), None, 7))

    # BatchNorm1d, Tanh, Dropout shifting the next index, under the prefix "net.".
    bn = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Dropout(0.1), nn.Linear(5, 3))
    with torch.no_grad():
        bn[1].weight.uniform_(0.5, 1.5)
        bn[1].bias.uniform_(-0.5, 0.5)
    train_batch_norm(bn, torch.randn(32, 6))
    cases.append(("batch_norm_tanh_prefixed", bn, Wrapped("net", bn).state_dict(), {"mlp.activation": "tanh"}, 6))

    # Flatten at index 0, GELU, names under "model.layers.".
    gelu = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 2))
    cases.append(("flatten_gelu_model_layers", gelu, Wrapped("model.layers", gelu).state_dict(),
                  {"mlp.activation": "gelu", "format": "pt"}, 4))

    # F16 tensors, LeakyReLU(0.1) named in the metadata; torch runs the half weights in f32.
    leaky = nn.Sequential(nn.Linear(5, 4), nn.LeakyReLU(0.1), nn.Linear(4, 3)).half().float()
    half = {k: v.half() for k, v in leaky.state_dict().items()}
    cases.append(("leaky_relu_f16", leaky, half, {"mlp.activation": "leaky_relu(0.1)"}, 5))

    expected = {
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "safetensors": safetensors.__version__},
        "cases": {},
    }
    for name, model, state, meta, inputs in cases:
        model.eval()
        path = os.path.join(OUT, name + ".safetensors")
        save_file({k: v.contiguous() for k, v in state.items()}, path, metadata=meta)
        x = torch.randn(3, inputs)
        with torch.no_grad():
            y = torch.softmax(model(x), dim=1)
        expected["cases"][name] = {
            "inputs": [[float(v) for v in row] for row in x.tolist()],
            "softmax_outputs": [[float(v) for v in row] for row in y.tolist()],
        }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    print("wrote", len(cases), "fixtures to", os.path.normpath(OUT), "with", expected["versions"])


if __name__ == "__main__":
    main()
