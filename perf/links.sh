#!/usr/bin/env bash
# Issue #11's targets (link lifecycle and redirect options), in one run, as ratios taken within it
# (interleaved rounds) where a ratio is the target:
#
#   perf/links.sh [section ...]        sections: redirect bulk search (default: all three)
#   ROUNDS=4 DURATION=10 GITREV_BIN=target/release/gitrev perf/links.sh
#   GITREV_COMMIT=abc1234 GITREV_BIN=/elsewhere/gitrev perf/links.sh   (the summary names the source)
#   CONNS=64 SEARCH_CONNS=8 ROWS=1000000 perf/links.sh search
#
# redirect  ROUNDS (4) rounds, each on a fresh gitrev (embedded PostgreSQL, development, the
#           reference seed set), of `wrk -tTHREADS -cCONNS -dDURATIONs --latency` GET
#           /CODE?utm_source=news&utm_medium=mail on three links made through POST /urls:
#             plain    {"original_url": "https://example.com/landing?ref=a"} (ignores the query);
#             options  forward_query: true and expires_at a year ahead (the query is appended);
#             limited  max_clicks 10^12 (the per-url click budget is taken on every GET);
#           in order plain options limited, then reversed the next round, and so on. Every GET
#           records a click, on all three alike. Target: options / plain ≥ 0.95 per round and over
#           the run (limited / plain is for information).
# bulk      one fresh gitrev, its WAL warmed up first (WAL_WARMUP_MB, 256: that many MB of
#           segments switched through and recycled by a CHECKPOINT, as on a server that has been
#           running; 0: none); one Python http.client keep-alive connection (the same code for
#           both) creates 1000 urls with 1000 sequential POST /urls, and 1000 with one
#           POST /urls/bulk, ROUNDS times, alternating which goes first. Unique original_urls, no
#           custom codes. The trigram indexes' pending lists are emptied before each side (each pays
#           for its own index entries only; flushing them is timed apart). Target: bulk urls/s ≥ 20 ×
#           single urls/s.
# search    one fresh gitrev; ROWS (1,000,000) urls added straight into its database by one
#           INSERT … SELECT FROM generate_series (titles and paths drawn from a few hundred words
#           with a skewed distribution, niche and rare words; setseed: the same rows every run),
#           then VACUUM ANALYZE urls and a CHECKPOINT. Then `wrk -tTHREADS -cSEARCH_CONNS
#           -dDURATIONs --latency` GET /urls?q=TERM&per_page=20 cycling through terms
#           (perf/wrk/search.lua): all classes mixed (twice: first and last), then rare words,
#           medium words (0.1–1% of rows, also with one connection), 3–5 character fragments,
#           mixed case, fragments of frequent words, and a very common word on its own (a limit:
#           x-total-count counts every match). Each term's x-total-count and one request's time
#           are recorded, and EXPLAIN (ANALYZE, BUFFERS) of the statements the server sends for
#           one search of EXPLAIN_TERM (lantern), read from PostgreSQL's log, as custom and as
#           generic plans. Target: p99 < 20 ms on the mixed runs with one search in flight per
#           client, read with one client and with two (-c1 and -c2, before and after the rest),
#           each verdict on its own line; the -cSEARCH_CONNS runs saturate the two cores (their
#           latency is the queue: connections ÷ throughput).
#
# Before each section (and each redirect round) it waits, up to QUIET_WAIT (600) seconds in all,
# until other processes use at most QUIET_PCT (25) % of a core; each wrk run records the CPU used
# by processes other than this script's own (another engineer's build), as perf/clicks.sh does.
# THREADS (2), PORT (18080). Every figure is in summary.md with what produced it.
# Output: perf/out/links-<run>/summary.md and the raw outputs beside it. Needs wrk, curl, psql
# (postgresql-client), python3; installed from Debian when missing.
set -euo pipefail
[ -n "${GITREV_BIN:-}" ] && GITREV_BIN=$(realpath -- "$GITREV_BIN")
cd "$(dirname "$0")/.."
. perf/lib.sh
SECTIONS=${*:-redirect bulk search}
DUR=${DURATION:-10}
CONNS=${CONNS:-64}
SEARCH_CONNS=${SEARCH_CONNS:-8}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-4}
ROWS=${ROWS:-1000000}
PORT=${PORT:-18080}
BASE=http://127.0.0.1:$PORT
RUN=$(date -u +%Y%m%dT%H%M%SZ)
OUT=perf/out/links-$RUN
SUMMARY=$OUT/summary.md
mkdir -p "$OUT"

