"""The simulated edge device: a Flower ClientApp.

A device holds one deployed model (and its version and hash) in its node's ``Context.state``, so
it persists across rounds. It never applies a package it cannot verify: decode checks format,
checksum and (when a key is configured) the signature; apply checks the base hash before and the
result hash after. Any failure leaves the deployed model untouched and is reported as a status.

Handlers (see :mod:`edgeupdate.protocol`):

* TRAIN ``collect`` — upload the samples collected since the last upload that reached the server
  (raw 8-bit pixels + labels; a device that was offline uploads its backlog next time);
* TRAIN ``fit`` — federated strategies: apply a catch-up package if sent, check that local
  training fits in memory (else ``no_memory``), train on the collected data, upload the result as
  an encoded package;
* TRAIN ``status`` — report version and hash only;
* EVALUATE — act out what the simulated link did (nothing arrived, or the deadline cut the
  transfer, or the bytes arrived — possibly corrupted), check the apply step's memory against the
  device's own (``no_memory``), apply crash-safely, and evaluate the deployed model on the local
  test split.

Crash-safe apply: the new weights are written into a staging slot of ``Context.state`` and only
then swapped in. A crash part-way (fault injection) leaves the staging slot half-written; the
device "reboots" from the deployed slot, discards the staging slot and checks the deployed model
still hashes to its recorded value.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edgeupdate import protocol as P
from edgeupdate.runtime import ExperimentRuntime
from edgeupdate.updates import StateDict
from edgeupdate.clients.fit import fit, fit_cost
from edgeupdate.datasets import NORMALIZATION
from edgeupdate.datasets.codec import encode_samples
from edgeupdate.training import evaluate
from edgeupdate.updates import PackageError, UpdatePackage, state_hash
from edgeupdate.updates.cost import ApplyCost, apply_cost, state_bytes
from edgeupdate.updates.verify import check_version

RuntimeFactory = Callable[[Context], ExperimentRuntime]

_MODEL = "deployed_model"
_META = "deployed_meta"
_STAGED = "staged_model"


class DeviceCrash(Exception):
    """The device app died part-way through writing the new weights (fault injection)."""


class DeviceState:
    """The deployed model of one device, stored in (and restored from) ``Context.state``."""

    def __init__(self, context: Context, runtime: ExperimentRuntime) -> None:
        self.context = context
        if _MODEL in context.state:
            self.weights: StateDict = context.state[_MODEL].to_torch_state_dict()
            meta = context.state[_META]
            self.version, self.hash = int(meta["version"]), str(meta["hash"])
            self.uploaded_through, self.upload_pending = int(meta["uploaded_through"]), int(meta["upload_pending"])
        else:  # factory image: version 0 regenerated from the seed (none on a student device); D¹ is the server's
            factory = runtime.factory_state(int(context.node_config["partition-id"]))
            self.weights = {k: v.clone() for k, v in factory.items()}
            self.version, self.hash, self.uploaded_through, self.upload_pending = 0, state_hash(self.weights), 1, 0
        self.last_apply_cost = ApplyCost(0.0, 0)

    def save(self) -> None:
        self.context.state[_MODEL] = ArrayRecord(self.weights)
        self.save_meta()

    def save_meta(self) -> None:
        self.context.state[_META] = ConfigRecord({"version": self.version, "hash": self.hash,
                                                  "uploaded_through": self.uploaded_through,
                                                  "upload_pending": self.upload_pending})

    def _commit(self, weights: StateDict, version: int, crash_point: float | None) -> None:
        """Stage ``weights`` tensor by tensor, then swap them in (a crash stops half-way)."""
        names = list(weights)
        staged: dict[str, torch.Tensor] = {}
        for i, name in enumerate(names):
            if crash_point is not None and i == int(crash_point * len(names)):
                self.context.state[_STAGED] = ArrayRecord(staged)
                raise DeviceCrash(f"crashed after staging {i} of {len(names)} tensors")
            staged[name] = weights[name]
        self.context.state[_STAGED] = ArrayRecord(staged)
        self.weights, self.version, self.hash = weights, version, state_hash(weights)
        self.save()
        del self.context.state[_STAGED]

    def try_apply(self, payload: bytes, runtime: ExperimentRuntime, device_id: int,
                  crash_point: float | None = None) -> tuple[str, str]:
        """Verify and apply ``payload``; return ``(status, reason)``. Never corrupts the model."""
        try:
            package = UpdatePackage.decode(payload, runtime.package_verifier())
        except PackageError as err:
            return P.DeviceStatus.REJECTED, str(err)
        if (refused := check_version(package.header, self.version, self.hash)) is not None:
            return P.DeviceStatus.REJECTED, refused
        self.last_apply_cost = apply_cost(package.header, len(payload), state_bytes(self.weights))
        need, have = self.last_apply_cost.peak_memory_bytes, runtime.fleet.memory_bytes(device_id)
        if need > have:
            return P.DeviceStatus.NO_MEMORY, f"applying needs {need} B of memory, the device has {have} B"
        try:
            new_weights = package.apply(self.weights)
        except PackageError as err:
            return P.DeviceStatus.REJECTED, str(err)
        try:
            self._commit(new_weights, package.header.target_version, crash_point)
        except DeviceCrash as crash:
            return P.DeviceStatus.REJECTED, self._reboot(runtime, str(crash))
        return P.DeviceStatus.APPLIED, ""

    def _reboot(self, runtime: ExperimentRuntime, what: str) -> str:
        """Restart after a crash: discard the staging slot, reload and re-verify the deployed model."""
        if _STAGED in self.context.state:
            del self.context.state[_STAGED]
        reloaded = DeviceState(self.context, runtime)
        if state_hash(reloaded.weights) != reloaded.hash:
            raise RuntimeError(f"device model corrupted by a crash during apply ({what})")
        self.weights, self.version, self.hash = reloaded.weights, reloaded.version, reloaded.hash
        return f"{what}; rebooted with the deployed model intact (hash verified)"


def _reply(msg: Message, state: DeviceState, device_id: int, status: str, payload: bytes,
           metrics: dict[str, float | int], reason: str = "") -> Message:
    reply = ConfigRecord({"device_id": device_id, "model_version": state.version,
                          "model_hash": state.hash, "status": status, "payload": payload,
                          "reason": reason})
    return Message(RecordDict({P.REPLY: reply, P.METRICS: MetricRecord(metrics)}), reply_to=msg)


def _collect(runtime: ExperimentRuntime, state: DeviceState, device_id: int, round_: int) -> bytes:
    """Samples collected in rounds after the last acknowledged upload, encoded for the uplink.

    They count as delivered only when the server acknowledges them (``upload_acked`` in the
    EVALUATE task of the same round); otherwise the next upload sends them again.
    """
    rounds = range(state.uploaded_through + 1, round_ + 1)
    idx = [runtime.layout.arrivals(device_id, r) for r in rounds]
    samples = runtime.train_subset(np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64))
    state.upload_pending = round_
    state.save_meta()
    return encode_samples(samples, NORMALIZATION[runtime.dataset.name])


def _evaluate_task(runtime: ExperimentRuntime, state: DeviceState, device_id: int,
                   task: ConfigRecord) -> tuple[str, str, float]:
    """Act out the push: ``(status, reason, apply wall seconds)``."""
    payload = bytes(task.get("package", b""))
    link = str(task.get("link", P.LINK_OK))
    if link == P.LINK_OFFLINE:
        return P.DeviceStatus.OFFLINE, "unreachable this round", 0.0
    required = int(task.get("required_memory_bytes", 0))
    if required > runtime.fleet.memory_bytes(device_id):
        return P.DeviceStatus.NO_MEMORY, (f"applying needs {required} B of memory, the device has "
                             f"{runtime.fleet.memory_bytes(device_id)} B; declined the download"), 0.0
    if not payload:
        return P.DeviceStatus.NO_UPDATE, "", 0.0
    if link == P.LINK_CUT:
        try:
            UpdatePackage.decode(payload, runtime.package_verifier())
        except PackageError as err:
            return P.DeviceStatus.DEADLINE, f"link closed at the deadline: {err}", 0.0
        raise RuntimeError("a package cut at the deadline decoded: the transfer cut is not simulated")
    crash = float(task.get("crash_point", -1.0))
    t0 = time.perf_counter()
    status, reason = state.try_apply(payload, runtime, device_id, crash if crash >= 0 else None)
    return status, reason, time.perf_counter() - t0


def make_client_app(runtime_for: RuntimeFactory) -> ClientApp:
    """A ClientApp whose experiment runtime comes from ``runtime_for(context)``."""
    app = ClientApp()

    @app.train()
    def handle_train(msg: Message, context: Context) -> Message:
        runtime = runtime_for(context)
        torch.set_num_threads(runtime.cfg.simulation.torch_threads)
        device_id = int(context.node_config["partition-id"])
        state = DeviceState(context, runtime)
        task = msg.content[P.TASK]
        round_ = int(task["round"])
        kind = str(task["task"])
        bytes_down = 0
        status, reason, payload = P.DeviceStatus.NO_UPDATE, "", b""
        metrics: dict[str, float | int] = {"num-examples": 0}
        if kind == P.TASK_COLLECT:
            payload = _collect(runtime, state, device_id, round_)
            status = P.DeviceStatus.UPLOADED
        elif kind == P.TASK_FIT:
            catch_up = bytes(task.get("package", b""))
            if catch_up:
                bytes_down = len(catch_up)
                status, reason = state.try_apply(catch_up, runtime, device_id)
            if status in (P.DeviceStatus.REJECTED, P.DeviceStatus.NO_MEMORY) or state.hash != str(task["base_hash"]):
                return _reply(msg, state, device_id, status if status != P.DeviceStatus.APPLIED else P.DeviceStatus.REJECTED, b"",
                              {"num-examples": 0, "bytes_down_received": bytes_down}, reason or "stale base")
            cost = fit_cost(runtime, device_id, round_)
            peak = max(cost.peak_memory_bytes, state.last_apply_cost.peak_memory_bytes)
            metrics = {"compute_flops": cost.flops + state.last_apply_cost.flops, "compute_peak_memory_bytes": peak}
            if cost.peak_memory_bytes > runtime.fleet.memory_bytes(device_id):
                return _reply(msg, state, device_id, P.DeviceStatus.NO_MEMORY, b"",
                              {**metrics, "num-examples": 0, "bytes_down_received": bytes_down},
                              f"local training needs {cost.peak_memory_bytes} B of memory, the device has "
                              f"{runtime.fleet.memory_bytes(device_id)} B")
            payload, fit_metrics = fit(runtime, state.weights, state.version, device_id, round_, task, context.state)
            metrics.update(fit_metrics)
            status = P.DeviceStatus.TRAINED
        metrics["bytes_down_received"] = bytes_down
        return _reply(msg, state, device_id, status, payload, metrics, reason)

    @app.evaluate()
    def handle_evaluate(msg: Message, context: Context) -> Message:
        runtime = runtime_for(context)
        torch.set_num_threads(runtime.cfg.simulation.torch_threads)
        device_id = int(context.node_config["partition-id"])
        state = DeviceState(context, runtime)
        task = msg.content[P.TASK]
        if state.upload_pending:  # the server says whether this round's upload arrived
            if bool(task.get("upload_acked", False)):
                state.uploaded_through = state.upload_pending
            state.upload_pending = 0
            state.save_meta()
        status, reason, apply_host_s = _evaluate_task(runtime, state, device_id, task)
        if state.weights:
            loss, acc = evaluate(runtime.model_for(state.weights), runtime.device_test(device_id))
        else:  # a student device before its first student arrives holds no model
            loss, acc = float("nan"), float("nan")
        state.save()
        metrics = {"num-examples": len(runtime.layout.device_test[device_id]), "accuracy": acc,
                   "loss": loss, "bytes_down_received": len(bytes(task.get("package", b""))),
                   "apply_host_s": apply_host_s}
        return _reply(msg, state, device_id, status, b"", metrics, reason)

    return app
