#!/usr/bin/env bash
# GPU check on a bare GPU machine (see docs/gpu.md): install tritonhf and the Triton server
# wheel from wheels carried in WHEELS (default .whl/), then run scripts/gpu_check.py.
#
#   bash scripts/gpu_check.sh                # on a CUDA machine with torch/transformers present
#   WHEELS=.whl OUT=/tmp/out bash scripts/gpu_check.sh
#
# Carried wheels (pip download --no-deps, see docs/gpu.md): nvidia-pytriton (server binaries,
# Python backend, stubs), tritonclient 2.73 (pure Python), tokenizers, onnxruntime, and the
# project's own wheel (`python -m build --wheel`). torch and transformers come from the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
OUT=${OUT:-artifacts/gpu}
PYTHON=${PYTHON:-python3}
if [ -d "$WHEELS" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/tritonhf-site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/tritonhf-site${PYTHONPATH:+:$PYTHONPATH}
fi
# The Python-backend stub runs the steps with this same interpreter and PYTHONPATH.
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PYTHON" -c 'import numpy; print("numpy", numpy.__version__)'
PYTHONUNBUFFERED=1 "$PYTHON" scripts/gpu_check.py --out "$OUT" "$@"
