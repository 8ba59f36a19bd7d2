"""Progress inside a long round: devices answered out of those asked, on the terminal only.

A phase (the devices' TRAIN phase or the push) that lasts longer than ``after_s`` gets a transient
progress bar on stderr (Flower's dependency ``rich``), gone when the phase ends; the per-round
summary line stays. Nothing is drawn when stderr is not a terminal (logs, CI) or with ``--quiet``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

PHASES = {"train": "devices' phase", "push": "push"}


class RoundProgress:
    """Call it as ``(round, phase, devices answered, devices asked)`` while a phase runs."""

    def __init__(self, rounds: int, stream: TextIO | None = None, after_s: float = 3.0,
                 force_terminal: bool | None = None) -> None:
        stream = stream if stream is not None else sys.stderr
        self.console = Console(file=stream, force_terminal=force_terminal)
        self.rounds, self.after_s = rounds, after_s
        self._phase: tuple[int, str] | None = None
        self._started = 0.0
        self._bar: Progress | None = None
        self._task = 0

    def __call__(self, round_: int, phase: str, answered: int, asked: int) -> None:
        if (round_, phase) != self._phase:
            self._close()
            self._phase, self._started = (round_, phase), time.monotonic()
        if answered >= asked:
            self._close()
            return
        if self._bar is None:
            if not self.console.is_terminal or time.monotonic() - self._started < self.after_s:
                return
            self._bar = Progress(TextColumn(f"round {round_}/{self.rounds} {PHASES.get(phase, phase)}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("devices answered"), TimeElapsedColumn(),
                                 console=self.console, transient=True, auto_refresh=False)
            self._bar.start()
            self._task = self._bar.add_task(phase, total=asked)
        self._bar.update(self._task, completed=answered, total=asked)
        self._bar.refresh()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


__all__ = ["RoundProgress"]
