"""The device's safety rules: crash-safe apply, memory check before applying, cut transfers."""

from __future__ import annotations

import pytest
import torch

from edgeupdate import protocol as P
from edgeupdate.algorithms.factorized import CompactConfig, build_package, compact_refine
from edgeupdate.clients.device import DeviceServices, push, try_apply
from edgeupdate.store import ModelStore
from edgeupdate.runtime import build_runtime
from edgeupdate.training import TrainConfig
from edgeupdate.updates import dense_package, sparse_package, state_hash
from edgeupdate.updates.cost import apply_cost, state_bytes


def _runtime(tiny_config, tmp_path, memory_bytes: int = 1 << 30):
    csv = tmp_path / "fleet.csv"
    csv.write_text("device_id,tier,memory_bytes\n" + "".join(f"{i},rpi-gateway,{memory_bytes}\n" for i in range(3)))
    return build_runtime(tiny_config(f"fleet.csv={csv}", "model.hidden=[24]"))


def _device(runtime, tmp_path):
    """Device 0 as shipped, with a store of its own run."""
    services = DeviceServices.create(runtime, ModelStore(tmp_path / "store", {runtime.initial_hash: runtime.initial_state}))
    return services, services.factory_record(0)


def _changed(state):
    return {k: v + 0.5 for k, v in state.items()}


def test_a_crash_part_way_through_apply_leaves_the_deployed_model_intact(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path)
    services, device = _device(runtime, tmp_path)
    new = _changed(runtime.initial_state)
    package = dense_package(new, method="full", target_version=1, base=runtime.initial_state, base_version=0).encode()

    status, reason, _ = try_apply(services, device, package, crash_point=0.5)

    assert status == P.DeviceStatus.REJECTED and "rebooted with the deployed model intact" in reason
    assert (device.version, device.hash) == (0, runtime.initial_hash)  # what the device holds after the crash
    assert state_hash(services.weights(device)) == runtime.initial_hash
    assert try_apply(services, device, package)[:2] == (P.DeviceStatus.APPLIED, "")
    assert device.version == 1 and device.hash == state_hash(new)
    stored = ModelStore(tmp_path / "store").get(device.hash)  # another process reads it from the store
    assert all(torch.equal(stored[k], new[k]) for k in new)


def test_a_device_declines_a_ka_package_it_lacks_memory_for_but_applies_a_sparse_one(tiny_config, tmp_path):
    probe = _runtime(tiny_config, tmp_path)
    base = probe.initial_state
    data = probe.train_subset(probe.layout.train_rows()[:64])
    result = compact_refine(probe.new_model(), base, data, TrainConfig(epochs=1, batch_size=16),
                            CompactConfig("ka", n=2), seed=1)
    ka = build_package(result, base, base_version=0, target_version=1).encode()
    sparse = sparse_package(base, result.state, method="delta", target_version=1, base_version=0).encode()
    from edgeupdate.updates import UpdatePackage

    ka_need = apply_cost(UpdatePackage.decode(ka).header, len(ka), state_bytes(base)).peak_memory_bytes
    sparse_need = apply_cost(UpdatePackage.decode(sparse).header, len(sparse), state_bytes(base)).peak_memory_bytes
    assert sparse_need < ka_need
    runtime = _runtime(tiny_config, tmp_path, memory_bytes=(sparse_need + ka_need) // 2)
    services, device = _device(runtime, tmp_path)

    status, reason, _ = try_apply(services, device, ka)

    assert status == P.DeviceStatus.NO_MEMORY and f"needs {ka_need} B" in reason
    assert device.hash == runtime.initial_hash
    assert try_apply(services, device, sparse)[0] == P.DeviceStatus.APPLIED
    assert device.hash == state_hash(result.state)


def test_a_transfer_cut_at_the_deadline_is_reported_as_deadline_and_not_applied(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path)
    services, device = _device(runtime, tmp_path)
    package = dense_package(_changed(runtime.initial_state), method="full", target_version=1).encode()

    status, reason = push(services, device, {"link": P.LINK_CUT}, package[: len(package) // 3])

    assert status == P.DeviceStatus.DEADLINE and "truncated" in reason
    assert device.hash == runtime.initial_hash


def test_an_announced_apply_cost_above_the_devices_memory_is_declined(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path, memory_bytes=50_000)
    services, device = _device(runtime, tmp_path)

    status, reason = push(services, device, {"link": P.LINK_OK, "required_memory_bytes": 60_000}, b"")

    assert status == P.DeviceStatus.NO_MEMORY and "60000 B" in reason


@pytest.mark.parametrize("link, status", [(P.LINK_OFFLINE, P.DeviceStatus.OFFLINE), (P.LINK_OK, P.DeviceStatus.NO_UPDATE)])
def test_nothing_arrives_when_offline_or_up_to_date(tiny_config, tmp_path, link, status):
    runtime = _runtime(tiny_config, tmp_path)
    services, device = _device(runtime, tmp_path)

    assert push(services, device, {"link": link}, b"")[0] == status


def test_devices_share_the_arithmetic_but_each_checks_its_own_base(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path)
    services, first = _device(runtime, tmp_path)
    second = services.factory_record(1)
    package = dense_package(_changed(runtime.initial_state), method="full", target_version=1,
                            base=runtime.initial_state, base_version=0).encode()
    calls = []
    apply = services.applies.get_or_apply
    services.applies.get_or_apply = lambda key, fn: apply(key, lambda: calls.append(key) or fn())

    assert try_apply(services, first, package)[0] == P.DeviceStatus.APPLIED
    assert try_apply(services, second, package)[0] == P.DeviceStatus.APPLIED
    assert len(calls) == 1 and first.hash == second.hash  # applied once for both

    later = dense_package(_changed(_changed(runtime.initial_state)), method="full", target_version=2,
                          base=runtime.initial_state, base_version=0).encode()
    status, reason, _ = try_apply(services, first, later)  # built for version 0; first holds version 1 now
    assert status == P.DeviceStatus.REJECTED and "base" in reason and first.version == 1
