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

from edgeupdate.configs.schema import ExperimentConfig
from edgeupdate.fleet.gateways import node_count, node_workers
from edgeupdate.simulation.local_ray import LocalRay


def ray_init_args(cfg: ExperimentConfig, head_address: str | None = None) -> dict[str, Any]:
    """``ray.init`` arguments for ``cfg``: a cluster's address (``simulation.ray_address``), else the
    address of the private head this run started (:class:`~edgeupdate.simulation.local_ray.LocalRay`),
    else a private local Ray that ``ray.init`` starts with the run's CPU pool."""
    if cfg.simulation.ray_address:
        return {"address": cfg.simulation.ray_address}
    if head_address:
        return {"address": head_address}
    return {"address": "local", "num_cpus": local_num_cpus(cfg)}


def local_num_cpus(cfg: ExperimentConfig) -> int:
    """The CPU pool of a local Ray, one node worker per CPU: ``simulation.num_cpus``, or else one
    per core for as many nodes as there are, and one for a small run
    (:func:`~edgeupdate.fleet.gateways.node_workers`)."""
    sim = cfg.simulation
    if sim.num_cpus:
        return sim.num_cpus
    nodes = node_count(cfg.num_devices, sim.devices_per_node)
    return node_workers(cfg.num_devices, cfg.rounds, nodes, os.cpu_count() or 1)


def start_private_ray(cfg: ExperimentConfig) -> LocalRay | None:
    """Start ``cfg``'s private Ray head in the background (``None`` when it attaches to a cluster),
    so that it comes up while the caller imports and loads the rest."""
    return None if cfg.simulation.ray_address else LocalRay(local_num_cpus(cfg)).start_in_background()


def ray_nodes_served(hosts: Mapping[int, str]) -> dict[str, list[int]]:
    """Ray node id → the devices whose node answered the run-start request there (device → Ray node
    id in ``hosts``; devices answered outside Ray, id ``""``, are left out)."""
    served: dict[str, list[int]] = {}
    for device, node in sorted(hosts.items()):
        if node:
            served.setdefault(node, []).append(device)
    return served
