"""Attacks as faults (issue 18): who is attacked is deterministic, and an attacked push is rejected."""

import pytest

from edgeupdate.configs import ConfigError
from edgeupdate.fleet.devices import Device
from edgeupdate.fleet.faults import FaultConfig, FaultConfigError
from edgeupdate.fleet.profiles import DeviceProfile
from edgeupdate.fleet.rounds import Workload, plan_round
from edgeupdate.fleet.simulated import simulated_fleet
from edgeupdate.protocol import DeviceStatus


def _device() -> Device:
    return Device(device_id=3, profile=DeviceProfile(tier="t", downlink_bps=8_000.0, uplink_bps=8_000.0,
                                                     memory_bytes=10_000, compute_flop_per_s=1e6))


def test_attack_decisions_are_deterministic_exclusive_and_at_the_configured_rates():
    faults = FaultConfig(replay_prob=0.1, forge_prob=0.2)
    draws = [faults.attack(7, r, d) for r in range(1, 101) for d in range(50)]

    assert draws == [faults.attack(7, r, d) for r in range(1, 101) for d in range(50)]
    assert draws.count("replay") / len(draws) == pytest.approx(0.1, abs=0.02)
    assert draws.count("forge") / len(draws) == pytest.approx(0.2, abs=0.02)
    assert draws != [faults.attack(8, r, d) for r in range(1, 101) for d in range(50)]
    assert all(FaultConfig().attack(7, r, 0) is None for r in range(100))
    # the other faults are drawn independently: switching attacks on changes none of them
    plain = FaultConfig(dropout_prob=0.3, corruption_prob=0.3)
    attacked = FaultConfig(dropout_prob=0.3, corruption_prob=0.3, replay_prob=0.5)
    assert [plain.drops_out(7, r, 1) for r in range(50)] == [attacked.drops_out(7, r, 1) for r in range(50)]


@pytest.mark.parametrize("kwargs", [{"replay_prob": 1.5}, {"forge_prob": -0.1}, {"replay_prob": 0.6, "forge_prob": 0.5}])
def test_bad_attack_probabilities_are_refused(kwargs):
    with pytest.raises(FaultConfigError):
        FaultConfig(**kwargs)


@pytest.mark.parametrize("attack", ["replay", "forge"])
def test_an_attacked_download_is_rejected_before_the_apply_step(attack):
    workload = Workload(down_bytes=1000, apply_flops=5e5, inference_flops=1e5)

    genuine = plan_round(_device(), workload, 1, 0, float("inf"))
    attacked = plan_round(_device(), workload, 1, 0, float("inf"), attack=attack)

    assert genuine.status == DeviceStatus.APPLIED
    assert attacked.status == DeviceStatus.REJECTED and attacked.fault == attack
    assert not attacked.corrupt_transfer and not attacked.crash_during_apply
    assert attacked.apply_s == 0.0 and attacked.transfer_s == genuine.transfer_s
    assert attacked.sim_time_s == pytest.approx(genuine.sim_time_s - genuine.apply_s)


def test_a_late_or_offline_device_is_not_attacked():
    workload = Workload(down_bytes=100_000)

    assert plan_round(_device(), workload, 1, 0, 1.0, attack="forge").status == DeviceStatus.DEADLINE
    offline = FaultConfig(dropout_prob=1.0)
    assert plan_round(_device(), workload, 1, 0, 1e9, offline, attack="replay").status == DeviceStatus.OFFLINE


def test_forge_attacks_need_signed_packages_and_the_config_names_the_key(tiny_config):
    with pytest.raises(ConfigError, match="fleet.faults.forge_prob.*package.signing"):
        simulated_fleet(tiny_config("fleet.faults.forge_prob=0.1"))
    with pytest.raises(ConfigError, match="fleet.faults.*at most 1"):
        simulated_fleet(tiny_config("fleet.faults.replay_prob=0.7", "fleet.faults.forge_prob=0.7", "package.signing=hmac"))

    fleet = simulated_fleet(tiny_config("fleet.faults.replay_prob=0.1", "fleet.faults.forge_prob=0.2",
                                        "package.signing=ed25519"))

    assert (fleet.faults.replay_prob, fleet.faults.forge_prob) == (0.1, 0.2)
