"""The strategy base: one Flower round loop shared by every strategy.

Per round, in Flower's terms (``Strategy.start`` drives it):

1. ``configure_train`` — one TRAIN message per device: the task from :meth:`EdgeStrategy.train_task`
   (upload collected samples, train locally, or just report).
2. ``aggregate_train`` — decode replies (sorted by device id), then :meth:`EdgeStrategy.next_model`
   returns the new model (or ``None``: no push this round). It becomes version r once encoded:
   the stored version is what a device holds after applying the package (lossy encodings included).
3. ``configure_evaluate`` — per device a package from *its* version to the latest: the release
   package (from :meth:`EdgeStrategy.release_package`) for devices one version behind, a catch-up
   package (:meth:`EdgeStrategy.catch_up_package`) otherwise. Each distinct package is encoded once.
4. ``aggregate_evaluate`` — devices verify, apply, evaluate; one metrics row per (round, device).

A subclass overrides a hook or two. Server-retrain strategies derive from
:class:`ServerRetrainStrategy` and implement :meth:`ServerRetrainStrategy.retrain`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from edgeupdate import protocol as P
from edgeupdate.clients.runtime import ExperimentRuntime, StateDict
from edgeupdate.datasets import NORMALIZATION
from edgeupdate.datasets.codec import decode_samples
from edgeupdate.simulation.metrics import MetricsCollector
from edgeupdate.training import TensorData
from edgeupdate.updates import UpdatePackage, dense_package, sparse_package, state_hash


@dataclass(frozen=True)
class NoParams:
    """A strategy without parameters."""


@dataclass(frozen=True)
class ModelVersion:
    """A model version as devices hold it."""

    number: int
    weights: StateDict
    hash: str


@dataclass
class DeviceView:
    """What the server knows about one device."""

    device_id: int
    node_id: int
    version: int = 0
    hash: str = ""


@dataclass
class RoundLog:
    """Per-round bookkeeping that ends up in the metrics rows."""

    bytes_down: dict[int, int] = field(default_factory=dict)
    bytes_up: dict[int, int] = field(default_factory=dict)
    base_version: dict[int, int] = field(default_factory=dict)
    package_kind: dict[int, str] = field(default_factory=dict)
    pushed: bool = False
    server_time_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class EdgeStrategy(Strategy):
    """Base of all edgeupdate strategies: device bookkeeping, packages, measurements."""

    name: ClassVar[str] = "edge"
    Params: ClassVar[type] = NoParams

    def __init__(self, runtime: ExperimentRuntime, params: Any, collector: MetricsCollector,
                 devices: dict[int, int]) -> None:
        """``devices`` maps Flower node id → device id (learnt before round 1)."""
        self.runtime = runtime
        self.cfg = runtime.cfg
        self.params = params
        self.collector = collector
        self.views = {node: DeviceView(dev, node, 0, runtime.initial_hash) for node, dev in devices.items()}
        v0 = ModelVersion(0, runtime.initial_state, runtime.initial_hash)
        self.versions: dict[int, ModelVersion] = {0: v0}
        self.latest = v0
        self.key = runtime.signing_key()
        self.log = RoundLog()
        self._release: UpdatePackage | None = None

    # ------------------------------------------------------------------ hooks
    def train_task(self, round_: int, view: DeviceView) -> dict[str, Any] | None:
        """The TRAIN task for ``view`` this round (None: send nothing)."""
        return {"task": P.TASK_STATUS}

    def next_model(self, round_: int, reports: list[P.DeviceReport]) -> StateDict | None:
        """The new model from this round's TRAIN replies; None keeps the current version."""
        raise NotImplementedError

    def release_package(self, round_: int, base: ModelVersion, target: StateDict) -> UpdatePackage:
        """How version ``round_`` is sent to devices holding ``base`` (default: the dense model)."""
        return dense_package(target, method=self.name, target_version=round_, base=base.weights,
                             base_version=base.number, precision=self.cfg.package.precision)

    def catch_up_package(self, base: ModelVersion, target: ModelVersion) -> UpdatePackage:
        """A package from an older version: the smaller of a sparse delta and the dense model."""
        pkg = self.cfg.package
        sparse = sparse_package(base.weights, target.weights, method=f"{self.name}-catch-up",
                                target_version=target.number, base_version=base.number,
                                precision="fp32", coding=pkg.coding)
        dense = dense_package(target.weights, method=f"{self.name}-catch-up", target_version=target.number,
                              base=base.weights, base_version=base.number, precision="fp32")
        return min((sparse, dense), key=lambda p: len(p.encode(self.key)))

    def analytic_bytes_down(self, package: UpdatePackage) -> float | None:
        """An analytic estimate of a package's size (e.g. DPU's S_w·k·I + S_x(k)·I); None if none."""
        return None

    # ------------------------------------------------------------ Flower API
    def summary(self) -> None:  # Flower calls this at start; the runner prints its own header
        pass

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.log = RoundLog()
        messages = []
        for view in self._views_in_order():
            task = self.train_task(server_round, view)
            if task is None:
                continue
            content = ConfigRecord({"round": server_round, **task})
            if task.get("package"):
                self.log.bytes_down[view.device_id] = self.log.bytes_down.get(view.device_id, 0) + len(task["package"])
            messages.append(Message(RecordDict({P.TASK: content}), dst_node_id=view.node_id,
                                    message_type=MessageType.TRAIN))
        return messages

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        reports = self._reports(replies)
        for r in reports:
            self.log.bytes_up[r.device_id] = len(r.payload)
        t0 = time.perf_counter()
        target = self.next_model(server_round, reports)
        if target is not None:
            base = self.latest
            package = self.release_package(server_round, base, target)
            weights = package.apply(base.weights)  # exactly what a device will hold
            self.latest = ModelVersion(server_round, weights, package.header.target_hash)
            self.versions[server_round] = self.latest
            self._release = package
            self.log.pushed = True
        else:
            self._release = None
        self.log.server_time_s = time.perf_counter() - t0
        return ArrayRecord(self.latest.weights), MetricRecord({"server_time_s": self.log.server_time_s})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        encoded: dict[int, tuple[bytes, str]] = {}
        messages = []
        for view in self._views_in_order():
            payload, kind = b"", "none"
            if view.version != self.latest.number:
                if view.version not in encoded:
                    encoded[view.version] = self._encode_for(view.version)
                payload, kind = encoded[view.version]
            self.log.bytes_down[view.device_id] = self.log.bytes_down.get(view.device_id, 0) + len(payload)
            self.log.base_version[view.device_id] = view.version
            self.log.package_kind[view.device_id] = kind
            task = ConfigRecord({"round": server_round, "package": payload,
                                 "target_version": self.latest.number})
            messages.append(Message(RecordDict({P.TASK: task}), dst_node_id=view.node_id,
                                    message_type=MessageType.EVALUATE))
        return messages

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        reports = self._reports(replies)
        for r in reports:
            self.collector.add_row(
                round=server_round, device_id=r.device_id, strategy=self.name,
                accuracy=r.metrics.get("accuracy", float("nan")), loss=r.metrics.get("loss", float("nan")),
                bytes_down=self.log.bytes_down.get(r.device_id, 0), bytes_up=self.log.bytes_up.get(r.device_id, 0),
                model_version=r.model_version, num_examples=int(r.metrics.get("num-examples", 0)),
                status=r.status, base_version=self.log.base_version.get(r.device_id, r.model_version),
                package_kind=self.log.package_kind.get(r.device_id, "none"), pushed=self.log.pushed,
                apply_s=r.metrics.get("apply_s", 0.0), server_time_s=self.log.server_time_s,
                reason=r.reason,
                **self.log.extra)
        return self.collector.round_summary(server_round)

    # -------------------------------------------------------------- helpers
    def _views_in_order(self) -> list[DeviceView]:
        return sorted(self.views.values(), key=lambda v: v.device_id)

    def _encode_for(self, version: int) -> tuple[bytes, str]:
        release = self._release
        if release is not None and release.header.base_version in (version, None):
            return release.encode(self.key), "release"  # base-free packages fit any version
        return self.catch_up_package(self.versions[version], self.latest).encode(self.key), "catch-up"

    def _reports(self, replies: Iterable[Message]) -> list[P.DeviceReport]:
        reports = []
        for msg in replies:
            node = msg.metadata.src_node_id
            if msg.has_error():
                raise RuntimeError(f"device on node {node} failed: {msg.error.reason}")
            rep = msg.content[P.REPLY]
            metrics = dict(msg.content[P.METRICS])
            report = P.DeviceReport(node, int(rep["device_id"]), int(rep["model_version"]),
                                    str(rep["model_hash"]), str(rep["status"]), bytes(rep["payload"]),
                                    metrics, str(rep.get("reason", "")))
            view = self.views[node]
            view.version, view.hash = report.model_version, report.model_hash
            reports.append(report)
        return sorted(reports, key=lambda r: r.device_id)


