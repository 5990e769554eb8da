#!/usr/bin/env bash
# Post-training quantization (PTQ) against quantization-aware training (QAT) for the small
# networks of tiny parts: 784-32-10 and 784-16-10, sigmoid and ReLU, on MNIST.
#
#   scripts/qat-compare.sh [--epochs N] [--seed S] [--networks "32:sigmoid 16,16:relu ..."]
#
# --networks: hidden widths and activation per network (default: 32 and 16, sigmoid and relu).
# For each network: `host train` then `host quantize` (PTQ), and `host train --qat` (the last
# third of the epochs quantization-aware) then `host quantize` (QAT), same seed and epochs
# (the tutorial recipe otherwise: Adam 1e-3, batch 256). Prints a Markdown table of the
# test accuracies (f32 and int8 of each), the int8 models' test loss, and how many of the
# 10,000 test predictions the int8 model changes from its own f32 model's (the most direct
# measure of how close int8 stays to f32). Environment: MNIST_DIR (default
# ../shared/data/mnist), HOST (default target/release/host, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

epochs=12
seed=777
networks="32:sigmoid 32:relu 16:sigmoid 16:relu"
while [ $# -gt 0 ]; do
    case "$1" in
        --epochs) epochs=${2:?--epochs needs a number}; shift ;;
        --seed) seed=${2:?--seed needs a number}; shift ;;
        --networks) networks=${2:?--networks needs a list, e.g. "8:relu 16,16:relu"}; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "qat-compare: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
export MNIST_DIR=${MNIST_DIR:-../shared/data/mnist}
host=${HOST:-target/release/host}
[ -x "$host" ] || cargo build --release -p host
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# "F32% INT8% CHANGED (INT8_LOSS)": test accuracies and changed predictions of `host quantize
# --json`, then the int8 model's test loss.
accuracies() {
    local acc
    acc=$("$host" quantize "$1" --out "$work/q8.mlp" --force --json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f%% %.2f%% %d" % (100*d["f32_accuracy"], 100*d["int8_accuracy"], d["changed_predictions"]))')
    echo "$acc ($("$host" eval "$work/q8.mlp" --json | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["loss"])'))"
}

echo "| network | f32 (PTQ run) | int8 PTQ (test loss) | changed by PTQ | f32 (QAT run) | int8 QAT (test loss) | changed by QAT |"
echo "|---|---|---|---|---|---|---|"
for network in $networks; do
    hidden=${network%%:*}
    act=${network#*:}
    common=(train --hidden "$hidden" --activation "$act" --epochs "$epochs" --seed "$seed" -q --no-plots)
    "$host" "${common[@]}" --out "$work/ptq.mlp" > /dev/null
    "$host" "${common[@]}" --qat --out "$work/qat.mlp" > /dev/null
    read -r f_ptq q_ptq c_ptq l_ptq < <(accuracies "$work/ptq.mlp")
    read -r f_qat q_qat c_qat l_qat < <(accuracies "$work/qat.mlp")
    echo "| 784-${hidden//,/-}-10 $act | $f_ptq | $q_ptq $l_ptq | $c_ptq | $f_qat | $q_qat $l_qat | $c_qat |"
done