# Search terms by class (comma-separated). Each term's match count over the generated rows is
# measured and reported; over ROWS=1000000 (setseed: the same rows every run) they are:
#   rare      10–21 rows each (qwxzy: none);
#   medium    niche words (~0.27%) and words of the skewed list's tail (0.6–0.8%);
#   fragment  3–5 characters inside words of either (0.0002–0.9%);
#   mixedcase the medium and fragment terms, differently cased;
#   broad     fragments inside frequent words (2–5%): information, not in the target's mix;
#   common    a word in ~11% of the rows (~110k): the limit x-total-count's count(*) sets;
#   top       the most frequent word (~57%): one request timed, no wrk run.
TERMS_RARE=${TERMS_RARE:-zanzibar,quokka,kumquat,zeppelin,xylophone,fjord,qwxzy}
TERMS_MEDIUM=${TERMS_MEDIUM:-hazelnut,mandolin,quartz,toucan,lantern,badger,indigo,cricket}
TERMS_FRAGMENT=${TERMS_FRAGMENT:-lph,ura,rdv,adge,ebon,kotl,ukul,quar}
TERMS_MIXEDCASE=${TERMS_MIXEDCASE:-BADger,Lantern,HAZELNUT,Indigo,EBON,Kotl,TouCan}
TERMS_BROAD=${TERMS_BROAD:-ocol,volca,ket}
TERMS_COMMON=${TERMS_COMMON:-river}
TERMS_TOP=${TERMS_TOP:-garden}

need_commands wrk curl psql=postgresql-client
if [ -z "${GITREV_BIN:-}" ]; then
  cargo build --release --bin gitrev
  GITREV_BIN=$(realpath target/release/gitrev)
fi
[ -x "$GITREV_BIN" ] || { echo "not an executable file: $GITREV_BIN" >&2; exit 2; }

trap cleanup EXIT

note() { echo "$*" | tee -a "$SUMMARY"; }
needs() { [[ " $SECTIONS " == *" $1 "* ]]; }

start() { # a fresh gitrev: embedded PostgreSQL, development (open API), the seed set
  DATA=$(mktemp -d /tmp/gitrev-links-XXXXXX)
  chmod 755 "$DATA"
  env GITREV_DATA_DIR="$DATA" GITREV_LISTEN="127.0.0.1:$PORT" GITREV_ENV=development GITREV_LOG=warn \
    GITREV_READY_FILE="$DATA/ready.json" "$GITREV_BIN" serve >> "$OUT/gitrev.log" 2>&1 &
  GPID=$!
  for _ in $(seq 1 600); do
    if [ -f "$DATA/ready.json" ]; then
      DBURL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["database_url"])' "$DATA/ready.json")
      return 0
    fi
    sleep 0.1
  done
  echo "gitrev not ready; see $OUT/gitrev.log" >&2
  exit 1
}

# One wrk run → a line of TSV: section name round req/s p50 p90 p99 (ms) errors others%.
# Errors: non-2xx/3xx answers and socket errors (connect, read, write, timeout).
wrk_run() { # tsv section name round conns target [script]
  local tsv=$1 section=$2 name=$3 round=$4 conns=$5 target=$6 script=${7:-}
  local file=$OUT/${section}_${name}_r$round.txt s0 s1
  local args=(-t"$((THREADS < conns ? THREADS : conns))" -c"$conns" -d"${DUR}s" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  s0=$(cpu_snapshot)
  wrk "${args[@]}" "$target" > "$file" 2>&1
  s1=$(cpu_snapshot)
  python3 - "$file" "$section" "$name" "$round" "$(others_pct "$s0" "$s1")" >> "$tsv" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
unit = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
def pct(p):
    m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    return f"{float(m.group(1)) * unit[m.group(2)]:.3f}" if m else "nan"
rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if sock:
    errors += sum(int(n) for n in sock.groups())
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], rps.group(1) if rps else "0",
                 pct(50), pct(90), pct(99), str(errors), sys.argv[5]]))
EOF
  tail -1 "$tsv" | awk -F'\t' '{ printf "  %s %s r%s: %s req/s, p99 %s ms, errors %s, others %s%%\n", $1, $2, $3, $4, $7, $8, $9 }'
}

# Waits (up to QUIET_WAIT seconds in all, 600) while other processes use more than QUIET_PCT
# (25) % of one core, measured over 5 s; notes how it went.
WAITED=0
wait_quiet() { # what
  local s0 s1 pct before=$WAITED
  while :; do
    s0=$(cpu_snapshot); sleep 5; s1=$(cpu_snapshot)
    pct=$(others_pct "$s0" "$s1")
    [ "$pct" -le "${QUIET_PCT:-25}" ] && break
    if [ "$WAITED" -ge "${QUIET_WAIT:-600}" ]; then
      note "- $1: the machine never got quiet (others used $pct% of a core after $WAITED s of waiting in this run); measured anyway"
      return 0
    fi
    WAITED=$((WAITED + 5))
  done
  note "- $1: waited $((WAITED - before)) s for other processes to use ≤ ${QUIET_PCT:-25}% of a core ($pct% over the last 5 s); began $(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

create() { # JSON body -> short_code (POST /urls)
  curl -sf -H 'content-type: application/json' -d "$1" "$BASE/urls" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["short_code"])'
}

