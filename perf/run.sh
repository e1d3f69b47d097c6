#!/usr/bin/env bash
# Load runs against the real service on the embedded database with the seed data, all in one go so
# the figures are ratios taken on the same machine in the same minutes.
#
#   perf/run.sh [section ...]      sections: redirect users urls locust rss (default: all)
#   DURATION=15 CONNS=100 perf/run.sh redirect
#   GITREV_BIN=/path/to/gitrev perf/run.sh redirect   # a binary built elsewhere; nothing is built
#
# Without GITREV_BIN the script builds target/release/gitrev and the ceiling example itself. With
# GITREV_BIN set it builds nothing: the ceiling comes from CEILING_BIN (default
# target/release/examples/ceiling, `cargo build --release --example ceiling`).
#
# Needs: wrk, psql, pgbench (PostgreSQL client), locust (pip install locust) for `locust`.
# Every figure goes to perf/out/<run>/summary.md together with the command that produced it;
# perf/RESULTS.md records a chosen run.
set -euo pipefail
# Paths given by the caller are taken from the caller's directory.
[ -n "${GITREV_BIN:-}" ] && GITREV_BIN=$(realpath -- "$GITREV_BIN")
[ -n "${CEILING_BIN:-}" ] && CEILING_BIN=$(realpath -- "$CEILING_BIN")
cd "$(dirname "$0")/.."

DUR=${DURATION:-15}
CONNS=${CONNS:-100}
THREADS=${THREADS:-2}
PORT=${PORT:-18080}
CEILING_PORT=${CEILING_PORT:-18090}
SECTIONS=${*:-redirect users urls locust rss}
RUN=$(date -u +%Y%m%dT%H%M%SZ)
OUT=perf/out/$RUN
CEILING_BIN=${CEILING_BIN:-target/release/examples/ceiling}
if [ -n "${GITREV_BIN:-}" ]; then
  BIN=$GITREV_BIN
  [ -x "$BIN" ] || { echo "GITREV_BIN=$BIN is not an executable file" >&2; exit 1; }
  if [[ " $SECTIONS " == *" redirect "* ]] && [ ! -x "$CEILING_BIN" ]; then
    echo "no ceiling binary at $CEILING_BIN: run \`cargo build --release --example ceiling\` or set CEILING_BIN" >&2
    exit 1
  fi
else
  cargo build --release --bin gitrev --example ceiling
  BIN=target/release/gitrev
fi
mkdir -p "$OUT"
SUMMARY=$OUT/summary.md
BASE=http://127.0.0.1:$PORT

echo "# perf run $RUN ($(nproc) cores, wrk -t$THREADS, ${DUR}s per run)" > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

DATA=$(mktemp -d /tmp/gitrev-perf-XXXXXX)
chmod 755 "$DATA"
GPID=""
CPID=""

cleanup() {
  [ -n "$GPID" ] && kill -TERM "$GPID" 2>/dev/null && wait "$GPID" 2>/dev/null || true
  [ -n "$CPID" ] && kill "$CPID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

start_gitrev() { # extra VAR=value settings as arguments
  rm -f "$DATA/ready.json"
  env GITREV_DATA_DIR="$DATA" GITREV_LISTEN=127.0.0.1:$PORT GITREV_ENV=development \
      GITREV_LOG=warn GITREV_READY_FILE="$DATA/ready.json" "$@" "$BIN" serve >> "$OUT/gitrev.log" 2>&1 &
  GPID=$!
  for _ in $(seq 1 600); do
    [ -f "$DATA/ready.json" ] && break
    kill -0 "$GPID" 2>/dev/null || { echo "gitrev exited; see $OUT/gitrev.log"; exit 1; }
    sleep 0.1
  done
  DBURL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["database_url"])' "$DATA/ready.json")
}

stop_gitrev() {
  kill -TERM "$GPID"
  wait "$GPID" || true
  GPID=""
}

