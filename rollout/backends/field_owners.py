"""Who owns which field of an object the runner writes (``metadata.managedFields``), and handing
back what a write took from an applier.

The runner writes with JSON patches (an *Update* in server-side-apply terms): the API server moves
every field whose value the patch changes to the runner's field manager, :data:`FIELD_MANAGER`.
A KServe predictor's ``containers`` list is atomic in the CRD (one field), so a promotion — which
changes the container's STORAGE_URI — takes the whole list from the manager that applied it: helm 4,
which installs and upgrades with server-side apply. The next ``helm upgrade`` whose rendered
container differs (payload log on, other resources, …) then fails: ``conflict with
"<runner>" … .spec.predictor.containers``, and only ``--force-conflicts`` gets it through.

The chart is built to take a promotion over (its ``lookup`` renders the live STORAGE_URI, name and
digest, charts/housing/templates/_helpers.tpl ``housing.champion``): the value the runner wrote is
the value helm applies next. So after each write the runner gives the fields it took from an
*Apply* manager back to that manager — a second JSON patch replacing ``metadata.managedFields``
(guarded by the resourceVersion), which the API server accepts from any write but an apply (it
decodes the request's managedFields: "to allow directly updating managed fields", apiserver
fieldmanager.go) — and keeps only the fields nobody applied (``spec.canary``, its annotations).
Update managers (helm 3, ``kubectl edit``) are left alone: they never conflict.

A FieldsV1 trie (``{"f:spec": {"f:predictor": {"f:containers": {}}}}``) is handled here as the set
of its paths: a path is owned when its node is empty or holds ``"."``.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import Any

#: The field manager of every write the runner makes (the kubernetes client's default is
#: "OpenAPI-Generator", which names nobody).
FIELD_MANAGER = "housing-rollout"

Path = tuple[str, ...]
Key = tuple[str, str, str]


def paths(fields: dict[str, Any] | None, prefix: Path = ()) -> set[Path]:
    """The owned paths of a FieldsV1 trie."""
    out: set[Path] = set()
    for key, child in (fields or {}).items():
        if key == ".":
            continue
        path = (*prefix, key)
        if not child or "." in child:
            out.add(path)
        if child:
            out |= paths(child, path)
    return out


def trie(owned: set[Path]) -> dict[str, Any]:
    """The FieldsV1 trie of a set of owned paths (inverse of :func:`paths`)."""
    root: dict[str, Any] = {}
    for path in owned:
        node = root
        for key in path:
            node = node.setdefault(key, {})
    for path in owned:  # an owned path with owned children below it says so with "."
        node = root
        for key in path:
            node = node[key]
        if any(k != "." for k in node):
            node["."] = {}
    return root


def _key(entry: dict[str, Any]) -> Key:
    return entry.get("manager") or "", entry.get("operation") or "", entry.get("subresource") or ""


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def _ours(entry: dict[str, Any], manager: str) -> bool:
    return _key(entry) == (manager, "Update", "")


def taken(before: dict[str, Any], after: dict[str, Any], manager: str = FIELD_MANAGER) -> dict[Key, dict[str, Any]]:
    """What a write by ``manager`` took from each applier: the Apply entries of ``before`` (main
    resource, not ``manager``) with only the paths they owned before and ``manager`` owns after."""
    mine = set().union(*(paths(e.get("fieldsV1")) for e in _entries(after) if _ours(e, manager)))
    if not mine:
        return {}
    now = {_key(e): paths(e.get("fieldsV1")) for e in _entries(after)}
    out: dict[Key, dict[str, Any]] = {}
    for entry in _entries(before):
        key = _key(entry)
        if key[1] != "Apply" or key[2] or key[0] == manager:
            continue
        lost = (paths(entry.get("fieldsV1")) - now.get(key, set())) & mine
        if lost:
            out[key] = {**copy.deepcopy(entry), "fieldsV1": trie(lost)}
    return out


def handed_back(
    obj: dict[str, Any], took: dict[Key, dict[str, Any]], manager: str = FIELD_MANAGER
) -> list[dict[str, Any]] | None:
    """``obj``'s managedFields with each path of ``took`` that ``manager`` still owns moved back to
    the applier it was taken from (its entry recreated if the write emptied it); None: nothing to move."""
    entries = copy.deepcopy(_entries(obj))
    mine = set().union(*(paths(e.get("fieldsV1")) for e in entries if _ours(e, manager)))
    moved: set[Path] = set()
    for key, lost in took.items():
        back = paths(lost.get("fieldsV1")) & mine
        if not back:
            continue
        moved |= back
        entry = next((e for e in entries if _key(e) == key), None)
        if entry is None:  # the write took all it had: the API server dropped the empty entry
            entry = {k: v for k, v in lost.items() if k != "fieldsV1"}
            entries.append(entry)
        entry["fieldsV1"] = trie(paths(entry.get("fieldsV1")) | back)
        entry.setdefault("fieldsType", "FieldsV1")
    if not moved:
        return None
    out = []
    for entry in entries:
        if _ours(entry, manager):
            left = paths(entry.get("fieldsV1")) - moved
            if not left:
                continue
            entry["fieldsV1"] = trie(left)
        out.append(entry)
    return out


def hand_back(
    before: dict[str, Any],
    written: dict[str, Any],
    send: Callable[[list[dict[str, Any]]], dict[str, Any]],
    read: Callable[[], dict[str, Any]],
    retryable: Callable[[Exception], bool],
    what: str,
    attempts: int = 5,
) -> dict[str, Any]:
    """After a write (``before`` → ``written``) by :data:`FIELD_MANAGER`, give what it took from an
    applier back: ``send`` one JSON patch (resourceVersion ``test`` + ``replace`` of
    ``/metadata/managedFields``); when ``retryable`` says the object moved in between, ``read`` it
    and rebuild (``attempts`` in all). Best effort: the write stands either way; a failure is
    reported on stderr, naming ``what``. Returns the latest object it has."""
    took = taken(before, written)
    obj: dict[str, Any] = written
    last_error: Exception | None = None
    for _attempt in range(attempts if took else 0):
        entries = handed_back(obj, took)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if entries is None or not rv:
            return obj
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "replace", "path": "/metadata/managedFields", "value": entries},
        ]
        try:
            return send(ops)
        except Exception as exc:  # noqa: BLE001 - re-read and retry, then report
            last_error = exc
            if not retryable(exc):
                break
            try:
                obj = read()
            except Exception as read_error:  # noqa: BLE001 - reported below
                last_error = read_error
                break
    if took:
        owners = ", ".join(sorted({key[0] for key in took}))
        sys.stderr.write(
            f"warning: {what} is written, but the fields taken from {owners} could not be handed back"
            f" ({last_error}); a `helm upgrade` changing them needs --force-conflicts\n"
        )
    return written
