"""Feature schema: how a raw row becomes the model's numeric vector, replayed exactly.

Training fits the schema (imputation defaults, category encodings, ranges) and trains every
model on :meth:`FeatureSchema.encode_frame`; the predictor decodes requests with the same
object, so preprocessing cannot drift between the two. The model's input layout is one float64
column per feature in schema order: numeric features as-is (missing → default), categorical
features through their encoding table (unseen → ``unknown``).

The coercion contract — what a request value may be, and what it becomes — is
:func:`coerce_numeric` and :func:`coerce_category` (:func:`coerce` picks by kind):

* numeric: a JSON number (int or float; numpy scalars too) that is finite and fits float64;
  ``true``/``false`` only for a feature that was boolean in training; absent (:data:`MISSING`)
  or null → the default of an optional feature, else an error;
* categorical: a string (bytes are decoded as UTF-8, invalid bytes replaced) → its code, an
  unseen one → ``unknown``; absent or null → the default of an optional feature, else an error;
* anything else → :class:`InputError` naming the feature and the reason.

The predictor's decoders (``predictor/codec/decode.py`` and its C decoders, ``predictor/codec/_codec.c``)
are faster implementations of this same contract and are tested for agreement with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

NUMERIC = "numeric"
CATEGORICAL = "categorical"
#: A feature absent from a request (as opposed to an explicit null).
MISSING: Any = object()


class InputError(ValueError):
    """A client sent something the schema cannot accept; names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass
class Feature:
    """One input feature as training saw it."""

    name: str
    kind: str  # NUMERIC or CATEGORICAL
    dtype: str  # the training column's dtype: float64, int64, bool or string
    required: bool = True
    default: float | str | None = None  # used when an optional feature is absent or null
    min: float | None = None
    max: float | None = None
    quantiles: list[float] = field(default_factory=list)  # deciles 0.0..1.0 (numeric)
    categories: dict[str, float] = field(default_factory=dict)  # category -> encoded value
    unknown: float | None = None  # encoded value of a category not seen in training


@dataclass
class FeatureSchema:
    """Ordered features plus the replayable encoding."""

    features: list[Feature]

    def __post_init__(self) -> None:
        self.names = [f.name for f in self.features]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.by_name = {f.name: f for f in self.features}

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form stored under ``schema`` in ``bundle.json``."""
        return {"features": [asdict(f) for f in self.features]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        """Inverse of :meth:`to_dict`."""
        return cls([Feature(**f) for f in data["features"]])

    # -- vectorised path (training, large batches) ---------------------------------------
    def encode_frame(self, frame: Any) -> np.ndarray:
        """Encode a pandas DataFrame holding every feature column into the model layout."""
        out = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for j, feat in enumerate(self.features):
            col = frame[feat.name]
            if feat.kind == NUMERIC:
                values = col.astype("float64").to_numpy(copy=True)
                if feat.default is not None:
                    values[np.isnan(values)] = float(feat.default)
                out[:, j] = values
            else:
                filled = col.astype(object).where(col.notna(), feat.default)
                table = feat.categories
                unknown = feat.unknown
                out[:, j] = [table.get(str(v), unknown) if v is not None else unknown for v in filled]
        return out

    # -- per-row path (V1 instances) ------------------------------------------------------
    def encode_mapping(self, obj: Mapping[str, Any], out: np.ndarray) -> None:
        """Encode one ``{feature: value}`` object into ``out`` (a row of the model layout)."""
        if len(obj) > len(self.features) or any(k not in self.index for k in obj):
            extra = next(k for k in obj if k not in self.index)
            raise InputError(str(extra), "unknown feature")
        for j, feat in enumerate(self.features):
            out[j] = coerce(feat, obj.get(feat.name, MISSING))

    def encode_sequence(self, row: Sequence[Any], out: np.ndarray) -> None:
        """Encode one row given as a list in schema order into ``out``."""
        if len(row) != len(self.features):
            raise InputError("instance", f"has {len(row)} values, expected {len(self.features)} in schema order")
        for j, feat in enumerate(self.features):
            out[j] = coerce(feat, row[j])


def coerce(feat: Feature, value: Any) -> float:
    """One request value of ``feat`` → its float64 code (the module's coercion contract)."""
    return coerce_numeric(feat, value) if feat.kind == NUMERIC else coerce_category(feat, value)


def coerce_numeric(feat: Feature, value: Any) -> float:
    """A numeric feature's value → float64, or :class:`InputError` (see the module docstring)."""
    kind = type(value)
    if kind is float or kind is int:
        if kind is int:
            try:
                return float(value)
            except OverflowError:
                raise InputError(feat.name, "number is out of the float64 range") from None
        if not math.isfinite(value):
            raise InputError(feat.name, "must be a finite number (got NaN or infinity)")
        return value
    if kind is bool and feat.dtype == "bool":
        return float(value)
    if value is MISSING or value is None:
        if feat.required or feat.default is None:
            raise InputError(feat.name, "required feature is missing" if value is MISSING else "must not be null")
        return float(feat.default)
    if isinstance(value, (np.floating, np.integer)) and not isinstance(value, np.bool_):
        if not math.isfinite(float(value)):
            raise InputError(feat.name, "must be a finite number (got NaN or infinity)")
        return float(value)
    raise InputError(feat.name, f"must be a number, got {_type_name(value)}")


def coerce_category(feat: Feature, value: Any) -> float:
    """A categorical feature's value → its code, or :class:`InputError` (see the module docstring)."""
    if type(value) is str:
        code = feat.categories.get(value)
        return feat.unknown if code is None else code  # type: ignore[return-value]
    if value is MISSING or value is None:
        if feat.required or feat.default is None:
            raise InputError(feat.name, "required feature is missing" if value is MISSING else "must not be null")
        return feat.categories.get(str(feat.default), feat.unknown)  # type: ignore[return-value]
    if isinstance(value, bytes):
        return coerce_category(feat, value.decode("utf-8", "replace"))
    raise InputError(feat.name, f"must be a string category, got {_type_name(value)}")


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return type(value).__name__
