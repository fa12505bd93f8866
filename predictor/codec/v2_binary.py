"""V2 REST binary tensor extension: a request body checked before KServe decodes it.

Such a body is a JSON header — its length in bytes in ``Inference-Header-Content-Length`` — then
the bytes of each input sent as binary, in the order of ``inputs``, each as long as its
``parameters.binary_data_size``. KServe's own decoder (``InferRequest.from_bytes``) trusts all of
it: a length that is no number, a size that is no integer or does not fit the shape, a header
that is no object or an input without a name end in a 500 with a traceback (or a dropped
connection). :func:`check_binary_request` finds those first and raises
:class:`kserve.errors.InvalidInput` (400) naming the header or the field; KServe then decodes
what passed. :class:`CheckedDataPlane` puts the check in KServe's decoding.

Before anything is walked, each tensor's ``prod(shape)`` is held to the model's limits (rows to
``--max_batch_size``, elements to rows × features; a BYTES tensor is one categorical column, so at
most ``--max_batch_size`` elements) → 413, and a BYTES tensor's byte length to its element count
(each element takes at least its 4-byte length). The walk over BYTES elements is then bounded by
the batch limit, stops at the first element beyond the shape, and checks UTF-8 once for the whole
tensor when it is ASCII (the usual case) instead of per element: 1M empty elements in 4 MB used
to take 2.2 s of the event loop before the shape was compared at the end.
"""

from __future__ import annotations

import math
import struct
from typing import Any, NamedTuple

import orjson
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.v2_datamodels import InferenceRequest

from predictor.codec.decode import BatchTooLarge
from predictor.codec.entry import decode_entry

HEADER = "Inference-Header-Content-Length"
#: Bytes per element of the fixed-size V2 datatypes (BYTES elements carry their own 4-byte length).
ITEM_SIZE = {
    "BOOL": 1,
    "INT8": 1,
    "UINT8": 1,
    "INT16": 2,
    "UINT16": 2,
    "FP16": 2,
    "INT32": 4,
    "UINT32": 4,
    "FP32": 4,
    "INT64": 8,
    "UINT64": 8,
    "FP64": 8,
}
_LENGTH = struct.Struct("<I")


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def header_length(value: str | None, body_size: int) -> int:
    """The JSON header's length from the ``Inference-Header-Content-Length`` value."""
    if value is None:
        raise InvalidInput(f"{HEADER}: header missing (a body with binary tensor data needs it)")
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise InvalidInput(f"{HEADER}: must be a non-negative integer, got {value[:20]!r}")
    length = int(text)
    if length > body_size:
        raise InvalidInput(f"{HEADER}: {length} is more than the body's {body_size} bytes")
    return length


class Limits(NamedTuple):
    """What the served model accepts: rows per request and input features."""

    max_rows: int
    features: int


def check_binary_request(body: bytes, length_header: str | None, limits: Limits | None = None) -> None:
    """Raise InvalidInput naming the header or field when KServe could not decode ``body`` cleanly, or
    :class:`~predictor.codec.decode.BatchTooLarge` when a tensor's shape is beyond ``limits``."""
    length = header_length(length_header, len(body))
    try:
        header = orjson.loads(body[:length])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: its first {length} bytes ({HEADER}) are not valid JSON ({exc})") from None
    if type(header) is not dict:
        raise InvalidInput(f"body: the JSON header must be an object, got {type(header).__name__}")
    if "id" in header and header["id"] is not None and type(header["id"]) is not str:
        raise InvalidInput("id: must be a string")
    if header.get("parameters") is not None and type(header["parameters"]) is not dict:
        raise InvalidInput("parameters: must be an object")
    inputs = header.get("inputs")
    if type(inputs) is not list:
        raise InvalidInput("inputs: must be a list of tensors")
    sizes = [_check_input(i, tensor, limits) for i, tensor in enumerate(inputs)]
    _check_outputs(header.get("outputs"))
    follows = len(body) - length
    if sum(sizes) != follows:
        raise InvalidInput(
            f"body: the inputs' parameters.binary_data_size add up to {sum(sizes)} bytes, "
            f"but {follows} follow the JSON header ({HEADER}: {length})"
        )
    view, offset = memoryview(body), length
    for tensor, size in zip(inputs, sizes, strict=True):
        if tensor["datatype"] == "BYTES" and tensor.get("data") is None:
            check_bytes_tensor(tensor["name"], view[offset : offset + size], math.prod(tensor["shape"]))
        offset += size


