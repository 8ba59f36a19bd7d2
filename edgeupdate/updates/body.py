"""Decoding one tensor-table entry's body parts (positions, values, factors) into tensors.

Every part is checked against its table row; the row's counts and byte lengths (bounded by the
header) are the only sizes anything is allocated from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from edgeupdate.updates.entropy import scale_bytes, unpack_entropy
from edgeupdate.updates.errors import FormatError
from edgeupdate.updates.header import TensorInfo
from edgeupdate.updates.positions import decode_positions
from edgeupdate.updates.reconstitution import RULES
from edgeupdate.updates.seeded import mask_positions
from edgeupdate.updates.values import channels_of, decode_values, dtype_from_name, unpack_values, values_size_bytes


@dataclass(frozen=True)
class TensorBlobs:
    """The encoded body parts of one table entry."""

    positions: bytes = b""
    values: bytes = b""
    factors: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Payload:
    positions: torch.Tensor | None
    values: torch.Tensor | None
    factors: dict[str, torch.Tensor]


def _unpacked_values(info: TensorInfo, blob: bytes, count: int, dtype: torch.dtype, channels: np.ndarray) -> bytes:
    if info.values_packing == "plain":
        return blob
    n_channels = int(np.unique(channels).size) if info.precision == "int8-channel" else 1
    if info.values_packing == "entropy":
        return unpack_entropy(blob, info.precision, count, n_channels)
    return unpack_values(blob, info.precision, dtype, values_size_bytes(count, info.precision, dtype, n_channels))


def decode_payload(info: TensorInfo, blobs: TensorBlobs) -> Payload:
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
        return Payload(None, values, {})
    if info.kind in ("sparse", "masked"):
        if info.mode not in ("replace", "add") or info.factors:
            raise FormatError(f"{info.kind} tensor {info.name!r}: inconsistent table row")
        if info.kind == "sparse":
            if info.coding in ("none", "seeded"):
                raise FormatError(f"sparse tensor {info.name!r}: no position coding")
            pos = decode_positions(blobs.positions, numel, info.count, info.coding, info.params, info.shape)
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
        return Payload(torch.from_numpy(pos), values, {})
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
    return Payload(None, None, factors)


def int8_symbols(info: TensorInfo, blobs: TensorBlobs, payload: Payload) -> tuple[np.ndarray, int] | None:
    """(the int8 symbols, bytes of scales) of an int8 / int8-channel dense or sparse entry, else None."""
    if info.precision not in ("int8", "int8-channel") or info.kind not in ("dense", "sparse", "masked"):
        return None
    pos = payload.positions.numpy() if payload.positions is not None else np.arange(info.numel, dtype=np.int64)
    channels = channels_of(pos, info.shape)
    plain = _unpacked_values(info, blobs.values, info.count, torch.float32, channels)
    head = scale_bytes(info.precision, int(np.unique(channels).size))
    return np.frombuffer(plain[head:], dtype=np.int8), head
