{{/* "<release>-<suffix>": names of the umbrella's own objects. */}}
{{- define "devicefleet.releaseName" -}}
{{- printf "%s-%s" .ctx.Release.Name .suffix | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of a quickstart service: the release's labels with its own name/component. */}}
{{- define "devicefleet.quickstartSelector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end -}}

{{- define "devicefleet.quickstartLabels" -}}
{{ include "devicefleet.quickstartSelector" . }}
app.kubernetes.io/component: quickstart
app.kubernetes.io/part-of: devicefleet
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end -}}

{{/*
The quickstart PostgreSQL password: the value given, else the one stored by an earlier install
(so upgrades keep it), else a new random one.
*/}}
{{- define "devicefleet.postgresPassword" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "devicefleet.databaseSecretName" .) -}}
{{- if .Values.postgresql.auth.password -}}
{{- .Values.postgresql.auth.password -}}
{{- else if and $secret $secret.data (hasKey $secret.data "password") -}}
{{- index $secret.data "password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 24 -}}
{{- end -}}
{{- end -}}
