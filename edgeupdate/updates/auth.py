"""Optional authenticity: HMAC-SHA256 with a shared key, or Ed25519 signatures.

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

    def verifier(self) -> Ed25519Verifier:
        """The matching public key, for devices."""
        return Ed25519Verifier(self._key.public_key())
