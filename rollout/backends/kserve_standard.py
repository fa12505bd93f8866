"""KServe Standard (RawDeployment) mode: canaries as ``spec.canary[]`` entries.

The kserve 0.21 SDK models this directly (``V1beta1InferenceServiceSpec.canary`` is a
``list[V1beta1CanarySpec]`` of ``{trafficPercent, predictor}``; the predictor's ``name`` drives
the Deployment name ``{isvc}-{name}-predictor`` and is required in a canary entry). The SDK's own
documentation of the field says how to promote: "set predictor.name to the canary name and
remove the canary entry". So:

- start: add a canary entry — a copy of the champion predictor (same runtime, resources,
  service account) pointing at the challenger's storage URI, named after the challenger;
- set_weight: replace ``/spec/canary/0/trafficPercent``;
- promote: replace ``/spec/predictor`` with the canary's predictor (its name included, so the
  already-running canary Deployment becomes the primary without a restart) and remove
  ``/spec/canary``;
- rollback: remove ``/spec/canary``.
"""

from __future__ import annotations

import copy
import re

from rollout.backends.base import RolloutError, RolloutStatus, check_percent
from rollout.backends.kserve_common import (
    ANNOTATION_CHAMPION_URI,
    ANNOTATION_REASON,
    KServeBackend,
    Op,
    annotation_ops,
    status_common,
    storage_uri,
    with_storage_uri,
)

#: KServe's name for the model server container (``constants.InferenceServiceContainerName``).
KSERVE_CONTAINER = "kserve-container"
#: Predictor keys holding a container-like model spec. In the kserve v0.20.0 CRD the copy of the
#: PredictorSpec under ``spec.canary[].predictor`` keeps the generated ``required: [name]`` (and
#: ``modelFormat`` for ``model``) that KServe strips from ``spec.predictor``, so a canary copied
#: from a champion written as ``model: {modelFormat, storageUri}`` is rejected by the API server
#: ("spec.canary[0].predictor.model.name: Required value"). KServe defaults that name to
#: ``kserve-container`` anyway, so start() sets it explicitly.
MODEL_KEYS = (
    "model",
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
)


def canary_name_for(uri: str) -> str:
    """A DNS-1123 label naming the challenger's predictor, from its URI (…/housing/3 → ``v3``)."""
    tail = [p for p in re.split(r"[/@:]", uri.rstrip("/")) if p][-1] if uri.strip("/") else "canary"
    name = re.sub(r"[^a-z0-9-]+", "-", tail.lower()).strip("-") or "canary"
    if not name[0].isalpha():
        name = "v" + name
    return name[:40].rstrip("-")


def start_ops(obj: dict, challenger_uri: str, percent: int, canary_name: str | None = None) -> list[Op]:
    """Ops adding (or re-pointing) the canary entry for ``challenger_uri`` at ``percent`` %."""
    check_percent(percent)
    spec = obj.get("spec") or {}
    predictor = spec.get("predictor") or {}
    name = canary_name or canary_name_for(challenger_uri)
    if name == predictor.get("name"):
        raise RolloutError(f"the canary name {name!r} is the champion's predictor name; pass another --canary-name")
    base = {k: copy.deepcopy(v) for k, v in predictor.items() if k not in ("canaryTrafficPercent", "name")}
    canary_predictor = with_storage_uri(base, challenger_uri)
    canary_predictor["name"] = name
    for key in MODEL_KEYS:  # the CRD requires the container name here (see MODEL_KEYS)
        if isinstance(canary_predictor.get(key), dict) and not canary_predictor[key].get("name"):
            canary_predictor[key]["name"] = KSERVE_CONTAINER
    entry = {"trafficPercent": percent, "predictor": canary_predictor}
    canaries = spec.get("canary") or []
    ops: list[Op] = []
    if not canaries:
        ops.append({"op": "add", "path": "/spec/canary", "value": [entry]})
    else:
        names = [(c.get("predictor") or {}).get("name") for c in canaries]
        if len(canaries) > 1 or names[0] != name:
            raise RolloutError(
                f"a canary is already in progress ({', '.join(map(str, names))}); promote or roll it back first"
            )
        ops.append({"op": "replace", "path": "/spec/canary/0", "value": entry})
    champion = storage_uri(predictor)
    if champion:
        ops += annotation_ops(obj, ANNOTATION_CHAMPION_URI, champion)
    return ops


def _canary(obj: dict) -> dict:
    canaries = (obj.get("spec") or {}).get("canary") or []
    if not canaries:
        raise RolloutError("no canary in progress (spec.canary is empty)")
    return canaries[0]


def weight_ops(obj: dict, percent: int) -> list[Op]:
    check_percent(percent)
    _canary(obj)
    return [{"op": "replace", "path": "/spec/canary/0/trafficPercent", "value": percent}]


def promote_ops(obj: dict) -> list[Op]:
    canary = _canary(obj)
    ops: list[Op] = [
        {"op": "replace", "path": "/spec/predictor", "value": copy.deepcopy(canary["predictor"])},
        {"op": "remove", "path": "/spec/canary"},
    ]
    uri = storage_uri(canary["predictor"])
    if uri:
        ops += annotation_ops(obj, ANNOTATION_CHAMPION_URI, uri)
    return ops


def rollback_ops(obj: dict, reason: str) -> list[Op]:
    ops: list[Op] = []
    if (obj.get("spec") or {}).get("canary") is not None:
        ops.append({"op": "remove", "path": "/spec/canary"})
    return ops + annotation_ops(obj, ANNOTATION_REASON, reason[:250])


def parse_status(obj: dict) -> RolloutStatus:
    result = status_common(obj, "standard")
    spec = obj.get("spec") or {}
    result.champion = storage_uri(spec.get("predictor") or {})
    result.detail["championName"] = (spec.get("predictor") or {}).get("name")
    canaries = spec.get("canary") or []
    if canaries:
        result.challenger = storage_uri(canaries[0].get("predictor") or {})
        result.detail["canaryName"] = (canaries[0].get("predictor") or {}).get("name")
        percent = int(canaries[0].get("trafficPercent") or 0)
        observed = [s for s in result.detail["canaryStatuses"] if s.get("name") == result.detail["canaryName"]]
        if observed:
            percent = int(observed[0].get("trafficPercent") or 0)
            result.detail["canaryReady"] = bool(observed[0].get("ready"))
        result.challenger_percent, result.champion_percent = percent, 100 - percent
    return result


class StandardBackend(KServeBackend):
    """``spec.canary[]`` on a RawDeployment/Standard-mode InferenceService."""

    name = "standard"

    def __init__(self, *args, canary_name: str | None = None, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.canary_name = canary_name

    def start(self, challenger_uri: str, percent: int) -> RolloutStatus:
        return parse_status(self.patch(lambda obj: start_ops(obj, challenger_uri, percent, self.canary_name)))

    def set_weight(self, percent: int) -> RolloutStatus:
        return parse_status(self.patch(lambda obj: weight_ops(obj, percent)))

    def promote(self) -> RolloutStatus:
        return parse_status(self.patch(promote_ops))

    def rollback(self, reason: str) -> RolloutStatus:
        return parse_status(self.patch(lambda obj: rollback_ops(obj, reason)))

    def status(self) -> RolloutStatus:
        return parse_status(self.read())
