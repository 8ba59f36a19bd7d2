"""A node writes its devices' state at the end of every round and restores it on resume."""

from __future__ import annotations

import time

import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, Metadata, RecordDict

from edgeupdate import protocol as P
from edgeupdate.clients import gateway
from edgeupdate.clients.gateway import make_client_app
from edgeupdate.clients.node_state import load_node_state, partition_dir, save_node_state
from edgeupdate.messages import PUSH, read_replies, task_message
from edgeupdate.runtime import build_runtime


def _state(version: int) -> RecordDict:
    return RecordDict({"device_records": ConfigRecord({"device_id": [0], "version": [version]})})


def test_the_newest_state_of_the_asked_round_or_before_is_restored(tmp_path):
    for r in (1, 2, 3):
        save_node_state(_state(r), tmp_path, partition_id=4, round_=r)

    assert sorted(p.name for p in partition_dir(tmp_path, 4).iterdir()) == ["round-2.pkl", "round-3.pkl"]
    assert load_node_state(tmp_path, 4, through_round=2)["device_records"]["version"] == [2]
    assert load_node_state(tmp_path, 4, through_round=9)["device_records"]["version"] == [3]
    assert load_node_state(tmp_path, 4, through_round=1) is None  # pruned: round 2 is the oldest kept
    assert load_node_state(tmp_path, 5, through_round=3) is None  # a node that never wrote


@pytest.fixture(scope="module")
def runtime(request):
    from edgeupdate.configs import load_config
    from tests.conftest import REPO, TINY

    return build_runtime(load_config(REPO / "configs" / "quickstart.toml", [*TINY, "simulation.devices_per_node=3"]))


def _deliver(app, msg: Message, node_id: int, context: Context) -> Message:
    meta = Metadata(run_id=1, message_id=f"m-{time.monotonic_ns()}", src_node_id=0, dst_node_id=node_id,
                    reply_to_message_id="", group_id="", created_at=time.time(), ttl=3600.0,
                    message_type=msg.metadata.message_type)
    return app(Message(msg.content, metadata=meta), context)


def test_a_device_whose_handler_raises_is_lost_and_its_node_goes_on(runtime, tmp_path, monkeypatch,
                                                                     server_task_identity):
    real_push = gateway.push

    def push(services, record, fields, payload, digest):
        if record.device_id == 1:
            raise MemoryError("the device ran out of memory")
        return real_push(services, record, fields, payload, digest)

    monkeypatch.setattr(gateway, "push", push)
    app = make_client_app(lambda _ctx: runtime)
    context = Context(run_id=1, node_id=100, node_config={"partition-id": 0}, state=RecordDict(), run_config={})
    tasks = {d: {"task": PUSH, "target_version": 0} for d in runtime.node_devices(0)}
    msg = task_message(100, MessageType.EVALUATE, 1, tasks, common={"checkpoint": str(tmp_path)})

    reports = {r.device_id: r for r in read_replies(_deliver(app, msg, 100, context))}

    lost = reports.pop(1)
    assert lost.status == P.DeviceStatus.LOST and lost.reason == "device handler raised MemoryError: the device ran out of memory"
    assert lost.model_hash == "" and lost.model_version == -1  # the node cannot say what a lost device holds
    assert all(r.status == P.DeviceStatus.NO_UPDATE and r.model_hash == runtime.initial_hash for r in reports.values())
    assert (partition_dir(tmp_path, 0) / "round-1.pkl").exists()  # the round's end, written before answering


def test_a_resumed_node_restores_its_devices_before_it_answers(runtime, tmp_path, server_task_identity):
    app = make_client_app(lambda _ctx: runtime)
    saved = Context(run_id=1, node_id=100, node_config={"partition-id": 0}, state=RecordDict(), run_config={})
    _deliver(app, task_message(100, MessageType.TRAIN, 0, {}), 100, saved)  # creates the records
    saved.state["device_records"]["version"] = [7 for _ in saved.state["device_records"]["version"]]
    save_node_state(saved.state, tmp_path, partition_id=0, round_=3)

    fresh = Context(run_id=2, node_id=200, node_config={"partition-id": 0}, state=RecordDict(), run_config={})
    hello = task_message(200, MessageType.TRAIN, 0, {}, common={"checkpoint": str(tmp_path), "restore_round": 3})
    reports = read_replies(_deliver(app, hello, 200, fresh))

    assert [r.device_id for r in reports] == list(runtime.node_devices(0))
    assert {r.model_version for r in reports} == {7}
