{{/* The prefix of every object name. */}}
{{- define "herald.fullname" -}}
{{- default "herald" .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* The namespace of Herald's namespaced objects. */}}
{{- define "herald.namespace" -}}
{{- default .Release.Namespace .Values.namespace.name -}}
{{- end -}}

{{- define "herald.controller" -}}{{ include "herald.fullname" . }}-controller{{- end -}}
{{- define "herald.agent" -}}{{ include "herald.fullname" . }}-agent{{- end -}}

{{- define "herald.heartbeatSecret" -}}
{{- default (printf "%s-heartbeat-key" (include "herald.fullname" .)) .Values.heartbeat.existingSecret -}}
{{- end -}}

{{- define "herald.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "herald.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: herald
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one part: include with (dict "ctx" . "component" "agent"). */}}
{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "herald.dataplaneEnabled" -}}
{{- if not (has .Values.dataplane (list "none" "nftables" "auto")) -}}
{{- fail (printf "dataplane must be none, nftables or auto, not %q" .Values.dataplane) -}}
{{- end -}}
{{- if ne .Values.dataplane "none" }}true{{ end -}}
{{- end -}}
