"""The strategy base: one Flower round loop shared by every strategy, run over the simulated fleet.

Per round, in Flower's terms (``Strategy.start`` drives it):

1. ``configure_train`` — one TRAIN message per reachable device that has work: the task from
   :meth:`EdgeStrategy.train_task` (upload collected samples, train locally, or just report).
2. ``aggregate_train`` — decode replies (sorted by device id); the simulated link decides whose
   upload arrived before the deadline; :meth:`EdgeStrategy.next_model` returns the new model (or
   ``None``: no push this round). It becomes version r once encoded: the stored version is what a
   device holds after applying the package (lossy encodings included).
3. ``configure_evaluate`` — per device a package from *its* state to the latest: the release
   package (:meth:`EdgeStrategy.release_package`) for devices holding its base, a catch-up package
   (:meth:`EdgeStrategy.catch_up_package`: a sparse delta or the full model, whichever is smaller)
   otherwise. The fleet model plans what happens on the device's link (offline, no_memory,
   deadline, a corrupted transfer, a crash) and the message carries exactly the bytes that
   arrive; with ``fleet.budgets`` a device that would miss the deadline or lack memory gets the
   largest top-|Δ| share of its update that fits (:meth:`EdgeStrategy.budget_package`). Each
   distinct package is encoded once.
4. ``aggregate_evaluate`` — devices verify, apply, evaluate; one metrics row per (round, device).
   Every state a device reports must be one the server issued (its hash is in the version log).

A subclass overrides a hook or two. Server-retrain strategies derive from
:class:`ServerRetrainStrategy` and implement :meth:`ServerRetrainStrategy.retrain`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from edgeupdate import protocol as P
from edgeupdate.clients.runtime import DENSE_APPLY_FACTOR, ExperimentRuntime, StateDict
from edgeupdate.datasets import NORMALIZATION
from edgeupdate.datasets.codec import decode_samples
from edgeupdate.seeding import derive_seed
from edgeupdate.simulation.fleet import RoundOutcome, Workload
from edgeupdate.simulation.metrics import MetricsCollector
from edgeupdate.simulation.network import largest_fitting_int
from edgeupdate.training import TensorData
from edgeupdate.updates import UpdatePackage, dense_package, sparse_package, state_hash
from edgeupdate.updates.cost import ApplyCost, apply_cost, state_bytes

#: Bytes a student's budget keeps free for a package's header, checksum and signature.
PACKAGE_HEADER_ALLOWANCE = 4096

#: Push outcomes the device must report exactly as planned (a mismatch is a simulation bug).
_PLANNED_EXACTLY = (P.OFFLINE, P.NO_MEMORY, P.DEADLINE)


class FleetInvariantError(RuntimeError):
    """A device did something the simulated fleet rules out (e.g. applied corrupted bytes)."""


@dataclass(frozen=True)
class NoParams:
    """A strategy without parameters."""


@dataclass(frozen=True)
class ModelVersion:
    """A model state a device may hold: a release of round ``number`` or a budgeted share of one."""

    number: int
    weights: StateDict
    hash: str
    kind: str = "release"  # initial | release | budget
    parent: str = ""  # the state a budget package was built from


MAIN_LINE = "main"


@dataclass
class DeviceView:
    """What the server knows about one device; ``line`` is the model it runs (main or a student)."""

    device_id: int
    node_id: int
    version: int = 0
    hash: str = ""
    line: str = MAIN_LINE


@dataclass
class StudentLine:
    """The student model of one memory budget (Zhao et al.): its spec and latest state."""

    memory_bytes: int
    latest: ModelVersion
    spec: Any = None  # edgeupdate.algorithms.students.StudentSpec once cut from the first model


@dataclass(frozen=True)
class Encoded:
    """One package as sent: its bytes, what it is, and what applying it costs the device."""

    payload: bytes
    kind: str  # release | catch-up | full | budget
    cost: ApplyCost
    base_version: int


@dataclass
class Push:
    """What the push of one round did for one device (server side)."""

    kind: str = "none"
    base_version: int = 0
    outcome: RoundOutcome | None = None


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


class EdgeStrategy(Strategy):
    """Base of all edgeupdate strategies: device bookkeeping, packages, the fleet, measurements."""

    name: ClassVar[str] = "edge"
    Params: ClassVar[type] = NoParams
    trains_students: ClassVar[bool] = False  # can keep student models for memory-poor devices

    @classmethod
    def check_config(cls, cfg: Any, params: Any = None) -> None:
        """Raise ConfigError when ``cfg`` (with this strategy's built ``params``) asks for something
        this strategy cannot do. Subclasses extend it and call ``super().check_config``."""
        if cfg.fleet.students.enabled and not cls.trains_students:
            from edgeupdate.configs import ConfigError

            raise ConfigError("fleet.students.enabled", f"strategy {cls.name!r} cannot train students: they are "
                                                        f"cut and trained on the server's data (server-retrain strategies)")

    def __init__(self, runtime: ExperimentRuntime, params: Any, collector: MetricsCollector,
                 devices: dict[int, int]) -> None:
        """``devices`` maps Flower node id → device id (learnt before round 1)."""
        self.runtime = runtime
        self.cfg = runtime.cfg
        self.fleet = runtime.fleet
        self.params = params
        self.collector = collector
        self.check_config(self.cfg, self.params)
        v0 = ModelVersion(0, runtime.initial_state, runtime.initial_hash, kind="initial")
        self.states: dict[str, ModelVersion] = {v0.hash: v0}  # every state a device may hold now
        self.version_log: list[dict[str, Any]] = []
        self._log_version(0, v0, MAIN_LINE)
        self.latest = v0
        self.students: dict[str, StudentLine] = {}
        self.views = {}
        for node, dev in devices.items():
            memory = runtime.student_memory(dev)
            line = MAIN_LINE if memory is None else f"student-{memory}"
            if line != MAIN_LINE and line not in self.students:
                empty = ModelVersion(0, {}, state_hash({}), kind="initial")
                self.students[line] = StudentLine(memory, empty)
                self.states[empty.hash] = empty
                self._log_version(0, empty, line)
            self.views[node] = DeviceView(dev, node, 0, self.target_of_line(line).hash, line)
        self.key = runtime.signing_key()
        self.log = RoundLog()
        self.clock_s = 0.0  # simulated time at which the next round starts
        self._release: UpdatePackage | None = None
        self._encoded: dict[str, Encoded] = {}

    # ------------------------------------------------------------------ hooks
    def train_task(self, round_: int, view: DeviceView) -> dict[str, Any] | None:
        """The TRAIN task for ``view`` this round (None: send nothing)."""
        return None

    def next_model(self, round_: int, reports: list[P.DeviceReport]) -> StateDict | None:
        """The new model from this round's TRAIN replies; None keeps the current version.

        Implementations set ``self.log.server_flops`` to the work they did (for the simulated clock).
        """
        raise NotImplementedError

    def release_package(self, round_: int, base: ModelVersion, target: StateDict) -> UpdatePackage:
        """How version ``round_`` is sent to devices holding ``base`` (default: the dense model)."""
        return dense_package(target, method=self.name, target_version=round_, base=base.weights,
                             base_version=base.number, precision=self.cfg.package.precision)

    def catch_up_package(self, base: ModelVersion, target: ModelVersion) -> UpdatePackage:
        """A package from an older state: the smaller of a sparse delta and the dense model."""
        pkg = self.cfg.package
        sparse = sparse_package(base.weights, target.weights, method=f"{self.name}-catch-up",
                                target_version=target.number, base_version=base.number,
                                precision="fp32", coding=pkg.coding)
        dense = dense_package(target.weights, method=f"{self.name}-catch-up", target_version=target.number,
                              base=base.weights, base_version=base.number, precision="fp32")
        return min((sparse, dense), key=lambda p: len(p.encode(self.key)))

    def budget_package(self, base: ModelVersion, target: ModelVersion, count: int) -> UpdatePackage:
        """The ``count`` largest changes |Δw| from ``base`` to ``target`` (a per-device budget)."""
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
        return sparse_package(base.weights, partial, method=f"{self.name}-budget", target_version=target.number,
                              base_version=base.number, precision="fp32", coding=self.cfg.package.coding)

    def analytic_bytes_down(self, package: UpdatePackage) -> float | None:
        """An analytic estimate of a package's size (e.g. DPU's S_w·k·I + S_x(k)·I); None if none."""
        return None

    def update_students(self, round_: int) -> None:
        """Bring every student line up to the newly released model (server-retrain strategies)."""

    def target_of_line(self, line: str) -> ModelVersion:
        """The latest state of model line ``line``."""
        return self.latest if line == MAIN_LINE else self.students[line].latest

    def target_of(self, view: DeviceView) -> ModelVersion:
        """The state ``view``'s device should hold after this round."""
        return self.target_of_line(view.line)

    # ------------------------------------------------------------ Flower API
    def summary(self) -> None:  # Flower calls this at start; the runner prints its own header
        pass

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.log = RoundLog(start_s=self.clock_s)
        self._encoded = {}
        messages = []
        for view in self._views_in_order():
            task = self.train_task(server_round, view)
            if task is None:
                continue
            if not self.fleet.reachable(server_round, view.device_id, self.log.start_s):
                self.log.train_status[view.device_id] = P.OFFLINE
                continue
            content = ConfigRecord({"round": server_round, **task})
            if task.get("package"):
                self.log.bytes_down[view.device_id] = self.log.bytes_down.get(view.device_id, 0) + len(task["package"])
            messages.append(Message(RecordDict({P.TASK: content}), dst_node_id=view.node_id,
                                    message_type=MessageType.TRAIN))
        return messages

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrived = []
        for r in self._reports(replies):
            dev = r.device_id
            self.log.bytes_up[dev] = len(r.payload)
            workload = Workload(down_bytes=self.log.bytes_down.get(dev, 0), up_bytes=len(r.payload),
                                apply_flops=float(r.metrics.get("compute_flops", 0.0)),
                                apply_peak_memory_bytes=int(r.metrics.get("compute_peak_memory_bytes", 0)))
            outcome = self.fleet.plan(server_round, dev, workload, self.log.start_s, transfer_faults=False)
            self.log.train[dev] = outcome
            if r.status not in (P.UPLOADED, P.TRAINED):
                self.log.train_status[dev] = r.status
            elif outcome.status != "applied":  # the upload did not make it (deadline, went offline)
                self.log.train_status[dev] = outcome.status
            else:
                self.log.train_status[dev] = r.status
                arrived.append(r)
        train_phase_s = max((o.sim_time_s for o in self.log.train.values()), default=0.0)
        t0 = time.perf_counter()
        target = self.next_model(server_round, arrived)
        if target is not None:
            base = self.latest
            package = self.release_package(server_round, base, target)
            weights = package.apply(base.weights)  # exactly what a device will hold
            self.latest = ModelVersion(server_round, weights, package.header.target_hash)
            self.states[self.latest.hash] = self.latest
            self._log_version(server_round, self.latest, MAIN_LINE)
            self._release = package
            self.log.pushed = True
            self.update_students(server_round)
        else:
            self._release = None
        self.log.server_time_s = time.perf_counter() - t0
        self.log.release_s = self.log.start_s + train_phase_s + self.fleet.server_time_s(self.log.server_flops)
        return ArrayRecord(self.latest.weights), MetricRecord({"server_time_s": self.log.server_time_s})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        messages = []
        for view in self._views_in_order():
            target = self.target_of(view)
            task: dict[str, Any] = {"round": server_round, "target_version": target.number,
                                    "package": b"", "link": P.LINK_OK,
                                    "upload_acked": self.log.train_status.get(view.device_id) == P.UPLOADED}
            push = Push(base_version=view.version)
            if view.hash != target.hash:
                enc = self._package_for(view)
                outcome = self._plan_push(server_round, view, enc)
                if self.cfg.fleet.budgets and outcome.status in (P.DEADLINE, P.NO_MEMORY):
                    enc, outcome = self._budgeted(server_round, view, enc, outcome)
                push = Push(enc.kind, enc.base_version, outcome)
                task.update(self._act_out(server_round, view.device_id, enc, outcome))
            self.log.push[view.device_id] = push
            self.log.bytes_down[view.device_id] = self.log.bytes_down.get(view.device_id, 0) + len(task["package"])
            messages.append(Message(RecordDict({P.TASK: ConfigRecord(task)}), dst_node_id=view.node_id,
                                    message_type=MessageType.EVALUATE))
        return messages

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        reports = self._reports(replies)
        push_phase_s = max((p.outcome.sim_time_s for p in self.log.push.values() if p.outcome), default=0.0)
        duration_s = self.log.release_s - self.log.start_s + push_phase_s
        next_start_s = self.fleet.next_round_start_s(self.log.start_s, duration_s)
        for r in reports:
            self._check_report(server_round, r)
            self.collector.add_row(**self._row(server_round, r, next_start_s - self.log.start_s))
        self.clock_s = next_start_s
        held = {v.hash for v in self.views.values()} | {self.target_of_line(v.line).hash for v in self.views.values()}
        self.states = {h: s for h, s in self.states.items() if h in held}
        return self.collector.round_summary(server_round)

    # -------------------------------------------------------------- the push
    def _package_for(self, view: DeviceView) -> Encoded:
        """The package that takes ``view``'s state to its line's latest (encoded once per base state)."""
        key = f"{view.line}/{view.hash}"
        if key not in self._encoded:
            release = self._release
            base, target = self.states[view.hash], self.target_of(view)
            if view.line == MAIN_LINE and release is not None and release.header.base_hash in (view.hash, None):
                package, kind = release, "release"  # base-free packages fit any state
            elif not base.weights:  # a student device's first student: the whole model
                package = dense_package(target.weights, method=f"{self.name}-{view.line}", target_version=target.number,
                                        base=base.weights, base_version=base.number)
                kind = "full"
            else:
                package = self.catch_up_package(base, target)
                kind = "full" if all(t.kind == "dense" for t in package.header.tensors) else "catch-up"
            self._encoded[key] = self._encode(package, kind, base)
        return self._encoded[key]

    def _encode(self, package: UpdatePackage, kind: str, base: ModelVersion) -> Encoded:
        payload = package.encode(self.key)
        return Encoded(payload, kind, apply_cost(package.header, len(payload), state_bytes(base.weights)),
                       base.number)

    def _plan_push(self, round_: int, view: DeviceView, enc: Encoded) -> RoundOutcome:
        workload = Workload(down_bytes=len(enc.payload), apply_flops=enc.cost.flops,
                            apply_peak_memory_bytes=enc.cost.peak_memory_bytes,
                            inference_flops=self.runtime.forward.flops)
        return self.fleet.plan(round_, view.device_id, workload, self.log.release_s)

    def _budgeted(self, round_: int, view: DeviceView, enc: Encoded,
                  outcome: RoundOutcome) -> tuple[Encoded, RoundOutcome]:
        """The largest top-|Δ| share of the update that fits the device's deadline and memory."""
        base, target = self.states[view.hash], self.target_of(view)
        changed = int(sum((target.weights[k] != v).sum() for k, v in base.weights.items()))
        tried: dict[int, tuple[Encoded, RoundOutcome]] = {}

        def fits(count: int) -> bool:
            if count not in tried:
                candidate = self._encode(self.budget_package(base, target, count), "budget", base)
                tried[count] = (candidate, self._plan_push(round_, view, candidate))
            return tried[count][1].status not in (P.DEADLINE, P.NO_MEMORY)

        best = largest_fitting_int(fits, 1, changed) if changed else None
        if best is None:
            return enc, outcome
        candidate, planned = tried[best]
        package = UpdatePackage.decode(candidate.payload, self.key)
        weights = package.apply(base.weights)
        state = ModelVersion(target.number, weights, package.header.target_hash, kind="budget", parent=base.hash)
        if state.hash not in self.states:
            self.states[state.hash] = state
            self._log_version(round_, state, view.line)
        return candidate, planned

    def _act_out(self, round_: int, device_id: int, enc: Encoded, outcome: RoundOutcome) -> dict[str, Any]:
        """The EVALUATE task fields that make the device experience ``outcome``."""
        if outcome.status == P.OFFLINE:
            return {"package": b"", "link": P.LINK_OFFLINE}
        if outcome.status == P.NO_MEMORY:
            return {"package": b"", "required_memory_bytes": enc.cost.peak_memory_bytes}
        if outcome.status == P.DEADLINE:
            arrived = self.fleet.delivered_bytes(device_id, outcome, len(enc.payload))
            return {"package": enc.payload[:arrived], "link": P.LINK_CUT}
        if outcome.corrupt_transfer:
            faults = self.fleet.faults
            return {"package": faults.maybe_corrupt(enc.payload, self.fleet.seed, round_, device_id, "down")}
        if outcome.crash_during_apply:
            return {"package": enc.payload, "crash_point": float(outcome.crash_point)}
        return {"package": enc.payload}

    def _check_report(self, round_: int, r: P.DeviceReport) -> None:
        push = self.log.push.get(r.device_id)
        planned = push.outcome.status if push and push.outcome else None
        if planned in _PLANNED_EXACTLY and r.status != planned:
            raise FleetInvariantError(f"round {round_}: device {r.device_id} reported {r.status!r}, "
                                      f"the fleet planned {planned!r} ({r.reason})")
        if planned == P.REJECTED and r.status == P.APPLIED:
            raise FleetInvariantError(f"round {round_}: device {r.device_id} applied a package the fleet "
                                      f"corrupted or crashed")
        if r.model_hash not in self.states:
            raise FleetInvariantError(f"round {round_}: device {r.device_id} holds weights (hash "
                                      f"{r.model_hash[:16]}) that match no version the server issued")

    # -------------------------------------------------------------- metrics
    def _row(self, round_: int, r: P.DeviceReport, round_sim_time_s: float) -> dict[str, Any]:
        dev = r.device_id
        view = self.views[r.node_id]
        push = self.log.push.get(dev, Push())
        out, train = push.outcome, self.log.train.get(dev)
        device_busy_s = (out.sim_time_s if out else 0.0) + (train.sim_time_s if train else 0.0)
        energy = [o.energy_j for o in (out, train) if o is not None and o.energy_j is not None]
        return dict(
            round=round_, device_id=dev, strategy=self.name, device_tier=self.fleet.tier(dev),
            accuracy=r.metrics.get("accuracy", float("nan")), loss=r.metrics.get("loss", float("nan")),
            bytes_down=self.log.bytes_down.get(dev, 0), bytes_up=self.log.bytes_up.get(dev, 0),
            model_version=r.model_version, model_hash=r.model_hash,
            num_examples=int(r.metrics.get("num-examples", 0)), status=r.status, reason=r.reason,
            train_status=self.log.train_status.get(dev, "none"),
            base_version=push.base_version if out else r.model_version, package_kind=push.kind,
            catch_up=push.kind in ("catch-up", "full"), pushed=self.log.pushed,
            up_to_date=r.model_hash == self.target_of(view).hash, model_line=view.line,
            sim_time_s=device_busy_s, transfer_s=out.transfer_s if out else 0.0,
            apply_s=out.apply_s if out else 0.0, upload_s=train.upload_s if train else 0.0,
            train_s=train.apply_s if train else 0.0, deadline_s=self.fleet.deadline_s,
            energy_j=sum(energy) if energy else float("nan"),
            round_start_s=self.log.start_s, round_sim_time_s=round_sim_time_s,
            server_sim_s=self.fleet.server_time_s(self.log.server_flops),
            apply_host_s=r.metrics.get("apply_host_s", 0.0), server_time_s=self.log.server_time_s,
            **self.log.extra)

    # -------------------------------------------------------------- helpers
    def _log_version(self, round_: int, state: ModelVersion, line: str) -> None:
        self.version_log.append({"round": round_, "model_line": line, "model_version": state.number,
                                 "model_hash": state.hash, "kind": state.kind, "parent_hash": state.parent,
                                 "parameters": sum(t.numel() for t in state.weights.values())})

    def _views_in_order(self) -> list[DeviceView]:
        return sorted(self.views.values(), key=lambda v: v.device_id)

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

    Subclasses implement :meth:`retrain` (and usually :meth:`release_package`). With
    ``fleet.students`` the server also keeps one student per memory budget (:meth:`update_students`).
    """

    trains_students = True

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
            self.pool.append(self.runtime.train_subset(np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)))
        else:
            norm = NORMALIZATION[self.runtime.dataset.name]
            for r in reports:
                if r.payload:
                    self.pool.append(decode_samples(r.payload, norm))
        data = TensorData(torch.cat([d.x for d in self.pool if len(d)]), torch.cat([d.y for d in self.pool if len(d)]))
        self.log.extra["server_samples"] = float(len(data))
        self.log.server_flops = self.retrain_flops(len(data))
        self._data = data
        return self.retrain(round_, self.latest, data)

    def update_students(self, round_: int) -> None:
        """Cut each memory budget's student from the first released model (§3 of Zhao et al.), then
        train it by layer-wise knowledge transfer from every new release on Dʳ (§4.1)."""
        if not self.students:
            return
        from edgeupdate.algorithms.knowledge_transfer import TransferConfig, transfer_knowledge
        from edgeupdate.algorithms.students import StudentError, fit_student
        from edgeupdate.configs import ConfigError
        from edgeupdate.models.cost import forward_profile

        opts, model, ds = self.cfg.fleet.students, self.cfg.model, self.runtime.dataset
        teacher = self.latest.weights
        for name, line in sorted(self.students.items(), key=lambda kv: kv[1].memory_bytes):
            start = line.latest.weights
            if line.spec is None:
                try:
                    line.spec, start = fit_student(
                        model.name, ds.input_shape, ds.num_classes, teacher, self._data, line.memory_bytes,
                        apply_overhead_bytes=lambda b: (DENSE_APPLY_FACTOR - 1) * b + PACKAGE_HEADER_ALLOWANCE,
                        images=opts.images,
                        seed=derive_seed(self.cfg.seed, "student", line.memory_bytes), min_threshold=opts.min_threshold)
                except StudentError as err:
                    raise ConfigError("fleet.students", f"{name}: {err}") from None
            weights, _ = transfer_knowledge(teacher, start, line.spec, self._data, self.cfg.training,
                                            derive_seed(self.cfg.seed, "student", line.memory_bytes, round_),
                                            cfg=TransferConfig(trainable=opts.trainable),
                                            validation=self.validation if len(self.validation) else None)
            line.latest = ModelVersion(round_, weights, state_hash(weights))
            self.states[line.latest.hash] = line.latest
            self._log_version(round_, line.latest, name)
            student_flops = forward_profile(line.spec.build(), ds.input_shape).flops
            samples = len(self._data)
            self.log.server_flops += ((3 * student_flops + self.runtime.forward.flops) * samples
                                      * self.cfg.training.epochs_for(samples))

    def retrain_flops(self, samples: int) -> float:
        """FLOPs of one retraining on ``samples`` (forward + backward ≈ 3 forward passes per epoch)."""
        return 3.0 * self.runtime.forward.flops * samples * self.cfg.training.epochs_for(samples)

    def retrain(self, round_: int, deployed: ModelVersion, data: TensorData) -> StateDict | None:
        """Train on ``data`` (= Dʳ) starting from whatever the method wants; return the target."""
        raise NotImplementedError
