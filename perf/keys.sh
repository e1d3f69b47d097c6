#!/usr/bin/env bash
# Issue #10's targets, in one run, as ratios (interleaved rounds: auth off then on, on then off, …):
#
#   perf/keys.sh                               ROUNDS=2 DURATION=15 CONNS=100
#   GITREV_BIN=target/release/gitrev perf/keys.sh
#
# Each round starts a fresh gitrev (embedded PostgreSQL, development, the reference seed set) twice,
# in alternating order from round to round:
#   off  no key, no token: the API is open;
#   on   GITREV_API_TOKEN set and a read key made through POST /keys (rate limit raised out of the
#        way, GITREV_KEY_RATE=GITREV_KEY_BURST=1000000, so the key check, not a 429, is measured).
# and measures, with `wrk -tTHREADS -cCONNS -dDURATIONs --latency`:
#   redirect  GET /{code} over the seeded active codes (perf/wrk/codes.lua; public either way);
#   url       GET /urls/{id} over the seeded ids (perf/wrk/url_by_id.lua), unkeyed when off,
#             with the key when on.
# Targets: redirect on/off ≥ 0.98; url on/off ≥ 0.95 (a keyed request costs at most 5% more).
# Output: perf/out/keys-<run>/summary.md and the raw wrk output beside it. Needs wrk, curl, python3.
set -euo pipefail
[ -n "${GITREV_BIN:-}" ] && GITREV_BIN=$(realpath -- "$GITREV_BIN")
cd "$(dirname "$0")/.."
. perf/lib.sh
DUR=${DURATION:-15}
CONNS=${CONNS:-100}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-18080}
BASE=http://127.0.0.1:$PORT
TOKEN=perf-keys-token-$RANDOM$RANDOM
RUN=$(date -u +%Y%m%dT%H%M%SZ)
OUT=perf/out/keys-$RUN
mkdir -p "$OUT"
need_commands wrk
if [ -z "${GITREV_BIN:-}" ]; then
  cargo build --release --bin gitrev
  GITREV_BIN=$(realpath target/release/gitrev)
fi

trap cleanup EXIT

start() { # mode: off | on
  DATA=$(mktemp -d /tmp/gitrev-keys-XXXXXX)
  chmod 755 "$DATA"
  local auth=()
  [ "$1" = on ] && auth=(GITREV_API_TOKEN="$TOKEN" GITREV_KEY_RATE=1000000 GITREV_KEY_BURST=1000000)
  env GITREV_DATA_DIR="$DATA" GITREV_LISTEN=127.0.0.1:$PORT GITREV_ENV=development GITREV_LOG=warn \
    GITREV_READY_FILE="$DATA/ready.json" "${auth[@]}" "$GITREV_BIN" serve >> "$OUT/gitrev.log" 2>&1 &
  GPID=$!
  for _ in $(seq 1 600); do [ -f "$DATA/ready.json" ] && return 0; sleep 0.1; done
  echo "gitrev not ready; see $OUT/gitrev.log" >&2
  exit 1
}

measure() { # name mode round script
  local file=$OUT/$1_$2_r$3.txt
  wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency -s "$4" "$BASE" > "$file" 2>&1
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(awk '/^Requests\/sec:/ { print $2 }' "$file")" \
    "$(awk '/Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' "$file")" >> "$OUT/results.tsv"
  echo "  $1 $2 r$3: $(awk '/^Requests\/sec:/ { print $2 }' "$file") req/s"
}

load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
  # Alternating order (off on, on off, …): drift of a shared machine falls on both alike.
  modes="off on"
  [ $((round % 2)) -eq 0 ] && modes="on off"
  for mode in $modes; do
    start "$mode"
    KEY=""
    if [ "$mode" = on ]; then
      KEY=$(curl -sf -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d '{"name": "perf", "scope": "read"}' "$BASE/keys" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
    fi
    export KEY
    CODES=$(curl -s -H "authorization: Bearer ${KEY:-none}" "$BASE/urls?is_active=true&per_page=1000" |
      python3 -c 'import json,sys; print(",".join(u["short_code"] for u in json.load(sys.stdin)))')
    export CODES
    METHOD=HEAD wrk -t"$THREADS" -c"$CONNS" -d3s -s perf/wrk/codes.lua "$BASE" > /dev/null
    MAX_ID=2000 wrk -t"$THREADS" -c"$CONNS" -d3s -s perf/wrk/url_by_id.lua "$BASE" > /dev/null
    measure redirect "$mode" "$round" perf/wrk/codes.lua
    MAX_ID=2000 measure url "$mode" "$round" perf/wrk/url_by_id.lua
    stop
  done
done

python3 - "$OUT/results.tsv" > "$OUT/summary.md" <<PY
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
get = {(r[0], r[1], r[2]): (float(r[3]), int(r[4])) for r in rows}
print("# keys perf run $RUN")
print()
print("\`perf/keys.sh\` with DURATION=$DUR CONNS=$CONNS THREADS=$THREADS ROUNDS=$ROUNDS, gitrev \`$GITREV_BIN\`,")
print("$(nproc) cores, load average $load_at_start at the start. Off: no key, the API open; on:")
print("GITREV_API_TOKEN set and a read key used for GET /urls/{id}.")
print()
print("| round | redirect off | redirect on | **on / off** | GET /urls/{id} off (unkeyed) | on (keyed) | **on / off** | non-2xx/3xx |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for rnd in sorted({r[2] for r in rows}, key=int):
    ro, re_ = get[("redirect", "off", rnd)], get[("redirect", "on", rnd)]
    uo, ue = get[("url", "off", rnd)], get[("url", "on", rnd)]
    print(f"| {rnd} | {ro[0]:,.0f} | {re_[0]:,.0f} | **{re_[0] / ro[0]:.3f}** | {uo[0]:,.0f} | {ue[0]:,.0f} | **{ue[0] / uo[0]:.3f}** | {ro[1] + re_[1] + uo[1] + ue[1]} |")
print()
print("Targets (issue #10): redirect on/off ≥ 0.98; GET /urls/{id} keyed/unkeyed ≥ 0.95.")
PY
cat "$OUT/summary.md"
