#!/usr/bin/env bash
# Issue #12's targets (the link tier) against today's design, on one database, in one run, as
# ratios taken within it (interleaved rounds):
#
#   perf/tier.sh
#   LINKS=20000 DURATION=3 ROUNDS=1 perf/tier.sh                 (a check that it all works)
#   LINKS=10000000 KEEP_DB=/var/tmp/tier-10m perf/tier.sh        (the database is kept: run again
#                                                                 with the same KEEP_DB to reuse it)
#   GITREV_COMMIT=abc1234 GITREV_BIN=/elsewhere/gitrev perf/tier.sh   (the summary names the source)
#
# Settings (environment):
#   LINKS (1000000)     urls in the database.
#   DURATION (10)       seconds of each wrk run, and of each idle window.
#   CONNS (64), THREADS (2)   wrk -c and -t.
#   ROUNDS (2)          rounds; each runs both designs, in turn, the first one alternating.
#   GITREV_BIN (target/release/gitrev)   the server, not built here (`cargo build --release
#                       --locked`); copied into the work directory at the start, the copy run.
#   GITREV_COMMIT       what GITREV_BIN was built from, when not this checkout's HEAD.
#   GITREV_*            any other gitrev setting (e.g. GITREV_CLICK_BATCH) reaches both servers;
#                       the summary lists them.
#   PORT (18080)        gitrev's port; PGPORT (15432) PostgreSQL's; both must be free. Ports in
#                       the ephemeral range (32768–60999 here) may be held for a minute by a client
#                       socket in TIME_WAIT, and the run then refuses to start.
#   PGBIN (/usr/lib/postgresql/15/bin)   initdb, pg_ctl.
#   KEEP_DB             a directory for the cluster (and codes.txt): when it holds one built by
#                       an earlier run with the same LINKS, generation is skipped; either way the
#                       cluster is left there, stopped, at the end. Unset: a temporary directory
#                       under /tmp, removed at the end.
#   HOT (1000)          codes in the cached run's hot set.
#   METHOD (GET)        the method of the warm-up pass and of the cached and random runs: GET
#                       records a click per redirect (the click writer's memory, CPU and database
#                       writes included), HEAD does not. The unknown run is always GET (a 404
#                       records no click; wrk cannot read a HEAD answer that declares a body).
#   CLICK_DRAIN_WAIT (180)   after the cached and the random runs, seconds waited at most for the
#                       click writer to settle every click received (the next window starts clean).
#   STATS_WAIT (11)     seconds waited after a measured window before PostgreSQL's transaction
#                       counters are read: PostgreSQL 15 backends flush their statistics at most
#                       once a second, and an idle one only 10 s after its last flush.
#   QUIET_PCT (25), QUIET_WAIT (600)   before each design's run it waits, up to QUIET_WAIT seconds
#                       in all, until other processes use at most QUIET_PCT % of a core (5 s).
#
# 1. Database. initdb (-A trust -U postgres, UTF8, no locale; socket in the cluster directory),
#    shared_buffers=1GB, max_connections=200, max_wal_size=4GB, pg_ctl start; database gitrev,
#    `gitrev migrate`. LINKS urls in one INSERT … SELECT FROM generate_series (user_id NULL): url
#    n gets id n and the code base62((n · A + B) mod 62^7) on 7 characters, A coprime with 62^7 (a
#    bijection, so the codes are unique, deterministic and spread over the whole code space), and
#    the target https://example.com/articles/n/<slug>-n?ref=k (49–68 characters), title
#    "Article n". For the load only, the user triggers of urls are disabled (migration 6's
#    change log and NOTIFY per row: link_changes stays empty, no listener misses anything) and
#    the GIN indexes of urls are dropped, then built again from their own definitions (one
#    CREATE INDEX is much faster than filling a trigram index row by row); then VACUUM ANALYZE,
#    CHECKPOINT, `gitrev check-schema`. Every code goes to codes.txt (one a line, in id order).
# 2. Tier file. `gitrev build-tier --out FILE` once, under /usr/bin/time -v: its line (file bytes,
#    bytes per link beside the targets' text, read and build times), wall time and peak RSS.
# 3. Two designs on the same database, ROUNDS rounds, alternating which goes first:
#      today  GITREV_TIER=off GITREV_CACHE_CAPACITY=1000000 (the previous default), an empty data
#             directory;
#      tier   GITREV_TIER=on, the cache capacity at its default, a data directory holding the
#             tier file of step 2 (a hard link).
#    Both: DATABASE_URL to this cluster, GITREV_ENV=development, GITREV_LOG=warn,
#    GITREV_SNAPSHOT_SECS=0 (no warm-up snapshot). For each design in each round:
#      a. start → first redirect: a poller (Python, every 5 ms, HEAD /CODE of a random code) is
#         running when gitrev serve is spawned; the ms from the spawn to its first 302. Then
#         /metrics: gitrev_link_tier_trusted, gitrev_link_tier_answers_total (link ≥ 1 and
#         database 0: the first redirect came from the tier, without a query).
#      b. RssAnon and RssFile of gitrev (/proc/PID/status).
#      c. cached: one keep-alive request (METHOD) for each of the HOT codes (every LINKS/HOT-th),
#         then `wrk -tTHREADS -cCONNS -dDURATIONs --latency -s perf/wrk/codes.lua` over them;
#         RssAnon after it (the clicks' share of memory, with a thousand links).
#      d. idle: PostgreSQL's transactions (xact_commit + xact_rollback of database gitrev) over
#         DURATION seconds with no load (the heartbeat, the click writer…), as tx/s.
#      e. random: the same wrk with perf/wrk/random_codes.lua, every code drawn uniformly at
#         random (cache-hostile); RssAnon/RssFile after it, and RssAnon again once the clicks are
#         written and STATS_WAIT s have passed (what the allocator kept); cache misses, tier
#         answers, transactions per request (the click writer's catching up included).
#      f. unknown: perf/wrk/unknown_codes.lua, 7 random base62 characters per request (a code that
#         exists comes up about LINKS / 62^7 of the time); the answers' statuses
#         (gitrev_http_requests_total of route /{short_code}: all should be 404), transactions
#         per request, RssAnon/RssFile after it.
#      g. SIGTERM, and the time gitrev takes to stop.
#    Transactions are read before and STATS_WAIT seconds after each window, by a fresh psql on
#    the database postgres (not counted in gitrev's). Per request is the raw delta ÷ wrk's
#    requests; "net" subtracts the idle rate over the same interval. Each wrk run records the CPU
#    used by processes other than this script's own, gitrev's and PostgreSQL's, and the machine's
#    busy CPU (all processes).
# Every GET of a link records a click, in both designs alike (the database grows by them); the
# summary shows the click writer's state (database deadlines passed, clicks not yet written) and
# flags 5xx answers and wrk runs that completed no request.
# Output: perf/out/tier-<run>/summary.md (figures, targets, the commands behind them, how long
# each stage took) and the raw outputs beside it (wrk, /metrics scrapes, records.tsv, logs).
# Needs wrk, curl, psql, python3, /usr/bin/time (installed from Debian when missing); as root,
# PostgreSQL runs as the postgres user (runuser).
set -euo pipefail
[ -n "${GITREV_BIN:-}" ] && GITREV_BIN=$(realpath -- "$GITREV_BIN")
[ -n "${KEEP_DB:-}" ] && KEEP_DB=$(realpath -m -- "$KEEP_DB")
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

