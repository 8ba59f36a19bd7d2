"""``UpdatePackage``: header + body, its binary encoding, and the device-side ``apply``.

The layout is in :mod:`edgeupdate.updates.header` (preamble, tensor table) and
:mod:`edgeupdate.updates.body` (per-entry decoding). ``decode`` checks length, checksum and (with
a key) the signature before it parses anything, then decodes every tensor so a malformed body
fails at decode, not half-way through ``apply``.
"""

from __future__ import annotations

import copy
import struct
import zlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from edgeupdate.lru import LRU
from edgeupdate.updates import auth
from edgeupdate.updates.body import Payload, TensorBlobs, decode_payload, int8_symbols
from edgeupdate.updates.entropy import empirical_entropy_bits
from edgeupdate.updates.errors import (
    AuthenticationError,
    BaseMismatchError,
    FormatError,
    IntegrityError,
    PackageError,
)
from edgeupdate.updates.hashing import StateDict, state_hash
from edgeupdate.updates.header import (
    PREAMBLE,
    CHECKSUM_BYTES,
    FORMAT_VERSION,
    MAGIC,
    FactorInfo,
    PackageHeader,
    TensorInfo,
    read_header,
    write_header,
)
from edgeupdate.updates.positions import entropy_bound_bits
from edgeupdate.updates.reconstitution import reconstitute
from edgeupdate.updates.seeded import resolve_initializer
from edgeupdate.updates.values import QuantisationError, dtype_from_name
from edgeupdate.updates.wire import Reader, Writer

__all__ = ["FORMAT_VERSION", "FactorInfo", "PackageHeader", "TensorBlobs", "TensorInfo", "UpdatePackage"]

# Parsed packages by their exact bytes, so the devices of one process that receive the same package
# parse it once. Every ``decode`` still checks length, checksum and signature of the bytes it was
# given; a cache hit needs equal bytes (dict lookup compares them), so it is what parsing would give.
_PARSED: LRU[bytes, tuple[PackageHeader, tuple[TensorBlobs, ...], list[Payload]]] = LRU(4)

