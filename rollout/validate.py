"""Strict validation of InferenceService objects against the kserve SDK's generated models.

The SDK models (``kserve.models.V1beta1InferenceService`` and everything they reference,
including the ``kubernetes.client`` models for pod fields) carry ``openapi_types`` (attribute →
type string) and ``attribute_map`` (attribute → JSON key). The object is walked against them:
every key must be a known JSON field of the model at that place, every value must have the
declared type (``null`` is refused), and fields the model declares required must be present.
On top of the SDK, the canary rules the CRD enforces: traffic percents within 0..100 summing to
at most 100, and a named predictor in every ``spec.canary`` entry.

This is the one validator: the KServe backends run it before any patch is sent (and for
``--dry-run``), and the chart tests (``tests/cluster``) run it on the rendered manifests.
Problems are reported with dotted paths (``spec.canary[0].trafficPercent``), all at once.
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import re
from typing import Any

from rollout.errors import ValidationError

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"

_LIST = re.compile(r"^list\[(.+)\]$", re.IGNORECASE)
_DICT = re.compile(r"^dict[(\[]([^,]+),\s*(.+)[)\]]$", re.IGNORECASE)
#: Types the generators name but do not define as classes: a string or a number.
_QUANTITY_TYPES = {"ResourceQuantity", "IntOrString", "K8sIoApimachineryPkgApiResourceQuantity"}


@functools.cache
def _model_class(name: str) -> type | None:
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        cls = getattr(module, name, None)
        if isinstance(cls, type) and hasattr(cls, "openapi_types"):
            return cls
    return None


@functools.cache
def _required(cls: type) -> frozenset[str]:
    """The model's required attributes.

    kubernetes.client (v35+) models are pydantic models: their fields say it. The kserve
    models are older OpenAPI-generator classes whose setters refuse None for required fields.
    """
    fields = getattr(cls, "model_fields", None)
    if isinstance(fields, dict):
        return frozenset(name for name, field in fields.items() if field.is_required())
    required = set()
    for attr in cls.openapi_types:
        setter = getattr(getattr(cls, attr, None), "fset", None)
        if setter is None:
            continue
        try:
            source = inspect.getsource(setter)
        except (OSError, TypeError):
            continue
        if "must not be `None`" in source:
            required.add(attr)
    return frozenset(required)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check(value: Any, type_name: str, path: str, errors: list[tuple[str, str]]) -> None:
    type_name = type_name.strip()
    if value is None:
        errors.append((path, f"null where {type_name} is expected"))
        return
    if m := _LIST.match(type_name):
        if not isinstance(value, list):
            errors.append((path, f"expected a list ({type_name}), got {_type_name(value)}"))
            return
        for i, item in enumerate(value):
            _check(item, m.group(1), f"{path}[{i}]", errors)
        return
    if m := _DICT.match(type_name):
        if not isinstance(value, dict):
            errors.append((path, f"expected a mapping ({type_name}), got {_type_name(value)}"))
            return
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append((path, f"mapping key {key!r} is not a string"))
                continue
            _check(item, m.group(2), _join(path, key), errors)
        return
    if type_name in ("str", "bytes"):
        if not isinstance(value, str):
            errors.append((path, f"expected a string, got {_type_name(value)} {value!r}"))
    elif type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append((path, f"expected an integer, got {_type_name(value)} {value!r}"))
    elif type_name == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append((path, f"expected a number, got {_type_name(value)} {value!r}"))
    elif type_name == "bool":
        if not isinstance(value, bool):
            errors.append((path, f"expected a boolean, got {_type_name(value)} {value!r}"))
    elif type_name == "object":  # free-form fields: any JSON scalar or structure
        if not isinstance(value, str | int | float | bool | list | dict):
            errors.append((path, f"unexpected {_type_name(value)}"))
    elif type_name in ("datetime", "date"):
        if not isinstance(value, str | _dt.datetime | _dt.date):
            errors.append((path, f"expected a {type_name} string, got {_type_name(value)}"))
    elif type_name in _QUANTITY_TYPES:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            errors.append((path, f"expected a quantity (string or number), got {_type_name(value)} {value!r}"))
    else:
        cls = _model_class(type_name)
        if cls is None:
            # A type the SDK references but does not ship (e.g. K8sIoApiApps*): accept any object.
            if not isinstance(value, dict):
                errors.append((path, f"expected an object ({type_name}), got {_type_name(value)}"))
            return
        _check_model(value, cls, path, errors)


def _check_model(value: Any, cls: type, path: str, errors: list[tuple[str, str]]) -> None:
    if not isinstance(value, dict):
        errors.append((path, f"expected an object ({cls.__name__}), got {_type_name(value)} {value!r}"))
        return
    json_to_attr = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    for key, item in value.items():
        attr = json_to_attr.get(key)
        if attr is None:
            known = ", ".join(sorted(json_to_attr))
            errors.append((_join(path, str(key)), f"unknown field for {cls.__name__} (known: {known})"))
            continue
        _check(item, cls.openapi_types[attr], _join(path, key), errors)
    for attr in sorted(_required(cls)):
        if cls.attribute_map[attr] not in value:
            errors.append((_join(path, cls.attribute_map[attr]), f"required by {cls.__name__}"))


def _check_canary(spec: dict, errors: list[tuple[str, str]]) -> None:
    """The traffic rules the CRD adds to the SDK's types."""
    if not spec.get("predictor") and "spec.predictor" not in {p for p, _ in errors}:
        errors.append(("spec.predictor", "required"))
    total = 0
    canaries = spec.get("canary")
    for i, canary in enumerate(canaries if isinstance(canaries, list) else []):
        if not isinstance(canary, dict):
            continue
        pct = canary.get("trafficPercent", 0)
        if isinstance(pct, int) and not isinstance(pct, bool):
            if not 0 <= pct <= 100:
                errors.append((f"spec.canary[{i}].trafficPercent", f"must be within 0..100, got {pct}"))
            total += pct
        if not (canary.get("predictor") or {}).get("name"):
            errors.append((f"spec.canary[{i}].predictor.name", "required in a canary entry"))
    if total > 100:
        errors.append(("spec.canary", f"trafficPercent values sum to {total} > 100"))
    ctp = (spec.get("predictor") or {}).get("canaryTrafficPercent")
    if isinstance(ctp, int) and not isinstance(ctp, bool) and not 0 <= ctp <= 100:
        errors.append(("spec.predictor.canaryTrafficPercent", f"must be within 0..100, got {ctp}"))