LINKS=${LINKS:-1000000}
DUR=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
GITREV_BIN=${GITREV_BIN:-$(realpath -m target/release/gitrev)}
PORT=${PORT:-18080}
PGPORT=${PGPORT:-15432}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
KEEP_DB=${KEEP_DB:-}
HOT=${HOT:-1000}
STATS_WAIT=${STATS_WAIT:-11}
CLICK_DRAIN_WAIT=${CLICK_DRAIN_WAIT:-180}
export METHOD=${METHOD:-GET}
BASE=http://127.0.0.1:$PORT
RUN=$(date -u +%Y%m%dT%H%M%SZ)
OUT=perf/out/tier-$RUN
REC=$OUT/records.tsv
STAGES=$OUT/stages.tsv
T_RUN=$EPOCHREALTIME

need_commands wrk curl psql=postgresql-client /usr/bin/time=time
[ -x "$GITREV_BIN" ] || { echo "not an executable file: $GITREV_BIN (cargo build --release --locked)" >&2; exit 2; }
[ -x "$PGBIN/initdb" ] || { echo "no initdb in $PGBIN (set PGBIN)" >&2; exit 2; }
[ "$LINKS" -ge "$HOT" ] || { echo "LINKS ($LINKS) must be at least HOT ($HOT)" >&2; exit 2; }
port_free() { # it can be listened on (as PostgreSQL and gitrev will: SO_REUSEADDR)
  python3 -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()' "$1" 2> /dev/null
}
port_free "$PORT" || { echo "port $PORT is in use (set PORT)" >&2; exit 2; }
port_free "$PGPORT" || { echo "port $PGPORT is in use (set PGPORT)" >&2; exit 2; }
mkdir -p "$OUT"
: > "$REC"
: > "$STAGES"
: > "$OUT/quiet.md"

# PostgreSQL refuses to run as root: then its commands run as the postgres user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ -n "$KEEP_DB" ]; then
  WORK=$KEEP_DB
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/gitrev-tier-XXXXXX)
fi
chmod 755 "$WORK"
PGDATA=$WORK/pg
# The binary is copied first: a build finishing during the run cannot change what is measured.
BIN=$WORK/gitrev
cp "$GITREV_BIN" "$BIN"
BIN_TIME=$(date -u -r "$GITREV_BIN" +%Y-%m-%dT%H:%M:%SZ)
BIN_SHA=$(sha256sum "$BIN" | cut -c1-12)
# gitrev settings the servers inherit from this environment (the summary lists them).
INHERITED=$(env | grep -E '^(GITREV_|DATABASE_URL=)' | grep -vE '^(GITREV_BIN|GITREV_COMMIT|DATABASE_URL|GITREV_DATA_DIR|GITREV_LISTEN|GITREV_ENV|GITREV_LOG|GITREV_SNAPSHOT_SECS|GITREV_TIER|GITREV_CACHE_CAPACITY|GITREV_READY_FILE)=' |
            sed -E 's/^([A-Z_]*(TOKEN|SECRET|PASSWORD)[A-Z_]*)=.*/\1=(hidden)/' | sort | paste -sd' ' || true)
# The checkout as the run begins (another commit may land meanwhile).
HEAD_COMMIT=$(git rev-parse --short HEAD 2> /dev/null || echo '?')
MODIFIED=$(git diff --quiet HEAD -- crates src sql Cargo.toml Cargo.lock 2> /dev/null || echo ' (crates/src/sql modified)')
HEAD_TIME=$(git log -1 --format=%cI 2> /dev/null || echo '?')
STALE=""
if [ -z "${GITREV_COMMIT:-}" ] && [ "$(date -d "$BIN_TIME" +%s)" -lt "$(git log -1 --format=%ct 2> /dev/null || echo 0)" ]; then
  STALE="**the binary is older than this commit**: it may not be built from it (set GITREV_COMMIT)"
fi
CODES_FILE=$WORK/codes.txt
DBURL=postgres://postgres@127.0.0.1:$PGPORT/gitrev
STATSURL=postgres://postgres@127.0.0.1:$PGPORT/postgres
TIER_FILE=$WORK/tier-build/links.tier
CLUSTER_UP=""
POLLER=""
CPID=""

