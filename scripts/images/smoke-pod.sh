#!/usr/bin/env bash
# The images working together as the chart uses them, sharing one network namespace without
# network (only loopback; like a pod, via --network container:<minio>): MinIO serves S3, the
# training image creates a bucket and uploads a bundle with boto3 (like the chart's bucket Job),
# and KServe's storage-initializer downloads s3://… to /mnt/models. With a real bundle directory
# (e.g. one `housing train` wrote), also: the training image runs an MLflow server (like the
# dev-stack MLflow) and registers that bundle as models:/housing@champion, and the serving image
# resolves models:/ over MLflow's REST API, downloads s3:// itself (kserve-storage), verifies and
# serves the bundle, and answers a V1 request. Everything runs as non-root with a read-only root
# filesystem. Removes its containers when done.
# Usage: scripts/images/smoke-pod.sh [BUNDLE_DIR]
#   (after scripts/images/build.sh serving training storage-initializer minio)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
podman_setup
bundle="${1:-}"
[[ -z "$bundle" || -f "$bundle/bundle.json" ]] || die "$bundle holds no bundle.json"
[[ -f "$IMAGES_INDEX" ]] || die "no $IMAGES_INDEX (run scripts/images/build.sh)"
ref_of() { awk -v p="$1" 'index($1, p) == 1 {print $1; exit}' "$IMAGES_INDEX"; }
minio="$(ref_of localhost/housing-minio:)"; init="$(ref_of localhost/kserve-storage-initializer:)"
training="$(ref_of docker.io/library/housing-training:)"; serving="$(ref_of docker.io/library/housing-serving:)"
[[ -n "$minio" && -n "$training" && -n "$init" ]] || die "build minio, training and storage-initializer first"
[[ -z "$bundle" || -n "$serving" ]] || die "build serving first"

pod="housing-smoke-$$"
data="$(mktemp -d "$IMAGES_WORK/minio-data.XXXXXX")"; chmod 1777 "$data"  # on disk, like an emptyDir
src="$(mktemp -d "$IMAGES_WORK/bundle.XXXXXX")"; chmod 0755 "$src"
cleanup() { pm rm -f "$pod-serving" "$pod-mlflow" "$pod-minio" >/dev/null 2>&1 || true; rm -rf "$data" "$src"; }
trap cleanup EXIT
if [[ -n "$bundle" ]]; then  # a copy the image's user can read
  cp -r "$bundle/." "$src/" && chmod -R a+rX "$src"
else
  echo '{"ok": true}' > "$src/bundle.json" && mkdir "$src/sub" && head -c 1024 /dev/zero > "$src/sub/model.ubj"
  chmod -R a+rX "$src"
fi
user=smokeuser pass=smokepassword1
common=(--read-only --cap-drop ALL --security-opt no-new-privileges "--tmpfs=/tmp:rw,mode=1777")
s3env=(-e "AWS_ACCESS_KEY_ID=$user" -e "AWS_SECRET_ACCESS_KEY=$pass" -e AWS_DEFAULT_REGION=us-east-1
       -e AWS_ENDPOINT_URL=http://127.0.0.1:9000 -e S3_USE_HTTPS=0 -e S3_VERIFY_SSL=0)

pm run -d --name "$pod-minio" --network none "${common[@]}" --user "$IMAGE_UID:$IMAGE_UID" -v "$data:/data" \
  -e HOME=/tmp -e MINIO_ROOT_USER=$user -e MINIO_ROOT_PASSWORD=$pass "$minio" server /data --address :9000 >/dev/null
common+=(--network "container:$pod-minio")
log "minio started ($pod-minio); creating bucket and uploading $src with $training"
pm run --rm "${common[@]}" --user "$IMAGE_UID:$IMAGE_UID" "${s3env[@]}" -v "$src:/src:ro" --entrypoint python "$training" -c '
import os, time, boto3
s3 = boto3.client("s3")
for attempt in range(60):
    try:
        s3.create_bucket(Bucket="models"); break
    except Exception as exc:
        if attempt == 59: raise
        time.sleep(1)
for root, _, files in os.walk("/src"):
    for name in files:
        path = os.path.join(root, name)
        s3.upload_file(path, "models", "housing/1/" + os.path.relpath(path, "/src"))
print("uploaded", [o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]])' >&2
log "downloading s3://models/housing/1 with $init"
out="$(pm run --rm "${common[@]}" "${s3env[@]}" --tmpfs /mnt/models:rw,mode=1777 --entrypoint sh "$init" -c \
  '/storage-initializer/scripts/initializer-entrypoint s3://models/housing/1 /mnt/models && cd /mnt/models && find . -type f | sort && cat bundle.json' 2>&1)" \
  || { echo "$out" >&2; die "storage-initializer failed"; }
