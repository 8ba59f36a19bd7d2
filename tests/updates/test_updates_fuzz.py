"""Fuzzing decode + apply: only PackageError subclasses escape, and no corrupted package is applied.

Three sources of bad input: random bytes, raw mutations of valid packages (caught by the
checksum), and structure-aware mutations whose length and checksum are fixed up afterwards (so
the header and body parsers, and apply, see the corruption). Signed packages (HMAC and
Ed25519) get the same mutations with length and checksum fixed up and the signature kept, so only
the signature can refuse them. The default suite runs ≥ 10 000 cases from a seeded generator plus
hypothesis searches; a 10 000-example hypothesis run is marked slow.
"""

from __future__ import annotations

import functools
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from update_states import clustered, perturbed, small_state
from edgeupdate.updates import (
    Ed25519Signer,
    HmacKey,
    LayerFactors,
    PackageError,
    UpdatePackage,
    dense_package,
    factor_package,
    initial_factors,
    seeded_package,
    sparse_package,
    state_hash,
    Verifier,
)

KEY = HmacKey(b"fuzz-key")
ED25519 = Ed25519Signer(bytes(range(32)))


@functools.lru_cache(maxsize=1)
def _corpus() -> tuple[dict, tuple[tuple[bytes, str], ...]]:
    base = small_state()
    target = perturbed(base, 0.2)
    f = {k: v.float() + 0.01 for k, v in initial_factors("ka", base["fc.weight"], 2).items()}
    pkgs = [
        sparse_package(base, target, method="dpu", target_version=2, base_version=1, coding="golomb"),
        sparse_package(base, target, method="dpu", target_version=2, base_version=1, coding="varint", precision="int8-channel"),
        sparse_package(base, target, method="dpu", target_version=2, base_version=1, coding="bitmap", precision="fp16"),
        sparse_package(None, target, method="prune", target_version=2, precision="int8"),
        dense_package(target, method="full", target_version=2, base=base, base_version=1),
        sparse_package(base, target, method="dpu", target_version=2, base_version=1, value_compression="zstd",
                       dense_names=["fc.bias"]),
        factor_package(base, {"fc.weight": LayerFactors("ka", f)}, {"fc.bias": target["fc.bias"]}, method="ka",
                       target_version=2, base_version=1),
        seeded_package(base, generator="mask", seed=4, params={"p": 0.4}, values={"conv.weight": target["conv.weight"]},
                       dense={}, method="rm", target_version=2, base_version=1, precision="fp16"),
        # entropy-coded int8 values with context-modelled positions (row × column clusters of ±step)
        sparse_package(base, clustered(base), method="dpu", target_version=2, base_version=1, coding="context",
                       precision="int8", value_coding="entropy"),
        sparse_package(base, clustered(base, rows=1), method="dpu", target_version=2, base_version=1, coding="auto",
                       precision="int8-channel", value_coding="entropy", dense_names=["fc.bias"]),
    ]
    return base, tuple((p.encode(), p.header.target_hash) for p in pkgs)


def test_corpus_holds_the_entropy_codings() -> None:
    _, corpus = _corpus()
    headers = [UpdatePackage.decode(data).header for data, _ in corpus]
    assert any(t.values_packing == "entropy" for h in headers for t in h.tensors)
    assert any(t.coding == "context" for h in headers for t in h.tensors)


