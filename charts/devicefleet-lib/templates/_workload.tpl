{{/*
Pod-level and container-level hardening shared by every DeviceFleet workload: non-root, read-only
root filesystem (a writable emptyDir at /tmp), no privilege escalation, all capabilities dropped,
RuntimeDefault seccomp. Values can tighten or extend them, not drop them silently: the schema
keeps runAsNonRoot and readOnlyRootFilesystem booleans the user must set explicitly to false.
*/}}
{{- define "devicefleet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- with .Values.podSecurityContext }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "devicefleet.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- with .Values.securityContext }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Scheduling: the component's own settings, else the release-wide ones. */}}
{{- define "devicefleet.scheduling" -}}
{{- with (.Values.nodeSelector | default .Values.global.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.Values.tolerations | default .Values.global.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
A Deployment of one DeviceFleet service. Arguments (dict):
  ctx      the chart's root context
  command  optional container command (default: the image's entrypoint, the service's
           console script; the bridge runs devicefleet-bridge from the ingest image)
  args     container args
  env      rendered env list (YAML string)
  ports    list of {name, containerPort}
  probes   rendered liveness/readiness probes (YAML string)
  strategy optional Deployment strategy (dict)
  volumes  optional extra pod volumes (list), mounted by volumeMounts (list)
*/}}
{{- define "devicefleet.deployment" -}}
{{- $ctx := .ctx -}}
{{- $values := $ctx.Values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "devicefleet.fullname" $ctx }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "devicefleet.labels" $ctx | nindent 4 }}
spec:
  replicas: {{ $values.replicaCount }}
  revisionHistoryLimit: 3
  {{- with .strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "devicefleet.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "devicefleet.labels" $ctx | nindent 8 }}
      {{- with $values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "devicefleet.serviceAccountName" $ctx }}
      automountServiceAccountToken: {{ .automountToken | default false }}
      enableServiceLinks: false
      securityContext:
        {{- include "devicefleet.podSecurityContext" $ctx | nindent 8 }}
      {{- with include "devicefleet.scheduling" $ctx | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds | default 30 }}
      containers:
        - name: {{ $values.component }}
          image: {{ include "devicefleet.image" (dict "image" $values.image "global" $values.global "appVersion" $ctx.Chart.AppVersion) | quote }}
          imagePullPolicy: {{ $values.image.pullPolicy }}
          {{- with .command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            {{- .env | trim | nindent 12 }}
            {{- with $values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .containerPort }}
              protocol: TCP
            {{- end }}
          {{- .probes | trim | nindent 10 }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- include "devicefleet.containerSecurityContext" $ctx | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with .volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end -}}

{{/* A ServiceAccount without a mounted token unless the component needs the API. */}}
{{- define "devicefleet.serviceAccount" -}}
{{- if .Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "devicefleet.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "devicefleet.labels" . | nindent 4 }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}

{{/* A ClusterIP Service. Arguments: ctx, ports (list of {name, port, targetPort}), type. */}}
{{- define "devicefleet.service" -}}
{{- $ctx := .ctx -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "devicefleet.fullname" $ctx }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "devicefleet.labels" $ctx | nindent 4 }}
spec:
  type: {{ .type | default "ClusterIP" }}
  selector:
    {{- include "devicefleet.selectorLabels" $ctx | nindent 4 }}
  ports:
    {{- range .ports }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .targetPort }}
      protocol: TCP
      {{- with .nodePort }}
      nodePort: {{ . }}
      {{- end }}
    {{- end }}
{{- end -}}

{{/*
A ServiceMonitor for the component's Service, only where the prometheus-operator API exists.
job = the app.kubernetes.io/name label (e.g. devicefleet-ingest), the name the shipped alerts
and dashboards select on. Arguments: ctx, port (the Service port name).
*/}}
{{- define "devicefleet.serviceMonitor" -}}
{{- $ctx := .ctx -}}
{{- $sm := $ctx.Values.global.serviceMonitor -}}
{{- if and $sm.enabled ($ctx.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "devicefleet.fullname" $ctx }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "devicefleet.labels" $ctx | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  jobLabel: app.kubernetes.io/name
  selector:
    matchLabels:
      {{- include "devicefleet.selectorLabels" $ctx | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ $ctx.Release.Namespace | quote }}]
  endpoints:
    - port: {{ .port }}
      path: /metrics
      interval: {{ $sm.interval }}
      scrapeTimeout: {{ $sm.scrapeTimeout }}
{{- end }}
{{- end -}}
