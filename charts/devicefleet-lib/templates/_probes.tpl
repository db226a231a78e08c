{{/* Probes of services that serve only /metrics (bridge, processor, sink). The bridge passes
(dict "readyPath" "/ready"): it is ready only once the MQTT broker granted its subscriptions,
so `helm install --wait` and rollouts wait until devices' messages have somewhere to go. */}}
{{- define "devicefleet.metricsProbes" -}}
livenessProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: {{ .readyPath | default "/metrics" }}, port: metrics}
  periodSeconds: 5
{{- end -}}
