"""One simulated edge device: what it holds, and how it verifies and applies a package.

A device holds a :class:`DeviceRecord` — its version, the hash of its weights and its upload
bookkeeping — kept by the node that serves it (:mod:`edgeupdate.clients.gateway`). The weights
themselves live once per run in the shared model store (:mod:`edgeupdate.store`). A device never
applies a package it cannot verify, checking in the order of :mod:`edgeupdate.updates.verify`:
decoding checks format, checksum and (when signing is on) the signature against the key it holds
(the public key only, with Ed25519); the target version must be newer than the one it holds (no
rollback); applying checks the base hash before and the result hash after. The arithmetic of
applying a package to a base is shared by every device of the process that receives it
(:class:`~edgeupdate.store.ApplyCache`); each device still runs every check itself.

Crash-safe apply: the new state is written to the store first (atomically), and only then does
the device's record move to it. A crash part-way (fault injection) stops before the record moves;
the device "reboots" on the state its record names, re-read from the store and re-verified
against its hash.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edgeupdate import protocol as P
from edgeupdate.datasets import NORMALIZATION
from edgeupdate.datasets.codec import encode_samples
from edgeupdate.runtime import ExperimentRuntime
from edgeupdate.training import TensorData
from edgeupdate.store import ApplyCache, ModelStore, StoreError
from edgeupdate.updates import PackageError, StateDict, UpdatePackage
from edgeupdate.updates.cost import ApplyCost, apply_cost, state_bytes
from edgeupdate.updates.verify import check_version


class DeviceCrash(Exception):
    """The device app died part-way through committing the new weights (fault injection)."""


@dataclass
class DeviceRecord:
    """What one device holds: version, weights hash, and which collected rounds reached the server."""

    device_id: int
    version: int
    hash: str
    uploaded_through: int = 1  # D¹ is the server's: devices upload from round 2 on
    upload_pending: int = 0  # the round whose upload awaits the server's acknowledgement


@dataclass
class DeviceServices:
    """What every device of a process shares for one run: the runtime, the store, the apply cache."""

    runtime: ExperimentRuntime
    store: ModelStore
    applies: ApplyCache

    @classmethod
    def create(cls, runtime: ExperimentRuntime, store: ModelStore) -> DeviceServices:
        return cls(runtime, store, ApplyCache())

    def factory_record(self, device_id: int) -> DeviceRecord:
        """A device as shipped: version 0 regenerated from the seed (nothing on a student device)."""
        return DeviceRecord(device_id, 0, self.runtime.factory_hash(device_id))

    def weights(self, record: DeviceRecord) -> StateDict:
        """The weights ``record`` names (shared: copy before changing them)."""
        return self.store.get(record.hash)


def try_apply(services: DeviceServices, record: DeviceRecord, payload: bytes,
              crash_point: float | None = None, digest: str = "") -> tuple[P.DeviceStatus, str, ApplyCost]:
    """Verify and apply ``payload`` on ``record``'s device; ``(status, reason, apply cost)``.

    ``digest`` is the payload's digest when the message already names it (the apply cache's key;
    hashed here otherwise).

    Never leaves the device on an unverified state: on any failure ``record`` is unchanged.
    """
    runtime = services.runtime
    try:
        package = UpdatePackage.decode(payload, runtime.package_verifier())
    except PackageError as err:
        return P.DeviceStatus.REJECTED, str(err), ApplyCost(0.0, 0)
    if (refused := check_version(package.header, record.version, record.hash)) is not None:
        return P.DeviceStatus.REJECTED, refused, ApplyCost(0.0, 0)
    base = services.weights(record)
    cost = apply_cost(package.header, len(payload), state_bytes(base))
    need, have = cost.peak_memory_bytes, runtime.fleet.memory_bytes(record.device_id)
    if need > have:
        return P.DeviceStatus.NO_MEMORY, f"applying needs {need} B of memory, the device has {have} B", cost

    def apply() -> tuple[str, str]:
        try:
            weights = package.apply(base)
        except PackageError as err:
            return "", str(err)
        return services.store.put(weights, package.header.target_hash), ""

    key = (record.hash, digest or hashlib.sha256(payload).hexdigest())
    result_hash, error = services.applies.get_or_apply(key, apply)
    if error:
        return P.DeviceStatus.REJECTED, error, cost
    if result_hash != package.header.target_hash:  # the device's own check of the shared result
        return P.DeviceStatus.REJECTED, f"result hash {result_hash[:16]} differs from the package's target", cost
    if crash_point is not None:
        tensors = len(package.header.tensors)
        what = f"crashed after staging {int(crash_point * tensors)} of {tensors} tensors"
        return P.DeviceStatus.REJECTED, reboot(services, record, what), cost
    record.version, record.hash = package.header.target_version, result_hash
    return P.DeviceStatus.APPLIED, "", cost


def reboot(services: DeviceServices, record: DeviceRecord, what: str) -> str:
    """Restart after a crash: re-read the state the record names from the store and re-verify it."""
    try:
        services.store.get(record.hash)  # verifies the file against its hash
    except StoreError as err:
        raise RuntimeError(f"device {record.device_id} lost its model in a crash during apply ({what}): {err}") from None
    return f"{what}; rebooted with the deployed model intact (hash verified)"


def collect(runtime: ExperimentRuntime, record: DeviceRecord, round_: int) -> bytes:
    """Samples collected in rounds after the last acknowledged upload, encoded for the uplink.

    They count as delivered only when the server acknowledges them (``upload_acked`` in the
    EVALUATE task of the same round); otherwise the next upload sends them again.
    """
    rounds = range(record.uploaded_through + 1, round_ + 1)
    idx = [runtime.layout.arrivals(record.device_id, r) for r in rounds]
    record.upload_pending = round_
    if sum(len(i) for i in idx) == 0:  # most devices of a large fleet collect nothing in a round
        return _empty_upload(runtime.dataset.name)
    samples = runtime.train_subset(np.concatenate(idx))
    return encode_samples(samples, NORMALIZATION[runtime.dataset.name])


@functools.lru_cache(maxsize=None)
def _empty_upload(dataset: str) -> bytes:
    """The upload of a device that collected nothing (a header saying 0 samples)."""
    return encode_samples(TensorData(torch.empty(0, 1, 1, 1), torch.empty(0, dtype=torch.long)), NORMALIZATION[dataset])


def acknowledge_upload(record: DeviceRecord, acked: bool) -> None:
    """The server says whether this round's upload arrived."""
    if record.upload_pending:
        if acked:
            record.uploaded_through = record.upload_pending
        record.upload_pending = 0


def push(services: DeviceServices, record: DeviceRecord, task: dict[str, Any],
         payload: bytes, digest: str = "") -> tuple[P.DeviceStatus, str]:
    """Act out the push the server planned for this device: ``(status, reason)``."""
    runtime = services.runtime
    link = str(task.get("link", P.LINK_OK))
    if link == P.LINK_OFFLINE:
        return P.DeviceStatus.OFFLINE, "unreachable this round"
    required = int(task.get("required_memory_bytes", 0))
    have = runtime.fleet.memory_bytes(record.device_id)
    if required > have:
        return P.DeviceStatus.NO_MEMORY, f"applying needs {required} B of memory, the device has {have} B; declined the download"
    if not payload:
        return P.DeviceStatus.NO_UPDATE, ""
    if link == P.LINK_CUT:
        try:
            UpdatePackage.decode(payload, runtime.package_verifier())
        except PackageError as err:
            return P.DeviceStatus.DEADLINE, f"link closed at the deadline: {err}"
        raise RuntimeError("a package cut at the deadline decoded: the transfer cut is not simulated")
    crash = float(task.get("crash_point", -1.0))
    status, reason, _ = try_apply(services, record, payload, crash if crash >= 0 else None, digest)
    return status, reason
