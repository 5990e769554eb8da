#!/usr/bin/env bash
# Runs every firmware build in QEMU (Cortex-M4, mps2-an386, semihosting; no board needed)
# with a timeout and checks what the host cannot see otherwise:
#   - int8 and lean: each image's line (label, prediction, int8 logits) is identical to the
#     line the host wrote when it exported the model (firmware/generated/*.expected.txt), and
#     at least 97% of the embedded images are classified correctly;
#   - f32: it passes its own checks (>= 97% correct); differences from the host's f32
#     predictions (float sums in another order) are reported, not failed;
#   - train: the loss of the last epoch is below the first's.
# Then prints the size report (scripts/firmware-size.sh). Needs qemu-system-arm and the files
# `host export` generates (README.md, "Cortex-M").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../firmware"
logs=target/logs
mkdir -p "$logs"
fail() { echo "firmware check failed: $*" >&2; exit 1; }

run() {
    local name=$1
    shift
    echo "-- $name: cargo run $*"
    if ! timeout 300 cargo run -q "$@" >"$logs/$name.log" 2>&1; then
        tail -20 "$logs/$name.log" >&2
        fail "the $name build did not pass in QEMU (log: firmware/$logs/$name.log)"
    fi
    grep -v '^image ' "$logs/$name.log" | sed 's/^/   /'
}

same_as_host() {
    local name=$1 expected=$2
    if ! diff <(grep '^image ' "$logs/$name.log") "$expected" >"$logs/$name.diff"; then
        head -20 "$logs/$name.diff" >&2
        fail "$name: the device's per-image outputs differ from the host's ($expected)"
    fi
    echo "   $name: every image's int8 logits identical to the host's ($(wc -l <"$expected") images)"
}

accuracy_at_least_97() {
    local name=$1 line correct total
    line=$(grep '^correct [0-9]* of [0-9]*' "$logs/$name.log" | tail -1)
    read -r _ correct _ total <<<"$line"
    [ $((correct * 100)) -ge $((total * 97)) ] || fail "$name: $line is below 97%"
}

run int8 --release
same_as_host int8 generated/model_images.expected.txt
accuracy_at_least_97 int8
run lean --profile lean --features lean
same_as_host lean generated/model_images.expected.txt
run f32 --release --features f32
accuracy_at_least_97 f32
differ=$(diff <(grep '^image ' "$logs/f32.log") generated/model_f32_images.expected.txt | grep -c '^<' || true)
echo "   f32: $differ image(s) predicted differently from the host's f32 model"
run train --release --features train
losses=$(sed -n 's/^epoch [0-9]*\/[0-9]*: loss \([0-9.]*\),.*/\1/p' "$logs/train.log")
first=$(echo "$losses" | head -1)
last=$(echo "$losses" | tail -1)
[ -n "$first" ] || fail "train: no epoch lines in the log"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "train: the loss went from $first to $last"
echo "   train: on-device loss fell from $first to $last"

# The C runtime (issue 17, item 5): firmware-c/ on the Cortex-M4 and the Cortex-M0, each image
# bit-identical to the host (scripts/firmware-c-check.sh; one summary line per core).
echo "-- C runtime: firmware-c on cortex-m4 and cortex-m0"
"$here/firmware-c-check.sh" | sed 's/^/   /'

echo
"$here/firmware-size.sh"
