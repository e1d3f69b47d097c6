#!/usr/bin/env python3
"""The gitrev chart's own rules, on manifests that Helm rendered (helm/ci/helm.py template).

Schemas are not checked here: kubernetes-validate does the built-in kinds, `crd` below the
Prometheus Operator kinds, promtool the alerting rules. What is left is what no schema knows:

    check.py manifests FILE [--expect-kind K]... [--forbid-kind K]... [--external Kind/name]...
                            [--runbooks docs/runbooks.md]
    check.py rules FILE OUT           the PrometheusRule's spec (its groups) as a promtool rules file
    check.py crd FILE SCHEMA_DIR      ServiceMonitor / PrometheusRule against strict JSON schemas
    check.py crd-schemas SCHEMA_DIR   write those schemas (from cloudcoil-models-prometheus-operator)
    check.py coverage CHART CASE...   every value a template branches on is seen on and off
                                      (CASE: comma-separated values files, "" for the defaults)

Each command prints what is wrong and exits 1, or exits 0.
"""

import json
import re
import sys
from pathlib import Path

import yaml

CLICK_DRAIN_SECONDS = 15  # fixed in the service: the click queue drain after the shutdown grace
PROMETHEUS_CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses duplicate keys (Kubernetes would keep one of them silently)."""


def _mapping(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
    dups = sorted({str(k) for k in keys if keys.count(k) > 1})
    if dups:
        raise yaml.YAMLError(f"duplicate keys {dups} at line {node.start_mark.line + 1}")
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(path):
    return [d for d in yaml.load_all(Path(path).read_text(encoding="utf-8"), Loader=UniqueKeyLoader) if d]


def name_of(doc):
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def hook_of(doc):
    ann = (doc.get("metadata") or {}).get("annotations") or {}
    hooks = [h.strip() for h in str(ann.get("helm.sh/hook", "")).split(",") if h.strip()]
    return hooks, int(ann.get("helm.sh/hook-weight", 0)), str(ann.get("helm.sh/hook-delete-policy", ""))


def pod_spec(doc):
    spec = doc.get("spec") or {}
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return (spec.get("template") or {}).get("spec") or {}
    return None


def pod_references(pod):
    """(Kind/name, key or None) of every ConfigMap, Secret and ServiceAccount a pod uses."""
    refs = [(f"ServiceAccount/{pod.get('serviceAccountName') or 'default'}", None)]
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for src in c.get("envFrom") or []:
            if "configMapRef" in src:
                refs.append((f"ConfigMap/{src['configMapRef']['name']}", None))
            if "secretRef" in src:
                refs.append((f"Secret/{src['secretRef']['name']}", None))
        for env in c.get("env") or []:
            vf = env.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                refs.append((f"ConfigMap/{vf['configMapKeyRef']['name']}", vf["configMapKeyRef"]["key"]))
            if "secretKeyRef" in vf:
                refs.append((f"Secret/{vf['secretKeyRef']['name']}", vf["secretKeyRef"]["key"]))
    for vol in pod.get("volumes") or []:
        if "configMap" in vol:
            refs.append((f"ConfigMap/{vol['configMap']['name']}", None))
        if "secret" in vol:
            refs.append((f"Secret/{vol['secret']['secretName']}", None))
    return refs


def data_keys(doc):
    return set((doc.get("data") or {}).keys()) | set((doc.get("stringData") or {}).keys())


def selects(selector, labels):
    want = (selector or {}).get("matchLabels", selector) if isinstance(selector, dict) else {}
    return bool(want) and all(labels.get(k) == v for k, v in want.items())


def cmd_manifests(args):
    import argparse

    p = argparse.ArgumentParser(prog="check.py manifests")
    p.add_argument("file")
    p.add_argument("--expect-kind", action="append", default=[])
    p.add_argument("--forbid-kind", action="append", default=[])
    p.add_argument("--external", action="append", default=[])
    p.add_argument("--runbooks")
    a = p.parse_args(args)
    errors = []
    err = errors.append
    try:
        docs = load(a.file)
    except yaml.YAMLError as exc:
        print(f"{a.file}: not valid YAML: {exc}")
        return 1

    objects = {}
    for d in docs:
        if not all(d.get(f) for f in ("apiVersion", "kind")) or not (d.get("metadata") or {}).get("name"):
            err(f"a document lacks apiVersion, kind or metadata.name: {str(d)[:120]}")
            continue
        if name_of(d) in objects:
            err(f"{name_of(d)} is rendered twice")
        objects[name_of(d)] = d
    kinds = {d["kind"] for d in objects.values()}
    for k in a.expect_kind:
        if k not in kinds:
            err(f"no {k} rendered (expected with these values)")
    for k in a.forbid_kind:
        if k in kinds:
            err(f"a {k} is rendered (these values turn it off)")

    deployments = [d for d in objects.values() if d["kind"] == "Deployment"]
    for d in objects.values():
        pod = pod_spec(d)
        if pod is None:
            continue
        hooks, weight, _ = hook_of(d)
        # Everything a pod uses is rendered (with the key it reads) or declared external.
        for ref, key in pod_references(pod):
            if ref in a.external or ref == "ServiceAccount/default":
                continue
            target = objects.get(ref)
            if target is None:
                err(f"{name_of(d)} uses {ref}, which is neither rendered nor declared external")
                continue
            if key is not None and key not in data_keys(target):
                err(f"{name_of(d)} reads key {key!r} of {ref}, which has no such key")
            # A pre-install hook runs before the release's ordinary objects exist.
            if "pre-install" in hooks:
                t_hooks, t_weight, t_policy = hook_of(target)
                if "pre-install" not in t_hooks:
                    err(f"{name_of(d)} is a pre-install hook, but {ref} is an ordinary release object: "
                        "it does not exist yet when a pre-install hook runs")
                elif t_weight >= weight or "before-hook-creation" not in t_policy:
                    err(f"hook {ref} must have a lower hook-weight than {name_of(d)} and before-hook-creation")
        # gitrev's own containers: what it is run with, and hardening.
        for c in pod.get("containers") or []:
            if c.get("name") not in ("gitrev", "migrate"):
                continue
            where = f"{name_of(d)} container {c['name']}"
            want_args = ["serve"] if c["name"] == "gitrev" else ["migrate"]
            if c.get("args") != want_args:
                err(f"{where}: args {c.get('args')} (want {want_args})")
            sc = c.get("securityContext") or {}
            psc = pod.get("securityContext") or {}
            for field, want in (("runAsNonRoot", True), ("readOnlyRootFilesystem", True),
                                ("allowPrivilegeEscalation", False)):
                if sc.get(field) is not want:
                    err(f"{where}: securityContext.{field} must be {want}")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                err(f"{where}: capabilities.drop must contain ALL")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                err(f"{where}: seccompProfile must be RuntimeDefault (is {seccomp})")
            if not any(m.get("mountPath") == "/tmp" for m in c.get("volumeMounts") or []):
                err(f"{where}: /tmp must be mounted (the root filesystem is read-only)")
            env = {e["name"]: e for e in c.get("env") or []}
            if "secretKeyRef" not in ((env.get("DATABASE_URL") or {}).get("valueFrom") or {}):
                err(f"{where}: DATABASE_URL must come from a secretKeyRef")
            if c["name"] != "gitrev":
                continue
            for probe, path in (("startupProbe", "/health"), ("livenessProbe", "/health"),
                                ("readinessProbe", "/ready")):
                got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
                if got != path:
                    err(f"{where}: {probe} on {got} (want {path})")
            # The shutdown budget: preStop sleep + in-flight grace + click drain < the grace period.
            config = {}
            for src in c.get("envFrom") or []:
                cm = objects.get(f"ConfigMap/{(src.get('configMapRef') or {}).get('name')}")
                config.update((cm or {}).get("data") or {})
            grace_ms = int(config.get("GITREV_SHUTDOWN_GRACE_MS", 10000))
            sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
            need = sleep + grace_ms / 1000 + CLICK_DRAIN_SECONDS
            tgps = pod.get("terminationGracePeriodSeconds", 30)
            if tgps <= need:
                err(f"{where}: terminationGracePeriodSeconds {tgps} must exceed preStop {sleep} s + "
                    f"GITREV_SHUTDOWN_GRACE_MS {grace_ms / 1000:g} s + click drain {CLICK_DRAIN_SECONDS} s")

    for d in objects.values():
        kind, spec = d["kind"], d.get("spec") or {}
        if kind == "ConfigMap":
            for k, v in (d.get("data") or {}).items():
                # Helm reads unquoted numbers as float64: 1000000 renders as 1e+06.
                if isinstance(v, str) and re.fullmatch(r"-?[0-9.]+e[+-][0-9]+", v):
                    err(f"{name_of(d)} {k}={v}: a number in scientific notation (quote it in values.yaml)")
                if k.endswith(".json"):
                    try:
                        json.loads(v)
                    except ValueError as exc:
                        err(f"{name_of(d)} {k}: not JSON: {exc}")
        if kind in ("Service", "PodDisruptionBudget", "ServiceMonitor"):
            sel = spec.get("selector") or {}
            targets = [t for t in deployments
                       if selects(sel, ((t["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {})]
            if kind == "ServiceMonitor":
                targets = [s for s in objects.values() if s["kind"] == "Service"
                           and selects(sel, (s.get("metadata") or {}).get("labels") or {})]
            if not targets:
                err(f"{name_of(d)}: its selector matches nothing rendered")
            if kind == "Service":
                names = {p.get("name") for t in targets for c in t["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports") or []}
                for port in spec.get("ports") or []:
                    if isinstance(port.get("targetPort"), str) and port["targetPort"] not in names:
                        err(f"{name_of(d)}: targetPort {port['targetPort']} is no container port name")
            if kind == "ServiceMonitor":
                ports = {p.get("name") for t in targets for p in t["spec"].get("ports") or []}
                for ep in spec.get("endpoints") or []:
                    if ep.get("port") not in ports:
                        err(f"{name_of(d)}: endpoint port {ep.get('port')} is not a port of the Service")
            if kind == "PodDisruptionBudget":
                for t in targets:
                    hpa = [h for h in objects.values() if h["kind"] == "HorizontalPodAutoscaler"
                           and h["spec"]["scaleTargetRef"]["name"] == t["metadata"]["name"]]
                    low = hpa[0]["spec"].get("minReplicas", 1) if hpa else t["spec"].get("replicas", 1)
                    if isinstance(spec.get("minAvailable"), int) and spec["minAvailable"] >= low:
                        err(f"{name_of(d)}: minAvailable {spec['minAvailable']} >= {low} replicas: "
                            "no pod could ever be evicted")
        if kind == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            target = objects.get(f"{ref.get('kind')}/{ref.get('name')}")
            if target is None:
                err(f"{name_of(d)} scales {ref.get('kind')}/{ref.get('name')}, which is not rendered")
            elif "replicas" in target["spec"]:
                err(f"{name_of(d)}: {name_of(target)} sets replicas, which every upgrade would reset")
        if kind == "PrometheusRule" and a.runbooks:
            anchors = {m.group(1).strip().lower() for m in re.finditer(r"^#+\s+(.+)$",
                       Path(a.runbooks).read_text(encoding="utf-8"), re.M)}
            for group in spec.get("groups") or []:
                for rule in group.get("rules") or []:
                    if "alert" not in rule:
                        continue
                    url = (rule.get("annotations") or {}).get("runbook_url", "")
                    anchor = rule["alert"].lower()
                    if not url.endswith(f"#{anchor}"):
                        err(f"{rule['alert']}: runbook_url {url!r} does not end in #{anchor}")
                    if anchor not in anchors:
                        err(f"{rule['alert']}: {a.runbooks} has no section '{anchor}'")
    for e in errors:
        print(f"{a.file}: {e}")
    print(f"{a.file}: {len(objects)} objects, {len(errors)} problem(s)")
    return 1 if errors else 0


def cmd_rules(args):
    rules = [d for d in load(args[0]) if d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        print(f"{args[0]}: {len(rules)} PrometheusRule objects (want 1)")
        return 1
    with open(args[1], "w", encoding="utf-8") as fh:
        yaml.safe_dump(rules[0]["spec"], fh, sort_keys=False, width=200)
    return 0


def strictify(schema):
    """kubernetes-validate's strict mode, for these schemas: unknown fields are errors."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for v in schema.values():
            strictify(v)
    elif isinstance(schema, list):
        for v in schema:
            strictify(v)
    return schema


