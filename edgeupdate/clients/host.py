"""Where a node's reply was computed: the Ray node of the worker that ran the ClientApp.

On Flower's simulation engine every ClientApp call runs in a Ray actor; on a Ray cluster those
actors spread over the cluster's nodes. A node's answer to the run-start request carries the Ray
node id (``""`` outside Ray, e.g. on the Deployment Engine), so the server can record which Ray
nodes served which devices. Ray is never imported here: only a process that already runs Ray asks it.
"""

from __future__ import annotations

import sys

from flwr.app import ConfigRecord, Message

HOST = "host"  # the reply record naming where the reply was computed


def ray_node_id() -> str:
    """The Ray node id of this process, or ``""`` when it is not part of a running Ray instance."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return str(ray.get_runtime_context().get_node_id())


def with_host(reply: Message) -> Message:
    """``reply`` with a record naming this process's Ray node."""
    reply.content[HOST] = ConfigRecord({"ray_node_id": ray_node_id()})
    return reply


def host_of(reply: Message) -> str:
    """The Ray node id a reply names (``""`` when it names none)."""
    record = reply.content.config_records.get(HOST)
    return str(record.get("ray_node_id", "")) if record is not None else ""
