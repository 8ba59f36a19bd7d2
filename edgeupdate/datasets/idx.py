"""Reader for the IDX format of MNIST / Fashion-MNIST (LeCun et al.), gzip-compressed.

Header: two zero bytes, a type code byte, the number of dimensions ``d``, then ``d`` big-endian uint32
sizes, then the values in C order, big-endian. The 32-bit *magic* is the first four bytes read as a
big-endian integer: 2051 (0x00000803) for uint8 images N×rows×cols, 2049 (0x00000801) for uint8 labels N.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from edgeupdate.datasets.checksum import read_verified
from edgeupdate.datasets.errors import corrupt_file

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

_TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """The bytes are not a well-formed IDX array."""


def parse_idx(raw: bytes) -> tuple[int, np.ndarray]:
    """Decode uncompressed IDX bytes into ``(magic, array)`` (native byte order; possibly a read-only view of ``raw``).

    Raises :class:`IdxFormatError` for a bad header, a size mismatch or trailing bytes.
    """
    if len(raw) < 4:
        raise IdxFormatError(f"only {len(raw)} bytes, shorter than the 4-byte IDX header")
    (magic,) = struct.unpack(">I", raw[:4])
    zero, type_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or type_code not in _TYPE_CODES or ndim == 0:
        raise IdxFormatError(f"magic {magic} (0x{magic:08x}) is not an IDX header")
    header_bytes = 4 + 4 * ndim
    if len(raw) < header_bytes:
        raise IdxFormatError(f"truncated header: {len(raw)} bytes, need {header_bytes} for {ndim} dims")
    shape = struct.unpack(f">{ndim}I", raw[4:header_bytes])
    dtype = _TYPE_CODES[type_code]
    expected_bytes = header_bytes + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected_bytes:
        what = "truncated" if len(raw) < expected_bytes else "has trailing bytes"
        raise IdxFormatError(f"{what}: {len(raw)} bytes but header {shape} needs {expected_bytes}")
    array = np.frombuffer(raw, dtype=dtype, offset=header_bytes).reshape(shape)
    return magic, array.astype(dtype.newbyteorder("="), copy=False)


def read_idx_gz(
    dataset: str,
    path: Path,
    *,
    expected_magic: int,
    expected_md5: str | None = None,
) -> np.ndarray:
    """Read one ``.gz`` IDX file, verifying md5 (of the compressed file, as published) and magic.

    Every problem — missing, bad checksum, not gzip, truncated, wrong magic — is a
    :class:`DatasetError` naming ``dataset`` and ``path``.
    """
    compressed = read_verified(dataset, path, expected_md5)
    try:
        raw = gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as e:
        raise corrupt_file(dataset, path, f"not a valid gzip stream ({e})") from None
    try:
        magic, array = parse_idx(raw)
    except IdxFormatError as e:
        raise corrupt_file(dataset, path, str(e)) from None
    if magic != expected_magic:
        raise corrupt_file(dataset, path, f"IDX magic is {magic}, expected {expected_magic}")
    return array
