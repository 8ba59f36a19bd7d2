"""The federated family's base: devices train, Flower's own strategy aggregates.

:class:`FederatedStrategy` wraps an inner ``flwr.serverapp.strategy`` instance and drives it
through Flower's own two calls each round, so every piece of server state Flower keeps (FedOpt's
``current_arrays``/m_t/v_t, FedAvgM's momentum, q-FedAvg's global weights) and every hyper-parameter
it sends (FedProx's ``proximal-mu``) comes from Flower, not from a re-implementation:

1. ``configure_train``: the wrapper samples the round's devices (seeded, ``client.fraction_train``)
   and calls the inner ``configure_train`` with the deployed global model and a grid that offers
   exactly those nodes; the inner strategy's config entries (minus ``server-round``) are added to
   each device's fit task, next to the upload spec (``strategy.params.upload``).
2. ``aggregate_train``: each device's upload — an encoded package against the global model —
   is decoded and applied, wrapped as the ``ArrayRecord`` + ``MetricRecord`` reply Flower expects
   (``num-examples``, ``train_loss``, ``loss_before``), and passed to the inner ``aggregate_train``.

The aggregate is then released to every device like any other version, so bytes are measured the
same way for both families. Concrete strategies (FedAvg and friends) live in :mod:`edgeupdate.strategies.fl_strategies`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from edgeupdate import protocol as P
from edgeupdate.seeding import numpy_rng
from edgeupdate.strategies.base import EdgeStrategy
from edgeupdate.strategies.fl_params import FederatedParams
from edgeupdate.strategies.versions import DeviceView
from edgeupdate.updates import StateDict, UpdatePackage

#: Keys of the ``MetricRecord`` in every reply handed to the inner strategy.
REPLY_METRICS = ("num-examples", "train_loss", "loss_before")


class SampledNodes:
    """The part of Flower's ``Grid`` an inner strategy's ``configure_train`` uses: the node ids.

    It offers this round's sampled devices (a device id stands in for a node: one node may serve
    many devices), so the inner strategy (built with ``fraction_train=1.0``) configures exactly
    the devices the wrapper chose.
    """

    def __init__(self, node_ids: Iterable[int]) -> None:
        self._nodes = sorted(node_ids)

    def get_node_ids(self) -> list[int]:
        return list(self._nodes)


class FederatedStrategy(EdgeStrategy):
    """Base for FL strategies; subclasses say which Flower strategy aggregates (:meth:`make_inner`)."""

    Params: type = FederatedParams
    #: devices also report ``loss_before``, F_k(w_global) (a pass over their data before training)
    needs_loss_before: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.params, FederatedParams):
            raise TypeError(f"{type(self).__name__}.Params must derive from FederatedParams, "
                            f"got {type(self.params).__name__}")
        self.inner = self.make_inner()
        self.inner_config: dict[str, Any] = {}

    def make_inner(self) -> Strategy:
        """The Flower strategy that aggregates (built once; it keeps its own state across rounds)."""
        raise NotImplementedError

    @staticmethod
    def inner_defaults() -> dict[str, Any]:
        """Constructor arguments every inner strategy gets: sampling is the wrapper's job."""
        return {"fraction_train": 1.0, "fraction_evaluate": 0.0, "min_train_nodes": 1,
                "min_evaluate_nodes": 0, "min_available_nodes": 1}

    def sampled(self, round_: int) -> set[int]:
        """Devices that train this round: a seeded sample of ``client.fraction_train`` (drawn once
        per round; every device's task asks)."""
        memo = getattr(self, "_sampled", None)
        if memo is not None and memo[0] == round_:
            return memo[1]
        ids = self.store.device_ids()
        count = max(1, round(self.cfg.client.fraction_train * len(ids)))
        chosen = set(numpy_rng(self.cfg.seed, "sample", round_).choice(ids, size=count, replace=False).tolist())
        self._sampled = (round_, chosen)
        return chosen

    # ------------------------------------------------------------ Flower API
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        chosen = self.sampled(server_round)
        inner_messages = list(self.inner.configure_train(server_round, ArrayRecord(self.latest.weights),
                                                         ConfigRecord(), SampledNodes(chosen)))
        inner_config = dict(inner_messages[0].content.config_records.get("config", {})) if inner_messages else {}
        inner_config.pop("server-round", None)
        self.inner_config = inner_config
        return super().configure_train(server_round, arrays, config, grid)

    # ------------------------------------------------------------------ hooks
    def train_task(self, round_: int, view: DeviceView) -> dict[str, Any] | None:
        if view.device_id not in self.sampled(round_):
            return None
        task: dict[str, Any] = {"task": P.TASK_FIT, "base_version": self.latest.number,
                                "base_hash": self.latest.hash, **self.inner_config, **self.params.upload.to_task()}
        if self.needs_loss_before:
            task["loss-before"] = True
        if view.hash != self.latest.hash:
            task["package"] = self.package_for(view).payload
        return task

    def next_model(self, round_: int, reports: list[P.DeviceReport]) -> StateDict | None:
        replies = [self.as_flower_reply(r) for r in reports if r.payload]
        if not replies:
            return None
        self.log.server_flops = 3.0 * len(replies) * sum(v.numel() for v in self.latest.weights.values())
        arrays, _ = self.inner.aggregate_train(round_, replies)
        if arrays is None:
            return None
        new = arrays.to_torch_state_dict()
        return {k: new[k].to(v.dtype).reshape(v.shape) for k, v in self.latest.weights.items()}

    def as_flower_reply(self, report: P.DeviceReport) -> Message:
        """A device's upload as the TRAIN reply a Flower strategy aggregates."""
        weights = UpdatePackage.decode(report.payload).apply(self.latest.weights, state_hash_known=self.latest.hash)
        metrics = MetricRecord({"num-examples": int(report.metrics["num-examples"]),
                                "train_loss": float(report.metrics.get("train_loss", 0.0)),
                                "loss_before": float(report.metrics.get("loss_before", 0.0))})
        content = RecordDict({"arrays": ArrayRecord(weights), "metrics": metrics})
        return Message(content, dst_node_id=report.device_id, message_type=MessageType.TRAIN)
