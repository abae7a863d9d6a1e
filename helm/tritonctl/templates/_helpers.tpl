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

{{/* The Triton release inside the image (triton.release, the NGC container tag). */}}
{{- define "tritonctl.tritonVersion" -}}
{{- get (dict "24.10" "2.51.0" "25.08" "2.60.0") .Values.triton.release }}
{{- end }}

{{/* An nginx size ("3840k", "64m", "1048576") in bytes. */}}
{{- define "tritonctl.sizeBytes" -}}
{{- $size := toString . }}
{{- $number := regexFind "^[0-9]+" $size | int64 }}
{{- $unit := lower (regexFind "[kKmMgG]$" $size) }}
{{- mul $number (get (dict "k" 1024 "m" 1048576 "g" 1073741824) $unit | default 1) }}
{{- end }}

{{/* PromQL label matchers that select this release's Triton pods as Prometheus labels them
     through the ServiceMonitor (namespace and service). */}}
{{- define "tritonctl.promMatchers" -}}
namespace="{{ .Release.Namespace }}",service="{{ include "tritonctl.fullname" . }}"
{{- end }}

{{/* The same, narrowed to the models clients call (userFacingModels: plain names, no regex
     metacharacters, as the schema requires). */}}
{{- define "tritonctl.userModelMatchers" -}}
{{ include "tritonctl.promMatchers" . }},model=~"{{ join "|" .Values.userFacingModels }}"
{{- end }}

{{/* Queue time per user request (µs), per pod: the queue time of every model in the pod (an
     ensemble's requests wait in its composing models, its own queue time stays near 0) over the
     successful requests of userFacingModels in the same window, guarded against division by
     zero. */}}
{{- define "tritonctl.queuePerRequestByPod" -}}
sum by (namespace, pod) (rate(nv_inference_queue_duration_us{ {{- include "tritonctl.promMatchers" . -}} }[1m])) / clamp_min(sum by (namespace, pod) (rate(nv_inference_request_success{ {{- include "tritonctl.userModelMatchers" . -}} }[1m])), 1e-9)
{{- end }}

{{/* The HPA's name, for KEDA's too (KEDA's default "keda-hpa-<name>" can pass 63 characters). */}}
{{- define "tritonctl.hpaName" -}}
{{- include "tritonctl.fullname" . }}
{{- end }}

{{- define "tritonctl.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/* The helm test's image: tests.image, its tag defaulting to the release's SDK image. */}}
{{- define "tritonctl.testImage" -}}
{{- $i := .Values.tests.image }}
{{- printf "%s:%s" $i.repository (default (printf "%s-py3-sdk" .Values.triton.release) $i.tag) }}
{{- end }}

{{/* The rolling-update strategy: updateStrategy, or the default for CPU or GPU pods. */}}
{{- define "tritonctl.rollingUpdate" -}}
{{- if .Values.updateStrategy }}
{{- toYaml .Values.updateStrategy }}
{{- else if .Values.gpu.enabled }}
maxSurge: 0
maxUnavailable: 1
{{- else }}
maxSurge: 1
maxUnavailable: 0
{{- end }}
{{- end }}
