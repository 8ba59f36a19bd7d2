"""Uploaded samples on the wire: raw 8-bit pixels and labels, as a sensor would send them.

An MNIST sample costs 784 + 1 bytes (the thesis's "0.784 KB per sample", §5.5.1.1). The receiver
normalises exactly as the dataset loader does, so the server trains on the same floats the device
holds.
"""

from __future__ import annotations

import struct

import numpy as np
import torch

from edgeupdate.datasets.base import Normalization, to_tensor_data
from edgeupdate.training import TensorData

_MAGIC = b"EUS1"
_HEADER = struct.Struct("<4sIHHHB")  # magic, n, c, h, w, label bytes


class SampleCodecError(ValueError):
    """An uploaded sample payload is malformed."""


def _to_raw(x: torch.Tensor, norm: Normalization) -> np.ndarray:
    mean = torch.tensor(norm.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float64).view(1, -1, 1, 1)
    raw = torch.round((x.double() * std + mean) * norm.max_value)
    return raw.clamp(0, 255).to(torch.uint8).numpy()


def encode_samples(data: TensorData, norm: Normalization) -> bytes:
    """Samples → ``header | labels | uint8 pixels``."""
    n = len(data)
    c, h, w = (tuple(data.x.shape[1:]) + (1, 1, 1))[:3] if n else (0, 0, 0)
    labels = data.y.numpy()
    label_bytes = 1 if (n == 0 or labels.max() < 256) else 2
    out = [_HEADER.pack(_MAGIC, n, c, h, w, label_bytes)]
    if n:
        out.append(labels.astype("<u1" if label_bytes == 1 else "<u2").tobytes())
        out.append(_to_raw(data.x, norm).tobytes())
    return b"".join(out)


def decode_samples(payload: bytes, norm: Normalization) -> TensorData:
    """Inverse of :func:`encode_samples`; raises :class:`SampleCodecError` on malformed input."""
    if len(payload) < _HEADER.size:
        raise SampleCodecError(f"sample payload truncated ({len(payload)} bytes)")
    magic, n, c, h, w, label_bytes = _HEADER.unpack_from(payload)
    if magic != _MAGIC or label_bytes not in (1, 2):
        raise SampleCodecError("sample payload has a bad header")
    expected = _HEADER.size + n * label_bytes + n * c * h * w
    if len(payload) != expected:
        raise SampleCodecError(f"sample payload has {len(payload)} bytes, header says {expected}")
    if n == 0:
        return TensorData(torch.empty(0, 1, 1, 1), torch.empty(0, dtype=torch.long))
    off = _HEADER.size
    labels = np.frombuffer(payload, "<u1" if label_bytes == 1 else "<u2", n, off).astype(np.int64)
    off += n * label_bytes
    images = np.frombuffer(payload, np.uint8, n * c * h * w, off).reshape(n, c, h, w)
    return to_tensor_data(images, labels, norm)