def _fix_length_and_checksum(data: bytearray) -> bytes:
    if len(data) >= 14:
        data[6:10] = struct.pack("<I", len(data))
        data[5] = 0  # unsigned
        data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    return bytes(data)


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(0, 5))
        i = int(rng.integers(0, max(len(out), 1)))
        if op == 0 and out:
            out[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and out:
            out[i] = int(rng.integers(0, 256))
        elif op == 2:
            out[i:i] = rng.integers(0, 256, size=int(rng.integers(1, 5)), dtype=np.uint8).tobytes()
        elif op == 3 and out:
            del out[i : i + int(rng.integers(1, 9))]
        else:
            out = out[:i]
    return bytes(out)


def _check(data: bytes, original: bytes | None, target_hash: str | None, key: Verifier | None = None) -> str:
    """Decode + apply; returns the outcome and fails on anything but PackageError or a correct result."""
    base, _ = _corpus()
    try:
        state = UpdatePackage.decode(data, key=key).apply(base)
    except PackageError as exc:
        assert "\n" not in str(exc)
        return type(exc).__name__
    # only a package whose result is exactly the promised target may be applied
    assert target_hash is not None and state_hash(state) == target_hash, "a corrupted package was applied"
    if original is not None and data != original:
        return "harmless"  # e.g. a changed method string: the weights are still exactly the target
    return "ok"


def test_ten_thousand_random_and_mutated_inputs() -> None:
    _, corpus = _corpus()
    rng = np.random.default_rng(20240611)
    outcomes: dict[str, int] = {}
    for i in range(10_000):
        original, target_hash = corpus[i % len(corpus)]
        mode = i % 4
        if mode == 0:
            data = rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
            if rng.random() < 0.5:
                data = b"EUPK\x01\x00" + data
            kind = _check(data, None, None)
        elif mode == 1:
            data = _mutate(original, rng)
            kind = _check(data, original, target_hash)
            if data == original:  # a mutation can put back what it changed: the package must still apply
                assert kind == "ok"
            else:  # the CRC covers every byte, so any raw change is refused before parsing
                assert kind == "IntegrityError" or kind == "FormatError", f"a raw mutation gave {kind}"
        else:
            data = _fix_length_and_checksum(bytearray(_mutate(original, rng)))
            kind = _check(data, original, target_hash)
        outcomes[kind] = outcomes.get(kind, 0) + 1
    # the parsers, not only the checksum, were exercised
    assert outcomes.get("FormatError", 0) > 1000 and outcomes.get("IntegrityError", 0) > 1000


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=512), prefix=st.booleans())
def test_hypothesis_random_bytes(data: bytes, prefix: bool) -> None:
    _check((b"EUPK\x01\x00" if prefix else b"") + data, None, None)


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[bytes, bytes, str]:
    _, corpus = _corpus()
    original, target_hash = draw(st.sampled_from(corpus))
    out = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, max(len(out) - 1, 0)))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if op == "flip" and out:
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and out:
            out[i] = draw(st.integers(0, 255))
        elif op == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del out[i : i + draw(st.integers(1, 8))]
        else:
            out = out[:i]
    fixed = _fix_length_and_checksum(bytearray(out)) if draw(st.booleans()) else bytes(out)
    return fixed, original, target_hash


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_mutated())
def test_hypothesis_mutated_packages(case: tuple[bytes, bytes, str]) -> None:
    data, original, target_hash = case
    _check(data, original, target_hash)


@settings(max_examples=300, deadline=None)
@given(case=_mutated())
def test_hypothesis_mutated_signed_packages_never_verify(case: tuple[bytes, bytes, str]) -> None:
    _, original, target_hash = case
    signed = UpdatePackage.decode(original).encode(KEY)
    data = bytearray(signed)
    data[len(data) // 3] ^= 0xFF
    assert _check(bytes(data), signed, target_hash, key=KEY) in ("IntegrityError", "FormatError", "AuthenticationError")


def _fix_length_and_checksum_signed(data: bytearray, signature_size: int) -> bytes:
    """Length and checksum fixed up, the signature algorithm and the last ``signature_size`` bytes kept."""
    if len(data) >= 10 + 4 + signature_size:
        data[6:10] = struct.pack("<I", len(data))
        end = len(data) - signature_size - 4
        data[end : end + 4] = struct.pack("<I", zlib.crc32(bytes(data[:end])))
    return bytes(data)


@functools.lru_cache(maxsize=1)
def _ed25519_corpus() -> tuple[tuple[bytes, str], ...]:
    _, corpus = _corpus()
    return tuple((UpdatePackage.decode(p).encode(ED25519), h) for p, h in corpus)


def test_ed25519_signed_packages_apply_and_every_raw_or_fixed_up_change_is_refused() -> None:
    verifier = ED25519.verifier()
    signed = _ed25519_corpus()
    for payload, target_hash in signed:
        assert _check(payload, payload, target_hash, key=verifier) == "ok"
    rng = np.random.default_rng(20261201)
    outcomes: dict[str, int] = {}
    for i in range(3000):
        original, target_hash = signed[i % len(signed)]
        data = _mutate(original, rng)
        if i % 2:
            data = _fix_length_and_checksum_signed(bytearray(data), 64)
        kind = _check(data, original, target_hash, key=verifier)
        if data == original:
            assert kind == "ok"
        else:  # the signature covers every byte before it: no change is ever applied, not even a harmless one
            assert kind in ("IntegrityError", "FormatError", "AuthenticationError"), f"a mutation gave {kind}"
        outcomes[kind] = outcomes.get(kind, 0) + 1
    assert outcomes.get("AuthenticationError", 0) > 1000  # fixed-up changes reach the signature check


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_mutated(), fix_up=st.booleans())
def test_hypothesis_mutated_ed25519_packages_never_verify(case: tuple[bytes, bytes, str], fix_up: bool) -> None:
    _, original, target_hash = case
    signed = UpdatePackage.decode(original).encode(ED25519)
    data = bytearray(signed)
    data[len(data) // 3] ^= 0xFF
    data = _fix_length_and_checksum_signed(data, 64) if fix_up else bytes(data)
    assert _check(data, signed, target_hash, key=ED25519.verifier()) in (
        "IntegrityError", "FormatError", "AuthenticationError")


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_mutated())
def test_hypothesis_mutated_packages_10k(case: tuple[bytes, bytes, str]) -> None:
    data, original, target_hash = case
    _check(data, original, target_hash)
