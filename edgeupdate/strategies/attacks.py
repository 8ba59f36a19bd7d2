"""Attacks on the push (fault injection, issue 18): what an attacker on a device's link sends instead
of the genuine package. No Flower here.

Who is attacked in which round is :meth:`edgeupdate.fleet.faults.FaultConfig.attack` (from
``(seed, round, device)``, like every fault); how the attack looks is drawn from
:meth:`~edgeupdate.fleet.faults.FaultConfig.attack_rng`. Only a push that would otherwise arrive
whole and be applied is attacked:

* ``replay`` — a validly signed package the server sent earlier (recorded by
  :class:`PackageArchive`, as an eavesdropper on the link would), targeting a version no newer
  than the one the device holds: a base-free one (pruning, FP) would roll the device back if the
  version check were missing. Without such a package (e.g. in round 1) nothing is attacked.
* ``forge`` — either a package of the attacker's own weights (all zeros), bound to the device's
  state and a new version, signed with a key of the right algorithm that is not the server's
  (``wrong-key``); or the genuine package with one byte altered after signing and its checksum
  fixed up (``tampered``). Needs ``package.signing`` (checked by the config).

The attacked download is planned on the device's link with its own size (a replayed package may
be larger: if it would miss the deadline, the attack is dropped).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, replace
from typing import Any

import torch

from edgeupdate import protocol as P
from edgeupdate.fleet.rounds import RoundOutcome, Workload
from edgeupdate.seeding import derive_seed
from edgeupdate.strategies.versions import DeviceView
from edgeupdate.updates import Ed25519Signer, HmacKey, Signer, dense_package
from edgeupdate.updates.auth import SIGNATURE_SIZES
from edgeupdate.updates.header import CHECKSUM_BYTES, PREAMBLE

# ``plan`` is a :class:`edgeupdate.strategies.push.PushPlan`, ``enc`` its ``Encoded`` (push.py calls
# this module, so it is not imported here).
PushPlan = Encoded = Any

ATTACKS = ("replay", "forge")
NO_ATTACK = "none"


@dataclass(frozen=True)
class SentPackage:
    """A package as it crossed a link: its bytes and what it binds to."""

    payload: bytes
    line: str
    target_version: int
    base_hash: str | None  # None: base-free


class PackageArchive:
    """The packages the server pushed so far, one per distinct payload, for the newest
    ``keep_versions`` target versions of each model line (bounded memory)."""

    def __init__(self, keep_versions: int = 8) -> None:
        self.keep_versions = keep_versions
        self._sent: dict[bytes, SentPackage] = {}

    def record(self, sent: SentPackage) -> None:
        digest = hashlib.blake2b(sent.payload, digest_size=16).digest()
        if digest in self._sent:
            return
        self._sent[digest] = sent
        versions = sorted({s.target_version for s in self._sent.values() if s.line == sent.line})
        if len(versions) > self.keep_versions:
            oldest = versions[0]
            self._sent = {d: s for d, s in self._sent.items() if s.line != sent.line or s.target_version != oldest}

    def older(self, line: str, version: int, held_hash: str) -> list[SentPackage]:
        """Packages of ``line`` whose target is no newer than ``version`` and that are not bound to
        the held state (such a package would legitimately move the device forward)."""
        return [s for s in self._sent.values()
                if s.line == line and s.target_version <= version and s.base_hash != held_hash]


def attacker_key(key: Signer, seed: int) -> Signer:
    """A key of ``key``'s algorithm that is not the server's (the attacker's own)."""
    secret = hashlib.blake2b(str(derive_seed(seed, "attacker-key")).encode(), digest_size=32).digest()
    return Ed25519Signer(secret) if isinstance(key, Ed25519Signer) else HmacKey(secret)


def tampered(payload: bytes, signature_size: int, rng) -> bytes:
    """``payload`` with one byte after the preamble changed and the checksum recomputed; the
    signature (last ``signature_size`` bytes) is kept, so only it can tell."""
    end = len(payload) - signature_size - CHECKSUM_BYTES
    data = bytearray(payload[:end])
    pos = int(rng.integers(PREAMBLE.size, end))
    data[pos] ^= int(rng.integers(1, 256))
    return bytes(data) + struct.pack("<I", zlib.crc32(bytes(data))) + payload[end + CHECKSUM_BYTES:]


def _forged(plan: PushPlan, view: DeviceView, enc: Encoded, rng) -> bytes | None:
    key = plan.key
    if key is None:
        return None  # nothing to forge: the config refuses forge_prob without signing
    if rng.random() < 0.5:
        base, target = plan.store.states[view.hash], plan.store.target_of(view)
        evil = {k: torch.zeros_like(v) for k, v in target.weights.items()}
        package = dense_package(evil, method=f"{plan.hooks.name}-forged", target_version=target.number,
                                base=base.weights, base_version=base.number)
        return package.encode(attacker_key(key, plan.fleet.seed))
    return tampered(enc.payload, SIGNATURE_SIZES[key.algorithm], rng)


def _replayed(plan: PushPlan, view: DeviceView, rng) -> bytes | None:
    candidates = plan.archive.older(view.line, view.version, view.hash)
    if not candidates:
        return None
    base_free = [c for c in candidates if c.base_hash is None]
    pool = base_free or candidates  # a base-free package is the one a missing version check lets through
    return pool[int(rng.integers(len(pool)))].payload


def attack(plan: PushPlan, view: DeviceView, enc: Encoded,
           outcome: RoundOutcome) -> tuple[Encoded, RoundOutcome, str]:
    """Record the genuine push, then maybe replace it: ``(what is sent, its outcome, attack)``,
    ``attack`` one of :data:`ATTACKS` or ``"none"``."""
    fleet, dev = plan.fleet, view.device_id
    if plan.archive is None or fleet.faults.replay_prob + fleet.faults.forge_prob == 0:
        return enc, outcome, NO_ATTACK
    if fleet.faults.replay_prob > 0:  # the archive costs memory: only kept when replays are configured
        release = plan.release
        base_free = enc.kind == "release" and release is not None and release.header.base_hash is None
        target = plan.store.target_of(view)
        plan.archive.record(SentPackage(enc.payload, view.line, target.number, None if base_free else view.hash))
    kind = fleet.faults.attack(fleet.seed, plan.round, dev)
    if kind is None or outcome.status != P.DeviceStatus.APPLIED:
        return enc, outcome, NO_ATTACK
    rng = fleet.faults.attack_rng(fleet.seed, plan.round, dev)
    payload = _replayed(plan, view, rng) if kind == "replay" else _forged(plan, view, enc, rng)
    if payload is None:
        return enc, outcome, NO_ATTACK
    workload = Workload(down_bytes=len(payload), apply_flops=enc.cost.flops,
                        apply_peak_memory_bytes=enc.cost.peak_memory_bytes, inference_flops=plan.inference_flops)
    attacked = fleet.plan(plan.round, dev, workload, plan.release_s, attack=kind)
    if attacked.status != P.DeviceStatus.REJECTED:  # the attacker's bytes would not arrive in time
        return enc, outcome, NO_ATTACK
    return replace(enc, payload=payload), attacked, kind


__all__ = ["ATTACKS", "NO_ATTACK", "PackageArchive", "SentPackage", "attack", "attacker_key", "tampered"]
