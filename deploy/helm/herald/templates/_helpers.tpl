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

{{/*
The heartbeat key Secret: heartbeat.existingSecret (one you manage), else
heartbeat.secretName, else <fullname>-heartbeat-key: the name chart 0.1.0
gave the Secret it rendered, so an upgrade finds the agents' key there.
*/}}
{{- define "herald.heartbeatSecret" -}}
{{- $h := .Values.heartbeat -}}
{{- if and $h.existingSecret $h.secretName (ne $h.existingSecret $h.secretName) -}}
{{- fail (printf "heartbeat.existingSecret (%q) and heartbeat.secretName (%q) differ: set one of them" $h.existingSecret $h.secretName) -}}
{{- end -}}
{{- $name := default (printf "%s-heartbeat-key" (include "herald.fullname" .)) (default $h.secretName $h.existingSecret) -}}
{{- if or (gt (len $name) 253) (not (regexMatch "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" $name)) -}}
{{- fail (printf "heartbeat Secret name %q is not a valid Secret name (lowercase letters, digits, '-' and '.')" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* "true" when the controller creates the heartbeat Secret if missing: unless heartbeat.existingSecret. */}}
{{- define "herald.createHeartbeatSecret" -}}
{{- if .Values.heartbeat.existingSecret }}false{{ else }}true{{ end -}}
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

{{/*
Fails the render when a monitor is enabled while a part's metrics address is
loopback: Prometheus could not scrape it. Include with the name of the value
that enabled the monitor.
*/}}
{{- define "herald.requireReachableMetrics" -}}
{{- range $part, $addr := dict "controller" .ctx.Values.controller.metricsAddr "agent" .ctx.Values.agent.metricsAddr -}}
{{- $host := regexReplaceAll ":[0-9]*$" $addr "" | trimPrefix "[" | trimSuffix "]" -}}
{{- if or (eq $host "localhost") (eq $host "::1") (hasPrefix "127." $host) -}}
{{- fail (printf "%s is enabled, but %s.metricsAddr is %q (loopback): Prometheus cannot scrape it. Set %s.metricsAddr to a reachable address, e.g. 0.0.0.0:%s (for the agent, a port on the node's network)" $.what $part $addr $part (splitList ":" $addr | last)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of the monitoring objects: the chart's and monitoring.labels. */}}
{{- define "herald.monitoringLabels" -}}
{{ include "herald.labels" . }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
