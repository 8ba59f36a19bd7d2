"""A device that does not answer is recorded ``lost`` and the round goes on; the server keeps
every state it may hold until it reports again."""

from __future__ import annotations

import time

import pytest
from flwr.app import Error, Message, MessageType, Metadata

from edgeupdate import protocol as P
from edgeupdate.messages import DeviceReply, reply_message, task_message
from edgeupdate.runtime import build_runtime
from edgeupdate.simulation.metrics import MetricsCollector
from edgeupdate.strategies.resolve import resolve_strategy
from edgeupdate.strategies.versions import ModelVersion


@pytest.fixture
def strategy():
    from edgeupdate.configs import load_config
    from tests.conftest import REPO, TINY

    cfg = load_config(REPO / "configs" / "quickstart.toml", TINY)
    choice = resolve_strategy(cfg)
    return choice.cls(build_runtime(cfg), choice.params, MetricsCollector(), {0: 100, 1: 100, 2: 101})


def _from(node: int, msg: Message) -> Message:
    """``msg`` as it arrives from ``node`` (Flower fills the source in)."""
    meta = Metadata(run_id=1, message_id=f"r-{node}", src_node_id=node, dst_node_id=0, reply_to_message_id="m",
                    group_id="", created_at=time.time(), ttl=3600.0, message_type=MessageType.EVALUATE)
    return Message(msg.content, metadata=meta) if not msg.has_error() else Message(msg.error, metadata=meta)


def test_devices_of_a_silent_or_failed_node_are_lost_and_the_others_count(strategy, server_task_identity):
    strategy._messages(MessageType.EVALUATE, 1, {100: {0: {}, 1: {}}, 101: {2: {}}})
    h0 = strategy.views[0].hash
    ok = reply_message(task_message(100, MessageType.EVALUATE, 1, {}),
                       [DeviceReply(0, 0, h0, P.DeviceStatus.NO_UPDATE), DeviceReply(1, -1, "", P.DeviceStatus.LOST, "died")])

    silent = strategy._reports([_from(100, ok)])
    failed = strategy._reports([_from(100, ok), _from(101, Message(Error(code=0, reason="node crashed\ntrace"),
                                                                    reply_to=task_message(101, "evaluate", 1, {})))])

    assert [(r.device_id, r.status) for r in silent] == [(0, "no_update"), (1, "lost"), (2, "lost")]
    assert silent[2].reason == "its node 101 did not reply within the round timeout"
    assert failed[2].reason == "its node 101 failed: node crashed"
    assert (silent[1].model_version, silent[1].model_hash) == (0, h0)  # what the server last knew


def test_a_device_lost_while_its_package_was_under_way_may_hold_its_target(strategy, server_task_identity):
    v1 = ModelVersion(1, {k: v + 1 for k, v in strategy.latest.weights.items()}, "hash-v1")
    strategy.store.release(1, v1)
    strategy._messages(MessageType.EVALUATE, 1, {101: {2: {}}})
    strategy._sent_targets = {2: v1.hash}
    strategy._reports([])  # device 2 never answered
    view = strategy.views[2]
    assert view.maybe == ("hash-v1",) and view.version == 0

    v2 = ModelVersion(2, {k: v + 2 for k, v in strategy.latest.weights.items()}, "hash-v2")
    strategy.store.release(2, v2)
    strategy.store.forget_unheld()
    assert "hash-v1" in strategy.store.states  # nobody is known to hold it, but device 2 may

    strategy._sent_targets = {}
    done = Message(reply_message(task_message(101, MessageType.EVALUATE, 2, {}),
                                 [DeviceReply(2, 1, "hash-v1", P.DeviceStatus.REJECTED, "stale base")]).content,
                   metadata=_from(101, task_message(0, MessageType.EVALUATE, 2, {})).metadata)
    (report,) = strategy._reports([done])
    assert report.status == P.DeviceStatus.REJECTED and (view.version, view.hash, view.maybe) == (1, "hash-v1", ())
