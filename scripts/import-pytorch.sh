#!/usr/bin/env bash
# A PyTorch MNIST MLP through host import to int8 and the firmware, in one run.
#
#   scripts/import-pytorch.sh [--install] [--epochs N] [--firmware] [--skip-onnx]
#
# Trains PyTorch's tutorial MLP (nn.Sequential(Linear(784, 256), ReLU(), Linear(256, 10)),
# Adam 1e-3, batch 256, cross-entropy, inputs pixels / 255 as ToTensor makes them) and
# prints PyTorch's own test accuracy; saves it with safetensors.torch.save_file (a bare
# state_dict, no metadata: what users have) and torch.onnx.export; `host import`s both and
# `host eval`s both on the 10,000 test images, failing unless each gets exactly PyTorch's
# number of correct predictions; then `host quantize` (int8) and `host eval` of it, and
# `host export --format rust`. With --firmware, the int8 model runs in QEMU (Cortex-M4) and
# every image's int8 logits must equal the host's. --skip-onnx leaves the ONNX half out.
#
# Environment: MNIST_DIR (default ../shared/data/mnist), VENV (default /work/venvs/torch if
# it exists, else .venv-torch; --install creates it with pip), PYTHON (a python with torch
# and safetensors, instead of the venv), OUT (default target/import-pytorch: kept files).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
install=0
epochs=2
firmware=0
onnx=1
while [ $# -gt 0 ]; do
    case "$1" in
        --install) install=1 ;;
        --epochs) epochs=${2:?--epochs needs a number}; shift ;;
        --firmware) firmware=1 ;;
        --skip-onnx) onnx=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "import-pytorch: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

MNIST_DIR=$(realpath "${MNIST_DIR:-../shared/data/mnist}")
if [ -d /work/venvs/torch ]; then VENV=${VENV:-/work/venvs/torch}; else VENV=${VENV:-.venv-torch}; fi
OUT=${OUT:-target/import-pytorch}
if [ ! -f "$MNIST_DIR/train-images-idx3-ubyte.gz" ] && [ ! -f "$MNIST_DIR/train-images-idx3-ubyte" ]; then
    echo "import-pytorch: MNIST not found in $MNIST_DIR; set MNIST_DIR (host download fetches it)" >&2
    exit 1
fi
if [ "$install" = 1 ] && [ ! -x "$VENV/bin/python" ]; then
    echo "== installing torch, safetensors, onnx, onnxscript and numpy into $VENV (pip)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet torch safetensors onnx onnxscript numpy
fi
PY=${PYTHON:-$VENV/bin/python}
if ! "$PY" -c 'import torch, safetensors, numpy' 2>/dev/null; then
    echo "import-pytorch: no python with torch and safetensors at '$PY'; run with --install, or set PYTHON or VENV" >&2
    exit 1
fi
mkdir -p "$OUT"
export MNIST_DIR

echo "== building host"
cargo build -q -p host
host=target/debug/host

echo "== PyTorch $("$PY" -c 'import torch; print(torch.__version__)'): the tutorial MLP, $epochs epochs"
"$PY" - "$MNIST_DIR" "$OUT" "$epochs" "$onnx" <<'PYEOF'
import gzip, json, logging, os, sys, time

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

mnist, out, epochs, onnx = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" and such


def idx(name):
    path = os.path.join(mnist, name)
    opener = gzip.open if os.path.exists(path + ".gz") else open
    with opener(path + ".gz" if os.path.exists(path + ".gz") else path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def pixels(split):
    # ToTensor: pixels / 255 as float32.
    return torch.tensor(idx(f"{split}-images-idx3-ubyte").reshape(-1, 784), dtype=torch.float32) / 255.0


x_train, y_train = pixels("train"), torch.tensor(idx("train-labels-idx1-ubyte"), dtype=torch.long)
x_test, y_test = pixels("t10k"), torch.tensor(idx("t10k-labels-idx1-ubyte"), dtype=torch.long)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
for epoch in range(epochs):
    start = time.time()
    model.train()
    for i in torch.randperm(len(x_train)).split(256):
        opt.zero_grad()
        loss_fn(model(x_train[i]), y_train[i]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        correct = int((model(x_test).argmax(1) == y_test).sum())
    print(f"   epoch {epoch + 1}: test accuracy {100 * correct / len(y_test):.2f}% ({correct} correct), "
          f"{time.time() - start:.1f} s")
save_file(model.state_dict(), os.path.join(out, "mnist.safetensors"))
if onnx:
    torch.onnx.export(model, (x_test[:1],), os.path.join(out, "mnist.onnx"), input_names=["pixels"],
                      output_names=["logits"], dynamo=True, external_data=False, verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
with open(os.path.join(out, "torch.json"), "w") as f:
    json.dump({"correct": correct, "samples": len(y_test)}, f)
PYEOF
torch_correct=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["correct"])' "$OUT/torch.json")

formats=(safetensors)
[ "$onnx" = 1 ] && formats+=(onnx)
for f in "${formats[@]}"; do
    echo "== host import $OUT/mnist.$f"
    $host import "$OUT/mnist.$f" --out "$OUT/from_$f.mlp" | sed 's/^/   /'
    json=$($host eval "$OUT/from_$f.mlp" --json)
    correct=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["correct"])')
    echo "   host eval: $correct correct of 10000; PyTorch: $torch_correct"
    if [ "$correct" != "$torch_correct" ]; then
        echo "import-pytorch: host eval of the $f import ($correct) differs from PyTorch ($torch_correct)" >&2
        exit 1
    fi
done

echo "== host quantize (int8, calibrated on 1,000 training images) and host eval"
$host quantize "$OUT/from_safetensors.mlp" --out "$OUT/int8.mlp" | sed 's/^/   /'
$host eval "$OUT/int8.mlp" | head -2 | sed 's/^/   /'

echo "== host export --format rust"
if [ "$firmware" = 1 ]; then
    $host export "$OUT/int8.mlp" --format rust --out firmware/generated/model.rs --images 100 --train-images 300 \
        | sed 's/^/   /'
    echo "== firmware: the int8 model on a Cortex-M4 in QEMU"
    (cd firmware && timeout 300 cargo run -q --release) >"$OUT/firmware.log" 2>&1 \
        || { tail -20 "$OUT/firmware.log" >&2; echo "import-pytorch: the firmware run failed" >&2; exit 1; }
    grep -v '^image ' "$OUT/firmware.log" | sed 's/^/   /'
    if ! diff <(grep '^image ' "$OUT/firmware.log") firmware/generated/model_images.expected.txt >"$OUT/firmware.diff"; then
        head -20 "$OUT/firmware.diff" >&2
        echo "import-pytorch: the device's per-image outputs differ from the host's" >&2
        exit 1
    fi
    echo "   every image's int8 logits on the device identical to the host's ($(wc -l <firmware/generated/model_images.expected.txt) images)"
else
    $host export "$OUT/int8.mlp" --format rust --out "$OUT/model.rs" | sed 's/^/   /'
    echo "   (--firmware runs it in QEMU)"
fi