# On exit: gitrev stopped (lib.sh's cleanup), the cluster stopped, the work directory removed
# unless KEEP_DB names it.
finish() {
  [ -n "$POLLER" ] && kill "$POLLER" 2> /dev/null
  cleanup
  if [ -n "$CLUSTER_UP" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop > /dev/null 2>&1 || true
  fi
  if [ -n "$KEEP_DB" ]; then
    rm -rf "$WORK/data-today" "$WORK/data-tier"
    echo "cluster kept, stopped: $WORK (LINKS=$(cat "$WORK/links" 2> /dev/null || echo 'incomplete'))"
  else
    rm -rf "$WORK"
  fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
stage() { # name start-EPOCHREALTIME: records and prints how long the stage took
  local s
  s=$(secs "$2" "$EPOCHREALTIME")
  printf '%s\t%s\n' "$1" "$s" >> "$STAGES"
  echo "  [$1: $s s]"
}
ROUND=0
DESIGN=-
rec() { printf '%s\t%s\t%s\t%s\n' "$ROUND" "$DESIGN" "$1" "$2" >> "$REC"; }
xacts() { # transactions of database gitrev so far (a fresh psql, on the database postgres)
  psql "$STATSURL" -XAtqc "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'gitrev'"
}
rss() { # RssAnon and RssFile of gitrev, kB
  awk '$1 == "RssAnon:" { a = $2 } $1 == "RssFile:" { f = $2 } END { print a, f }' "/proc/$GPID/status"
}
scrape() { # /metrics into DESIGN_rROUND_NAME.prom (with the scrapers' token when one is set)
  curl -sf ${GITREV_METRICS_TOKEN:+-H "authorization: Bearer $GITREV_METRICS_TOKEN"} "$BASE/metrics" > "$OUT/${DESIGN}_r${ROUND}_$1.prom"
}
gauge() { # name: its value in the last scrape named $2
  awk -v n="$1" '$1 == n { print $2 }' "$OUT/${DESIGN}_r${ROUND}_$2.prom"
}

# Waits (up to QUIET_WAIT seconds in all) while other processes use more than QUIET_PCT % of one
# core, measured over 5 s; notes how it went (as perf/links.sh does).
WAITED=0
wait_quiet() { # what
  local s0 s1 pct before=$WAITED
  while :; do
    s0=$(cpu_snapshot); sleep 5; s1=$(cpu_snapshot)
    pct=$(others_pct "$s0" "$s1")
    [ "$pct" -le "${QUIET_PCT:-25}" ] && break
    if [ "$WAITED" -ge "${QUIET_WAIT:-600}" ]; then
      echo "- $1: the machine never got quiet (others used $pct% of a core after $WAITED s of waiting in this run); measured anyway" | tee -a "$OUT/quiet.md"
      return 0
    fi
    WAITED=$((WAITED + 5))
  done
  echo "- $1: waited $((WAITED - before)) s for other processes to use ≤ ${QUIET_PCT:-25}% of a core ($pct% over the last 5 s); began $(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/quiet.md"
}

echo "tier perf run $RUN: LINKS=$LINKS DURATION=$DUR CONNS=$CONNS THREADS=$THREADS ROUNDS=$ROUNDS; work directory $WORK; output $OUT"

# ---------------------------------------------------------------------------------------------
# 1. The database.
echo "== database"
GENERATED=no
if [ -f "$WORK/links" ]; then
  [ "$(cat "$WORK/links")" = "$LINKS" ] ||
    { echo "$WORK holds a database of $(cat "$WORK/links") links, not $LINKS: use another KEEP_DB" >&2; exit 2; }
  [ "$(($(stat -c %s "$CODES_FILE") / 8))" = "$LINKS" ] || { echo "$CODES_FILE does not hold $LINKS codes" >&2; exit 2; }
elif [ -e "$PGDATA" ]; then
  echo "$PGDATA exists but no complete database was built there (no $WORK/links): remove it" >&2
  exit 2
fi

t=$EPOCHREALTIME
if [ ! -e "$PGDATA" ]; then
  GENERATED=yes
  mkdir -p "$PGDATA"
  chown postgres: "$PGDATA" 2> /dev/null || true
  as_pg "$PGBIN/initdb" -D "$PGDATA" -A trust -U postgres -E UTF8 --no-locale > "$OUT/initdb.log" 2>&1 ||
    { cat "$OUT/initdb.log" >&2; exit 1; }
  cat >> "$PGDATA/postgresql.conf" <<EOF

# perf/tier.sh
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGDATA'
shared_buffers = 1GB
max_connections = 200
max_wal_size = 4GB
EOF
fi
touch "$WORK/pg.log"
chown postgres: "$WORK/pg.log" 2> /dev/null || true
# The port is the cluster's setting; a kept cluster is started on this run's PGPORT.
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/pg.log" -o "-p $PGPORT" -w -t 300 start > /dev/null
CLUSTER_UP=1
# shellcheck disable=SC2034 # read by lib.sh's cpu_snapshot: PostgreSQL's CPU is ours, not others'
CPID=$(head -1 "$PGDATA/postmaster.pid")
stage "cluster: $([ $GENERATED = yes ] && echo 'initdb and start' || echo 'start (kept)')" "$t"

if [ $GENERATED = yes ]; then
  t=$EPOCHREALTIME
  psql "$STATSURL" -XqAtc "CREATE DATABASE gitrev"
  DATABASE_URL=$DBURL GITREV_ENV=development GITREV_LOG=warn "$BIN" migrate > "$OUT/migrate.txt" 2>&1 ||
    { cat "$OUT/migrate.txt" >&2; exit 1; }
  stage "createdb and gitrev migrate" "$t"

  # The GIN indexes of urls: dropped for the load, built again after from their definitions.
  t=$EPOCHREALTIME
  psql "$DBURL" -XAtqc "SELECT indexname || E'\t' || indexdef FROM pg_indexes
                        WHERE schemaname = 'public' AND tablename = 'urls' AND indexdef LIKE '% USING gin %'
                        ORDER BY indexname" > "$WORK/gin_indexes.tsv"
  cut -f1 "$WORK/gin_indexes.tsv" | while read -r name; do
    psql "$DBURL" -XqAtc "DROP INDEX $name"
  done
  echo "  loading $LINKS urls"
  # A = ⌊62^7 · (√5 − 1)/2⌋ made odd and not a multiple of 31: coprime with 62^7, so n → (n·A + B)
  # mod 62^7 is a bijection; numeric arithmetic (n·A overflows bigint from ~4.2 million links).
  if ! psql "$DBURL" -X -v ON_ERROR_STOP=1 -q -v links="$LINKS" > "$OUT/load.txt" 2>&1 <<'SQL'
BEGIN;
ALTER TABLE urls DISABLE TRIGGER USER;
INSERT INTO urls (id, short_code, original_url, title)
SELECT g,
       substr(a, (x / 56800235584 % 62)::int + 1, 1) || substr(a, (x / 916132832 % 62)::int + 1, 1)
         || substr(a, (x / 14776336 % 62)::int + 1, 1) || substr(a, (x / 238328 % 62)::int + 1, 1)
         || substr(a, (x / 3844 % 62)::int + 1, 1) || substr(a, (x / 62 % 62)::int + 1, 1)
         || substr(a, (x % 62)::int + 1, 1),
       'https://example.com/articles/' || g || '/'
         || (ARRAY['spring-sale', 'product-launch', 'weekly-digest', 'how-to-guide', 'release-notes',
                   'case-study', 'event-recap', 'team-update'])[1 + g % 8]
         || '-' || g || '?ref=' || (g % 97),
       'Article ' || g
FROM (SELECT g, ((g::numeric * 2176477521915 + 1234567891) % 3521614606208)::bigint AS x
      FROM generate_series(1, :links) g) s,
     (SELECT '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'::text AS a) alphabet;
ALTER TABLE urls ENABLE TRIGGER USER;
SELECT setval(pg_get_serial_sequence('urls', 'id'), :links);
COMMIT;
SQL
  then
    cat "$OUT/load.txt" >&2
    exit 1
  fi
  stage "insert $LINKS urls (triggers and GIN indexes off)" "$t"
  t=$EPOCHREALTIME
  cut -f2 "$WORK/gin_indexes.tsv" | while read -r def; do
    psql "$DBURL" -X -v ON_ERROR_STOP=1 -qAt -c "SET maintenance_work_mem = '1GB'" -c "$def"
  done
  stage "build the GIN indexes again ($(cut -f1 "$WORK/gin_indexes.tsv" | paste -sd' '))" "$t"
  t=$EPOCHREALTIME
  psql "$DBURL" -XqAtc "VACUUM ANALYZE"
  stage "VACUUM ANALYZE" "$t"
  t=$EPOCHREALTIME
  psql "$DBURL" -XqAtc "CHECKPOINT"
  sync
  stage "CHECKPOINT and sync" "$t"
  t=$EPOCHREALTIME
  psql "$DBURL" -XqAtc "\\copy (SELECT short_code FROM urls ORDER BY id) TO '$CODES_FILE'"
  stage "codes.txt" "$t"
  echo "$LINKS" > "$WORK/links"
else
  # A kept database: read the table once so the first design measured does not pay alone for a
  # cold page cache.
  t=$EPOCHREALTIME
  psql "$DBURL" -XqAtc "SELECT sum(length(original_url)) FROM urls" > /dev/null
  stage "read urls once (kept database)" "$t"
fi
t=$EPOCHREALTIME
DATABASE_URL=$DBURL GITREV_LOG=warn "$BIN" check-schema > "$OUT/check_schema.txt" 2>&1 ||
  { cat "$OUT/check_schema.txt" >&2; exit 1; }
[ "$(($(stat -c %s "$CODES_FILE") / 8))" = "$LINKS" ] || { echo "codes.txt does not hold $LINKS 7-character codes" >&2; exit 1; }
psql "$DBURL" -XAtF$'\t' -c "
  SELECT (SELECT count(*) FROM urls),
         (SELECT count(*) FROM pg_indexes WHERE tablename = 'urls' AND indexname = 'urls_short_code_key'),
         (SELECT count(*) FROM urls WHERE length(short_code) <> 7 OR user_id IS NOT NULL),
         (SELECT count(*) FROM link_changes), (SELECT count(*) FROM users),
         round(avg(length(original_url)), 1), min(length(original_url)), max(length(original_url)),
         pg_size_pretty(pg_table_size('urls')), pg_size_pretty(pg_indexes_size('urls')),
         pg_size_pretty(pg_database_size('gitrev')), current_setting('server_version'),
         current_setting('shared_buffers'), current_setting('max_connections'),
         current_setting('max_wal_size')
  FROM urls" > "$OUT/database.tsv"
md5sum < "$CODES_FILE" | cut -d' ' -f1 > "$OUT/codes.md5"
head -3 "$CODES_FILE" > "$OUT/codes_first3.txt"
# The hot set: every LINKS/HOT-th code.
awk -v step=$((LINKS / HOT)) -v hot="$HOT" 'NR % step == 1 && n++ < hot' "$CODES_FILE" > "$OUT/hot_codes.txt"
HOT_CODES=$(paste -sd, "$OUT/hot_codes.txt")
stage "checks: gitrev check-schema, counts and sizes, codes.txt" "$t"

# ---------------------------------------------------------------------------------------------
# 2. The tier file.
echo "== tier file"
rm -rf "$WORK/tier-build"
mkdir -p "$WORK/tier-build"
t=$EPOCHREALTIME
DATABASE_URL=$DBURL GITREV_ENV=development GITREV_LOG=warn GITREV_DATA_DIR=$WORK/tier-build \
  /usr/bin/time -v "$BIN" build-tier --out "$TIER_FILE" > "$OUT/build_tier.txt" 2> "$OUT/build_tier_time.txt" ||
  { cat "$OUT/build_tier.txt" "$OUT/build_tier_time.txt" >&2; exit 1; }
stage "gitrev build-tier" "$t"
cat "$OUT/build_tier.txt"
[ -s "$TIER_FILE" ] || { echo "no tier file at $TIER_FILE" >&2; exit 1; }
stat -c %s "$TIER_FILE" > "$OUT/tier_bytes.txt"
"$BIN" settings | awk -F'`' '$2 == "GITREV_CACHE_CAPACITY" { print $4 }' > "$OUT/default_cache_capacity.txt"

# ---------------------------------------------------------------------------------------------
# 3. The two designs.

# Spawns gitrev for DESIGN, timing its first redirect: the poller runs before the spawn.
start() {
  local dir=$WORK/data-$DESIGN code t0 first
  local envs=(DATABASE_URL="$DBURL" GITREV_DATA_DIR="$dir" GITREV_LISTEN="127.0.0.1:$PORT"
              GITREV_ENV=development GITREV_LOG=warn GITREV_SNAPSHOT_SECS=0)
  rm -rf "$dir"
  mkdir -p "$dir"
  if [ "$DESIGN" = tier ]; then
    ln "$TIER_FILE" "$dir/links.tier" 2> /dev/null || cp "$TIER_FILE" "$dir/links.tier"
    envs+=(GITREV_TIER=on)
  else
    envs+=(GITREV_TIER=off GITREV_CACHE_CAPACITY=1000000)
  fi
  # A random code (every code is 7 characters and a newline in codes.txt).
  code=$(dd if="$CODES_FILE" bs=8 skip=$(((RANDOM * 32768 + RANDOM) % LINKS)) count=1 status=none | head -c 7)
  rec first_code "$code"
  rm -f "$OUT/poller.go" "$OUT/poller.pid"
  python3 - "$PORT" "$code" "$OUT/poller.go" "$OUT/poller.pid" > "$OUT/${DESIGN}_r${ROUND}_first.txt" <<'EOF' &
# HEAD /CODE every 5 ms until a 302: prints when (epoch seconds) and the answers before it.
import collections, http.client, os, sys, time
port, code, go, pidfile = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
seen = collections.Counter()
open(go, "w").close()  # polling from now on: the server may be spawned
deadline = time.time() + 900
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("HEAD", "/" + code)
        status = c.getresponse().status
        c.close()
    except OSError as e:
        status = type(e).__name__
    now = time.time()
    if status == 302:
        print(f"{now:.6f}", " ".join(f"{k}:{v}" for k, v in seen.items()) or "-")
        sys.exit(0)
    seen[status] += 1
    pid = open(pidfile).read().strip() if os.path.exists(pidfile) else ""
    try:  # gone, or a zombie (exited, not yet reaped by the script)
        dead = bool(pid) and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        dead = True
    if dead or now > deadline:
        print("none", " ".join(f"{k}:{v}" for k, v in seen.items()))
        sys.exit(1)
    time.sleep(0.005)
EOF
  POLLER=$!
  while [ ! -e "$OUT/poller.go" ]; do sleep 0.01; done
  t0=$EPOCHREALTIME
  env -u GITREV_CACHE_CAPACITY -u GITREV_READY_FILE "${envs[@]}" "$BIN" serve >> "$OUT/${DESIGN}_r${ROUND}_gitrev.log" 2>&1 &
  GPID=$!
  echo "$GPID" > "$OUT/poller.pid"
  if ! wait "$POLLER"; then
    POLLER=""
    echo "gitrev ($DESIGN) never redirected: $(cat "$OUT/${DESIGN}_r${ROUND}_first.txt"); see $OUT/${DESIGN}_r${ROUND}_gitrev.log" >&2
    exit 1
  fi
  POLLER=""
  read -r first seen < "$OUT/${DESIGN}_r${ROUND}_first.txt"
  T_SPAWN=$t0
  rec first_ms "$(python3 -c "import sys; print(f'{1000 * (float(sys.argv[2]) - float(sys.argv[1])):.1f}')" "$t0" "$first")"
  rec first_before "$seen"
}

stop_gitrev() {
  local t0=$EPOCHREALTIME
  kill -TERM "$GPID"
  wait "$GPID" || rec exit_status "$?"
  GPID=""
  rec stop_ms "$(python3 -c "import sys; print(f'{1000 * (float(sys.argv[2]) - float(sys.argv[1])):.0f}')" "$t0" "$EPOCHREALTIME")"
}

# One wrk run over the redirect route; records others' CPU.
wrk_run() { # kind script (its settings in the environment)
  local s0 s1
  s0=$(cpu_snapshot)
  wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency -s "$2" "$BASE" > "$OUT/${DESIGN}_r${ROUND}_$1.txt" 2>&1
  s1=$(cpu_snapshot)
  rec "${1}_others_pct" "$(others_pct "$s0" "$s1")"
  rec "${1}_busy_pct" "$(busy_pct "$s0" "$s1")"
}
busy_pct() { # snapshot-before snapshot-after -> % of one core busy, every process counted
  python3 -c "
b0, o0, t0 = map(int, '$1'.split()); b1, o1, t1 = map(int, '$2'.split())
print(round(100 * $(nproc) * (b1 - b0) / max(1, t1 - t0)))"
}

# Waits (up to CLICK_DRAIN_WAIT s) until the click writer has settled every click received
# (written, or lost and counted); records how long that took and what was left.
drain_clicks() { # name
  local t0=$EPOCHREALTIME n=0 left
  while :; do
    left=$(curl -sf ${GITREV_METRICS_TOKEN:+-H "authorization: Bearer $GITREV_METRICS_TOKEN"} "$BASE/metrics" |
      awk '$1 == "gitrev_clicks_received_total" { r = $2 } $1 == "gitrev_clicks_settled_total" { s = $2 }
           END { printf "%d", r - s }')
    [ "$left" -eq 0 ] || [ $n -ge $((CLICK_DRAIN_WAIT * 5)) ] && break
    sleep 0.2
    n=$((n + 1))
  done
  rec "${1}_drain_ms" "$(python3 -c "import sys; print(f'{1000 * (float(sys.argv[2]) - float(sys.argv[1])):.0f}')" "$t0" "$EPOCHREALTIME")"
  rec "${1}_unwritten" "$left"
}

# Transactions of database gitrev at the end of a window (after STATS_WAIT), and when.
xact_mark() { # name
  sleep "$STATS_WAIT"
  rec "x_$1" "$(xacts)"
  rec "t_$1" "$EPOCHREALTIME"
}

run_design() {
  local t r
  t=$EPOCHREALTIME
  wait_quiet "$DESIGN, round $ROUND"
  stage "quiet check before $DESIGN, round $ROUND" "$t"
  t=$EPOCHREALTIME
  echo "-- $DESIGN, round $ROUND"
  start
  read -r -a r <<< "$(rss)"
  rec rss_start_anon "${r[0]}"
  rec rss_start_file "${r[1]}"
  scrape start
  rec trusted_first "$(gauge gitrev_link_tier_trusted start)"
  # The gauge follows the tier's state every 5 s: wait (up to 15 s) for it when the tier is on.
  if [ "$DESIGN" = tier ]; then
    local n=0 up
    up=$(gauge gitrev_link_tier_trusted start)
    while [ "$up" != 1 ] && [ $n -lt 75 ]; do
      sleep 0.2; n=$((n + 1))
      scrape trusted
      up=$(gauge gitrev_link_tier_trusted trusted)
    done
    rec trusted_ms "$([ "$up" = 1 ] && python3 -c "import sys; print(f'{1000 * (float(sys.argv[2]) - float(sys.argv[1])):.0f}')" "$T_SPAWN" "$EPOCHREALTIME" || echo never)"
  fi
  echo "   first redirect $(awk -F'\t' -v r="$ROUND" -v d="$DESIGN" '$1 == r && $2 == d && $3 == "first_ms" { print $4 }' "$REC") ms; RssAnon ${r[0]} kB"

  # Cached: one pass over the hot set, then wrk over it.
  rec warm_statuses "$(python3 - "$PORT" "$OUT/hot_codes.txt" "$METHOD" <<'EOF'
import collections, http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
seen = collections.Counter()
for code in open(sys.argv[2]).read().split():
    c.request(sys.argv[3], "/" + code)
    r = c.getresponse()
    r.read()
    seen[r.status] += 1
print(" ".join(f"{k}:{v}" for k, v in sorted(seen.items())))
EOF
)"
  scrape cached0
  CODES=$HOT_CODES wrk_run cached perf/wrk/codes.lua
  read -r -a r <<< "$(rss)"
  rec rss_cached_anon "${r[0]}"
  rec rss_cached_file "${r[1]}"
  drain_clicks cached
  xact_mark cached1
  scrape cached1

  # Idle: the transactions of a server with no load.
  sleep "$DUR"
  xact_mark idle1

  # Random over every code.
  scrape random0
  CODES_FILE=$CODES_FILE wrk_run random perf/wrk/random_codes.lua
  read -r -a r <<< "$(rss)"
  rec rss_random_anon "${r[0]}"
  rec rss_random_file "${r[1]}"
  drain_clicks random
  xact_mark random1
  read -r -a r <<< "$(rss)"
  rec rss_random_settled_anon "${r[0]}"
  scrape random1

  # Unknown codes.
  wrk_run unknown perf/wrk/unknown_codes.lua
  read -r -a r <<< "$(rss)"
  rec rss_unknown_anon "${r[0]}"
  rec rss_unknown_file "${r[1]}"
  xact_mark unknown1
  read -r -a r <<< "$(rss)"
  rec rss_unknown_settled_anon "${r[0]}"
  scrape unknown1

  stop_gitrev
  rec log_lines "$(wc -l < "$OUT/${DESIGN}_r${ROUND}_gitrev.log")"
  stage "$DESIGN, round $ROUND" "$t"
}

echo "== designs"
for ROUND in $(seq 1 "$ROUNDS"); do
  order="today tier"
  [ $((ROUND % 2)) -eq 0 ] && order="tier today"
  for DESIGN in $order; do
    run_design
  done
done
ROUND=0
DESIGN=-
stage "whole run" "$T_RUN"

# ---------------------------------------------------------------------------------------------
# 4. summary.md
{
  echo "# tier perf run $RUN"
  echo
  echo "\`perf/tier.sh\` with LINKS=$LINKS DURATION=$DUR CONNS=$CONNS THREADS=$THREADS ROUNDS=$ROUNDS METHOD=$METHOD HOT=$HOT STATS_WAIT=$STATS_WAIT PORT=$PORT PGPORT=$PGPORT${KEEP_DB:+ KEEP_DB=$KEEP_DB};"
  echo "gitrev \`$GITREV_BIN\`${GITREV_COMMIT:+ built from $GITREV_COMMIT} (modified $BIN_TIME, sha256 $BIN_SHA; a copy of it was run);"
  echo "checkout at $HEAD_COMMIT$MODIFIED, committed $HEAD_TIME${STALE:+ — $STALE};"
  echo "gitrev settings inherited from the environment (beside those set above): ${INHERITED:-none};"
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/^Mem:/ { print $2 }') GiB;"
  echo "started $(date -u -d "@${T_RUN%.*}" '+%Y-%m-%d %H:%M:%S') UTC; work directory $WORK."
} > "$OUT/header.md"
echo "$GENERATED" > "$OUT/generated.txt"
python3 - "$OUT" "$LINKS" "$ROUNDS" "$DUR" "$STATS_WAIT" "$THREADS" "$CONNS" <<'EOF' > "$OUT/summary.md"
import os, re, sys
out, links, rounds, dur, stats_wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
threads, conns = sys.argv[6], sys.argv[7]
def read(name):
    return open(f"{out}/{name}").read()

rec = {}
for line in read("records.tsv").splitlines():
    r, d, k, v = line.split("\t", 3)
    rec.setdefault((int(r), d), {})[k] = v

unit = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
def wrk(r, d, kind):
    text = read(f"{d}_r{r}_{kind}.txt")
    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        return float(m.group(1)) * unit[m.group(2)] if m else float("nan")
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    n = re.search(r"^\s+(\d+) requests in ([\d.]+)(\w+)", text, re.M)
    non = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"rps": float(rps.group(1)) if rps else 0.0, "requests": int(n.group(1)) if n else 0,
            "p50": pct(50), "p99": pct(99), "non": non,
            "sock": sum(int(x) for x in sock.groups()) if sock else 0}

def prom(r, d, stage):
    vals = {}
    for line in read(f"{d}_r{r}_{stage}.prom").splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})?\s+(\S+)$", line)  # a label value may hold braces
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
            vals[(m.group(1), labels)] = float(m.group(3))
    return vals

