"""Device profiles, availability models and the tier catalog."""

import pytest

from edgeupdate.fleet.catalog import (
    CATALOG,
    LORA_EU868_DATA_RATES,
    UnknownTierError,
    get_entry,
    get_profile,
    resolve_tier,
    tier_names,
)
from edgeupdate.fleet.profiles import (
    ALWAYS_ON,
    BernoulliAvailability,
    DeviceProfile,
    ProfileError,
    TraceAvailability,
    parse_availability,
)

BASE = dict(tier="t", downlink_bps=1000.0, uplink_bps=1000.0, memory_bytes=1024,
            compute_flop_per_s=1e6)


@pytest.mark.parametrize("override, match", [
    (dict(downlink_bps=0.0), "downlink_bps"),
    (dict(uplink_bps=float("nan")), "uplink_bps"),
    (dict(memory_bytes=1.5), "memory_bytes"),
    (dict(duty_cycle=1.5), "duty_cycle"),
    (dict(duty_cycle=0.0), "duty_cycle"),
    (dict(latency_s=-1.0), "latency_s"),
    (dict(relative_speed=2.0), "exactly one"),
    (dict(compute_flop_per_s=None), "exactly one"),
    (dict(lora_spreading_factor=13, frame_payload_bytes=51), "spreading_factor"),
    (dict(lora_spreading_factor=12), "frame_payload_bytes"),
    (dict(tier=""), "tier"),
    (dict(energy_j_per_flop=-1e-9), "energy_j_per_flop"),
])
def test_profile_validation_names_the_bad_field_in_one_line(override, match):
    with pytest.raises(ProfileError, match=match) as info:
        DeviceProfile(**{**BASE, **override})
    assert "\n" not in str(info.value)


def test_bernoulli_availability_is_deterministic_and_has_the_right_rate():
    avail = BernoulliAvailability(0.3)
    draws = [avail.online(7, r, d) for r in range(50) for d in range(40)]
    assert draws == [avail.online(7, r, d) for r in range(50) for d in range(40)]
    assert 0.26 < sum(draws) / len(draws) < 0.34
    assert draws != [avail.online(8, r, d) for r in range(50) for d in range(40)]
    assert all(BernoulliAvailability(1.0).online(0, r, 0) for r in range(20))
    assert not any(BernoulliAvailability(0.0).online(0, r, 0) for r in range(20))


def test_trace_availability_needs_the_whole_span_inside_one_interval():
    trace = TraceAvailability(((0.0, 100.0), (200.0, 300.0)))
    assert trace.online(0, 0, 0, 10.0, 90.0)
    assert not trace.online(0, 0, 0, 90.0, 110.0)  # goes offline mid-round
    assert not trace.online(0, 0, 0, 150.0)
    assert trace.online(0, 0, 0, 250.0)
    assert not trace.online(0, 0, 0, 350.0)  # no period: offline after the trace


def test_periodic_trace_repeats_and_joins_across_the_period_boundary():
    # on for the last and first hour of every day
    day = 86_400.0
    trace = TraceAvailability(((0.0, 3600.0), (day - 3600.0, day)), period_s=day)
    assert trace.online(0, 0, 0, 5 * day + 100.0)
    assert not trace.online(0, 0, 0, 5 * day + 7200.0)
    assert trace.online(0, 0, 0, 5 * day - 1800.0, 5 * day + 1800.0)  # spans midnight


def test_parse_availability_round_trips_and_rejects_garbage():
    assert parse_availability("always") is ALWAYS_ON
    assert parse_availability("bernoulli:0.25") == BernoulliAvailability(0.25)
    trace = parse_availability("trace:0-3600;7200-10800@86400")
    assert trace == TraceAvailability(((0, 3600), (7200, 10800)), 86400.0)
    assert parse_availability(trace.spec()) == trace
    for bad in ("sometimes", "bernoulli:high", "bernoulli:1.5", "trace:5-1", "trace:0-10;5-20"):
        with pytest.raises(ProfileError):
            parse_availability(bad)


def test_catalog_has_the_required_tiers_each_with_a_source():
    for tier in ("lora-sf12", "lora-sf7", "nbiot", "ltem", "satellite-sbd", "phone-wifi",
                 "rpi-gateway", "jetson-box"):
        entry = get_entry(tier)
        assert entry.profile.tier == tier
        assert entry.source.strip() and entry.assumptions.strip()
    assert tier_names() == list(CATALOG)


def test_catalog_lora_tiers_follow_lorawan_eu868():
    for _, (sf, bps, payload) in LORA_EU868_DATA_RATES.items():
        p = get_profile(f"lora-sf{sf}")
        assert (p.downlink_bps, p.frame_payload_bytes, p.lora_spreading_factor) == (bps, payload, sf)
        assert p.duty_cycle == 0.01 and p.memory_bytes <= 1024 * 1024
    assert get_profile("lora-sf12").downlink_bps == 250.0
    assert get_profile("lora-sf7").downlink_bps == 5470.0


def test_catalog_orders_links_as_the_technologies_do():
    down = {t: get_profile(t).downlink_bps for t in tier_names()}
    assert down["lora-sf12"] < down["satellite-sbd"] < down["nbiot"] < down["ltem"] \
        < down["phone-wifi"] < down["rpi-gateway"]
    assert get_profile("phone-wifi").downlink_bps == 6e6
    assert get_profile("nbiot").latency_s > get_profile("ltem").latency_s


def test_aliases_and_unknown_tiers():
    assert resolve_tier("LoRa-Sensor") == "lora-sf12"
    assert resolve_tier("lte-m") == "ltem"
    with pytest.raises(UnknownTierError, match="unknown device tier 'toaster'"):
        get_profile("toaster")
