#!/usr/bin/env bash
# A against B on a database kept by perf/tier.sh (KEEP_DB), the link tier on, in alternating
# rounds: two gitrev binaries, or one binary under two environments. Each round starts the
# server on a fresh data directory holding the kept tier file (a hard link), asks each hot code
# once, waits 2 s, then runs wrk over the hot codes (cached) and over every code (random), and
# reads RssAnon right after and 12 s after the random run. One line per round and side.
#
#   KEEP_DB=/var/tmp/gitrev-tier-10m METHOD=HEAD A_BIN=/tmp/gitrev-before B_BIN=target/release/gitrev perf/tier_ab.sh
#   KEEP_DB=/var/tmp/gitrev-tier-1m B_ENV="MIMALLOC_ALLOW_THP=0" perf/tier_ab.sh
#
# Settings (environment): KEEP_DB (required: a cluster perf/tier.sh left, with codes.txt and
# tier-build/links.tier); A_BIN, B_BIN (target/release/gitrev); A_ENV, B_ENV (extra `NAME=value`
# words for each side, none by default); METHOD (GET); ROUNDS (3); DURATION (10); HOT (1000
# codes, evenly spread); PORT (18091); PGPORT (15432); PGBIN (/usr/lib/postgresql/15/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KEEP_DB:?KEEP_DB: a cluster kept by perf/tier.sh}"
A_BIN=$(realpath "${A_BIN:-target/release/gitrev}")
B_BIN=$(realpath "${B_BIN:-target/release/gitrev}")
A_ENV=${A_ENV:-}
B_ENV=${B_ENV:-}
METHOD=${METHOD:-GET}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
HOT=${HOT:-1000}
PORT=${PORT:-18091}
PGPORT=${PGPORT:-15432}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
. perf/lib.sh
need_commands wrk curl

CODES_FILE=$KEEP_DB/codes.txt
LINKS=$(($(stat -c %s "$CODES_FILE") / 8))
HOT_CODES=$(awk -v step=$((LINKS / HOT)) -v hot="$HOT" 'NR % step == 1 && n++ < hot' "$CODES_FILE" | paste -sd,)
as_pg() { runuser -u postgres -- "$@"; }
as_pg "$PGBIN/pg_ctl" -D "$KEEP_DB/pg" -l "$KEEP_DB/pg.log" -o "-p $PGPORT" -w -t 300 start > /dev/null
stop_pg() { as_pg "$PGBIN/pg_ctl" -D "$KEEP_DB/pg" -m fast -w stop > /dev/null 2>&1 || true; }
trap 'cleanup; stop_pg' EXIT

rss_anon() { awk '$1 == "RssAnon:" { printf "%.1f", $2 / 1024 }' "/proc/$GPID/status"; }
rate() { awk '/Requests\/sec/ { print $2 }'; }

echo "# $LINKS links, METHOD=$METHOD, wrk -t2 -c64 -d${DURATION}s; A: $A_BIN $A_ENV; B: $B_BIN $B_ENV"
for round in $(seq "$ROUNDS"); do
  sides="A B"
  [ $((round % 2)) -eq 0 ] && sides="B A"
  for side in $sides; do
    if [ "$side" = A ]; then bin=$A_BIN; extra=$A_ENV; else bin=$B_BIN; extra=$B_ENV; fi
    DATA=$(mktemp -d /var/tmp/gitrev-ab.XXXXXX)
    chmod 755 "$DATA"
    ln "$KEEP_DB/tier-build/links.tier" "$DATA/links.tier"
    # shellcheck disable=SC2086 # $extra is words of NAME=value
    env $extra DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/gitrev" GITREV_DATA_DIR="$DATA" \
      GITREV_LISTEN="127.0.0.1:$PORT" GITREV_ENV=development GITREV_LOG=warn \
      GITREV_SNAPSHOT_SECS=0 GITREV_TIER=on "$bin" serve > "$DATA/gitrev.log" 2>&1 &
    GPID=$!
    for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.2; done
    head_only=()
    [ "$METHOD" = HEAD ] && head_only=(-I)
    for code in ${HOT_CODES//,/ }; do curl -s -o /dev/null "${head_only[@]}" "127.0.0.1:$PORT/$code"; done
    sleep 2
    cached=$(CODES=$HOT_CODES METHOD=$METHOD wrk -t2 -c64 -d"${DURATION}s" -s perf/wrk/codes.lua "http://127.0.0.1:$PORT" | rate)
    sleep 3
    random=$(CODES_FILE=$CODES_FILE METHOD=$METHOD wrk -t2 -c64 -d"${DURATION}s" -s perf/wrk/random_codes.lua "http://127.0.0.1:$PORT" | rate)
    after=$(rss_anon)
    sleep 12
    later=$(rss_anon)
    echo "round=$round side=$side cached=$cached random=$random ratio=$(python3 -c "print(f'{$random / $cached:.3f}')") rss_anon_mb=$after rss_anon_12s_mb=$later"
    cleanup
    GPID=""
    DATA=""
    sleep 2
  done
done
