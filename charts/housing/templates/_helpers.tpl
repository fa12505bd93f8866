{{/* Chart name. */}}
{{- define "housing.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, or release-chart when it lacks the chart name. */}}
{{- define "housing.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "housing.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "housing.selectorLabels" -}}
app.kubernetes.io/name: {{ include "housing.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "housing.labels" -}}
helm.sh/chart: {{ include "housing.chart" . }}
{{ include "housing.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: housing
{{- end }}

{{/* The serving image: the predictor pods and the helm test Pod. */}}
{{- define "housing.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString (default .Chart.AppVersion .Values.image.tag)) }}
{{- end }}

{{/* The training image: the training Job, the dev stack's MLflow and bucket Job. */}}
{{- define "housing.trainingImage" -}}
{{- printf "%s:%s" .Values.training.image.repository (toString (default .Chart.AppVersion .Values.training.image.tag)) }}
{{- end }}

{{/* ServiceAccount the predictor (and its storage-initializer) and the training Job run as. */}}
{{- define "housing.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "housing.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "housing.rolloutServiceAccountName" -}}
{{- printf "%s-rollout" (include "housing.fullname" .) }}
{{- end }}

{{/* Name of the Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. */}}
{{- define "housing.s3SecretName" -}}
{{- if .Values.s3.existingSecret }}
{{- .Values.s3.existingSecret }}
{{- else }}
{{- printf "%s-s3" (include "housing.fullname" .) }}
{{- end }}
{{- end }}

{{- define "housing.minioName" -}}
{{- printf "%s-minio" (include "housing.fullname" .) }}
{{- end }}

{{- define "housing.mlflowName" -}}
{{- printf "%s-mlflow" (include "housing.fullname" .) }}
{{- end }}

{{- define "housing.postgresName" -}}
{{- printf "%s-postgres" (include "housing.fullname" .) }}
{{- end }}

{{/* S3 endpoint host:port (no scheme). */}}
{{- define "housing.s3Endpoint" -}}
{{- if .Values.s3.endpoint }}
{{- .Values.s3.endpoint }}
{{- else if .Values.devStack.minio.enabled }}
{{- printf "%s.%s.svc.cluster.local:%v" (include "housing.minioName" .) .Release.Namespace .Values.devStack.minio.port }}
{{- else }}
{{- fail "s3.endpoint is required when devStack.minio.enabled is false" }}
{{- end }}
{{- end }}

{{- define "housing.s3EndpointUrl" -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.s3.useHttps) (include "housing.s3Endpoint" .) }}
{{- end }}

{{- define "housing.mlflowTrackingUri" -}}
{{- if .Values.devStack.mlflow.enabled }}
{{- printf "http://%s.%s.svc.cluster.local:%v" (include "housing.mlflowName" .) .Release.Namespace .Values.devStack.mlflow.port }}
{{- else }}
{{- .Values.mlflow.trackingUri }}
{{- end }}
{{- end }}

{{/* True (non-empty) for KServe Standard mode (raw Deployment). */}}
{{- define "housing.standardMode" -}}
{{- if has .Values.kserve.deploymentMode (list "Standard" "RawDeployment") }}true{{- end }}
{{- end }}

{{/* Service name of the champion predictor (KServe naming). */}}
{{- define "housing.predictorServiceName" -}}
{{- if and (include "housing.standardMode" .) .Values.predictor.name }}
{{- printf "%s-%s-predictor" (include "housing.fullname" .) .Values.predictor.name }}
{{- else }}
{{- printf "%s-predictor" (include "housing.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The address users and the chart's own tools reach the model at. Standard mode: the chart's
<fullname>-inference Service, over every predictor pod of the InferenceService (stable and canary):
KServe v0.20 names its own Service after spec.predictor.name, which a promotion changes. Knative
mode: KServe's predictor Service.
*/}}
{{- define "housing.endpointServiceName" -}}
{{- if include "housing.standardMode" . }}
{{- printf "%s-inference" (include "housing.fullname" .) }}
{{- else }}
{{- include "housing.predictorServiceName" . }}
{{- end }}
{{- end }}

{{/* Writable scratch space: the root filesystem is read-only. */}}
{{- define "housing.scratchEnv" -}}
- name: HOME
  value: /tmp
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: HOUSING_HOME
  value: /tmp/housing
{{- end }}

{{/*
The predictor container for one bundle: args = the KServe ModelServer flags.
Called with (dict "root" $ "storageUri" URI "canary" true|false). A canary entry sets no replica
fields: KServe v0.20 refuses maxReplicas on a canary and derives its pods from the stable's.
*/}}
{{- define "housing.predictorPod" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
serviceAccountName: {{ include "housing.serviceAccountName" $root }}
{{- if not .canary }}
minReplicas: {{ $v.predictor.minReplicas }}
maxReplicas: {{ $v.predictor.maxReplicas }}
{{- end }}
timeout: {{ $v.predictor.timeoutSeconds }}
automountServiceAccountToken: false
{{- if $v.monitoring.podAnnotations }}
annotations:
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ $v.predictor.httpPort | quote }}
  prometheus.io/path: /metrics
{{- end }}
labels:
  {{- include "housing.selectorLabels" $root | nindent 2 }}
  app.kubernetes.io/component: predictor
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- if and (include "housing.standardMode" $root) (gt (int $v.predictor.waitForBundleSeconds) 0) }}
# Runs before the storage-initializer KServe appends: on a fresh install the training Job is still
# writing the bundle, and a failing storage-initializer backs off for up to 5 minutes per retry.
initContainers:
  - name: wait-for-bundle
    image: {{ include "housing.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    command:
      - python
      - -c
      - |
        import os, time
        import boto3
        from bundle.manifest import MANIFEST
        uri = os.environ["STORAGE_URI"]
        if not uri.startswith("s3://"):
            raise SystemExit(0)
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        key = f"{prefix.rstrip('/')}/{MANIFEST}"
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        deadline = time.monotonic() + float(os.environ["WAIT_SECONDS"])
        while True:
            try:
                s3.head_object(Bucket=bucket, Key=key)
                print(f"{uri}: {MANIFEST} present")
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{uri}: no {MANIFEST} after waiting ({exc})")
                print(f"waiting for s3://{bucket}/{key} ({exc})", flush=True)
                time.sleep(3)
    env:
      - name: STORAGE_URI
        value: {{ .storageUri | quote }}
      - name: WAIT_SECONDS
        value: {{ $v.predictor.waitForBundleSeconds | quote }}
      {{- include "housing.s3Env" $root | nindent 6 }}
    resources:
      {{- toYaml $v.tests.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
{{- end }}
containers:
  - name: kserve-container
    image: {{ include "housing.image" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    command: ["python", "-m", "predictor"]
    # a bundle that fails its digest check exits with one line naming the file: show it in the
    # pod's status (kubectl describe) rather than only in the logs of a restarted container
    terminationMessagePolicy: FallbackToLogsOnError
    {{- if gt (int $v.predictor.preStopSleepSeconds) 0 }}
    # keep answering while kube-proxy and gateways drop this pod from their endpoints: a canary's
    # pods all stop at once when it is rolled back, and without this a few requests reached a
    # pod that no longer accepted connections (seen on the node tier)
    lifecycle:
      preStop:
        sleep:
          seconds: {{ $v.predictor.preStopSleepSeconds }}
    {{- end }}
    args:
      - --model_name
      - {{ $v.model.name | quote }}
      - --model_dir
      - /mnt/models
      - --http_port
      - {{ $v.predictor.httpPort | quote }}
      - --grpc_port
      - {{ $v.predictor.grpcPort | quote }}
      - --workers
      - {{ $v.predictor.workers | quote }}
      - --max_body_bytes
      - {{ $v.predictor.maxBodyBytes | int64 | quote }}
      {{- if $v.auth.existingSecret }}
      - --api_keys_file
      - {{ printf "%s/%s" (include "housing.apiKeysDir" $root) $v.auth.key | quote }}
      - --open_paths
      - {{ join "," $v.auth.openPaths | quote }}
      {{- end }}
      {{- if gt (float64 $v.rateLimit.requestsPerSecond) 0.0 }}
      - --rate_limit
      - {{ $v.rateLimit.requestsPerSecond | toString | quote }}
      {{- if gt (float64 $v.rateLimit.burst) 0.0 }}
      - --rate_burst
      - {{ $v.rateLimit.burst | toString | quote }}
      {{- end }}
      {{- end }}
      {{- range $v.predictor.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      - name: STORAGE_URI
        value: {{ .storageUri | quote }}
      {{- include "housing.scratchEnv" $root | nindent 6 }}
    ports:
      - name: http1
        containerPort: {{ $v.predictor.httpPort }}
        protocol: TCP
      {{- if include "housing.standardMode" $root }}
      {{- /* KServe's Standard mode turns every further container port into a Service port (a
             name containing "grpc" gets appProtocol h2c); Knative allows one port only. */}}
      - name: grpc
        containerPort: {{ $v.predictor.grpcPort }}
        protocol: TCP
      {{- end }}
    readinessProbe:
      {{- toYaml $v.predictor.readinessProbe | nindent 6 }}
    livenessProbe:
      {{- toYaml $v.predictor.livenessProbe | nindent 6 }}
    resources:
      {{- toYaml $v.predictor.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if $v.auth.existingSecret }}
      # the whole Secret, not a subPath: the kubelet then updates the file when the Secret changes
      - name: api-keys
        mountPath: {{ include "housing.apiKeysDir" $root }}
        readOnly: true
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
  {{- if $v.auth.existingSecret }}
  - name: api-keys
    secret:
      secretName: {{ $v.auth.existingSecret }}
      defaultMode: 0440
  {{- end }}
{{- end }}

{{/* Where the API-key Secret is mounted in the predictor container. */}}
{{- define "housing.apiKeysDir" -}}
/etc/housing/auth
{{- end }}

{{/* Scratch volume + security for the dev-stack and Job pods. */}}
{{- define "housing.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{/* Environment of the training container (and of its wait-for-services init container). */}}
{{- define "housing.trainingEnv" -}}
- name: MLFLOW_TRACKING_URI
  value: {{ include "housing.mlflowTrackingUri" . | quote }}
{{ include "housing.s3Env" . }}
- name: HOUSING_BUNDLE_ROOT
  value: {{ printf "s3://%s" .Values.s3.bucket | quote }}
- name: HOUSING_MODEL_NAME
  value: {{ .Values.model.name | quote }}
{{- /* The first install trains exactly the bundle the InferenceService serves; later
       revisions publish new versions (<bucket>/<model>/<version>) as challengers. */}}
{{- $bundleUri := .Values.training.bundleUri | default (ternary .Values.predictor.storageUri "" .Release.IsInstall) }}
{{- with $bundleUri }}
- name: HOUSING_BUNDLE_URI
  value: {{ . | quote }}
{{- end }}
{{ include "housing.scratchEnv" . }}
{{- end }}

{{/* S3 endpoint and credentials (the chart's Secret or s3.existingSecret) for boto3 and MLflow. */}}
{{- define "housing.s3Env" -}}
- name: AWS_ENDPOINT_URL
  value: {{ include "housing.s3EndpointUrl" . | quote }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ include "housing.s3EndpointUrl" . | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "housing.s3SecretName" . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "housing.s3SecretName" . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