def total(vals, name, **want):
    return sum(v for (n, labels), v in vals.items()
               if n == name and all(dict(labels).get(k) == w for k, w in want.items()))

def delta(r, d, a, b, name, **want):
    return total(prom(r, d, b), name, **want) - total(prom(r, d, a), name, **want)

HTTP, ROUTE = "gitrev_http_requests_total", "/{short_code}"
def statuses(r, d, a, b):
    before, after = prom(r, d, a), prom(r, d, b)
    codes = sorted({dict(l).get("status") for (n, l) in after if n == HTTP and dict(l).get("route") == ROUTE})
    return {c: total(after, HTTP, route=ROUTE, status=c) - total(before, HTTP, route=ROUTE, status=c) for c in codes}

def answers(r, d, a, b):
    return {k: delta(r, d, a, b, "gitrev_link_tier_answers_total", answer=k) for k in ("link", "absent", "database")}

runs = {}
for (r, d), v in rec.items():  # in the order they ran
    if r == 0:
        continue
    x = {k: float(v[k]) for k in v if k.startswith(("x_", "t_"))}
    idle_rate = (x["x_idle1"] - x["x_cached1"]) / (x["t_idle1"] - x["t_cached1"])
    run = {"rec": v, "idle_rate": idle_rate}
    for kind, a, b in (("random", "cached1", "random1"), ("unknown", "random1", "unknown1")):
        w = wrk(r, d, kind)
        tx = x[f"x_{b}"] - x[f"x_{a}"]
        secs = x[f"t_{b}"] - x[f"t_{a}"]
        w.update(tx=tx, secs=secs, per_req=tx / max(1, w["requests"]),
                 net=(tx - idle_rate * secs) / max(1, w["requests"]))
        run[kind] = w
    run["cached"] = wrk(r, d, "cached")
    s = prom(r, d, "start")
    run["start_answers"] = {k: total(s, "gitrev_link_tier_answers_total", answer=k) for k in ("link", "absent", "database")}
    run["start_misses"] = total(s, "gitrev_link_cache_misses_total")
    run["tier_links"] = total(s, "gitrev_link_tier_links")
    for kind, a, b in (("cached", "cached0", "cached1"), ("random", "cached1", "random1"), ("unknown", "random1", "unknown1")):
        run[kind]["status"] = statuses(r, d, a, b)
        run[kind]["answers"] = answers(r, d, a, b)
        run[kind]["misses"] = delta(r, d, a, b, "gitrev_link_cache_misses_total")
        run[kind]["hits"] = delta(r, d, a, b, "gitrev_link_cache_hits_total")
        # The fence's round trips and skips, where the binary has these counters.
        run[kind]["fence"] = (delta(r, d, a, b, "gitrev_link_tier_fence_trips_total"),
                              delta(r, d, a, b, "gitrev_link_tier_fence_skipped_total"))
        # The click writer: database deadlines passed during the run.
        run[kind]["deadlines"] = delta(r, d, a, b, "gitrev_db_deadlines_passed_total")
    log = read(f"{d}_r{r}_gitrev.log")
    run["log"] = {lvl: len(re.findall(rf'"level":"{lvl}"', log)) for lvl in ("WARN", "ERROR")}
    run["fivexx"] = sum(n for k in ("cached", "random", "unknown") for c, n in run[k]["status"].items() if c.startswith("5"))
    runs[(r, d)] = run

