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

# the hot loop works on byte values (ints), not one-byte slices
_ARRAY_TYPES = {k[0]: (np.dtype(dt), size) for k, (dt, size) in _SCALARS.items()}
_STRUCTS = {k[0]: struct.Struct(fmt) for k, fmt in _STRUCT.items()}
_LENGTHS = {k: v for k, v in _STRUCTS.items() if k not in (ord("d"), ord("D"))}
_N, _S, _H, _C, _T, _F, _Z = (ord(c) for c in "NSHCTFZ")
_OPEN_ARRAY, _CLOSE_ARRAY, _OPEN_OBJ, _CLOSE_OBJ, _DOLLAR, _HASH = (ord(c) for c in "[]{}$#")


class UBJSONError(ValueError):
    """The bytes are not UBJSON this reader understands."""


#: Containers nested deeper than this are refused (as by the C decoder), not a RecursionError.
MAX_DEPTH = 256
_ZERO_WIDTH = frozenset(ord(c) for c in "TFZ")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.end = len(self.data)
        self.pos = 0
        self.depth = 0

    def marker(self) -> int:
        data, pos, end = self.data, self.pos, self.end
        while True:
            if pos >= end:
                raise UBJSONError("unexpected end of data")
            m = data[pos]
            pos += 1
            if m != _N:  # no-op
                self.pos = pos
                return m

    def scalar(self, m: int) -> Any:
        st = _STRUCTS[m]
        pos = self.pos
        if pos + st.size > self.end:
            raise UBJSONError("unexpected end of data")
        (value,) = st.unpack_from(self.data, pos)
        self.pos = pos + st.size
        return value

    def length(self) -> int:
        m = self.marker()
        st = _LENGTHS.get(m)
        if st is None:
            raise UBJSONError(f"bad length marker {bytes([m])!r}")
        pos = self.pos
        if pos + st.size > self.end:
            raise UBJSONError("unexpected end of data")
        (n,) = st.unpack_from(self.data, pos)
        self.pos = pos + st.size
        if n < 0:
            raise UBJSONError("negative length")
        if n > self.end - self.pos:  # no count can exceed the bytes left: refuse before allocating
            raise UBJSONError(f"length beyond the end of data at byte {self.pos}")
        return n

    def string(self) -> str:
        n = self.length()
        start = self.pos
        end = start + n
        if end > self.end:
            raise UBJSONError("unexpected end of data")
        self.pos = end
        return self.data[start:end].decode("utf-8")

    def value(self, m: int | None = None) -> Any:
        if m is None:
            m = self.marker()
        if m in _STRUCTS:
            return self.scalar(m)
        if m == _S or m == _H:
            return self.string()
        if m == _OPEN_ARRAY or m == _OPEN_OBJ:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise UBJSONError(f"nested too deeply at byte {self.pos}")
            v = self.array() if m == _OPEN_ARRAY else self.obj()
            self.depth -= 1
            return v
        if m == _C:
            return chr(self.scalar(ord("U")))
        if m == _T:
            return True
        if m == _F:
            return False
        if m == _Z:
            return None
        raise UBJSONError(f"unknown marker {bytes([m])!r} at {self.pos - 1}")

    def _container_header(self) -> tuple[int | None, int | None]:
        typ = count = None
        data, pos = self.data, self.pos
        if pos < self.end and data[pos] == _DOLLAR:
            self.pos = pos + 1
            typ = self.marker()
            pos = self.pos
        if pos < self.end and data[pos] == _HASH:
            self.pos = pos + 1
            count = self.length()
        if typ is not None and count is None:
            raise UBJSONError("typed container without a count")
        return typ, count

    def array(self) -> Any:
        typ, count = self._container_header()
        if typ in _ZERO_WIDTH:  # elements of no bytes: a count would not be bounded
            raise UBJSONError("typed array of a zero-width type")
        if typ is not None and typ in _ARRAY_TYPES:
            assert count is not None
            dtype, size = _ARRAY_TYPES[typ]
            start = self.pos
            end = start + size * count
            if end > self.end:
                raise UBJSONError("unexpected end of data")
            self.pos = end
            return np.frombuffer(self.data, dtype=dtype, count=count, offset=start)
        out = []
        if count is not None:
            for _ in range(count):
                out.append(self.value(typ))
            return out
        while True:
            m = self.marker()
            if m == _CLOSE_ARRAY:
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
        data = self.data
        while True:
            if self.pos < self.end and data[self.pos] == _CLOSE_OBJ:
                self.pos += 1
                return out
            key = self.string()
            out[key] = self.value()


def _c_decoder() -> Any:
    """``bundle._ubjson`` (the same decoding in C) when it is built and current; else None."""
    try:
        from bundle import _ubjson
    except ImportError:  # pragma: no cover - depends on the build
        return None
    return _ubjson if getattr(_ubjson, "ABI", None) == 2 else None


_c = _c_decoder()


def loads(data: bytes) -> Any:
    """Decode one UBJSON value (in C when ``bundle._ubjson`` is built)."""
    data = bytes(data)
    try:
        if _c is not None:

            def make_array(marker: int, offset: int, count: int) -> np.ndarray:
                return np.frombuffer(data, dtype=_ARRAY_TYPES[marker][0], count=count, offset=offset)

            return _c.loads(data, make_array)
        return _Reader(data).value()
    except (struct.error, KeyError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, UBJSONError):
            raise
        raise UBJSONError(str(exc)) from exc
