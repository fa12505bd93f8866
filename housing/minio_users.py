"""A MinIO user with only what serving needs: read the bucket, write the payload log's prefix.

The chart's bucket Job (dev-stack MinIO) runs ``python -m housing.minio_users`` with the root
credentials: it creates the user named by ``SERVING_ACCESS_KEY`` / ``SERVING_SECRET_KEY`` (the
chart's serving Secret), a canned policy of its own and attaches it. The storage-initializer, the
``wait-for-bundle`` init container and the predictor's payload log then run with that user, so a
compromised predictor pod cannot change a bundle (the root user stays with training and MLflow).

MinIO's admin API (``/minio/admin/v3``) is signed like S3 (SigV4, service ``s3``); the body that
carries the new user's secret is encrypted with the caller's secret key the way ``madmin-go``'s
``EncryptData`` does it in FIPS mode (PBKDF2-SHA256, 8192 rounds → AES-256-GCM in ``sio`` fragments),
which every MinIO server decrypts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
from typing import Any
from urllib.parse import quote

#: madmin-go: the PBKDF2 + AES-GCM algorithm id, its rounds, and sio-go's fragment size.
_PBKDF2_AES_GCM = 0x02
_PBKDF2_ROUNDS = 8192
_FRAGMENT = 1 << 14


class MinioAdminError(RuntimeError):
    """The admin API refused a call (the message names the call and MinIO's answer)."""


def encrypt(payload: bytes, password: str) -> bytes:
    """``payload`` as madmin-go's ``EncryptData`` writes it: salt | id | nonce | sio fragments.

    Each fragment of up to 16 KiB is sealed with the nonce followed by its 1-based number
    (little-endian); its associated data is 0x00 (0x80 for the last) and the tag of an empty
    message sealed with fragment number 0 (sio-go's stream construction).
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt, nonce = secrets.token_bytes(32), secrets.token_bytes(8)
    aead = AESGCM(hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_ROUNDS, 32))
    header_tag = aead.encrypt(nonce + bytes(4), b"", None)
    chunks = [payload[i : i + _FRAGMENT] for i in range(0, len(payload), _FRAGMENT)] or [b""]
    out = [salt, bytes([_PBKDF2_AES_GCM]), nonce]
    for number, chunk in enumerate(chunks, start=1):
        flag = b"\x80" if number == len(chunks) else b"\x00"
        out.append(aead.encrypt(nonce + number.to_bytes(4, "little"), chunk, flag + header_tag))
    return b"".join(out)


def serving_policy(bucket: str, write_prefixes: list[str] = ()) -> dict[str, Any]:
    """Read (get, list) on ``bucket``; put only under each of ``write_prefixes`` (``bucket/prefix``)."""
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
        },
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/*"]},
    ]
    for where in write_prefixes:
        target = where.removeprefix("s3://").strip("/")
        if "/" not in target:
            raise ValueError(f"write prefix {where!r}: needs a prefix under its bucket (bucket/prefix)")
        statements.append({"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"arn:aws:s3:::{target}/*"]})
    return {"Version": "2012-10-17", "Statement": statements}


class MinioAdmin:
    """The few admin calls the chart needs, signed with the root (or an admin) user's keys."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1") -> None:
        self.endpoint = endpoint.rstrip("/")
        self.access_key, self.secret_key, self.region = access_key, secret_key, region

    def _call(self, method: str, path: str, query: dict[str, str], body: bytes) -> bytes:
        import httpx
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
        url = f"{self.endpoint}/minio/admin/v3/{path}?{qs}"
        request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/octet-stream"})
        request.headers["X-Amz-Content-Sha256"] = hashlib.sha256(body).hexdigest()
        SigV4Auth(Credentials(self.access_key, self.secret_key), "s3", self.region).add_auth(request)
        answer = httpx.request(method, url, content=body, headers=dict(request.headers.items()), timeout=30)
        if answer.status_code >= 300:
            raise MinioAdminError(f"MinIO admin {path}: HTTP {answer.status_code}: {answer.text[:300]}")
        return answer.content

    def add_user(self, access_key: str, secret_key: str) -> None:
        """Create (or reset) an enabled user."""
        body = json.dumps({"secretKey": secret_key, "status": "enabled"}).encode()
        self._call("PUT", "add-user", {"accessKey": access_key}, encrypt(body, self.secret_key))

    def add_policy(self, name: str, document: dict[str, Any]) -> None:
        """Create or replace the canned policy ``name``."""
        self._call("PUT", "add-canned-policy", {"name": name}, json.dumps(document).encode())

    def attach(self, policy: str, user: str) -> None:
        """Make ``policy`` the user's policy."""
        query = {"policyName": policy, "userOrGroup": user, "isGroup": "false"}
        self._call("PUT", "set-user-or-group-policy", query, b"")


def ensure_serving_user(
    admin: MinioAdmin, access_key: str, secret_key: str, bucket: str, write_prefixes: list[str], policy: str
) -> dict[str, Any]:
    """The serving user with exactly :func:`serving_policy` (idempotent: an upgrade re-applies it)."""
    if access_key == admin.access_key:
        raise ValueError("the serving user must not be the admin user")
    document = serving_policy(bucket, write_prefixes)
    admin.add_policy(policy, document)
    admin.add_user(access_key, secret_key)
    admin.attach(policy, access_key)
    return document


def main(argv: list[str] | None = None) -> int:
    """``python -m housing.minio_users --bucket B [--write-prefix bucket/prefix] [--policy NAME]``.

    Admin keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the endpoint from AWS_ENDPOINT_URL,
    the serving user's keys from SERVING_ACCESS_KEY / SERVING_SECRET_KEY.
    """
    parser = argparse.ArgumentParser(prog="python -m housing.minio_users", description=main.__doc__)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--write-prefix", action="append", default=[], help="bucket/prefix the user may write")
    parser.add_argument("--policy", default="housing-serving")
    args = parser.parse_args(argv)
    env = os.environ
    missing = [k for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not env.get(k)]
    missing += [k for k in ("SERVING_ACCESS_KEY", "SERVING_SECRET_KEY") if not env.get(k)]
    if missing:
        print(f"minio_users: missing environment: {', '.join(missing)}", file=sys.stderr)
        return 2
    admin = MinioAdmin(
        env["AWS_ENDPOINT_URL"],
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
        env.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
    try:
        document = ensure_serving_user(
            admin, env["SERVING_ACCESS_KEY"], env["SERVING_SECRET_KEY"], args.bucket, args.write_prefix, args.policy
        )
    except (MinioAdminError, ValueError) as exc:
        print(f"minio_users: {exc}", file=sys.stderr)
        return 1
    print(f"serving user ready with policy {args.policy}: {json.dumps(document)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
