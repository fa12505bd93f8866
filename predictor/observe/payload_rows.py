"""The payload log's rows: what one logged request becomes, as an Arrow table (one row per instance).

A logged request is queued as it was answered (:data:`Logged`: the body, the predictions, the range
mask, status, latency); the writer thread turns a batch of them into one table here, off the request
path. Columns, in order: :data:`FIXED` (request id, the instance's ``row`` within the request, time,
protocol, model name and version, HTTP-like status, error reason, latency, the prediction, the
out-of-range feature names), then the request itself:

* without a drop-list, its JSON body as received (``body``; gRPC and KServe-validated requests
  re-encoded) — parsing every request into columns would cost the serving process more CPU than the
  one-row request itself, so :func:`expand` does it when the rows are read;
* with a drop-list, one column per logged feature (the schema's features minus the drop-list),
  numeric ones as float64 and categories as strings: the body is parsed in the writer, as the dropped
  values must never be written.

Either way a reader gets, after :func:`expand`, one column per logged feature holding the values the
client sent (not the model's encoding). The file's schema metadata holds the :class:`Layout`. A
one-row request is one row; a request with n instances is n rows sharing the request id (``row``
0…n-1); a refused request is one row with its status and reason and whatever feature values could
be read from its body.

Readers (feedback, quality, drift) find the same names here; nothing else spells them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

REQUEST_ID, ROW, TIME, PROTOCOL = "request_id", "row", "time", "protocol"
MODEL_NAME, MODEL_VERSION, STATUS, REASON = "model_name", "model_version", "status", "reason"
LATENCY_MS, PREDICTION, OUT_OF_RANGE = "latency_ms", "prediction", "out_of_range"
#: The columns every payload row has, in file order (the features follow).
FIXED = (
    *(REQUEST_ID, ROW, TIME, PROTOCOL, MODEL_NAME, MODEL_VERSION),
    *(STATUS, REASON, LATENCY_MS, PREDICTION, OUT_OF_RANGE),
)
#: The request body (JSON bytes), in files written without a drop-list.
BODY = "body"
#: The schema metadata key holding the layout.
LAYOUT_KEY = b"housing.payload.layout"
#: The column a feedback file adds: the true price.
ACTUAL = "actual"


#: One answered (or refused) request — (time, request id, protocol, payload, prices, range flags,
#: latency s, status, reason); the payload log queues these fields in one list each (no object per
#: request for the garbage collector: :func:`columns_to_table`). The flags are the range mask, or
#: for one row its flagged names joined (or None). The payload is the request body's bytes where
#: there are any (V2 JSON, V1 bodies re-encoded), else what the model got (a gRPC or
#: pydantic-validated ``InferRequest``).
Logged = tuple


@dataclass(frozen=True)
class Layout:
    """The model's features as the log writes them."""

    names: tuple[str, ...]  # every feature, schema order (positional V1 rows and V2 matrices use it)
    categorical: frozenset[str]
    logged: tuple[str, ...]  # names minus the drop-list

    @classmethod
    def of(cls, names: Sequence[str], categorical: Iterable[str], drop: Iterable[str] = ()) -> Layout:
        """The layout; a feature name that is also a fixed column is refused (ValueError naming it)."""
        clash = sorted(set(names) & set(FIXED))
        if clash:
            raise ValueError(f"payload log: feature name(s) {', '.join(clash)} clash with the log's own columns")
        dropped = set(drop)
        return cls(tuple(names), frozenset(categorical), tuple(n for n in names if n not in dropped))

    def to_json(self) -> bytes:
        import orjson

        return orjson.dumps({"names": self.names, "categorical": sorted(self.categorical), "logged": self.logged})

    @classmethod
    def from_json(cls, data: bytes) -> Layout:
        import orjson

        doc = orjson.loads(data)
        return cls(tuple(doc["names"]), frozenset(doc["categorical"]), tuple(doc["logged"]))

    @property
    def keeps_body(self) -> bool:
        """Nothing to drop: the body is written as it came."""
        return self.logged == self.names


