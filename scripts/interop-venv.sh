#!/usr/bin/env bash
# The Python runtimes that check our ONNX, safetensors and TFLite files: onnx, onnxruntime,
# LiteRT (TFLite's interpreter) and safetensors, pinned, in a virtualenv (no torch or
# tensorflow: those only regenerate the committed fixtures, see scripts/interop/).
#
#   scripts/interop-venv.sh [DIR]     # default target/interop-venv; prints the venv's python
#
# The interop tests find it through MLP_INTEROP_PYTHON:
#   MLP_INTEROP_PYTHON=$(scripts/interop-venv.sh) cargo test -p host --test 'interop_*' -- --ignored
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-target/interop-venv}
if [ ! -x "$venv/bin/pip" ]; then
    python3 -m venv "$venv" >&2 2>/dev/null || {
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >&2
        python3 -m venv "$venv" >&2
    }
fi
"$venv/bin/pip" install -q onnx==1.23.2 onnxruntime==1.32.0 ai-edge-litert==2.3.0 safetensors==0.8.0 numpy==2.4.6 >&2
# Not realpath: that resolves the venv's python symlink to the system interpreter, outside the venv.
echo "$(cd "$venv" && pwd)/bin/python"
