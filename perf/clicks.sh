#!/usr/bin/env bash
# Issue #9's measurements (clicks at volume), in one run, as ratios taken on the same machine in
# the same minutes:
#
#   perf/clicks.sh [section ...]          sections: redirect volume bench (default: redirect volume)
#   ROUNDS=3 DURATION=15 CLICKS=10000000 perf/clicks.sh
#   GITREV_BIN=/path/gitrev CEILING_BIN=/path/ceiling VOLUME_BIN=/path/click_volume perf/clicks.sh
#
# redirect  ROUNDS (2) interleaved rounds of `wrk -t1 -c64` over the seeded active codes
#           (perf/wrk/codes.lua): the bare-hyper ceiling (the `ceiling` example, a fixed 302),
#           gitrev HEAD /{code} (no click) and gitrev GET /{code} (every click recorded), each round
#           on a fresh gitrev with the reference seed set. Around each gitrev run: the CPU of every
#           process of its embedded PostgreSQL (the postmaster from the cluster's postmaster.pid
#           and its children, from /proc/<pid>/stat: utime+stime, plus the postmaster's
#           cutime+cstime for backends that exited) from before the run until the click queue has
#           drained after it, divided by the clicks url_stats gained → µs of PostgreSQL CPU per
#           click; and gitrev's own CPU per request served.
# volume    CLICKS (10,000,000) clicks for ONE seeded url, spread over DAYS (30) days, written by
#           the `click_volume` example through `Store::record_clicks` (the service's writer) into a
#           fresh gitrev's database; the load is timed (clicks/s). Growth of pg_database_size
#           (each side after VACUUM and CHECKPOINT) / clicks, and the size of every relation
#           involved. Then, on that url, REQUESTS (200) sequential requests each through HTTP
#           (one keep-alive connection): timeseries 30 days by hour and by day, breakdown by each
#           dimension over 30 days → p50/p99/max.
# bench     `cargo bench --bench hot_paths -- click_writer` (criterion; builds the bench).
#
# Before each timed section it waits for a quiet machine: the 1-minute load average below
# QUIET_LOAD (1.0), polled for up to QUIET_WAIT seconds in all (2400); if it never gets quiet it
# measures anyway and says so. Each wrk run also records the CPU used by processes other than this
# script's own (other engineers' builds), in % of one core, as perf/compare.sh does.
#
# Output: perf/out/clicks-<run>/summary.md (every figure with the command that produced it), the
# raw outputs beside it. Needs: wrk, curl, psql (postgresql-client), python3; installed from Debian
# when missing.
set -euo pipefail
[ -n "${GITREV_BIN:-}" ] && GITREV_BIN=$(realpath -- "$GITREV_BIN")
[ -n "${CEILING_BIN:-}" ] && CEILING_BIN=$(realpath -- "$CEILING_BIN")
[ -n "${VOLUME_BIN:-}" ] && VOLUME_BIN=$(realpath -- "$VOLUME_BIN")
cd "$(dirname "$0")/.."
. perf/lib.sh

DUR=${DURATION:-15}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-2}
CLICKS=${CLICKS:-10000000}
DAYS=${DAYS:-30}
REQUESTS=${REQUESTS:-200}
PORT=${PORT:-18080}
CEILING_PORT=${CEILING_PORT:-18090}
QUIET_LOAD=${QUIET_LOAD:-1.0}
QUIET_WAIT=${QUIET_WAIT:-2400}
SECTIONS=${*:-redirect volume}
RUN=$(date -u +%Y%m%dT%H%M%SZ)
OUT=perf/out/clicks-$RUN
mkdir -p "$OUT"
SUMMARY=$OUT/summary.md
BASE=http://127.0.0.1:$PORT
TCK=$(getconf CLK_TCK)

need_commands wrk curl psql=postgresql-client

needs() { [[ " $SECTIONS " == *" $1 "* ]]; }
if needs redirect || needs volume; then
  if [ -z "${GITREV_BIN:-}" ]; then
    cargo build --release --bin gitrev --example ceiling --example click_volume
    GITREV_BIN=$(realpath target/release/gitrev)
  fi
  CEILING_BIN=${CEILING_BIN:-$(realpath target/release/examples/ceiling)}
  VOLUME_BIN=${VOLUME_BIN:-$(realpath target/release/examples/click_volume)}
  for b in "$GITREV_BIN" "$CEILING_BIN" "$VOLUME_BIN"; do
    [ -x "$b" ] || { echo "not an executable file: $b (cargo build --release --bin gitrev --example ceiling --example click_volume)" >&2; exit 2; }
  done
