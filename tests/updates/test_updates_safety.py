"""A device never bricks itself: wrong base, corruption, forgery and drift are all refused."""

from __future__ import annotations

import struct
import zlib

import pytest
import torch

from update_states import clone_state, perturbed, small_state
from edgeupdate.updates import (
    AuthenticationError,
    BaseMismatchError,
    Ed25519Signer,
    Ed25519Verifier,
    FormatError,
    HmacKey,
    IntegrityError,
    LayerFactors,
    PackageError,
    UpdatePackage,
    dense_package,
    factor_package,
    initial_factors,
    seeded_package,
    sparse_package,
    state_hash,
)
from edgeupdate.updates import reconstitution


def _pkg(precision: str = "fp32") -> tuple[dict, dict, UpdatePackage]:
    base = small_state()
    target = perturbed(base, 0.2)
    return base, target, sparse_package(base, target, method="dpu", target_version=8, base_version=7,
                                        precision=precision)


def test_wrong_base_version_is_rejected_with_a_message_naming_it() -> None:
    base, target, pkg = _pkg()
    other = perturbed(base, 0.01, seed=99)  # the device is on another version
    with pytest.raises(BaseMismatchError) as err:
        UpdatePackage.decode(pkg.encode()).apply(other)
    msg = str(err.value)
    assert "base version 7" in msg and pkg.header.base_hash[:16] in msg and state_hash(other)[:16] in msg
    assert "\n" not in msg


def test_a_known_base_hash_is_checked_instead_of_rehashing() -> None:
    base, target, pkg = _pkg()
    decoded = UpdatePackage.decode(pkg.encode())
    out = decoded.apply(base, state_hash_known=state_hash(base))
    assert state_hash(out) == pkg.header.target_hash == state_hash(decoded.apply(base))
    other = perturbed(base, 0.01, seed=99)
    with pytest.raises(BaseMismatchError, match="base version 7"):  # the caller's hash names another state
        decoded.apply(base, state_hash_known=state_hash(other))


def test_already_updated_device_is_rejected() -> None:
    base, target, pkg = _pkg()
    with pytest.raises(BaseMismatchError):
        pkg.apply(target)


@pytest.mark.parametrize("kind", ["sparse", "dense", "factor", "mask", "init"])
def test_apply_never_mutates_its_input(kind: str) -> None:
    base = small_state()
    target = perturbed(base, 0.3)
    if kind == "sparse":
        pkg = sparse_package(base, target, method="m", target_version=1, base_version=0, precision="int8")
    elif kind == "dense":
        pkg = dense_package(target, method="m", target_version=1, base=base, base_version=0)
    elif kind == "factor":
        f = initial_factors("ka", base["fc.weight"], rank=2)
        f["U"] += 0.1
        f["V"] += 0.1
        pkg = factor_package(base, {"fc.weight": LayerFactors("ka", {k: v.float() for k, v in f.items()})},
                             {"fc.bias": target["fc.bias"]}, method="ka", target_version=1, base_version=0)
    elif kind == "mask":
        pkg = seeded_package(base, generator="mask", seed=1, params={"p": 0.5}, values={"fc.weight": target["fc.weight"]},
                             dense={}, method="rm", target_version=1, base_version=0)
    else:
        from edgeupdate.updates import register_initializer

        register_initializer("test-small", lambda seed: perturbed(small_state(seed), 0.5, seed))
        pkg = seeded_package(base, generator="init", seed=3, params={"initializer": "test-small"},
                             values={"fc.weight": target["fc.weight"]}, dense={}, method="re", target_version=1,
                             base_version=0)
    before = clone_state(base)
    out = pkg.apply(base)
    assert state_hash(base) == state_hash(before)
    for name in out:  # outputs never alias inputs
        out[name].view(-1)[:1] = 123 if out[name].numel() else 0
    assert state_hash(base) == state_hash(before)


def test_checksum_catches_every_single_byte_flip() -> None:
    _, _, pkg = _pkg("int8-channel")
    data = pkg.encode()
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        with pytest.raises(PackageError):
            UpdatePackage.decode(bytes(bad))