_PARSE_ERRORS = (ValueError, IndexError, OverflowError, KeyError, TypeError, RuntimeError, struct.error, MemoryError)


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
        self._payloads = [decode_payload(t, b) for t, b in zip(header.tensors, self.blobs)]

    # --- encoding -------------------------------------------------------------------------------
    def encode(self, key: auth.Signer | None = None) -> bytes:
        """The package as bytes, optionally signed with ``key``."""
        header = write_header(self.header)
        hlen = Writer()
        hlen.uvarint(len(header))
        body = b"".join(b.positions + b.values + b"".join(b.factors) for b in self.blobs)
        alg = key.algorithm if key is not None else auth.SIG_NONE
        sig_size = auth.SIGNATURE_SIZES[alg]
        total = PREAMBLE.size + len(hlen.buf) + len(header) + len(body) + CHECKSUM_BYTES + sig_size
        if total >= 1 << 32:
            raise ValueError(f"package of {total} bytes exceeds the 4 GiB format limit")
        out = PREAMBLE.pack(MAGIC, self.header.format_version, alg, total) + bytes(hlen.buf) + header + body
        out += struct.pack("<I", zlib.crc32(out))
        if key is not None:
            out += key.sign(out)
        return out

    @classmethod
    def decode(cls, data: bytes, key: auth.Verifier | None = None) -> "UpdatePackage":
        """Parse and validate ``data``; with ``key``, unsigned or wrongly signed bytes raise ``AuthenticationError``."""
        data = bytes(data)
        if len(data) < PREAMBLE.size:
            raise FormatError(f"truncated package: {len(data)} bytes is shorter than the {PREAMBLE.size}-byte preamble")
        magic, version, alg, total = PREAMBLE.unpack_from(data)
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
        if end < PREAMBLE.size:
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
        parsed = _PARSED.get(data)
        if parsed is not None:  # the same bytes, already checked above, parsed before
            pkg = cls.__new__(cls)
            pkg.header, pkg.blobs, pkg._payloads = parsed
            pkg.quantisation = {}
        else:
            pkg = cls._parse(data, version, end)
            _PARSED.put(data, (pkg.header, pkg.blobs, pkg._payloads))
        pkg.signature_algorithm = auth.SIGNATURE_NAMES[alg]
        pkg._signature_bytes = sig_size
        return pkg

    @classmethod
    def _parse(cls, data: bytes, version: int, end: int) -> "UpdatePackage":
        """Header and body of framing-checked ``data`` (body ends at ``end``), every tensor decoded."""
        try:
            r = Reader(data[:end], "package")
            r.pos = PREAMBLE.size
            hlen = r.uvarint(limit=end)
            header = read_header(r.raw(hlen), version, end)
            blobs = []
            for t in header.tensors:
                blobs.append(TensorBlobs(r.raw(t.positions_bytes), r.raw(t.values_bytes),
                                         tuple(r.raw(f.nbytes) for f in t.factors)))
            if not r.done():
                raise FormatError(f"body has {end - r.pos} bytes not described by the tensor table")
            return cls(header, blobs)
        except PackageError:
            raise
        except _PARSE_ERRORS as exc:
            raise FormatError(f"malformed package: {type(exc).__name__}: {exc}") from exc

    # --- applying -------------------------------------------------------------------------------
    def _check_base(self, state: Mapping[str, torch.Tensor], known_hash: str | None = None) -> None:
        h = self.header
        if h.base_hash is None:
            return
        actual = known_hash if known_hash is not None else state_hash(state)
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

    def _new_tensor(self, info: TensorInfo, payload: Payload, out: StateDict) -> torch.Tensor:
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

    def apply(self, state: Mapping[str, torch.Tensor], *, state_hash_known: str | None = None) -> StateDict:
        """The new state (CPU tensors): base hash checked first, input left untouched, result hash checked last.

        ``state_hash_known``: ``state``'s hash, from a caller that keeps it anyway (the server, for its
        own released versions), checked against the package's base hash instead of hashing ``state``
        again. A device never passes it: it hashes what it holds.
        """
        self._check_base(state, state_hash_known)
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
        hlen = len(write_header(self.header))
        w = Writer()
        w.uvarint(hlen)
        header = PREAMBLE.size + len(w.buf) + hlen + CHECKSUM_BYTES
        total = header + positions + values + dense + factor + sig
        return {"header_bytes": header, "positions_bytes": positions, "values_bytes": values,
                "dense_bytes": dense, "factor_bytes": factor, "signature_bytes": sig, "total_bytes": total}

    def describe(self) -> dict[str, Any]:
        """JSON-able summary: header, tensor table, byte breakdown, bits per position vs the entropy bound."""
        h = self.header
        rows = []
        weights = count = pos_bytes = 0
        bound_bits = 0.0
        value_bits = value_entropy = 0.0
        value_count = 0
        for t, blob, payload in zip(h.tensors, self.blobs, self._payloads):
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
                row["bits_per_position"] = 8 * t.positions_bytes / t.count if t.count else 0.0
                row["entropy_bound_bits_per_weight"] = hk
                row["ratio_to_bound"] = (8 * t.positions_bytes / t.numel) / hk if hk > 0 else None
                weights += t.numel
                count += t.count
                pos_bytes += t.positions_bytes
                bound_bits += hk * t.numel
            symbols = int8_symbols(t, blob, payload) if t.count else None
            if symbols is not None:
                q, head = symbols
                row["value_bits_per_value"] = 8 * (t.values_bytes - head) / t.count
                row["value_entropy_bits"] = empirical_entropy_bits(q)
                value_bits += 8 * (t.values_bytes - head)
                value_entropy += row["value_entropy_bits"] * t.count
                value_count += t.count
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
            "int8_values": ({"values": value_count, "bits_per_value": value_bits / value_count,
                             "empirical_entropy_bits": value_entropy / value_count} if value_count else {}),
        }

    def with_target(self, state: Mapping[str, torch.Tensor] | None) -> "UpdatePackage":
        """A copy whose target hash is that of this package applied (unchecked) to ``state``."""
        result = self._build(state or {})
        pkg = copy.copy(self)
        pkg.header = replace(self.header, target_hash=state_hash(result))
        return pkg
