{{/* Probes of services that serve only /metrics (bridge, processor, sink). */}}
{{- define "devicefleet.metricsProbes" -}}
livenessProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 5
{{- end -}}
