#!/usr/bin/env bash
# Size report of every firmware build: .text, .rodata, .data, .bss (llvm-size), how much of
# .rodata is the exported model and images (their symbols), the code and other read-only
# data beyond them, and the stack high-water mark the firmware measures by painting its
# stack (from the run logs scripts/firmware-check.sh leaves in firmware/target/logs, else by
# running the build in QEMU). Needs the generated files (see README.md, "Cortex-M").
#
#   scripts/firmware-size.sh            # all builds
#   scripts/firmware-size.sh int8 lean  # some
set -euo pipefail
cd "$(dirname "$0")/../firmware"

tool() {
    if command -v "$1" >/dev/null; then echo "$1"; return; fi
    local t
    t="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/$1"
    if [ -x "$t" ]; then echo "$t"; return; fi
    echo "$1 not found: install LLVM (apt-get install llvm) or run: rustup component add llvm-tools" >&2
    exit 1
}
SIZE=$(tool llvm-size)
NM=$(tool llvm-nm)

args_of() {
    case "$1" in
        int8) echo "--release" ;;
        lean) echo "--profile lean --features lean" ;;
        f32) echo "--release --features f32" ;;
        train) echo "--release --features train" ;;
        *) echo "unknown build $1 (int8, lean, f32, train)" >&2; exit 1 ;;
    esac
}
dir_of() { case "$1" in lean) echo lean ;; *) echo release ;; esac; }

builds=("$@")
[ ${#builds[@]} -gt 0 ] || builds=(int8 lean f32 train)
mkdir -p target/logs
printf '%-6s %9s %9s %7s %9s %12s %14s %9s\n' build .text .rodata .data .bss model+images "code+other ro" stack
for b in "${builds[@]}"; do
    # shellcheck disable=SC2046
    cargo build -q $(args_of "$b")
    elf="target/thumbv7em-none-eabihf/$(dir_of "$b")/mlp-firmware"
    sec() { "$SIZE" -A "$elf" | awk -v s="$1" '$1 == s { print $2 }'; }
    text=$(( $(sec .vector_table) + $(sec .text) ))
    rodata=$(sec .rodata)
    data=$(sec .data)
    bss=$(( $(sec .bss) + $(sec .uninit) ))
    # The statics of the generated modules `model` and `images` (sizes in hex).
    embedded=0
    for hex in $("$NM" -S "$elf" | awk '$4 ~ /mlp_firmware(5model|6images)/ { print $2 }'); do
        embedded=$(( embedded + 16#$hex ))
    done
    log="target/logs/$b.log"
    [ "$b" = int8 ] && log=target/logs/int8-m4.log
    if ! grep -q '^stack high-water mark' "$log" 2>/dev/null; then
        # shellcheck disable=SC2046
        timeout 300 cargo run -q $(args_of "$b") >"$log" 2>&1 || true
    fi
    stack=$(sed -n 's/^stack high-water mark: \([0-9]*\) bytes.*/\1/p' "$log" | tail -1)
    printf '%-6s %9d %9d %7d %9d %12d %14d %9s\n' "$b" "$text" "$rodata" "$data" "$bss" "$embedded" \
        $(( text + rodata - embedded )) "${stack:-?}"
done
echo "(bytes; .text includes the 1 KiB vector table; stack: high-water mark painted and measured on the device)"
