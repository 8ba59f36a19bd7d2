"""``UpdatePackage``: header + body, its binary encoding, and the device-side ``apply``.

Wire format (all integers little-endian)::

    "EUPK" | u8 format_version | u8 signature algorithm | u32 total length
    varint header length | header | body | u32 CRC-32 of everything before | signature

The header carries the method, base version + hash, target version + hash, and the tensor table
(name, kind, shape, dtype, coding, precision, mode, byte counts, params). The body is the
concatenation, in table order, of each tensor's position bytes, value bytes and factor bytes.
``decode`` checks length, checksum and (with a key) the signature before it parses anything, then
decodes every tensor so a malformed body fails at decode, not half-way through ``apply``.
"""

from __future__ import annotations

import copy
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from edgeupdate.updates import auth
from edgeupdate.updates.errors import (
    AuthenticationError,
    BaseMismatchError,
    FormatError,
    IntegrityError,
    PackageError,
)
from edgeupdate.updates.hashing import StateDict, state_hash
from edgeupdate.updates.positions import decode_positions, entropy_bound_bits
from edgeupdate.updates.reconstitution import RULES, reconstitute
from edgeupdate.updates.seeded import mask_positions, resolve_initializer
from edgeupdate.updates.values import (
    QuantisationError,
    channels_of,
    decode_values,
    dtype_from_name,
    unpack_values,
    values_size_bytes,
)
from edgeupdate.updates.wire import Params, Reader, Writer

MAGIC = b"EUPK"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<4sBBI")
CHECKSUM_BYTES = 4
MAX_TENSOR_ELEMENTS = 1 << 26
MAX_NDIM = 8
MAX_TENSORS = 1 << 16

KINDS = ("dense", "sparse", "factor", "masked")
CODINGS = ("none", "bitmap", "varint", "golomb", "seeded")
PRECISIONS = ("fp32", "fp16", "int8", "int8-channel", "raw")
MODES = ("set", "replace", "add")
ORIGINS = ("base", "zero")
PACKINGS = ("plain", "zstd")
DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
_HASH_BYTES = 32
_FLAG_COMPLETE = 1
_FLAG_INITIALIZER = 2
_FLAG_BASE = 4

_PARSE_ERRORS = (ValueError, IndexError, OverflowError, KeyError, TypeError, RuntimeError, struct.error, MemoryError)


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
    values_packing: str = "plain"  # plain | zstd (byte-plane shuffle + zstd of the value bytes)

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


@dataclass(frozen=True)
class TensorBlobs:
    """The encoded body parts of one table entry."""

    positions: bytes = b""
    values: bytes = b""
    factors: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class _Payload:
    positions: torch.Tensor | None
    values: torch.Tensor | None
    factors: dict[str, torch.Tensor]


def _enum(reader: Reader, names: tuple[str, ...], what: str) -> str:
    code = reader.u8()
    if code >= len(names):
        raise FormatError(f"unknown {what} code {code}")
    return names[code]


def _write_header(h: PackageHeader) -> bytes:
    w = Writer()
    w.string(h.method)
    flags = (_FLAG_COMPLETE if h.complete else 0) | (_FLAG_INITIALIZER if h.initializer else 0)
    flags |= _FLAG_BASE if h.base_hash is not None else 0
    w.u8(flags)
    if h.base_hash is not None:
        w.uvarint(0 if h.base_version is None else h.base_version + 1)
        w.raw(bytes.fromhex(h.base_hash))
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


def _read_header(data: bytes, format_version: int, body_limit: int) -> PackageHeader:
    r = Reader(data)
    method = r.string(max_len=256)
    flags = r.u8()
    if flags & ~(_FLAG_COMPLETE | _FLAG_INITIALIZER | _FLAG_BASE):
        raise FormatError(f"unknown header flags {flags:#x}")
    base_version: int | None = None
    base_hash: str | None = None
    if flags & _FLAG_BASE:
        v = r.uvarint()
        base_version = None if v == 0 else v - 1
        base_hash = r.raw(_HASH_BYTES).hex()
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


