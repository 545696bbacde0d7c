{{/* Names, labels and shared snippets. */}}
{{- define "keepfix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keepfix.fullname" -}}
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

{{- define "keepfix.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keepfix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keepfix.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "keepfix.labels" -}}
helm.sh/chart: {{ include "keepfix.chart" . }}
{{ include "keepfix.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keepfix
{{- end }}

{{- define "keepfix.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keepfix.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "keepfix.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "keepfix.webhookServiceName" -}}
{{- printf "%s-webhook" (include "keepfix.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keepfix.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "keepfix.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keepfix.replicas" -}}
{{- if .Values.ha.enabled }}{{ .Values.ha.replicas }}{{ else }}1{{ end }}
{{- end }}

{{/* The name of the ValidatingWebhookConfiguration the operator manages (keepfix.api.conventions). */}}
{{- define "keepfix.webhookConfigurationName" -}}
keepfix
{{- end }}
