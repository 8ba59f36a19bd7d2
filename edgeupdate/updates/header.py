"""The package preamble constants, the tensor table and the header's binary layout.

Wire format (all integers little-endian)::

    "EUPK" | u8 format_version | u8 signature algorithm | u32 total length
    varint header length | header | body | u32 CRC-32 of everything before | signature

The header carries the method, base version + hash (a base-free package: optionally the version
it replaces), target version + hash, and the tensor table
(name, kind, shape, dtype, coding, precision, mode/origin/packing, byte counts, params). Every
length read here is bounded (by the body size, :data:`MAX_TENSOR_ELEMENTS`, ...), so a malformed
header raises ``FormatError`` before anything is allocated from it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

from edgeupdate.updates.errors import FormatError
from edgeupdate.updates.wire import Params, Reader, Writer

MAGIC = b"EUPK"
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<4sBBI")
CHECKSUM_BYTES = 4
MAX_TENSOR_ELEMENTS = 1 << 26
MAX_NDIM = 8
MAX_TENSORS = 1 << 16

KINDS = ("dense", "sparse", "factor", "masked")
CODINGS = ("none", "bitmap", "varint", "golomb", "seeded", "context")
PRECISIONS = ("fp32", "fp16", "int8", "int8-channel", "raw")
MODES = ("set", "replace", "add")
ORIGINS = ("base", "zero")
PACKINGS = ("plain", "zstd", "entropy")
DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
_HASH_BYTES = 32
_FLAG_COMPLETE = 1
_FLAG_INITIALIZER = 2
_FLAG_BASE = 4
_FLAG_REPLACES = 8  # a base-free package names the version it replaces (rollback binding, issue 18)


@dataclass(frozen=True)
class FactorInfo:
    """One factor tensor of a factor-set entry (e.g. ``U``, ``s``, ``V`` for KA)."""

    name: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class TensorInfo:
    """One row of the tensor table.

    kind: ``dense`` (sent whole) | ``sparse`` (positions + values) | ``factor`` (reconstitution
    rule + factors) | ``masked`` (values at positions regenerated from a seed).
    mode: ``set`` (dense) | ``replace`` (values are the new weights) | ``add`` (values are deltas).
    origin: ``base`` (start from the device's tensor) | ``zero`` (start from zeros).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    coding: str = "none"
    precision: str = "fp32"
    mode: str = "set"
    origin: str = "base"
    count: int = 0
    positions_bytes: int = 0
    values_bytes: int = 0
    factors: tuple[FactorInfo, ...] = ()
    params: Params = field(default_factory=dict)
    values_packing: str = "plain"  # plain | zstd (byte-plane shuffle + zstd) | entropy (int8 symbols, adaptive ANS)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def factor_bytes(self) -> int:
        return sum(f.nbytes for f in self.factors)

    @property
    def body_bytes(self) -> int:
        return self.positions_bytes + self.values_bytes + self.factor_bytes


@dataclass(frozen=True)
class PackageHeader:
    """Everything a device reads before the body."""

    format_version: int
    method: str
    base_version: int | None
    base_hash: str | None
    target_version: int
    target_hash: str
    tensors: tuple[TensorInfo, ...]
    extra: Params = field(default_factory=dict)
    complete: bool = False  # result holds exactly the package's tensors (full model / from scratch)
    initializer: str | None = None  # seeded re-initialisation: base replaced by initializer(seed)
    initializer_seed: int | None = None


def _enum(reader: Reader, names: tuple[str, ...], what: str) -> str:
    code = reader.u8()
    if code >= len(names):
        raise FormatError(f"unknown {what} code {code}")
    return names[code]


def write_header(h: PackageHeader) -> bytes:
    w = Writer()
    w.string(h.method)
    flags = (_FLAG_COMPLETE if h.complete else 0) | (_FLAG_INITIALIZER if h.initializer else 0)
    flags |= _FLAG_BASE if h.base_hash is not None else 0
    flags |= _FLAG_REPLACES if h.base_hash is None and h.base_version is not None else 0
    w.u8(flags)
    if h.base_hash is not None:
        w.uvarint(0 if h.base_version is None else h.base_version + 1)
        w.raw(bytes.fromhex(h.base_hash))
    elif h.base_version is not None:
        w.uvarint(h.base_version)
    w.uvarint(h.target_version)
    w.raw(bytes.fromhex(h.target_hash))
    if h.initializer:
        w.string(h.initializer)
        w.uvarint(int(h.initializer_seed or 0))
    w.params(h.extra)
    w.uvarint(len(h.tensors))
    for t in h.tensors:
        w.string(t.name)
        w.u8(KINDS.index(t.kind))
        w.u8(DTYPES.index(t.dtype))
        w.uvarint(len(t.shape))
        for d in t.shape:
            w.uvarint(d)
        w.u8(CODINGS.index(t.coding))
        w.u8(PRECISIONS.index(t.precision))
        w.u8(MODES.index(t.mode) | (ORIGINS.index(t.origin) << 4) | (PACKINGS.index(t.values_packing) << 6))
        w.uvarint(t.count)
        w.uvarint(t.positions_bytes)
        w.uvarint(t.values_bytes)
        w.params(t.params)
        w.uvarint(len(t.factors))
        for f in t.factors:
            w.string(f.name)
            w.uvarint(len(f.shape))
            for d in f.shape:
                w.uvarint(d)
            w.uvarint(f.nbytes)
    return bytes(w.buf)


def _read_shape(r: Reader) -> tuple[int, ...]:
    ndim = r.uvarint(limit=MAX_NDIM)
    shape = tuple(r.uvarint(limit=MAX_TENSOR_ELEMENTS) for _ in range(ndim))
    if math.prod(shape) > MAX_TENSOR_ELEMENTS:
        raise FormatError(f"tensor shape {shape} exceeds {MAX_TENSOR_ELEMENTS} elements")
    return shape


def read_header(data: bytes, format_version: int, body_limit: int) -> PackageHeader:
    r = Reader(data)
    method = r.string(max_len=256)
    flags = r.u8()
    if flags & ~(_FLAG_COMPLETE | _FLAG_INITIALIZER | _FLAG_BASE | _FLAG_REPLACES) \
            or (flags & _FLAG_BASE and flags & _FLAG_REPLACES):
        raise FormatError(f"unknown header flags {flags:#x}")
    base_version: int | None = None
    base_hash: str | None = None
    if flags & _FLAG_BASE:
        v = r.uvarint()
        base_version = None if v == 0 else v - 1
        base_hash = r.raw(_HASH_BYTES).hex()
    elif flags & _FLAG_REPLACES:
        base_version = r.uvarint()
    target_version = r.uvarint()
    target_hash = r.raw(_HASH_BYTES).hex()
    initializer: str | None = None
    initializer_seed: int | None = None
    if flags & _FLAG_INITIALIZER:
        initializer = r.string(max_len=256)
        initializer_seed = r.uvarint()
    extra = r.params()
    n = r.uvarint(limit=MAX_TENSORS)
    tensors = []
    for _ in range(n):
        name = r.string(max_len=1024)
        kind = _enum(r, KINDS, "tensor kind")
        dtype = _enum(r, DTYPES, "dtype")
        shape = _read_shape(r)
        coding = _enum(r, CODINGS, "position coding")
        precision = _enum(r, PRECISIONS, "precision")
        mo = r.u8()
        if (mo & 0x0F) >= len(MODES) or ((mo >> 4) & 3) >= len(ORIGINS) or (mo >> 6) >= len(PACKINGS):
            raise FormatError(f"unknown mode/origin code {mo:#x} for tensor {name!r}")
        count = r.uvarint(limit=MAX_TENSOR_ELEMENTS)
        positions_bytes = r.uvarint(limit=body_limit)
        values_bytes = r.uvarint(limit=body_limit)
        params = r.params()
        factors = []
        for _ in range(r.uvarint(limit=64)):
            fname = r.string(max_len=256)
            fshape = _read_shape(r)
            factors.append(FactorInfo(fname, fshape, r.uvarint(limit=body_limit)))
        tensors.append(TensorInfo(name, kind, shape, dtype, coding, precision, MODES[mo & 0x0F], ORIGINS[(mo >> 4) & 3],
                                  count, positions_bytes, values_bytes, tuple(factors), params, PACKINGS[mo >> 6]))
    if not r.done():
        raise FormatError(f"header has {len(data) - r.pos} unread trailing bytes")
    return PackageHeader(format_version, method, base_version, base_hash, target_version, target_hash,
                         tuple(tensors), extra, bool(flags & _FLAG_COMPLETE), initializer, initializer_seed)
