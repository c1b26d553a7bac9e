#!/usr/bin/env bash
# pip-audit over the pinned dependencies (constraints.txt). Known vulnerabilities fail the run.
# Where the vulnerability database cannot be reached (an offline CI machine), pip-audit either
# marks every package "not found" or cannot connect at all; that is reported loudly but does
# not fail the build. Any other pip-audit failure does.
set -euo pipefail
BIN=${BIN:-.venv/bin}
# Use the CA bundle pip is told to use, if any (a registry behind a TLS proxy).
if [ -n "${PIP_CERT:-}" ] && [ -z "${REQUESTS_CA_BUNDLE:-}" ]; then export REQUESTS_CA_BUNDLE="$PIP_CERT"; fi
report=$(mktemp)
errors=$(mktemp)
trap 'rm -f "$report" "$errors"' EXIT
set +e
"$BIN/pip-audit" -r constraints.txt --no-deps --progress-spinner off --format json -o "$report" 2>"$errors"
code=$?
set -e
if [ ! -s "$report" ]; then
  if grep -qE "ConnectionError|SSLError|NameResolution|Max retries exceeded|timed out" "$errors"; then
    echo "pip-audit: WARNING: the vulnerability database was unreachable ($(grep -oE '[A-Za-z]+Error' "$errors" | tail -1)); the pinned packages were NOT audited"
    exit 0
  fi
  echo "pip-audit failed (exit $code):"
  tail -20 "$errors"
  exit "$code"
fi
"$BIN/python" - "$report" "$code" <<'PY'
import json, sys
report, code = json.load(open(sys.argv[1])), int(sys.argv[2])
deps = report.get("dependencies", [])
vulnerable = [d for d in deps if d.get("vulns")]
skipped = [d for d in deps if d.get("skip_reason")]
for dep in vulnerable:
    ids = ", ".join(v["id"] for v in dep["vulns"])
    print(f"pip-audit: {dep['name']} {dep.get('version')} has known vulnerabilities: {ids}")
if vulnerable:
    sys.exit(1)
if deps and len(skipped) == len(deps):
    print(f"pip-audit: WARNING: the vulnerability database was unreachable; {len(deps)} pinned "
          "packages were NOT audited (run `make security` where PyPI's JSON API is reachable)")
    sys.exit(0)
print(f"pip-audit: {len(deps) - len(skipped)} packages audited, no known vulnerabilities"
      + (f" ({len(skipped)} skipped)" if skipped else ""))
sys.exit(0 if code in (0, 1) else code)
PY
