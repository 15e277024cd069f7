{{/* The chart name, overridable. */}}
{{- define "deprovisioner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of every object: the release name when it already contains the chart name (release
"deprovisioner" -> "deprovisioner"), else "<release>-<chart>".
*/}}
{{- define "deprovisioner.fullname" -}}
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

{{- define "deprovisioner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deprovisioner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deprovisioner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "deprovisioner.labels" -}}
helm.sh/chart: {{ include "deprovisioner.chart" . }}
{{ include "deprovisioner.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "deprovisioner.serviceAccountName" -}}
{{- default (include "deprovisioner.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The ServiceAccount of Lumos's on-premise agent (`deprovisioner connector`). */}}
{{- define "deprovisioner.lumosAgentName" -}}
{{- default (printf "%s-lumos-agent" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-") .Values.lumosAgent.serviceAccount.name }}
{{- end }}

{{/* Every identity the chart creates, as the API server names them (a JSON list). The admission
policies in admission.yaml hold each of them to taking access away; tests/chart.rs fails when a
ServiceAccount the chart renders is missing here. */}}
{{- define "deprovisioner.identities" -}}
{{- $ids := list (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "deprovisioner.serviceAccountName" .)) -}}
{{- if .Values.lumosAgent.enabled -}}
{{- $ids = append $ids (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "deprovisioner.lumosAgentName" .)) -}}
{{- end -}}
{{- toJson $ids -}}
{{- end }}

{{- define "deprovisioner.leaderElectionName" -}}
{{- printf "%s-leader-election" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Role (and RoleBinding) granting `get` on the listed credential Secrets and ConfigMaps. */}}
{{- define "deprovisioner.credentialsName" -}}
{{- printf "%s-credentials" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Role (and RoleBinding) in namespace `default` for the requests' Events. */}}
{{- define "deprovisioner.eventsName" -}}
{{- printf "%s-events" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The AccessClock objects' name prefix (the operator's --expiry-clocks): they are
<prefix>-0 .. -N (cluster-scoped, so no 63-character limit), N+1 being clockShards. */}}
{{- define "deprovisioner.clocksName" -}}
{{- printf "%s-clocks" (include "deprovisioner.fullname" .) }}
{{- end }}

{{/* How many AccessClock objects the operator keeps: deprovisioner_core::expiry::CLOCK_SHARDS
(tests/chart.rs fails when they differ). */}}
{{- define "deprovisioner.clockShards" -}}
8
{{- end }}

{{/* The binding index's sentinels (a RoleBinding and a ClusterRoleBinding) and the empty
ClusterRole they bind. */}}
{{- define "deprovisioner.indexBarrierName" -}}
{{- printf "%s-index-barrier" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deprovisioner.leaseName" -}}
{{- default (include "deprovisioner.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The Secret holding the webhook secret, and the key in it. */}}
{{- define "deprovisioner.secretName" -}}
{{- if .Values.webhook.secret.existingSecret }}
{{- .Values.webhook.secret.existingSecret }}
{{- else }}
{{- printf "%s-webhook" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "deprovisioner.secretKey" -}}
{{- .Values.webhook.secret.key }}
{{- end }}

{{/* The Secrets holding the connector's read and unassign secrets. */}}
{{- define "deprovisioner.connectorSecretName" -}}
{{- if .Values.connector.secret.existingSecret }}
{{- .Values.connector.secret.existingSecret }}
{{- else }}
{{- printf "%s-connector" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "deprovisioner.connectorUnassignSecretName" -}}
{{- if .Values.connector.unassignSecret.existingSecret }}
{{- .Values.connector.unassignSecret.existingSecret }}
{{- else }}
{{- printf "%s-connector-unassign" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
A Secret holding one shared secret under `key`: the given value, else the one this Secret
already holds (a generated secret is kept across upgrades: Lumos is configured with it), else 48
random characters. Arguments: root, name, key, value, comment.
*/}}
{{- define "deprovisioner.sharedSecret" -}}
{{- $secret := .value }}
{{- if not $secret }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- $secret = index $existing.data .key | b64dec }}
{{- else }}
{{- $secret = randAlphaNum 48 }}
{{- end }}
{{- end }}
# {{ .comment }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "deprovisioner.labels" .root | nindent 4 }}
type: Opaque
data:
  {{ .key }}: {{ $secret | b64enc | quote }}
{{- end }}

{{- define "deprovisioner.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The URL Lumos calls: the Ingress host when there is one, else a placeholder. */}}
{{- define "deprovisioner.webhookURL" -}}
{{- if and .Values.ingress.enabled .Values.ingress.host }}
{{- printf "%s://%s%s" (ternary "https" "http" (not (empty .Values.ingress.tls.secretName))) .Values.ingress.host .Values.ingress.path }}
{{- else }}
{{- printf "https://<your public host>%s" .Values.ingress.path }}
{{- end }}
{{- end }}

{{/* Checks across values that JSON Schema cannot express with a clear message. */}}
{{- define "deprovisioner.validate" -}}
{{- include "deprovisioner.validateFormats" . }}
{{- if and .Values.webhook.secret.value .Values.webhook.secret.existingSecret }}
{{- fail "webhook.secret: set either value or existingSecret, not both" }}
{{- end }}
{{- include "deprovisioner.validateCredentials" . }}
{{- include "deprovisioner.validateConnector" . }}
{{- include "deprovisioner.validateActivity" . }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.enabled is true but ingress.host is empty: set the public host name Lumos calls" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.ingressControllerNamespaceSelector) }}
{{- fail "networkPolicy.enabled is true but networkPolicy.ingressControllerNamespaceSelector is empty: an empty selector would admit every namespace (to admit everyone, disable the NetworkPolicy instead)" }}
{{- end }}
{{- end }}

{{/* String formats, checked here because a schema pattern error would not say what is wanted. */}}
{{- define "deprovisioner.validateFormats" -}}
{{- $duration := "^([0-9]+ ?(nsec|ns|usec|us|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y) ?)+$" }}
{{- range $name, $v := dict "controller.retention" .Values.controller.retention "controller.giveUpAfter" .Values.controller.giveUpAfter }}
{{- if not (regexMatch $duration $v) }}
{{- fail (printf "%s must be a duration such as 90s, 15m, 12h or 400days, got %q" $name $v) }}
{{- end }}
{{- end }}
{{- $d := .Values.webhook.responseDeadline }}
{{- if not (regexMatch "^(([1-9]|1[0-4])s|([1-9][0-9]{0,3}|1[0-4][0-9]{3})ms)$" $d) }}
{{- fail (printf "webhook.responseDeadline must be more than 0s and less than Lumos's 15s timeout, written like 10s or 2500ms, got %q" $d) }}
{{- end }}
{{- if not (regexMatch "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" .Values.webhook.header) }}
{{- fail (printf "webhook.header must be an HTTP header name such as Authorization or X-Lumos-Secret, got %q" .Values.webhook.header) }}
{{- end }}
{{- range $name, $value := dict "webhook.secret.value" .Values.webhook.secret.value "connector.secret.value" .Values.connector.secret.value "connector.unassignSecret.value" .Values.connector.unassignSecret.value }}
{{- range $i, $line := splitList "\n" (trimSuffix "\n" $value) }}
{{- if and $value (not (regexMatch "^[!-~]{16,}$" $line)) }}
{{- fail (printf "%s: line %d must be at least 16 printable characters without spaces (one secret per line, two during a rotation); the secret is not shown" $name (add1 $i)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The connector's secrets are its own: never the webhook's (whoever holds that one would read the
cluster's access map, or remove access, with it), each given one way, asked for only with the
connector on. The operator refuses a connector file holding a webhook secret too.
*/}}
{{- define "deprovisioner.validateConnector" -}}
{{- $c := .Values.connector }}
{{- range $name, $s := dict "connector.secret" $c.secret "connector.unassignSecret" $c.unassignSecret }}
{{- if and $s.value $s.existingSecret }}
{{- fail (printf "%s: set either value or existingSecret, not both" $name) }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.connector.enabled (not $c.enabled) }}
{{- fail "ingress.connector.enabled is true but connector.enabled is false: turn the connector on (it then has secrets of its own) to expose it" }}
{{- end }}
{{- if and $c.unassignSecret.enabled (not $c.enabled) }}
{{- fail "connector.unassignSecret.enabled is true but connector.enabled is false" }}
{{- end }}
{{- if $c.enabled }}
{{- $webhook := printf "%s/%s" (include "deprovisioner.secretName" .) (include "deprovisioner.secretKey" .) }}
{{- $read := printf "%s/%s" (include "deprovisioner.connectorSecretName" .) $c.secret.key }}
{{- $unassign := printf "%s/%s" (include "deprovisioner.connectorUnassignSecretName" .) $c.unassignSecret.key }}
{{- if eq $read $webhook }}
{{- fail "connector.secret must not be the webhook's secret (the same Secret and key): the connector has secrets of its own" }}
{{- end }}
{{- if and $c.unassignSecret.enabled (eq $unassign $webhook) }}
{{- fail "connector.unassignSecret must not be the webhook's secret (the same Secret and key): the connector has secrets of its own" }}
{{- end }}
{{- if and $c.unassignSecret.enabled (eq $unassign $read) }}
{{- fail "connector.unassignSecret must not be connector.secret (the same Secret and key): the read secret would remove access too" }}
{{- end }}
{{- if and $c.secret.value (eq $c.secret.value $.Values.webhook.secret.value) }}
{{- fail "connector.secret.value must not be the webhook's secret: the connector has secrets of its own" }}
{{- end }}
{{- if and $c.unassignSecret.value (or (eq $c.unassignSecret.value $.Values.webhook.secret.value) (eq $c.unassignSecret.value $c.secret.value)) }}
{{- fail "connector.unassignSecret.value must differ from the webhook's secret and from connector.secret" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
rbac.credentials may never grant the webhook Secret (the operator already has it as a file; a
policy could send it to any URL) or Helm's release storage (sh.helm.release.v1.<release>.v<n>:
every value of every release, secrets included), whatever the chart's name or release.
*/}}
{{- define "deprovisioner.validateCredentials" -}}
{{- $webhook := include "deprovisioner.secretName" . }}
{{- $connector := list }}
{{- if .Values.connector.enabled }}
{{- $connector = append $connector (include "deprovisioner.connectorSecretName" .) }}
{{- if .Values.connector.unassignSecret.enabled }}
{{- $connector = append $connector (include "deprovisioner.connectorUnassignSecretName" .) }}
{{- end }}
{{- end }}
{{- range .Values.rbac.credentials.secretNames }}
{{- if eq . $webhook }}
{{- fail (printf "rbac.credentials.secretNames must not list %q: it is the webhook Secret (the operator reads it as a file; a policy could send it to another system)" .) }}
{{- end }}
{{- if has . $connector }}
{{- fail (printf "rbac.credentials.secretNames must not list %q: it is a connector Secret (the operator reads it as a file; a policy could send it to another system)" .) }}
{{- end }}
{{- end }}
{{- range $field, $names := dict "secretNames" .Values.rbac.credentials.secretNames "configMapNames" .Values.rbac.credentials.configMapNames }}
{{- range $names }}
{{- if hasPrefix "sh.helm.release." . }}
{{- fail (printf "rbac.credentials.%s must not list %q: it is Helm's release storage (every value of a release, secrets included)" $field .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Last activity (activity.*): the audit Service, the token's Secret, the API server's files. */}}
{{- define "deprovisioner.auditName" -}}
{{- printf "%s-audit" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deprovisioner.auditTokenSecretName" -}}
{{- default (include "deprovisioner.auditName" .) .Values.activity.token.existingSecret }}
{{- end }}

{{- define "deprovisioner.auditApiServerName" -}}
{{- printf "%s-audit-apiserver" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "deprovisioner.activityName" -}}
{{- printf "%s-activity" (include "deprovisioner.fullname" .) | trunc 60 | trimSuffix "-" }}
{{- end }}

{{/* The activity store's ConfigMaps, <full name>-activity-00 .. -63 and its status
<full name>-activity-status (a JSON list): the operator passes the prefix with --activity-prefix,
and the count is crates/core's activity::SHARDS (tests/chart_activity.rs fails when they differ). */}}
{{- define "deprovisioner.activityShards" -}}
{{- $prefix := include "deprovisioner.activityName" . -}}
{{- $names := list -}}
{{- range $i := until 64 -}}
{{- $names = append $names (printf "%s-%02d" $prefix $i) -}}
{{- end -}}
{{- $names = append $names (printf "%s-status" $prefix) -}}
{{- toJson $names -}}
{{- end }}

{{/*
The audit token: the value, else the one the chart's Secret (or your existingSecret) holds, else
48 random characters (only for the chart's own Secret). Rendered once per template, so the Secret
and the API server's kubeconfig agree: callers pass the same root and get the same token because
a generated one is kept in .Values (a render-scoped cache).
*/}}
{{- define "deprovisioner.auditToken" -}}
{{- $t := .Values.activity.token -}}
{{- if $t.value -}}
{{- $t.value -}}
{{- else -}}
{{- $cache := .Values.activity -}}
{{- if not (hasKey $cache "_generatedToken") -}}
{{- $name := include "deprovisioner.auditTokenSecretName" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name -}}
{{- if and $existing $existing.data (hasKey $existing.data $t.key) -}}
{{- $_ := set $cache "_generatedToken" (index $existing.data $t.key | b64dec) -}}
{{- else if $t.existingSecret -}}
{{- fail (printf "activity.token.existingSecret: Secret %s/%s with key %q was not found, and the API server's kubeconfig needs its token: create it before installing (helm template cannot read the cluster: set activity.token.value there, or leave both empty to have the chart generate one)" .Release.Namespace $name $t.key) -}}
{{- else -}}
{{- $_ := set $cache "_generatedToken" (randAlphaNum 48) -}}
{{- end -}}
{{- end -}}
{{- index $cache "_generatedToken" -}}
{{- end -}}
{{- end }}

{{/* The audit Service's cluster IP: the value, else the Service's (once it exists), else empty. */}}
{{- define "deprovisioner.auditClusterIP" -}}
{{- $a := .Values.activity -}}
{{- if eq $a.service.type "ClusterIP" -}}
{{- $ip := $a.service.clusterIP -}}
{{- if not $ip -}}
{{- $svc := lookup "v1" "Service" .Release.Namespace (include "deprovisioner.auditName" .) -}}
{{- if and $svc (ne (toString $svc.spec.clusterIP) "None") -}}
{{- $ip = $svc.spec.clusterIP -}}
{{- end -}}
{{- end -}}
{{- $ip -}}
{{- end -}}
{{- end }}

{{/* The URL the API server sends its audit batches to: https unless TLS ends elsewhere. */}}
{{- define "deprovisioner.auditURL" -}}
{{- $a := .Values.activity -}}
{{- $scheme := ternary "http" "https" (eq (toString $a.tls.terminatedElsewhere) "true") -}}
{{- if $a.apiServer.url -}}
{{- $a.apiServer.url -}}
{{- else if eq $a.service.type "NodePort" -}}
{{- $port := int $a.service.nodePort -}}
{{- $svc := lookup "v1" "Service" .Release.Namespace (include "deprovisioner.auditName" .) -}}
{{- if and (not $port) $svc -}}
{{- range $svc.spec.ports -}}
{{- if eq .name "audit" }}{{ $port = int .nodePort }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if $port -}}
{{- printf "%s://127.0.0.1:%d/audit" $scheme $port -}}
{{- end -}}
{{- else -}}
{{- $ip := include "deprovisioner.auditClusterIP" . -}}
{{- if $ip -}}
{{- if contains ":" $ip -}}
{{- printf "%s://[%s]:%d/audit" $scheme $ip (int $a.service.port) -}}
{{- else -}}
{{- printf "%s://%s:%d/audit" $scheme $ip (int $a.service.port) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "deprovisioner.auditTLSSecretName" -}}
{{- default (printf "%s-audit-tls" (include "deprovisioner.fullname" .) | trunc 63 | trimSuffix "-") .Values.activity.tls.existingSecret }}
{{- end }}

{{/*
The names the generated serving certificate is for (JSON {"ips": [...], "dns": [...]}, sorted):
the audit Service's DNS names, its cluster IP when known, 127.0.0.1 (a node port through
localhost, or a host-network operator), the host of activity.apiServer.url, and
activity.tls.extraSANs.
*/}}
{{- define "deprovisioner.auditSANs" -}}
{{- $a := .Values.activity -}}
{{- $svc := include "deprovisioner.auditName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) "127.0.0.1" -}}
{{- with include "deprovisioner.auditClusterIP" . }}{{ $names = append $names . }}{{ end -}}
{{- if $a.apiServer.url }}{{ $names = append $names (urlParse $a.apiServer.url).hostname }}{{ end -}}
{{- $names = concat $names $a.tls.extraSANs -}}
{{- $ips := list -}}
{{- $dns := list -}}
{{- range $names -}}
{{- if or (regexMatch "^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$" .) (contains ":" .) -}}
{{- $ips = append $ips . -}}
{{- else if . -}}
{{- $dns = append $dns . -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "ips" ($ips | uniq | sortAlpha) "dns" ($dns | uniq | sortAlpha)) -}}
{{- end }}

{{/*
The audit endpoint's generated serving certificate (JSON {"crt", "key", "ca", "caKey", "sans"},
PEM): the one the chart's Secret holds, kept across upgrades like the generated tokens (the API
server's kubeconfig trusts its CA); re-signed by the same CA when the names it must cover change
(the cluster IP becomes known at the first upgrade), else a new CA (genCA) and certificate
(genSignedCert), ten years each. Cached in .Values for the render, as the audit token.
*/}}
{{- define "deprovisioner.auditTLS" -}}
{{- $cache := .Values.activity -}}
{{- if not (hasKey $cache "_generatedTLS") -}}
{{- $sans := include "deprovisioner.auditSANs" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "deprovisioner.auditTLSSecretName" .) -}}
{{- $d := dict -}}
{{- if and $existing $existing.data -}}
{{- $d = $existing.data -}}
{{- end -}}
{{- $old := dict -}}
{{- if and $existing $existing.metadata.annotations -}}
{{- $old = $existing.metadata.annotations -}}
{{- end -}}
{{- $tls := dict -}}
{{- if and (hasKey $d "tls.crt") (hasKey $d "tls.key") (hasKey $d "ca.crt") (hasKey $d "ca.key") -}}
{{- $tls = dict "crt" (index $d "tls.crt" | b64dec) "key" (index $d "tls.key" | b64dec) "ca" (index $d "ca.crt" | b64dec) "caKey" (index $d "ca.key" | b64dec) -}}
{{- if ne (index $old "deprovisioner.dev/sans" | default "") $sans -}}
{{- $ca := buildCustomCert (index $d "ca.crt") (index $d "ca.key") -}}
{{- $s := $sans | fromJson -}}
{{- $cert := genSignedCert (include "deprovisioner.auditName" .) $s.ips $s.dns 3650 $ca -}}
{{- $_ := set $tls "crt" $cert.Cert -}}
{{- $_ := set $tls "key" $cert.Key -}}
{{- end -}}
{{- else -}}
{{- $ca := genCA (printf "%s audit CA" (include "deprovisioner.fullname" .)) 3650 -}}
{{- $s := $sans | fromJson -}}
{{- $cert := genSignedCert (include "deprovisioner.auditName" .) $s.ips $s.dns 3650 $ca -}}
{{- $tls = dict "crt" $cert.Cert "key" $cert.Key "ca" $ca.Cert "caKey" $ca.Key -}}
{{- end -}}
{{- $_ := set $tls "sans" $sans -}}
{{- $_ := set $cache "_generatedTLS" $tls -}}
{{- end -}}
{{- index $cache "_generatedTLS" | toJson -}}
{{- end }}

{{/* The CA the API server's kubeconfig trusts (PEM): caBundle, else the generated CA. */}}
{{- define "deprovisioner.auditCA" -}}
{{- $a := .Values.activity -}}
{{- if $a.apiServer.caBundle -}}
{{- $a.apiServer.caBundle -}}
{{- else if not (or $a.tls.terminatedElsewhere $a.tls.existingSecret) -}}
{{- (include "deprovisioner.auditTLS" . | fromJson).ca -}}
{{- end -}}
{{- end }}

{{/*
Last activity: the audit token is its own (never the webhook's or the connector's: whoever holds
the API server's kubeconfig would hold those too), given one way; the NetworkPolicy names who may
send events.
*/}}
{{- define "deprovisioner.validateActivity" -}}
{{- $a := .Values.activity }}
{{- if and $a.token.value $a.token.existingSecret }}
{{- fail "activity.token: set either value or existingSecret, not both" }}
{{- end }}
{{- range $i, $line := splitList "\n" (trimSuffix "\n" $a.token.value) }}
{{- if and $a.token.value (not (regexMatch "^[!-~]{16,}$" $line)) }}
{{- fail (printf "activity.token.value: line %d must be at least 16 printable characters without spaces (one token per line, two during a rotation); the token is not shown" (add1 $i)) }}
{{- end }}
{{- end }}
{{- if $a.enabled }}
{{- $token := printf "%s/%s" (include "deprovisioner.auditTokenSecretName" .) $a.token.key }}
{{- $others := list (printf "%s/%s" (include "deprovisioner.secretName" .) (include "deprovisioner.secretKey" .)) }}
{{- if .Values.connector.enabled }}
{{- $others = append $others (printf "%s/%s" (include "deprovisioner.connectorSecretName" .) .Values.connector.secret.key) }}
{{- if .Values.connector.unassignSecret.enabled }}
{{- $others = append $others (printf "%s/%s" (include "deprovisioner.connectorUnassignSecretName" .) .Values.connector.unassignSecret.key) }}
{{- end }}
{{- end }}
{{- if has $token $others }}
{{- fail "activity.token must not be the webhook's or the connector's secret (the same Secret and key): the API server's kubeconfig would carry it" }}
{{- end }}
{{- if and $a.token.value (has $a.token.value (list .Values.webhook.secret.value .Values.connector.secret.value .Values.connector.unassignSecret.value)) }}
{{- fail "activity.token.value must differ from the webhook's and the connector's secrets: the API server's kubeconfig would carry it" }}
{{- end }}
{{- if eq (int $a.port) (int .Values.webhook.port) }}
{{- fail "activity.port must differ from webhook.port: the audit endpoint has a listener of its own" }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int $a.port) (int .Values.metrics.port)) }}
{{- fail "activity.port must differ from metrics.port" }}
{{- end }}
{{- range .Values.rbac.credentials.secretNames }}
{{- if has . (list (include "deprovisioner.auditTokenSecretName" $) (include "deprovisioner.auditApiServerName" $)) }}
{{- fail (printf "rbac.credentials.secretNames must not list %q: it holds the audit token (a policy could send it to another system)" .) }}
{{- end }}
{{- end }}
{{- if not $a.tls.terminatedElsewhere }}
{{- range .Values.rbac.credentials.secretNames }}
{{- if eq . (include "deprovisioner.auditTLSSecretName" $) }}
{{- fail (printf "rbac.credentials.secretNames must not list %q: it holds the audit endpoint's private key" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not $a.networkPolicyFrom) }}
{{- fail "activity.enabled and networkPolicy.enabled but activity.networkPolicyFrom is empty: list where the API server's requests come from (it usually runs in the host network: its nodes' addresses as ipBlock CIDRs), or your log shipper's pods" }}
{{- end }}
{{- if and (ne $a.service.type "NodePort") $a.service.nodePort }}
{{- fail "activity.service.nodePort is set but activity.service.type is not NodePort" }}
{{- end }}
{{- if and (ne $a.service.type "ClusterIP") $a.service.clusterIP }}
{{- fail "activity.service.clusterIP is set but activity.service.type is not ClusterIP" }}
{{- end }}
{{- if $a.tls.terminatedElsewhere }}
{{- if $a.tls.existingSecret }}
{{- fail "activity.tls.existingSecret is set but activity.tls.terminatedElsewhere is true: the audit port then speaks plain http and serves no certificate" }}
{{- end }}
{{- if and $a.apiServer.caBundle (not (hasPrefix "https://" $a.apiServer.url)) }}
{{- fail "activity.apiServer.caBundle is set but activity.apiServer.url is not https://: with activity.tls.terminatedElsewhere, a CA is only for the https url of what terminates TLS in front of the operator (set the url to it)" }}
{{- end }}
{{- else }}
{{- if hasPrefix "http://" $a.apiServer.url }}
{{- fail "activity.apiServer.url is http:// but the audit port serves https (and the API server sends its token only over https): use https://, or set activity.tls.terminatedElsewhere=true if TLS ends in front of the operator" }}
{{- end }}
{{- if and $a.tls.existingSecret (not $a.apiServer.caBundle) }}
{{- fail "activity.tls.existingSecret is set but activity.apiServer.caBundle is empty: give the PEM CA that signed its certificate, for the API server's kubeconfig" }}
{{- end }}
{{- if and $a.apiServer.caBundle (not $a.tls.existingSecret) (not $a.apiServer.url) }}
{{- fail "activity.apiServer.caBundle is set but the chart generates the audit endpoint's certificate and activity.apiServer.url is empty: the kubeconfig would trust a CA that did not sign it (leave caBundle empty, or give activity.tls.existingSecret, or the https url of a proxy presenting a certificate of that CA)" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The ConfigMaps a fleet member's agent writes in its mailbox on the hub (its inventory: a header
and two slots of 16 chunks, deprovisioner_core::fleet::inventory::names), for RBAC's resourceNames.
*/}}
{{- define "deprovisioner.inventoryNames" -}}
deprovisioner-inventory{{ range $s := list "a" "b" }}{{ range $i, $_ := until 16 }}, {{ printf "deprovisioner-inventory-%s%02d" $s $i }}{{ end }}{{ end }}
{{- end }}
