"""The simulated fleet of one run: devices, faults, deadline — and what each round does to them.

:func:`simulated_fleet` builds it from the config alone, so the server (which plays the network:
it decides what arrives) and every device process (which checks its own memory) agree without
talking. Decisions are :func:`edgeupdate.fleet.rounds.plan_round` outcomes, deterministic from
``(seed, round, device)``; the clock never reads a wall clock.

A round on the simulated clock (``start_s`` is when it begins):

1. *device phase* — devices that have work upload their new samples, or download a catch-up
   package, train locally and upload their update (federated strategies); each within
   ``deadline_s``;
2. *server phase* — the server retrains, charged at ``fleet.server_flop_per_s``;
3. *push* — each device downloads its package, applies it and runs one inference, within
   ``deadline_s``.

The round lasts until its slowest device finishes (cut at the deadline), and the next starts at
least ``round_interval_s`` after this one started.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from edgeupdate.configs import ConfigError, ExperimentConfig
from edgeupdate.fleet.faults import FaultConfig, FaultConfigError
from edgeupdate.protocol import DeviceStatus
from edgeupdate.fleet.devices import Device, FleetError, build_fleet
from edgeupdate.fleet.rounds import RoundOutcome, Workload, plan_round
from edgeupdate.fleet.network import max_bytes_in_time


@dataclass(frozen=True)
class SimulatedFleet:
    """Devices by id plus the rules every round follows."""

    devices: tuple[Device, ...]
    faults: FaultConfig
    deadline_s: float
    round_interval_s: float
    server_flop_per_s: float
    seed: int

    def device(self, device_id: int) -> Device:
        return self.devices[device_id]

    def tier(self, device_id: int) -> str:
        return self.devices[device_id].tier

    def memory_bytes(self, device_id: int) -> int:
        return self.devices[device_id].profile.memory_bytes

    def reachable(self, round_: int, device_id: int, at_s: float) -> bool:
        """Whether the device answers at ``at_s`` of ``round_`` (no dropout, availability on)."""
        dev = self.devices[device_id]
        if self.faults.drops_out(self.seed, round_, device_id):
            return False
        return dev.profile.is_online(self.seed, round_, device_id, at_s, at_s)

    def plan(self, round_: int, device_id: int, workload: Workload, start_s: float,
             transfer_faults: bool = True, attack: str | None = None) -> RoundOutcome:
        """The outcome of one phase that asks ``workload`` of the device, starting at ``start_s``.

        ``transfer_faults=False`` leaves out corrupted transfers and crashes (phases whose bytes
        the simulation does not corrupt, such as uploads); dropout always counts. ``attack``: the
        download is an attacker's package (:meth:`FaultConfig.attack` decides who is attacked).
        """
        faults = self.faults if transfer_faults else FaultConfig(dropout_prob=self.faults.dropout_prob)
        return plan_round(self.devices[device_id], workload, round_, self.seed, self.deadline_s, faults, start_s,
                          attack)

    def delivered_bytes(self, device_id: int, outcome: RoundOutcome, payload_bytes: int) -> int:
        """How much of a ``payload_bytes`` download arrived before the deadline cut the link."""
        if outcome.status != DeviceStatus.DEADLINE:
            return payload_bytes
        budget = outcome.transfer_s
        if not math.isfinite(budget) or budget <= 0:
            return 0
        fits = max_bytes_in_time(self.devices[device_id].profile, budget, "down", upper_bytes=payload_bytes)
        return min(payload_bytes, fits)

    def server_time_s(self, flops: float) -> float:
        """Simulated seconds the server needs for ``flops``."""
        return float(flops) / self.server_flop_per_s

    def next_round_start_s(self, start_s: float, duration_s: float) -> float:
        """When the round after one that started at ``start_s`` and lasted ``duration_s`` begins."""
        return start_s + max(duration_s, self.round_interval_s)


def _in_flop_per_s(device: Device, host_flop_per_s: float) -> Device:
    """A ``relative_speed`` profile expressed in FLOP/s, so the clock never depends on host timings."""
    p = device.profile
    if p.compute_flop_per_s is not None:
        return device
    return replace(device, profile=replace(p, compute_flop_per_s=p.relative_speed * host_flop_per_s,
                                           relative_speed=None))


def simulated_fleet(cfg: ExperimentConfig) -> SimulatedFleet:
    """The fleet described by ``cfg.fleet`` (a config error names the key on bad input)."""
    f = cfg.fleet
    spec = f.csv if f.csv else f.tiers
    key = "fleet.csv" if f.csv else "fleet.tiers"
    try:
        devices = build_fleet(spec, cfg.num_devices, cfg.seed)
    except FleetError as err:
        raise ConfigError(key, str(err)) from None
    devices = [_in_flop_per_s(d, f.host_flop_per_s) for d in devices]
    if f.faults.forge_prob > 0 and cfg.package.signing == "none":
        raise ConfigError("fleet.faults.forge_prob", "forged packages need package.signing = hmac or ed25519: "
                                                     "without a signature a device cannot tell them from genuine ones")
    try:
        faults = FaultConfig(dropout_prob=f.faults.dropout_prob, corruption_prob=f.faults.corruption_prob,
                             crash_prob=f.faults.crash_prob, corrupt_bytes=f.faults.corrupt_bytes,
                             replay_prob=f.faults.replay_prob, forge_prob=f.faults.forge_prob,
                             lost_prob=f.faults.lost_prob)
    except FaultConfigError as err:
        raise ConfigError("fleet.faults", str(err)) from None
    return SimulatedFleet(tuple(devices), faults, f.deadline_s, f.round_interval_s, f.server_flop_per_s,
                          cfg.seed)


__all__ = ["SimulatedFleet", "simulated_fleet"]
