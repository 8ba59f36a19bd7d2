"""The strategy base: one Flower round loop shared by every strategy, run over the simulated fleet.

Per round, in Flower's terms (``Strategy.start`` drives it):

1. ``configure_train`` — one TRAIN message per reachable device that has work: the task from
   :meth:`EdgeStrategy.train_task` (upload collected samples, train locally, or just report).
2. ``aggregate_train`` — decode replies (sorted by device id); the simulated link decides whose
   upload arrived before the deadline; :meth:`EdgeStrategy.next_model` returns the new model (or
   ``None``: no push this round). It becomes version r once encoded: the stored version is what a
   device holds after applying the package (lossy encodings included).
3. ``configure_evaluate`` — per device a package from *its* state to the latest, planned on its
   link (:mod:`edgeupdate.strategies.push`): the release package (:meth:`EdgeStrategy.release_package`)
   for devices holding its base, a catch-up package (:meth:`EdgeStrategy.catch_up_package`)
   otherwise, a budgeted share (:meth:`EdgeStrategy.budget_package`) with ``fleet.budgets``.
4. ``aggregate_evaluate`` — devices verify, apply, evaluate; one metrics row per (round, device)
   (:mod:`edgeupdate.strategies.rows`). Every state a device reports must be one the server
   issued (its hash is in the version store, :mod:`edgeupdate.strategies.versions`), and a
   device whose package an attacker replaced must have refused it (:mod:`edgeupdate.strategies.attacks`).

A subclass overrides a hook or two. Server-retrain strategies derive from
:class:`~edgeupdate.strategies.server_retrain.ServerRetrainStrategy` and implement ``retrain``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from edgeupdate import protocol as P
from edgeupdate.configs import ConfigError, ExperimentConfig
from edgeupdate.fleet.rounds import Workload
from edgeupdate.messages import PUSH, read_replies, task_message
from edgeupdate.runtime import ExperimentRuntime
from edgeupdate.simulation.metrics import MetricsCollector
from edgeupdate.strategies.attacks import NO_ATTACK, PackageArchive
from edgeupdate.strategies.exchange import Progress, exchange
from edgeupdate.strategies.push import Encoded, Push, PushPlan, top_changes_package
from edgeupdate.strategies.rows import RoundLog, metrics_row
from edgeupdate.strategies.saved_packages import PackageSaver
from edgeupdate.strategies.versions import DeviceView, ModelVersion, VersionStore
from edgeupdate.updates import StateDict, UpdatePackage, dense_package, sparse_package

PhaseProgress = Callable[[int, str, int, int], None]  # (round, phase, devices answered, devices asked)

#: Push outcomes the device must report exactly as planned (a mismatch is a simulation bug).
_PLANNED_EXACTLY = (P.DeviceStatus.OFFLINE, P.DeviceStatus.NO_MEMORY, P.DeviceStatus.DEADLINE)


class FleetInvariantError(RuntimeError):
    """A device did something the simulated fleet rules out (e.g. applied corrupted bytes)."""


@dataclass(frozen=True)
class NoParams:
    """A strategy without parameters."""


class EdgeStrategy(Strategy):
    """Base of all edgeupdate strategies: the round loop over the fleet, packages and measurements."""

    name: ClassVar[str] = "edge"
    Params: ClassVar[type] = NoParams
    trains_students: ClassVar[bool] = False  # can keep student models for memory-poor devices

    @classmethod
    def check_config(cls, cfg: ExperimentConfig, params: Any = None) -> None:
        """Raise ConfigError when ``cfg`` (with this strategy's built ``params``) asks for something
        this strategy cannot do. Subclasses extend it and call ``super().check_config``. Called once
        per run, by :func:`~edgeupdate.strategies.registry.resolve_strategy`."""
        if cfg.fleet.students.enabled and not cls.trains_students:
            raise ConfigError("fleet.students.enabled", f"strategy {cls.name!r} cannot train students: they are "
                                                        f"cut and trained on the server's data (server-retrain strategies)")

    def __init__(self, runtime: ExperimentRuntime, params: Any, collector: MetricsCollector,
                 devices: dict[int, int]) -> None:
        """``params`` are built and checked (:func:`~edgeupdate.strategies.resolve.resolve_strategy`);
        ``devices`` maps device id → the Flower node that serves it (learnt before round 1)."""
        self.runtime = runtime
        self.cfg = runtime.cfg
        self.fleet = runtime.fleet
        self.params = params
        self.collector = collector
        self.store = VersionStore(ModelVersion(0, runtime.initial_state, runtime.initial_hash, kind="initial"))
        for dev, node in sorted(devices.items()):
            self.store.add_device(dev, node, runtime.student_memory(dev))
        self.store_dir = ""  # the run's shared model store, where the nodes keep weights (set by the runner)
        self.checkpoint_dir = ""  # where the nodes write their devices' state each round ("" = nowhere)
        self._sent: dict[int, list[int]] = {}  # the current phase: node -> the devices it was sent tasks for
        self._sent_targets: dict[int, str] = {}  # the current phase: device -> the state its package leads to
        self.saver: PackageSaver | None = None  # simulation.save_packages (set by the runner)
        self.key = runtime.signing_key()
        self.archive = PackageArchive()  # packages pushed so far (what a replay attacker could record)
        self.log = RoundLog()
        self.clock_s = 0.0  # simulated time at which the next round starts
        self.release: UpdatePackage | None = None  # the last round's release package (None: no push)
        self.push = self._push_plan(0, 0.0)  # the current phase's packages (a new plan per phase)

    # ------------------------------------------------------------------ state
    def __getstate__(self) -> dict[str, Any]:
        """What a checkpoint pickles: everything but the finished round's log and push plan
        (per-device outcomes and encoded packages), which the next round replaces before reading."""
        state = self.__dict__.copy()
        state["log"], state["push"] = RoundLog(), None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.push is None:
            self.push = self._push_plan(0, 0.0)

    @property
    def latest(self) -> ModelVersion:
        """The main line's newest version."""
        return self.store.latest

    @latest.setter
    def latest(self, state: ModelVersion) -> None:
        self.store.latest = state

    @property
    def views(self) -> dict[int, DeviceView]:
        """What the server knows of each device, by device id."""
        return self.store.views

    @property
    def version_log(self) -> list[dict[str, Any]]:
        """Every state the server issued (``versions.csv``)."""
        return self.store.log

    def checkpoint_references(self) -> dict[str, Any]:
        """What this strategy shares with its run rather than owns, by name: a checkpoint
        (:mod:`edgeupdate.simulation.checkpoint`) refers to these instead of copying them, and a
        resumed run binds the names to its own. Extend it for large objects rebuilt from the runtime."""
        return {"runtime": self.runtime, "cfg": self.cfg, "fleet": self.fleet, "collector": self.collector,
                "key": self.key, "saver": self.saver}

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
                             base_version=base.number, precision=self.cfg.package.precision,
                             value_coding=self.cfg.package.value_coding)

    def on_release(self, round_: int) -> None:
        """Called after version ``round_`` became :attr:`latest` (e.g. to update student lines)."""

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
        return top_changes_package(base, target, count, method=f"{self.name}-budget", coding=self.cfg.package.coding)

    def target_of(self, view: DeviceView) -> ModelVersion:
        """The state ``view``'s device should hold after this round."""
        return self.store.target_of(view)

    def package_for(self, view: DeviceView) -> Encoded:
        """The current phase's encoded package for ``view``'s device (e.g. a catch-up before local
        training, built against the last release)."""
        return self.push.package_for(view)

    # ------------------------------------------------------------ round loop
    def run_rounds(self, grid: Grid, first_round: int, num_rounds: int, timeout: float,
                   after_round: Callable[[int], None] | None = None,
                   on_progress: PhaseProgress | None = None) -> None:
        """Rounds ``first_round … num_rounds``, as Flower's ``Strategy.start`` runs them (TRAIN, then
        EVALUATE), calling ``after_round(r)`` once round r is complete (the runner checkpoints there)
        and ``on_progress(r, phase, devices answered, devices asked)`` while a phase runs. A resumed
        run starts past round 1."""
        arrays, empty = ArrayRecord(), ConfigRecord()

        def progress(round_: int, phase: str) -> Progress | None:
            return None if on_progress is None else (lambda done, asked: on_progress(round_, phase, done, asked))

        for round_ in range(first_round, num_rounds + 1):
            replies = exchange(grid, self.configure_train(round_, arrays, empty, grid), timeout,
                               progress(round_, "train"))
            self.aggregate_train(round_, replies)
            replies = exchange(grid, self.configure_evaluate(round_, arrays, empty, grid), timeout,
                               progress(round_, "push"))
            self.aggregate_evaluate(round_, replies)
            if after_round is not None:
                after_round(round_)

    # ------------------------------------------------------------ Flower API
    def summary(self) -> None:  # Flower calls this at start; the runner prints its own header
        pass

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.log = RoundLog(start_s=self.clock_s)
        self.push = self._push_plan(server_round, self.log.start_s)
        tasks: dict[int, dict[int, dict[str, Any]]] = {}  # node -> device -> task
        self._sent_targets = {}
        for view in self.store.in_order():
            task = self.train_task(server_round, view)
            if task is None:
                continue
            if not self.fleet.reachable(server_round, view.device_id, self.log.start_s):
                self.log.train_status[view.device_id] = P.DeviceStatus.OFFLINE
                continue
            if task.get("package"):
                self.log.add_bytes_down(view.device_id, len(task["package"]))
                self._sent_targets[view.device_id] = self.package_for(view).target_hash
                if self.saver is not None:
                    self.saver.record(server_round, "train", view, task["package"])
            tasks.setdefault(view.node_id, {})[view.device_id] = task
        return self._messages(MessageType.TRAIN, server_round, tasks)

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
            if r.status not in (P.DeviceStatus.UPLOADED, P.DeviceStatus.TRAINED):
                self.log.train_status[dev] = r.status
            elif outcome.status != P.DeviceStatus.APPLIED:  # the upload did not make it (deadline, went offline)
                self.log.train_status[dev] = outcome.status
            else:
                self.log.train_status[dev] = r.status
                arrived.append(r)
        train_phase_s = max((o.sim_time_s for o in self.log.train.values()), default=0.0)
        t0 = time.perf_counter()
        target = self.next_model(server_round, arrived)
        self.release = None
        if target is not None:
            base = self.latest
            self.release = self.release_package(server_round, base, target)
            weights = self.release.apply(base.weights, state_hash_known=base.hash)  # what a device will hold
            self.store.release(server_round, ModelVersion(server_round, weights, self.release.header.target_hash))
            self.log.pushed = True
            self.on_release(server_round)
        self.log.server_time_s = time.perf_counter() - t0
        self.log.release_s = self.log.start_s + train_phase_s + self.fleet.server_time_s(self.log.server_flops)
        self.push = self._push_plan(server_round, self.log.release_s)
        return ArrayRecord(self.latest.weights), MetricRecord({"server_time_s": self.log.server_time_s})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        tasks: dict[int, dict[int, dict[str, Any]]] = {}  # node -> device -> task
        self._sent_targets = {}
        for view in self.store.in_order():
            target = self.target_of(view)
            task: dict[str, Any] = {"task": PUSH, "target_version": target.number, "link": P.LINK_OK,
                                    "upload_acked": self.log.train_status.get(view.device_id) == P.DeviceStatus.UPLOADED}
            if view.hash != target.hash:
                push, fields = self.push.for_device(view)
                self.log.push[view.device_id] = push
                task.update(fields)
                if push.outcome and push.outcome.status == P.DeviceStatus.APPLIED and push.attack == NO_ATTACK:
                    self._sent_targets[view.device_id] = push.target_hash
            else:
                self.log.push[view.device_id] = Push(base_version=view.version)
            arrived = task.get("payload_len", -1)
            self.log.add_bytes_down(view.device_id, arrived if arrived >= 0 else len(task.get("package", b"")))
            tasks.setdefault(view.node_id, {})[view.device_id] = task
        return self._messages(MessageType.EVALUATE, server_round, tasks)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        reports = self._reports(replies)
        push_phase_s = max((p.outcome.sim_time_s for p in self.log.push.values() if p.outcome), default=0.0)
        duration_s = self.log.release_s - self.log.start_s + push_phase_s
        next_start_s = self.fleet.next_round_start_s(self.log.start_s, duration_s)
        for r in reports:
            self._check_report(server_round, r)
            view = self.views[r.device_id]
            self.collector.add_row(**metrics_row(server_round, self.name, r, view, self.target_of(view).hash,
                                                 self.log, self.fleet, next_start_s - self.log.start_s))
        self.clock_s = next_start_s
        if self.saver is not None:
            self.saver.end_round(self.store)
        self.store.forget_unheld()
        return self.collector.round_summary(server_round)

    # -------------------------------------------------------------- helpers
    def _messages(self, message_type: str, round_: int, tasks: dict[int, dict[int, dict[str, Any]]]) -> list[Message]:
        """One message per node, carrying the tasks of all its devices (each distinct payload once)."""
        common = {"store": self.store_dir}
        if message_type == MessageType.EVALUATE and self.checkpoint_dir:  # the round's last phase
            common["checkpoint"] = self.checkpoint_dir
        self._sent = {node: sorted(node_tasks) for node, node_tasks in tasks.items()}
        return [task_message(node, message_type, round_, node_tasks, common=common)
                for node, node_tasks in sorted(tasks.items())]

    def _push_plan(self, round_: int, start_s: float) -> PushPlan:
        """A plan for packages sent from ``start_s`` on (each distinct package encoded once)."""
        return PushPlan(round_, store=self.store, fleet=self.fleet, hooks=self, release=self.release, key=self.key,
                        inference_flops=self.runtime.forward.flops, release_s=start_s,
                        budgets=self.cfg.fleet.budgets, archive=self.archive, saver=self.saver)

    def _check_report(self, round_: int, r: P.DeviceReport) -> None:
        if r.status == P.DeviceStatus.LOST:  # it did not answer: nothing to check until it does
            return
        push = self.log.push.get(r.device_id)
        planned = push.outcome.status if push and push.outcome else None
        if planned in _PLANNED_EXACTLY and r.status != planned:
            raise FleetInvariantError(f"round {round_}: device {r.device_id} reported {r.status!r}, "
                                      f"the fleet planned {planned!r} ({r.reason})")
        if push and push.attack != NO_ATTACK and (r.status != P.DeviceStatus.REJECTED
                                                  or r.model_version != push.base_version):
            raise FleetInvariantError(f"round {round_}: device {r.device_id} did not refuse a {push.attack} attack: "
                                      f"it reported {r.status!r}, version {r.model_version} ({r.reason})")
        if planned == P.DeviceStatus.REJECTED and r.status == P.DeviceStatus.APPLIED:
            raise FleetInvariantError(f"round {round_}: device {r.device_id} applied a package the fleet "
                                      f"corrupted or crashed")
        if r.model_hash not in self.store.states:
            raise FleetInvariantError(f"round {round_}: device {r.device_id} holds weights (hash "
                                      f"{r.model_hash[:16]}) that match no version the server issued")

    def _reports(self, replies: Iterable[Message]) -> list[P.DeviceReport]:
        """Every device's report of this phase, by device id. A device that did not answer — its node
        failed, sent nothing within the round timeout, or said it was lost — gets a ``lost`` report
        with the version the server last knew; what it was sent may have reached it (``view.maybe``)."""
        reports: dict[int, P.DeviceReport] = {}
        unanswered = {node: (devices, f"its node {node} did not reply within the round timeout")
                      for node, devices in self._sent.items()}
        for msg in replies:
            node = msg.metadata.src_node_id
            devices, _ = unanswered.pop(node, ([], ""))
            if msg.has_error():
                unanswered[node] = (devices, f"its node {node} failed: {msg.error.reason}".splitlines()[0])
                continue
            for report in read_replies(msg):
                if report.device_id in self.views:
                    reports[report.device_id] = report
        for node, (devices, reason) in unanswered.items():
            for dev in devices:
                reports[dev] = P.DeviceReport(node, dev, -1, "", P.DeviceStatus.LOST, b"", {}, reason)
        out = []
        for dev, report in sorted(reports.items()):
            view = self.views[dev]
            if report.status == P.DeviceStatus.LOST:
                if self._sent_targets.get(dev, view.hash) not in (view.hash, *view.maybe):
                    view.maybe = (*view.maybe, self._sent_targets[dev])
                report = P.DeviceReport(report.node_id, dev, view.version, view.hash, report.status, b"", {},
                                        report.reason)
            else:
                view.version, view.hash, view.maybe = report.model_version, report.model_hash, ()
            out.append(report)
        return out
