"""Strict validation of InferenceService objects against the kserve SDK's generated models.

Every key of the object must be a known JSON field of the SDK model at that place (walking
``openapi_types``/``attribute_map`` of ``kserve.models.V1beta1InferenceService`` and the
Kubernetes models it embeds), every value must have the declared type, and required fields
(those the SDK's setters refuse as ``None``) must be present. Used by the backends before any
patch is sent, by ``--dry-run``, and by the tests.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

import kserve.models as _kserve_models
import kubernetes.client.models as _k8s_models

_LIST = re.compile(r"^list\[(.+)\]$", re.IGNORECASE)
_DICT = re.compile(r"^dict[(\[]([^,]+),\s*(.+)[)\]]$", re.IGNORECASE)


class ValidationError(ValueError):
    """The object does not match the kserve SDK models; ``errors`` lists every problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _model_class(name: str) -> type | None:
    for module in (_kserve_models, _k8s_models):
        cls = getattr(module, name, None)
        if cls is not None and hasattr(cls, "openapi_types"):
            return cls
    return None


def _check(value: Any, type_name: str, path: str, errors: list[str]) -> None:
    if value is None:
        return
    if m := _LIST.match(type_name):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(item, m.group(1), f"{path}[{i}]", errors)
        return
    if m := _DICT.match(type_name):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(f"{path}: key {key!r} is not a string")
            _check(item, m.group(2), f"{path}.{key}", errors)
        return
    if type_name in ("str", "bytes"):
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {type(value).__name__} {value!r}")
    elif type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected an integer, got {type(value).__name__} {value!r}")
    elif type_name == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors.append(f"{path}: expected a number, got {type(value).__name__} {value!r}")
    elif type_name == "bool":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean, got {type(value).__name__} {value!r}")
    elif type_name in ("ResourceQuantity", "IntOrString"):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            errors.append(f"{path}: expected a quantity (string or number), got {value!r}")
    elif type_name in ("datetime", "date"):
        if not isinstance(value, str | _dt.datetime | _dt.date):
            errors.append(f"{path}: expected a timestamp, got {value!r}")
    elif type_name == "object":
        return
    else:
        cls = _model_class(type_name)
        if cls is None:
            # A type the SDK references but does not ship (e.g. K8sIoApiApps*): accept any object.
            if not isinstance(value, dict):
                errors.append(f"{path}: expected an object ({type_name}), got {type(value).__name__}")
            return
        _check_model(value, cls, path, errors)


def _check_model(value: Any, cls: type, path: str, errors: list[str]) -> None:
    if not isinstance(value, dict):
        errors.append(f"{path}: expected an object ({cls.__name__}), got {type(value).__name__}")
        return
    json_to_attr = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    for key, item in value.items():
        attr = json_to_attr.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: unknown field for {cls.__name__}")
            continue
        _check(item, cls.openapi_types[attr], f"{path}.{key}", errors)
    # Required fields: the SDK setters raise ValueError on None for them.
    for attr, json_key in cls.attribute_map.items():
        if value.get(json_key) is not None:
            continue
        probe = object.__new__(cls)
        try:
            from kserve.configuration import Configuration

            probe.local_vars_configuration = Configuration()
        except Exception:  # pragma: no cover - kubernetes models use a different config class
            pass
        setter = getattr(type(probe), attr, None)
        if isinstance(setter, property) and setter.fset is not None:
            try:
                setter.fset(probe, None)
            except ValueError:
                errors.append(f"{path}.{json_key}: required by {cls.__name__}")
            except Exception:  # noqa: S110 - setters with other preconditions are not "required"
                pass


def isvc_errors(obj: dict) -> list[str]:
    """Every mismatch between ``obj`` and ``V1beta1InferenceService`` (empty list = valid)."""
    errors: list[str] = []
    _check_model(obj, _kserve_models.V1beta1InferenceService, "$", errors)
    if obj.get("apiVersion") != "serving.kserve.io/v1beta1":
        errors.append(f"$.apiVersion: expected serving.kserve.io/v1beta1, got {obj.get('apiVersion')!r}")
    if obj.get("kind") != "InferenceService":
        errors.append(f"$.kind: expected InferenceService, got {obj.get('kind')!r}")
    spec = obj.get("spec") or {}
    if not spec.get("predictor"):
        errors.append("$.spec.predictor: required")
    total = 0
    for i, canary in enumerate(spec.get("canary") or []):
        if isinstance(canary, dict):
            pct = canary.get("trafficPercent", 0)
            if isinstance(pct, int) and not 0 <= pct <= 100:
                errors.append(f"$.spec.canary[{i}].trafficPercent: must be within 0..100, got {pct}")
            total += pct if isinstance(pct, int) else 0
            if not ((canary.get("predictor") or {}).get("name")):
                errors.append(f"$.spec.canary[{i}].predictor.name: required in a canary entry")
    if total > 100:
        errors.append(f"$.spec.canary: trafficPercent values sum to {total} > 100")
    ctp = (spec.get("predictor") or {}).get("canaryTrafficPercent")
    if isinstance(ctp, int) and not isinstance(ctp, bool) and not 0 <= ctp <= 100:
        errors.append(f"$.spec.predictor.canaryTrafficPercent: must be within 0..100, got {ctp}")
    return errors


def validate_isvc(obj: dict) -> None:
    """Raise :class:`ValidationError` unless ``obj`` is a valid InferenceService."""
    errors = isvc_errors(obj)
    if errors:
        raise ValidationError(errors)
