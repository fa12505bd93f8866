{{/*
The training pod template (a Job's spec.template): the install's Job and the CronJob's runs share it, so
the NetworkPolicies, the wait for MLflow/the bucket and the environment are the same for both.
Called with (dict "root" $ "bundleUri" URI "pin" BOOL): a non-empty bundleUri is the exact destination
(HOUSING_BUNDLE_URI); empty = training's own <bucket>/<model>/<UTC time>-<random> version, unique
per run, so two runs never collide on a destination. pin (the install's Job): once registered, the
run records the digest in the ConfigMap the predictor pins from (training/pin.py), as the
ServiceAccount <fullname>-train-install, whose token only this pod mounts.
*/}}
{{- define "housing.trainingPod" -}}
{{- $root := .root -}}
{{- $bundleUri := .bundleUri -}}
{{- $pin := .pin -}}
{{- with $root -}}
metadata:
  labels:
    {{- include "housing.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: training
    {{- if $pin }}
    {{ include "housing.pinWriterLabel" . }}: "true"
    {{- end }}
spec:
  {{- if $pin }}
  serviceAccountName: {{ include "housing.pinWriterName" . }}
  # the API server: patch the ConfigMap {{ include "housing.pinConfigMapName" . }} and nothing else (bundle-pins.yaml)
  automountServiceAccountToken: true
  {{- else }}
  serviceAccountName: {{ include "housing.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- end }}
  restartPolicy: Never
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  initContainers:
    # MLflow and the bucket must answer before training starts: the CLI fails fast (exit 2)
    # when they do not, and on a fresh install the dev stack starts alongside this Job.
    - name: wait-for-services
      image: {{ include "housing.trainingImage" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command:
        - python
        - -c
        - |
          import os, time, urllib.request
          import boto3
          deadline = time.monotonic() + float(os.environ["WAIT_SECONDS"])
          mlflow = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
          bucket = os.environ["HOUSING_BUNDLE_ROOT"].removeprefix("s3://").split("/")[0]
          s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
          while True:
              problems = []
              if mlflow.startswith("http"):
                  try:
                      urllib.request.urlopen(mlflow + "/health", timeout=5).read()
                  except Exception as exc:
                      problems.append(f"MLflow {mlflow}: {exc}")
              try:
                  s3.head_bucket(Bucket=bucket)
              except Exception as exc:
                  problems.append(f"bucket {bucket}: {exc}")
              if not problems:
                  print("MLflow and the bucket answer")
                  break
              if time.monotonic() > deadline:
                  raise SystemExit("gave up waiting: " + "; ".join(problems))
              print("waiting: " + "; ".join(problems), flush=True)
              time.sleep(3)
      env:
        {{- include "housing.trainingEnv" . | nindent 8 }}
        - name: WAIT_SECONDS
          value: {{ .Values.training.waitForServicesSeconds | quote }}
      resources:
        {{- toYaml .Values.tests.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  containers:
    - name: training
      image: {{ include "housing.trainingImage" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: ["python", "-m", "training"]
      {{- with .Values.training.args }}
      args:
        {{- range . }}
        - {{ . | quote }}
        {{- end }}
      {{- end }}
      env:
        {{- include "housing.trainingEnv" . | nindent 8 }}
        {{- with $bundleUri }}
        - name: HOUSING_BUNDLE_URI
          value: {{ . | quote }}
        {{- end }}
        {{- if $pin }}
        # training/pin.py: the registered digest under the bundle URI's key
        - name: HOUSING_PIN_CONFIGMAP
          value: {{ include "housing.pinConfigMapName" . | quote }}
        - name: HOUSING_PIN_NAMESPACE
          value: {{ .Release.Namespace | quote }}
        {{- end }}
      resources:
        {{- toYaml .Values.training.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    {{- include "housing.tmpVolume" . | nindent 4 }}
{{- end }}
{{- end }}
