{{/*
Chart name, overridable.
*/}}
{{- define "ssehub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full resource name: the release name, with the chart name unless the release
name already contains it. Truncated to 63 characters (DNS label).
*/}}
{{- define "ssehub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ssehub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ssehub.labels" -}}
helm.sh/chart: {{ include "ssehub.chart" . }}
{{ include "ssehub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ssehub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ssehub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ssehub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ssehub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret that holds the publisher keys: the user's, or the chart's.
*/}}
{{- define "ssehub.publishKeysSecretName" -}}
{{- .Values.auth.existingSecret | default (include "ssehub.fullname" .) }}
{{- end }}

{{/*
The Secret and key that hold the Redis URL: the user's (existingSecret and
existingSecretKey), or the chart's own Secret, key redis-url.
*/}}
{{- define "ssehub.redisSecretName" -}}
{{- .Values.backplane.redis.existingSecret | default (include "ssehub.fullname" .) }}
{{- end }}

{{- define "ssehub.redisSecretKey" -}}
{{- ternary .Values.backplane.redis.existingSecretKey "redis-url" (not (empty .Values.backplane.redis.existingSecret)) }}
{{- end }}

{{/*
Whether the chart renders its own Secret: for publisher keys it manages, or
for a Redis URL given in values. Returns "true" or "".
*/}}
{{- define "ssehub.managesSecret" -}}
{{- if or (and .Values.auth.enabled (not .Values.auth.existingSecret)) (and (eq .Values.backplane.kind "redis") .Values.backplane.redis.url (not .Values.backplane.redis.existingSecret)) (include "ssehub.jwtInChartSecret" .) (and .Values.auth.metrics.enabled .Values.auth.metrics.keys (not .Values.auth.metrics.existingSecret)) (include "ssehub.sentinelPasswordInChartSecret" .) -}}
true
{{- end }}
{{- end }}

{{/*
Whether a Redis URL is given (in values or an existing Secret): with Sentinel
it is optional. Returns "true" or "".
*/}}
{{- define "ssehub.hasRedisUrl" -}}
{{- if or .Values.backplane.redis.url .Values.backplane.redis.existingSecret -}}
true
{{- end }}
{{- end }}

{{/*
The Secret and key of the sentinels' password: the existing one
(sentinel.existingSecret, existingSecretKey), or the chart's own, key
sentinel-password. hasSentinelPassword: "true" when there is one.
*/}}
{{- define "ssehub.sentinelSecretName" -}}
{{- .Values.backplane.redis.sentinel.existingSecret | default (include "ssehub.fullname" .) }}
{{- end }}

{{- define "ssehub.sentinelSecretKey" -}}
{{- ternary .Values.backplane.redis.sentinel.existingSecretKey "sentinel-password" (not (empty .Values.backplane.redis.sentinel.existingSecret)) }}
{{- end }}

{{- define "ssehub.hasSentinelPassword" -}}
{{- if and .Values.backplane.redis.sentinel.addresses (or .Values.backplane.redis.sentinel.password .Values.backplane.redis.sentinel.existingSecret) -}}
true
{{- end }}
{{- end }}

{{- define "ssehub.sentinelPasswordInChartSecret" -}}
{{- if and (eq .Values.backplane.kind "redis") .Values.backplane.redis.sentinel.addresses .Values.backplane.redis.sentinel.password (not .Values.backplane.redis.sentinel.existingSecret) -}}
true
{{- end }}
{{- end }}

{{/*
Whether the chart's Secret holds a JWT secret or public key. Returns "true" or "".
*/}}
{{- define "ssehub.jwtInChartSecret" -}}
{{- if and (not .Values.auth.jwt.existingSecret) (or .Values.auth.jwt.secret .Values.auth.jwt.publicKey) -}}
true
{{- end }}
{{- end }}

{{/*
Whether an HMAC secret / a PEM public key is mounted. Return "true" or "".
*/}}
{{- define "ssehub.hasJwtSecret" -}}
{{- $jwt := .Values.auth.jwt }}
{{- if or (and (not $jwt.existingSecret) $jwt.secret) (and $jwt.existingSecret $jwt.existingSecretKeys.secret) -}}
true
{{- end }}
{{- end }}
{{- define "ssehub.hasJwtPublicKey" -}}
{{- $jwt := .Values.auth.jwt }}
{{- if or (and (not $jwt.existingSecret) $jwt.publicKey) (and $jwt.existingSecret $jwt.existingSecretKeys.publicKey) -}}
true
{{- end }}
{{- end }}