{
  echo "# links perf run $RUN"
  echo
  echo "\`perf/links.sh $SECTIONS\` with ROUNDS=$ROUNDS DURATION=$DUR CONNS=$CONNS SEARCH_CONNS=$SEARCH_CONNS THREADS=$THREADS ROWS=$ROWS;"
  echo "gitrev \`$GITREV_BIN\`${GITREV_COMMIT:+ built from $GITREV_COMMIT}; checkout at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates src sql 2>/dev/null || echo ' (crates/src/sql modified)');"
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/^Mem:/ { print $2 }') GiB;"
  echo "started $(date -u '+%Y-%m-%d %H:%M:%S') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)."
} > "$SUMMARY"
cat "$SUMMARY"

# ---------------------------------------------------------------------------------------------
if needs redirect; then
  echo "== redirect"
  note ""
  note "## redirect: GET /{code}?utm_source=news&utm_medium=mail (req/s)"
  note ""
  wait_quiet "redirect round 1"
  TSV=$OUT/redirect.tsv
  : > "$TSV"
  QUERY='utm_source=news&utm_medium=mail'
  declare -A code
  for round in $(seq 1 "$ROUNDS"); do
    [ "$round" -gt 1 ] && wait_quiet "redirect round $round"
    start
    expires=$(date -u -d '+1 year' +%Y-%m-%dT%H:%M:%S)
    plain=$(create '{"original_url": "https://example.com/landing?ref=a"}')
    options=$(create "{\"original_url\": \"https://example.com/landing?ref=b\", \"forward_query\": true, \"expires_at\": \"$expires\"}")
    limited=$(create '{"original_url": "https://example.com/landing?ref=c", "max_clicks": 1000000000000}')
    code=([plain]=$plain [options]=$options [limited]=$limited)
    order="plain options limited"
    [ $((round % 2)) -eq 0 ] && order="limited options plain"
    for v in $order; do
      # What each answers (one click each), then a warm-up.
      printf '%s\t%s\t%s\n' "$round" "$v" \
        "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$BASE/${code[$v]}?$QUERY")" >> "$OUT/redirect_locations.tsv"
      wrk -t"$THREADS" -c"$CONNS" -d2s "$BASE/${code[$v]}?$QUERY" > /dev/null
    done
    for v in $order; do
      wrk_run "$TSV" redirect "$v" "$round" "$CONNS" "$BASE/${code[$v]}?$QUERY"
    done
    stop
  done
  python3 - "$TSV" "$OUT/redirect_locations.tsv" >> "$SUMMARY" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
