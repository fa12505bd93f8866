"""Request decoding straight into the model's float64 layout, and the error messages.

The codec only decodes: what each value may be is the schema's coercion contract
(:func:`bundle.schema.coerce`); the paths here (the C decoder for one V1/V2 row, the column fills
for V2 tensors) are faster implementations of that contract, tested for agreement with it.
Every client mistake becomes :class:`kserve.errors.InvalidInput` (HTTP 400, gRPC
INVALID_ARGUMENT) naming the field and the reason. Range checks live where they are counted
(:mod:`predictor.core.ranges`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from bundle.schema import CATEGORICAL, NUMERIC, FeatureSchema, InputError, coerce_category, coerce_numeric
from predictor.core.fastpath import load_extension

#: The C extension's interface version this module was written for (``_codec.c``: CODEC_ABI).
ABI = 1
_c = load_extension("_codec", ABI, "predictor.codec")
_c_decode_mapping = getattr(_c, "decode_mapping", None)
_c_fill_numeric = getattr(_c, "fill_numeric", None)
_c_fill_categories = getattr(_c, "fill_categories", None)
_c_v2_json_columns = getattr(_c, "v2_json_columns", None)

FLOAT_TYPES = {"FP64", "FP32", "INT64", "INT32"}
#: Whether KServe's InferInput keeps its fields where its properties read them (kserve 0.21).
_INFER_INPUT_FIELDS = all(
    hasattr(InferInput("x", [1], "FP64", [0.0]), field) for field in ("_data", "_shape", "_name", "_datatype")
)
NUMERIC_DATATYPES = {"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"}


class BatchTooLarge(InvalidInput):
    """More rows than ``--max_batch_size`` allows."""


def bad(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}")


class Decoder:
    """Precomputed tables for one schema; decodes V1 instances and V2 tensors."""

    def __init__(self, schema: FeatureSchema, max_batch_size: int) -> None:
        self.schema = schema
        self.max_batch_size = max_batch_size
        feats = schema.features
        self.n = len(feats)
        self.names = tuple(f.name for f in feats)
        self.kinds = bytes(0 if f.kind == NUMERIC else 1 for f in feats)
        self.tables = tuple(
            {str(k): float(v) for k, v in f.categories.items()} if f.kind == CATEGORICAL else None for f in feats
        )
        self.unknowns = np.array(
            [float(f.unknown) if f.kind == CATEGORICAL and f.unknown is not None else np.nan for f in feats],
            dtype=np.float64,
        )
        defaults = np.full(self.n, np.nan)  # NaN: required (absent/null is an error)
        for j, f in enumerate(feats):
            if f.required or f.default is None:
                continue
            if f.kind == NUMERIC:
                defaults[j] = float(f.default)
            else:
                code = self.tables[j].get(str(f.default), f.unknown)
                defaults[j] = np.nan if code is None else float(code)
        self.defaults = defaults
        self.all_numeric = all(f.kind == NUMERIC for f in feats)
        self.categorical = [f.name for f in feats if f.kind == CATEGORICAL]

    # -- V1 --------------------------------------------------------------------------------
    def v1(self, payload: Any) -> np.ndarray:
        """``{"instances": [...]}`` or one bare ``{feature: value}`` object → (n, F) matrix."""
        if type(payload) is not dict and isinstance(payload, (bytes, bytearray)):
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"body: not valid JSON ({exc})") from None
        if type(payload) is dict or isinstance(payload, Mapping):
            if "instances" in payload:
                instances = payload["instances"]
                if not isinstance(instances, list):
                    raise bad("instances", "must be a list of objects or lists")
            elif "inputs" in payload and isinstance(payload["inputs"], list):
                instances = payload["inputs"]
            else:
                instances = [payload]  # the flat JSON object of the classic housing APIs: one instance
        else:
            raise bad("body", 'must be a JSON object: {"instances": [...]} or one {feature: value} object')
        n = len(instances)
        if n == 0:
            raise bad("instances", "must not be empty")
        self.check_batch(n, "instances")
        X = np.empty((n, self.n), dtype=np.float64)
        c_decode = _c_decode_mapping
        if n == 1 and c_decode is not None and type(instances[0]) is dict:  # the common single row: X is the row
            if c_decode(instances[0], self.names, self.kinds, self.tables, self.unknowns, self.defaults, X):
                return X
        for i, inst in enumerate(instances):
            row = X[i]
            if type(inst) is dict:
                if c_decode is not None and c_decode(
                    inst, self.names, self.kinds, self.tables, self.unknowns, self.defaults, row
                ):
                    continue
                try:
                    self.schema.encode_mapping(inst, row)
                except InputError as exc:
                    raise self._instance_error(i, n, exc) from None
            elif isinstance(inst, list):
                try:
                    self.schema.encode_sequence(inst, row)
                except InputError as exc:
                    raise self._instance_error(i, n, exc) from None
            else:
                raise bad(f"instances[{i}]" if n > 1 else "instance", "must be an object {feature: value} or a list")
        return X

    @staticmethod
    def _instance_error(i: int, n: int, exc: InputError) -> InvalidInput:
        where = f"instances[{i}]." if n > 1 else ""
        if exc.field == "instance":
            return bad(f"instances[{i}]" if n > 1 else "instance", exc.reason)
        return bad(f"{where}{exc.field}", exc.reason)

    def check_batch(self, n: int, field: str) -> None:
        if n > self.max_batch_size:
            raise BatchTooLarge(
                f"{field}: batch of {n} rows exceeds the limit of {self.max_batch_size} (--max_batch_size)"
            )

    # -- V2 --------------------------------------------------------------------------------
    def v2_json(self, body: bytes, model_name: str) -> DecodedInferRequest | None:
        """A plain V2 JSON body with one [n] tensor per feature, decoded from its bytes in C (no Python
        object per value); None for any other body (``parse_infer_request`` and :meth:`v2` then)."""
        if _c_v2_json_columns is None:
            return None
        got = _c_v2_json_columns(body, self.names, self.kinds, self.tables, self.unknowns, self.max_batch_size)
        if got is None:
            return None
        columns, n_rows, request_id = got
        XT = np.frombuffer(columns, dtype=np.float64).reshape(self.n, n_rows)
        return DecodedInferRequest(model_name, np.ascontiguousarray(XT.T), request_id, body)

    def v2(self, request: InferRequest) -> np.ndarray:
        """One tensor per feature (BYTES for categoricals), or one 2-D numeric tensor."""
        if type(request) is DecodedInferRequest:
            return request.matrix
        inputs = request.inputs or []
        if type(inputs) is not list:
            inputs = list(inputs)
        if not inputs:
            raise bad("inputs", "must contain one tensor per feature or one 2-D tensor")
        if len(inputs) == 1 and inputs[0].name not in self.schema.index:
            return self._matrix(inputs[0])
        if _c_decode_mapping is not None and len(inputs) <= self.n:
            X = self._v2_single_row(inputs)
            if X is not None:
                return X
        names = [inp.name for inp in inputs]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise bad(str(dup), "tensor given more than once")
        columns: dict[int, Any] = {}
        n_rows = -1
        index = self.schema.index
        for inp in inputs:
            name = inp.name
            j = index.get(name) if isinstance(name, str) else None
            if j is None:
                raise bad(str(name), "unknown feature (expected one tensor per feature, or one 2-D tensor)")
            values = self._tensor_values(inp, self.kinds[j] == 1)
            if n_rows < 0:
                n_rows = len(values)
                if n_rows == 0:
                    raise bad(name, "tensor is empty")
                self.check_batch(n_rows, name)
            elif len(values) != n_rows:
                raise bad(name, f"has {len(values)} values, expected {n_rows} like the other tensors")
            columns[j] = values
        # filled feature by feature into contiguous rows of the transpose, then one transposing copy
        XT = np.empty((self.n, n_rows), dtype=np.float64)
        for j, feat in enumerate(self.schema.features):
            values = columns.get(j)
            if values is None:
                if np.isnan(self.defaults[j]):
                    raise bad(feat.name, "required feature is missing")
                XT[j] = self.defaults[j]
            elif self.kinds[j] == 0:
                XT[j] = values  # validated float64 (finite, defaults filled)
            else:
                self._categorical_column(j, values, XT[j])
        return np.ascontiguousarray(XT.T)

    def _v2_single_row(self, inputs: list[InferInput]) -> np.ndarray | None:
        """One row sent as [1]-shaped JSON tensors: decode like a V1 object (C); None if not that case."""
        row: dict[str, Any] = {}
        index, kinds, float_types = self.schema.index, self.kinds, FLOAT_TYPES
        for inp in inputs:
            # KServe's own InferInput: its fields as stored (a property read costs ~10x an attribute's
            # in CPython 3.11, and one row of ames is ~80 tensors × 4 reads)
            if type(inp) is InferInput and _INFER_INPUT_FIELDS:
                data, shape, name, datatype = inp._data, inp._shape, inp._name, inp._datatype
            else:
                data, shape, name, datatype = inp.data, inp.shape, inp.name, inp.datatype
            if type(data) is not list or len(data) != 1 or shape != [1]:  # raw bytes come with no data
                return None
            j = index.get(name)
            if j is None:
                return None
            value = data[0]
            if kinds[j]:
                if datatype != "BYTES":
                    return None
                if type(value) is bytes:  # gRPC BYTES: like the column path, decoded leniently
                    value = value.decode("utf-8", "replace")
            elif datatype not in float_types:
                return None
            row[name] = value
        if len(row) != len(inputs):
            return None
        X = np.empty((1, self.n), dtype=np.float64)
        if _c_decode_mapping(row, self.names, self.kinds, self.tables, self.unknowns, self.defaults, X[0]):
            return X
        return None

    def _categorical_column(self, j: int, values: list[Any], out: np.ndarray) -> None:
        """The codes of feature ``j``'s values into ``out`` (contiguous float64)."""
        table, unknown = self.tables[j], self.unknowns[j]
        if _c_fill_categories is not None and type(values) is list:
            if _c_fill_categories(values, table, float(unknown), out):  # all str/bytes: table.get(v, unknown)
                return
        types = set(map(type, values))
        if types == {bytes}:  # gRPC BYTES tensors: decoded as coerce_category does
            values = [v.decode("utf-8", "replace") for v in values]
            types = {str}
        if types == {str}:
            out[:] = np.fromiter(
                map(table.get, values, repeat(unknown, len(values))), dtype=np.float64, count=len(values)
            )
            return
        feat = self.schema.features[j]
        try:  # bytes, None (default), or a mistake named by the schema
            out[:] = np.fromiter((coerce_category(feat, v) for v in values), dtype=np.float64, count=len(values))
        except InputError as exc:
            raise bad(exc.field, exc.reason) from None

    def _shape(self, inp: InferInput) -> list[int]:
        shape = inp.shape
        if not isinstance(shape, (list, tuple)) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(str(inp.name), f"shape {shape!r} must be a list of non-negative integers")
        return list(shape)

    def _raw_or_list(self, inp: InferInput, shape: list[int]) -> Any:
        """The tensor's values: its JSON ``data``, or — no data but a non-empty shape — the raw
        bytes of gRPC ``raw_input_contents`` / the binary extension, through ``as_numpy``."""
        data = inp.data
        if (data is None or (isinstance(data, (list, tuple)) and len(data) == 0)) and math.prod(shape) > 0:
            try:
                return inp.as_numpy().reshape(-1)
            except Exception as exc:  # noqa: BLE001 - malformed raw bytes are the client's mistake
                if data is not None:
                    return data  # an empty JSON list: the shape check below names the problem
                raise bad(str(inp.name), f"raw tensor contents do not match datatype/shape ({exc})") from None
        return data

    def _tensor_values(self, inp: InferInput, categorical: bool) -> Any:
        name = str(inp.name)
        data, shape, datatype = inp.data, inp.shape, inp.datatype
        if (  # the common JSON case: shape [n], a flat list, the right datatype
            type(data) is list
            and type(shape) is list
            and len(shape) == 1
            and type(shape[0]) is int
            and shape[0] == len(data)
            and (datatype == "BYTES" if categorical else datatype in FLOAT_TYPES)
        ):
            if categorical:
                return data
            if _c_fill_numeric is not None:
                arr = np.empty(len(data), dtype=np.float64)
                if _c_fill_numeric(data, arr):  # exact ints/floats, all finite
                    return arr
            arr = _numeric_array(data)
            if arr is not None and np.isfinite(arr).all():
                return arr
        shape = self._shape(inp)
        if len(shape) == 0 or len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise bad(name, f"shape {shape} must be [n] or [n, 1] (one value per row)")
        datatype = str(inp.datatype).upper()
        if categorical and datatype != "BYTES":
            raise bad(name, f"categorical feature must be sent as BYTES, got {datatype}")
        if not categorical and datatype not in NUMERIC_DATATYPES and datatype != "BOOL":
            raise bad(name, f"numeric feature must be sent as FP64/FP32/INT64/…, got {datatype}")
        data = self._raw_or_list(inp, shape)
        if isinstance(data, np.ndarray):
            values = data.reshape(-1)
        else:
            if not isinstance(data, (list, tuple)):
                raise bad(name, "data must be a list")
            values = _flatten(data, name)
        if len(values) != shape[0] * (shape[1] if len(shape) == 2 else 1):
            raise bad(name, f"shape {shape} does not match the {len(values)} values sent")
        if categorical:
            return list(values)
        feat = self.schema.by_name[name]
        if datatype == "BOOL":
            if feat.dtype != "bool":
                raise bad(name, "BOOL tensor given for a non-boolean feature")
            values = [float(v) if type(v) in (bool, np.bool_) else v for v in values]
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            values = values.astype(np.float64)
            if not np.isfinite(values).all():
                raise bad(name, "must be a finite number (got NaN or infinity)")
            return values
        if not isinstance(values, np.ndarray):
            arr = _numeric_array(values)
            if arr is not None and np.isfinite(arr).all():
                return arr
        try:  # None → default for optional features; anything else names the problem
            return np.fromiter((coerce_numeric(feat, v) for v in values), dtype=np.float64, count=len(values))
        except InputError as exc:
            raise bad(exc.field, exc.reason) from None

    def _matrix(self, inp: InferInput) -> np.ndarray:
        name = str(inp.name)
        shape = self._shape(inp)
        if not self.all_numeric:
            raise bad(
                name,
                f"a single 2-D tensor needs an all-numeric schema, but feature {self.categorical[0]!r} is "
                "categorical: send one tensor per feature (BYTES for categoricals)",
            )
        datatype = str(inp.datatype).upper()
        if datatype not in NUMERIC_DATATYPES:
            raise bad(name, f"2-D input must be numeric (FP64/FP32/INT64/…), got {datatype}")
        if len(shape) == 1 and shape[0] == self.n:
            shape = [1, self.n]
        if len(shape) != 2 or shape[1] != self.n:
            raise bad(
                name,
                f"unknown feature, or a 2-D tensor of shape {shape}: expected [n, {self.n}] in schema order "
                f"({', '.join(self.schema.names[:5])}…) or one tensor per feature",
            )
        data = self._raw_or_list(inp, shape)
        if isinstance(data, np.ndarray):
            arr = data.astype(np.float64, copy=False).reshape(-1)
        else:
            if not isinstance(data, (list, tuple)):
                raise bad(name, "data must be a list")
            flat = _flatten(data, name)
            arr = _numeric_array(flat)
            if arr is None:
                bad_value = next(v for v in flat if type(v) not in (int, float))
                raise bad(name, f"values must be numbers, got {type(bad_value).__name__}")
        if arr.size != shape[0] * shape[1]:
            raise bad(name, f"shape {shape} does not match the {arr.size} values sent")
        if shape[0] == 0:
            raise bad(name, "tensor is empty")
        self.check_batch(shape[0], name)
        X = arr.reshape(shape[0], self.n)
        if not np.isfinite(X).all():
            r, c = np.argwhere(~np.isfinite(X))[0]
            raise bad(f"{name}[{r}].{self.schema.names[c]}", "must be a finite number (got NaN or infinity)")
        return np.ascontiguousarray(X, dtype=np.float64)


class DecodedInferRequest(InferRequest):
    """An infer request whose tensors :meth:`Decoder.v2_json` already decoded into the model's matrix."""

    def __init__(self, model_name: str, matrix: np.ndarray, request_id: str | None, body: bytes | None = None) -> None:
        super().__init__(model_name, [], request_id=request_id)
        self.matrix = matrix
        self.body = body  # the bytes it was decoded from (the payload log reads the values sent there)
        self.message: Any = None  # or the gRPC ModelInferRequest it was decoded from (the same use)


def _flatten(data: Sequence[Any], name: str) -> list[Any]:
    if data and isinstance(data[0], (list, tuple)):
        out: list[Any] = []
        for item in data:
            if not isinstance(item, (list, tuple)):
                raise bad(name, "data mixes nested lists and scalars")
            for v in item:
                if isinstance(v, (list, tuple)):
                    raise bad(name, "data is nested deeper than the shape allows")
                out.append(v)
        return out
    return list(data)


def _numeric_array(values: list[Any]) -> np.ndarray | None:
    """float64 array when every value is a real int/float (not bool/str/None); else None."""
    if not set(map(type, values)) <= {int, float}:
        return None
    try:
        return np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return None