echo "$out" >&2
want="$(cd "$src" && find . -type f | sort)"
[[ "$(grep '^\./' <<<"$out")" == "$want" ]] || die "storage-initializer: downloaded files differ from $src: $out"
log "smoke ok: minio + training (boto3) + storage-initializer (s3://)"
[[ -n "$bundle" ]] || exit 0

log "MLflow server from $training; registering s3://models/housing/1 as models:/housing@champion"
pm run -d --name "$pod-mlflow" "${common[@]}" --user "$IMAGE_UID:$IMAGE_UID" -e MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
  --entrypoint mlflow "$training" server --host 127.0.0.1 --port 5000 --workers 1 \
  --backend-store-uri sqlite:////tmp/mlflow.db >/dev/null
digest="$(sha256sum "$src/bundle.json" | cut -d' ' -f1)"
pm run --rm "${common[@]}" --user "$IMAGE_UID:$IMAGE_UID" -e MLFLOW_TRACKING_URI=http://127.0.0.1:5000 \
  --entrypoint python "$training" -c "
import time, urllib.request
for attempt in range(180):
    try:
        urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=2); break
    except Exception:
        if attempt == 179: raise
        time.sleep(1)
from mlflow import MlflowClient
c = MlflowClient()
c.create_registered_model('housing')
uri = 's3://models/housing/1'
mv = c.create_model_version('housing', source=uri, tags={'bundle_uri': uri, 'bundle_digest': '$digest'})
c.set_registered_model_alias('housing', 'champion', mv.version)
print('registered version', mv.version)" >&2
log "serving models:/housing@champion with $serving (MLflow REST, then kserve-storage s3://)"
pm run -d --name "$pod-serving" "${common[@]}" --user "$IMAGE_UID:$IMAGE_UID" "${s3env[@]}" \
  -e MLFLOW_TRACKING_URI=http://127.0.0.1:5000 "$serving" --model_name housing \
  --storage_uri models:/housing@champion >/dev/null
out="$(pm run --rm "${common[@]}" --user "$IMAGE_UID:$IMAGE_UID" --entrypoint python "$serving" -c '
import json, time, urllib.request
for attempt in range(240):
    try:
        urllib.request.urlopen("http://127.0.0.1:8080/v2/models/housing/ready", timeout=2); break
    except Exception:
        if attempt == 239: raise SystemExit("the predictor did not turn ready")
        time.sleep(1)
meta = json.load(urllib.request.urlopen("http://127.0.0.1:8080/v2/models/housing"))
row = {i["name"]: ("x" if i["datatype"] == "BYTES" else 1) for i in meta["inputs"]}
req = urllib.request.Request("http://127.0.0.1:8080/v1/models/housing:predict",
                             data=json.dumps({"instances": [row]}).encode(), headers={"Content-Type": "application/json"})
print(json.dumps({"model": meta["name"], "answer": json.load(urllib.request.urlopen(req))}))' 2>&1)" \
  || { pm logs "$pod-serving" 2>&1 | tail -30 >&2; die "serving: no answer: $out"; }
log "serving answered: $out"
grep -q '"predictions": \[' <<<"$out" || die "serving: unexpected answer: $out"
log "smoke ok: training (MLflow server) + serving (models:/ over REST, s3:// by kserve-storage, V1)"
