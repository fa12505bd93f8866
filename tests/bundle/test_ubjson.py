"""The UBJSON reader: its C decoder (``bundle._ubjson``) and its Python one decode alike."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundle import ubjson

pytestmark = pytest.mark.skipif(ubjson._c is None, reason="bundle._ubjson is not built")


def _python(data: bytes) -> Any:
    try:
        return ubjson._Reader(data).value()
    except (struct.error, KeyError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, ubjson.UBJSONError):
            raise
        raise ubjson.UBJSONError(str(exc)) from exc


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    return type(a) is type(b) and (a == b or (a != a and b != b))


def _key(text: str) -> bytes:
    raw = text.encode()
    return b"U" + bytes([len(raw)]) + raw


def test_both_decoders_read_an_xgboost_model_alike(ames_xgb: Path) -> None:
    data = (ames_xgb / "model.ubj").read_bytes()
    c, py = ubjson.loads(data), _python(data)
    assert _same(c, py)
    tree = c["learner"]["gradient_booster"]["model"]["trees"][0]
    assert tree["left_children"].dtype == np.dtype(">i4") and not tree["left_children"].flags.writeable


def test_every_marker_decodes_alike() -> None:
    floats = struct.pack(">3f", 1.5, float("nan"), -2.0)
    doc = (
        b"{"
        + _key("ints")
        + b"[i\xffU\xffI\x80\x00l\x7f\xff\xff\xffL\x80\x00\x00\x00\x00\x00\x00\x00]"
        + _key("floats")
        + b"[d"
        + struct.pack(">f", 0.1)
        + b"D"
        + struct.pack(">d", 0.1)
        + b"]"
        + _key("typed")
        + b"[$d#U\x03"
        + floats
        + _key("empty")
        + b"[$l#U\x00"
        + _key("counted")
        + b"[#U\x02SU\x03h\xc3\xa9C!"  # a counted array (no end marker): a string ("hé"), a char
        + _key("typed-obj")
        + b"{$T#U\x02"
        + b"U\x01aU\x01b"  # keys only: the values are implied by the type
        + _key("consts")
        + b"[TFZNZ]"  # N is a no-op
        + _key("high")
        + b"HU\x0412.5"
        + b"}"
    )
    c, py = ubjson.loads(doc), _python(doc)
    assert _same(c, py)
    assert c["ints"] == [-1, 255, -32768, 2**31 - 1, -(2**63)]
    assert c["floats"][0] == np.float32(0.1) and c["floats"][1] == 0.1
    assert c["typed"].tolist()[0] == 1.5 and np.isnan(c["typed"][1])
    assert c["counted"] == ["hé", "!"] and c["typed-obj"] == {"a": True, "b": True}
    assert c["consts"] == [True, False, None, None] and c["high"] == "12.5"


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"{",
        b"[$d#i\x05\x00",  # typed array shorter than its count
        b"{i\x03abcZ",  # key length beyond the data
        b"\xff",  # unknown marker
        b"[#U\x02ii",  # counted array cut short
        b"[$d]",  # typed without a count
        b"[#i\xff]",  # negative count
        b"[#l\x7f\xff\xff\xff",  # count far beyond the data
        b"SU\x02\xff\xfe",  # not UTF-8
        b"[" * 300 + b"]" * 300,  # nested beyond the C decoder's limit
    ],
)
def test_malformed_data_is_refused_by_the_c_decoder(blob: bytes) -> None:
    with pytest.raises(ubjson.UBJSONError):
        ubjson.loads(blob)


# -- issue 22 item 13: both decoders bounded the same way, fuzzed ---------------------------------
def _both(data: bytes) -> tuple[Any, Any]:
    """(C result or its UBJSONError, Python result or its UBJSONError); anything else escapes and fails."""
    out = []
    for decode in (ubjson.loads, _python):
        try:
            out.append(decode(data))
        except ubjson.UBJSONError as exc:
            out.append(exc)
    return out[0], out[1]


@pytest.mark.parametrize(
    "blob",
    [
        b"[#l\x7f\xff\xff\xff",  # count far beyond the data
        b"{#l\x00\x10\x00\x00" + b"U\x01a" * 8,  # a count the data can hold only a few entries of
        b"[#U\x08" + b"[#U\x01" * 3 + b"Z",  # counts add up beyond what is left
        b"[$Z#l\x7f\xff\xff\xff",  # 2 billion nulls of no bytes each
        b"[$T#U\x05",  # zero-width typed array, even short
        b"[" * 300 + b"]" * 300,  # nested beyond the limit: no RecursionError from the Python decoder
        b"{U\x01a" * 2000 + b"Z" + b"}" * 2000,
    ],
)
def test_both_decoders_refuse_what_the_data_cannot_hold(blob: bytes) -> None:
    c, py = _both(blob)
    assert isinstance(c, ubjson.UBJSONError) and isinstance(py, ubjson.UBJSONError), (c, py)


def test_counts_are_bounded_by_the_bytes_left_not_the_total() -> None:
    """``[#U\x05`` inside a document has 5 bytes of data in total but fewer left where it stands."""
    doc = b"[SU\x03abc[#U\x05ZZ]"
    c, py = _both(doc)
    assert isinstance(c, ubjson.UBJSONError) and isinstance(py, ubjson.UBJSONError)
    assert _same(*_both(b"[SU\x03abc[#U\x02ZZ]"))


_MARKERS = b"iUIlLdDSHCTFZN[]{}$#"


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([bytes([m]) for m in _MARKERS]),
            st.binary(max_size=4),
            st.sampled_from([b"U\x01a", b"#U\x02", b"$d#U\x01", b"#l\x7f\xff\xff\xff", b"$Z#U\x03", b"SU\x02hi"]),
        ),
        max_size=40,
    )
)
def test_fuzz_both_decoders_agree_and_only_refuse_with_ubjson_errors(parts: list[bytes]) -> None:
    data = b"".join(parts)
    c, py = _both(data)
    if isinstance(c, ubjson.UBJSONError) or isinstance(py, ubjson.UBJSONError):
        assert isinstance(c, ubjson.UBJSONError) and isinstance(py, ubjson.UBJSONError), (data, c, py)
    else:
        assert _same(c, py), data


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_truncations_and_flips_of_a_real_model(ames_xgb: Path, data: st.DataObject) -> None:
    blob = bytearray((ames_xgb / "model.ubj").read_bytes()[:4096])
    cut = data.draw(st.integers(0, len(blob)))
    for i in data.draw(st.lists(st.integers(0, len(blob) - 1), max_size=4)):
        blob[i] = data.draw(st.integers(0, 255))
    c, py = _both(bytes(blob[:cut]))
    if isinstance(c, ubjson.UBJSONError) or isinstance(py, ubjson.UBJSONError):
        assert isinstance(c, ubjson.UBJSONError) and isinstance(py, ubjson.UBJSONError), (c, py)
    else:
        assert _same(c, py)