metric() { # metric line prefix -> value (0 when absent)
  curl -s "$BASE/metrics" | awk -v m="$1" 'index($0, m) == 1 { v = $NF } END { print v + 0 }'
}

rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
pct() { awk -v p="$2%" '$1 == p { print $2 }' "$1"; }
errors() {
  awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { for (i = 3; i <= NF; i += 2) { gsub(",", "", $(i+1)); n += $(i+1) } } END { print n + 0 }' "$1"
}

run_wrk() { # name script [wrk args...]; the command is recorded next to its figures
  local name=$1 script=$2; shift 2
  local cmd="wrk -t$THREADS -c$CONNS -d${DUR}s --latency -s $script $*"
  $cmd > "$OUT/$name.txt" 2>&1
  note "- **$name**: $(rps "$OUT/$name.txt") req/s, p50 $(pct "$OUT/$name.txt" 50), p99 $(pct "$OUT/$name.txt" 99), errors/non-3xx $(errors "$OUT/$name.txt") — \`$cmd\`"
}

ratio() { python3 -c "print(f'{float($1)/float($2):.2f}')"; }

start_gitrev
note ""
note "Service: \`$BIN serve\` on the embedded PostgreSQL with the reference seed set (400 users, 2000 urls)."

if [[ " $SECTIONS " == *" redirect "* ]]; then
  note ""
  note "## Redirects"
  CODES=$(curl -s "$BASE/urls?is_active=true&per_page=1000" | python3 -c 'import json,sys; print(",".join(u["short_code"] for u in json.load(sys.stdin)))')
  export CODES
  "$CEILING_BIN" 127.0.0.1:$CEILING_PORT 2>/dev/null &
  CPID=$!
  sleep 0.5
  run_wrk ceiling perf/wrk/codes.lua "http://127.0.0.1:$CEILING_PORT"
  kill "$CPID"; CPID=""
  # Warm the cache (HEAD-free: these are real redirects, so they count clicks too).
  wrk -t$THREADS -c$CONNS -d3s -s perf/wrk/codes.lua "$BASE" > /dev/null
  sleep 1
  before_302=$(metric 'gitrev_http_requests_total{method="GET",route="/{short_code}",status="302"}')
  before_clicks=$(psql "$DBURL" -Atc "SELECT COALESCE(SUM(clicks), 0) FROM url_stats")
  run_wrk redirect_cached perf/wrk/codes.lua "$BASE"
  for _ in $(seq 1 100); do [ "$(metric gitrev_click_queue_depth)" = "0" ] && break; sleep 0.1; done
  sleep 0.5
  after_302=$(metric 'gitrev_http_requests_total{method="GET",route="/{short_code}",status="302"}')
  after_clicks=$(psql "$DBURL" -Atc "SELECT COALESCE(SUM(clicks), 0) FROM url_stats")
  overflow=$(metric gitrev_click_queue_overflow_total)
  note "- cached redirects reach **$(ratio "$(rps "$OUT/redirect_cached.txt")" "$(rps "$OUT/ceiling.txt")")× the ceiling** (same wrk command, same run)"
  note "- clicks: $((after_302 - before_302)) redirects served (302s counted by /metrics), $((after_clicks - before_clicks)) clicks added to url_stats after the queue drained, overflow counter $overflow"
  # The same cached lookups as HEAD, which records no click: what the redirect costs without the
  # database writes of its clicks competing for the same cores.
  export METHOD=HEAD
  run_wrk redirect_cached_head perf/wrk/codes.lua "$BASE"
  unset METHOD
  note "- HEAD (no click recorded) reaches **$(ratio "$(rps "$OUT/redirect_cached_head.txt")" "$(rps "$OUT/ceiling.txt")")× the ceiling**"
  export UNKNOWN_PCT=10
  run_wrk redirect_10pct_unknown perf/wrk/codes.lua "$BASE"
  unset UNKNOWN_PCT
fi

if [[ " $SECTIONS " == *" urls "* ]]; then
  note ""
  note "## GET /urls/{id}"
  MAX_ID=2000 run_wrk get_url_by_id perf/wrk/url_by_id.lua "$BASE"