def _unpacked_values(info: TensorInfo, blob: bytes, count: int, dtype: torch.dtype, channels: np.ndarray) -> bytes:
    if info.values_packing == "plain":
        return blob
    n_channels = int(np.unique(channels).size) if info.precision == "int8-channel" else 1
    return unpack_values(blob, info.precision, dtype, values_size_bytes(count, info.precision, dtype, n_channels))


def _decode_payload(info: TensorInfo, blobs: TensorBlobs) -> _Payload:
    """Decode and validate one entry's body parts against its table row."""
    dtype = dtype_from_name(info.dtype)
    numel = info.numel
    lossless = info.precision in ("fp32", "raw")
    if info.precision == "fp32" and dtype != torch.float32:
        raise FormatError(f"tensor {info.name!r}: precision fp32 but dtype {info.dtype}")
    if not lossless and not dtype.is_floating_point:
        raise FormatError(f"tensor {info.name!r}: lossy precision {info.precision} for a {info.dtype} tensor")
    value_dtype = dtype if lossless else torch.float32
    if info.count > numel:
        raise FormatError(f"tensor {info.name!r}: {info.count} values for {numel} weights")
    if info.kind == "dense":
        if (info.coding, info.mode, info.origin, info.count, info.positions_bytes) != ("none", "set", "base", numel, 0) or info.factors:
            raise FormatError(f"dense tensor {info.name!r}: inconsistent table row")
        all_pos = np.arange(numel, dtype=np.int64)
        channels = channels_of(all_pos, info.shape)
        plain = _unpacked_values(info, blobs.values, numel, value_dtype, channels)
        values = decode_values(plain, info.precision, numel, value_dtype, channels)
        return _Payload(None, values, {})
    if info.kind in ("sparse", "masked"):
        if info.mode not in ("replace", "add") or info.factors:
            raise FormatError(f"{info.kind} tensor {info.name!r}: inconsistent table row")
        if info.kind == "sparse":
            if info.coding in ("none", "seeded"):
                raise FormatError(f"sparse tensor {info.name!r}: no position coding")
            pos = decode_positions(blobs.positions, numel, info.count, info.coding, info.params)
        else:
            if info.coding != "seeded" or info.positions_bytes:
                raise FormatError(f"masked tensor {info.name!r}: positions must be seeded")
            seed, p = info.params.get("seed"), info.params.get("p")
            if not isinstance(seed, int) or not isinstance(p, float) or not 0.0 <= p <= 1.0:
                raise FormatError(f"masked tensor {info.name!r}: needs params seed (int) and p in [0, 1]")
            pos = mask_positions(seed, info.name, numel, p)
            if pos.size != info.count:
                raise FormatError(f"masked tensor {info.name!r}: mask has {pos.size} positions, table says {info.count}")
        if info.mode == "replace" and not lossless:
            raise FormatError(f"tensor {info.name!r}: replace mode needs lossless values")
        channels = channels_of(pos, info.shape)
        plain = _unpacked_values(info, blobs.values, info.count, value_dtype, channels)
        values = decode_values(plain, info.precision, info.count, value_dtype, channels)
        return _Payload(torch.from_numpy(pos), values, {})
    # factor
    rule = info.params.get("rule")
    if rule not in RULES:
        raise FormatError(f"factor tensor {info.name!r}: unknown reconstitution rule {rule!r}")
    if (info.coding != "none" or info.positions_bytes or info.values_bytes or info.mode != "set" or not info.factors
            or info.values_packing != "plain"):
        raise FormatError(f"factor tensor {info.name!r}: inconsistent table row")
    factors = {}
    for f, blob in zip(info.factors, blobs.factors):
        n = math.prod(f.shape)
        all_pos = np.arange(n, dtype=np.int64)
        factors[f.name] = decode_values(blob, info.precision, n, value_dtype, channels_of(all_pos, f.shape)).reshape(f.shape)
    if len(factors) != len(info.factors):
        raise FormatError(f"factor tensor {info.name!r}: duplicate factor names")
    return _Payload(None, None, factors)