mb = lambda kb: float(kb) / 1024
f4 = lambda x: f"{round(x, 4) + 0.0:.4f}"  # never -0.0000
db = read("database.tsv").strip().split("\t")
build_line = read("build_tier.txt").strip()
timev = read("build_tier_time.txt")
peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", timev).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", timev).group(1)
m = re.search(r": (\d+) links, (\d+) bytes \(([\d.]+) per link beside the urls' text\); read in ([\d.]+) s, built and written in ([\d.]+) s", build_line)
tier_links, tier_bytes, per_link, read_s, build_s = m.groups() if m else ("?",) * 5

print(read("header.md").rstrip())
print()
print("## Database")
print()
print(f"- PostgreSQL {db[11]}, shared_buffers {db[12]}, max_connections {db[13]}, max_wal_size {db[14]}; "
      f"{'generated in this run' if read('generated.txt').strip() == 'yes' else 'kept from an earlier run (KEEP_DB), not generated again'}.")
print(f"- urls: {int(db[0]):,} rows (codes unique: urls_short_code_key {'present' if db[1] == '1' else 'MISSING'}), {db[2]} rows with a code not of 7 characters or a user; "
      f"targets {db[6]}–{db[7]} characters (mean {db[5]}); link_changes {db[3]} rows, users {db[4]} rows; "
      f"urls table {db[8]}, its indexes {db[9]}, database {db[10]} (`psql`, database.tsv).")
