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

{{/*
The install's training Job (training-job.yaml); not named after a revision. It is kept by helm
(resource-policy keep), so after `helm uninstall` it stays until its TTL: a later `helm install`
would adopt that finished Job and train nothing (the dev stack's new MinIO then never gets a
bundle). So an install takes the first free name of <release>-train-install, -2, -3, … among the
namespace's Jobs. `helm template` sees no Jobs: the plain name.
*/}}
{{- define "housing.installTrainingJobName" -}}
{{- $base := printf "%s-train-install" (include "housing.fullname" .) -}}
{{- $taken := dict -}}
{{- if .Release.IsInstall -}}
{{- range (lookup "batch/v1" "Job" .Release.Namespace "").items -}}
{{- $_ := set $taken .metadata.name true -}}
{{- end -}}
{{- end -}}
{{- $name := $base -}}
{{- range $i := untilStep 2 100 1 -}}
{{- if hasKey $taken $name -}}
{{- $name = printf "%s-%d" $base $i -}}
{{- end -}}
{{- end -}}
{{- $name -}}
{{- end }}

{{/* The CronJob of later training runs (scheduled or `kubectl create job --from=cronjob/...`). */}}
{{- define "housing.trainingCronJobName" -}}
{{- printf "%s-train" (include "housing.fullname" .) }}
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

{{/*
Secret of the serving user (read the bucket, write the payload log's prefix): the storage-initializer
(through the predictor's ServiceAccount), the wait-for-bundle init container and the payload log.
s3.servingSecret; else, with the dev-stack MinIO, the chart's <fullname>-s3-serving (its bucket Job
creates that user); else the S3 Secret itself (give serving its own read-only user: s3.servingSecret).
*/}}
{{- define "housing.s3ServingSecretName" -}}
{{- if .Values.s3.servingSecret }}
{{- .Values.s3.servingSecret }}
{{- else if .Values.devStack.minio.enabled }}
{{- printf "%s-s3-serving" (include "housing.fullname" .) }}
{{- else }}
{{- include "housing.s3SecretName" . }}
{{- end }}
{{- end }}

{{/* Where the serving user may write: the payload log's bucket/prefix ("" when the log is off). */}}
{{- define "housing.payloadLogPrefix" -}}
{{- if .Values.payloadLog.enabled }}
{{- include "housing.payloadLogUri" . | trimPrefix "s3://" | trimSuffix "/" }}
{{- end }}
{{- end }}

{{- define "housing.minioName" -}}
{{- printf "%s-minio" (include "housing.fullname" .) }}
{{- end }}

{{- define "housing.mlflowName" -}}
{{- printf "%s-mlflow" (include "housing.fullname" .) }}
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

{{/* The TCP port of a URL: its explicit port, else 443 for https and 80 otherwise. */}}
{{- define "housing.urlPort" -}}
{{- $u := urlParse . }}
{{- if regexMatch ":[0-9]+$" $u.host }}
{{- regexFind "[0-9]+$" $u.host }}
{{- else if eq $u.scheme "https" }}443
{{- else }}80
{{- end }}
{{- end }}

{{/* The port pods reach S3 on (egress policy). */}}
{{- define "housing.s3Port" -}}
{{- if and .Values.devStack.minio.enabled (not .Values.s3.endpoint) }}
{{- .Values.devStack.minio.port }}
{{- else }}
{{- include "housing.urlPort" (include "housing.s3EndpointUrl" .) }}
{{- end }}
{{- end }}

