"""Strict validation of InferenceService manifests against the kserve SDK's generated models.

The SDK models (``kserve.models.V1beta1InferenceService`` and everything they reference,
including the ``kubernetes.client`` models for pod fields) carry ``openapi_types`` (attribute →
type string) and ``attribute_map`` (attribute → JSON key). :func:`validate_isvc` walks a plain
dict against them recursively and raises :class:`KServeValidationError` naming the path of the
first offending key: an unknown key anywhere, a value of the wrong type, or a missing field the
model declares required. Reusable by the rollout work for the patches it sends.
"""

from __future__ import annotations

import functools
import inspect
import re
from datetime import date, datetime
from typing import Any

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"

_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
_DICT = re.compile(r"^[Dd]ict[(\[]([^,]+),\s*(.+)[)\]]$")
# Types the generators name but do not define as classes.
_QUANTITY_TYPES = {"ResourceQuantity", "K8sIoApimachineryPkgApiResourceQuantity"}


class KServeValidationError(ValueError):
    """A manifest does not fit the kserve SDK models; ``path`` locates the offending key."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '<root>'}: {message}")
        self.path = path
        self.reason = message


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
        prop = getattr(cls, attr, None)
        setter = getattr(prop, "fset", None)
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


def _check(value: Any, type_str: str, path: str) -> None:
    type_str = type_str.strip()
    if value is None:
        raise KServeValidationError(path, f"null where {type_str} is expected")

    match = _LIST.match(type_str)
    if match:
        if not isinstance(value, list):
            raise KServeValidationError(path, f"expected a list ({type_str}), got {_type_name(value)}")
        for i, item in enumerate(value):
            _check(item, match.group(1), f"{path}[{i}]")
        return

    match = _DICT.match(type_str)
    if match:
        if not isinstance(value, dict):
            raise KServeValidationError(path, f"expected a mapping ({type_str}), got {_type_name(value)}")
        for key, item in value.items():
            if not isinstance(key, str):
                raise KServeValidationError(path, f"mapping key {key!r} is not a string")
            _check(item, match.group(2), _join(path, key))
        return

    if type_str == "str":
        if not isinstance(value, str):
            raise KServeValidationError(path, f"expected a string, got {_type_name(value)} {value!r}")
    elif type_str == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise KServeValidationError(path, f"expected an integer, got {_type_name(value)} {value!r}")
    elif type_str == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise KServeValidationError(path, f"expected a number, got {_type_name(value)} {value!r}")
    elif type_str == "bool":
        if not isinstance(value, bool):
            raise KServeValidationError(path, f"expected a boolean, got {_type_name(value)} {value!r}")
    elif type_str == "object":
        # IntOrString and free-form fields: any JSON scalar or structure.
        if not isinstance(value, (str, int, float, bool, list, dict)):
            raise KServeValidationError(path, f"unexpected {_type_name(value)}")
    elif type_str in ("datetime", "date"):
        if not isinstance(value, (str, datetime, date)):
            raise KServeValidationError(path, f"expected a {type_str} string, got {_type_name(value)}")
    elif type_str in _QUANTITY_TYPES:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise KServeValidationError(path, f"expected a quantity, got {_type_name(value)} {value!r}")
    else:
        cls = _model_class(type_str)
        if cls is None:
            raise KServeValidationError(path, f"the SDK names an unknown type {type_str!r}")
        _check_model(value, cls, path)


def _check_model(value: Any, cls: type, path: str) -> None:
    if not isinstance(value, dict):
        raise KServeValidationError(path, f"expected an object ({cls.__name__}), got {_type_name(value)} {value!r}")
    json_to_attr = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    for key, item in value.items():
        attr = json_to_attr.get(key)
        if attr is None:
            known = ", ".join(sorted(json_to_attr))
            raise KServeValidationError(_join(path, str(key)), f"unknown field for {cls.__name__} (known: {known})")
        _check(item, cls.openapi_types[attr], _join(path, key))
    for attr in sorted(_required(cls)):
        if cls.attribute_map[attr] not in value:
            raise KServeValidationError(_join(path, cls.attribute_map[attr]), f"required by {cls.__name__}")


def validate_isvc(obj: dict) -> None:
    """Validate an InferenceService manifest strictly against ``kserve.models``.

    Raises :class:`KServeValidationError` (a ``ValueError``) with the path of the first
    offending key; returns None when the object fits.
    """
    if not isinstance(obj, dict):
        raise KServeValidationError("", f"expected a mapping, got {_type_name(obj)}")
    if obj.get("apiVersion") != API_VERSION:
        raise KServeValidationError("apiVersion", f"expected {API_VERSION!r}, got {obj.get('apiVersion')!r}")
    if obj.get("kind") != KIND:
        raise KServeValidationError("kind", f"expected {KIND!r}, got {obj.get('kind')!r}")
    for key in ("metadata", "spec"):
        if key not in obj:
            raise KServeValidationError(key, "missing")
    metadata = obj["metadata"]
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise KServeValidationError("metadata.name", "missing")
    cls = _model_class("V1beta1InferenceService")
    if cls is None:  # pragma: no cover - the SDK is a project dependency
        raise ImportError("kserve.models.V1beta1InferenceService not found")
    _check_model(obj, cls, "")
