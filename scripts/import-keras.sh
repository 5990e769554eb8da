#!/usr/bin/env bash
# Keras -> int8 .tflite -> host import -> host eval (-> the Cortex-M firmware in QEMU),
# checked against LiteRT.
#
#   scripts/import-keras.sh [--install] [--firmware] [--epochs N]
#
# Trains a 784-128-10 Keras MLP on MNIST, converts it with the TF converter (int8, a
# representative dataset of training images) and prints LiteRT's test accuracy with the
# reference kernels (scripts/interop/keras_mnist_tflite.py); then `host import`s the .tflite
# and checks that `host eval` gives the same accuracy. With --firmware, also exports the
# imported model with `host export --format rust --images 100` into firmware/generated/
# (replacing what is there), runs the int8 firmware in QEMU and checks that every image's
# int8 logits are the host's, as scripts/firmware-check.sh does.
#
# Environment: MNIST_DIR (default ../shared/data/mnist), VENV (default .venv-tf: a virtualenv
# with tensorflow and ai-edge-litert; --install creates it with pip), PYTHON (a python with
# both, instead of the venv), HOST (a host binary to use instead of building the release one).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }
install=0
firmware=0
epochs=3
while [ $# -gt 0 ]; do
    case "$1" in
        --install) install=1 ;;
        --firmware) firmware=1 ;;
        --epochs) epochs=${2:?--epochs needs a number}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "import-keras: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

MNIST_DIR=$(realpath "${MNIST_DIR:-../shared/data/mnist}")
VENV=${VENV:-.venv-tf}
if [ ! -f "$MNIST_DIR/train-images-idx3-ubyte.gz" ]; then
    echo "import-keras: MNIST not found in $MNIST_DIR; set MNIST_DIR" >&2
    exit 1
fi
if [ "$install" = 1 ] && [ ! -x "$VENV/bin/python" ]; then
    echo "== installing tensorflow and ai-edge-litert into $VENV (pip)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet tensorflow==2.21.0 ai-edge-litert==2.3.0
fi
PY=${PYTHON:-$VENV/bin/python}
if ! "$PY" -c 'import tensorflow, ai_edge_litert' 2>/dev/null; then
    echo "import-keras: no python with tensorflow and ai-edge-litert at '$PY'; run with --install, or set PYTHON or VENV" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

host=${HOST:-target/release/host}
if [ -z "${HOST:-}" ]; then
    echo "== building host (release)"
    cargo build --release -q -p host
fi

echo "== Keras: train $epochs epochs, convert to int8 .tflite, LiteRT (BUILTIN_REF) on the 10,000 test images"
TF_CPP_MIN_LOG_LEVEL=3 "$PY" scripts/interop/keras_mnist_tflite.py "$MNIST_DIR" "$tmp/keras.tflite" "$epochs" \
    >"$tmp/keras.txt" 2>"$tmp/tf.log" || { tail -20 "$tmp/keras.txt" "$tmp/tf.log" >&2; exit 1; }
# TF's own log lines (the SavedModel it writes on the way) left out.
grep -E '^(Epoch|[0-9]+/[0-9]+ |Keras|Wrote|LiteRT)' "$tmp/keras.txt" | sed 's/^/   /'
litert=$(sed -n 's/.*argmax of its int8 logits: \([0-9.]*\)%.*/\1/p' "$tmp/keras.txt")

echo "== host import keras.tflite; host eval"
"$host" import "$tmp/keras.tflite" --out "$tmp/keras.mlp"
"$host" eval "$tmp/keras.mlp" --data "$MNIST_DIR" | tee "$tmp/eval.txt" | head -2
ours=$(sed -n 's/^accuracy \([0-9.]*\)%.*/\1/p' "$tmp/eval.txt")
if [ "$ours" != "$litert" ]; then
    echo "import-keras: host eval gives $ours%, LiteRT $litert%" >&2
    exit 1
fi
echo "   host eval $ours% = LiteRT $litert%"

if [ "$firmware" = 1 ]; then
    echo "== host export --format rust --images 100; the int8 firmware in QEMU"
    "$host" export "$tmp/keras.mlp" --format rust --out firmware/generated/model.rs --images 100 --data "$MNIST_DIR"
    (cd firmware && timeout 600 cargo run -q --release) >"$tmp/firmware.log" 2>&1 || {
        tail -20 "$tmp/firmware.log" >&2
        echo "import-keras: the firmware did not run in QEMU" >&2
        exit 1
    }
    grep -v '^image ' "$tmp/firmware.log" | sed 's/^/   /'
    expected=firmware/generated/model_images.expected.txt
    if ! diff <(grep '^image ' "$tmp/firmware.log") "$expected" >"$tmp/firmware.diff"; then
        head -20 "$tmp/firmware.diff" >&2
        echo "import-keras: the firmware's per-image outputs differ from the host's ($expected)" >&2
        exit 1
    fi
    echo "   firmware: every image's int8 logits identical to the host's ($(wc -l <"$expected") images)"
fi
