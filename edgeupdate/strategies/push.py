"""The push of one round: which package each device gets, what its link does with it, and what
the EVALUATE message must carry so the device lives through exactly that (no Flower here).

Per device (:meth:`PushPlan.for_device`):

1. the package from *its* state to its line's latest — the release package for devices holding
   its base (base-free packages fit any state), the line's first model on an empty student device,
   else the strategy's catch-up package — each distinct package encoded once per round;
2. the fleet plans what happens on the device's link (offline, no_memory, deadline, a corrupted
   transfer, a crash part-way through applying, applied);
3. with ``fleet.budgets``, a device that would miss the deadline or lack memory gets the largest
   top-|Δ| share of its update that fits (bisection on real encoded packages);
   with ``fleet.faults.replay_prob``/``forge_prob`` an attacker may replace a package that would
   be applied (:mod:`edgeupdate.strategies.attacks`);
4. the task fields that act the outcome out (the bytes that arrive, a crash point, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from edgeupdate import protocol as P
from edgeupdate.fleet.network import largest_fitting_int
from edgeupdate.fleet.rounds import RoundOutcome, Workload
from edgeupdate.fleet.simulated import SimulatedFleet
from edgeupdate.strategies import attacks, saved_packages
from edgeupdate.strategies.attacks import NO_ATTACK, PackageArchive
from edgeupdate.strategies.saved_packages import PackageSaver
from edgeupdate.strategies.versions import MAIN_LINE, DeviceView, ModelVersion, VersionStore
from edgeupdate.updates import Signer, UpdatePackage, dense_package, sparse_package
from edgeupdate.updates.cost import ApplyCost, apply_cost, state_bytes


@dataclass(frozen=True)
class Encoded:
    """One package as sent: its bytes, what it is, and what applying it costs the device."""

    payload: bytes
    kind: str  # release | catch-up | full | budget
    cost: ApplyCost
    base_version: int
    target_hash: str = ""  # what a device holds once it applied the package


@dataclass
class Push:
    """What the push of one round did for one device (server side)."""

    kind: str = "none"
    base_version: int = 0
    outcome: RoundOutcome | None = None
    attack: str = "none"  # none | replay | forge: an attacker replaced the package (strategies.attacks)
    target_hash: str = ""  # what the device holds if the package arrives intact and applies


class PackageHooks(Protocol):
    """The strategy hooks a push calls (implemented by :class:`~edgeupdate.strategies.base.EdgeStrategy`)."""

    name: str

    def catch_up_package(self, base: ModelVersion, target: ModelVersion) -> UpdatePackage: ...

    def budget_package(self, base: ModelVersion, target: ModelVersion, count: int) -> UpdatePackage: ...


def top_changes_package(base: ModelVersion, target: ModelVersion, count: int, *, method: str,
                        coding: str) -> UpdatePackage:
    """The ``count`` largest changes |Δw| from ``base`` to ``target`` as a sparse fp32 package."""
    flat = {k: (target.weights[k].float() - v.float()).abs().reshape(-1) for k, v in base.weights.items()}
    order = torch.cat(list(flat.values())).argsort(descending=True, stable=True)[:count]
    keep = torch.zeros(sum(t.numel() for t in flat.values()), dtype=torch.bool)
    keep[order] = True
    partial, offset = {}, 0
    for k, v in base.weights.items():
        n = v.numel()
        mask = keep[offset:offset + n].reshape(v.shape)
        partial[k] = torch.where(mask, target.weights[k], v)
        offset += n
    return sparse_package(base.weights, partial, method=method, target_version=target.number,
                          base_version=base.number, precision="fp32", coding=coding)


class PushPlan:
    """The push of round ``round_``: starts at ``release_s`` on the simulated clock."""

    def __init__(self, round_: int, *, store: VersionStore, fleet: SimulatedFleet, hooks: PackageHooks,
                 release: UpdatePackage | None, key: Signer | None, inference_flops: float, release_s: float,
                 budgets: bool, archive: PackageArchive | None = None, saver: PackageSaver | None = None) -> None:
        self.round = round_
        self.store, self.fleet, self.hooks = store, fleet, hooks
        self.release, self.key = release, key
        self.inference_flops, self.release_s, self.budgets = inference_flops, release_s, budgets
        self.archive = archive  # past pushes, for replay attacks (None: no attacks)
        self.saver = saver  # simulation.save_packages (None: off)
        self._encoded: dict[str, Encoded] = {}

    def package_for(self, view: DeviceView) -> Encoded:
        """The package that takes ``view``'s state to its line's latest (encoded once per base state)."""
        key = f"{view.line}/{view.hash}"
        if key not in self._encoded:
            base, target = self.store.states[view.hash], self.store.target_of(view)
            release = self.release
            if view.line == MAIN_LINE and release is not None and release.header.base_hash in (view.hash, None):
                package, kind = release, "release"  # base-free packages fit any state
            elif not base.weights:  # a student device's first student: the whole model
                package = dense_package(target.weights, method=f"{self.hooks.name}-{view.line}",
                                        target_version=target.number, base=base.weights, base_version=base.number)
                kind = "full"
            else:
                package = self.hooks.catch_up_package(base, target)
                kind = "full" if all(t.kind == "dense" for t in package.header.tensors) else "catch-up"
            self._encoded[key] = self.encode(package, kind, base)
        return self._encoded[key]

    def encode(self, package: UpdatePackage, kind: str, base: ModelVersion) -> Encoded:
        payload = package.encode(self.key)
        return Encoded(payload, kind, apply_cost(package.header, len(payload), state_bytes(base.weights)),
                       base.number, package.header.target_hash)

    def for_device(self, view: DeviceView) -> tuple[Push, dict[str, Any]]:
        """What the push does for ``view``'s device, and the EVALUATE task fields that act it out."""
        enc = self.package_for(view)
        outcome = self._plan(view, enc)
        if self.budgets and outcome.status in (P.DeviceStatus.DEADLINE, P.DeviceStatus.NO_MEMORY):
            enc, outcome = self._budgeted(view, enc, outcome)
        genuine = enc
        enc, outcome, attack = attacks.attack(self, view, enc, outcome)
        fields = self._act_out(view.device_id, enc, outcome)
        if self.saver is not None and fields["package"]:  # sent (not offline, not withheld)
            self.saver.record(self.round, "push", view, genuine.payload, kind=genuine.kind,
                              bytes_down=fields.get("payload_len", len(fields["package"])),
                              transfer=saved_packages.transfer(outcome), attack=attack,
                              attack_payload=enc.payload if attack != NO_ATTACK else None)
        return Push(enc.kind, enc.base_version, outcome, attack, enc.target_hash), fields

    def _plan(self, view: DeviceView, enc: Encoded) -> RoundOutcome:
        workload = Workload(down_bytes=len(enc.payload), apply_flops=enc.cost.flops,
                            apply_peak_memory_bytes=enc.cost.peak_memory_bytes,
                            inference_flops=self.inference_flops)
        return self.fleet.plan(self.round, view.device_id, workload, self.release_s)

    def _budgeted(self, view: DeviceView, enc: Encoded, outcome: RoundOutcome) -> tuple[Encoded, RoundOutcome]:
        """The largest top-|Δ| share of the update that fits the device's deadline and memory."""
        base, target = self.store.states[view.hash], self.store.target_of(view)
        changed = int(sum((target.weights[k] != v).sum() for k, v in base.weights.items()))
        tried: dict[int, tuple[Encoded, RoundOutcome]] = {}

        def fits(count: int) -> bool:
            if count not in tried:
                candidate = self.encode(self.hooks.budget_package(base, target, count), "budget", base)
                tried[count] = (candidate, self._plan(view, candidate))
            return tried[count][1].status not in (P.DeviceStatus.DEADLINE, P.DeviceStatus.NO_MEMORY)

        best = largest_fitting_int(fits, 1, changed) if changed else None
        if best is None:
            return enc, outcome
        candidate, planned = tried[best]
        package = UpdatePackage.decode(candidate.payload, self.key)
        weights = package.apply(base.weights, state_hash_known=base.hash)
        state = ModelVersion(target.number, weights, package.header.target_hash, kind="budget", parent=base.hash)
        self.store.issue(self.round, state, view.line)
        return candidate, planned

    def _act_out(self, device_id: int, enc: Encoded, outcome: RoundOutcome) -> dict[str, Any]:
        """The EVALUATE task fields that make the device experience ``outcome``."""
        if outcome.status == P.DeviceStatus.OFFLINE:
            return {"package": b"", "link": P.LINK_OFFLINE}
        if outcome.status == P.DeviceStatus.NO_MEMORY:
            return {"package": b"", "required_memory_bytes": enc.cost.peak_memory_bytes}
        if outcome.status == P.DeviceStatus.DEADLINE:
            arrived = self.fleet.delivered_bytes(device_id, outcome, len(enc.payload))
            return {"package": enc.payload, "payload_len": arrived, "link": P.LINK_CUT}
        if outcome.corrupt_transfer:
            faults = self.fleet.faults
            return {"package": faults.maybe_corrupt(enc.payload, self.fleet.seed, self.round, device_id, "down")}
        if outcome.crash_during_apply:
            return {"package": enc.payload, "crash_point": float(outcome.crash_point)}
        return {"package": enc.payload}
