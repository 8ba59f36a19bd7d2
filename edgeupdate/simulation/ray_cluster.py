"""Which Ray the simulation engine uses, and which Ray nodes served the devices.

``simulation.ray_address = ""`` starts a private local Ray (``address="local"``: never one that a
``ray start`` left running on the machine); ``"auto"`` or ``"host:port"`` attaches to a running
Ray cluster, whose nodes bring their own CPUs (``simulation.num_cpus`` must stay 0). Flower's Ray
backend passes these arguments to ``ray.init``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from edgeupdate.configs.schema import SimulationConfig


def ray_init_args(sim: SimulationConfig) -> dict[str, Any]:
    """``ray.init`` arguments for ``sim``: a local Ray with its CPU pool, or a cluster's address."""
    if sim.ray_address:
        return {"address": sim.ray_address}
    return {"address": "local", "num_cpus": sim.num_cpus or os.cpu_count() or 1}


def ray_nodes_served(hosts: Mapping[int, str]) -> dict[str, list[int]]:
    """Ray node id → the devices whose node answered the run-start request there (device → Ray node
    id in ``hosts``; devices answered outside Ray, id ``""``, are left out)."""
    served: dict[str, list[int]] = {}
    for device, node in sorted(hosts.items()):
        if node:
            served.setdefault(node, []).append(device)
    return served
