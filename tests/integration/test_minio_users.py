"""housing.minio_users against a real MinIO: the serving user reads the bucket, writes only the
payload log's prefix, and can neither overwrite nor delete a bundle."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from common.config import DEFAULT_BUCKET
from housing import minio_users

pytestmark = pytest.mark.integration

SERVING_KEY, SERVING_SECRET = "housing-serving-test", "s3cr3t-serving-0123456789"


def _client(minio, key: str, secret: str):
    config = Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10)
    return boto3.client(
        "s3", endpoint_url=minio.endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
        region_name=minio.region, config=config,
    )  # fmt: skip


def _denied(call) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"]


def test_the_serving_user_reads_bundles_and_writes_only_its_payload_prefix(minio, monkeypatch, capsys):
    root = minio.s3()
    root.put_object(Bucket=DEFAULT_BUCKET, Key="users-test/1/bundle.json", Body=b'{"files": {}}')
    monkeypatch.setenv("AWS_ENDPOINT_URL", minio.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", minio.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", minio.secret_key)
    monkeypatch.setenv("SERVING_ACCESS_KEY", SERVING_KEY)
    monkeypatch.setenv("SERVING_SECRET_KEY", SERVING_SECRET)
    argv = ["--bucket", DEFAULT_BUCKET, "--write-prefix", f"{DEFAULT_BUCKET}/payloads"]
    assert minio_users.main(argv) == 0
    assert minio_users.main(argv) == 0  # an upgrade runs it again
    print(capsys.readouterr().out)

    serving = _client(minio, SERVING_KEY, SERVING_SECRET)
    listed = serving.list_objects_v2(Bucket=DEFAULT_BUCKET, Prefix="users-test/1/")
    assert [o["Key"] for o in listed["Contents"]] == ["users-test/1/bundle.json"]
    assert serving.get_object(Bucket=DEFAULT_BUCKET, Key="users-test/1/bundle.json")["Body"].read()
    serving.put_object(Bucket=DEFAULT_BUCKET, Key="payloads/part-0.parquet", Body=b"rows")  # the payload log
    key = "users-test/1/bundle.json"
    assert _denied(lambda: serving.put_object(Bucket=DEFAULT_BUCKET, Key=key, Body=b"{}")) == "AccessDenied"
    assert _denied(lambda: serving.delete_object(Bucket=DEFAULT_BUCKET, Key=key)) == "AccessDenied"
    assert _denied(lambda: serving.delete_object(Bucket=DEFAULT_BUCKET, Key="payloads/part-0.parquet")) == (
        "AccessDenied"
    )
    assert _denied(lambda: serving.create_bucket(Bucket="elsewhere")) == "AccessDenied"
    assert root.get_object(Bucket=DEFAULT_BUCKET, Key=key)["Body"].read() == b'{"files": {}}'


def test_a_wrong_admin_secret_is_refused_with_minios_answer(minio):
    admin = minio_users.MinioAdmin(minio.endpoint, minio.access_key, "not-the-secret")
    with pytest.raises(minio_users.MinioAdminError, match="add-canned-policy: HTTP 403"):
        minio_users.ensure_serving_user(admin, "someone", "s3cr3t-someone-0123", DEFAULT_BUCKET, [], "p")


def test_missing_environment_is_named(monkeypatch, capsys):
    for name in ("AWS_ENDPOINT_URL", "SERVING_ACCESS_KEY", "SERVING_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert minio_users.main(["--bucket", DEFAULT_BUCKET]) == 2
    assert "SERVING_ACCESS_KEY" in capsys.readouterr().err


def test_a_write_prefix_needs_a_prefix():
    with pytest.raises(ValueError, match="needs a prefix"):
        minio_users.serving_policy(DEFAULT_BUCKET, [DEFAULT_BUCKET])
