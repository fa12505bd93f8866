#!/usr/bin/env bash
# Create k8s/s3-credentials.env (MinIO's admin) and k8s/s3-serving-credentials.env (the serving
# user the bucket Job creates), git-ignored, with random credentials for `kubectl apply -k k8s/`.
# Keeps an existing file (idempotent).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rand() { python3 -c "import secrets,string,sys; a=string.ascii_letters+string.digits; print(''.join(secrets.choice(a) for _ in range(int(sys.argv[1]))), end='')" "$1"; }
umask 077
for name in s3-credentials s3-serving-credentials; do
  FILE="${REPO_ROOT}/k8s/${name}.env"
  if [[ -f "$FILE" ]]; then
    echo "k8s-credentials.sh: ${FILE} exists, keeping it" >&2
    continue
  fi
  printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n' "$(rand 20)" "$(rand 40)" > "$FILE"
  echo "k8s-credentials.sh: wrote ${FILE}" >&2
done
