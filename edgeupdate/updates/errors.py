"""Typed errors raised while decoding, verifying or applying an update package.

Every error's ``str()`` is one line that names what is wrong, so a device (or the CLI) can log it
and refuse the package without a traceback.
"""

from __future__ import annotations


class PackageError(Exception):
    """Base class: the package cannot be used; the device keeps its current model."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class FormatError(PackageError):
    """Truncated or malformed bytes, an unknown format version, or an inconsistent tensor table."""


class IntegrityError(PackageError):
    """Body checksum mismatch, or the applied result does not hash to the package's target hash."""


class BaseMismatchError(PackageError):
    """The package was built for another base model than the one it is applied to."""


class AuthenticationError(PackageError):
    """A key is configured but the package is unsigned or its signature does not verify."""
