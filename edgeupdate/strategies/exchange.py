"""Send one phase's messages and collect the replies, reporting devices answered as they arrive.

Flower's ``Grid.send_and_receive`` pushes the messages, then pulls until every reply is in or the
timeout passes, sleeping the grid's pull interval (0.1 s in simulation) between pulls. A phase whose
replies are ready in a few milliseconds (a small fleet, a node that only checks a package) then
waits a whole interval for nothing, twice a round. :func:`exchange` pulls after 5 ms and doubles
the wait after every empty pull, up to the grid's interval (:func:`pull_waits`), and calls
``on_progress(devices answered, devices asked)`` after every pull, so a long round can show how far
it is. A node's reply answers for all its devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

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


FIRST_PULL_WAIT_S = 0.005  # the first wait between pulls; doubled after every pull that brings nothing


def pull_waits(longest_s: float) -> Iterator[float]:
    """Waits between pulls: 5 ms, doubled after each empty pull up to ``longest_s`` (the grid's own
    interval), then ``longest_s`` for as long as the phase lasts."""
    wait = min(FIRST_PULL_WAIT_S, longest_s)
    while True:
        yield wait
        wait = min(2 * wait, longest_s)


def exchange(grid: Grid, messages: Iterable[Message], timeout: float,
             on_progress: Progress | None = None) -> list[Message]:
    """What ``grid.send_and_receive(messages, timeout=timeout)`` returns, sooner: pulls back off
    from 5 ms to the grid's interval (the in-memory grid's 0.1 s, else 3 s, the HTTP grid's), and
    starting again from 5 ms whenever replies arrive. ``on_progress`` hears devices answered after
    every pull."""
    messages = list(messages)
    asked = {}
    for msg, msg_id in zip(messages, grid.push_messages(messages)):
        asked[msg_id] = devices_in(msg)
    total, answered = sum(asked.values()), 0
    pending = set(asked)
    longest_s = float(getattr(grid, "pull_interval", 3.0))
    waits = pull_waits(longest_s)
    end = time.time() + timeout
    replies: list[Message] = []
    if on_progress is not None:
        on_progress(0, total)
    while pending and time.time() < end:
        arrived = list(grid.pull_messages(pending))
        replies.extend(arrived)
        for msg in arrived:
            pending.discard(msg.metadata.reply_to_message_id)
            answered += asked.get(msg.metadata.reply_to_message_id, 0)
        if on_progress is not None:
            on_progress(answered, total)
        if arrived:
            waits = pull_waits(longest_s)  # more are likely close behind
        if pending:
            time.sleep(min(next(waits), max(0.0, end - time.time())))
    return replies
