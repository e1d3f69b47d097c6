#!/usr/bin/env bash
# Flamegraphs of the redirect with its click recorded (issue #9): gitrev on the embedded database
# with the seed data under `wrk -t1 -c64` GET /{code} over the seeded active codes (the load of
# perf/clicks.sh), sampled with `perf record`, folded into SVGs with inferno. A copy of record.sh's
# machinery with issue #9's load.
#
#   flamegraphs/record_clicks.sh
#     -> flamegraphs/redirect_clicks.svg          the gitrev process (dwarf call graphs)
#        flamegraphs/redirect_clicks_system.svg   the whole machine (wrk, gitrev, PostgreSQL)
#        flamegraphs/redirect_clicks_system.txt   share of samples per process name
#        flamegraphs/redirect_clicks_postgres.txt the PostgreSQL processes' hottest functions
#        flamegraphs/redirect_clicks_gitrev.txt   the same for gitrev's threads (whole-machine recording)
#   FOLDED_OUT=/tmp/system.folded flamegraphs/record_clicks.sh  # also keeps the folded stacks
#   GITREV_BIN=/path/gitrev flamegraphs/record_clicks.sh   # a binary built elsewhere; nothing is built
#
# Needs: perf (linux-perf), wrk, inferno (`cargo install inferno`).
set -euo pipefail
[ -n "${GITREV_BIN:-}" ] && GITREV_BIN=$(realpath -- "$GITREV_BIN")
cd "$(dirname "$0")/.."
DUR=${DURATION:-12}
PORT=${PORT:-18080}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
BASE=http://127.0.0.1:$PORT
command -v inferno-flamegraph >/dev/null || { echo "install inferno: cargo install inferno"; exit 1; }
command -v perf >/dev/null || { echo "install perf: apt-get install linux-perf"; exit 1; }

if [ -z "${GITREV_BIN:-}" ]; then
  cargo build --release --bin gitrev
  GITREV_BIN=target/release/gitrev
fi
DATA=$(mktemp -d /tmp/gitrev-flame-XXXXXX)
chmod 755 "$DATA"
GPID=""
trap '[ -n "$GPID" ] && kill -TERM $GPID 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"' EXIT

GITREV_DATA_DIR="$DATA" GITREV_LISTEN=127.0.0.1:$PORT GITREV_ENV=development GITREV_LOG=warn \
  GITREV_READY_FILE="$DATA/ready.json" "$GITREV_BIN" serve > "$DATA/gitrev.log" 2>&1 &
GPID=$!
until [ -f "$DATA/ready.json" ]; do sleep 0.1; done

export CODES
CODES=$(curl -s "$BASE/urls?is_active=true&per_page=1000" | python3 -c 'import json,sys; print(",".join(u["short_code"] for u in json.load(sys.stdin)))')
METHOD=HEAD wrk -t$THREADS -c$CONNS -d3s -s perf/wrk/codes.lua "$BASE" > /dev/null   # warm the cache

# The gitrev process.
wrk -t$THREADS -c$CONNS -d$((DUR + 2))s -s perf/wrk/codes.lua "$BASE" > "$DATA/gitrev.wrk" &
wpid=$!
sleep 1
perf record -e cpu-clock -F 997 -g --call-graph dwarf,16384 -p "$GPID" -o "$DATA/gitrev.data" -- sleep "$DUR" 2> /dev/null
wait $wpid
perf script -i "$DATA/gitrev.data" 2>/dev/null | inferno-collapse-perf > "$DATA/gitrev.folded"
inferno-flamegraph --title "gitrev: GET /{code}, clicks recorded, wrk -t$THREADS -c$CONNS ($(awk '/Requests\/sec/ {print $2}' "$DATA/gitrev.wrk") req/s under sampling)" \
  < "$DATA/gitrev.folded" > flamegraphs/redirect_clicks.svg
echo flamegraphs/redirect_clicks.svg

# The whole machine under the same load: where the two cores go.
sleep 2
wrk -t$THREADS -c$CONNS -d$((DUR + 2))s -s perf/wrk/codes.lua "$BASE" > "$DATA/system.wrk" &
wpid=$!
sleep 1
perf record -a -e cpu-clock -F 499 -g -o "$DATA/system.data" -- sleep "$DUR" 2> /dev/null
wait $wpid
perf script -F +pid -i "$DATA/system.data" 2>/dev/null > "$DATA/system.script"
inferno-collapse-perf < "$DATA/system.script" > "$DATA/system.folded"
# With pids, to pick this cluster's PostgreSQL (others' may run on the same machine) and this gitrev.
inferno-collapse-perf --pid < "$DATA/system.script" > "$DATA/system_pid.folded"
PM=$(head -1 "$DATA/pg/postmaster.pid")
OURPG=$(awk -v pm="$PM" '{ sub(/^.*\) /, ""); if ($2 == pm) print FILENAME }' /proc/[0-9]*/stat 2>/dev/null | cut -d/ -f3 | tr '\n' ' ')
OURPG="$PM $OURPG"
inferno-flamegraph --title "whole machine, GET /{code} with clicks, wrk -t$THREADS -c$CONNS ($(awk '/Requests\/sec/ {print $2}' "$DATA/system.wrk") req/s under sampling)" \
  < "$DATA/system.folded" > flamegraphs/redirect_clicks_system.svg
echo flamegraphs/redirect_clicks_system.svg
{
  echo "# share of all samples per process name (perf record -a -F 499, $DUR s, $(awk '/Requests\/sec/ {print $2}' "$DATA/system.wrk") req/s)"
  awk '{ n = $NF; split($1, f, ";"); c[f[1]] += n; t += n } END { for (k in c) printf "%5.1f%% %s\n", 100 * c[k] / t, k }' \
    "$DATA/system.folded" | sort -rn | head -10
} | tee flamegraphs/redirect_clicks_system.txt
# Per process: the functions on the most sampled stacks (inclusive: a sample counts once for every
# function on its stack) and the hottest leaves (self time), from the same recording.
top_functions() { # "pid pid ..." title
  python3 - "$DATA/system_pid.folded" "$1" "$2" <<'PY'
import collections, re, sys
path, pids, title = sys.argv[1], set(sys.argv[2].split()), sys.argv[3]
incl, leaf, total = collections.Counter(), collections.Counter(), 0
for line in open(path):
    stack, _, n = line.rstrip("\n").rpartition(" ")
    frames = stack.split(";")
    if frames[0].rpartition("-")[2].split("/")[0] not in pids:
        continue
    n = int(n)
    total += n
    for f in set(frames[1:]):
        incl[f] += n
    leaf[frames[-1]] += n
print(f"# {title}: {total} (sample weight)")
print("## inclusive (share of these samples with the function on the stack)")
for f, n in incl.most_common(45):
    print(f"{100 * n / total:5.1f}% {f}")
print("## self (leaf function)")
for f, n in leaf.most_common(20):
    print(f"{100 * n / total:5.1f}% {f}")
PY
}
top_functions "$OURPG" "this gitrev's PostgreSQL (postmaster $PM and its children)" > flamegraphs/redirect_clicks_postgres.txt
top_functions "$GPID" "the gitrev process ($GPID)" > flamegraphs/redirect_clicks_gitrev.txt
cp "$DATA/system.folded" "${FOLDED_OUT:-/dev/null}" 2>/dev/null || true
echo flamegraphs/redirect_clicks_postgres.txt flamegraphs/redirect_clicks_gitrev.txt
