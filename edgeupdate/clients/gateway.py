"""The Flower ClientApp: one node serves a group of devices, as a gateway or edge server does.

The node with ``partition-id`` g serves devices ``g·n … g·n + n − 1`` (n = ``simulation.
devices_per_node``, automatic by default; :meth:`~edgeupdate.runtime.ExperimentRuntime.node_devices`).
Each message carries the tasks of all its devices (:mod:`edgeupdate.messages`); the node works
through them one device after another, as pfl-research simulates users, and answers for all of them
at once. Devices keep their records (:class:`~edgeupdate.clients.device.DeviceRecord`) in the node's
``Context.state``; weights live in the run's shared model store.

TRAIN tasks: ``collect`` (upload the samples collected since the last acknowledged upload),
``fit`` (federated strategies: apply a catch-up package if sent, check that local training fits
in memory, train, upload the encoded update), ``status`` (report only). A TRAIN message without
devices asks the node which devices it serves (run start). EVALUATE: act out the push, then
evaluate every device on its local test images, one forward pass per distinct model
(:mod:`edgeupdate.clients.evaluation`).

A device whose handler raises, or whose process the fault injection kills
(``fleet.faults.lost_prob``), does not answer: the node reports it ``lost`` without a version or
hash (the server learns what it holds at its next contact). With a checkpoint folder in the
message, the node writes its devices' state at the end of every round
(:mod:`edgeupdate.clients.node_state`); the run-start message of a resumed run names the round
to restore.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from edgeupdate import protocol as P
from edgeupdate.clients.device import (
    DeviceRecord,
    DeviceServices,
    acknowledge_upload,
    collect,
    push,
    try_apply,
)
from edgeupdate.clients.evaluation import PoolEvaluator
from edgeupdate.clients.fit import fit, fit_cost
from edgeupdate.clients.node_state import load_node_state, save_node_state
from edgeupdate.clients.host import with_host
from edgeupdate.messages import DeviceReply, DeviceTask, read_tasks, reply_message
from edgeupdate.runtime import ExperimentRuntime
from edgeupdate.store import ModelStore

RuntimeFactory = Callable[[Context], ExperimentRuntime]

_RECORDS = "device_records"  # Context.state: the node's device records, one column per field
_COLUMNS = ("device_id", "version", "hash", "uploaded_through", "upload_pending")
_SERVICES: dict[tuple[int, str], tuple[DeviceServices, PoolEvaluator]] = {}  # per process: (runtime, store dir)


def services_for(runtime: ExperimentRuntime, store_dir: str) -> tuple[DeviceServices, PoolEvaluator]:
    """The process's shared services for this run (one store, apply cache and evaluator)."""
    key = (id(runtime), store_dir)
    if key not in _SERVICES:
        root = Path(store_dir) if store_dir else Path(tempfile.mkdtemp(prefix="edgeupdate-store-"))
        _SERVICES.clear()  # one run at a time per process
        store = ModelStore(root, runtime.factory_states)  # regenerable states: no file
        _SERVICES[key] = (DeviceServices.create(runtime, store), PoolEvaluator(runtime))
    return _SERVICES[key]


class DeviceRecords:
    """The records of the devices a node serves, kept column-wise in its ``Context.state``."""

    def __init__(self, context: Context, services: DeviceServices, device_ids: range) -> None:
        self.context = context
        if _RECORDS in context.state:
            cols = context.state[_RECORDS]
            self.records = {int(d): DeviceRecord(int(d), int(v), str(h), int(u), int(p))
                            for d, v, h, u, p in zip(*(cols[c] for c in _COLUMNS))}
        else:
            self.records = {d: services.factory_record(d) for d in device_ids}

    def __getitem__(self, device_id: int) -> DeviceRecord:
        return self.records[device_id]

    def __iter__(self) -> Iterator[DeviceRecord]:
        return iter(self.records.values())

    def save(self) -> None:
        rows = list(self.records.values())
        self.context.state[_RECORDS] = ConfigRecord({
            "device_id": [r.device_id for r in rows], "version": [r.version for r in rows],
            "hash": [r.hash for r in rows], "uploaded_through": [r.uploaded_through for r in rows],
            "upload_pending": [r.upload_pending for r in rows]})


