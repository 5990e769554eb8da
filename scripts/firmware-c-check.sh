#!/usr/bin/env bash
# The C runtime (host export --format c: mlp_runtime.c) on Cortex-M in QEMU: builds
# firmware-c/ with arm-none-eabi-gcc for the Cortex-M4 (mps2-an386) and the Cortex-M0
# (microbit: 256 KB flash, 16 KB RAM), runs each with a timeout, and fails unless
#   - every image's line (label, prediction, int8 logits) equals the host's line
#     (firmware-c/generated/<core>/model_images.expected.txt) and the firmware's own
#     comparison with the host's outputs says bit-identical M of M;
#   - the M4 classifies at least 97% of its images correctly;
#   - SysTick counted a known loop right (so the instruction counts mean instructions).
# Prints one summary line per core. Needs the files `host export` writes into
# firmware-c/generated/m4 and m0 (docs/C.md, "Firmware example").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../firmware-c"
logs=build/logs
mkdir -p "$logs"
fail() { echo "C firmware check failed: $*" >&2; exit 1; }

command -v arm-none-eabi-gcc >/dev/null \
    || fail "arm-none-eabi-gcc not found: apt-get install gcc-arm-none-eabi (Debian's; no newlib needed)"
command -v qemu-system-arm >/dev/null || fail "qemu-system-arm not found: apt-get install qemu-system-arm"
for core in m4 m0; do
    [ -f generated/$core/model.h ] && [ -f generated/$core/model_images.expected.txt ] \
        || fail "firmware-c/generated/$core/ is missing: from the repository root, run (after
    cargo run --release -p host -- train --recipe tutorial, for model.mlp)
  host export model.mlp --format c --out firmware-c/generated/m4/model.h --images 100
  host export model.mlp --format c --out firmware-c/generated/m0/model.h --images 50"
done
for core in m4 m0; do
    case $core in m4) name=cortex-m4 ;; m0) name=cortex-m0 ;; esac
    log=$logs/$core.log
    make -s CORE=$core >"$logs/$core.build.log" 2>&1 || { cat "$logs/$core.build.log" >&2; fail "$name: the build failed"; }
    read -r text data bss _ < <(arm-none-eabi-size "build/$core/firmware.elf" | tail -1)
    if ! timeout 120 make -s CORE=$core run >"$log" 2>&1; then
        tail -20 "$log" >&2
        fail "$name: the firmware did not pass in QEMU (log: firmware-c/$log)"
    fi
    expected=generated/$core/model_images.expected.txt
    if ! diff <(grep '^image ' "$log") "$expected" >"$logs/$core.diff"; then
        head -20 "$logs/$core.diff" >&2
        fail "$name: the device's per-image outputs differ from the host's ($expected)"
    fi
    read -r _ correct _ total < <(grep '^correct [0-9]* of [0-9]*$' "$log")
    read -r _ identical _ _ < <(grep '^bit-identical [0-9]* of [0-9]*$' "$log")
    [ "$identical" = "$total" ] && [ "$total" = "$(wc -l <"$expected")" ] \
        || fail "$name: bit-identical $identical of $total"
    if [ $core = m4 ] && [ $((correct * 100)) -lt $((total * 97)) ]; then
        fail "$name: correct $correct of $total is below 97%"
    fi
    read -r loop < <(sed -n 's/^counter check: a loop of 200002 instructions counts as \([0-9]*\)$/\1/p' "$log")
    [ -n "$loop" ] && [ "$loop" -ge 198000 ] && [ "$loop" -le 202000 ] \
        || fail "$name: SysTick measured a 200002-instruction loop as '${loop}': the instruction counts are wrong"
    per=$(sed -n 's/^\([0-9]*\) instructions per inference.*/\1/p' "$log")
    ram=$(sed -n 's/^RAM: \(.*\)$/\1/p' "$log")
    echo "c-runtime $name: correct $correct of $total, bit-identical $identical of $total, $per instructions per inference; flash $((text + data)) bytes (model, images, code), RAM $((data + bss)) bytes static ($ram)"
done
