{{/* Names and labels shared by every template. */}}
{{- define "tritonctl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tritonctl.fullname" -}}
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

{{- define "tritonctl.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; the component label is added by the caller. */}}
{{- define "tritonctl.commonLabels" -}}
helm.sh/chart: {{ include "tritonctl.chart" . }}
app.kubernetes.io/name: {{ include "tritonctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of the Triton server's objects. */}}
{{- define "tritonctl.labels" -}}
{{ include "tritonctl.commonLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/* The Triton server pods. */}}
{{- define "tritonctl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tritonctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "tritonctl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tritonctl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tritonctl.adminSecretName" -}}
{{- default (printf "%s-admin-key" (include "tritonctl.fullname" .)) .Values.restrictedApis.existingSecret }}
{{- end }}

{{- define "tritonctl.grpcServiceName" -}}
{{- printf "%s-grpc" (include "tritonctl.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The --model-repository argument for the selected source. */}}
{{- define "tritonctl.modelRepository" -}}
{{- $r := .Values.repository }}
{{- if eq $r.source "native" }}
{{- required "repository.native.url is required for repository.source=native" $r.native.url }}
{{- else }}
{{- $r.path }}
{{- end }}
{{- end }}

{{/* PromQL label matchers that select this release's Triton pods as Prometheus labels them
     through the ServiceMonitor (namespace and service), plus the optional model matcher. */}}
{{- define "tritonctl.promMatchers" -}}
namespace="{{ .Release.Namespace }}",service="{{ include "tritonctl.fullname" . }}"
{{- with .Values.autoscaling.modelMatcher }},{{ . }}{{ end }}
{{- end }}

{{/* Queue time per request (µs), per pod: sum of queue time over sum of successful requests in
     the same window, guarded against division by zero. */}}
{{- define "tritonctl.queuePerRequestByPod" -}}
{{- $m := include "tritonctl.promMatchers" . -}}
sum by (namespace, pod) (rate(nv_inference_queue_duration_us{ {{- $m -}} }[1m])) / clamp_min(sum by (namespace, pod) (rate(nv_inference_request_success{ {{- $m -}} }[1m])), 1e-9)
{{- end }}

{{- define "tritonctl.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