def isvc_errors(obj: Any) -> list[str]:
    """Every mismatch between ``obj`` and an InferenceService, as ``"path: reason"`` (empty = valid)."""
    problems = _problems(obj)
    return ValidationError(problems).errors if problems else []


def _problems(obj: Any) -> list[tuple[str, str]]:
    if not isinstance(obj, dict):
        return [("", f"expected a mapping, got {_type_name(obj)}")]
    errors: list[tuple[str, str]] = []
    if obj.get("apiVersion") != API_VERSION:
        errors.append(("apiVersion", f"expected {API_VERSION!r}, got {obj.get('apiVersion')!r}"))
    if obj.get("kind") != KIND:
        errors.append(("kind", f"expected {KIND!r}, got {obj.get('kind')!r}"))
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        errors.append(("metadata.name", "missing"))
    if "spec" not in obj:
        errors.append(("spec", "missing"))
    cls = _model_class("V1beta1InferenceService")
    if cls is None:  # pragma: no cover - the SDK is a project dependency
        raise ImportError("kserve.models.V1beta1InferenceService not found")
    # status is the controller's, never ours or a user's, and the SDK's model of it does not match
    # what the v0.20 controller writes (``status.url`` is a string there, a KnativeURL object here)
    _check_model({k: v for k, v in obj.items() if k != "status"}, cls, "", errors)
    if isinstance(obj.get("spec"), dict):
        _check_canary(obj["spec"], errors)
    return errors


def validate_isvc(obj: Any) -> None:
    """Raise :class:`ValidationError` (a ``ValueError``) unless ``obj`` is a valid InferenceService."""
    problems = _problems(obj)
    if problems:
        raise ValidationError(problems)
