"""MD5 / SHA-256 checks of dataset files against the official published values."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgeupdate.datasets.errors import DatasetError, corrupt_file, missing_file

_CHUNK_BYTES = 1 << 20


def md5_hex(data: bytes) -> str:
    """Hex md5 of ``data`` (used only as an integrity check, not for security)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_digest_hex(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm, usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_md5(dataset: str, path: Path, data: bytes, expected_md5: str | None) -> None:
    """Raise a :class:`DatasetError` naming ``path`` when ``md5(data)`` differs from the expected value.

    ``expected_md5=None`` skips the check (used for user-made files with no official checksum).
    """
    if expected_md5 is None:
        return
    actual = md5_hex(data)
    if actual != expected_md5.lower():
        raise corrupt_file(dataset, path, f"md5 {actual} does not match the official {expected_md5}")


def read_verified(dataset: str, path: Path, expected_md5: str | None) -> bytes:
    """The bytes of a dataset file, checked against its published md5 (``None`` skips the check).

    A missing, unreadable or corrupted file is a :class:`DatasetError` naming ``dataset`` and ``path``.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise missing_file(dataset, path) from None
    except IsADirectoryError:
        raise corrupt_file(dataset, path, "it is a directory, not a file") from None
    except OSError as e:
        raise DatasetError(f"{dataset}: file {path} cannot be read: {e.strerror or e}") from None
    verify_md5(dataset, path, raw, expected_md5)
    return raw
