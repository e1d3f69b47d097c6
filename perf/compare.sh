#!/usr/bin/env bash
# Two gitrev binaries side by side in ONE run, in interleaved rounds (A B A B ...), so that drift of
# a shared machine falls on both alike:
#
#   perf/compare.sh BEFORE_BIN AFTER_BIN
#   DURATION=15 ROUNDS=3 perf/compare.sh /tmp/before/gitrev target/release/gitrev
#
# Each round runs each binary on its own fresh embedded data dir with the reference seed set:
# GET /{code} and HEAD /{code} over the seeded codes (wrk, perf/wrk/codes.lua, CONNS connections,
# after a 3 s warm-up, as perf/run.sh runs them) and POST /users (perf/wrk/users.lua at 256
# connections, as perf/run.sh runs it); then the bare-hyper ceiling once with the same GET command
# (the ceiling example: CEILING_BIN, or built here with `cargo build --release --example ceiling`).
#
# Before measuring it waits until the 1-minute load average is below QUIET_LOAD (1.0), polling
# /proc/loadavg for up to QUIET_WAIT seconds (1200); if the machine never gets quiet it measures
# anyway and says so. Every run also records the CPU that processes other than this script's own
# (wrk, gitrev and its PostgreSQL) used while it ran.
#
# Output: markdown tables per scenario in perf/out/compare-<run>/summary.md (printed at the end),
# the raw wrk output next to it. Needs: wrk (installed from Debian if missing), curl, python3.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_BIN AFTER_BIN" >&2; exit 2; }
BINS=("$(realpath -- "$1")" "$(realpath -- "$2")")
NAMES=(before after)
for b in "${BINS[@]}"; do [ -x "$b" ] || { echo "not an executable file: $b" >&2; exit 2; }; done
[ -n "${CEILING_BIN:-}" ] && CEILING_BIN=$(realpath -- "$CEILING_BIN")
CMDLINE="$0 $*"
cd "$(dirname "$0")/.."
. perf/lib.sh

DUR=${DURATION:-15}
CONNS=${CONNS:-100}
USER_CONNS=256
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-18080}
CEILING_PORT=${CEILING_PORT:-18090}
QUIET_LOAD=${QUIET_LOAD:-1.0}
QUIET_WAIT=${QUIET_WAIT:-1200}
[ "$ROUNDS" -ge 2 ] || { echo "ROUNDS must be at least 2" >&2; exit 2; }
RUN=$(date -u +%Y%m%dT%H%M%SZ)
OUT=perf/out/compare-$RUN
mkdir -p "$OUT"
SUMMARY=$OUT/summary.md
RESULTS=$OUT/results.tsv # scenario round binary rps p99 errors load1 other_cpu_pct
BASE=http://127.0.0.1:$PORT

if ! command -v wrk > /dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk > /dev/null
fi

if [ -z "${CEILING_BIN:-}" ]; then
  cargo build --release --example ceiling
  CEILING_BIN=$(realpath target/release/examples/ceiling)
fi

GPID=""
CPID=""
DATA=""
cleanup() {
  [ -n "$GPID" ] && kill -TERM "$GPID" 2>/dev/null && wait "$GPID" 2>/dev/null || true
  [ -n "$CPID" ] && kill "$CPID" 2>/dev/null || true
  [ -n "$DATA" ] && rm -rf "$DATA"
  true
}
trap cleanup EXIT

load1() { cut -d' ' -f1 /proc/loadavg; }

rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
p99() { awk '$1 == "99%" { print $2 }' "$1"; }
errors() {
  awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { for (i = 3; i <= NF; i += 2) { gsub(",", "", $(i+1)); n += $(i+1) } } END { print n + 0 }' "$1"
}

