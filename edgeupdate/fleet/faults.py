"""Fault injection as pure functions: dropout, corrupted transfers, crashes during apply.

Every decision derives from ``(seed, purpose, round, device[, transfer])`` through
:mod:`edgeupdate.seeding`, so the server (planning a round) and a device process (acting it out)
reach the same verdict without talking, and a rerun with the same seed injects the same faults.

* dropout: the device is unreachable this round (status ``offline``);
* corruption: the bytes of one transfer arrive altered (:func:`corrupt`); the package checks
  must catch it and the device keeps its old model (status ``rejected``);
* crash: the device app raises part-way through applying a package; the apply step must leave
  the deployed model intact (status ``rejected``);
* attacks (:meth:`FaultConfig.attack`): an attacker on the link replaces the download with an
  older, validly signed package (``replay``) or a forged one (``forge``: signed with the wrong
  key, or altered after signing with its checksum fixed up); the device's checks must refuse it
  (status ``rejected``). The attacked bytes are built by :mod:`edgeupdate.strategies.attacks`;
* lost (:meth:`FaultConfig.loses`): the device's process dies during a phase, before or after doing
  its task, and never answers; the server records ``lost`` and keeps tracking what the device may
  hold (only the node knows; the server learns it at the device's next contact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeupdate.seeding import derive_seed, numpy_rng

DeviceKey = int | str


class FaultConfigError(ValueError):
    """An invalid fault-injection setting (one-line message)."""


def _draw(seed: int, *parts: DeviceKey) -> float:
    """A deterministic uniform number in [0, 1) for ``(seed, *parts)``."""
    return derive_seed(seed, *parts) / float(1 << 63)


def _happens(prob: float, seed: int, *parts: DeviceKey) -> bool:
    """Whether the event of probability ``prob`` happens for ``(seed, *parts)`` (no draw when it is 0)."""
    return prob > 0 and _draw(seed, *parts) < prob


def corrupt(payload: bytes, rng: np.random.Generator, num_bytes: int = 1) -> bytes:
    """A copy of ``payload`` with ``num_bytes`` distinct bytes changed (XOR with a non-zero mask).

    Every chosen byte really changes, so the result always differs from ``payload``; the input
    is not modified. ``num_bytes`` is capped at ``len(payload)``.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise FaultConfigError(f"corrupt() needs bytes, got {type(payload).__name__}")
    if isinstance(num_bytes, bool) or not isinstance(num_bytes, int) or num_bytes < 1:
        raise FaultConfigError(f"num_bytes must be an integer >= 1, got {num_bytes!r}")
    data = bytearray(payload)
    if not data:
        raise FaultConfigError("cannot corrupt an empty payload")
    count = min(num_bytes, len(data))
    positions = rng.choice(len(data), size=count, replace=False)
    masks = rng.integers(1, 256, size=count)
    for pos, mask in zip(positions.tolist(), masks.tolist()):
        data[pos] ^= mask
    return bytes(data)


@dataclass(frozen=True)
class FaultConfig:
    """Per-round fault probabilities (each in [0, 1]); all zero means no faults.

    ``corrupt_bytes`` is how many bytes :func:`corrupt` flips in a corrupted transfer;
    ``replay_prob`` / ``forge_prob`` are the chances that an attacker replaces a download
    (:meth:`attack`; together at most 1).
    """

    dropout_prob: float = 0.0
    corruption_prob: float = 0.0
    crash_prob: float = 0.0
    corrupt_bytes: int = 1
    replay_prob: float = 0.0
    forge_prob: float = 0.0
    lost_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("dropout_prob", "corruption_prob", "crash_prob", "replay_prob", "forge_prob", "lost_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise FaultConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
        if self.replay_prob + self.forge_prob > 1.0:
            raise FaultConfigError(f"replay_prob + forge_prob must be at most 1, got "
                                   f"{self.replay_prob} + {self.forge_prob}")
        if isinstance(self.corrupt_bytes, bool) or not isinstance(self.corrupt_bytes, int) \
                or self.corrupt_bytes < 1:
            raise FaultConfigError(
                f"corrupt_bytes must be an integer >= 1, got {self.corrupt_bytes!r}")

    def drops_out(self, seed: int, round_num: int, device_id: DeviceKey) -> bool:
        """Whether the device drops out (is unreachable) in ``round_num``."""
        return _happens(self.dropout_prob, seed, "fault-dropout", round_num, device_id)

    def corrupts(self, seed: int, round_num: int, device_id: DeviceKey,
                 transfer: str = "down") -> bool:
        """Whether the ``transfer`` (e.g. ``"down"``, ``"up"``) of this round arrives corrupted."""
        return _happens(self.corruption_prob, seed, "fault-corrupt", round_num, device_id, transfer)

    def crashes(self, seed: int, round_num: int, device_id: DeviceKey) -> bool:
        """Whether the device app crashes part-way through the apply step in ``round_num``."""
        return _happens(self.crash_prob, seed, "fault-crash", round_num, device_id)

    def loses(self, seed: int, round_num: int, device_id: DeviceKey, phase: str) -> str | None:
        """Whether the device's process dies during ``phase`` (``"train"``/``"push"``) of ``round_num``:
        ``"before"`` (it never touched the task), ``"after"`` (it finished the task, then died before
        answering) or None. The device never answers that phase; the server records it ``lost``."""
        if not _happens(self.lost_prob, seed, "fault-lost", round_num, device_id, phase):
            return None
        return "before" if _draw(seed, "fault-lost-point", round_num, device_id, phase) < 0.5 else "after"

    def attack(self, seed: int, round_num: int, device_id: DeviceKey) -> str | None:
        """Which attack (``"replay"``, ``"forge"``) an attacker tries on this round's download, or None.

        One draw per (round, device): ``replay`` below ``replay_prob``, ``forge`` in the next
        ``forge_prob``, so the two never coincide.
        """
        if self.replay_prob + self.forge_prob <= 0:
            return None
        u = _draw(seed, "fault-attack", round_num, device_id)
        if u < self.replay_prob:
            return "replay"
        if u < self.replay_prob + self.forge_prob:
            return "forge"
        return None

    def attack_rng(self, seed: int, round_num: int, device_id: DeviceKey) -> np.random.Generator:
        """The generator that shapes an attack (which old package, which forgery, which byte)."""
        return numpy_rng(seed, "fault-attack-bytes", round_num, device_id)

    def corruption_rng(self, seed: int, round_num: int, device_id: DeviceKey,
                       transfer: str = "down") -> np.random.Generator:
        """The generator that chooses *which* bytes a corrupted transfer flips."""
        return numpy_rng(seed, "fault-corrupt-bytes", round_num, device_id, transfer)

    def maybe_corrupt(self, payload: bytes, seed: int, round_num: int, device_id: DeviceKey,
                      transfer: str = "down") -> bytes:
        """``payload`` unchanged, or corrupted when :meth:`corrupts` says so (deterministic)."""
        if not payload or not self.corrupts(seed, round_num, device_id, transfer):
            return bytes(payload)
        rng = self.corruption_rng(seed, round_num, device_id, transfer)
        return corrupt(payload, rng, self.corrupt_bytes)

    def crash_point(self, seed: int, round_num: int, device_id: DeviceKey) -> float:
        """Where in the apply step (fraction in (0, 1)) a crash happens, for the device app."""
        return 0.05 + 0.9 * _draw(seed, "fault-crash-point", round_num, device_id)


NO_FAULTS = FaultConfig()
