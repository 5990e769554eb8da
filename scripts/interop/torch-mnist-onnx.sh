#!/usr/bin/env bash
# PyTorch -> ONNX -> host, on MNIST: trains the tutorial MLP in PyTorch, exports it with
# torch.onnx.export (both exporters), imports each with `host import` and checks that
# `host eval` counts the same correct test images as PyTorch did.
#
#   scripts/interop/torch-mnist-onnx.sh [EPOCHS]
#
# Environment: MNIST_DIR (default ../shared/data/mnist), PYTHON (a python with torch and
# onnxscript; default .venv-torch/bin/python, which `pip install torch onnxscript` fills).
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs=${1:-2}
MNIST_DIR=$(realpath "${MNIST_DIR:-../shared/data/mnist}")
PY=${PYTHON:-.venv-torch/bin/python}
if ! "$PY" -c 'import torch, onnxscript' 2>/dev/null; then
    echo "torch-mnist-onnx: no python with torch and onnxscript at '$PY'; set PYTHON" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo build -q -p host
torch_says=$("$PY" scripts/interop/torch_mnist_onnx.py "$MNIST_DIR" "$tmp" "$epochs" 2>/dev/null | tail -n1)
echo "== PyTorch: $torch_says"
theirs=$(echo "$torch_says" | sed 's/.*"correct": \([0-9]*\).*/\1/')
status=0
for exporter in dynamo legacy; do
    echo "== $exporter exporter: host import, host eval"
    target/debug/host import "$tmp/$exporter.onnx" --out "$tmp/$exporter.mlp"
    ours=$(target/debug/host eval "$tmp/$exporter.mlp" --data "$MNIST_DIR" --json)
    mine=$(echo "$ours" | sed 's/.*"correct":\([0-9]*\).*/\1/')
    echo "== host eval: $mine / 10000 correct; PyTorch: $theirs / 10000"
    [ "$mine" = "$theirs" ] || { echo "torch-mnist-onnx: host eval and PyTorch disagree" >&2; status=1; }
done
exit $status
