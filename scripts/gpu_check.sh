#!/usr/bin/env bash
# GPU check on a bare GPU machine with Python, torch and transformers (docs/gpu.md).
#
#   bash scripts/gpu_check.sh [gpu_check.py flags]      # report in $OUT/gpu_check.md
#
# Nothing can be downloaded there, so it builds two environments over the machine's Python
# from files carried beside the checkout (docs/gpu.md says how to make them):
#   $WHEELS/*.whl          tritonclient, protobuf, grpcio; numpy 1.x (tokenizer steps only)
#   $CARRY/server.tar.xz   the nvidia-pytriton wheel's server parts (tritonserver, Python
#                          backend, the stub for this Python, their libraries)
#   $ROOT/env              tritonhf (this checkout), the server, tritonclient; then the
#                          machine's packages (torch, transformers, numpy 2): the model steps
#   $ROOT/tokenizer-env    numpy 1.x, then everything above: the tokenizer steps, which take
#                          text, which the 2.51 stub cannot read under numpy 2
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
CARRY=${CARRY:-.gpu}
ROOT=${ROOT:-/tmp/tritonhf-gpu}
OUT=${OUT:-artifacts/gpu}
PYTHON=${PYTHON:-python3}
VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
HOST_SITE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

site_of() { echo "$1/lib/python$VERSION/site-packages"; }
make_env() {  # make_env DIR SITE...: a venv that sees SITE... (and their .pth files) after its own
  local env=$1; shift
  "$PYTHON" -m venv --without-pip "$env"
  for site in "$@"; do
    echo "import site; site.addsitedir('$site')"
  done >"$(site_of "$env")/zz-tritonhf-host.pth"
}

if [ ! -f "$ROOT/ready" ]; then
  rm -rf "$ROOT"
  make_env "$ROOT/env" "$HOST_SITE"
  SITE=$(site_of "$ROOT/env")
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
    $(find "$WHEELS" -type f -name '*.whl' ! -name 'numpy-*')
  tar -xJf "$CARRY/server.tar.xz" -C "$SITE"
  echo "$PWD" >"$SITE/tritonhf-checkout.pth"
  make_env "$ROOT/tokenizer-env" "$SITE" "$HOST_SITE"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
    --target "$(site_of "$ROOT/tokenizer-env")" "$WHEELS"/numpy-*.whl
  touch "$ROOT/ready"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
for env in env tokenizer-env; do
  "$ROOT/$env/bin/python" -c 'import sys, numpy; print(sys.prefix, "numpy", numpy.__version__)'
done
PYTHONUNBUFFERED=1 "$ROOT/env/bin/python" scripts/gpu_check.py --out "$OUT" \
  --tokenizer-env "$ROOT/tokenizer-env" "$@"
