"""``simulation.ray_address``: the simulation engine on a running Ray cluster, and which Ray nodes
served the devices (``summary.json``: ``ray_nodes``)."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from edgeupdate.configs import ConfigError
from edgeupdate.simulation.ray_cluster import local_num_cpus, ray_init_args, ray_nodes_served
from edgeupdate.simulation.runner import run_experiment


def test_an_empty_ray_address_starts_a_private_local_ray_and_an_address_attaches(tiny_config):
    local = tiny_config("simulation.num_cpus=2")
    assert ray_init_args(local) == {"address": "local", "num_cpus": 2}  # never a `ray start` left running
    cluster = tiny_config("simulation.ray_address='10.0.0.5:6379'")
    assert ray_init_args(cluster) == {"address": "10.0.0.5:6379"}  # the cluster's CPUs, not ours


def test_a_small_run_gets_one_node_worker_and_a_larger_one_a_worker_per_core_up_to_its_nodes(tiny_config,
                                                                                            monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert local_num_cpus(tiny_config("num_devices=10", "rounds=6")) == 1  # the quickstart: 60 device-rounds
    assert local_num_cpus(tiny_config("num_devices=10", "rounds=20")) == 5  # 5 nodes of 2 devices
    assert local_num_cpus(tiny_config("num_devices=1000", "rounds=3")) == 8  # 20 nodes, 8 cores
    assert local_num_cpus(tiny_config("num_devices=10", "rounds=6", "simulation.num_cpus=3")) == 3  # as set


@pytest.mark.parametrize("overrides, problem", [
    (["simulation.ray_address='head-node'"], 'ray_address must be "", "auto" or "host:port"'),
    (["simulation.ray_address='head:99999'"], 'ray_address must be "", "auto" or "host:port"'),
    (["simulation.ray_address='auto'", "simulation.num_cpus=2"], "num_cpus must be 0 with ray_address"),
])
def test_a_bad_ray_address_is_one_config_error(tiny_config, overrides, problem):
    with pytest.raises(ConfigError, match=problem):
        tiny_config(*overrides)


def test_ray_nodes_served_groups_devices_by_ray_node_and_leaves_out_non_ray_replies():
    assert ray_nodes_served({3: "b", 0: "a", 2: "a", 1: ""}) == {"a": [0, 2], "b": [3]}


@pytest.mark.slow
@pytest.mark.sim
def test_a_two_node_ray_cluster_serves_the_devices_of_a_run(tiny_config, tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    # Ray records "the latest cluster" under its temp dir, and plain ray.init() elsewhere on the
    # machine would join it: keep this cluster's files private (a short path: Ray's socket names).
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        cfg = tiny_config("num_devices=4", "simulation.devices_per_node=1", "training.epochs=1",
                          f"simulation.ray_address='{cluster.address}'")
        summary = run_experiment(cfg, tmp_path / "out", progress=False)
        cluster_nodes = {node.node_id for node in cluster.list_all_nodes()}
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert len(cluster_nodes) == 2
    assert set(summary["ray_nodes"]) == cluster_nodes  # both nodes served devices
    assert sorted(d for devices in summary["ray_nodes"].values() for d in devices) == [0, 1, 2, 3]
    assert summary["status_counts"] == {"applied": 8}
