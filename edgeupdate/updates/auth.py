"""Optional authenticity: HMAC-SHA256 with a shared key, or Ed25519 signatures.

With Ed25519 the server holds the private key and devices only the public key, so a device that
is taken apart cannot sign updates for the rest of the fleet (with HMAC it can).

A signer appends ``signature_size`` bytes over everything before them (preamble, header, body,
checksum). A device configured with a verifier rejects unsigned, differently signed or forged
packages with ``AuthenticationError``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG_NONE, SIG_HMAC_SHA256, SIG_ED25519 = 0, 1, 2
SIGNATURE_SIZES = {SIG_NONE: 0, SIG_HMAC_SHA256: 32, SIG_ED25519: 64}
SIGNATURE_NAMES = {SIG_NONE: "none", SIG_HMAC_SHA256: "hmac-sha256", SIG_ED25519: "ed25519"}


class Signer(Protocol):
    algorithm: int
    signature_size: int

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    algorithm: int
    signature_size: int

    def verify(self, data: bytes, signature: bytes) -> bool: ...


class HmacKey:
    """A shared secret; both signs and verifies (HMAC-SHA256, 32-byte tag)."""

    algorithm = SIG_HMAC_SHA256
    signature_size = 32

    def __init__(self, secret: bytes | str) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ValueError("HMAC secret must not be empty")
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def verify(self, data: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(data), signature)


class Ed25519Verifier:
    """An Ed25519 public key (raw 32 bytes or a ``cryptography`` public key object)."""

    algorithm = SIG_ED25519
    signature_size = 64

    def __init__(self, public: Ed25519PublicKey | bytes) -> None:
        self._key = public if isinstance(public, Ed25519PublicKey) else Ed25519PublicKey.from_public_bytes(bytes(public))

    def public_bytes(self) -> bytes:
        """The raw 32-byte public key (what a device is provisioned with)."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class Ed25519Signer:
    """An Ed25519 private key (raw 32-byte seed or a ``cryptography`` private key object)."""

    algorithm = SIG_ED25519
    signature_size = 64

    def __init__(self, private: Ed25519PrivateKey | bytes) -> None:
        self._key = private if isinstance(private, Ed25519PrivateKey) else Ed25519PrivateKey.from_private_bytes(bytes(private))

    @classmethod
    def generate(cls) -> "Ed25519Signer":
        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        """The server checking its own packages (devices use :meth:`verifier`, the public key only)."""
        return self.verifier().verify(data, signature)

    def verifier(self) -> Ed25519Verifier:
        """The matching public key, for devices."""
        return Ed25519Verifier(self._key.public_key())


def _key_bytes(data: bytes, what: str) -> bytes:
    """Raw 32 key bytes from raw bytes or 64 hex digits (surrounding whitespace ignored)."""
    if len(data) == 32:
        return data
    text = data.strip()
    try:
        raw = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{what} must be PEM, 32 raw bytes or 64 hex digits")
    return raw


def load_ed25519_signer(data: bytes) -> Ed25519Signer:
    """A server key from a file's bytes: PEM (PKCS#8, e.g. ``openssl genpkey -algorithm ed25519``),
    32 raw bytes or 64 hex digits of the private seed."""
    if data.lstrip().startswith(b"-----BEGIN"):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the PEM private key is not an Ed25519 key")
        return Ed25519Signer(key)
    return Ed25519Signer(_key_bytes(data, "an Ed25519 private key"))


def load_ed25519_verifier(data: bytes) -> Ed25519Verifier:
    """A device's public key from a file's bytes: PEM (SubjectPublicKeyInfo, e.g. ``openssl pkey
    -pubout``), 32 raw bytes or 64 hex digits."""
    if data.lstrip().startswith(b"-----BEGIN"):
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        key = load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM public key is not an Ed25519 key")
        return Ed25519Verifier(key)
    return Ed25519Verifier(_key_bytes(data, "an Ed25519 public key"))