print(f"- codes.txt: md5 {read('codes.md5').strip()}, first codes {', '.join(read('codes_first3.txt').split())}; "
      f"hot set: {len(read('hot_codes.txt').split())} codes (every {links // len(read('hot_codes.txt').split())}th).")
print(f"- `gitrev check-schema`: {read('check_schema.txt').strip()}")
print()
print("## Tier file")
print()
print(f"`gitrev build-tier --out FILE` under `/usr/bin/time -v` (build_tier.txt, build_tier_time.txt):")
print()
print(f"    {build_line}")
print()
print(f"- {int(tier_bytes):,} bytes for {int(tier_links):,} links; **{per_link} bytes per link** beside the targets' text;")
print(f"- read in {read_s} s, built and written in {build_s} s; wall time {wall} (migration check and connecting included);")
print(f"- **peak RSS {peak_kb / 1024:,.0f} MB** (Maximum resident set size).")
print()
print("## Results")
print()
print(f"today: GITREV_TIER=off GITREV_CACHE_CAPACITY=1000000; tier: GITREV_TIER=on, cache capacity at its default "
      f"({read('default_cache_capacity.txt').strip()}, `gitrev settings`). Both GITREV_SNAPSHOT_SECS=0, one database. "
      f"wrk -t{threads} -c{conns} -d{dur}s --latency, method {os.environ['METHOD']} for cached and random (GET records a click per redirect), GET for unknown; req/s (p99 ms). Transactions: xact_commit + xact_rollback of database "
      f"gitrev, read {stats_wait} s after each window; per request = delta ÷ wrk's requests (idle tx/s: over {dur} s with no load "
      f"plus the {stats_wait} s wait).")
