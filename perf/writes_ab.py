#!/usr/bin/env python3
"""Write cost of two gitrev builds side by side: POST /urls and POST /urls/bulk.

    perf/writes_ab.py BEFORE_BIN AFTER_BIN [ROUNDS]      (default 12)

Starts both builds, each on a fresh embedded PostgreSQL (development, open API), and in every
round creates 1000 urls with 1000 sequential POST /urls and 1000 with one POST /urls/bulk on each,
alternating which build goes first. One Python keep-alive client per build. The trigram index's
pending list is emptied before each side (as perf/links.sh does). Prints each build's median and
every round: ms per url for the single side, ms per bulk of 1000. Used for the write cost of
migration 6's triggers (perf/RESULTS.md, "Link tier").
"""
import http.client, json, os, subprocess, sys, tempfile, time

before, after = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 12
ports = {"before": 18291, "after": 18292}
procs, dbs, dirs = {}, {}, {}
for name, binary in (("before", before), ("after", after)):
    d = tempfile.mkdtemp(prefix=f"gitrev-writes-{name}-")
    os.chmod(d, 0o755)
    dirs[name] = d
    env = dict(os.environ, GITREV_DATA_DIR=d, GITREV_LISTEN=f"127.0.0.1:{ports[name]}",
               GITREV_ENV="development", GITREV_LOG="warn", GITREV_READY_FILE=f"{d}/ready.json")
    procs[name] = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=open(f"{d}/gitrev.log", "w"))
try:
    for name, d in dirs.items():
        for _ in range(600):
            if os.path.exists(f"{d}/ready.json"):
                break
            time.sleep(0.1)
        dbs[name] = json.load(open(f"{d}/ready.json"))["database_url"]
    conns = {n: http.client.HTTPConnection("127.0.0.1", p) for n, p in ports.items()}
    run = str(time.time())

    def post(n, path, obj):
        conns[n].request("POST", path, json.dumps(obj).encode(), {"content-type": "application/json"})
        r = conns[n].getresponse()
        return r.status, r.read()

    def url(kind, rnd, i):
        return {"original_url": f"https://example.com/perf/{run}/{kind}/r{rnd}/{i}?ref=links",
                "title": f"perf {kind} round {rnd} url {i}"}

    def flush(n):
        subprocess.run(["psql", dbs[n], "-Atqc",
                        "SELECT gin_clean_pending_list(indexrelid::regclass) FROM pg_index "
                        "WHERE indrelid = 'urls'::regclass "
                        "AND indexrelid::regclass::text LIKE 'urls_search%'"],
                       check=True, capture_output=True)

    res = {n: {"single": [], "bulk": []} for n in ports}
    for rnd in range(rounds):
        for n in (("before", "after") if rnd % 2 == 0 else ("after", "before")):
            flush(n)
            t0 = time.perf_counter()
            for i in range(1000):
                assert post(n, "/urls", url("s", rnd, i))[0] == 201
            res[n]["single"].append(time.perf_counter() - t0)  # s per 1000 = ms per url
            flush(n)
            t0 = time.perf_counter()
            s, _ = post(n, "/urls/bulk", [url("b", rnd, i) for i in range(1000)])
            res[n]["bulk"].append(1000 * (time.perf_counter() - t0))
            assert s == 201
    med = lambda v: sorted(v)[len(v) // 2]
    for n in ("before", "after"):
        print(f"{n}: POST /urls median {med(res[n]['single']):.3f} ms per url "
              f"({' '.join(f'{x:.3f}' for x in res[n]['single'])}); "
              f"bulk of 1000 median {med(res[n]['bulk']):.1f} ms ({' '.join(f'{x:.0f}' for x in res[n]['bulk'])})")
finally:
    for p in procs.values():
        p.terminate()
    for p in procs.values():
        p.wait(timeout=60)
