"""A node's part of a checkpoint: what its devices hold, written at the end of every round.

A device's state lives in its node's ``Context.state`` (version, hash, upload bookkeeping,
error-feedback residuals); its weights live in the run's model store, which outlives the processes.
At the end of each round's EVALUATE phase the node writes that state to
``<checkpoint>/nodes/partition-<id>/round-<r>.pkl`` (a temporary file, then a rename: a crash
never leaves half a file), before it answers. On resume the server names the round it restarts
from, and each node reads its newest file of that round or before: a node whose devices were all
lost in a round wrote nothing that round and keeps its older state, as a real device would.

The node keeps its files of rounds ``r − 1`` and ``r`` when it writes round ``r``: the server's
last complete checkpoint is always one of them.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from flwr.app import RecordDict

from edgeupdate.updates.files import atomic_write

_ROUND_FILE = re.compile(r"round-(\d+)\.pkl$")


def partition_dir(checkpoint_dir: str | Path, partition_id: int) -> Path:
    return Path(checkpoint_dir) / "nodes" / f"partition-{partition_id}"


def _rounds(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _ROUND_FILE.match(p.name)))


def save_node_state(state: RecordDict, checkpoint_dir: str | Path, partition_id: int, round_: int) -> Path:
    """Write the node's ``Context.state`` as of the end of ``round_``; drop files older than ``round_ − 1``."""
    folder = partition_dir(checkpoint_dir, partition_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"round-{round_}.pkl"
    atomic_write(target, lambda fh: pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL))
    for old in _rounds(folder):
        if old < round_ - 1:
            (folder / f"round-{old}.pkl").unlink(missing_ok=True)
    return target


def load_node_state(checkpoint_dir: str | Path, partition_id: int, through_round: int) -> RecordDict | None:
    """The node's state as of the end of its newest round ≤ ``through_round`` (None: it never wrote one,
    its devices still hold the factory image)."""
    folder = partition_dir(checkpoint_dir, partition_id)
    rounds = [r for r in _rounds(folder) if r <= through_round]
    if not rounds:
        return None
    with open(folder / f"round-{rounds[-1]}.pkl", "rb") as fh:
        state = pickle.load(fh)
    if not isinstance(state, RecordDict):
        raise ValueError(f"{folder / f'round-{rounds[-1]}.pkl'} is not a node state")
    return state
