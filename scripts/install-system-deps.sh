#!/usr/bin/env bash
# System packages tritonhf needs beyond pip: the shared libpython that Triton's Python-backend
# stub links against. Run as root (CI) or with sudo; installs only what is missing.
set -euo pipefail
PYTHON=${PYTHON:-python3}
version=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
libdir=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
packages=()
if [ ! -e "$libdir/libpython$version.so.1.0" ] && ! ldconfig -p | grep -q "libpython$version.so.1.0"; then
  packages+=("libpython$version")
fi
if [ ${#packages[@]} -eq 0 ]; then
  echo "system packages: nothing to install"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system packages: installing ${packages[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
