"""What a gateway node says about itself: its devices (from ``partition-id``) and its Ray node."""

from __future__ import annotations

import subprocess
import sys

import pytest
from flwr.app import Context, Message, MessageType, RecordDict

from edgeupdate.clients.gateway import make_client_app
from edgeupdate.clients.host import host_of, ray_node_id, with_host
from edgeupdate.messages import read_replies, reply_message, task_message
from edgeupdate.runtime import build_runtime
from tests.conftest import REPO


@pytest.fixture(scope="module")
def runtime(tiny_config_module):
    return build_runtime(tiny_config_module)


@pytest.fixture(scope="module")
def tiny_config_module():
    from edgeupdate.configs import load_config
    from tests.conftest import TINY

    return load_config(REPO / "configs" / "quickstart.toml", [*TINY, "simulation.devices_per_node=1"])


@pytest.mark.parametrize("node_config, problem", [
    ({}, r"this node has no integer partition-id \(node config \{\}\): start it with flower-supernode "
         r"--node-config 'partition-id=N', N = 0\.\.2"),
    ({"partition-id": "1"}, "no integer partition-id"),
    ({"partition-id": 3}, r"partition-id 3 is out of range: this run has 3 nodes \(0\.\.2\)"),
])
def test_a_node_without_a_valid_partition_id_says_how_to_start_it(runtime, node_config, problem):
    with pytest.raises(ValueError, match=problem):
        runtime.devices_of_node(node_config)


def test_a_node_serves_the_devices_of_its_partition(runtime):
    assert list(runtime.devices_of_node({"partition-id": 2})) == [2]


def test_outside_ray_a_node_names_no_ray_node_and_never_imports_ray():
    code = ("import sys; from edgeupdate.clients.host import ray_node_id; "
            "assert ray_node_id() == '' and 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_the_run_start_reply_carries_the_host_record(runtime, server_task_identity):
    app = make_client_app(lambda _ctx: runtime)
    context = Context(run_id=1, node_id=7, node_config={"partition-id": 1}, state=RecordDict(), run_config={})
    hello = task_message(7, MessageType.TRAIN, 0, {})
    reply = app(hello, context)
    assert [r.device_id for r in read_replies(reply)] == [1]
    assert "host" in reply.content and host_of(reply) == ray_node_id()  # "" here: this process runs no Ray
    plain = reply_message(hello, [])
    assert "host" not in plain.content and host_of(plain) == ""
    assert "host" in with_host(plain).content
