{{/*
Where the shared infrastructure is. global.* wins; empty means the umbrella chart's quickstart
services in the same release ("<release>-kafka", "<release>-mosquitto", "<release>-postgresql"; credentials in the
Secret "<release>-database").
*/}}

{{- define "devicefleet.kafkaBootstrapServers" -}}
{{- .Values.global.kafka.bootstrapServers | default (printf "%s-kafka:9092" .Release.Name) -}}
{{- end -}}

{{- /* Qualified: the operator hands it to fleets' pods in other namespaces. */}}
{{- define "devicefleet.mqttHost" -}}
{{- .Values.global.mqtt.host | default (printf "%s-mosquitto.%s.svc" .Release.Name .Release.Namespace) -}}
{{- end -}}

{{- define "devicefleet.databaseSecretName" -}}
{{- .Values.global.database.existingSecret | default (printf "%s-database" .Release.Name) -}}
{{- end -}}

{{/*
The Secret of the signing keys (ingest-token-key, mqtt-password-key): the umbrella's
"<release>-signing-keys" unless global.signingKeys.existingSecret names your own.
*/}}
{{- define "devicefleet.signingKeysSecretName" -}}
{{- .Values.global.signingKeys.existingSecret | default (printf "%s-signing-keys" .Release.Name) -}}
{{- end -}}

{{/*
The broker's users (admin-password: the dynamic security admin the operator registers fleets
with; bridge-password: the bridge's subscriber): the umbrella's "<release>-mqtt-users" unless
global.mqtt.auth.existingSecret names your own.
*/}}
{{- define "devicefleet.mqttUsersSecretName" -}}
{{- .Values.global.mqtt.auth.existingSecret | default (printf "%s-mqtt-users" .Release.Name) -}}
{{- end -}}

{{/*
The quickstart Mosquitto's certificate and the CA that signed it (global.mqtt.tls.selfSignedCA):
a kubernetes.io/tls Secret with ca.crt, tls.crt and tls.key, made by the umbrella chart.
*/}}
{{- define "devicefleet.mqttTlsSecretName" -}}
{{- printf "%s-mqtt-tls" .Release.Name -}}
{{- end -}}

{{/*
The broker's CA as a file (global.mqtt.tls.caSecret, or the umbrella's own CA with
global.mqtt.tls.selfSignedCA): a pod volume and its mount at /etc/devicefleet/mqtt-tls
(read-only); the file is /etc/devicefleet/mqtt-tls/ca.crt. Returns YAML {volume, mount};
empty without TLS to the broker.
*/}}
{{- define "devicefleet.mqttCaVolume" -}}
{{- $tls := .Values.global.mqtt.tls }}
{{- $secret := $tls.caSecret }}
{{- $key := $tls.caKey }}
{{- if and (not $secret) $tls.selfSignedCA }}
{{- $secret = include "devicefleet.mqttTlsSecretName" . }}
{{- $key = "ca.crt" }}
{{- end }}
{{- with $secret }}
volume:
  name: mqtt-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
    items:
      - key: {{ $key }}
        path: ca.crt
mount:
  name: mqtt-ca
  mountPath: /etc/devicefleet/mqtt-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Signing keys as files: a pod volume of the keys listed in `keys` and its mount at
/etc/devicefleet/keys (read-only). Arguments: ctx, keys. Returns YAML {volume, mount}.
*/}}
{{- define "devicefleet.signingKeysVolume" -}}
volume:
  name: signing-keys
  secret:
    secretName: {{ include "devicefleet.signingKeysSecretName" .ctx }}
    defaultMode: 0440
    items:
      {{- range .keys }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
mount:
  name: signing-keys
  mountPath: /etc/devicefleet/keys
  readOnly: true
{{- end -}}

{{/* Env vars every service reads with its own PREFIX: logging, metrics, tracing. */}}
{{- define "devicefleet.commonEnv" -}}
{{- $prefix := .prefix -}}
{{- with .ctx }}
- name: {{ $prefix }}LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: {{ $prefix }}ENVIRONMENT
  value: {{ .Values.global.environment | quote }}
- name: {{ $prefix }}METRICS_HOST
  value: "0.0.0.0"
{{- with .Values.global.otlpEndpoint }}
- name: {{ $prefix }}OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Kafka and the pipeline's topics. */}}
{{- define "devicefleet.kafkaEnv" -}}
{{- $prefix := .prefix -}}
{{- with .ctx }}
- name: {{ $prefix }}KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "devicefleet.kafkaBootstrapServers" . | quote }}
- name: {{ $prefix }}RAW_TOPIC
  value: {{ .Values.global.topics.raw | quote }}
- name: {{ $prefix }}DECODED_TOPIC
  value: {{ .Values.global.topics.decoded | quote }}
- name: {{ $prefix }}DEAD_LETTER_TOPIC
  value: {{ .Values.global.topics.deadLetter | quote }}
{{- end }}
{{- end -}}

{{- define "devicefleet.databaseEnv" -}}
- name: {{ .prefix }}DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "devicefleet.databaseSecretName" .ctx }}
      key: {{ .ctx.Values.global.database.secretKey }}
{{- end -}}

{{/* The ingest Service of the same release: where HTTP fleets post. */}}
{{- define "devicefleet.ingestUrl" -}}
{{- $name := ternary "devicefleet-ingest" (printf "%s-devicefleet-ingest" .Release.Name) (hasPrefix (printf "%s-" .Release.Name) "devicefleet-ingest") -}}
{{- .Values.global.ingestUrl | default (printf "http://%s.%s.svc:8080" $name .Release.Namespace) -}}
{{- end -}}

{{/*
A service's env: the common block, Kafka and topics when `kafka` is true, then `vars`
(dict KEY -> value, prefixed), then the database URL from its Secret when `database` is true.
Arguments: prefix, ctx, vars, kafka, database.
*/}}
{{- define "devicefleet.env" -}}
{{- include "devicefleet.commonEnv" . }}
{{- if .kafka }}
{{- include "devicefleet.kafkaEnv" . }}
{{- end }}
{{- range $key, $value := .vars }}
- name: {{ $.prefix }}{{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- if .database }}
{{ include "devicefleet.databaseEnv" . }}
{{- end }}
{{- end -}}
