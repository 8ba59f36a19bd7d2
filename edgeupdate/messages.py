"""Messages between the server and a gateway node, as Flower records (see :mod:`edgeupdate.protocol`).

One Flower node serves a group of devices, as a LoRa gateway or an edge server does, so the server
sends one message per node and phase, and the node answers for all its devices in one reply. Both
are column-wise (one list per field, one entry per device), and every distinct payload travels once
per message: a device's task names its payload by digest (and, for a transfer the deadline cut, by
how many of its bytes arrived). ``bytes_down`` / ``bytes_up`` stay per device: the bytes that device
sends or receives on its own simulated link.

Task message  ``task`` (ConfigRecord: round and the fields every device of the phase shares, e.g.
FedProx's ``proximal-mu`` or the upload encoding), ``devices`` (ConfigRecord of columns, one entry
per device: :data:`TASK_FIELDS`), ``payloads`` (ConfigRecord: digest → bytes).
Reply  ``reply`` (ConfigRecord of columns: :data:`REPLY_FIELDS`, payloads inline: uploads differ per
device) and ``metrics`` (ConfigRecord of float columns, NaN where a device has no such metric).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict

from edgeupdate import protocol as P

#: Per-device task columns and their defaults (what a device does when the field is absent).
TASK_FIELDS: dict[str, Any] = {
    "task": P.TASK_STATUS,  # collect | fit | status (TRAIN); push (EVALUATE)
    "payload": "",  # digest of the payload in ``payloads`` ("" = none)
    "payload_len": -1,  # bytes of it that arrived (-1 = all)
    "link": P.LINK_OK,
    "required_memory_bytes": 0,
    "crash_point": -1.0,
    "target_version": 0,
    "upload_acked": False,
    "base_hash": "",
    "base_version": 0,
}
REPLY_FIELDS = ("device_id", "model_version", "model_hash", "status", "reason", "payload")
PUSH = "push"


def digest(payload: bytes) -> str:
    """The name a payload travels under in a message."""
    return hashlib.sha256(payload).hexdigest()


@dataclass
class DeviceTask:
    """One device's part of a task message, as the node reads it."""

    device_id: int
    fields: dict[str, Any]
    payload: bytes = b""
    digest: str = ""  # the payload's digest as it travelled ("" when none, or when only part of it arrived)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def task_message(node_id: int, message_type: str, round_: int, tasks: Mapping[int, Mapping[str, Any]],
                 common: Mapping[str, Any] | None = None) -> Message:
    """The message for one node: ``tasks`` maps device id → its task fields; a ``package`` (bytes) is
    entered once in the payload table under its digest; fields outside :data:`TASK_FIELDS` must be
    the same for every device and travel once, with ``common``."""
    table: dict[str, bytes] = {}
    shared: dict[str, Any] = {"round": round_, **(common or {})}
    ids = sorted(tasks)
    seen: dict[int, str] = {}  # id(bytes) -> digest: a payload shared by many devices is hashed once
    columns: dict[str, list[Any]] = {"device_id": ids}
    for name, default in TASK_FIELDS.items():
        columns[name] = []
    for dev in ids:
        task = dict(tasks[dev])
        package = task.pop("package", b"")
        if package:
            name = seen.get(id(package)) or digest(package)
            seen[id(package)] = name
            table.setdefault(name, package)
            task["payload"] = name
        for key in [k for k in task if k not in TASK_FIELDS]:
            if key in shared and shared[key] != task[key]:
                raise ValueError(f"task field {key!r} differs between the devices of node {node_id}")
            shared[key] = task.pop(key)
        for name, default in TASK_FIELDS.items():
            value = task.get(name, default)
            columns[name].append(type(default)(value))
    content = RecordDict({P.TASK: ConfigRecord(shared), "devices": ConfigRecord(columns),
                          "payloads": ConfigRecord(table)})
    return Message(content, dst_node_id=node_id, message_type=message_type)


def read_tasks(msg: Message) -> tuple[dict[str, Any], list[DeviceTask]]:
    """``(shared fields, one DeviceTask per device)`` of a task message."""
    shared = dict(msg.content[P.TASK])
    if "devices" not in msg.content:
        return shared, []
    columns = dict(msg.content["devices"])
    table = msg.content["payloads"]
    tasks = []
    for i, dev in enumerate(columns["device_id"]):
        fields = {**shared, **{name: columns[name][i] for name in TASK_FIELDS}}
        payload = bytes(table[fields["payload"]]) if fields["payload"] else b""
        name = fields["payload"]
        if fields["payload_len"] >= 0:
            payload, name = payload[:fields["payload_len"]], ""
        tasks.append(DeviceTask(int(dev), fields, payload, name))
    return shared, tasks


@dataclass
class DeviceReply:
    """One device's answer, as the node writes it."""

    device_id: int
    model_version: int
    model_hash: str
    status: str
    reason: str = ""
    payload: bytes = b""
    metrics: dict[str, float] | None = None


def reply_message(msg: Message, replies: Sequence[DeviceReply]) -> Message:
    """The node's answer to ``msg``: every device's reply, column-wise."""
    columns: dict[str, list[Any]] = {f: [] for f in REPLY_FIELDS}
    for r in replies:
        columns["device_id"].append(int(r.device_id))
        columns["model_version"].append(int(r.model_version))
        columns["model_hash"].append(str(r.model_hash))
        columns["status"].append(str(r.status))
        columns["reason"].append(str(r.reason))
        columns["payload"].append(bytes(r.payload))
    names = sorted({k for r in replies for k in (r.metrics or {})})
    metrics = {k: [float((r.metrics or {}).get(k, math.nan)) for r in replies] for k in names}
    return Message(RecordDict({P.REPLY: ConfigRecord(columns), P.METRICS: ConfigRecord(metrics)}), reply_to=msg)


def read_replies(msg: Message) -> list[P.DeviceReport]:
    """Every device's report in a node's reply (a metric a device did not report is absent)."""
    node = msg.metadata.src_node_id
    columns = msg.content[P.REPLY]
    metric_columns = dict(msg.content[P.METRICS])
    reports = []
    for i, dev in enumerate(columns["device_id"]):
        metrics = {k: v[i] for k, v in metric_columns.items() if not (isinstance(v[i], float) and math.isnan(v[i]))}
        reports.append(P.DeviceReport(node, int(dev), int(columns["model_version"][i]), str(columns["model_hash"][i]),
                                      P.DeviceStatus(str(columns["status"][i])), bytes(columns["payload"][i]),
                                      metrics, str(columns["reason"][i])))
    return reports


__all__ = ["PUSH", "REPLY_FIELDS", "TASK_FIELDS", "DeviceReply", "DeviceTask", "MessageType", "digest",
           "read_replies", "read_tasks", "reply_message", "task_message"]
