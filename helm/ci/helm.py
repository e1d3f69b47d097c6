#!/usr/bin/env python3
"""`helm lint` and `helm template` through Helm's own Go engine, for machines without a helm binary.

The engine is PyPI's helm-python-sdk (import name helm_python): Helm v4's Go SDK behind a C ABI,
called with ctypes. This file only maps a helm-like command line onto that API; every template,
values merge, schema check and lint rule is Helm's own.

    python3 helm/ci/helm.py lint CHART [-f VALUES]... [--strict] [--kube-version V]
    python3 helm/ci/helm.py template CHART [-f VALUES]... [--name N] [--namespace NS] [--notes]
    python3 helm/ci/helm.py version

`-f` files are merged like helm's (maps deep-merged, later files win, null deletes a key), then
coalesced with the chart's values.yaml by Helm. `template` writes the manifests as one stream,
`---` / `# Source:` separated, in template path order; NOTES.txt only with --notes.
"""

import argparse
import sys

import helm_python as helm
import yaml


def merge(base, override):
    """helm's mergeMaps for -f files: maps merge recursively, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_values(files):
    values = {}
    for path in files:
        with open(path, encoding="utf-8") as fh:
            # helm's own YAML reading (sigs.k8s.io/yaml), so numbers and booleans come out as helm's.
            doc = helm.values_from_yaml(fh.read())
        values = merge(values, doc or {})
    return values


def cmd_lint(args):
    report = helm.lint(
        args.chart,
        load_values(args.values),
        strict=args.strict,
        namespace=args.namespace,
        kube_version=args.kube_version,
    )
    names = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    worst = 0
    for msg in report.get("messages") or []:
        sev = msg.get("severity", 0)
        worst = max(worst, sev)
        print(f"[{names.get(sev, sev)}] {msg.get('path')}: {msg.get('error')}")
    for err in report.get("errors") or []:
        print(f"[ERROR] {err}")
    # helm lint fails on errors; --strict fails on warnings too.
    failed = bool(report.get("errors")) or worst >= 3 or (args.strict and worst >= 2)
    print(f"{report.get('total_charts_linted', 0)} chart(s) linted, {'FAILED' if failed else 'no failures'}")
    return 1 if failed else 0


def cmd_template(args):
    values = load_values(args.values)
    with helm.Chart.load(args.chart) as chart:
        chart.validate_schema(values)  # values.schema.json, when the chart has one (as helm does)
        manifests = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    out = []
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("NOTES.txt"):
            if args.notes:
                out.append(text.rstrip("\n") + "\n")
            continue
        if "/templates/_" in path or not text.strip():
            continue
        out.append(f"---\n# Source: {path}\n{text.strip(chr(10))}\n")
    sys.stdout.write("".join(out))
    return 0


def main():
    parser = argparse.ArgumentParser(prog="helm.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("lint", "template"):
        p = sub.add_parser(name)
        p.add_argument("chart")
        p.add_argument("-f", "--values", action="append", default=[])
        p.add_argument("--namespace", default="default")
        if name == "lint":
            p.add_argument("--strict", action="store_true")
            p.add_argument("--kube-version")
        else:
            p.add_argument("--name", default="gitrev")
            p.add_argument("--notes", action="store_true")
    sub.add_parser("version")
    args = parser.parse_args()
    if args.cmd == "version":
        print(f"Helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__})")
        return 0
    try:
        return cmd_lint(args) if args.cmd == "lint" else cmd_template(args)
    except helm.HelmError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
