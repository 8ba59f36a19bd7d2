"""Which Ray the simulation engine uses, and which Ray nodes served the devices.

``simulation.ray_address = ""`` starts a private local Ray: a lean head of the run's own with warm
workers (:mod:`edgeupdate.simulation.local_ray`), never one that a ``ray start`` left running on the
machine. ``"auto"`` or ``"host:port"`` attaches to a running Ray cluster, whose nodes bring their own
CPUs (``simulation.num_cpus`` must stay 0); Flower's Ray backend passes :func:`ray_init_args` to
``ray.init``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from edgeupdate.configs.schema import SimulationConfig
from edgeupdate.simulation.local_ray import LocalRay


def ray_init_args(sim: SimulationConfig, head_address: str | None = None) -> dict[str, Any]:
    """``ray.init`` arguments for ``sim``: a cluster's address (``sim.ray_address``), else the
    address of the private head this run started (:class:`~edgeupdate.simulation.local_ray.LocalRay`),
    else a private local Ray that ``ray.init`` starts with the run's CPU pool."""
    if sim.ray_address:
        return {"address": sim.ray_address}
    if head_address:
        return {"address": head_address}
    return {"address": "local", "num_cpus": local_num_cpus(sim)}


def local_num_cpus(sim: SimulationConfig) -> int:
    """The CPU pool of a local Ray: ``simulation.num_cpus``, or one per core."""
    return sim.num_cpus or os.cpu_count() or 1


def start_private_ray(sim: SimulationConfig) -> LocalRay | None:
    """Start ``sim``'s private Ray head in the background (``None`` when ``sim`` attaches to a
    cluster), so that it comes up while the caller imports and loads the rest."""
    return None if sim.ray_address else LocalRay(local_num_cpus(sim)).start_in_background()


def ray_nodes_served(hosts: Mapping[int, str]) -> dict[str, list[int]]:
    """Ray node id → the devices whose node answered the run-start request there (device → Ray node
    id in ``hosts``; devices answered outside Ray, id ``""``, are left out)."""
    served: dict[str, list[int]] = {}
    for device, node in sorted(hosts.items()):
        if node:
            served.setdefault(node, []).append(device)
    return served
