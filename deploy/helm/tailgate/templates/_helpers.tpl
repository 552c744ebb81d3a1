{{/*
Names. The release's objects are named <fullname>-<object> as the base
names them tailgate-<object>: a release called "tailgate" (or containing
it) makes exactly the base's names; any other release name is prefixed
("edge" -> edge-tailgate-gateway), so two releases never collide, even on
the agents' cluster-scoped RBAC.
*/}}
{{- define "tailgate.fullname" -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tailgate.gateway" -}}{{ include "tailgate.fullname" . }}-gateway{{- end -}}
{{/* The tiers' ServiceAccounts: <tier>.serviceAccount.name, else the tier's
name (made by the chart when create is true). */}}
{{- define "tailgate.gatewayServiceAccount" -}}{{ .Values.gateway.serviceAccount.name | default (include "tailgate.gateway" .) }}{{- end -}}
{{- define "tailgate.agentServiceAccount" -}}{{ .Values.agent.serviceAccount.name | default (include "tailgate.agent" .) }}{{- end -}}
{{- define "tailgate.agent" -}}{{ include "tailgate.fullname" . }}-agent{{- end -}}
{{- define "tailgate.headless" -}}{{ include "tailgate.fullname" . }}-gateway-headless{{- end -}}

{{/* Labels Helm adds to every object (the equivalence test removes exactly these). */}}
{{- define "tailgate.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Labels of every object, as the base's kustomization gives them. */}}
{{- define "tailgate.labels" -}}
app.kubernetes.io/part-of: tailgate
{{ include "tailgate.helmLabels" . }}
{{- end -}}

{{/* Selector labels of a tier: its name, and the release (two releases in
one namespace never select each other's pods). */}}
{{- define "tailgate.selector" -}}
app.kubernetes.io/name: tailgate-{{ .tier }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "tailgate.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The gateways' headless Service as the k8s resolver names it. */}}
{{- define "tailgate.k8sService" -}}{{ include "tailgate.headless" . }}.{{ .Release.Namespace }}{{- end -}}
{{/* ... and as the dns resolver looks it up. */}}
{{- define "tailgate.dnsName" -}}{{ include "tailgate.headless" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}{{- end -}}

{{/* How both tiers find the gateway set (the guard follows the agents). */}}
{{- define "tailgate.resolverEnv" -}}
- name: TAILGATE_GATEWAY_RESOLVER
  value: {{ .Values.resolver }}
{{- if eq .Values.resolver "k8s" }}
- name: TAILGATE_GATEWAY_K8S_SERVICE
  value: {{ include "tailgate.k8sService" . }}
{{- else }}
- name: TAILGATE_GATEWAY_DNS_NAME
  value: {{ include "tailgate.dnsName" . }}
{{- end }}
{{- end -}}

{{/* Garbage collection derived from the pod's size: GOMEMLIMIT is 75% of the
container's memory limit (memory_limiter's soft limit; the base takes its
memory request, which it keeps at 75% of the limit), GOGC under it. */}}
{{- define "tailgate.gcEnv" -}}
- name: GOMEMLIMIT
  value: {{ include "tailgate.gomemlimit" .resources.limits.memory | quote }}
- name: GOGC
  value: {{ .gogc | quote }}
{{- end -}}

{{/* GOMEMLIMIT, the Go runtime's soft limit, in bytes: 75% of the container's
memory limit, exactly memory_limiter's soft limit in both profiles
(limit_percentage 80 - spike_limit_percentage 5), whatever the request,
so the runtime collects before garbage can make memory_limiter refuse
data. The limit is a Kubernetes quantity (2Gi, 1536Mi, 2G, 2147483648). */}}
{{- define "tailgate.gomemlimit" -}}
{{- $q := toString (required "resources.limits.memory is required: GOMEMLIMIT and memory_limiter follow it" .) -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- $number := regexFind `^[0-9]+([.][0-9]+)?` $q -}}
{{- $unit := trimPrefix $number $q -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "resources.limits.memory %q: a quantity such as 2Gi, 1536Mi or 2G" $q) -}}
{{- end -}}
{{- printf "%d" (int64 (floor (mulf (float64 $number) (float64 (get $units $unit)) 0.75))) -}}
{{- end -}}

{{/* Cluster identity for both tiers, from one ConfigMap. */}}
{{- define "tailgate.clusterEnv" -}}
- name: TAILGATE_CLUSTER_NAME
  valueFrom:
    configMapKeyRef:
      name: {{ include "tailgate.fullname" . }}-cluster
      key: name
      optional: true
{{- end -}}

{{/* An optional profile variable: set only when the value is not empty. */}}
{{- define "tailgate.optEnv" -}}
{{- if and (ne .value nil) (ne (toString .value) "") }}
- name: {{ .name }}
  value: {{ .value | toString | quote }}
{{- end }}
{{- end -}}

{{/* The mtls secrets. */}}
{{- define "tailgate.gatewayTLSSecret" -}}{{ .Values.mtls.gatewaySecretName | default (printf "%s-gateway-tls" (include "tailgate.fullname" .)) }}{{- end -}}
{{- define "tailgate.agentTLSSecret" -}}{{ .Values.mtls.agentSecretName | default (printf "%s-agent-tls" (include "tailgate.fullname" .)) }}{{- end -}}

{{/* The gateways' overlay: your policies (a tail_sampling policies list,
which replaces the profile's), then gateway.config deep-merged over them, as
the upstream chart merges its config value over its presets (maps merge,
lists replace). */}}
{{- define "tailgate.gatewayOverlay" -}}
{{- $overlay := dict -}}
{{- with .Values.policies -}}
{{- $policies := fromYamlArray . -}}
{{- if and (eq (len $policies) 1) (hasKey (index $policies 0) "Error") -}}
{{- fail (printf "policies: not a YAML list of tail_sampling policies: %s" (index $policies 0).Error) -}}
{{- end -}}
{{- $overlay = mustMergeOverwrite $overlay (dict "processors" (dict "tail_sampling" (dict "policies" $policies))) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $overlay (deepCopy .Values.gateway.config)) -}}
{{- end -}}


{{/* A container's environment: the chart's variables, then the user's
(gateway.extraEnvs, agent.extraEnvs). A variable the user sets replaces the chart's of
that name, which is left out: a name twice in one env is refused by
server-side apply (Helm 4's default) and ambiguous anywhere. */}}
{{- define "tailgate.mergeEnv" -}}
{{- $user := dict -}}
{{- range .user }}{{- $_ := set $user .name true -}}{{- end -}}
{{- range (fromYamlArray .chart) }}
{{- if not (hasKey $user .name) }}
{{ toYaml (list .) }}
{{- end }}
{{- end }}
{{- with .user }}
{{ toYaml . }}
{{- end }}
{{- end -}}
