"""Bounds-checked little-endian primitives for the package header (LEB128 varints, strings, params).

Every read that would run past the end, or decode an impossible value, raises ``FormatError``.
"""

from __future__ import annotations

import struct

from edgeupdate.updates.errors import FormatError

ParamValue = int | float | str
Params = dict[str, ParamValue]

_MAX_VARINT_BYTES = 10
_PARAM_INT, _PARAM_FLOAT, _PARAM_STR = 0, 1, 2


class Writer:
    """Appends header fields to a bytearray."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def u8(self, value: int) -> None:
        if not 0 <= value < 256:
            raise ValueError(f"u8 out of range: {value}")
        self.buf.append(value)

    def uvarint(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"uvarint must be non-negative, got {value}")
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                self.buf.append(byte | 0x80)
            else:
                self.buf.append(byte)
                return

    def svarint(self, value: int) -> None:
        self.uvarint((value << 1) if value >= 0 else ((-value << 1) - 1))

    def f64(self, value: float) -> None:
        self.buf += struct.pack("<d", value)

    def raw(self, data: bytes) -> None:
        self.buf += data

    def string(self, value: str) -> None:
        data = value.encode("utf-8")
        self.uvarint(len(data))
        self.buf += data

    def params(self, params: Params) -> None:
        self.uvarint(len(params))
        for key in sorted(params):
            value = params[key]
            self.string(key)
            if isinstance(value, bool) or isinstance(value, int):
                self.u8(_PARAM_INT)
                self.svarint(int(value))
            elif isinstance(value, float):
                self.u8(_PARAM_FLOAT)
                self.f64(value)
            elif isinstance(value, str):
                self.u8(_PARAM_STR)
                self.string(value)
            else:
                raise TypeError(f"param {key!r} must be int, float or str, got {type(value).__name__}")


class Reader:
    """Reads header fields from ``data``; ``what`` names the region in error messages."""

    def __init__(self, data: bytes, what: str = "header") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(f"{self.what} truncated at byte {self.pos} (needs {n} more bytes)")

    def u8(self) -> int:
        self._need(1)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uvarint(self, limit: int = 1 << 63) -> int:
        value, shift = 0, 0
        for _ in range(_MAX_VARINT_BYTES):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > limit:
                    raise FormatError(f"{self.what}: value {value} exceeds limit {limit}")
                return value
            shift += 7
        raise FormatError(f"{self.what}: varint longer than {_MAX_VARINT_BYTES} bytes at byte {self.pos}")

    def svarint(self) -> int:
        z = self.uvarint(limit=(1 << 64) - 1)
        return (z >> 1) if not z & 1 else -((z + 1) >> 1)

    def f64(self) -> float:
        self._need(8)
        (value,) = struct.unpack_from("<d", self.data, self.pos)
        self.pos += 8
        return float(value)

    def raw(self, n: int) -> bytes:
        self._need(n)
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def string(self, max_len: int = 4096) -> str:
        n = self.uvarint(limit=max_len)
        try:
            return self.raw(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{self.what}: string is not valid UTF-8 at byte {self.pos}") from exc

    def params(self) -> Params:
        n = self.uvarint(limit=1024)
        out: Params = {}
        for _ in range(n):
            key = self.string(max_len=256)
            tag = self.u8()
            if tag == _PARAM_INT:
                out[key] = self.svarint()
            elif tag == _PARAM_FLOAT:
                out[key] = self.f64()
            elif tag == _PARAM_STR:
                out[key] = self.string()
            else:
                raise FormatError(f"{self.what}: unknown param type tag {tag} for {key!r}")
        return out

    def done(self) -> bool:
        return self.pos == len(self.data)
