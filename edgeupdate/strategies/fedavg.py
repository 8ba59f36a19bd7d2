"""Federated baselines: devices train, Flower's own strategy aggregates.

:class:`FederatedStrategy` wraps an inner ``flwr.serverapp.strategy`` instance: devices train on
the samples they have collected (the same stream the server-retrain family uses) and upload their
weights as an encoded package; the wrapper decodes them into ``ArrayRecord`` replies and hands them
to the inner strategy's ``aggregate_train`` — Flower's aggregation, not a re-implementation. The
aggregate is then pushed to every device like any other release, so bytes are measured the same way
for both families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, Strategy

from edgeupdate import protocol as P
from edgeupdate.clients.runtime import StateDict
from edgeupdate.seeding import numpy_rng
from edgeupdate.strategies.base import DeviceView, EdgeStrategy
from edgeupdate.strategies.registry import register
from edgeupdate.updates import UpdatePackage


class FederatedStrategy(EdgeStrategy):
    """Base for FL strategies; subclasses say which Flower strategy aggregates."""

    def make_inner(self) -> Strategy:
        raise NotImplementedError

    def fit_config(self, round_: int) -> dict[str, Any]:
        """Extra hyper-parameters sent with every fit task (e.g. FedProx's proximal-mu)."""
        return {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inner = self.make_inner()

    def sampled(self, round_: int) -> set[int]:
        """Devices that train this round: a seeded sample of ``client.fraction_train``."""
        ids = sorted(v.device_id for v in self.views.values())
        count = max(1, round(self.cfg.client.fraction_train * len(ids)))
        return set(numpy_rng(self.cfg.seed, "sample", round_).choice(ids, size=count, replace=False).tolist())

    def train_task(self, round_: int, view: DeviceView) -> dict[str, Any] | None:
        if view.device_id not in self.sampled(round_):
            return None
        task: dict[str, Any] = {"task": P.TASK_FIT, "base_version": self.latest.number, **self.fit_config(round_)}
        if view.version != self.latest.number:
            task["package"] = self._encode_for(view.version)[0]
        return task

    def next_model(self, round_: int, reports: list[P.DeviceReport]) -> StateDict | None:
        replies = []
        for r in reports:
            if not r.payload:
                continue
            weights = UpdatePackage.decode(r.payload).apply(self.latest.weights)
            content = RecordDict({"arrays": ArrayRecord(weights),
                                  "metrics": MetricRecord({"num-examples": int(r.metrics["num-examples"]),
                                                           "train_loss": float(r.metrics.get("train_loss", 0.0))})})
            replies.append(Message(content, dst_node_id=r.node_id, message_type=MessageType.TRAIN))
        if not replies:
            return None
        arrays, _ = self.inner.aggregate_train(round_, replies)
        if arrays is None:
            return None
        new = arrays.to_torch_state_dict()
        return {k: new[k].to(v.dtype).reshape(v.shape) for k, v in self.latest.weights.items()}


@dataclass(frozen=True)
class FedAvgParams:
    """FedAvg has no parameters beyond ``[client]`` (local epochs, lr, batch, fraction_train)."""


@register
class FedAvgStrategy(FederatedStrategy):
    """FedAvg (McMahan et al. 2017) through ``flwr.serverapp.strategy.FedAvg``."""

    name = "fedavg"
    Params = FedAvgParams

    def make_inner(self) -> Strategy:
        return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)

