#!/usr/bin/env bash
# Our CPU trainer and inference against PyTorch's, on this machine, in one run.
#
#   scripts/compare-pytorch.sh [--install] [--epochs N] [--threads N]
#
# Trains the tutorial recipe (784-256-10, ReLU, Adam 1e-3, batch 256, cross-entropy) with
# `host train --recipe tutorial` and with ../shared/reference/torch_mlp.py (data preloaded
# as tensors), measures f32 inference (batch 1 and the 10,000 test images) with our
# criterion bench and PyTorch's, and prints a table with the ratios.
#
# Environment: MNIST_DIR (default ../shared/data/mnist), VENV (default .venv-torch: the
# virtualenv with torch; --install creates it with pip), PYTHON (a python with torch, instead
# of the venv), TORCH_REF (default ../shared/reference/torch_mlp.py).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
install=0
epochs=10
threads=$(nproc)
while [ $# -gt 0 ]; do
    case "$1" in
        --install) install=1 ;;
        --epochs) epochs=${2:?--epochs needs a number}; shift ;;
        --threads) threads=${2:?--threads needs a number}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare-pytorch: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

MNIST_DIR=$(realpath "${MNIST_DIR:-../shared/data/mnist}")
TORCH_REF=${TORCH_REF:-../shared/reference/torch_mlp.py}
VENV=${VENV:-.venv-torch}
if [ ! -f "$MNIST_DIR/train-images-idx3-ubyte.gz" ]; then
    echo "compare-pytorch: MNIST not found in $MNIST_DIR; set MNIST_DIR" >&2
    exit 1
fi
if [ ! -f "$TORCH_REF" ]; then
    echo "compare-pytorch: the PyTorch reference $TORCH_REF is missing; set TORCH_REF" >&2
    exit 1
fi
if [ "$install" = 1 ] && [ ! -x "$VENV/bin/python" ]; then
    echo "== installing torch and numpy into $VENV (pip)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet torch numpy
fi
PY=${PYTHON:-$VENV/bin/python}
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
    echo "compare-pytorch: no python with torch at '$PY'; run with --install, or set PYTHON or VENV" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export MNIST_DIR RAYON_NUM_THREADS=$threads MATMUL_NUM_THREADS=$threads

echo "== building (release)"
cargo build --release -q -p host
echo "== ours: host train --recipe tutorial --epochs $epochs ($threads threads)"
target/release/host train --recipe tutorial --epochs "$epochs" --no-plots -q \
    --out "$tmp/model.mlp" --metrics "$tmp/ours.json" >/dev/null
echo "== ours: f32 inference (criterion: f32_inference/prepared, what host eval and predict use)"
cargo bench -q -p benches --bench cpu -- 'f32_inference/prepared' 2>/dev/null >"$tmp/bench.txt"
echo "== PyTorch $("$PY" -c 'import torch; print(torch.__version__)'): $TORCH_REF --threads $threads --epochs $epochs"
"$PY" "$TORCH_REF" --data "$MNIST_DIR" --threads "$threads" --epochs "$epochs" >"$tmp/torch.txt"

python3 - "$tmp" "$threads" <<'EOF'
import json, re, statistics, sys, platform
tmp, threads = sys.argv[1], sys.argv[2]
ours = json.load(open(f"{tmp}/ours.json"))
secs = [e["seconds"] for e in ours["epochs"]]
ours_epoch, ours_acc = statistics.median(secs), ours["epochs"][-1]["test_accuracy"]
torch = json.loads(open(f"{tmp}/torch.txt").read().strip().splitlines()[-1])
bench = open(f"{tmp}/bench.txt").read()

def criterion(name, field):
    m = re.search(re.escape(name) + r"\s+time:\s+\[[^\]]*\]\s*\n?\s*thrpt:\s+\[([^\]]*)\]", bench) if field == "thrpt" \
        else re.search(re.escape(name) + r"\s+time:\s+\[([^\]]*)\]", bench)
    if not m:
        sys.exit(f"compare-pytorch: no '{name}' result in the criterion output:\n{bench}")
    value, unit = m.group(1).split()[2:4]
    scale = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6,
             "elem/s": 1.0, "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9}[unit]
    return float(value) * scale

ours_single = criterion("f32_inference/prepared/1", "time")
ours_batch = criterion("f32_inference/prepared/10000", "thrpt")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print(f"\nmachine: {cpu}, {threads} threads; tutorial recipe, {len(secs)} epochs\n")
print(f"| measure | ours | PyTorch {torch.get('threads', threads)} threads | ratio |")
print("|---|---|---|---|")
print(f"| epoch time (median) | {ours_epoch:.3f} s | {torch['epoch_s_median']:.3f} s | {torch['epoch_s_median'] / ours_epoch:.2f}x faster |")
print(f"| test accuracy after {len(secs)} epochs | {ours_acc * 100:.2f}% | {torch['test_acc'] * 100:.2f}% | |")
print(f"| f32 inference, 1 sample | {ours_single:.1f} us | {torch['infer_single_us']:.1f} us | {torch['infer_single_us'] / ours_single:.2f}x faster |")
print(f"| f32 inference, 10,000 images | {ours_batch / 1e6:.2f} M samples/s | {torch['infer_batch_samples_per_s'] / 1e6:.2f} M samples/s | {ours_batch / torch['infer_batch_samples_per_s']:.2f}x faster |")
EOF
