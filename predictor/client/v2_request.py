"""Build V2 (Open Inference Protocol) request bodies from ``{feature: value}`` rows.

The one builder the CLI (``housing predict --protocol v2``), the benchmarks and the tests use:
one 1-D tensor per feature (the columnar form the predictor, MLServer's pandas codec and
KServe's own runtimes accept), its datatype chosen from the values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def v2_datatype(values: Sequence[Any]) -> str:
    """``BYTES`` when any value is text, ``INT64`` when every value is an integer, else ``FP64``."""
    if any(isinstance(v, str | bytes) for v in values):
        return "BYTES"
    if values and all(type(v) is int for v in values):
        return "INT64"
    return "FP64"


def v2_body(
    rows: Sequence[Mapping[str, Any]],
    names: Iterable[str] | None = None,
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A V2 infer body with one tensor per feature (``names``: the order; default as the rows list them).

    A feature missing from a row is sent as null; FP64 numbers are sent as floats.
    """
    if names is None:
        names = dict.fromkeys(k for row in rows for k in row)
    inputs = []
    for name in names:
        values = [row.get(name) for row in rows]
        datatype = v2_datatype(values)
        if datatype == "FP64":
            values = [float(v) if type(v) is int else v for v in values]
        inputs.append({"name": name, "shape": [len(values)], "datatype": datatype, "data": values})
    body: dict[str, Any] = {"inputs": inputs}
    if request_id is not None:
        body = {"id": request_id, **body}
    if parameters:
        body["parameters"] = dict(parameters)
    return body