fi

if [[ " $SECTIONS " == *" users "* ]]; then
  note ""
  note "## POST /users at 256 connections"
  saved_conns=$CONNS; CONNS=256
  RUN_TAG=b$RUN run_wrk users_batched perf/wrk/users.lua "$BASE"
  stop_gitrev
  start_gitrev GITREV_USER_BATCH=off
  RUN_TAG=o$RUN run_wrk users_unbatched perf/wrk/users.lua "$BASE"
  CONNS=$saved_conns
  stop_gitrev
  pg_cmd="pgbench -n -c 8 -j 2 -T $DUR -f perf/pgbench_users.sql"
  start_gitrev
  $pg_cmd "$DBURL" > "$OUT/pgbench.txt" 2>&1 || true
  tps=$(awk '/^tps = / { print $3; exit }' "$OUT/pgbench.txt")
  pg_rows=$(python3 -c "print(round(float('${tps:-0}') * 100))")
  note "- batched vs \`GITREV_USER_BATCH=off\`: **$(ratio "$(rps "$OUT/users_batched.txt")" "$(rps "$OUT/users_unbatched.txt")")×** the throughput"
  note "- database ceiling: $pg_rows rows/s with 100-row inserts — \`$pg_cmd\` (tps $tps); batched POST /users reaches $(ratio "$(rps "$OUT/users_batched.txt")" "$pg_rows")× of it"
fi

if [[ " $SECTIONS " == *" locust "* ]]; then
  note ""
  note "## Locust: the prototype's journey"
  # Every Locust run starts from the seed state, not from the tables the wrk runs filled.
  reset_cmd="gitrev reset"
  for users in 50 200 500; do
    GITREV_DATA_DIR="$DATA" GITREV_ENV=development GITREV_LOG=warn "$BIN" reset > /dev/null
    cmd="locust -f perf/locustfile.py --headless -u $users -r 100 -t ${LOCUST_TIME:-40s} --host $BASE --csv $OUT/locust_$users --only-summary"
    $cmd > "$OUT/locust_$users.txt" 2>&1 || true
    note ""
    note "### $users users, after \`$reset_cmd\` — \`$cmd\`"
    python3 perf/locust_table.py "$OUT/locust_${users}_stats.csv" | tee -a "$SUMMARY"
  done
fi

if [[ " $SECTIONS " == *" rss "* ]]; then
  note ""
  note "## 1,000,000 cached links"
  psql "$DBURL" -qc "INSERT INTO urls (short_code, original_url)
      SELECT 'L' || lpad(i::text, 7, '0'), 'https://example.com/landing/' || i
      FROM generate_series(0, 999999) AS i ON CONFLICT DO NOTHING"
  stop_gitrev
  start_gitrev
  rss_before=$(awk '/VmRSS/ { print $2 }' /proc/$GPID/status)
  entries=0
  for _ in 1 2 3 4 5 6 7 8; do
    # Each run walks on from where the cache stands.
    START=$entries N=1000000 THREADS=$THREADS wrk -t$THREADS -c$CONNS -d20s -s perf/wrk/warm.lua "$BASE" > "$OUT/warm.txt" 2>&1
    entries=$(metric gitrev_link_cache_entries)
    [ "$entries" -ge 1000000 ] && break
  done
  for _ in $(seq 1 100); do [ "$(metric gitrev_click_queue_depth)" = "0" ] && break; sleep 0.2; done
  rss_after=$(awk '/VmRSS/ { print $2 }' /proc/$GPID/status)
  note "- cache entries $entries; RSS $((rss_before / 1024)) MB after start, $((rss_after / 1024)) MB with the links cached (VmRSS of the gitrev process; warmed with \`wrk -s perf/wrk/warm.lua\`, HEAD requests over codes L0000000..L0999999, so no clicks are queued)"
fi

stop_gitrev
echo
echo "summary: $SUMMARY"
