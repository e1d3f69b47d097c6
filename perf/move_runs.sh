#!/usr/bin/env bash
# What moving clicks stored one row each into runs costs (migration 5's maintenance pass; see
# docs/operations.md, "Moving clicks into runs"): a fresh gitrev on its embedded database, CLICKS
# (1,000,000) rows put into the old one-row-per-click table `clicks` (one link, five contexts, over
# two days), then gitrev restarted: its maintenance pass at start moves them in chunks of 5,000
# while it serves. Prints the clicks moved, the seconds from "gitrev serving" to the log line
# saying they moved, and the runs made.
#
#   perf/move_runs.sh                      CLICKS=1000000 PORT=18999
#   GITREV_BIN=/path/gitrev perf/move_runs.sh
#
# Needs: psql, python3; builds the release binary and the click_volume example unless given.
set -euo pipefail
cd "$(dirname "$0")/.."
CLICKS=${CLICKS:-1000000}
PORT=${PORT:-18999}
if [ -z "${GITREV_BIN:-}" ]; then
  cargo build --release --bin gitrev --example click_volume
  GITREV_BIN=target/release/gitrev
fi
VOLUME_BIN=${VOLUME_BIN:-target/release/examples/click_volume}
DATA=$(mktemp -d /tmp/gitrev-move-XXXXXX)
chmod 755 "$DATA"
GPID=""
trap '[ -n "$GPID" ] && kill -TERM $GPID 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"' EXIT
start() {
  rm -f "$DATA/ready.json"
  GITREV_DATA_DIR="$DATA/d" GITREV_LISTEN=127.0.0.1:$PORT GITREV_ENV=development \
    GITREV_READY_FILE="$DATA/ready.json" "$GITREV_BIN" serve > "$DATA/$1.log" 2>&1 &
  GPID=$!
  until [ -f "$DATA/ready.json" ]; do sleep 0.1; done
  DB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["database_url"])' "$DATA/ready.json")
}
start first
# A link version and contexts, as the writer makes them.
CLICKS=1000 DAYS=1 BATCH=1000 WRITERS=1 "$VOLUME_BIN" "$DB" 1 > /dev/null
psql "$DB" -qX <<SQL
CREATE TABLE IF NOT EXISTS clicks_p20261120 PARTITION OF clicks FOR VALUES FROM ('2026-11-20') TO ('2026-11-21');
CREATE TABLE IF NOT EXISTS clicks_p20261121 PARTITION OF clicks FOR VALUES FROM ('2026-11-21') TO ('2026-11-22');
INSERT INTO clicks (id, at, link_id, context_id)
SELECT 100000000 + i, timestamp '2026-11-20 00:00:00' + (i - 1) * (interval '172800 seconds' / $CLICKS),
       (SELECT min(id) FROM click_links), (SELECT min(id) FROM click_contexts) + (i % 5)
FROM generate_series(1, $CLICKS) i;
VACUUM ANALYZE clicks;
SQL
runs_before=$(psql "$DB" -AtXc "SELECT count(*) FROM click_runs")
kill -TERM $GPID; wait $GPID || true; GPID=""
start second
until grep -q 'moved into runs\|cannot move' "$DATA/second.log"; do sleep 0.2; done
python3 - "$DATA/second.log" <<'PY'
import json, sys
from datetime import datetime
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
t = lambda m: next(datetime.fromisoformat(l["timestamp"].replace("Z", "+00:00")) for l in lines if l["message"] == m)
moved = next(l for l in lines if l["message"] == "clicks stored one row each moved into runs")
s = (t("clicks stored one row each moved into runs") - t("gitrev serving")).total_seconds()
print(f"moved={moved['moved']} seconds={s:.1f} clicks_per_s={moved['moved'] / s:.0f}")
PY
echo "runs_made=$(( $(psql "$DB" -AtXc "SELECT count(*) FROM click_runs") - runs_before )) left=$(psql "$DB" -AtXc "SELECT count(*) FROM clicks")"
