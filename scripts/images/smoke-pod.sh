#!/usr/bin/env bash
# The images working together as the chart uses them, sharing one network namespace without
# network (only loopback; like a pod, via --network container:<minio>): MinIO serves S3, the project image creates a bucket and uploads a bundle with boto3
# (like the chart's bucket Job), and KServe's storage-initializer downloads s3://… to /mnt/models.
# Everything runs as non-root with a read-only root filesystem. Removes its containers when done.
# Usage: scripts/images/smoke-pod.sh   (after scripts/images/build.sh project storage-initializer minio)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
podman_setup
[[ -f "$IMAGES_INDEX" ]] || die "no $IMAGES_INDEX (run scripts/images/build.sh)"
ref_of() { awk -v p="$1" 'index($1, p) == 1 {print $1; exit}' "$IMAGES_INDEX"; }
minio="$(ref_of localhost/housing-minio:)"; project="$(ref_of docker.io/library/housing:)"
init="$(ref_of localhost/kserve-storage-initializer:)"
[[ -n "$minio" && -n "$project" && -n "$init" ]] || die "build minio, project and storage-initializer first"

pod="housing-smoke-$$"
data="$(mktemp -d "$IMAGES_WORK/minio-data.XXXXXX")"; chmod 1777 "$data"  # on disk, like an emptyDir
cleanup() { pm rm -f "$pod-minio" >/dev/null 2>&1 || true; rm -rf "$data"; }
trap cleanup EXIT
user=smokeuser pass=smokepassword1
common=(--read-only --cap-drop ALL --security-opt no-new-privileges "--tmpfs=/tmp:rw,mode=1777")
s3env=(-e "AWS_ACCESS_KEY_ID=$user" -e "AWS_SECRET_ACCESS_KEY=$pass" -e AWS_DEFAULT_REGION=us-east-1
       -e AWS_ENDPOINT_URL=http://127.0.0.1:9000 -e S3_USE_HTTPS=0 -e S3_VERIFY_SSL=0)

pm run -d --name "$pod-minio" --network none "${common[@]}" --user "$IMAGE_UID:$IMAGE_UID" -v "$data:/data" \
  -e HOME=/tmp -e MINIO_ROOT_USER=$user -e MINIO_ROOT_PASSWORD=$pass "$minio" server /data --address :9000 >/dev/null
common+=(--network "container:$pod-minio")
log "minio started ($pod-minio); creating bucket and bundle with $project"
pm run --rm "${common[@]}" --user "$IMAGE_UID:$IMAGE_UID" "${s3env[@]}" --entrypoint python "$project" -c '
import json, time, boto3
s3 = boto3.client("s3")
for attempt in range(60):
    try:
        s3.create_bucket(Bucket="models"); break
    except Exception as exc:
        if attempt == 59: raise
        time.sleep(1)
s3.put_object(Bucket="models", Key="housing/1/bundle.json", Body=json.dumps({"ok": True}).encode())
s3.put_object(Bucket="models", Key="housing/1/sub/model.ubj", Body=b"\x00" * 1024)
print("uploaded", [o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]])' >&2
log "downloading s3://models/housing/1 with $init"
out="$(pm run --rm "${common[@]}" "${s3env[@]}" --tmpfs /mnt/models:rw,mode=1777 --entrypoint sh "$init" -c \
  '/storage-initializer/scripts/initializer-entrypoint s3://models/housing/1 /mnt/models && cd /mnt/models && find . -type f | sort && cat bundle.json' 2>&1)" \
  || { echo "$out" >&2; die "storage-initializer failed"; }
echo "$out" >&2
if ! grep -qx './sub/model.ubj' <<<"$out" || ! grep -q '"ok": true' <<<"$out"; then die "unexpected download: $out"; fi
log "smoke ok: minio + project (boto3) + storage-initializer (s3://)"