{{/*
Whether any secret file is mounted at /etc/ssehub/secrets. Returns "true" or "".
*/}}
{{- define "ssehub.mountsSecrets" -}}
{{- if or .Values.auth.enabled (include "ssehub.hasJwtSecret" .) (include "ssehub.hasJwtPublicKey" .) .Values.auth.metrics.enabled -}}
true
{{- end }}
{{- end }}

{{/*
A duration of the form the schema allows ("500ms", "5s", "2m", "1h") in whole
seconds, rounded up (so that a fraction of a second never makes the grace
period too short), and in milliseconds.
*/}}
{{- define "ssehub.durationSeconds" -}}
{{- div (add (include "ssehub.durationMillis" . | int64) 999) 1000 }}
{{- end }}

{{- define "ssehub.durationMillis" -}}
{{- $value := toString . }}
{{- $number := regexFind "^[0-9]+" $value | int64 }}
{{- $unit := trimPrefix (regexFind "^[0-9]+" $value) $value }}
{{- $millis := 0 }}
{{- if eq $unit "ms" }}{{ $millis = $number }}
{{- else if eq $unit "s" }}{{ $millis = mul $number 1000 }}
{{- else if eq $unit "m" }}{{ $millis = mul $number 60000 }}
{{- else if eq $unit "h" }}{{ $millis = mul $number 3600000 }}
{{- else }}{{ fail (printf "ssehub: cannot read the duration %q: use a number followed by ms, s, m or h" $value) }}
{{- end }}
{{- $millis }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the preStop pause, then ssehub's whole drain
(drain.delay before it stops accepting, then at most drain.timeout), plus a
margin. The kubelet sends SIGKILL when it runs out, so it must cover all of it.
*/}}
{{- define "ssehub.terminationGracePeriodSeconds" -}}
{{- $delay := include "ssehub.durationSeconds" .Values.config.drain.delay | int64 }}
{{- $timeout := include "ssehub.durationSeconds" .Values.config.drain.timeout | int64 }}
{{- add (int64 .Values.preStopSleepSeconds) $delay $timeout (int64 .Values.terminationGracePeriod.marginSeconds) }}
{{- end }}

