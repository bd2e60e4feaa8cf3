{{/*
Names, labels and the pod-spec pieces the three components share. A component is passed as a dict:
  (dict "root" $ "name" "ingestion" "values" .Values.ingestion)
*/}}

{{- define "pitwall.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pitwall.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "pitwall.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of a component's objects: <fullname>-<component>, kept within 63 characters. */}}
{{- define "pitwall.componentName" -}}
{{- printf "%s-%s" (include "pitwall.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pitwall.labels" -}}
helm.sh/chart: {{ include "pitwall.chart" . }}
app.kubernetes.io/name: {{ include "pitwall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pitwall
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "pitwall.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pitwall.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "pitwall.componentLabels" -}}
{{ include "pitwall.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "pitwall.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pitwall.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding REDIS_URL, DATABASE_URL and the Directus credentials. */}}
{{- define "pitwall.secretName" -}}
{{- if .Values.secrets.create -}}
{{- printf "%s-secrets" (include "pitwall.fullname" .) -}}
{{- else -}}
{{- required "secrets.existingSecret is required unless secrets.create is true" .Values.secrets.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "pitwall.sharedConfigName" -}}
{{- printf "%s-shared" (include "pitwall.fullname" .) -}}
{{- end -}}

{{/*
The data of a component's ConfigMap: .values, the variables its chart values set (name: value), then .env,
its `env` map, which wins for a variable both set (one key, env's value; an install that set a variable in
env before the chart had a value for it keeps its setting). One line per variable, sorted by name.
*/}}
{{- define "pitwall.configData" -}}
{{- $data := dict -}}
{{- range $name, $value := .values }}{{ $_ := set $data $name $value }}{{ end -}}
{{- range $name, $value := .env }}{{ $_ := set $data $name $value }}{{ end -}}
{{- range $name, $value := $data }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Image reference: <registry>/<component>:<tag> or @<digest>; a component may override repository, tag, digest. */}}
{{- define "pitwall.image" -}}
{{- $repository := default (printf "%s/%s" .root.Values.image.registry .name) .values.image.repository -}}
{{- $tag := default (default .root.Chart.AppVersion .root.Values.image.tag) .values.image.tag -}}
{{- if .values.image.digest -}}
{{- printf "%s@%s" $repository .values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Pod annotations with checksum/config: a hash of every ConfigMap and chart-made Secret the pod reads,
so a config change rolls the pods.
*/}}
{{- define "pitwall.podAnnotations" -}}
{{- $root := .root -}}
{{- $config := cat
  (include (print $root.Template.BasePath "/configmap.yaml") $root)
  (include (print $root.Template.BasePath "/" .name "/configmap.yaml") $root)
  (include (print $root.Template.BasePath "/secret.yaml") $root) -}}
checksum/config: {{ sha256sum $config }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The Redis credentials of every service: REDIS_URL (optional in cluster mode), REDIS_PASSWORD in cluster mode. */}}
{{- define "pitwall.redisEnv" -}}
{{- $cluster := .Values.config.redisCluster.nodes -}}
{{ include "pitwall.secretEnv" (dict "root" . "env" "REDIS_URL" "key" .Values.secrets.keys.redisUrl "optional" (ne $cluster "")) }}
{{- if $cluster }}
{{ include "pitwall.secretEnv" (dict "root" . "env" "REDIS_PASSWORD" "key" .Values.secrets.keys.redisPassword "optional" true) }}
{{- end }}
{{- end -}}

{{/* One secret variable, read from the chart's Secret. */}}
{{- define "pitwall.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "pitwall.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{- define "pitwall.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pitwall.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Probes on the metrics server: liveness /healthz, readiness /readyz, startup /healthz. */}}
{{- define "pitwall.probes" -}}
{{- $p := .values.probes -}}
startupProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: {{ $p.startup.periodSeconds }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
  successThreshold: 1
{{- end -}}

{{/*
Scheduling: node selector, affinity, tolerations, priority class, and topology spread constraints whose
label selector defaults to the component's own pods.
*/}}
{{- define "pitwall.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if .values.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range .values.topologySpreadConstraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (fromYaml (include "pitwall.selectorLabels" $))) }}
{{- end }}
  - {{ toYaml $constraint | indent 4 | trim }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Fails rendering when the pod could be killed before the service's own shutdown timeout ran out:
terminationGracePeriodSeconds must exceed preStop sleep + shutdown timeout.
*/}}
{{- define "pitwall.checkGracePeriod" -}}
{{- $preStop := default 0 .values.preStopSleepSeconds | int -}}
{{- $needed := add $preStop .shutdownSeconds -}}
{{- if le (int .values.terminationGracePeriodSeconds) (int $needed) -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be greater than the preStop sleep plus the service's shutdown timeout (%d)" .key (int .values.terminationGracePeriodSeconds) (int $needed)) -}}
{{- end -}}
{{- end -}}

{{/* The ports of a NetworkPolicy rule from a list of port numbers. */}}
{{- define "pitwall.policyPorts" -}}
{{- range .ports }}
- port: {{ . }}
  protocol: TCP
{{- end }}
{{- end -}}

{{/* Egress rules every component needs: DNS, Redis, OpenTelemetry export and extra rules. */}}
{{- define "pitwall.commonEgress" -}}
{{- $np := .Values.networkPolicy -}}
{{- if $np.egress.dns.enabled }}
- to:
    {{- toYaml $np.egress.dns.to | nindent 4 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
- ports:
    {{- include "pitwall.policyPorts" $np.egress.redis | nindent 4 }}
  {{- with $np.egress.redis.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- with $np.egress.extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Who may scrape /metrics and call /readyz: Prometheus and the chart's helm test pod. */}}
{{- define "pitwall.metricsIngress" -}}
- ports:
    - port: metrics
      protocol: TCP
  from:
    {{- with .Values.networkPolicy.metricsFrom }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    - podSelector:
        matchLabels:
          app.kubernetes.io/instance: {{ .Release.Name }}
          app.kubernetes.io/component: helm-test
{{- end -}}

{{/* PodDisruptionBudget of a component. */}}
{{- define "pitwall.podDisruptionBudget" -}}
{{- if .values.podDisruptionBudget.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "pitwall.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "pitwall.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "pitwall.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* ClusterIP Service of a component's metrics port: what the ServiceMonitor and the helm test use. */}}
{{- define "pitwall.metricsService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "pitwall.componentName" . }}-metrics
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "pitwall.componentLabels" . | nindent 4 }}
    pitwall.io/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "pitwall.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .root.Values.config.metricsPort }}
      targetPort: metrics
      protocol: TCP
{{- end -}}

{{/* ServiceMonitor of a component; the `component` label lets dashboards and alerts tell the services apart. */}}
{{- define "pitwall.serviceMonitor" -}}
{{- $sm := .root.Values.monitoring.serviceMonitor -}}
{{- if $sm.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "pitwall.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "pitwall.componentLabels" . | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "pitwall.selectorLabels" . | nindent 6 }}
      pitwall.io/metrics: "true"
  namespaceSelector:
    matchNames:
      - {{ .root.Release.Namespace }}
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ $sm.interval }}
      scrapeTimeout: {{ $sm.scrapeTimeout }}
      relabelings:
        - sourceLabels: [__meta_kubernetes_pod_label_app_kubernetes_io_component]
          targetLabel: component
        - sourceLabels: [__meta_kubernetes_pod_label_app_kubernetes_io_instance]
          targetLabel: release
{{- end }}
{{- end -}}
