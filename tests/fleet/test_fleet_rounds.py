"""Fleets from mixtures and CSV traces; per-round outcomes and their status order."""

import io
from collections import Counter

import pytest

from edgeupdate.fleet.catalog import get_profile
from edgeupdate.fleet.profiles import BernoulliAvailability, DeviceProfile, TraceAvailability
from edgeupdate.fleet.faults import FaultConfig
from edgeupdate.fleet.devices import Device, FleetError, build_fleet, fleet_from_csv, fleet_from_mixture, mixture_counts
from edgeupdate.fleet.rounds import STATUSES, Workload, plan_fleet_round, plan_round, round_sim_time_s, status_counts

# --------------------------------------------------------------------------- mixtures


@pytest.mark.parametrize("mixture, n, expected", [
    ({"a": 0.5, "b": 0.5}, 7, {"a": 4, "b": 3}),
    ({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 10, {"a": 4, "b": 3, "c": 3}),
    ({"a": 0.15, "b": 0.35, "c": 0.5}, 20, {"a": 3, "b": 7, "c": 10}),
    ({"a": 0.01, "b": 0.99}, 3, {"a": 0, "b": 3}),
    ({"a": 0.26, "b": 0.74}, 2, {"a": 1, "b": 1}),
    ({"a": 0.29, "b": 0.71}, 100, {"a": 29, "b": 71}),  # 0.29*100 is 28.999999999999996 in floats
    ({"a": 0.5, "b": 0.2, "c": 0.3}, 53, {"a": 26, "b": 11, "c": 16}),
])
def test_mixture_counts_are_exact_by_largest_remainder(mixture, n, expected):
    counts = mixture_counts(mixture, n)
    assert counts == expected and sum(counts.values()) == n


def test_fleet_from_mixture_is_exact_and_deterministic_from_the_seed():
    mixture = {"lora-sf12": 0.5, "nbiot": 0.2, "phone-wifi": 0.3}
    fleet = fleet_from_mixture(mixture, 53, seed=4)
    assert [d.device_id for d in fleet] == list(range(53))
    assert Counter(d.tier for d in fleet) == {"lora-sf12": 26, "nbiot": 11, "phone-wifi": 16}
    assert fleet == fleet_from_mixture(mixture, 53, seed=4)
    assert [d.tier for d in fleet] != [d.tier for d in fleet_from_mixture(mixture, 53, seed=5)]


def test_fleet_from_mixture_accepts_aliases_and_custom_tiers():
    custom = DeviceProfile(tier="cam", downlink_bps=1e5, uplink_bps=1e5, memory_bytes=1 << 24,
                           compute_flop_per_s=1e8)
    fleet = fleet_from_mixture({"lora-sensor": 0.5, "cam": 0.5}, 4, 0, profiles={"cam": custom})
    assert Counter(d.tier for d in fleet) == {"lora-sf12": 2, "cam": 2}


@pytest.mark.parametrize("mixture, n, match", [
    ({"lora-sf12": 0.5, "phone-wifi": 0.4}, 10, "sum to 1"),
    ({"lora-sf12": -0.5, "phone-wifi": 1.5}, 10, "must be a number >= 0"),
    ({}, 10, "non-empty"),
    ({"toaster": 1.0}, 10, "unknown device tier 'toaster'"),
    ({"lora-sf12": 0.5, "lora-sensor": 0.5}, 10, "twice"),
    ({"lora-sf12": 1.0}, 0, "num_devices"),
])
def test_bad_mixtures_raise_one_line_errors(mixture, n, match):
    with pytest.raises(FleetError, match=match) as info:
        fleet_from_mixture(mixture, n, 0)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- CSV

GOOD_CSV = """\
# FedScale-style trace: one device per row
device_id,tier,downlink_kbps,uplink_kbps,memory_bytes,compute_flop_per_s,availability
0,phone-wifi,3200,800,,,bernoulli:0.5
1,lora-sf7,,,,,
2,cam,150,50,16777216,2e8,trace:0-3600@86400
"""


def test_fleet_from_csv_fills_from_catalog_and_converts_kbps(tmp_path):
    path = tmp_path / "fleet.csv"
    path.write_text(GOOD_CSV)
    fleet = fleet_from_csv(path)
    phone, lora, cam = fleet
    assert (phone.tier, phone.profile.downlink_bps, phone.profile.uplink_bps) == \
        ("phone-wifi", 3.2e6, 8e5)
    assert phone.profile.memory_bytes == get_profile("phone-wifi").memory_bytes
    assert phone.profile.availability == BernoulliAvailability(0.5)
    assert lora.profile == get_profile("lora-sf7")
    assert cam.tier == "cam" and cam.profile.memory_bytes == 16_777_216
    assert cam.profile.availability == TraceAvailability(((0.0, 3600.0),), 86400.0)
    assert fleet_from_csv(io.StringIO(GOOD_CSV)) == fleet


@pytest.mark.parametrize("text, match", [
    ("device_id,downlink_bps\n0,fast\n", r"line 2, column 'downlink_bps': expected a number, got 'fast'"),
    ("device_id,tier,memory_bytes\n0,nbiot,100\n1,nbiot,1.5\n", r"line 3, column 'memory_bytes': expected an integer"),
    ("device_id,tier\n0,nbiot\n0,ltem\n", r"line 3, column 'device_id': duplicate id 0 \(first on line 2\)"),
    ("device_id,speed\n0,1\n", r"line 1, column 'speed': unknown column"),
    ("tier\nnbiot\n", r"line 1, column 'device_id': missing required column"),
    ("device_id,tier\nx,nbiot\n", r"line 2, column 'device_id': expected an integer"),
    ("device_id,tier,availability\n0,nbiot,sometimes\n", r"line 2, column 'availability': unknown availability"),
    ("device_id,tier,uplink_bps\n0,mystery,100\n", r"line 2, column 'downlink_bps': required"),
    ("device_id,tier,duty_cycle\n0,nbiot,2\n", r"line 2: nbiot: duty_cycle"),
    ("device_id,tier\n0,nbiot,extra\n", r"line 2: expected 2 cells, got 3"),
    ("device_id,tier\n", r"no device rows"),
    ("", r"empty fleet CSV"),
])
def test_bad_csv_rows_name_line_and_column(text, match):
    with pytest.raises(FleetError, match=match) as info:
        fleet_from_csv(io.StringIO(text))
    assert "\n" not in str(info.value)


def test_build_fleet_from_mixture_or_csv_checks_the_device_ids(tmp_path):
    assert build_fleet({"nbiot": 1.0}, 3, 0) == fleet_from_mixture({"nbiot": 1.0}, 3, 0)
    path = tmp_path / "fleet.csv"
    path.write_text("device_id,tier\n1,nbiot\n0,ltem\n")
    assert [d.tier for d in build_fleet(str(path), 2, 0)] == ["ltem", "nbiot"]
    with pytest.raises(FleetError, match=r"device ids 0..2 exactly.*missing \[2\]"):
        build_fleet(path, 3, 0)
    with pytest.raises(FleetError, match="mapping tier -> fraction or a CSV path"):
        build_fleet(["nbiot"], 3, 0)


# --------------------------------------------------------------------------- rounds


def _device(**overrides):
    values = dict(tier="t", downlink_bps=8_000.0, uplink_bps=8_000.0, memory_bytes=10_000,
                  compute_flop_per_s=1e6)
    values.update(overrides)
    return Device(device_id=3, profile=DeviceProfile(**values))


WORK = Workload(down_bytes=1000, up_bytes=500, apply_flops=2e6, apply_peak_memory_bytes=5_000,
                inference_flops=1e6)


def test_applied_outcome_adds_transfer_apply_inference_and_upload():
    out = plan_round(_device(), WORK, round_num=1, seed=0, deadline_s=100.0)
    assert out.status == "applied" and out.fault is None
    assert (out.transfer_s, out.apply_s, out.inference_s, out.upload_s) == \
        pytest.approx((1.0, 2.0, 1.0, 0.5))
    assert out.sim_time_s == pytest.approx(4.5) == out.needed_s
    row = out.as_row()
    for column in ("device_tier", "status", "sim_time_s", "transfer_s", "apply_s", "deadline_s"):
        assert column in row


def test_status_order_offline_before_memory_before_deadline_before_rejected():
    always_fail = FaultConfig(dropout_prob=1.0, corruption_prob=1.0, crash_prob=1.0)
    big = Workload(down_bytes=10**6, apply_peak_memory_bytes=10**9)
    # everything wrong at once: offline wins
    assert plan_round(_device(), big, 1, 0, 1.0, always_fail).status == "offline"
    # no dropout: memory beats deadline and corruption
    no_drop = FaultConfig(corruption_prob=1.0, crash_prob=1.0)
    assert plan_round(_device(), big, 1, 0, 1.0, no_drop).status == "no_memory"
    # memory fits: deadline beats corruption
    slow = Workload(down_bytes=10**6)
    assert plan_round(_device(), slow, 1, 0, 1.0, no_drop).status == "deadline"
    # in time: corruption is caught → rejected; then crash → rejected
    out = plan_round(_device(), WORK, 1, 0, 100.0, no_drop)
    assert (out.status, out.fault, out.corrupt_transfer, out.apply_s) == \
        ("rejected", "corrupted", True, 0.0)
    crash = plan_round(_device(), WORK, 1, 0, 100.0, FaultConfig(crash_prob=1.0))
    assert (crash.status, crash.fault, crash.crash_during_apply) == ("rejected", "crash", True)
    assert 0.0 < crash.crash_point < 1.0 and crash.apply_s < 2.0
    assert STATUSES == ("offline", "no_memory", "deadline", "rejected", "applied")


def test_deadline_cuts_the_device_off_and_records_time_spent():
    out = plan_round(_device(), WORK, 1, 0, deadline_s=2.5)
    assert out.status == "deadline" and out.sim_time_s == 2.5 and out.needed_s == pytest.approx(4.5)
    assert (out.transfer_s, out.apply_s, out.inference_s, out.upload_s) == \
        pytest.approx((1.0, 1.5, 0.0, 0.0))


def test_offline_from_availability_and_from_a_trace_ending_mid_round():
    never = _device(availability=BernoulliAvailability(0.0))
    out = plan_round(never, WORK, 1, 0, 100.0)
    assert (out.status, out.fault, out.sim_time_s) == ("offline", "unavailable", 0.0)
    short = _device(availability=TraceAvailability(((0.0, 3.0),)))
    assert plan_round(short, WORK, 1, 0, 100.0, round_start_s=0.0).status == "offline"
    long = _device(availability=TraceAvailability(((0.0, 30.0),)))
    assert plan_round(long, WORK, 1, 0, 100.0, round_start_s=0.0).status == "applied"


def test_full_model_misses_lora_deadline_while_small_package_arrives():
    lora = Device(0, get_profile("lora-sf7"))
    full = Workload(down_bytes=4 * 50_000)  # 50k-parameter fp32 model
    partial = Workload(down_bytes=2_000)
    assert plan_round(lora, full, 1, 0, deadline_s=3600.0).status == "deadline"
    assert plan_round(lora, partial, 1, 0, deadline_s=3600.0).status == "applied"


def test_fleet_round_is_deterministic_and_summarised():
    fleet = fleet_from_mixture({"lora-sf7": 0.4, "nbiot": 0.3, "phone-wifi": 0.3}, 50, seed=1)
    faults = FaultConfig(dropout_prob=0.1, corruption_prob=0.1, crash_prob=0.05)
    work = {"lora-sf7": Workload(down_bytes=3_000), "nbiot": Workload(down_bytes=200_000),
            "phone-wifi": Workload(down_bytes=200_000, apply_peak_memory_bytes=10**6)}
    outs = plan_fleet_round(fleet, lambda d: work[d.tier], 2, 9, 3600.0, faults)
    assert outs == plan_fleet_round(fleet, lambda d: work[d.tier], 2, 9, 3600.0, faults)
    counts = status_counts(outs)
    assert sum(counts.values()) == 50 and counts["applied"] > 0 and counts["offline"] > 0
    assert round_sim_time_s(outs) == max(o.sim_time_s for o in outs) <= 3600.0


@pytest.mark.parametrize("kwargs", [dict(down_bytes=-1), dict(down_bytes=1, apply_flops=-2.0),
                                    dict(down_bytes=1.5)])
def test_bad_workloads_raise(kwargs):
    with pytest.raises(FleetError):
        Workload(**kwargs)


def test_bad_deadline_raises():
    with pytest.raises(FleetError, match="deadline_s"):
        plan_round(_device(), WORK, 1, 0, 0.0)


def test_energy_sums_the_modelled_terms_only():
    dev = _device(energy_j_per_byte_down=1e-3, energy_j_per_byte_up=2e-3, energy_j_per_flop=1e-9)
    out = plan_round(dev, WORK, 1, 0, 100.0)
    assert out.energy_j == pytest.approx(1000 * 1e-3 + 500 * 2e-3 + 3e6 * 1e-9)
    assert plan_round(_device(), WORK, 1, 0, 100.0).energy_j is None


def test_csv_can_switch_a_catalog_tier_to_relative_speed():
    fleet = fleet_from_csv(io.StringIO("device_id,tier,relative_speed\n0,rpi-gateway,0.5\n"))
    p = fleet[0].profile
    assert (p.relative_speed, p.compute_flop_per_s) == (0.5, None)
    work = Workload(down_bytes=10, apply_flops=1.0, apply_host_s=0.2)
    assert plan_round(fleet[0], work, 1, 0, 10.0).apply_s == pytest.approx(0.4)