def cmd_crd_schemas(args):
    # The Prometheus Operator's CRDs as pydantic models generated from their OpenAPI schemas.
    from importlib.metadata import version

    from cloudcoil.models.prometheus_operator import v1

    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    for kind in ("ServiceMonitor", "PrometheusRule"):
        schema = strictify(getattr(v1, kind).model_json_schema(by_alias=True))
        (out / f"{kind}.json").write_text(json.dumps(schema), encoding="utf-8")
    (out / "VERSION").write_text(version("cloudcoil-models-prometheus-operator") + "\n", encoding="utf-8")
    return 0


def cmd_crd(args):
    import jsonschema

    schema_dir = Path(args[1])
    errors, checked = [], 0
    for d in load(args[0]):
        if (d.get("apiVersion"), d.get("kind")) not in PROMETHEUS_CRDS:
            continue
        checked += 1
        schema = json.loads((schema_dir / f"{d['kind']}.json").read_text(encoding="utf-8"))
        for e in jsonschema.Draft202012Validator(schema).iter_errors(d):
            errors.append(f"{name_of(d)} at {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
    for e in errors:
        print(f"{args[0]}: {e}")
    print(f"{args[0]}: {checked} Prometheus Operator object(s), {len(errors)} problem(s)")
    return 1 if errors else 0


def truthy(v):
    """Go template truth: false, 0, "", nil and empty maps/lists are false."""
    return bool(v) and v != 0


def cmd_coverage(args):
    sys.path.insert(0, str(Path(__file__).parent))
    import helm_python
    from helm import load_values

    chart_dir = Path(args[0])
    branch = re.compile(r"\{\{-?\s*(?:if|else\s+if|with)\b([^}]*)\}\}|\bdefault\b[^}|]*?(\.Values\.[\w.]+)")
    paths = set()
    for tpl in sorted((chart_dir / "templates").glob("*")):
        for m in branch.finditer(tpl.read_text(encoding="utf-8")):
            paths.update(re.findall(r"\.Values\.([\w.]+)", m.group(0)))
    seen = {p: set() for p in paths}
    with helm_python.Chart.load(str(chart_dir)) as chart:
        for case in args[1:]:
            values = chart.merge_values(load_values([f for f in case.split(",") if f]))
            for p in paths:
                v = values
                for part in p.split("."):
                    v = v.get(part) if isinstance(v, dict) else None
                seen[p].add(truthy(v))
    missing = [f"{p}: never {'on' if True not in s else 'off'}" for p, s in sorted(seen.items()) if len(s) < 2]
    for m in missing:
        print(f"coverage: {m} in any values case (add a helm/ci/*-values.yaml that sets it)")
    print(f"coverage: {len(paths)} values the templates branch on, {len(missing)} not seen both ways")
    return 1 if missing else 0


COMMANDS = {"manifests": cmd_manifests, "rules": cmd_rules, "crd": cmd_crd,
            "crd-schemas": cmd_crd_schemas, "coverage": cmd_coverage}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