get = {(r[1], int(r[2])): r for r in rows}
rounds = sorted({int(r[2]) for r in rows})
rps = lambda v, n: float(get[(v, n)][3])
print()
print("| round | order | plain | options | **options / plain** | limited | limited / plain | p99 ms plain / options / limited | errors | others' CPU % |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
for n in rounds:
    order = "p o l" if n % 2 else "l o p"
    p, o, l = (get[(v, n)] for v in ("plain", "options", "limited"))
    print(f"| {n} | {order} | {rps('plain', n):,.0f} | {rps('options', n):,.0f} | **{rps('options', n) / rps('plain', n):.3f}** "
          f"| {rps('limited', n):,.0f} | {rps('limited', n) / rps('plain', n):.3f} | {float(p[6]):.2f} / {float(o[6]):.2f} / {float(l[6]):.2f} "
          f"| {int(p[7]) + int(o[7]) + int(l[7])} | {p[8]} / {o[8]} / {l[8]} |")
tot = {v: sum(rps(v, n) for n in rounds) for v in ("plain", "options", "limited")}
ratios = sorted(rps("options", n) / rps("plain", n) for n in rounds)
print(f"| all | | {tot['plain'] / len(rounds):,.0f} | {tot['options'] / len(rounds):,.0f} | **{tot['options'] / tot['plain']:.3f}** "
      f"| {tot['limited'] / len(rounds):,.0f} | {tot['limited'] / tot['plain']:.3f} | | | |")
print()
print(f"options / plain: rounds {ratios[0]:.3f}–{ratios[-1]:.3f}, over the run {tot['options'] / tot['plain']:.3f} "
      f"(target ≥ 0.95: {'met' if min(ratios) >= 0.95 else 'not met in every round'}"
      f"{'' if tot['options'] / tot['plain'] >= 0.95 else ', not met over the run'}).")
print()
print("What each link answered (curl, before the warm-up):")
print()
for line in open(sys.argv[2]):
    n, v, what = line.rstrip("\n").split("\t")
    print(f"- round {n} {v}: `{what}`")
EOF
fi

# ---------------------------------------------------------------------------------------------
if needs bulk; then
  echo "== bulk"
  start
  note ""
  note "## bulk: 1000 urls, one keep-alive client (urls/s)"
  note ""
  # A server that has run through a checkpoint or two reuses its old WAL segments; a fresh cluster
  # instead creates and zero-fills a 16 MB segment inside whichever commit first needs it (a round
  # writes about 8 MB, so from round 7 on every other round's second side paid ~50 ms for it).
  # WAL_WARMUP_MB of segments are switched through and recycled by a CHECKPOINT first, so the
  # rounds see the steady state; WAL_WARMUP_MB=0 measures the fresh cluster.
  if [ "${WAL_WARMUP_MB:-256}" -gt 0 ]; then
    before=$(psql "$DBURL" -Atc "SELECT count(*) FROM pg_ls_waldir()")
    psql "$DBURL" -qAt -c "SELECT count(*) FROM (SELECT pg_logical_emit_message(false, 'gitrev-perf', 'x'),
                               pg_switch_wal() FROM generate_series(1, ${WAL_WARMUP_MB:-256} / 16)) s" \
      -c "CHECKPOINT" > /dev/null
    after=$(psql "$DBURL" -Atc "SELECT count(*) FROM pg_ls_waldir()")
    note "- WAL warm-up: ${WAL_WARMUP_MB:-256} MB of segments switched through and recycled by a CHECKPOINT (WAL_WARMUP_MB); WAL segments before and after: $before, $after"
  else
    note "- no WAL warm-up (WAL_WARMUP_MB=0): a fresh cluster, creating its WAL segments as the rounds need them"
  fi
  wait_quiet "bulk"
  python3 - "$PORT" "$ROUNDS" "$RUN" "$OUT/bulk.tsv" "$DBURL" <<'EOF'
import http.client, json, re, subprocess, sys, time
# The trigram index (schema 4–7) or its two halves (schema 8).
SEARCH_INDEXES_FLUSH = ("SELECT gin_clean_pending_list(indexrelid::regclass) FROM pg_index "
                        "WHERE indrelid = 'urls'::regclass "
                        "AND indexrelid::regclass::text LIKE 'urls_search%'")
port, rounds, run, tsv, db = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
conn = http.client.HTTPConnection("127.0.0.1", port)  # one client, keep-alive throughout
N = 1000

def post(path, obj):
    body = json.dumps(obj).encode()
    conn.request("POST", path, body, {"content-type": "application/json"})
    r = conn.getresponse()
    return r.status, r.read()

def url(kind, rnd, i):
    return {"original_url": f"https://example.com/perf/{run}/{kind}/r{rnd}/{i}?ref=links",
            "title": f"perf {kind} round {rnd} url {i}"}

def single(rnd, n=N):
    t0 = time.perf_counter()
    answers = [post("/urls", url("single", rnd, i)) for i in range(n)]
    t = time.perf_counter() - t0
    bad = [s for s, _ in answers if s != 201]
    assert not bad, f"POST /urls answered {bad[:5]}"
    return t

def bulk(rnd, n=N):
    t0 = time.perf_counter()
    s, body = post("/urls/bulk", [url("bulk", rnd, i) for i in range(n)])
    t = time.perf_counter() - t0
    j = json.loads(body)
    assert s == 201 and len(j["created"]) == n and not j["errors"], (s, body[:300])
    return t

def flush():
    """Empties the trigram indexes' pending lists (GIN fastupdate); seconds it took, server side."""
    out = subprocess.run(["psql", db, "-Atq", "-c", "\\timing on", "-c", SEARCH_INDEXES_FLUSH],
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r"Time: ([\d.]+) ms", out).group(1)) / 1000

single("warm", 100)
bulk("warm", 100)
with open(tsv, "w") as out:
    for rnd in range(1, rounds + 1):
        order = ("single", "bulk") if rnd % 2 else ("bulk", "single")
        t, f = {}, {}
        for k in order:
            flush()  # neither side pays for the other's index entries...
            t[k] = (single if k == "single" else bulk)(rnd)
            f[k] = flush()  # ...and what flushing its own costs is timed apart
        out.write(f"{rnd}\t{' '.join(order)}\t{t['single']:.6f}\t{t['bulk']:.6f}\t{f['single']:.6f}\t{f['bulk']:.6f}\n")
        print(f"  bulk r{rnd}: single {N / t['single']:,.0f} urls/s, bulk {N / t['bulk']:,.0f} urls/s, "
              f"ratio {t['single'] / t['bulk']:.1f}; pending-list flush {1000 * f['single']:.0f} / {1000 * f['bulk']:.0f} ms")
