#!/usr/bin/env bash
# What a click row costs PostgreSQL to COPY, by layout (issue #9): a scratch cluster (initdb in a
# temporary directory, its own port), one day partition shaped like `clicks`, and ROWS rows (1,000
# clicks a second over 1,000 links and 60 contexts, deterministic) copied in ROUNDS rounds per layout:
#
#   present         (link_id, id) b-tree + BRIN on id, rows in recording order (what the writer does)
#   sorted          the same indexes, each BATCH-row batch sorted by link (ids still in recording order)
#   no-brin         the b-tree only, recording order
#   no-btree        the BRIN only
#   no-index        neither
#   runs            migration 5's layout: each batch's clicks of one link as one row (arrays of ids,
#                   instants and contexts; at most 64), `(link_id, first_id) INCLUDE (last_id)`
#                   b-tree + BRIN on `(first_id, last_id)`; µs are per click, not per row
#
# Every layout copies `id, at, link_id, context_id` (ids given, as the writer could give them), or
# for `runs` the same clicks grouped; the time is the wall time of `psql \copy` per click (this
# script is the only load it should run beside). Text COPY throughout: the runs' arrays are parsed
# from text here, where the service sends them in binary.
#
#   perf/copy_layouts.sh                  ROWS=1000000 ROUNDS=3 BATCH=32000
#   PG_BIN=/usr/lib/postgresql/15/bin perf/copy_layouts.sh
#
# Needs: PostgreSQL server binaries, psql, python3. Runs as root by switching to `postgres` for the
# cluster (initdb refuses root).
set -euo pipefail
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-3}
BATCH=${BATCH:-32000}
PORT=${PORT:-55439}
PG_BIN=${PG_BIN:-$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")}
dir=$(mktemp -d /tmp/gitrev-copy-XXXXXX)
chmod 755 "$dir"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$dir"
trap 'as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop > /dev/null 2>&1 || true; rm -rf "$dir"' EXIT

as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres > /dev/null
as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $PORT -k $dir -c listen_addresses= -c max_wal_size=4GB" start > /dev/null
psql_() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -At -h "$dir" -p "$PORT" -U postgres "$@"; }

python3 - "$dir" "$ROWS" "$ROUNDS" "$BATCH" <<'EOF'
import random, sys
out, rows, rounds, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(9)
base = [(i * 0.001, rng.randrange(1, 1001), rng.randrange(1, 61)) for i in range(rows)]
def at(s):
    s += 36000
    return f"2026-12-02 {int(s // 3600):02d}:{int(s % 3600 // 60):02d}:{s % 60:09.6f}"
for r in range(rounds):
    for name, ordered in (("recorded", False), ("sorted", True)):
        with open(f"{out}/{name}{r}.tsv", "w") as f:
            for c in range(0, rows, batch):
                chunk = [(r * rows + c + i + 1, row) for i, row in enumerate(base[c:c + batch])]
                if ordered:
                    chunk.sort(key=lambda x: (x[1][1], x[0]))
                for id_, (s, link, ctx) in chunk:
                    f.write(f"{id_}\t{at(s + r * rows * 0.001)}\t{link}\t{ctx}\n")
    with open(f"{out}/runs{r}.tsv", "w") as f:
        for c in range(0, rows, batch):
            groups = {}
            for i, (s, link, ctx) in enumerate(base[c:c + batch]):
                groups.setdefault(link, []).append((r * rows + c + i + 1, at(s + r * rows * 0.001), ctx))
            for link, clicks in sorted(groups.items(), key=lambda g: g[1][0][0]):
                for k in range(0, len(clicks), 64):
                    run = clicks[k:k + 64]
                    ids = ",".join(str(x[0]) for x in run)
                    ats = ",".join(f'"{x[1]}"' for x in run)
                    ctxs = ",".join(str(x[2]) for x in run)
                    f.write(f"{run[0][0]}\t{run[-1][0]}\t{run[0][1]}\t{link}\t{{{ids}}}\t{{{ats}}}\t{{{ctxs}}}\n")
EOF
chmod 644 "$dir"/*.tsv

table="CREATE TABLE clicks (id BIGINT NOT NULL, at TIMESTAMP NOT NULL, link_id INTEGER NOT NULL,
  context_id INTEGER NOT NULL) PARTITION BY RANGE (at);
  CREATE TABLE clicks_p PARTITION OF clicks FOR VALUES FROM ('2026-12-02') TO ('2026-12-03');"
btree="CREATE INDEX ON clicks (link_id, id);"
brin="CREATE INDEX ON clicks USING brin (id) WITH (pages_per_range = 16);"

echo "| layout | µs per click, each round | table + indexes after all rounds | indexes |"
echo "| --- | --- | ---: | ---: |"
runs="CREATE TABLE clicks (first_id BIGINT NOT NULL, last_id BIGINT NOT NULL, at TIMESTAMP NOT NULL,
  link_id INTEGER NOT NULL, ids BIGINT[] NOT NULL, ats TIMESTAMP[] NOT NULL, contexts INTEGER[] NOT NULL)
  PARTITION BY RANGE (at);
  CREATE TABLE clicks_p PARTITION OF clicks FOR VALUES FROM ('2026-12-02') TO ('2026-12-03');
  CREATE INDEX ON clicks (link_id, first_id) INCLUDE (last_id);
  CREATE INDEX ON clicks USING brin (first_id, last_id) WITH (pages_per_range = 16);"
layout() {
  local name=$1 file=$2 ddl=$3 times=() columns="id, at, link_id, context_id"
  [ "$name" = runs ] && columns="first_id, last_id, at, link_id, ids, ats, contexts"
  psql_ -c "DROP TABLE IF EXISTS clicks" -c "$ddl" -c "CHECKPOINT"
  for r in $(seq 0 $((ROUNDS - 1))); do
    local t0 t1
    t0=$(date +%s%N)
    psql_ -c "\\copy clicks ($columns) from $dir/$file$r.tsv"
    t1=$(date +%s%N)
    times+=("$(awk -v ns=$((t1 - t0)) -v n="$ROWS" 'BEGIN { printf "%.2f", ns / 1000 / n }')")
  done
  echo "| $name | ${times[*]} | $(psql_ -c "SELECT pg_size_pretty(pg_total_relation_size('clicks_p'))") | $(psql_ -c "SELECT pg_size_pretty(pg_indexes_size('clicks_p'))") |"
}
layout runs runs "$runs"
layout present recorded "$table $btree $brin"
layout sorted sorted "$table $btree $brin"
layout no-brin recorded "$table $btree"
layout no-btree recorded "$table $brin"
layout no-index recorded "$table"
echo
echo "ROWS=$ROWS ROUNDS=$ROUNDS BATCH=$BATCH, PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