def _body(payload: Any) -> Any:
    """A payload's JSON document, a KServe ``InferRequest``, or None when it cannot be read."""
    body = getattr(payload, "body", None)  # codec.DecodedInferRequest keeps the bytes it decoded
    if body is not None:
        payload = body
    payload = _from_grpc(payload)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        import orjson

        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
    return payload


#: The protobuf field holding a gRPC tensor's values, by datatype (KServe's ``get_content``).
_GRPC_FIELDS = {
    "FP64": "fp64_contents",
    "FP32": "fp32_contents",
    "INT64": "int64_contents",
    "INT32": "int_contents",
    "INT16": "int_contents",
    "INT8": "int_contents",
    "UINT64": "uint64_contents",
    "UINT32": "uint_contents",
    "UINT16": "uint_contents",
    "UINT8": "uint_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}


def _from_grpc(payload: Any) -> Any:
    """A gRPC ``ModelInferRequest`` (queued as received by the fast gRPC path), read here in the writer
    thread: a V2 JSON-like document of its tensors' names and values, straight from the protobuf
    fields (a datatype without one, e.g. FP16: no values); anything else as it is."""
    if type(payload).__name__ != "ModelInferRequest":
        return payload
    inputs = []
    for tensor in payload.inputs:
        field = _GRPC_FIELDS.get(tensor.datatype)
        values = list(getattr(tensor.contents, field)) if field is not None else []
        if field == "bytes_contents":
            values = [v.decode("utf-8", "replace") for v in values]
        inputs.append({"name": tensor.name, "data": values})
    return {"inputs": inputs}


def _flat(data: Any) -> list[Any]:
    if isinstance(data, np.ndarray):
        return data.ravel().tolist()
    if isinstance(data, (bytes, str)) or not isinstance(data, (list, tuple)):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item) if isinstance(item, (list, tuple, np.ndarray)) else [item])
    return out


def _tensor_data(inp: Any) -> Any:
    """A KServe ``InferInput``'s values (a gRPC tensor may hold them only as raw bytes)."""
    data = inp.data
    if data is None or (isinstance(data, (list, tuple)) and not data):
        try:
            data = inp.as_numpy()
        except Exception:  # noqa: BLE001 - best effort: a tensor we cannot read logs nulls
            data = []
    return data


def raw_rows(payload: Any, layout: Layout, n_rows: int | None) -> list[tuple[Any, ...]]:
    """One tuple per instance of the request: its logged features' values as sent (None where absent;
    one row of Nones when the body cannot be read)."""
    doc = _body(payload)
    logged = layout.logged
    try:
        if type(doc) is dict:
            inputs = doc.get("inputs")
            if type(inputs) is list and inputs and type(inputs[0]) is dict and "name" in inputs[0]:
                return _tensor_rows([(t.get("name"), t.get("data")) for t in inputs], layout, n_rows)
            instances = doc.get("instances")
            if type(instances) is not list:
                instances = [doc]
            out = []
            for inst in instances:
                if type(inst) is not dict:  # a positional row, in schema order
                    inst = dict(zip(layout.names, inst, strict=False))
                out.append(tuple(map(inst.get, logged)))
            return out
        if hasattr(doc, "inputs"):  # a KServe InferRequest (gRPC, or V2 REST validated by KServe)
            return _tensor_rows([(inp.name, _tensor_data(inp)) for inp in doc.inputs], layout, n_rows)
    except (TypeError, ValueError, AttributeError, KeyError):
        pass
    return [(None,) * len(logged)] * (n_rows or 1)


def _tensor_rows(pairs: list[tuple[Any, Any]], layout: Layout, n_rows: int | None) -> list[tuple[Any, ...]]:
    logged = layout.logged
    if len(pairs) == 1 and pairs[0][0] not in layout.names:  # one [n, F] matrix in schema order
        flat = _flat(pairs[0][1])
        width = len(layout.names)
        at = [layout.names.index(name) for name in logged]
        return [tuple(flat[r + j] for j in at) for r in range(0, len(flat) - width + 1, width)]
    by_name = {}
    for name, data in pairs:
        by_name[name] = data if type(data) is list and (not data or type(data[0]) is not list) else _flat(data)
    n = n_rows or max((len(v) for v in by_name.values()), default=1)
    cols = []
    for name in logged:
        col = by_name.get(name)
        cols.append(col if col is not None and len(col) == n else (list(col or []) + [None] * n)[:n])
    return list(zip(*cols, strict=True)) if cols else [()] * n