def _check_shape(name: str, shape: list[int], datatype: str, limits: Limits) -> None:
    """413 for a tensor the model could never take, before any of its data is looked at."""
    rows, count = (shape[0] if shape else 1), math.prod(shape)
    if rows > limits.max_rows:
        raise BatchTooLarge(f"{name}: batch of {rows} rows exceeds the limit of {limits.max_rows} (--max_batch_size)")
    most = limits.max_rows if datatype == "BYTES" else limits.max_rows * limits.features
    if count > most:
        what = "a BYTES tensor is one feature's column" if datatype == "BYTES" else "rows × features"
        raise BatchTooLarge(f"{name}: shape {shape} holds {count} elements, beyond the {most} allowed ({what})")


def _check_input(i: int, tensor: Any, limits: Limits | None = None) -> int:
    """Check one input; the number of its bytes after the JSON header."""
    if type(tensor) is not dict:
        raise InvalidInput(f"inputs[{i}]: must be an object")
    name = tensor.get("name")
    if type(name) is not str:
        raise InvalidInput(f"inputs[{i}].name: must be a string")
    shape = tensor.get("shape")
    if type(shape) is not list or not all(_is_count(d) for d in shape):
        raise InvalidInput(f"{name}.shape: must be a list of non-negative integers")
    datatype = tensor.get("datatype")
    if type(datatype) is not str or (datatype != "BYTES" and datatype not in ITEM_SIZE):
        raise InvalidInput(f"{name}.datatype: unknown datatype {str(datatype)[:20]!r}")
    parameters = tensor.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise InvalidInput(f"{name}.parameters: must be an object")
    if limits is not None:
        _check_shape(name, shape, datatype, limits)
    if tensor.get("data") is not None:
        return 0  # sent in the JSON header: KServe reads it from there
    size = (parameters or {}).get("binary_data_size")
    if size is None:
        raise InvalidInput(f"{name}: neither data nor parameters.binary_data_size")
    if not _is_count(size):
        raise InvalidInput(f"{name}.parameters.binary_data_size: must be a non-negative integer")
    count = math.prod(shape)
    if datatype == "BYTES" and size < 4 * count:
        raise InvalidInput(
            f"{name}.parameters.binary_data_size: {size} bytes cannot hold {count} BYTES elements "
            "(each takes at least its 4-byte length)"
        )
    if datatype != "BYTES" and size != count * ITEM_SIZE[datatype]:
        raise InvalidInput(
            f"{name}.parameters.binary_data_size: {size} bytes, but shape {shape} of {datatype} "
            f"is {count * ITEM_SIZE[datatype]}"
        )
    return size


def check_bytes_tensor(name: str, raw: bytes | memoryview, count: int) -> None:
    """A BYTES tensor's binary form: ``count`` elements, each a 4-byte little-endian length then UTF-8 bytes."""
    ascii_only = bytes(raw).isascii()  # lengths < 128 and ASCII text: every element is UTF-8, no decoding
    offset, seen, end = 0, 0, len(raw)
    unpack = _LENGTH.unpack_from
    while offset < end:
        if offset + 4 > end:
            raise InvalidInput(f"{name}: BYTES element {seen} is cut off in its 4-byte length")
        if seen == count:
            raise InvalidInput(f"{name}: more BYTES elements than its shape holds ({count})")
        (size,) = unpack(raw, offset)
        start, offset = offset + 4, offset + 4 + size
        if offset > end:
            raise InvalidInput(f"{name}: BYTES element {seen} claims {size} bytes, beyond the tensor's data")
        if not ascii_only:
            try:
                str(raw[start:offset], "utf-8")  # KServe hands BYTES on as text
            except UnicodeDecodeError:
                raise InvalidInput(f"{name}: BYTES element {seen} is not UTF-8 text") from None
        seen += 1
    if seen != count:
        raise InvalidInput(f"{name}: {seen} BYTES elements, but its shape holds {count}")


def _check_outputs(outputs: Any) -> None:
    if outputs is None:
        return
    if type(outputs) is not list:
        raise InvalidInput("outputs: must be a list")
    for i, out in enumerate(outputs):
        if type(out) is not dict or type(out.get("name")) is not str:
            raise InvalidInput(f"outputs[{i}].name: must be a string")
        if out.get("parameters") is not None and type(out["parameters"]) is not dict:
            raise InvalidInput(f"outputs[{i}].parameters: must be an object")


class CheckedDataPlane(DataPlane):
    """KServe's data plane, with binary V2 REST bodies checked before they are decoded."""

    def decode_inference_request(
        self, body: bytes | InferenceRequest, headers: dict[str, str], model_name: str
    ) -> InferRequest:
        if isinstance(body, bytes):
            entry = decode_entry(self.model_registry.get_model(model_name))
            limits = None  # a model of another kind, or not loaded yet: only the body's own consistency
            if entry is not None and entry.max_batch_size and entry.max_inputs:
                limits = Limits(entry.max_batch_size, entry.max_inputs)
            check_binary_request(body, headers.get(INFERENCE_CONTENT_LENGTH_HEADER), limits)
        return super().decode_inference_request(body, headers, model_name)