fi

echo "# clicks perf run $RUN ($(nproc) cores)" > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
note ""
note "\`perf/clicks.sh $SECTIONS\` with DURATION=$DUR CONNS=$CONNS THREADS=$THREADS ROUNDS=$ROUNDS CLICKS=$CLICKS DAYS=$DAYS REQUESTS=$REQUESTS; gitrev \`${GITREV_BIN:-}\` at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates src 2>/dev/null || echo ' (crates/src modified)')."

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
WAITED=0
wait_quiet() { # what: waits (sharing QUIET_WAIT across the run), then notes how it went
  local what=$1 before=$WAITED
  while python3 -c "import sys; sys.exit(0 if float('$(load1)') >= float('$QUIET_LOAD') else 1)"; do
    if [ "$WAITED" -ge "$QUIET_WAIT" ]; then
      note "- quiet ($what): **the machine never got quiet**: the 1-minute load average was still $(load1) after ${QUIET_WAIT} s of waiting in this run for it to fall below $QUIET_LOAD; measured anyway"
      return 0
    fi
    [ $((WAITED % 60)) -eq 0 ] && echo "waiting for load < $QUIET_LOAD: $(cat /proc/loadavg)"
    sleep 5
    WAITED=$((WAITED + 5))
  done
  note "- quiet ($what): waited $((WAITED - before)) s for the 1-minute load average to fall below $QUIET_LOAD; it was $(load1) when measuring began ($(date -u +%H:%M:%S) UTC)"
}

# CPU ticks (utime+stime) of gitrev itself, and of its PostgreSQL: the postmaster (with the
# cutime+cstime of the backends it reaped) and every live child of it.
gitrev_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$GPID/stat"; }
pg_ticks() {
  python3 - "$(head -1 "$DATA/pg/postmaster.pid")" <<'EOF'
import os, sys
pm = int(sys.argv[1])
def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()
s = stat(pm)
ticks = int(s[11]) + int(s[12]) + int(s[13]) + int(s[14])
n = 0
for d in os.listdir("/proc"):
    if d.isdigit() and int(d) != pm:
        try:
            r = stat(int(d))
        except OSError:
            continue
        if int(r[1]) == pm:
            ticks += int(r[11]) + int(r[12])
            n += 1
print(ticks, n)
EOF
}

start_gitrev() {
  DATA=$(mktemp -d /tmp/gitrev-clicks-XXXXXX)
  chmod 755 "$DATA"
  env GITREV_DATA_DIR="$DATA" GITREV_LISTEN=127.0.0.1:$PORT GITREV_ENV=development \
      GITREV_LOG=warn GITREV_READY_FILE="$DATA/ready.json" "$GITREV_BIN" serve >> "$OUT/gitrev.log" 2>&1 &
  GPID=$!
  for _ in $(seq 1 600); do
    if [ -f "$DATA/ready.json" ]; then
      DBURL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["database_url"])' "$DATA/ready.json")
      return 0
    fi
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

metric() { # metric line prefix -> value (0 when absent)
  curl -s "$BASE/metrics" | awk -v m="$1" 'index($0, m) == 1 { v = $NF } END { printf "%d\n", v + 0 }'
}
metric_raw() { # the value as printed (a float), 0 when absent
  curl -s "$BASE/metrics" | awk -v m="$1" 'index($0, m) == 1 { v = $NF } END { print v + 0 }'
}
drain_clicks() {
  for _ in $(seq 1 300); do [ "$(metric gitrev_click_queue_depth)" = "0" ] && break; sleep 0.1; done
  sleep 1
}
clicks_stored() { psql "$DBURL" -Atc "SELECT COALESCE(SUM(clicks), 0) FROM url_stats"; }
rollup_rows() { psql "$DBURL" -Atc "SELECT (SELECT count(*) FROM url_stats) + (SELECT count(*) FROM click_hours) + (SELECT count(*) FROM click_breakdowns)"; }

rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
requests() { awk '/requests in/ { print $1 }' "$1"; }
p99() { awk '$1 == "99%" { print $2 }' "$1"; }
errors() {
  awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { for (i = 3; i <= NF; i += 2) { gsub(",", "", $(i+1)); n += $(i+1) } } END { print n + 0 }' "$1"
}

if needs redirect; then
  note ""
  note "## Redirects: bare hyper, HEAD, GET (clicks recorded); database CPU per click"
  note ""
  WRK="wrk -t$THREADS -c$CONNS -d${DUR}s --latency -s perf/wrk/codes.lua"
  note "Each run: \`$WRK URL\` (CODES = the seeded active codes; METHOD=HEAD for HEAD), after a 3 s warm-up of the cache; every gitrev round on a fresh data dir."
  wait_quiet redirect
  RESULTS=$OUT/redirect.tsv # scenario round rps p99 errors others_pct pg_ticks clicks gitrev_ticks requests pg_procs served_302 batches flush_s new_rollup_rows
  SERVED='gitrev_http_requests_total{method="GET",route="/{short_code}",status="302"}'
  for round in $(seq 1 "$ROUNDS"); do
    "$CEILING_BIN" 127.0.0.1:$CEILING_PORT 2>/dev/null &
    CPID=$!
    sleep 0.5
    start_gitrev
    CODES=$(curl -s "$BASE/urls?is_active=true&per_page=1000" | python3 -c 'import json,sys; print(",".join(u["short_code"] for u in json.load(sys.stdin)))')
    export CODES
    # ceiling
    s0=$(cpu_snapshot)
    $WRK "http://127.0.0.1:$CEILING_PORT" > "$OUT/ceiling_r$round.txt" 2>&1
    s1=$(cpu_snapshot)
    printf 'ceiling\t%s\t%s\t%s\t%s\t%s\t\t\t\t\t\t\t\t\t\n' "$round" "$(rps "$OUT/ceiling_r$round.txt")" \
      "$(p99 "$OUT/ceiling_r$round.txt")" "$(errors "$OUT/ceiling_r$round.txt")" "$(others_pct "$s0" "$s1")" >> "$RESULTS"
    kill "$CPID"; wait "$CPID" 2>/dev/null || true; CPID=""
    METHOD=HEAD wrk -t$THREADS -c$CONNS -d3s -s perf/wrk/codes.lua "$BASE" > /dev/null # warm the cache
    # HEAD, then GET (the order alternates between rounds)
    order="head get"; [ $((round % 2)) -eq 0 ] && order="get head"
    for kind in $order; do
      method=HEAD; [ "$kind" = get ] && method=GET
      f=$OUT/${kind}_r$round.txt
      drain_clicks
      b0=$(metric gitrev_click_batch_size_count); f0=$(metric_raw gitrev_click_flush_duration_seconds_sum)
      r0=$(rollup_rows); m0=$(metric "$SERVED"); c0=$(clicks_stored); p0=$(pg_ticks); g0=$(gitrev_ticks); s0=$(cpu_snapshot)
      METHOD=$method $WRK "$BASE" > "$f" 2>&1
      s1=$(cpu_snapshot)
      drain_clicks
      c1=$(clicks_stored); p1=$(pg_ticks); g1=$(gitrev_ticks); m1=$(metric "$SERVED")
      b1=$(metric gitrev_click_batch_size_count); f1=$(metric_raw gitrev_click_flush_duration_seconds_sum); r1=$(rollup_rows)
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$round" "$(rps "$f")" "$(p99 "$f")" \
        "$(errors "$f")" "$(others_pct "$s0" "$s1")" "$(( ${p1% *} - ${p0% *} ))" "$((c1 - c0))" \
        "$((g1 - g0))" "$(requests "$f")" "${p1#* }" "$((m1 - m0))" "$((b1 - b0))" "$(python3 -c "print(f'{$f1 - $f0:.3f}')")" "$((r1 - r0))" >> "$RESULTS"
      tail -1 "$RESULTS"
    done
    echo "$round $(metric gitrev_click_queue_overflow_total) $(metric gitrev_clicks_lost_total) $(metric gitrev_clicks_url_gone_total)" >> "$OUT/accounting.txt"
    stop_gitrev
    unset CODES
  done
  python3 - "$RESULTS" "$OUT/accounting.txt" "$TCK" >> "$SUMMARY" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
acct = [l.split() for l in open(sys.argv[2])]
tck = int(sys.argv[3])
by = {(r[0], r[1]): r for r in rows}
rounds = sorted({r[1] for r in rows}, key=int)
print()
print("| round | bare hyper req/s | HEAD req/s | HEAD / hyper | GET req/s | GET / hyper | p99 hyper / HEAD / GET | errors | others' CPU hyper / HEAD / GET |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for n in rounds:
    c, h, g = by[("ceiling", n)], by[("head", n)], by[("get", n)]
    cr, hr, gr = float(c[2]), float(h[2]), float(g[2])
    print(f"| {n} | {cr:,.0f} | {hr:,.0f} | {hr / cr:.2f} | {gr:,.0f} | **{gr / cr:.2f}** | {c[3]} / {h[3]} / {g[3]} | "
          f"{int(c[4]) + int(h[4]) + int(g[4])} | {c[5]}% / {h[5]}% / {g[5]}% |")
print()
print("Database and service CPU (ticks of 1/%d s from /proc/<pid>/stat; PostgreSQL = postmaster incl. reaped"
      " backends + its live children, from just before the wrk run until the click queue drained after it):" % tck)
print()
print("| round | run | requests | clicks stored | PG CPU s | **PG µs / click** | PG cores (over the wrk run) | gitrev CPU s | gitrev µs / request | click batches (mean size, mean flush ms) | new rollup rows |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for n in rounds:
    for kind in ("get", "head"):
        r = by[(kind, n)]
        pg, clicks, gt, reqs = int(r[6]) / tck, int(r[7]), int(r[8]) / tck, int(r[9])
        dur = float(r[9]) / float(r[2])
        per_click = f"**{1e6 * pg / clicks:.1f}**" if clicks else "–"
        nb, fs = int(r[12]), float(r[13])
        batches = f"{nb:,} ({clicks / nb:.0f}, {1000 * fs / nb:.1f})" if nb else "0"
        print(f"| {n} | {kind.upper()} | {reqs:,} | {clicks:,} | {pg:.2f} | {per_click} | {pg / dur:.2f} | {gt:.2f} | {1e6 * gt / reqs:.1f} | {batches} | {int(r[14]):,} |")
print()
for n, overflow, lost, gone in acct:
    g = by[("get", n)]
    print(f"- round {n} accounting: the GET run served {int(g[11]):,} redirects (302s counted by /metrics) and url_stats "
          f"gained {int(g[7]):,} clicks once the queue drained; over the whole round: queue overflow {overflow}, "
          f"clicks lost {lost}, url gone {gone}")
gets = [float(by[("get", n)][2]) / float(by[("ceiling", n)][2]) for n in rounds]
heads = [float(by[("head", n)][2]) / float(by[("ceiling", n)][2]) for n in rounds]
pcs = [1e6 * int(by[("get", n)][6]) / tck / int(by[("get", n)][7]) for n in rounds if int(by[("get", n)][7])]
print(f"- **GET / bare hyper {min(gets):.2f}–{max(gets):.2f}** (target ≥ 0.75); HEAD / bare hyper {min(heads):.2f}–{max(heads):.2f}")
if pcs:
    print(f"- **PostgreSQL CPU per click {min(pcs):.1f}–{max(pcs):.1f} µs** (target ≤ 5 µs)")
EOF
  tail -n 20 "$SUMMARY"
fi

if needs volume; then
  note ""
  note "## $CLICKS clicks on one url: load, bytes per click, analytics latency"
  note ""
  start_gitrev
  URL_ID=$(psql "$DBURL" -Atc "SELECT id FROM urls WHERE is_active ORDER BY id LIMIT 1")
  size_sql="SELECT pg_database_size(current_database())"
  psql "$DBURL" -qc "VACUUM" -c "CHECKPOINT"
  before=$(psql "$DBURL" -Atc "$size_sql")
  before_clicks=$(psql "$DBURL" -Atc "SELECT COALESCE(sum(cardinality(ids)), 0) FROM click_runs")
  wait_quiet volume
  load_cmd="CLICKS=$CLICKS DAYS=$DAYS BATCH=1000 WRITERS=2 $VOLUME_BIN \$DATABASE_URL $URL_ID"
  p0=$(pg_ticks)
  CLICKS=$CLICKS DAYS=$DAYS BATCH=1000 WRITERS=2 "$VOLUME_BIN" "$DBURL" "$URL_ID" > "$OUT/volume.txt" 2> "$OUT/volume.err"
  p1=$(pg_ticks)
  cat "$OUT/volume.txt"
  psql "$DBURL" -qc "VACUUM" -c "CHECKPOINT"
  after=$(psql "$DBURL" -Atc "$size_sql")
  after_clicks=$(psql "$DBURL" -Atc "SELECT COALESCE(sum(cardinality(ids)), 0) FROM click_runs")
  stored=$((after_clicks - before_clicks))
  eval "$(tr ' ' '\n' < "$OUT/volume.txt" | grep -E '^(seconds|clicks_per_s)=')"
  note "- load: **$stored clicks in ${seconds} s = ${clicks_per_s} clicks/s** through \`Store::record_clicks\` (batches of 1000, 2 writers, each batch one transaction with its marker, as the service's flushers) — \`$load_cmd\`; PostgreSQL CPU during the load $(python3 -c "print(f'{(${p1% *} - ${p0% *}) / $TCK:.1f} s = {1e6 * (${p1% *} - ${p0% *}) / $TCK / $stored:.1f} µs per click')")"
  note "- \`pg_database_size\` (after \`VACUUM\` and \`CHECKPOINT\`): $before bytes before, $after after → **$(python3 -c "print(f'{($after - $before) / $stored:.1f}')") bytes per click** (growth / $stored clicks; target ≤ 100)"
  note ""
  note "Per relation, after the load (\`pg_relation_size\` summed over the day partitions; \`pg_total_relation_size\` for the others, their indexes and TOAST included):"
  note ""
  psql "$DBURL" -At -F $'\t' > "$OUT/relations.tsv" <<SQL
SELECT 'click_runs (heap, ' || count(*) || ' day partitions)', sum(pg_relation_size(relid)) FROM pg_partition_tree('click_runs') WHERE isleaf
UNION ALL SELECT 'click_runs: free space + visibility maps', sum(pg_relation_size(relid, 'fsm') + pg_relation_size(relid, 'vm')) FROM pg_partition_tree('click_runs') WHERE isleaf
UNION ALL SELECT 'click_runs: TOAST (runs are kept under its threshold)', sum(COALESCE(pg_total_relation_size(NULLIF(reltoastrelid, 0)), 0)) FROM pg_partition_tree('click_runs') t JOIN pg_class c ON c.oid = t.relid WHERE isleaf
UNION ALL SELECT 'click_runs_link_first_idx (link_id, first_id) INCLUDE (last_id) b-tree', sum(pg_relation_size(relid)) FROM pg_partition_tree('click_runs_link_first_idx')
UNION ALL SELECT 'click_runs_first_idx (first_id) INCLUDE (last_id) b-tree', sum(pg_relation_size(relid)) FROM pg_partition_tree('click_runs_first_idx')
UNION ALL SELECT 'clicks (one row per click, empty since migration 5)', pg_total_relation_size('clicks')
UNION ALL SELECT c, pg_total_relation_size(c::regclass) FROM unnest(ARRAY['click_links', 'click_contexts', 'url_stats', 'click_hours', 'click_breakdowns', 'click_batches']) AS c;
SELECT 'rows: click_runs', count(*) FROM click_runs UNION ALL SELECT 'rows: click_links', count(*) FROM click_links UNION ALL SELECT 'rows: click_contexts', count(*) FROM click_contexts
UNION ALL SELECT 'rows: click_hours', count(*) FROM click_hours UNION ALL SELECT 'rows: click_breakdowns', count(*) FROM click_breakdowns
UNION ALL SELECT 'rows: click_batches', count(*) FROM click_batches;
SQL
  python3 - "$OUT/relations.tsv" "$stored" >> "$SUMMARY" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
n = int(sys.argv[2])
print("| relation | bytes | bytes per click |")
print("| --- | ---: | ---: |")
for name, size in rows:
    if name.startswith("rows: "):
        continue
    print(f"| {name} | {int(size):,} | {int(size) / n:.2f} |")
print()
print("Rows: " + ", ".join(f"{name[6:]} {int(v):,}" for name, v in rows if name.startswith("rows: ")) + ".")
EOF
  tail -n 16 "$SUMMARY"

  # Analytics reads on that url, each REQUESTS times in sequence over one keep-alive connection.
  note ""
  wait_quiet reads
  python3 - "$PORT" "$URL_ID" "$REQUESTS" "$DAYS" >> "$SUMMARY" <<'EOF'
import datetime, http.client, statistics, sys, time
port, url_id, n, days = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
frm = (now - datetime.timedelta(days=days)).isoformat()
to = now.isoformat()
paths = [
    ("timeseries, 30 days by hour", f"/urls/{url_id}/stats/timeseries?interval=hour&from={frm}&to={to}"),
    ("timeseries, 30 days by day", f"/urls/{url_id}/stats/timeseries?interval=day&from={frm}&to={to}"),
    ("timeseries, by hour, bots=exclude", f"/urls/{url_id}/stats/timeseries?interval=hour&from={frm}&to={to}&bots=exclude"),
] + [
    (f"breakdown by {d}, 30 days", f"/urls/{url_id}/stats/breakdown?by={d}&from={frm}&to={to}")
    for d in ("referrer", "browser", "os", "device")
] + [
    ("breakdown by referrer, bots=exclude, limit 1000", f"/urls/{url_id}/stats/breakdown?by=referrer&from={frm}&to={to}&bots=exclude&limit=1000"),
    ("stats", f"/urls/{url_id}/stats"),
]
conn = http.client.HTTPConnection("127.0.0.1", port)
def get(path):
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    took = time.perf_counter() - t
    assert r.status == 200, (path, r.status, body[:200])
    return took, body
print("Each row: one request to warm up, then %d sequential GETs over one keep-alive HTTP/1.1 connection from Python's"
      " http.client (time from sending to the last byte read), on url %s; `from`/`to` = the last %d days." % (n, url_id, days))
print()
print("| request | answer | p50 ms | p99 ms | max ms | first (cold) ms |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
import json
for name, path in paths:
    first, body = get(path)
    doc = json.loads(body)
    if "points" in doc:
        what = f"{len(doc['points'])} points, {sum(p['clicks'] for p in doc['points']):,} clicks"
    elif "rows" in doc:
        what = f"{len(doc['rows'])} rows, {sum(p['clicks'] for p in doc['rows']):,} clicks"
    else:
        what = f"clicks {doc.get('clicks'):,}, bot_clicks {doc.get('bot_clicks'):,}"
    times = sorted(get(path)[0] * 1000 for _ in range(n))
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(round(0.99 * len(times))) - 1)]
    print(f"| {name}: `GET {path.replace(frm, '{from}').replace(to, '{to}')}` | {what} | {p50:.2f} | **{p99:.2f}** | {times[-1]:.2f} | {first * 1000:.2f} |")
EOF
  # One day of the CSV export, streamed.
  day=$(date -u -d "2 days ago" +%Y-%m-%d)
  csv_cmd="curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_starttransfer} %{time_total}\\n' '$BASE/urls/$URL_ID/clicks.csv?from=${day}T00:00:00&to=${day}T23:59:59'"
  read -r code size ttfb total_s < <(eval "$csv_cmd")
  rows=$(psql "$DBURL" -Atc "SELECT COALESCE(sum(cardinality(ids)), 0) FROM click_runs WHERE at >= '$day' AND at < date '$day' + 1")
  note ""
  note "- CSV export of one day ($rows clicks): HTTP $code, $size bytes, first byte after ${ttfb} s, all in ${total_s} s ($(python3 -c "print(f'{$rows / $total_s:,.0f}')") rows/s) — \`$csv_cmd\`"
  stop_gitrev
fi

if needs bench; then
  note ""
  note "## Criterion: the click writer's in-process part"
  note ""
  cargo bench --bench hot_paths -- click_writer > "$OUT/bench.txt" 2>&1
  note "\`cargo bench --bench hot_paths -- click_writer\`:"
  note ""
  note '```'
  grep -E -A3 '^click_writer/' "$OUT/bench.txt" | grep -E 'click_writer|time:|thrpt:' | tee -a "$SUMMARY"
  note '```'
fi

echo
echo "summary: $SUMMARY"