print()
print("| round | design | start → first redirect ms | RssAnon after start MB | cached req/s (p99) | random req/s (p99) "
      "| RssAnon after random MB | unknown req/s (p99) | tx/request unknown | tx/request random | idle tx/s |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for (r, d), run in runs.items():
    v = run["rec"]
    c, ra, u = run["cached"], run["random"], run["unknown"]
    print(f"| {r} | {d} | {float(v['first_ms']):.0f} | {mb(v['rss_start_anon']):.1f} | {c['rps']:,.0f} ({c['p99']:.2f}) "
          f"| {ra['rps']:,.0f} ({ra['p99']:.2f}) | {mb(v['rss_random_anon']):.1f} | {u['rps']:,.0f} ({u['p99']:.2f}) "
          f"| {f4(u['per_req'])} | {f4(ra['per_req'])} | {run['idle_rate']:.1f} |")
print()
print("Details (deltas of /metrics over each run; route /{short_code}):")
print()
print("| round | design | first redirect: answers before it, tier answers link/absent/database at that point, trusted gauge | RssFile MB start / random / unknown "
      "| RssAnon MB after cached / unknown; after random / unknown once the clicks are written and STATS_WAIT s passed | cached: statuses, errors | random: statuses, errors, cache misses, tier link/absent/database "
      "| random tx (net/request) | unknown: statuses, errors, tier link/absent/database, fence trips/skipped | unknown tx (net/request) | others' CPU % cached / random / unknown | machine busy % cached / random / unknown | stop ms "
      "| click writer: deadlines passed in random / unknown; after cached / random: s to settle every click (unsettled then) | gitrev log lines WARN / ERROR |")
print("| ---: | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | ---: | --- | --- |")
fmt_s = lambda s: " ".join(f"{k}×{v:,.0f}" for k, v in s.items() if v) or "none"
fmt_a = lambda a: f"{a['link']:,.0f}/{a['absent']:,.0f}/{a['database']:,.0f}"
for (r, d), run in runs.items():
    v = run["rec"]
    c, ra, u = run["cached"], run["random"], run["unknown"]
    trusted = v.get("trusted_first", "?") + (f" (read 1 at {v['trusted_ms']} ms from the spawn)" if "trusted_ms" in v else "")
    print(f"| {r} | {d} | {v['first_before']}; {fmt_a(run['start_answers'])}; trusted {trusted} "
          f"| {mb(v['rss_start_file']):.1f} / {mb(v['rss_random_file']):.1f} / {mb(v['rss_unknown_file']):.1f} "
          f"| {mb(v['rss_cached_anon']):.1f} / {mb(v['rss_unknown_anon']):.1f}; {mb(v['rss_random_settled_anon']):.1f} / {mb(v['rss_unknown_settled_anon']):.1f} | {fmt_s(c['status'])}; {c['non'] + c['sock']} "
          f"| {fmt_s(ra['status'])}; {ra['non'] + ra['sock']}; {ra['misses']:,.0f} of {ra['requests']:,}; {fmt_a(ra['answers'])} "
          f"| {ra['tx']:,.0f} in {ra['secs']:.1f} s ({f4(ra['net'])}) "
          f"| {fmt_s(u['status'])}; {u['sock']} socket; {fmt_a(u['answers'])}; {u['fence'][0]:,.0f}/{u['fence'][1]:,.0f} | {u['tx']:,.0f} in {u['secs']:.1f} s ({f4(u['net'])}) "
          f"| {v['cached_others_pct']} / {v['random_others_pct']} / {v['unknown_others_pct']} "
          f"| {v['cached_busy_pct']} / {v['random_busy_pct']} / {v['unknown_busy_pct']} | {v['stop_ms']} "
          f"| {ra['deadlines']:.0f} / {u['deadlines']:.0f}; {float(v['cached_drain_ms']) / 1000:.1f} ({int(v['cached_unwritten']):,}) / "
          f"{float(v['random_drain_ms']) / 1000:.1f} ({int(v['random_unwritten']):,}) "
          f"| {run['log']['WARN']} / {run['log']['ERROR']} |")
print()
print("Errors: wrk's non-2xx/3xx answers plus socket errors (for unknown codes every answer is a 404, so only socket errors).")
print(f"Machine busy: % of one core used by every process during the wrk run ({os.cpu_count()} cores: {100 * os.cpu_count()} is all of them).")
print("Click writer: gitrev_db_deadlines_passed_total over the run (a statement past GITREV_STATEMENT_TIMEOUT_MS + margin: the pool's "
      "connections are discarded, and redirects asking the database then may answer 503); after the cached and random runs the "
      "script waits (up to CLICK_DRAIN_WAIT s) until gitrev_clicks_settled_total reaches gitrev_clicks_received_total: "
      "the seconds that took, and the clicks still unsettled then. The logs are DESIGN_rN_gitrev.log.")
bad = [f"{d} round {r}: {run['fivexx']:,.0f} answers 5xx" for (r, d), run in runs.items() if run["fivexx"]]
bad += [f"{d} round {r}: wrk completed no request in the {k} run" for (r, d), run in runs.items()
        for k in ("cached", "random", "unknown") if run[k]["requests"] == 0]
bad += [f"{d} round {r}: {int(run['rec'][k + '_unwritten']):,} clicks still unsettled {float(run['rec'][k + '_drain_ms']) / 1000:.0f} s after the {k} run"
        for (r, d), run in runs.items() for k in ("cached", "random") if int(run["rec"][k + "_unwritten"])]
bad += [f"{d} round {r}: {run['log']['ERROR']} ERROR lines in its log" for (r, d), run in runs.items() if run["log"]["ERROR"]]
if bad:
    print()
    print("**Look at these:** " + "; ".join(bad) + ".")
print(f"A code that exists comes up in the unknown run about {links / 62**7:.1e} of the time (a 302 there).")
print()

print("## Targets (issue #12)")
print()
def div(a, b):
    return a / b if b else float("nan")
def ratio(r, d, a, b):
    return div(runs[(r, d)][a]["rps"], runs[(r, d)][b]["rps"])
def overall(d, a, b):
    return div(sum(runs[(r, d)][a]["rps"] for r in range(1, rounds + 1)), sum(runs[(r, d)][b]["rps"] for r in range(1, rounds + 1)))
rs = range(1, rounds + 1)
rows = []
def line(name, target, values, whole, ok, today=None):
    verdict = "met" if ok else "**not met**"
    print(f"| {name} | {target} | {' · '.join(values)} | {whole} | {verdict} | {today or ''} |")
print("| target | wanted | tier, per round | tier, over the run | | today, over the run (for comparison) |")
print("| --- | --- | --- | --- | --- | --- |")
vals = [ratio(r, "tier", "random", "cached") for r in rs]
line("random / cached req/s", "≥ 0.5", [f"{x:.3f}" for x in vals], f"{overall('tier', 'random', 'cached'):.3f}",
     min(vals) >= 0.5 and overall("tier", "random", "cached") >= 0.5, f"{overall('today', 'random', 'cached'):.3f}")
vals = [ratio(r, "tier", "unknown", "cached") for r in rs]
line("unknown / cached req/s", "≥ 0.8", [f"{x:.3f}" for x in vals], f"{overall('tier', 'unknown', 'cached'):.3f}",
     min(vals) >= 0.8 and overall("tier", "unknown", "cached") >= 0.8, f"{overall('today', 'unknown', 'cached'):.3f}")
def tx_all(d, key):
    return sum(runs[(r, d)]["unknown"][key] * runs[(r, d)]["unknown"]["requests"] for r in rs) / max(1, sum(runs[(r, d)]["unknown"]["requests"] for r in rs))
vals = [runs[(r, "tier")]["unknown"]["per_req"] for r in rs]
nets = [runs[(r, "tier")]["unknown"]["net"] for r in rs]
line("transactions per unknown-code request", "< 0.01", [f"{f4(x)} (net {f4(n)})" for x, n in zip(vals, nets)],
     f"{f4(tx_all('tier', 'per_req'))} (net {f4(tx_all('tier', 'net'))})", max(vals) < 0.01,
     f"{f4(tx_all('today', 'per_req'))} (net {f4(tx_all('today', 'net'))})")
anon = lambda r, d: max(mb(runs[(r, d)]["rec"][k]) for k in ("rss_random_anon", "rss_unknown_anon"))
vals = [anon(r, "tier") for r in rs]
line(f"RssAnon while serving all {links:,} links (after the random and unknown runs, the larger)", "≤ 150 MB (at 1M links)",
     [f"{x:.1f} MB" for x in vals], f"max {max(vals):.1f} MB", max(vals) <= 150, f"max {max(anon(r, 'today') for r in rs):.1f} MB")
vals = [float(runs[(r, "tier")]["rec"]["first_ms"]) for r in rs]
line("start → first redirect", "< 1 s", [f"{x:.0f} ms" for x in vals], f"max {max(vals):.0f} ms", max(vals) < 1000,
     f"max {max(float(runs[(r, 'today')]['rec']['first_ms']) for r in rs):.0f} ms")
print()
print("Tier against today, over the run (req/s ratios): "
      + ", ".join(f"{k} {div(sum(runs[(r, 'tier')][k]['rps'] for r in rs), sum(runs[(r, 'today')][k]['rps'] for r in rs)):.3f}"
                  for k in ("cached", "random", "unknown")) + ".")
print("Net transactions per request subtract the idle rate measured in the same server over the same length of time.")
print()
print("## Quiet machine")
print()
print(read("quiet.md").rstrip() or "(no notes)")
print()
print("## How long each stage took")
print()
print("| stage | seconds |")
print("| --- | ---: |")
for line_ in read("stages.tsv").splitlines():
    name, s = line_.split("\t")
    print(f"| {name} | {s} |")
print()
print("## Where each figure comes from")
print()
print("- database: `psql` on the cluster (database.tsv); load statements in perf/tier.sh, output in load.txt; codes.txt by "
      "`\\copy (SELECT short_code FROM urls ORDER BY id)`.")
print("- tier file: `DATABASE_URL=… /usr/bin/time -v gitrev build-tier --out FILE` (build_tier.txt, build_tier_time.txt).")
print("- start → first redirect: a Python poller (HEAD /CODE every 5 ms, one connection per try) started before `gitrev serve`; "
      "ms from the spawn (bash $EPOCHREALTIME) to its first 302 (DESIGN_rN_first.txt).")
print(f"- RssAnon/RssFile: /proc/PID/status of gitrev, right after the first redirect, after the cached, random and unknown runs, "
      f"and after the random and unknown runs once their clicks were written and {stats_wait} s more had passed (records.tsv rss_*).")
print(f"- req/s, p99, requests, errors: `wrk -t{threads} -c{conns} -d{dur}s --latency -s SCRIPT` (DESIGN_rN_{{cached,random,unknown}}.txt): "
      "perf/wrk/codes.lua with CODES (the hot set), perf/wrk/random_codes.lua with CODES_FILE, perf/wrk/unknown_codes.lua.")
print("- statuses, cache misses, tier answers, trusted: `curl /metrics` before and after each run (DESIGN_rN_*.prom).")
print("- transactions: `psql postgres://…/postgres -c \"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'gitrev'\"` "
      f"{stats_wait} s after each window (records.tsv x_*, t_*).")
print("- others' CPU: lib.sh's cpu_snapshot/others_pct around each wrk run (gitrev, PostgreSQL and this script's children are ours).")
EOF
echo
cat "$OUT/summary.md"
