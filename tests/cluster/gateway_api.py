"""Validate rendered Gateway API objects against the standard-channel CRDs' own schemas.

The CRDs are the ones the node tier installs (``gateway-api-src``, linked by
scripts/tools/kserve.sh at scripts/kind/lib.sh's version); unknown fields are refused (strict, as
the API server's field validation is), CEL rules are left to a real API server (the node tier).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .apiserver import ensure_namespace
from .conftest import TOOLS_DIR, _missing

GROUP = "gateway.networking.k8s.io"


def crd_dir() -> Path:
    path = TOOLS_DIR / "gateway-api-src" / "config" / "crd" / "standard"
    if not path.is_dir():
        _missing("the Gateway API CRDs (gateway-api-src)", "bash scripts/tools/kserve.sh")
    return path


@cache
def _schemas() -> dict[tuple[str, str], dict]:
    out = {}
    for file in sorted(crd_dir().glob("*.yaml")):
        crd = yaml.safe_load(file.read_text())
        if crd.get("kind") != "CustomResourceDefinition" or crd["spec"]["group"] != GROUP:
            continue
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                out[(crd["spec"]["names"]["kind"], version["name"])] = _strict(version["schema"]["openAPIV3Schema"])
    return out


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists properties."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def validate(obj: dict) -> None:
    """Fail the test when ``obj`` (a Gateway API object) does not match its CRD's schema."""
    version = obj["apiVersion"].split("/", 1)[1]
    schema = _schemas().get((obj["kind"], version))
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    if schema is None:
        pytest.fail(f"{where}: no served {obj['apiVersion']} {obj['kind']} in the standard-channel CRDs")
    body = {k: v for k, v in obj.items() if k != "metadata"}  # metadata is the API server's ObjectMeta
    try:
        jsonschema.validate(body, {**schema, "properties": {**schema["properties"], "metadata": {}}})
    except jsonschema.ValidationError as exc:
        pytest.fail(f"{where} invalid: {exc.message} at {list(exc.absolute_path)}")


def install_crds(apiserver: Any, namespace: str) -> Any:
    """Create ``namespace`` and the standard-channel CRDs on a test API server; a CustomObjectsApi once served."""
    import time

    from kubernetes import client

    api_client = apiserver.api_client()
    ensure_namespace(api_client, namespace)
    ext = client.ApiextensionsV1Api(api_client)
    for file in sorted(crd_dir().glob("*.yaml")):
        try:
            ext.create_custom_resource_definition(yaml.safe_load(file.read_text()))
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    custom = client.CustomObjectsApi(api_client)
    deadline = time.monotonic() + 60
    while True:  # Established, then served
        try:
            for plural in ("httproutes", "grpcroutes", "gateways"):
                custom.list_namespaced_custom_object(GROUP, "v1", namespace, plural)
            return custom
        except client.ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
