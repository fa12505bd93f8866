"""A small reader for XGBoost's native UBJSON model files (``model.ubj``).

It lets the predictor compile an XGBoost bundle without importing xgboost at start-up (the
import alone costs ~0.5-1.5 s here); xgboost is still loaded lazily for ``:explain``. Typed
arrays (``[$T#n``) come back as numpy arrays. Big-endian, per the UBJSON draft 12 that XGBoost
writes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

_SCALARS = {
    b"i": (">i1", 1),
    b"U": (">u1", 1),
    b"I": (">i2", 2),
    b"l": (">i4", 4),
    b"L": (">i8", 8),
    b"d": (">f4", 4),
    b"D": (">f8", 8),
}
_STRUCT = {b"i": ">b", b"U": ">B", b"I": ">h", b"l": ">i", b"L": ">q", b"d": ">f", b"D": ">d"}


class UBJSONError(ValueError):
    """The bytes are not UBJSON this reader understands."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def marker(self) -> bytes:
        while True:
            if self.pos >= len(self.data):
                raise UBJSONError("unexpected end of data")
            m = bytes(self.data[self.pos : self.pos + 1])
            self.pos += 1
            if m != b"N":  # no-op
                return m

    def scalar(self, m: bytes) -> Any:
        fmt = _STRUCT[m]
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise UBJSONError("unexpected end of data")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def length(self) -> int:
        m = self.marker()
        if m not in _STRUCT or m in (b"d", b"D"):
            raise UBJSONError(f"bad length marker {m!r}")
        n = int(self.scalar(m))
        if n < 0:
            raise UBJSONError("negative length")
        return n

    def string(self) -> str:
        n = self.length()
        end = self.pos + n
        if end > len(self.data):
            raise UBJSONError("unexpected end of data")
        s = bytes(self.data[self.pos : end]).decode("utf-8")
        self.pos = end
        return s

    def value(self, m: bytes | None = None) -> Any:
        m = m or self.marker()
        if m in _STRUCT:
            return self.scalar(m)
        if m == b"S" or m == b"H":
            return self.string()
        if m == b"C":
            return chr(self.scalar(b"U"))
        if m == b"T":
            return True
        if m == b"F":
            return False
        if m == b"Z":
            return None
        if m == b"[":
            return self.array()
        if m == b"{":
            return self.obj()
        raise UBJSONError(f"unknown marker {m!r} at {self.pos - 1}")

    def _container_header(self) -> tuple[bytes | None, int | None]:
        typ = count = None
        if bytes(self.data[self.pos : self.pos + 1]) == b"$":
            self.pos += 1
            typ = self.marker()
        if bytes(self.data[self.pos : self.pos + 1]) == b"#":
            self.pos += 1
            count = self.length()
        if typ is not None and count is None:
            raise UBJSONError("typed container without a count")
        return typ, count

    def array(self) -> Any:
        typ, count = self._container_header()
        if typ is not None and typ in _SCALARS:
            dtype, size = _SCALARS[typ]
            end = self.pos + size * count
            if end > len(self.data):
                raise UBJSONError("unexpected end of data")
            arr = np.frombuffer(self.data[self.pos : end], dtype=dtype)
            self.pos = end
            return arr.astype(np.dtype(dtype).newbyteorder("="))  # native byte order, a copy
        out = []
        if count is not None:
            for _ in range(count):
                out.append(self.value(typ))
            return out
        while True:
            m = self.marker()
            if m == b"]":
                return out
            out.append(self.value(m))

    def obj(self) -> dict[str, Any]:
        typ, count = self._container_header()
        out: dict[str, Any] = {}
        if count is not None:
            for _ in range(count):
                key = self.string()
                out[key] = self.value(typ)
            return out
        while True:
            if bytes(self.data[self.pos : self.pos + 1]) == b"}":
                self.pos += 1
                return out
            key = self.string()
            out[key] = self.value()


def loads(data: bytes) -> Any:
    """Decode one UBJSON value."""
    reader = _Reader(data)
    try:
        return reader.value()
    except (struct.error, KeyError, UnicodeDecodeError) as exc:
        raise UBJSONError(str(exc)) from exc