{{/* The port pods reach MLflow on (egress policy); empty without an MLflow. */}}
{{- define "housing.mlflowPort" -}}
{{- if .Values.devStack.mlflow.enabled }}
{{- .Values.devStack.mlflow.port }}
{{- else if .Values.mlflow.trackingUri }}
{{- include "housing.urlPort" .Values.mlflow.trackingUri }}
{{- end }}
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
Called with (dict "root" $ "storageUri" URI "digest" SHA256-or-"" ["pinned" true] "canary" true|false): without a
digest, pinned reads it from the ConfigMap of recorded registrations (housing.champion). A canary entry sets no replica
fields: KServe v0.20 refuses maxReplicas on a canary and derives its pods from the stable's.
*/}}
{{- define "housing.predictorPod" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
serviceAccountName: {{ include "housing.serviceAccountName" $root }}
{{- if not .canary }}
minReplicas: {{ $v.predictor.minReplicas }}
maxReplicas: {{ $v.predictor.maxReplicas }}
{{- with $v.predictor.scaleMetric }}
scaleMetric: {{ . }}
{{- end }}
{{- if gt (int $v.predictor.scaleTarget) 0 }}
scaleTarget: {{ $v.predictor.scaleTarget }}
{{- end }}
{{- end }}
timeout: {{ $v.predictor.timeoutSeconds }}
automountServiceAccountToken: false
# preStop, then REST's drain, then gRPC's (each up to drainSeconds), with 5 s to spare: the
# default 30 s was shorter than preStop + uvicorn's grace, so a slow drain was SIGKILLed
terminationGracePeriodSeconds: {{ add (int $v.predictor.preStopSleepSeconds) (mul 2 (int $v.predictor.drainSeconds)) 5 }}
{{- if $v.monitoring.podAnnotations }}
annotations:
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ $v.predictor.metricsPort | quote }}
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
# Pinned from the recorded registration (.pinned), it also waits for that record — the ConfigMap key
# the predictor's HOUSING_BUNDLE_DIGEST reads — so the predictor container never waits on a missing
# key, and a registration never recorded fails here, saying so, instead of waiting forever.
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
        uri, pin = os.environ["STORAGE_URI"], os.environ.get("PIN_FILE")
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        deadline = time.monotonic() + float(os.environ["WAIT_SECONDS"])
        while True:
            problems = []
            if uri.startswith("s3://"):
                bucket, _, prefix = uri[len("s3://"):].partition("/")
                key = f"{prefix.rstrip('/')}/{MANIFEST}"
                try:
                    s3.head_object(Bucket=bucket, Key=key)
                except Exception as exc:
                    problems.append(f"no s3://{bucket}/{key} yet ({exc})")
            if pin and not (os.path.isfile(pin) and open(pin).read().strip()):
                problems.append(
                    f"no registered digest recorded for {uri} yet (ConfigMap {os.environ['PIN_CONFIGMAP']}, "
                    f"key {os.path.basename(pin)}: the install's training Job writes it once MLflow has "
                    "registered the version; see its log, or give predictor.bundleDigest)"
                )
            if not problems:
                print(f"{uri}: {MANIFEST} present" + (f", registered digest {open(pin).read().strip()}" if pin else ""))
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{uri}: gave up after {os.environ['WAIT_SECONDS']} s: " + "; ".join(problems))
            print("waiting: " + "; ".join(problems), flush=True)
            time.sleep(3)
    # the reason it gave up in the pod's status, not only in this container's log
    terminationMessagePolicy: FallbackToLogsOnError
    env:
      - name: STORAGE_URI
        value: {{ .storageUri | quote }}
      - name: WAIT_SECONDS
        value: {{ $v.predictor.waitForBundleSeconds | quote }}
      {{- if and .pinned (not .digest) }}
      - name: PIN_CONFIGMAP
        value: {{ include "housing.pinConfigMapName" $root | quote }}
      - name: PIN_FILE
        value: {{ printf "%s/%s" (include "housing.pinsDir" $root) (include "housing.pinKey" .storageUri) | quote }}
      {{- end }}
      # the serving user (read-only but for the payload log's prefix)
      {{- include "housing.s3ServingEnv" $root | nindent 6 }}
    resources:
      {{- toYaml $v.tests.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if and .pinned (not .digest) }}
      # the whole ConfigMap, not a subPath: the kubelet updates it when the training Job writes the key
      - name: bundle-pins
        mountPath: {{ include "housing.pinsDir" $root }}
        readOnly: true
      {{- end }}
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
    # pod that no longer accepted connections (seen on the node tier). The hook also makes every
    # answer carry "Connection: close" meanwhile (HOUSING_DRAIN_FILE, predictor/transport/drain.py):
    # a kept-alive client moves to a staying pod instead of losing a request when this one stops
    lifecycle:
      preStop:
        exec:
          command:
            - python
            - -m
            - predictor.transport.drain
            - --seconds
            - {{ $v.predictor.preStopSleepSeconds | quote }}
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
      # /metrics here only: the HTTP port, which routes reach, answers it 404
      - --metrics_port
      - {{ $v.predictor.metricsPort | quote }}
      - --workers
      - {{ include "housing.predictorWorkers" $root | quote }}
      - --max_body_bytes
      - {{ $v.predictor.maxBodyBytes | int64 | quote }}
      - --max_inflight_body_bytes
      - {{ $v.predictor.maxInflightBodyBytes | int64 | quote }}
      - --max_concurrency
      - {{ $v.predictor.maxConcurrency | int64 | quote }}
      {{- if not (kindIs "invalid" $v.predictor.maxQueuedRpcs) }}
      - --max_queued_rpcs
      - {{ $v.predictor.maxQueuedRpcs | int64 | quote }}
      {{- end }}
      - --drain_seconds
      - {{ $v.predictor.drainSeconds | int64 | quote }}
      # per-request log lines (predictor/observe/request_logs.py); errors are logged either way
      - --access_log
      - {{ $v.predictor.accessLog | toString | quote }}
      - --trace_log
      - {{ $v.predictor.traceLog | toString | quote }}
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
      {{- if $v.payloadLog.enabled }}
      - --payload_log_uri
      - {{ include "housing.payloadLogUri" $root | quote }}
      - --payload_log_sample
      - {{ $v.payloadLog.sample | toString | quote }}
      {{- with $v.payloadLog.drop }}
      - --payload_log_drop
      - {{ join "," . | quote }}
      {{- end }}
      {{- end }}
      {{- if $v.rateLimit.trustedProxies }}
      - --trusted_proxies
      - {{ join "," $v.rateLimit.trustedProxies | quote }}
      {{- end }}
      {{- range $v.predictor.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      - name: STORAGE_URI
        value: {{ .storageUri | quote }}
      {{- if .digest }}
      # the registered sha256 of bundle.json: any other bundle under STORAGE_URI is refused
      - name: {{ include "housing.bundleDigestEnv" $root }}
        value: {{ .digest | quote }}
      {{- else if .pinned }}
      # the registered sha256 of bundle.json as the install's training Job recorded it once MLflow
      # registered the version (training/pin.py); until then the kubelet does not start this container
      # (CreateContainerConfigError: couldn't find key ...), and any other bundle.json is refused
      - name: {{ include "housing.bundleDigestEnv" $root }}
        valueFrom:
          configMapKeyRef:
            name: {{ include "housing.pinConfigMapName" $root }}
            key: {{ include "housing.pinKey" .storageUri | quote }}
      {{- end }}
      {{- include "housing.scratchEnv" $root | nindent 6 }}
      {{- if gt (int $v.predictor.preStopSleepSeconds) 0 }}
      - name: HOUSING_DRAIN_FILE
        value: /tmp/housing-draining
      {{- end }}
      {{- if $v.payloadLog.enabled }}
      # the serving user: it may write the payload log's prefix and nothing else
      {{- include "housing.s3ServingEnv" $root | nindent 6 }}
      {{- end }}
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
      - name: metrics
        containerPort: {{ $v.predictor.metricsPort }}
        protocol: TCP
      {{- end }}
    readinessProbe:
      # the model itself, not the server: /v2/health/ready stays 200 when the model is gone
      httpGet:
        path: {{ printf "/v2/models/%s/ready" $v.model.name | quote }}
        port: {{ $v.predictor.httpPort }}
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
  {{- if and (include "housing.standardMode" $root) (gt (int $v.predictor.waitForBundleSeconds) 0) .pinned (not .digest) }}
  - name: bundle-pins
    configMap:
      name: {{ include "housing.pinConfigMapName" $root }}
  {{- end }}
  {{- if $v.auth.existingSecret }}
  - name: api-keys
    secret:
      secretName: {{ $v.auth.existingSecret }}
      defaultMode: 0440
  {{- end }}
{{- end }}

{{/*
The predictor's --workers: predictor.workers when set; else 1 with a rate limit (its token buckets
are per process), else one per CPU of resources.limits.cpu, rounded up ("2" -> 2, 1500m -> 2).
*/}}
{{- define "housing.predictorWorkers" -}}
{{- $v := .Values.predictor -}}
{{- if $v.workers -}}
{{- $v.workers -}}
{{- else if gt (float64 .Values.rateLimit.requestsPerSecond) 0.0 -}}
1
{{- else -}}
{{- $cpu := toString $v.resources.limits.cpu -}}
{{- $milli := 0 -}}
{{- if hasSuffix "m" $cpu -}}
{{- $milli = int64 (trimSuffix "m" $cpu) -}}
{{- else -}}
{{- $milli = int64 (mulf (float64 $cpu) 1000.0) -}}
{{- end -}}
{{- max 1 (div (add $milli 999) 1000) -}}
{{- end -}}
{{- end }}

{{/*
Checks of the autoscaling values against what KServe v0.20 does with them: its Standard-mode HPA
scales on cpu or memory only (any other scaleMetric gives an HPA without a metric), and memory
has no default target.
*/}}
{{- define "housing.checkAutoscaling" -}}
{{- $v := .Values.predictor -}}
{{- if lt (int $v.maxReplicas) (int $v.minReplicas) }}
{{- fail (printf "predictor.maxReplicas (%d) must be at least predictor.minReplicas (%d)" (int $v.maxReplicas) (int $v.minReplicas)) }}
{{- end }}
{{- if and (include "housing.standardMode" .) (has $v.scaleMetric (list "concurrency" "rps")) }}
{{- fail (printf "predictor.scaleMetric %s needs kserve.deploymentMode Knative: KServe's HPA in Standard mode scales on cpu or memory only" $v.scaleMetric) }}
{{- end }}
{{- if and (eq $v.scaleMetric "memory") (le (int $v.scaleTarget) 0) }}
{{- fail "predictor.scaleTarget is required with predictor.scaleMetric memory: KServe sets no default memory target (its HPA would have no metric)" }}
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
{{ include "housing.scratchEnv" . }}
{{- end }}

{{/* Where the predictor writes its payload log (and the quality exporter reads it): payloadLog.uri,
else a prefix of its own in the chart's bucket. */}}
{{- define "housing.payloadLogUri" -}}
{{- .Values.payloadLog.uri | default (printf "s3://%s/payloads" .Values.s3.bucket) }}
{{- end }}

{{/* S3 endpoint and credentials (the chart's Secret or s3.existingSecret) for boto3 and MLflow. */}}
{{- define "housing.s3Env" -}}
{{ include "housing.s3EnvWith" (dict "root" . "secret" (include "housing.s3SecretName" .)) }}
{{- end }}

{{/* The same with the serving user's credentials (housing.s3ServingSecretName). */}}
{{- define "housing.s3ServingEnv" -}}
{{ include "housing.s3EnvWith" (dict "root" . "secret" (include "housing.s3ServingSecretName" .)) }}
{{- end }}

{{/* S3 endpoint and the credentials of the Secret .secret; called with (dict "root" $ "secret" NAME). */}}
{{- define "housing.s3EnvWith" -}}
{{- with .root }}
- name: AWS_ENDPOINT_URL
  value: {{ include "housing.s3EndpointUrl" . | quote }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ include "housing.s3EndpointUrl" . | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
{{- end }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}

{{/*
The champion the InferenceService is to serve, as YAML {storageUri, name, bundleDigest, pinned}. Values, except
after a promotion by `housing rollout` (the runner or by hand): on an upgrade in Standard mode, when
predictor.storageUri still equals what the chart rendered last time (the annotation
rollout.housing.dev/values-storage-uri on the live object), the live predictor's STORAGE_URI,
name and pinned digest stand, so `helm upgrade` (plain or --reuse-values) keeps the promoted model
(predictor.bundleDigest, when given, still pins a URI nothing promoted away from). A new
predictor.storageUri in values is a deliberate change and wins. `helm template` and installs see
no live object: values. pinned: no digest, and HOUSING_BUNDLE_DIGEST is read from the ConfigMap of
recorded registrations (bundle-pins.yaml, training/pin.py).
*/}}
{{- define "housing.champion" -}}
{{- $uri := .Values.predictor.storageUri }}
{{- $name := .Values.predictor.name }}
{{- $digest := .Values.predictor.bundleDigest }}
{{- $livePinned := false }}
{{- if and (not .Release.IsInstall) (include "housing.standardMode" .) }}
{{- $live := lookup "serving.kserve.io/v1beta1" "InferenceService" .Release.Namespace (include "housing.fullname" .) }}
{{- if $live }}
{{- $annotations := (($live.metadata).annotations) | default dict }}
{{- if eq (index $annotations (include "housing.valuesStorageUriKey" .) | default "") .Values.predictor.storageUri }}
{{- $predictor := (($live.spec).predictor) | default dict }}
{{- range $c := $predictor.containers | default list }}
{{- if eq $c.name "kserve-container" }}
{{- range $e := $c.env | default list }}
{{- if and (eq $e.name "STORAGE_URI") $e.value }}
{{- $uri = $e.value }}
{{- $name = $predictor.name | default "" }}
{{- $digest = "" }}
{{- $livePinned = false }}
{{- range $d := $c.env | default list }}
{{- if eq $d.name (include "housing.bundleDigestEnv" $) }}
{{- $digest = $d.value | default "" }}
{{- $livePinned = and (not $d.value) (hasKey ($d.valueFrom | default dict) "configMapKeyRef") }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- /* Nothing promoted since (the live URI is still values'): a digest given in values wins. */}}
{{- if and .Values.predictor.bundleDigest (eq $uri .Values.predictor.storageUri) }}
{{- $digest = .Values.predictor.bundleDigest }}
{{- end }}
{{- /* No digest: pinned from the ConfigMap (housing.pinConfigMapName) when the install's training
       Job records this URI's (an install training it), or it already has (an upgrade: the key is
       there), or the live object pins so (an upgrade while that Job is still training). */}}
{{- $pinned := false }}
{{- if not $digest }}
{{- if .Release.IsInstall }}
{{- $pinned = and .Values.training.enabled (eq $uri (include "housing.trainedUri" .)) }}
{{- else }}
{{- $pins := lookup "v1" "ConfigMap" .Release.Namespace (include "housing.pinConfigMapName" .) }}
{{- $pinned = or $livePinned (hasKey (($pins).data | default dict) (include "housing.pinKey" $uri)) }}
{{- end }}
{{- end }}
storageUri: {{ $uri | quote }}
name: {{ $name | quote }}
bundleDigest: {{ $digest | quote }}
pinned: {{ $pinned }}
{{- end }}

{{/* The ConfigMap of registered digests the predictor pins from (bundle-pins.yaml, training/pin.py). */}}
{{- define "housing.pinConfigMapName" -}}
{{- printf "%s-bundle-pins" (include "housing.fullname" .) }}
{{- end }}

{{/* Where the wait-for-bundle init container sees that ConfigMap (one file per recorded key). */}}
{{- define "housing.pinsDir" -}}
/etc/housing/pins
{{- end }}

{{/* The ServiceAccount (and Role) of the install's training Job, which writes that ConfigMap. */}}
{{- define "housing.pinWriterName" -}}
{{- printf "%s-train-install" (include "housing.fullname" .) }}
{{- end }}

{{/* The label of that Job's pod: its egress to the API server (networkpolicy-egress.yaml). */}}
{{- define "housing.pinWriterLabel" -}}
housing.dev/bundle-pin-writer
{{- end }}

{{/* The ConfigMap key of a bundle URI: training.pin.pin_key (a render test keeps them equal). */}}
{{- define "housing.pinKey" -}}
{{- regexReplaceAll "[^-._a-zA-Z0-9]" (trimSuffix "/" .) "_" }}
{{- end }}

{{/* The bundle URI the install's training Job writes and registers. */}}
{{- define "housing.trainedUri" -}}
{{- .Values.training.bundleUri | default .Values.predictor.storageUri }}
{{- end }}

{{/* The predictor's variable pinning bundle.json's sha256 (common.config.BUNDLE_DIGEST_ENV). */}}
{{- define "housing.bundleDigestEnv" -}}
HOUSING_BUNDLE_DIGEST
{{- end }}

{{/* Annotation on the InferenceService: predictor.storageUri as the chart last rendered it. */}}
{{- define "housing.valuesStorageUriKey" -}}
rollout.housing.dev/values-storage-uri
{{- end }}
