"""The simulated edge device: a Flower ClientApp.

A device holds one deployed model (and its version and hash) in its node's ``Context.state``, so
it persists across rounds. It never applies a package it cannot verify: decode checks format,
checksum and (when a key is configured) the signature; apply checks the base hash before and the
result hash after. Any failure leaves the deployed model untouched and is reported as a status.

Handlers (see :mod:`edgeupdate.protocol`):

* TRAIN ``collect`` — upload the samples collected this round (raw 8-bit pixels + labels);
* TRAIN ``fit`` — federated strategies: apply a catch-up package if sent, train locally on the
  collected data, upload the result as an encoded package;
* TRAIN ``status`` — report version and hash only;
* EVALUATE — apply the pushed package (if any), evaluate the deployed model on the local test split.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edgeupdate import protocol as P
from edgeupdate.clients.runtime import ExperimentRuntime, StateDict
from edgeupdate.datasets import NORMALIZATION
from edgeupdate.datasets.codec import encode_samples
from edgeupdate.clients.fit import fit
from edgeupdate.training import evaluate
from edgeupdate.updates import PackageError, UpdatePackage, state_hash

RuntimeFactory = Callable[[Context], ExperimentRuntime]

_MODEL = "deployed_model"
_META = "deployed_meta"


class DeviceState:
    """The deployed model of one device, stored in (and restored from) ``Context.state``."""

    def __init__(self, context: Context, runtime: ExperimentRuntime) -> None:
        self.context = context
        if _MODEL in context.state:
            self.weights: StateDict = context.state[_MODEL].to_torch_state_dict()
            meta = context.state[_META]
            self.version, self.hash = int(meta["version"]), str(meta["hash"])
        else:  # factory image: version 0, regenerated from the seed
            self.weights = {k: v.clone() for k, v in runtime.initial_state.items()}
            self.version, self.hash = 0, runtime.initial_hash

    def deploy(self, weights: StateDict, version: int) -> None:
        self.weights, self.version, self.hash = weights, version, state_hash(weights)
        self.save()

    def save(self) -> None:
        self.context.state[_MODEL] = ArrayRecord(self.weights)
        self.context.state[_META] = ConfigRecord({"version": self.version, "hash": self.hash})

    def try_apply(self, payload: bytes, runtime: ExperimentRuntime) -> tuple[str, str]:
        """Verify and apply ``payload``; return ``(status, reason)``. Never corrupts the model."""
        try:
            package = UpdatePackage.decode(payload, runtime.signing_key())
            new_weights = package.apply(self.weights)
        except PackageError as err:
            return P.REJECTED, str(err)
        self.deploy(new_weights, package.header.target_version)
        return P.APPLIED, ""


def _reply(msg: Message, state: DeviceState, device_id: int, status: str, payload: bytes,
           metrics: dict[str, float | int], reason: str = "") -> Message:
    reply = ConfigRecord({"device_id": device_id, "model_version": state.version,
                          "model_hash": state.hash, "status": status, "payload": payload,
                          "reason": reason})
    return Message(RecordDict({P.REPLY: reply, P.METRICS: MetricRecord(metrics)}), reply_to=msg)


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
        status, reason, payload = P.NO_UPDATE, "", b""
        metrics: dict[str, float | int] = {"num-examples": 0}
        if kind == P.TASK_COLLECT:
            samples = runtime.train_subset(runtime.layout.arrivals(device_id, round_))
            payload = encode_samples(samples, NORMALIZATION[runtime.dataset.name])
            metrics["num-examples"] = len(samples)
        elif kind == P.TASK_FIT:
            catch_up = task.get("package", b"")
            if catch_up:
                bytes_down = len(catch_up)
                status, reason = state.try_apply(catch_up, runtime)
            if status == P.REJECTED or state.version != int(task["base_version"]):
                return _reply(msg, state, device_id, P.REJECTED, b"",
                              {"num-examples": 0, "bytes_down_received": bytes_down}, reason or "stale base")
            payload, metrics = fit(runtime, state.weights, state.version, device_id, round_, task, context.state)
        metrics["bytes_down_received"] = bytes_down
        return _reply(msg, state, device_id, status, payload, metrics, reason)

    @app.evaluate()
    def handle_evaluate(msg: Message, context: Context) -> Message:
        runtime = runtime_for(context)
        torch.set_num_threads(runtime.cfg.simulation.torch_threads)
        device_id = int(context.node_config["partition-id"])
        state = DeviceState(context, runtime)
        task = msg.content[P.TASK]
        payload = bytes(task.get("package", b""))
        status, reason, apply_s = P.NO_UPDATE, "", 0.0
        if payload:
            t0 = time.perf_counter()
            status, reason = state.try_apply(payload, runtime)
            apply_s = time.perf_counter() - t0
        model = runtime.new_model()
        model.load_state_dict(state.weights)
        loss, acc = evaluate(model, runtime.device_test(device_id))
        state.save()
        metrics = {"num-examples": len(runtime.layout.device_test[device_id]), "accuracy": acc,
                   "loss": loss, "bytes_down_received": len(payload), "apply_s": apply_s}
        return _reply(msg, state, device_id, status, b"", metrics, reason)

    return app

