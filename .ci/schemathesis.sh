#!/usr/bin/env bash
# Schemathesis against the live server's /openapi.json: generated and stateful requests (the
# links it infers between operations; a fixed seed and example count, one worker and deterministic
# generation, so CI runs the same cases every time; the coverage phase is left out: schemathesis 4.32 fails inside
# it with an internal KeyError on this document), failing on any 5xx or any answer the document does not
# describe (status, content type, headers, body schema). Run by .ci/run; also by hand:
#   bash .ci/schemathesis.sh [path/to/gitrev]      (default target/debug/gitrev)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/gitrev}
PY=$(python3 -c 'import sys; print(sys.executable)')
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
SCRIPTS=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
if [ ! -x "$SCRIPTS/schemathesis" ]; then
  "$PY" -m pip install --quiet 'schemathesis>=4,<5'
fi
data=$(mktemp -d /tmp/gitrev-schemathesis-XXXXXX)
chmod 755 "$data"
# With an admin key (the token: it lives outside the database, so no generated DELETE /keys/{id}
# can revoke it): every operation is reachable, including the keys' own.
token=schemathesis-$RANDOM$RANDOM$RANDOM
GITREV_DATA_DIR="$data" GITREV_LISTEN=127.0.0.1:0 GITREV_ENV=development GITREV_LOG=warn \
  GITREV_API_TOKEN="$token" GITREV_KEY_RATE=1000000 GITREV_KEY_BURST=1000000 \
  GITREV_READY_FILE="$data/ready.json" "$BIN" serve > "$data/serve.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 600); do [ -f "$data/ready.json" ] && break; sleep 0.1; done
listen=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"])' "$data/ready.json")
# The checks the contract promises: no 5xx, nothing the document does not describe. (Validation
# strictness beyond what JSON Schema can say — an email's shape, a URL's scheme — is the API's
# own, documented in docs/api.md, so positive/negative data checks are not asked for.)
status=0
"$SCRIPTS/schemathesis" run "http://$listen/openapi.json" \
  --header "authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-150}" --workers 1 --seed "${SCHEMATHESIS_SEED:-20261201}" \
  --generation-deterministic \
  --suppress-health-check all --phases examples,fuzzing,stateful || status=$?
# Every operation the document lists was tested and reached its handler: the server's own request
# counter (by route template and method) holds a success for each (2xx, or 3xx for a redirect). A
# route the generator never gets past (only 404s or 422s) is a test that tests nothing.
"$PY" - "http://$listen" <<'PYEOF' || status=1
import json, re, sys, urllib.request
base = sys.argv[1]
doc = json.load(urllib.request.urlopen(base + "/openapi.json"))
metrics = urllib.request.urlopen(base + "/metrics").read().decode()
answered = {}
for labels, count in re.findall(r'^gitrev_http_requests_total\{(.*)\} (\S+)$', metrics, re.M):
    labels = dict(re.findall(r'(\w+)="([^"]*)"', labels))
    key = (labels["route"], labels["method"])
    answered.setdefault(key, {})[labels["status"]] = int(float(count))
missing = []
for template, item in doc["paths"].items():
    for method in ("get", "head", "post", "put", "patch", "delete"):
        if method not in item:
            continue
        statuses = answered.get((template, method.upper()), {})
        line = f"{method.upper()} {template}: " + (
            ", ".join(f"{s} x{n}" for s, n in sorted(statuses.items())) or "no request")
        print("schemathesis: answered " + line)
        if not any(s[0] in "23" for s in statuses):
            missing.append(line)
if missing:
    print("schemathesis: FAILED: operations never answered with a success:\n  " + "\n  ".join(missing))
    sys.exit(1)
PYEOF
if grep -q '"level":"ERROR"' "$data/serve.log"; then
  echo "schemathesis: the server logged errors:"; grep '"level":"ERROR"' "$data/serve.log" | head -20
  exit 1
fi
exit $status
