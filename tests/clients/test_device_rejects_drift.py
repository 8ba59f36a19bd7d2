"""A device never deploys weights that differ from the server's: drift and wrong bases are rejected
with a reason that reaches the server (the metrics' ``status`` and ``reason`` columns)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from flwr.app import Context, Message, MessageType, Metadata, RecordDict

from edgeupdate import protocol as P
from edgeupdate.algorithms.factorized import CompactConfig, build_package, compact_refine
from edgeupdate.clients.device import DeviceServices, try_apply
from edgeupdate.clients.gateway import make_client_app
from edgeupdate.messages import PUSH, read_replies, task_message
from edgeupdate.store import ModelStore
from edgeupdate.runtime import build_runtime
from edgeupdate.training import TrainConfig
from edgeupdate.updates import reconstitution, state_hash


@pytest.fixture(scope="module")
def setup(tiny_config_module):
    runtime = build_runtime(tiny_config_module)
    base = runtime.initial_state
    data = runtime.train_subset(runtime.layout.train_rows()[:64])
    result = compact_refine(runtime.new_model(), base, data, TrainConfig(epochs=1, batch_size=16), CompactConfig("ka", n=2),
                            seed=3)
    payload = build_package(result, base, base_version=0, target_version=1).encode(runtime.signing_key())
    return runtime, result, payload


@pytest.fixture(scope="module")
def tiny_config_module():
    from edgeupdate.configs import load_config
    from tests.conftest import REPO, TINY

    return load_config(REPO / "configs" / "quickstart.toml", [*TINY, "strategy.name='ka'", "strategy.params={n=2}"])


def _context(device_id: int = 0) -> Context:
    return Context(run_id=1, node_id=100 + device_id, node_config={"partition-id": device_id}, state=RecordDict(),
                   run_config={})


def _device(runtime, tmp_path):
    services = DeviceServices.create(runtime, ModelStore(tmp_path, {runtime.initial_hash: runtime.initial_state}))
    return services, services.factory_record(0)


def _drifting_rule(monkeypatch) -> None:
    """The device's KA arithmetic differs from the server's in one weight by one ulp."""
    exact = reconstitution.RULES["ka"]

    def drifted(current, factors, params):
        out = exact(current, factors, params).clone()
        flat = out.view(-1)
        flat[0] = torch.nextafter(flat[0], torch.tensor(float("inf"), dtype=flat.dtype))
        return out

    monkeypatch.setitem(reconstitution.RULES, "ka", drifted)


def test_device_reconstitution_matches_the_server_and_is_applied(setup, tmp_path):
    runtime, result, payload = setup
    services, state = _device(runtime, tmp_path)

    status, reason, _ = try_apply(services, state, payload)

    assert (status, reason) == (P.DeviceStatus.APPLIED, "")
    assert state.version == 1 and state.hash == state_hash(result.state)


def test_drifting_reconstitution_is_rejected_with_the_hash_mismatch_as_reason(setup, monkeypatch, tmp_path):
    runtime, _, payload = setup
    _drifting_rule(monkeypatch)
    services, state = _device(runtime, tmp_path)

    status, reason, _ = try_apply(services, state, payload)

    assert status == P.DeviceStatus.REJECTED
    assert "result hash" in reason and "differs from target version 1" in reason
    assert state.version == 0 and state_hash(services.weights(state)) == runtime.initial_hash  # old model kept


def test_device_whose_weights_differ_from_the_base_rejects_a_ka_package(setup, tmp_path):
    runtime, _, payload = setup
    services, state = _device(runtime, tmp_path)
    weights = {k: v.clone() for k, v in runtime.initial_state.items()}
    first = next(k for k, v in weights.items() if v.dim() == 2)
    weights[first][0, 0] += 1e-3
    state.hash = services.store.put(weights)  # the device holds other weights than version 0

    status, reason, _ = try_apply(services, state, payload)

    assert status == P.DeviceStatus.REJECTED and "built for base version 0" in reason
    assert state.version == 0


def test_rejection_reason_reaches_the_server_in_the_evaluate_reply(setup, monkeypatch, server_task_identity):
    runtime, _, payload = setup
    _drifting_rule(monkeypatch)
    app = make_client_app(lambda _ctx: runtime)
    msg = task_message(100, MessageType.EVALUATE, 1, {0: {"task": PUSH, "package": payload, "target_version": 1}})
    meta = Metadata(run_id=1, message_id="m-1", src_node_id=0, dst_node_id=100, reply_to_message_id="", group_id="",
                    created_at=time.time(), ttl=3600.0, message_type=MessageType.EVALUATE)
    msg = Message(msg.content, metadata=meta)

    reply = app(msg, _context())

    (rep,) = read_replies(reply)
    assert rep.status == P.DeviceStatus.REJECTED and "result hash" in rep.reason
    assert rep.model_version == 0 and rep.model_hash == runtime.initial_hash
    assert rep.metrics["bytes_down_received"] == len(payload)
