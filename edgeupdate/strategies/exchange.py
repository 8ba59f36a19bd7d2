"""Send one phase's messages and collect the replies, reporting devices answered as they arrive.

Flower's ``Grid.send_and_receive`` pushes the messages, then pulls until every reply is in or the
timeout passes, and only then returns. :func:`exchange` does the same (same pull interval as the
grid's own loop) and calls ``on_progress(devices answered, devices asked)`` after every pull, so a
long round can show how far it is. A node's reply answers for all its devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flwr.app import Message
from flwr.serverapp import Grid

from edgeupdate import protocol as P

Progress = Callable[[int, int], None]  # (devices answered, devices asked)


def devices_in(msg: Message) -> int:
    """How many devices a task or reply message speaks for (0 for an error reply)."""
    if msg.has_error():
        return 0
    for name in (P.REPLY, "devices"):
        if name in msg.content:
            return len(msg.content[name]["device_id"])
    return 0


def exchange(grid: Grid, messages: Iterable[Message], timeout: float,
             on_progress: Progress | None = None) -> list[Message]:
    """``grid.send_and_receive(messages, timeout=timeout)``, with progress reports."""
    messages = list(messages)
    if on_progress is None:
        return list(grid.send_and_receive(messages, timeout=timeout))
    asked = {}
    for msg, msg_id in zip(messages, grid.push_messages(messages)):
        asked[msg_id] = devices_in(msg)
    total, answered = sum(asked.values()), 0
    pending = set(asked)
    interval = float(getattr(grid, "pull_interval", 3.0))  # the in-memory grid's, else the HTTP grid's 3 s
    end = time.time() + timeout
    replies: list[Message] = []
    on_progress(0, total)
    while pending and time.time() < end:
        arrived = list(grid.pull_messages(pending))
        replies.extend(arrived)
        for msg in arrived:
            pending.discard(msg.metadata.reply_to_message_id)
            answered += asked.get(msg.metadata.reply_to_message_id, 0)
        on_progress(answered, total)
        if pending:
            time.sleep(interval)
    return replies
