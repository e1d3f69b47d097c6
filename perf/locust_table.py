"""Turns a Locust *_stats.csv into a Markdown table of per-endpoint requests, failures and
p50/p95/p99 (milliseconds)."""

import csv
import sys

with open(sys.argv[1], newline="") as f:
    rows = list(csv.DictReader(f))
print("| endpoint | requests | failures | req/s | p50 ms | p95 ms | p99 ms |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    # The journey names each request "METHOD path" already.
    name = r["Name"] if r["Type"] else "**all**"
    print(f"| {name} | {r['Request Count']} | {r['Failure Count']} | "
          f"{float(r['Requests/s']):.0f} | {r['50%']} | {r['95%']} | {r['99%']} |")
