"""File-level operations behind ``edgeupdate package inspect`` and ``edgeupdate package apply``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any, BinaryIO

import torch

from edgeupdate.updates.auth import Verifier
from edgeupdate.updates.errors import FormatError
from edgeupdate.updates.hashing import StateDict
from edgeupdate.updates.package import UpdatePackage


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def load_package_file(path: Path | str, key: Verifier | None = None) -> UpdatePackage:
    """Decode the package stored at ``path``."""
    return UpdatePackage.decode(_read_bytes(Path(path), "package file"), key=key)


def inspect_package_file(path: Path | str, key: Verifier | None = None) -> dict[str, Any]:
    """JSON-able description of the package at ``path`` (see ``UpdatePackage.describe``)."""
    out = load_package_file(path, key).describe()
    out["file"] = str(path)
    return out


def load_state_file(path: Path | str) -> StateDict:
    """A ``torch.save``'d state dict (tensors only; loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"model file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many unrelated types for a bad file
        raise FormatError(f"model file {path} is not a readable torch state dict ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise FormatError(f"model file {path} does not hold a dict of named tensors")
    return dict(state)


def atomic_write(path: Path | str, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, flush it to disk, then rename it to
    ``path``: a crash part-way never leaves a half-written ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_state_file(state: StateDict, path: Path | str) -> None:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, then rename)."""
    atomic_write(path, lambda fh: torch.save(state, fh))


def apply_package_file(model_in: Path | str, package: Path | str, out: Path | str, key: Verifier | None = None) -> None:
    """Verify ``package`` against ``model_in`` and write the result to ``out``.

    Raises a ``PackageError`` on any failure (unreadable files included) and then leaves ``out``
    untouched.
    """
    pkg = load_package_file(package, key)
    state = load_state_file(model_in)
    new_state = pkg.apply(state)
    out = Path(out)
    if not out.parent.is_dir():
        raise FormatError(f"output folder {out.parent} does not exist")
    try:
        save_state_file(new_state, out)
    except OSError as exc:
        raise FormatError(f"cannot write {out}: {exc.strerror or exc}") from exc