{{/*
The most pods that can run at once with these values.
*/}}
{{- define "ssehub.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}
{{- .Values.autoscaling.maxReplicas | int64 }}
{{- else }}
{{- .Values.replicaCount | int64 }}
{{- end }}
{{- end }}

{{/*
Refuse values that would deploy a hub that loses events or cuts streams.
Included by every template that matters, so any render fails.
*/}}
{{- define "ssehub.validate" -}}
{{- $max := include "ssehub.maxReplicas" . | int64 }}
{{- if and (gt $max 1) (eq .Values.backplane.kind "memory") }}
{{- fail (printf "\n\nssehub: %d replicas need the Redis backplane (backplane.kind: redis, with backplane.redis.url or backplane.redis.existingSecret).\nWith backplane.kind: memory each pod only sees the events published to itself: a subscriber\nconnected to one pod would miss every event published through another, and no gap would tell it.\nEither set replicaCount: 1 (and autoscaling.maxReplicas: 1, or autoscaling.enabled: false),\nor configure the Redis backplane." $max) }}
{{- end }}
{{- $sentinel := .Values.backplane.redis.sentinel }}
{{- if and (eq .Values.backplane.kind "redis") (not .Values.backplane.redis.url) (not .Values.backplane.redis.existingSecret) (not $sentinel.addresses) }}
{{- fail "\n\nssehub: backplane.kind is redis but no Redis is named: set backplane.redis.url, or backplane.redis.existingSecret (and existingSecretKey), or backplane.redis.sentinel.addresses and masterName." }}
{{- end }}
{{- if and (eq .Values.backplane.kind "redis") $sentinel.addresses (not $sentinel.masterName) }}
{{- fail "\n\nssehub: backplane.redis.sentinel.addresses is set but backplane.redis.sentinel.masterName is empty: give the name the sentinels monitor the master under (sentinel monitor <name> ...)." }}
{{- end }}
{{- if and (eq .Values.backplane.kind "redis") $sentinel.addresses .Values.backplane.redis.url (not (regexMatch (printf "^rediss?://([^@/]*@)?%s(/[0-9]+)?/?$" (regexQuoteMeta $sentinel.masterName)) .Values.backplane.redis.url)) }}
{{- fail (printf "\n\nssehub: with backplane.redis.sentinel the sentinels give the master's address, so backplane.redis.url names the master by its name, without a port: redis://[:PASSWORD@]%s/0 (or rediss://)." $sentinel.masterName) }}
{{- end }}
{{- if and $sentinel.password $sentinel.existingSecret }}
{{- fail (printf "\n\nssehub: backplane.redis.sentinel.password and backplane.redis.sentinel.existingSecret (%s) are both set: the pods would read the password from the Secret. Set one of them." $sentinel.existingSecret) }}
{{- end }}
{{- if and (eq .Values.backplane.kind "redis") .Values.backplane.redis.url .Values.backplane.redis.existingSecret }}
{{- fail (printf "\n\nssehub: backplane.redis.url and backplane.redis.existingSecret (%s) are both set: the pods would read the URL from the Secret and ignore backplane.redis.url. Set one of them." .Values.backplane.redis.existingSecret) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int64 .Values.autoscaling.maxReplicas) (int64 .Values.autoscaling.minReplicas)) }}
{{- fail "\n\nssehub: autoscaling.maxReplicas is below autoscaling.minReplicas." }}
{{- end }}
{{- if and (eq .Values.auth.subscribe "jwt") (not (include "ssehub.hasJwtSecret" .)) (not (include "ssehub.hasJwtPublicKey" .)) (not .Values.auth.jwt.jwks) }}
{{- fail "\n\nssehub: auth.subscribe is jwt but no key verifies tokens: set auth.jwt.secret, auth.jwt.publicKey, auth.jwt.jwks, or auth.jwt.existingSecret with existingSecretKeys." }}
{{- end }}
{{- if and .Values.auth.metrics.enabled (not .Values.auth.metrics.keys) (not .Values.auth.metrics.existingSecret) }}
{{- fail "\n\nssehub: auth.metrics.enabled needs auth.metrics.keys or auth.metrics.existingSecret (the key Prometheus sends)." }}
{{- end }}
{{- $mercure := .Values.mercure }}
{{- if and $mercure.enabled (not $mercure.existingSecret) }}
{{- fail "\n\nssehub: mercure.enabled needs mercure.existingSecret: the Secret that holds the Mercure JWT keys (key mercure.existingSecretKeys.publisher_jwt, and mercure.existingSecretKeys.subscriber_jwt unless mercure.anonymous). The keys are never chart values; create it first, e.g.\nkubectl create secret generic ssehub-mercure --from-literal=publisher-jwt-key=... --from-literal=subscriber-jwt-key=..." }}
{{- end }}
{{- if and $mercure.enabled (not $mercure.anonymous) (not $mercure.existingSecretKeys.subscriber_jwt) }}
{{- fail "\n\nssehub: mercure.existingSecretKeys.subscriber_jwt is empty and mercure.anonymous is false: no subscriber could ever connect. Name the Secret's key that holds the subscriber key, or set mercure.anonymous: true (public updates only)." }}
{{- end }}
{{- /* The relations ssehub itself checks at start (config.rs), caught before anything is deployed. */}}
{{- $drain := .Values.config.drain }}
{{- if lt (include "ssehub.durationMillis" $drain.timeout | int64) (include "ssehub.durationMillis" $drain.delay | int64) }}
{{- fail (printf "\n\nssehub: config.drain.timeout (%s) must be at least config.drain.delay (%s): the timeout bounds the whole drain, the delay included (ssehub refuses to start otherwise)." $drain.timeout $drain.delay) }}
{{- end }}
{{- $limits := .Values.config.limits }}
{{- if lt (int64 $limits.max_body_bytes) (int64 $limits.max_event_bytes) }}
{{- fail (printf "\n\nssehub: config.limits.max_body_bytes (%d) must be at least config.limits.max_event_bytes (%d): a request body carries at least one event." (int64 $limits.max_body_bytes) (int64 $limits.max_event_bytes)) }}
{{- end }}
{{- if and .Values.config.cors.allow_credentials (has "*" .Values.config.cors.allowed_origins) }}
{{- fail "\n\nssehub: config.cors.allow_credentials cannot be true with allowed_origins [\"*\"] (browsers refuse it): list the origins." }}
{{- end }}
{{- $heartbeat := include "ssehub.durationSeconds" .Values.config.heartbeat.interval | int64 }}
{{- if and .Values.ingress.enabled (ne .Values.ingress.sseAnnotations "none") (gt $heartbeat 0) (le (int64 .Values.ingress.proxyTimeoutSeconds) $heartbeat) }}
{{- fail (printf "\n\nssehub: ingress.proxyTimeoutSeconds (%d s) must be above config.heartbeat.interval (%s).\nThe heartbeat is what keeps an idle stream alive through the proxy; with a read timeout at or\nbelow it, nginx closes every quiet stream and all its clients reconnect." (int64 .Values.ingress.proxyTimeoutSeconds) .Values.config.heartbeat.interval) }}
{{- end }}
{{- end }}

{{/*
A TOML string (JSON string syntax is valid TOML basic-string syntax).
*/}}
{{- define "ssehub.tomlString" -}}
{{- toJson (toString .) }}
{{- end }}
