{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "rheo-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name, plus the chart name unless the release name already contains it. */}}
{{- define "rheo-operator.fullname" -}}
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

{{- define "rheo-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rheo-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rheo-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rheo-operator.labels" -}}
helm.sh/chart: {{ include "rheo-operator.chart" . }}
{{ include "rheo-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: rheo
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "rheo-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rheo-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rheo-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The operator's rights on FlinkJobs and the objects it owns, shared by the ClusterRole
(all namespaces) and the per-namespace Roles. Exactly the API access the binary uses:
widening it needs a change of the operator's contract and of charts/tests.
*/}}
{{- define "rheo-operator.workloadRules" -}}
# Exactly the verbs the operator uses (operator/src/; charts/tests asserts this set):
# list/watch from the Controller's watches, patch from the finalizer helper (JSON patch).
- apiGroups: [rheo.io]
  resources: [flinkjobs]
  verbs: [list, watch, patch]
# status: server-side apply on the status subresource.
- apiGroups: [rheo.io]
  resources: [flinkjobs/status]
  verbs: [patch]
# scale: Rheo's autoscaler (taskManager.autoscaler.mode: Rheo) sets replicas as an HPA would.
- apiGroups: [rheo.io]
  resources: [flinkjobs/scale]
  verbs: [patch]
# children: watched (owns), server-side applied (apply creates a missing object: create);
# never deleted by the operator (garbage collection through owner references).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [list, watch, create, patch]
# pods: listed (never watched or changed) to say why a JobManager does not come up
# (CrashLoopBackOff, ImagePullBackOff, OOMKilled).
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# kube's event Recorder: create, then patch a repeated Event's series.
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/*
Checks of value combinations that values.schema.json cannot express with a clear message.
Included from the Deployment, so every render runs it.
*/}}
{{- define "rheo-operator.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas=%d requires leaderElection.enabled=true: without a leader lease every operator pod would reconcile the same FlinkJobs" (int .Values.replicas)) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled=true requires metrics.enabled=true (the ServiceMonitor scrapes the metrics Service)" }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail (printf "watchNamespaces has duplicates: %v" .Values.watchNamespaces) }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) .Values.rbac.create }}
{{- fail "serviceAccount.create=false with rbac.create=true needs serviceAccount.name (refusing to grant the operator's rights to the namespace's default ServiceAccount)" }}
{{- end }}
{{- end }}