def test_body_flip_is_an_integrity_error_and_truncation_a_format_error() -> None:
    _, _, pkg = _pkg()
    data = pkg.encode()
    bad = bytearray(data)
    bad[len(data) // 2] ^= 1
    with pytest.raises(IntegrityError, match="checksum"):
        UpdatePackage.decode(bytes(bad))
    for cut in (0, 5, len(data) // 2, len(data) - 1):
        with pytest.raises(FormatError, match="truncated"):
            UpdatePackage.decode(data[:cut])
    with pytest.raises(FormatError, match="trailing"):
        UpdatePackage.decode(data + b"\x00")


def test_unknown_format_version_is_a_format_error() -> None:
    _, _, pkg = _pkg()
    data = bytearray(pkg.encode())
    data[4] = 99
    with pytest.raises(FormatError, match="format version 99"):
        UpdatePackage.decode(bytes(data))


def test_result_hash_mismatch_is_an_integrity_error() -> None:
    base, _, pkg = _pkg()
    from dataclasses import replace

    forged = UpdatePackage(replace(pkg.header, target_hash="ab" * 32), pkg.blobs)
    with pytest.raises(IntegrityError, match="target version 8"):
        UpdatePackage.decode(forged.encode()).apply(base)


def test_numerical_drift_in_reconstitution_is_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    base = small_state()
    f = {k: v.float() for k, v in initial_factors("ml", base["fc.weight"], rank=3).items()}
    pkg = factor_package(base, {"fc.weight": LayerFactors("ml", f)}, {}, method="ml", target_version=1, base_version=0)
    data = pkg.encode()
    honest = reconstitution.RULES["ml"]

    def drifting(current, factors, params):  # a device whose linear algebra differs in the last bit
        w = honest(current, factors, params)
        return torch.nextafter(w, torch.full_like(w, float("inf")))

    monkeypatch.setitem(reconstitution.RULES, "ml", drifting)
    with pytest.raises(IntegrityError):
        UpdatePackage.decode(data).apply(base)


def test_hmac_signed_package_verifies_and_forgeries_are_rejected() -> None:
    base, target, pkg = _pkg()
    key = HmacKey(b"fleet-secret")
    signed = pkg.encode(key)
    assert state_hash(UpdatePackage.decode(signed, key=key).apply(base)) == state_hash(target)
    assert UpdatePackage.decode(signed).signature_algorithm == "hmac-sha256"  # no key: readable, not verified
    with pytest.raises(AuthenticationError, match="unsigned"):
        UpdatePackage.decode(pkg.encode(), key=key)
    with pytest.raises(AuthenticationError, match="does not verify"):
        UpdatePackage.decode(signed, key=HmacKey(b"other-secret"))
    # an attacker who edits the body and fixes the checksum still fails the signature
    forged = bytearray(signed)
    end = len(forged) - 32 - 4
    forged[end - 1] ^= 1
    forged[end:end + 4] = struct.pack("<I", zlib.crc32(bytes(forged[:end])))
    with pytest.raises(AuthenticationError):
        UpdatePackage.decode(bytes(forged), key=key)


def test_ed25519_signed_package_verifies_and_wrong_algorithm_is_rejected() -> None:
    base, target, pkg = _pkg()
    signer = Ed25519Signer.generate()
    signed = pkg.encode(signer)
    public = signer.verifier()
    assert state_hash(UpdatePackage.decode(signed, key=public).apply(base)) == state_hash(target)
    with pytest.raises(AuthenticationError, match="does not verify"):
        UpdatePackage.decode(signed, key=Ed25519Signer.generate().verifier())
    with pytest.raises(AuthenticationError, match="ed25519"):
        UpdatePackage.decode(signed, key=HmacKey(b"x"))
    raw_public = Ed25519Verifier(public._key.public_bytes_raw())
    UpdatePackage.decode(signed, key=raw_public)


def test_errors_are_one_line() -> None:
    err = FormatError("first line\nsecond line")
    assert str(err) == "first line second line"


def test_shape_mismatch_in_unbound_package_is_a_base_mismatch() -> None:
    base = small_state()
    target = perturbed(base, 0.2)
    pkg = sparse_package(base, target, method="m", target_version=1, base_version=0)
    from dataclasses import replace

    unbound = UpdatePackage(replace(pkg.header, base_hash=None, base_version=None), pkg.blobs).with_target(base)
    device = clone_state(base)
    device["fc.weight"] = torch.zeros(10, 37)
    with pytest.raises(BaseMismatchError, match="fc.weight"):
        unbound.apply(device)
    del device["fc.weight"]
    with pytest.raises(BaseMismatchError, match="does not have"):
        unbound.apply(device)


def test_devices_decoding_the_same_bytes_each_still_check_checksum_and_signature() -> None:
    # A process parses a package once for all its devices that receive the same bytes; every
    # decode still checks its own copy's checksum and signature first.
    base, target, pkg = _pkg()
    key = HmacKey(b"fleet-secret")
    signed = pkg.encode(key)
    first, second = UpdatePackage.decode(signed, key=key), UpdatePackage.decode(bytes(bytearray(signed)), key=key)
    assert first is not second and state_hash(second.apply(base)) == state_hash(target)
    with pytest.raises(AuthenticationError, match="does not verify"):
        UpdatePackage.decode(signed, key=HmacKey(b"other-secret"))
    flipped = bytearray(signed)
    flipped[len(flipped) // 2] ^= 1
    with pytest.raises(IntegrityError):
        UpdatePackage.decode(bytes(flipped), key=key)
