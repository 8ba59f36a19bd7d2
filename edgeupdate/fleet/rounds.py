"""What happens to each device in a round, on the simulated clock (pure; no Flower).

:func:`plan_round` — given what a round asks of a device (:class:`Workload`), its
:class:`RoundOutcome`. The status is decided in this fixed order:

1. ``offline``   — fault dropout, or the availability model says unreachable for the span the
   round needs (``[round_start_s, round_start_s + min(needed, deadline)]``);
2. ``no_memory`` — the apply step's peak memory exceeds ``memory_bytes`` (the device declines
   before downloading; nothing is transferred);
3. ``deadline``  — download + apply + inference + upload takes longer than ``deadline_s``
   (the device is cut off at the deadline and keeps its old model);
4. ``rejected``  — an attacker replaced the download (``attack``: replay or forge), the download
   arrived corrupted (the package checks reject it) or the apply step crashed part-way (the old
   model is kept);
5. ``applied``.

Devices that do not apply keep their old model; only ``applied`` advances the version.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgeupdate.protocol import DeviceStatus
from edgeupdate.fleet.devices import Device, FleetError
from edgeupdate.fleet.faults import NO_FAULTS, FaultConfig
from edgeupdate.fleet.network import compute_time_s, link_transfer_time_s
from edgeupdate.fleet.profiles import DeviceProfile

STATUSES: tuple[DeviceStatus, ...] = (DeviceStatus.OFFLINE, DeviceStatus.NO_MEMORY, DeviceStatus.DEADLINE,
                                      DeviceStatus.REJECTED, DeviceStatus.APPLIED)
"""The statuses a round can give a device, in the order they are decided."""


@dataclass(frozen=True)
class Workload:
    """What one round asks of a device.

    ``down_bytes``: encoded package size; ``up_bytes``: what the device sends back (report,
    δD samples); ``apply_flops`` / ``apply_peak_memory_bytes``: the apply/reconstitution step
    (e.g. KA's W = [U,U′]·diag(s′)·[V,V′]ᵀ); ``inference_flops``: on-device evaluation after
    applying. For ``relative_speed`` profiles, ``apply_host_s``/``inference_host_s`` are the
    times measured on the simulation host.
    """

    down_bytes: int
    up_bytes: int = 0
    apply_flops: float = 0.0
    apply_peak_memory_bytes: int = 0
    inference_flops: float = 0.0
    apply_host_s: float | None = None
    inference_host_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("down_bytes", "up_bytes", "apply_peak_memory_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FleetError(f"workload {name} must be an integer >= 0, got {value!r}")
        for name in ("apply_flops", "inference_flops", "apply_host_s", "inference_host_s"):
            value = getattr(self, name)
            if value is None and name.endswith("_host_s"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise FleetError(f"workload {name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class RoundOutcome:
    """What happened to one device in one round, on the simulated clock.

    ``transfer_s``/``apply_s``/``inference_s``/``upload_s`` are the seconds actually spent (cut
    at the deadline); ``needed_s`` is what the whole round would have taken; ``sim_time_s`` is
    when the device was done (or cut off). ``fault`` says why: ``unavailable``/``dropout``
    (offline), ``replay``/``forge``/``corrupted``/``crash`` (rejected), else ``None``. ``corrupt_transfer`` and
    ``crash_during_apply`` tell the device app to act the fault out (corrupt the bytes with
    :func:`edgeupdate.fleet.faults.corrupt`, raise at ``crash_point`` of the apply step).
    ``energy_j`` sums the terms whose coefficients the profile gives (``None`` if none).
    """

    round_num: int
    device_id: int
    device_tier: str
    status: DeviceStatus
    transfer_s: float
    apply_s: float
    inference_s: float
    upload_s: float
    sim_time_s: float
    needed_s: float
    deadline_s: float
    fault: str | None = None
    corrupt_transfer: bool = False
    crash_during_apply: bool = False
    crash_point: float | None = None
    energy_j: float | None = None

    def as_row(self) -> dict[str, Any]:
        """A flat dict for the metrics table (column names carry units)."""
        return asdict(self)


def _energy_j(profile: DeviceProfile, down_bytes: float, up_bytes: float,
              flops: float) -> float | None:
    terms = [(profile.energy_j_per_byte_down, down_bytes), (profile.energy_j_per_byte_up, up_bytes),
             (profile.energy_j_per_flop, flops)]
    if all(coef is None for coef, _ in terms):
        return None
    return float(sum(coef * amount for coef, amount in terms if coef is not None))


def plan_round(device: Device, workload: Workload, round_num: int, seed: int, deadline_s: float,
               faults: FaultConfig = NO_FAULTS, round_start_s: float = 0.0,
               attack: str | None = None) -> RoundOutcome:
    """The outcome of ``round_num`` for ``device`` (status order in the module docstring).

    ``attack`` (``"replay"`` / ``"forge"``): the download is an attacker's package, which the
    device refuses before applying (``fault`` names the attack).

    Deterministic: the same ``(device, workload, round_num, seed, deadline_s, faults,
    round_start_s)`` always give the same outcome.
    """
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float)) \
            or math.isnan(deadline_s) or deadline_s <= 0:
        raise FleetError(f"deadline_s must be a number > 0 (inf allowed), got {deadline_s!r}")
    profile, dev = device.profile, device.device_id
    transfer_s = link_transfer_time_s(profile, workload.down_bytes, "down") if workload.down_bytes else 0.0
    apply_s = compute_time_s(workload.apply_flops, profile, workload.apply_host_s)
    inference_s = compute_time_s(workload.inference_flops, profile, workload.inference_host_s)
    upload_s = link_transfer_time_s(profile, workload.up_bytes, "up") if workload.up_bytes else 0.0
    needed_s = transfer_s + apply_s + inference_s + upload_s
    base = dict(round_num=round_num, device_id=dev, device_tier=profile.tier,
                needed_s=needed_s, deadline_s=float(deadline_s))
    zero = dict(transfer_s=0.0, apply_s=0.0, inference_s=0.0, upload_s=0.0, sim_time_s=0.0)

    # 1. offline
    if faults.drops_out(seed, round_num, dev):
        return RoundOutcome(status=DeviceStatus.OFFLINE, fault="dropout", **zero, **base)
    span_end_s = round_start_s + min(needed_s, deadline_s)
    if not profile.is_online(seed, round_num, dev, round_start_s, span_end_s):
        return RoundOutcome(status=DeviceStatus.OFFLINE, fault="unavailable", **zero, **base)
    # 2. no_memory
    if workload.apply_peak_memory_bytes > profile.memory_bytes:
        return RoundOutcome(status=DeviceStatus.NO_MEMORY, **zero, **base)
    # 3. deadline: spend time in phase order until the deadline cuts the device off
    if needed_s > deadline_s:
        spent, left = [], float(deadline_s)
        for phase_s in (transfer_s, apply_s, inference_s, upload_s):
            spent.append(min(phase_s, left))
            left -= spent[-1]
        fraction_down = spent[0] / transfer_s if transfer_s > 0 else 1.0
        fraction_up = spent[3] / upload_s if upload_s > 0 else 0.0
        flops_done = (workload.apply_flops * (spent[1] / apply_s if apply_s > 0 else 0.0)
                      + workload.inference_flops * (spent[2] / inference_s if inference_s > 0 else 0.0))
        return RoundOutcome(
            status=DeviceStatus.DEADLINE, transfer_s=spent[0], apply_s=spent[1], inference_s=spent[2],
            upload_s=spent[3], sim_time_s=float(deadline_s),
            energy_j=_energy_j(profile, workload.down_bytes * fraction_down,
                               workload.up_bytes * fraction_up, flops_done), **base)
    # 4. rejected: an attacker's or a corrupted download (caught by the package checks), or a crash
    corrupted = workload.down_bytes > 0 and faults.corrupts(seed, round_num, dev, "down")
    if workload.down_bytes > 0 and (attack is not None or corrupted):
        total_s = transfer_s + inference_s + upload_s  # no apply; the old model is evaluated
        return RoundOutcome(
            status=DeviceStatus.REJECTED, fault=attack or "corrupted", corrupt_transfer=attack is None and corrupted,
            transfer_s=transfer_s,
            apply_s=0.0, inference_s=inference_s, upload_s=upload_s, sim_time_s=total_s,
            energy_j=_energy_j(profile, workload.down_bytes, workload.up_bytes,
                               workload.inference_flops), **base)
    if faults.crashes(seed, round_num, dev):
        point = faults.crash_point(seed, round_num, dev)
        crashed_apply_s = apply_s * point
        total_s = transfer_s + crashed_apply_s + inference_s + upload_s
        return RoundOutcome(
            status=DeviceStatus.REJECTED, fault="crash", crash_during_apply=True, crash_point=point,
            transfer_s=transfer_s, apply_s=crashed_apply_s, inference_s=inference_s,
            upload_s=upload_s, sim_time_s=total_s,
            energy_j=_energy_j(profile, workload.down_bytes, workload.up_bytes,
                               workload.apply_flops * point + workload.inference_flops), **base)
    # 5. applied
    return RoundOutcome(
        status=DeviceStatus.APPLIED, transfer_s=transfer_s, apply_s=apply_s, inference_s=inference_s,
        upload_s=upload_s, sim_time_s=needed_s,
        energy_j=_energy_j(profile, workload.down_bytes, workload.up_bytes,
                           workload.apply_flops + workload.inference_flops), **base)


def plan_fleet_round(devices: Iterable[Device], workload_for: Callable[[Device], Workload],
                     round_num: int, seed: int, deadline_s: float,
                     faults: FaultConfig = NO_FAULTS,
                     round_start_s: float = 0.0) -> list[RoundOutcome]:
    """:func:`plan_round` for every device, with each device's own workload."""
    return [plan_round(d, workload_for(d), round_num, seed, deadline_s, faults, round_start_s)
            for d in devices]


def round_sim_time_s(outcomes: Sequence[RoundOutcome]) -> float:
    """How long the round lasts on the simulated clock: the latest device to finish (0 if none)."""
    return max((o.sim_time_s for o in outcomes), default=0.0)


def status_counts(outcomes: Iterable[RoundOutcome]) -> dict[str, int]:
    """Number of devices per status (every status present, in decision order)."""
    counts = {status: 0 for status in STATUSES}
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts


__all__ = ["STATUSES", "RoundOutcome", "Workload", "plan_fleet_round", "plan_round", "round_sim_time_s",
           "status_counts"]
