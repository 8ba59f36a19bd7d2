"""Value precision: how the numbers of a package are sent.

* ``fp32``: lossless, the tensor's own float32 bytes (``raw`` for any other dtype, also lossless).
* ``fp16``: IEEE half precision, 2 bytes per value.
* ``int8``: one float32 scale for the tensor, ``q = round(x/scale)`` in [−127, 127], 1 byte per value.
* ``int8-channel``: one float32 scale per output channel (dim 0) that has at least one value sent,
  then 1 byte per value; channels are derived from the positions, so no channel ids are sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import zstandard

from edgeupdate.updates.errors import FormatError

PRECISIONS = ("fp32", "fp16", "int8", "int8-channel")
VALUE_COMPRESSIONS = ("none", "zstd")
ZSTD_LEVEL = 19
LOSSLESS = ("fp32", "raw")

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float64": torch.float64, "int64": torch.int64, "int32": torch.int32, "int16": torch.int16,
    "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}
DTYPE_NAMES = tuple(_DTYPES)


def dtype_name(dtype: torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"unsupported tensor dtype {dtype}; supported: {', '.join(DTYPE_NAMES)}")
    return name


def dtype_from_name(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise FormatError(f"unknown dtype {name!r}") from None


def effective_precision(precision: str, dtype: torch.dtype, ndim: int) -> str:
    """The precision actually used for a tensor: lossy only for floating tensors, per-channel only for ndim ≥ 2."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if not dtype.is_floating_point or precision == "fp32":
        return "fp32" if dtype == torch.float32 else "raw"
    if precision == "int8-channel" and ndim < 2:
        return "int8"
    return precision


