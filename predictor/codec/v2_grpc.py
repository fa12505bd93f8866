"""A gRPC ``ModelInferRequest`` decoded straight into the model's matrix, without KServe's tensor objects.

KServe's servicer turns every request into an ``InferRequest`` first (``InferRequest.from_grpc``): one
``InferInput`` per tensor — ~80 for one ames row — each with its values copied out of the protobuf
by ``get_content``. :func:`decode_grpc` reads the same values from the protobuf's repeated fields
into the row (the C decoder of V1 objects) or the columns (:class:`~predictor.codec.decode.Decoder`'s
column fills), and answers the matrix, or None for any request it does not read exactly as the
column path would: raw tensor contents, parameters, requested outputs, a model version, a shape
other than ``[n]``, a datatype whose values sit elsewhere, a repeated or unknown tensor, a value the
fast fills refuse. None sends the request KServe's way (``from_grpc`` and ``Decoder.v2``), which
also writes every error message: those stay what they were.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from predictor.codec.decode import DecodedInferRequest, Decoder

#: datatype → the ``InferTensorContents`` field its values are in (those the column path reads as numbers)
_NUMERIC_FIELDS = {"FP64": "fp64_contents", "FP32": "fp32_contents", "INT64": "int64_contents", "INT32": "int_contents"}


def decode_grpc(decoder: Decoder, request: Any) -> DecodedInferRequest | None:
    """``request`` (a ``ModelInferRequest``) as an already-decoded ``InferRequest`` of the model's matrix,
    or None: the request goes KServe's way."""
    if request.raw_input_contents or request.parameters or request.outputs or request.model_version:
        return None
    inputs = request.inputs
    n_inputs = len(inputs)
    if n_inputs == 0 or n_inputs > decoder.n:
        return None
    X = _single_row(decoder, inputs) if inputs[0].shape == [1] else None
    if X is None:
        X = _columns(decoder, inputs)
        if X is None:
            return None
    decoded = DecodedInferRequest(request.model_name, X, request.id)
    decoded.from_grpc = True
    decoded.message = request
    return decoded


def _values(tensor: Any, categorical: bool) -> Any:
    """The tensor's repeated field of values for its datatype, or None when the column path would not
    read it as is."""
    datatype = tensor.datatype
    if categorical:
        return tensor.contents.bytes_contents if datatype == "BYTES" else None
    field = _NUMERIC_FIELDS.get(datatype)
    return None if field is None else getattr(tensor.contents, field)


def _single_row(decoder: Decoder, inputs: Any) -> np.ndarray | None:
    """Every tensor of shape [1]: one row, decoded by the C decoder of V1 objects."""
    from predictor.codec.decode import _c_decode_mapping

    if _c_decode_mapping is None:
        return None
    index, kinds = decoder.schema.index, decoder.kinds
    row: dict[str, Any] = {}
    for tensor in inputs:
        name = tensor.name
        j = index.get(name)
        if j is None or tensor.parameters or name in row or tensor.shape != [1]:
            return None
        values = _values(tensor, kinds[j] == 1)
        if values is None or len(values) != 1:
            return None
        value = values[0]
        row[name] = value.decode("utf-8", "replace") if kinds[j] else value  # BYTES as the column path reads it
    X = np.empty((1, decoder.n), dtype=np.float64)
    ok = _c_decode_mapping(row, decoder.names, decoder.kinds, decoder.tables, decoder.unknowns, decoder.defaults, X[0])
    return X if ok else None


def _columns(decoder: Decoder, inputs: Any) -> np.ndarray | None:
    """One [n] tensor per feature (missing optional ones take their default): the column fills."""
    from predictor.codec.decode import _c_fill_numeric

    index, kinds = decoder.schema.index, decoder.kinds
    columns: dict[int, Any] = {}
    n_rows = -1
    for tensor in inputs:
        j = index.get(tensor.name)
        shape = tensor.shape
        if j is None or j in columns or tensor.parameters or len(shape) != 1:
            return None
        values = _values(tensor, kinds[j] == 1)
        if values is None or shape[0] != len(values) or len(values) == 0:
            return None
        if n_rows < 0:
            n_rows = len(values)
            if n_rows > decoder.max_batch_size:
                return None
        elif len(values) != n_rows:
            return None
        if kinds[j]:
            columns[j] = list(values)
            continue
        arr = np.empty(n_rows, dtype=np.float64)
        if _c_fill_numeric is None or not _c_fill_numeric(list(values), arr):
            return None
        columns[j] = arr
    XT = np.empty((decoder.n, n_rows), dtype=np.float64)
    for j in range(decoder.n):
        values = columns.get(j)
        if values is None:
            if np.isnan(decoder.defaults[j]):
                return None  # a required feature missing: KServe's way names it
            XT[j] = decoder.defaults[j]
        elif kinds[j] == 0:
            XT[j] = values
        else:
            decoder._categorical_column(j, values, XT[j])
    return np.ascontiguousarray(XT.T)
