{{/* Names: <release>-portico unless the release name already says portico. */}}
{{- define "portico.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "portico.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; "component" names the role. */}}
{{- define "portico.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: portico
{{ include "portico.selectorLabels" . }}
{{- end -}}

{{/* What selectors match: stable across upgrades. */}}
{{- define "portico.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portico.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "portico.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "portico.secretName" -}}
{{- default (printf "%s-tokens" (include "portico.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* host:port of Consul: the chart's server, or consul.address. */}}
{{- define "portico.consulAddress" -}}
{{- if .Values.consul.enabled -}}
{{- printf "%s-consul:8500" (include "portico.fullname" .) -}}
{{- else if .Values.consul.address -}}
{{- .Values.consul.address -}}
{{- else -}}
{{- fail "consul.address is required when consul.enabled is false: the control planes keep their configuration in Consul KV" -}}
{{- end -}}
{{- end -}}

{{/* Redis URL for the data planes, empty for in-process limits. */}}
{{- define "portico.redisURL" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s-redis:6379/0" (include "portico.fullname" .) -}}
{{- else -}}
{{- .Values.redis.url -}}
{{- end -}}
{{- end -}}

{{/* The token files: the Secret mounted read-only, readable by the group. */}}
{{- define "portico.tokensVolume" -}}
- name: tokens
  secret:
    secretName: {{ include "portico.secretName" . }}
    defaultMode: 0440
{{- end -}}

{{- define "portico.podDefaults" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
