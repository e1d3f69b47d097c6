{{/*
Helpers of the gitrev chart.
*/}}

{{/* Chart name, overridable. */}}
{{- define "gitrev.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart>, or just <release> when the release is named like the chart. */}}
{{- define "gitrev.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if eq .Release.Name (include "gitrev.name" .) -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "gitrev.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* chart label value: name-version */}}
{{- define "gitrev.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels common to every resource. */}}
{{- define "gitrev.labels" -}}
helm.sh/chart: {{ include "gitrev.chart" . }}
app.kubernetes.io/name: {{ include "gitrev.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gitrev
{{- end -}}

{{/* Selector labels of the gitrev server pods (never change them: selectors are immutable). */}}
{{- define "gitrev.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gitrev.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/* The image reference. */}}
{{- define "gitrev.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* ServiceAccount of the server pods. */}}
{{- define "gitrev.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gitrev.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret the server pods read DATABASE_URL from. */}}
{{- define "gitrev.databaseSecretName" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else -}}
{{- printf "%s-db" (include "gitrev.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret the migration hook reads DATABASE_URL from: the existing Secret, or a
hook-only copy of the chart-created one (see templates/migrate-job.yaml for why). */}}
{{- define "gitrev.migrateSecretName" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else -}}
{{- printf "%s-migrate-db" (include "gitrev.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Fails the render unless a database is configured. */}}
{{- define "gitrev.databaseUrl" -}}
{{- required "gitrev needs PostgreSQL: set database.url, or database.existingSecret (see the chart README)" .Values.database.url -}}
{{- end -}}

{{/* Data of the settings ConfigMap, also hashed into the pods' checksum/config annotation. */}}
{{- define "gitrev.configData" -}}
GITREV_LISTEN: {{ printf "0.0.0.0:%v" .Values.containerPort | quote }}
{{- range $name, $value := .Values.config }}
{{- if eq $name "GITREV_LISTEN" }}
{{- fail "config.GITREV_LISTEN is set by the chart from containerPort; remove it from config" }}
{{- end }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The same settings as a list of EnvVar, for the migration Job (the ConfigMap is not there
yet when a pre-install hook runs). */}}
{{- define "gitrev.configEnv" -}}
- name: GITREV_LISTEN
  value: {{ printf "0.0.0.0:%v" .Values.containerPort | quote }}
{{- range $name, $value := .Values.config }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* DATABASE_URL of the server pods, from the release's Secret (or the existing one). */}}
{{- define "gitrev.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "gitrev.databaseSecretName" . }}
      key: {{ .Values.database.secretKey }}
{{- end -}}

{{/* DATABASE_URL of the migration hook, from the hook Secret (or the existing one). */}}
{{- define "gitrev.migrateDatabaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "gitrev.migrateSecretName" . }}
      key: {{ .Values.database.secretKey }}
{{- end -}}

{{/* Labels of the Locust master and worker pods. */}}
{{- define "gitrev.locustMasterSelectorLabels" -}}
app.kubernetes.io/name: {{ include "gitrev.name" . }}-locust
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: locust-master
{{- end -}}

{{- define "gitrev.locustWorkerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "gitrev.name" . }}-locust
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: locust-worker
{{- end -}}

{{/* Target host of the Locust run. */}}
{{- define "gitrev.locustHost" -}}
{{- if .Values.locust.host -}}
{{- .Values.locust.host -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%v" (include "gitrev.fullname" .) .Release.Namespace .Values.service.port -}}
{{- end -}}
{{- end -}}