class DeviceSlot(MutableMapping[str, Any]):
    """One device's part of its node's ``Context.state`` (e.g. an error-feedback residual)."""

    def __init__(self, state: MutableMapping[str, Any], device_id: int) -> None:
        self.state, self.prefix = state, f"device-{device_id}/"

    def __getitem__(self, key: str) -> Any:
        return self.state[self.prefix + key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.state[self.prefix + key] = value

    def __delitem__(self, key: str) -> None:
        del self.state[self.prefix + key]

    def __iter__(self) -> Iterator[str]:
        return (k[len(self.prefix):] for k in list(self.state) if k.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _reply(record: DeviceRecord, status: str, reason: str = "", payload: bytes = b"",
           metrics: dict[str, float] | None = None) -> DeviceReply:
    return DeviceReply(record.device_id, record.version, record.hash, status, reason, payload, metrics or {})


class DeviceLost(RuntimeError):
    """The fault injection killed the device's process (``fleet.faults.lost_prob``)."""


def _lost(device_id: int, err: Exception) -> DeviceReply:
    """What the node says of a device that did not answer (no version or hash: the node cannot know)."""
    reason = str(err) if isinstance(err, DeviceLost) else f"device handler raised {type(err).__name__}: {err}"
    return DeviceReply(device_id, -1, "", P.DeviceStatus.LOST, reason.splitlines()[0] if reason else "lost")


def _dies(runtime: ExperimentRuntime, device_id: int, round_: int, phase: str, point: str) -> None:
    """Raise :class:`DeviceLost` when the fault injection kills the device at ``point`` of ``phase``."""
    if runtime.fleet.faults.loses(runtime.cfg.seed, round_, device_id, phase) == point:
        raise DeviceLost(f"fault injection: the device process died {point} its {phase} task")


def _train_guarded(services: DeviceServices, records: DeviceRecords, task: DeviceTask, context: Context) -> DeviceReply:
    round_ = int(task.get("round"))
    try:
        _dies(services.runtime, task.device_id, round_, "train", "before")
        reply = _train_one(services, records, task, context)
        _dies(services.runtime, task.device_id, round_, "train", "after")
        return reply
    except Exception as err:  # noqa: BLE001 (a device that fails is lost, the node goes on)
        return _lost(task.device_id, err)


def _train_one(services: DeviceServices, records: DeviceRecords, task: DeviceTask, context: Context) -> DeviceReply:
    runtime = services.runtime
    record = records[task.device_id]
    round_, kind = int(task.get("round")), str(task.get("task"))
    if kind == P.TASK_COLLECT:
        payload = collect(runtime, record, round_)
        return _reply(record, P.DeviceStatus.UPLOADED, payload=payload,
                      metrics={"num-examples": 0, "bytes_down_received": 0})
    if kind != P.TASK_FIT:
        return _reply(record, P.DeviceStatus.NO_UPDATE, metrics={"num-examples": 0, "bytes_down_received": 0})
    status, reason, apply_flops, apply_peak = P.DeviceStatus.NO_UPDATE, "", 0.0, 0
    if task.payload:  # a catch-up package before training
        status, reason, cost = try_apply(services, record, task.payload, digest=task.digest)
        apply_flops, apply_peak = cost.flops, cost.peak_memory_bytes
    received = {"bytes_down_received": len(task.payload)}
    if status in (P.DeviceStatus.REJECTED, P.DeviceStatus.NO_MEMORY) or record.hash != str(task.get("base_hash")):
        return _reply(record, status if status != P.DeviceStatus.APPLIED else P.DeviceStatus.REJECTED,
                      reason or "stale base", metrics={"num-examples": 0, **received})
    cost = fit_cost(runtime, record.device_id, round_)
    metrics: dict[str, float] = {"compute_flops": cost.flops + apply_flops,
                                 "compute_peak_memory_bytes": max(cost.peak_memory_bytes, apply_peak), **received}
    have = runtime.fleet.memory_bytes(record.device_id)
    if cost.peak_memory_bytes > have:
        return _reply(record, P.DeviceStatus.NO_MEMORY,
                      f"local training needs {cost.peak_memory_bytes} B of memory, the device has {have} B",
                      metrics={**metrics, "num-examples": 0})
    payload, fit_metrics = fit(runtime, services.weights(record), record.version, record.device_id, round_,
                               task.fields, DeviceSlot(context.state, record.device_id))
    return _reply(record, P.DeviceStatus.TRAINED, payload=payload, metrics={**metrics, **fit_metrics})


def make_client_app(runtime_for: RuntimeFactory) -> ClientApp:
    """A ClientApp whose experiment runtime comes from ``runtime_for(context)``."""
    app = ClientApp()

    def open_node(msg: Message, context: Context):
        runtime = runtime_for(context)
        torch.set_num_threads(runtime.cfg.simulation.torch_threads)
        shared, tasks = read_tasks(msg)
        services, evaluator = services_for(runtime, str(shared.get("store", "")))
        devices = runtime.devices_of_node(context.node_config)
        partition = int(context.node_config["partition-id"])
        if not tasks and shared.get("checkpoint") and int(shared.get("restore_round", 0)) > 0:
            restored = load_node_state(str(shared["checkpoint"]), partition, int(shared["restore_round"]))
            context.state.clear()  # a fresh process may still hold a record from a run-start probe
            if restored is not None:
                context.state.update(restored)
        return services, evaluator, DeviceRecords(context, services, devices), shared, tasks

    @app.train()
    def handle_train(msg: Message, context: Context) -> Message:
        services, _, records, _, tasks = open_node(msg, context)
        if not tasks:  # which devices does this node serve, what do they hold, on which Ray node?
            replies = [_reply(r, P.DeviceStatus.NO_UPDATE) for r in records]
        else:
            replies = [_train_guarded(services, records, t, context) for t in tasks]
        records.save()
        return reply_message(msg, replies) if tasks else with_host(reply_message(msg, replies))

    @app.evaluate()
    def handle_evaluate(msg: Message, context: Context) -> Message:
        services, evaluator, records, shared, tasks = open_node(msg, context)
        runtime = services.runtime
        outcomes, lost = {}, {}
        for t in tasks:
            record = records[t.device_id]
            try:
                _dies(runtime, t.device_id, int(t.get("round")), "push", "before")
                acknowledge_upload(record, bool(t.get("upload_acked", False)))
                t0 = time.perf_counter()
                status, reason = push(services, record, t.fields, t.payload, t.digest)
                outcomes[t.device_id] = (status, reason, time.perf_counter() - t0, len(t.payload))
                _dies(runtime, t.device_id, int(t.get("round")), "push", "after")
            except Exception as err:  # noqa: BLE001 (a device that fails is lost, the node goes on)
                lost[t.device_id] = _lost(t.device_id, err)
        held = {t.device_id: (records[t.device_id].hash, services.weights(records[t.device_id]))
                for t in tasks if t.device_id not in lost}
        scores = evaluator.evaluate(held)
        replies = []
        for t in tasks:
            if t.device_id in lost:
                replies.append(lost[t.device_id])
                continue
            status, reason, apply_host_s, received = outcomes[t.device_id]
            loss, acc, n = scores[t.device_id]
            replies.append(_reply(records[t.device_id], status, reason, metrics={
                "num-examples": n, "accuracy": acc, "loss": loss, "bytes_down_received": received,
                "apply_host_s": apply_host_s}))
        records.save()
        if shared.get("checkpoint"):  # the end of the round: what the devices hold, before answering
            save_node_state(context.state, str(shared["checkpoint"]), int(context.node_config["partition-id"]),
                            int(shared["round"]))
        return reply_message(msg, replies)

    return app