def channels_of(positions: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Output channel (index along dim 0) of each flat position; all zero for 0-d/1-d tensors."""
    if len(shape) < 2 or shape[0] == 0:
        return np.zeros(positions.shape, dtype=np.int64)
    row = int(np.prod(shape[1:], dtype=np.int64))
    return positions // max(row, 1)


@dataclass(frozen=True)
class QuantisationError:
    """How far the sent values are from the intended ones."""

    max_abs: float
    rms: float
    rel_rms: float  # rms / rms(intended); 0 when the intended values are all zero

    def as_dict(self) -> dict[str, float]:
        return {"max_abs": self.max_abs, "rms": self.rms, "rel_rms": self.rel_rms}


def quantisation_error(intended: torch.Tensor, sent: torch.Tensor) -> QuantisationError:
    a = intended.detach().to(torch.float64).reshape(-1)
    d = sent.detach().to(torch.float64).reshape(-1) - a
    if a.numel() == 0:
        return QuantisationError(0.0, 0.0, 0.0)
    rms = float(d.pow(2).mean().sqrt())
    ref = float(a.pow(2).mean().sqrt())
    return QuantisationError(float(d.abs().max()), rms, rms / ref if ref > 0 else 0.0)


def _int8(x: np.ndarray) -> tuple[np.float32, np.ndarray]:
    peak = np.float32(np.max(np.abs(x))) if x.size else np.float32(0.0)
    if not np.isfinite(peak):
        raise ValueError("cannot quantise non-finite values to int8")
    scale = np.float32(peak / np.float32(127.0))
    if scale == 0:
        return np.float32(0.0), np.zeros(x.shape, dtype=np.int8)
    q = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
    return scale, q


def encode_values(values: torch.Tensor, precision: str, channels: np.ndarray | None = None) -> bytes:
    """Bytes for the 1-D ``values`` at ``precision`` (``channels``: per-value channel, int8-channel only)."""
    v = values.detach().to("cpu").contiguous().reshape(-1)
    if precision in LOSSLESS:
        return v.view(torch.uint8).numpy().tobytes()
    x = v.to(torch.float32).numpy()
    if precision == "fp16":
        return x.astype("<f2").tobytes()
    if precision == "int8":
        scale, q = _int8(x)
        return np.float32(scale).astype("<f4").tobytes() + q.tobytes()
    if precision == "int8-channel":
        if channels is None or channels.shape != x.shape:
            raise ValueError("int8-channel needs one channel index per value")
        present, inverse = np.unique(channels, return_inverse=True)
        scales = np.zeros(present.size, dtype=np.float32)
        q = np.zeros(x.shape, dtype=np.int8)
        for j in range(present.size):
            sel = inverse == j
            scales[j], q[sel] = _int8(x[sel])
        return scales.astype("<f4").tobytes() + q.tobytes()
    raise ValueError(f"unknown precision {precision!r}")


def values_size_bytes(count: int, precision: str, dtype: torch.dtype, channel_count: int = 1) -> int:
    """Exact size of ``count`` values sent at ``precision``."""
    if precision in LOSSLESS:
        return count * torch.empty((), dtype=dtype).element_size()
    if precision == "fp16":
        return 2 * count
    if precision == "int8":
        return 4 + count
    if precision == "int8-channel":
        return 4 * channel_count + count
    raise FormatError(f"unknown precision {precision!r}")


def _check_scales(scales: np.ndarray) -> None:
    if not np.all(np.isfinite(scales)) or np.any(scales < 0):
        raise FormatError("int8 values: a scale is negative or not finite")
    with np.errstate(over="ignore"):
        if np.any(scales * np.float32(127.0) > np.finfo(np.float32).max):
            raise FormatError("int8 values: a scale overflows float32")


def decode_values(data: bytes, precision: str, count: int, dtype: torch.dtype,
                  channels: np.ndarray | None = None) -> torch.Tensor:
    """Inverse of :func:`encode_values`: ``dtype`` values for lossless, float32 otherwise."""
    n_channels = 1
    if precision == "int8-channel":
        if channels is None or channels.size != count:
            raise FormatError("int8-channel values need their positions")
        n_channels = int(np.unique(channels).size)
    expected = values_size_bytes(count, precision, dtype, n_channels)
    if len(data) != expected:
        raise FormatError(f"{precision} values: {len(data)} bytes, expected {expected} for {count} values")
    if precision in LOSSLESS:
        return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).clone() if count else torch.zeros(0, dtype=dtype)
    if precision == "fp16":
        return torch.from_numpy(np.frombuffer(data, dtype="<f2").astype(np.float32))
    if precision == "int8":
        scale = np.frombuffer(data[:4], dtype="<f4").astype(np.float32)
        _check_scales(scale)
        q = np.frombuffer(data[4:], dtype=np.int8).astype(np.float32)
        return torch.from_numpy((q * scale[0]).astype(np.float32))
    scales = np.frombuffer(data[: 4 * n_channels], dtype="<f4").astype(np.float32)
    _check_scales(scales)
    _, inverse = np.unique(channels, return_inverse=True)
    q = np.frombuffer(data[4 * n_channels :], dtype=np.int8).astype(np.float32)
    return torch.from_numpy((q * scales[inverse]).astype(np.float32))


def _plane_size(precision: str, dtype: torch.dtype) -> int:
    if precision in LOSSLESS:
        return torch.empty((), dtype=dtype).element_size()
    return 2 if precision == "fp16" else 1


def pack_values(plain: bytes, precision: str, dtype: torch.dtype, level: int = ZSTD_LEVEL) -> bytes:
    """Lossless packing of value bytes: split into byte planes (all first bytes, then all second
    bytes, ...) so exponents sit together, then zstd. The caller keeps it only if it is smaller."""
    size = _plane_size(precision, dtype)
    data = plain
    if size > 1 and len(plain) % size == 0:
        data = np.frombuffer(plain, dtype=np.uint8).reshape(-1, size).T.tobytes()
    return zstandard.ZstdCompressor(level=level).compress(data)


def unpack_values(packed: bytes, precision: str, dtype: torch.dtype, expected_bytes: int) -> bytes:
    """Inverse of :func:`pack_values`; never inflates past ``expected_bytes``."""
    try:
        data = zstandard.ZstdDecompressor().decompress(packed, max_output_size=max(expected_bytes, 1))
    except zstandard.ZstdError as exc:
        raise FormatError(f"packed values do not decompress: {exc}") from exc
    if len(data) != expected_bytes:
        raise FormatError(f"packed values hold {len(data)} bytes, expected {expected_bytes}")
    size = _plane_size(precision, dtype)
    if size > 1 and expected_bytes % size == 0:
        data = np.frombuffer(data, dtype=np.uint8).reshape(size, -1).T.tobytes()
    return data
