"""One device with its own model store, driven the way a node drives it (for tests)."""

from __future__ import annotations

from pathlib import Path

from edgeupdate.clients.device import DeviceServices, try_apply
from edgeupdate.runtime import ExperimentRuntime
from edgeupdate.store import ModelStore
from edgeupdate.updates import StateDict


class TestDevice:
    """A device as shipped (version 0) whose weights live in a store under ``root``."""

    __test__ = False  # not a test class

    def __init__(self, runtime: ExperimentRuntime, root: Path, device_id: int = 0) -> None:
        self.services = DeviceServices.create(runtime, ModelStore(root, {runtime.initial_hash: runtime.initial_state}))
        self.record = self.services.factory_record(device_id)

    def try_apply(self, payload: bytes, crash_point: float | None = None) -> tuple[str, str]:
        status, reason, _ = try_apply(self.services, self.record, payload, crash_point)
        return status, reason

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def hash(self) -> str:
        return self.record.hash

    @property
    def weights(self) -> StateDict:
        return self.services.weights(self.record)
