"""Shared plumbing of the KServe backends: JSON patches, concurrency-safe writes, status parsing.

Every write is a JSON patch (RFC 6902) whose first operation is
``{"op": "test", "path": "/metadata/resourceVersion", "value": <what we read>}``: if another
writer changed the InferenceService in between, the API server rejects the patch and we re-read
and rebuild the patch from the fresh object (bounded retries). What a real kube-apiserver
(v1.35, checked in tests/cluster/test_cluster_apiserver.py) answers to a failed ``test`` is a bare
``422 Invalid`` whose message is only "the server rejected our request due to an error in our
request" (no path, no ``details``: the same answer as for any other op that cannot apply), so a
422 counts as a conflict only when a re-read shows the resourceVersion moved; 409 always does.
Before sending, the patch is applied locally and the resulting object is validated strictly
against the kserve SDK models; ``dry_run`` stops there and prints both. Writes go under the field
manager ``housing-rollout``; what one took from a server-side applier (helm 4) is handed back to it
right after (:mod:`rollout.backends.field_owners`).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from common.config import BUNDLE_DIGEST_ENV
from common.kube import load_config
from rollout.backends import field_owners
from rollout.backends.base import Prepared, RolloutStatus
from rollout.errors import ConflictError, RolloutError
from rollout.validate import validate_isvc

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
#: Annotation where the backends remember the champion's storage URI (Serverless keeps one spec).
ANNOTATION_CHAMPION_URI = "rollout.housing.dev/champion-storage-uri"
ANNOTATION_REASON = "rollout.housing.dev/last-rollback-reason"
MAX_RETRIES = 5

Op = dict[str, Any]


def escape(token: str) -> str:
    """One JSON-pointer reference token (RFC 6901): ``~`` → ``~0``, ``/`` → ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _walk(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        doc = doc[int(token)] if isinstance(doc, list) else doc[token]
    return doc


def apply_patch(obj: dict, ops: list[Op]) -> dict:
    """Apply a JSON patch (add, remove, replace, test) to a copy of ``obj``, as the API server would."""
    doc = copy.deepcopy(obj)
    for op in ops:
        tokens = [_unescape(t) for t in op["path"].split("/")[1:]]
        parent = _walk(doc, tokens[:-1])
        last = tokens[-1]
        kind = op["op"]
        if kind == "test":
            actual = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if actual != op["value"]:
                raise ConflictError(f"test failed at {op['path']}: {actual!r} != {op['value']!r}")
        elif kind == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
            else:
                parent[last] = copy.deepcopy(op["value"])
        elif kind == "replace":
            if isinstance(parent, list):
                parent[int(last)] = copy.deepcopy(op["value"])
            else:
                if last not in parent:
                    raise RolloutError(f"replace of a missing path {op['path']}")
                parent[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        else:
            raise RolloutError(f"unsupported patch op {kind!r}")
    return doc


def storage_uri(predictor: dict) -> str | None:
    """The storage URI of a predictor spec: ``model.storageUri`` or a container's STORAGE_URI env."""
    model = predictor.get("model")
    if isinstance(model, dict) and model.get("storageUri"):
        return model["storageUri"]
    for container in predictor.get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == "STORAGE_URI":
                return env.get("value")
    return None


def storage_uri_ops(predictor: dict, base: str, uri: str) -> list[Op]:
    """Ops that set the storage URI of the predictor at JSON pointer ``base``."""
    model = predictor.get("model")
    if isinstance(model, dict):
        op = "replace" if "storageUri" in model else "add"
        return [{"op": op, "path": f"{base}/model/storageUri", "value": uri}]
    for ci, container in enumerate(predictor.get("containers") or []):
        for ei, env in enumerate(container.get("env") or []):
            if env.get("name") == "STORAGE_URI":
                return [{"op": "replace", "path": f"{base}/containers/{ci}/env/{ei}/value", "value": uri}]
    raise RolloutError("the predictor has neither model.storageUri nor a STORAGE_URI env to point at the challenger")


def with_storage_uri(predictor: dict, uri: str) -> dict:
    """A copy of ``predictor`` serving ``uri``."""
    return apply_patch({"p": predictor}, storage_uri_ops(predictor, "/p", uri))["p"]


def check_digest(digest: str | None) -> str | None:
    """``digest`` as a lowercase sha256 hex string (None stays None), or a RolloutError."""
    if digest is None or digest == "":
        return None
    value = digest.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise RolloutError(f"bundle digest must be a sha256 (64 hex digits), got {digest!r}")
    return value


def _bundle_holder(predictor: dict) -> tuple[str, dict]:
    """(relative pointer, spec) of what runs the bundle: ``model``, else the container with STORAGE_URI."""
    model = predictor.get("model")
    if isinstance(model, dict):
        return "/model", model
    for ci, container in enumerate(predictor.get("containers") or []):
        if any(env.get("name") == "STORAGE_URI" for env in container.get("env") or []):
            return f"/containers/{ci}", container
    raise RolloutError("the predictor has neither model.storageUri nor a STORAGE_URI env to point at the challenger")


def bundle_digest(predictor: dict) -> str | None:
    """The digest a predictor spec pins (its HOUSING_BUNDLE_DIGEST env), None when unpinned."""
    try:
        _, holder = _bundle_holder(predictor)
    except RolloutError:
        return None
    for env in holder.get("env") or []:
        if env.get("name") == BUNDLE_DIGEST_ENV:
            return env.get("value") or None
    return None


def digest_ops(predictor: dict, base: str, digest: str | None) -> list[Op]:
    """Ops that pin the predictor at ``base`` to ``digest`` (HOUSING_BUNDLE_DIGEST next to the
    storage URI), or unpin it (None): a canary copied from a pinned champion must not keep the
    champion's digest, which its own bundle would fail."""
    digest = check_digest(digest)
    where, holder = _bundle_holder(predictor)
    envs = holder.get("env")
    index = next((i for i, e in enumerate(envs or []) if e.get("name") == BUNDLE_DIGEST_ENV), None)
    path = f"{base}{where}/env"
    if digest is None:
        return [] if index is None else [{"op": "remove", "path": f"{path}/{index}"}]
    entry = {"name": BUNDLE_DIGEST_ENV, "value": digest}
    if index is not None:
        return [{"op": "replace", "path": f"{path}/{index}", "value": entry}]
    if envs is None:
        return [{"op": "add", "path": path, "value": [entry]}]
    # right after STORAGE_URI, where the chart renders it: helm 4 applies server-side and the env
    # list is one field, so the same entries in another order are a conflict with the field manager
    # that wrote them (`helm upgrade` after a promotion failed so on the node)
    storage = next((i for i, e in enumerate(envs) if e.get("name") == "STORAGE_URI"), None)
    return [{"op": "add", "path": f"{path}/{'-' if storage is None else storage + 1}", "value": entry}]


def bundle_ops(predictor: dict, base: str, uri: str, digest: str | None) -> list[Op]:
    """Ops that point the predictor at ``base`` to the bundle ``uri`` pinned to ``digest``."""
    return storage_uri_ops(predictor, base, uri) + digest_ops(predictor, base, digest)


def with_bundle(predictor: dict, uri: str, digest: str | None) -> dict:
    """A copy of ``predictor`` serving ``uri``, pinned to ``digest`` (None: unpinned)."""
    return apply_patch({"p": predictor}, bundle_ops(predictor, "/p", uri, digest))["p"]


def annotation_ops(obj: dict, key: str, value: str) -> list[Op]:
    """Ops that set one metadata annotation (creating the map if needed)."""
    annotations = (obj.get("metadata") or {}).get("annotations")
    if annotations is None:
        return [{"op": "add", "path": "/metadata/annotations", "value": {key: value}}]
    return [{"op": "add", "path": f"/metadata/annotations/{escape(key)}", "value": value}]


def conditions_ready(obj: dict) -> bool:
    for cond in ((obj.get("status") or {}).get("conditions")) or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def bundle_version(uri: str) -> str:
    """The ``model_version`` the predictor labels its series with: the bundle manifest's, read from
    ``<uri>/bundle.json`` (S3 or a directory); the URI's last path segment when it cannot be read.

    They differ for the bundle the chart's install trains (predictor.storageUri, e.g. …/housing/1,
    holds a <time>-<random> version): the last segment alone found no champion series.
    """
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    try:
        if uri.startswith("s3://"):
            if not (os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ACCESS_KEY_ID")):
                return last  # no S3 configured here: do not go looking for one
            import boto3
            from botocore.config import Config

            bucket, _, prefix = uri[len("s3://") :].partition("/")
            s3 = boto3.client("s3", config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1}))
            body = s3.get_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/bundle.json")["Body"]
            manifest = json.loads(body.read())
        elif uri and "://" not in uri.removeprefix("file://"):
            with open(f"{uri.removeprefix('file://').rstrip('/')}/bundle.json") as f:
                manifest = json.load(f)
        else:
            return last
    except Exception:  # noqa: BLE001 - no credentials, no object, not JSON: the path's convention
        return last
    return str(manifest.get("model_version") or last)


def default_api() -> Any:  # pragma: no cover - needs a cluster
    """A CustomObjectsApi from the in-cluster config or ~/.kube/config."""
    from kubernetes import client

    load_config()
    return client.CustomObjectsApi()


def _is_conflict(exc: Exception) -> bool:
    """A 409, or a 422 whose message names the failed resourceVersion test (some servers say so)."""
    status = getattr(exc, "status", None)
    body = str(getattr(exc, "body", "") or "")
    if status == 409:
        return True
    return status == 422 and "test" in body.lower() and "resourceversion" in body.lower()


def _is_patch_apply_failure(exc: Exception) -> bool:
    """kube-apiserver's answer when a JSON patch cannot be applied (a failed ``test`` included).

    ``{"reason": "Invalid", "code": 422, "details": {}}`` with a generic message; a schema or
    field-validation error is also 422 Invalid but names the object and its causes in ``details``.
    """
    if getattr(exc, "status", None) != 422:
        return False
    try:
        body = json.loads(getattr(exc, "body", "") or "{}")
    except (TypeError, ValueError):
        return True  # no structured answer: let the resourceVersion re-read decide
    return isinstance(body, dict) and not (body.get("details") or {}).get("causes")


class KServeBackend:
    """Base of the Standard and Serverless backends: read, build ops, validate, patch."""

    name = "kserve"
    runs_champion = False  # the InferenceService already serves the champion

    def __init__(
        self,
        isvc: str,
        namespace: str = "default",
        *,
        api: Any | None = None,
        dry_run: bool = False,
        manifest: dict | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.isvc = isvc
        self.namespace = namespace
        self._api = api
        self.dry_run = dry_run
        self.manifest = manifest  # offline dry-run: the current object comes from a file
        self.out = out or sys.stdout
        self.last_patch: list[Op] | None = None
        self.last_object: dict | None = None

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = default_api()
        return self._api

    # -- lifecycle ---------------------------------------------------------------------------
    def prepare(
        self, champion_uri: str | None, challenger_uri: str, *, port: int | None = None, sticky: bool = False
    ) -> Prepared:
        """Nothing to start: the versions are the last path segments of the storage URIs.

        That is what the predictors label their series with (the bundle version); the first
        step of a rollout deploys the challenger.
        """
        current = self.status()  # type: ignore[attr-defined]
        champion_version = bundle_version(current.champion or "")
        challenger_version = bundle_version(challenger_uri)
        return Prepared(champion_version, challenger_version, challenger_uri)

    def close(self) -> None:
        """Nothing runs on this machine."""

    def lease(self, duration: int | None = None) -> Any:
        """The :class:`~rollout.lease.RolloutLease` that keeps a second run off this InferenceService."""
        from rollout.lease import DEFAULT_DURATION, RolloutLease

        return RolloutLease(self.api, self.namespace, self.isvc, duration=duration or DEFAULT_DURATION)

    # -- reading -----------------------------------------------------------------------------
    def read(self) -> dict:
        if self.manifest is not None:
            return copy.deepcopy(self.manifest)
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.isvc)
        except Exception as exc:  # ApiException and connection errors alike
            status = getattr(exc, "status", None)
            if status == 404:
                raise RolloutError(f"InferenceService {self.namespace}/{self.isvc} not found") from exc
            raise RolloutError(f"cannot read InferenceService {self.namespace}/{self.isvc}: {exc}") from exc

    def _moved_since(self, rv: str) -> bool:
        """Whether the object changed since we read ``rv`` (then a failed patch was a conflict)."""
        try:
            return (self.read().get("metadata") or {}).get("resourceVersion") != rv
        except RolloutError:
            return False

    # -- writing -----------------------------------------------------------------------------
    def patch(self, build: Callable[[dict], list[Op]]) -> dict:
        """Build ops from the current object, validate the result, and send them (with retries)."""
        last_error: Exception | None = None
        for _attempt in range(MAX_RETRIES):
            current = self.read()
            ops = build(current)
            rv = (current.get("metadata") or {}).get("resourceVersion")
            full = ([{"op": "test", "path": "/metadata/resourceVersion", "value": rv}] if rv else []) + ops
            result = apply_patch(current, full)
            validate_isvc(result)
            self.last_patch, self.last_object = full, result
            if self.dry_run:
                self.out.write("# JSON patch (application/json-patch+json)\n")
                self.out.write(json.dumps(full, indent=2) + "\n")
                self.out.write("# resulting InferenceService (validated against the kserve SDK models)\n")
                self.out.write(json.dumps(result, indent=2) + "\n")
                if self.manifest is not None:
                    self.manifest = result
                return result
            try:
                written = self._send(full, field_validation="Strict")
            except Exception as exc:
                if _is_conflict(exc) or (rv and _is_patch_apply_failure(exc) and self._moved_since(rv)):
                    last_error = exc
                    continue
                raise RolloutError(f"patch of {self.namespace}/{self.isvc} failed: {exc}") from exc
            return self._hand_back(current, written)
        raise ConflictError(
            f"gave up after {MAX_RETRIES} conflicting writes to {self.namespace}/{self.isvc}: {last_error}"
        )

    def _send(self, ops: list[Op], **kwargs: Any) -> dict:
        """One JSON patch, recorded under the runner's own field manager."""
        return self.api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            self.isvc,
            ops,
            field_manager=field_owners.FIELD_MANAGER,
            _content_type="application/json-patch+json",
            **kwargs,
        )

    def _hand_back(self, before: dict, written: dict) -> dict:
        """Give the fields the write took from an applier (helm 4's server-side apply) back to it, so
        the next ``helm upgrade`` that changes them applies without a conflict
        (:func:`rollout.backends.field_owners.hand_back`)."""
        return field_owners.hand_back(
            before,
            written,
            self._send,
            self.read,
            lambda exc: _is_conflict(exc) or _is_patch_apply_failure(exc),
            f"InferenceService {self.namespace}/{self.isvc}",
            MAX_RETRIES,
        )


def status_common(obj: dict, backend: str) -> RolloutStatus:
    """Fields both modes share: readiness, conditions and predictor traffic from ``status``."""
    status = obj.get("status") or {}
    predictor = ((status.get("components") or {}).get("predictor")) or {}
    detail = {
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message") if c.get(k) is not None}
            for c in status.get("conditions") or []
        ],
        "traffic": predictor.get("traffic") or [],
        "canaryStatuses": status.get("canaryStatuses") or [],
        "resourceVersion": (obj.get("metadata") or {}).get("resourceVersion"),
    }
    return RolloutStatus(backend=backend, ready=conditions_ready(obj), detail=detail)