EOF
  stop
  python3 - "$OUT/bulk.tsv" >> "$SUMMARY" <<'EOF'
import sys
rows = [[r[0], r[1]] + [float(x) for x in r[2:]] for r in (l.rstrip("\n").split("\t") for l in open(sys.argv[1]))]
print()
print("| round | order | 1000 × POST /urls: s | urls/s | POST /urls/bulk of 1000: s | urls/s | **bulk / single** | index flush after single / bulk: ms | bulk / single, flush included |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
ratios = []
for n, order, ts, tb, fs, fb in rows:
    ratios.append(ts / tb)
    print(f"| {n} | {order} | {ts:.3f} | {1000 / ts:,.0f} | {tb:.4f} | {1000 / tb:,.0f} | **{ts / tb:.1f}** "
          f"| {1000 * fs:.0f} / {1000 * fb:.0f} | {(ts + fs) / (tb + fb):.1f} |")
sts, stb = sum(r[2] for r in rows), sum(r[3] for r in rows)
sfs, sfb = sum(r[4] for r in rows), sum(r[5] for r in rows)
k = len(rows)
print(f"| all | | {sts:.3f} | {1000 * k / sts:,.0f} | {stb:.4f} | {1000 * k / stb:,.0f} | **{sts / stb:.1f}** "
      f"| {1000 * sfs:.0f} / {1000 * sfb:.0f} | {(sts + sfs) / (stb + sfb):.1f} |")
print()
print("Before each timed side the trigram index's pending list (GIN fastupdate, flushed into the index by")
print("whichever insert finds it over gin_pending_list_limit, 4 MB ≈ 4,500 of these urls) is emptied with")
print("gin_clean_pending_list, so neither side pays for the other's entries; flushing its own entries")
print("right after is timed apart (last column: the ratio with that cost added to each side).")
print()
print(f"bulk / single: rounds {min(ratios):.1f}–{max(ratios):.1f}, over the run {sts / stb:.2f} "
      f"(target ≥ 20: {'met' if min(ratios) >= 20 else 'not met in every round'}"
      f"{'' if sts / stb >= 20 else ', not met over the run'}); with the flush included {(sts + sfs) / (stb + sfb):.1f}.")
EOF
fi

# ---------------------------------------------------------------------------------------------
WORDS="garden harbor summit river meadow canyon forest island valley desert ocean prairie glacier
volcano lagoon orchard vineyard village market festival concert gallery museum theater library
station airport bridge tunnel castle temple palace cottage cabin studio kitchen bakery coffee
chocolate vanilla cinnamon pepper ginger honey maple cherry lemon orange apple banana mango peach
plum grape olive tomato potato carrot onion garlic basil thyme mint sage rosemary saffron sunrise
sunset morning evening midnight winter spring summer autumn holiday weekend birthday wedding
graduation anniversary reunion campaign launch release update roadmap webinar newsletter podcast
tutorial workshop conference meetup hackathon keynote interview review report survey guide
handbook manual checklist template playbook pricing checkout signup login account profile
settings dashboard invoice receipt order shipping return refund coupon discount offer sale bundle
subscription trial upgrade product feature platform service solution partner customer community
support contact careers team about press blog news story journal article essay column design
engineering marketing sales finance legal security privacy compliance analytics research data
cloud mobile desktop server network storage backup monitor python rust golang java kotlin swift
ruby elixir haskell scala photo video music album playlist movie trailer episode season series
chapter football soccer tennis golf hockey cricket rugby cycling running swimming hiking climbing
sailing skiing surfing yoga red blue green yellow purple silver golden crimson amber violet indigo
scarlet ivory ebony lion tiger eagle falcon dolphin whale panda koala otter beaver badger fox wolf
bear rabbit turtle north south east west central coastal urban rural alpine tropical arctic quiet
bright nimble gentle bold calm wild rapid silent brave clever happy lucky royal noble ancient
modern classic vintage future harvest cobalt relay seeded pioneer beacon compass anchor lantern
voyage journey frontier horizon paper stone glass steel copper bronze marble velvet cotton linen
silk wool leather city town county state nation region district doctor nurse teacher student
farmer builder painter writer singer dancer window door roof floor wall tower gate fence"
NICHE="abacus bagpipe cactus dagger easel falafel gazebo hammock igloo jigsaw kayak ladle mosaic
nutmeg oboe paprika quiver raffle sorbet tambourine ukulele walrus yodel zucchini almanac bonsai
cobbler dormouse eggplant flamingo gondola hibiscus iguana jasmine kiwi lychee macaron narwhal
oregano pelican quince radish sardine toucan umbra vortex waffle yarrow zinnia armadillo bramble
cupola dulcimer emerald fennel geyser hazelnut inkwell juniper kestrel lilac mandolin nectar
origami papaya quartz rhubarb stallion truffle unicorn verbena wigwam yeti zodiac acorn bison
caramel daffodil eucalyptus foxglove gherkin heron ibex jackal kelp lobster mongoose nougat osprey
parsnip quail raven squid thistle urchin vulture wasabi"
RARE="zanzibar quixotic xylophone juxtapose kumquat wombat zeppelin fjord quokka sphinx"
DOMAINS="example.com relay.cloud seeded.app acme.com globex.io initech.net umbrella.org hooli.com
piedpiper.io stark.dev wayne.co wonka.shop dunder.biz soylent.co tyrell.ai cyberdyne.tech
oscorp.net vandelay.com aperture.science blackmesa.org weyland.space massive-dynamic.com
shop.example.net news.example.org blog.example.io docs.example.dev media.example.tv
events.example.com go.example.org learn.example.edu"

if needs search; then
  echo "== search"
  start
  psql "$DBURL" -Atc "SELECT count(*) FROM urls" > "$OUT/search_seed_rows.txt"
  echo "  loading $ROWS urls"
  t0=$(date +%s.%N)
  psql "$DBURL" -v ON_ERROR_STOP=1 -q -v rows="$ROWS" -v words="${WORDS//$'\n'/ }" -v niche="${NICHE//$'\n'/ }" -v rare="$RARE" \
    -v domains="${DOMAINS//$'\n'/ }" > "$OUT/search_load.txt" 2>&1 <<'SQL'
SELECT setseed(0.11);
-- Words drawn with a skewed distribution (index = n · u³: the first words are in a large share of
-- the rows, the last in under 1%); 30% of titles get one of a hundred niche words (~0.3% of the
-- rows each), ~0.02% one of ten rare words.
INSERT INTO urls (short_code, original_url, title)
SELECT 'k' || lpad(to_hex((g * 2654435761) % 4294967296), 8, '0'),
       'https://' || d.v[1 + floor(random() * d.n)::int] || '/'
         || w.v[1 + floor(w.n * random() ^ 3)::int] || '/' || w.v[1 + floor(w.n * random() ^ 3)::int]
         || '/' || g
         || CASE WHEN random() < 0.3 THEN '?utm_campaign=' || w.v[1 + floor(w.n * random() ^ 3)::int]
            ELSE '' END,
       CASE WHEN random() < 0.1 THEN NULL ELSE
         initcap(w.v[1 + floor(w.n * random() ^ 3)::int]) || ' ' || w.v[1 + floor(w.n * random() ^ 3)::int]
         || ' ' || w.v[1 + floor(w.n * random() ^ 3)::int]
         || CASE WHEN random() < 0.5 THEN ' ' || w.v[1 + floor(w.n * random() ^ 3)::int] ELSE '' END
         || CASE WHEN random() < 0.3 THEN ' ' || n.v[1 + floor(random() * n.n)::int] ELSE '' END
         || CASE WHEN random() < 0.0002 THEN ' ' || initcap(r.v[1 + floor(random() * r.n)::int]) ELSE '' END
       END
FROM generate_series(1, :rows) g,
     (SELECT a AS v, cardinality(a) AS n FROM string_to_array(:'words', ' ') a) w,
     (SELECT a AS v, cardinality(a) AS n FROM string_to_array(:'niche', ' ') a) n,
     (SELECT a AS v, cardinality(a) AS n FROM string_to_array(:'rare', ' ') a) r,
     (SELECT a AS v, cardinality(a) AS n FROM string_to_array(:'domains', ' ') a) d;
SQL
  t1=$(date +%s.%N)
  psql "$DBURL" -qc "VACUUM ANALYZE urls"
  t2=$(date +%s.%N)
  # The load's dirty pages written out now, not under the measurement.
  psql "$DBURL" -qc "CHECKPOINT"
  sync
  LOAD_S=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
  VACUUM_S=$(python3 -c "print(f'{$t2 - $t1:.1f}')")
  TOTAL_ROWS=$(psql "$DBURL" -Atc "SELECT count(*) FROM urls")
  SIZES=$(psql "$DBURL" -Atc "SELECT pg_size_pretty(pg_table_size('urls')) || ' table, ' || pg_size_pretty(sum(pg_relation_size(indexrelid))) || ' trigram index(es)' FROM pg_index WHERE indrelid = 'urls'::regclass AND indexrelid::regclass::text LIKE 'urls_search%'")
  PGVER=$(psql "$DBURL" -Atc "SHOW server_version")
  SHARED_BUFFERS=$(psql "$DBURL" -Atc "SHOW shared_buffers")
  echo "  loaded in $LOAD_S s, VACUUM ANALYZE $VACUUM_S s; $TOTAL_ROWS urls"

  # Each term's match count (x-total-count) and one request's time, through the server.
  : > "$OUT/search_terms.tsv"
  for class in rare medium fragment mixedcase broad common top; do
    var=TERMS_${class^^}
    IFS=, read -r -a terms <<< "${!var}"
    for term in "${terms[@]}"; do
      curl -s -o /dev/null -D "$OUT/h.txt" "$BASE/urls?q=$term&per_page=20" # prepares, warms
      t=$(curl -s -o /dev/null -D "$OUT/h.txt" -w '%{time_total}' "$BASE/urls?q=$term&per_page=20")
      n=$(tr -d '\r' < "$OUT/h.txt" | awk -F': ' 'tolower($1) == "x-total-count" { print $2 }')
      printf '%s\t%s\t%s\t%s\n' "$class" "$term" "$n" "$t" >> "$OUT/search_terms.tsv"
    done
  done
  rm -f "$OUT/h.txt"

  # EXPLAIN (ANALYZE, BUFFERS) of exactly what the server runs for one search: its statements are
  # taken from PostgreSQL's log (log_min_duration_statement = 0 for one request), then run again
  # with the logged parameters — for the medium term as a custom plan (the pattern known) and as
  # the generic plan a prepared statement may settle on after five executions, and for a rare
  # and the common term as custom plans.
  EXPLAIN_TERM=${EXPLAIN_TERM:-lantern}
  PGLOG=$DATA/postgres.log
  if [ -f "$PGLOG" ]; then
    psql "$DBURL" -q -c "ALTER SYSTEM SET log_min_duration_statement = 0" -c "SELECT pg_reload_conf()" > /dev/null
    sleep 1
    mark=$(wc -c < "$PGLOG")
    curl -s -o /dev/null "$BASE/urls?q=$EXPLAIN_TERM&per_page=20"
    sleep 1
    psql "$DBURL" -q -c "ALTER SYSTEM RESET log_min_duration_statement" -c "SELECT pg_reload_conf()" > /dev/null
    tail -c +$((mark + 1)) "$PGLOG" > "$OUT/search_statements.log"
    python3 - "$OUT/search_statements.log" "$EXPLAIN_TERM" "${TERMS_RARE%%,*}" "${TERMS_COMMON%%,*}" \
      "$OUT/search_explain.txt" > "$OUT/search_explain.sql" <<'EOF'
import re, sys
log, term, rare, common = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], sys.argv[4]
listing = open(sys.argv[5], "w")
stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] "
entries = re.findall(rf"execute [^:]+: ((?:(?!\n{stamp}).)*)\n{stamp}DETAIL:  parameters: ([^\n]*)", log, re.S)
n = 0
for sql, params in entries:
    if "ILIKE" not in sql:
        continue
    n += 1
    values = [v for _, v in re.findall(r"\$(\d+) = ('(?:[^']|'')*'|NULL)", params)]
    def execute(pattern_term):
        vals = [f"'%{pattern_term}%'" if v == f"'%{term}%'" else v for v in values]
        return f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE q{n}({', '.join(vals)});"
    listing.write(f"-- statement {n} as the server sent it (parameters {params.strip()}):\n{sql.strip()}\n\n")
    print(f"PREPARE q{n} AS {sql.strip()};")
    for mode, t in (("custom", term), ("generic", term), ("custom", rare), ("generic", rare), ("custom", common)):
        print(f"SET plan_cache_mode = force_{mode}_plan;")
        print(f"\\echo '-- statement {n}, {mode} plan, q={t}'")
        print(execute(t))
