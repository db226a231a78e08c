{{/*
The NetworkPolicy of one component's pods (docs/security.md#networkpolicies): ingress denied
except to the ports the component serves, egress (only with networkPolicy.egress.enabled)
denied except DNS and the ports it connects to. Traffic from the pod's own node (kubelet
probes) is allowed by the NetworkPolicy model itself. Arguments (dict):
  ctx          the chart's root context
  servePorts   ports open to networkPolicy.ingressFrom (empty there: to any source)
  metricsPorts ports open to networkPolicy.metricsFrom (the monitoring namespace)
*/}}
{{- define "devicefleet.networkPolicy" -}}
{{- $ctx := .ctx -}}
{{- $policy := $ctx.Values.networkPolicy -}}
{{- if $policy.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "devicefleet.fullname" $ctx }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "devicefleet.labels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "devicefleet.selectorLabels" $ctx | nindent 6 }}
  policyTypes:
    - Ingress
    {{- if $policy.egress.enabled }}
    - Egress
    {{- end }}
  ingress:
    {{- with .servePorts }}
    - ports:
        {{- range . }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with $policy.ingressFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- with .metricsPorts }}
    - ports:
        {{- range . }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with $policy.metricsFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
  {{- if $policy.egress.enabled }}
  egress:
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    {{- with $policy.egress.ports }}
    - ports:
        {{- range . }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    {{- end }}
    {{- with $policy.egress.extra }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end -}}
