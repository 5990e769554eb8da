#!/usr/bin/env python3
"""Runs a .tflite model in LiteRT with the reference kernels (OpResolverType.BUILTIN_REF,
what TFLite Micro follows) on a batch, for host/tests/interop_tflite.rs.

    run_tflite.py MODEL.tflite INPUTS.bin N OUTPUTS.bin

INPUTS.bin: N rows of the model's input, row-major, in the input tensor's dtype (int8 for
our exports); OUTPUTS.bin: the N rows of output 0, in its dtype. Prints LiteRT's version.
"""
import sys

import numpy as np
import ai_edge_litert
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def main(model, inputs, n, outputs):
    n = int(n)
    it = Interpreter(model_path=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    inp = it.get_input_details()[0]
    width = int(np.prod(inp["shape"][1:]))
    it.resize_tensor_input(inp["index"], [n, width])
    it.allocate_tensors()
    x = np.fromfile(inputs, dtype=inp["dtype"]).reshape(n, width)
    it.set_tensor(inp["index"], x)
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"])
    out.tofile(outputs)
    print(f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}: {n} rows, output {out.shape} {out.dtype}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
