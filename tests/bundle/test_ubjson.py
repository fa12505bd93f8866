"""The UBJSON reader: its C decoder (``bundle._ubjson``) and its Python one decode alike."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bundle import ubjson

pytestmark = pytest.mark.skipif(ubjson._c is None, reason="bundle._ubjson is not built")


def _python(data: bytes) -> Any:
    try:
        return ubjson._Reader(data).value()
    except (struct.error, KeyError, UnicodeDecodeError) as exc:
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
