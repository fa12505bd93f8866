"""predictor.codec.v2_binary: a malformed binary V2 body is a 400 naming the header or field, not a crash in KServe."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from predictor.codec.decode import BatchTooLarge
from predictor.codec.v2_binary import Limits, check_binary_request


def _bytes_tensor(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def _request() -> tuple[dict[str, Any], bytes]:
    """A valid header and binary part: FP64, INT64, BOOL and BYTES inputs of two rows, one input in JSON."""
    raws = [
        ("RM", "FP64", np.array([6.5, 7.0]).tobytes()),
        ("TAX", "INT64", np.array([296, 300], dtype=np.int64).tobytes()),
        ("CHAS", "BOOL", np.array([True, False]).tobytes()),
        ("Zone", "BYTES", _bytes_tensor([b"RL", b"RM"])),
    ]
    inputs: list[dict[str, Any]] = [
        {"name": n, "shape": [2], "datatype": dt, "parameters": {"binary_data_size": len(raw)}} for n, dt, raw in raws
    ]
    inputs.append({"name": "LSTAT", "shape": [2], "datatype": "FP64", "data": [4.9, 5.1]})
    header = {"id": "r1", "inputs": inputs, "outputs": [{"name": "predictions", "parameters": {"binary_data": True}}]}
    return header, b"".join(raw for _, _, raw in raws)


def _body(header: dict[str, Any] | bytes, raw: bytes) -> tuple[bytes, str]:
    js = header if isinstance(header, bytes) else json.dumps(header).encode()
    return js + raw, str(len(js))


def test_a_valid_body_passes_and_kserve_decodes_it() -> None:
    header, raw = _request()
    body, length = _body(header, raw)
    check_binary_request(body, length)
    request = InferRequest.from_bytes(body, int(length), "housing")
    decoded = {i.name: i.as_numpy().tolist() for i in request.inputs}
    assert decoded == {
        "RM": [6.5, 7.0],
        "TAX": [296, 300],
        "CHAS": [True, False],
        "Zone": ["RL", "RM"],  # KServe hands BYTES on as text
        "LSTAT": [4.9, 5.1],
    }


def _refusal(body: bytes, length: str | None) -> str:
    """The message of the InvalidInput ``check_binary_request`` raises for this body."""
    with pytest.raises(InvalidInput) as caught:
        check_binary_request(body, length)
    return str(caught.value)


def _set(path: tuple[Any, ...], value: Any):
    def mutate(header: dict[str, Any]) -> None:
        target = header
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (_set(("inputs",), 5), "inputs: must be a list"),
        (lambda h: h.pop("inputs"), "inputs: must be a list"),
        (_set(("inputs", 0), 5), "inputs[0]: must be an object"),
        (lambda h: h["inputs"][1].pop("name"), "inputs[1].name: must be a string"),
        (_set(("inputs", 0, "shape"), "2"), "RM.shape: must be a list of non-negative integers"),
        (_set(("inputs", 0, "shape"), [-2]), "RM.shape"),
        (_set(("inputs", 0, "datatype"), "FLOAT"), "RM.datatype: unknown datatype 'FLOAT'"),
        (_set(("inputs", 0, "parameters"), [1]), "RM.parameters: must be an object"),
        (_set(("inputs", 0, "parameters", "binary_data_size"), "16"), "RM.parameters.binary_data_size: must be"),
        (_set(("inputs", 0, "parameters", "binary_data_size"), -16), "RM.parameters.binary_data_size: must be"),
        (_set(("inputs", 0, "parameters", "binary_data_size"), True), "RM.parameters.binary_data_size: must be"),
        (_set(("inputs", 0, "parameters", "binary_data_size"), 15), "RM.parameters.binary_data_size: 15 bytes"),
        (_set(("inputs", 1, "shape"), [3]), "TAX.parameters.binary_data_size: 16 bytes, but shape [3] of INT64 is 24"),
        (_set(("inputs", 0, "parameters"), {}), "RM: neither data nor parameters.binary_data_size"),
        (_set(("inputs", 3, "shape"), [3]), "Zone: 2 BYTES elements, but its shape holds 3"),
        (_set(("id",), 7), "id: must be a string"),
        (_set(("parameters",), []), "parameters: must be an object"),
        (_set(("outputs",), {}), "outputs: must be a list"),
        (_set(("outputs", 0), {"parameters": {}}), "outputs[0].name: must be a string"),
    ],
)
def test_malformed_header_names_the_field(mutate, fragment: str) -> None:
    header, raw = _request()
    mutate(header)
    body, length = _body(header, raw)
    assert fragment in _refusal(body, length)


@pytest.mark.parametrize(
    ("length", "fragment"),
    [
        (None, "Inference-Header-Content-Length: header missing"),
        ("abc", "Inference-Header-Content-Length: must be a non-negative integer, got 'abc'"),
        ("-5", "Inference-Header-Content-Length: must be a non-negative integer"),
        ("\u00b2", "Inference-Header-Content-Length: must be a non-negative integer"),  # a digit to str.isdigit
        ("99999", "Inference-Header-Content-Length: 99999 is more than the body's"),
        ("10", "body: its first 10 bytes (Inference-Header-Content-Length) are not valid JSON"),
    ],
)
def test_bad_length_header_is_named(length: str | None, fragment: str) -> None:
    header, raw = _request()
    body, _ = _body(header, raw)
    assert fragment in _refusal(body, length)


@pytest.mark.parametrize(
    ("raw_edit", "fragment"),
    [
        (lambda raw: raw[:-3], "add up to 46 bytes, but 43 follow the JSON header"),
        (lambda raw: raw + b"x", "add up to 46 bytes, but 47 follow the JSON header"),
    ],
)
def test_binary_part_of_the_wrong_size(raw_edit, fragment: str) -> None:
    header, raw = _request()
    body, length = _body(header, raw_edit(raw))
    assert fragment in _refusal(body, length)


def test_bytes_elements_beyond_their_tensor() -> None:
    header, raw = _request()
    zone = _bytes_tensor([b"RL"]) + struct.pack("<I", 1000) + b"RM"  # claims 1000 bytes, has 2
    body, length = _body(header, raw[: -len(zone)] + zone)
    with pytest.raises(InvalidInput, match="Zone: BYTES element 1 claims 1000 bytes"):
        check_binary_request(body, length)
    cut = _bytes_tensor([b"RL", b""]) + b"\x00\x00"  # 12 bytes like the valid one; the last length cut off
    body, length = _body(header, raw[: -len(cut)] + cut)
    with pytest.raises(InvalidInput, match="Zone: BYTES element 2 is cut off"):
        check_binary_request(body, length)
    latin = _bytes_tensor([b"RL", b"\xe9"])  # KServe would fail to make text of it: a 500
    header["inputs"][3]["parameters"]["binary_data_size"] = len(latin)
    body, length = _body(header, raw[: -len(_bytes_tensor([b"RL", b"RM"]))] + latin)
    with pytest.raises(InvalidInput, match="Zone: BYTES element 1 is not UTF-8 text"):
        check_binary_request(body, length)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_PATHS = [
    ("inputs",),
    ("inputs", 0),
    ("inputs", 2, "name"),
    ("inputs", 0, "shape"),
    ("inputs", 1, "datatype"),
    ("inputs", 3, "datatype"),
    ("inputs", 0, "parameters"),
    ("inputs", 3, "parameters", "binary_data_size"),
    ("inputs", 4, "data"),
    ("outputs",),
    ("outputs", 0),
    ("id",),
    ("parameters",),
]


@settings(max_examples=400, deadline=None)
@given(
    path=st.sampled_from(_PATHS),
    value=_JSON | st.integers(0, 64) | st.lists(st.integers(0, 4), max_size=3),
    zone=st.lists(st.binary(max_size=3), max_size=3),
    cut=st.integers(-8, 8),
    length_shift=st.integers(-3, 3),
)
def test_whatever_passes_the_check_kserve_decodes(
    path: tuple[Any, ...], value: Any, zone: list[bytes], cut: int, length_shift: int
) -> None:
    """Property: the check raises InvalidInput, or KServe decodes the body with no other error."""
    header, raw = _request()
    zone_raw = _bytes_tensor(zone)  # any bytes as the BYTES input's elements
    raw = raw[: -len(_bytes_tensor([b"RL", b"RM"]))] + zone_raw
    header["inputs"][3]["parameters"]["binary_data_size"] = len(zone_raw)
    _set(path, value)(header)
    raw = raw[:cut] if cut < 0 else raw + b"\x01" * cut
    body, length = _body(header, raw)
    length = str(int(length) + length_shift)
    try:
        check_binary_request(body, length)
    except InvalidInput:
        return
    try:
        InferRequest.from_bytes(body, int(length), "housing")
    except InvalidInput:  # KServe's own 400s (FP16 sent as JSON, …)
        pass


# -- issue 22 item 3: limits first, then a bounded walk ------------------------------------------
LIMITS = Limits(max_rows=100, features=13)


def _bytes_body(count: int, raw: bytes, shape: list[int] | None = None) -> tuple[bytes, str]:
    header = {
        "inputs": [
            {
                "name": "Zone",
                "shape": shape or [count],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    }
    return _body(header, raw)


@pytest.mark.parametrize(
    ("shape", "datatype", "fragment"),
    [
        ([1_000_000], "BYTES", "batch of 1000000 rows exceeds the limit of 100"),
        ([1, 1_000_000], "BYTES", "beyond the 100 allowed (a BYTES tensor is one feature's column)"),
        ([100, 14], "FP64", "beyond the 1300 allowed (rows × features)"),
    ],
)
def test_a_shape_beyond_the_limits_is_413_before_any_data_is_walked(monkeypatch, shape, datatype, fragment):
    """1M empty BYTES elements (4 MB) used to be walked one by one (2.2 s) before the shape was compared."""
    from predictor.codec import v2_binary

    monkeypatch.setattr(v2_binary, "check_bytes_tensor", lambda *a: pytest.fail("walked the elements"))
    count = int(np.prod(shape))
    raw = b"\0\0\0\0" * count if datatype == "BYTES" else b"\0" * (8 * count)
    header = {
        "inputs": [{"name": "Zone", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": len(raw)}}]
    }
    body, length = _body(header, raw)
    with pytest.raises(BatchTooLarge, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        check_binary_request(body, length, LIMITS)


def test_bytes_too_short_for_the_shape_are_refused_before_the_walk(monkeypatch):
    from predictor.codec import v2_binary

    monkeypatch.setattr(v2_binary, "check_bytes_tensor", lambda *a: pytest.fail("walked the elements"))
    body, length = _bytes_body(50, b"\0\0\0\0" * 10)
    with pytest.raises(InvalidInput, match=r"Zone.parameters.binary_data_size: 40 bytes cannot hold 50 BYTES"):
        check_binary_request(body, length, LIMITS)


def test_the_walk_stops_at_the_first_element_beyond_the_shape():
    body, length = _bytes_body(2, _bytes_tensor([b"a", b"b", b"c"]))
    with pytest.raises(InvalidInput, match="more BYTES elements than its shape holds"):
        check_binary_request(body, length, LIMITS)


@pytest.mark.parametrize("text", [b"RL", "Élan".encode(), b"x" * 200])
def test_ascii_fast_path_and_utf8_elements_agree(text):
    """Long (length bytes ≥ 128) and non-ASCII elements still get the per-element UTF-8 check."""
    body, length = _bytes_body(3, _bytes_tensor([text, b"RM", text]))
    check_binary_request(body, length, LIMITS)
    bad, bad_length = _bytes_body(3, _bytes_tensor([text, b"\xc3", text]))
    with pytest.raises(InvalidInput, match="BYTES element 1 is not UTF-8"):
        check_binary_request(bad, bad_length, LIMITS)


def test_a_body_at_the_limit_of_bytes_elements_is_checked_quickly():
    """Timing printed, not asserted: the walk is bounded by --max_batch_size elements."""
    import time

    rows = 10_000
    body, length = _bytes_body(rows, _bytes_tensor([b"RL"] * rows))
    start = time.perf_counter()
    check_binary_request(body, length, Limits(max_rows=rows, features=80))
    print(f"\n{rows} BYTES elements checked in {(time.perf_counter() - start) * 1e3:.1f} ms")
