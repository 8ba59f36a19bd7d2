"""What the server knows: every model state a device may hold, and which device holds which.

:class:`VersionStore` keeps the states by hash (the main line's releases, budgeted shares, one
student line per memory budget), the log that becomes ``versions.csv``, and one
:class:`DeviceView` per device. No Flower here: the strategy base feeds it what devices report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeupdate.updates import StateDict, state_hash

MAIN_LINE = "main"


@dataclass(frozen=True)
class ModelVersion:
    """A model state a device may hold: a release of round ``number`` or a budgeted share of one."""

    number: int
    weights: StateDict
    hash: str
    kind: str = "release"  # initial | release | budget
    parent: str = ""  # the state a budget package was built from


@dataclass
class DeviceView:
    """What the server knows about one device; ``line`` is the model it runs (main or a student)."""

    device_id: int
    node_id: int
    version: int = 0
    hash: str = ""
    line: str = MAIN_LINE
    maybe: tuple[str, ...] = ()  # states it may hold instead: it was lost while packages to them were under way


@dataclass
class StudentLine:
    """The student model of one memory budget (Zhao et al.): its spec and latest state."""

    memory_bytes: int
    latest: ModelVersion
    spec: Any = None  # edgeupdate.algorithms.students.StudentSpec once cut from the first model


class VersionStore:
    """Every state a device may hold now (by hash), the version log, and the device views."""

    def __init__(self, initial: ModelVersion) -> None:
        self.states: dict[str, ModelVersion] = {initial.hash: initial}
        self.log: list[dict[str, Any]] = []
        self.latest = initial
        self.students: dict[str, StudentLine] = {}
        self.views: dict[int, DeviceView] = {}  # by device id
        self.record(0, initial, MAIN_LINE)

    def add_device(self, device_id: int, node_id: int, student_memory: int | None) -> DeviceView:
        """Register a device that holds its line's factory state (a student line starts empty)."""
        line = MAIN_LINE if student_memory is None else f"student-{student_memory}"
        if line != MAIN_LINE and line not in self.students:
            empty = ModelVersion(0, {}, state_hash({}), kind="initial")
            self.students[line] = StudentLine(student_memory, empty)
            self.states[empty.hash] = empty
            self.record(0, empty, line)
        view = DeviceView(device_id, node_id, 0, self.target_of_line(line).hash, line)
        self.views[device_id] = view
        return view

    def record(self, round_: int, state: ModelVersion, line: str) -> None:
        """Append ``state`` to the version log (``versions.csv``)."""
        self.log.append({"round": round_, "model_line": line, "model_version": state.number,
                         "model_hash": state.hash, "kind": state.kind, "parent_hash": state.parent,
                         "parameters": sum(t.numel() for t in state.weights.values())})

    def issue(self, round_: int, state: ModelVersion, line: str = MAIN_LINE) -> None:
        """Make ``state`` one a device may hold (logged once, however often it is issued)."""
        if state.hash not in self.states:
            self.states[state.hash] = state
            self.record(round_, state, line)

    def release(self, round_: int, state: ModelVersion) -> None:
        """``state`` is the main line's newest version."""
        self.latest = state
        self.states[state.hash] = state
        self.record(round_, state, MAIN_LINE)

    def set_student(self, round_: int, line: str, state: ModelVersion) -> None:
        """``state`` is student line ``line``'s newest version."""
        self.students[line].latest = state
        self.states[state.hash] = state
        self.record(round_, state, line)

    def target_of_line(self, line: str) -> ModelVersion:
        """The latest state of model line ``line``."""
        return self.latest if line == MAIN_LINE else self.students[line].latest

    def target_of(self, view: DeviceView) -> ModelVersion:
        """The state ``view``'s device should hold after this round."""
        return self.target_of_line(view.line)

    def in_order(self) -> list[DeviceView]:
        """The device views by device id."""
        return [self.views[d] for d in sorted(self.views)]

    def device_ids(self) -> list[int]:
        return sorted(self.views)

    def forget_unheld(self) -> None:
        """Drop the states that no device holds and no line targets (keeps memory bounded)."""
        held = {h for v in self.views.values() for h in (v.hash, *v.maybe, self.target_of_line(v.line).hash)}
        self.states = {h: s for h, s in self.states.items() if h in held}