if n == 0:
    print("\\echo 'no search statement found in the server log'")
EOF
    psql "$DBURL" -f "$OUT/search_explain.sql" >> "$OUT/search_explain.txt" 2>&1
  else
    echo "no PostgreSQL log at $PGLOG: EXPLAIN skipped" > "$OUT/search_explain.txt"
  fi

  ALL_TERMS="$TERMS_RARE,$TERMS_MEDIUM,$TERMS_FRAGMENT,$TERMS_MIXEDCASE"
  note ""
  note "## search: GET /urls?q=TERM&per_page=20 over $TOTAL_ROWS urls"
  note ""
  wait_quiet "search"
  TERMS=$ALL_TERMS wrk -t"$THREADS" -c"$SEARCH_CONNS" -d3s -s perf/wrk/search.lua "$BASE" > /dev/null
  TSV=$OUT/search.tsv
  : > "$TSV"
  # The target's reading: one search in flight per client, one and two clients (the machine's two
  # cores), then the same mix at SEARCH_CONNS, where it saturates.
  TERMS=$ALL_TERMS wrk_run "$TSV" search mixed_c1 1 1 "$BASE" perf/wrk/search.lua
  TERMS=$ALL_TERMS wrk_run "$TSV" search mixed_c2 1 2 "$BASE" perf/wrk/search.lua
  TERMS=$ALL_TERMS wrk_run "$TSV" search mixed 1 "$SEARCH_CONNS" "$BASE" perf/wrk/search.lua
  TERMS=$TERMS_RARE wrk_run "$TSV" search rare 1 "$SEARCH_CONNS" "$BASE" perf/wrk/search.lua
  TERMS=$TERMS_MEDIUM wrk_run "$TSV" search medium 1 "$SEARCH_CONNS" "$BASE" perf/wrk/search.lua
  TERMS=$TERMS_MEDIUM wrk_run "$TSV" search medium_c1 1 1 "$BASE" perf/wrk/search.lua
  TERMS=$TERMS_FRAGMENT wrk_run "$TSV" search fragment 1 "$SEARCH_CONNS" "$BASE" perf/wrk/search.lua
  TERMS=$TERMS_MIXEDCASE wrk_run "$TSV" search mixedcase 1 "$SEARCH_CONNS" "$BASE" perf/wrk/search.lua
  TERMS=$ALL_TERMS wrk_run "$TSV" search mixed 2 "$SEARCH_CONNS" "$BASE" perf/wrk/search.lua
  TERMS=$TERMS_BROAD wrk_run "$TSV" search broad 1 "$SEARCH_CONNS" "$BASE" perf/wrk/search.lua
  TERMS=$TERMS_COMMON wrk_run "$TSV" search common 1 "$SEARCH_CONNS" "$BASE" perf/wrk/search.lua
  TERMS=$ALL_TERMS wrk_run "$TSV" search mixed_c1 2 1 "$BASE" perf/wrk/search.lua
  TERMS=$ALL_TERMS wrk_run "$TSV" search mixed_c2 2 2 "$BASE" perf/wrk/search.lua
  stop

  python3 - "$TSV" "$OUT/search_terms.tsv" "$OUT/search_explain.txt" >> "$SUMMARY" <<EOF
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
terms = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
print()
print("$ROWS urls inserted in $LOAD_S s, VACUUM ANALYZE $VACUUM_S s; $SIZES; PostgreSQL $PGVER, shared_buffers $SHARED_BUFFERS.")
print("wrk -t$THREADS -c$SEARCH_CONNS -d${DUR}s --latency (the _c1 and _c2 runs: -c1 / -c2), perf/wrk/search.lua cycling through each class's terms.")
print()
print("| run | terms | req/s | p50 ms | p90 ms | **p99 ms** | errors | others' CPU % |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
label = {"mixed": "rare + medium + fragments + mixed case", "rare": "rare words", "medium": "medium words",
         "fragment": "3–5 character fragments", "mixedcase": "mixed case",
         "medium_c1": "medium words, one connection (-c1)",
         "mixed_c1": "rare + medium + fragments + mixed case, one connection (-c1)",
         "mixed_c2": "the same, two connections (-c2)", "broad": "fragments of frequent words (2–5%)", "common": "one very common word (~11%)"}
for s, name, n, rps, p50, p90, p99, err, oth in rows:
    run = f"{name} {n}" if name.startswith("mixed") else name
    print(f"| {run} | {label[name]} | {float(rps):,.0f} | {float(p50):.2f} | {float(p90):.2f} | **{float(p99):.2f}** | {err} | {oth} |")
sat = [float(r[6]) for r in rows if r[1] == "mixed"]
print()
# Each reading on its own: since schema 8 one search uses both cores, so -c2 is already two
# searches per core.
for name, clients in (("mixed_c1", "one client (-c1)"), ("mixed_c2", "two clients (-c2)")):
    p99s = [float(r[6]) for r in rows if r[1] == name]
    print(f"Target p99 < 20 ms (mixed terms), {clients}: {'met' if max(p99s) < 20 else 'not met'} "
          f"(p99 {', '.join(f'{p:.2f}' for p in p99s)} ms).")
print(f"At -c$SEARCH_CONNS, saturated: p99 {', '.join(f'{p:.2f}' for p in sat)} ms.")
print()
print("Matches per term (x-total-count) and one request's time (curl, after one warm-up request):")
print()
print("| class | term | matches | % of rows | one request ms |")
print("| --- | --- | ---: | ---: | ---: |")
for c, t, n, secs in terms:
    print(f"| {c} | \`{t}\` | {int(n):,} | {100 * int(n) / $TOTAL_ROWS:.3f} | {1000 * float(secs):.1f} |")
print()
print("EXPLAIN (ANALYZE, BUFFERS) of the server's statements (search_explain.txt):")
print()
print("\`\`\`")
print(open(sys.argv[3]).read().rstrip())
print("\`\`\`")
EOF
fi

echo
cat "$SUMMARY"