class UpdatePackage:
    """A decoded, validated update package: header, body parts and what they decode to."""

    def __init__(self, header: PackageHeader, blobs: list[TensorBlobs] | tuple[TensorBlobs, ...],
                 quantisation: Mapping[str, QuantisationError] | None = None) -> None:
        if header.format_version != FORMAT_VERSION:
            raise FormatError(f"unknown format version {header.format_version} (this build reads {FORMAT_VERSION})")
        if len(blobs) != len(header.tensors):
            raise FormatError(f"{len(blobs)} body parts for {len(header.tensors)} table rows")
        names = [t.name for t in header.tensors]
        if len(set(names)) != len(names):
            raise FormatError("tensor table lists a name twice")
        if header.complete and any(t.kind not in ("dense",) and t.origin != "zero" for t in header.tensors):
            raise FormatError("complete package has an entry that needs a base tensor")
        self.header = header
        self.blobs = tuple(blobs)
        self.quantisation: dict[str, QuantisationError] = dict(quantisation or {})
        self.signature_algorithm = "none"
        self._signature_bytes = 0
        self._payloads = [_decode_payload(t, b) for t, b in zip(header.tensors, self.blobs)]

    # --- encoding -------------------------------------------------------------------------------
    def encode(self, key: auth.Signer | None = None) -> bytes:
        """The package as bytes, optionally signed with ``key``."""
        header = _write_header(self.header)
        hlen = Writer()
        hlen.uvarint(len(header))
        body = b"".join(b.positions + b.values + b"".join(b.factors) for b in self.blobs)
        alg = key.algorithm if key is not None else auth.SIG_NONE
        sig_size = auth.SIGNATURE_SIZES[alg]
        total = _PREAMBLE.size + len(hlen.buf) + len(header) + len(body) + CHECKSUM_BYTES + sig_size
        if total >= 1 << 32:
            raise ValueError(f"package of {total} bytes exceeds the 4 GiB format limit")
        out = _PREAMBLE.pack(MAGIC, self.header.format_version, alg, total) + bytes(hlen.buf) + header + body
        out += struct.pack("<I", zlib.crc32(out))
        if key is not None:
            out += key.sign(out)
        return out

    @classmethod
    def decode(cls, data: bytes, key: auth.Verifier | None = None) -> "UpdatePackage":
        """Parse and validate ``data``; with ``key``, unsigned or wrongly signed bytes raise ``AuthenticationError``."""
        data = bytes(data)
        if len(data) < _PREAMBLE.size:
            raise FormatError(f"truncated package: {len(data)} bytes is shorter than the {_PREAMBLE.size}-byte preamble")
        magic, version, alg, total = _PREAMBLE.unpack_from(data)
        if magic != MAGIC:
            raise FormatError("not an update package (bad magic bytes)")
        if version != FORMAT_VERSION:
            raise FormatError(f"unknown format version {version} (this build reads {FORMAT_VERSION})")
        if alg not in auth.SIGNATURE_SIZES:
            raise FormatError(f"unknown signature algorithm code {alg}")
        if len(data) < total:
            raise FormatError(f"truncated package: {len(data)} of {total} bytes")
        if len(data) > total:
            raise FormatError(f"{len(data) - total} unexpected trailing bytes after a {total}-byte package")
        sig_size = auth.SIGNATURE_SIZES[alg]
        end = total - sig_size - CHECKSUM_BYTES
        if end < _PREAMBLE.size:
            raise FormatError(f"truncated package: {total} bytes cannot hold a checksum and signature")
        (crc,) = struct.unpack_from("<I", data, end)
        if zlib.crc32(data[:end]) != crc:
            raise IntegrityError("checksum mismatch: the package is corrupted")
        if key is not None:
            if alg == auth.SIG_NONE:
                raise AuthenticationError("package is unsigned but a verification key is configured")
            if alg != key.algorithm:
                raise AuthenticationError(f"package is signed with {auth.SIGNATURE_NAMES[alg]}, "
                                          f"the configured key is {auth.SIGNATURE_NAMES[key.algorithm]}")
            if not key.verify(data[: end + CHECKSUM_BYTES], data[end + CHECKSUM_BYTES :]):
                raise AuthenticationError("signature does not verify: the package is forged or signed with another key")
        try:
            r = Reader(data[:end], "package")
            r.pos = _PREAMBLE.size
            hlen = r.uvarint(limit=end)
            header = _read_header(r.raw(hlen), version, end)
            blobs = []
            for t in header.tensors:
                blobs.append(TensorBlobs(r.raw(t.positions_bytes), r.raw(t.values_bytes),
                                         tuple(r.raw(f.nbytes) for f in t.factors)))
            if not r.done():
                raise FormatError(f"body has {end - r.pos} bytes not described by the tensor table")
            pkg = cls(header, blobs)
        except PackageError:
            raise
        except _PARSE_ERRORS as exc:
            raise FormatError(f"malformed package: {type(exc).__name__}: {exc}") from exc
        pkg.signature_algorithm = auth.SIGNATURE_NAMES[alg]
        pkg._signature_bytes = sig_size
        return pkg

    # --- applying -------------------------------------------------------------------------------
    def _check_base(self, state: Mapping[str, torch.Tensor]) -> None:
        h = self.header
        if h.base_hash is None:
            return
        actual = state_hash(state)
        if actual != h.base_hash:
            raise BaseMismatchError(
                f"package was built for base version {h.base_version} (hash {h.base_hash[:16]}), "
                f"but the model's hash is {actual[:16]}")

    def _build(self, state: Mapping[str, torch.Tensor]) -> StateDict:
        h = self.header
        out: StateDict = {} if h.complete else {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        if h.initializer:
            try:
                init = resolve_initializer(h.initializer)(int(h.initializer_seed or 0))
            except (KeyError, ValueError) as exc:
                raise FormatError(f"unknown or unusable initializer {h.initializer!r}") from exc
            out.update({k: v.detach().to("cpu", copy=True) for k, v in init.items()})
        for info, payload in zip(h.tensors, self._payloads):
            out[info.name] = self._new_tensor(info, payload, out)
        return out

    def _current(self, info: TensorInfo, out: StateDict) -> torch.Tensor:
        if info.name not in out:
            raise BaseMismatchError(f"package updates tensor {info.name!r}, which the model does not have")
        cur = out[info.name]
        if tuple(cur.shape) != info.shape or str(cur.dtype).removeprefix("torch.") != info.dtype:
            raise BaseMismatchError(f"tensor {info.name!r} is {info.dtype}{list(info.shape)} in the package "
                                    f"but {str(cur.dtype).removeprefix('torch.')}{list(cur.shape)} in the model")
        return cur

    def _new_tensor(self, info: TensorInfo, payload: _Payload, out: StateDict) -> torch.Tensor:
        dtype = dtype_from_name(info.dtype)
        if info.kind == "dense":
            assert payload.values is not None
            return payload.values.to(dtype).reshape(info.shape).clone()
        if info.kind == "factor":
            cur = self._current(info, out)
            try:
                new = reconstitute(info.name, str(info.params["rule"]), cur, payload.factors, info.params)
            except (ValueError, RuntimeError, IndexError, KeyError) as exc:
                raise FormatError(f"factors for {info.name!r} do not fit rule {info.params.get('rule')}: {exc}") from exc
            return new
        assert payload.positions is not None and payload.values is not None
        if info.origin == "zero":
            flat = torch.zeros(info.numel, dtype=dtype)
        else:
            flat = self._current(info, out).detach().reshape(-1).clone()
        idx = payload.positions
        if info.mode == "replace":
            flat[idx] = payload.values.to(dtype)
        else:
            flat[idx] = flat[idx] + payload.values.to(dtype)
        return flat.reshape(info.shape)

    def apply(self, state: Mapping[str, torch.Tensor]) -> StateDict:
        """The new state (CPU tensors): base hash checked first, input left untouched, result hash checked last."""
        self._check_base(state)
        out = self._build(state)
        actual = state_hash(out)
        if actual != self.header.target_hash:
            raise IntegrityError(f"result hash {actual[:16]} differs from target version "
                                 f"{self.header.target_version} hash {self.header.target_hash[:16]}")
        return out

    # --- reporting ------------------------------------------------------------------------------
    def byte_breakdown(self, key: auth.Signer | auth.Verifier | None = None) -> dict[str, int]:
        """Bytes by role; ``total_bytes == len(encode(key))`` (signature from ``key``, else as decoded)."""
        sig = key.signature_size if key is not None else self._signature_bytes
        positions = values = dense = factor = 0
        for t in self.header.tensors:
            if t.kind == "dense":
                dense += t.values_bytes
            else:
                positions += t.positions_bytes
                values += t.values_bytes
                factor += t.factor_bytes
        hlen = len(_write_header(self.header))
        w = Writer()
        w.uvarint(hlen)
        header = _PREAMBLE.size + len(w.buf) + hlen + CHECKSUM_BYTES
        total = header + positions + values + dense + factor + sig
        return {"header_bytes": header, "positions_bytes": positions, "values_bytes": values,
                "dense_bytes": dense, "factor_bytes": factor, "signature_bytes": sig, "total_bytes": total}

    def describe(self) -> dict[str, Any]:
        """JSON-able summary: header, tensor table, byte breakdown, bits per position vs the entropy bound."""
        h = self.header
        rows = []
        weights = count = pos_bytes = 0
        bound_bits = 0.0
        for t in h.tensors:
            row: dict[str, Any] = {
                "name": t.name, "kind": t.kind, "shape": list(t.shape), "dtype": t.dtype, "coding": t.coding,
                "precision": t.precision, "values_packing": t.values_packing, "mode": t.mode, "origin": t.origin, "count": t.count,
                "positions_bytes": t.positions_bytes, "values_bytes": t.values_bytes,
                "factor_bytes": t.factor_bytes, "params": dict(t.params),
            }
            if t.factors:
                row["factors"] = [{"name": f.name, "shape": list(f.shape), "bytes": f.nbytes} for f in t.factors]
            if t.kind == "sparse" and t.numel:
                k = t.count / t.numel
                hk = entropy_bound_bits(k)
                row["density"] = k
                row["bits_per_weight"] = 8 * t.positions_bytes / t.numel
                row["entropy_bound_bits_per_weight"] = hk
                row["ratio_to_bound"] = (8 * t.positions_bytes / t.numel) / hk if hk > 0 else None
                weights += t.numel
                count += t.count
                pos_bytes += t.positions_bytes
                bound_bits += hk * t.numel
            if t.name in self.quantisation:
                row["quantisation_error"] = self.quantisation[t.name].as_dict()
            rows.append(row)
        positions: dict[str, Any] = {"weights": weights, "positions": count}
        if weights:
            k = count / weights
            positions.update({
                "density": k,
                "bits_per_weight": 8 * pos_bytes / weights,
                "entropy_bound_bits_per_weight": entropy_bound_bits(k),
                "per_tensor_bound_bits_per_weight": bound_bits / weights,
                "ratio_to_bound": (8 * pos_bytes / weights) / entropy_bound_bits(k) if 0 < k < 1 else None,
            })
        return {
            "format_version": h.format_version, "method": h.method,
            "base_version": h.base_version, "base_hash": h.base_hash,
            "target_version": h.target_version, "target_hash": h.target_hash,
            "complete": h.complete, "initializer": h.initializer, "initializer_seed": h.initializer_seed,
            "signature": self.signature_algorithm, "extra": dict(h.extra),
            "tensors": rows, "bytes": self.byte_breakdown(), "positions": positions,
        }

    def with_target(self, state: Mapping[str, torch.Tensor] | None) -> "UpdatePackage":
        """A copy whose target hash is that of this package applied (unchecked) to ``state``."""
        result = self._build(state or {})
        pkg = copy.copy(self)
        pkg.header = replace(self.header, target_hash=state_hash(result))
        return pkg
