#!/usr/bin/env bash
# The GPU path, checked in one command on a machine with an NVIDIA GPU (and rehearsed here,
# without one, on the GPU path's CPU emulator).
#
#   scripts/gpu-check.sh pack            # on a Rust machine: build everything into gpu-check/
#   scripts/gpu-check.sh run             # on the GPU machine (no Rust needed): run it all
#   scripts/gpu-check.sh run --emulator  # anywhere: the same run on the CPU emulator, small
#
# `pack` builds (release, stripped) the gpu crate's test binaries, `host` and the GPU bench,
# and copies MNIST (MNIST_DIR, default ../shared/data/mnist) and the PyTorch peer
# (../shared/reference/torch_mlp.py) beside them: gpu-check/ is git-ignored and stays under
# 64 MiB, so it can travel with the working tree. `run` writes every result to one file,
# $OUT/gpu-check.txt when OUT is set (the device tool's output folder), else
# gpu-check/results.txt, and exits non-zero if any check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=gpu-check

pack() {
    set -e
    local mnist="${MNIST_DIR:-../shared/data/mnist}" torch="${TORCH_MLP:-../shared/reference/torch_mlp.py}"
    rm -rf "$PACK" && mkdir -p "$PACK/bin" "$PACK/mnist"
    # The test binaries: cargo prints their paths as JSON.
    cargo test --release -p gpu --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("gpu", "agreement", "recipe"):
        kind = "lib" if m["target"]["kind"] == ["lib"] else m["target"]["name"]
        print(kind, m["executable"])
' | while read -r name exe; do cp "$exe" "$PACK/bin/gpu-$name"; done
    cargo build --release -p host
    cp target/release/host "$PACK/bin/host"
    cargo bench -p benches --bench gpu --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
        print(m["executable"])
' | while read -r exe; do cp "$exe" "$PACK/bin/gpu-bench"; done
    strip "$PACK"/bin/*
    cp "$mnist"/*-ubyte.gz "$PACK/mnist/"
    cp "$torch" "$PACK/torch_mlp.py"
    cp "$0" "$PACK/gpu-check.sh"
    for f in gpu-lib gpu-agreement gpu-recipe gpu-bench host; do
        [ -x "$PACK/bin/$f" ] || { echo "gpu-check pack: $f was not built" >&2; exit 1; }
    done
    du -sh "$PACK"
    local bytes
    bytes=$(du -sb "$PACK" | cut -f1)
    if [ "$bytes" -gt $((64 << 20)) ]; then
        echo "gpu-check pack: $bytes bytes, over the 64 MiB the device tool carries" >&2
        exit 1
    fi
}

# A slice of MNIST (IDX, gzipped) for the emulator: `train` and `test` images.
mnist_slice() {
    python3 - "$PACK/mnist" "$1" "$2" "$3" <<'EOF'
import gzip, struct, sys, os
src, dst, n_train, n_test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
os.makedirs(dst, exist_ok=True)
for kind, n in (("train", n_train), ("t10k", n_test)):
    for part, item in (("images-idx3-ubyte", 784), ("labels-idx1-ubyte", 1)):
        raw = gzip.open(f"{src}/{kind}-{part}.gz").read()
        dims = raw[3]
        header = bytearray(raw[: 4 + 4 * dims])
        struct.pack_into(">I", header, 4, n)
        with gzip.open(f"{dst}/{kind}-{part}.gz", "wb") as f:
            f.write(bytes(header) + raw[4 + 4 * dims : 4 + 4 * dims + n * item])
EOF
}

run() {
    local emulator=0
    [ "${1:-}" = "--emulator" ] && emulator=1
    local bin="$PACK/bin" results="${OUT:-$PACK}/gpu-check.txt"
    [ -n "${OUT:-}" ] || results="$PACK/results.txt"
    [ -x "$bin/host" ] || { echo "gpu-check run: no $bin/host: run 'scripts/gpu-check.sh pack' first" >&2; exit 1; }
    local failed=()
    check() { # check NAME COMMAND...: runs it, records pass/fail with its time
        local name=$1 start=$SECONDS
        shift
        echo
        echo "== $name: $*"
        if "$@"; then
            echo "-- $name: ok ($((SECONDS - start)) s)"
        else
            echo "-- $name: FAILED ($((SECONDS - start)) s)"
            failed+=("$name")
        fi
    }
    {
        echo "gpu-check $(date -u +%FT%TZ) on $(hostname), mode: $([ $emulator = 1 ] && echo 'CPU emulator (not a GPU)' || echo CUDA)"
        command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        nproc
        export MNIST_DIR="$PWD/$PACK/mnist"
        if [ $emulator = 1 ]; then
            check "gpu unit tests and kernel tests (emulator)" "$bin/gpu-lib"
            check "agreement with core (emulator)" "$bin/gpu-agreement" emulator::
            check "tutorial recipe on an MNIST slice (emulator vs CPU)" "$bin/gpu-recipe" --ignored emulator --nocapture
            local slice
            slice=$(mktemp -d)
            mnist_slice "$slice" 2560 1000
            check "host train --device gpu-emulator (2,560 images, 1 epoch)" \
                "$bin/host" train --recipe tutorial --epochs 1 --data "$slice" --device gpu-emulator \
                --no-plots --out "$slice/emulated.mlp"
            check "host train --device cpu, the same" \
                "$bin/host" train --recipe tutorial --epochs 1 --data "$slice" --no-plots --out "$slice/cpu.mlp"
            rm -rf "$slice"
        else
            check "gpu unit tests, kernel tests, NVRTC compile for sm_90 and sm_80" "$bin/gpu-lib" --include-ignored
            check "agreement with core (CUDA and emulator)" "$bin/gpu-agreement" --include-ignored
            check "tutorial recipe, GPU vs CPU" "$bin/gpu-recipe" --include-ignored --nocapture
            local tmp
            tmp=$(mktemp -d)
            check "host train --recipe tutorial --device gpu (FP32)" \
                "$bin/host" train --recipe tutorial --data "$MNIST_DIR" --device gpu --no-plots --out "$tmp/fp32.mlp"
            check "host train --recipe tutorial --device gpu --tf32" \
                "$bin/host" train --recipe tutorial --data "$MNIST_DIR" --device gpu --tf32 --no-plots --out "$tmp/tf32.mlp"
            check "PyTorch, the same recipe on the same GPU" \
                python3 "$PACK/torch_mlp.py" --data "$MNIST_DIR" --device cuda
            check "PyTorch 784-1024-1024-10, batch 8192" \
                python3 "$PACK/torch_mlp.py" --data "$MNIST_DIR" --device cuda --hidden 1024,1024 --batch 8192 --epochs 3
            check "GPU benches (FP32)" "$bin/gpu-bench" --bench
            check "GPU benches (TF32)" env MLP_GPU_TF32=1 "$bin/gpu-bench" --bench
            rm -rf "$tmp"
        fi
        echo
        if [ ${#failed[@]} -eq 0 ]; then
            echo "gpu-check: all checks passed"
        else
            echo "gpu-check: FAILED: ${failed[*]}"
        fi
    } 2>&1 | tee "$results"
    echo "results: $results"
    grep -q '^gpu-check: all checks passed' "$results"
}

case "${1:-}" in
    pack) pack ;;
    run) shift; run "$@" ;;
    *)
        sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
