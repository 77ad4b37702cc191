{{/* The chart's name, or nameOverride. */}}
{{- define "rocketpilot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name: fullnameOverride, or the release name (with the chart's name unless the
release name holds it already). */}}
{{- define "rocketpilot.fullname" -}}
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

{{- define "rocketpilot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the pods: never change them in an upgrade (a Deployment's selector is immutable). */}}
{{- define "rocketpilot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rocketpilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end }}

{{/* The labels of every resource. */}}
{{- define "rocketpilot.labels" -}}
helm.sh/chart: {{ include "rocketpilot.chart" . }}
{{ include "rocketpilot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rocketpilot
{{- end }}

{{- define "rocketpilot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rocketpilot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rocketpilot.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Where the TLS secret is mounted. */}}
{{- define "rocketpilot.tlsDir" -}}/etc/rocketpilot/tls{{- end }}

{{/* The pod's grace period: given, or the shutdown delay and grace plus 5 s; it must exceed their sum. */}}
{{- define "rocketpilot.terminationGracePeriodSeconds" -}}
{{- $need := add .Values.shutdown.delaySeconds .Values.shutdown.graceSeconds }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $need 5 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $need) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be larger than shutdown.delaySeconds + shutdown.graceSeconds (%v)" .Values.terminationGracePeriodSeconds $need) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* The DNS name of the Service. */}}
{{- define "rocketpilot.serviceHost" -}}
{{- printf "%s.%s.svc" (include "rocketpilot.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Every DNS name of the Service, as a JSON list: the serving certificate names them all. */}}
{{- define "rocketpilot.serviceDNSNames" -}}
{{- $svc := include "rocketpilot.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* Where the serving certificate comes from: "secret" (tls.secretName, the user's), "certManager", "generated"
(Helm's genCA at install), or "" without TLS. */}}
{{- define "rocketpilot.tlsSource" -}}
{{- if not .Values.tls.enabled }}
{{- else if .Values.tls.secretName }}secret
{{- else if .Values.certManager.enabled }}certManager
{{- else }}generated
{{- end }}
{{- end }}

{{/* The Secret the serving certificate is mounted from (tls.crt, tls.key, ca.crt): tls.secretName, or the chart's
own. */}}
{{- define "rocketpilot.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "rocketpilot.fullname" .)) }}
{{- end }}

{{/* The Secret of the chart's CA (generated: ca.crt, ca.key; cert-manager: tls.crt, tls.key, ca.crt). */}}
{{- define "rocketpilot.caSecretName" -}}
{{- printf "%s-ca" (include "rocketpilot.fullname" .) }}
{{- end }}

{{/* Where the workload CA's certificate and key are mounted (ca.crt, ca.key). */}}
{{- define "rocketpilot.caDir" -}}/etc/rocketpilot/ca{{- end }}

{{/* "true" when serve runs the workload CA: workloadCA.enabled, and TLS on (it is served over TLS, and sidecars'
certificates are only of use under TLS). */}}
{{- define "rocketpilot.workloadCA" -}}
{{- if and .Values.tls.enabled .Values.workloadCA.enabled }}true{{ end }}
{{- end }}

{{/* The Secret the workload CA signs with: workloadCA.secretName (with tls.secretName), or the chart's CA. */}}
{{- define "rocketpilot.workloadCASecretName" -}}
{{- .Values.workloadCA.secretName | default (include "rocketpilot.caSecretName" .) }}
{{- end }}

{{/* The namespaces the NetworkPolicy opens the admin and metrics ports to, as a JSON list. */}}
{{- define "rocketpilot.adminNamespaces" -}}
{{- $namespaces := .Values.networkPolicy.adminFrom.namespaces | default list }}
{{- if .Values.networkPolicy.adminFrom.releaseNamespace }}
{{- $namespaces = concat (list .Release.Namespace) $namespaces | uniq }}
{{- end }}
{{- $namespaces | toJson }}
{{- end }}

{{/* The arguments of `rocketpilot serve`. */}}
{{- define "rocketpilot.args" -}}
- serve
- --kubernetes
- --xds-address=:{{ .Values.ports.xds }}
- --admin-address=:{{ .Values.ports.admin }}
- --metrics-address=:{{ .Values.ports.metrics }}
- {{ printf "--log-level=%s" .Values.logLevel | quote }}
- {{ printf "--log-format=%s" .Values.logFormat | quote }}
- {{ printf "--discovery=%s" .Values.discovery | quote }}
{{- if .Values.leaderElection.enabled }}
- --leader-elect=true
- --leader-election-namespace={{ .Release.Namespace }}
- {{ printf "--leader-election-id=%s" .Values.leaderElection.id | quote }}
{{- else }}
- --leader-elect=false
{{- end }}
{{- with .Values.watchNamespace }}
- {{ printf "--watch-namespace=%s" . | quote }}
{{- end }}
{{- if .Values.sharePolling.enabled }}
- --share-polling
{{- if .Values.tls.enabled }}
- {{ printf "--peer-server-name=%s" (include "rocketpilot.serviceHost" .) | quote }}
{{- end }}
{{- end }}
{{- with .Values.namesrv }}
- {{ printf "--namesrv=%s" (join ";" .) | quote }}
{{- end }}
{{- with .Values.transientObjectLifeSpan }}
- {{ printf "--transient-object-life-span=%s" . | quote }}
{{- end }}
{{- if .Values.tls.enabled }}
- --tls-cert={{ include "rocketpilot.tlsDir" . }}/tls.crt
- --tls-key={{ include "rocketpilot.tlsDir" . }}/tls.key
{{- if .Values.tls.clientCA }}
- --tls-client-ca={{ include "rocketpilot.tlsDir" . }}/ca.crt
{{- with .Values.tls.adminOperators }}
- {{ printf "--admin-operators=%s" (join "," .) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if include "rocketpilot.workloadCA" . }}
- --ca-address=:{{ .Values.workloadCA.port }}
- --ca-cert={{ include "rocketpilot.caDir" . }}/ca.crt
- --ca-key={{ include "rocketpilot.caDir" . }}/ca.key
- {{ printf "--ca-trust-domain=%s" .Values.workloadCA.trustDomain | quote }}
- {{ printf "--ca-workload-ttl=%s" .Values.workloadCA.ttl | quote }}
{{- end }}
- --shutdown-delay={{ .Values.shutdown.delaySeconds }}s
- --shutdown-grace={{ .Values.shutdown.graceSeconds }}s
{{- if .Values.pprof }}
- --pprof
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
