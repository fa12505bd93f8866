"""KServe Serverless (Knative) mode: ``spec.predictor.canaryTrafficPercent``.

KServe keeps the last rolled-out revision: changing the predictor (a new storageUri) together
with ``canaryTrafficPercent`` makes a new Knative revision that receives that share while the
previous one keeps the rest.

- start: set the new storage URI (pinned to its registered digest) and ``canaryTrafficPercent``
  in one patch (the champion's URI is remembered in an annotation, since the spec only holds the
  latest);
- set_weight: replace ``canaryTrafficPercent``;
- promote: remove ``canaryTrafficPercent`` (the latest revision takes 100 %);
- rollback: ``canaryTrafficPercent: 0`` (all traffic to the previous rolled-out revision).
"""

from __future__ import annotations

from rollout.backends.base import RolloutStatus, check_percent
from rollout.backends.kserve_common import (
    ANNOTATION_CHAMPION_URI,
    ANNOTATION_REASON,
    KServeBackend,
    Op,
    annotation_ops,
    bundle_ops,
    status_common,
    storage_uri,
)
from rollout.errors import RolloutError


def _ctp_op(predictor: dict, percent: int) -> Op:
    op = "replace" if "canaryTrafficPercent" in predictor else "add"
    return {"op": op, "path": "/spec/predictor/canaryTrafficPercent", "value": percent}


def start_ops(obj: dict, challenger_uri: str, percent: int, digest: str | None = None) -> list[Op]:
    """Ops pointing the predictor at ``challenger_uri`` pinned to ``digest`` (None: unpinned) with
    ``percent`` % of the traffic; the previous revision keeps its own bundle and digest."""
    check_percent(percent)
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    current = storage_uri(predictor)
    ops: list[Op] = []
    in_progress = predictor.get("canaryTrafficPercent") not in (None, 0) and current != challenger_uri
    if in_progress:
        raise RolloutError(f"a canary is already in progress ({current}); promote or roll it back first")
    if current and current != challenger_uri:
        ops += annotation_ops(obj, ANNOTATION_CHAMPION_URI, current)
    ops += bundle_ops(predictor, "/spec/predictor", challenger_uri, digest)
    ops.append(_ctp_op(predictor, percent))
    return ops


def weight_ops(obj: dict, percent: int) -> list[Op]:
    check_percent(percent)
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    if "canaryTrafficPercent" not in predictor:
        raise RolloutError("no canary in progress (spec.predictor.canaryTrafficPercent is not set)")
    return [_ctp_op(predictor, percent)]


def promote_ops(obj: dict) -> list[Op]:
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    ops: list[Op] = []
    if "canaryTrafficPercent" in predictor:
        ops.append({"op": "remove", "path": "/spec/predictor/canaryTrafficPercent"})
    uri = storage_uri(predictor)
    if uri:
        ops += annotation_ops(obj, ANNOTATION_CHAMPION_URI, uri)
    return ops


def rollback_ops(obj: dict, reason: str) -> list[Op]:
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    return [_ctp_op(predictor, 0)] + annotation_ops(obj, ANNOTATION_REASON, reason[:250])


def parse_status(obj: dict) -> RolloutStatus:
    result = status_common(obj, "serverless")
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    latest = storage_uri(predictor)
    ctp = predictor.get("canaryTrafficPercent")
    if ctp is None:
        result.champion = latest
    else:
        result.champion = annotations.get(ANNOTATION_CHAMPION_URI)
        result.challenger = latest
        result.challenger_percent, result.champion_percent = int(ctp), 100 - int(ctp)
    traffic = result.detail["traffic"]
    if traffic and ctp is not None:  # what Knative actually routes, when reported
        latest_pct = sum(int(t.get("percent") or 0) for t in traffic if t.get("latestRevision"))
        result.challenger_percent, result.champion_percent = latest_pct, 100 - latest_pct
    return result


class ServerlessBackend(KServeBackend):
    """``canaryTrafficPercent`` on a Serverless-mode InferenceService."""

    name = "serverless"

    def start(self, challenger_uri: str, percent: int, *, digest: str | None = None) -> RolloutStatus:
        return parse_status(self.patch(lambda obj: start_ops(obj, challenger_uri, percent, digest)))

    def set_weight(self, percent: int) -> RolloutStatus:
        return parse_status(self.patch(lambda obj: weight_ops(obj, percent)))

    def promote(self) -> RolloutStatus:
        return parse_status(self.patch(promote_ops))

    def rollback(self, reason: str) -> RolloutStatus:
        return parse_status(self.patch(lambda obj: rollback_ops(obj, reason)))

    def status(self) -> RolloutStatus:
        return parse_status(self.read())


__all__ = ["ServerlessBackend", "RolloutError"]
