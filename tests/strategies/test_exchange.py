"""A phase's messages go out and replies come back as with Flower's send_and_receive, with
progress counted in devices."""

from __future__ import annotations

import io
import time

from flwr.app import Message, MessageType, Metadata

from edgeupdate import protocol as P
from edgeupdate.messages import DeviceReply, reply_message, task_message
from edgeupdate.simulation.progress import RoundProgress
from edgeupdate.strategies.exchange import exchange, pull_waits


class SlowGrid:
    """Answers one node per pull, like nodes finishing one after another."""

    pull_interval = 0.0

    def __init__(self) -> None:
        self.sent: dict[str, Message] = {}

    def push_messages(self, messages):
        ids = []
        for i, msg in enumerate(messages):
            self.sent[f"m{i}"] = msg
            ids.append(f"m{i}")
        return ids

    def pull_messages(self, ids):
        for msg_id in sorted(ids)[:1]:
            task = self.sent[msg_id]
            devices = list(task.content["devices"]["device_id"])
            reply = reply_message(task, [DeviceReply(d, 0, "h", P.DeviceStatus.NO_UPDATE) for d in devices])
            meta = Metadata(run_id=1, message_id=f"r-{msg_id}", src_node_id=task.metadata.dst_node_id, dst_node_id=0,
                            reply_to_message_id=msg_id, group_id="", created_at=time.time(), ttl=60.0,
                            message_type=MessageType.EVALUATE)
            return [Message(reply.content, metadata=meta)]
        return []


def test_every_reply_comes_back_and_progress_counts_devices(server_task_identity):
    messages = [task_message(10, MessageType.EVALUATE, 1, {0: {}, 1: {}, 2: {}}),
                task_message(11, MessageType.EVALUATE, 1, {3: {}, 4: {}})]
    seen = []

    replies = exchange(SlowGrid(), messages, timeout=10.0, on_progress=lambda done, asked: seen.append((done, asked)))

    assert sorted(r.metadata.src_node_id for r in replies) == [10, 11]
    assert seen == [(0, 5), (3, 5), (5, 5)]


def test_without_progress_reports_every_reply_still_comes_back(server_task_identity):
    messages = [task_message(10, MessageType.EVALUATE, 1, {0: {}}), task_message(11, MessageType.EVALUATE, 1, {1: {}})]

    replies = exchange(SlowGrid(), iter(messages), timeout=10.0)  # any iterable, as Flower's configure_* return

    assert sorted(r.metadata.src_node_id for r in replies) == [10, 11]


def test_pulls_start_after_5_ms_and_back_off_to_the_grids_own_interval():
    waits = pull_waits(0.1)
    assert [round(next(waits), 3) for _ in range(8)] == [0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1, 0.1]
    assert next(pull_waits(0.0)) == 0.0


def test_a_long_phase_shows_a_bar_on_a_terminal_and_nothing_elsewhere():
    terminal, log, short = io.StringIO(), io.StringIO(), io.StringIO()
    shown = RoundProgress(rounds=10, stream=terminal, after_s=0.0, force_terminal=True)
    quiet = RoundProgress(rounds=10, stream=log, after_s=0.0, force_terminal=False)
    brief = RoundProgress(rounds=10, stream=short, after_s=60.0, force_terminal=True)  # a phase shorter than that
    for progress in (shown, quiet, brief):
        progress(3, "push", 1200, 10000)
        progress(3, "push", 10000, 10000)

    assert "round 3/10 push" in terminal.getvalue() and "1200/10000" in terminal.getvalue()
    assert log.getvalue() == "" and short.getvalue() == ""
