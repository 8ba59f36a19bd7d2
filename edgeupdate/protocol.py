"""What the server and the devices say to each other (the vocabulary; no Flower here).

Every model transfer is an encoded :class:`~edgeupdate.updates.UpdatePackage` carried as ``bytes``;
uploaded samples are bytes too. ``bytes_down`` / ``bytes_up`` are ``len()`` of those payloads, per
device — Flower's simulation never serialises messages, so these are the bytes a real link would
carry for the payload. One Flower node serves a group of devices; how a node's message packs the
tasks of all its devices is :mod:`edgeupdate.messages`.

TRAIN task (per device): round, task ∈ {"collect", "fit", "status"}, [package: bytes],
    [fit hyper-parameters, shared by the devices of the phase]
TRAIN reply: device_id, model_version, model_hash, payload (samples or update package), status;
    metrics num-examples, compute_flops and compute_peak_memory_bytes (on-device work, for the
    simulated clock), train_loss, and loss_before when the fit task asks for it (``loss-before``)
EVALUATE task: round, package (the bytes as they arrived: b"" = nothing new), target_version,
    link (``ok`` | ``offline`` | ``cut``: the deadline closed the link part-way),
    required_memory_bytes (announced apply cost when the package was withheld), crash_point
    (fault injection: crash at this fraction of the apply step; < 0 = no crash), upload_acked
EVALUATE reply: device_id, model_version, model_hash, status, reason; metrics accuracy, loss,
    num-examples, bytes_down_received, apply_host_s
A device that does not answer is reported ``lost`` by its node (version -1, no hash: the node
cannot know what it holds) or, when the node itself is silent, by the server.
Checkpoints: an EVALUATE message may name a ``checkpoint`` folder (the node writes its devices'
state there before answering); the run-start TRAIN message of a resumed run names it and the
``restore_round``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

TASK = "task"
REPLY = "reply"
METRICS = "metrics"

TASK_COLLECT = "collect"  # upload the samples collected this round
TASK_FIT = "fit"  # train locally (federated strategies) and upload an update package
TASK_STATUS = "status"  # only report version and hash



class DeviceStatus(StrEnum):
    """What a phase did for one device, recorded per (round, device) as ``status``/``train_status``.

    The fleet model (:mod:`edgeupdate.fleet.rounds`) decides the first five in this order:
    offline, no_memory, deadline, rejected, applied.
    """

    OFFLINE = "offline"  # the device was unreachable; nothing was transferred
    NO_MEMORY = "no_memory"  # the apply step (or local training) needs more memory than the device has
    DEADLINE = "deadline"  # the transfer did not complete before the deadline; the old model is kept
    REJECTED = "rejected"  # the package failed verification; the old model is kept
    APPLIED = "applied"  # a package arrived, verified and was applied
    NO_UPDATE = "no_update"  # nothing was sent this round (e.g. server skipped the push)
    UPLOADED = "uploaded"  # TRAIN phase: the device's samples reached the server
    TRAINED = "trained"  # TRAIN phase: the device trained and its update reached the server
    NONE = "none"  # TRAIN phase: the device had no task
    LOST = "lost"  # no answer: the device's process died, or its node did not reply within the round timeout


LINK_OK = "ok"
LINK_OFFLINE = "offline"
LINK_CUT = "cut"


@dataclass(frozen=True)
class DeviceReport:
    """A device's answer, decoded from a reply message."""

    node_id: int
    device_id: int
    model_version: int
    model_hash: str
    status: DeviceStatus
    payload: bytes
    metrics: dict[str, float]
    reason: str = ""
