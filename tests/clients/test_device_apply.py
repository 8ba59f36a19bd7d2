"""The device app's safety rules: crash-safe apply, memory check before applying, cut transfers."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ConfigRecord, Context, RecordDict

from edgeupdate import protocol as P
from edgeupdate.algorithms.factorized import CompactConfig, build_package, compact_refine
from edgeupdate.clients.device import DeviceState, _evaluate_task
from edgeupdate.runtime import build_runtime
from edgeupdate.training import TrainConfig
from edgeupdate.updates import dense_package, sparse_package, state_hash
from edgeupdate.updates.cost import apply_cost, state_bytes


def _runtime(tiny_config, tmp_path, memory_bytes: int = 1 << 30):
    csv = tmp_path / "fleet.csv"
    csv.write_text("device_id,tier,memory_bytes\n" + "".join(f"{i},rpi-gateway,{memory_bytes}\n" for i in range(3)))
    return build_runtime(tiny_config(f"fleet.csv={csv}", "model.hidden=[24]"))


def _context() -> Context:
    return Context(run_id=0, node_id=1, node_config={"partition-id": 0}, state=RecordDict(), run_config={})


def _changed(state):
    return {k: v + 0.5 for k, v in state.items()}


def test_a_crash_part_way_through_apply_leaves_the_deployed_model_intact(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path)
    context = _context()
    device = DeviceState(context, runtime)
    package = dense_package(_changed(runtime.initial_state), method="full", target_version=1,
                            base=runtime.initial_state, base_version=0).encode()

    status, reason = device.try_apply(package, runtime, device_id=0, crash_point=0.5)

    assert status == P.DeviceStatus.REJECTED and "rebooted with the deployed model intact" in reason
    restarted = DeviceState(context, runtime)  # what the device holds after the crash
    assert (restarted.version, restarted.hash) == (0, runtime.initial_hash)
    assert state_hash(restarted.weights) == runtime.initial_hash
    assert "staged_model" not in context.state
    assert device.try_apply(package, runtime, device_id=0) == (P.DeviceStatus.APPLIED, "")
    assert DeviceState(context, runtime).version == 1


def test_a_device_declines_a_ka_package_it_lacks_memory_for_but_applies_a_sparse_one(tiny_config, tmp_path):
    probe = _runtime(tiny_config, tmp_path)
    base = probe.initial_state
    data = probe.train_subset(torch.arange(64))
    result = compact_refine(probe.new_model(), base, data, TrainConfig(epochs=1, batch_size=16),
                            CompactConfig("ka", n=2), seed=1)
    ka = build_package(result, base, base_version=0, target_version=1).encode()
    sparse = sparse_package(base, result.state, method="delta", target_version=1, base_version=0).encode()
    from edgeupdate.updates import UpdatePackage

    ka_need = apply_cost(UpdatePackage.decode(ka).header, len(ka), state_bytes(base)).peak_memory_bytes
    sparse_need = apply_cost(UpdatePackage.decode(sparse).header, len(sparse), state_bytes(base)).peak_memory_bytes
    assert sparse_need < ka_need
    runtime = _runtime(tiny_config, tmp_path, memory_bytes=(sparse_need + ka_need) // 2)
    device = DeviceState(_context(), runtime)

    status, reason = device.try_apply(ka, runtime, device_id=0)

    assert status == P.DeviceStatus.NO_MEMORY and f"needs {ka_need} B" in reason
    assert device.hash == runtime.initial_hash
    assert device.try_apply(sparse, runtime, device_id=0)[0] == P.DeviceStatus.APPLIED
    assert device.hash == state_hash(result.state)


def test_a_transfer_cut_at_the_deadline_is_reported_as_deadline_and_not_applied(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path)
    device = DeviceState(_context(), runtime)
    package = dense_package(_changed(runtime.initial_state), method="full", target_version=1).encode()
    task = ConfigRecord({"round": 1, "package": package[: len(package) // 3], "link": P.LINK_CUT})

    status, reason, _ = _evaluate_task(runtime, device, 0, task)

    assert status == P.DeviceStatus.DEADLINE and "truncated" in reason
    assert device.hash == runtime.initial_hash


def test_an_announced_apply_cost_above_the_devices_memory_is_declined(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path, memory_bytes=50_000)
    device = DeviceState(_context(), runtime)
    task = ConfigRecord({"round": 1, "package": b"", "link": P.LINK_OK, "required_memory_bytes": 60_000})

    status, reason, _ = _evaluate_task(runtime, device, 0, task)

    assert status == P.DeviceStatus.NO_MEMORY and "60000 B" in reason


@pytest.mark.parametrize("link, status", [(P.LINK_OFFLINE, P.DeviceStatus.OFFLINE), (P.LINK_OK, P.DeviceStatus.NO_UPDATE)])
def test_nothing_arrives_when_offline_or_up_to_date(tiny_config, tmp_path, link, status):
    runtime = _runtime(tiny_config, tmp_path)
    device = DeviceState(_context(), runtime)
    task = ConfigRecord({"round": 1, "package": b"", "link": link})

    assert _evaluate_task(runtime, device, 0, task)[0] == status
