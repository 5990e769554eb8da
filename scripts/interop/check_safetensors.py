#!/usr/bin/env python3
"""Reads a .safetensors file the way PyTorch users would, for host/tests/interop_safetensors.rs.

    check_safetensors.py FILE [INPUTS.json]

Prints one JSON object:
  tensors:    {name: {dtype, shape, values}} from safetensors.numpy.load_file (no torch needed);
  metadata:   the header's metadata, and `parsed`, its mlp.* values decoded as Python decodes
              them (json.loads for arrays and class names, floats for numbers);
  sequential: the state_dict names and shapes that `mlp.sequential`'s nn.Sequential would
              have, found by evaluating the expression with stand-in modules that number
              themselves as nn.Sequential does (what load_state_dict(strict=True) compares);
  torch:      with torch installed (never in CI), the real thing: the nn.Sequential built from
              mlp.sequential, load_state_dict(strict=True) of safetensors.torch.load_file, and
              its eval-mode outputs for the rows of INPUTS.json; else null.
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


class Module:
    """A stand-in for a torch.nn module: the state_dict entries it would own."""

    def __init__(self, params):
        self.params = params


class StandInNN:
    """The few torch.nn constructors mlp.sequential uses, without torch."""

    @staticmethod
    def Linear(n_in, n_out):
        return Module([("weight", [n_out, n_in], "F32"), ("bias", [n_out], "F32")])

    @staticmethod
    def BatchNorm1d(n):
        return Module([("weight", [n], "F32"), ("bias", [n], "F32"), ("running_mean", [n], "F32"),
                       ("running_var", [n], "F32"), ("num_batches_tracked", [], "I64")])

    @staticmethod
    def Sequential(*modules):
        return {f"{i}.{name}": {"shape": shape, "dtype": dtype}
                for i, m in enumerate(modules) for name, shape, dtype in m.params}

    def __getattr__(self, name):
        # Activations, Softmax, Identity: parameterless modules.
        return lambda *args, **kwargs: Module([])


def parse(meta):
    out = {}
    for key in ("mlp.input_scale", "mlp.input_offset", "mlp.classes"):
        if key in meta:
            out[key] = json.loads(meta[key])
    if "mlp.topology" in meta:
        out["mlp.topology"] = [int(w) for w in meta["mlp.topology"].split("-")]
    return out


def with_torch(path, meta, inputs):
    try:
        import torch
        from safetensors.torch import load_file as torch_load
        from torch import nn
    except ImportError:
        return None
    model = eval(meta["mlp.sequential"], {"nn": nn})
    model.load_state_dict(torch_load(path), strict=True)
    model.eval()
    with torch.no_grad():
        y = model(torch.tensor(inputs, dtype=torch.float32))
    return {"version": torch.__version__, "outputs": y.tolist()}


def main():
    path = sys.argv[1]
    inputs = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else None
    arrays = load_file(path)
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
    tensors = {}
    for name, a in arrays.items():
        dtype = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}.get(a.dtype, str(a.dtype))
        values = [float(v) for v in a.reshape(-1)] if a.dtype == np.float32 else [int(v) for v in a.reshape(-1)]
        tensors[name] = {"dtype": dtype, "shape": list(a.shape), "values": values}
    result = {
        "tensors": tensors,
        "metadata": meta,
        "parsed": parse(meta),
        "sequential": eval(meta["mlp.sequential"], {"nn": StandInNN()}),
        "torch": with_torch(path, meta, inputs) if inputs is not None else None,
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