# run_wrk scenario round binary conns script url: one measured run, recorded in $RESULTS.
run_wrk() {
  local scenario=$1 round=$2 bin=$3 conns=$4 script=$5 url=$6
  local file=$OUT/${scenario}_r${round}_${bin}.txt
  local cmd="wrk -t$THREADS -c$conns -d${DUR}s --latency -s $script $url"
  echo "$scenario|$cmd" >> "$OUT/commands.txt"
  local l1 s0 s1
  l1=$(load1)
  s0=$(cpu_snapshot)
  $cmd > "$file" 2>&1
  s1=$(cpu_snapshot)
  local other
  other=$(python3 -c "
b0, o0, t0 = map(int, '$s0'.split()); b1, o1, t1 = map(int, '$s1'.split())
print(max(0, round(100 * $(nproc) * ((b1 - b0) - (o1 - o0)) / (t1 - t0))))")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$round" "$bin" "$(rps "$file")" \
    "$(p99 "$file")" "$(errors "$file")" "$l1" "$other" >> "$RESULTS"
  echo "  $scenario r$round $bin: $(rps "$file") req/s, p99 $(p99 "$file"), errors $(errors "$file"), load1 $l1, others ${other}% CPU"
}

metric() { # metric line prefix -> value (0 when absent)
  curl -s "$BASE/metrics" | awk -v m="$1" 'index($0, m) == 1 { v = $NF } END { print v + 0 }'
}

start_gitrev() { # binary path
  DATA=$(mktemp -d /tmp/gitrev-compare-XXXXXX)
  chmod 755 "$DATA"
  env GITREV_DATA_DIR="$DATA" GITREV_LISTEN=127.0.0.1:$PORT GITREV_ENV=development \
      GITREV_LOG=warn GITREV_READY_FILE="$DATA/ready.json" "$1" serve >> "$OUT/gitrev.log" 2>&1 &
  GPID=$!
  for _ in $(seq 1 600); do
    [ -f "$DATA/ready.json" ] && return 0
    kill -0 "$GPID" 2>/dev/null || { echo "gitrev exited; see $OUT/gitrev.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "gitrev not ready after 60 s; see $OUT/gitrev.log" >&2
  exit 1
}

stop_gitrev() {
  kill -TERM "$GPID"
  wait "$GPID" || true
  GPID=""
  rm -rf "$DATA"
  DATA=""
}

drain_clicks() { # the clicks of a GET run are written before the next run starts
  for _ in $(seq 1 200); do [ "$(metric gitrev_click_queue_depth)" = "0" ] && break; sleep 0.1; done
  sleep 1
}

# Wait for a quiet machine.
quiet_note="the 1-minute load average was $(load1) at the start"
waited=0
while python3 -c "import sys; sys.exit(0 if float('$(load1)') >= float('$QUIET_LOAD') else 1)"; do
  if [ "$waited" -ge "$QUIET_WAIT" ]; then
    quiet_note="**the machine never got quiet**: the 1-minute load average was still $(load1) after waiting ${QUIET_WAIT} s for it to fall below $QUIET_LOAD; measured anyway"
    break
  fi
  [ $((waited % 60)) -eq 0 ] && echo "waiting for load < $QUIET_LOAD: $(cat /proc/loadavg)"
  sleep 5
  waited=$((waited + 5))
done
if [[ "$quiet_note" != *never* ]]; then
  quiet_note="waited ${waited} s for the 1-minute load average to fall below $QUIET_LOAD; it was $(load1) when measuring began"
fi
echo "$quiet_note"
started=$(date -u +%H:%M:%S)

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  for i in 0 1; do
    start_gitrev "${BINS[$i]}"
    CODES=$(curl -s "$BASE/urls?is_active=true&per_page=1000" | python3 -c 'import json,sys; print(",".join(u["short_code"] for u in json.load(sys.stdin)))')
    export CODES
    wrk -t$THREADS -c$CONNS -d3s -s perf/wrk/codes.lua "$BASE" > /dev/null # warm the cache
    drain_clicks
    run_wrk redirect_get "$round" "${NAMES[$i]}" "$CONNS" perf/wrk/codes.lua "$BASE"
    drain_clicks
    METHOD=HEAD run_wrk redirect_head "$round" "${NAMES[$i]}" "$CONNS" perf/wrk/codes.lua "$BASE"
    RUN_TAG=c$RUN$round$i run_wrk post_users "$round" "${NAMES[$i]}" "$USER_CONNS" perf/wrk/users.lua "$BASE"
    stop_gitrev
  done
  "$CEILING_BIN" 127.0.0.1:$CEILING_PORT 2>/dev/null &
  CPID=$!
  sleep 0.5
  run_wrk ceiling "$round" ceiling "$CONNS" perf/wrk/codes.lua "http://127.0.0.1:$CEILING_PORT"
  kill "$CPID"; wait "$CPID" 2>/dev/null || true; CPID=""
  unset CODES
done
finished=$(date -u +%H:%M:%S)

python3 - "$RESULTS" "$OUT/commands.txt" > "$SUMMARY" <<EOF
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
commands = {}
for line in open(sys.argv[2]):
    scenario, cmd = line.rstrip("\n").split("|", 1)
    commands.setdefault(scenario, cmd)
print("# compare run $RUN")
print()
print("\`$CMDLINE\` with DURATION=$DUR CONNS=$CONNS THREADS=$THREADS ROUNDS=$ROUNDS, $(nproc) cores, $started–$finished UTC.")
print()
print("- before: \`${BINS[0]}\`")
print("- after: \`${BINS[1]}\`")
print("- ceiling: \`$CEILING_BIN\`")
print("- quiet: $quiet_note.")
print("- each cell: req/s, p99 (wrk --latency), errors (non-2xx/3xx + socket errors), the 1-minute load average when the run")
print("  began (this run's own processes included) and the CPU that *other* processes used during it, in % of one core.")
titles = {
    "redirect_get": "GET /{code} (cached redirects, clicks recorded)",
    "redirect_head": "HEAD /{code} (cached redirects, no click)",
    "post_users": "POST /users at $USER_CONNS connections",
    "ceiling": "bare-hyper ceiling (same wrk command as GET /{code})",
}
def cell(r):
    return f"{float(r[3]):,.0f} req/s, p99 {r[4]}, err {r[5]}, load {r[6]}, others {r[7]}%"
for scenario in ["redirect_get", "redirect_head", "post_users", "ceiling"]:
    mine = [r for r in rows if r[0] == scenario]
    if not mine:
        continue
    print()
    print(f"## {titles[scenario]}")
    print()
    print(f"\`{commands[scenario]}\`" + (" (METHOD=HEAD)" if scenario == "redirect_head" else ""))
    print()
    if scenario == "ceiling":
        print("| round | req/s | p99 | load1 | others' CPU |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for r in mine:
            print(f"| {r[1]} | {float(r[3]):,.0f} | {r[4]} | {r[6]} | {r[7]}% |")
        continue
    print("| round | before req/s | before p99 | after req/s | after p99 | after/before | errors b/a | others' CPU b/a |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    by = {(r[1], r[2]): r for r in mine}
    rounds = sorted({r[1] for r in mine}, key=int)
    for n in rounds:
        b, a = by[(n, "before")], by[(n, "after")]
        print(f"| {n} | {float(b[3]):,.0f} | {b[4]} | {float(a[3]):,.0f} | {a[4]} | "
              f"{float(a[3]) / float(b[3]):.3f} | {b[5]}/{a[5]} | {b[7]}%/{a[7]}% |")
    bm = statistics.mean(float(by[(n, "before")][3]) for n in rounds)
    am = statistics.mean(float(by[(n, "after")][3]) for n in rounds)
    print(f"| **mean** | **{bm:,.0f}** | | **{am:,.0f}** | | **{am / bm:.3f}** | | |")
    ratios = [float(by[(n, "after")][3]) / float(by[(n, "before")][3]) for n in rounds]
    spread = [abs(float(by[(n, "before")][3]) / float(by[(m, "before")][3]) - 1)
              for n in rounds for m in rounds if n < m]
    print()
    print(f"Per-round ratios {min(ratios):.3f}–{max(ratios):.3f}; the before binary alone varies "
          f"by up to {100 * max(spread):.1f}% between its own rounds.")
EOF
cat "$SUMMARY"
echo
echo "summary: $SUMMARY"
