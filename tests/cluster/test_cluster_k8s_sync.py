"""k8s/ is generated from the chart by `make manifests`; it must equal a fresh rendering."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from .conftest import REPO

pytestmark = pytest.mark.cluster

GENERATED = ("housing.yaml", "kustomization.yaml", "namespace.yaml", ".gitignore")


def test_k8s_manifests_in_sync(helm_bin, tmp_path):
    env = {**os.environ, "HELM": str(helm_bin)}
    result = subprocess.run(
        ["bash", str(REPO / "scripts/kind/manifests.sh"), str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    for name in GENERATED:
        committed = REPO / "k8s" / name
        assert committed.is_file(), f"k8s/{name} missing: run `make manifests`"
        assert committed.read_text() == (tmp_path / name).read_text(), f"k8s/{name} is stale: run `make manifests`"


def test_kustomization_builds(kubectl_bin, tmp_path):
    for name in GENERATED:
        (tmp_path / name).write_text((REPO / "k8s" / name).read_text())
    for name in ("s3-credentials.env", "s3-serving-credentials.env"):  # MinIO's admin, the serving user
        (tmp_path / name).write_text("AWS_ACCESS_KEY_ID=test\nAWS_SECRET_ACCESS_KEY=test-secret\n")
    result = subprocess.run([str(kubectl_bin), "kustomize", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "Secret", "InferenceService", "Job", "Role", "RoleBinding"} <= kinds
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    assert set(secrets) == {"housing-s3", "housing-s3-serving"}
    for secret in secrets.values():
        assert secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"].endswith(":9000")
    assert all(o["metadata"].get("namespace", "housing") == "housing" for o in objects if o["kind"] != "Namespace")
