"""How a fleet maps onto the simulation's processes: devices per Flower node (a gateway) and how many
node workers (Ray worker processes, one ClientApp actor each) serve the nodes.

Pure arithmetic on the config's numbers, so that the CLI can size its Ray head before it imports
torch or Flower.
"""

from __future__ import annotations

import math

#: Runs of at most this many device-rounds (devices × rounds) get one node worker when
#: ``simulation.num_cpus = 0``. Measured on 2 cores (the quickstart, 60 device-rounds): a node worker
#: takes about 4.5 s of CPU to start (torch, Flower's actor, the device side of edgeupdate), all
#: of it while the server imports the same, and its devices then cost it about 25 ms per
#: device-round; one worker ran the quickstart in 15–16 s, two in 17–19 s. A federated run of that
#: size (compare-mnist's FedAvg, 25 device-rounds) took 14.6–15.2 s with one and 14.2–14.4 s with two.
ONE_WORKER_MAX_DEVICE_ROUNDS = 100


def devices_per_node(num_devices: int, configured: int = 0) -> int:
    """Devices per Flower node: ``configured`` when > 0, else about 2·∛N nodes (at least 4, at most
    one per device): 100 devices use 10 nodes, 10,000 use 44, 100,000 use 93. Small runs still
    spread over several nodes; large ones stay few, because Flower's simulation engine polls its
    message store for every node, a cost that grows with nodes × messages in flight."""
    if configured > 0:
        return min(configured, num_devices)
    nodes = min(num_devices, max(4, math.ceil(2 * num_devices ** (1 / 3) - 1e-9)))
    return math.ceil(num_devices / nodes)


def node_count(num_devices: int, configured: int = 0) -> int:
    """Flower nodes of a fleet of ``num_devices`` (:func:`devices_per_node` each, the last fewer)."""
    return math.ceil(num_devices / devices_per_node(num_devices, configured))


def node_workers(num_devices: int, rounds: int, nodes: int, cores: int) -> int:
    """Node workers for a local run when ``simulation.num_cpus = 0``: one per core, never more than
    there are nodes to serve, and one alone for a run of at most
    :data:`ONE_WORKER_MAX_DEVICE_ROUNDS` device-rounds, whose devices would keep a second worker
    busy for less time than it takes to start."""
    if num_devices * rounds <= ONE_WORKER_MAX_DEVICE_ROUNDS:
        return 1
    return max(1, min(cores, nodes))