class ServerRetrainStrategy(EdgeStrategy):
    """The server retrains on Dʳ = Dʳ⁻¹ ∪ δDʳ and pushes packages; devices only run inference.

    Subclasses implement :meth:`retrain` (and usually :meth:`release_package`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool: list[TensorData] = []  # Dʳ, in arrival order
        self.validation = self.runtime.validation()

    def train_task(self, round_: int, view: DeviceView) -> dict[str, Any] | None:
        if round_ > 1 and self.cfg.stream.source == "devices":
            return {"task": P.TASK_COLLECT}
        return None  # D¹ is server-side; a server-side source needs nothing from the devices

    def next_model(self, round_: int, reports: list[P.DeviceReport]) -> StateDict | None:
        layout = self.runtime.layout
        if round_ == 1 or self.cfg.stream.source == "server":
            idx = [layout.arrivals(d, round_) for d in range(layout.num_devices)]
            self.pool.append(self.runtime.train_subset(_concat(idx)))
        else:
            norm = NORMALIZATION[self.runtime.dataset.name]
            for r in reports:
                if r.payload:
                    self.pool.append(decode_samples(r.payload, norm))
        data = TensorData(torch.cat([d.x for d in self.pool if len(d)]), torch.cat([d.y for d in self.pool if len(d)]))
        self.log.extra["server_samples"] = float(len(data))
        return self.retrain(round_, self.latest, data)

    def retrain(self, round_: int, deployed: ModelVersion, data: TensorData) -> StateDict | None:
        """Train on ``data`` (= Dʳ) starting from whatever the method wants; return the target."""
        raise NotImplementedError


def _concat(parts):
    import numpy as np

    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