def _numeric(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values, type=pa.float64(), from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        out = []
        for v in values:
            try:
                out.append(None if v is None or isinstance(v, (dict, list)) else float(v))
            except (TypeError, ValueError, OverflowError):
                out.append(None)
        return pa.array(out, type=pa.float64())


def _strings(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array(
            [None if v is None else v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values],
            type=pa.string(),
        )


def to_table(items: Sequence[Logged], layout: Layout, model_name: str, model_version: str) -> Any:
    """One Arrow table of ``items`` (see the module's docstring for the columns)."""
    if not items:
        return _empty_table(layout, model_name, model_version)
    return columns_to_table([list(c) for c in zip(*items, strict=True)], layout, model_name, model_version)


def columns_to_table(columns: Sequence[list[Any]], layout: Layout, model_name: str, model_version: str) -> Any:
    """One Arrow table of the queued requests given as :data:`Logged`'s fields, one list each, as the
    payload log queues them (see the module's docstring for the columns).

    Column by column (the writer thread holds the interpreter meanwhile, so the serving loop waits):
    only a request with other than one row, a refused one or (with a drop-list) the body's values take
    a per-request step."""
    import pyarrow as pa

    if not columns[0]:
        return _empty_table(layout, model_name, model_version)
    t, rid, proto, payload, prices, mask, seconds, code, why = columns
    keep_body = layout.keeps_body
    bodies = [b if type(b) is bytes else _as_bytes(b) for b in payload] if keep_body else None
    ns = [-1 if p is None else len(p) for p in prices]
    values: list[tuple[Any, ...]] = []
    if keep_body:
        for i, n in enumerate(ns):
            if n < 0:  # refused or failed: as many rows as the body has instances
                ns[i] = len(raw_rows(bodies[i], layout, None))  # type: ignore[index]
    else:
        empty = (None,) * len(layout.logged)
        for i, n in enumerate(ns):
            rows = raw_rows(payload[i], layout, None if n < 0 else n)
            if n < 0:
                ns[i] = n = len(rows)
            if len(rows) != n:
                rows = (rows + [empty] * n)[:n]
            values.extend(rows)
    total = sum(ns)
    one_each = total == len(ns) and min(ns) == 1
    take = None if one_each else pa.array(np.repeat(np.arange(len(ns)), ns))

    def per_row(array: Any) -> Any:
        return array if take is None else array.take(take)

    micros = (np.array(t, dtype=np.float64) * 1e6).astype(np.int64)
    if one_each:
        row = np.zeros(total, dtype=np.int32)
    else:
        counts = np.array(ns, dtype=np.int64)
        row = (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.int32)
    if one_each and all(p is not None for p in prices):
        preds = np.concatenate(prices)
    else:
        parts = [np.full(n, np.nan) if p is None else p for p, n in zip(prices, ns, strict=True)]
        preds = np.concatenate(parts) if parts else np.empty(0)
    if one_each and all(m is None or type(m) is str for m in mask):
        oor: list[str | None] = list(mask)
    else:
        oor = []
        names = layout.names
        for m, n in zip(mask, ns, strict=True):
            if m is None or type(m) is str:  # a one-row request's flags come joined already
                oor.extend([m] * n)
            else:
                for r in m:
                    hit = np.flatnonzero(r)
                    oor.append(",".join(names[j] for j in hit) if len(hit) else None)
    arrays = [
        per_row(pa.array(rid, type=pa.string())),
        pa.array(row, type=pa.int32()),
        per_row(pa.array(micros, type=pa.timestamp("us", tz="UTC"))),
        per_row(pa.array(proto, type=pa.string())),
        pa.array([model_name] * total, type=pa.string()),
        pa.array([model_version] * total, type=pa.string()),
        per_row(pa.array(code, type=pa.int16())),
        per_row(pa.array(why, type=pa.string())),
        per_row(pa.array(np.array(seconds, dtype=np.float64) * 1e3, type=pa.float64())),
        pa.array(preds, type=pa.float64(), from_pandas=True),
        pa.array(oor, type=pa.string()),
    ]
    if keep_body:
        table = pa.Table.from_arrays([*arrays, per_row(_binary(bodies))], names=[*FIXED, BODY])
    else:
        table = pa.Table.from_arrays([*arrays, *_feature_arrays(values, layout)], names=[*FIXED, *layout.logged])
    return table.replace_schema_metadata({LAYOUT_KEY: layout.to_json()})


def _binary(values: list[bytes | None]) -> Any:
    """A binary array of ``values`` in one copy: the bytes joined once and wrapped, not appended one by one
    to a growing buffer (in the serving process that growing, freshly faulted-in memory cost more than
    the rest of the table)."""
    import pyarrow as pa

    if not values or any(v is None for v in values):
        return pa.array(values, type=pa.binary())
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    if int(lengths.sum()) >= 2**31 - 1:  # binary offsets are int32
        return pa.array(values, type=pa.binary())
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = pa.py_buffer(b"".join(values))  # type: ignore[arg-type]
    return pa.Array.from_buffers(pa.binary(), len(values), [None, pa.py_buffer(offsets), data])


def _empty_table(layout: Layout, model_name: str, model_version: str) -> Any:
    import pyarrow as pa

    types = [pa.string(), pa.int32(), pa.timestamp("us", tz="UTC"), pa.string(), pa.string(), pa.string()]
    types += [pa.int16(), pa.string(), pa.float64(), pa.float64(), pa.string()]
    arrays = [pa.array([], type=ty) for ty in types]
    if layout.keeps_body:
        table = pa.Table.from_arrays([*arrays, pa.array([], type=pa.binary())], names=[*FIXED, BODY])
    else:
        table = pa.Table.from_arrays([*arrays, *_feature_arrays([], layout)], names=[*FIXED, *layout.logged])
    return table.replace_schema_metadata({LAYOUT_KEY: layout.to_json()})


def _feature_arrays(values: list[tuple[Any, ...]], layout: Layout) -> list[Any]:
    columns = list(zip(*values, strict=True)) if values and layout.logged else [()] * len(layout.logged)
    return [
        _strings(list(col)) if name in layout.categorical else _numeric(list(col))
        for name, col in zip(layout.logged, columns, strict=True)
    ]


def _as_bytes(payload: Any) -> bytes | None:
    """A queued payload as JSON bytes (gRPC and KServe-validated requests re-encoded as V2 JSON)."""
    if payload is None or isinstance(payload, bytes):
        return payload
    import orjson

    payload = _from_grpc(payload)

    try:
        if hasattr(payload, "inputs"):
            doc = {"inputs": [{"name": i.name, "data": _flat(_tensor_data(i))} for i in payload.inputs]}
            return orjson.dumps(doc, default=_text)
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY, default=_text)
    except TypeError:
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def expand(table: Any) -> Any:
    """A payload table with one column per logged feature in place of ``body`` (files written without a
    drop-list); other tables as they are."""
    import pyarrow as pa

    if BODY not in table.column_names:
        return table
    layout = Layout.from_json((table.schema.metadata or {})[LAYOUT_KEY])
    bodies = table.column(BODY).to_pylist()
    row_index = table.column(ROW).to_pylist()
    values: list[tuple[Any, ...]] = []
    parsed: tuple[Any, list[tuple[Any, ...]]] = (object(), [])
    empty = (None,) * len(layout.logged)
    for body, r in zip(bodies, row_index, strict=True):
        if body is not parsed[0]:
            parsed = (body, raw_rows(body, layout, None) if body is not None else [])
        rows = parsed[1]
        values.append(rows[r] if r < len(rows) else empty)
    out = table.drop_columns([BODY])
    for name, array in zip(layout.logged, _feature_arrays(values, layout), strict=True):
        out = out.append_column(pa.field(name, array.type), array)
    return out


def utc_date(t: float) -> str:
    """The UTC date of a unix time (the log's date partition)."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")
