"""How a fleet maps onto Flower nodes and node workers, from the config's numbers alone."""

from __future__ import annotations

import subprocess
import sys

from edgeupdate.fleet.gateways import ONE_WORKER_MAX_DEVICE_ROUNDS, devices_per_node, node_count, node_workers


def test_nodes_grow_as_twice_the_cube_root_of_the_fleet_and_a_set_group_size_wins():
    assert [node_count(n) for n in (3, 10, 100, 10_000, 100_000)] == [3, 5, 10, 44, 93]
    assert devices_per_node(10_000) * 44 >= 10_000 > devices_per_node(10_000) * 43
    assert (devices_per_node(10, configured=3), node_count(10, configured=3)) == (3, 4)
    assert devices_per_node(5, configured=50) == 5  # a group larger than the fleet is the fleet


def test_a_small_run_gets_one_worker_a_larger_one_a_worker_per_core_but_never_more_than_its_nodes():
    assert node_workers(10, 6, nodes=5, cores=2) == 1  # the quickstart
    assert node_workers(ONE_WORKER_MAX_DEVICE_ROUNDS, 1, nodes=44, cores=2) == 1
    assert node_workers(ONE_WORKER_MAX_DEVICE_ROUNDS + 1, 1, nodes=44, cores=2) == 2
    assert node_workers(10_000, 10, nodes=44, cores=64) == 44
    assert node_workers(1_000, 3, nodes=20, cores=0) == 1


def test_sizing_a_run_imports_neither_torch_nor_flower():
    """The CLI sizes its Ray head from the config before the heavy imports start."""
    probe = ("import sys; from edgeupdate.simulation.ray_cluster import local_num_cpus; "
             "print('torch' in sys.modules, 'flwr' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr[-400:]
