{{/*
Names and labels. Every DeviceFleet chart names its objects "<release>-<chart>" (or
fullnameOverride) and labels them with the app.kubernetes.io set; the name label is also the
Prometheus job label (ServiceMonitor jobLabel), so dashboards and alerts work for any release.
*/}}

{{- define "devicefleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "devicefleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if or (eq .Release.Name $name) (hasPrefix (printf "%s-" .Release.Name) $name) -}}
{{- /* release "devicefleet" names its ingest "devicefleet-ingest", not twice */ -}}
{{- $name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "devicefleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "devicefleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "devicefleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "devicefleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Values.component | default (include "devicefleet.name" .) }}
app.kubernetes.io/part-of: devicefleet
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "devicefleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "devicefleet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "<registry>/<repository>:<tag>"; tag defaults to the chart's appVersion. */}}
{{- define "devicefleet.image" -}}
{{- $registry := .image.registry | default .global.imageRegistry -}}
{{- $tag := .image.tag | default .appVersion | toString -}}
{{- $ref := ternary (printf "%s@%s" .image.repository $tag) (printf "%s:%s" .image.repository $tag) (hasPrefix "sha256:" $tag) -}}
{{- if $registry -}}{{ printf "%s/%s" $registry $ref }}{{- else -}}{{ $ref }}{{- end -}}
{{- end -}}
