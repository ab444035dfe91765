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


{{/* The TLS sidecar exporting a loopback metrics endpoint (values.yaml: metrics). Arguments:
     root (the chart context), target (loopback host:port). */}}
{{- define "lineage.metricsProxy" -}}
- name: metrics-tls
  image: {{ .root.Values.metrics.tlsProxyImage | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args:
    - server
    - --listen=0.0.0.0:{{ int .root.Values.metrics.port }}
    - --target={{ .target }}
    - --cert=/etc/lineage/tls/tls.crt
    - --key=/etc/lineage/tls/tls.key
    - --cacert=/etc/lineage/tls/ca.crt
    {{- range .root.Values.metrics.clientCommonNames }}
    - --allow-cn={{ . }}
    {{- end }}
  ports:
    - name: metrics
      containerPort: {{ int .root.Values.metrics.port }}
      protocol: TCP
  securityContext:
    # The Secret's files are owner-readable only; uid 0 without capabilities reads them.
    runAsUser: 0
    runAsNonRoot: false
    privileged: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      cpu: 100m
      memory: 64Mi
  volumeMounts:
    - name: tls
      mountPath: /etc/lineage/tls
      readOnly: true
{{- end -}}

{{/* A ServiceMonitor for one component. Arguments: root, name, component. */}}
{{- define "lineage.serviceMonitor" -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ .name }}
  labels:
    {{- include "lineage.labels" .root | nindent 4 }}
    {{- with .root.Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ .component }}
      app.kubernetes.io/instance: {{ .root.Release.Name }}
  namespaceSelector:
    matchNames: [{{ .root.Release.Namespace | quote }}]
  endpoints:
    - port: metrics
      scheme: https
      path: /metrics
      interval: {{ .root.Values.metrics.serviceMonitor.interval }}
      {{- with .root.Values.metrics.serviceMonitor.tlsConfig }}
      tlsConfig:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
