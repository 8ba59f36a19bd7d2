"""The server's checkpoint: everything a run needs to continue after its last complete round.

Layout under the run directory (``checkpoint/``)::

    LATEST                      the last complete round r (written last, atomically)
    server/round-<r>.pkl        the strategy (version store and device views, the data pool Dʳ,
                                optimiser or FL server state such as FedAdam's moments, student
                                lines, the package archive), the random states, the wall time
                                spent so far
    rows/round-<r>.pkl          the metrics rows of round r alone, as a frame (each round's are
                                written once, so a checkpoint costs the same in round 100 as in 1)
    nodes/partition-<p>/…       each node's devices (version, hash, upload bookkeeping, residuals),
                                written by the node itself (:mod:`edgeupdate.clients.node_state`)

The weights themselves are in the run's model store (``store/``, content-addressed files), which
outlives the processes. A round counts as complete once ``LATEST`` names it: a crash before that
resumes from the round before, whose files are kept until the next ``LATEST`` is written.

The strategy is pickled whole, so a strategy's own attributes are checkpointed without any code of
its own. What it shares with the run instead of owning — the runtime (dataset, fleet, config), the
metrics collector, the signing key, ServerRetrain's validation set — is named by
:meth:`~edgeupdate.strategies.base.EdgeStrategy.checkpoint_references` and written as a reference,
then bound to the resumed run's own objects.
"""

from __future__ import annotations

import io
import pickle
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from edgeupdate.strategies.base import EdgeStrategy
from edgeupdate.updates.files import atomic_write

FORMAT = 2  # 1: the metrics rows inside the server file (still read)
_SERVER_FILE = re.compile(r"round-(\d+)\.pkl$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or belongs to another run."""


@dataclass
class Restored:
    """A checkpoint read back: the round it completed and what the server held then."""

    round: int
    strategy: EdgeStrategy
    chunks: list[pd.DataFrame]  # the metrics rows, one frame per round (MetricsCollector.chunks)
    wall_time_s: float


class _Pickler(pickle.Pickler):
    def __init__(self, fh: io.BufferedWriter, references: dict[str, Any]) -> None:
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._names = {id(obj): name for name, obj in references.items() if obj is not None}

    def persistent_id(self, obj: Any) -> str | None:
        return self._names.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: io.BufferedReader, references: dict[str, Any]) -> None:
        super().__init__(fh)
        self._refs = references

    def persistent_load(self, pid: Any) -> Any:
        if pid not in self._refs or self._refs[pid] is None:
            raise CheckpointError(f"the checkpoint refers to {pid!r}, which this run does not have")
        return self._refs[pid]


class Checkpoints:
    """The checkpoints of the run in ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir) / "checkpoint"
        self._chunks_saved = 0  # metrics chunks already in rows/round-*.pkl

    @property
    def nodes_dir(self) -> str:
        """Where the nodes write their devices' state (absolute: nodes do not share our cwd)."""
        return str(self.dir.resolve())

    def latest_round(self) -> int:
        """The last complete round (0: none)."""
        latest = self.dir / "LATEST"
        if not latest.exists():
            return 0
        text = latest.read_text().strip()
        if not text.isdigit() or not (self.dir / "server" / f"round-{text}.pkl").exists():
            raise CheckpointError(f"{latest} names round {text!r}, but its server file is missing")
        return int(text)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def save(self, round_: int, strategy: EdgeStrategy, chunks: list[pd.DataFrame], wall_time_s: float) -> int:
        """Write round ``round_``'s checkpoint (``chunks``: the metrics rows so far, one frame per
        round), then make it the latest; return the bytes of its server and rows files."""
        (self.dir / "rows").mkdir(parents=True, exist_ok=True)
        new = chunks[self._chunks_saved:]
        frame = pd.concat(new, ignore_index=True) if len(new) > 1 else (new[0] if new else pd.DataFrame())
        atomic_write(self.dir / "rows" / f"round-{round_}.pkl",
                     lambda fh: pickle.dump(frame, fh, protocol=pickle.HIGHEST_PROTOCOL))
        self._chunks_saved = len(chunks)
        rows = sum(len(c) for c in chunks)
        state = {"format": FORMAT, "round": round_, "strategy": strategy, "rows": rows,
                 "wall_time_s": wall_time_s, "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                                                     "torch": torch.get_rng_state()}}
        path = self.dir / "server" / f"round-{round_}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: _Pickler(fh, strategy.checkpoint_references()).dump(state))
        atomic_write(self.dir / "LATEST", lambda fh: fh.write(f"{round_}\n".encode()))
        for old in (self.dir / "server").iterdir():
            m = _SERVER_FILE.match(old.name)
            if m and int(m.group(1)) < round_:
                old.unlink(missing_ok=True)
        return path.stat().st_size + (self.dir / "rows" / f"round-{round_}.pkl").stat().st_size

    def node_bytes(self, round_: int) -> int:
        """Bytes of the node files written at the end of ``round_``."""
        return sum(p.stat().st_size for p in self.dir.glob(f"nodes/partition-*/round-{round_}.pkl"))

    def load(self, fresh: EdgeStrategy) -> Restored:
        """The latest checkpoint, its references bound to ``fresh`` (a new strategy of this run: its
        runtime, collector, key ...). Restores the random states too."""
        round_ = self.latest_round()
        if round_ == 0:
            raise CheckpointError(f"{self.dir} holds no complete round")
        path = self.dir / "server" / f"round-{round_}.pkl"
        try:
            with open(path, "rb") as fh:
                state = _Unpickler(fh, fresh.checkpoint_references()).load()
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as err:
            raise CheckpointError(f"cannot read {path}: {err}") from None
        if not isinstance(state, dict) or state.get("format") not in (1, FORMAT) or state.get("round") != round_:
            raise CheckpointError(f"{path} is not an edgeupdate checkpoint of round {round_}")
        strategy = state["strategy"]
        if type(strategy) is not type(fresh):
            raise CheckpointError(f"{path} holds a {type(strategy).__name__} run, this run uses {type(fresh).__name__}")
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["format"] == 1:  # rows inside the server file
            chunks = [pd.DataFrame(state["rows"])] if state["rows"] else []
            expected = len(state["rows"])
        else:
            chunks, expected = self._load_chunks(round_), state["rows"]
        if sum(len(c) for c in chunks) != expected:
            raise CheckpointError(f"{self.dir / 'rows'} holds {sum(len(c) for c in chunks)} metrics rows, round "
                                  f"{round_}'s checkpoint expects {expected}")
        self._chunks_saved = len(chunks)
        return Restored(round_, strategy, chunks, float(state["wall_time_s"]))

    def _load_chunks(self, round_: int) -> list[pd.DataFrame]:
        """The metrics rows of rounds 1 … ``round_``, one frame per round file that has rows."""
        chunks: list[pd.DataFrame] = []
        for r in range(1, round_ + 1):
            path = self.dir / "rows" / f"round-{r}.pkl"
            try:
                with open(path, "rb") as fh:
                    part = pickle.load(fh)
            except (OSError, EOFError, pickle.UnpicklingError) as err:
                raise CheckpointError(f"cannot read {path}: {err}") from None
            if not isinstance(part, pd.DataFrame):
                raise CheckpointError(f"{path} does not hold metrics rows")
            if not part.empty:
                chunks.append(part)
        return chunks


__all__ = ["CheckpointError", "Checkpoints", "Restored"]
