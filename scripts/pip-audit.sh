#!/usr/bin/env bash
# pip-audit over the pinned dependencies (constraints.txt). Known vulnerabilities fail the run.
# Where the vulnerability database cannot be reached (an offline CI machine), pip-audit marks
# every package "not found"; that is reported loudly but does not fail the build.
set -euo pipefail
BIN=${BIN:-.venv/bin}
report=$(mktemp)
trap 'rm -f "$report"' EXIT
set +e
"$BIN/pip-audit" -r constraints.txt --no-deps --progress-spinner off --format json -o "$report" 2>/dev/null
code=$?
set -e
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
sys.exit(0 if code in (0, 1) and not vulnerable else code)
PY
