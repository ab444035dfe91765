{{/* Common labels. */}}
{{- define "lineage.labels" -}}
app.kubernetes.io/part-of: lineage
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "lineage.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "lineage.agentName" -}}
{{ .Release.Name }}-agent
{{- end -}}

{{- define "lineage.collectorName" -}}
{{ .Release.Name }}-collector
{{- end -}}

{{- define "lineage.healthProbe" -}}
exec:
  command:
    - {{ .Values.agent.healthProbeCommand }}
    - -addr=unix:///run/lineage/agent.sock
    - -connect-timeout=2s
    - -rpc-timeout=2s
{{- end -}}
