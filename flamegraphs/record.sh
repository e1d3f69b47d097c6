#!/usr/bin/env bash
# Regenerates the flamegraphs: runs gitrev (release profile, line tables) on the embedded database
# with the seed data, puts it under wrk load, samples it with `perf record` and folds the samples
# into SVGs with inferno.
#
#   flamegraphs/record.sh            -> flamegraphs/redirect.svg, flamegraphs/post_users.svg
#
# Needs: perf (linux-perf), wrk, inferno (`cargo install inferno`).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DURATION:-12}
PORT=${PORT:-18080}
BASE=http://127.0.0.1:$PORT
command -v inferno-flamegraph >/dev/null || { echo "install inferno: cargo install inferno"; exit 1; }

cargo build --release --bin gitrev
DATA=$(mktemp -d /tmp/gitrev-flame-XXXXXX)
chmod 755 "$DATA"
GPID=""
trap '[ -n "$GPID" ] && kill -TERM $GPID 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"' EXIT

GITREV_DATA_DIR="$DATA" GITREV_LISTEN=127.0.0.1:$PORT GITREV_ENV=development GITREV_LOG=warn \
  GITREV_READY_FILE="$DATA/ready.json" target/release/gitrev serve > "$DATA/gitrev.log" 2>&1 &
GPID=$!
until [ -f "$DATA/ready.json" ]; do sleep 0.1; done

profile() { # name wrk-script [env]
  local name=$1 script=$2
  wrk -t2 -c${CONNS:-100} -d$((DUR + 2))s -s "$script" "$BASE" > "$DATA/$name.wrk" &
  local wpid=$!
  sleep 1
  perf record -e cpu-clock -F 997 -g --call-graph dwarf,16384 -p "$GPID" -o "$DATA/$name.data" -- sleep "$DUR" 2> /dev/null
  wait $wpid
  perf script -i "$DATA/$name.data" 2>/dev/null | inferno-collapse-perf > "$DATA/$name.folded"
  inferno-flamegraph --title "gitrev: $name ($(awk '/Requests\/sec/ {print $2}' "$DATA/$name.wrk") req/s under sampling)" \
    < "$DATA/$name.folded" > "flamegraphs/$name.svg"
  echo "flamegraphs/$name.svg"
}

export CODES
CODES=$(curl -s "$BASE/urls?is_active=true&per_page=1000" | python3 -c 'import json,sys; print(",".join(u["short_code"] for u in json.load(sys.stdin)))')
wrk -t2 -c100 -d3s -s perf/wrk/codes.lua "$BASE" > /dev/null   # warm the cache
profile redirect perf/wrk/codes.lua

# The whole machine under the same redirect load: where the two cores go (wrk, gitrev, and the
# PostgreSQL backends writing the clicks), which the per-process graph above cannot show.
wrk -t2 -c${CONNS:-100} -d$((DUR + 2))s -s perf/wrk/codes.lua "$BASE" > "$DATA/system.wrk" &
wpid=$!
sleep 1
perf record -a -e cpu-clock -F 499 -g -o "$DATA/system.data" -- sleep "$DUR" 2> /dev/null
wait $wpid
perf script -i "$DATA/system.data" 2>/dev/null | inferno-collapse-perf > "$DATA/system.folded"
inferno-flamegraph --title "whole machine under cached redirects ($(awk '/Requests\/sec/ {print $2}' "$DATA/system.wrk") req/s under sampling)" \
  < "$DATA/system.folded" > flamegraphs/redirect_system.svg
echo flamegraphs/redirect_system.svg
# Share of samples per process name, for the notes.
awk '{ n = $NF; split($1, f, ";"); c[f[1]] += n; t += n } END { for (k in c) printf "%5.1f%% %s\n", 100 * c[k] / t, k }' \
  "$DATA/system.folded" | sort -rn | head -8 | tee flamegraphs/redirect_system.txt
CONNS=256 RUN_TAG=flame$$ profile post_users perf/wrk/users.lua
