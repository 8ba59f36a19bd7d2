"""One round's bookkeeping and the metrics row it becomes, one per (round, device).

The columns are documented in :mod:`edgeupdate.simulation.metrics`; this module only fills them
from what the round did (:class:`RoundLog`), what the device reported and what the fleet planned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeupdate import protocol as P
from edgeupdate.fleet.rounds import RoundOutcome
from edgeupdate.fleet.simulated import SimulatedFleet
from edgeupdate.strategies.push import Push
from edgeupdate.strategies.versions import DeviceView


@dataclass
class RoundLog:
    """Per-round bookkeeping that ends up in the metrics rows."""

    start_s: float = 0.0
    bytes_down: dict[int, int] = field(default_factory=dict)
    bytes_up: dict[int, int] = field(default_factory=dict)
    train_status: dict[int, str] = field(default_factory=dict)
    train: dict[int, RoundOutcome] = field(default_factory=dict)
    push: dict[int, Push] = field(default_factory=dict)
    pushed: bool = False
    server_time_s: float = 0.0
    server_flops: float = 0.0
    release_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def add_bytes_down(self, device_id: int, count: int) -> None:
        self.bytes_down[device_id] = self.bytes_down.get(device_id, 0) + count


def metrics_row(round_: int, strategy: str, report: P.DeviceReport, view: DeviceView, target_hash: str,
                log: RoundLog, fleet: SimulatedFleet, round_sim_time_s: float) -> dict[str, Any]:
    """The metrics row of ``report``'s device for ``round_`` (columns: :mod:`edgeupdate.simulation.metrics`)."""
    dev = report.device_id
    push = log.push.get(dev, Push())
    out, train = push.outcome, log.train.get(dev)
    device_busy_s = (out.sim_time_s if out else 0.0) + (train.sim_time_s if train else 0.0)
    energy = [o.energy_j for o in (out, train) if o is not None and o.energy_j is not None]
    return dict(
        round=round_, device_id=dev, strategy=strategy, device_tier=fleet.tier(dev),
        accuracy=report.metrics.get("accuracy", float("nan")), loss=report.metrics.get("loss", float("nan")),
        bytes_down=log.bytes_down.get(dev, 0), bytes_up=log.bytes_up.get(dev, 0),
        model_version=report.model_version, model_hash=report.model_hash,
        num_examples=int(report.metrics.get("num-examples", 0)), status=str(report.status), reason=report.reason,
        train_status=str(log.train_status.get(dev, "none")),
        base_version=push.base_version if out else report.model_version, package_kind=push.kind,
        catch_up=push.kind in ("catch-up", "full"), attack=push.attack, pushed=log.pushed,
        up_to_date=report.model_hash == target_hash, model_line=view.line,
        sim_time_s=device_busy_s, transfer_s=out.transfer_s if out else 0.0,
        apply_s=out.apply_s if out else 0.0, upload_s=train.upload_s if train else 0.0,
        train_s=train.apply_s if train else 0.0, deadline_s=fleet.deadline_s,
        energy_j=sum(energy) if energy else float("nan"),
        round_start_s=log.start_s, round_sim_time_s=round_sim_time_s,
        server_sim_s=fleet.server_time_s(log.server_flops),
        apply_host_s=report.metrics.get("apply_host_s", 0.0), server_time_s=log.server_time_s,
        **log.extra)
